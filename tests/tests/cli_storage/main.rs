//! `coloc pool`, `coloc volume` and the tenants' storage settings, run as a
//! sysadmin would against a real colocd whose nodes are agent sessions
//! driven by hand: what each command prints as a table and as JSON, which
//! values are refused before anything is sent, the words and exit code of
//! each refusal colocd sends, and what each command did, read back in
//! colocd (objects, audit log) and at the node (its desired
//! configuration, the rollback it was asked for).

mod volumes;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_tests::cli::{CliUser, Coloc, cells, json, row, stderr, text};
use coloc_tests::*;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
const DAY: i64 = 86_400;
/// 2026-01-01 00:00 UTC. The controller's clock is pinned here (or at
/// [`OLD_DELETED`]) before each action whose time the CLI prints.
const NOW: i64 = 1_767_225_600;
/// When asso-x/old was deleted: 2026-11-28 10:00 UTC, so with the default
/// grace period of 30 days it is kept until 2026-12-28 10:00 UTC.
const OLD_DELETED: i64 = 1_795_860_000;
const DEADLINE: Duration = Duration::from_secs(20);

/// A small fleet, as the agents report it:
/// - n1 (session driven by hand): ZFS mirror `tank`, healthy, with an
///   orphan dataset; asso-x/data (20 GiB, encrypted, two snapshots, ready)
///   and asso-x/old (10 GiB, deleted, kept read-only until 2026-12-28);
/// - n2 (session driven by hand): LVM pool `vg-data` that refused its
///   disk, and asso-y/gone, destroyed after its grace period;
/// - asso-x (participatif, posix id 200000) with its member mia; asso-y
///   (responsable, 200001).
struct World {
    ctl: TestController,
    /// The admin's API client, to read back what a command did.
    api: Api,
    coloc: Coloc,
    mia: String,
    n1: RawAgent,
    /// Kept so that n2's session stays up.
    _n2: RawAgent,
    /// asso-x/data's id.
    data: String,
    old: String,
}

impl World {
    fn admin(&self) -> CliUser<'_> {
        self.coloc.user(&self.ctl.admin_token)
    }

    fn mia(&self) -> CliUser<'_> {
        self.coloc.user(&self.mia)
    }

    /// What n1 reports about asso-x/data.
    fn data_status(&self, phase: apb::VolumePhase, error: &str) -> apb::VolumeStatus {
        apb::VolumeStatus {
            id: self.data.clone(),
            phase: phase as i32,
            error: error.into(),
            mount_path: "/srv/tenants/asso-x/data".into(),
            mounted: true,
            read_only: false,
            size_bytes: 20 * GIB,
            used_bytes: 3 * GIB,
            available_bytes: 17 * GIB,
            snapshot_bytes: 512 * MIB,
            snapshots: vec![
                snapshot("daily-1", NOW + 3600, 384 * MIB),
                snapshot("before-upgrade", NOW + 7200, 128 * MIB),
            ],
            encrypted: true,
        }
    }

    /// n1's whole storage report, with asso-x/data in `phase`.
    async fn report_n1(&self, phase: apb::VolumePhase, error: &str) -> Result<()> {
        let generation = self.n1.desired().map_or(0, |d| d.generation);
        let tank = apb::PoolStatus {
            name: "tank".into(),
            kind: apb::PoolKind::Zfs as i32,
            present: true,
            size_bytes: 1024 * GIB,
            free_bytes: 900 * GIB,
            health: "ONLINE".into(),
            ..Default::default()
        };
        let old = apb::VolumeStatus {
            id: self.old.clone(),
            phase: apb::VolumePhase::Retained as i32,
            read_only: true,
            size_bytes: 10 * GIB,
            used_bytes: GIB,
            available_bytes: 9 * GIB,
            ..Default::default()
        };
        let orphan = apb::OrphanVolume {
            pool: "tank".into(),
            object: "tank/coloc/00000000000000ff".into(),
            volume_id: "00000000000000ff".into(),
            size_bytes: 5 * GIB,
        };
        self.n1
            .report_storage(
                generation,
                vec![tank],
                vec![self.data_status(phase, error), old],
                vec![orphan],
            )
            .await
    }

    /// The audit entries about asso-x after `mark` (an entry id), oldest
    /// first, as (action, outcome) of the actions named.
    async fn audited(&self, mark: u64, actions: &[&str]) -> Result<Vec<(String, i32)>> {
        let mut entries = tenant_audit(&mut self.api.clone(), "asso-x").await?;
        entries.retain(|e| e.id > mark && actions.contains(&e.action.as_str()));
        entries.sort_by_key(|e| e.id);
        Ok(entries.into_iter().map(|e| (e.action, e.outcome)).collect())
    }

    /// The id of the newest audit entry.
    async fn audit_mark(&self) -> Result<u64> {
        let entries = audit_entries(&mut self.api.clone(), "").await?;
        Ok(entries.iter().map(|e| e.id).max().unwrap_or(0))
    }
}

