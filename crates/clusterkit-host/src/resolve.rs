//! Resolving a configuration into the engine's resource specs: names,
//! dependencies (unknown, cross-group, cycles) and timing, checked as a
//! pure function, with a table of tests.

use std::collections::HashMap;

use crate::config::{ResourceConfig, Timing, TimingOverrides};
use crate::engine::core::ResourceSpec;
use crate::error::HostError;

/// Every resource of the configuration, checked and resolved against the
/// defaults (host-wide, then per type); the first problem is an error that
/// names the resource.
pub(crate) fn resolve(
    resources: &[ResourceConfig],
    defaults: &Timing,
    type_timing: &HashMap<String, TimingOverrides>,
) -> Result<Vec<ResourceSpec>, HostError> {
    resolve_all(resources, defaults, type_timing).map_err(|mut problems| problems.remove(0))
}

/// As [`resolve`], with every problem (each names its resource), so one
/// check shows them all.
pub(crate) fn resolve_all(
    resources: &[ResourceConfig],
    defaults: &Timing,
    type_timing: &HashMap<String, TimingOverrides>,
) -> Result<Vec<ResourceSpec>, Vec<HostError>> {
    let mut problems = Vec::new();
    let mut problem = |message: String| problems.push(HostError::Config(message));
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, r) in resources.iter().enumerate() {
        if r.name.is_empty() {
            problem(format!("resource #{} has an empty name", i + 1));
            continue;
        }
        // Names become file names, event fields and table cells: one
        // documented alphabet (`clusterkit::validate_resource_name`).
        if let Err(e) = clusterkit::validate_resource_name(&r.name) {
            problem(format!("resource #{}: {e}", i + 1));
        }
        if index.insert(&r.name, i).is_some() {
            problem(format!("resource `{}` is declared twice", r.name));
        }
    }
    let mut specs = Vec::with_capacity(resources.len());
    for r in resources {
        let mut depends_on = Vec::new();
        for d in &r.depends_on {
            let Some(&j) = index.get(d.as_str()) else {
                problem(format!(
                    "resource `{}` depends on `{d}`, which does not exist",
                    r.name
                ));
                continue;
            };
            let other = &resources[j];
            if other.group != r.group {
                problem(format!(
                    "resource `{}` (group `{}`) depends on `{d}` in another group (`{}`); \
                     dependencies stay within a group",
                    r.name, r.group, other.group
                ));
                continue;
            }
            depends_on.push(j);
        }
        let base = type_timing
            .get(&r.type_name)
            .map_or(*defaults, |o| o.apply(defaults));
        let timing = r.timing.apply(&base);
        if let Err(why) = timing.check() {
            problem(format!("resource `{}`: {why}", r.name));
        }
        specs.push(ResourceSpec {
            name: r.name.clone(),
            library: r.library.clone(),
            type_name: r.type_name.clone(),
            properties: r.properties.clone(),
            group: r.group.clone(),
            depends_on,
            timing,
            placement: r.placement,
            separate_monitor: r.separate_monitor,
        });
    }
    if let Some(cycle) = find_cycle(&specs) {
        problem(format!(
            "dependency cycle: {}",
            cycle
                .iter()
                .map(|&i| specs[i].name.as_str())
                .collect::<Vec<_>>()
                .join(" -> ")
        ));
    }
    if problems.is_empty() {
        Ok(specs)
    } else {
        Err(problems)
    }
}

/// Finds a dependency cycle, as the resources on it in order.
pub(crate) fn find_cycle(specs: &[ResourceSpec]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        i: usize,
        specs: &[ResourceSpec],
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        match marks[i] {
            Mark::Done => return None,
            Mark::Active => {
                let start = path.iter().position(|&p| p == i).expect("on the path");
                let mut cycle = path[start..].to_vec();
                cycle.push(i);
                return Some(cycle);
            }
            Mark::New => {}
        }
        marks[i] = Mark::Active;
        path.push(i);
        for &d in &specs[i].depends_on {
            if let Some(c) = visit(d, specs, marks, path) {
                return Some(c);
            }
        }
        path.pop();
        marks[i] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; specs.len()];
    (0..specs.len()).find_map(|i| visit(i, specs, &mut marks, &mut Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str) -> ResourceConfig {
        ResourceConfig::new(name, "/lib/x.so", "dummy")
    }

    fn check(resources: Vec<ResourceConfig>) -> Result<Vec<ResourceSpec>, String> {
        resolve(&resources, &Timing::default(), &HashMap::new()).map_err(|e| e.to_string())
    }

    #[test]
    fn configurations_table() {
        let cases: Vec<(Vec<ResourceConfig>, Result<(), &str>)> =
            vec![
                (vec![r("a"), r("b").depends_on("a")], Ok(())),
                (vec![r("")], Err("resource #1 has an empty name")),
                (vec![r("a"), r("a")], Err("resource `a` is declared twice")),
                (
                    vec![r("../../escape")],
                    Err("resource #1: invalid input: resource name \"../../escape\""),
                ),
                (vec![r("a\nforged")], Err("resource #1: invalid input")),
                (
                    vec![r("a").depends_on("ghost")],
                    Err("resource `a` depends on `ghost`, which does not exist"),
                ),
                (
                    vec![r("a").group("g1"), r("b").group("g2").depends_on("a")],
                    Err("in another group"),
                ),
                (
                    vec![r("a").depends_on("b"), r("b").depends_on("a")],
                    Err("dependency cycle: a -> b -> a"),
                ),
                (
                    vec![r("a").timing(|t| {
                        t.deadlock_timeout = Some(std::time::Duration::from_millis(10))
                    })],
                    Err("resource `a`: "),
                ),
            ];
        for (resources, expected) in cases {
            let names: Vec<String> = resources.iter().map(|r| r.name.clone()).collect();
            match (check(resources), expected) {
                (Ok(_), Ok(())) => {}
                (Err(e), Err(wanted)) => assert!(e.contains(wanted), "{names:?}: {e}"),
                (got, wanted) => panic!("{names:?}: got {:?}, expected {wanted:?}", got.map(drop)),
            }
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let resources = vec![
            r("a").depends_on("ghost"),
            r("a"),
            r("bad/name"),
            r("c").depends_on("d"),
            r("d").depends_on("c"),
        ];
        let problems = resolve_all(&resources, &Timing::default(), &HashMap::new())
            .err()
            .expect("problems");
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 4, "{text:#?}");
        assert!(text[0].contains("declared twice"), "{text:#?}");
        assert!(text[1].contains("resource #3"), "{text:#?}");
        assert!(
            text[2].contains("`ghost`, which does not exist"),
            "{text:#?}"
        );
        assert!(
            text[3].contains("dependency cycle: c -> d -> c"),
            "{text:#?}"
        );
    }

    #[test]
    fn timing_falls_back_from_resource_to_type_to_host() {
        let mut per_type = HashMap::new();
        let overrides = TimingOverrides {
            looks_alive_interval: Some(std::time::Duration::from_secs(7)),
            ..TimingOverrides::default()
        };
        per_type.insert("dummy".to_owned(), overrides);
        let resources = vec![
            r("a"),
            r("b").timing(|t| t.looks_alive_interval = Some(std::time::Duration::from_secs(2))),
        ];
        let specs = resolve(&resources, &Timing::default(), &per_type).unwrap();
        assert_eq!(specs[0].timing.looks_alive_interval.as_secs(), 7);
        assert_eq!(specs[1].timing.looks_alive_interval.as_secs(), 2);
        assert_eq!(
            specs[0].timing.is_alive_interval,
            Timing::default().is_alive_interval
        );
    }
}
