//! `network-name` through the host, in real monitor processes, against a
//! real BIND on a loopback port: the lifecycle, re-attach after a monitor
//! kill, the seeds' outage (a silent first server), bad properties and a
//! wrong TSIG secret.

mod common;

use std::time::Duration;

use clusterkit::ResourceState;
use clusterkit_host::{EventKind, HostError, ProcessControl, RestartAction, SystemProcesses};
use clusterkit_testkit::TempDir;
use common::*;

/// Waits until `name` has had `more` health checks beyond `after`, and
/// returns the slowest check latency seen meanwhile.
fn wait_checks(host: &clusterkit_host::Host, name: &str, after: u64, more: u64) -> Duration {
    let mut slowest = Duration::ZERO;
    host.wait_for(
        PATIENCE,
        &format!("{more} more health checks of `{name}`"),
        |s| {
            let r = s.iter().find(|r| r.name == name).unwrap();
            slowest = slowest.max(r.last_check_latency.unwrap_or_default());
            r.health_checks >= after + more
        },
    )
    .unwrap();
    slowest
}

fn checks(host: &clusterkit_host::Host, name: &str) -> u64 {
    host.resource_status(name).unwrap().health_checks
}

#[test]
fn online_registers_health_checks_pass_offline_removes() {
    let bind = Bind::start("lifecycle");
    // Stale records of both families, as a previous owner might leave them:
    // the registration replaces them all in one update.
    bind.nsupdate(
        "update add web.example.test 60 A 192.0.2.99\n\
         update add web.example.test 60 AAAA 2001:db8::99",
    );
    assert_eq!(bind.dig("web.example.test", "A"), ["192.0.2.99"]);

    let host = builder(bind.dir())
        .resource(
            bind.resource("web", "web", &[bind.addr])
                .property("ttl", 120u32),
        )
        .start()
        .unwrap();
    let mut events = Events::new(host.subscribe());
    host.online("web").unwrap();
    events.wait("pending", is(EventKind::ResourcePending, "web"));
    events.wait("online", is(EventKind::ResourceOnline, "web"));
    assert_eq!(bind.dig("web.example.test", "A"), ["127.0.0.1"]);
    assert!(bind.dig("web.example.test", "AAAA").is_empty());
    let out = std::process::Command::new(clusterkit_testkit::require_tool("dig", "bind9-dnsutils"))
        .arg(format!("@{}", bind.addr.ip()))
        .args(["-p", &bind.addr.port().to_string(), "web.example.test", "A"])
        .args(["+noall", "+answer"])
        .output()
        .unwrap();
    let answer = String::from_utf8(out.stdout).unwrap();
    assert!(answer.contains("\t120\tIN\tA\t127.0.0.1"), "{answer}");

    // Health checks pass: several looks_alive and at least two is_alive.
    wait_checks(&host, "web", checks(&host, "web"), 15);
    let status = host.resource_status("web").unwrap();
    assert_eq!(status.state, ResourceState::Online);
    assert_eq!(status.last_health, Some(clusterkit::Health::Healthy));
    assert_eq!(status.degraded_count, 0);

    host.offline("web").unwrap();
    host.wait_for_state("web", ResourceState::Offline, PATIENCE)
        .unwrap();
    assert!(bind.dig("web.example.test", "A").is_empty());
    events.drain();
    let logs: Vec<String> = events
        .of(EventKind::ResourceLog)
        .iter()
        .map(|e| e.str_field("message").unwrap().to_owned())
        .collect();
    let server = bind.addr.to_string();
    assert!(
        logs.iter()
            .any(|m| m == &format!("registered web.example.test. A 127.0.0.1 on {server}")),
        "{logs:#?}"
    );
    assert!(
        logs.iter()
            .any(|m| m == &format!("removed web.example.test. A 127.0.0.1 on {server}")),
        "{logs:#?}"
    );
    for kind in [
        EventKind::HealthDegraded,
        EventKind::HealthFailed,
        EventKind::ResourceFailed,
    ] {
        assert!(events.of(kind).is_empty(), "{kind:?}: {:#?}", events.seen);
    }
}

