//! `network-name` driven directly through its Rust API (no host), to time
//! the entry points precisely: `is_alive` within its budget whatever the
//! servers do, `terminate` and `offline` prompt while every server hangs,
//! progress reports while a server keeps a pending online waiting.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use clusterkit::{
    Error, Health, Level, Logger, Properties, Reply, Resource, ResourceContext, ResourceState,
    ResourceType, StartupContext, StatusReporter, StatusSink, StopFlag, Transition,
};
use clusterkit_network_name::{IS_ALIVE_BUDGET, NetworkName, NetworkNameType};
use common::*;

/// Collects a pending operation's reports and its completion.
#[derive(Default)]
struct Sink {
    state: Mutex<SinkState>,
    changed: Condvar,
}

#[derive(Default)]
struct SinkState {
    reports: Vec<u32>,
    outcome: Option<Result<ResourceState, Error>>,
}

impl StatusSink for Sink {
    fn report(&self, _: ResourceState, checkpoint: u32, _: Duration) -> Reply {
        self.state.lock().unwrap().reports.push(checkpoint);
        self.changed.notify_all();
        Reply::Continue
    }
    fn complete(&self, outcome: Result<ResourceState, Error>) {
        self.state.lock().unwrap().outcome = Some(outcome);
        self.changed.notify_all();
    }
}

impl Sink {
    /// Waits (on the condition variable, no polling) until `cond` holds.
    fn wait_until(&self, what: &str, cond: impl Fn(&SinkState) -> bool) {
        let (_state, timeout) = self
            .changed
            .wait_timeout_while(self.state.lock().unwrap(), PATIENCE, |s| !cond(s))
            .unwrap();
        assert!(!timeout.timed_out(), "timed out waiting for {what}");
    }

    fn outcome(&self) -> Option<Result<ResourceState, Error>> {
        self.state.lock().unwrap().outcome.clone()
    }
}

/// The resource's log lines, with a wait on them.
#[derive(Default)]
struct Lines {
    lines: Mutex<Vec<(Level, String)>>,
    added: Condvar,
}

impl Lines {
    fn all(&self) -> Vec<(Level, String)> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits (on the condition variable, no polling) for a line matching `pred`.
    fn wait_for(&self, what: &str, pred: impl Fn(&(Level, String)) -> bool) {
        let (lines, timeout) = self
            .added
            .wait_timeout_while(self.lines.lock().unwrap(), PATIENCE, |l| {
                !l.iter().any(&pred)
            })
            .unwrap();
        assert!(!timeout.timed_out(), "no line {what}: {lines:#?}");
    }
}

fn open(props: Properties, recover: bool) -> (NetworkName, Arc<Lines>) {
    let lines = Arc::new(Lines::default());
    let sink = lines.clone();
    let log = Logger::from_fn(move |level, m| {
        sink.lines.lock().unwrap().push((level, m.to_owned()));
        sink.added.notify_all();
    });
    let props = NetworkNameType::describe().schema.validate(&props).unwrap();
    let ty = NetworkNameType::startup(&StartupContext {
        log: Logger::discard(),
    })
    .unwrap();
    let ctx = ResourceContext::new("web", log, StopFlag::new());
    (ty.open(ctx, &props, recover).unwrap(), lines)
}

fn props(servers: &[SocketAddr], secret: &str) -> Properties {
    let mut p = Properties::new();
    p.insert("name", "web.example.test");
    p.insert("address", "127.0.0.1");
    p.insert("zone", ZONE);
    p.insert(
        "servers",
        servers.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    );
    p.insert("tsig_key_name", KEY_NAME);
    p.insert("tsig_secret", secret);
    p
}

const SOME_SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXh4eHg=";

