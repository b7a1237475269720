//! `[metrics]` and `[[alert]]` on a real `clusterkit run`: a real failure
//! (a dummy's state file deleted under it) is counted in a scrape over TCP
//! that `promtool check metrics` accepts, and reaches Pacemaker's own sample
//! alert agent, copied unchanged.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clusterkit_testkit::{TempDir, require_tool};
use support::cli::{PATIENCE, Running, config_head, write_config_file};

const SAMPLE_AGENT: &str = "/usr/share/pacemaker/alerts/alert_file.sh.sample";

/// A config with one dummy resource `web` (fast checks) and `extra` appended.
fn write_config(dir: &TempDir, extra: &str) -> (PathBuf, PathBuf) {
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let text = format!(
        r#"{head}[[resource]]
name = "web"
library = "dummy"
type = "dummy"
[resource.properties]
state_dir = "{work}"
{extra}"#,
        head = config_head(dir.path(), &[]),
        work = work.display(),
    );
    let path = write_config_file(dir.path(), &text);
    (path, work.join("web.state"))
}

/// Polls `probe` (another process's doing) until it returns something.
fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(20)); // polling another process
    }
}

/// A free loopback port (bound, then released for the host).
fn free_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `GET path` over TCP: the status line and the body.
fn get(address: SocketAddr, path: &str) -> Option<(String, String)> {
    let mut stream = TcpStream::connect(address).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

/// The value of the sample `series` (name and labels, as written).
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_count_a_real_failure_and_pass_promtool() {
    let promtool = require_tool("promtool", "prometheus");
    let dir = TempDir::new("cli-metrics");
    let address = free_address();
    let (config, state_file) = write_config(&dir, &format!("[metrics]\nlisten = \"{address}\"\n"));
    let _host = Running::start(&config, &[]);
    let online =
        |scrape: &str| sample(scrape, "clusterkit_resources{state=\"online\"}") == Some(1.0);
    wait_for("web online in a scrape", || {
        get(address, "/metrics").filter(|(_, body)| online(body))
    });

    // The workload vanishes: looks_alive, then is_alive fail, and the
    // restart policy brings it back.
    std::fs::remove_file(&state_file).unwrap();
    let (status, scrape) = wait_for("the failure and the restart in a scrape", || {
        get(address, "/metrics").filter(|(_, body)| {
            sample(body, "clusterkit_restarts_total{resource=\"web\"}") == Some(1.0) && online(body)
        })
    });
    assert_eq!(status, "HTTP/1.1 200 OK");
    let value = |series: &str| {
        sample(&scrape, series).unwrap_or_else(|| panic!("no {series} in\n{scrape}"))
    };
    assert_eq!(
        value("clusterkit_resource_failures_total{resource=\"web\"}"),
        1.0
    );
    assert!(value("clusterkit_health_check_failures_total{check=\"is_alive\"}") >= 1.0);
    let checks = value("clusterkit_health_checks_total{check=\"looks_alive\"}");
    assert!(checks >= 1.0, "{scrape}");
    assert_eq!(
        value("clusterkit_health_check_duration_seconds_count{check=\"looks_alive\"}"),
        checks
    );
    assert_eq!(
        value("clusterkit_call_timeouts_total{call=\"is_alive\"}"),
        0.0
    );
    let rss = scrape
        .lines()
        .find(|l| l.starts_with("clusterkit_monitor_resident_memory_bytes{pid="))
        .unwrap_or_else(|| panic!("no monitor RSS in\n{scrape}"));
    assert!(
        rss.rsplit(' ').next().unwrap().parse::<u64>().unwrap() > 0,
        "{rss}"
    );

    // Prometheus' own linter, on the very bytes served.
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{scrape}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(get(address, "/").unwrap().0, "HTTP/1.1 404 Not Found");
}

#[test]
fn pacemakers_sample_alert_agent_receives_a_real_failure() {
    assert!(
        Path::new(SAMPLE_AGENT).is_file(),
        "{SAMPLE_AGENT} is missing: run `apt-get install pacemaker-common` (scripts/test does)"
    );
    let dir = TempDir::new("cli-alerts");
    let agent = dir.path().join("alert_file.sh");
    std::fs::copy(SAMPLE_AGENT, &agent).unwrap();
    let recipient = dir.path().join("alerts.log");
    let (config, state_file) = write_config(
        &dir,
        &format!(
            "[[alert]]\npath = \"{}\"\nkinds = [\"resource_online\", \"health_failed\", \"resource_failed\"]\n\
             resources = [\"web\"]\ntimeout = \"10s\"\nrecipient = \"{}\"\n",
            agent.display(),
            recipient.display()
        ),
    );
    let _host = Running::start(&config, &[]);
    let log = || std::fs::read_to_string(&recipient).unwrap_or_default();
    wait_for("the online alert", || {
        log()
            .contains("Resource operation 'start' for 'web'")
            .then_some(())
    });
    std::fs::remove_file(&state_file).unwrap();
    let text = wait_for("the failure alerts", || {
        let text = log();
        (text.contains("Resource operation 'monitor' for 'web'")
            && text.matches("Resource operation 'start' for 'web'").count() >= 2)
            .then_some(text)
    });
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    // The sample's own words: "<timestamp>: Resource operation '<task>' for
    // '<rsc>' on '<node>': <desc>".
    assert!(
        text.contains(&format!(
            "Resource operation 'is_alive' for 'web' on '{}': not running:",
            node.trim()
        )),
        "{text}"
    );
    assert!(text.contains("'monitor' for 'web' on '"), "{text}");
    assert!(text.contains(": failed: is_alive failed:"), "{text}");
    assert!(!text.contains("Unhandled"), "{text}");
}
