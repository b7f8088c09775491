//! `coloc pool`, `coloc volume` and the tenants' storage settings, run as a
//! sysadmin would against a real colocd whose nodes are agent sessions
//! driven by hand: what each command prints as a table and as JSON, which
//! values are refused before anything is sent, the words and exit code of
//! each refusal colocd sends, and what each command did, read back in
//! colocd (objects, audit log) and at the node (its desired
//! configuration, the rollback it was asked for).

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
    let token = join_token(&mut api, "paris-1", 600).await?;
    let n1 = RawAgent::enroll(&ctl, &token, "n1").await?;
    let token = join_token(&mut api, "paris-1", 600).await?;
    let n2 = RawAgent::enroll(&ctl, &token, "n2").await?;
    for agent in [&n1, &n2] {
        agent
            .wait_desired("first configuration", |d| d.generation >= 1)
            .await?;
    }
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
async fn volumes_are_created_listed_and_shown() -> Result<()> {
    let w = world().await?;
    let admin = w.admin();
    let created = admin
        .json(&[
            "volume",
            "create",
            "--tenant",
            "asso-x",
            "--node",
            "n1",
            "--pool",
            "tank",
            "--size",
            "20G",
            "--name",
            "www",
            "--reserve",
            "5G",
            "--encrypted",
            "--json",
        ])
        .await;
    assert_eq!(created["tenant"], "asso-x");
    assert_eq!(created["name"], "www");
    assert_eq!(created["size_bytes"], 20 * GIB);
    assert_eq!(created["reservation_bytes"], 5 * GIB);
    assert_eq!(created["encrypted"], true);
    assert_eq!(created["mount_path"], "/srv/tenants/asso-x/www");
    assert_eq!(created["state"], "active/not reported");
    assert_eq!(created["observed"], serde_json::Value::Null);
    let www = created["id"].as_str().context("an id")?.to_owned();
    w.n1.wait_desired("asso-x/www", |d| {
        d.volumes.iter().any(|v| {
            v.id == www && v.size_bytes == 20 * GIB && v.reservation_bytes == 5 * GIB && v.encrypted
        })
    })
    .await?;

    // --name defaults to "data"; colocd rounds sizes up to 4 MiB.
    let out = admin
        .ok(&[
            "volume", "create", "--tenant", "asso-y", "--node", "n2", "--pool", "vg-data",
            "--size", "65M",
        ])
        .await;
    assert!(
        out.starts_with("Created volume asso-y/data; its node's agent creates and mounts it"),
        "{out}"
    );
    assert!(out.contains("68.0 MiB"), "{out}");
    assert!(out.contains("Agent:        not reported yet"), "{out}");

    let table = admin.ok(&["volume", "list"]).await;
    let header = table.lines().next().unwrap_or_default();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "VOLUME",
            "NODE",
            "POOL",
            "SIZE",
            "USED",
            "AVAIL",
            "SNAPSHOTS",
            "ENCRYPTED",
            "STATE"
        ]
    );
    assert_eq!(
        cells(row(&table, "asso-x/data")),
        [
            "asso-x/data",
            "n1",
            "tank",
            "20.0 GiB",
            "3.0 GiB",
            "17.0 GiB",
            "512.0 MiB",
            "yes",
            "active/ready"
        ]
    );
    assert!(
        row(&table, "asso-x/old").ends_with("retained until 2026-12-28"),
        "{table}"
    );
    assert!(
        row(&table, "asso-x/www").ends_with("active/not reported"),
        "{table}"
    );
    assert!(!table.contains("asso-y/gone"), "{table}");

    let all = admin
        .ok(&["volume", "list", "--all", "--tenant", "asso-y"])
        .await;
    assert!(row(&all, "asso-y/gone").ends_with("destroyed"), "{all}");
    assert!(!all.contains("asso-x/"), "{all}");

    let list = admin
        .json(&["volume", "list", "--node", "n1", "--json"])
        .await;
    let list = list.as_array().context("a list")?;
    let named = |name: &str| list.iter().find(|v| v["name"] == name);
    assert_eq!(list.len(), 3, "{list:#?}");
    let data = named("data").context("data")?;
    assert_eq!(data["id"], w.data.as_str());
    assert_eq!(data["lifecycle"], "active");
    assert_eq!(data["observed"]["phase"], "ready");
    assert_eq!(data["observed"]["used_bytes"], 3 * GIB);
    let old = named("old").context("old")?;
    assert_eq!(old["state"], "retained until 2026-12-28");
    assert_eq!(
        old["purge_after_unix"].as_i64().unwrap_or_default()
            - old["deleted_unix"].as_i64().unwrap_or_default(),
        30 * DAY,
        "kept for the tenant's grace period"
    );

    // Show, by name and by id.
    let show = admin.ok(&["volume", "show", "asso-x/data"]).await;
    for needle in [
        "Volume:          asso-x/data",
        &format!("Id:              {}", w.data),
        "Pool:            tank (zfs)",
        "Reservation:     none",
        "Encrypted:       yes",
        "State:           active/ready",
        "Mount path:      /srv/tenants/asso-x/data",
        "Mounted:         mounted read-write",
        "Used:            3.0 GiB",
        "Available:       17.0 GiB",
        "Snapshot space:  512.0 MiB",
    ] {
        assert!(show.contains(needle), "{needle:?} missing in\n{show}");
    }
    let snaps = &show[show.find("SNAPSHOT").context("snapshot table")?..];
    assert!(
        row(snaps, "daily-1").contains("2026-01-01 01:00  384.0 MiB  present"),
        "{snaps}"
    );
    assert!(
        row(snaps, "before-upgrade").contains("128.0 MiB"),
        "{snaps}"
    );
    let by_id = admin.json(&["volume", "show", &w.data, "--json"]).await;
    assert_eq!(by_id["name"], "data");
    assert_eq!(by_id["observed"]["snapshots"][1]["name"], "before-upgrade");

    let old = admin.ok(&["volume", "show", "asso-x/old"]).await;
    assert!(
        old.contains("Destroyed after:  2026-12-28 10:00 UTC"),
        "{old}"
    );
    assert!(old.contains("not mounted (read-only)"), "{old}");

    // The agent's error text is shown as it said it.
    w.report_n1(apb::VolumePhase::Error, "pool tank is full")
        .await?;
    wait_volume(&w.api, "asso-x/data", "reported in error", DEADLINE, |v| {
        v.observed
            .as_ref()
            .is_some_and(|o| o.phase == apb::VolumePhase::Error as i32)
    })
    .await?;
    let show = admin.ok(&["volume", "show", "asso-x/data"]).await;
    assert!(show.contains("State:           active/error"), "{show}");
    assert!(
        show.contains("Error:           pool tank is full"),
        "{show}"
    );

    let err = admin.fails(&["volume", "show", "asso-x/nope"], 5).await;
    assert_eq!(err.trim_end(), "coloc: volume \"asso-x/nope\" not found");
    // A member reads their own tenant's volumes only.
    let mine = w.mia().json(&["volume", "list", "--json"]).await;
    let mine = mine.as_array().context("a list")?;
    assert!(!mine.is_empty());
    assert!(mine.iter().all(|v| v["tenant"] == "asso-x"), "{mine:#?}");
    Ok(())
}

