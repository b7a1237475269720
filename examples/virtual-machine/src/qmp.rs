//! A minimal QMP (QEMU Machine Protocol) client.
//!
//! QMP is line-delimited JSON over QEMU's `-qmp` Unix socket: QEMU greets
//! with `{"QMP": {...}}`, the client sends `{"execute": "qmp_capabilities"}`
//! to leave negotiation mode, then commands; each answer is
//! `{"return": ...}` or `{"error": {"class": ..., "desc": ...}}`, with
//! asynchronous `{"event": ...}` messages interleaved (skipped here).
//!
//! Every operation has a deadline, enforced with socket timeouts in short
//! slices; between slices a `tick` callback runs, which may report
//! progress or end the operation (a worker's stop request, `terminate`).
//! The connection is made without blocking: QEMU serves one QMP client at a
//! time, and a connection queued behind another would otherwise wait.

use std::fmt;
use std::io::{self, BufRead, BufReader, ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::net::{AddressFamily, SendFlags, SocketAddrUnix, SocketFlags, SocketType};
use serde_json::{Map, Value, json};

/// How long one blocking read waits before `tick` runs again.
const SLICE: Duration = Duration::from_millis(20);

/// The longest QMP message accepted (answers to `query-status` are tiny).
const MAX_MESSAGE: usize = 1 << 20;

/// Why a QMP operation failed.
#[derive(Debug)]
pub(crate) enum QmpError<E> {
    /// The `tick` callback ended the operation with its own error.
    Stopped(E),
    /// No complete answer before the deadline.
    Timeout {
        /// What was being waited for.
        waiting_for: String,
        /// The operation's budget.
        budget: Duration,
    },
    /// QEMU closed the connection.
    Closed,
    /// QEMU answered `{"error": ...}`.
    Command {
        /// The command.
        command: String,
        /// The error class (`CommandNotFound`, `GenericError`, …).
        class: String,
        /// QEMU's description.
        desc: String,
    },
    /// Connecting, reading or writing failed, or QEMU sent something that
    /// is not QMP.
    Io(String),
}

impl<E: fmt::Display> fmt::Display for QmpError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QmpError::Stopped(e) => write!(f, "{e}"),
            QmpError::Timeout {
                waiting_for,
                budget,
            } => write!(
                f,
                "no {waiting_for} within {} ms (qmp_timeout)",
                budget.as_millis()
            ),
            QmpError::Closed => f.write_str("QEMU closed the QMP connection"),
            QmpError::Command {
                command,
                class,
                desc,
            } => write!(f, "`{command}` failed: {class}: {desc}"),
            QmpError::Io(why) => f.write_str(why),
        }
    }
}

