//! `marker`: online while its marker file exists.

use clusterkit::*;
use std::path::PathBuf;

/// The `marker` type, started once per monitor process.
pub struct MarkerType;

/// One marker resource.
pub struct Marker {
    ctx: ResourceContext,
    path: PathBuf,
}

impl ResourceType for MarkerType {
    type Resource = Marker;

    fn describe() -> TypeDescription {
        TypeDescription {
            name: "marker".into(),
            description: "Online while its marker file exists".into(),
            characteristics: Characteristics::REATTACH,
            schema: Schema::new(vec![
                PropertySpec::string("path")
                    .describe("The marker file")
                    .required()
                    .min(1),
            ]),
        }
    }

    fn startup(_ctx: &StartupContext) -> Result<Self> {
        Ok(MarkerType)
    }

    // Properties arrive validated against the schema, defaults filled in.
    fn open(
        &self,
        ctx: ResourceContext,
        properties: &Properties,
        _recover: bool,
    ) -> Result<Marker> {
        let path = PathBuf::from(properties.str("path")?);
        Ok(Marker { ctx, path })
    }
}

impl Resource for Marker {
    fn online(&self, _status: StatusReporter) -> Result<Transition> {
        std::fs::write(&self.path, self.ctx.name())
            .map_err(|e| Error::io(format_args!("creating {}", self.path.display()), &e))?;
        tracing::info!(path = %self.path.display(), "online");
        Ok(Transition::Done) // or Transition::Pending, finishing on a Worker
    }

    fn offline(&self, _status: StatusReporter) -> Result<Transition> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(
                format_args!("removing {}", self.path.display()),
                &e,
            )),
            _ => Ok(Transition::Done),
        }
    }

    fn terminate(&self) -> Result<()> {
        self.offline(StatusReporter::detached_online()).map(drop)
    }

    // Cheap and frequent (about 50 ms at most).
    fn looks_alive(&self) -> Health {
        if self.path.exists() {
            Health::Healthy
        } else {
            tracing::warn!(path = %self.path.display(), "marker file is gone");
            Health::failed("marker file is gone")
        }
    }

    // Thorough and rarer.
    fn is_alive(&self) -> Health {
        match std::fs::read_to_string(&self.path) {
            Ok(owner) if owner == self.ctx.name() => Health::Healthy,
            Ok(owner) => Health::failed(format!("marker file belongs to {owner:?}")),
            Err(e) => Health::failed(format!("reading marker file: {e}")),
        }
    }
}

// The C ABI: no `extern "C"` to write.
clusterkit::export_resource_types!(MarkerType);
