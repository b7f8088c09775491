//! What the CLI prints: aligned tables and detail blocks for people, JSON
//! for scripts, both built from the prost messages colocd returns. Pure
//! formatting functions (time, sizes, status words, tables) plus the one
//! place that writes to stdout. Nothing here talks to colocd.
//!
//! Text that came from the server is escaped before it reaches a terminal:
//! audit details and labels may echo input from anyone, and an escape
//! sequence must not be able to rewrite the operator's screen.
//!
//! This module holds what every area shares: the [`Printer`], the
//! primitives (escaping, times, sizes) and the [`Table`] and [`Details`]
//! layouts. One module per area of colocd's API, as the controller's
//! services are split: [`fleet`] (sites, join tokens, nodes, colocd's
//! counters), [`tenancy`] (tenants, users, API tokens), [`storage`]
//! (pools, volumes, snapshots), [`apps`] (catalog, requests, instances,
//! logs), [`audit`], [`tasks`] (colocd's background tasks), [`health`]
//! (a node's health report) and [`alerts`].

pub mod alerts;
pub mod apps;
pub mod audit;
pub mod fleet;
pub mod health;
pub mod storage;
pub mod tasks;
pub mod tenancy;

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write as _;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use crate::error::Failure;

// ---------------------------------------------------------------- printing

/// Where results go: JSON or text on stdout, notes for people on stderr.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub json: bool,
}

impl Printer {
    /// Prints `json` in JSON mode, else the text `human` builds.
    pub fn emit(&self, json: Value, human: impl FnOnce() -> String) -> Result<(), Failure> {
        let mut text = if self.json {
            serde_json::to_string_pretty(&json)
                .map_err(|e| Failure::generic(format!("cannot encode JSON: {e}")))?
        } else {
            human()
        };
        if !text.ends_with('\n') {
            text.push('\n');
        }
        write_stdout(&text)
    }

    /// Prints a list: a JSON array of each item's `json`, else the text
    /// `human` makes of them all (a table).
    pub fn list<T>(
        &self,
        items: &[T],
        json: impl Fn(&T) -> Value,
        human: impl FnOnce(&[T]) -> String,
    ) -> Result<(), Failure> {
        self.emit(Value::Array(items.iter().map(json).collect()), || {
            human(items)
        })
    }

    /// A remark for people (stderr), left out in JSON mode.
    pub fn note(&self, text: &str) {
        if !self.json {
            eprintln!("{text}");
        }
    }
}

/// Writes to stdout; a closed pipe (`coloc audit | head`) is not an error.
pub fn write_stdout(text: &str) -> Result<(), Failure> {
    write_stdout_while_read(text).map(|_| ())
}

/// Writes to stdout while someone reads it: false once the reader has
/// gone (a closed pipe), so that a command printing without end can stop.
pub fn write_stdout_while_read(text: &str) -> Result<bool, Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Failure::generic(format!("cannot write to stdout: {e}"))),
    }
}

// ---------------------------------------------------------------- primitives

