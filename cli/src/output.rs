//! What the CLI prints: aligned tables and detail blocks for people, JSON
//! for scripts, both built from the prost messages colocd returns. Pure
//! formatting functions (time, sizes, status words, tables) plus the one
//! place that writes to stdout. Nothing here talks to colocd.
//!
//! Text that came from the server is escaped before it reaches a terminal:
//! audit details and labels may echo input from anyone, and an escape
//! sequence must not be able to rewrite the operator's screen.

pub mod tasks;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;

use coloc_proto::agent::v1 as agent;
use coloc_proto::controller::v1 as pb;
use coloc_proto::domain;
use coloc_proto::storage;
use serde_json::{Value, json};
use time::OffsetDateTime;
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
    if unix <= 0 {
        return "-".to_string();
    }
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(format_description!("[year]-[month]-[day] [hour]:[minute]"))
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, for audit entries where seconds matter.
pub fn fmt_time_ms(unix_ms: i64) -> String {
    if unix_ms <= 0 {
        return "-".to_string();
    }
    OffsetDateTime::from_unix_timestamp(unix_ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]"
            ))
            .ok()
        })
        .unwrap_or_else(|| unix_ms.to_string())
}

/// Binary units, one decimal: `512 B`, `1.5 KiB`, `931.5 GiB`; the same
/// words as colocd and the agent use in their messages.
pub fn fmt_bytes(bytes: u64) -> String {
    storage::format_size(bytes)
}

/// `YYYY-MM-DD` in UTC; `-` for 0 (never).
pub fn fmt_date(unix: i64) -> String {
    if unix <= 0 {
        return "-".to_string();
    }
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(format_description!("[year]-[month]-[day]")).ok())
        .unwrap_or_else(|| unix.to_string())
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

/// `k=v, k2=v2`, sorted by key; `-` when empty.
pub fn fmt_labels(labels: &HashMap<String, String>) -> String {
    if labels.is_empty() {
        return "-".to_string();
    }
    let mut pairs: Vec<_> = labels.iter().collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", clean(k), clean(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn labels_json(labels: &HashMap<String, String>) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

// ---------------------------------------------------------------- status words

pub fn node_status(status: i32) -> &'static str {
    match pb::NodeStatus::try_from(status) {
        Ok(pb::NodeStatus::Enrolling) => "enrolling",
        Ok(pb::NodeStatus::Ready) => "ready",
        Ok(pb::NodeStatus::Unreachable) => "unreachable",
        Ok(pb::NodeStatus::Draining) => "draining",
        Ok(pb::NodeStatus::Unspecified) | Err(_) => "unknown",
    }
}

pub fn reconcile_outcome(outcome: i32) -> &'static str {
    match agent::ReconcileOutcome::try_from(outcome) {
        Ok(agent::ReconcileOutcome::Applied) => "applied",
        Ok(agent::ReconcileOutcome::Failed) => "failed",
        Ok(agent::ReconcileOutcome::StaleRejected) => "stale generation rejected",
        Ok(agent::ReconcileOutcome::Unspecified) | Err(_) => "none yet",
    }
}

pub fn audit_outcome(outcome: i32) -> &'static str {
    match pb::AuditOutcome::try_from(outcome) {
        Ok(pb::AuditOutcome::Allowed) => "allowed",
        Ok(pb::AuditOutcome::Denied) => "denied",
        Ok(pb::AuditOutcome::Failed) => "failed",
        Ok(pb::AuditOutcome::Unspecified) | Err(_) => "unknown",
    }
}

pub fn role_word(role: i32) -> &'static str {
    domain::Role::try_from(role).map_or("unknown", domain::Role::as_str)
}

pub fn offer_word(offer: i32) -> &'static str {
    domain::Offer::try_from(offer).map_or("unknown", domain::Offer::as_str)
}

/// A join token as people think of it.
pub fn join_token_state(t: &pb::JoinToken, now_unix: i64) -> String {
    if !t.used_by_node.is_empty() {
        format!("used by {}", clean(&t.used_by_node))
    } else if t.expires_unix <= now_unix {
        "expired".to_string()
    } else {
        "unused".to_string()
    }
}

pub fn api_token_state(t: &pb::ApiToken, now_unix: i64) -> &'static str {
    if t.revoked {
        "revoked"
    } else if t.expires_unix > 0 && t.expires_unix <= now_unix {
        "expired"
    } else {
        "active"
    }
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

// ---------------------------------------------------------------- sites

pub fn site_json(s: &pb::Site) -> Value {
    json!({
        "name": s.name,
        "country": s.country,
        "city": s.city,
        "description": s.description,
        "created_unix": s.created_unix,
    })
}

pub fn site_details(s: &pb::Site) -> String {
    Details::new()
        .field("Name", clean(&s.name))
        .field("Country", clean(&s.country))
        .field("City", or_dash(&s.city))
        .field("Description", or_dash(&s.description))
        .field("Created", fmt_time(s.created_unix))
        .render()
}

pub fn sites_table(sites: &[pb::Site]) -> String {
    let mut t = Table::new(&["NAME", "COUNTRY", "CITY", "CREATED", "DESCRIPTION"]);
    for s in sites {
        t.row(vec![
            clean(&s.name).into(),
            clean(&s.country).into(),
            or_dash(&s.city).into(),
            fmt_time(s.created_unix),
            or_dash(&s.description).into(),
        ]);
    }
    t.render_or("no sites")
}

// ---------------------------------------------------------------- join tokens

pub fn join_token_json(t: &pb::JoinToken) -> Value {
    let mut v = json!({
        "id": t.id,
        "site": t.site,
        "created_unix": t.created_unix,
        "expires_unix": t.expires_unix,
        "used_by_node": t.used_by_node,
        "created_by": t.created_by,
    });
    // The secret exists only in CreateJoinToken's answer; keep it out of
    // listings rather than printing an empty field that looks like one.
    if !t.secret.is_empty() {
        v["secret"] = Value::String(t.secret.clone());
    }
    v
}

pub fn join_tokens_table(tokens: &[pb::JoinToken], now_unix: i64) -> String {
    let mut t = Table::new(&["ID", "SITE", "STATE", "CREATED", "EXPIRES", "CREATED BY"]);
    for j in tokens {
        t.row(vec![
            clean(&j.id).into(),
            clean(&j.site).into(),
            join_token_state(j, now_unix),
            fmt_time(j.created_unix),
            fmt_time(j.expires_unix),
            or_dash(&j.created_by).into(),
        ]);
    }
    t.render_or("no join tokens")
}

// ---------------------------------------------------------------- nodes

pub fn facts_json(f: &agent::NodeFacts) -> Value {
    json!({
        "hostname": f.hostname,
        "cpu_model": f.cpu_model,
        "cpu_count": f.cpu_count,
        "memory_bytes": f.memory_bytes,
        "disks": f.disks.iter().map(|d| json!({
            "name": d.name,
            "model": d.model,
            "serial": d.serial,
            "size_bytes": d.size_bytes,
            "transport": d.transport,
            "rotational": d.rotational,
        })).collect::<Vec<_>>(),
        "nics": f.nics.iter().map(|n| json!({
            "name": n.name,
            "mac": n.mac,
            "addresses": n.addresses,
        })).collect::<Vec<_>>(),
        "kernel_version": f.kernel_version,
        "os_name": f.os_name,
        "agent_version": f.agent_version,
        "boot_time_unix": f.boot_time_unix,
    })
}

