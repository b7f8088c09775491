//! The controller's clock, injectable so tests can move time forward
//! (token expiry, unreachable delays) instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};

pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now_ms(&self) -> i64;
    fn now(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

fn system_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        system_ms()
    }
}

/// The system clock shifted by an adjustable offset.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset_ms: AtomicI64,
}

impl OffsetClock {
    pub fn advance_secs(&self, secs: i64) {
        self.offset_ms.fetch_add(secs * 1000, Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now_ms(&self) -> i64 {
        system_ms() + self.offset_ms.load(Ordering::SeqCst)
    }
}

/// "2026-11-28" for a Unix time, UTC.
pub fn date_of(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()))
        .unwrap_or_default()
}

/// The day (UTC) of a Unix time; a time outside the calendar `time`
/// knows (years -9999 to 9999) gives its nearest end.
pub fn day_of(unix: i64) -> time::Date {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => t.date(),
        Err(_) if unix < 0 => time::Date::MIN,
        Err(_) => time::Date::MAX,
    }
}

/// Parses "YYYY-MM-DD" strictly.
pub fn parse_date(s: &str) -> Option<time::Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, format).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_clock_moves() {
        let c = OffsetClock::default();
        let before = c.now();
        c.advance_secs(3600);
        assert!(c.now() >= before + 3600);
    }

    #[test]
    fn dates() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(day_of(86_399).to_string(), "1970-01-01");
        assert_eq!(day_of(86_400).to_string(), "1970-01-02");
        assert_eq!(day_of(i64::MAX), time::Date::MAX);
        assert!(parse_date("2027-06-30").is_some());
        for bad in ["2027-6-30", "2027-02-30", "tomorrow", "", "2027-06-30\n"] {
            assert!(parse_date(bad).is_none(), "{bad:?}");
        }
    }
}
