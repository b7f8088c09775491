//! `coloc volume`: creating, listing and showing volumes, the values the
//! CLI refuses on its own, resizing, deleting and restoring, snapshots and
//! the confirmed rollback that reaches the node.

use super::*;

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
