//! systemd integration: readiness and watchdog pings over `NOTIFY_SOCKET`
//! (the sd_notify protocol, without libsystemd).

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::Duration;

use clusterkit_host::Host;

fn send(message: &str) -> std::io::Result<()> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket.
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(message.as_bytes(), &addr)?;
    } else {
        socket.send_to(message.as_bytes(), &path)?;
    }
    Ok(())
}

/// Tells systemd the host is ready, and starts watchdog pings at half of
/// `WATCHDOG_USEC` while the host's engine answers.
pub(crate) fn ready(host: Arc<Host>) {
    let _ = send("READY=1\nSTATUS=clusterkit host running");
    let Some(usec) = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    let period = Duration::from_micros(usec / 2);
    let _ = std::thread::Builder::new()
        .name("ck-watchdog".into())
        .spawn(move || {
            loop {
                // A wedged engine stops the pings, and systemd restarts the service.
                if host.is_responsive(period) {
                    let _ = send("WATCHDOG=1");
                }
                std::thread::sleep(period);
            }
        });
}

/// Replaces the service's status line (`systemctl status` shows it).
pub(crate) fn status(text: &str) {
    let _ = send(&format!("STATUS={}", text.replace('\n', " ")));
}

/// Tells systemd the host is stopping.
pub(crate) fn stopping() {
    let _ = send("STOPPING=1");
}
