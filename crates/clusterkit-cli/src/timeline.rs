//! Events as people read them: what happened in words, when (UTC or local
//! time, and relative to the first event shown), and below a timed-out
//! call the thread diagnostics that tell a hung call from an idle worker.
//! `clusterkit events`, `run`'s console and the demo share it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// How times are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Zone {
    /// RFC 3339 in UTC, as the log stores them.
    Utc,
    /// The machine's local time, with its offset.
    Local,
}

/// One event as a line: its time, its offset from `first` (the first event
/// shown, if given), its kind and what happened; then the diagnostics lines of a
/// timed-out call, if any.
pub(crate) fn render(e: &Value, first: Option<SystemTime>, zone: Zone) -> Vec<String> {
    let at = e["ts"].as_str().and_then(parse_rfc3339);
    let time = match (at, zone) {
        (Some(t), Zone::Local) => local_time(t),
        _ => e["ts"].as_str().unwrap_or("-").to_owned(),
    };
    // Without a first event (a console as it goes), no offset column.
    let offset = match (at, first) {
        (Some(t), Some(f)) => format!(" {}", relative(t.duration_since(f).unwrap_or_default())),
        (None, Some(_)) => format!(" {}", relative(Duration::ZERO)),
        (_, None) => String::new(),
    };
    let mut lines = vec![format!(
        "{time}{offset}  {:<26} {}",
        e["kind"].as_str().unwrap_or("?"),
        sentence(e)
    )];
    lines.extend(diagnostics(e));
    lines
}

/// `+1.234s`, right-aligned for a column of them.
pub(crate) fn relative(d: Duration) -> String {
    format!("+{:>7.3}s", d.as_secs_f64())
}

fn field(e: &Value, k: &str) -> String {
    match &e[k] {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What happened, in words, for the kinds an operator reads first; the
/// resource and the fields for the others.
pub(crate) fn sentence(e: &Value) -> String {
    highlight(e).unwrap_or_else(|| {
        let mut line = e["resource"].as_str().unwrap_or("-").to_owned();
        if let Some(map) = e.as_object() {
            for (k, v) in map {
                if matches!(
                    k.as_str(),
                    "ts" | "seq" | "id" | "kind" | "resource" | "threads"
                ) {
                    continue;
                }
                match v {
                    Value::String(s) => line.push_str(&format!(" {k}={s:?}")),
                    other => line.push_str(&format!(" {k}={other}")),
                }
            }
        }
        line
    })
}

/// The sentence of a recovery's milestones (what the demo prints); `None`
/// for other kinds.
pub(crate) fn highlight(e: &Value) -> Option<String> {
    let r = e["resource"].as_str().unwrap_or("-");
    let f = |k: &str| field(e, k);
    Some(match e["kind"].as_str()? {
        "health_failed" => format!("{r}: {} failed: {}", f("check"), f("reason")),
        "call_timed_out" => format!(
            "{r}: `{}` still running after {} ms, past its {} ms deadline: a deadlock",
            f("call"),
            f("elapsed_ms"),
            f("deadline_ms")
        ),
        "monitor_killed" => format!("monitor {} killed (SIGKILL): {}", f("pid"), f("reason")),
        // A monitor that never started has no pid: its reason says why.
        "monitor_died" if e["pid"].is_null() => {
            format!("monitor {} did not start: {}", f("monitor"), f("reason"))
        }
        "monitor_died" => format!(
            "monitor {} exited ({}); blamed: {}",
            f("pid"),
            f("status"),
            f("suspects")
        ),
        "monitor_started" => format!("monitor {} started ({})", f("pid"), f("monitor")),
        "resource_reattached" => format!("{r}: re-attached to its running workload, no restart"),
        "resource_isolated" => format!("{r}: isolated in a monitor of its own"),
        "resource_restarted" => format!("{r}: restarted by its restart policy"),
        "resource_online" => format!("{r}: online"),
        "resource_offline" => format!("{r}: offline"),
        "resource_failed" => format!("{r}: failed: {}", f("reason")),
        "call_failed" => format!("{r}: `{}` failed: {}", f("call"), f("error")),
        "resource_cleaned_up" => format!(
            "{r}: cleaned up ({} restarts cleared{}{})",
            f("restarts_cleared"),
            if e["isolation_lifted"] == true {
                ", isolation lifted"
            } else {
                ""
            },
            if e["failure_cleared"] == true {
                ", failure cleared"
            } else {
                ""
            }
        ),
        "host_started" => format!("host started (pid {})", f("pid")),
        "host_stopped" => "host stopped".to_owned(),
        _ => return None,
    })
}

/// The hung thread(s) of a `call_timed_out`, from its diagnostics; no
/// lines for other events.
pub(crate) fn diagnostics(e: &Value) -> Vec<String> {
    let Some(threads) = e["threads"].as_array() else {
        return Vec::new();
    };
    let indent = " ".repeat(13);
    let mut lines = vec![format!(
        "{indent}diagnostics of the monitor's {} threads (from /proc/<pid>/task):",
        threads.len()
    )];
    let mut idle = 0;
    for t in threads {
        let syscall = t["syscall"].as_str().unwrap_or_default();
        let nr = syscall.split(' ').next().unwrap_or("?");
        if nr == "202" {
            idle += 1; // waiting on a futex: an idle worker or the reader
            continue;
        }
        if t["state"] == "S" && !syscall.starts_with("running") {
            let wchan = t["wchan"].as_str().unwrap_or("?");
            let role = if wchan.contains("unix_stream") {
                "the monitor's socket reader, waiting for the host"
            } else {
                "<- the hung call"
            };
            lines.push(format!(
                "{indent}thread {} ({}) asleep in {} (system call {nr}), wchan {wchan}: {role}",
                t["tid"],
                t["name"].as_str().unwrap_or("?"),
                syscall_name(nr),
            ));
        }
    }
    lines.push(format!(
        "{indent}({idle} other threads idle, waiting on futexes)"
    ));
    lines
}

fn syscall_name(nr: &str) -> &'static str {
    match nr {
        "45" => "recvfrom",
        "7" => "poll",
        "0" => "read",
        "202" => "futex",
        "232" => "epoll_wait",
        "35" => "nanosleep",
        _ => "?",
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's days-from-civil).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (a space may stand
/// for the `T`).
pub(crate) fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let b = text.trim().as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let s = std::str::from_utf8(b.get(from..from + len)?).ok()?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: u64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let digits = std::str::from_utf8(&b[start..i]).ok()?;
        if digits.is_empty() {
            return None;
        }
        let padded = format!("{:0<9}", &digits[..digits.len().min(9)]);
        nanos = padded.parse().ok()?;
    }
    let offset_s = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let minutes = num(i + 1, 2)? * 60 + num(i + 4, 2)?;
            if *sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        _ => return None,
    };
    let secs =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(nanos))
}

