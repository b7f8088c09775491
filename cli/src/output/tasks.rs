//! `coloc tasks`: colocd's background tasks as a table for people and a
//! JSON array for scripts. Times are shown relative to colocd's own clock
//! (sent with the list), so a caller whose clock is off still reads how
//! long ago each task ran.

use coloc_proto::controller::v1 as pb;
use serde_json::{Value, json};

use super::{Table, clean};

pub fn outcome_word(outcome: i32) -> &'static str {
    match pb::TaskOutcome::try_from(outcome) {
        Ok(pb::TaskOutcome::Ok) => "ok",
        Ok(pb::TaskOutcome::Error) => "error",
        Ok(pb::TaskOutcome::Unspecified) | Err(_) => "none",
    }
}

pub fn task_json(t: &pb::BackgroundTask) -> Value {
    json!({
        "name": t.name,
        "description": t.description,
        "period_ms": t.period_ms,
        "runs": t.runs,
        "failures": t.failures,
        "running": t.running,
        "last_start_unix_ms": t.last_start_unix_ms,
        "last_duration_us": t.last_duration_us,
        "last_outcome": outcome_word(t.last_outcome),
        "last_summary": t.last_summary,
        "last_error": t.last_error,
        "last_error_unix_ms": t.last_error_unix_ms,
    })
}

pub fn tasks_json(list: &pb::ListTasksResponse) -> Value {
    Value::Array(list.tasks.iter().map(task_json).collect())
}

/// `100 ms`, `2 s`, `1.5 s`, `5 min`, `2 h`.
pub fn fmt_period(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms} ms"),
        1000..60_000 if ms.is_multiple_of(1000) => format!("{} s", ms / 1000),
        1000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 if ms.is_multiple_of(60_000) => format!("{} min", ms / 60_000),
        60_000..3_600_000 => format!("{:.1} min", ms as f64 / 60_000.0),
        _ => format!("{:.1} h", ms as f64 / 3_600_000.0),
    }
}

/// How long a run took: `<0.1 ms`, `4.2 ms`, `1.3 s`.
pub fn fmt_took(us: u64) -> String {
    match us {
        0..100 => "<0.1 ms".to_string(),
        100..1_000_000 => format!("{:.1} ms", us as f64 / 1000.0),
        _ => format!("{:.1} s", us as f64 / 1_000_000.0),
    }
}

