//! `clusterkit check`: a conformance checker for resource libraries, Rust
//! or C (what `ocf-tester` is to OCF agents).
//!
//! The library never runs in this process. Each scenario (load; the
//! lifecycle open → online → health → offline → close; terminate; the
//! re-attach) runs in a child process, this same program started with the
//! hidden `--scenario`, which announces every call into the library before
//! making it. This process supervises: a child that stops answering within
//! the hang timeout is killed, and a child that dies (an `abort()`, a
//! segfault, a panic with `panic = "abort"`) fails the call that was in
//! flight. After such a death a cleanup child opens the resource with
//! `recover = true` and terminates it, so nothing is left running.
//!
//! `docs/CHECK.md` documents the checks, budgets and exit codes.

mod driver;
mod evidence;
mod report;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use clusterkit::{PropertySpec, Value};

use driver::names;
use report::{CheckLine, Facts, Line, PREFIX, Report, human};

/// `clusterkit check …`.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct CheckArgs {
    /// The resource library (a `.so`).
    library: PathBuf,
    /// The type to check (optional when the library exports one).
    type_name: Option<String>,
    /// The resource's properties, as name=value (multi-strings as a JSON
    /// array: `command=["sleep","600"]`).
    properties: Vec<String>,
    /// The resource's name (the workload's files are often named after it).
    #[arg(long, default_value = "clusterkit-check")]
    name: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Print the lines the library logs.
    #[arg(long, short)]
    verbose: bool,
    /// A call that has not returned after this long is hung: the check
    /// kills its process.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    hang_timeout: Duration,
    /// The longest gap allowed between progress reports of a pending
    /// online or offline (a host's `pending_timeout`).
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    pending_timeout: Duration,
    /// Another budget for one entry point, as ENTRY=DURATION (startup,
    /// open, close, online, offline, terminate, looks_alive, is_alive,
    /// control);
    /// repeatable.
    #[arg(long = "budget", value_parser = parse_budget)]
    budget_overrides: Vec<(String, Duration)>,
    /// Multiplies every budget: room for a loaded machine (the verdict of
    /// a library under test in CI), never for a library's own slowness.
    #[arg(long, default_value_t = 1.0)]
    slack: f64,
    /// Internal: run one scenario in this process.
    #[arg(long, hide = true, value_enum)]
    scenario: Option<Scenario>,
}

/// The scenarios, each run in a process of its own.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scenario {
    /// Load, ABI and table, types, properties.
    Load,
    /// Open, online, health checks, offline, close, each timed.
    Lifecycle,
    /// `terminate` during a pending online, and of an online resource.
    Terminate,
    /// Start the workload and die like a killed monitor.
    ReattachStart,
    /// Open with `recover = true` and check the workload was adopted.
    ReattachAdopt,
    /// Stop what a dead scenario left running.
    Cleanup,
}

/// The time each entry point may take (see `clusterkit`'s "Rules every
/// resource follows").
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budgets {
    pub(crate) startup: Duration,
    pub(crate) open: Duration,
    pub(crate) close: Duration,
    pub(crate) online: Duration,
    pub(crate) offline: Duration,
    pub(crate) terminate: Duration,
    pub(crate) looks_alive: Duration,
    pub(crate) is_alive: Duration,
    pub(crate) control: Duration,
}

/// The entry points `--budget` names, with their default budgets.
const DEFAULT_BUDGETS: [(&str, u64); 9] = [
    ("startup", 300),
    ("open", 300),
    ("close", 300),
    ("online", 300),
    ("offline", 300),
    ("terminate", 1000),
    ("looks_alive", 50),
    ("is_alive", 300),
    ("control", 300),
];

fn parse_duration(text: &str) -> Result<Duration, String> {
    match PropertySpec::duration("duration").parse(text) {
        Ok(Value::Duration(d)) => Ok(d),
        Ok(_) => Err(format!("{text:?} is not a duration")),
        Err(e) => Err(format!("{text:?}: {}", e.problem)),
    }
}

fn parse_budget(text: &str) -> Result<(String, Duration), String> {
    let (entry, duration) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected ENTRY=DURATION"))?;
    if !DEFAULT_BUDGETS.iter().any(|(name, _)| *name == entry) {
        return Err(format!(
            "{entry:?} is no entry point with a budget (one of: {})",
            DEFAULT_BUDGETS.map(|(name, _)| name).join(", ")
        ));
    }
    Ok((entry.to_owned(), parse_duration(duration)?))
}

