//! `clusterkit events`: the event log, from the running host's control
//! socket or, when no host runs, from `<state_dir>/events.jsonl` and its
//! rotated files, which is when an operator needs it most. Filters by
//! time, resource and kind; JSON lines or the timeline people read.

use std::io::Write as _;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::Target;
use crate::control::{self, ControlError};
use crate::timeline::{self, Zone};

/// Options of `clusterkit events`.
#[derive(clap::Args)]
pub(crate) struct EventsArgs {
    #[command(flatten)]
    target: Target,
    /// Keep printing new events (needs a running host).
    #[arg(long, short)]
    follow: bool,
    /// Print JSON lines, as stored.
    #[arg(long)]
    json: bool,
    /// Only events since then: a duration back from now (`90s`, `10m`,
    /// `2h`, `1d`) or a time (`2026-12-01T10:00:00Z`, `…+01:00`).
    #[arg(long)]
    since: Option<String>,
    /// Only events of this resource (repeatable).
    #[arg(long, short)]
    resource: Vec<String>,
    /// Only events of this kind, by name or number (repeatable):
    /// `resource_failed`, `7`.
    #[arg(long, short)]
    kind: Vec<String>,
    /// Only the last N events (after the other filters).
    #[arg(short = 'n', long = "lines")]
    lines: Option<usize>,
    /// Print times in UTC (the default is the local time).
    #[arg(long)]
    utc: bool,
}

/// Which events to show.
struct Filter {
    since: Option<SystemTime>,
    resources: Vec<String>,
    kinds: Vec<String>,
}

impl Filter {
    fn new(args: &EventsArgs) -> Result<Filter, String> {
        let since = args.since.as_deref().map(parse_since).transpose()?;
        let kinds = args
            .kind
            .iter()
            .map(|k| kind_name(k))
            .collect::<Result<_, _>>()?;
        Ok(Filter {
            since,
            resources: args.resource.clone(),
            kinds,
        })
    }

    fn accepts(&self, e: &Value) -> bool {
        let time_ok = match (
            self.since,
            e["ts"].as_str().and_then(timeline::parse_rfc3339),
        ) {
            (Some(since), Some(t)) => t >= since,
            _ => true,
        };
        let resource_ok = self.resources.is_empty()
            || e["resource"]
                .as_str()
                .is_some_and(|r| self.resources.iter().any(|x| x == r));
        let kind_ok = self.kinds.is_empty()
            || e["kind"]
                .as_str()
                .is_some_and(|k| self.kinds.iter().any(|x| x == k));
        time_ok && resource_ok && kind_ok
    }
}

/// A kind given by name or number, as its name; an unknown one is an
/// error listing the known.
fn kind_name(text: &str) -> Result<String, String> {
    use clusterkit_host::EventKind;
    let found = EventKind::ALL
        .iter()
        .find(|k| k.name() == text || text.parse::<u32>().ok() == Some(k.id()));
    found.map(|k| k.name().to_owned()).ok_or_else(|| {
        format!(
            "--kind {text:?}: no such event kind (known: {})",
            EventKind::ALL
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// `--since`: a duration back from now, or a time.
fn parse_since(text: &str) -> Result<SystemTime, String> {
    if let Some(t) = timeline::parse_rfc3339(text) {
        return Ok(t);
    }
    let bad = || {
        format!(
            "--since {text:?}: expected a duration back from now (90s, 10m, 2h, 1d) or a time \
             (2026-12-01T10:00:00Z, 2026-12-01T11:00:00+01:00)"
        )
    };
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let number: u64 = digits.parse().map_err(|_| bad())?;
    let unit = match &text[digits.len()..] {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let back = Duration::from_secs(number.checked_mul(unit).ok_or_else(bad)?);
    SystemTime::now().checked_sub(back).ok_or_else(bad)
}

/// Prints events as they come, filtered; `-n` holds back all but the last.
struct Printer {
    filter: Filter,
    /// `-n`, until the stored log is read.
    last: Option<usize>,
    json: bool,
    zone: Zone,
    first: Option<SystemTime>,
    held: std::collections::VecDeque<Value>,
    out: std::io::StdoutLock<'static>,
}

impl Printer {
    /// Takes one line; false when the reader is gone.
    fn line(&mut self, line: &str) -> bool {
        let Ok(e) = serde_json::from_str::<Value>(line) else {
            // Not an event: a damaged line is shown, not hidden.
            return writeln!(self.out, "{line}").is_ok();
        };
        if !self.filter.accepts(&e) {
            return true;
        }
        match self.last {
            Some(n) => {
                self.held.push_back(e);
                if self.held.len() > n {
                    self.held.pop_front();
                }
                true
            }
            None => self.print(&e),
        }
    }

    /// Prints what `-n` held back: the stored log is read, live events
    /// follow.
    fn flush_held(&mut self) -> bool {
        self.last = None;
        let held = std::mem::take(&mut self.held);
        held.iter().all(|e| self.print(e))
    }

    fn print(&mut self, e: &Value) -> bool {
        let text = if self.json {
            e.to_string()
        } else {
            let at = e["ts"].as_str().and_then(timeline::parse_rfc3339);
            let first = *self
                .first
                .get_or_insert(at.unwrap_or(SystemTime::UNIX_EPOCH));
            timeline::render(e, Some(first), self.zone).join("\n")
        };
        writeln!(self.out, "{text}")
            .and_then(|()| self.out.flush())
            .is_ok()
    }
}

/// Runs `clusterkit events`.
pub(crate) fn run(args: &EventsArgs) -> Result<(), String> {
    let printer = Printer {
        filter: Filter::new(args)?,
        last: args.lines,
        json: args.json,
        zone: if args.utc { Zone::Utc } else { Zone::Local },
        first: None,
        held: Default::default(),
        out: std::io::stdout().lock(),
    };
    print_events(args, printer)
}

fn print_events(args: &EventsArgs, mut printer: Printer) -> Result<(), String> {
    let socket = args.target.socket()?;
    // The host sends the stored log, then (following) a marker-free live
    // stream: `-n` applies to the stored part, so it is cut where the
    // stored part ends, which the client sees as the first live event.
    let request = json!({"command": "events", "follow": args.follow, "mark_live": true});
    let result = control::request(&socket, request, |line| {
        if line == control::LIVE_MARK {
            return printer.flush_held();
        }
        printer.line(line)
    });
    match result {
        Ok(()) => {
            printer.flush_held();
            Ok(())
        }
        Err(ControlError::Connect { error, .. })
            if matches!(
                error.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            // No host: the log on disk, read across its rotated files.
            let config = args.target.load_config()?;
            let current = config.state_dir.join("events.jsonl");
            let files = clusterkit_host::event_log_files(&current);
            let mut found = false;
            for file in &files {
                let text = match std::fs::read_to_string(file) {
                    Ok(text) => text,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(format!("{}: {e}", file.display())),
                };
                found = true;
                for line in text.lines() {
                    if !printer.line(line) {
                        return Ok(());
                    }
                }
            }
            printer.flush_held();
            if !found {
                return Err(format!(
                    "no host runs (control socket {}) and there is no event log at {}",
                    socket.display(),
                    current.display()
                ));
            }
            if args.follow {
                return Err(format!(
                    "no host runs (control socket {}: {error}): the log above is all there is; \
                     --follow needs a running host",
                    socket.display()
                ));
            }
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}