pub fn node_json(n: &pb::Node) -> Value {
    json!({
        "name": n.name,
        "site": n.site,
        "status": node_status(n.status),
        "draining": n.draining,
        "connected": n.connected,
        "enrolled_unix": n.enrolled_unix,
        "last_seen_unix": n.last_seen_unix,
        "desired_generation": n.desired_generation,
        "applied_generation": n.applied_generation,
        "last_outcome": reconcile_outcome(n.last_outcome),
        "last_message": n.last_message,
        "labels": labels_json(&n.labels),
        "cert_fingerprint": n.cert_fingerprint,
        "facts": n.facts.as_ref().map(facts_json),
    })
}

fn generation(n: &pb::Node) -> String {
    format!("{}/{}", n.applied_generation, n.desired_generation)
}

pub fn nodes_table(nodes: &[pb::Node]) -> String {
    let mut t = Table::new(&[
        "NAME",
        "SITE",
        "STATUS",
        "LAST SEEN",
        "APPLIED/DESIRED",
        "LABELS",
    ]);
    for n in nodes {
        t.row(vec![
            clean(&n.name).into(),
            clean(&n.site).into(),
            node_status(n.status).to_string(),
            fmt_time(n.last_seen_unix),
            generation(n),
            fmt_labels(&n.labels),
        ]);
    }
    t.render_or("no nodes")
}

pub fn node_details(n: &pb::Node) -> String {
    let status = format!(
        "{} ({})",
        node_status(n.status),
        if n.connected {
            "connected"
        } else {
            "not connected"
        }
    );
    let sync = if n.applied_generation >= n.desired_generation {
        "up to date"
    } else {
        "behind"
    };
    let outcome = if n.last_message.is_empty() {
        reconcile_outcome(n.last_outcome).to_string()
    } else {
        format!(
            "{}: {}",
            reconcile_outcome(n.last_outcome),
            clean(&n.last_message)
        )
    };
    let mut out = Details::new()
        .field("Name", clean(&n.name))
        .field("Site", clean(&n.site))
        .field("Status", status)
        .field("Draining", yes_no(n.draining))
        .field("Enrolled", fmt_time(n.enrolled_unix))
        .field("Last seen", fmt_time(n.last_seen_unix))
        .field(
            "Generation",
            format!(
                "{} applied, {} desired ({sync})",
                n.applied_generation, n.desired_generation
            ),
        )
        .field("Last outcome", outcome)
        .field("Labels", fmt_labels(&n.labels))
        .field(
            "Certificate",
            format!("sha256 {}", or_dash(&n.cert_fingerprint)),
        )
        .render();
    match &n.facts {
        None => out.push_str("\nFacts: not reported yet\n"),
        Some(f) => {
            out.push_str("\nFacts\n");
            out.push_str(&facts_details(f));
        }
    }
    out
}

fn facts_details(f: &agent::NodeFacts) -> String {
    let cpu = if f.cpu_model.is_empty() {
        format!("{} cores", f.cpu_count)
    } else {
        format!("{} × {}", f.cpu_count, clean(&f.cpu_model))
    };
    let mut out = Details::new()
        .field("Hostname", or_dash(&f.hostname))
        .field("CPU", cpu)
        .field("Memory", fmt_bytes(f.memory_bytes))
        .field("Kernel", or_dash(&f.kernel_version))
        .field("OS", or_dash(&f.os_name))
        .field("Agent", or_dash(&f.agent_version))
        .field(
            "Booted",
            fmt_time(i64::try_from(f.boot_time_unix).unwrap_or(i64::MAX)),
        )
        .render();

    let mut disks = Table::new(&["DISK", "MODEL", "SERIAL", "SIZE", "TRANSPORT", "TYPE"]);
    for d in &f.disks {
        disks.row(vec![
            clean(&d.name).into(),
            or_dash(&d.model).into(),
            or_dash(&d.serial).into(),
            fmt_bytes(d.size_bytes),
            or_dash(&d.transport).into(),
            if d.rotational { "hdd" } else { "ssd" }.to_string(),
        ]);
    }
    out.push('\n');
    out.push_str(&disks.render_or("no disks reported"));

    let mut nics = Table::new(&["NIC", "MAC", "ADDRESSES"]);
    for n in &f.nics {
        let addresses = if n.addresses.is_empty() {
            "-".to_string()
        } else {
            n.addresses
                .iter()
                .map(|a| clean(a).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        };
        nics.row(vec![
            clean(&n.name).into(),
            or_dash(&n.mac).into(),
            addresses,
        ]);
    }
    out.push('\n');
    out.push_str(&nics.render_or("no network interfaces reported"));
    out
}

/// `n1 answered in 1.2 ms (agent clock 2026-01-01 00:00:01 UTC)`.
pub fn ping_line(node: &domain::NodeName, pong: &pb::PingNodeResponse) -> String {
    let ms = pong.round_trip_us as f64 / 1000.0;
    let clock = fmt_time_ms(i64::try_from(pong.agent_unix_ms).unwrap_or(i64::MAX));
    format!("{node} answered in {ms:.1} ms (agent clock {clock} UTC)\n")
}

pub fn stats_json(s: &pb::ControllerStats) -> Value {
    json!({
        "sessions": s.sessions,
        "sessions_opened": s.sessions_opened,
        "heartbeats": s.heartbeats,
        "observed": s.observed,
        "started_unix": s.started_unix,
    })
}

pub fn stats_details(s: &pb::ControllerStats) -> String {
    Details::new()
        .field("Started", fmt_time(s.started_unix))
        .field("Sessions open", s.sessions.to_string())
        .field("Sessions opened", s.sessions_opened.to_string())
        .field("Heartbeats", s.heartbeats.to_string())
        .field("Observed reports", s.observed.to_string())
        .render()
}

// ---------------------------------------------------------------- tenants

pub fn tenant_json(t: &pb::Tenant) -> Value {
    json!({
        "name": t.name,
        "display_name": t.display_name,
        "offer": offer_word(t.offer),
        "membership_expires": t.membership_expires,
        "membership_expired": t.membership_expired,
        "created_unix": t.created_unix,
        "storage_quota_bytes": t.storage_quota_bytes,
        "storage_used_bytes": t.storage_used_bytes,
        "volume_grace_days": t.volume_grace_days,
        "posix_id": t.posix_id,
    })
}

fn membership(t: &pb::Tenant) -> String {
    if t.membership_expired {
        format!("{} (expired)", clean(&t.membership_expires))
    } else {
        clean(&t.membership_expires).into_owned()
    }
}

/// `20.0 GiB / 100.0 GiB`: used, then quota.
fn storage_use(t: &pb::Tenant) -> String {
    format!(
        "{} / {}",
        fmt_bytes(t.storage_used_bytes),
        fmt_bytes(t.storage_quota_bytes)
    )
}

fn grace(days: u32) -> String {
    match days {
        0 => "-".to_string(),
        1 => "1 day".to_string(),
        n => format!("{n} days"),
    }
}

/// The uid/gid owning the tenant's volumes; 0 means none allocated yet.
fn posix_id(id: u32) -> String {
    if id == 0 {
        "-".to_string()
    } else {
        id.to_string()
    }
}

pub fn tenant_details(t: &pb::Tenant) -> String {
    Details::new()
        .field("Name", clean(&t.name))
        .field("Display name", or_dash(&t.display_name))
        .field("Offer", offer_word(t.offer))
        .field("Membership until", membership(t))
        .field("Storage quota", fmt_bytes(t.storage_quota_bytes))
        .field(
            "Storage used",
            format!(
                "{} (active and deleted-but-kept volumes)",
                fmt_bytes(t.storage_used_bytes)
            ),
        )
        .field("Deleted volumes kept", grace(t.volume_grace_days))
        .field("POSIX uid/gid", posix_id(t.posix_id))
        .field("Created", fmt_time(t.created_unix))
        .render()
}

pub fn tenants_table(tenants: &[pb::Tenant]) -> String {
    let mut t = Table::new(&[
        "NAME",
        "OFFER",
        "MEMBERSHIP UNTIL",
        "STORAGE USED/QUOTA",
        "GRACE",
        "POSIX ID",
        "CREATED",
        "DISPLAY NAME",
    ]);
    for x in tenants {
        t.row(vec![
            clean(&x.name).into(),
            offer_word(x.offer).to_string(),
            membership(x),
            storage_use(x),
            grace(x.volume_grace_days),
            posix_id(x.posix_id),
            fmt_time(x.created_unix),
            or_dash(&x.display_name).into(),
        ]);
    }
    t.render_or("no tenants")
}

// ---------------------------------------------------------------- storage

pub fn pool_kind_word(kind: i32) -> &'static str {
    match agent::PoolKind::try_from(kind) {
        Ok(agent::PoolKind::Zfs) => "zfs",
        Ok(agent::PoolKind::LvmThin) => "lvm",
        Ok(agent::PoolKind::Unspecified) | Err(_) => "unknown",
    }
}

