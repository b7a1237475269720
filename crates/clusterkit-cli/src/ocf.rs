//! The OCF resource-agent adapter (filled in next).

use std::process::ExitCode;

/// `clusterkit ocf …`.
#[derive(clap::Subcommand)]
pub(crate) enum OcfCommand {}

pub(crate) fn main(command: OcfCommand) -> ExitCode {
    match command {}
}
