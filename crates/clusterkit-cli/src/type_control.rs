//! `clusterkit type-control`: runs a type's (or a resource's) control code
//! in this process, without a host: what an administrator needs before a
//! cluster manager sees the resource (the disk's FORMAT).

use std::path::PathBuf;

use clusterkit::{ControlCode, Logger, Properties, Resource as _, Value};
use clusterkit_loader::Library;

/// `clusterkit type-control …`.
#[derive(clap::Args)]
pub(crate) struct TypeControlArgs {
    /// The resource library.
    library: PathBuf,
    /// The resource type.
    type_name: String,
    /// The control code: a number (decimal or 0x hex), a clusterkit name
    /// (validate_properties, get_operation_timeouts, …) or
    /// type_specific(N) (also type_specific:N) for the type's own codes.
    code: String,
    /// The input, as name=value pairs (an encoded property list). Values
    /// of properties in the type's schema are parsed by their kind; others
    /// are strings, which types convert as their codes document.
    input: Vec<String>,
    /// Open the resource NAME (recover = true: a running workload is
    /// adopted, never started) with the `--property` list, and send the code
    /// to it instead of the type.
    #[arg(long)]
    resource: Option<String>,
    /// A property of the resource opened by --resource (name=value;
    /// repeatable).
    #[arg(long = "property", short = 'p')]
    properties: Vec<String>,
}

/// Parses a control code as [`TypeControlArgs::code`] documents.
pub(crate) fn parse_code(text: &str) -> Result<ControlCode, String> {
    let named = [
        ControlCode::GET_CHARACTERISTICS,
        ControlCode::GET_PROPERTIES,
        ControlCode::VALIDATE_PROPERTIES,
        ControlCode::SET_PROPERTIES,
        ControlCode::GET_REQUIRED_DEPENDENCIES,
        ControlCode::GET_OPERATION_TIMEOUTS,
    ];
    let lower = text.trim().to_ascii_lowercase();
    if let Some(code) = named.iter().find(|c| c.to_string() == lower) {
        return Ok(*code);
    }
    let specific = lower
        .strip_prefix("type_specific(")
        .and_then(|r| r.strip_suffix(')'))
        .or_else(|| lower.strip_prefix("type_specific:"));
    let number = |n: &str| {
        n.strip_prefix("0x").map_or_else(
            || n.parse::<u32>().ok(),
            |h| u32::from_str_radix(h, 16).ok(),
        )
    };
    let bad = || {
        format!(
            "control code {text:?}: expected a number, type_specific(N) or one of {}",
            named.map(|c| c.to_string()).join(", ")
        )
    };
    match specific {
        Some(n) => {
            let n = number(n).filter(|n| *n < ControlCode::TYPE_SPECIFIC_BASE.0);
            n.map(ControlCode::type_specific).ok_or_else(bad)
        }
        None => number(&lower).map(ControlCode).ok_or_else(bad),
    }
}

/// `name=value` pairs, split at the first `=`.
fn pairs(list: &[String], what: &str) -> Result<Vec<(String, String)>, String> {
    list.iter()
        .map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("{what} {a:?}: expected name=value"))
        })
        .collect()
}

pub(crate) fn run(args: &TypeControlArgs) -> Result<(), String> {
    let code = parse_code(&args.code)?;
    let library = Library::load(
        &args.library,
        Logger::from_fn(|level, message| {
            if level <= clusterkit::Level::Info {
                eprintln!("clusterkit type-control: {level}: {message}");
            }
        }),
    )
    .map_err(|e| e.to_string())?;
    let ty = library.resource_type(&args.type_name).ok_or_else(|| {
        format!(
            "{} exports no type `{}` (it exports: {})",
            library.path().display(),
            args.type_name,
            library
                .types()
                .map(|t| t.name().to_owned())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let schema = ty.schema();
    // Input values named like a schema property take its kind (so
    // validate_properties gets typed values); the rest stay strings.
    let mut input = Properties::new();
    let mut known = Vec::new();
    for (name, value) in pairs(&args.input, "input")? {
        if schema.spec(&name).is_some() {
            known.push((name, value));
        } else {
            input.insert(name, Value::String(value));
        }
    }
    let typed =
        crate::ocf::parse_assignments(schema, known.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|e| format!("input: {e}"))?;
    for (name, value) in typed.iter() {
        input.insert(name, value.clone());
    }
    let output = match &args.resource {
        None => {
            if !args.properties.is_empty() {
                return Err("--property needs --resource".into());
            }
            ty.control(code, &input.encode())
                .map_err(|e| format!("type `{}`: {code}: {e}", ty.name()))?
        }
        Some(name) => {
            let given = pairs(&args.properties, "--property")?;
            let props = crate::ocf::parse_assignments(
                schema,
                given.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .map_err(|e| format!("resource `{name}`: {e}"))?;
            let log = Logger::from_fn(|level, message| {
                if level <= clusterkit::Level::Warn {
                    eprintln!("clusterkit type-control: {level}: {message}");
                }
            });
            let resource = ty
                .open(name, &props, true, log)
                .map_err(|e| format!("opening resource `{name}`: {e}"))?;
            let result = resource.control(code, &input.encode());
            // Closing releases this handle only; the workload keeps running.
            let closed = resource.close();
            let output = result.map_err(|e| format!("resource `{name}`: {code}: {e}"))?;
            closed.map_err(|e| format!("closing resource `{name}`: {e}"))?;
            output
        }
    };
    print_output(&output);
    Ok(())
}

/// Prints a code's output: a property list as name=value lines, printable
/// text as it is, other bytes in hexadecimal, nothing when empty.
pub(crate) fn print_output(output: &[u8]) {
    if output.is_empty() {
        return;
    }
    match Properties::decode(output) {
        Ok(props) => {
            for (name, value) in props.iter() {
                println!("{name}={}", crate::ocf::value_text(value));
            }
        }
        Err(_) => match std::str::from_utf8(output) {
            Ok(text)
                if text
                    .chars()
                    .all(|c| !c.is_control() || c == '\n' || c == '\t') =>
            {
                println!("{}", text.trim_end_matches('\n'))
            }
            _ => println!(
                "{}",
                output
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_by_number_name_and_type_specific() {
        assert_eq!(parse_code("3").unwrap(), ControlCode::VALIDATE_PROPERTIES);
        assert_eq!(
            parse_code("Validate_Properties").unwrap(),
            ControlCode::VALIDATE_PROPERTIES
        );
        assert_eq!(
            parse_code("type_specific(1)").unwrap(),
            ControlCode::type_specific(1)
        );
        assert_eq!(
            parse_code("type_specific:0x2").unwrap(),
            ControlCode::type_specific(2)
        );
        assert_eq!(
            parse_code("0x80000001").unwrap(),
            ControlCode::type_specific(1)
        );
        let e = parse_code("format").unwrap_err();
        assert!(e.contains("control code \"format\""), "{e}");
        assert!(parse_code("type_specific(2147483648)").is_err());
    }
}
