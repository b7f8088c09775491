//! [`Journal`]: a unit's lines from the systemd journal, for the app
//! status (the last lines of a failed instance) and `coloc app logs`.
//!
//! [`RealJournal`] runs `journalctl --unit=U --output=json` and turns each
//! entry into one line, `"<RFC 3339 UTC time to the second> <message>"`,
//! with the entry's cursor so that the next page can start right after it
//! (`--after-cursor`). Messages are tenants' output and end up on an
//! operator's terminal: control characters (a terminal escape, a newline
//! that would fake another line) are shown escaped, never passed through.
//! The cursor comes back from a client; it is checked (printable ASCII, no
//! space, bounded) before it reaches the command line.
//!
//! [`FakeJournal`] holds lines per unit, set by tests, with cursors of its
//! own that page the same way.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use serde_json::Value;

use crate::runner::{CommandError, Runner};
use crate::{HostError, Journal, JournalEntry, JournalPage, UnitName};

/// Longest cursor accepted. systemd's are about 140 characters.
pub const MAX_CURSOR_LEN: usize = 512;

/// Most entries one call returns, whatever is asked.
pub const MAX_LINES: u32 = 10_000;

/// What a line shows for a message journalctl left out (fields over 4 KiB
/// are output as `null` unless `--all` is given).
const OMITTED_MESSAGE: &str = "[message omitted: larger than 4096 bytes]";

/// Refuses a cursor that is empty, longer than [`MAX_CURSOR_LEN`], or has
/// anything but printable ASCII other than space.
pub fn validate_cursor(cursor: &str) -> Result<(), HostError> {
    let refuse = |reason: &str| HostError::Refused {
        object: "journal cursor".to_owned(),
        reason: reason.to_owned(),
    };
    if cursor.is_empty() {
        return Err(refuse("empty"));
    }
    if cursor.len() > MAX_CURSOR_LEN {
        return Err(refuse("longer than 512 characters"));
    }
    if !cursor.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(refuse("only printable ASCII without spaces is allowed"));
    }
    Ok(())
}

/// Parses `journalctl -o json` output (one JSON object per line) into a
/// page. `after_cursor` is what the page's cursor stays when no entry came.
pub fn parse_journal_json(
    output: &str,
    after_cursor: Option<&str>,
) -> Result<JournalPage, HostError> {
    let mut page = JournalPage {
        entries: Vec::new(),
        cursor: after_cursor.unwrap_or_default().to_owned(),
    };
    for (number, line) in output.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |detail: String| {
            HostError::parse(
                "journalctl JSON output",
                format!("line {}: {detail}", number + 1),
            )
        };
        let entry: Value = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let Some(fields) = entry.as_object() else {
            return Err(bad("not a JSON object".into()));
        };
        let cursor = fields
            .get("__CURSOR")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no __CURSOR".into()))?;
        let micros = match fields.get("__REALTIME_TIMESTAMP") {
            Some(Value::String(text)) => text.parse::<u64>().ok(),
            Some(Value::Number(n)) => n.as_u64(),
            _ => None,
        }
        .ok_or_else(|| bad("no valid __REALTIME_TIMESTAMP".into()))?;
        let message = fields.get("MESSAGE").map(message_text).unwrap_or_default();
        page.entries.push(JournalEntry {
            line: format!(
                "{} {}",
                rfc3339_utc_seconds(micros / 1_000_000),
                escape_controls(message.trim_end())
            ),
            cursor: cursor.to_owned(),
        });
        page.cursor = cursor.to_owned();
    }
    Ok(page)
}

