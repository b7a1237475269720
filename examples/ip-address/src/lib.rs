//! `ip-address`, a clusterkit resource type that brings an IPv4 or IPv6
//! address up on an interface, the equivalent of Windows' IP Address
//! resource and of OCF's `IPaddr2`, natively: rtnetlink (no `ip` command);
//! for IPv4 an ARP probe for a duplicate before adding (RFC 5227) and
//! gratuitous ARP after; for IPv6 the kernel's duplicate address detection
//! and an unsolicited neighbour advertisement.
//!
//! | entry point | behaviour |
//! |---|---|
//! | `online` | on a worker (pending): probe (IPv4) or DAD (IPv6), add, announce |
//! | `offline`, `terminate` | remove the address (already gone: fine) |
//! | `looks_alive` | the address is on the interface (one netlink dump) |
//! | `is_alive` | the same, and the interface is up (no carrier: degraded) |
//! | `open(recover)` | nothing to undo: the address stays; the host's check adopts it |
//!
//! Built as a `cdylib` (`libclusterkit_ip_address.so`).

pub mod arp;
pub mod ndp;
pub mod netlink;

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use clusterkit::{
    Characteristics, ControlCode, Error, Health, Properties, PropertyError, PropertySpec, Reply,
    Resource, ResourceContext, ResourceType, Result, Schema, StartupContext, StatusReporter,
    Transition, TypeDescription, Worker,
};

use arp::{ArpPacket, ArpSocket, mac_text};
use netlink::{AddressEntry, IFA_F_DADFAILED, IFA_F_TENTATIVE, Interface, Netlink, interface};

/// The longest `online` waits for the kernel's IPv6 duplicate address
/// detection (one probe and a second by default).
const DAD_LIMIT: Duration = Duration::from_secs(10);

/// How often `online` looks whether DAD has finished.
const DAD_POLL: Duration = Duration::from_millis(50);

/// The `ip-address` type.
#[derive(Debug)]
pub struct IpAddressType;

/// One address on one interface.
#[derive(Debug)]
pub struct IpAddress {
    ctx: ResourceContext,
    config: Config,
    worker: Mutex<Option<Worker>>,
    /// The cheap check's netlink socket and the interface index it last
    /// found, kept between checks (opening them is most of a check's cost).
    probe: Mutex<Option<(Netlink, u32)>>,
}

/// A resource's validated properties.
#[derive(Debug, Clone)]
struct Config {
    address: IpAddr,
    prefix: u8,
    interface: String,
    probe_wait: Duration,
    announcements: u32,
    announce_interval: Duration,
}

impl std::fmt::Display for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} on {}", self.address, self.prefix, self.interface)
    }
}

fn schema() -> Schema {
    Schema::new(vec![
        PropertySpec::string("address")
            .describe("The address: IPv4 (192.0.2.10) or IPv6 (2001:db8::10)")
            .required()
            .unique()
            .min(2),
        PropertySpec::u32("prefix_length")
            .describe("Its prefix length (0: 24 for IPv4, 64 for IPv6)")
            .default(0u32)
            .max(128),
        PropertySpec::string("interface")
            .describe("The interface to put it on (eth0)")
            .required()
            .range(1, 15),
        PropertySpec::duration("probe_wait")
            .describe("IPv4: how long to listen for another host using the address before adding it; IPv6: 0 turns the kernel's DAD off (0: no check)")
            .default(Duration::from_millis(300))
            .max(10_000),
        PropertySpec::u32("announcements")
            .describe("Gratuitous ARPs (IPv4) or unsolicited neighbour advertisements (IPv6) sent after adding the address")
            .default(2u32)
            .max(10),
        PropertySpec::duration("announce_interval")
            .describe("The gap between two announcements (RFC 5227 says 2 s)")
            .default(Duration::from_millis(200))
            .max(10_000),
    ])
}

