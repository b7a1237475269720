//! Starts BIND 9's `named` on a loopback port (or another address of its
//! network namespace), serving one zone that takes
//! dynamic updates signed with a fresh TSIG key.
//!
//! `clusterkit demo` and the tests of DNS resources both need this. The demo
//! is release code and cannot use the test helpers, so the launcher lives
//! here, with no dependencies, and both use it: the demo reports a failure
//! as an error, the tests panic with it.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How many ports to try: a port free when chosen may be taken by another
/// process before `named` binds it.
const ATTEMPTS: usize = 5;

/// What to run and serve.
#[derive(Debug, Clone, Copy)]
pub struct Setup<'a> {
    /// The `named` program.
    pub named: &'a Path,
    /// The `tsig-keygen` program.
    pub tsig_keygen: &'a Path,
    /// An existing directory for the configuration, the zone file and its
    /// journal; `named` must not outlive it.
    pub dir: &'a Path,
    /// The zone to serve (`example.test`), with an SOA, an NS and `ns` →
    /// 127.0.0.1.
    pub zone: &'a str,
    /// The name of the `hmac-sha256` key updates must be signed with.
    pub key_name: &'a str,
    /// How long `named` may take to start.
    pub patience: Duration,
}

/// named's log lines, as they come.
type Log = Arc<Mutex<Vec<String>>>;

/// A running `named` (on `127.0.0.1` unless started with
/// [`Named::start_on`]), UDP and TCP; killed on drop.
#[derive(Debug)]
pub struct Named {
    child: Child,
    addr: SocketAddr,
    secret: String,
    log: Log,
}

impl Named {
    /// Writes the key, zone and configuration into `setup.dir`, starts
    /// `named` in the foreground on a free port of 127.0.0.1 and waits until
    /// it logs that it is running.
    pub fn start(setup: &Setup<'_>) -> Result<Named, String> {
        Named::start_on(setup, Ipv4Addr::LOCALHOST)
    }

    /// As [`Named::start`], listening on `address` instead of 127.0.0.1:
    /// an address of this network namespace that other namespaces reach
    /// (the multi-node cluster's tests serve all their nodes from one).
    /// It must be configured on an interface: named listens on interface
    /// addresses only (127.0.0.2, local through 127.0.0.0/8 but on no
    /// interface, would get no answer). `tests/cluster.rs` of
    /// `clusterkit-cli` exercises it.
    ///
    /// ```no_run
    /// # use std::net::Ipv4Addr;
    /// # use std::path::Path;
    /// # use std::time::Duration;
    /// use clusterkit_bind::{Named, Setup};
    /// let setup = Setup {
    ///     named: Path::new("/usr/sbin/named"),
    ///     tsig_keygen: Path::new("/usr/sbin/tsig-keygen"),
    ///     dir: Path::new("/tmp/bind"),
    ///     zone: "example.test",
    ///     key_name: "update-key",
    ///     patience: Duration::from_secs(30),
    /// };
    /// let named = Named::start_on(&setup, Ipv4Addr::new(10, 99, 0, 254))?;
    /// assert_eq!(named.addr().ip(), Ipv4Addr::new(10, 99, 0, 254));
    /// # Ok::<(), String>(())
    /// ```
    pub fn start_on(setup: &Setup<'_>, address: Ipv4Addr) -> Result<Named, String> {
        let out = Command::new(setup.tsig_keygen)
            .args(["-a", "hmac-sha256", setup.key_name])
            .output()
            .map_err(|e| format!("running {}: {e}", setup.tsig_keygen.display()))?;
        if !out.status.success() {
            return Err(format!(
                "tsig-keygen failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let key_conf = String::from_utf8_lossy(&out.stdout).into_owned();
        let secret = key_conf
            .split("secret \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .ok_or("tsig-keygen printed no secret")?
            .to_owned();
        let zone = setup.zone;
        write(&setup.dir.join("key.conf"), &key_conf)?;
        write(
            &setup.dir.join("zone.db"),
            &format!(
                "$TTL 60\n\
                 @ IN SOA ns.{zone}. admin.{zone}. 1 60 60 600 60\n\
                 @ IN NS ns.{zone}.\n\
                 ns IN A 127.0.0.1\n"
            ),
        )?;
        let mut last_problem = String::new();
        for _ in 0..ATTEMPTS {
            let port = free_port(address).map_err(|e| format!("finding a free port: {e}"))?;
            match launch(setup, address, port) {
                Ok((child, log)) => {
                    return Ok(Named {
                        child,
                        addr: SocketAddr::from((address, port)),
                        secret,
                        log,
                    });
                }
                Err(problem) => last_problem = problem,
            }
        }
        Err(format!(
            "named did not start on a free port:\n{last_problem}"
        ))
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The key's secret, base64 (as `tsig-keygen` prints it).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// named's log so far.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write(path: &Path, contents: &str) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Runs named on `address`:`port` and waits for it to log `running`, reading its log
/// as it comes (no polling).
fn launch(setup: &Setup<'_>, address: Ipv4Addr, port: u16) -> Result<(Child, Log), String> {
    let d = setup.dir.display();
    let (zone, key_name) = (setup.zone, setup.key_name);
    let conf = setup.dir.join("named.conf");
    write(
        &conf,
        &format!(
            "include \"{d}/key.conf\";\n\
             controls {{ }};\n\
             options {{\n\
               directory \"{d}\";\n\
               pid-file \"{d}/named.pid\";\n\
               session-keyfile \"{d}/session.key\";\n\
               listen-on port {port} {{ {address}; }};\n\
               listen-on-v6 {{ none; }};\n\
               recursion no;\n\
               dnssec-validation no;\n\
             }};\n\
             zone \"{zone}\" {{\n\
               type primary;\n\
               file \"{d}/zone.db\";\n\
               allow-update {{ key {key_name}; }};\n\
             }};\n"
        ),
    )?;
    // Each attempt starts from the zone file alone, whatever an earlier one
    // left behind.
    let _ = std::fs::remove_file(setup.dir.join("zone.db.jnl"));
    let mut child = Command::new(setup.named)
        .arg("-g")
        .arg("-c")
        .arg(&conf)
        .args(["-u", "root", "-n", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", setup.named.display()))?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let log = Log::default();
    let (tx, rx) = mpsc::channel();
    let lines = log.clone();
    // Keeps draining named's log for its whole life (a full pipe would
    // block it), and says when it is running or has given up.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.ends_with(" running") {
                let _ = tx.send(Ok(()));
            } else if line.contains("address in use") || line.contains("exiting (due to") {
                let _ = tx.send(Err(line.clone()));
            }
            lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
        let _ = tx.send(Err("named exited".to_owned()));
    });
    match rx.recv_timeout(setup.patience) {
        Ok(Ok(())) => Ok((child, log)),
        outcome => {
            let _ = child.kill();
            let _ = child.wait();
            let log = log.lock().unwrap_or_else(|e| e.into_inner()).join("\n");
            Err(format!("{outcome:?}\n{log}"))
        }
    }
}

/// A port free for both UDP and TCP on `address`, now.
fn free_port(address: Ipv4Addr) -> std::io::Result<u16> {
    loop {
        let udp = UdpSocket::bind((address, 0))?;
        let port = udp.local_addr()?.port();
        if TcpListener::bind((address, port)).is_ok() {
            return Ok(port);
        }
    }
}
