//! Finding an agent and reading its `meta-data`: the parameters it takes
//! (name, type, required, default) and the timeouts it advises.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clusterkit::{Error, PropertyError, Result};

/// The kind of an agent parameter's value, as its meta-data declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParameterType {
    /// `string` (and any type this crate does not know, as Pacemaker does).
    String,
    /// `integer`: an optionally signed decimal number.
    Integer,
    /// `boolean`: Pacemaker's spellings (`true`/`false`, `yes`/`no`,
    /// `on`/`off`, `1`/`0`, `y`/`n`).
    Boolean,
}

/// One parameter of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    /// Its name, as `OCF_RESKEY_<name>` carries it.
    pub name: String,
    /// The value's type.
    pub kind: ParameterType,
    /// The agent refuses to run without it.
    pub required: bool,
    /// The default the agent applies itself (for display only).
    pub default: Option<String>,
}

/// What an agent's `meta-data` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaData {
    /// The agent's name attribute (`Dummy`, `IPaddr2`).
    pub name: String,
    /// Its parameters, in the order of the meta-data.
    pub parameters: Vec<Parameter>,
    /// Advised timeouts per action name (`start`, `stop`, `monitor`).
    pub timeouts: BTreeMap<String, Duration>,
}

/// Where an agent is and how Pacemaker would name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPath {
    /// The executable.
    pub path: PathBuf,
    /// Its provider (`heartbeat`), the directory it lives in.
    pub provider: String,
    /// Its type (`Dummy`), the file name.
    pub kind: String,
}

/// Resolves the `agent` property under `ocf_root`: `PROVIDER/TYPE`,
/// `ocf:PROVIDER:TYPE`, or an absolute path to an executable.
pub fn locate(agent: &str, ocf_root: &Path) -> Result<AgentPath> {
    let path = if agent.starts_with('/') {
        PathBuf::from(agent)
    } else {
        let spec = agent.strip_prefix("ocf:").unwrap_or(agent);
        let parts: Vec<&str> = spec.split([':', '/']).collect();
        match parts[..] {
            [provider, kind]
                if [provider, kind]
                    .iter()
                    .all(|p| !p.is_empty() && *p != "." && *p != "..") =>
            {
                ocf_root.join("resource.d").join(provider).join(kind)
            }
            _ => {
                return Err(PropertyError::invalid(
                    "agent",
                    format!(
                        "{agent:?} is not PROVIDER/TYPE, ocf:PROVIDER:TYPE or an absolute path"
                    ),
                )
                .into());
            }
        }
    };
    let meta = std::fs::metadata(&path).map_err(|e| {
        Error::NotFound(format!(
            "property `agent`: {} ({agent}): {e} (is `resource-agents` installed, or `ocf_root` right?)",
            path.display()
        ))
    })?;
    if !meta.is_file() || std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 == 0
    {
        return Err(PropertyError::invalid(
            "agent",
            format!("{} is not an executable file", path.display()),
        )
        .into());
    }
    let name = |p: Option<&Path>| {
        p.and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    Ok(AgentPath {
        provider: name(path.parent()),
        kind: name(Some(&path)),
        path,
    })
}

/// Parses an agent's `meta-data` output. `agent` names it in errors.
pub fn parse_meta_data(agent: &str, xml: &str) -> Result<MetaData> {
    let unusable = |why: String| Error::InvalidInput(format!("agent {agent}: meta-data {why}"));
    // Agents declare `<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">`.
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(xml, options)
        .map_err(|e| unusable(format!("is not XML: {e}")))?;
    let root = doc.root_element();
    if root.tag_name().name() != "resource-agent" {
        return Err(unusable(format!(
            "has root element <{}>, not <resource-agent>",
            root.tag_name().name()
        )));
    }
    let mut parameters = Vec::new();
    for p in child(root, "parameters")
        .into_iter()
        .flat_map(|ps| ps.children())
        .filter(|c| c.is_element() && c.tag_name().name() == "parameter")
    {
        let name = p
            .attribute("name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| unusable("has a <parameter> without a name".into()))?;
        let content = child(p, "content");
        let kind = match content.and_then(|c| c.attribute("type")) {
            Some("integer") => ParameterType::Integer,
            Some("boolean") => ParameterType::Boolean,
            _ => ParameterType::String,
        };
        parameters.push(Parameter {
            name: name.to_owned(),
            kind,
            required: is_true(p.attribute("required")),
            default: content
                .and_then(|c| c.attribute("default"))
                .map(str::to_owned),
        });
    }
    let mut timeouts = BTreeMap::new();
    for a in child(root, "actions")
        .into_iter()
        .flat_map(|a| a.children())
        .filter(|c| c.is_element() && c.tag_name().name() == "action")
    {
        if let (Some(name), Some(timeout)) = (
            a.attribute("name"),
            a.attribute("timeout").and_then(parse_interval),
        ) {
            // The first one wins: an agent may list `monitor` per depth.
            timeouts.entry(name.to_owned()).or_insert(timeout);
        }
    }
    Ok(MetaData {
        name: root.attribute("name").unwrap_or(agent).to_owned(),
        parameters,
        timeouts,
    })
}

fn child<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    name: &str,
) -> Option<roxmltree::Node<'a, 'input>> {
    node.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn is_true(value: Option<&str>) -> bool {
    parse_bool(value.unwrap_or("0")) == Some(true)
}

/// Pacemaker's boolean spellings.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" => Some(true),
        "0" | "false" | "no" | "off" | "n" => Some(false),
        _ => None,
    }
}

