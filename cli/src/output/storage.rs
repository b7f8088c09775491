//! Storage: pools declared on nodes, tenants' volumes and their
//! snapshots, each shown with what the node's agent last reported.

use coloc_proto::agent::v1 as agent;
use coloc_proto::controller::v1 as pb;
use serde_json::{Value, json};

use super::{Details, Table, clean, fmt_bytes, fmt_date, fmt_time, joined, or_dash, yes_no};

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
    if v.node_removed && v.lifecycle != pb::VolumeLifecycle::Destroyed as i32 {
        return "orphan (node removed)".to_string();
    }
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
    Table::new(&[
        "NODE", "NAME", "TYPE", "LAYOUT", "DISKS", "SIZE", "FREE", "HEALTH", "ORPHANS", "PROBLEMS",
    ])
    .rows(pools, |p| {
        vec![
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
        ]
    })
    .render_or("no pools")
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
        "node_removed": v.node_removed,
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
    Table::new(&[
        "VOLUME",
        "NODE",
        "POOL",
        "SIZE",
        "USED",
        "AVAIL",
        "SNAPSHOTS",
        "ENCRYPTED",
        "STATE",
    ])
    .rows(volumes, |v| {
        vec![
            volume_name(v),
            clean(&v.node).into(),
            clean(&v.pool).into(),
            fmt_bytes(v.size_bytes),
            volume_figure(v, |o| o.used_bytes),
            volume_figure(v, |o| o.available_bytes),
            volume_figure(v, |o| o.snapshot_bytes),
            yes_no(v.encrypted).to_string(),
            volume_state(v),
        ]
    })
    .render_or("no volumes")
}

/// A volume's snapshots: those wanted, oldest first, each with what the
/// agent reports of it (nothing yet until its next pass takes it), then
/// those the agent still has but are no longer wanted (destroyed at its
/// next pass). Each comes as its name, whether it is wanted, and the
/// agent's report.
fn snapshots(v: &pb::Volume) -> impl Iterator<Item = (&str, bool, Option<&agent::SnapshotStatus>)> {
    let observed: &[agent::SnapshotStatus] =
        v.observed.as_ref().map_or(&[], |o| o.snapshots.as_slice());
    let wanted = v.snapshots.iter().map(move |name| {
        let found = observed.iter().find(|s| &s.name == name);
        (name.as_str(), true, found)
    });
    let leaving = observed
        .iter()
        .filter(|s| !v.snapshots.contains(&s.name))
        .map(|s| (s.name.as_str(), false, Some(s)));
    wanted.chain(leaving)
}

/// One line per snapshot, in the order of [`snapshots`].
pub fn snapshots_table(v: &pb::Volume) -> String {
    Table::new(&["SNAPSHOT", "CREATED", "USED", "STATE"])
        .rows(snapshots(v), |(name, wanted, found)| {
            let state = match (wanted, found) {
                (true, Some(_)) => "present",
                (true, None) => "pending (taken at the agent's next pass)",
                (false, _) => "being deleted",
            };
            vec![
                clean(name).into(),
                found.map_or_else(
                    || "-".to_string(),
                    |s| fmt_time(i64::try_from(s.created_unix).unwrap_or(i64::MAX)),
                ),
                found.map_or_else(|| "-".to_string(), |s| fmt_bytes(s.used_bytes)),
                state.to_string(),
            ]
        })
        .render_or("no snapshots")
}

/// The snapshots of a volume as JSON, in the order of [`snapshots`], with
/// the agent's figures where it has them.
pub fn snapshots_json(v: &pb::Volume) -> Value {
    Value::Array(
        snapshots(v)
            .map(|(name, wanted, found)| {
                json!({
                    "name": name,
                    "wanted": wanted,
                    "present": found.is_some(),
                    "created_unix": found.map(|s| s.created_unix),
                    "used_bytes": found.map(|s| s.used_bytes),
                })
            })
            .collect(),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