pub fn pool_layout_word(layout: i32) -> &'static str {
    match agent::PoolLayout::try_from(layout) {
        Ok(agent::PoolLayout::Single) => "single",
        Ok(agent::PoolLayout::Mirror) => "mirror",
        Ok(agent::PoolLayout::Raidz1) => "raidz1",
        Ok(agent::PoolLayout::Raidz2) => "raidz2",
        Ok(agent::PoolLayout::Unspecified) | Err(_) => "unknown",
    }
}

pub fn lifecycle_word(lifecycle: i32) -> &'static str {
    match pb::VolumeLifecycle::try_from(lifecycle) {
        Ok(pb::VolumeLifecycle::Active) => "active",
        Ok(pb::VolumeLifecycle::Retained) => "retained",
        Ok(pb::VolumeLifecycle::Purging) => "purging",
        Ok(pb::VolumeLifecycle::Destroyed) => "destroyed",
        Ok(pb::VolumeLifecycle::Unspecified) | Err(_) => "unknown",
    }
}

pub fn phase_word(phase: i32) -> &'static str {
    match agent::VolumePhase::try_from(phase) {
        Ok(agent::VolumePhase::Ready) => "ready",
        Ok(agent::VolumePhase::Pending) => "pending",
        Ok(agent::VolumePhase::Retained) => "retained",
        Ok(agent::VolumePhase::Destroyed) => "destroyed",
        Ok(agent::VolumePhase::Error) => "error",
        Ok(agent::VolumePhase::Unspecified) | Err(_) => "unknown",
    }
}

/// What the agent last said about the volume, or that it has not yet.
fn observed_phase(v: &pb::Volume) -> &'static str {
    v.observed
        .as_ref()
        .map_or("not reported", |o| phase_word(o.phase))
}

/// The controller's lifecycle and the agent's phase in one phrase:
/// `active/ready`, `active/error`, `retained until 2026-12-28`.
pub fn volume_state(v: &pb::Volume) -> String {
    let phase = observed_phase(v);
    match pb::VolumeLifecycle::try_from(v.lifecycle) {
        Ok(pb::VolumeLifecycle::Active) => format!("active/{phase}"),
        Ok(pb::VolumeLifecycle::Retained) => {
            let mut text = format!("retained until {}", fmt_date(v.purge_after_unix));
            if phase == "error" {
                text.push_str(" (error)");
            }
            text
        }
        Ok(pb::VolumeLifecycle::Purging) => format!("purging/{phase}"),
        Ok(pb::VolumeLifecycle::Destroyed) => "destroyed".to_string(),
        Ok(pb::VolumeLifecycle::Unspecified) | Err(_) => format!("unknown/{phase}"),
    }
}

/// `asso-x/data`.
pub fn volume_name(v: &pb::Volume) -> String {
    format!("{}/{}", clean(&v.tenant), clean(&v.name))
}

fn pool_status_json(p: &agent::PoolStatus) -> Value {
    json!({
        "present": p.present,
        "size_bytes": p.size_bytes,
        "free_bytes": p.free_bytes,
        "health": p.health,
        "error": p.error,
        "refused_disks": p.refused_disks,
    })
}

fn orphan_json(o: &agent::OrphanVolume) -> Value {
    json!({
        "pool": o.pool,
        "object": o.object,
        "volume_id": o.volume_id,
        "size_bytes": o.size_bytes,
    })
}

pub fn pool_json(p: &pb::Pool) -> Value {
    json!({
        "node": p.node,
        "name": p.name,
        "type": pool_kind_word(p.kind),
        "layout": pool_layout_word(p.layout),
        "disks": p.disks,
        "force": p.force,
        "created_unix": p.created_unix,
        "observed": p.observed.as_ref().map(pool_status_json),
        "orphans": p.orphans.iter().map(orphan_json).collect::<Vec<_>>(),
    })
}

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

fn pool_health(p: &pb::Pool) -> String {
    match &p.observed {
        None => "not reported".to_string(),
        Some(o) if !o.present => "absent".to_string(),
        Some(o) => or_dash(&o.health).into_owned(),
    }
}

/// Why the pool is not usable and which disks were left alone.
fn pool_problems(p: &pb::Pool) -> String {
    let Some(o) = &p.observed else {
        return "-".to_string();
    };
    let mut problems = Vec::new();
    if !o.error.is_empty() {
        problems.push(clean(&o.error).into_owned());
    }
    for disk in &o.refused_disks {
        problems.push(format!("refused {}", clean(disk)));
    }
    if problems.is_empty() {
        "-".to_string()
    } else {
        problems.join("; ")
    }
}

fn observed_bytes(p: &pb::Pool, f: impl Fn(&agent::PoolStatus) -> u64) -> String {
    match &p.observed {
        Some(o) if o.present => fmt_bytes(f(o)),
        Some(_) | None => "-".to_string(),
    }
}

pub fn pools_table(pools: &[pb::Pool]) -> String {
    let mut t = Table::new(&[
        "NODE", "NAME", "TYPE", "LAYOUT", "DISKS", "SIZE", "FREE", "HEALTH", "ORPHANS", "PROBLEMS",
    ]);
    for p in pools {
        t.row(vec![
            clean(&p.node).into(),
            clean(&p.name).into(),
            pool_kind_word(p.kind).to_string(),
            pool_layout_word(p.layout).to_string(),
            joined(&p.disks),
            observed_bytes(p, |o| o.size_bytes),
            observed_bytes(p, |o| o.free_bytes),
            pool_health(p),
            p.orphans.len().to_string(),
            pool_problems(p),
        ]);
    }
    t.render_or("no pools")
}