/// `just now`, `12 s ago`, `3 min ago`, `5 h ago`, `2 d ago`; `never` for
/// 0. A time ahead of `now_ms` (clocks are not perfect) reads as now.
pub fn fmt_ago(now_ms: i64, at_ms: i64) -> String {
    if at_ms <= 0 {
        return "never".to_string();
    }
    let secs = now_ms.saturating_sub(at_ms).max(0) / 1000;
    match secs {
        0 => "just now".to_string(),
        1..60 => format!("{secs} s ago"),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86_400 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

pub fn tasks_table(list: &pb::ListTasksResponse) -> String {
    let now = list.controller_unix_ms;
    Table::new(&[
        "NAME", "PERIOD", "LAST RUN", "DURATION", "RUNS", "OUTCOME", "ERROR",
    ])
    .rows(&list.tasks, |t| {
        let never = t.last_start_unix_ms <= 0;
        let last_run = if t.running {
            format!("running (started {})", fmt_ago(now, t.last_start_unix_ms))
        } else {
            fmt_ago(now, t.last_start_unix_ms)
        };
        let finished = t.last_outcome != pb::TaskOutcome::Unspecified as i32;
        let outcome = match outcome_word(t.last_outcome) {
            "ok" if !t.last_summary.is_empty() => format!("ok: {}", clean(&t.last_summary)),
            "none" => "-".to_string(),
            word => word.to_string(),
        };
        let error = if t.last_error.is_empty() {
            "-".to_string()
        } else {
            format!(
                "{}: {}",
                fmt_ago(now, t.last_error_unix_ms),
                clean(&t.last_error)
            )
        };
        vec![
            clean(&t.name).into_owned(),
            fmt_period(t.period_ms),
            last_run,
            if never || !finished {
                "-".to_string()
            } else {
                fmt_took(t.last_duration_us)
            },
            t.runs.to_string(),
            outcome,
            error,
        ]
    })
    .render_or("colocd runs no background task")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_durations_and_ages_read_naturally() {
        assert_eq!(fmt_period(100), "100 ms");
        assert_eq!(fmt_period(2000), "2 s");
        assert_eq!(fmt_period(1500), "1.5 s");
        assert_eq!(fmt_period(300_000), "5 min");
        assert_eq!(fmt_period(7_200_000), "2.0 h");
        assert_eq!(fmt_took(20), "<0.1 ms");
        assert_eq!(fmt_took(4_200), "4.2 ms");
        assert_eq!(fmt_took(1_300_000), "1.3 s");
        let now = 1_800_000_000_000;
        assert_eq!(fmt_ago(now, 0), "never");
        assert_eq!(fmt_ago(now, now - 400), "just now");
        assert_eq!(fmt_ago(now, now + 5_000), "just now");
        assert_eq!(fmt_ago(now, now - 12_000), "12 s ago");
        assert_eq!(fmt_ago(now, now - 180_000), "3 min ago");
        assert_eq!(fmt_ago(now, now - 5 * 3_600_000), "5 h ago");
        assert_eq!(fmt_ago(now, now - 2 * 86_400_000), "2 d ago");
    }

    fn list() -> pb::ListTasksResponse {
        let now = 1_800_000_000_000;
        pb::ListTasksResponse {
            controller_unix_ms: now,
            tasks: vec![
                pb::BackgroundTask {
                    name: "heartbeat-flush".into(),
                    description: "write heartbeats".into(),
                    period_ms: 1000,
                    runs: 42,
                    last_start_unix_ms: now - 300,
                    last_duration_us: 1_500,
                    last_outcome: pb::TaskOutcome::Ok as i32,
                    last_summary: "last seen times of 3 nodes recorded".into(),
                    ..Default::default()
                },
                pb::BackgroundTask {
                    name: "volume-purge".into(),
                    period_ms: 2000,
                    runs: 7,
                    failures: 1,
                    last_start_unix_ms: now - 2_000,
                    last_duration_us: 800,
                    last_outcome: pb::TaskOutcome::Error as i32,
                    last_summary: "cannot look for volumes to purge: database error".into(),
                    last_error: "cannot look for volumes to purge: database error\x1b[2J".into(),
                    last_error_unix_ms: now - 2_000,
                    ..Default::default()
                },
                pb::BackgroundTask {
                    name: "unreachable-nodes".into(),
                    period_ms: 1000,
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn the_table_shows_each_task_with_its_last_run() {
        let text = tasks_table(&list());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("NAME"), "{text}");
        assert!(
            lines[1].contains("heartbeat-flush")
                && lines[1].contains("1 s")
                && lines[1].contains("just now")
                && lines[1].contains("1.5 ms")
                && lines[1].contains("42")
                && lines[1].contains("ok: last seen times of 3 nodes recorded")
                && lines[1].ends_with('-'),
            "{text}"
        );
        assert!(
            lines[2].contains("2 s ago")
                && lines[2].contains("error")
                && lines[2].contains("2 s ago: cannot look for volumes to purge"),
            "{text}"
        );
        assert!(!text.contains('\x1b'), "server text is escaped: {text}");
        assert!(
            lines[3].contains("unreachable-nodes") && lines[3].contains("never"),
            "{text}"
        );
        assert_eq!(
            tasks_table(&pb::ListTasksResponse::default()),
            "colocd runs no background task\n"
        );
    }

    #[test]
    fn json_is_an_array_with_words_for_outcomes() {
        let v = tasks_json(&list());
        assert_eq!(v.as_array().map(Vec::len), Some(3));
        assert_eq!(v[0]["name"], "heartbeat-flush");
        assert_eq!(v[0]["last_outcome"], "ok");
        assert_eq!(v[0]["period_ms"], 1000);
        assert_eq!(v[1]["last_outcome"], "error");
        assert_eq!(v[1]["failures"], 1);
        assert_eq!(v[2]["last_outcome"], "none");
        assert_eq!(v[2]["runs"], 0);
    }
}