impl CheckArgs {
    /// The budgets: the defaults, then `--budget`, times `--slack`.
    pub(crate) fn budgets(&self) -> Budgets {
        let get = |entry: &str| {
            let base = self
                .budget_overrides
                .iter()
                .rev()
                .find(|(name, _)| name == entry)
                .map(|(_, d)| *d)
                .or_else(|| {
                    DEFAULT_BUDGETS
                        .iter()
                        .find(|(name, _)| *name == entry)
                        .map(|(_, ms)| Duration::from_millis(*ms))
                })
                .unwrap_or_default();
            base.mul_f64(self.slack.max(1.0))
        };
        Budgets {
            startup: get("startup"),
            open: get("open"),
            close: get("close"),
            online: get("online"),
            offline: get("offline"),
            terminate: get("terminate"),
            looks_alive: get("looks_alive"),
            is_alive: get("is_alive"),
            control: get("control"),
        }
    }

    /// A TYPE that holds a `=` is the first property: the type was left out.
    fn normalized(mut self) -> CheckArgs {
        if let Some(t) = self.type_name.take_if(|t| t.contains('=')) {
            self.properties.insert(0, t);
        }
        self
    }

    /// The arguments that start `scenario` in a child, for `type_name`.
    fn child_args(&self, scenario: Scenario, type_name: Option<&str>) -> Vec<String> {
        use clap::ValueEnum as _;
        let mut args = vec![
            "check".to_owned(),
            "--scenario".to_owned(),
            scenario
                .to_possible_value()
                .expect("no scenario is skipped")
                .get_name()
                .to_owned(),
            format!("--name={}", self.name),
            format!("--hang-timeout={}ms", self.hang_timeout.as_millis()),
            format!("--pending-timeout={}ms", self.pending_timeout.as_millis()),
            format!("--slack={}", self.slack),
        ];
        for (entry, d) in &self.budget_overrides {
            args.push(format!("--budget={entry}={}ms", d.as_millis()));
        }
        args.push("--".to_owned());
        args.push(self.library.display().to_string());
        if let Some(t) = type_name.or(self.type_name.as_deref()) {
            args.push(t.to_owned());
        }
        args.extend(self.properties.iter().cloned());
        args
    }
}

/// What one child reported.
#[derive(Default)]
struct Run {
    checks: Vec<CheckLine>,
    facts: Option<Facts>,
    logs: Vec<String>,
    /// Why the child died or was killed, if it was.
    died: Option<String>,
}

/// How long past a call's announced limit the supervisor waits: time for
/// a loaded machine to schedule the child's next line.
const GRACE: Duration = Duration::from_millis(500);

