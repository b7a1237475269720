//! `ip-address`, a clusterkit resource type that brings an IPv4 address up
//! on an interface, the equivalent of Windows' IP Address resource and of
//! OCF's `IPaddr2`, natively: rtnetlink (no `ip` command), an ARP probe
//! for a duplicate before adding (RFC 5227), and gratuitous ARP after.
//!
//! | entry point | behaviour |
//! |---|---|
//! | `online` | on a worker (pending): probe, add, announce |
//! | `offline`, `terminate` | remove the address (already gone: fine) |
//! | `looks_alive` | the address is on the interface (one netlink dump) |
//! | `is_alive` | the same, and the interface is up (no carrier: degraded) |
//! | `open(recover)` | nothing to undo: the address stays; the host's check adopts it |
//!
//! Built as a `cdylib` (`libclusterkit_ip_address.so`).

pub mod arp;
pub mod netlink;

use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::Duration;

use clusterkit::{
    Characteristics, ControlCode, Error, Health, Properties, PropertyError, PropertySpec, Reply,
    Resource, ResourceContext, ResourceType, Result, Schema, StartupContext, StatusReporter,
    Transition, TypeDescription, Worker,
};

use arp::{ArpPacket, ArpSocket, mac_text};
use netlink::{Interface, Netlink, interface};

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
    address: Ipv4Addr,
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
            .describe("The IPv4 address, dotted quad (192.0.2.10)")
            .required()
            .unique()
            .min(7),
        PropertySpec::u32("prefix_length")
            .describe("Its prefix length (24 for a /24)")
            .default(24u32)
            .range(1, 32),
        PropertySpec::string("interface")
            .describe("The interface to put it on (eth0)")
            .required()
            .range(1, 15),
        PropertySpec::duration("probe_wait")
            .describe("How long to listen for another host using the address before adding it (0: no check)")
            .default(Duration::from_millis(300))
            .max(10_000),
        PropertySpec::u32("announcements")
            .describe("Gratuitous ARPs sent after adding the address")
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
    let address: Ipv4Addr = text.parse().map_err(|_| {
        PropertyError::invalid("address", format!("{text:?} is not an IPv4 address"))
    })?;
    if address.is_unspecified() || address.is_multicast() || address.is_broadcast() {
        return Err(PropertyError::invalid(
            "address",
            format!("{address} cannot be an interface address"),
        )
        .into());
    }
    Ok(Config {
        address,
        prefix: properties.u32("prefix_length")? as u8,
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
    /// Whether the address is on the interface now.
    fn present(&self, index: u32) -> Result<bool> {
        let addresses = Netlink::open()
            .and_then(|mut nl| nl.addresses(index))
            .map_err(|e| {
                Error::io(
                    format_args!("listing the addresses of {}", self.interface),
                    &e,
                )
            })?;
        Ok(addresses.contains(&(self.address, self.prefix)))
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
        let socket = ArpSocket::open(&link).map_err(|e| {
            Error::io(
                format_args!("opening an ARP socket on {}", self.interface),
                &e,
            )
        })?;
        if !self.probe_wait.is_zero() {
            let holder = socket
                .probe(self.address, 2, self.probe_wait)
                .map_err(|e| Error::io(format_args!("probing for {}", self.address), &e))?;
            if let Some(mac) = holder {
                return Err(Error::Busy(format!(
                    "{} is already in use on {} by {}",
                    self.address,
                    self.interface,
                    mac_text(mac)
                )));
            }
        }
        if !keep_going() {
            return Err(Error::Terminated(format!("bringing {self} up was stopped")));
        }
        Netlink::open()
            .and_then(|mut nl| nl.add(link.index, self.address, self.prefix))
            .map_err(|e| Error::io(format_args!("adding {self}"), &e))?;
        log.info(format_args!("added {self}"));
        let announcement = ArpPacket::announcement(link.mac, self.address);
        for sent in 0..self.announcements {
            if sent > 0 && !keep_going() {
                break;
            }
            if let Err(e) = socket.send(&announcement) {
                // The address is up; a lost announcement only delays
                // neighbours' caches.
                log.warn(format_args!("gratuitous ARP for {self}: {e}"));
            }
            if sent + 1 < self.announcements {
                std::thread::sleep(self.announce_interval);
            }
        }
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
            && addresses.contains(&(self.config.address, self.config.prefix))
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
