//! An instance's journal as the node sends it: a page for `coloc app logs`
//! ([`app_logs`]) and the last lines attached to a failed instance's
//! status ([`status_lines`]), both small enough for one message of the
//! session.
//!
//! A page carries at most [`MAX_LOG_PAGE_BYTES`] of lines, each counted
//! with its framing, and a line at most [`MAX_LOG_LINE_BYTES`] (a longer
//! one is shortened and says so); past either, the page says it was cut
//! (`AppLogs.truncated`). Reading the end of the journal, the oldest lines
//! give way, since the newest are what was asked. Reading after a cursor,
//! the newest give way and the page's cursor is that of the last line
//! sent, so that the next page starts with the first line left out:
//! following loses nothing. An answer over the session's message limit
//! would end the session (the sending side refuses to encode it), so a
//! large `coloc app logs -n 1000` would have cut the node off.

use coloc_proto::MAX_LOG_PAGE_BYTES;
use coloc_proto::agent::v1::{AppLogs, GetAppLogs};
use coloc_proto::apps::{AppName, app_unit};
use coloc_proto::domain::{InvalidInput, TenantName};

use super::{AppError, LOG_LINES_RANGE, host_err};
use crate::host::{Host, JournalEntry, JournalPage};

/// Longest line a page carries whole. journalctl already leaves out
/// messages over 4 KiB; escaping control characters can make one up to
/// four times longer.
pub const MAX_LOG_LINE_BYTES: usize = 8 * 1024;

/// Longest line attached to a failed instance's status: the statuses of
/// every instance of the node share one report.
pub const STATUS_LOG_LINE_BYTES: usize = 1024;

/// Answers `GetAppLogs`: the journal of the instance's unit, at most
/// [`LOG_LINES_RANGE`] lines, after the cursor when one is given, cut to
/// fit one message.
pub async fn app_logs(host: &Host, request: &GetAppLogs) -> Result<AppLogs, AppError> {
    let tenant = TenantName::new(request.tenant.as_str())?;
    let unit = app_unit(&tenant, &AppName::new(request.app.as_str())?);
    let lines = request
        .lines
        .clamp(*LOG_LINES_RANGE.start(), *LOG_LINES_RANGE.end());
    let cursor = if request.after_cursor.is_empty() {
        None
    } else {
        // Journal cursors are `s=...;i=...;...`: visible ASCII.
        let cursor = request.after_cursor.as_str();
        if cursor.len() > 1024 || !cursor.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AppError::Invalid(InvalidInput::field(
                "cursor",
                "not a journal cursor (visible ASCII, at most 1024 bytes)",
            )));
        }
        Some(cursor)
    };
    let page = host
        .journal
        .unit_lines(&unit, lines, cursor)
        .await
        .map_err(host_err("read the journal of", &unit))?;
    let logs = log_page(page, cursor);
    if logs.truncated {
        tracing::info!(unit = %unit, lines = logs.lines.len(), "journal page cut to fit one message");
    }
    Ok(logs)
}

/// The lines of a failed instance's journal as its status carries them.
pub(super) fn status_lines(page: JournalPage) -> Vec<String> {
    page.into_lines()
        .into_iter()
        .map(|line| shorten(line, STATUS_LOG_LINE_BYTES).0)
        .collect()
}

/// The page to send for `page`, read after `after_cursor` when given:
/// every line at most [`MAX_LOG_LINE_BYTES`], all of them at most
/// [`MAX_LOG_PAGE_BYTES`] with their framing.
fn log_page(page: JournalPage, after_cursor: Option<&str>) -> AppLogs {
    let following = after_cursor.is_some();
    let mut entries = page.entries;
    // From the end that must stay: the oldest when following, else the
    // newest.
    if !following {
        entries.reverse();
    }
    let mut budget = MAX_LOG_PAGE_BYTES;
    let mut truncated = false;
    let mut kept: Vec<JournalEntry> = Vec::with_capacity(entries.len());
    for entry in entries {
        let (line, shortened) = shorten(entry.line, MAX_LOG_LINE_BYTES);
        let size = framed_len(&line);
        if size > budget {
            truncated = true;
            break;
        }
        budget -= size;
        truncated |= shortened;
        kept.push(JournalEntry {
            line,
            cursor: entry.cursor,
        });
    }
    let cursor = if following {
        // Where the next page starts: right after the last line sent.
        kept.last()
            .map(|e| e.cursor.clone())
            .or_else(|| after_cursor.map(str::to_owned))
            .unwrap_or(page.cursor)
    } else {
        kept.reverse();
        page.cursor
    };
    AppLogs {
        lines: kept.into_iter().map(|e| e.line).collect(),
        cursor,
        truncated,
    }
}

/// Bytes a line takes in `AppLogs.lines`: its field key, its length and
/// its text.
fn framed_len(line: &str) -> usize {
    prost::encoding::key_len(1)
        + prost::encoding::encoded_len_varint(line.len() as u64)
        + line.len()
}

