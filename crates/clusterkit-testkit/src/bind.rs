//! A real BIND 9 `named` on a loopback port, for tests of DNS resources and
//! of the demo: a zone accepting updates signed with a fresh TSIG key, `dig`
//! and `nsupdate` helpers, and a "DNS server" that never answers.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{TempDir, require_tool};

/// How long `named` may take to start.
const PATIENCE: Duration = Duration::from_secs(60);

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
