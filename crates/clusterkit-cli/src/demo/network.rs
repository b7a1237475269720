//! The demo's private network: a network namespace of its own, so that the
//! `ip-address` resource can bring an address up without changing the
//! machine's interfaces.

use std::process::Command;

/// The interface the demo's address goes on.
pub(super) const INTERFACE: &str = "ckdemo0";
/// The address (TEST-NET-1, RFC 5737) and its prefix length.
pub(super) const ADDRESS: &str = "192.0.2.10";

/// Moves this thread, and so every thread and process it starts afterwards
/// (BIND, the host, its monitors), into a new network namespace with `lo`
/// up and a veth pair `ckdemo0`/`ckdemo1` up. The namespace goes away with
/// the last of them.
pub(super) fn enter() -> Result<(), String> {
    // SAFETY: unshare(2) changes the calling thread's namespace only.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "creating the demo's network namespace (run the demo as root): {}",
            std::io::Error::last_os_error()
        ));
    }
    let ip = super::tool("ip", "iproute2")?;
    for args in [
        &["link", "set", "lo", "up"][..],
        &[
            "link", "add", INTERFACE, "type", "veth", "peer", "name", "ckdemo1",
        ],
        &["link", "set", INTERFACE, "up"],
        &["link", "set", "ckdemo1", "up"],
    ] {
        let out = Command::new(&ip)
            .args(args)
            .output()
            .map_err(|e| format!("running ip: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}