/// `line` if it is at most `max` bytes; otherwise its beginning and how
/// long it was, in at most `max` bytes, and true.
fn shorten(line: String, max: usize) -> (String, bool) {
    if line.len() <= max {
        return (line, false);
    }
    let note = format!(" [line cut: {} bytes]", line.len());
    let mut end = max.saturating_sub(note.len());
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    (format!("{}{note}", &line[..end]), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(lines: &[String]) -> JournalPage {
        let entries: Vec<JournalEntry> = lines
            .iter()
            .enumerate()
            .map(|(i, line)| JournalEntry {
                line: line.clone(),
                cursor: format!("c{}", i + 1),
            })
            .collect();
        JournalPage {
            cursor: entries.last().map(|e| e.cursor.clone()).unwrap_or_default(),
            entries,
        }
    }

    /// 1000 lines of 4 KiB: about 4 MiB read, four times the limit.
    fn big_lines() -> Vec<String> {
        (1..=1000)
            .map(|i| format!("2026-01-01T00:00:00Z {i:04} {}", "x".repeat(4096)))
            .collect()
    }

    #[test]
    fn a_small_page_goes_whole() {
        let lines: Vec<String> = (1..=3).map(|i| format!("line {i}")).collect();
        for after in [None, Some("c0")] {
            let logs = log_page(page(&lines), after);
            assert_eq!(logs.lines, lines);
            assert_eq!(logs.cursor, "c3");
            assert!(!logs.truncated);
        }
    }

    #[test]
    fn reading_the_end_keeps_the_newest_lines_within_the_budget() {
        let lines = big_lines();
        let logs = log_page(page(&lines), None);
        assert!(logs.truncated);
        let used: usize = logs.lines.iter().map(|l| framed_len(l)).sum();
        assert!(used <= MAX_LOG_PAGE_BYTES, "{used}");
        // As many as fit: one more would not.
        assert!(used + framed_len(&lines[0]) > MAX_LOG_PAGE_BYTES);
        let kept = logs.lines.len();
        assert_eq!(logs.lines[..], lines[1000 - kept..]);
        assert_eq!(logs.cursor, "c1000");
    }

    #[test]
    fn following_keeps_the_oldest_lines_and_goes_on_from_the_last_sent() {
        let lines = big_lines();
        let logs = log_page(page(&lines), Some("c0"));
        assert!(logs.truncated);
        let kept = logs.lines.len();
        assert!(kept > 0 && kept < 1000);
        assert_eq!(logs.lines[..], lines[..kept]);
        assert_eq!(logs.cursor, format!("c{kept}"));
    }

    #[test]
    fn the_whole_answer_fits_one_message_of_the_session() {
        use coloc_proto::MAX_MESSAGE_BYTES;
        use coloc_proto::agent::v1::{AgentMessage, RequestResult, agent_message, request_result};
        use prost::Message;

        // Lines of control characters, escaped four times longer, and
        // multi-byte characters: the worst the journal hands over.
        let worst: Vec<String> = (0..1000)
            .map(|i| format!("{i} {}", "\\x1b\u{e9}".repeat(6000)))
            .collect();
        for after in [None, Some("s=0123456789abcdef;i=1")] {
            let logs = log_page(page(&worst), after);
            assert!(logs.truncated);
            assert!(
                logs.lines
                    .iter()
                    .all(|l| l.len() <= MAX_LOG_LINE_BYTES && l.ends_with(" bytes]")),
                "every line is shortened and says so"
            );
            let msg = AgentMessage {
                body: Some(agent_message::Body::Result(RequestResult {
                    request_id: u64::MAX,
                    ok: true,
                    error: String::new(),
                    payload: Some(request_result::Payload::Logs(logs)),
                })),
            };
            let len = msg.encoded_len();
            assert!(len <= MAX_LOG_PAGE_BYTES + 2048, "{len}");
            assert!(len < MAX_MESSAGE_BYTES, "{len}");
        }
    }

    #[test]
    fn a_long_line_is_shortened_on_a_character_boundary_and_says_so() {
        let line = "\u{e9}".repeat(MAX_LOG_LINE_BYTES);
        let (short, cut) = shorten(line, MAX_LOG_LINE_BYTES);
        assert!(cut);
        assert!(short.len() <= MAX_LOG_LINE_BYTES);
        assert!(short.ends_with(&format!(" [line cut: {} bytes]", 2 * MAX_LOG_LINE_BYTES)));
        let (same, cut) = shorten("short".into(), 10);
        assert_eq!((same.as_str(), cut), ("short", false));
        let logs = log_page(page(&["a".repeat(MAX_LOG_LINE_BYTES + 1)]), None);
        assert!(logs.truncated, "a shortened line marks the page");
        assert_eq!(logs.lines.len(), 1);
    }

    #[test]
    fn nothing_new_keeps_the_cursor_given() {
        let logs = log_page(
            JournalPage {
                entries: Vec::new(),
                cursor: "c7".into(),
            },
            Some("c7"),
        );
        assert_eq!((logs.lines.len(), logs.cursor.as_str()), (0, "c7"));
        assert!(!logs.truncated);
    }

    #[test]
    fn status_lines_are_short() {
        let lines = status_lines(page(&["y".repeat(10_000), "ok".into()]));
        assert_eq!(lines.len(), 2);
        assert!(lines[0].len() <= STATUS_LOG_LINE_BYTES);
        assert!(lines[0].ends_with(" [line cut: 10000 bytes]"));
        assert_eq!(lines[1], "ok");
    }
}
