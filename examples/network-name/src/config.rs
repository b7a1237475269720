//! The property schema, and the checks beyond it that `open` makes.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clusterkit::{Properties, PropertyError, PropertyErrors, PropertySpec, Schema};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{Name, TSigner};

/// The TSIG algorithms this type signs with (those `hickory-proto`
/// implements), by their names in BIND's `key` statements.
pub const SUPPORTED_TSIG_ALGORITHMS: [&str; 3] = ["hmac-sha256", "hmac-sha384", "hmac-sha512"];

/// The time window a TSIG signature is valid in, either side of its time
/// (RFC 8945 recommends 300 s).
const TSIG_FUDGE: u16 = 300;

/// The largest TTL (RFC 2181 §8).
const MAX_TTL: u32 = 2_147_483_647;

pub(crate) fn schema() -> Schema {
    Schema::new(vec![
        PropertySpec::string("name")
            .describe("The name to register (a fully qualified domain name inside `zone`)")
            .required()
            .unique()
            .range(1, 254),
        PropertySpec::string("address")
            .describe("The IPv4 or IPv6 address `name` resolves to")
            .required()
            .min(1),
        PropertySpec::string("zone")
            .describe("The zone to update, as the DNS servers know it (`example.test`)")
            .required()
            .range(1, 254),
        PropertySpec::multi_string("servers")
            .describe(
                "DNS servers accepting updates for `zone`, as ip:port ([ipv6]:port; \
                 port 53 if omitted), tried in this order",
            )
            .required()
            .min(1),
        PropertySpec::string("tsig_key_name")
            .describe("The TSIG key's name, as in the servers' `key` statement")
            .required()
            .range(1, 254),
        PropertySpec::string("tsig_algorithm")
            .describe("The TSIG key's algorithm: hmac-sha256, hmac-sha384 or hmac-sha512")
            .default("hmac-sha256"),
        PropertySpec::string("tsig_secret")
            .describe("The TSIG key's secret, base64 (as `tsig-keygen` prints it)")
            .secret()
            .required()
            .min(1),
        PropertySpec::u32("ttl")
            .describe("The record's TTL in seconds")
            .default(60u32)
            .max(MAX_TTL),
        PropertySpec::duration("attempt_timeout")
            .describe("How long one attempt with one server may take before the next is tried")
            .default(Duration::from_millis(500))
            .range(10, 60_000),
        PropertySpec::duration("refresh_interval")
            .describe("How often the registration is sent again while online")
            .default(Duration::from_secs(300))
            .range(1_000, 7 * 24 * 3_600_000),
        PropertySpec::bool("check_interface")
            .describe("looks_alive and is_alive require `address` on a local interface")
            .default(true),
    ])
}

/// A resource's validated configuration.
pub(crate) struct Config {
    pub(crate) name: Name,
    pub(crate) address: IpAddr,
    pub(crate) zone: Name,
    pub(crate) servers: Vec<SocketAddr>,
    pub(crate) key: TSigner,
    pub(crate) ttl: u32,
    pub(crate) attempt_timeout: Duration,
    pub(crate) refresh_interval: Duration,
    pub(crate) check_interface: bool,
}

impl fmt::Debug for Config {
    // By hand: the key's secret is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("name", &self.name.to_ascii())
            .field("address", &self.address)
            .field("zone", &self.zone.to_ascii())
            .field("servers", &self.servers)
            .field("tsig_key_name", &self.key.signer_name().to_ascii())
            .field("ttl", &self.ttl)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("refresh_interval", &self.refresh_interval)
            .field("check_interface", &self.check_interface)
            .finish_non_exhaustive()
    }
}

fn parse_name(property: &str, text: &str) -> Result<Name, PropertyError> {
    let text = text.trim();
    let mut name = Name::from_utf8(text).map_err(|e| {
        PropertyError::invalid(property, format!("{text:?} is not a domain name: {e}"))
    })?;
    if name.num_labels() == 0 {
        return Err(PropertyError::invalid(
            property,
            format!("{text:?} is the root, not a domain name"),
        ));
    }
    name.set_fqdn(true);
    Ok(name)
}