#[tokio::test]
async fn bad_sizes_and_names_never_leave_the_cli() -> Result<()> {
    let w = world().await?;
    let mark = w.audit_mark().await?;
    // A token colocd refuses: anything sent would come back as exit 3.
    let stranger = w.coloc.user("cat_unknown");
    let create = |size: &'static str| {
        vec![
            "volume", "create", "--tenant", "asso-x", "--node", "n1", "--pool", "tank", "--size",
            size,
        ]
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (create("20X"), "unknown unit (use K, M, G, T or P)"),
        (create("1M"), "below the minimum of 64 MiB"),
        (create("G"), "no number"),
        (create("1.5.2G"), "not a number"),
        (create("2048P"), "larger than 1 PiB"),
        (
            [create("1G"), vec!["--reserve", "2G"]].concat(),
            "--reserve 2.0 GiB is larger than --size 1.0 GiB",
        ),
        (
            [create("1G"), vec!["--name", "Data"]].concat(),
            "invalid volume name \"Data\"",
        ),
        (
            vec![
                "volume", "create", "--tenant", "asso_x", "--node", "n1", "--pool", "tank",
                "--size", "1G",
            ],
            "invalid tenant name",
        ),
        (
            vec!["volume", "resize", "asso-x/data", "--size", "lots"],
            "no number",
        ),
        (vec!["volume", "show", "data"], "neither <tenant>/<name>"),
        (
            vec!["volume", "delete", "asso-x/Data"],
            "invalid volume name",
        ),
        (
            vec!["volume", "snapshot", "create", "asso-x/data", "a b"],
            "invalid snapshot name",
        ),
        (
            vec!["tenant", "set-storage", "asso-x", "--quota", "5Q"],
            "unknown unit",
        ),
        (
            vec!["tenant", "set-storage", "asso-x", "--grace-days", "3651"],
            "3651",
        ),
    ];
    for (args, needle) in cases {
        let err = stranger.fails(&args, 7).await;
        assert!(err.starts_with("coloc: "), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: {needle:?} missing in {err}"
        );
    }
    let err = stranger
        .fails(&["tenant", "set-storage", "asso-x"], 2)
        .await;
    assert!(err.contains("--quota SIZE and/or --grace-days N"), "{err}");
    let seen = audit_entries(&mut w.api.clone(), "").await?;
    assert!(
        !seen.iter().any(|e| e.id > mark),
        "nothing reached colocd: {seen:#?}"
    );
    Ok(())
}

