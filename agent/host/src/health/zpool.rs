//! `zpool status -p POOL` (OpenZFS 2.1 on bookworm has no JSON): the
//! pool's state, its configuration tree with each vdev's error counters,
//! the data errors and the scan line.
//!
//! The agent runs `zpool` with `LC_ALL=C` and `TZ=UTC`, so the dates in
//! the scan line are C-locale `ctime` strings in UTC. Byte counts in the
//! scan line are human-readable in 2.1 even with `-p` ("1.50M"); error
//! counters are exact with `-p`, and suffixed values are read too.

use coloc_proto::agent::v1::{ScrubState, ScrubStatus, VdevHealth, ZfsPoolHealth};

use crate::HostError;

const WHAT: &str = "zpool status output";

/// Reads the status of one pool into `pool` (name, state, status, vdevs,
/// scrub, data errors); sizes come from `zpool list`.
pub fn parse_zpool_status(text: &str) -> Result<ZfsPoolHealth, HostError> {
    let mut pool = ZfsPoolHealth::default();
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    let mut config: Vec<&str> = Vec::new();
    let mut in_config = false;
    for line in text.lines() {
        if let Some((key, value)) = section_start(line) {
            in_config = key == "config";
            sections.push((key.to_owned(), vec![value.trim().to_owned()]));
        } else if in_config {
            config.push(line);
        } else if let Some((_, lines)) = sections.last_mut() {
            lines.push(line.trim().to_owned());
        }
    }
    let get = |key: &str| {
        sections
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, lines)| lines.as_slice())
    };
    let joined = |key: &str| {
        get(key).map(|lines| {
            lines
                .iter()
                .filter(|l| !l.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        })
    };
    pool.name = joined("pool")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| HostError::parse(WHAT, "no \"pool:\" line"))?;
    pool.state = joined("state")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| HostError::parse(WHAT, format!("{}: no \"state:\" line", pool.name)))?;
    pool.status = joined("status").unwrap_or_default();
    if let Some(scan) = get("scan") {
        pool.scrub = Some(parse_scan(&pool.name, scan)?);
    }
    pool.data_errors = match joined("errors") {
        Some(e) if e.starts_with("No known data errors") => 0,
        Some(e) => e
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| HostError::parse(WHAT, format!("{}: errors line {e:?}", pool.name)))?,
        None => 0,
    };
    pool.vdevs = parse_config(&pool.name, &config)?;
    Ok(pool)
}

/// `  pool: tank`, `status: ...`, `config:`: a key at the start of the
/// line (after alignment spaces, never a tab) and a colon.
fn section_start(line: &str) -> Option<(&str, &str)> {
    if line.starts_with('\t') {
        return None;
    }
    let (key, value) = line.trim_start_matches(' ').split_once(':')?;
    let known = matches!(
        key,
        "pool"
            | "id"
            | "state"
            | "status"
            | "action"
            | "see"
            | "scan"
            | "config"
            | "errors"
            | "remove"
            | "checkpoint"
    );
    known.then_some((key, value))
}

/// The configuration tree, depth from the indentation (two spaces per
/// level below the pool's line).
fn parse_config(pool: &str, lines: &[&str]) -> Result<Vec<VdevHealth>, HostError> {
    let mut vdevs = Vec::new();
    let mut base: Option<usize> = None;
    let mut header_seen = false;
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        let body = line.trim_start_matches('\t');
        let indent = body.len() - body.trim_start_matches(' ').len();
        let fields: Vec<&str> = body.split_whitespace().collect();
        if !header_seen {
            if fields.first() == Some(&"NAME") {
                header_seen = true;
                continue;
            }
            return Err(HostError::parse(
                WHAT,
                format!("{pool}: configuration without its NAME header: {line:?}"),
            ));
        }
        let base = *base.get_or_insert(indent);
        let depth = u32::try_from(indent.saturating_sub(base) / 2).unwrap_or(u32::MAX);
        let mut vdev = VdevHealth {
            name: fields[0].to_owned(),
            depth,
            ..VdevHealth::default()
        };
        match fields.len() {
            // "logs", "cache", "spares", "special": a group heading.
            1 => {}
            // A spare: "sdd AVAIL" or "sdd INUSE ...".
            2..=4 => {
                vdev.state = fields[1].to_owned();
                vdev.note = fields[2..].join(" ");
            }
            _ => {
                vdev.state = fields[1].to_owned();
                let counter = |i: usize| {
                    count(fields[i]).ok_or_else(|| {
                        HostError::parse(
                            WHAT,
                            format!("{pool}: vdev {}: counter {:?}", fields[0], fields[i]),
                        )
                    })
                };
                match (counter(2), counter(3), counter(4)) {
                    (Ok(r), Ok(w), Ok(c)) => {
                        vdev.read_errors = r;
                        vdev.write_errors = w;
                        vdev.checksum_errors = c;
                        vdev.note = fields[5..].join(" ");
                    }
                    // A spare in use: "sdd INUSE currently in use".
                    _ if fields[1] == "INUSE" || fields[1] == "AVAIL" => {
                        vdev.note = fields[2..].join(" ");
                    }
                    (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Err(e),
                }
            }
        }
        vdevs.push(vdev);
    }
    Ok(vdevs)
}

/// An error counter: exact with `-p`, "1.2K" without.
fn count(word: &str) -> Option<u64> {
    word.parse().ok().or_else(|| size(word))
}