fn parse_address(text: &str) -> Result<IpAddr, PropertyError> {
    text.trim().parse().map_err(|_| {
        PropertyError::invalid(
            "address",
            format!("{text:?} is not an IPv4 or IPv6 address"),
        )
    })
}

fn parse_servers(list: &[String]) -> Result<Vec<SocketAddr>, PropertyError> {
    let parse = |entry: &str| {
        let entry = entry.trim();
        entry.parse::<SocketAddr>().ok().or_else(|| {
            let ip = entry.parse::<IpAddr>().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
    };
    let mut servers = Vec::with_capacity(list.len());
    let mut bad = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        match parse(entry) {
            Some(s) => servers.push(s),
            None => bad.push(format!("entry {} {entry:?}", i + 1)),
        }
    }
    if bad.is_empty() {
        Ok(servers)
    } else {
        Err(PropertyError::invalid(
            "servers",
            format!(
                "{} is not an IP address with a port (ip:port, [ipv6]:port)",
                bad.join(", ")
            ),
        ))
    }
}

fn parse_algorithm(text: &str) -> Result<TsigAlgorithm, PropertyError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "hmac-sha256" => Ok(TsigAlgorithm::HmacSha256),
        "hmac-sha384" => Ok(TsigAlgorithm::HmacSha384),
        "hmac-sha512" => Ok(TsigAlgorithm::HmacSha512),
        _ => Err(PropertyError::invalid(
            "tsig_algorithm",
            format!(
                "unsupported TSIG algorithm {text:?}; supported: {}",
                SUPPORTED_TSIG_ALGORITHMS.join(", ")
            ),
        )),
    }
}

fn parse_secret(text: &str) -> Result<Vec<u8>, PropertyError> {
    // The secret is never echoed in a message.
    let secret = data_encoding::BASE64
        .decode(text.trim().as_bytes())
        .map_err(|e| {
            PropertyError::invalid(
                "tsig_secret",
                format!(
                    "not valid base64 ({e}); give it as `tsig-keygen` prints it in \
                     `secret \"...\";`"
                ),
            )
        })?;
    if secret.is_empty() {
        return Err(PropertyError::invalid(
            "tsig_secret",
            "decodes to an empty key",
        ));
    }
    Ok(secret)
}

