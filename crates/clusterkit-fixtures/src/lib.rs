//! Internal test library `libclusterkit_fixtures.so`, exporting the type
//! `panicky`: every entry point panics when the property `panic_in` names it.
//!
//! Setting `CLUSTERKIT_FIXTURE_STARTUP=panic` (or `fail`) in the loading
//! process makes `startup` panic (or return an error). The `fault-injection`
//! example type is the general tool; this one only proves the panic boundary.

use clusterkit::{
    ControlCode, Error, Health, LostOwnership, Properties, PropertySpec, Resource, ResourceContext,
    ResourceType, Result, Schema, StartupContext, StatusReporter, Transition, TypeDescription,
};

/// The `panicky` type.
#[derive(Debug)]
pub struct PanickyType {
    panic_in_type_control: bool,
}

/// One `panicky` resource.
#[derive(Debug)]
pub struct Panicky {
    panic_in: String,
}

fn maybe_panic(panic_in: &str, entry_point: &str) {
    if panic_in == entry_point {
        panic!("panicky: told to panic in {entry_point}");
    }
}

impl ResourceType for PanickyType {
    type Resource = Panicky;

    fn describe() -> TypeDescription {
        TypeDescription {
            name: "panicky".into(),
            description: "Panics in the entry point named by `panic_in`".into(),
            characteristics: clusterkit::Characteristics::QUORUM
                | clusterkit::Characteristics::SINGLE_GROUP_INSTANCE,
            schema: Schema::new(vec![
                PropertySpec::string("panic_in")
                    .describe("open, online, offline, terminate, looks_alive, is_alive, arbitrate, release, control, close")
                    .default(""),
            ]),
        }
    }

    fn startup(_ctx: &StartupContext) -> Result<PanickyType> {
        match std::env::var("CLUSTERKIT_FIXTURE_STARTUP").as_deref() {
            Ok("panic") => panic!("panicky: told to panic in startup"),
            Ok("fail") => Err(Error::Failed("panicky: told to fail in startup".into())),
            _ => Ok(PanickyType {
                panic_in_type_control: std::env::var_os("CLUSTERKIT_FIXTURE_TYPE_CONTROL")
                    .is_some(),
            }),
        }
    }

    fn open(
        &self,
        _ctx: ResourceContext,
        properties: &Properties,
        _recover: bool,
    ) -> Result<Panicky> {
        let panic_in = properties.str("panic_in")?.to_owned();
        maybe_panic(&panic_in, "open");
        Ok(Panicky { panic_in })
    }

    fn control(&self, code: ControlCode, input: &[u8]) -> Result<Vec<u8>> {
        if self.panic_in_type_control {
            panic!("panicky: told to panic in type_control");
        }
        match code {
            ControlCode::TYPE_SPECIFIC_BASE => Ok(input.iter().rev().copied().collect()),
            _ => Err(Error::unsupported(code)),
        }
    }
}

impl Resource for Panicky {
    fn online(&self, _status: StatusReporter) -> Result<Transition> {
        maybe_panic(&self.panic_in, "online");
        Ok(Transition::Done)
    }

    fn offline(&self, _status: StatusReporter) -> Result<Transition> {
        maybe_panic(&self.panic_in, "offline");
        Ok(Transition::Done)
    }

    fn terminate(&self) -> Result<()> {
        maybe_panic(&self.panic_in, "terminate");
        Ok(())
    }

    fn looks_alive(&self) -> Health {
        maybe_panic(&self.panic_in, "looks_alive");
        Health::Healthy
    }

    fn is_alive(&self) -> Health {
        maybe_panic(&self.panic_in, "is_alive");
        Health::degraded("panicky is never quite well")
    }

    fn arbitrate(&self, lost: LostOwnership) -> Result<()> {
        maybe_panic(&self.panic_in, "arbitrate");
        lost.notify();
        Ok(())
    }

    fn release(&self) -> Result<()> {
        maybe_panic(&self.panic_in, "release");
        Ok(())
    }

    fn control(&self, code: ControlCode, input: &[u8]) -> Result<Vec<u8>> {
        maybe_panic(&self.panic_in, "control");
        match code {
            ControlCode::TYPE_SPECIFIC_BASE => Ok(input.to_vec()),
            _ => Err(Error::unsupported(code)),
        }
    }

    fn close(self) -> Result<()> {
        maybe_panic(&self.panic_in, "close");
        Ok(())
    }
}

clusterkit::export_resource_types!(PanickyType);
