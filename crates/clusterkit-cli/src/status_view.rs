//! `clusterkit status`: every resource in a table, or one resource in full
//! (`status NAME`: since when, desired, health and its reason, restarts,
//! isolation and monitor, the last failure, its properties with secrets
//! hidden); `--watch` redraws on every event; `--json` prints the
//! versioned schema `docs/CONFIG.md` documents.

use std::io::{IsTerminal, Write as _};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::Target;
use crate::control::{self, STATUS_SCHEMA};
use crate::timeline;

/// Options of `clusterkit status`.
#[derive(clap::Args)]
pub(crate) struct StatusArgs {
    /// Show this resource in full (its properties too, secrets hidden).
    resource: Option<String>,
    #[command(flatten)]
    target: Target,
    /// Print JSON (`"schema": 1`, documented in docs/CONFIG.md).
    #[arg(long)]
    json: bool,
    /// Redraw whenever something changes, until interrupted.
    #[arg(long, short, conflicts_with = "json")]
    watch: bool,
}

/// Events within this long of one another are one redraw of `--watch`.
const REDRAW_COALESCE: Duration = Duration::from_millis(100);

/// Runs `clusterkit status`.
pub(crate) fn run(args: &StatusArgs) -> Result<(), String> {
    let socket = args.target.socket()?;
    if !args.watch {
        let text = render(args, &socket)?;
        print!("{text}");
        return Ok(());
    }
    // Redraw on events, not on a timer: follow the live stream.
    let (tx, changes) = mpsc::channel();
    let follow_socket = socket.clone();
    std::thread::spawn(move || {
        let follow = json!({"command": "events", "follow": true, "past": false});
        let _ = control::request(&follow_socket, follow, |_| tx.send(()).is_ok());
    });
    let tty = std::io::stdout().is_terminal();
    let mut out = std::io::stdout().lock();
    loop {
        let text = render(args, &socket)?;
        let frame = if tty {
            format!("\x1b[H\x1b[2J{text}")
        } else {
            format!("{text}\n")
        };
        if out
            .write_all(frame.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            return Ok(());
        }
        if changes.recv().is_err() {
            return Err("the host stopped".into());
        }
        // A burst of events is one redraw: take what follows within a
        // moment of the first.
        let until = Instant::now() + REDRAW_COALESCE;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || changes.recv_timeout(left).is_err() {
                break;
            }
        }
    }
}

fn render(args: &StatusArgs, socket: &std::path::Path) -> Result<String, String> {
    let reply = control::call(socket, json!({"command": "status"})).map_err(|e| e.to_string())?;
    let resources = reply["resources"].as_array().cloned().unwrap_or_default();
    match &args.resource {
        None if args.json => Ok(format!(
            "{}\n",
            json!({"schema": STATUS_SCHEMA, "resources": resources})
        )),
        None => Ok(table(&resources)),
        Some(name) => {
            let mut one = resources
                .into_iter()
                .find(|r| r["name"] == name.as_str())
                .ok_or_else(|| format!("no resource named `{name}`"))?;
            let props = control::call(socket, json!({"command": "properties", "resource": name}))
                .map_err(|e| e.to_string())?;
            one["properties"] = props["properties"].clone();
            if args.json {
                Ok(format!(
                    "{}\n",
                    json!({"schema": STATUS_SCHEMA, "resource": one})
                ))
            } else {
                Ok(explain(&one))
            }
        }
    }
}

