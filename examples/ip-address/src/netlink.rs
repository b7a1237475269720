//! A minimal rtnetlink client: add, delete and list the IPv4 and IPv6
//! addresses of an interface (`RTM_NEWADDR`, `RTM_DELADDR`, `RTM_GETADDR`),
//! and look up an interface's index, flags and hardware address.
//!
//! Every socket is created in the calling thread's network namespace.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

const NLMSG_HDR_LEN: usize = 16;
const IFADDRMSG_LEN: usize = 8;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const IFA_FLAGS: u16 = 8;
const IFA_F_NODAD: u8 = 0x02;
/// The kernel's duplicate address detection has not finished (IPv6).
pub const IFA_F_TENTATIVE: u32 = 0x40;
/// The kernel's duplicate address detection found another holder (IPv6).
pub const IFA_F_DADFAILED: u32 = 0x08;

/// One address of an interface, as the kernel lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressEntry {
    /// The address.
    pub address: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
    /// `IFA_F_*` flags ([`IFA_F_TENTATIVE`], [`IFA_F_DADFAILED`], ...).
    pub flags: u32,
}
/// How long the kernel may take to answer one request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// An interface, as the kernel knows it in this network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name (`eth0`).
    pub name: String,
    /// Its index.
    pub index: u32,
    /// Its hardware (MAC) address.
    pub mac: [u8; 6],
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Has carrier (`IFF_RUNNING`).
    pub running: bool,
}

/// Looks `name` up: `NotFound` when there is no such interface.
pub fn interface(name: &str) -> io::Result<Interface> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not an interface name (1 to 15 bytes)"),
        ));
    }
    let socket = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    let ioctl = |request: libc::Ioctl, req: &mut libc::ifreq| {
        // SAFETY: `req` is a valid ifreq naming the interface; these
        // requests fill in the union member they are about.
        if unsafe { libc::ioctl(socket.as_raw_fd(), request, req as *mut libc::ifreq) } != 0 {
            let err = io::Error::last_os_error();
            return Err(if err.raw_os_error() == Some(libc::ENODEV) {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("there is no interface {name:?} in this network namespace"),
                )
            } else {
                err
            });
        }
        Ok(())
    };
    ioctl(libc::SIOCGIFINDEX, &mut req)?;
    // SAFETY: SIOCGIFINDEX filled in the index member.
    let index = unsafe { req.ifr_ifru.ifru_ifindex } as u32;
    ioctl(libc::SIOCGIFFLAGS, &mut req)?;
    // SAFETY: SIOCGIFFLAGS filled in the flags member.
    let flags = i32::from(unsafe { req.ifr_ifru.ifru_flags });
    ioctl(libc::SIOCGIFHWADDR, &mut req)?;
    // SAFETY: SIOCGIFHWADDR filled in the hardware address member.
    let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(hw.sa_data.iter()) {
        *dst = *src as u8;
    }
    Ok(Interface {
        name: name.to_owned(),
        index,
        mac,
        up: flags & libc::IFF_UP != 0,
        running: flags & libc::IFF_RUNNING != 0,
    })
}

fn socket(domain: i32, kind: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with integer arguments.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor, owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A `NETLINK_ROUTE` socket.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    sequence: u32,
}