/// Escapes control characters so server text cannot drive the terminal.
pub fn clean(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `YYYY-MM-DD HH:MM` in UTC; `-` for 0 (never).
pub fn fmt_time(unix: i64) -> String {
    fmt_utc(
        unix,
        unix,
        format_description!("[year]-[month]-[day] [hour]:[minute]"),
    )
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, for audit entries where seconds matter.
pub fn fmt_time_ms(unix_ms: i64) -> String {
    fmt_utc(
        unix_ms,
        unix_ms.div_euclid(1000),
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    )
}

/// `YYYY-MM-DD` in UTC; `-` for 0 (never).
pub fn fmt_date(unix: i64) -> String {
    fmt_utc(unix, unix, format_description!("[year]-[month]-[day]"))
}

/// The second `unix` falls in, as `format` writes it in UTC: `-` when
/// `raw` (the time as colocd sent it) is 0 or less (never), `raw` itself
/// when the time cannot be written as a date.
fn fmt_utc(raw: i64, unix: i64, format: &[BorrowedFormatItem<'_>]) -> String {
    if raw <= 0 {
        return "-".to_string();
    }
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| raw.to_string())
}

/// Binary units, one decimal: `512 B`, `1.5 KiB`, `931.5 GiB`; the same
/// words as colocd and the agent use in their messages.
pub fn fmt_bytes(bytes: u64) -> String {
    coloc_proto::storage::format_size(bytes)
}

fn or_dash(text: &str) -> Cow<'_, str> {
    if text.is_empty() {
        Cow::Borrowed("-")
    } else {
        clean(text)
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Items escaped and joined with commas; `-` when there are none.
fn joined(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items
            .iter()
            .map(|i| clean(i).into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `json` with the object's secret when it has one. A secret exists only
/// in the answer to the call that created it; listings leave the field
/// out rather than print an empty one that looks like a secret.
fn with_secret(mut json: Value, secret: &str) -> Value {
    if !secret.is_empty() {
        json["secret"] = Value::String(secret.to_string());
    }
    json
}

// ---------------------------------------------------------------- layout

/// Columns aligned on the widest cell, two spaces apart, the last one
/// unpadded so lines carry no trailing blanks.
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells);
    }

    /// One row per item, its cells made by `cells`.
    pub fn rows<T>(
        mut self,
        items: impl IntoIterator<Item = T>,
        mut cells: impl FnMut(T) -> Vec<String>,
    ) -> Self {
        for item in items {
            self.row(cells(item));
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut text = String::new();
            for (i, cell) in line.iter().enumerate() {
                if i + 1 == line.len() {
                    text.push_str(cell);
                } else {
                    text.push_str(cell);
                    text.extend(std::iter::repeat_n(' ', widths[i] - width(cell) + 2));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }

    /// The table, or `empty` when there are no rows.
    pub fn render_or(&self, empty: &str) -> String {
        if self.is_empty() {
            format!("{empty}\n")
        } else {
            self.render()
        }
    }
}

/// `Key:  value` lines with values aligned.
#[derive(Debug, Default, Clone)]
pub struct Details {
    fields: Vec<(String, String)>,
}

impl Details {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn field(mut self, key: &str, value: impl Into<String>) -> Self {
        self.fields.push((key.to_string(), value.into()));
        self
    }

    pub fn render(&self) -> String {
        let width = self
            .fields
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (k, v) in &self.fields {
            let pad = width - k.chars().count() + 2;
            let _ = writeln!(out, "{k}:{}{v}", " ".repeat(pad));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_minutes() {
        assert_eq!(fmt_time(0), "-");
        assert_eq!(fmt_time(1_767_225_600), "2026-01-01 00:00");
        assert_eq!(
            fmt_time(1_767_225_600 + 3 * 3600 + 7 * 60 + 59),
            "2026-01-01 03:07"
        );
        assert_eq!(fmt_time(i64::MAX), i64::MAX.to_string());
        assert_eq!(
            fmt_time_ms(1_767_225_600_000 + 61_500),
            "2026-01-01 00:01:01"
        );
        assert_eq!(fmt_time_ms(0), "-");
        assert_eq!(fmt_date(1_798_452_000), "2026-12-28");
        assert_eq!(fmt_date(0), "-");
    }

    #[test]
    fn sizes_are_binary() {
        assert_eq!(fmt_bytes(0), "0 B");
        assert_eq!(fmt_bytes(1023), "1023 B");
        assert_eq!(fmt_bytes(1536), "1.5 KiB");
        assert_eq!(fmt_bytes(16 * 1024 * 1024 * 1024), "16.0 GiB");
        assert_eq!(fmt_bytes(1_000_204_886_016), "931.5 GiB");
        assert_eq!(fmt_bytes(4 * 1024_u64.pow(4)), "4.0 TiB");
        assert_eq!(fmt_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn tables_align_and_have_no_trailing_blanks() {
        let mut t = Table::new(&["NAME", "STATUS", "NOTE"]);
        t.row(vec!["n1".into(), "ready".into(), "".into()]);
        t.row(vec!["node-long".into(), "unreachable".into(), "x".into()]);
        assert_eq!(
            t.render(),
            "NAME       STATUS       NOTE\nn1         ready\nnode-long  unreachable  x\n"
        );
        assert_eq!(Table::new(&["A"]).render_or("nothing"), "nothing\n");
    }

    #[test]
    fn details_align() {
        let d = Details::new().field("Name", "n1").field("Last seen", "-");
        assert_eq!(d.render(), "Name:       n1\nLast seen:  -\n");
    }
}