#[tokio::test]
async fn resize_delete_and_restore() -> Result<()> {
    let w = world().await?;
    let mark = w.audit_mark().await?;
    let admin = w.admin();
    let out = admin
        .ok(&["volume", "resize", "asso-x/data", "--size", "40G"])
        .await;
    assert!(
        out.starts_with("Volume asso-x/data is now 40.0 GiB; its agent applies the size"),
        "{out}"
    );
    w.n1.wait_desired("asso-x/data at 40 GiB", |d| {
        d.volumes
            .iter()
            .any(|v| v.id == w.data && v.size_bytes == 40 * GIB)
    })
    .await?;
    let err = admin
        .fails(&["volume", "resize", "asso-x/data", "--size", "10G"], 6)
        .await;
    assert_eq!(
        err.trim_end(),
        "coloc: 10.0 GiB is smaller than the volume's 40.0 GiB: shrinking needs force"
    );
    let v = admin
        .json(&[
            "volume",
            "resize",
            "asso-x/data",
            "--size",
            "10G",
            "--force",
            "--json",
        ])
        .await;
    assert_eq!(v["size_bytes"], 10 * GIB);
    // Past the tenant's quota. colocd answers RESOURCE_EXHAUSTED, which the
    // CLI reports as a limit reached (exit 1), not as a conflict.
    let err = admin
        .fails(&["volume", "resize", "asso-x/data", "--size", "200G"], 1)
        .await;
    assert_eq!(
        err.trim_end(),
        "coloc: colocd is overloaded or a limit was reached: tenant asso-x would use 210.0 GiB \
         of its 100.0 GiB storage quota (10.0 GiB in use, 200.0 GiB more asked)"
    );

    let err = w.mia().fails(&["volume", "delete", "asso-x/data"], 4).await;
    assert_eq!(
        err.trim_end(),
        "coloc: permission denied: user mia is a member; only admins and operators change volumes"
    );

    w.ctl.set_now(NOW);
    let out = admin.ok(&["volume", "delete", "asso-x/data"]).await;
    assert_eq!(
        out,
        "Deleted volume asso-x/data: it is unmounted and kept read-only with its snapshots until 2026-01-31 00:00 UTC, then destroyed.\n\
         To bring it back before then: coloc volume restore asso-x/data\n"
    );
    w.n1.wait_desired("asso-x/data retained", |d| {
        d.volumes
            .iter()
            .any(|v| v.id == w.data && v.state == apb::VolumeState::Retained as i32)
    })
    .await?;
    let err = admin.fails(&["volume", "delete", "asso-x/data"], 6).await;
    assert_eq!(
        err.trim_end(),
        "coloc: volume asso-x/data: is already deleted; it is kept until 2026-01-31 and destroyed then"
    );
    let v = admin
        .json(&["volume", "show", "asso-x/data", "--json"])
        .await;
    assert_eq!(v["lifecycle"], "retained");
    assert_eq!(
        v["purge_after_unix"].as_i64().unwrap_or_default()
            - v["deleted_unix"].as_i64().unwrap_or_default(),
        30 * DAY
    );

    let out = admin.ok(&["volume", "restore", "asso-x/data"]).await;
    assert!(
        out.starts_with("Restored volume asso-x/data: its agent mounts it read-write again at /srv/tenants/asso-x/data"),
        "{out}"
    );
    let err = admin.fails(&["volume", "restore", "asso-x/data"], 6).await;
    assert_eq!(err.trim_end(), "coloc: volume asso-x/data: is not deleted");
    let v = admin
        .json(&["volume", "restore", "asso-x/old", "--json"])
        .await;
    assert_eq!(v["lifecycle"], "active");
    let err = admin.fails(&["volume", "restore", "asso-x/nope"], 5).await;
    assert_eq!(err.trim_end(), "coloc: volume \"asso-x/nope\" not found");

    // Each command reached colocd once, with the outcome it printed.
    use pb::AuditOutcome::{Allowed, Denied, Failed};
    let expected: Vec<(String, i32)> = [
        ("volume.resize", Allowed),
        ("volume.resize", Failed),
        ("volume.resize", Allowed),
        ("volume.resize", Failed),
        ("volume.delete", Denied),
        ("volume.delete", Allowed),
        ("volume.delete", Failed),
        ("volume.restore", Allowed),
        ("volume.restore", Failed),
        ("volume.restore", Allowed),
        ("volume.restore", Failed),
    ]
    .into_iter()
    .map(|(a, o)| (a.to_string(), o as i32))
    .collect();
    let seen = w
        .audited(mark, &["volume.resize", "volume.delete", "volume.restore"])
        .await?;
    assert_eq!(seen, expected);
    Ok(())
}

