//! `clusterkit reload` and SIGHUP through the real binary: the host applies
//! the difference with its config file, and what did not change is not
//! touched.

mod support;

use std::path::{Path, PathBuf};

use clusterkit_testkit::TempDir;
use serde_json::Value;
use support::cli::*;

fn resource(name: &str, work: &Path, extra: &str) -> String {
    format!(
        r#"
[[resource]]
name = "{name}"
library = "dummy"
type = "dummy"
{extra}
[resource.properties]
state_dir = "{work}"
"#,
        work = work.display()
    )
}

fn write_config(dir: &TempDir, resources: &[String]) -> PathBuf {
    let text = config_head(dir.path(), &[]) + &resources.concat();
    write_config_file(dir.path(), &text)
}

/// Event lines about `name` in the host's log.
fn events_about(host: &Running, name: &str) -> Vec<Value> {
    let (ok, out, err) = host.cli(&["events", "--json"]);
    assert!(ok, "{err}");
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["resource"] == name)
        .collect()
}

fn names(status: &[Value]) -> Vec<&str> {
    status.iter().map(|r| r["name"].as_str().unwrap()).collect()
}

#[test]
fn reload_and_sighup_apply_the_difference_and_touch_nothing_else() {
    let dir = TempDir::new("cli-reload");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let web = resource("web", &work, "");
    let config = write_config(
        &dir,
        &[
            web.clone(),
            resource("app", &work, r#"depends_on = ["web"]"#),
            resource("old", &work, ""),
        ],
    );
    let host = Running::start(&config, &[]);
    let before = host.wait_status(|s| s.len() == 3);
    let web_before = events_about(&host, "web").len();

    // app's timing changes, old goes, extra comes.
    write_config(
        &dir,
        &[
            web.clone(),
            resource("app", &work, r#"depends_on = ["web"]"#)
                + "[resource.timing]\nlooks_alive_interval = \"200ms\"\n",
            resource("extra", &work, ""),
        ],
    );
    let (ok, out, err) = host.cli(&["reload"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("added    extra"), "{out}");
    assert!(out.contains("changed  app (timing): applied now"), "{out}");
    assert!(out.contains("removed  old"), "{out}");
    assert!(
        out.contains("1 added, 1 changed, 1 removed, 1 unchanged"),
        "{out}"
    );
    let after = host.wait_status(|s| {
        names(s) == ["web", "app", "extra"] && s.iter().all(|r| r["state"] == "online")
    });
    assert!(!work.join("old.state").exists(), "old's workload stopped");
    // Untouched: the same monitor, no restart, no new event.
    for i in 0..2 {
        assert_eq!(after[i]["monitor_pid"], before[i]["monitor_pid"]);
        assert_eq!(after[i]["restarts"], 0);
    }
    assert_eq!(events_about(&host, "web").len(), web_before);
    assert!(
        events_about(&host, "app")
            .iter()
            .all(|e| e["kind"] != "resource_offline" && e["kind"] != "resource_restarted"),
    );

    // A file with problems is refused whole, naming each; nothing changes.
    let good = std::fs::read_to_string(&host.config).unwrap();
    let bad = format!(
        "{good}{}{}",
        resource("typo", &work, "").replace("type = \"dummy\"", "type = \"dumy\""),
        resource("nodir", &work, "").replace(
            &format!("state_dir = \"{}\"", work.display()),
            "state_dir = \"\""
        ),
    );
    std::fs::write(&host.config, bad).unwrap();
    let (ok, out, err) = host.cli(&["reload"]);
    assert!(!ok, "{out}");
    assert!(err.contains("not reloaded, the host is unchanged"), "{err}");
    assert!(err.contains("typo") && err.contains("dumy"), "{err}");
    assert!(err.contains("nodir") && err.contains("state_dir"), "{err}");
    assert_eq!(names(&host.status().unwrap()), ["web", "app", "extra"]);

    // SIGHUP does the same.
    std::fs::write(
        &host.config,
        format!("{good}{}", resource("hup", &work, "")),
    )
    .unwrap();
    // SAFETY: kill(2) with a valid pid.
    unsafe { libc::kill(host.child.id() as i32, libc::SIGHUP) };
    host.wait_status(|s| {
        names(s) == ["web", "app", "extra", "hup"] && s.iter().all(|r| r["state"] == "online")
    });
    assert_eq!(events_about(&host, "web").len(), web_before);
}