#[test]
fn a_killed_monitor_re_attaches_and_the_record_stays_without_an_update() {
    let bind = Bind::start("reattach");
    let host = builder(bind.dir())
        .resource(bind.resource("web", "web", &[bind.addr]))
        .start()
        .unwrap();
    let mut events = Events::new(host.subscribe());
    host.online("web").unwrap();
    host.wait_for_state("web", ResourceState::Online, PATIENCE)
        .unwrap();
    let serial = bind.serial();
    let pid = host.resource_status("web").unwrap().monitor_pid.unwrap();

    SystemProcesses.kill(pid).unwrap();
    events.wait("the monitor's death", |e| e.kind == EventKind::MonitorDied);
    events.wait("re-attach", is(EventKind::ResourceReattached, "web"));
    host.wait_for(PATIENCE, "online in a new monitor", |s| {
        s[0].state == ResourceState::Online && s[0].monitor_pid.is_some_and(|p| p != pid)
    })
    .unwrap();
    // The adopted registration is verified (by the worker the first health
    // check starts) and checked by is_alive, without a new update.
    events.wait("the adoption", |e| {
        e.kind == EventKind::ResourceLog
            && e.str_field("message")
                == Some(&format!(
                    "adopted web.example.test. A 127.0.0.1: registered on {}",
                    bind.addr
                ))
    });
    wait_checks(&host, "web", checks(&host, "web"), 15);
    assert_eq!(bind.dig("web.example.test", "A"), ["127.0.0.1"]);
    assert_eq!(bind.serial(), serial, "the zone took an update");
    events.drain();
    for kind in [
        EventKind::ResourceRestarted,
        EventKind::ResourceFailed,
        EventKind::HealthDegraded,
        EventKind::HealthFailed,
    ] {
        assert!(events.of(kind).is_empty(), "{kind:?}: {:#?}", events.seen);
    }
    let status = host.resource_status("web").unwrap();
    assert_eq!(status.restarts, 0);
    assert_eq!(status.last_health, Some(clusterkit::Health::Healthy));
}

/// The seeds' outage: the first DNS server never answers (its port blocked
/// by a firewall). There, the registration in IsAlive hung on it past the
/// deadlock timeout and the resource host was killed with every resource in
/// it. Here online goes through the second server, health checks stay far
/// inside their budget, and the first server's trouble is an event.
#[test]
fn a_silent_first_server_costs_one_attempt_and_never_a_deadline() {
    let bind = Bind::start("outage");
    let silent = Silent::new();
    let host = builder(bind.dir())
        .resource(bind.resource("web", "web", &[silent.addr, bind.addr]))
        .start()
        .unwrap();
    let mut events = Events::new(host.subscribe());
    host.online("web").unwrap();
    host.wait_for_state("web", ResourceState::Online, PATIENCE)
        .unwrap();
    assert_eq!(bind.dig("web.example.test", "A"), ["127.0.0.1"]);

    let slowest = wait_checks(&host, "web", checks(&host, "web"), 25);
    assert!(
        slowest < Duration::from_millis(500),
        "a health check took {slowest:?}"
    );
    let status = host.resource_status("web").unwrap();
    assert_eq!(status.state, ResourceState::Online);
    assert_eq!(status.last_health, Some(clusterkit::Health::Healthy));
    events.drain();
    let unreachable = format!(
        "DNS server {} unreachable: no answer within 500 ms; trying the next server",
        silent.addr
    );
    assert!(
        events.of(EventKind::ResourceLog).iter().any(|e| {
            e.resource.as_deref() == Some("web")
                && e.str_field("level") == Some("warn")
                && e.str_field("message") == Some(&unreachable)
        }),
        "no warning `{unreachable}`: {:#?}",
        events.seen
    );
    for kind in [
        EventKind::CallTimedOut,
        EventKind::MonitorKilled,
        EventKind::MonitorDied,
        EventKind::ResourceFailed,
        EventKind::HealthFailed,
    ] {
        assert!(events.of(kind).is_empty(), "{kind:?}: {:#?}", events.seen);
    }
    assert_eq!(status.restarts, 0);
}

#[test]
fn a_record_deleted_behind_its_back_is_registered_again() {
    let bind = Bind::start("missing");
    let host = builder(bind.dir())
        .resource(bind.resource("web", "web", &[bind.addr]))
        .start()
        .unwrap();
    let mut events = Events::new(host.subscribe());
    host.online("web").unwrap();
    host.wait_for_state("web", ResourceState::Online, PATIENCE)
        .unwrap();
    bind.nsupdate("update delete web.example.test A");
    assert!(bind.dig("web.example.test", "A").is_empty());
    let degraded = events.wait("degraded", is(EventKind::HealthDegraded, "web"));
    let reason = degraded.str_field("reason").unwrap();
    assert!(
        reason.starts_with("record missing; re-registering"),
        "{reason}"
    );
    assert_eq!(degraded.str_field("check"), Some("is_alive"));
    events.wait("the registration again", |e| {
        e.kind == EventKind::ResourceLog
            && e.str_field("message")
                == Some(&format!(
                    "registered web.example.test. A 127.0.0.1 on {}",
                    bind.addr
                ))
    });
    assert_eq!(bind.dig("web.example.test", "A"), ["127.0.0.1"]);
    // A check in flight during the registration may still say degraded;
    // after that, is_alive finds the record again.
    wait_checks(&host, "web", checks(&host, "web"), 10);
    events.drain();
    let before = events.seen.len();
    wait_checks(&host, "web", checks(&host, "web"), 15);
    events.drain();
    let late: Vec<String> = events.seen[before..]
        .iter()
        .filter(|e| e.kind == EventKind::HealthDegraded)
        .map(|e| e.to_string())
        .collect();
    assert!(late.is_empty(), "{late:#?}");
    let status = host.resource_status("web").unwrap();
    assert_eq!(status.state, ResourceState::Online);
    assert_eq!(status.restarts, 0);
    assert!(events.of(EventKind::ResourceFailed).is_empty());
}

