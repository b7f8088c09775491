//! Cutting a report to the bounds colocd accepts
//! (`coloc_proto::health`): an honest report of a very big or very odd
//! machine is shortened, never refused.

use coloc_proto::agent::v1::HealthReport;
use coloc_proto::health::{
    MAX_DISKS, MAX_FAILED_UNITS, MAX_FAILING_ATTRIBUTES, MAX_FILESYSTEMS, MAX_MAINTENANCE_RUNS,
    MAX_NICS, MAX_POOLS, MAX_TEMPERATURES, MAX_TEXT_BYTES, MAX_THIN_POOLS, MAX_UNOBSERVED,
    MAX_VDEVS_PER_POOL,
};

/// Cuts every list of `report` to its maximum (the first entries are
/// kept) and every text to [`MAX_TEXT_BYTES`] (at a character boundary),
/// so that `coloc_proto::health::check_report` accepts it.
pub fn trim_report(report: &mut HealthReport) {
    let r = report;
    r.disks.truncate(MAX_DISKS);
    r.zfs_pools.truncate(MAX_POOLS);
    r.thin_pools.truncate(MAX_THIN_POOLS);
    r.filesystems.truncate(MAX_FILESYSTEMS);
    r.temperatures.truncate(MAX_TEMPERATURES);
    r.nics.truncate(MAX_NICS);
    r.unobserved.truncate(MAX_UNOBSERVED);
    r.maintenance.truncate(MAX_MAINTENANCE_RUNS);
    for d in &mut r.disks {
        d.failing_attributes.truncate(MAX_FAILING_ATTRIBUTES);
        for s in [
            &mut d.device,
            &mut d.model,
            &mut d.serial,
            &mut d.transport,
            &mut d.unknown,
        ] {
            cut(s);
        }
        d.failing_attributes.iter_mut().for_each(cut);
        if let Some(t) = &mut d.last_self_test {
            cut(&mut t.status);
        }
    }
    for p in &mut r.zfs_pools {
        p.vdevs.truncate(MAX_VDEVS_PER_POOL);
        for s in [&mut p.name, &mut p.state, &mut p.status, &mut p.unknown] {
            cut(s);
        }
        for v in &mut p.vdevs {
            for s in [&mut v.name, &mut v.state, &mut v.note] {
                cut(s);
            }
        }
    }
    for t in &mut r.thin_pools {
        for s in [&mut t.volume_group, &mut t.name, &mut t.unknown] {
            cut(s);
        }
    }
    for f in &mut r.filesystems {
        for s in [&mut f.mount_path, &mut f.volume_id, &mut f.unknown] {
            cut(s);
        }
    }
    for t in &mut r.temperatures {
        cut(&mut t.sensor);
        cut(&mut t.unknown);
    }
    for n in &mut r.nics {
        cut(&mut n.name);
    }
    for u in &mut r.unobserved {
        cut(&mut u.source);
        cut(&mut u.reason);
    }
    for m in &mut r.maintenance {
        cut(&mut m.subject);
        cut(&mut m.detail);
    }
    if let Some(units) = &mut r.units {
        units.failed.truncate(MAX_FAILED_UNITS);
        cut(&mut units.unknown);
        for u in &mut units.failed {
            cut(&mut u.name);
            cut(&mut u.result);
        }
    }
    if let Some(s) = &mut r.system {
        cut(&mut s.unknown);
    }
    if let Some(c) = &mut r.clock {
        cut(&mut c.unknown);
    }
    if let Some(b) = &mut r.reboot {
        cut(&mut b.reason);
        cut(&mut b.unknown);
    }
}

/// Cuts `s` to at most [`MAX_TEXT_BYTES`] bytes, at a character boundary.
fn cut(s: &mut String) {
    if s.len() <= MAX_TEXT_BYTES {
        return;
    }
    let mut end = MAX_TEXT_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
}

#[cfg(test)]
mod tests {
    use super::*;
    use coloc_proto::agent::v1::{
        ClockHealth, DiskHealth, FailedUnit, FilesystemUse, MaintenanceRun, NicHealth,
        RebootHealth, SelfTestResult, SystemLoad, Temperature, ThinPoolHealth, UnitsHealth,
        Unobserved, VdevHealth, ZfsPoolHealth,
    };
    use coloc_proto::health::check_report;