fn config(properties: &Properties) -> Result<Config> {
    let text = properties.str("address")?;
    let address: IpAddr = text.parse().map_err(|_| {
        PropertyError::invalid(
            "address",
            format!("{text:?} is not an IPv4 or IPv6 address"),
        )
    })?;
    let broadcast = matches!(address, IpAddr::V4(v4) if v4.is_broadcast());
    if address.is_unspecified() || address.is_multicast() || broadcast {
        return Err(PropertyError::invalid(
            "address",
            format!("{address} cannot be an interface address"),
        )
        .into());
    }
    let (default, most) = match address {
        IpAddr::V4(_) => (24, 32),
        IpAddr::V6(_) => (64, 128),
    };
    let prefix = match properties.u32("prefix_length")? {
        0 => default,
        p if p > most => {
            return Err(PropertyError::invalid(
                "prefix_length",
                format!(
                    "{p} is longer than an {} address ({most} bits)",
                    if most == 32 { "IPv4" } else { "IPv6" }
                ),
            )
            .into());
        }
        p => p,
    };
    Ok(Config {
        address,
        prefix: prefix as u8,
        interface: properties.str("interface")?.to_owned(),
        probe_wait: properties.duration("probe_wait")?,
        announcements: properties.u32("announcements")?,
        announce_interval: properties.duration("announce_interval")?,
    })
}

/// The interface named by `config`, as an error naming the property.
fn find_interface(config: &Config) -> Result<Interface> {
    interface(&config.interface).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound(format!("property `interface`: {e}")),
        _ => Error::io(
            format_args!("property `interface`: looking up {}", config.interface),
            &e,
        ),
    })
}

impl Config {
    /// Whether this entry is the address, and usable (DAD did not fail).
    fn matches(&self, entry: &AddressEntry) -> bool {
        entry.address == self.address
            && entry.prefix == self.prefix
            && entry.flags & IFA_F_DADFAILED == 0
    }

    /// The address's entry on the interface now, if it is there.
    fn entry(&self, index: u32) -> Result<Option<AddressEntry>> {
        let addresses = Netlink::open()
            .and_then(|mut nl| nl.addresses(index))
            .map_err(|e| {
                Error::io(
                    format_args!("listing the addresses of {}", self.interface),
                    &e,
                )
            })?;
        Ok(addresses
            .into_iter()
            .find(|e| e.address == self.address && e.prefix == self.prefix))
    }

    /// Whether the address is on the interface now, usable.
    fn present(&self, index: u32) -> Result<bool> {
        Ok(self.entry(index)?.is_some_and(|e| self.matches(&e)))
    }

    /// Probe, add, announce. Runs on the online worker.
    fn bring_up(
        &self,
        log: &clusterkit::Logger,
        keep_going: &mut dyn FnMut() -> bool,
    ) -> Result<()> {
        let link = find_interface(self)?;
        if self.present(link.index)? {
            log.info(format_args!("{self} is already there: adopted"));
            return Ok(());
        }
        match self.address {
            IpAddr::V4(_) => self.bring_up_v4(&link, log, keep_going),
            IpAddr::V6(_) => self.bring_up_v6(&link, log, keep_going),
        }
    }

    fn add(&self, link: &Interface, dad: bool, log: &clusterkit::Logger) -> Result<()> {
        Netlink::open()
            .and_then(|mut nl| nl.add(link.index, self.address, self.prefix, dad))
            .map_err(|e| Error::io(format_args!("adding {self}"), &e))?;
        log.info(format_args!("added {self}"));
        Ok(())
    }

    /// Sends the announcements, `announce_interval` apart.
    fn announce(
        &self,
        keep_going: &mut dyn FnMut() -> bool,
        log: &clusterkit::Logger,
        send: &dyn Fn() -> std::io::Result<()>,
    ) {
        for sent in 0..self.announcements {
            if sent > 0 && !keep_going() {
                break;
            }
            if let Err(e) = send() {
                // The address is up; a lost announcement only delays
                // neighbours' caches.
                log.warn(format_args!("announcing {self}: {e}"));
            }
            if sent + 1 < self.announcements {
                std::thread::sleep(self.announce_interval);
            }
        }
    }