pub fn pool_details(p: &pb::Pool) -> String {
    Details::new()
        .field("Node", clean(&p.node))
        .field("Name", clean(&p.name))
        .field("Type", pool_kind_word(p.kind))
        .field("Layout", pool_layout_word(p.layout))
        .field("Disks", joined(&p.disks))
        .field(
            "Force",
            if p.force {
                "yes (disks holding data are wiped at creation)"
            } else {
                "no (blank disks only)"
            },
        )
        .field("Size", observed_bytes(p, |o| o.size_bytes))
        .field("Free", observed_bytes(p, |o| o.free_bytes))
        .field("Health", pool_health(p))
        .field("Problems", pool_problems(p))
        .field("Orphans", p.orphans.len().to_string())
        .field("Declared", fmt_time(p.created_unix))
        .render()
}

fn snapshot_json(s: &agent::SnapshotStatus) -> Value {
    json!({
        "name": s.name,
        "created_unix": s.created_unix,
        "used_bytes": s.used_bytes,
    })
}

fn volume_status_json(o: &agent::VolumeStatus) -> Value {
    json!({
        "id": o.id,
        "phase": phase_word(o.phase),
        "error": o.error,
        "mount_path": o.mount_path,
        "mounted": o.mounted,
        "read_only": o.read_only,
        "size_bytes": o.size_bytes,
        "used_bytes": o.used_bytes,
        "available_bytes": o.available_bytes,
        "snapshot_bytes": o.snapshot_bytes,
        "snapshots": o.snapshots.iter().map(snapshot_json).collect::<Vec<_>>(),
        "encrypted": o.encrypted,
    })
}

pub fn volume_json(v: &pb::Volume) -> Value {
    json!({
        "id": v.id,
        "tenant": v.tenant,
        "name": v.name,
        "node": v.node,
        "pool": v.pool,
        "pool_type": pool_kind_word(v.pool_kind),
        "size_bytes": v.size_bytes,
        "reservation_bytes": v.reservation_bytes,
        "encrypted": v.encrypted,
        "lifecycle": lifecycle_word(v.lifecycle),
        "state": volume_state(v),
        "created_unix": v.created_unix,
        "deleted_unix": v.deleted_unix,
        "purge_after_unix": v.purge_after_unix,
        "mount_path": v.mount_path,
        "snapshots": v.snapshots,
        "observed": v.observed.as_ref().map(volume_status_json),
    })
}

fn volume_figure(v: &pb::Volume, f: impl Fn(&agent::VolumeStatus) -> u64) -> String {
    v.observed
        .as_ref()
        .map_or_else(|| "-".to_string(), |o| fmt_bytes(f(o)))
}

pub fn volumes_table(volumes: &[pb::Volume]) -> String {
    let mut t = Table::new(&[
        "VOLUME",
        "NODE",
        "POOL",
        "SIZE",
        "USED",
        "AVAIL",
        "SNAPSHOTS",
        "ENCRYPTED",
        "STATE",
    ]);
    for v in volumes {
        t.row(vec![
            volume_name(v),
            clean(&v.node).into(),
            clean(&v.pool).into(),
            fmt_bytes(v.size_bytes),
            volume_figure(v, |o| o.used_bytes),
            volume_figure(v, |o| o.available_bytes),
            volume_figure(v, |o| o.snapshot_bytes),
            yes_no(v.encrypted).to_string(),
            volume_state(v),
        ]);
    }
    t.render_or("no volumes")
}

/// One line per snapshot: those wanted, oldest first, with what the agent
/// reports of them, then those the agent still has but are no longer
/// wanted (destroyed at its next pass).
pub fn snapshots_table(v: &pb::Volume) -> String {
    let observed: &[agent::SnapshotStatus] =
        v.observed.as_ref().map_or(&[], |o| o.snapshots.as_slice());
    let mut t = Table::new(&["SNAPSHOT", "CREATED", "USED", "STATE"]);
    for name in &v.snapshots {
        match observed.iter().find(|s| &s.name == name) {
            Some(s) => t.row(vec![
                clean(name).into(),
                fmt_time(i64::try_from(s.created_unix).unwrap_or(i64::MAX)),
                fmt_bytes(s.used_bytes),
                "present".to_string(),
            ]),
            None => t.row(vec![
                clean(name).into(),
                "-".to_string(),
                "-".to_string(),
                "pending (taken at the agent's next pass)".to_string(),
            ]),
        }
    }
    for s in observed.iter().filter(|s| !v.snapshots.contains(&s.name)) {
        t.row(vec![
            clean(&s.name).into(),
            fmt_time(i64::try_from(s.created_unix).unwrap_or(i64::MAX)),
            fmt_bytes(s.used_bytes),
            "being deleted".to_string(),
        ]);
    }
    t.render_or("no snapshots")
}

/// The snapshots of a volume as JSON: the wanted ones with the agent's
/// figures, then those only the agent still has.
pub fn snapshots_json(v: &pb::Volume) -> Value {
    let observed: &[agent::SnapshotStatus] =
        v.observed.as_ref().map_or(&[], |o| o.snapshots.as_slice());
    let mut list: Vec<Value> = v
        .snapshots
        .iter()
        .map(|name| {
            let found = observed.iter().find(|s| &s.name == name);
            json!({
                "name": name,
                "wanted": true,
                "present": found.is_some(),
                "created_unix": found.map(|s| s.created_unix),
                "used_bytes": found.map(|s| s.used_bytes),
            })
        })
        .collect();
    list.extend(
        observed
            .iter()
            .filter(|s| !v.snapshots.contains(&s.name))
            .map(|s| {
                json!({
                    "name": s.name,
                    "wanted": false,
                    "present": true,
                    "created_unix": s.created_unix,
                    "used_bytes": s.used_bytes,
                })
            }),
    );
    Value::Array(list)
}

fn mount_state(o: &agent::VolumeStatus) -> String {
    match (o.mounted, o.read_only) {
        (true, false) => "mounted read-write".to_string(),
        (true, true) => "mounted read-only".to_string(),
        (false, true) => "not mounted (read-only)".to_string(),
        (false, false) => "not mounted".to_string(),
    }
}

pub fn volume_details(v: &pb::Volume) -> String {
    let pool = format!("{} ({})", clean(&v.pool), pool_kind_word(v.pool_kind));
    let reservation = if v.reservation_bytes == 0 {
        "none".to_string()
    } else {
        fmt_bytes(v.reservation_bytes)
    };
    let mut d = Details::new()
        .field("Volume", volume_name(v))
        .field("Id", or_dash(&v.id))
        .field("Node", clean(&v.node))
        .field("Pool", pool)
        .field("Size", fmt_bytes(v.size_bytes))
        .field("Reservation", reservation)
        .field("Encrypted", yes_no(v.encrypted))
        .field("State", volume_state(v))
        .field("Mount path", or_dash(&v.mount_path))
        .field("Created", fmt_time(v.created_unix));
    if v.deleted_unix > 0 {
        d = d.field("Deleted", fmt_time(v.deleted_unix));
    }
    if v.purge_after_unix > 0 {
        d = d.field(
            "Destroyed after",
            format!("{} UTC", fmt_time(v.purge_after_unix)),
        );
    }
    match &v.observed {
        None => d = d.field("Agent", "not reported yet"),
        Some(o) => {
            d = d
                .field("Agent", phase_word(o.phase))
                .field("Mounted", mount_state(o))
                .field("Size on node", fmt_bytes(o.size_bytes))
                .field("Used", fmt_bytes(o.used_bytes))
                .field("Available", fmt_bytes(o.available_bytes))
                .field("Snapshot space", fmt_bytes(o.snapshot_bytes));
            if !o.error.is_empty() {
                d = d.field("Error", clean(&o.error));
            }
        }
    }
    let mut out = d.render();
    out.push('\n');
    out.push_str(&snapshots_table(v));
    out
}