/// An OCF interval: a number with an optional unit (`ms`, `s`, `m`, `h`);
/// seconds without one.
pub fn parse_interval(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let ms = match unit.trim() {
        "" | "s" | "sec" => number.checked_mul(1000)?,
        "ms" | "msec" => number,
        "m" | "min" => number.checked_mul(60_000)?,
        "h" | "hr" => number.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

impl MetaData {
    /// Checks `name=value` assignments (the `parameters` property) against
    /// the agent's parameters: each well-formed, known, given once, of the
    /// right type, and every required one present. Returns the pairs, or an
    /// error naming `parameters` and every problem.
    pub fn check(&self, agent: &str, assignments: &[String]) -> Result<Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mut pairs: Vec<(String, String)> = Vec::new();
        for entry in assignments {
            let Some((name, value)) = entry.split_once('=') else {
                problems.push(format!("{entry:?} is not NAME=VALUE"));
                continue;
            };
            let Some(param) = self.parameters.iter().find(|p| p.name == name) else {
                let known: Vec<&str> = self.parameters.iter().map(|p| p.name.as_str()).collect();
                problems.push(format!(
                    "{agent} has no parameter {name:?} (it takes: {})",
                    known.join(", ")
                ));
                continue;
            };
            if pairs.iter().any(|(n, _)| n == name) {
                problems.push(format!("{name:?} is given twice"));
                continue;
            }
            let bad_type = match param.kind {
                ParameterType::Integer => value.trim().parse::<i64>().is_err(),
                ParameterType::Boolean => parse_bool(value).is_none(),
                ParameterType::String => false,
            };
            if bad_type {
                problems.push(format!(
                    "{name} = {value:?} is not {}",
                    match param.kind {
                        ParameterType::Integer => "an integer",
                        _ => "a boolean",
                    }
                ));
                continue;
            }
            pairs.push((name.to_owned(), value.to_owned()));
        }
        for param in self.parameters.iter().filter(|p| p.required) {
            if !pairs.iter().any(|(n, _)| *n == param.name) {
                problems.push(format!(
                    "{agent} requires parameter {:?} (give \"{}=...\")",
                    param.name, param.name
                ));
            }
        }
        if problems.is_empty() {
            Ok(pairs)
        } else {
            Err(PropertyError::invalid("parameters", problems.join("; ")).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<?xml version="1.0"?>
<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">
<resource-agent name="Demo" version="1.0">
<parameters>
<parameter name="ip" unique="1" required="1"><content type="string"/></parameter>
<parameter name="cidr_netmask"><content type="integer" default=""/></parameter>
<parameter name="lvs_support"><content type="boolean" default="false"/></parameter>
</parameters>
<actions>
<action name="start" timeout="20s"/>
<action name="monitor" timeout="20s" interval="10s" depth="0"/>
<action name="monitor" timeout="40s" interval="10s" depth="10"/>
<action name="stop" timeout="2m"/>
</actions>
</resource-agent>"#;

    #[test]
    fn meta_data_gives_parameters_and_timeouts() {
        let md = parse_meta_data("demo", XML).unwrap();
        assert_eq!(md.name, "Demo");
        assert_eq!(md.parameters.len(), 3);
        assert!(md.parameters[0].required);
        assert_eq!(md.parameters[1].kind, ParameterType::Integer);
        assert_eq!(md.parameters[2].default.as_deref(), Some("false"));
        assert_eq!(md.timeouts["monitor"], Duration::from_secs(20));
        assert_eq!(md.timeouts["stop"], Duration::from_secs(120));
    }

    #[test]
    fn assignments_are_checked_against_the_meta_data() {
        let md = parse_meta_data("demo", XML).unwrap();
        let ok = md
            .check("demo", &["ip=10.0.0.1".into(), "cidr_netmask=24".into()])
            .unwrap();
        assert_eq!(ok[1], ("cidr_netmask".into(), "24".into()));
        let err = md
            .check(
                "demo",
                &[
                    "cidr_netmask=wide".into(),
                    "colour=blue".into(),
                    "lvs_support=maybe".into(),
                    "junk".into(),
                ],
            )
            .unwrap_err()
            .to_string();
        for needle in [
            "parameters",
            "cidr_netmask = \"wide\" is not an integer",
            "no parameter \"colour\"",
            "lvs_support = \"maybe\" is not a boolean",
            "\"junk\" is not NAME=VALUE",
            "requires parameter \"ip\"",
        ] {
            assert!(err.contains(needle), "{needle:?} missing in {err}");
        }
    }

    #[test]
    fn unusable_meta_data_is_a_clear_error() {
        let err = parse_meta_data("x/y", "usage: y {start|stop}").unwrap_err();
        assert!(err.to_string().contains("agent x/y: meta-data is not XML"));
        let err = parse_meta_data("x/y", "<html/>").unwrap_err();
        assert!(err.to_string().contains("not <resource-agent>"), "{err}");
    }

    #[test]
    fn intervals_take_units() {
        assert_eq!(parse_interval("20s"), Some(Duration::from_secs(20)));
        assert_eq!(parse_interval("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_interval("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_interval("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_interval("soon"), None);
    }

    #[test]
    fn agents_are_located_by_provider_and_type() {
        let err = locate("Dummy", Path::new("/usr/lib/ocf")).unwrap_err();
        assert!(err.to_string().contains("not PROVIDER/TYPE"), "{err}");
        let err = locate("heartbeat/../x", Path::new("/nonexistent")).unwrap_err();
        assert!(err.to_string().contains("not PROVIDER/TYPE"), "{err}");
        let err = locate("ocf:acme:Nothing", Path::new("/nonexistent")).unwrap_err();
        assert!(
            err.to_string()
                .contains("/nonexistent/resource.d/acme/Nothing"),
            "{err}"
        );
    }
}