impl Netlink {
    /// Opens a socket in this thread's network namespace.
    pub fn open() -> io::Result<Netlink> {
        let fd = socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)?;
        let timeout = libc::timeval {
            tv_sec: ANSWER_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: a valid timeval of the size given.
        let set = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if set != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Netlink { fd, sequence: 0 })
    }

    /// Adds `address/prefix` to interface `index`. `AlreadyExists` when it
    /// is there already. For IPv6, `dad = false` asks the kernel to skip
    /// duplicate address detection (`IFA_F_NODAD`).
    pub fn add(&mut self, index: u32, address: IpAddr, prefix: u8, dad: bool) -> io::Result<()> {
        let flags = libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_EXCL;
        let mut request = self.address_request(libc::RTM_NEWADDR, flags, index, address, prefix);
        if address.is_ipv6() && !dad {
            request[NLMSG_HDR_LEN + 2] = IFA_F_NODAD;
        }
        self.send(&request)?;
        self.receive(|_| Ok(()))
    }

    /// Removes `address/prefix` from interface `index`. Removing an address
    /// that is not there succeeds.
    pub fn delete(&mut self, index: u32, address: IpAddr, prefix: u8) -> io::Result<()> {
        let flags = libc::NLM_F_REQUEST | libc::NLM_F_ACK;
        let request = self.address_request(libc::RTM_DELADDR, flags, index, address, prefix);
        self.send(&request)?;
        match self.receive(|_| Ok(())) {
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(()),
            other => other,
        }
    }

    /// The addresses (IPv4 and IPv6) of interface `index`.
    pub fn addresses(&mut self, index: u32) -> io::Result<Vec<AddressEntry>> {
        let mut request = header(
            libc::RTM_GETADDR,
            libc::NLM_F_REQUEST | libc::NLM_F_DUMP,
            self.next_sequence(),
        );
        // AF_UNSPEC: both families; the kernel ignores the index in dumps.
        request.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        request.extend_from_slice(&index.to_ne_bytes());
        finish(&mut request);
        self.send(&request)?;
        let mut found = Vec::new();
        self.receive(|message| {
            if let Some(entry) = parse_address(message, index) {
                found.push(entry);
            }
            Ok(())
        })?;
        Ok(found)
    }

    fn next_sequence(&mut self) -> u32 {
        self.sequence = self.sequence.wrapping_add(1);
        self.sequence
    }

    fn address_request(
        &mut self,
        kind: u16,
        flags: i32,
        index: u32,
        address: IpAddr,
        prefix: u8,
    ) -> Vec<u8> {
        let mut request = header(kind, flags, self.next_sequence());
        let family = match address {
            IpAddr::V4(_) => libc::AF_INET,
            IpAddr::V6(_) => libc::AF_INET6,
        };
        // ifaddrmsg: family, prefix length, flags, scope (universe), index.
        request.extend_from_slice(&[family as u8, prefix, 0, 0]);
        request.extend_from_slice(&index.to_ne_bytes());
        match address {
            IpAddr::V4(v4) => {
                attribute(&mut request, IFA_LOCAL, &v4.octets());
                attribute(&mut request, IFA_ADDRESS, &v4.octets());
                if prefix < 31 {
                    let broadcast = u32::from(v4) | (u32::MAX >> prefix);
                    attribute(
                        &mut request,
                        IFA_BROADCAST,
                        &Ipv4Addr::from(broadcast).octets(),
                    );
                }
            }
            IpAddr::V6(v6) => {
                attribute(&mut request, IFA_LOCAL, &v6.octets());
                attribute(&mut request, IFA_ADDRESS, &v6.octets());
            }
        }
        finish(&mut request);
        request
    }

    fn send(&self, request: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_nl is plain data; zero addresses the kernel.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: a valid buffer and address of the sizes given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                request.as_ptr().cast(),
                request.len(),
                0,
                (&raw const kernel).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads answers to the last request until its ACK, error or
    /// `NLMSG_DONE`, handing every other message of it to `each`.
    fn receive(&mut self, mut each: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            // SAFETY: `buffer` is valid for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    0,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            let mut rest = &buffer[..n as usize];
            while rest.len() >= NLMSG_HDR_LEN {
                let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
                if len < NLMSG_HDR_LEN || len > rest.len() {
                    return Err(io::Error::other("a truncated netlink message"));
                }
                let kind = u16::from_ne_bytes(rest[4..6].try_into().unwrap());
                let sequence = u32::from_ne_bytes(rest[8..12].try_into().unwrap());
                let message = &rest[..len];
                rest = &rest[align(len).min(rest.len())..];
                if sequence != self.sequence {
                    continue;
                }
                match i32::from(kind) {
                    libc::NLMSG_DONE => return Ok(()),
                    libc::NLMSG_ERROR => {
                        let code = message
                            .get(16..20)
                            .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
                            .unwrap_or(-libc::EPROTO);
                        return if code == 0 {
                            Ok(())
                        } else {
                            Err(io::Error::from_raw_os_error(-code))
                        };
                    }
                    _ => each(message)?,
                }
            }
        }
    }
}