#[tokio::test]
async fn snapshots_and_a_confirmed_rollback() -> Result<()> {
    let mut w = world().await?;
    let mark = w.audit_mark().await?;
    // n1 answers rollbacks as a node does, and the test sees each one.
    let asked = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let seen = Arc::clone(&asked);
    let done = w.data_status(apb::VolumePhase::Ready, "");
    w.n1.answer_requests(move |request| {
        if let Some(apb::request::Kind::RollbackVolume(rb)) = &request.kind {
            seen.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((rb.volume_id.clone(), rb.snapshot.clone()));
        }
        apb::RequestResult {
            request_id: request.id,
            ok: true,
            error: String::new(),
            payload: Some(apb::request_result::Payload::Volume(done.clone())),
        }
    })?;
    let rollbacks = || asked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let admin = w.admin();

    let list = admin
        .ok(&["volume", "snapshot", "list", "asso-x/data"])
        .await;
    assert_eq!(
        list.lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["SNAPSHOT", "CREATED", "USED", "STATE"]
    );
    assert!(
        row(&list, "daily-1").ends_with("384.0 MiB  present"),
        "{list}"
    );

    let out = admin
        .ok(&["volume", "snapshot", "create", "asso-x/data", "weekly"])
        .await;
    assert!(
        out.starts_with(
            "Snapshot weekly of asso-x/data requested; its agent takes it at its next pass."
        ),
        "{out}"
    );
    assert!(
        row(&out, "weekly").ends_with("pending (taken at the agent's next pass)"),
        "{out}"
    );
    w.n1.wait_desired("weekly asked of n1", |d| {
        d.volumes
            .iter()
            .any(|v| v.id == w.data && v.snapshots.iter().any(|s| s == "weekly"))
    })
    .await?;
    let snaps = admin
        .json(&["volume", "snapshot", "list", "asso-x/data", "--json"])
        .await;
    assert_eq!(snaps[0]["name"], "daily-1");
    assert_eq!(snaps[0]["used_bytes"], 384 * MIB);
    assert_eq!(snaps[2]["name"], "weekly");
    assert_eq!(snaps[2]["present"], false);
    let err = admin
        .fails(
            &["volume", "snapshot", "create", "asso-x/data", "weekly"],
            6,
        )
        .await;
    assert_eq!(
        err.trim_end(),
        "coloc: snapshot \"asso-x/data@weekly\" already exists"
    );
    let err = admin
        .fails(&["volume", "snapshot", "delete", "asso-x/data", "nope"], 5)
        .await;
    assert_eq!(
        err.trim_end(),
        "coloc: snapshot \"asso-x/data@nope\" not found"
    );

    // No confirmation, or the wrong one: refused here, nothing sent.
    let err = admin
        .fails(&["volume", "rollback", "asso-x/data", "weekly"], 2)
        .await;
    assert_eq!(
        err.trim_end(),
        "coloc: rolling asso-x/data back to snapshot weekly loses every change made to it since weekly was taken; to go ahead, repeat the volume's name: --confirm asso-x/data"
    );
    let err = admin
        .fails(
            &[
                "volume",
                "rollback",
                "asso-x/data",
                "weekly",
                "--confirm",
                "asso-x/old",
            ],
            7,
        )
        .await;
    assert!(
        err.starts_with("coloc: --confirm \"asso-x/old\" does not match the volume asso-x/data;"),
        "{err}"
    );
    // Named by id, the name is looked up first, and still nothing is
    // rolled back.
    let err = admin
        .fails(
            &[
                "volume",
                "rollback",
                &w.data,
                "weekly",
                "--confirm",
                &w.data,
            ],
            7,
        )
        .await;
    assert!(err.contains("--confirm asso-x/data"), "{err}");
    assert_eq!(w.audited(mark, &["volume.rollback"]).await?, []);

    // Only the most recent snapshot: colocd refuses an older one.
    let err = admin
        .fails(
            &[
                "volume",
                "rollback",
                "asso-x/data",
                "daily-1",
                "--confirm",
                "asso-x/data",
            ],
            6,
        )
        .await;
    assert!(err.contains("delete the later ones first"), "{err}");

    let out = admin
        .ok(&["volume", "snapshot", "delete", "asso-x/data", "weekly"])
        .await;
    assert!(
        out.starts_with(
            "Snapshot weekly of asso-x/data deleted; its agent destroys it at its next pass."
        ),
        "{out}"
    );
    assert!(!out.contains("weekly  "), "{out}");
    assert_eq!(rollbacks(), [], "no rollback reached n1 so far");
    let out = admin
        .ok(&[
            "volume",
            "rollback",
            "asso-x/data",
            "before-upgrade",
            "--confirm",
            "asso-x/data",
        ])
        .await;
    assert!(
        out.starts_with("Rolled asso-x/data back to snapshot before-upgrade.\n"),
        "{out}"
    );
    let v = admin
        .json(&[
            "volume",
            "rollback",
            &w.data,
            "before-upgrade",
            "--confirm",
            "asso-x/data",
            "--json",
        ])
        .await;
    assert_eq!(v["name"], "data");
    let to_before = (w.data.clone(), "before-upgrade".to_string());
    assert_eq!(rollbacks(), [to_before.clone(), to_before]);
    use pb::AuditOutcome::{Allowed, Failed};
    assert_eq!(
        w.audited(mark, &["volume.rollback"]).await?,
        [
            ("volume.rollback".to_string(), Failed as i32),
            ("volume.rollback".to_string(), Allowed as i32),
            ("volume.rollback".to_string(), Allowed as i32),
        ]
    );

    let err = w
        .mia()
        .fails(
            &[
                "volume",
                "rollback",
                "asso-x/data",
                "before-upgrade",
                "--confirm",
                "asso-x/data",
            ],
            4,
        )
        .await;
    assert_eq!(
        err.trim_end(),
        "coloc: permission denied: user mia is a member; only admins and operators change volumes"
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
        "NAME    OFFER         MEMBERSHIP UNTIL  STORAGE USED/QUOTA    GRACE    POSIX ID  CREATED           DISPLAY NAME"
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