/// `t` in the machine's local time: `2026-12-01 23:52:04.123 +0100`.
pub(crate) fn local_time(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let Ok(secs) = libc::time_t::try_from(since.as_secs()) else {
        return clusterkit_host::rfc3339(t);
    };
    // SAFETY: localtime_r writes only the `tm` it is given; an all-zero
    // `tm` is a valid value to start from.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            return clusterkit_host::rfc3339(t);
        }
        tm
    };
    let offset_min = tm.tm_gmtoff / 60;
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03} {}{:02}{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        since.subsec_millis(),
        if offset_min < 0 { '-' } else { '+' },
        offset_min.abs() / 60,
        offset_min.abs() % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses_what_the_host_writes_and_offsets() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        let text = clusterkit_host::rfc3339(t);
        assert_eq!(parse_rfc3339(&text), Some(t));
        assert_eq!(
            parse_rfc3339("2026-11-18T12:06:40.123+01:00"),
            Some(t),
            "an offset is subtracted"
        );
        assert_eq!(
            parse_rfc3339("2000-02-29 00:00:00Z"),
            Some(UNIX_EPOCH + Duration::from_secs(951_782_400))
        );
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-11-18T12:06:40",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_timed_out_call_shows_its_hung_thread_under_the_line() {
        let e = serde_json::json!({
            "ts": "2026-11-18T11:06:40.123Z", "kind": "call_timed_out", "resource": "app",
            "call": "is_alive", "elapsed_ms": 1003, "deadline_ms": 1000,
            "threads": [
                {"tid": 7, "name": "ck-worker", "state": "S", "syscall": "7 0x1", "wchan": "do_sys_poll"},
                {"tid": 8, "name": "ck-worker", "state": "S", "syscall": "202 0x1", "wchan": "futex"},
            ],
        });
        let first = parse_rfc3339("2026-11-18T11:06:39.000Z");
        let lines = render(&e, first, Zone::Utc);
        assert!(
            lines[0].starts_with("2026-11-18T11:06:40.123Z +  1.123s  call_timed_out"),
            "{lines:?}"
        );
        assert!(
            lines[0].ends_with("past its 1000 ms deadline: a deadlock"),
            "{lines:?}"
        );
        assert!(
            lines[2].contains("thread 7 (ck-worker) asleep in poll"),
            "{lines:?}"
        );
        assert!(lines[3].contains("1 other threads idle"), "{lines:?}");
    }
}