/// A MESSAGE field as text. journalctl's JSON gives a string, an array of
/// bytes when the value is not valid UTF-8 (decoded lossily here), `null`
/// when the value was too large to print, and an array of values when the
/// field occurs several times in one entry (joined with spaces).
fn message_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => OMITTED_MESSAGE.to_owned(),
        Value::Array(items) if items.iter().all(Value::is_number) => {
            let bytes: Vec<u8> = items
                .iter()
                .map(|b| {
                    b.as_u64()
                        .and_then(|b| u8::try_from(b).ok())
                        .unwrap_or(b'?')
                })
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Value::Array(items) => items.iter().map(message_text).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

/// `text` with every control character but tab written as an escape, so
/// that one entry stays one line and cannot drive the reader's terminal.
fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\t' => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// `2026-11-28T21:10:00Z` for seconds since the Unix epoch.
pub fn rfc3339_utc_seconds(unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let in_day = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

/// The proleptic Gregorian date `days` days after 1970-01-01, counting in
/// 400-year eras (146 097 days each) from 0000-03-01 so that the leap day
/// falls at the end of each counted year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // 719 468 days from 0000-03-01 to 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months counted from March: 0 = March ... 11 = February.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

/// [`Journal`] with `journalctl`.
#[derive(Debug, Clone)]
pub struct RealJournal {
    runner: Runner,
}

impl RealJournal {
    pub fn new(runner: Runner) -> RealJournal {
        RealJournal { runner }
    }
}

#[async_trait]
impl Journal for RealJournal {
    async fn unit_lines(
        &self,
        unit: &UnitName,
        lines: u32,
        after_cursor: Option<&str>,
    ) -> Result<JournalPage, HostError> {
        if let Some(cursor) = after_cursor {
            validate_cursor(cursor)?;
        }
        let lines = lines.min(MAX_LINES);
        if lines == 0 {
            return Ok(JournalPage {
                entries: Vec::new(),
                cursor: after_cursor.unwrap_or_default().to_owned(),
            });
        }
        // `--opt=value` forms: a value can never be read as an option.
        let unit_arg = format!("--unit={unit}");
        let lines_arg = format!("--lines={lines}");
        let mut args = vec![
            unit_arg.as_str(),
            "--output=json",
            "--no-pager",
            "--quiet",
            lines_arg.as_str(),
        ];
        let cursor_arg = after_cursor.map(|c| format!("--after-cursor={c}"));
        if let Some(arg) = &cursor_arg {
            args.push(arg);
        }
        let output = self
            .runner
            .run("journalctl", &args)
            .await
            .map_err(|e| HostError::storage("read the journal of", unit.to_string(), e))?;
        parse_journal_json(&output.stdout, after_cursor)
    }
}

// ------------------------------------------------------------------- fake

/// Prefix of [`FakeJournal`]'s cursors; the entry's 1-based index follows.
const FAKE_CURSOR_PREFIX: &str = "s=fake;i=";

/// In-memory [`Journal`]: lines per unit as tests set them, already in the
/// `"<time> <message>"` form. An entry's cursor is `s=fake;i=<n>`, `n` its
/// 1-based position; a cursor of another form fails the way journalctl
/// fails to seek to it.
#[derive(Debug, Default)]
pub struct FakeJournal {
    units: Mutex<BTreeMap<UnitName, Vec<String>>>,
}

impl FakeJournal {
    pub fn new() -> FakeJournal {
        FakeJournal::default()
    }

    /// Appends one line to `unit`'s journal.
    pub fn push(&self, unit: &UnitName, line: impl Into<String>) {
        self.lock()
            .entry(unit.clone())
            .or_default()
            .push(line.into());
    }

    /// Replaces `unit`'s journal.
    pub fn set_lines(&self, unit: &UnitName, lines: Vec<String>) {
        self.lock().insert(unit.clone(), lines);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<UnitName, Vec<String>>> {
        self.units.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Journal for FakeJournal {
    async fn unit_lines(
        &self,
        unit: &UnitName,
        lines: u32,
        after_cursor: Option<&str>,
    ) -> Result<JournalPage, HostError> {
        if let Some(cursor) = after_cursor {
            validate_cursor(cursor)?;
        }
        let limit = usize::try_from(lines.min(MAX_LINES)).unwrap_or(usize::MAX);
        let units = self.lock();
        let all = units.get(unit).map(Vec::as_slice).unwrap_or_default();
        // Like journalctl: the last `lines` entries, or the first `lines`
        // after the cursor.
        let start = match after_cursor {
            None => all.len().saturating_sub(limit),
            Some(cursor) => cursor
                .strip_prefix(FAKE_CURSOR_PREFIX)
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| {
                    HostError::storage(
                        "read the journal of",
                        unit.to_string(),
                        CommandError::Failed {
                            command: format!("journalctl --unit={unit} --after-cursor={cursor}"),
                            status: 1,
                            stderr_tail: "Failed to seek to cursor: Invalid argument".into(),
                        },
                    )
                })?
                .min(all.len()),
        };
        let end = start.saturating_add(limit).min(all.len());
        Ok(JournalPage {
            entries: all[start..end]
                .iter()
                .zip(start + 1..)
                .map(|(line, position)| JournalEntry {
                    line: line.clone(),
                    cursor: format!("{FAKE_CURSOR_PREFIX}{position}"),
                })
                .collect(),
            cursor: if end > start {
                format!("{FAKE_CURSOR_PREFIX}{end}")
            } else {
                after_cursor.unwrap_or_default().to_owned()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn unit(name: &str) -> UnitName {
        UnitName::new(name).unwrap()
    }

    #[test]
    fn a_crash_looping_app_reads_as_dated_lines_with_the_last_cursor() {
        // Written by hand after systemd.journal-fields(7) and the JSON
        // format of journalctl(1) (systemd 252): no journal runs on the
        // build machines. To be replaced by a recording from the QEMU guest.
        let page = parse_journal_json(&fixture("journal-app-crashloop.json"), None).unwrap();
        assert_eq!(
            page.lines(),
            vec![
                "2026-11-28T21:10:00Z Started coloc-app-acme-wiki.service - Wiki of tenant acme.",
                "2026-11-28T21:10:00Z wiki 1.4.2 listening on 127.0.0.1:8080",
                // Latin-1 bytes: an array in the JSON, decoded lossily.
                "2026-11-28T21:10:01Z caf\u{FFFD} au lait",
                "2026-11-28T21:10:01Z \\x1b[31mERROR\\x1b[0m could not open /srv/tenants/acme/wiki/data/wiki.db",
                "2026-11-28T21:10:01Z Traceback (most recent call last):\\n  File \"/usr/lib/python3/dist-packages/wiki/db.py\", line 12, in open\\nsqlite3.OperationalError: unable to open database file",
                "2026-11-28T21:10:01Z [message omitted: larger than 4096 bytes]",
                "2026-11-28T21:10:01Z coloc-app-acme-wiki.service: Main process exited, code=exited, status=1/FAILURE",
                "2026-11-28T21:10:01Z coloc-app-acme-wiki.service: Failed with result 'exit-code'.",
                "2026-11-28T21:10:06Z coloc-app-acme-wiki.service: Scheduled restart job, restart counter is at 5.",
                "2026-11-28T21:10:06Z coloc-app-acme-wiki.service: Start request repeated too quickly.",
                "2026-11-28T21:10:06Z coloc-app-acme-wiki.service: Failed with result 'start-limit-hit'.",
                "2026-11-28T21:10:06Z Failed to start coloc-app-acme-wiki.service - Wiki of tenant acme.",
            ]
        );
        assert!(
            page.cursor
                .starts_with("s=8f1c2a6e5b9d4c7fa3e2d1c0b9a8f7e6;i=2f61;")
        );
        // Each entry keeps its own cursor; the page's is the last one's.
        assert_eq!(page.entries.last().map(|e| &e.cursor), Some(&page.cursor));
        assert!(
            page.entries[0]
                .cursor
                .starts_with("s=8f1c2a6e5b9d4c7fa3e2d1c0b9a8f7e6;i=2f40;"),
            "{}",
            page.entries[0].cursor
        );
        validate_cursor(&page.cursor).expect("journald's cursors pass our check");
    }

    #[test]
    fn no_entries_keep_the_cursor_given() {
        assert_eq!(
            parse_journal_json("", Some("s=abc;i=1")).unwrap(),
            JournalPage {
                entries: vec![],
                cursor: "s=abc;i=1".into()
            }
        );
        assert_eq!(parse_journal_json("\n", None).unwrap().cursor, "");
    }

    #[test]
    fn repeated_fields_and_malformed_entries() {
        let repeated =
            r#"{"__CURSOR":"c1","__REALTIME_TIMESTAMP":"0","MESSAGE":["one",[116,119,111]]}"#;
        assert_eq!(
            parse_journal_json(repeated, None).unwrap().lines(),
            vec!["1970-01-01T00:00:00Z one two"]
        );
        let no_message = r#"{"__CURSOR":"c1","__REALTIME_TIMESTAMP":"0"}"#;
        assert_eq!(
            parse_journal_json(no_message, None).unwrap().lines(),
            vec!["1970-01-01T00:00:00Z "]
        );
        for bad in [
            "not json",
            "[]",
            r#"{"__REALTIME_TIMESTAMP":"0","MESSAGE":"x"}"#,
            r#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":"soon","MESSAGE":"x"}"#,
        ] {
            assert!(
                matches!(parse_journal_json(bad, None), Err(HostError::Parse { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn timestamps_are_utc_to_the_second() {
        // Checked against `date -u -d @N +%FT%TZ`.
        for (secs, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_709_251_199, "2024-02-29T23:59:59Z"),
            (1_767_225_600, "2026-01-01T00:00:00Z"),
            (1_795_900_200, "2026-11-28T21:10:00Z"),
            (4_102_444_799, "2099-12-31T23:59:59Z"),
        ] {
            assert_eq!(rfc3339_utc_seconds(secs), text, "{secs}");
        }
    }

    #[test]
    fn cursors_are_checked() {
        validate_cursor("s=8f1c;i=2f40;b=3d0f;m=141d;t=6615;x=1a0c").unwrap();
        let long = "a".repeat(MAX_CURSOR_LEN + 1);
        for bad in ["", "a b", "a\nb", "curs\u{e9}r", "a\tb", long.as_str()] {
            assert!(
                matches!(validate_cursor(bad), Err(HostError::Refused { .. })),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_real_journal_refuses_bad_cursors_before_running() {
        let journal = RealJournal::new(Runner::new());
        let err = journal
            .unit_lines(&unit("ssh.service"), 10, Some("--since=yesterday x"))
            .await
            .unwrap_err();
        assert!(matches!(err, HostError::Refused { .. }), "{err:?}");
        let page = journal
            .unit_lines(&unit("ssh.service"), 0, Some("s=1"))
            .await
            .unwrap();
        assert_eq!(page.cursor, "s=1");
    }

    #[tokio::test]
    async fn the_fake_pages_like_journalctl() {
        let journal = FakeJournal::new();
        let app = unit("coloc-app-acme-wiki.service");
        for i in 1..=5 {
            journal.push(&app, format!("2026-11-28T21:10:0{i}Z line {i}"));
        }
        let last = journal.unit_lines(&app, 2, None).await.unwrap();
        assert_eq!(
            last.lines(),
            vec!["2026-11-28T21:10:04Z line 4", "2026-11-28T21:10:05Z line 5"]
        );
        assert_eq!(
            last.entries
                .iter()
                .map(|e| e.cursor.as_str())
                .collect::<Vec<_>>(),
            ["s=fake;i=4", "s=fake;i=5"]
        );
        assert!(
            journal
                .unit_lines(&app, 10, Some(&last.cursor))
                .await
                .unwrap()
                .entries
                .is_empty()
        );

        let first = journal.unit_lines(&app, 10, None).await.unwrap();
        assert_eq!(first.entries.len(), 5);
        journal.push(&app, "2026-11-28T21:10:09Z line 6");
        let next = journal
            .unit_lines(&app, 10, Some(&first.cursor))
            .await
            .unwrap();
        assert_eq!(next.lines(), vec!["2026-11-28T21:10:09Z line 6"]);
        let none = journal
            .unit_lines(&app, 10, Some(&next.cursor))
            .await
            .unwrap();
        assert_eq!(none.cursor, next.cursor);

        let other = journal
            .unit_lines(&unit("other.service"), 10, None)
            .await
            .unwrap();
        assert_eq!(other, JournalPage::default());
        assert!(matches!(
            journal.unit_lines(&app, 10, Some("s=real;i=9")).await,
            Err(HostError::Storage { .. })
        ));
        journal.set_lines(&app, vec!["x".into()]);
        assert_eq!(
            journal.unit_lines(&app, 10, None).await.unwrap().lines(),
            ["x"]
        );
    }
}
