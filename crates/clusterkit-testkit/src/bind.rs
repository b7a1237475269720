//! A real BIND 9 `named` on a loopback port, for tests of DNS resources and
//! of the demo: a zone accepting updates signed with a fresh TSIG key, `dig`
//! and `nsupdate` helpers, and a "DNS server" that never answers.

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use clusterkit_bind::{Named, Setup};

use crate::{TempDir, require_tool};

/// How long `named` may take to start.
const PATIENCE: Duration = Duration::from_secs(60);

/// The zone every BIND here serves.
pub const ZONE: &str = "example.test";

/// The TSIG key's name.
pub const KEY_NAME: &str = "ck-update-key";

/// A BIND `named` serving [`ZONE`] on `127.0.0.1:<port>`, accepting
/// updates signed with a fresh `hmac-sha256` key; killed on drop.
pub struct Bind {
    /// Declared before `dir`: named stops before its directory goes.
    named: Named,
    dir: TempDir,
    /// Where it listens (UDP and TCP).
    pub addr: SocketAddr,
    /// The key's secret, base64.
    pub secret: String,
}

impl Bind {
    /// Starts `named` and waits until it answers a SOA query for the zone.
    pub fn start(label: &str) -> Bind {
        let named = require_tool("named", "bind9");
        require_tool("dig", "bind9-dnsutils");
        let keygen = require_tool("tsig-keygen", "bind9");
        let dir = TempDir::new(&format!("nn-bind-{label}"));
        let named = Named::start(&Setup {
            named: &named,
            tsig_keygen: &keygen,
            dir: dir.path(),
            zone: ZONE,
            key_name: KEY_NAME,
            patience: PATIENCE,
        })
        .unwrap_or_else(|problem| panic!("{problem}"));
        let bind = Bind {
            addr: named.addr(),
            secret: named.secret().to_owned(),
            named,
            dir,
        };
        let soa = bind.dig(ZONE, "SOA");
        assert_eq!(
            soa.len(),
            1,
            "named answers no SOA: {soa:?}\n{}",
            bind.log()
        );
        bind
    }

    /// named's log so far.
    pub fn log(&self) -> String {
        self.named.log()
    }

    /// `dig @127.0.0.1 -p <port> <name> <type> +short`, one line per record.
    pub fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
        let out = Command::new(require_tool("dig", "bind9-dnsutils"))
            .arg(format!("@{}", self.addr.ip()))
            .args(["-p", &self.addr.port().to_string(), name, rtype])
            .args(["+short", "+time=2", "+tries=3", "+norecurse"])
            .output()
            .expect("running dig");
        assert!(out.status.success(), "dig failed: {out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// The zone's SOA serial: it grows with every update the zone takes.
    pub fn serial(&self) -> u32 {
        let soa = self.dig(ZONE, "SOA");
        soa[0].split_whitespace().nth(2).unwrap().parse().unwrap()
    }

    /// Sends `commands` (nsupdate's `update ...` lines) signed with the key.
    pub fn nsupdate(&self, commands: &str) {
        let tool = require_tool("nsupdate", "bind9-dnsutils");
        let mut child = Command::new(tool)
            .arg("-y")
            .arg(format!("hmac-sha256:{KEY_NAME}:{}", self.secret))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running nsupdate");
        let script = format!(
            "server {} {}\nzone {ZONE}\n{commands}\nsend\n",
            self.addr.ip(),
            self.addr.port()
        );
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "nsupdate failed: {out:?}");
    }

    /// The state directory of this test (for the host).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A "DNS server" that never answers: a UDP socket bound by the test that
/// reads nothing, like a server behind a firewall dropping its port (the
/// seeds' outage). Alive as long as this value.
pub struct Silent {
    _socket: UdpSocket,
    /// Its address.
    pub addr: SocketAddr,
}

impl Default for Silent {
    fn default() -> Silent {
        Silent::new()
    }
}

impl Silent {
    /// Binds it on a loopback port.
    pub fn new() -> Silent {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        Silent {
            _socket: socket,
            addr,
        }
    }
}
