//! DNS over UDP, one attempt with one server at a time: RFC 2136 updates
//! signed with TSIG (RFC 8945), and plain queries.
//!
//! Every attempt has its own deadline and polls a `keep_going` callback
//! every [`POLL_SLICE`], so a caller can stop it (or report progress) while
//! a server stays silent. Messages are built and parsed with
//! `hickory-proto`; the sockets are plain `std::net::UdpSocket`s.

use std::fmt;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};

/// How often a silent attempt wakes up to ask `keep_going`.
pub(crate) const POLL_SLICE: Duration = Duration::from_millis(20);

/// Replies larger than this are not expected (answers to A/AAAA queries and
/// update replies are a few hundred bytes).
const MAX_REPLY: usize = 4096;

/// Why one attempt with one server did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AttemptError {
    /// The server did not answer within the attempt's timeout.
    NoAnswer(Duration),
    /// Sending or receiving failed (nothing listens there, no route, ...).
    Network(String),
    /// The caller stopped the attempt.
    Stopped,
    /// The server answered with an error.
    Rejected {
        /// The response code's mnemonic (`NOTAUTH`).
        rcode: String,
        /// The TSIG error, if the reply carried one (`BADSIG`).
        tsig_error: Option<String>,
    },
    /// The reply was malformed, unsigned where it must be signed, or its
    /// signature did not verify.
    BadReply(String),
}

impl AttemptError {
    /// Whether the server could not be reached at all (as opposed to a
    /// server that answered, but not as hoped).
    pub(crate) fn is_unreachable(&self) -> bool {
        matches!(self, AttemptError::NoAnswer(_) | AttemptError::Network(_))
    }

    /// A hint for the operator, for errors that are configuration mistakes.
    pub(crate) fn hint(&self) -> Option<&'static str> {
        let AttemptError::Rejected { rcode, tsig_error } = self else {
            return None;
        };
        match (rcode.as_str(), tsig_error.as_deref()) {
            (_, Some("BADSIG")) => Some(
                "the server does not accept the signature: check tsig_secret (and tsig_algorithm)",
            ),
            (_, Some("BADKEY")) => {
                Some("the server does not know the key: check tsig_key_name and tsig_algorithm")
            }
            (_, Some("BADTIME")) => Some("the clocks of this node and the server differ"),
            ("REFUSED", None) => {
                Some("the server refuses updates from this key or address: check its allow-update")
            }
            ("NOTAUTH", None) => Some("the server is not authoritative for the zone"),
            ("NOTZONE", None) => Some("the name is not in the zone"),
            _ => None,
        }
    }
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptError::NoAnswer(t) => write!(f, "no answer within {} ms", t.as_millis()),
            AttemptError::Network(why) => f.write_str(why),
            AttemptError::Stopped => f.write_str("stopped"),
            AttemptError::Rejected { rcode, tsig_error } => {
                write!(f, "answered {rcode}")?;
                if let Some(tsig) = tsig_error {
                    write!(f, " (TSIG error {tsig})")?;
                }
                if let Some(hint) = self.hint() {
                    write!(f, ": {hint}")?;
                }
                Ok(())
            }
            AttemptError::BadReply(why) => write!(f, "bad reply: {why}"),
        }
    }
}

/// The mnemonic of a response code, as `dig` prints it.
fn rcode_name(code: ResponseCode) -> String {
    let name = match u16::from(code) {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        16 => "BADVERS",
        other => return format!("RCODE{other}"),
    };
    name.to_owned()
}

/// The mnemonic of a TSIG error code.
fn tsig_error_name(code: u16) -> String {
    match code {
        16 => "BADSIG".to_owned(),
        17 => "BADKEY".to_owned(),
        18 => "BADTIME".to_owned(),
        22 => "BADTRUNC".to_owned(),
        other => format!("TSIG{other}"),
    }
}

fn record_type(address: IpAddr) -> RecordType {
    match address {
        IpAddr::V4(_) => RecordType::A,
        IpAddr::V6(_) => RecordType::AAAA,
    }
}

