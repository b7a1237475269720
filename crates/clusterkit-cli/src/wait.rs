//! `clusterkit online`/`offline`: ask, then wait for the transition and
//! show it as it happens (the resource going pending, its own log lines,
//! failures and restarts), a spinner on a terminal, plain lines otherwise;
//! the outcome at the end, and a non-zero exit when it failed.
//!
//! Waiting is the client's: it follows the host's live events over the
//! control socket and reads the status of the resources involved (an
//! online brings the dependencies, an offline takes the dependents).

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write as _};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Target;
use crate::config::Config;
use crate::control;
use crate::timeline;

/// Options of `clusterkit online` and `offline`.
#[derive(clap::Args)]
pub(crate) struct TransitionArgs {
    /// The resource.
    resource: String,
    #[command(flatten)]
    target: Target,
    /// Return once the host has recorded the request, without waiting.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this long (`90s`, `5m`): the transition goes
    /// on in the host; the exit code says it did not finish.
    #[arg(long, default_value = "5m", value_parser = parse_timeout)]
    timeout: Duration,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    match clusterkit::PropertySpec::duration("timeout").parse(text) {
        Ok(clusterkit::Value::Duration(d)) => Ok(d),
        _ => Err(format!(
            "{text:?} is not a duration (milliseconds, or a number with ms, s, m or h)"
        )),
    }
}

/// Which way the resource goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// `online`.
    Online,
    /// `offline`.
    Offline,
}

impl Direction {
    fn command(self) -> &'static str {
        match self {
            Direction::Online => "online",
            Direction::Offline => "offline",
        }
    }
}

/// The resources a transition of `name` moves, from the config: with its
/// dependencies (online) or dependents (offline); `None` without a config.
fn involved(config: &Path, name: &str, direction: Direction) -> Option<BTreeSet<String>> {
    let config = Config::load(config).ok()?;
    let edges: Vec<(String, String)> = config
        .resources
        .iter()
        .flat_map(|r| {
            r.depends_on
                .iter()
                .map(|d| (r.name.get_ref().clone(), d.clone()))
        })
        .collect();
    let mut set = BTreeSet::from([name.to_owned()]);
    loop {
        let before = set.len();
        for (dependent, dependency) in &edges {
            match direction {
                Direction::Online if set.contains(dependent) => set.insert(dependency.clone()),
                Direction::Offline if set.contains(dependency) => set.insert(dependent.clone()),
                _ => false,
            };
        }
        if set.len() == before {
            return Some(set);
        }
    }
}

/// How the wait ended.
enum Outcome {
    Done,
    Failed(String),
}

/// What the statuses say of the transition: done, failed for good, or
/// still under way (`None`).
/// A failure counts only once the host has reacted to the request
/// (`settled`): before, the statuses may still show the failure the
/// request clears.
fn judge(
    statuses: &[Value],
    name: &str,
    involved: &BTreeSet<String>,
    direction: Direction,
    settled: bool,
) -> Option<Outcome> {
    let wanted = direction.command();
    let target = statuses.iter().find(|s| s["name"] == name)?;
    if target["state"] == wanted {
        return Some(Outcome::Done);
    }
    if !settled {
        return None;
    }
    // Failed and not to be restarted: only an operator moves it now.
    statuses
        .iter()
        .filter(|s| s["name"].as_str().is_some_and(|n| involved.contains(n)))
        .find(|s| s["state"] == "failed" && s["next_restart"].is_null() && s["desired"] == wanted)
        .map(|s| {
            let reason = s["last_failure"]["reason"]
                .as_str()
                .unwrap_or("no reason recorded");
            Outcome::Failed(format!(
                "`{}` failed and is not restarted: {reason} (see `clusterkit status {}`; \
                 `clusterkit cleanup {}` clears it)",
                s["name"].as_str().unwrap_or_default(),
                s["name"].as_str().unwrap_or_default(),
                s["name"].as_str().unwrap_or_default(),
            ))
        })
}

fn statuses(socket: &Path) -> Result<Vec<Value>, String> {
    let reply = control::call(socket, json!({"command": "status"})).map_err(|e| e.to_string())?;
    Ok(reply["resources"].as_array().cloned().unwrap_or_default())
}

/// The events worth showing while waiting.
fn shown(e: &Value) -> bool {
    matches!(
        e["kind"].as_str(),
        Some(
            "resource_pending"
                | "resource_log"
                | "resource_online"
                | "resource_offline"
                | "resource_failed"
                | "resource_restarted"
                | "call_failed"
                | "call_timed_out"
                | "health_failed"
                | "restart_threshold_exceeded"
                | "failover_requested"
        )
    )
}