fn header(kind: u16, flags: i32, sequence: u32) -> Vec<u8> {
    let mut message = Vec::with_capacity(64);
    message.extend_from_slice(&0u32.to_ne_bytes()); // length, set by `finish`
    message.extend_from_slice(&kind.to_ne_bytes());
    message.extend_from_slice(&(flags as u16).to_ne_bytes());
    message.extend_from_slice(&sequence.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel assigns
    message
}

fn attribute(message: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    message.extend_from_slice(&(len as u16).to_ne_bytes());
    message.extend_from_slice(&kind.to_ne_bytes());
    message.extend_from_slice(payload);
    message.resize(align(message.len()), 0);
}

fn finish(message: &mut [u8]) {
    let len = message.len() as u32;
    message[0..4].copy_from_slice(&len.to_ne_bytes());
}

fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// The address of one `RTM_NEWADDR` message, if it is an address of
/// interface `index`. Malformed messages are skipped, never over-read.
fn parse_address(message: &[u8], index: u32) -> Option<AddressEntry> {
    let kind = u16::from_ne_bytes(message.get(4..6)?.try_into().ok()?);
    let body = message.get(NLMSG_HDR_LEN..)?;
    if kind != libc::RTM_NEWADDR || body.len() < IFADDRMSG_LEN {
        return None;
    }
    let (family, prefix) = (i32::from(body[0]), body[1]);
    let on = u32::from_ne_bytes(body[4..8].try_into().ok()?);
    if on != index || (family != libc::AF_INET && family != libc::AF_INET6) {
        return None;
    }
    let mut flags = u32::from(body[2]);
    let mut attributes = &body[IFADDRMSG_LEN..];
    let (mut local, mut peer) = (None, None);
    while attributes.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes(attributes[0..2].try_into().ok()?));
        let kind = u16::from_ne_bytes(attributes[2..4].try_into().ok()?);
        if len < 4 || len > attributes.len() {
            return None;
        }
        let payload = &attributes[4..len];
        let address = match (family, payload.len()) {
            (libc::AF_INET, 4) => Some(IpAddr::from(<[u8; 4]>::try_from(payload).ok()?)),
            (libc::AF_INET6, 16) => Some(IpAddr::from(<[u8; 16]>::try_from(payload).ok()?)),
            _ => None,
        };
        match kind {
            IFA_LOCAL => local = address.or(local),
            IFA_ADDRESS => peer = address.or(peer),
            IFA_FLAGS if payload.len() == 4 => {
                flags = u32::from_ne_bytes(payload.try_into().ok()?);
            }
            _ => {}
        }
        attributes = &attributes[align(len).min(attributes.len())..];
    }
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS the peer's on
    // point-to-point links (and the only one IPv6 usually sends).
    Some(AddressEntry {
        address: local.or(peer)?,
        prefix,
        flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_add_request_is_laid_out_as_the_kernel_expects() {
        let mut nl = Netlink {
            fd: socket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap(),
            sequence: 6,
        };
        let m = nl.address_request(
            libc::RTM_NEWADDR,
            libc::NLM_F_REQUEST,
            3,
            Ipv4Addr::new(192, 0, 2, 10).into(),
            24,
        );
        assert_eq!(m.len(), 16 + 8 + 3 * 8);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 48);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        assert_eq!(&m[16..20], &[libc::AF_INET as u8, 24, 0, 0]);
        assert_eq!(&m[44..48], &[192, 0, 2, 255], "the broadcast address");
        // What the kernel sends back parses to what was asked.
        let mut answer = m.clone();
        answer[4..6].copy_from_slice(&libc::RTM_NEWADDR.to_ne_bytes());
        let entry = parse_address(&answer, 3).unwrap();
        assert_eq!(entry.address, Ipv4Addr::new(192, 0, 2, 10));
        assert_eq!((entry.prefix, entry.flags), (24, 0));
        // IPv6: 16-byte addresses, no broadcast.
        let m6 = nl.address_request(
            libc::RTM_NEWADDR,
            libc::NLM_F_REQUEST,
            3,
            "2001:db8::10".parse().unwrap(),
            64,
        );
        assert_eq!(m6.len(), 16 + 8 + 2 * 20);
        let entry = parse_address(&m6, 3).unwrap();
        assert_eq!(entry.address, "2001:db8::10".parse::<IpAddr>().unwrap());
        assert_eq!(entry.prefix, 64);
        assert_eq!(parse_address(&answer, 4), None, "another interface");
    }

    #[test]
    fn malformed_answers_are_skipped_not_over_read() {
        let mut nl = Netlink {
            fd: socket(libc::AF_INET, libc::SOCK_DGRAM, 0).unwrap(),
            sequence: 0,
        };
        let m = nl.address_request(
            libc::RTM_NEWADDR,
            0,
            1,
            Ipv4Addr::new(10, 0, 0, 1).into(),
            8,
        );
        for cut in 0..m.len() {
            let _ = parse_address(&m[..cut], 1);
        }
        let mut bad = m.clone();
        bad[24..26].copy_from_slice(&200u16.to_ne_bytes());
        assert_eq!(parse_address(&bad, 1), None);
    }
}
