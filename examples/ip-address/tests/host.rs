//! The `ip-address` type through a real host and real monitor processes,
//! in network namespaces the test creates: its own thread (and so the host
//! and monitors it starts) in one, joined by a veth pair (`ck0`) to a peer
//! namespace (`ck1`) that sees the gratuitous ARP and can hold a
//! conflicting address. Nothing on the machine changes.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use clusterkit::{ControlCode, Health, Logger, Properties, ResourceState};
use clusterkit_host::testing::{PATIENCE, fast_timing_with_deadlines, is, wait_event};
use clusterkit_host::{
    EventKind, HostBuilder, MonitorProgram, ProcessControl, ResourceConfig, RestartAction,
    SystemProcesses,
};
use clusterkit_testkit::{TempDir, cdylib, monitor_binary, require_tool};

const ADDRESS: &str = "192.0.2.10";

/// The namespaces of one test; the peer's holder process ends with it.
struct Link {
    peer: Child,
}

impl Link {
    /// Moves this thread to a new network namespace with `ck0` up, its veth
    /// peer `ck1` (192.0.2.1/24) up in a second one that accepts
    /// gratuitous ARP into its neighbour cache.
    fn new() -> Link {
        let ip = require_tool("ip", "iproute2");
        require_tool("nsenter", "util-linux");
        // SAFETY: unshare(2) changes the calling thread's namespace only.
        let unshared = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(unshared, 0, "unshare: {}", std::io::Error::last_os_error());
        let peer = Command::new(require_tool("unshare", "util-linux"))
            .args(["--net", "--", "sleep", "3600"])
            .spawn()
            .unwrap();
        let link = Link { peer };
        // The child's namespace is ready once it runs `sleep`.
        let deadline = Instant::now() + PATIENCE;
        while std::fs::read_link(format!("/proc/{}/exe", link.peer.id()))
            .map(|exe| !exe.ends_with("sleep"))
            .unwrap_or(true)
        {
            assert!(Instant::now() < deadline, "unshare did not start sleep");
            std::thread::sleep(Duration::from_millis(5));
        }
        run(
            &ip,
            &["link", "add", "ck0", "type", "veth", "peer", "name", "ck1"],
        );
        let pid = link.peer.id().to_string();
        run(&ip, &["link", "set", "ck1", "netns", &pid]);
        run(&ip, &["link", "set", "ck0", "up"]);
        link.in_peer(&["ip", "link", "set", "ck1", "up"]);
        link.in_peer(&["ip", "addr", "add", "192.0.2.1/24", "dev", "ck1"]);
        link.in_peer(&["sysctl", "-qw", "net.ipv4.conf.ck1.arp_accept=1"]);
        link
    }

    fn in_peer(&self, args: &[&str]) -> String {
        let pid = self.peer.id().to_string();
        let mut all = vec!["-t", &pid, "-n", "--"];
        all.extend_from_slice(args);
        run(&require_tool("nsenter", "util-linux"), &all)
    }

    fn addresses(&self) -> String {
        run(
            &require_tool("ip", "iproute2"),
            &["-o", "addr", "show", "dev", "ck0"],
        )
    }

    fn mac(&self, peer: bool) -> String {
        let args = ["-o", "link", "show", if peer { "ck1" } else { "ck0" }];
        let out = if peer {
            self.in_peer(&[&["ip"][..], &args[..]].concat())
        } else {
            run(&require_tool("ip", "iproute2"), &args)
        };
        let after = out.split("link/ether ").nth(1).expect("a MAC address");
        after.split_whitespace().next().unwrap().to_owned()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = self.peer.kill();
        let _ = self.peer.wait();
    }
}

fn run(program: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?}: {out:?}",
        program.display()
    );
    String::from_utf8(out.stdout).unwrap()
}

fn library() -> std::path::PathBuf {
    cdylib("clusterkit-example-ip-address", "clusterkit_ip_address")
}

fn host(dir: &TempDir, resource: ResourceConfig) -> clusterkit_host::Host {
    HostBuilder::new(dir.path(), MonitorProgram::Path(monitor_binary()))
        .defaults(fast_timing_with_deadlines(Duration::from_secs(5)))
        .resource(resource)
        .start()
        .unwrap()
}