fn address_rdata(address: IpAddr) -> RData {
    match address {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// An UPDATE message for `zone` with no prerequisites and no updates yet.
fn update_for(zone: &Name) -> Message {
    let mut message = Message::query();
    message.metadata.op_code = OpCode::Update;
    message.metadata.recursion_desired = false;
    let mut section = Query::query(zone.clone(), RecordType::SOA);
    section.set_query_class(DNSClass::IN);
    message.add_zone(section);
    message
}

/// The registration: delete every A and AAAA record of `name` and add
/// `name → address`, in one UPDATE (RFC 2136 §2.5.2 and §2.5.1), so the
/// name never resolves to a stale address and never to none.
pub(crate) fn registration(zone: &Name, name: &Name, address: IpAddr, ttl: u32) -> Message {
    let mut message = update_for(zone);
    for rtype in [RecordType::A, RecordType::AAAA] {
        let mut delete = Record::update0(name.clone(), 0, rtype);
        delete.dns_class = DNSClass::ANY;
        message.add_update(delete);
    }
    let mut add = Record::from_rdata(name.clone(), ttl, address_rdata(address));
    add.dns_class = DNSClass::IN;
    message.add_update(add);
    message
}

/// The removal: delete only `name → address` (RFC 2136 §2.5.4), leaving any
/// other address registered for the name (by another node) in place.
pub(crate) fn removal(zone: &Name, name: &Name, address: IpAddr) -> Message {
    let mut message = update_for(zone);
    let mut delete = Record::from_rdata(name.clone(), 0, address_rdata(address));
    delete.dns_class = DNSClass::NONE;
    message.add_update(delete);
    message
}

/// Sends a signed UPDATE to `server` and checks the reply: `NOERROR`, and a
/// TSIG signature that verifies with the key (an unsigned success could be
/// forged, so it counts as a failure).
pub(crate) fn update(
    server: SocketAddr,
    mut message: Message,
    key: &TSigner,
    timeout: Duration,
    keep_going: &mut dyn FnMut() -> bool,
) -> Result<(), AttemptError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut verifier = message
        .finalize(key, now)
        .map_err(|e| AttemptError::BadReply(format!("signing the update failed: {e}")))?
        .ok_or_else(|| AttemptError::BadReply("signing the update gave no verifier".into()))?;
    let request = message
        .to_vec()
        .map_err(|e| AttemptError::BadReply(format!("encoding the update failed: {e}")))?;
    let bytes = exchange(server, &request, message.metadata.id, timeout, keep_going)?;
    let reply = decode_reply(&bytes, OpCode::Update)?;
    let tsig_error = reply
        .signature()
        .and_then(|s| s.data.error)
        .map(|e| tsig_error_name(e.into()));
    if reply.metadata.response_code != ResponseCode::NoError || tsig_error.is_some() {
        return Err(AttemptError::Rejected {
            rcode: rcode_name(reply.metadata.response_code),
            tsig_error,
        });
    }
    if reply.signature().is_none() {
        return Err(AttemptError::BadReply(
            "the reply to a signed update is not signed".into(),
        ));
    }
    verifier.verify(&bytes).map_err(|e| {
        AttemptError::BadReply(format!("the reply's TSIG signature does not verify: {e}"))
    })?;
    Ok(())
}

/// What a server says about the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// `name` resolves to `address` (among others, perhaps).
    Present,
    /// It does not; the text says what the server answered instead.
    Absent(String),
}

/// Asks `server` (a plain, unsigned query without recursion) whether `name`
/// resolves to `address`.
pub(crate) fn lookup(
    server: SocketAddr,
    name: &Name,
    address: IpAddr,
    timeout: Duration,
    keep_going: &mut dyn FnMut() -> bool,
) -> Result<Lookup, AttemptError> {
    let rtype = record_type(address);
    let mut message = Message::query();
    message.metadata.recursion_desired = false;
    let mut question = Query::query(name.clone(), rtype);
    question.set_query_class(DNSClass::IN);
    message.add_query(question);
    let request = message
        .to_vec()
        .map_err(|e| AttemptError::BadReply(format!("encoding the query failed: {e}")))?;
    let bytes = exchange(server, &request, message.metadata.id, timeout, keep_going)?;
    let reply = decode_reply(&bytes, OpCode::Query)?;
    match reply.metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => {
            return Ok(Lookup::Absent(format!("{name} does not exist (NXDOMAIN)")));
        }
        other => {
            return Err(AttemptError::Rejected {
                rcode: rcode_name(other),
                tsig_error: None,
            });
        }
    }
    let found: Vec<IpAddr> = reply
        .answers
        .iter()
        .filter(|r| r.name == *name)
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    if found.contains(&address) {
        Ok(Lookup::Present)
    } else if found.is_empty() {
        Ok(Lookup::Absent(format!("{name} has no {rtype} record")))
    } else {
        let list: Vec<String> = found.iter().map(IpAddr::to_string).collect();
        Ok(Lookup::Absent(format!(
            "{name} resolves to {} instead",
            list.join(", ")
        )))
    }
}