#[test]
fn is_alive_keeps_its_budget_when_no_server_answers() {
    let silent = [Silent::new(), Silent::new(), Silent::new()];
    let servers: Vec<SocketAddr> = silent.iter().map(|s| s.addr).collect();
    let (r, _) = open(props(&servers, SOME_SECRET), true);
    let started = Instant::now();
    let health = r.is_alive();
    let took = started.elapsed();
    let Health::Degraded(reason) = &health else {
        panic!("{health:?}");
    };
    assert!(
        reason.starts_with("no DNS server answered within 300 ms")
            && reason.ends_with("the registration is unconfirmed"),
        "{reason}"
    );
    for s in &servers {
        assert!(
            reason.contains(&format!("{s}: no answer within")),
            "{reason}"
        );
    }
    assert!(
        took >= IS_ALIVE_BUDGET - Duration::from_millis(20)
            && took < IS_ALIVE_BUDGET + Duration::from_millis(200),
        "is_alive took {took:?}"
    );
    // looks_alive does not touch DNS at all.
    let started = Instant::now();
    assert_eq!(r.looks_alive(), Health::Healthy);
    assert!(started.elapsed() < Duration::from_millis(100));
    r.terminate().unwrap();
    r.close().unwrap();
}

#[test]
fn is_alive_reaches_the_second_server_within_its_budget() {
    let bind = Bind::start("budget");
    bind.nsupdate("update add web.example.test 60 A 127.0.0.1");
    let silent = Silent::new();
    // A fresh resource knows no server that answered: it asks the silent one
    // first, for its share of the budget only, then BIND.
    let (r, lines) = open(props(&[silent.addr, bind.addr], &bind.secret), true);
    let asked_silent = || {
        lines
            .all()
            .iter()
            .filter(|(_, m)| m.starts_with(&format!("is_alive: DNS server {}: ", silent.addr)))
            .count()
    };
    let started = Instant::now();
    assert_eq!(r.is_alive(), Health::Healthy);
    let took = started.elapsed();
    assert!(
        took >= IS_ALIVE_BUDGET / 2 - Duration::from_millis(20)
            && took < IS_ALIVE_BUDGET + Duration::from_millis(200),
        "is_alive took {took:?}"
    );
    assert_eq!(asked_silent(), 1);
    // Then BIND answered last, so it goes first: the silent server is not
    // asked again.
    assert_eq!(r.is_alive(), Health::Healthy);
    assert_eq!(asked_silent(), 1);
    r.terminate().unwrap();
    r.close().unwrap();
    // terminate leaves the record.
    assert_eq!(bind.dig("web.example.test", "A"), ["127.0.0.1"]);
}

#[test]
fn terminate_and_offline_return_at_once_while_every_server_hangs() {
    let silent = [Silent::new(), Silent::new()];
    let servers: Vec<SocketAddr> = silent.iter().map(|s| s.addr).collect();
    let mut p = props(&servers, SOME_SECRET);
    p.insert("attempt_timeout", Duration::from_secs(30));
    let (r, lines) = open(p, false);

    // A pending online, waiting on the first server for 30 s...
    let online = |r: &NetworkName| {
        let sink = Arc::new(Sink::default());
        let started = Instant::now();
        assert_eq!(
            r.online(StatusReporter::online(sink.clone())).unwrap(),
            Transition::Pending
        );
        assert!(started.elapsed() < Duration::from_millis(250));
        // ...reports progress all along,
        sink.wait_until("three reports", |s| s.reports.len() >= 3);
        assert!(sink.outcome().is_none());
        sink
    };
    // ...and terminate ends it at once, leaving DNS alone.
    let sink = online(&r);
    let started = Instant::now();
    r.terminate().unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(250), "terminate took {took:?}");
    assert!(matches!(sink.outcome(), Some(Err(Error::Terminated(_)))));
    lines.wait_for("about terminate", |(l, m)| {
        *l == Level::Info
            && m == "terminated: DNS work stopped; web.example.test. A 127.0.0.1 is left registered"
    });

    // So does offline, which then waits on the servers on a worker of its own.
    let sink = online(&r);
    let started = Instant::now();
    let removal = Arc::new(Sink::default());
    assert_eq!(
        r.offline(StatusReporter::offline(removal.clone())).unwrap(),
        Transition::Pending
    );
    let took = started.elapsed();
    assert!(took < Duration::from_millis(250), "offline took {took:?}");
    assert!(matches!(sink.outcome(), Some(Err(Error::Terminated(_)))));
    removal.wait_until("a removal report", |s| !s.reports.is_empty());
    // And close stops that one.
    let started = Instant::now();
    r.close().unwrap();
    assert!(started.elapsed() < Duration::from_millis(250));
    assert!(matches!(removal.outcome(), Some(Err(Error::Terminated(_)))));
}

