//! `coloc node health`: a node's latest health report as colocd holds it,
//! written to be read at 3 a.m. The report's age and the firing alerts
//! come first, then every problem the report shows said in words (a
//! failing disk, a degraded pool, a source the agent could not read),
//! then each part in detail. Nothing relies on colour: the words carry it.
//!
//! The rule of the contract holds here too: a part the agent could not
//! observe prints `unknown: <reason>`, never a healthy-looking value, and
//! a number the tool did not give prints `-`, never 0.

use std::fmt::Write as _;

use coloc_proto::agent::v1 as agent;
use coloc_proto::controller::v1 as pb;

use super::alerts::alerts_table;
use super::{Details, Table, clean, fmt_bytes, fmt_time, fmt_time_ms, or_dash};

mod json;
#[cfg(test)]
mod tests;

pub use json::{maintenance_kind_json, node_health_json};

// ---------------------------------------------------------------- words

pub fn smart_word(verdict: i32) -> &'static str {
    match agent::SmartVerdict::try_from(verdict) {
        Ok(agent::SmartVerdict::Passed) => "passed",
        Ok(agent::SmartVerdict::Failed) => "FAILED",
        Ok(agent::SmartVerdict::Unsupported) => "no SMART",
        Ok(agent::SmartVerdict::Unknown | agent::SmartVerdict::Unspecified) | Err(_) => "unknown",
    }
}

/// NVMe critical-warning bits by name (bit 0 first); bits the
/// specification adds later are named by number.
pub fn critical_warning_names(bits: u32) -> Vec<String> {
    const NAMES: [&str; 6] = [
        "available spare below threshold",
        "temperature beyond its limit",
        "reliability degraded",
        "read-only",
        "volatile memory backup failed",
        "persistent memory region read-only",
    ];
    (0..32)
        .filter(|bit| bits & (1 << bit) != 0)
        .map(|bit| match NAMES.get(bit as usize) {
            Some(name) => (*name).to_string(),
            None => format!("bit {bit}"),
        })
        .collect()
}

fn self_test_kind_word(kind: i32) -> &'static str {
    match agent::SelfTestKind::try_from(kind) {
        Ok(agent::SelfTestKind::Short) => "short",
        Ok(agent::SelfTestKind::Long) => "long",
        Ok(agent::SelfTestKind::Unspecified) | Err(_) => "self-test",
    }
}

fn scrub_state_word(state: i32) -> &'static str {
    match agent::ScrubState::try_from(state) {
        Ok(agent::ScrubState::Never) => "never",
        Ok(agent::ScrubState::Running) => "running",
        Ok(agent::ScrubState::Finished) => "finished",
        Ok(agent::ScrubState::Canceled) => "canceled",
        Ok(agent::ScrubState::Unspecified) | Err(_) => "unknown",
    }
}

pub fn maintenance_kind_word(kind: i32) -> &'static str {
    match agent::MaintenanceKind::try_from(kind) {
        Ok(agent::MaintenanceKind::Scrub) => "scrub",
        Ok(agent::MaintenanceKind::SmartShort) => "short self-test",
        Ok(agent::MaintenanceKind::SmartLong) => "long self-test",
        Ok(agent::MaintenanceKind::Unspecified) | Err(_) => "unknown",
    }
}

fn maintenance_state_word(state: i32) -> &'static str {
    match agent::MaintenanceState::try_from(state) {
        Ok(agent::MaintenanceState::Running) => "running",
        Ok(agent::MaintenanceState::Passed) => "passed",
        Ok(agent::MaintenanceState::Failed) => "FAILED",
        Ok(agent::MaintenanceState::NotStarted) => "NOT STARTED",
        Ok(agent::MaintenanceState::Unspecified) | Err(_) => "unknown",
    }
}

// ---------------------------------------------------------------- primitives

fn unix(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// `45.2 %` of `part` in `whole`; `-` when the whole is 0.
fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".to_string();
    }
    format!("{:.1} %", part as f64 * 100.0 / whole as f64)
}

fn opt<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// `1 error`, `0 errors`.
fn errors(n: u64) -> String {
    if n == 1 {
        "1 error".to_string()
    } else {
        format!("{n} errors")
    }
}