/// "0B", "512", "1.50M", "2.3G": bytes (powers of 1024), as zfs_nicenum
/// prints them.
fn size(word: &str) -> Option<u64> {
    let digits_end = word
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(word.len());
    let (number, unit) = word.split_at(digits_end);
    let number: f64 = number.parse().ok()?;
    let shift = match unit {
        "" | "B" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        "P" => 50,
        "E" => 60,
        _ => return None,
    };
    let bytes = number * (1u64 << shift) as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then(|| bytes.round() as u64)
}

/// The scan paragraph (its first line after "scan:" and the continuation
/// lines).
fn parse_scan(pool: &str, lines: &[String]) -> Result<ScrubStatus, HostError> {
    let first = lines.first().map(String::as_str).unwrap_or_default();
    let bad = |what: &str| HostError::parse(WHAT, format!("{pool}: scan line {first:?}: {what}"));
    let mut scrub = ScrubStatus::default();
    if first.starts_with("none requested") {
        scrub.state = ScrubState::Never as i32;
    } else if let Some(rest) = first.strip_prefix("scrub repaired ") {
        // "scrub repaired 0B in 00:00:01 with 0 errors on Sat Nov 28 17:50:00 2026"
        let (repaired, rest) = rest.split_once(" in ").ok_or_else(|| bad("no duration"))?;
        let (duration, rest) = rest.split_once(" with ").ok_or_else(|| bad("no errors"))?;
        let (errors, date) = rest
            .split_once(" errors on ")
            .ok_or_else(|| bad("no end date"))?;
        scrub.state = ScrubState::Finished as i32;
        scrub.repaired_bytes = size(repaired.trim()).ok_or_else(|| bad("repaired bytes"))?;
        scrub.errors = errors.trim().parse().map_err(|_| bad("error count"))?;
        scrub.finished_unix = ctime_utc(date.trim()).ok_or_else(|| bad("end date"))?;
        let took = duration_secs(duration.trim()).ok_or_else(|| bad("duration"))?;
        scrub.started_unix = scrub.finished_unix.saturating_sub(took);
    } else if let Some(date) = first
        .strip_prefix("scrub in progress since ")
        .or_else(|| first.strip_prefix("scrub paused since "))
    {
        scrub.state = ScrubState::Running as i32;
        scrub.started_unix = ctime_utc(date.trim()).ok_or_else(|| bad("start date"))?;
        for line in &lines[1..] {
            // "0B repaired, 5.00% done, 00:10:00 to go"
            for part in line.split(',').map(str::trim) {
                if let Some(percent) = part.strip_suffix("% done") {
                    let percent: f64 = percent.trim().parse().map_err(|_| bad("percent done"))?;
                    scrub.progress_permille = (percent * 10.0).round().clamp(0.0, 1000.0) as u32;
                } else if let Some(repaired) = part.strip_suffix(" repaired") {
                    scrub.repaired_bytes =
                        size(repaired.trim()).ok_or_else(|| bad("repaired bytes"))?;
                }
            }
        }
    } else if let Some(date) = first.strip_prefix("scrub canceled on ") {
        scrub.state = ScrubState::Canceled as i32;
        scrub.finished_unix = ctime_utc(date.trim()).ok_or_else(|| bad("cancel date"))?;
    } else if first.starts_with("resilver") {
        // A resilver is not a scrub: the scrub history is unknown here.
        scrub.state = ScrubState::Unspecified as i32;
    } else {
        return Err(bad("not a scan line this agent understands"));
    }
    Ok(scrub)
}

/// "00:00:01", "1 days 02:03:04": seconds.
fn duration_secs(text: &str) -> Option<u64> {
    let (days, clock) = match text.split_once(" days ") {
        Some((d, c)) => (d.trim().parse::<u64>().ok()?, c),
        None => (0, text),
    };
    let parts: Vec<u64> = clock
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = parts[..] else {
        return None;
    };
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// A C-locale `ctime(3)` date in UTC, "Sat Nov 28 17:50:00 2026"
/// (the day of the month may be space-padded): Unix seconds.
pub(crate) fn ctime_utc(text: &str) -> Option<u64> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [_weekday, month, day, clock, year] = fields[..] else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == month)? as i64
        + 1;
    let day: i64 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    let year: i64 = year.parse().ok().filter(|y| *y >= 1970)?;
    let secs = duration_secs(clock).filter(|s| *s < 86_400)?;
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400).ok().map(|d| d + secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctime_dates_are_read_as_utc() {
        assert_eq!(ctime_utc("Thu Jan  1 00:00:00 1970"), Some(0));
        assert_eq!(ctime_utc("Sat Nov 28 17:50:00 2026"), Some(1_795_888_200));
        assert_eq!(ctime_utc("Tue Feb 29 12:00:00 2028"), Some(1_835_438_400));
        assert_eq!(ctime_utc("Sat Nov 28 17:50 2026"), None);
        assert_eq!(ctime_utc("Sat Foo 28 17:50:00 2026"), None);
        assert_eq!(ctime_utc("Sat Nov 28 25:00:00 2026"), None);
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(size("0B"), Some(0));
        assert_eq!(size("512"), Some(512));
        assert_eq!(size("1.50M"), Some(1_572_864));
        assert_eq!(size("2G"), Some(2 << 30));
        assert_eq!(size("1.2X"), None);
        assert_eq!(size(""), None);
        assert_eq!(duration_secs("00:00:01"), Some(1));
        assert_eq!(duration_secs("1 days 02:03:04"), Some(93_784));
        assert_eq!(duration_secs("02:03"), None);
    }
}
