//! Shared by the network-name tests: a real BIND on a loopback port, a
//! silent "DNS server", `dig`/`nsupdate` helpers, a host with short timings
//! and event collection.
// Each test binary uses only some of these helpers, re-exported ones
// included.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::time::Instant;

use clusterkit_host::testing::fast_timing;
use clusterkit_host::{Event, EventKind, HostBuilder, MonitorProgram, ResourceConfig};

pub use clusterkit_host::testing::{PATIENCE, is};

pub use clusterkit_testkit::bind::{Bind, KEY_NAME, Silent, ZONE};

/// Resources registering names with a test [`Bind`].
pub trait BindResource {
    /// This BIND's key and zone.
    fn bind(&self) -> &Bind;

    /// A resource of type `network-name` registering `<short>.example.test`
    /// → 127.0.0.1 on `servers`, with this BIND's key.
    fn resource(&self, name: &str, short: &str, servers: &[SocketAddr]) -> ResourceConfig {
        ResourceConfig::new(name, library(), "network-name")
            .property("name", format!("{short}.{ZONE}").as_str())
            .property("address", "127.0.0.1")
            .property("zone", ZONE)
            .property(
                "servers",
                servers.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
            .property("tsig_key_name", KEY_NAME)
            .property("tsig_secret", self.bind().secret.as_str())
    }
}

impl BindResource for Bind {
    fn bind(&self) -> &Bind {
        self
    }
}

/// The network-name library (built if needed).
pub fn library() -> PathBuf {
    clusterkit_testkit::cdylib("clusterkit-example-network-name", "clusterkit_network_name")
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