    /// IPv4: an ARP probe, the address, gratuitous ARPs.
    fn bring_up_v4(
        &self,
        link: &Interface,
        log: &clusterkit::Logger,
        keep_going: &mut dyn FnMut() -> bool,
    ) -> Result<()> {
        let IpAddr::V4(address) = self.address else {
            unreachable!("called for IPv4 addresses only")
        };
        let socket = ArpSocket::open(link).map_err(|e| {
            Error::io(
                format_args!("opening an ARP socket on {}", self.interface),
                &e,
            )
        })?;
        if !self.probe_wait.is_zero() {
            let holder = socket
                .probe(address, 2, self.probe_wait)
                .map_err(|e| Error::io(format_args!("probing for {address}"), &e))?;
            if let Some(mac) = holder {
                return Err(Error::Busy(format!(
                    "{address} is already in use on {} by {}",
                    self.interface,
                    mac_text(mac)
                )));
            }
        }
        if !keep_going() {
            return Err(Error::Terminated(format!("bringing {self} up was stopped")));
        }
        self.add(link, false, log)?;
        let announcement = ArpPacket::announcement(link.mac, address);
        self.announce(keep_going, log, &|| socket.send(&announcement));
        Ok(())
    }

    /// IPv6: the address, the kernel's DAD (unless `probe_wait` is 0), an
    /// unsolicited neighbour advertisement once it is usable.
    fn bring_up_v6(
        &self,
        link: &Interface,
        log: &clusterkit::Logger,
        keep_going: &mut dyn FnMut() -> bool,
    ) -> Result<()> {
        let IpAddr::V6(address) = self.address else {
            unreachable!("called for IPv6 addresses only")
        };
        let dad = !self.probe_wait.is_zero();
        self.add(link, dad, log)?;
        let started = std::time::Instant::now();
        loop {
            let entry = self.entry(link.index)?;
            let flags = entry.map_or(0, |e| e.flags);
            if flags & IFA_F_DADFAILED != 0 {
                let _ = self.take_down();
                return Err(Error::Busy(format!(
                    "{address} is already in use on {}: the kernel's duplicate address detection found another holder",
                    self.interface
                )));
            }
            if entry.is_none() {
                return Err(Error::Failed(format!("{self} vanished during DAD")));
            }
            if flags & IFA_F_TENTATIVE == 0 {
                break;
            }
            if started.elapsed() > DAD_LIMIT {
                let _ = self.take_down();
                return Err(Error::Timeout(format!(
                    "{self} was still tentative (DAD) after {DAD_LIMIT:?}; is {} up?",
                    self.interface
                )));
            }
            if !keep_going() {
                let _ = self.take_down();
                return Err(Error::Terminated(format!("bringing {self} up was stopped")));
            }
            std::thread::sleep(DAD_POLL);
        }
        self.announce(keep_going, log, &|| ndp::announce(link, address));
        Ok(())
    }

    fn take_down(&self) -> Result<()> {
        let link = match interface(&self.interface) {
            Ok(link) => link,
            // The interface is gone, and the address with it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(format_args!("looking up {}", self.interface), &e)),
        };
        Netlink::open()
            .and_then(|mut nl| nl.delete(link.index, self.address, self.prefix))
            .map_err(|e| Error::io(format_args!("removing {self}"), &e))
    }

    fn health(&self, thorough: bool) -> Health {
        let link = match interface(&self.interface) {
            Ok(link) => link,
            Err(e) => return Health::failed(format!("{self}: {e}")),
        };
        match self.present(link.index) {
            Ok(true) => {}
            Ok(false) => return Health::failed(format!("{self} is not there")),
            Err(e) => return Health::failed(e.to_string()),
        }
        if thorough && !link.up {
            return Health::failed(format!("{self}: {} is down", self.interface));
        }
        if thorough && !link.running {
            return Health::degraded(format!("{self}: {} has no carrier", self.interface));
        }
        Health::Healthy
    }
}

