//! Reading the `[metrics]` endpoint of a running `clusterkit run`: one
//! `GET /metrics` over loopback, the health-check counter and latency
//! histogram of one check out of the Prometheus text, and percentiles of
//! the difference of two scrapes (interpolated inside a bucket).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A scrape is given this long; a host busy with 100 000 resources renders
/// a few MB of text.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(60);

/// `GET /metrics` at `addr`: the body, or what went wrong.
pub(crate) fn get_metrics(addr: SocketAddr) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT)?;
    stream.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
    stream.set_write_timeout(Some(SCRAPE_TIMEOUT))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| {
        io::Error::other(format!(
            "GET /metrics at {addr}: no header end in the reply"
        ))
    })?;
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") {
        return Err(io::Error::other(format!(
            "GET /metrics at {addr}: {status:?}"
        )));
    }
    Ok(body.to_owned())
}

/// What one scrape says about one health check.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CheckMetrics {
    /// `clusterkit_health_checks_total{check=…}`.
    pub(crate) checks: u64,
    /// `clusterkit_health_check_duration_seconds_bucket{check=…}`: (upper
    /// bound in µs, cumulative count), finite bounds only, ascending.
    pub(crate) buckets: Vec<(f64, u64)>,
    /// The `+Inf` bucket (every check).
    pub(crate) count: u64,
}

impl CheckMetrics {
    /// The figures of check `check` (`looks_alive`) in the exposition text.
    pub(crate) fn parse(text: &str, check: &str) -> io::Result<CheckMetrics> {
        let label = format!("check=\"{check}\"");
        let mut m = CheckMetrics::default();
        let mut saw_total = false;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Some((name, labels)) = series.split_once('{') else {
                continue;
            };
            if !labels.split(',').any(|l| l.trim_end_matches('}') == label) {
                continue;
            }
            let bad = || io::Error::other(format!("metrics: cannot read the line {line:?}"));
            match name {
                "clusterkit_health_checks_total" => {
                    m.checks = value.parse().map_err(|_| bad())?;
                    saw_total = true;
                }
                "clusterkit_health_check_duration_seconds_bucket" => {
                    let le = labels
                        .split(',')
                        .find_map(|l| l.strip_prefix("le=\""))
                        .map(|l| l.trim_end_matches('}').trim_end_matches('"'))
                        .ok_or_else(bad)?;
                    let n: u64 = value.parse().map_err(|_| bad())?;
                    if le == "+Inf" {
                        m.count = n;
                    } else {
                        let seconds: f64 = le.parse().map_err(|_| bad())?;
                        m.buckets.push((seconds * 1e6, n));
                    }
                }
                _ => {}
            }
        }
        if !saw_total || m.buckets.is_empty() {
            return Err(io::Error::other(format!(
                "metrics: no clusterkit_health_checks_total or duration histogram for \
                 check {check:?} (is this a clusterkit run with [metrics]?)"
            )));
        }
        m.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(m)
    }

    /// What happened between `earlier` and this scrape (counts subtracted).
    pub(crate) fn since(&self, earlier: &CheckMetrics) -> CheckMetrics {
        CheckMetrics {
            checks: self.checks.saturating_sub(earlier.checks),
            buckets: self
                .buckets
                .iter()
                .map(|&(bound, n)| {
                    let before = earlier
                        .buckets
                        .iter()
                        .find(|b| b.0 == bound)
                        .map_or(0, |b| b.1);
                    (bound, n.saturating_sub(before))
                })
                .collect(),
            count: self.count.saturating_sub(earlier.count),
        }
    }

    /// Percentile `p` (0–100) in µs, linearly interpolated inside its
    /// bucket (the first bucket starts at 0). `None` without checks; past
    /// the last finite bound, that bound (a floor, not a value).
    pub(crate) fn percentile_us(&self, p: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = p / 100.0 * self.count as f64;
        let (mut lower, mut below) = (0.0, 0u64);
        for &(bound, cumulative) in &self.buckets {
            if cumulative as f64 >= rank && cumulative > below {
                let share = (rank - below as f64) / (cumulative - below) as f64;
                return Some(lower + (bound - lower) * share.clamp(0.0, 1.0));
            }
            (lower, below) = (bound, cumulative);
        }
        Some(lower)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# TYPE clusterkit_health_checks_total counter
clusterkit_health_checks_total{check=\"looks_alive\"} 300
clusterkit_health_checks_total{check=\"is_alive\"} 7
clusterkit_health_check_duration_seconds_bucket{check=\"looks_alive\",le=\"0.0001\"} 0
clusterkit_health_check_duration_seconds_bucket{check=\"looks_alive\",le=\"0.00025\"} 100
clusterkit_health_check_duration_seconds_bucket{check=\"looks_alive\",le=\"0.0005\"} 300
clusterkit_health_check_duration_seconds_bucket{check=\"looks_alive\",le=\"+Inf\"} 300
clusterkit_health_check_duration_seconds_bucket{check=\"is_alive\",le=\"0.0001\"} 7
clusterkit_health_check_duration_seconds_bucket{check=\"is_alive\",le=\"+Inf\"} 7
";

    #[test]
    fn one_check_is_read_and_interpolated_inside_its_bucket() {
        let m = CheckMetrics::parse(TEXT, "looks_alive").unwrap();
        assert_eq!((m.checks, m.count, m.buckets.len()), (300, 300, 3));
        // Rank 150 is a quarter into the 250–500 µs bucket (100 → 300).
        let p50 = m.percentile_us(50.0).unwrap();
        assert!((p50 - 312.5).abs() < 1e-6, "{p50}");
        // Rank 100 is the top of the 100–250 µs bucket.
        assert!((m.percentile_us(100.0 / 3.0).unwrap() - 250.0).abs() < 1e-6);
        let earlier = CheckMetrics::parse(&TEXT.replace("} 300", "} 100"), "looks_alive").unwrap();
        let delta = m.since(&earlier);
        assert_eq!((delta.checks, delta.count), (200, 200));
        // Every check of the window was in the 250–500 µs bucket.
        assert!((delta.percentile_us(50.0).unwrap() - 375.0).abs() < 1e-6);
    }

    #[test]
    fn a_text_without_the_check_is_an_error_naming_it() {
        let e = CheckMetrics::parse("clusterkit_up 1\n", "looks_alive").unwrap_err();
        assert!(e.to_string().contains("looks_alive"), "{e}");
        assert_eq!(
            CheckMetrics::default().percentile_us(50.0),
            None,
            "no checks, no percentile"
        );
    }
}