/// Runs `scenario` in a child and supervises it.
fn supervise(args: &CheckArgs, scenario: Scenario, type_name: Option<&str>) -> Run {
    let mut run = Run::default();
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            run.died = Some(format!("finding this program: {e}"));
            return run;
        }
    };
    let mut child = match Command::new(exe)
        .args(args.child_args(scenario, type_name))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            run.died = Some(format!("starting a check process: {e}"));
            return run;
        }
    };
    let (lines, received) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
    std::thread::spawn(move || {
        for text in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(line) = text
                .strip_prefix(PREFIX)
                .and_then(|json| serde_json::from_str::<Line>(json).ok())
                && lines.send(line).is_err()
            {
                break;
            }
        }
    });
    let mut plan = Vec::new();
    // The call in flight: (what, check, limit).
    let mut in_flight: Option<(String, String, Duration)> = None;
    let mut hung = None;
    loop {
        let wait = in_flight
            .as_ref()
            .map_or(args.hang_timeout, |(_, _, limit)| *limit)
            + GRACE;
        match received.recv_timeout(wait) {
            Ok(Line::Plan { checks }) => plan = checks,
            Ok(Line::Call {
                what,
                check,
                limit_ms,
            }) => in_flight = Some((what, check, Duration::from_millis(limit_ms))),
            Ok(Line::Check(line)) => run.checks.push(line),
            Ok(Line::Facts(facts)) => run.facts = Some(facts),
            Ok(Line::Log { level, message }) => run.logs.push(format!("{level}: {message}")),
            // A process that ended while something it started still holds
            // its pipe (a library that forks without exec): it ended.
            Err(mpsc::RecvTimeoutError::Timeout) if matches!(child.try_wait(), Ok(Some(_))) => {
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Killing the child this process started, by its own handle.
                let _ = child.kill();
                hung = Some(wait - GRACE);
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.wait();
    reap_orphans();
    let death = match (hung, status) {
        (Some(limit), _) => Some(format!(
            "no return after {}: hung (the check killed its process)",
            human(limit)
        )),
        (None, Ok(status)) => {
            use std::os::unix::process::ExitStatusExt as _;
            match (status.signal(), status.code()) {
                (Some(signal), _) => Some(format!(
                    "the process died of {} during the call: the library aborted or \
                     crashed (a host's monitor would die with it)",
                    signal_name(signal)
                )),
                (None, Some(0)) => None,
                (None, code) => Some(format!(
                    "the library ended the process (exit status {}) during the call",
                    code.map_or("unknown".to_owned(), |c| c.to_string())
                )),
            }
        }
        (None, Err(e)) => Some(format!("waiting for the check process: {e}")),
    };
    if let Some(death) = death {
        let (what, check) = in_flight
            .map(|(what, check, _)| (what, check))
            .unwrap_or_else(|| ("startup".to_owned(), names::LOADS.to_owned()));
        let reported = |checks: &[CheckLine], name: &str| checks.iter().any(|c| c.name == name);
        let name = if reported(&run.checks, &check) {
            what.clone()
        } else {
            check.clone()
        };
        run.checks
            .push(CheckLine::fail(&name, format!("{what}: {death}")));
        for planned in plan {
            if !reported(&run.checks, &planned) {
                run.checks.push(CheckLine::skip(
                    &planned,
                    format!("not reached: the process died in {what}"),
                ));
            }
        }
        run.died = Some(format!("{what}: {death}"));
    }
    run
}

/// Reaps the processes reparented to this one that have ended.
fn reap_orphans() {
    loop {
        // SAFETY: waits for any ended child without blocking; every child
        // this process waits for by handle was waited for already.
        let pid = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if pid <= 0 {
            break;
        }
    }
}

fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGABRT => "SIGABRT".into(),
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGILL => "SIGILL".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGFPE => "SIGFPE".into(),
        other => format!("signal {other}"),
    }
}

/// `clusterkit check`: exit 0 when every check passes (or is skipped), 1
/// when one fails, 2 when the library cannot be checked at all.
pub(crate) fn main(args: CheckArgs) -> ExitCode {
    let args = args.normalized();
    if let Some(scenario) = args.scenario {
        return driver::run(scenario, &args);
    }
    // What a scenario's library starts and leaves behind when the scenario
    // ends (the re-attach leaves its workload on purpose) is reparented
    // here rather than to init, and reaped after each scenario: no zombie
    // outlives the check, whatever init does.
    // SAFETY: a plain flag on this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let mut report = Report {
        library: args.library.display().to_string(),
        type_name: args.type_name.clone(),
        ..Report::default()
    };
    let load = supervise(&args, Scenario::Load, None);
    let mut observed_abort = load.died.is_some();
    report.checks.extend(load.checks);
    keep_logs(&args, &mut report, load.logs);
    let Some(facts) = load.facts else {
        // No type to check: the library does not load, or no TYPE matches.
        report.conclude();
        return finish(&args, &report, ExitCode::from(2));
    };
    report.type_name = Some(facts.type_name.clone());
    let ty = Some(facts.type_name.as_str());
    if facts.properties_valid {
        for scenario in [Scenario::Lifecycle, Scenario::Terminate] {
            let run = supervise(&args, scenario, ty);
            observed_abort |= run.died.is_some();
            report.checks.extend(run.checks);
            keep_logs(&args, &mut report, run.logs);
            if let Some(death) = run.died {
                clean_up(&args, &mut report, ty, &death);
            }
        }
        reattach(&args, &mut report, &facts, &mut observed_abort);
    } else {
        for name in [
            names::OPEN,
            names::ONLINE,
            names::TERMINATE,
            names::REATTACH,
        ] {
            report.checks.push(CheckLine::skip(
                name,
                "the properties are not valid: the resource checks need valid ones",
            ));
        }
    }
    report
        .checks
        .push(panic_line(&facts, &report, observed_abort));
    report.conclude();
    let code = if report.failed().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    finish(&args, &report, code)
}

