//! The lines a check process sends its supervisor, and the report made of
//! them.

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What precedes every protocol line on a check process's stdout, so that
/// whatever a library prints there itself is told apart and ignored.
pub(crate) const PREFIX: &str = "clusterkit-check ";

/// One check's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Outcome {
    /// The library keeps this part of the contract.
    Pass,
    /// It does not; the detail says how.
    Fail,
    /// Not checked; the detail says why.
    Skip,
    /// Passed, with something the author should look at; no failure.
    Warn,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CheckLine {
    /// What was checked (`open`, `terminate ends a pending online`, …).
    pub(crate) name: String,
    pub(crate) outcome: Outcome,
    /// Why it passed, failed or was skipped.
    pub(crate) detail: String,
    /// How long the call took, when one entry point was timed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) elapsed_ms: Option<f64>,
    /// The budget the call was timed against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) budget_ms: Option<f64>,
}

impl CheckLine {
    pub(crate) fn new(name: &str, outcome: Outcome, detail: impl Into<String>) -> CheckLine {
        CheckLine {
            name: name.to_owned(),
            outcome,
            detail: detail.into(),
            elapsed_ms: None,
            budget_ms: None,
        }
    }

    pub(crate) fn pass(name: &str, detail: impl Into<String>) -> CheckLine {
        CheckLine::new(name, Outcome::Pass, detail)
    }

    pub(crate) fn fail(name: &str, detail: impl Into<String>) -> CheckLine {
        CheckLine::new(name, Outcome::Fail, detail)
    }

    pub(crate) fn skip(name: &str, detail: impl Into<String>) -> CheckLine {
        CheckLine::new(name, Outcome::Skip, detail)
    }

    /// Turns a pass into a warning saying `why`.
    pub(crate) fn warn(&mut self, why: &str) {
        if self.outcome == Outcome::Pass {
            self.outcome = Outcome::Warn;
            self.detail = format!("{}; but {why}", self.detail);
        }
    }

    /// A timed call that returned: passes when `elapsed` is within `budget`,
    /// and says by how much it is over otherwise. `problem` (what the call
    /// returned that is wrong) fails it whatever the time.
    pub(crate) fn timed(
        name: &str,
        elapsed: Duration,
        budget: Duration,
        problem: Option<String>,
        detail: impl Into<String>,
    ) -> CheckLine {
        let detail = detail.into();
        let over = elapsed.checked_sub(budget).filter(|d| !d.is_zero());
        let (outcome, text) = match (problem, over) {
            (Some(problem), _) => (Outcome::Fail, problem),
            (None, Some(over)) => (
                Outcome::Fail,
                format!(
                    "took {}: over its {} budget by {}{}",
                    human(elapsed),
                    human(budget),
                    human(over),
                    if detail.is_empty() {
                        String::new()
                    } else {
                        format!(" ({detail})")
                    }
                ),
            ),
            (None, None) => (Outcome::Pass, detail),
        };
        CheckLine {
            elapsed_ms: Some(elapsed.as_secs_f64() * 1000.0),
            budget_ms: Some(budget.as_secs_f64() * 1000.0),
            ..CheckLine::new(name, outcome, text)
        }
    }
}

/// Facts the library's load tells the supervisor, to plan the next checks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Facts {
    /// The type the resource checks use.
    pub(crate) type_name: String,
    /// Whether the properties given are valid: the resource checks need them.
    pub(crate) properties_valid: bool,
    /// Whether the type declares `REATTACH`.
    pub(crate) reattach: bool,
    /// Whether the library was built by rustc.
    pub(crate) rust: bool,
    /// Whether it links the unwinding panic runtime.
    pub(crate) unwinds: bool,
}

/// One protocol line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "line", rename_all = "snake_case")]
pub(crate) enum Line {
    /// The checks this process means to report, in order: those it does
    /// not report (it died first) are reported as not reached.
    Plan { checks: Vec<String> },
    /// A call into the library starts, on behalf of the check `check`; the
    /// supervisor kills the process if no line follows within `limit_ms`.
    Call {
        what: String,
        check: String,
        limit_ms: u64,
    },
    /// A check's result.
    Check(CheckLine),
    /// What the supervisor needs to plan (the load process only).
    Facts(Facts),
    /// A line the library logged.
    Log { level: String, message: String },
}