fn address(name: &str) -> ResourceConfig {
    ResourceConfig::new(name, library(), "ip-address")
        .property("address", ADDRESS)
        .property("prefix_length", 24u32)
        .property("interface", "ck0")
        .property("probe_wait", Duration::from_millis(200))
        .timing(|t| t.restart_action = Some(RestartAction::None))
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn online_adds_and_announces_the_address_offline_removes_it() {
    let link = Link::new();
    let dir = TempDir::new("ip-address-lifecycle");
    let host = host(&dir, address("vip"));
    let events = host.subscribe();
    host.online("vip").unwrap();
    host.wait_for_state("vip", ResourceState::Online, PATIENCE)
        .unwrap();
    assert!(
        link.addresses().contains("192.0.2.10/24"),
        "{}",
        link.addresses()
    );
    // The peer learnt our MAC from the gratuitous ARP alone: it never
    // asked for 192.0.2.10.
    let ours = link.mac(false);
    wait_until(
        "the peer to learn the address from the announcement",
        || {
            link.in_peer(&["ip", "neigh", "show", ADDRESS, "dev", "ck1"])
                .contains(&ours)
        },
    );
    let checks = host.resource_status("vip").unwrap().health_checks;
    host.wait_for(PATIENCE, "health checks to pass", |s| {
        s[0].health_checks >= checks + 3 && s[0].last_health == Some(Health::Healthy)
    })
    .unwrap();

    host.offline("vip").unwrap();
    host.wait_for_state("vip", ResourceState::Offline, PATIENCE)
        .unwrap();
    assert!(!link.addresses().contains(ADDRESS));

    // Removed behind the resource's back: the cheap check notices.
    host.online("vip").unwrap();
    host.wait_for_state("vip", ResourceState::Online, PATIENCE)
        .unwrap();
    run(
        &require_tool("ip", "iproute2"),
        &["addr", "del", "192.0.2.10/24", "dev", "ck0"],
    );
    let (failed, _) = wait_event(
        &events,
        "the check failing",
        is(EventKind::HealthFailed, "vip"),
    );
    assert_eq!(
        failed.str_field("reason"),
        Some("192.0.2.10/24 on ck0 is not there"),
        "{failed}"
    );
    host.stop_all(PATIENCE).unwrap();
}

#[test]
fn an_address_in_use_on_the_link_is_refused_naming_the_holder() {
    let link = Link::new();
    link.in_peer(&["ip", "addr", "add", "192.0.2.10/24", "dev", "ck1"]);
    let dir = TempDir::new("ip-address-conflict");
    let host = host(&dir, address("vip"));
    let events = host.subscribe();
    host.online("vip").unwrap();
    let (failed, _) = wait_event(
        &events,
        "online failing",
        is(EventKind::ResourceFailed, "vip"),
    );
    let expected = format!(
        "pending online failed: busy: 192.0.2.10 is already in use on ck0 by {}",
        link.mac(true)
    );
    assert_eq!(
        failed.str_field("reason"),
        Some(expected.as_str()),
        "{failed}"
    );
    host.wait_for_state("vip", ResourceState::Failed, PATIENCE)
        .unwrap();
    assert!(!link.addresses().contains(ADDRESS), "nothing was added");
    host.stop_all(PATIENCE).unwrap();
}

#[test]
fn a_killed_monitor_is_reattached_and_the_address_stays() {
    let link = Link::new();
    let dir = TempDir::new("ip-address-reattach");
    let host = host(&dir, address("vip"));
    host.online("vip").unwrap();
    host.wait_for_state("vip", ResourceState::Online, PATIENCE)
        .unwrap();
    let events = host.subscribe();
    let pid = host.resource_status("vip").unwrap().monitor_pid.unwrap();
    SystemProcesses.kill(pid).unwrap();
    let (_, seen) = wait_event(
        &events,
        "the re-attach",
        is(EventKind::ResourceReattached, "vip"),
    );
    assert!(
        seen.iter().any(|e| e.kind == EventKind::MonitorDied),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|e| e.kind == EventKind::ResourceRestarted
            || e.str_field("message")
                .is_some_and(|m| m.starts_with("added "))),
        "re-attached without online: {seen:?}"
    );
    assert!(link.addresses().contains("192.0.2.10/24"));
    assert_eq!(host.resource_status("vip").unwrap().restarts, 0);
    host.stop_all(PATIENCE).unwrap();
}

