//! `clusterkit-bench`: the benchmarks of `docs/BENCHMARKS.md`. `scripts/bench` builds
//! everything in release mode, runs each subcommand (each writes a JSON
//! result), then `report` turns the results into `docs/BENCHMARKS.md` and the
//! scaling curve `docs/bench/scaling.svg`. The headline, `run-scale`, runs
//! the real `clusterkit run` and measures it from outside; the others drive
//! a `HostBuilder` host or the monitor protocol from inside this process.
//!
//! Performance is measured here, never asserted in tests.

mod hosted;
mod link;
mod profile;
mod report;
mod report_run;
mod roundtrip;
mod run_scale;
mod scaling_svg;
mod scrape;
mod sys;

use std::io;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde_json::Value;

/// clusterkit's benchmarks (`docs/BENCHMARKS.md`).
#[derive(Debug, Parser)]
#[command(name = "clusterkit-bench")]
struct Cli {
    /// Also write the JSON result here.
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// One looks_alive round trip beside its floors and Pacemaker's model.
    Roundtrip(roundtrip::Options),
    /// N dummy resources, looks_alive every second: CPU share, RSS.
    Scale(hosted::ScaleOptions),
    /// How late deadlines fire while 1 000 resources are polled.
    Timeouts(hosted::TimeoutOptions),
    /// The real `clusterkit run` with N dummy resources from a config: CPU
    /// of the host and its monitors from /proc, RSS, checks and latency from
    /// its metrics, cold start; fork/exec of OCF `Dummy` beside it.
    RunScale(run_scale::Options),
    /// A monitor with 1 000 re-attachable resources is killed.
    Recovery(hosted::RecoveryOptions),
    /// RSS of an idle monitor.
    Footprint,
    /// Where a round trip's time goes: syscalls, instructions, context
    /// switches (strace, valgrind's callgrind, perf stat).
    Profile(profile::Options),
    /// The monitor (optionally under a wrapper command) answering
    /// `--checks` looks_alive calls; used by `profile`.
    #[command(hide = true)]
    ProfileLoop {
        #[arg(long)]
        checks: usize,
        /// A wrapper command line for the monitor, e.g. `strace -c -f -o F`.
        #[arg(long, num_args = 1.., allow_hyphen_values = true)]
        wrapper: Vec<String>,
    },
    /// A full host polling one dummy resource every millisecond until
    /// `--checks` checks have run; used by `profile`.
    #[command(hide = true)]
    HostLoop {
        #[arg(long)]
        checks: u64,
    },
    /// The ping-pong's echo process (socket on fd 3).
    #[command(hide = true)]
    Pong,
    /// Renders the JSON results in `--results` into a Markdown report.
    Report(report::Options),
}

fn main() {
    let cli = Cli::parse();
    let result: io::Result<Option<Value>> = match &cli.command {
        Cmd::Roundtrip(o) => roundtrip::required()
            .and_then(|_| roundtrip::run(o))
            .map(Some),
        Cmd::Scale(o) => hosted::required().and_then(|_| hosted::scale(o)).map(Some),
        Cmd::RunScale(o) => run_scale::required(o)
            .and_then(|()| run_scale::run(o))
            .map(Some),
        Cmd::Timeouts(o) => hosted::required()
            .and_then(|_| hosted::timeouts(o))
            .map(Some),
        Cmd::Recovery(o) => hosted::required()
            .and_then(|_| hosted::recovery(o))
            .map(Some),
        Cmd::Footprint => hosted::footprint().map(Some),
        Cmd::Profile(o) => profile::run(o).map(Some),
        Cmd::ProfileLoop { checks, wrapper } => roundtrip::profile_loop(*checks, wrapper).map(Some),
        Cmd::HostLoop { checks } => profile::host_loop(*checks).map(Some),
        Cmd::Pong => roundtrip::pong().map(|()| None),
        Cmd::Report(o) => report::run(o).map(|()| None),
    };
    match result {
        Ok(Some(mut value)) => {
            if let Value::Object(map) = &mut value {
                map.insert("loadavg_after".into(), sys::loadavg().into());
            }
            let text = serde_json::to_string_pretty(&value).expect("JSON");
            println!("{text}");
            if let Some(out) = &cli.out
                && let Err(e) = std::fs::write(out, text + "\n")
            {
                eprintln!("clusterkit-bench: writing {}: {e}", out.display());
                std::process::exit(1);
            }
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("clusterkit-bench: {e}");
            std::process::exit(1);
        }
    }
}
