//! `coloc node health --json`: every field of the report, enums as
//! words, unset numbers as null (never 0).

use coloc_proto::agent::v1 as agent;
use coloc_proto::controller::v1 as pb;
use serde_json::{Value, json};

use super::{
    critical_warning_names, maintenance_state_word, problems, scrub_state_word, self_test_kind_word,
};
use crate::output::alerts::alert_json;

/// Every field of the report, enums as words, unset numbers as null (not
/// 0), plus `problems`: the sentences of the text output, for scripts
/// that only want to know whether anything is wrong.
pub fn node_health_json(h: &pb::NodeHealth) -> Value {
    json!({
        "node": h.node,
        "received_unix": h.received_unix,
        "stale": h.stale,
        "period_secs": h.period_secs,
        "report": h.report.as_ref().map(report_json),
        "alerts": h.alerts.iter().map(alert_json).collect::<Vec<_>>(),
        "problems": problems(h),
    })
}

fn report_json(r: &agent::HealthReport) -> Value {
    json!({
        "collected_unix_ms": r.collected_unix_ms,
        "disks": r.disks.iter().map(disk_json).collect::<Vec<_>>(),
        "zfs_pools": r.zfs_pools.iter().map(pool_json).collect::<Vec<_>>(),
        "thin_pools": r.thin_pools.iter().map(|t| json!({
            "volume_group": t.volume_group,
            "name": t.name,
            "size_bytes": t.size_bytes,
            "data_percent": t.data_percent,
            "metadata_percent": t.metadata_percent,
            "unknown": t.unknown,
        })).collect::<Vec<_>>(),
        "filesystems": r.filesystems.iter().map(|f| json!({
            "mount_path": f.mount_path,
            "volume_id": f.volume_id,
            "size_bytes": f.size_bytes,
            "used_bytes": f.used_bytes,
            "available_bytes": f.available_bytes,
            "unknown": f.unknown,
        })).collect::<Vec<_>>(),
        "system": r.system.as_ref().map(|s| json!({
            "memory_total_bytes": s.memory_total_bytes,
            "memory_available_bytes": s.memory_available_bytes,
            "swap_total_bytes": s.swap_total_bytes,
            "swap_free_bytes": s.swap_free_bytes,
            "load1": s.load1,
            "load5": s.load5,
            "load15": s.load15,
            "cpu_count": s.cpu_count,
            "cpu_busy_ratio": s.cpu_busy_ratio,
            "uptime_secs": s.uptime_secs,
            "unknown": s.unknown,
        })),
        "temperatures": r.temperatures.iter().map(|t| json!({
            "sensor": t.sensor,
            "celsius": t.celsius,
            "critical_celsius": t.critical_celsius,
            "unknown": t.unknown,
        })).collect::<Vec<_>>(),
        "units": r.units.as_ref().map(|u| json!({
            "failed": u.failed.iter().map(|f| json!({
                "name": f.name,
                "result": f.result,
            })).collect::<Vec<_>>(),
            "unknown": u.unknown,
        })),
        "nics": r.nics.iter().map(|n| json!({
            "name": n.name,
            "up": n.up,
            "speed_mbps": n.speed_mbps,
        })).collect::<Vec<_>>(),
        "clock": r.clock.as_ref().map(|c| json!({
            "synchronised": c.synchronised,
            "max_error_secs": c.max_error_secs,
            "unknown": c.unknown,
        })),
        "reboot": r.reboot.as_ref().map(|b| json!({
            "required": b.required,
            "reason": b.reason,
            "unknown": b.unknown,
        })),
        "unobserved": r.unobserved.iter().map(|u| json!({
            "source": u.source,
            "reason": u.reason,
        })).collect::<Vec<_>>(),
        "maintenance": r.maintenance.iter().map(|m| json!({
            "kind": maintenance_kind_json(m.kind),
            "subject": m.subject,
            "state": maintenance_state_word(m.state).to_ascii_lowercase().replace(' ', "_"),
            "started_unix": m.started_unix,
            "finished_unix": m.finished_unix,
            "detail": m.detail,
            "on_demand": m.on_demand,
        })).collect::<Vec<_>>(),
    })
}

/// The kind as `--json` names it: `scrub`, `smart_short`, `smart_long`.
pub fn maintenance_kind_json(kind: i32) -> &'static str {
    match agent::MaintenanceKind::try_from(kind) {
        Ok(agent::MaintenanceKind::Scrub) => "scrub",
        Ok(agent::MaintenanceKind::SmartShort) => "smart_short",
        Ok(agent::MaintenanceKind::SmartLong) => "smart_long",
        Ok(agent::MaintenanceKind::Unspecified) | Err(_) => "unknown",
    }
}

fn smart_json(verdict: i32) -> &'static str {
    match agent::SmartVerdict::try_from(verdict) {
        Ok(agent::SmartVerdict::Passed) => "passed",
        Ok(agent::SmartVerdict::Failed) => "failed",
        Ok(agent::SmartVerdict::Unsupported) => "unsupported",
        Ok(agent::SmartVerdict::Unknown | agent::SmartVerdict::Unspecified) | Err(_) => "unknown",
    }
}

fn disk_json(d: &agent::DiskHealth) -> Value {
    json!({
        "device": d.device,
        "model": d.model,
        "serial": d.serial,
        "transport": d.transport,
        "size_bytes": d.size_bytes,
        "smart": smart_json(d.smart),
        "temperature_c": d.temperature_c,
        "temperature_limit_c": d.temperature_limit_c,
        "power_on_hours": d.power_on_hours,
        "reallocated_sectors": d.reallocated_sectors,
        "pending_sectors": d.pending_sectors,
        "offline_uncorrectable": d.offline_uncorrectable,
        "crc_errors": d.crc_errors,
        "failing_attributes": d.failing_attributes,
        "critical_warning": d.critical_warning,
        "critical_warnings": d.critical_warning.map(critical_warning_names).unwrap_or_default(),
        "percentage_used": d.percentage_used,
        "available_spare": d.available_spare,
        "available_spare_threshold": d.available_spare_threshold,
        "media_errors": d.media_errors,
        "last_self_test": d.last_self_test.as_ref().map(|t| json!({
            "kind": self_test_kind_word(t.kind),
            "passed": t.passed,
            "status": t.status,
            "power_on_hours": t.power_on_hours,
            "running": t.running,
        })),
        "unknown": d.unknown,
    })
}

fn pool_json(p: &agent::ZfsPoolHealth) -> Value {
    json!({
        "name": p.name,
        "state": p.state,
        "size_bytes": p.size_bytes,
        "allocated_bytes": p.allocated_bytes,
        "free_bytes": p.free_bytes,
        "vdevs": p.vdevs.iter().map(|v| json!({
            "name": v.name,
            "depth": v.depth,
            "state": v.state,
            "read_errors": v.read_errors,
            "write_errors": v.write_errors,
            "checksum_errors": v.checksum_errors,
            "note": v.note,
        })).collect::<Vec<_>>(),
        "scrub": p.scrub.as_ref().map(|s| json!({
            "state": scrub_state_word(s.state),
            "started_unix": s.started_unix,
            "finished_unix": s.finished_unix,
            "errors": s.errors,
            "repaired_bytes": s.repaired_bytes,
            "progress_permille": s.progress_permille,
        })),
        "status": p.status,
        "data_errors": p.data_errors,
        "unknown": p.unknown,
    })
}
