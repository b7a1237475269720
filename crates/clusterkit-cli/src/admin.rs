//! The operator's tools beside online/offline: `cleanup` after failures,
//! `control` (a control code to a resource of the running host; the
//! host-less variant is `type-control`), and `types` (what a library's
//! types accept, like `pcs resource describe`, read in a child process so
//! that a damaged library cannot crash the command).

use std::path::PathBuf;

use clusterkit::{Properties, Value as PropertyValue};
use serde_json::{Value, json};

use crate::Target;
use crate::control;

/// Options of `clusterkit cleanup`.
#[derive(clap::Args)]
pub(crate) struct CleanupArgs {
    /// The resource.
    resource: String,
    #[command(flatten)]
    target: Target,
}

/// Runs `clusterkit cleanup`.
pub(crate) fn cleanup(args: &CleanupArgs) -> Result<(), String> {
    let socket = args.target.socket()?;
    control::call(
        &socket,
        json!({"command": "cleanup", "resource": args.resource}),
    )
    .map_err(|e| e.to_string())?;
    println!(
        "{}: cleaned up (restart counters reset, isolation lifted for its next open, \
         a held failure cleared)",
        args.resource
    );
    Ok(())
}

/// Options of `clusterkit control`.
#[derive(clap::Args)]
pub(crate) struct ControlArgs {
    /// The resource, open in the running host.
    resource: String,
    /// The control code: a number (decimal or 0x hex), a clusterkit name
    /// (validate_properties, get_operation_timeouts, …) or
    /// type_specific(N) for the type's own codes.
    code: String,
    /// The input, as name=value pairs (an encoded property list of
    /// strings, which types convert as their codes document).
    input: Vec<String>,
    #[command(flatten)]
    target: Target,
}

/// Runs `clusterkit control`.
pub(crate) fn control(args: &ControlArgs) -> Result<(), String> {
    let code = crate::type_control::parse_code(&args.code)?;
    let mut input = Properties::new();
    for pair in &args.input {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("input {pair:?}: expected name=value"))?;
        input.insert(k, PropertyValue::String(v.to_owned()));
    }
    let encoded = if args.input.is_empty() {
        Vec::new()
    } else {
        input.encode()
    };
    let socket = args.target.socket()?;
    let reply = control::call(
        &socket,
        json!({
            "command": "control",
            "resource": args.resource,
            "code": code.0,
            "input": control::hex(&encoded),
        }),
    )
    .map_err(|e| format!("resource `{}`: {code}: {e}", args.resource))?;
    let output = control::unhex(reply["output"].as_str().unwrap_or_default())
        .map_err(|e| format!("the host's answer: {e}"))?;
    crate::type_control::print_output(&output);
    Ok(())
}

/// Options of `clusterkit types`.
#[derive(clap::Args)]
pub(crate) struct TypesArgs {
    /// The resource library (`libclusterkit_dummy.so`).
    library: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Internal: describe in this process (`types` runs itself so).
    #[arg(long, hide = true)]
    in_process: bool,
}

/// Runs `clusterkit types`.
pub(crate) fn types(args: &TypesArgs) -> Result<(), String> {
    if args.in_process {
        let described = describe(&args.library)?;
        println!("{described}");
        return Ok(());
    }
    use std::os::unix::process::ExitStatusExt;
    let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    let out = std::process::Command::new(exe)
        .args(["types", "--in-process"])
        .arg(&args.library)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("starting the library reader: {e}"))?;
    if let Some(signal) = out.status.signal() {
        return Err(format!(
            "{}: loading it crashed the reader (signal {signal}): the file is damaged or \
             truncated, or its startup crashes",
            args.library.display()
        ));
    }
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err.trim().trim_start_matches("clusterkit: ").to_owned());
    }
    let described: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("the library reader's answer: {e}"))?;
    if args.json {
        println!("{described}");
    } else {
        print!("{}", human(&described));
    }
    Ok(())
}

/// Every type of the library at `path` as JSON.
fn describe(path: &std::path::Path) -> Result<Value, String> {
    let library = clusterkit_loader::Library::load(path, clusterkit::Logger::discard())
        .map_err(|e| e.to_string())?;
    let types: Vec<Value> = library
        .types()
        .map(|ty| {
            let properties: Vec<Value> = ty
                .schema()
                .specs()
                .iter()
                .map(|p| {
                    json!({
                        "name": p.name,
                        "kind": p.kind.to_string(),
                        "description": p.description,
                        "required": p.required,
                        "default": p.default.as_ref().map(crate::ocf::value_text),
                        "min": p.min.map(|m| m.to_string()),
                        "max": p.max.map(|m| m.to_string()),
                        "secret": p.secret,
                        "read_only": p.read_only,
                        "unique": p.unique,
                        "apply": match p.apply {
                            clusterkit::Apply::Live => "live",
                            clusterkit::Apply::NextOnline => "next_online",
                        },
                    })
                })
                .collect();
            let characteristics: Vec<&str> = ty
                .characteristics()
                .iter_names()
                .map(|(name, _)| name)
                .collect();
            json!({
                "name": ty.name(),
                "description": ty.description().description,
                "characteristics": characteristics,
                "properties": properties,
            })
        })
        .collect();
    Ok(json!({"library": path.display().to_string(), "types": types}))
}

/// The description for people.
fn human(described: &Value) -> String {
    let types = described["types"].as_array().cloned().unwrap_or_default();
    let mut out = format!(
        "{}: {} type{}\n",
        described["library"].as_str().unwrap_or_default(),
        types.len(),
        if types.len() == 1 { "" } else { "s" }
    );
    for t in &types {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        out.push_str(&format!("\n{}: {}\n", s(&t["name"]), s(&t["description"])));
        let characteristics: Vec<String> = t["characteristics"]
            .as_array()
            .map(|a| a.iter().map(s).collect())
            .unwrap_or_default();
        out.push_str(&format!(
            "  characteristics: {}\n  properties:\n",
            if characteristics.is_empty() {
                "none".to_owned()
            } else {
                characteristics.join(", ")
            }
        ));
        for p in t["properties"].as_array().into_iter().flatten() {
            let mut flags = Vec::new();
            if p["required"] == true {
                flags.push("required".to_owned());
            }
            if let Some(d) = p["default"].as_str() {
                flags.push(format!("default {d}"));
            }
            match (p["min"].as_str(), p["max"].as_str()) {
                (Some(min), Some(max)) => flags.push(format!("{min}..={max}")),
                (Some(min), None) => flags.push(format!("min {min}")),
                (None, Some(max)) => flags.push(format!("max {max}")),
                (None, None) => {}
            }
            for flag in ["secret", "read_only", "unique"] {
                if p[flag] == true {
                    flags.push(flag.replace('_', "-"));
                }
            }
            if p["apply"] == "live" {
                flags.push("applies live".into());
            }
            out.push_str(&format!(
                "    {:<20} {:<12} {}\n",
                s(&p["name"]),
                s(&p["kind"]),
                flags.join(", ")
            ));
            if !s(&p["description"]).is_empty() {
                out.push_str(&format!("    {:<20} {}\n", "", s(&p["description"])));
            }
        }
    }
    out
}