/// `3 d 4 h`, `5 h 12 min`, `40 s`.
pub fn fmt_duration(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// Each line of `text` indented by `by` spaces (blank lines stay blank).
fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    let mut out = String::new();
    for line in text.lines() {
        if !line.is_empty() {
            out.push_str(&pad);
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A disk as people name it: `/dev/nvme0n1 (S4GNNX0N)`.
fn disk_name(d: &agent::DiskHealth) -> String {
    if d.serial.is_empty() {
        clean(&d.device).into_owned()
    } else {
        format!("{} ({})", clean(&d.device), clean(&d.serial))
    }
}

// ---------------------------------------------------------------- problems

/// Everything the report shows wrong, one sentence each, in the order of
/// the sections below. Threshold rules (how full is too full, how hot is
/// too hot) are colocd's and come as alerts; these are the facts that are
/// wrong whatever the thresholds.
pub fn problems(h: &pb::NodeHealth) -> Vec<String> {
    let mut out = Vec::new();
    let Some(r) = &h.report else {
        return out;
    };
    let unobserved: Vec<&str> = r.unobserved.iter().map(|u| u.source.as_str()).collect();
    for u in &r.unobserved {
        out.push(format!(
            "{} not observed: {}",
            or_dash(&u.source),
            or_dash(&u.reason)
        ));
    }
    if r.disks.is_empty() && !unobserved.contains(&"disks") {
        out.push("the report lists no disks at all".to_string());
    }
    for d in &r.disks {
        disk_problems(d, &mut out);
    }
    for p in &r.zfs_pools {
        pool_problems(p, &mut out);
    }
    for t in &r.thin_pools {
        if !t.unknown.is_empty() {
            out.push(format!(
                "thin pool {}/{}: unknown: {}",
                clean(&t.volume_group),
                clean(&t.name),
                clean(&t.unknown)
            ));
        }
    }
    for f in &r.filesystems {
        if !f.unknown.is_empty() {
            out.push(format!(
                "filesystem {}: unknown: {}",
                clean(&f.mount_path),
                clean(&f.unknown)
            ));
        }
    }
    match &r.system {
        Some(s) if !s.unknown.is_empty() => {
            out.push(format!("system figures unknown: {}", clean(&s.unknown)));
        }
        Some(_) => {}
        None if !unobserved.contains(&"system") => {
            out.push("the report has no system figures (memory, load, CPU)".to_string());
        }
        None => {}
    }
    for t in &r.temperatures {
        if !t.unknown.is_empty() {
            out.push(format!(
                "sensor {}: unknown: {}",
                clean(&t.sensor),
                clean(&t.unknown)
            ));
        } else if let Some(crit) = t.critical_celsius
            && t.celsius >= crit
        {
            out.push(format!(
                "sensor {}: {:.0} °C, AT OR OVER its critical {:.0} °C",
                clean(&t.sensor),
                t.celsius,
                crit
            ));
        }
    }
    if let Some(u) = &r.units {
        if !u.unknown.is_empty() {
            out.push(format!("failed units unknown: {}", clean(&u.unknown)));
        }
        for f in &u.failed {
            out.push(format!(
                "unit {} FAILED ({})",
                clean(&f.name),
                or_dash(&f.result)
            ));
        }
    }
    match &r.clock {
        Some(c) if !c.unknown.is_empty() => {
            out.push(format!("clock unknown: {}", clean(&c.unknown)));
        }
        Some(c) if !c.synchronised => {
            out.push("clock NOT SYNCHRONISED: certificates and TLS depend on it".to_string())
        }
        Some(_) => {}
        None if !unobserved.contains(&"clock") => {
            out.push("the report does not say whether the clock is synchronised".to_string());
        }
        None => {}
    }
    if let Some(b) = &r.reboot {
        if !b.unknown.is_empty() {
            out.push(format!("reboot need unknown: {}", clean(&b.unknown)));
        } else if b.required {
            out.push(format!("REBOOT NEEDED: {}", or_dash(&b.reason)));
        }
    }
    for m in &r.maintenance {
        let state = agent::MaintenanceState::try_from(m.state);
        if matches!(
            state,
            Ok(agent::MaintenanceState::Failed | agent::MaintenanceState::NotStarted)
        ) {
            out.push(format!(
                "{} of {} {}: {}",
                maintenance_kind_word(m.kind),
                clean(&m.subject),
                maintenance_state_word(m.state),
                or_dash(&m.detail)
            ));
        }
    }
    out
}

fn disk_problems(d: &agent::DiskHealth, out: &mut Vec<String>) {
    let name = disk_name(d);
    if !d.unknown.is_empty() {
        out.push(format!("disk {name}: SMART unknown: {}", clean(&d.unknown)));
        return;
    }
    match agent::SmartVerdict::try_from(d.smart) {
        Ok(agent::SmartVerdict::Failed) => out.push(format!(
            "disk {name}: SMART FAILED: the drive predicts its own failure; replace it"
        )),
        Ok(agent::SmartVerdict::Unknown | agent::SmartVerdict::Unspecified) | Err(_) => {
            out.push(format!("disk {name}: SMART verdict unknown"));
        }
        Ok(agent::SmartVerdict::Passed | agent::SmartVerdict::Unsupported) => {}
    }
    if let Some(bits) = d.critical_warning
        && bits != 0
    {
        out.push(format!(
            "disk {name}: NVMe CRITICAL WARNING: {}",
            critical_warning_names(bits).join(", ")
        ));
    }
    if !d.failing_attributes.is_empty() {
        let names: Vec<String> = d
            .failing_attributes
            .iter()
            .map(|a| clean(a).into_owned())
            .collect();
        out.push(format!(
            "disk {name}: attributes FAILING NOW: {}",
            names.join(", ")
        ));
    }
    let counters = [
        (d.reallocated_sectors, "reallocated sectors"),
        (d.pending_sectors, "pending sectors"),
        (d.offline_uncorrectable, "offline uncorrectable sectors"),
        (d.crc_errors, "CRC errors (check the cable)"),
        (d.media_errors, "media errors"),
    ];
    let bad: Vec<String> = counters
        .iter()
        .filter_map(|(v, what)| v.filter(|n| *n > 0).map(|n| format!("{n} {what}")))
        .collect();
    if !bad.is_empty() {
        out.push(format!("disk {name}: {}", bad.join(", ")));
    }
    if let (Some(spare), Some(threshold)) = (d.available_spare, d.available_spare_threshold)
        && spare <= threshold
    {
        out.push(format!(
            "disk {name}: available spare {spare} %, at or below its threshold {threshold} %"
        ));
    }
    if let (Some(t), Some(limit)) = (d.temperature_c, d.temperature_limit_c)
        && t >= limit
    {
        out.push(format!(
            "disk {name}: {t} °C, AT OR OVER the drive's limit {limit} °C"
        ));
    }
    if let Some(used) = d.percentage_used
        && used >= 100
    {
        out.push(format!(
            "disk {name}: worn out ({used} % of its rated endurance used)"
        ));
    }
    if let Some(t) = &d.last_self_test
        && !t.passed
        && !t.running
        && !t.status.is_empty()
    {
        out.push(format!(
            "disk {name}: last {} self-test did not pass: {}",
            self_test_kind_word(t.kind),
            clean(&t.status)
        ));
    }
}

/// Vdev states that are fine: spares waiting (`AVAIL`) or in use.
fn vdev_state_ok(state: &str) -> bool {
    matches!(state, "ONLINE" | "AVAIL" | "INUSE")
}

fn pool_problems(p: &agent::ZfsPoolHealth, out: &mut Vec<String>) {
    let name = clean(&p.name);
    if !p.unknown.is_empty() {
        out.push(format!("pool {name}: unknown: {}", clean(&p.unknown)));
        return;
    }
    if p.state != "ONLINE" {
        out.push(format!("pool {name} is {}", or_dash(&p.state)));
    }
    for v in &p.vdevs {
        let errors = v.read_errors + v.write_errors + v.checksum_errors;
        // The pool's own row (depth 0) repeats the pool's state.
        if v.depth > 0 && !vdev_state_ok(&v.state) {
            out.push(format!(
                "pool {name}: device {} is {}{}",
                clean(&v.name),
                or_dash(&v.state),
                if v.note.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", clean(&v.note))
                }
            ));
        }
        if errors > 0 {
            out.push(format!(
                "pool {name}: {} has errors: {} read, {} write, {} checksum",
                clean(&v.name),
                v.read_errors,
                v.write_errors,
                v.checksum_errors
            ));
        }
    }
    if p.data_errors > 0 {
        out.push(format!(
            "pool {name}: {} DATA ERRORS (zpool status -v lists the files)",
            p.data_errors
        ));
    }
    if let Some(s) = &p.scrub {
        match agent::ScrubState::try_from(s.state) {
            Ok(agent::ScrubState::Finished) if s.errors > 0 => out.push(format!(
                "pool {name}: last scrub found {}",
                errors(s.errors)
            )),
            Ok(agent::ScrubState::Never) => {
                out.push(format!("pool {name}: never scrubbed"));
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------- text

/// The whole of `coloc node health` as text. `now_unix` only words the
/// report's age; whether it is stale is colocd's call.
pub fn node_health_text(h: &pb::NodeHealth, now_unix: i64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Health of node {}", clean(&h.node));
    let Some(r) = &h.report else {
        let _ = writeln!(
            out,
            "\nNO HEALTH REPORT: node {} never sent one (its agent has not connected since it \
             learned to, or is older than colocd). Nothing is known of its disks and pools.",
            clean(&h.node)
        );
        out.push('\n');
        out.push_str(&alerts_section(h, now_unix));
        return out;
    };
    let age = u64::try_from(now_unix.saturating_sub(h.received_unix)).unwrap_or(0);
    let received = if h.received_unix > 0 {
        format!(
            "{} UTC ({} ago)",
            fmt_time(h.received_unix),
            fmt_duration(age)
        )
    } else {
        "- (colocd did not say when)".to_string()
    };
    let collected = match i64::try_from(r.collected_unix_ms) {
        Ok(ms) if ms > 0 => format!("{} UTC, node's clock", fmt_time_ms(ms)),
        Ok(_) | Err(_) => "- (the node did not say when)".to_string(),
    };
    let period = if h.period_secs == 0 {
        "-".to_string()
    } else {
        format!("every {} s", h.period_secs)
    };
    let header = Details::new()
        .field("Received", received)
        .field("Collected", collected)
        .field("Period", period);
    out.push_str(&header.render());
    if h.stale {
        let _ = writeln!(
            out,
            "\nSTALE REPORT: received {} ago, more than two health periods: the node is silent or \
             unreachable, and what follows may no longer be true.",
            fmt_duration(age)
        );
    }

    out.push('\n');
    out.push_str(&alerts_section(h, now_unix));
    let found = problems(h);
    out.push('\n');
    if found.is_empty() {
        out.push_str("No problem in the report.\n");
    } else {
        let _ = writeln!(out, "PROBLEMS IN THE REPORT ({})", found.len());
        for p in &found {
            let _ = writeln!(out, "  !! {p}");
        }
    }

    out.push('\n');
    out.push_str(&disks_section(&r.disks));
    out.push('\n');
    out.push_str(&pools_section(&r.zfs_pools));
    out.push('\n');
    out.push_str(&thin_pools_section(&r.thin_pools));
    out.push('\n');
    out.push_str(&filesystems_section(&r.filesystems));
    out.push('\n');
    out.push_str(&system_section(r));
    out.push('\n');
    out.push_str(&temperatures_section(&r.temperatures));
    out.push('\n');
    out.push_str(&units_section(r.units.as_ref()));
    out.push('\n');
    out.push_str(&nics_section(&r.nics));
    out.push('\n');
    out.push_str(&unobserved_section(&r.unobserved));
    out.push('\n');
    out.push_str(&maintenance_section(&r.maintenance));
    out
}

fn alerts_section(h: &pb::NodeHealth, now_unix: i64) -> String {
    if h.alerts.is_empty() {
        return "No firing alert.\n".to_string();
    }
    format!(
        "FIRING ALERTS ({})\n{}",
        h.alerts.len(),
        indent(&alerts_table(&h.alerts, now_unix), 2)
    )
}

fn disks_section(disks: &[agent::DiskHealth]) -> String {
    if disks.is_empty() {
        return "Disks: none reported\n".to_string();
    }
    let mut out = format!("Disks ({})\n", disks.len());
    for d in disks {
        let mut title = vec![clean(&d.device).into_owned()];
        if !d.model.is_empty() {
            title.push(clean(&d.model).into_owned());
        }
        title.push(format!("serial {}", or_dash(&d.serial)));
        if !d.transport.is_empty() {
            title.push(clean(&d.transport).into_owned());
        }
        if d.size_bytes > 0 {
            title.push(fmt_bytes(d.size_bytes));
        }
        let _ = writeln!(out, "  {}", title.join("  "));
        out.push_str(&indent(&disk_details(d).render(), 4));
    }
    out
}

fn disk_details(d: &agent::DiskHealth) -> Details {
    if !d.unknown.is_empty() {
        return Details::new().field("SMART", format!("unknown: {}", clean(&d.unknown)));
    }
    let verdict = match agent::SmartVerdict::try_from(d.smart) {
        Ok(agent::SmartVerdict::Failed) => "FAILED: the drive predicts its own failure".to_string(),
        _ => smart_word(d.smart).to_string(),
    };
    let mut x = Details::new().field("SMART", verdict);
    if let Some(bits) = d.critical_warning {
        x = x.field(
            "Critical warning",
            if bits == 0 {
                "none".to_string()
            } else {
                format!(
                    "{} (0x{bits:02x})",
                    critical_warning_names(bits).join(", ").to_uppercase()
                )
            },
        );
    }
    if !d.failing_attributes.is_empty() {
        let names: Vec<String> = d
            .failing_attributes
            .iter()
            .map(|a| clean(a).into_owned())
            .collect();
        x = x.field("FAILING NOW", names.join(", "));
    }
    if let Some(t) = d.temperature_c {
        let text = match d.temperature_limit_c {
            Some(limit) if t >= limit => format!("{t} °C, OVER the drive's limit {limit} °C"),
            Some(limit) => format!("{t} °C (drive's limit {limit} °C)"),
            None => format!("{t} °C"),
        };
        x = x.field("Temperature", text);
    }
    if d.percentage_used.is_some() || d.available_spare.is_some() {
        let spare = match (d.available_spare, d.available_spare_threshold) {
            (Some(s), Some(t)) if s <= t => format!("spare {s} %, AT OR BELOW threshold {t} %"),
            (Some(s), Some(t)) => format!("spare {s} % (threshold {t} %)"),
            (Some(s), None) => format!("spare {s} %"),
            (None, _) => "spare -".to_string(),
        };
        x = x.field(
            "Wear",
            format!("{} % used, {spare}", opt(d.percentage_used)),
        );
    }
    if d.media_errors.is_some() {
        x = x.field("Media errors", opt(d.media_errors));
    }
    let ata = [
        d.reallocated_sectors,
        d.pending_sectors,
        d.offline_uncorrectable,
        d.crc_errors,
    ];
    if ata.iter().any(Option::is_some) {
        x = x.field(
            "Sectors",
            format!(
                "reallocated {}, pending {}, uncorrectable {}; CRC errors {}",
                opt(d.reallocated_sectors),
                opt(d.pending_sectors),
                opt(d.offline_uncorrectable),
                opt(d.crc_errors)
            ),
        );
    }
    x = x.field(
        "Power-on",
        d.power_on_hours
            .map_or_else(|| "-".to_string(), |h| format!("{h} h")),
    );
    x.field("Self-test", self_test_text(d.last_self_test.as_ref()))
}

fn self_test_text(t: Option<&agent::SelfTestResult>) -> String {
    let Some(t) = t else {
        return "none logged".to_string();
    };
    let kind = self_test_kind_word(t.kind);
    let outcome = if t.running {
        "running now".to_string()
    } else if t.passed {
        "passed".to_string()
    } else {
        "DID NOT PASS".to_string()
    };
    let mut text = format!("{kind}, {outcome}");
    if !t.status.is_empty() {
        let _ = write!(text, ": {}", clean(&t.status));
    }
    if let Some(h) = t.power_on_hours {
        let _ = write!(text, " (at {h} h)");
    }
    text
}

fn scrub_text(s: Option<&agent::ScrubStatus>) -> String {
    let Some(s) = s else {
        return "-".to_string();
    };
    let when = |unix: u64| {
        if unix == 0 {
            "at an unknown time".to_string()
        } else {
            format!("{} UTC", fmt_time(self::unix(unix)))
        }
    };
    match agent::ScrubState::try_from(s.state) {
        Ok(agent::ScrubState::Never) => "NEVER scrubbed".to_string(),
        Ok(agent::ScrubState::Running) => format!(
            "running since {}, {:.1} % done, {} so far",
            when(s.started_unix),
            f64::from(s.progress_permille.min(1000)) / 10.0,
            errors(s.errors)
        ),
        Ok(agent::ScrubState::Finished) => format!(
            "finished {}, {}{}, {} repaired",
            when(s.finished_unix),
            errors(s.errors),
            if s.errors > 0 { " (!)" } else { "" },
            fmt_bytes(s.repaired_bytes)
        ),
        Ok(agent::ScrubState::Canceled) => format!("canceled (started {})", when(s.started_unix)),
        Ok(agent::ScrubState::Unspecified) | Err(_) => scrub_state_word(s.state).to_string(),
    }
}

fn pools_section(pools: &[agent::ZfsPoolHealth]) -> String {
    if pools.is_empty() {
        return "ZFS pools: none\n".to_string();
    }
    let mut out = format!("ZFS pools ({})\n", pools.len());
    for p in pools {
        if !p.unknown.is_empty() {
            let _ = writeln!(out, "  {}: unknown: {}", clean(&p.name), clean(&p.unknown));
            continue;
        }
        let _ = writeln!(
            out,
            "  {}  {}  {} used ({} of {}, {} free)",
            clean(&p.name),
            or_dash(&p.state),
            percent(p.allocated_bytes, p.size_bytes),
            fmt_bytes(p.allocated_bytes),
            fmt_bytes(p.size_bytes),
            fmt_bytes(p.free_bytes)
        );
        let mut d = Details::new();
        if !p.status.is_empty() {
            d = d.field("Status", clean(&p.status));
        }
        d = d
            .field(
                "Data errors",
                if p.data_errors == 0 {
                    "none".to_string()
                } else {
                    format!("{} (!)", p.data_errors)
                },
            )
            .field("Last scrub", scrub_text(p.scrub.as_ref()));
        out.push_str(&indent(&d.render(), 4));
        if !p.vdevs.is_empty() {
            let table = Table::new(&["VDEV", "STATE", "READ", "WRITE", "CKSUM", "NOTE"]).rows(
                &p.vdevs,
                |v| {
                    let depth = usize::try_from(v.depth.min(8)).unwrap_or(0);
                    let flag = if vdev_state_ok(&v.state)
                        && v.read_errors + v.write_errors + v.checksum_errors == 0
                    {
                        ""
                    } else {
                        " (!)"
                    };
                    vec![
                        format!("{}{}", "  ".repeat(depth), clean(&v.name)),
                        format!("{}{flag}", or_dash(&v.state)),
                        v.read_errors.to_string(),
                        v.write_errors.to_string(),
                        v.checksum_errors.to_string(),
                        clean(&v.note).into_owned(),
                    ]
                },
            );
            out.push_str(&indent(&table.render(), 4));
        }
    }
    out
}

fn thin_pools_section(pools: &[agent::ThinPoolHealth]) -> String {
    if pools.is_empty() {
        return "Thin pools: none\n".to_string();
    }
    let table = Table::new(&["THIN POOL", "SIZE", "DATA", "METADATA", "NOTE"]).rows(pools, |t| {
        let name = format!("{}/{}", clean(&t.volume_group), clean(&t.name));
        if t.unknown.is_empty() {
            vec![
                name,
                fmt_bytes(t.size_bytes),
                format!("{:.1} %", t.data_percent),
                format!("{:.1} %", t.metadata_percent),
                String::new(),
            ]
        } else {
            vec![
                name,
                "-".into(),
                "-".into(),
                "-".into(),
                format!("unknown: {}", clean(&t.unknown)),
            ]
        }
    });
    format!(
        "Thin pools ({})\n{}",
        pools.len(),
        indent(&table.render(), 2)
    )
}

fn filesystems_section(fs: &[agent::FilesystemUse]) -> String {
    if fs.is_empty() {
        return "Filesystems: none reported\n".to_string();
    }
    let table = Table::new(&[
        "MOUNT",
        "VOLUME",
        "USED",
        "SIZE",
        "USE",
        "AVAILABLE",
        "NOTE",
    ])
    .rows(fs, |f| {
        if f.unknown.is_empty() {
            vec![
                clean(&f.mount_path).into_owned(),
                or_dash(&f.volume_id).into_owned(),
                fmt_bytes(f.used_bytes),
                fmt_bytes(f.size_bytes),
                percent(f.used_bytes, f.size_bytes),
                fmt_bytes(f.available_bytes),
                String::new(),
            ]
        } else {
            let mut row = vec![
                clean(&f.mount_path).into_owned(),
                or_dash(&f.volume_id).into_owned(),
            ];
            row.extend(["-", "-", "-", "-"].map(String::from));
            row.push(format!("unknown: {}", clean(&f.unknown)));
            row
        }
    });
    format!("Filesystems ({})\n{}", fs.len(), indent(&table.render(), 2))
}

fn system_section(r: &agent::HealthReport) -> String {
    let mut d = match &r.system {
        None => Details::new().field("System", "not in the report"),
        Some(s) if !s.unknown.is_empty() => {
            Details::new().field("System", format!("unknown: {}", clean(&s.unknown)))
        }
        Some(s) => {
            let used = s
                .memory_total_bytes
                .saturating_sub(s.memory_available_bytes);
            let swap = if s.swap_total_bytes == 0 {
                "none".to_string()
            } else {
                let used = s.swap_total_bytes.saturating_sub(s.swap_free_bytes);
                format!(
                    "{} used of {} ({})",
                    fmt_bytes(used),
                    fmt_bytes(s.swap_total_bytes),
                    percent(used, s.swap_total_bytes)
                )
            };
            Details::new()
                .field(
                    "Memory",
                    format!(
                        "{} used of {} ({}), {} available",
                        fmt_bytes(used),
                        fmt_bytes(s.memory_total_bytes),
                        percent(used, s.memory_total_bytes),
                        fmt_bytes(s.memory_available_bytes)
                    ),
                )
                .field("Swap", swap)
                .field(
                    "Load",
                    format!(
                        "{:.2} {:.2} {:.2} (1, 5, 15 min; {} CPUs)",
                        s.load1, s.load5, s.load15, s.cpu_count
                    ),
                )
                .field("CPU busy", format!("{:.0} %", s.cpu_busy_ratio * 100.0))
                .field("Up", fmt_duration(s.uptime_secs))
        }
    };
    d = d.field(
        "Clock",
        match &r.clock {
            None => "not in the report".to_string(),
            Some(c) if !c.unknown.is_empty() => format!("unknown: {}", clean(&c.unknown)),
            Some(c) if c.synchronised => match c.max_error_secs {
                Some(e) => format!("synchronised (max error {e:.3} s)"),
                None => "synchronised".to_string(),
            },
            Some(_) => "NOT SYNCHRONISED".to_string(),
        },
    );
    d = d.field(
        "Reboot",
        match &r.reboot {
            None => "not in the report".to_string(),
            Some(b) if !b.unknown.is_empty() => format!("unknown: {}", clean(&b.unknown)),
            Some(b) if b.required => format!("NEEDED: {}", or_dash(&b.reason)),
            Some(_) => "not needed".to_string(),
        },
    );
    format!("System\n{}", indent(&d.render(), 2))
}

fn temperatures_section(temps: &[agent::Temperature]) -> String {
    if temps.is_empty() {
        return "Temperatures: no sensors\n".to_string();
    }
    let table = Table::new(&["SENSOR", "TEMP", "CRITICAL", "NOTE"]).rows(temps, |t| {
        if !t.unknown.is_empty() {
            return vec![
                clean(&t.sensor).into_owned(),
                "-".into(),
                "-".into(),
                format!("unknown: {}", clean(&t.unknown)),
            ];
        }
        let over = t.critical_celsius.is_some_and(|c| t.celsius >= c);
        vec![
            clean(&t.sensor).into_owned(),
            format!("{:.0} °C", t.celsius),
            t.critical_celsius
                .map_or_else(|| "-".to_string(), |c| format!("{c:.0} °C")),
            if over {
                "OVER CRITICAL".into()
            } else {
                String::new()
            },
        ]
    });
    format!(
        "Temperatures ({})\n{}",
        temps.len(),
        indent(&table.render(), 2)
    )
}

fn units_section(units: Option<&agent::UnitsHealth>) -> String {
    match units {
        None => "Failed units: not in the report\n".to_string(),
        Some(u) if !u.unknown.is_empty() => {
            format!("Failed units: unknown: {}\n", clean(&u.unknown))
        }
        Some(u) if u.failed.is_empty() => "Failed units: none\n".to_string(),
        Some(u) => {
            let table = Table::new(&["UNIT", "RESULT"]).rows(&u.failed, |f| {
                vec![clean(&f.name).into_owned(), or_dash(&f.result).into_owned()]
            });
            format!(
                "FAILED UNITS ({})\n{}",
                u.failed.len(),
                indent(&table.render(), 2)
            )
        }
    }
}

fn nics_section(nics: &[agent::NicHealth]) -> String {
    if nics.is_empty() {
        return "Network interfaces: none reported\n".to_string();
    }
    let table = Table::new(&["NIC", "LINK", "SPEED"]).rows(nics, |n| {
        vec![
            clean(&n.name).into_owned(),
            if n.up { "up" } else { "DOWN" }.to_string(),
            n.speed_mbps
                .map_or_else(|| "-".to_string(), |s| format!("{s} Mb/s")),
        ]
    });
    format!(
        "Network interfaces ({})\n{}",
        nics.len(),
        indent(&table.render(), 2)
    )
}

fn unobserved_section(unobserved: &[agent::Unobserved]) -> String {
    if unobserved.is_empty() {
        return "Not observed: nothing, every source was read\n".to_string();
    }
    let table = Table::new(&["SOURCE", "WHY"]).rows(unobserved, |u| {
        vec![
            or_dash(&u.source).into_owned(),
            or_dash(&u.reason).into_owned(),
        ]
    });
    format!(
        "NOT OBSERVED ({}): unknown, not healthy\n{}",
        unobserved.len(),
        indent(&table.render(), 2)
    )
}

fn maintenance_section(runs: &[agent::MaintenanceRun]) -> String {
    if runs.is_empty() {
        return "Maintenance: no run since the previous report\n".to_string();
    }
    let table = Table::new(&[
        "KIND", "SUBJECT", "STATE", "STARTED", "FINISHED", "BY", "DETAIL",
    ])
    .rows(runs, |m| {
        vec![
            maintenance_kind_word(m.kind).to_string(),
            clean(&m.subject).into_owned(),
            maintenance_state_word(m.state).to_string(),
            fmt_time(unix(m.started_unix)),
            fmt_time(unix(m.finished_unix)),
            if m.on_demand { "request" } else { "schedule" }.to_string(),
            or_dash(&m.detail).into_owned(),
        ]
    });
    format!(
        "Maintenance ({})\n{}",
        runs.len(),
        indent(&table.render(), 2)
    )
}

/// What `coloc node scrub` and `coloc node self-test` say once the agent
/// started the run.
pub fn maintenance_started_text(node: &str, kind: agent::MaintenanceKind, subject: &str) -> String {
    format!(
        "Started a {} of {} on node {}; 'coloc node health {}' shows its progress and result.\n",
        maintenance_kind_word(kind as i32),
        clean(subject),
        clean(node),
        clean(node)
    )
}
