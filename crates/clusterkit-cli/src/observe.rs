//! What watches a running host for the operator: `[metrics]` and
//! `[[alert]]` (docs/CONFIG.md).

use std::sync::Arc;

use clusterkit_host::Host;

use crate::config::Config;
use crate::{alerts, metrics};

/// Starts what the config asks to watch the host: `[metrics]`, `[[alert]]`.
pub(crate) fn start(config: &Config, host: &Arc<Host>) -> Result<(), String> {
    if let Some(address) = config.metrics_address() {
        metrics::serve(address, host.clone())?;
    }
    let alerts = config.alerts().map_err(|problems| {
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    alerts::start(alerts, host)
}
