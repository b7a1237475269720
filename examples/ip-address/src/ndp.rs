//! IPv6's announcement: an unsolicited neighbour advertisement (RFC 4861,
//! 7.2.6) to all nodes, so that neighbours update their caches. Duplicate
//! detection for IPv6 is the kernel's own (RFC 4862 DAD), not this module's.

use std::io;
use std::mem::size_of;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::netlink::Interface;

const NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// The Override flag: replace a cached link-layer address.
const OVERRIDE: u32 = 0x2000_0000;
const TARGET_LINK_LAYER_ADDRESS: u8 = 2;
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The ICMPv6 message (the kernel fills in the checksum of raw ICMPv6
/// sockets): type, code, checksum, flags, target, and the target's
/// link-layer address option.
///
/// ```
/// use clusterkit_ip_address::ndp::advertisement;
/// let message = advertisement("2001:db8::10".parse().unwrap(), [2, 0, 0, 0, 0, 1]);
/// assert_eq!((message[0], message.len()), (136, 32));
/// ```
pub fn advertisement(target: Ipv6Addr, mac: [u8; 6]) -> [u8; 32] {
    let mut m = [0u8; 32];
    m[0] = NEIGHBOR_ADVERTISEMENT;
    m[4..8].copy_from_slice(&OVERRIDE.to_be_bytes());
    m[8..24].copy_from_slice(&target.octets());
    m[24] = TARGET_LINK_LAYER_ADDRESS;
    m[25] = 1; // in units of 8 bytes
    m[26..32].copy_from_slice(&mac);
    m
}

/// Sends one unsolicited advertisement of `target` on `interface`, from
/// `target`, with hop limit 255 (receivers drop anything else).
pub fn announce(interface: &Interface, target: Ipv6Addr) -> io::Result<()> {
    // SAFETY: socket(2) with integer arguments.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET6,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMPV6,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor, owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let set = |level: i32, name: i32, value: i32| {
        // SAFETY: a valid int of the size given.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                name,
                (&raw const value).cast(),
                size_of::<i32>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    set(libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, 255)?;
    set(
        libc::IPPROTO_IPV6,
        libc::IPV6_MULTICAST_IF,
        interface.index as i32,
    )?;
    // SAFETY: sockaddr_in6 is plain data; all-zero is valid.
    let mut from: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    from.sin6_family = libc::AF_INET6 as u16;
    from.sin6_addr.s6_addr = target.octets();
    // SAFETY: a valid sockaddr_in6 of the size given.
    let bound = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const from).cast(),
            size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        )
    };
    if bound != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut to = from;
    to.sin6_addr.s6_addr = ALL_NODES.octets();
    to.sin6_scope_id = interface.index;
    let message = advertisement(target, interface.mac);
    // SAFETY: a valid buffer and address of the sizes given.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            message.as_ptr().cast(),
            message.len(),
            0,
            (&raw const to).cast(),
            size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
