//! `clusterkit demo`: the project's main job (filled in with the example backends).

/// Options of `clusterkit demo`.
#[derive(clap::Args)]
pub(crate) struct DemoArgs {}

pub(crate) fn run(_args: &DemoArgs) -> Result<(), String> {
    Err("the demo is not built yet".into())
}