#[test]
fn bad_properties_are_refused_naming_the_property() {
    let _link = Link::new();
    let library = clusterkit_loader::Library::load(library(), Logger::discard()).unwrap();
    let ty = library.resource_type("ip-address").unwrap();
    let validate = |address: &str, interface: &str| {
        let mut props = Properties::new();
        props.insert("address", address);
        props.insert("interface", interface);
        ty.control(ControlCode::VALIDATE_PROPERTIES, &props.encode())
            .map(drop)
            .map_err(|e| e.to_string())
    };
    validate(ADDRESS, "ck0").unwrap();
    let err = validate("300.1.2.3", "ck0").unwrap_err();
    assert!(
        err.contains("property `address`: \"300.1.2.3\" is not an IPv4 or IPv6 address"),
        "{err}"
    );
    let err = validate(ADDRESS, "nope0").unwrap_err();
    assert!(
        err.contains("property `interface`: there is no interface \"nope0\""),
        "{err}"
    );
    let mut props = Properties::new();
    props.insert("address", ADDRESS);
    props.insert("interface", "ck0");
    props.insert("prefix_length", 40u32);
    let err = ty
        .control(ControlCode::VALIDATE_PROPERTIES, &props.encode())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("property `prefix_length`: 40 is longer than an IPv4 address (32 bits)"),
        "{err}"
    );
    validate("2001:db8::10", "ck0").unwrap();
    let err = validate("224.0.0.5", "ck0").unwrap_err();
    assert!(err.contains("cannot be an interface address"), "{err}");
}

/// Fast DAD on `ck0` (100 ms per probe instead of 1 s), and a peer that
/// takes unsolicited neighbour advertisements into its cache (the kernel
/// does so only on a forwarding interface, as a router).
fn ipv6(link: &Link) {
    run(
        &require_tool("sysctl", "procps"),
        &["-qw", "net.ipv6.neigh.ck0.retrans_time_ms=100"],
    );
    link.in_peer(&["sysctl", "-qw", "net.ipv6.conf.ck1.forwarding=1"]);
    link.in_peer(&["sysctl", "-qw", "net.ipv6.conf.ck1.accept_untracked_na=1"]);
}

fn address6(name: &str) -> ResourceConfig {
    address(name)
        .property("address", "2001:db8::10")
        .property("prefix_length", 64u32)
}

#[test]
fn ipv6_waits_for_the_kernels_dad_then_advertises_the_address() {
    let link = Link::new();
    ipv6(&link);
    let dir = TempDir::new("ip-address-ipv6");
    let host = host(&dir, address6("vip6"));
    host.online("vip6").unwrap();
    host.wait_for_state("vip6", ResourceState::Online, PATIENCE)
        .unwrap();
    let shown = link.addresses();
    let line = shown
        .lines()
        .find(|l| l.contains("2001:db8::10/64"))
        .unwrap_or_else(|| panic!("no 2001:db8::10/64 in {shown}"));
    assert!(!line.contains("tentative"), "online after DAD: {line}");
    let ours = link.mac(false);
    wait_until(
        "the peer to learn the address from the advertisement",
        || {
            link.in_peer(&["ip", "-6", "neigh", "show", "2001:db8::10", "dev", "ck1"])
                .contains(&ours)
        },
    );
    let checks = host.resource_status("vip6").unwrap().health_checks;
    host.wait_for(PATIENCE, "health checks to pass", |s| {
        s[0].health_checks >= checks + 2 && s[0].last_health == Some(Health::Healthy)
    })
    .unwrap();
    host.offline("vip6").unwrap();
    host.wait_for_state("vip6", ResourceState::Offline, PATIENCE)
        .unwrap();
    assert!(!link.addresses().contains("2001:db8::10"));
    host.stop_all(PATIENCE).unwrap();
}

#[test]
fn an_ipv6_address_in_use_fails_the_kernels_dad_and_is_removed() {
    let link = Link::new();
    ipv6(&link);
    link.in_peer(&[
        "ip",
        "addr",
        "add",
        "2001:db8::10/64",
        "dev",
        "ck1",
        "nodad",
    ]);
    let dir = TempDir::new("ip-address-ipv6-conflict");
    let host = host(&dir, address6("vip6"));
    let events = host.subscribe();
    host.online("vip6").unwrap();
    let (failed, _) = wait_event(
        &events,
        "online failing",
        is(EventKind::ResourceFailed, "vip6"),
    );
    assert_eq!(
        failed.str_field("reason"),
        Some(
            "pending online failed: busy: 2001:db8::10 is already in use on ck0: \
             the kernel's duplicate address detection found another holder"
        ),
        "{failed}"
    );
    assert!(
        !link.addresses().contains("2001:db8::10"),
        "the failed address is removed"
    );
    host.stop_all(PATIENCE).unwrap();
}
