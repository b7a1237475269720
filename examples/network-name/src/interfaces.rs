//! Which local interface holds an address, by `getifaddrs(3)`.

use std::ffi::CStr;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The name of the local interface that has `address` assigned (`"lo"` for
/// `127.0.0.1`), or `None` when no interface has it.
///
/// One `getifaddrs(3)` call (a netlink dump; tens of microseconds), cheap
/// enough for `looks_alive`.
///
/// ```
/// let lo = clusterkit_network_name::interface_of("127.0.0.1".parse().unwrap()).unwrap();
/// assert_eq!(lo.as_deref(), Some("lo"));
/// let none = clusterkit_network_name::interface_of("192.0.2.55".parse().unwrap()).unwrap();
/// assert_eq!(none, None);
/// ```
pub fn interface_of(address: IpAddr) -> io::Result<Option<String>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `list` is a valid out-pointer; on success getifaddrs stores a
    // list that we free below with freeifaddrs, exactly once.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = None;
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a non-null node of the list getifaddrs returned,
        // which stays valid until freeifaddrs.
        let ifa = unsafe { &*entry };
        entry = ifa.ifa_next;
        // SAFETY: `ifa_addr` is null or points to a sockaddr whose family
        // field tells its real type, valid until freeifaddrs.
        let Some(here) = (unsafe { sockaddr_ip(ifa.ifa_addr) }) else {
            continue;
        };
        if here == address {
            // SAFETY: `ifa_name` is a NUL-terminated string valid until
            // freeifaddrs; we copy it out before that.
            let name = unsafe { CStr::from_ptr(ifa.ifa_name) };
            found = Some(name.to_string_lossy().into_owned());
            break;
        }
    }
    // SAFETY: `list` came from a successful getifaddrs and is freed once;
    // nothing borrowed from it outlives this call.
    unsafe { libc::freeifaddrs(list) };
    Ok(found)
}

/// The IP address in a `sockaddr`, for the IPv4 and IPv6 families.
///
/// # Safety
///
/// `addr` is null or points to a valid `sockaddr` of the size its family
/// implies.
unsafe fn sockaddr_ip(addr: *const libc::sockaddr) -> Option<IpAddr> {
    if addr.is_null() {
        return None;
    }
    // SAFETY: non-null and valid per the contract; every sockaddr starts
    // with its family.
    let family = i32::from(unsafe { (*addr).sa_family });
    match family {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let sin = unsafe { &*addr.cast::<libc::sockaddr_in>() };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let sin6 = unsafe { &*addr.cast::<libc::sockaddr_in6>() };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}
