//! ARP on an `AF_PACKET` socket: the duplicate-address probe of RFC 5227
//! (section 2.1) and the gratuitous announcement (section 2.3).

use std::io;
use std::mem::size_of;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::netlink::Interface;

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IP: u16 = 0x0800;
const ARP_LEN: usize = 28;
const REQUEST: u16 = 1;
const BROADCAST: [u8; 6] = [0xff; 6];

/// An ARP packet (Ethernet, IPv4), without the Ethernet header.
///
/// ```
/// use std::net::Ipv4Addr;
/// use clusterkit_ip_address::arp::ArpPacket;
///
/// let ours = [2, 0, 0, 0, 0, 1];
/// let address = Ipv4Addr::new(192, 0, 2, 10);
/// let probe = ArpPacket::probe(ours, address);
/// assert_eq!(ArpPacket::decode(&probe.encode()), Some(probe));
/// // Another host answering for the address is a conflict.
/// let reply = ArpPacket { operation: 2, sender_mac: [2, 0, 0, 0, 0, 2], sender_ip: address,
///                         target_mac: ours, target_ip: Ipv4Addr::UNSPECIFIED };
/// assert!(reply.conflicts(address, ours));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket {
    /// 1: request, 2: reply.
    pub operation: u16,
    /// Sender hardware address.
    pub sender_mac: [u8; 6],
    /// Sender protocol address (0.0.0.0 in a probe).
    pub sender_ip: Ipv4Addr,
    /// Target hardware address.
    pub target_mac: [u8; 6],
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

impl ArpPacket {
    /// RFC 5227's probe for `address`: "who has it?", from no address.
    pub fn probe(mac: [u8; 6], address: Ipv4Addr) -> ArpPacket {
        ArpPacket {
            operation: REQUEST,
            sender_mac: mac,
            sender_ip: Ipv4Addr::UNSPECIFIED,
            target_mac: [0; 6],
            target_ip: address,
        }
    }

    /// RFC 5227's announcement: a request whose sender and target are both
    /// `address`, so every neighbour updates its cache.
    pub fn announcement(mac: [u8; 6], address: Ipv4Addr) -> ArpPacket {
        ArpPacket {
            operation: REQUEST,
            sender_mac: mac,
            sender_ip: address,
            target_mac: [0; 6],
            target_ip: address,
        }
    }

    /// The 28 bytes on the wire.
    pub fn encode(&self) -> [u8; ARP_LEN] {
        let mut b = [0u8; ARP_LEN];
        b[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
        b[2..4].copy_from_slice(&ETH_P_IP.to_be_bytes());
        b[4] = 6;
        b[5] = 4;
        b[6..8].copy_from_slice(&self.operation.to_be_bytes());
        b[8..14].copy_from_slice(&self.sender_mac);
        b[14..18].copy_from_slice(&self.sender_ip.octets());
        b[18..24].copy_from_slice(&self.target_mac);
        b[24..28].copy_from_slice(&self.target_ip.octets());
        b
    }

    /// Parses an Ethernet/IPv4 ARP packet; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<ArpPacket> {
        let b = bytes.get(..ARP_LEN)?;
        if b[0..2] != 1u16.to_be_bytes() || b[2..4] != ETH_P_IP.to_be_bytes() || b[4] != 6 {
            return None;
        }
        let mac = |r: std::ops::Range<usize>| <[u8; 6]>::try_from(&b[r]).ok();
        let ip = |r: std::ops::Range<usize>| <[u8; 4]>::try_from(&b[r]).ok().map(Ipv4Addr::from);
        Some(ArpPacket {
            operation: u16::from_be_bytes([b[6], b[7]]),
            sender_mac: mac(8..14)?,
            sender_ip: ip(14..18)?,
            target_mac: mac(18..24)?,
            target_ip: ip(24..28)?,
        })
    }