#[test]
fn a_wrong_secret_fails_online_with_the_servers_refusal() {
    let bind = Bind::start("badsig");
    let host = builder(bind.dir())
        .resource(
            bind.resource("web", "web", &[bind.addr])
                // A valid key of the right length, just not the server's.
                .property(
                    "tsig_secret",
                    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                )
                .timing(|t| t.restart_action = Some(RestartAction::None)),
        )
        .start()
        .unwrap();
    let mut events = Events::new(host.subscribe());
    host.online("web").unwrap();
    let failed = events.wait("failure", is(EventKind::ResourceFailed, "web"));
    let reason = failed.str_field("reason").unwrap();
    assert!(
        reason.contains("registration of web.example.test. A 127.0.0.1 failed on every DNS server")
            && reason.contains("answered NOTAUTH (TSIG error BADSIG)")
            && reason.contains("check tsig_secret"),
        "{reason}"
    );
    host.wait_for_state("web", ResourceState::Failed, PATIENCE)
        .unwrap();
    assert!(bind.dig("web.example.test", "A").is_empty());
    assert!(
        bind.log().contains("BADSIG") || bind.log().contains("bad signature"),
        "named logged no signature failure:\n{}",
        bind.log()
    );
}

/// One resource with `edit` applied; returns what went wrong: the host's
/// start error, or the reason of the `resource_failed` event after open.
fn bad(
    edit: impl FnOnce(clusterkit_host::ResourceConfig) -> clusterkit_host::ResourceConfig,
) -> String {
    let dir = TempDir::new("nn-bad");
    let base = clusterkit_host::ResourceConfig::new("web", library(), "network-name")
        .property("name", "web.example.test")
        .property("address", "127.0.0.1")
        .property("zone", ZONE)
        .property("servers", vec!["127.0.0.1:53".to_owned()])
        .property("tsig_key_name", KEY_NAME)
        .property(
            "tsig_secret",
            "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXh4eHg=",
        )
        .timing(|t| t.restart_action = Some(RestartAction::None));
    let host = match builder(dir.path()).resource(edit(base)).start() {
        Err(e) => return format!("start: {e}"),
        Ok(host) => host,
    };
    // The host opens every resource as soon as it has started: the failure
    // may come before any subscription, so it is read from the event log.
    host.wait_for_state("web", ResourceState::Failed, PATIENCE)
        .unwrap();
    host.shutdown();
    let log = std::fs::read_to_string(dir.path().join("host/events.jsonl")).unwrap();
    let failed: serde_json::Value = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["kind"] == "resource_failed")
        .expect("a resource_failed event");
    format!("open: {}", failed["reason"].as_str().unwrap())
}

#[test]
fn bad_properties_are_named_with_their_problem() {
    assert_eq!(
        bad(|r| r.property("tsig_algorithm", "hmac-md5")),
        "open: open failed: property `tsig_algorithm`: unsupported TSIG algorithm \"hmac-md5\"; \
         supported: hmac-sha256, hmac-sha384, hmac-sha512"
    );
    assert_eq!(
        bad(|r| r.property("address", "10.0.0.300")),
        "open: open failed: property `address`: \"10.0.0.300\" is not an IPv4 or IPv6 address"
    );
    let e = bad(|r| r.property("tsig_secret", "not*base64"));
    assert!(
        e.starts_with("open: open failed: property `tsig_secret`: not valid base64 ("),
        "{e}"
    );
    assert!(!e.contains("not*base64"), "the secret is echoed: {e}");
    assert_eq!(
        bad(|r| r.property(
            "servers",
            vec!["127.0.0.1:53".to_owned(), "dns1".to_owned()]
        )),
        "open: open failed: property `servers`: entry 2 \"dns1\" is not an IP address with a \
         port (ip:port, [ipv6]:port)"
    );
    // The schema's own checks fail the host's start.
    let dir = TempDir::new("nn-bad-schema");
    let e = builder(dir.path())
        .resource(
            clusterkit_host::ResourceConfig::new("web", library(), "network-name")
                .property("name", "web.example.test")
                .property("address", "127.0.0.1")
                .property("zone", ZONE)
                .property("servers", Vec::<String>::new())
                .property("tsig_key_name", KEY_NAME),
        )
        .start()
        .unwrap_err();
    let HostError::Properties { resource, errors } = &e else {
        panic!("{e}");
    };
    assert_eq!(resource, "web");
    assert_eq!(
        errors.to_string(),
        "property `servers`: 0 is below the minimum 1\n\
         property `tsig_secret`: required but not given"
    );
}