/// A duration for people: `12.3 ms`, `1.20 s`.
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else if ms < 1000.0 {
        trim_zero(format!("{ms:.1}")) + " ms"
    } else {
        trim_zero(format!("{:.2}", ms / 1000.0)) + " s"
    }
}

/// `300.0` → `300`, `1.50` → `1.5`, `1.00` → `1`.
fn trim_zero(number: String) -> String {
    number
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_owned()
}

/// The whole report: every line, in order.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Report {
    pub(crate) library: String,
    #[serde(rename = "type")]
    pub(crate) type_name: Option<String>,
    pub(crate) checks: Vec<CheckLine>,
    /// Notes that are no check: cleanups after a crash, library log lines.
    pub(crate) notes: Vec<String>,
    pub(crate) verdict: String,
}

impl Report {
    /// The checks that failed.
    pub(crate) fn failed(&self) -> Vec<&CheckLine> {
        self.checks
            .iter()
            .filter(|c| c.outcome == Outcome::Fail)
            .collect()
    }

    /// Sets the verdict line from the checks.
    pub(crate) fn conclude(&mut self) {
        let failed = self.failed();
        let count = |outcome| self.checks.iter().filter(|c| c.outcome == outcome).count();
        let (passed, warned, skipped) = (
            count(Outcome::Pass),
            count(Outcome::Warn),
            count(Outcome::Skip),
        );
        self.verdict = if failed.is_empty() {
            format!("PASS: {passed} checks passed, {warned} with warnings, {skipped} skipped")
        } else {
            format!(
                "FAIL: {} of {} checks failed ({})",
                failed.len(),
                self.checks.len(),
                failed
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
    }

    /// The report as text: one line per check, then the verdict.
    pub(crate) fn text(&self) -> String {
        let mut out = format!(
            "clusterkit check {}{}\n",
            self.library,
            self.type_name
                .as_ref()
                .map(|t| format!(", type `{t}`"))
                .unwrap_or_default()
        );
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &self.checks {
            let outcome = match c.outcome {
                Outcome::Pass => "pass",
                Outcome::Fail => "FAIL",
                Outcome::Skip => "skip",
                Outcome::Warn => "WARN",
            };
            let timing = match (c.elapsed_ms, c.budget_ms) {
                (Some(e), Some(b)) => format!(
                    "{} / {}",
                    human(Duration::from_secs_f64(e / 1000.0)),
                    human(Duration::from_secs_f64(b / 1000.0))
                ),
                _ => String::new(),
            };
            let line = format!(
                "{outcome}  {:<width$}  {timing:>19}  {}",
                c.name,
                c.detail.replace('\n', "; ")
            );
            let _ = writeln!(out, "{}", line.trim_end());
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        let _ = writeln!(out, "verdict: {}", self.verdict);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timed_line_says_which_budget_is_over_and_by_how_much() {
        let over = CheckLine::timed(
            "open",
            Duration::from_millis(450),
            Duration::from_millis(300),
            None,
            "",
        );
        assert_eq!(over.outcome, Outcome::Fail);
        assert_eq!(over.detail, "took 450 ms: over its 300 ms budget by 150 ms");
        let within = CheckLine::timed(
            "open",
            Duration::from_millis(20),
            Duration::from_millis(300),
            None,
            "opened",
        );
        assert_eq!(within.outcome, Outcome::Pass);
        assert_eq!(within.detail, "opened");
        let wrong = CheckLine::timed(
            "open",
            Duration::from_millis(1),
            Duration::from_millis(300),
            Some("returned an error".into()),
            "",
        );
        assert_eq!(
            (wrong.outcome, wrong.detail.as_str()),
            (Outcome::Fail, "returned an error")
        );
    }

    #[test]
    fn lines_survive_the_trip_through_json() {
        let line = Line::Call {
            what: "online".into(),
            check: "online".into(),
            limit_ms: 10,
        };
        let text = serde_json::to_string(&line).unwrap();
        assert!(text.starts_with(r#"{"line":"call""#), "{text}");
        let back: Line = serde_json::from_str(&text).unwrap();
        assert!(matches!(back, Line::Call { limit_ms: 10, .. }));
    }
}