/// Runs `clusterkit online`/`offline`.
pub(crate) fn run(args: &TransitionArgs, direction: Direction) -> Result<(), String> {
    let socket = args.target.socket()?;
    let name = args.resource.as_str();
    let request = json!({"command": direction.command(), "resource": name});
    if args.no_wait {
        return control::call(&socket, request)
            .map(drop)
            .map_err(|e| e.to_string());
    }
    let involved = involved(&args.target.config_path(), name, direction);
    // Follow first, so that no event of the transition falls before it.
    let (tx, events) = mpsc::channel();
    let (ready_tx, ready) = mpsc::channel();
    let follow_socket = socket.clone();
    std::thread::spawn(move || {
        let follow = json!({"command": "events", "follow": true, "past": false, "mark_live": true});
        let followed = control::request(&follow_socket, follow, |line| {
            if line == control::LIVE_MARK {
                return ready_tx.send(Ok(())).is_ok();
            }
            serde_json::from_str::<Value>(line).is_ok_and(|v| tx.send(v).is_ok())
        });
        // Unheard once the wait began: then the closed stream says it.
        let _ = ready_tx.send(followed.map_err(|e| e.to_string()));
    });
    match ready.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(format!(
                "control socket {}: the event stream did not start",
                socket.display()
            ));
        }
    }
    // Already there before the command: no progress will come to show.
    let already = statuses(&socket)
        .ok()
        .and_then(|all| all.into_iter().find(|s| s["name"] == name))
        .is_some_and(|s| s["state"] == direction.command());
    control::call(&socket, request).map_err(|e| e.to_string())?;
    let involved = involved.unwrap_or_else(|| {
        statuses(&socket)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s["name"].as_str().map(str::to_owned))
            .collect()
    });
    let started = Instant::now();
    let deadline = started + args.timeout;
    let tty = std::io::stdout().is_terminal();
    let mut out = std::io::stdout().lock();
    let spinner = ['|', '/', '-', '\\'];
    let mut tick = 0usize;
    let mut check = true;
    let mut settled = false;
    let mut seen_final = false;
    let outcome = loop {
        if check {
            if let Some(outcome) = judge(&statuses(&socket)?, name, &involved, direction, settled) {
                break outcome;
            }
            check = false;
        }
        let now = Instant::now();
        if now >= deadline {
            break Outcome::Failed(format!(
                "not {} after {:?}: still under way in the host (`clusterkit status {name}`)",
                direction.command(),
                args.timeout
            ));
        }
        let wait = if tty {
            Duration::from_millis(100).min(deadline - now)
        } else {
            deadline - now
        };
        match events.recv_timeout(wait) {
            Ok(e) => {
                let ours = show(&mut out, &e, &involved, started, tty);
                seen_final |= is_final(&e, name, direction);
                // A change of state of one involved: look at the statuses.
                check |= ours;
                settled |= ours;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Outcome::Failed("the host stopped while waiting".into());
            }
        }
        if tty {
            tick += 1;
            let _ = write!(
                out,
                "\r\x1b[K{} {name}: going {} ({:.1}s)",
                spinner[tick % spinner.len()],
                direction.command(),
                started.elapsed().as_secs_f64()
            );
            let _ = out.flush();
        }
    };
    if tty {
        let _ = write!(out, "\r\x1b[K");
    }
    // The status can say done before the events saying so are read from
    // this stream (statuses are published first; a fast transition is over
    // before the first look): show the progress to its end, waiting for it
    // briefly, unless the resource was there before the command.
    if matches!(outcome, Outcome::Done) && !already {
        let until = Instant::now() + FINAL_EVENT_GRACE;
        while !seen_final {
            let left = until.saturating_duration_since(Instant::now());
            let Ok(e) = events.recv_timeout(left) else {
                break;
            };
            show(&mut out, &e, &involved, started, tty);
            seen_final = is_final(&e, name, direction);
        }
    }
    match outcome {
        Outcome::Done => {
            let _ = writeln!(
                out,
                "{name}: {} ({:.1}s)",
                direction.command(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Outcome::Failed(why) => Err(format!("{name}: {why}")),
    }
}

/// How long the end of the progress is waited for once the status says
/// the transition is done.
const FINAL_EVENT_GRACE: Duration = Duration::from_millis(500);

/// Whether `e` says that `name` reached the end of the transition.
fn is_final(e: &Value, name: &str, direction: Direction) -> bool {
    let kind = match direction {
        Direction::Online => "resource_online",
        Direction::Offline => "resource_offline",
    };
    e["kind"] == kind && e["resource"] == name
}

/// Prints `e` as a progress line when it concerns one of the `involved`
/// and is worth showing; true when it concerns one of them.
fn show(
    out: &mut impl std::io::Write,
    e: &Value,
    involved: &BTreeSet<String>,
    started: Instant,
    tty: bool,
) -> bool {
    let ours = e["resource"].as_str().is_some_and(|r| involved.contains(r));
    if ours && shown(e) {
        if tty {
            let _ = write!(out, "\r\x1b[K");
        }
        let at = timeline::relative(started.elapsed());
        let _ = writeln!(out, "{at}  {}", progress_line(e));
    }
    ours
}

/// A progress line: the resource's own messages as they are, the rest as
/// the timeline says them.
fn progress_line(e: &Value) -> String {
    let r = e["resource"].as_str().unwrap_or("-");
    match e["kind"].as_str() {
        Some("resource_log") => format!(
            "{r}: {}: {}",
            e["level"].as_str().unwrap_or("log"),
            e["message"].as_str().unwrap_or_default()
        ),
        Some("resource_pending") => {
            let state = e["state"].as_str().unwrap_or("pending").replace('_', " ");
            match e["checkpoint"].as_u64() {
                Some(checkpoint) => format!("{r}: {state}, checkpoint {checkpoint}"),
                None => format!("{r}: {state}"),
            }
        }
        _ => timeline::sentence(e),
    }
}