// ---------------------------------------------------------------- apps

pub fn request_state_word(state: i32) -> &'static str {
    match pb::RequestState::try_from(state) {
        Ok(pb::RequestState::Pending) => "pending",
        Ok(pb::RequestState::Approved) => "approved",
        Ok(pb::RequestState::Rejected) => "rejected",
        Ok(pb::RequestState::Unspecified) | Err(_) => "unknown",
    }
}

pub fn instance_state_word(state: i32) -> &'static str {
    match pb::InstanceState::try_from(state) {
        Ok(pb::InstanceState::Running) => "running",
        Ok(pb::InstanceState::Stopped) => "stopped",
        Ok(pb::InstanceState::Removed) => "removed",
        Ok(pb::InstanceState::Unspecified) | Err(_) => "unknown",
    }
}

fn offer_words(offers: &[i32]) -> Vec<&'static str> {
    offers.iter().map(|o| offer_word(*o)).collect()
}

/// A catalog limit: `256.0 MiB`, or `-` when the app sets none.
fn memory_limit(bytes: u64) -> String {
    if bytes == 0 {
        "-".to_string()
    } else {
        fmt_bytes(bytes)
    }
}

/// systemd's CPUQuota: 100% is one core.
fn cpu_limit(percent: u32) -> String {
    if percent == 0 {
        "-".to_string()
    } else {
        format!("{percent}%")
    }
}

pub fn catalog_json(a: &pb::CatalogApp) -> Value {
    json!({
        "name": a.name,
        "description": a.description,
        "replaces": a.replaces,
        "packages": a.packages,
        "offers": offer_words(&a.offers),
        "memory_max_bytes": a.memory_max_bytes,
        "cpu_quota_percent": a.cpu_quota_percent,
    })
}

pub fn catalog_table(apps: &[pb::CatalogApp]) -> String {
    let mut t = Table::new(&["NAME", "DESCRIPTION", "REPLACES", "OFFERS", "MEMORY", "CPU"]);
    for a in apps {
        t.row(vec![
            clean(&a.name).into(),
            or_dash(&a.description).into(),
            or_dash(&a.replaces).into(),
            if a.offers.is_empty() {
                "-".to_string()
            } else {
                offer_words(&a.offers).join(", ")
            },
            memory_limit(a.memory_max_bytes),
            cpu_limit(a.cpu_quota_percent),
        ]);
    }
    t.render_or("the catalog is empty")
}

fn comment_json(c: &pb::RequestComment) -> Value {
    json!({ "author": c.author, "at_unix": c.at_unix, "text": c.text })
}

pub fn request_json(r: &pb::AppRequest) -> Value {
    json!({
        "id": r.id,
        "tenant": r.tenant,
        "app": r.app,
        "node": r.node,
        "volume": r.volume,
        "requested_by": r.requested_by,
        "created_unix": r.created_unix,
        "state": request_state_word(r.state),
        "decided_by": r.decided_by,
        "decided_unix": r.decided_unix,
        "comments": r.comments.iter().map(comment_json).collect::<Vec<_>>(),
    })
}

/// `pending`, `approved by root on 2026-01-01 00:00`.
fn request_decision(r: &pb::AppRequest) -> String {
    let word = request_state_word(r.state);
    if r.decided_by.is_empty() {
        word.to_string()
    } else {
        format!(
            "{word} by {} on {} UTC",
            clean(&r.decided_by),
            fmt_time(r.decided_unix)
        )
    }
}

pub fn requests_table(requests: &[pb::AppRequest]) -> String {
    let mut t = Table::new(&[
        "ID", "TENANT", "APP", "NODE", "VOLUME", "STATE", "ASKED BY", "ASKED", "COMMENTS",
    ]);
    for r in requests {
        t.row(vec![
            r.id.to_string(),
            clean(&r.tenant).into(),
            clean(&r.app).into(),
            clean(&r.node).into(),
            or_dash(&r.volume).into(),
            request_state_word(r.state).to_string(),
            or_dash(&r.requested_by).into(),
            fmt_time(r.created_unix),
            r.comments.len().to_string(),
        ]);
    }
    t.render_or("no requests")
}

/// The request, then its discussion: each comment under its author and
/// time, oldest first, as colocd keeps them.
pub fn request_details(r: &pb::AppRequest) -> String {
    let volume = if r.volume.is_empty() {
        "- (the tenant's only volume on that node)".to_string()
    } else {
        clean(&r.volume).into_owned()
    };
    let mut out = Details::new()
        .field("Request", r.id.to_string())
        .field("Tenant", clean(&r.tenant))
        .field("App", clean(&r.app))
        .field("Node", clean(&r.node))
        .field("Volume", volume)
        .field("Asked by", or_dash(&r.requested_by))
        .field("Asked", format!("{} UTC", fmt_time(r.created_unix)))
        .field("State", request_decision(r))
        .render();
    out.push_str("\nDiscussion\n");
    if r.comments.is_empty() {
        out.push_str("  no comments\n");
    }
    for c in &r.comments {
        let _ = writeln!(
            out,
            "  {} UTC  {}\n    {}",
            fmt_time(c.at_unix),
            or_dash(&c.author),
            clean(&c.text)
        );
    }
    out
}

/// `asso-x/radicale`.
pub fn instance_name(i: &pb::AppInstance) -> String {
    format!("{}/{}", clean(&i.tenant), clean(&i.app))
}

fn app_status_json(o: &agent::AppStatus) -> Value {
    json!({
        "unit": o.unit,
        "active_state": o.active_state,
        "sub_state": o.sub_state,
        "restarts": o.restarts,
        "memory_bytes": o.memory_bytes,
        "healthy": o.healthy,
        "health_detail": o.health_detail,
        "error": o.error,
        "last_log_lines": o.last_log_lines,
    })
}

pub fn instance_json(i: &pb::AppInstance) -> Value {
    json!({
        "tenant": i.tenant,
        "app": i.app,
        "node": i.node,
        "volume": i.volume,
        "url": i.url,
        "port": i.port,
        "state": instance_state_word(i.state),
        "request_id": i.request_id,
        "created_unix": i.created_unix,
        "observed": i.observed.as_ref().map(app_status_json),
    })
}

/// systemd's view: `active/running`, `failed/failed`, or that the agent
/// has not reported the unit yet.
fn unit_state(i: &pb::AppInstance) -> String {
    match &i.observed {
        None => "not reported".to_string(),
        Some(o) if o.sub_state.is_empty() => or_dash(&o.active_state).into_owned(),
        Some(o) => format!("{}/{}", or_dash(&o.active_state), clean(&o.sub_state)),
    }
}

/// Health only means something for an app meant to run.
fn health(i: &pb::AppInstance) -> &'static str {
    match &i.observed {
        None => "-",
        Some(_) if i.state != pb::InstanceState::Running as i32 => "-",
        Some(o) if o.healthy => "healthy",
        Some(_) => "unhealthy",
    }
}