impl Config {
    /// Checks `properties` (already validated against [`schema`], defaults
    /// filled in) beyond the schema, naming every property that is wrong.
    pub(crate) fn from_properties(p: &Properties) -> Result<Config, PropertyErrors> {
        let mut errors = Vec::new();
        fn keep<T>(errors: &mut Vec<PropertyError>, r: Result<T, PropertyError>) -> Option<T> {
            r.map_err(|e| errors.push(e)).ok()
        }

        let name = keep(
            &mut errors,
            p.str("name").and_then(|t| parse_name("name", t)),
        );
        let zone = keep(
            &mut errors,
            p.str("zone").and_then(|t| parse_name("zone", t)),
        );
        let address = keep(&mut errors, p.str("address").and_then(parse_address));
        let servers = keep(&mut errors, p.strings("servers").and_then(parse_servers));
        let key_name = keep(
            &mut errors,
            p.str("tsig_key_name")
                .and_then(|t| parse_name("tsig_key_name", t)),
        );
        let algorithm = keep(
            &mut errors,
            p.str("tsig_algorithm").and_then(parse_algorithm),
        );
        let secret = keep(&mut errors, p.str("tsig_secret").and_then(parse_secret));
        let ttl = keep(&mut errors, p.u32("ttl"));
        let attempt_timeout = keep(&mut errors, p.duration("attempt_timeout"));
        let refresh_interval = keep(&mut errors, p.duration("refresh_interval"));
        let check_interface = keep(&mut errors, p.bool("check_interface"));

        if let (Some(name), Some(zone)) = (&name, &zone)
            && !zone.zone_of(name)
        {
            errors.push(PropertyError::invalid(
                "name",
                format!("{name} is not inside the zone {zone}"),
            ));
        }
        let key = match (key_name, algorithm, secret) {
            (Some(key_name), Some(algorithm), Some(secret)) => {
                match TSigner::new(secret, algorithm, key_name, TSIG_FUDGE) {
                    Ok(key) => Some(key),
                    Err(e) => {
                        errors.push(PropertyError::invalid("tsig_algorithm", e.to_string()));
                        None
                    }
                }
            }
            _ => None,
        };
        match (
            name,
            address,
            zone,
            servers,
            key,
            ttl,
            attempt_timeout,
            refresh_interval,
            check_interface,
        ) {
            (
                Some(name),
                Some(address),
                Some(zone),
                Some(servers),
                Some(key),
                Some(ttl),
                Some(attempt_timeout),
                Some(refresh_interval),
                Some(check_interface),
            ) if errors.is_empty() => Ok(Config {
                name,
                address,
                zone,
                servers,
                key,
                ttl,
                attempt_timeout,
                refresh_interval,
                check_interface,
            }),
            _ => {
                errors.sort_by(|a, b| a.property.cmp(&b.property));
                Err(PropertyErrors(errors))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Properties {
        let mut p = Properties::new();
        p.insert("name", "web.example.test");
        p.insert("address", "127.0.0.1");
        p.insert("zone", "example.test");
        p.insert(
            "servers",
            vec!["127.0.0.1:5300".to_owned(), "::1".to_owned()],
        );
        p.insert("tsig_key_name", "ck-key");
        p.insert(
            "tsig_secret",
            "LZmoQ2uRL3O3uFHLe8R7yiXsfeLuHT+IXXQpbKgE3Bg=",
        );
        p
    }

    fn check(p: &Properties) -> Result<Config, PropertyErrors> {
        Config::from_properties(&schema().validate(p).unwrap())
    }

    #[test]
    fn schema_is_consistent() {
        schema().check_self().unwrap();
    }

    #[test]
    fn valid_properties_give_a_config_with_defaults() {
        let c = check(&valid()).unwrap();
        assert_eq!(c.name.to_ascii(), "web.example.test.");
        assert_eq!(c.zone.to_ascii(), "example.test.");
        assert_eq!(
            c.servers,
            vec![
                "127.0.0.1:5300".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(c.ttl, 60);
        assert_eq!(c.attempt_timeout, Duration::from_millis(500));
        assert_eq!(c.refresh_interval, Duration::from_secs(300));
        assert!(c.check_interface);
        assert_eq!(*c.key.algorithm(), TsigAlgorithm::HmacSha256);
        let debug = format!("{c:?}");
        assert!(!debug.contains("LZmo"), "the secret leaks: {debug}");
    }

    #[test]
    fn every_bad_property_is_named_with_its_problem() {
        let mut p = valid();
        p.insert("address", "not-an-ip");
        p.insert(
            "servers",
            vec!["127.0.0.1:53".to_owned(), "dns.example".to_owned()],
        );
        p.insert("tsig_algorithm", "hmac-md5");
        p.insert("tsig_secret", "not base64!");
        p.insert("name", "web.other.test");
        let e = check(&p).unwrap_err().to_string();
        assert_eq!(
            e,
            "property `address`: \"not-an-ip\" is not an IPv4 or IPv6 address\n\
             property `name`: web.other.test. is not inside the zone example.test.\n\
             property `servers`: entry 2 \"dns.example\" is not an IP address with a port (ip:port, [ipv6]:port)\n\
             property `tsig_algorithm`: unsupported TSIG algorithm \"hmac-md5\"; supported: hmac-sha256, hmac-sha384, hmac-sha512\n\
             property `tsig_secret`: not valid base64 (invalid length at 8); give it as `tsig-keygen` prints it in `secret \"...\";`"
        );
        assert!(!e.contains("not base64!"), "the secret is echoed");
    }

    #[test]
    fn algorithms_are_case_insensitive_and_the_secret_must_not_be_empty() {
        let mut p = valid();
        p.insert("tsig_algorithm", "HMAC-SHA512");
        assert_eq!(
            *check(&p).unwrap().key.algorithm(),
            TsigAlgorithm::HmacSha512
        );
        p.insert("tsig_secret", "");
        let errors = schema().validate(&p).unwrap_err();
        assert!(errors.for_property("tsig_secret").is_some());
    }
}