    /// Whether this packet, seen while probing for `address` from `ours`,
    /// says someone else uses it: a packet from it, or another host's
    /// probe for it (RFC 5227, 2.1.1).
    pub fn conflicts(&self, address: Ipv4Addr, ours: [u8; 6]) -> bool {
        self.sender_mac != ours
            && (self.sender_ip == address
                || (self.sender_ip.is_unspecified()
                    && self.target_ip == address
                    && self.operation == REQUEST))
    }
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// An `AF_PACKET` socket for ARP on one interface.
#[derive(Debug)]
pub struct ArpSocket {
    fd: OwnedFd,
    interface: Interface,
}

impl ArpSocket {
    /// Opens and binds to `interface`.
    pub fn open(interface: &Interface) -> io::Result<ArpSocket> {
        // SAFETY: socket(2) with integer arguments.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ARP.to_be()),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor, owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let address = link_address(interface.index, [0; 6]);
        // SAFETY: a valid sockaddr_ll of the size given.
        let bound = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const address).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if bound != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ArpSocket {
            fd,
            interface: interface.clone(),
        })
    }

    /// Broadcasts `packet`.
    pub fn send(&self, packet: &ArpPacket) -> io::Result<()> {
        let to = link_address(self.interface.index, BROADCAST);
        let bytes = packet.encode();
        // SAFETY: a valid buffer and address of the sizes given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&raw const to).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends `probes` probes for `address`, spread over `wait`, and listens
    /// until `wait` has passed. The MAC of a host using it, if any.
    pub fn probe(
        &self,
        address: Ipv4Addr,
        probes: u32,
        wait: Duration,
    ) -> io::Result<Option<[u8; 6]>> {
        let probe = ArpPacket::probe(self.interface.mac, address);
        let started = Instant::now();
        let probes = probes.max(1);
        let mut sent = 0;
        let mut buffer = [0u8; 128];
        loop {
            let elapsed = started.elapsed();
            if sent < probes && elapsed >= wait * sent / probes {
                self.send(&probe)?;
                sent += 1;
            }
            let Some(left) = wait.checked_sub(elapsed) else {
                return Ok(None);
            };
            let next_probe = if sent < probes {
                (wait * sent / probes).saturating_sub(elapsed)
            } else {
                left
            };
            if !self.readable(next_probe.min(left))? {
                continue;
            }
            // SAFETY: sockaddr_ll is plain data.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut from_len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: valid buffers of the sizes given.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    libc::MSG_DONTWAIT,
                    (&raw mut from).cast(),
                    &mut from_len,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) {
                    continue;
                }
                return Err(err);
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            if let Some(packet) = ArpPacket::decode(&buffer[..n as usize])
                && packet.conflicts(address, self.interface.mac)
            {
                return Ok(Some(packet.sender_mac));
            }
        }
    }

    fn readable(&self, timeout: Duration) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        match unsafe { libc::poll(&mut pfd, 1, ms) } {
            n if n > 0 => Ok(true),
            0 => Ok(false),
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    Ok(false)
                } else {
                    Err(err)
                }
            }
        }
    }
}

fn link_address(index: u32, mac: [u8; 6]) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain data; all-zero is valid.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = ETH_P_ARP.to_be();
    address.sll_ifindex = index as i32;
    address.sll_halen = 6;
    address.sll_addr[..6].copy_from_slice(&mac);
    address
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const THEIRS: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

    #[test]
    fn packets_round_trip() {
        let probe = ArpPacket::probe(OURS, ADDRESS);
        let bytes = probe.encode();
        assert_eq!(&bytes[..8], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(
            &bytes[14..18],
            &[0, 0, 0, 0],
            "a probe has no sender address"
        );
        assert_eq!(ArpPacket::decode(&bytes), Some(probe));
        assert_eq!(ArpPacket::decode(&bytes[..27]), None);
        let announcement = ArpPacket::announcement(OURS, ADDRESS);
        assert_eq!(&announcement.encode()[14..18], &ADDRESS.octets());
    }

    #[test]
    fn conflicts_follow_rfc_5227() {
        let reply = ArpPacket {
            operation: 2,
            sender_mac: THEIRS,
            sender_ip: ADDRESS,
            target_mac: OURS,
            target_ip: Ipv4Addr::UNSPECIFIED,
        };
        assert!(reply.conflicts(ADDRESS, OURS));
        assert!(ArpPacket::probe(THEIRS, ADDRESS).conflicts(ADDRESS, OURS));
        assert!(!ArpPacket::probe(OURS, ADDRESS).conflicts(ADDRESS, OURS));
        assert!(
            !ArpPacket::announcement(THEIRS, Ipv4Addr::new(192, 0, 2, 11)).conflicts(ADDRESS, OURS)
        );
        assert_eq!(mac_text(THEIRS), "02:00:00:00:00:02");
    }
}
