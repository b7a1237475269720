//! A custom host binary: it is its own monitor executable (it re-executes
//! itself and calls `run_if_monitor` first), runs COUNT resources of one
//! type, brings them online, then obeys commands on standard input.
//!
//! ```text
//! custom-host STATE_DIR LIBRARY TYPE COUNT [KEY=VALUE ...]
//! ```
//!
//! Resources are named `r0`, `r1`, …; each gets the KEY=VALUE properties.
//! Once every resource is online it prints `ready`. Commands, one per line:
//! `online NAME`, `offline NAME`, `fail NAME`, `status`, `quit`; each is
//! answered with `ok N` (N counts commands) or `error …`.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use clusterkit::ResourceState;
use clusterkit_host::{HostBuilder, MonitorProgram, ResourceConfig};

fn run(args: &[String]) -> Result<(), String> {
    let [state_dir, library, type_name, count, props @ ..] = args else {
        return Err("usage: custom-host STATE_DIR LIBRARY TYPE COUNT [KEY=VALUE ...]".into());
    };
    let count: usize = count
        .parse()
        .map_err(|_| format!("COUNT {count:?} is not a number"))?;
    let mut builder = HostBuilder::new(state_dir, MonitorProgram::CurrentExe);
    for i in 0..count {
        let mut resource = ResourceConfig::new(format!("r{i}"), library, type_name);
        for p in props {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| format!("{p:?} is not KEY=VALUE"))?;
            resource = resource.property(k, v);
        }
        builder = builder.resource(resource);
    }
    // Text values are parsed by each property's kind once the schema is known.
    let host = builder.start().map_err(|e| e.to_string())?;
    for i in 0..count {
        host.online(&format!("r{i}")).map_err(|e| e.to_string())?;
    }
    host.wait_for(Duration::from_secs(120), "every resource online", |s| {
        s.iter().all(|r| r.state == ResourceState::Online)
    })
    .map_err(|e| e.to_string())?;
    println!("ready");
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for (n, line) in stdin.lock().lines().enumerate() {
        let line = line.map_err(|e| e.to_string())?;
        let (verb, name) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let result = match verb {
            "online" => host.online(name).map(|()| String::new()),
            "offline" => host.offline(name).map(|()| String::new()),
            "fail" => host.fail(name).map(|()| String::new()),
            "status" => Ok(host
                .status()
                .iter()
                .map(|s| format!(" {}={}", s.name, s.state))
                .collect()),
            "quit" => break,
            other => Ok(format!(" unknown command {other:?}")),
        };
        match result {
            Ok(extra) => writeln!(stdout, "ok {n}{extra}"),
            Err(e) => writeln!(stdout, "error {e}"),
        }
        .and_then(|()| stdout.flush())
        .map_err(|e| e.to_string())?;
    }
    host.shutdown();
    Ok(())
}

fn main() -> ExitCode {
    // First thing: when started as a monitor, be one.
    clusterkit_host::run_if_monitor();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custom-host: {e}");
            ExitCode::FAILURE
        }
    }
}
