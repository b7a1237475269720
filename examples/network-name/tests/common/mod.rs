//! Shared by the network-name tests: a real BIND on a loopback port, a
//! silent "DNS server", `dig`/`nsupdate` helpers, a host with short timings
//! and event collection.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clusterkit_host::{Event, EventKind, HostBuilder, MonitorProgram, ResourceConfig, Timing};
use clusterkit_testkit::{TempDir, require_tool};

/// The guard on every wait: far above what any step takes, so a failure
/// shows as a clear timeout rather than a hang.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The zone every BIND here serves.
pub const ZONE: &str = "example.test";

/// The TSIG key's name.
pub const KEY_NAME: &str = "ck-update-key";

/// named's log lines, as they come.
type Log = Arc<Mutex<Vec<String>>>;

/// A BIND `named` serving [`ZONE`] on `127.0.0.1:<port>`, accepting
/// updates signed with a fresh `hmac-sha256` key; killed on drop.
pub struct Bind {
    dir: TempDir,
    child: Child,
    /// Where it listens (UDP and TCP).
    pub addr: SocketAddr,
    /// The key's secret, base64.
    pub secret: String,
    log: Log,
}

impl Bind {
    /// Starts `named` and waits until it answers a SOA query for the zone.
    pub fn start(label: &str) -> Bind {
        let named = require_tool("named", "bind9");
        require_tool("dig", "bind9-dnsutils");
        let keygen = require_tool("tsig-keygen", "bind9");
        let dir = TempDir::new(&format!("nn-bind-{label}"));
        let out = Command::new(keygen)
            .args(["-a", "hmac-sha256", KEY_NAME])
            .output()
            .expect("running tsig-keygen");
        assert!(out.status.success(), "tsig-keygen failed");
        let key_conf = String::from_utf8(out.stdout).unwrap();
        let secret = key_conf
            .split("secret \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("tsig-keygen printed a secret")
            .to_owned();
        std::fs::write(dir.path().join("key.conf"), &key_conf).unwrap();
        std::fs::write(
            dir.path().join("zone.db"),
            format!(
                "$TTL 60\n\
                 @ IN SOA ns.{ZONE}. admin.{ZONE}. 1 60 60 600 60\n\
                 @ IN NS ns.{ZONE}.\n\
                 ns IN A 127.0.0.1\n"
            ),
        )
        .unwrap();
        // A port that is free now may be taken before named binds it (other
        // tests run in parallel): named then says so, and we try another.
        let mut last_problem = String::new();
        for _ in 0..5 {
            let port = free_port();
            match Bind::launch(&named, &dir, port) {
                Ok((child, log)) => {
                    let bind = Bind {
                        dir,
                        child,
                        addr: SocketAddr::from(([127, 0, 0, 1], port)),
                        secret,
                        log,
                    };
                    let soa = bind.dig(ZONE, "SOA");
                    assert_eq!(
                        soa.len(),
                        1,
                        "named answers no SOA: {soa:?}\n{}",
                        bind.log()
                    );
                    return bind;
                }
                Err(problem) => last_problem = problem,
            }
        }
        panic!("named did not start on a free port:\n{last_problem}");
    }

    /// Runs named in the foreground and waits for it to log `running`,
    /// reading its log as it comes (no polling).
    fn launch(named: &Path, dir: &TempDir, port: u16) -> Result<(Child, Log), String> {
        let d = dir.path().display();
        let conf = dir.path().join("named.conf");
        std::fs::write(
            &conf,
            format!(
                "include \"{d}/key.conf\";\n\
                 controls {{ }};\n\
                 options {{\n\
                   directory \"{d}\";\n\
                   pid-file \"{d}/named.pid\";\n\
                   session-keyfile \"{d}/session.key\";\n\
                   listen-on port {port} {{ 127.0.0.1; }};\n\
                   listen-on-v6 {{ none; }};\n\
                   recursion no;\n\
                   dnssec-validation no;\n\
                 }};\n\
                 zone \"{ZONE}\" {{\n\
                   type primary;\n\
                   file \"{d}/zone.db\";\n\
                   allow-update {{ key {KEY_NAME}; }};\n\
                 }};\n"
            ),
        )
        .unwrap();
        let _ = std::fs::remove_file(dir.path().join("zone.db.jnl"));
        let mut child = Command::new(named)
            .arg("-g")
            .arg("-c")
            .arg(&conf)
            .args(["-u", "root", "-n", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting named: {e}"))?;
        let stderr = child.stderr.take().unwrap();
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
                lines.lock().unwrap().push(line);
            }
            let _ = tx.send(Err("named exited".into()));
        });
        match rx.recv_timeout(PATIENCE) {
            Ok(Ok(())) => Ok((child, log)),
            outcome => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("{outcome:?}\n{}", log.lock().unwrap().join("\n")))
            }
        }
    }

    /// named's log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
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

    /// A resource of type `network-name` registering `<short>.example.test`
    /// → 127.0.0.1 on `servers`, with this BIND's key.
    pub fn resource(&self, name: &str, short: &str, servers: &[SocketAddr]) -> ResourceConfig {
        ResourceConfig::new(name, library(), "network-name")
            .property("name", format!("{short}.{ZONE}").as_str())
            .property("address", "127.0.0.1")
            .property("zone", ZONE)
            .property(
                "servers",
                servers.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
            .property("tsig_key_name", KEY_NAME)
            .property("tsig_secret", self.secret.as_str())
    }

    /// The state directory of this test (for the host).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for both UDP and TCP on 127.0.0.1, now.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
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

/// The network-name library (built if needed).
pub fn library() -> PathBuf {
    clusterkit_testkit::cdylib("clusterkit-example-network-name", "clusterkit_network_name")
}

/// Short timings for tests: checks every 100 ms / 500 ms, 1 s deadlines
/// (the minimum), restarts after 50 ms.
pub fn fast_timing() -> Timing {
    let mut t = Timing {
        looks_alive_interval: Duration::from_millis(100),
        is_alive_interval: Duration::from_millis(500),
        deadlock_timeout: Duration::from_millis(1000),
        pending_timeout: Duration::from_millis(1000),
        ..Timing::default()
    };
    t.restart.delay = Duration::from_millis(50);
    t
}

/// A host in `dir`/host with real monitor processes and [`fast_timing`].
pub fn builder(dir: &Path) -> HostBuilder {
    HostBuilder::new(
        dir.join("host"),
        MonitorProgram::Path(clusterkit_testkit::monitor_binary()),
    )
    .defaults(fast_timing())
}

/// Every event of a subscription, kept, with waits on them.
pub struct Events {
    rx: Receiver<Event>,
    /// Every event received so far.
    pub seen: Vec<Event>,
}

impl Events {
    /// Collects `rx`.
    pub fn new(rx: Receiver<Event>) -> Events {
        Events {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits for the first event (after those already seen) matching
    /// `pred`, and returns it.
    pub fn wait(&mut self, what: &str, mut pred: impl FnMut(&Event) -> bool) -> Event {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(e) => {
                    self.seen.push(e.clone());
                    if pred(&e) {
                        return e;
                    }
                }
                Err(_) => panic!(
                    "no event {what} within {PATIENCE:?}; saw: {:#?}",
                    self.seen.iter().map(|e| e.to_string()).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Takes in the events that have arrived, without waiting.
    pub fn drain(&mut self) {
        while let Ok(e) = self.rx.try_recv() {
            self.seen.push(e);
        }
    }

    /// The events of `kind` seen so far.
    pub fn of(&self, kind: EventKind) -> Vec<&Event> {
        self.seen.iter().filter(|e| e.kind == kind).collect()
    }
}

/// A matcher for events of `kind` about `resource`.
pub fn is(kind: EventKind, resource: &str) -> impl FnMut(&Event) -> bool + '_ {
    move |e| e.kind == kind && e.resource.as_deref() == Some(resource)
}