fn snapshot(name: &str, created_unix: i64, used_bytes: u64) -> apb::SnapshotStatus {
    apb::SnapshotStatus {
        name: name.into(),
        created_unix: u64::try_from(created_unix).unwrap_or_default(),
        used_bytes,
    }
}

fn vol(tenant: &'static str, name: &'static str, node: &'static str) -> NewVolume<'static> {
    NewVolume {
        tenant,
        name,
        node,
        pool: if node == "n1" { "tank" } else { "vg-data" },
        size_bytes: GIB,
        encrypted: false,
    }
}

async fn world() -> Result<World> {
    init_test_logging();
    let ctl = TestController::start().await?;
    let mut api = ctl.admin().await?;
    create_site(&mut api, "paris-1").await?;
    // Enrolled before the clock moves back: their certificates are checked
    // against the real time.
    let mut fleet = raw_fleet(&ctl, "paris-1", &["n1", "n2"]).await?;
    let (n2, n1) = (fleet.remove(1), fleet.remove(0));
    ctl.set_now(NOW);

    api.tenants
        .create_tenant(pb::CreateTenantRequest {
            name: "asso-x".into(),
            display_name: "Les Amis du Vélo".into(),
            offer: pb::Offer::Participatif as i32,
            membership_expires: "2099-12-31".into(),
        })
        .await?;
    create_tenant(&mut api, "asso-y", pb::Offer::Responsable).await?;
    let mia = create_user(&mut api, "mia", "asso-x", pb::Role::Member).await?;
    api.storage
        .create_pool(pb::CreatePoolRequest {
            node: "n1".into(),
            name: "tank".into(),
            kind: apb::PoolKind::Zfs as i32,
            layout: apb::PoolLayout::Mirror as i32,
            disks: vec!["serial:COLOC0001".into(), "serial:COLOC0002".into()],
            force: false,
        })
        .await?;
    create_pool(
        &mut api,
        "n2",
        "vg-data",
        apb::PoolKind::LvmThin,
        "id:nvme-QEMU_NVMe_Ctrl_COLOC0003",
    )
    .await?;

    let data = create_volume(
        &mut api,
        NewVolume {
            size_bytes: 20 * GIB,
            encrypted: true,
            ..vol("asso-x", "data", "n1")
        },
    )
    .await?
    .id;
    for name in ["daily-1", "before-upgrade"] {
        api.storage
            .create_snapshot(pb::SnapshotRequest {
                volume: "asso-x/data".into(),
                snapshot: name.into(),
            })
            .await?;
    }
    let old = create_volume(
        &mut api,
        NewVolume {
            size_bytes: 10 * GIB,
            ..vol("asso-x", "old", "n1")
        },
    )
    .await?
    .id;
    ctl.set_now(OLD_DELETED);
    api.storage
        .delete_volume(pb::VolumeRef {
            volume: "asso-x/old".into(),
        })
        .await?;

    // asso-y/gone goes all the way: deleted, past its grace period, purged
    // by colocd, destroyed by n2.
    ctl.set_now(NOW);
    let gone = create_volume(&mut api, vol("asso-y", "gone", "n2"))
        .await?
        .id;
    let grace = |days| pb::SetTenantStorageRequest {
        name: "asso-y".into(),
        storage_quota_bytes: None,
        volume_grace_days: Some(days),
    };
    api.storage.set_tenant_storage(grace(1)).await?;
    api.storage
        .delete_volume(pb::VolumeRef {
            volume: "asso-y/gone".into(),
        })
        .await?;
    ctl.clock.advance_secs(2 * DAY);
    let purged = n2
        .wait_desired("asso-y/gone purged", |d| {
            d.volumes
                .iter()
                .any(|v| v.id == gone && v.state == apb::VolumeState::Purged as i32)
        })
        .await?;
    let vg_data = apb::PoolStatus {
        name: "vg-data".into(),
        kind: apb::PoolKind::LvmThin as i32,
        present: false,
        error: "no declared disk is blank".into(),
        refused_disks: vec![
            "id:nvme-QEMU_NVMe_Ctrl_COLOC0003 (/dev/nvme2n1): ext4 filesystem".into(),
        ],
        ..Default::default()
    };
    let destroyed = apb::VolumeStatus {
        id: gone.clone(),
        phase: apb::VolumePhase::Destroyed as i32,
        ..Default::default()
    };
    n2.report_storage(purged.generation, vec![vg_data], vec![destroyed], vec![])
        .await?;
    wait_volume(&api, &gone, "destroyed", DEADLINE, |v| {
        v.lifecycle == pb::VolumeLifecycle::Destroyed as i32
    })
    .await?;
    api.storage.set_tenant_storage(grace(30)).await?;
    ctl.set_now(NOW);

    let coloc = Coloc::new(&ctl).await?;
    let w = World {
        ctl,
        api,
        coloc,
        mia,
        n1,
        _n2: n2,
        data,
        old,
    };
    w.n1.wait_desired("both volumes and their snapshots", |d| {
        d.volumes.len() == 2
            && d.volumes
                .iter()
                .any(|v| v.id == w.data && v.snapshots.len() == 2)
    })
    .await?;
    w.report_n1(apb::VolumePhase::Ready, "").await?;
    wait_volume(&w.api, "asso-x/data", "reported ready", DEADLINE, |v| {
        v.observed
            .as_ref()
            .is_some_and(|o| o.phase == apb::VolumePhase::Ready as i32)
    })
    .await?;
    wait_for("the pools reported", DEADLINE, || {
        let mut api = w.api.clone();
        async move {
            let all = pools(&mut api, "").await.ok()?;
            (all.len() == 2 && all.iter().all(|p| p.observed.is_some())).then_some(())
        }
    })
    .await?;
    Ok(w)
}

#[tokio::test]
async fn pools_are_declared_and_listed() -> Result<()> {
    let w = world().await?;
    let admin = w.admin();
    let o = admin
        .run(&[
            "pool",
            "create",
            "--node",
            "n1",
            "--name",
            "fast",
            "--type",
            "zfs",
            "--layout",
            "mirror",
            "--disk",
            "serial:COLOC0004",
            "--disk",
            "id:nvme-QEMU_NVMe_Ctrl_COLOC0005",
        ])
        .await;
    let out = text(&o);
    assert!(
        out.starts_with(
            "Declared pool fast on n1: its agent creates it at its next pass, on blank disks only"
        ),
        "{out}"
    );
    assert!(
        out.contains("serial:COLOC0004, id:nvme-QEMU_NVMe_Ctrl_COLOC0005"),
        "{out}"
    );
    assert!(out.contains("Health:    not reported"), "{out}");
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    // n1 is told to make it, on exactly those disks.
    w.n1.wait_desired("pool fast", |d| {
        d.pools.iter().any(|p| {
            p.name == "fast"
                && p.layout == apb::PoolLayout::Mirror as i32
                && p.disks == ["serial:COLOC0004", "id:nvme-QEMU_NVMe_Ctrl_COLOC0005"]
                && !p.force
        })
    })
    .await?;

    // --force is sent, and said out loud even in JSON mode.
    let o = admin
        .run(&[
            "--json",
            "pool",
            "create",
            "--node",
            "n2",
            "--name",
            "scratch",
            "--type",
            "lvm",
            "--disk",
            "serial:COLOC0006",
            "--force",
        ])
        .await;
    assert!(
        stderr(&o).starts_with("warning: --force: any of these disks that holds data"),
        "{}",
        stderr(&o)
    );
    let pool = json(&o);
    assert_eq!(pool["type"], "lvm");
    assert_eq!(pool["layout"], "single");
    assert_eq!(pool["force"], true);
    assert_eq!(pool["observed"], serde_json::Value::Null);
    let scratch = pools(&mut w.api.clone(), "n2").await?;
    assert!(
        scratch.iter().any(|p| p.name == "scratch" && p.force),
        "{scratch:#?}"
    );

    let o = admin.run(&["pool", "list"]).await;
    let table = text(&o);
    assert!(
        table
            .lines()
            .next()
            .unwrap_or_default()
            .starts_with("NODE  NAME     TYPE  LAYOUT  DISKS"),
        "{table}"
    );
    let tank = table
        .lines()
        .find(|l| l.contains(" tank "))
        .with_context(|| format!("no tank in\n{table}"))?;
    for needle in [
        "n1",
        "zfs",
        "mirror",
        "serial:COLOC0001, serial:COLOC0002",
        "1.0 TiB",
        "900.0 GiB",
        "ONLINE",
    ] {
        assert!(tank.contains(needle), "{needle:?} missing in {tank}");
    }
    let tank_cells = cells(tank);
    assert_eq!(tank_cells[tank_cells.len() - 2..], ["1", "-"], "{tank}");
    let vg = table
        .lines()
        .find(|l| l.contains("vg-data"))
        .with_context(|| format!("no vg-data in\n{table}"))?;
    assert!(vg.contains("absent"), "{vg}");
    assert!(
        vg.contains(
            "no declared disk is blank; refused id:nvme-QEMU_NVMe_Ctrl_COLOC0003 (/dev/nvme2n1): ext4 filesystem"
        ),
        "{vg}"
    );
    assert!(stderr(&o).contains("Orphans are volumes"), "{}", stderr(&o));

    let on_n1 = admin
        .json(&["pool", "list", "--node", "n1", "--json"])
        .await;
    let on_n1 = on_n1.as_array().context("a list")?;
    let mut names: Vec<&str> = on_n1.iter().filter_map(|p| p["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["fast", "tank"]);
    let tank = on_n1.iter().find(|p| p["name"] == "tank").context("tank")?;
    assert_eq!(tank["orphans"][0]["volume_id"], "00000000000000ff");
    assert_eq!(tank["orphans"][0]["size_bytes"], 5 * GIB);
    assert_eq!(tank["observed"]["free_bytes"], 900 * GIB);
    assert_eq!(tank["observed"]["health"], "ONLINE");
    let on_n2 = admin
        .json(&["pool", "list", "--node", "n2", "--json"])
        .await;
    let vg = on_n2
        .as_array()
        .and_then(|l| l.iter().find(|p| p["name"] == "vg-data"))
        .context("vg-data")?;
    assert_eq!(
        vg["observed"]["refused_disks"][0],
        "id:nvme-QEMU_NVMe_Ctrl_COLOC0003 (/dev/nvme2n1): ext4 filesystem"
    );
    Ok(())
}

#[tokio::test]
async fn pool_mistakes_are_refused() -> Result<()> {
    let w = world().await?;
    let mark = w.audit_mark().await?;
    let admin = w.admin();
    // Refused here: colocd never hears of them.
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "--type", "lvm", "--layout", "mirror", "--disk", "serial:A", "--disk", "serial:B",
            ],
            "lvm pools are single only",
        ),
        (
            &[
                "--type", "zfs", "--layout", "raidz2", "--disk", "serial:A", "--disk", "serial:B",
            ],
            "a raidz2 pool needs at least 4 disks, 2 given",
        ),
        (
            &["--type", "zfs", "--disk", "serial:A", "--disk", "serial:A"],
            "disk serial:A is given twice",
        ),
        (&["--type", "zfs", "--disk", "/dev/sda"], "serial:<serial>"),
        (&["--type", "btrfs", "--disk", "serial:A"], "btrfs"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["pool", "create", "--node", "n1", "--name", "tank2"];
        args.extend_from_slice(extra);
        let err = admin.fails(&args, 7).await;
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let err = admin
        .fails(
            &[
                "pool", "create", "--node", "n1", "--name", "raidz", "--type", "zfs", "--disk",
                "serial:A",
            ],
            7,
        )
        .await;
    assert!(err.contains("reserved by ZFS"), "{err}");
    let seen = audit_entries(&mut w.api.clone(), "user:admin").await?;
    assert!(
        !seen
            .iter()
            .any(|e| e.id > mark && e.action == "pool.create"),
        "{seen:#?}"
    );

    // Refused by colocd, and in its audit log.
    let err = admin
        .fails(
            &[
                "pool", "create", "--node", "n9", "--name", "tank", "--type", "zfs", "--disk",
                "serial:A",
            ],
            5,
        )
        .await;
    assert_eq!(err.trim_end(), "coloc: node \"n9\" not found");
    let err = admin
        .fails(
            &[
                "pool", "create", "--node", "n1", "--name", "tank", "--type", "zfs", "--disk",
                "serial:A",
            ],
            6,
        )
        .await;
    assert_eq!(err.trim_end(), "coloc: pool \"n1/tank\" already exists");
    let err = w.mia().fails(&["pool", "list"], 4).await;
    assert_eq!(
        err.trim_end(),
        "coloc: permission denied: user mia is a member; pools are for admins and operators"
    );
    let seen = audit_entries(&mut w.api.clone(), "user:admin").await?;
    let failed = seen
        .iter()
        .filter(|e| {
            e.id > mark && e.action == "pool.create" && e.outcome == pb::AuditOutcome::Failed as i32
        })
        .count();
    assert_eq!(failed, 2, "{seen:#?}");
    let mine = audit_entries(&mut w.api.clone(), "user:mia").await?;
    assert!(
        has_audit_entry(&mine, "user:mia", "pool.list", pb::AuditOutcome::Denied),
        "{mine:#?}"
    );
    Ok(())
}

#[tokio::test]
async fn tenants_show_their_storage() -> Result<()> {
    let w = world().await?;
    let admin = w.admin();
    let table = admin.ok(&["tenant", "list"]).await;
    assert_eq!(
        table.lines().next().unwrap_or_default(),
        "NAME    OFFER         MEMBERSHIP UNTIL  STANDING  STORAGE USED/QUOTA    GRACE    POSIX ID  CREATED           DISPLAY NAME"
    );
    let x = row(&table, "asso-x");
    assert!(
        x.contains("30.0 GiB / 100.0 GiB  30 days  200000"),
        "{table}"
    );
    assert!(x.ends_with("2026-01-01 00:00  Les Amis du Vélo"), "{table}");
    let show = admin.ok(&["tenant", "show", "asso-x"]).await;
    for needle in [
        "Storage quota:         100.0 GiB",
        "Storage used:          30.0 GiB (active and deleted-but-kept volumes)",
        "Deleted volumes kept:  30 days",
        "POSIX uid/gid:         200000",
    ] {
        assert!(show.contains(needle), "{needle:?} missing in\n{show}");
    }
    let t = admin.json(&["tenant", "show", "asso-y", "--json"]).await;
    assert_eq!(t["storage_used_bytes"], 0);
    assert_eq!(t["posix_id"], 200_001);

    let t = admin
        .json(&[
            "tenant",
            "set-storage",
            "asso-x",
            "--quota",
            "500G",
            "--grace-days",
            "60",
            "--json",
        ])
        .await;
    assert_eq!(t["storage_quota_bytes"], 500 * GIB);
    assert_eq!(t["volume_grace_days"], 60);
    assert_eq!(t["storage_used_bytes"], 30 * GIB);
    let kept = tenant(&mut w.api.clone(), "asso-x").await?;
    assert_eq!(
        (kept.storage_quota_bytes, kept.volume_grace_days),
        (500 * GIB, 60)
    );
    let out = admin
        .ok(&["tenant", "set-storage", "asso-y", "--grace-days", "1"])
        .await;
    assert!(out.starts_with("Updated tenant storage:\n"), "{out}");
    assert!(out.contains("Deleted volumes kept:  1 day\n"), "{out}");
    // The new grace period decides when a deleted volume goes.
    let v = admin
        .json(&["volume", "delete", "asso-x/data", "--json"])
        .await;
    assert_eq!(
        v["purge_after_unix"].as_i64().unwrap_or_default()
            - v["deleted_unix"].as_i64().unwrap_or_default(),
        60 * DAY
    );

    let err = admin
        .fails(&["tenant", "set-storage", "asso-z", "--quota", "1T"], 5)
        .await;
    assert_eq!(err.trim_end(), "coloc: tenant \"asso-z\" not found");
    let err = w
        .mia()
        .fails(&["tenant", "set-storage", "asso-x", "--quota", "1T"], 4)
        .await;
    assert_eq!(
        err.trim_end(),
        "coloc: permission denied: setting a storage quota is reserved to the cooperative's admins"
    );
    let err = admin.fails(&["tenant", "show", "asso-z"], 5).await;
    assert_eq!(err.trim_end(), "coloc: tenant \"asso-z\" not found");
    Ok(())
}