fn instance_memory(i: &pb::AppInstance) -> String {
    match &i.observed {
        Some(o) if o.memory_bytes > 0 => fmt_bytes(o.memory_bytes),
        Some(_) | None => "-".to_string(),
    }
}

/// True when the agent reported something wrong with the instance.
pub fn instance_has_error(i: &pb::AppInstance) -> bool {
    i.observed.as_ref().is_some_and(|o| !o.error.is_empty())
}

pub fn instances_table(instances: &[pb::AppInstance]) -> String {
    let mut t = Table::new(&[
        "INSTANCE", "NODE", "URL", "STATE", "UNIT", "RESTARTS", "MEMORY", "HEALTH",
    ]);
    for i in instances {
        t.row(vec![
            instance_name(i),
            clean(&i.node).into(),
            or_dash(&i.url).into(),
            instance_state_word(i.state).to_string(),
            unit_state(i),
            i.observed
                .as_ref()
                .map_or_else(|| "-".to_string(), |o| o.restarts.to_string()),
            instance_memory(i),
            health(i).to_string(),
        ]);
    }
    t.render_or("no apps")
}

pub fn instance_details(i: &pb::AppInstance) -> String {
    let volume = if i.volume.is_empty() {
        "-".to_string()
    } else {
        format!("{}/{}", clean(&i.tenant), clean(&i.volume))
    };
    let port = if i.port == 0 {
        "-".to_string()
    } else {
        format!("127.0.0.1:{}", i.port)
    };
    let request = if i.request_id == 0 {
        "-".to_string()
    } else {
        i.request_id.to_string()
    };
    let mut d = Details::new()
        .field("Instance", instance_name(i))
        .field("URL", or_dash(&i.url))
        .field("Node", clean(&i.node))
        .field("Volume", volume)
        .field("Port", port)
        .field("Wanted state", instance_state_word(i.state))
        .field("Request", request)
        .field("Created", fmt_time(i.created_unix));
    let mut lines: &[String] = &[];
    match &i.observed {
        None => d = d.field("Agent", "not reported yet"),
        Some(o) => {
            let health = match (health(i), o.health_detail.is_empty()) {
                (word, true) => word.to_string(),
                (word, false) => format!("{word} ({})", clean(&o.health_detail)),
            };
            d = d
                .field("Unit", or_dash(&o.unit))
                .field("Unit state", unit_state(i))
                .field("Restarts", o.restarts.to_string())
                .field("Memory", instance_memory(i))
                .field("Health", health);
            if !o.error.is_empty() {
                d = d.field("Error", clean(&o.error));
            }
            lines = &o.last_log_lines;
        }
    }
    let mut out = d.render();
    if !lines.is_empty() {
        out.push_str("\nLast log lines\n");
        for line in lines {
            let _ = writeln!(out, "  {}", clean(line));
        }
    }
    out
}

pub fn logs_json(l: &pb::InstanceLogs) -> Value {
    json!({ "lines": l.lines, "cursor": l.cursor })
}