impl ResourceType for IpAddressType {
    type Resource = IpAddress;

    fn describe() -> TypeDescription {
        TypeDescription {
            name: "ip-address".into(),
            description: "An IPv4 address on an interface, probed and announced by ARP".into(),
            // The address outlives the monitor process: a new monitor
            // finds it on the interface.
            characteristics: Characteristics::REATTACH,
            schema: schema(),
        }
    }

    fn startup(_ctx: &StartupContext) -> Result<IpAddressType> {
        Ok(IpAddressType)
    }

    /// `VALIDATE_PROPERTIES`: the schema, the address, and the interface
    /// exists here.
    fn control(&self, code: ControlCode, input: &[u8]) -> Result<Vec<u8>> {
        match code {
            ControlCode::VALIDATE_PROPERTIES => {
                let valid = schema().validate(&Properties::decode(input)?)?;
                find_interface(&config(&valid)?)?;
                Ok(Vec::new())
            }
            _ => Err(Error::unsupported(code)),
        }
    }

    fn open(
        &self,
        ctx: ResourceContext,
        properties: &Properties,
        recover: bool,
    ) -> Result<IpAddress> {
        let config = config(properties)?;
        let link = find_interface(&config)?;
        if recover && config.present(link.index)? {
            ctx.log().debug(format_args!("{config} is there to adopt"));
        }
        Ok(IpAddress {
            ctx,
            config,
            worker: Mutex::new(None),
            probe: Mutex::new(None),
        })
    }
}

impl IpAddress {
    fn stop_worker(&self) {
        let worker = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(worker) = worker {
            worker.stop_and_join();
        }
    }
}

impl Resource for IpAddress {
    fn online(&self, status: StatusReporter) -> Result<Transition> {
        self.stop_worker();
        let config = self.config.clone();
        let log = self.ctx.log().clone();
        let termination = self.ctx.termination().clone();
        let worker = Worker::spawn("ip-address-online", move |stop| {
            let mut checkpoint = 0;
            let hint = config.probe_wait
                + config.announce_interval * config.announcements
                + Duration::from_secs(1);
            let mut keep_going = || {
                checkpoint += 1;
                !stop.is_raised()
                    && !termination.is_raised()
                    && status.report(checkpoint, hint) == Reply::Continue
            };
            let outcome = config.bring_up(&log, &mut keep_going);
            status.complete(outcome);
        })
        .map_err(|e| Error::io("starting the online worker", &e))?;
        *self.worker.lock().unwrap_or_else(|e| e.into_inner()) = Some(worker);
        Ok(Transition::Pending)
    }

    fn offline(&self, _status: StatusReporter) -> Result<Transition> {
        self.stop_worker();
        self.config.take_down()?;
        Ok(Transition::Done)
    }

    fn terminate(&self) -> Result<()> {
        self.stop_worker();
        self.config.take_down()
    }

    /// The address on the interface, through a kept socket and index; on
    /// a miss, the full check decides (the interface may have been
    /// re-created with another index).
    fn looks_alive(&self) -> Health {
        let mut probe = self.probe.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((netlink, index)) = probe.as_mut()
            && let Ok(addresses) = netlink.addresses(*index)
            && addresses.iter().any(|e| self.config.matches(e))
        {
            return Health::Healthy;
        }
        *probe = None;
        let health = self.config.health(false);
        if health == Health::Healthy
            && let (Ok(netlink), Ok(link)) = (Netlink::open(), interface(&self.config.interface))
        {
            *probe = Some((netlink, link.index));
        }
        health
    }

    fn is_alive(&self) -> Health {
        self.config.health(true)
    }

    fn close(self) -> Result<()> {
        self.stop_worker();
        Ok(())
    }
}

clusterkit::export_resource_types!(IpAddressType);
