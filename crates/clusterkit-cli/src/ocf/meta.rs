//! OCF meta-data generated from a type's description, schema and advised
//! operation timeouts.
//!
//! The agent declares OCF 1.1: `reloadable` parameters and a `reload-agent`
//! action when the schema has properties that apply live
//! ([`Apply::Live`]); everything else is as `ra-api-1.dtd` describes.

use std::fmt::Write as _;
use std::time::Duration;

use clusterkit::{Apply, OperationTimeouts, PropertyKind, PropertySpec, TypeDescription, Value};

/// The OCF meta-data of a type.
pub(crate) fn meta_data(d: &TypeDescription, timeouts: &OperationTimeouts) -> String {
    let mut x = String::new();
    let _ = writeln!(x, "<?xml version=\"1.0\"?>");
    if reloadable(d) {
        // OCF 1.1's additions, declared in the internal subset (which takes
        // precedence over ra-api-1.dtd), so validators of the OCF 1.0 DTD
        // such as ocf-tester still accept the document.
        let _ = writeln!(
            x,
            "<!DOCTYPE resource-agent SYSTEM \"ra-api-1.dtd\" [\n\
             <!ATTLIST parameter reloadable (1|0) \"0\">\n\
             <!ATTLIST action name (start|stop|recover|monitor|restart|migrate_to|migrate_from|\
             promote|demote|notify|status|reload|reload-agent|meta-data|usage|methods|validate-all) \
             #REQUIRED>\n]>"
        );
    } else {
        let _ = writeln!(x, "<!DOCTYPE resource-agent SYSTEM \"ra-api-1.dtd\">");
    }
    let _ = writeln!(
        x,
        "<resource-agent name=\"{}\" version=\"{}\">",
        escape(&d.name),
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(x, "<version>1.1</version>");
    let _ = writeln!(
        x,
        "<longdesc lang=\"en\">{}</longdesc>",
        escape(&type_longdesc(d))
    );
    let _ = writeln!(
        x,
        "<shortdesc lang=\"en\">{}</shortdesc>",
        escape(&shortdesc(
            &d.description,
            &format!("clusterkit {}", d.name)
        ))
    );
    let _ = writeln!(x, "<parameters>");
    for spec in d.schema.specs() {
        parameter(&mut x, spec);
    }
    let _ = writeln!(x, "</parameters>");
    let _ = writeln!(x, "<actions>");
    // Seconds, as every agent's meta-data and Pacemaker's documentation
    // write operation timeouts.
    let t = |d: Duration| {
        if d.as_millis().is_multiple_of(1000) {
            format!("{}s", d.as_secs())
        } else {
            format!("{}ms", d.as_millis())
        }
    };
    let _ = writeln!(
        x,
        "<action name=\"start\" timeout=\"{}\"/>",
        t(timeouts.start)
    );
    let _ = writeln!(
        x,
        "<action name=\"stop\" timeout=\"{}\"/>",
        t(timeouts.stop)
    );
    let _ = writeln!(
        x,
        "<action name=\"monitor\" timeout=\"{}\" interval=\"10s\" depth=\"0\"/>",
        t(timeouts.monitor)
    );
    let _ = writeln!(
        x,
        "<action name=\"monitor\" timeout=\"{}\" interval=\"60s\" depth=\"10\"/>",
        t(timeouts.deep_monitor)
    );
    if reloadable(d) {
        let _ = writeln!(
            x,
            "<action name=\"reload-agent\" timeout=\"{}\"/>",
            t(timeouts.monitor)
        );
    }
    let _ = writeln!(x, "<action name=\"meta-data\" timeout=\"5s\"/>");
    let _ = writeln!(
        x,
        "<action name=\"validate-all\" timeout=\"{}\"/>",
        t(timeouts.monitor)
    );
    let _ = writeln!(x, "</actions>");
    let _ = writeln!(x, "</resource-agent>");
    x
}

/// Whether any property of the type applies to a running resource.
pub(crate) fn reloadable(d: &TypeDescription) -> bool {
    d.schema.specs().iter().any(|s| s.apply == Apply::Live)
}

fn type_longdesc(d: &TypeDescription) -> String {
    let mut text = if d.description.is_empty() {
        format!("The clusterkit resource type `{}`.", d.name)
    } else {
        sentence(&d.description)
    };
    let mut traits = Vec::new();
    for (flag, what) in [
        (
            clusterkit::Characteristics::REATTACH,
            "each action adopts the running workload instead of restarting it",
        ),
        (
            clusterkit::Characteristics::QUORUM,
            "the type can arbitrate for quorum",
        ),
        (
            clusterkit::Characteristics::SINGLE_GROUP_INSTANCE,
            "at most one resource of this type per group",
        ),
        (
            clusterkit::Characteristics::NOT_PREEMPTABLE,
            "a resource is never stopped to make room for another",
        ),
    ] {
        if d.characteristics.contains(flag) {
            traits.push(what);
        }
    }
    if !traits.is_empty() {
        let _ = write!(text, " Characteristics: {}.", traits.join("; "));
    }
    text.push_str(
        " Run by `clusterkit ocf agent`; monitor depth 0 is the cheap check \
         (looks_alive), depth 10 the thorough one (is_alive).",
    );
    text
}

fn parameter(x: &mut String, spec: &PropertySpec) {
    let (content_type, note) = match spec.kind {
        PropertyKind::Bool => ("boolean", String::new()),
        PropertyKind::U32 | PropertyKind::U64 | PropertyKind::I64 => ("integer", String::new()),
        PropertyKind::Duration => (
            "time",
            " A duration: a number with a unit (500ms, 30s, 5m, 1h); a bare number is in \
             milliseconds."
                .into(),
        ),
        PropertyKind::MultiString => (
            "string",
            " A list: entries separated by commas, or a JSON array of strings \
             ([\"-drive\", \"file=/srv/vm.img,if=virtio\"]) when an entry holds a comma."
                .into(),
        ),
        PropertyKind::Bytes => (
            "string",
            " Bytes, in hexadecimal (two digits a byte).".into(),
        ),
        PropertyKind::String => ("string", String::new()),
    };
    let bounds = bounds(spec);
    let unique = u8::from(spec.unique);
    let _ = write!(
        x,
        "<parameter name=\"{}\" unique=\"{unique}\" required=\"{}\"",
        escape(&spec.name),
        u8::from(spec.required)
    );
    if spec.apply == Apply::Live {
        let _ = write!(x, " reloadable=\"1\"");
    }
    let _ = writeln!(x, ">");
    let long = if spec.description.is_empty() {
        format!("The property `{}` ({}).", spec.name, spec.kind)
    } else {
        sentence(&spec.description)
    };
    let _ = writeln!(
        x,
        "<longdesc lang=\"en\">{}{note}{bounds}</longdesc>",
        escape(&long)
    );
    let _ = writeln!(
        x,
        "<shortdesc lang=\"en\">{}</shortdesc>",
        escape(&shortdesc(&spec.description, &spec.name))
    );
    match &spec.default {
        Some(v) => {
            let _ = writeln!(
                x,
                "<content type=\"{content_type}\" default=\"{}\"/>",
                escape(&text(v))
            );
        }
        None => {
            let _ = writeln!(x, "<content type=\"{content_type}\"/>");
        }
    }
    let _ = writeln!(x, "</parameter>");
}

/// The bounds in words, with the unit of the kind (a length for strings).
fn bounds(spec: &PropertySpec) -> String {
    let show = |n: i128| match spec.kind {
        PropertyKind::Duration => u64::try_from(n)
            .map(|ms| ocf_duration(Duration::from_millis(ms)))
            .unwrap_or_else(|_| n.to_string()),
        _ => n.to_string(),
    };
    let what = match spec.kind {
        PropertyKind::String | PropertyKind::Bytes => "length ",
        PropertyKind::MultiString => "number of entries ",
        _ => "",
    };
    let mut out = String::new();
    match (spec.min, spec.max) {
        (Some(min), Some(max)) => {
            let _ = write!(out, " Allowed {what}{} to {}.", show(min), show(max));
        }
        (Some(min), None) => {
            let _ = write!(out, " Minimum {what}{}.", show(min));
        }
        (None, Some(max)) => {
            let _ = write!(out, " Maximum {what}{}.", show(max));
        }
        (None, None) => {}
    }
    out
}

/// `description` as a sentence: capitalised, ending in a full stop.
fn sentence(description: &str) -> String {
    let mut s = description.trim().to_owned();
    if !s.ends_with(['.', '!', '?']) {
        s.push('.');
    }
    s
}

/// A short description: the description's first clause (up to a `;`, `:`,
/// `(` or sentence end), at most 60 characters; `fallback` when empty.
fn shortdesc(description: &str, fallback: &str) -> String {
    let first = description
        .split(['(', ';', ':'])
        .next()
        .unwrap_or_default()
        .split(". ")
        .next()
        .unwrap_or_default()
        .trim()
        .trim_end_matches([',', '.']);
    if first.is_empty() {
        return fallback.to_owned();
    }
    if first.chars().count() <= 60 {
        return first.to_owned();
    }
    let mut cut: String = first.chars().take(57).collect();
    if let Some(space) = cut.rfind(' ') {
        cut.truncate(space);
    }
    cut.push_str("...");
    cut
}

/// A duration as OCF time text, in the largest unit that is exact.
pub(crate) fn ocf_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".into()
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A value as OCF parameter text (what the agent parses back).
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::MultiString(list) if list.iter().any(|e| e.contains(',')) => {
            serde_json::to_string(list).unwrap_or_default()
        }
        Value::MultiString(list) => list.join(","),
        Value::Bytes(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
        Value::Duration(d) => ocf_duration(*d),
        Value::Bool(b) => b.to_string(),
        Value::U32(n) => n.to_string(),
        Value::U64(n) => n.to_string(),
        Value::I64(n) => n.to_string(),
    }
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_the_largest_exact_unit() {
        assert_eq!(ocf_duration(Duration::ZERO), "0s");
        assert_eq!(ocf_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(ocf_duration(Duration::from_secs(30)), "30s");
        assert_eq!(ocf_duration(Duration::from_secs(300)), "5m");
        assert_eq!(ocf_duration(Duration::from_secs(7200)), "2h");
    }

    #[test]
    fn shortdesc_is_the_first_clause() {
        assert_eq!(
            shortdesc("Directory of the state file", "x"),
            "Directory of the state file"
        );
        assert_eq!(
            shortdesc(
                "Who the reservation record names (at most 255 bytes); empty: <hostname>",
                "x"
            ),
            "Who the reservation record names"
        );
        assert_eq!(shortdesc("", "owner"), "owner");
        let long = shortdesc(&"word ".repeat(30), "x");
        assert!(long.len() <= 60 && long.ends_with("..."), "{long}");
    }

    #[test]
    fn lists_with_commas_become_json() {
        assert_eq!(
            text(&Value::MultiString(vec!["a".into(), "b".into()])),
            "a,b"
        );
        assert_eq!(
            text(&Value::MultiString(vec![
                "-drive".into(),
                "file=x,if=virtio".into()
            ])),
            r#"["-drive","file=x,if=virtio"]"#
        );
    }
}