/// Sends all of `bytes`, with `MSG_NOSIGNAL`: a QEMU that went away must
/// be an error, not a SIGPIPE killing the process that loaded this library
/// (a host written in C may not ignore SIGPIPE).
fn send_all(stream: &UnixStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match rustix::net::send(stream, bytes, SendFlags::NOSIGNAL) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// One QMP connection, past capability negotiation.
#[derive(Debug)]
pub(crate) struct Qmp {
    reader: BufReader<UnixStream>,
    path: PathBuf,
    budget: Duration,
    deadline: Instant,
}

impl Qmp {
    /// Connects to the QMP socket at `path`, reads the greeting and
    /// negotiates capabilities, all within `budget`. The same budget then
    /// applies to each [`execute`](Self::execute) after a
    /// [`restart_clock`](Self::restart_clock), or to everything at once.
    pub(crate) fn connect<E>(
        path: &Path,
        budget: Duration,
        tick: &mut dyn FnMut() -> Result<(), E>,
    ) -> Result<Qmp, QmpError<E>> {
        let io = |what: &str, e: &dyn fmt::Display| {
            QmpError::Io(format!("{what} the QMP socket {}: {e}", path.display()))
        };
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .map_err(|e| io("creating a socket for", &e))?;
        let addr = SocketAddrUnix::new(path).map_err(|e| io("addressing", &e))?;
        match rustix::net::connect(&fd, &addr) {
            Ok(()) => {}
            Err(rustix::io::Errno::NOENT) => {
                return Err(QmpError::Io(format!(
                    "the QMP socket {} does not exist",
                    path.display()
                )));
            }
            Err(rustix::io::Errno::CONNREFUSED) => {
                return Err(QmpError::Io(format!(
                    "nothing listens on the QMP socket {}",
                    path.display()
                )));
            }
            Err(rustix::io::Errno::AGAIN) => {
                return Err(QmpError::Io(format!(
                    "the QMP socket {} is busy (another client is connected)",
                    path.display()
                )));
            }
            Err(e) => return Err(io("connecting to", &e)),
        }
        let stream = UnixStream::from(fd);
        stream
            .set_nonblocking(false)
            .and_then(|()| stream.set_write_timeout(Some(budget.max(Duration::from_millis(1)))))
            .map_err(|e| io("configuring", &e))?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            path: path.to_owned(),
            budget,
            deadline: Instant::now() + budget,
        };
        let greeting = qmp.read_message("QMP greeting", tick)?;
        if !greeting.contains_key("QMP") {
            return Err(QmpError::Io(format!(
                "{} did not greet with QMP: {}",
                path.display(),
                Value::Object(greeting)
            )));
        }
        qmp.execute("qmp_capabilities", tick)?;
        Ok(qmp)
    }

    /// Gives the next operations a fresh budget.
    pub(crate) fn restart_clock(&mut self) {
        self.deadline = Instant::now() + self.budget;
    }

    /// Runs `command` (no arguments) and returns its `return` value.
    pub(crate) fn execute<E>(
        &mut self,
        command: &str,
        tick: &mut dyn FnMut() -> Result<(), E>,
    ) -> Result<Value, QmpError<E>> {
        let mut line = json!({ "execute": command }).to_string();
        line.push('\n');
        send_all(self.reader.get_ref(), line.as_bytes()).map_err(|e| match e.kind() {
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset => QmpError::Closed,
            ErrorKind::WouldBlock | ErrorKind::TimedOut => QmpError::Timeout {
                waiting_for: format!("room to send `{command}`"),
                budget: self.budget,
            },
            _ => QmpError::Io(format!(
                "sending `{command}` to {}: {e}",
                self.path.display()
            )),
        })?;
        loop {
            let mut message = self.read_message(&format!("answer to `{command}`"), tick)?;
            if let Some(value) = message.remove("return") {
                return Ok(value);
            }
            if let Some(error) = message.get("error") {
                let field = |name: &str| {
                    error
                        .get(name)
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_owned()
                };
                return Err(QmpError::Command {
                    command: command.to_owned(),
                    class: field("class"),
                    desc: field("desc"),
                });
            }
            // An asynchronous event (POWERDOWN, RESET, …): not our answer.
        }
    }

    /// Reads one JSON object, skipping nothing; fails at the deadline.
    fn read_message<E>(
        &mut self,
        waiting_for: &str,
        tick: &mut dyn FnMut() -> Result<(), E>,
    ) -> Result<Map<String, Value>, QmpError<E>> {
        let mut line = Vec::new();
        loop {
            tick().map_err(QmpError::Stopped)?;
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(QmpError::Timeout {
                    waiting_for: waiting_for.to_owned(),
                    budget: self.budget,
                });
            }
            self.reader
                .get_ref()
                .set_read_timeout(Some(left.min(SLICE)))
                .map_err(|e| QmpError::Io(format!("setting a read timeout: {e}")))?;
            match (&mut self.reader)
                .take((MAX_MESSAGE + 1 - line.len()) as u64)
                .read_until(b'\n', &mut line)
            {
                // End of file (the limit is at least 1 byte here).
                Ok(0) => return Err(QmpError::Closed),
                Ok(_) if line.ends_with(b"\n") => {}
                Ok(_) if line.len() > MAX_MESSAGE => {
                    return Err(QmpError::Io(format!(
                        "a QMP message from {} is longer than {MAX_MESSAGE} bytes",
                        self.path.display()
                    )));
                }
                // End of file after a partial line: the next read says so.
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Err(QmpError::Closed),
                Err(e) => {
                    return Err(QmpError::Io(format!(
                        "reading from {}: {e}",
                        self.path.display()
                    )));
                }
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                line.clear();
                continue;
            }
            return match serde_json::from_slice::<Value>(&line) {
                Ok(Value::Object(map)) => Ok(map),
                Ok(_) | Err(_) => Err(QmpError::Io(format!(
                    "{} sent something that is not a QMP message: {:?}",
                    self.path.display(),
                    String::from_utf8_lossy(&line[..line.len().min(200)])
                ))),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixListener;
    use std::thread::JoinHandle;

    /// A fake QEMU: listens on a fresh socket, and serves one connection
    /// with `serve`.
    fn fake_qemu(
        label: &str,
        serve: impl FnOnce(BufReader<UnixStream>) + Send + 'static,
    ) -> (PathBuf, JoinHandle<()>) {
        let path =
            std::env::temp_dir().join(format!("ck-vm-qmp-{label}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let thread = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            serve(BufReader::new(stream));
        });
        (path, thread)
    }

    fn expect(reader: &mut BufReader<UnixStream>, command: &str) {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let message: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(message["execute"], command, "{line}");
    }

    fn say(reader: &mut BufReader<UnixStream>, text: &str) {
        reader.get_mut().write_all(text.as_bytes()).unwrap();
    }

    const GREETING: &str = "{\"QMP\": {\"version\": {}, \"capabilities\": [\"oob\"]}}\r\n";

    fn no_stop() -> impl FnMut() -> Result<(), String> {
        || Ok(())
    }

    #[test]
    fn negotiates_then_skips_events_to_the_answer() {
        let (path, server) = fake_qemu("ok", |mut r| {
            say(&mut r, GREETING);
            expect(&mut r, "qmp_capabilities");
            say(&mut r, "{\"return\": {}}\r\n");
            expect(&mut r, "query-status");
            say(&mut r, "{\"event\": \"RESET\", \"data\": {}}\r\n\r\n");
            say(
                &mut r,
                "{\"return\": {\"status\": \"running\", \"running\": true}}\r\n",
            );
        });
        let mut tick = no_stop();
        let mut qmp = Qmp::connect(&path, Duration::from_secs(5), &mut tick).unwrap();
        let answer = qmp.execute("query-status", &mut tick).unwrap();
        assert_eq!(answer["status"], "running");
        server.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn an_error_answer_names_its_class() {
        let (path, server) = fake_qemu("error", |mut r| {
            say(&mut r, GREETING);
            expect(&mut r, "qmp_capabilities");
            say(&mut r, "{\"return\": {}}\n");
            expect(&mut r, "quit");
            say(
                &mut r,
                "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}}\n",
            );
        });
        let mut tick = no_stop();
        let mut qmp = Qmp::connect(&path, Duration::from_secs(5), &mut tick).unwrap();
        let err = qmp.execute("quit", &mut tick).unwrap_err();
        assert_eq!(err.to_string(), "`quit` failed: GenericError: no");
        server.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn silence_times_out_within_the_budget() {
        let (path, server) = fake_qemu("silent", |mut r| {
            // Accept, never greet; wait for the client to give up.
            let mut rest = Vec::new();
            let _ = r.read_to_end(&mut rest);
        });
        let started = Instant::now();
        let err = Qmp::connect(&path, Duration::from_millis(100), &mut no_stop()).unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, QmpError::Timeout { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "no QMP greeting within 100 ms (qmp_timeout)"
        );
        assert!(took < Duration::from_secs(2), "gave up after {took:?}");
        server.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_stop_request_ends_the_wait_at_once() {
        let (path, server) = fake_qemu("stop", |mut r| {
            let mut rest = Vec::new();
            let _ = r.read_to_end(&mut rest);
        });
        let started = Instant::now();
        let mut calls = 0;
        let mut tick = || {
            calls += 1;
            if calls > 2 {
                Err("stop".to_owned())
            } else {
                Ok(())
            }
        };
        let err = Qmp::connect(&path, Duration::from_secs(30), &mut tick).unwrap_err();
        assert!(
            matches!(&err, QmpError::Stopped(why) if why == "stop"),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        server.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn closed_and_missing_sockets_are_errors() {
        let (path, server) = fake_qemu("closed", drop);
        let err = Qmp::connect(&path, Duration::from_secs(5), &mut no_stop()).unwrap_err();
        assert!(matches!(err, QmpError::Closed), "{err}");
        server.join().unwrap();
        let err = Qmp::connect(&path, Duration::from_secs(5), &mut no_stop()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("nothing listens on the QMP socket"),
            "{err}"
        );
        std::fs::remove_file(&path).unwrap();
        let err = Qmp::connect(&path, Duration::from_secs(5), &mut no_stop()).unwrap_err();
        assert!(err.to_string().ends_with("does not exist"), "{err}");
    }

    #[test]
    fn garbage_is_not_qmp() {
        let (path, server) = fake_qemu("garbage", |mut r| {
            say(&mut r, "SSH-2.0-OpenSSH\n");
        });
        let err = Qmp::connect(&path, Duration::from_secs(5), &mut no_stop()).unwrap_err();
        assert!(err.to_string().contains("is not a QMP message"), "{err}");
        server.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }
}