    fn long(c: char) -> String {
        std::iter::repeat_n(c, MAX_TEXT_BYTES + 7).collect()
    }

    #[test]
    fn an_oversized_report_is_cut_until_colocd_accepts_it() {
        // 'é' is two bytes: the cut must land on a character boundary.
        let text = long('é');
        let disk = DiskHealth {
            device: text.clone(),
            model: text.clone(),
            unknown: text.clone(),
            failing_attributes: vec![text.clone(); MAX_FAILING_ATTRIBUTES + 3],
            last_self_test: Some(SelfTestResult {
                status: text.clone(),
                ..SelfTestResult::default()
            }),
            ..DiskHealth::default()
        };
        let pool = ZfsPoolHealth {
            name: "tank".into(),
            status: text.clone(),
            vdevs: vec![
                VdevHealth {
                    note: text.clone(),
                    ..VdevHealth::default()
                };
                MAX_VDEVS_PER_POOL + 1
            ],
            ..ZfsPoolHealth::default()
        };
        let mut report = HealthReport {
            disks: vec![disk; MAX_DISKS + 1],
            zfs_pools: vec![pool; MAX_POOLS + 1],
            thin_pools: vec![
                ThinPoolHealth {
                    unknown: text.clone(),
                    ..ThinPoolHealth::default()
                };
                MAX_THIN_POOLS + 1
            ],
            filesystems: vec![
                FilesystemUse {
                    mount_path: text.clone(),
                    ..FilesystemUse::default()
                };
                MAX_FILESYSTEMS + 1
            ],
            temperatures: vec![
                Temperature {
                    sensor: text.clone(),
                    ..Temperature::default()
                };
                MAX_TEMPERATURES + 1
            ],
            nics: vec![
                NicHealth {
                    name: text.clone(),
                    ..NicHealth::default()
                };
                MAX_NICS + 1
            ],
            unobserved: vec![
                Unobserved {
                    source: "zfs".into(),
                    reason: text.clone(),
                };
                MAX_UNOBSERVED + 1
            ],
            maintenance: vec![
                MaintenanceRun {
                    detail: text.clone(),
                    ..MaintenanceRun::default()
                };
                MAX_MAINTENANCE_RUNS + 1
            ],
            units: Some(UnitsHealth {
                failed: vec![
                    FailedUnit {
                        name: text.clone(),
                        result: "exit-code".into(),
                    };
                    MAX_FAILED_UNITS + 1
                ],
                unknown: text.clone(),
            }),
            system: Some(SystemLoad {
                unknown: text.clone(),
                ..SystemLoad::default()
            }),
            clock: Some(ClockHealth {
                unknown: text.clone(),
                ..ClockHealth::default()
            }),
            reboot: Some(RebootHealth {
                reason: text.clone(),
                unknown: text.clone(),
                required: true,
            }),
            ..HealthReport::default()
        };
        assert!(check_report(&report).is_err());
        trim_report(&mut report);
        check_report(&report).unwrap();
        assert_eq!(report.disks.len(), MAX_DISKS);
        assert_eq!(report.zfs_pools[0].vdevs.len(), MAX_VDEVS_PER_POOL);
        assert_eq!(
            report.units.as_ref().unwrap().failed.len(),
            MAX_FAILED_UNITS
        );
        assert_eq!(report.disks[0].device.len(), MAX_TEXT_BYTES);
        assert!(report.disks[0].device.chars().all(|c| c == 'é'));
        // Odd widths: three-byte characters cannot end exactly at the bound.
        let mut odd = HealthReport {
            unobserved: vec![Unobserved {
                source: "disks".into(),
                reason: long('€'),
            }],
            ..HealthReport::default()
        };
        trim_report(&mut odd);
        let reason = &odd.unobserved[0].reason;
        assert!(reason.len() <= MAX_TEXT_BYTES && reason.len() > MAX_TEXT_BYTES - 3);
        assert!(reason.chars().all(|c| c == '€'));
    }

    #[test]
    fn a_report_within_bounds_is_left_as_it_is() {
        let mut report = HealthReport {
            disks: vec![DiskHealth {
                device: "/dev/sda".into(),
                failing_attributes: vec!["Reallocated_Sector_Ct".into()],
                ..DiskHealth::default()
            }],
            ..HealthReport::default()
        };
        let before = report.clone();
        trim_report(&mut report);
        assert_eq!(report, before);
    }
}
