//! A host process (`examples/custom-host.rs`) killed with SIGKILL: the state
//! file always parses and holds the last committed state, and re-attachable
//! resources survive a host restart without a workload restart.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use clusterkit_fault_injection::start_count;
use clusterkit_host::{Desired, PersistedState};
use clusterkit_testkit::{TempDir, XorShift, example_binary};
use common::*;

struct HostProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl HostProcess {
    fn start(
        state_dir: &Path,
        library: &Path,
        type_name: &str,
        count: usize,
        props: &[String],
    ) -> HostProcess {
        let mut child = Command::new(example_binary("clusterkit-host", "custom-host"))
            .arg(state_dir)
            .arg(library)
            .arg(type_name)
            .arg(count.to_string())
            .args(props)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting custom-host");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut host = HostProcess {
            child,
            stdin,
            stdout,
        };
        assert_eq!(host.line(), "ready");
        host
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("reading custom-host");
        assert!(
            !line.is_empty(),
            "custom-host exited: {:?}",
            self.child.try_wait()
        );
        line.trim_end().to_owned()
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

#[test]
fn the_state_file_survives_sigkill_at_random_moments() {
    let dir = TempDir::new("host-sigkill");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let state_dir = dir.path().join("state");
    let mut rng = XorShift::from_clock();
    let seed = rng.seed();
    let props = [format!("state_dir={}", work.display())];
    let names = ["r0", "r1", "r2", "r3"];
    for round in 0..50 {
        let mut host =
            HostProcess::start(&state_dir, &dummy_library(), "dummy", names.len(), &props);
        // custom-host brings every resource online, and that is committed.
        let mut committed = [Desired::Online; 4];
        for _ in 0..rng.next_u64() % 6 {
            let r = rng.below(4);
            let want = if rng.next_u64().is_multiple_of(2) {
                Desired::Online
            } else {
                Desired::Offline
            };
            let verb = if want == Desired::Online {
                "online"
            } else {
                "offline"
            };
            host.send(&format!("{verb} {}", names[r]));
            assert!(host.line().starts_with("ok "));
            committed[r] = want;
            // offline takes dependents too; there are none here.
        }
        // One more command, killed at a random moment while it is handled.
        let r = rng.below(4);
        let in_flight = if committed[r] == Desired::Online {
            Desired::Offline
        } else {
            Desired::Online
        };
        host.send(&format!(
            "{} {}",
            if in_flight == Desired::Online {
                "online"
            } else {
                "offline"
            },
            names[r]
        ));
        let spin = Instant::now();
        let wait = Duration::from_micros(rng.next_u64() % 3000);
        while spin.elapsed() < wait {
            std::hint::spin_loop();
        }
        host.kill();

        let text =
            std::fs::read_to_string(state_dir.join("state.json")).expect("state.json exists");
        let state: PersistedState = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("round {round}: state.json does not parse: {e}\n{text}"));
        for (i, name) in names.iter().enumerate() {
            let saved = state.resources[*name].desired;
            let allowed = if i == r {
                vec![committed[i], in_flight]
            } else {
                vec![committed[i]]
            };
            assert!(
                allowed.contains(&saved),
                "round {round} (seed {seed}): {name} is {saved:?}, committed {:?}",
                committed[i]
            );
        }
    }
}

#[test]
fn reattachable_resources_survive_a_host_sigkill_without_restarting() {
    let dir = TempDir::new("host-reattach");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let state_dir = dir.path().join("state");
    let props = [format!("state_dir={}", work.display())];
    let host = HostProcess::start(&state_dir, &fault_library(), "fault-injection", 50, &props);
    for i in 0..50 {
        assert_eq!(start_count(&work, &format!("r{i}")), 1);
    }
    host.kill();

    let mut host = HostProcess::start(&state_dir, &fault_library(), "fault-injection", 50, &props);
    host.send("status");
    let status = host.line();
    assert_eq!(status.matches("=online").count(), 50, "{status}");
    for i in 0..50 {
        assert_eq!(
            start_count(&work, &format!("r{i}")),
            1,
            "r{i} was restarted"
        );
    }
    let events = std::fs::read_to_string(state_dir.join("events.jsonl")).unwrap();
    let reattached = events
        .lines()
        .filter(|l| l.contains("\"kind\":\"resource_reattached\""))
        .count();
    assert_eq!(reattached, 50);
    host.send("quit");
    host.child.wait().unwrap();
}
