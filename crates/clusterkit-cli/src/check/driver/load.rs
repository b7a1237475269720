//! The load scenario: the library, its ABI and table, its types, the
//! properties; and the facts the supervisor plans the other scenarios with.

use clusterkit::Characteristics;
use clusterkit_loader::{Library, LoadError, ResourceTypeHandle};

use super::names::*;
use super::{Driver, check, emit, forwarding_logger};
use crate::check::evidence;
use crate::check::report::{CheckLine, Facts, Line};

impl Driver<'_> {
    pub(super) fn load(&self) {
        emit(&Line::Plan {
            checks: vec![LOADS.into(), TABLE.into()],
        });
        let (loaded, elapsed) = self.call("startup", LOADS, self.hang(), || {
            Library::load(&self.args.library, forwarding_logger())
        });
        let library = match loaded {
            Ok(library) => library,
            Err(e @ (LoadError::AbiMismatch { .. } | LoadError::InvalidTable { .. })) => {
                check(CheckLine::pass(
                    LOADS,
                    "dlopen and clusterkit_startup succeeded",
                ));
                check(CheckLine::fail(TABLE, e.to_string()));
                return;
            }
            Err(e) => {
                check(CheckLine::fail(LOADS, e.to_string()));
                check(CheckLine::skip(TABLE, "the library did not load"));
                return;
            }
        };
        check(CheckLine::timed(
            LOADS,
            elapsed,
            self.budgets.startup,
            None,
            "dlopen and clusterkit_startup",
        ));
        let version = library.abi_version();
        let identity = library
            .identity()
            .map(|(name, version)| format!("; {name} {version}"))
            .unwrap_or_default();
        let types: Vec<ResourceTypeHandle> = library.types().collect();
        check(CheckLine::pass(
            TABLE,
            format!(
                "ABI {}.{} (this host speaks {}.{}){identity}; {} type(s): {}",
                version >> 16,
                version & 0xffff,
                clusterkit::ffi::CK_ABI_VERSION_MAJOR,
                clusterkit::ffi::CK_ABI_VERSION_MINOR,
                types.len(),
                names_of(&types)
            ),
        ));
        for ty in &types {
            check(describe(ty));
        }
        let ty = match (&self.args.type_name, types.as_slice()) {
            (Some(name), _) => types.iter().find(|t| t.name() == name),
            (None, [only]) => Some(only),
            (None, _) => None,
        };
        let Some(ty) = ty else {
            check(CheckLine::fail(
                TYPE,
                match &self.args.type_name {
                    Some(name) => format!(
                        "the library exports no type `{name}` (it exports: {})",
                        names_of(&types)
                    ),
                    None => format!(
                        "the library exports {} types ({}): name the one to check",
                        types.len(),
                        names_of(&types)
                    ),
                },
            ));
            return;
        };
        let (valid, line) = match self.properties(ty) {
            Ok(p) => (
                true,
                CheckLine::pass(
                    PROPERTIES,
                    format!(
                        "{} given, valid by the schema and the type's VALIDATE_PROPERTIES ({} with defaults)",
                        self.args.properties.len(),
                        p.len()
                    ),
                ),
            ),
            Err(e) => (false, CheckLine::fail(PROPERTIES, e)),
        };
        check(line);
        let panics =
            evidence::panic_evidence(&self.args.library).unwrap_or(evidence::PanicEvidence {
                rust: false,
                unwinds: false,
            });
        emit(&Line::Facts(Facts {
            type_name: ty.name().to_owned(),
            properties_valid: valid,
            reattach: ty.characteristics().contains(Characteristics::REATTACH),
            rust: panics.rust,
            unwinds: panics.unwinds,
        }));
    }
}

fn names_of(types: &[ResourceTypeHandle]) -> String {
    types
        .iter()
        .map(|t| format!("`{}`", t.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The check of one type's description and schema (the loader checked the
/// schema's consistency already).
fn describe(ty: &ResourceTypeHandle) -> CheckLine {
    let name = format!("type `{}`: description and schema", ty.name());
    let d = ty.description();
    let specs = ty.schema().specs();
    let undocumented: Vec<&str> = specs
        .iter()
        .filter(|s| s.description.trim().is_empty())
        .map(|s| s.name.as_ref())
        .collect();
    if d.description.trim().is_empty() {
        return CheckLine::fail(&name, "the type has no description");
    }
    if !undocumented.is_empty() {
        return CheckLine::fail(
            &name,
            format!(
                "properties without a description: {}",
                undocumented.join(", ")
            ),
        );
    }
    let required: Vec<&str> = specs
        .iter()
        .filter(|s| s.required)
        .map(|s| s.name.as_ref())
        .collect();
    let characteristics: Vec<&str> = d.characteristics.iter_names().map(|(n, _)| n).collect();
    CheckLine::pass(
        &name,
        format!(
            "{} properties (required: {}); characteristics: {}",
            specs.len(),
            if required.is_empty() {
                "none".to_owned()
            } else {
                required.join(", ")
            },
            if characteristics.is_empty() {
                "none".to_owned()
            } else {
                characteristics.join(", ")
            }
        ),
    )
}