#[test]
fn an_adopted_record_that_went_missing_is_registered_again() {
    let bind = Bind::start("adopt-missing");
    let (r, lines) = open(props(&[bind.addr], &bind.secret), true);
    // The host's first health check after re-attaching starts the worker,
    // which looks the record up first...
    assert_eq!(r.looks_alive(), Health::Healthy);
    lines.wait_for("registered", |(l, m)| {
        *l == Level::Info
            && m == &format!("registered web.example.test. A 127.0.0.1 on {}", bind.addr)
    });
    assert_eq!(bind.dig("web.example.test", "A"), ["127.0.0.1"]);
    let all = lines.all();
    assert!(
        all.iter().any(|(l, m)| *l == Level::Warn
            && m == "web.example.test. A 127.0.0.1 is not confirmed by any DNS server; \
                     registering it again"),
        "{all:#?}"
    );
    assert_eq!(r.is_alive(), Health::Healthy);
    // Dropped without close, its refreshing worker (asleep until the next
    // refresh, 300 s away) still stops at once.
    let started = Instant::now();
    drop(r);
    assert!(started.elapsed() < Duration::from_millis(250));
}

#[test]
fn online_fails_after_every_server_failed_naming_each() {
    let silent = Silent::new();
    let refused = {
        // A port nobody listens on: refused at once.
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let mut p = props(&[silent.addr, refused], SOME_SECRET);
    p.insert("attempt_timeout", Duration::from_millis(100));
    let (r, lines) = open(p, false);
    let sink = Arc::new(Sink::default());
    r.online(StatusReporter::online(sink.clone())).unwrap();
    sink.wait_until("the end", |s| s.outcome.is_some());
    let Some(Err(Error::Failed(why))) = sink.outcome() else {
        panic!("{:?}", sink.outcome());
    };
    let expected = format!(
        "the registration of web.example.test. A 127.0.0.1 failed on every DNS server: \
         {}: no answer within 100 ms; {refused}: ",
        silent.addr
    );
    // The kernel reports the ICMP error on send or on receive.
    assert!(
        why.starts_with(&expected)
            && why.ends_with("connection refused (nothing listens on that port)"),
        "{why}"
    );
    let warnings: Vec<String> = lines
        .all()
        .iter()
        .filter(|(l, _)| *l == Level::Warn)
        .map(|(_, m)| m.clone())
        .collect();
    assert_eq!(
        warnings[0],
        format!(
            "DNS server {} unreachable: no answer within 100 ms; trying the next server",
            silent.addr
        )
    );
    assert!(
        warnings[1].starts_with(&format!("DNS server {refused} unreachable: ")),
        "{warnings:#?}"
    );
    r.close().unwrap();
}

#[test]
fn an_ipv6_address_is_an_aaaa_record_replacing_any_a_record() {
    let bind = Bind::start("aaaa");
    bind.nsupdate("update add web.example.test 60 A 192.0.2.99");
    let mut p = props(&[bind.addr], &bind.secret);
    p.insert("address", "::1");
    // The DNS path is under test here, not the node's interfaces.
    p.insert("check_interface", false);
    let (r, _) = open(p, false);
    let sink = Arc::new(Sink::default());
    r.online(StatusReporter::online(sink.clone())).unwrap();
    sink.wait_until("online", |s| s.outcome.is_some());
    assert_eq!(sink.outcome(), Some(Ok(ResourceState::Online)));
    assert_eq!(bind.dig("web.example.test", "AAAA"), ["::1"]);
    assert!(bind.dig("web.example.test", "A").is_empty());
    assert_eq!(r.is_alive(), Health::Healthy);

    let sink = Arc::new(Sink::default());
    r.offline(StatusReporter::offline(sink.clone())).unwrap();
    sink.wait_until("offline", |s| s.outcome.is_some());
    assert_eq!(sink.outcome(), Some(Ok(ResourceState::Offline)));
    assert!(bind.dig("web.example.test", "AAAA").is_empty());
    r.close().unwrap();
}