/// How long ago `ts` (RFC 3339) was: `3m12s`.
fn age(ts: &Value) -> String {
    let Some(t) = ts.as_str().and_then(timeline::parse_rfc3339) else {
        return "-".into();
    };
    let secs = SystemTime::now()
        .duration_since(t)
        .unwrap_or_default()
        .as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86_400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The last check's round trip: `0.21 ms`.
fn latency(r: &Value) -> String {
    r["last_check_latency_us"]
        .as_u64()
        .map_or("-".to_owned(), |us| format!("{:.2} ms", us as f64 / 1000.0))
}

/// The last health result with its reason; `None` before the first check.
fn health(r: &Value) -> Option<String> {
    let h = r["last_health"].as_str()?;
    Some(match r["last_health_reason"].as_str() {
        Some(reason) => format!("{h}: {reason}"),
        None => h.to_owned(),
    })
}

fn table(resources: &[Value]) -> String {
    let mut out = format!(
        "{:<20} {:<16} {:<10} {:<16} {:>7} {:<8} {:<20} {:>8} {:>8} {:>10}  {}\n",
        "RESOURCE",
        "TYPE",
        "GROUP",
        "STATE",
        "SINCE",
        "DESIRED",
        "MONITOR",
        "PID",
        "RESTARTS",
        "LAST CHECK",
        "HEALTH"
    );
    let mut failures = Vec::new();
    for r in resources {
        out.push_str(&format!(
            "{:<20} {:<16} {:<10} {:<16} {:>7} {:<8} {:<20} {:>8} {:>8} {:>10}  {}\n",
            text(&r["name"]),
            text(&r["type"]),
            text(&r["group"]),
            text(&r["state"]),
            age(&r["since"]),
            text(&r["desired"]),
            text(&r["monitor"]),
            text(&r["monitor_pid"]),
            // In the current period, and over the resource's life.
            format!(
                "{}/{}",
                text(&r["restarts_in_period"]),
                text(&r["restarts"])
            ),
            latency(r),
            health(r).unwrap_or_else(|| "-".into())
        ));
        if let Some(f) = r["last_failure"].as_object() {
            failures.push(format!(
                "  {}: failed {} ago ({}): {}\n",
                text(&r["name"]),
                age(&f["at"]),
                text(&f["at"]),
                text(&f["reason"])
            ));
        }
    }
    if !failures.is_empty() {
        out.push_str("\nLast failures:\n");
        out.extend(failures);
    }
    out
}

/// One resource in full.
fn explain(r: &Value) -> String {
    let mut out = format!(
        "{} (type {}, group {})\n",
        text(&r["name"]),
        text(&r["type"]),
        text(&r["group"])
    );
    let mut line = |k: &str, v: String| out.push_str(&format!("  {k:<14} {v}\n"));
    line(
        "state:",
        format!(
            "{} for {} (since {})",
            text(&r["state"]),
            age(&r["since"]),
            text(&r["since"])
        ),
    );
    line("desired:", text(&r["desired"]));
    let isolation = if r["isolation_lifted_at_next_open"] == true {
        "a monitor of its own until its next open (the isolation is lifted)"
    } else if r["separate_monitor"] == true {
        "a monitor of its own (isolated; `clusterkit cleanup` lifts it)"
    } else {
        "shared with its placement group"
    };
    line(
        "monitor:",
        format!(
            "{}, pid {}: {isolation}",
            text(&r["monitor"]),
            text(&r["monitor_pid"])
        ),
    );
    line(
        "health:",
        format!(
            "{} ({} checks, {} degraded, last took {})",
            health(r).unwrap_or_else(|| "not checked yet".into()),
            text(&r["health_checks"]),
            text(&r["degraded_count"]),
            latency(r)
        ),
    );
    line(
        "restarts:",
        format!(
            "{} in the current period, {} in all",
            text(&r["restarts_in_period"]),
            text(&r["restarts"])
        ),
    );
    match r["last_failure"].as_object() {
        Some(f) => line(
            "last failure:",
            format!(
                "{} ago ({}): {}",
                age(&f["at"]),
                text(&f["at"]),
                text(&f["reason"])
            ),
        ),
        None => line("last failure:", "none".into()),
    }
    if !r["next_restart"].is_null() {
        line("next restart:", text(&r["next_restart"]));
    }
    out.push_str("  properties:\n");
    match r["properties"].as_object() {
        Some(props) if !props.is_empty() => {
            for (k, v) in props {
                out.push_str(&format!("    {k} = {}\n", text(v)));
            }
        }
        _ => out.push_str("    (none validated yet)\n"),
    }
    out
}