fn reattach(args: &CheckArgs, report: &mut Report, facts: &Facts, observed_abort: &mut bool) {
    if !facts.reattach {
        report.checks.push(CheckLine::skip(
            names::REATTACH,
            "the type does not declare REATTACH: a host restarts its resources after a \
             monitor restart",
        ));
        return;
    }
    let ty = Some(facts.type_name.as_str());
    let start = supervise(args, Scenario::ReattachStart, ty);
    keep_logs(args, report, start.logs);
    let stopped_early = !start.checks.is_empty() || start.died.is_some();
    report.checks.extend(start.checks);
    if let Some(death) = start.died {
        *observed_abort = true;
        clean_up(args, report, ty, &death);
    }
    if stopped_early {
        return;
    }
    let adopt = supervise(args, Scenario::ReattachAdopt, ty);
    report.checks.extend(adopt.checks);
    keep_logs(args, report, adopt.logs);
    if let Some(death) = adopt.died {
        *observed_abort = true;
        clean_up(args, report, ty, &death);
    }
}

/// Stops what a dead child left running, and says so.
fn clean_up(args: &CheckArgs, report: &mut Report, ty: Option<&str>, death: &str) {
    let run = supervise(args, Scenario::Cleanup, ty);
    let note = match run.died {
        None => {
            format!("after `{death}`, opened the resource with recover = true and terminated it")
        }
        Some(why) => format!("cleanup after `{death}` failed too: {why}"),
    };
    if !report.notes.contains(&note) {
        report.notes.push(note);
    }
}

fn keep_logs(args: &CheckArgs, report: &mut Report, logs: Vec<String>) {
    if args.verbose {
        report
            .notes
            .extend(logs.into_iter().map(|l| format!("library log: {l}")));
    }
}

/// Whether a panic in an entry point comes back as an error: from the
/// library file's evidence and what the checks saw (`evidence` explains).
fn panic_line(facts: &Facts, report: &Report, observed_abort: bool) -> CheckLine {
    let observed: Vec<String> = report
        .checks
        .iter()
        .filter(|c| c.outcome == report::Outcome::Fail && c.detail.contains("panicked: "))
        .map(|c| format!("`{}`", c.name))
        .collect();
    if !facts.rust {
        return CheckLine::skip(
            names::PANICS,
            "not built by rustc: no Rust panics; an abort or crash fails the check it happens in",
        );
    }
    if !facts.unwinds {
        return CheckLine::fail(
            names::PANICS,
            format!(
                "built with panic = \"abort\": a panic in an entry point ends the monitor \
                 instead of coming back as an error; set panic = \"unwind\" in the workspace's \
                 [profile] sections{}",
                if observed_abort {
                    " (a check process died during these checks)"
                } else {
                    ""
                }
            ),
        );
    }
    CheckLine::pass(
        names::PANICS,
        if observed.is_empty() {
            "built with panic = \"unwind\": the export glue catches panics at the C boundary"
                .to_owned()
        } else {
            format!(
                "built with panic = \"unwind\"; the panics seen in {} came back as `panicked` errors",
                observed.join(", ")
            )
        },
    )
}

fn finish(args: &CheckArgs, report: &Report, code: ExitCode) -> ExitCode {
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).expect("the report serializes")
        );
    } else {
        print!("{}", report.text());
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: CheckArgs,
    }

    #[test]
    fn a_left_out_type_and_budget_overrides_parse() {
        let w = Wrapper::try_parse_from([
            "x",
            "lib.so",
            "state_dir=/tmp",
            "online_delay=1s",
            "--budget",
            "open=2s",
            "--slack=2",
        ])
        .unwrap();
        let args = w.args.normalized();
        assert_eq!(args.type_name, None);
        assert_eq!(args.properties, ["state_dir=/tmp", "online_delay=1s"]);
        let budgets = args.budgets();
        assert_eq!(budgets.open, Duration::from_secs(4));
        assert_eq!(budgets.looks_alive, Duration::from_millis(100));
        let e = Wrapper::try_parse_from(["x", "lib.so", "--budget", "opne=2s"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("\"opne\" is no entry point with a budget"),
            "{e}"
        );
    }

    #[test]
    fn child_arguments_parse_back_to_the_same_check() {
        let w =
            Wrapper::try_parse_from(["x", "lib.so", "dummy", "a=b", "--budget=open=1s"]).unwrap();
        let child = w.args.child_args(Scenario::Terminate, None);
        let back = Wrapper::try_parse_from(
            std::iter::once("x".to_owned()).chain(child.into_iter().skip(1)),
        )
        .unwrap()
        .args;
        assert_eq!(back.scenario, Some(Scenario::Terminate));
        assert_eq!(back.type_name.as_deref(), Some("dummy"));
        assert_eq!(back.properties, ["a=b"]);
        assert_eq!(back.budgets().open, Duration::from_secs(1));
    }
}