/// Journal lines as they came, escaped, one per line.
pub fn log_lines(lines: &[String]) -> String {
    let mut out = String::new();
    for line in lines {
        out.push_str(&clean(line));
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------- users

pub fn user_json(u: &pb::User) -> Value {
    json!({
        "name": u.name,
        "tenant": u.tenant,
        "role": role_word(u.role),
        "display_name": u.display_name,
        "node_grants": u.node_grants,
        "created_unix": u.created_unix,
    })
}

fn grants(u: &pb::User) -> String {
    if u.node_grants.is_empty() {
        "-".to_string()
    } else {
        u.node_grants
            .iter()
            .map(|g| clean(g).into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn tenant_of(u: &pb::User) -> Cow<'_, str> {
    if u.tenant.is_empty() {
        Cow::Borrowed("- (cooperative)")
    } else {
        clean(&u.tenant)
    }
}

pub fn user_details(u: &pb::User) -> String {
    Details::new()
        .field("Name", clean(&u.name))
        .field("Role", role_word(u.role))
        .field("Tenant", tenant_of(u))
        .field("Display name", or_dash(&u.display_name))
        .field("Node grants", grants(u))
        .field("Created", fmt_time(u.created_unix))
        .render()
}

pub fn users_table(users: &[pb::User]) -> String {
    let mut t = Table::new(&[
        "NAME",
        "ROLE",
        "TENANT",
        "NODE GRANTS",
        "CREATED",
        "DISPLAY NAME",
    ]);
    for u in users {
        t.row(vec![
            clean(&u.name).into(),
            role_word(u.role).to_string(),
            or_dash(&u.tenant).into(),
            grants(u),
            fmt_time(u.created_unix),
            or_dash(&u.display_name).into(),
        ]);
    }
    t.render_or("no users")
}

// ---------------------------------------------------------------- api tokens

pub fn api_token_json(t: &pb::ApiToken) -> Value {
    let mut v = json!({
        "id": t.id,
        "user": t.user,
        "description": t.description,
        "created_unix": t.created_unix,
        "expires_unix": t.expires_unix,
        "revoked": t.revoked,
    });
    if !t.secret.is_empty() {
        v["secret"] = Value::String(t.secret.clone());
    }
    v
}

pub fn api_token_details(t: &pb::ApiToken, now_unix: i64) -> String {
    Details::new()
        .field("Id", clean(&t.id))
        .field("User", clean(&t.user))
        .field("State", api_token_state(t, now_unix))
        .field("Description", or_dash(&t.description))
        .field("Created", fmt_time(t.created_unix))
        .field("Expires", fmt_time(t.expires_unix))
        .render()
}

pub fn api_tokens_table(tokens: &[pb::ApiToken], now_unix: i64) -> String {
    let mut t = Table::new(&["ID", "USER", "STATE", "CREATED", "EXPIRES", "DESCRIPTION"]);
    for x in tokens {
        t.row(vec![
            clean(&x.id).into(),
            clean(&x.user).into(),
            api_token_state(x, now_unix).to_string(),
            fmt_time(x.created_unix),
            fmt_time(x.expires_unix),
            or_dash(&x.description).into(),
        ]);
    }
    t.render_or("no tokens")
}

// ---------------------------------------------------------------- audit

pub fn audit_json(e: &pb::AuditEntry) -> Value {
    json!({
        "id": e.id,
        "at_unix_ms": e.at_unix_ms,
        "actor": e.actor,
        "action": e.action,
        "target": e.target,
        "tenant": e.tenant,
        "outcome": audit_outcome(e.outcome),
        "detail": e.detail,
    })
}

pub fn audit_table(entries: &[pb::AuditEntry]) -> String {
    let mut t = Table::new(&[
        "ID",
        "TIME (UTC)",
        "ACTOR",
        "ACTION",
        "TARGET",
        "TENANT",
        "OUTCOME",
        "DETAIL",
    ]);
    for e in entries {
        t.row(vec![
            e.id.to_string(),
            fmt_time_ms(e.at_unix_ms),
            clean(&e.actor).into(),
            clean(&e.action).into(),
            or_dash(&e.target).into(),
            or_dash(&e.tenant).into(),
            audit_outcome(e.outcome).to_string(),
            or_dash(&e.detail).into(),
        ]);
    }
    t.render_or("no audit entries")
}

/// A node whose desired configuration changed, with its new generation.
pub fn node_generation_json(n: &pb::NodeGeneration) -> Value {
    json!({ "name": n.name, "desired_generation": n.desired_generation })
}

pub fn node_generations_table(nodes: &[pb::NodeGeneration]) -> String {
    let mut t = Table::new(&["NODE", "DESIRED GENERATION"]);
    for n in nodes {
        t.row(vec![
            clean(&n.name).into(),
            n.desired_generation.to_string(),
        ]);
    }
    t.render_or("no node changed")
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
    fn statuses_are_words() {
        assert_eq!(node_status(pb::NodeStatus::Ready as i32), "ready");
        assert_eq!(node_status(pb::NodeStatus::Draining as i32), "draining");
        assert_eq!(node_status(99), "unknown");
        assert_eq!(
            reconcile_outcome(agent::ReconcileOutcome::StaleRejected as i32),
            "stale generation rejected"
        );
        assert_eq!(audit_outcome(pb::AuditOutcome::Denied as i32), "denied");
        assert_eq!(role_word(pb::Role::Operator as i32), "operator");
        assert_eq!(offer_word(pb::Offer::Participatif as i32), "participatif");
        assert_eq!(offer_word(0), "unknown");
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

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("plain é"), "plain é");
        assert_eq!(clean("a\x1b[31mb\nc"), "a\\u{1b}[31mb\\nc");
        let mut e = pb::AuditEntry {
            id: 7,
            actor: "anonymous".into(),
            action: "node.enroll".into(),
            detail: "bad name \"\x1b]0;pwned\x07\"".into(),
            ..Default::default()
        };
        e.outcome = pb::AuditOutcome::Denied as i32;
        let text = audit_table(&[e]);
        assert!(!text.contains('\x1b'), "{text:?}");
        assert!(text.contains("denied"));
    }

    #[test]
    fn labels_sorted() {
        let labels: HashMap<String, String> = [("zone", "paris"), ("role", "web")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(fmt_labels(&labels), "role=web, zone=paris");
        assert_eq!(fmt_labels(&HashMap::new()), "-");
    }

    fn sample_node() -> pb::Node {
        pb::Node {
            name: "n1".into(),
            site: "paris-1".into(),
            status: pb::NodeStatus::Ready as i32,
            connected: true,
            enrolled_unix: 1_767_225_600,
            last_seen_unix: 1_767_229_200,
            desired_generation: 4,
            applied_generation: 3,
            last_outcome: agent::ReconcileOutcome::Applied as i32,
            labels: [("role".to_string(), "web".to_string())].into(),
            cert_fingerprint: "ab12".into(),
            facts: Some(agent::NodeFacts {
                hostname: "n1".into(),
                cpu_model: "AMD EPYC 7302P".into(),
                cpu_count: 32,
                memory_bytes: 128 * 1024 * 1024 * 1024,
                disks: vec![agent::Disk {
                    name: "nvme0n1".into(),
                    model: "Samsung PM983".into(),
                    serial: "S4GNNX0N".into(),
                    size_bytes: 1_920_383_410_176,
                    transport: "nvme".into(),
                    rotational: false,
                }],
                nics: vec![agent::Nic {
                    name: "eno1".into(),
                    mac: "0c:c4:7a:00:00:01".into(),
                    addresses: vec!["192.0.2.10/24".into(), "2001:db8::10/64".into()],
                }],
                kernel_version: "6.1.0-28-amd64".into(),
                os_name: "Debian GNU/Linux 12 (bookworm)".into(),
                agent_version: "0.1.0".into(),
                boot_time_unix: 1_767_220_000,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn node_show_has_the_facts() {
        let text = node_details(&sample_node());
        for needle in [
            "ready (connected)",
            "3 applied, 4 desired (behind)",
            "role=web",
            "32 × AMD EPYC 7302P",
            "128.0 GiB",
            "Samsung PM983",
            "S4GNNX0N",
            "1.7 TiB",
            "nvme",
            "ssd",
            "0c:c4:7a:00:00:01",
            "192.0.2.10/24, 2001:db8::10/64",
            "6.1.0-28-amd64",
            "Debian GNU/Linux 12 (bookworm)",
            "Agent:",
            "2026-01-01 01:00",
        ] {
            assert!(text.contains(needle), "{needle:?} missing in\n{text}");
        }
        let mut bare = sample_node();
        bare.facts = None;
        assert!(node_details(&bare).contains("not reported yet"));
    }

    #[test]
    fn node_json_uses_words_and_nests_facts() {
        let v = node_json(&sample_node());
        assert_eq!(v["status"], "ready");
        assert_eq!(v["last_outcome"], "applied");
        assert_eq!(v["labels"]["role"], "web");
        assert_eq!(v["facts"]["disks"][0]["serial"], "S4GNNX0N");
        assert_eq!(v["facts"]["memory_bytes"], 128_u64 * 1024 * 1024 * 1024);
    }

    #[test]
    fn secrets_only_when_present() {
        let mut t = pb::ApiToken {
            id: "tok1".into(),
            user: "alice".into(),
            ..Default::default()
        };
        assert!(api_token_json(&t).get("secret").is_none());
        t.secret = "cat_s3cret".into();
        assert_eq!(api_token_json(&t)["secret"], "cat_s3cret");
    }

    #[test]
    fn token_states() {
        let now = 1_000;
        let mut j = pb::JoinToken {
            expires_unix: 2_000,
            ..Default::default()
        };
        assert_eq!(join_token_state(&j, now), "unused");
        j.expires_unix = 999;
        assert_eq!(join_token_state(&j, now), "expired");
        j.used_by_node = "n1".into();
        assert_eq!(join_token_state(&j, now), "used by n1");

        let mut a = pb::ApiToken {
            expires_unix: 2_000,
            ..Default::default()
        };
        assert_eq!(api_token_state(&a, now), "active");
        a.expires_unix = 10;
        assert_eq!(api_token_state(&a, now), "expired");
        a.revoked = true;
        assert_eq!(api_token_state(&a, now), "revoked");
    }

    #[test]
    fn ping_in_milliseconds() {
        let node = domain::NodeName::new("n1").unwrap();
        let pong = pb::PingNodeResponse {
            round_trip_us: 1_250,
            agent_unix_ms: 1_767_225_601_000,
        };
        assert_eq!(
            ping_line(&node, &pong),
            "n1 answered in 1.2 ms (agent clock 2026-01-01 00:00:01 UTC)\n"
        );
    }

    #[test]
    fn tenant_and_user_rows() {
        let t = pb::Tenant {
            name: "asso-x".into(),
            offer: pb::Offer::Responsable as i32,
            membership_expires: "2026-01-31".into(),
            membership_expired: true,
            ..Default::default()
        };
        let text = tenants_table(&[t]);
        assert!(text.contains("responsable"), "{text}");
        assert!(text.contains("2026-01-31 (expired)"), "{text}");
        let u = pb::User {
            name: "root".into(),
            role: pb::Role::Admin as i32,
            ..Default::default()
        };
        assert!(user_details(&u).contains("- (cooperative)"));
        assert_eq!(user_json(&u)["role"], "admin");
    }

    fn sample_volume() -> pb::Volume {
        pb::Volume {
            tenant: "asso-x".into(),
            name: "data".into(),
            size_bytes: 20 << 30,
            lifecycle: pb::VolumeLifecycle::Active as i32,
            snapshots: vec!["s1".into()],
            ..Default::default()
        }
    }

    #[test]
    fn volume_states_join_lifecycle_and_phase() {
        let mut v = sample_volume();
        assert_eq!(volume_state(&v), "active/not reported");
        v.observed = Some(agent::VolumeStatus {
            phase: agent::VolumePhase::Error as i32,
            error: "pool tank is full\x1b[2J".into(),
            snapshots: vec![agent::SnapshotStatus {
                name: "old".into(),
                created_unix: 1_767_225_600,
                used_bytes: 1 << 20,
            }],
            ..Default::default()
        });
        assert_eq!(volume_state(&v), "active/error");
        let text = volume_details(&v);
        assert!(text.contains("Error:"), "{text}");
        assert!(!text.contains('\x1b'), "{text:?}");
        // s1 is wanted but not there yet; old is there but no longer wanted.
        let snaps = snapshots_table(&v);
        assert!(
            snaps.contains("s1        -                 -        pending"),
            "{snaps}"
        );
        assert!(
            snaps.contains("old       2026-01-01 00:00  1.0 MiB  being deleted"),
            "{snaps}"
        );
        let json = snapshots_json(&v);
        assert_eq!(json[0]["present"], false);
        assert_eq!(json[1]["wanted"], false);
        v.lifecycle = pb::VolumeLifecycle::Retained as i32;
        v.purge_after_unix = 1_798_452_000;
        assert_eq!(volume_state(&v), "retained until 2026-12-28 (error)");
        v.lifecycle = pb::VolumeLifecycle::Destroyed as i32;
        assert_eq!(volume_state(&v), "destroyed");
        assert_eq!(volume_json(&v)["lifecycle"], "destroyed");
    }

    #[test]
    fn pools_say_what_is_wrong() {
        let mut p = pb::Pool {
            node: "n1".into(),
            name: "tank".into(),
            kind: agent::PoolKind::Zfs as i32,
            layout: agent::PoolLayout::Raidz1 as i32,
            disks: vec!["serial:A".into(), "serial:B".into()],
            ..Default::default()
        };
        assert_eq!(pool_health(&p), "not reported");
        assert_eq!(pool_problems(&p), "-");
        p.observed = Some(agent::PoolStatus {
            present: false,
            error: "cannot import".into(),
            refused_disks: vec!["serial:B (/dev/sdb): gpt".into()],
            ..Default::default()
        });
        assert_eq!(pool_health(&p), "absent");
        assert_eq!(
            pool_problems(&p),
            "cannot import; refused serial:B (/dev/sdb): gpt"
        );
        let v = pool_json(&p);
        assert_eq!(v["type"], "zfs");
        assert_eq!(v["layout"], "raidz1");
        assert_eq!(
            v["observed"]["refused_disks"][0],
            "serial:B (/dev/sdb): gpt"
        );
        assert_eq!(pool_kind_word(agent::PoolKind::LvmThin as i32), "lvm");
    }

    #[test]
    fn tenant_storage_figures() {
        let t = pb::Tenant {
            name: "asso-x".into(),
            storage_quota_bytes: 100 << 30,
            storage_used_bytes: 30 << 30,
            volume_grace_days: 1,
            ..Default::default()
        };
        let text = tenant_details(&t);
        assert!(text.contains("30.0 GiB (active"), "{text}");
        assert!(text.contains("1 day\n"), "{text}");
        assert!(text.contains("POSIX uid/gid:         -"), "{text}");
        assert!(tenants_table(&[t]).contains("30.0 GiB / 100.0 GiB  1 day"));
        assert_eq!(fmt_date(1_798_452_000), "2026-12-28");
        assert_eq!(fmt_date(0), "-");
    }

    fn sample_instance() -> pb::AppInstance {
        pb::AppInstance {
            tenant: "asso-x".into(),
            app: "radicale".into(),
            node: "n1".into(),
            volume: "data".into(),
            url: "https://radicale.asso-x.example.org/".into(),
            port: 20_000,
            state: pb::InstanceState::Running as i32,
            request_id: 3,
            created_unix: 1_767_225_600,
            observed: None,
        }
    }

    #[test]
    fn instances_show_unit_and_health() {
        let mut i = sample_instance();
        let table = instances_table(std::slice::from_ref(&i));
        assert!(table.contains("running  not reported  -"), "{table}");
        assert!(instance_details(&i).contains("Agent:         not reported yet"));
        i.observed = Some(agent::AppStatus {
            unit: "coloc-app-asso-x-radicale.service".into(),
            active_state: "failed".into(),
            sub_state: "failed".into(),
            restarts: 5,
            memory_bytes: 0,
            healthy: false,
            health_detail: "connection refused".into(),
            error: "start limit hit\x1b[2J".into(),
            last_log_lines: vec!["Traceback".into(), "ValueError: bad".into()],
            ..Default::default()
        });
        assert!(instance_has_error(&i));
        let text = instance_details(&i);
        for needle in [
            "Unit state:    failed/failed",
            "Restarts:      5",
            "Health:        unhealthy (connection refused)",
            "Volume:        asso-x/data",
            "Port:          127.0.0.1:20000",
            "Last log lines\n  Traceback\n  ValueError: bad\n",
        ] {
            assert!(text.contains(needle), "{needle:?} missing in\n{text}");
        }
        assert!(!text.contains('\x1b'), "{text:?}");
        // A stopped app is not called unhealthy.
        i.state = pb::InstanceState::Stopped as i32;
        assert_eq!(health(&i), "-");
        let v = instance_json(&i);
        assert_eq!(v["state"], "stopped");
        assert_eq!(v["observed"]["last_log_lines"][1], "ValueError: bad");
    }

    #[test]
    fn requests_show_their_thread() {
        let r = pb::AppRequest {
            id: 7,
            tenant: "asso-x".into(),
            app: "radicale".into(),
            node: "n1".into(),
            requested_by: "mia".into(),
            created_unix: 1_767_225_600,
            state: pb::RequestState::Approved as i32,
            decided_by: "root".into(),
            decided_unix: 1_767_229_200,
            comments: vec![pb::RequestComment {
                author: "mia".into(),
                at_unix: 1_767_225_600,
                text: "Pour nos agendas".into(),
            }],
            ..Default::default()
        };
        let text = request_details(&r);
        assert!(
            text.contains("State:     approved by root on 2026-01-01 01:00 UTC"),
            "{text}"
        );
        assert!(
            text.contains("\nDiscussion\n  2026-01-01 00:00 UTC  mia\n    Pour nos agendas\n"),
            "{text}"
        );
        assert!(text.contains("the tenant's only volume"), "{text}");
        assert_eq!(request_json(&r)["state"], "approved");
        assert_eq!(request_state_word(0), "unknown");
    }

    #[test]
    fn catalog_limits() {
        let a = pb::CatalogApp {
            name: "radicale".into(),
            offers: vec![
                pb::Offer::Responsable as i32,
                pb::Offer::Participatif as i32,
            ],
            memory_max_bytes: 256 << 20,
            cpu_quota_percent: 50,
            ..Default::default()
        };
        let table = catalog_table(std::slice::from_ref(&a));
        assert!(
            table.contains("responsable, participatif  256.0 MiB  50%"),
            "{table}"
        );
        assert_eq!(catalog_json(&a)["offers"][1], "participatif");
        assert_eq!(cpu_limit(0), "-");
        assert_eq!(log_lines(&["a\tb".into()]), "a\\tb\n");
    }
}
