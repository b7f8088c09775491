//! `coloc pool`, `coloc volume` and the tenants' storage settings, run as
//! a sysadmin would against the fake: what each command prints as a table
//! and as JSON, which values are refused before any call, and the exit
//! code of each refusal colocd sends.

use super::storage::{DATA_ID, NOW};
use super::*;

const GIB: u64 = 1024 * 1024 * 1024;

impl Fixture {
    /// Tenants and Storage calls the fake received so far.
    pub(super) fn calls(&self) -> Vec<&'static str> {
        self.state.lock().unwrap().calls.clone()
    }

    pub(super) fn forget_calls(&self) {
        self.state.lock().unwrap().calls.clear();
    }
}

/// Asserts the exit code and returns stderr.
pub(super) fn fails(o: &Output, code: i32) -> String {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    assert!(stdout(o).is_empty(), "stdout: {}", stdout(o));
    stderr(o)
}

pub(super) fn text(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(o));
    stdout(o)
}

/// The table row whose first cell is `first`.
pub(super) fn row<'a>(table: &'a str, first: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no row {first:?} in\n{table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_are_declared_and_listed() {
    let f = Fixture::start().await;
    let o = f
        .as_admin(&[
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

    // --force is sent, and said out loud even in JSON mode.
    let o = f
        .as_admin(&[
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

    let o = f.as_admin(&["pool", "list"]).await;
    let table = text(&o);
    assert!(
        table
            .lines()
            .next()
            .unwrap()
            .starts_with("NODE  NAME     TYPE  LAYOUT  DISKS"),
        "{table}"
    );
    let tank = row(&table, "n1");
    for needle in [
        "tank",
        "zfs",
        "mirror",
        "serial:COLOC0001, serial:COLOC0002",
        "1.0 TiB",
        "900.0 GiB",
        "ONLINE",
    ] {
        assert!(tank.contains(needle), "{needle:?} missing in {tank}");
    }
    let cells: Vec<&str> = tank
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(cells[cells.len() - 2..], ["1", "-"], "{tank}");
    let vg = table.lines().find(|l| l.contains("vg-data")).unwrap();
    assert!(vg.contains("absent"), "{vg}");
    assert!(
        vg.contains(
            "no declared disk is blank; refused id:nvme-QEMU_NVMe_Ctrl_COLOC0003 (/dev/nvme2n1): ext4 filesystem"
        ),
        "{vg}"
    );
    assert!(stderr(&o).contains("Orphans are volumes"), "{}", stderr(&o));

    let pools = json(
        &f.as_admin(&["pool", "list", "--node", "n1", "--json"])
            .await,
    );
    let pools = pools.as_array().unwrap();
    assert_eq!(
        pools
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["tank", "fast"]
    );
    assert_eq!(pools[0]["orphans"][0]["volume_id"], "00000000000000ff");
    assert_eq!(pools[0]["orphans"][0]["size_bytes"], 5 * GIB);
    assert_eq!(pools[0]["observed"]["free_bytes"], 900 * GIB);
    assert_eq!(pools[0]["observed"]["health"], "ONLINE");
    let n2 = json(
        &f.as_admin(&["pool", "list", "--node", "n2", "--json"])
            .await,
    );
    assert_eq!(
        n2[0]["observed"]["refused_disks"][0],
        "id:nvme-QEMU_NVMe_Ctrl_COLOC0003 (/dev/nvme2n1): ext4 filesystem"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_mistakes_are_refused() {
    let f = Fixture::start().await;
    // Refused here, without a call.
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
        let err = fails(&f.as_admin(&args).await, 7);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let err = fails(
        &f.as_admin(&[
            "pool", "create", "--node", "n1", "--name", "raidz", "--type", "zfs", "--disk",
            "serial:A",
        ])
        .await,
        7,
    );
    assert!(err.contains("reserved by ZFS"), "{err}");
    assert_eq!(f.calls(), Vec::<&str>::new());

    // Refused by colocd.
    let o = f
        .as_admin(&[
            "pool", "create", "--node", "n9", "--name", "tank", "--type", "zfs", "--disk",
            "serial:A",
        ])
        .await;
    assert_eq!(fails(&o, 5).trim_end(), "coloc: no node named n9");
    let o = f
        .as_admin(&[
            "pool", "create", "--node", "n1", "--name", "tank", "--type", "zfs", "--disk",
            "serial:A",
        ])
        .await;
    assert_eq!(fails(&o, 6).trim_end(), "coloc: pool tank exists on n1");
    let o = f.as_token(MEMBER_TOKEN, &["pool", "list"]).await;
    assert_eq!(
        fails(&o, 4).trim_end(),
        "coloc: permission denied: user mia is a member and cannot list pools"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_are_created_listed_and_shown() {
    let f = Fixture::start().await;
    let created = json(
        &f.as_admin(&[
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
        .await,
    );
    assert_eq!(created["tenant"], "asso-x");
    assert_eq!(created["name"], "www");
    assert_eq!(created["size_bytes"], 20 * GIB);
    assert_eq!(created["reservation_bytes"], 5 * GIB);
    assert_eq!(created["encrypted"], true);
    assert_eq!(created["mount_path"], "/srv/tenants/asso-x/www");
    assert_eq!(created["state"], "active/not reported");
    assert_eq!(created["observed"], serde_json::Value::Null);

    // --name defaults to "data"; sizes are rounded up to 4 MiB like colocd does.
    let out = text(
        &f.as_admin(&[
            "volume", "create", "--tenant", "asso-y", "--node", "n2", "--pool", "vg-data",
            "--size", "65M",
        ])
        .await,
    );
    assert!(
        out.starts_with("Created volume asso-y/data; its node's agent creates and mounts it"),
        "{out}"
    );
    assert!(out.contains("68.0 MiB"), "{out}");
    assert!(out.contains("Agent:        not reported yet"), "{out}");

    let table = text(&f.as_admin(&["volume", "list"]).await);
    let header = table.lines().next().unwrap();
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
    let data = row(&table, "asso-x/data");
    assert_eq!(
        data.split("  ")
            .filter(|c| !c.is_empty())
            .map(str::trim)
            .collect::<Vec<_>>(),
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

    let all = text(
        &f.as_admin(&["volume", "list", "--all", "--tenant", "asso-y"])
            .await,
    );
    assert!(row(&all, "asso-y/gone").ends_with("destroyed"), "{all}");
    assert!(!all.contains("asso-x/"), "{all}");

    let list = json(
        &f.as_admin(&["volume", "list", "--node", "n1", "--json"])
            .await,
    );
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["id"], DATA_ID);
    assert_eq!(list[0]["lifecycle"], "active");
    assert_eq!(list[0]["observed"]["phase"], "ready");
    assert_eq!(list[0]["observed"]["used_bytes"], 3 * GIB);
    assert_eq!(list[1]["state"], "retained until 2026-12-28");
    assert_eq!(list[1]["purge_after_unix"], 1_798_452_000);

    // Show, by name and by id.
    let show = text(&f.as_admin(&["volume", "show", "asso-x/data"]).await);
    for needle in [
        "Volume:          asso-x/data",
        &format!("Id:              {DATA_ID}"),
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
    let snaps = &show[show.find("SNAPSHOT").expect("snapshot table")..];
    assert!(
        row(snaps, "daily-1").contains("2026-01-01 01:00  384.0 MiB  present"),
        "{snaps}"
    );
    assert!(
        row(snaps, "before-upgrade").contains("128.0 MiB"),
        "{snaps}"
    );
    let by_id = json(&f.as_admin(&["volume", "show", DATA_ID, "--json"]).await);
    assert_eq!(by_id["name"], "data");
    assert_eq!(by_id["observed"]["snapshots"][1]["name"], "before-upgrade");

    let old = text(&f.as_admin(&["volume", "show", "asso-x/old"]).await);
    assert!(
        old.contains("Destroyed after:  2026-12-28 10:00 UTC"),
        "{old}"
    );
    assert!(old.contains("not mounted (read-only)"), "{old}");

    // The agent's error text is shown as it said it.
    {
        let mut state = f.state.lock().unwrap();
        let o = state.volumes[0].observed.as_mut().unwrap();
        o.phase = coloc_proto::agent::v1::VolumePhase::Error as i32;
        o.error = "pool tank is full".into();
    }
    let show = text(&f.as_admin(&["volume", "show", "asso-x/data"]).await);
    assert!(show.contains("State:           active/error"), "{show}");
    assert!(
        show.contains("Error:           pool tank is full"),
        "{show}"
    );

    let o = f.as_admin(&["volume", "show", "asso-x/nope"]).await;
    assert_eq!(fails(&o, 5).trim_end(), "coloc: no volume asso-x/nope");
    // A member reads its own tenant's volumes only.
    let mine = json(
        &f.as_token(MEMBER_TOKEN, &["volume", "list", "--json"])
            .await,
    );
    assert!(
        mine.as_array()
            .unwrap()
            .iter()
            .all(|v| v["tenant"] == "asso-x")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sizes_and_names_never_leave_the_cli() {
    let f = Fixture::start().await;
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
        let err = fails(&f.as_admin(&args).await, 7);
        assert!(err.starts_with("coloc: "), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: {needle:?} missing in {err}"
        );
    }
    let err = fails(&f.as_admin(&["tenant", "set-storage", "asso-x"]).await, 2);
    assert!(err.contains("--quota SIZE and/or --grace-days N"), "{err}");
    assert_eq!(f.calls(), Vec::<&str>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_delete_and_restore() {
    let f = Fixture::start().await;
    let out = text(
        &f.as_admin(&["volume", "resize", "asso-x/data", "--size", "40G"])
            .await,
    );
    assert!(
        out.starts_with("Volume asso-x/data is now 40.0 GiB; its agent applies the size"),
        "{out}"
    );
    let o = f
        .as_admin(&["volume", "resize", "asso-x/data", "--size", "10G"])
        .await;
    assert!(fails(&o, 6).contains("pass force to shrink"));
    let v = json(
        &f.as_admin(&[
            "volume",
            "resize",
            "asso-x/data",
            "--size",
            "10G",
            "--force",
            "--json",
        ])
        .await,
    );
    assert_eq!(v["size_bytes"], 10 * GIB);
    let o = f
        .as_admin(&["volume", "resize", "asso-x/data", "--size", "200G"])
        .await;
    assert!(fails(&o, 6).contains("would exceed its storage quota"));

    let o = f
        .as_token(MEMBER_TOKEN, &["volume", "delete", "asso-x/data"])
        .await;
    assert_eq!(
        fails(&o, 4).trim_end(),
        "coloc: permission denied: user mia is a member and cannot delete volumes"
    );

    let out = text(&f.as_admin(&["volume", "delete", "asso-x/data"]).await);
    assert_eq!(
        out,
        "Deleted volume asso-x/data: it is unmounted and kept read-only with its snapshots until 2026-01-31 00:00 UTC, then destroyed.\n\
         To bring it back before then: coloc volume restore asso-x/data\n"
    );
    let o = f.as_admin(&["volume", "delete", "asso-x/data"]).await;
    assert_eq!(
        fails(&o, 6).trim_end(),
        "coloc: volume asso-x/data is already deleted"
    );
    let v = json(
        &f.as_admin(&["volume", "show", "asso-x/data", "--json"])
            .await,
    );
    assert_eq!(v["lifecycle"], "retained");
    assert_eq!(v["purge_after_unix"], NOW + 30 * 86_400);

    let out = text(&f.as_admin(&["volume", "restore", "asso-x/data"]).await);
    assert!(
        out.starts_with("Restored volume asso-x/data: its agent mounts it read-write again at /srv/tenants/asso-x/data"),
        "{out}"
    );
    let o = f.as_admin(&["volume", "restore", "asso-x/data"]).await;
    assert_eq!(
        fails(&o, 6).trim_end(),
        "coloc: volume asso-x/data is not deleted"
    );
    let v = json(
        &f.as_admin(&["volume", "restore", "asso-x/old", "--json"])
            .await,
    );
    assert_eq!(v["lifecycle"], "active");
    let o = f.as_admin(&["volume", "restore", "asso-x/nope"]).await;
    assert_eq!(fails(&o, 5).trim_end(), "coloc: no volume asso-x/nope");
    assert_eq!(
        f.calls(),
        [
            "ResizeVolume",
            "ResizeVolume",
            "ResizeVolume",
            "ResizeVolume",
            "DeleteVolume",
            "DeleteVolume",
            "DeleteVolume",
            "GetVolume",
            "RestoreVolume",
            "RestoreVolume",
            "RestoreVolume",
            "RestoreVolume",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_and_a_confirmed_rollback() {
    let f = Fixture::start().await;
    let list = text(
        &f.as_admin(&["volume", "snapshot", "list", "asso-x/data"])
            .await,
    );
    assert_eq!(
        list.lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["SNAPSHOT", "CREATED", "USED", "STATE"]
    );
    assert!(
        row(&list, "daily-1").ends_with("384.0 MiB  present"),
        "{list}"
    );

    let out = text(
        &f.as_admin(&["volume", "snapshot", "create", "asso-x/data", "weekly"])
            .await,
    );
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
    let snaps = json(
        &f.as_admin(&["volume", "snapshot", "list", "asso-x/data", "--json"])
            .await,
    );
    assert_eq!(snaps[0]["name"], "daily-1");
    assert_eq!(snaps[0]["used_bytes"], 384 * 1024 * 1024);
    assert_eq!(snaps[2]["name"], "weekly");
    assert_eq!(snaps[2]["present"], false);
    let o = f
        .as_admin(&["volume", "snapshot", "create", "asso-x/data", "weekly"])
        .await;
    assert_eq!(
        fails(&o, 6).trim_end(),
        "coloc: snapshot weekly of asso-x/data exists"
    );
    let o = f
        .as_admin(&["volume", "snapshot", "delete", "asso-x/data", "nope"])
        .await;
    assert_eq!(
        fails(&o, 5).trim_end(),
        "coloc: no snapshot nope of asso-x/data"
    );

    // No confirmation, or the wrong one: refused here, nothing sent.
    f.forget_calls();
    let o = f
        .as_admin(&["volume", "rollback", "asso-x/data", "weekly"])
        .await;
    assert_eq!(
        fails(&o, 2).trim_end(),
        "coloc: rolling asso-x/data back to snapshot weekly loses every change made to it since weekly was taken; to go ahead, repeat the volume's name: --confirm asso-x/data"
    );
    let o = f
        .as_admin(&[
            "volume",
            "rollback",
            "asso-x/data",
            "weekly",
            "--confirm",
            "asso-x/old",
        ])
        .await;
    let err = fails(&o, 7);
    assert!(
        err.starts_with("coloc: --confirm \"asso-x/old\" does not match the volume asso-x/data;"),
        "{err}"
    );
    assert_eq!(f.calls(), Vec::<&str>::new());
    // Named by id, the name is looked up first, and still nothing is rolled back.
    let o = f
        .as_admin(&[
            "volume",
            "rollback",
            DATA_ID,
            "weekly",
            "--confirm",
            DATA_ID,
        ])
        .await;
    assert!(fails(&o, 7).contains("--confirm asso-x/data"));
    assert_eq!(f.calls(), ["GetVolume"]);

    // Only the most recent snapshot: colocd refuses an older one.
    let o = f
        .as_admin(&[
            "volume",
            "rollback",
            "asso-x/data",
            "daily-1",
            "--confirm",
            "asso-x/data",
        ])
        .await;
    assert!(fails(&o, 6).contains("delete the later snapshots first"));

    let out = text(
        &f.as_admin(&["volume", "snapshot", "delete", "asso-x/data", "weekly"])
            .await,
    );
    assert!(
        out.starts_with(
            "Snapshot weekly of asso-x/data deleted; its agent destroys it at its next pass."
        ),
        "{out}"
    );
    assert!(!out.contains("weekly  "), "{out}");
    let out = text(
        &f.as_admin(&[
            "volume",
            "rollback",
            "asso-x/data",
            "before-upgrade",
            "--confirm",
            "asso-x/data",
        ])
        .await,
    );
    assert!(
        out.starts_with("Rolled asso-x/data back to snapshot before-upgrade.\n"),
        "{out}"
    );
    let v = json(
        &f.as_admin(&[
            "volume",
            "rollback",
            DATA_ID,
            "before-upgrade",
            "--confirm",
            "asso-x/data",
            "--json",
        ])
        .await,
    );
    assert_eq!(v["name"], "data");
    assert_eq!(
        f.calls().iter().filter(|c| **c == "RollbackVolume").count(),
        3
    );

    let o = f
        .as_token(
            MEMBER_TOKEN,
            &[
                "volume",
                "rollback",
                "asso-x/data",
                "before-upgrade",
                "--confirm",
                "asso-x/data",
            ],
        )
        .await;
    assert_eq!(
        fails(&o, 4).trim_end(),
        "coloc: permission denied: user mia is a member and cannot roll back volumes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_show_their_storage() {
    let f = Fixture::start().await;
    let table = text(&f.as_admin(&["tenant", "list"]).await);
    assert_eq!(
        table.lines().next().unwrap(),
        "NAME    OFFER         MEMBERSHIP UNTIL  STORAGE USED/QUOTA    GRACE    POSIX ID  CREATED           DISPLAY NAME"
    );
    let x = row(&table, "asso-x");
    assert!(
        x.contains("30.0 GiB / 100.0 GiB  30 days  200000"),
        "{table}"
    );
    let show = text(&f.as_admin(&["tenant", "show", "asso-x"]).await);
    for needle in [
        "Storage quota:         100.0 GiB",
        "Storage used:          30.0 GiB (active and deleted-but-kept volumes)",
        "Deleted volumes kept:  30 days",
        "POSIX uid/gid:         200000",
    ] {
        assert!(show.contains(needle), "{needle:?} missing in\n{show}");
    }
    let t = json(&f.as_admin(&["tenant", "show", "asso-y", "--json"]).await);
    assert_eq!(t["storage_used_bytes"], 0);
    assert_eq!(t["posix_id"], 200_001);

    let t = json(
        &f.as_admin(&[
            "tenant",
            "set-storage",
            "asso-x",
            "--quota",
            "500G",
            "--grace-days",
            "60",
            "--json",
        ])
        .await,
    );
    assert_eq!(t["storage_quota_bytes"], 500 * GIB);
    assert_eq!(t["volume_grace_days"], 60);
    assert_eq!(t["storage_used_bytes"], 30 * GIB);
    let out = text(
        &f.as_admin(&["tenant", "set-storage", "asso-y", "--grace-days", "1"])
            .await,
    );
    assert!(out.starts_with("Updated tenant storage:\n"), "{out}");
    assert!(out.contains("Deleted volumes kept:  1 day\n"), "{out}");
    // The new grace period decides when a deleted volume goes.
    let v = json(
        &f.as_admin(&["volume", "delete", "asso-x/data", "--json"])
            .await,
    );
    assert_eq!(v["purge_after_unix"], NOW + 60 * 86_400);

    let o = f
        .as_admin(&["tenant", "set-storage", "asso-z", "--quota", "1T"])
        .await;
    assert_eq!(fails(&o, 5).trim_end(), "coloc: no tenant named asso-z");
    let o = f
        .as_token(
            MEMBER_TOKEN,
            &["tenant", "set-storage", "asso-x", "--quota", "1T"],
        )
        .await;
    assert_eq!(
        fails(&o, 4).trim_end(),
        "coloc: permission denied: user mia is a member and cannot change a tenant's storage"
    );
    let o = f.as_admin(&["tenant", "show", "asso-z"]).await;
    assert_eq!(fails(&o, 5).trim_end(), "coloc: no tenant named asso-z");
}