fn decode_reply(bytes: &[u8], op_code: OpCode) -> Result<Message, AttemptError> {
    let reply = Message::from_vec(bytes)
        .map_err(|e| AttemptError::BadReply(format!("it does not decode: {e}")))?;
    if reply.metadata.message_type != MessageType::Response || reply.metadata.op_code != op_code {
        return Err(AttemptError::BadReply(format!(
            "expected a {op_code:?} response, got a {:?} {:?}",
            reply.metadata.op_code, reply.metadata.message_type
        )));
    }
    Ok(reply)
}

/// Sends `request` to `server` from a fresh socket on an ephemeral port and
/// waits for the reply with the same id, until `timeout`; asks
/// `keep_going` every [`POLL_SLICE`] and gives up when it answers `false`.
fn exchange(
    server: SocketAddr,
    request: &[u8],
    id: u16,
    timeout: Duration,
    keep_going: &mut dyn FnMut() -> bool,
) -> Result<Vec<u8>, AttemptError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let net = |what: &str, e: std::io::Error| {
        AttemptError::Network(match e.kind() {
            ErrorKind::ConnectionRefused => {
                format!("{what}: connection refused (nothing listens on that port)")
            }
            _ => format!("{what}: {e}"),
        })
    };
    let socket = UdpSocket::bind(local).map_err(|e| net("binding a UDP socket", e))?;
    // Connected: the kernel drops datagrams from anyone else, and reports
    // an ICMP port-unreachable as ConnectionRefused.
    socket
        .connect(server)
        .map_err(|e| net("connecting the UDP socket", e))?;
    socket
        .set_write_timeout(Some(timeout.max(Duration::from_millis(1))))
        .map_err(|e| net("setting the write timeout", e))?;
    socket.send(request).map_err(|e| net("sending", e))?;
    let mut buf = vec![0u8; MAX_REPLY];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(AttemptError::NoAnswer(timeout));
        }
        if !keep_going() {
            return Err(AttemptError::Stopped);
        }
        let wait = (deadline - now)
            .min(POLL_SLICE)
            .max(Duration::from_millis(1));
        socket
            .set_read_timeout(Some(wait))
            .map_err(|e| net("setting the read timeout", e))?;
        match socket.recv(&mut buf) {
            Ok(n) if n >= 12 && u16::from_be_bytes([buf[0], buf[1]]) == id => {
                buf.truncate(n);
                return Ok(buf);
            }
            Ok(_) => {} // a late reply to an earlier attempt, or noise
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(net("receiving", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::tsig::TsigAlgorithm;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn registration_replaces_both_address_families_in_one_update() {
        let m = registration(
            &name("example.test."),
            &name("web.example.test."),
            "192.0.2.7".parse().unwrap(),
            60,
        );
        assert_eq!(m.metadata.op_code, OpCode::Update);
        assert_eq!(m.zones().len(), 1);
        assert_eq!(m.zones()[0].query_type(), RecordType::SOA);
        let updates = m.updates();
        assert_eq!(updates.len(), 3);
        assert_eq!(updates[0].dns_class, DNSClass::ANY);
        assert_eq!(updates[0].record_type(), RecordType::A);
        assert_eq!(updates[1].dns_class, DNSClass::ANY);
        assert_eq!(updates[1].record_type(), RecordType::AAAA);
        assert_eq!(updates[2].dns_class, DNSClass::IN);
        assert_eq!(updates[2].ttl, 60);
        assert_eq!(updates[2].data, RData::A(A("192.0.2.7".parse().unwrap())));
        // It encodes and decodes back.
        let bytes = m.to_vec().unwrap();
        assert_eq!(Message::from_vec(&bytes).unwrap().updates().len(), 3);
    }

    #[test]
    fn removal_deletes_only_our_record() {
        let m = removal(
            &name("example.test."),
            &name("web.example.test."),
            "2001:db8::7".parse().unwrap(),
        );
        let updates = m.updates();
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].dns_class, DNSClass::NONE);
        assert_eq!(updates[0].ttl, 0);
        assert_eq!(
            updates[0].data,
            RData::AAAA(AAAA("2001:db8::7".parse().unwrap()))
        );
    }

    #[test]
    fn a_silent_server_costs_one_timeout_and_can_be_stopped() {
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = silent.local_addr().unwrap();
        let started = Instant::now();
        let e = lookup(
            server,
            &name("web.example.test."),
            "127.0.0.1".parse().unwrap(),
            Duration::from_millis(100),
            &mut || true,
        )
        .unwrap_err();
        let took = started.elapsed();
        assert_eq!(e, AttemptError::NoAnswer(Duration::from_millis(100)));
        assert_eq!(e.to_string(), "no answer within 100 ms");
        assert!(e.is_unreachable());
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_secs(1),
            "{took:?}"
        );

        let started = Instant::now();
        let mut calls = 0;
        let e = lookup(
            server,
            &name("web.example.test."),
            "127.0.0.1".parse().unwrap(),
            Duration::from_secs(30),
            &mut || {
                calls += 1;
                calls < 3
            },
        )
        .unwrap_err();
        assert_eq!(e, AttemptError::Stopped);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_closed_port_is_refused_not_waited_for() {
        let port = {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        let e = lookup(
            port,
            &name("web.example.test."),
            "127.0.0.1".parse().unwrap(),
            Duration::from_secs(5),
            &mut || true,
        )
        .unwrap_err();
        assert!(e.is_unreachable());
        assert!(e.to_string().contains("connection refused"), "{e}");
    }

    /// A one-shot server answering with whatever `respond` makes of the request.
    fn answer_once(respond: impl FnOnce(Message) -> Vec<u8> + Send + 'static) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let (n, from) = socket.recv_from(&mut buf).unwrap();
            let request = Message::from_vec(&buf[..n]).unwrap();
            socket.send_to(&respond(request), from).unwrap();
        });
        addr
    }

    fn key(secret: &[u8]) -> TSigner {
        TSigner::new(
            secret.to_vec(),
            TsigAlgorithm::HmacSha256,
            name("ck-key."),
            300,
        )
        .unwrap()
    }

    #[test]
    fn an_unsigned_success_is_not_believed() {
        let server = answer_once(|request| {
            let mut reply = Message::response(request.metadata.id, OpCode::Update);
            reply.metadata.response_code = ResponseCode::NoError;
            reply.to_vec().unwrap()
        });
        let message = registration(
            &name("example.test."),
            &name("web.example.test."),
            "127.0.0.1".parse().unwrap(),
            60,
        );
        let e = update(
            server,
            message,
            &key(b"secret"),
            Duration::from_secs(5),
            &mut || true,
        )
        .unwrap_err();
        assert_eq!(
            e,
            AttemptError::BadReply("the reply to a signed update is not signed".into())
        );
    }

    #[test]
    fn a_refusal_names_the_rcode_and_a_hint() {
        let server = answer_once(|request| {
            let mut reply = Message::response(request.metadata.id, OpCode::Update);
            reply.metadata.response_code = ResponseCode::Refused;
            reply.to_vec().unwrap()
        });
        let message = removal(
            &name("example.test."),
            &name("web.example.test."),
            "127.0.0.1".parse().unwrap(),
        );
        let e = update(
            server,
            message,
            &key(b"secret"),
            Duration::from_secs(5),
            &mut || true,
        )
        .unwrap_err();
        assert!(!e.is_unreachable());
        assert_eq!(
            e.to_string(),
            "answered REFUSED: the server refuses updates from this key or address: check its allow-update"
        );
    }

    #[test]
    fn lookups_tell_present_from_absent() {
        let ours: IpAddr = "192.0.2.7".parse().unwrap();
        for (answer, expected) in [
            (Some(ours), Lookup::Present),
            (
                Some("192.0.2.8".parse().unwrap()),
                Lookup::Absent("web.example.test. resolves to 192.0.2.8 instead".into()),
            ),
            (
                None,
                Lookup::Absent("web.example.test. has no A record".into()),
            ),
        ] {
            let server = answer_once(move |request| {
                let mut reply = Message::response(request.metadata.id, OpCode::Query);
                reply.add_queries(request.queries.clone());
                if let Some(IpAddr::V4(v4)) = answer {
                    reply.add_answer(Record::from_rdata(
                        name("web.example.test."),
                        60,
                        RData::A(A(v4)),
                    ));
                }
                reply.to_vec().unwrap()
            });
            let got = lookup(
                server,
                &name("web.example.test."),
                ours,
                Duration::from_secs(5),
                &mut || true,
            )
            .unwrap();
            assert_eq!(got, expected);
        }
    }
}
