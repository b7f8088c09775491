//! Requests, decisions, instances, their changes and reports, and ports
//! (unique per node under concurrent approvals).

use std::collections::{BTreeMap, BTreeSet};

use coloc_proto::agent::v1::{AppStatus, PoolKind};
use coloc_proto::storage::VolumeName;
use rusqlite::params;

use super::fixtures::*;
use crate::store::prelude::*;
use crate::store::sqlite::SqliteStore;
use crate::store::{
    CommentRecord, FIRST_APP_PORT, FIRST_POSIX_ID, InstanceChange, InstanceFilter, InstanceState,
    RequestState, StoreError, VolumeLifecycle,
};

#[tokio::test]
async fn a_request_is_discussed_decided_once_and_approval_creates_the_instance() {
    let store = fleet(&["n1", "n2"]).await;
    let data = app_fleet(&store).await;
    let before = generation(&store, "n1").await;

    // The volume must be the tenant's, on that node, active.
    let err = store
        .create_app_request(new_request("asso-a", "radicale", "n2", &data), NOW)
        .await
        .unwrap_err();
    assert!(is_conflict(&err), "{err:?}");
    store.create_tenant(tenant("asso-b")).await.unwrap();
    let err = store
        .create_app_request(new_request("asso-b", "radicale", "n1", &data), NOW)
        .await
        .unwrap_err();
    assert!(is_conflict(&err), "{err:?}");
    let err = store
        .create_app_request(new_request("asso-a", "radicale", "ghost", &data), NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "node", .. }),
        "{err:?}"
    );

    let r = store
        .create_app_request(new_request("asso-a", "radicale", "n1", &data), NOW)
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::Pending);
    assert_eq!(r.volume_name.as_str(), "data");
    assert_eq!(r.comments.len(), 1);
    assert_eq!(r.comments[0].text, "we would like radicale");
    assert_eq!(r.comments[0].author, user_name("alice"));
    // One open request per tenant and app.
    let err = store
        .create_app_request(new_request("asso-a", "radicale", "n1", &data), NOW)
        .await
        .unwrap_err();
    assert!(is_conflict(&err), "{err:?}");
    assert!(
        err.to_string().contains(&format!("request {}", r.id)),
        "{err}"
    );
    assert_eq!(
        generation(&store, "n1").await,
        before,
        "a request is not desired state"
    );

    let r = store
        .comment_app_request(
            r.id,
            CommentRecord {
                author: user_name("root"),
                at_unix: NOW + 1,
                text: "which calendar clients?".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(r.comments.len(), 2);
    let err = store
        .comment_app_request(
            9999,
            CommentRecord {
                author: user_name("root"),
                at_unix: NOW,
                text: "x".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotFound {
                kind: "request",
                ..
            }
        ),
        "{err:?}"
    );

    let (r, i) = store
        .approve_app_request(r.id, &user_name("root"), "go", NOW + 2)
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::Approved);
    assert_eq!(r.decided_by, Some(user_name("root")));
    assert_eq!(r.decided_unix, Some(NOW + 2));
    assert_eq!(r.comments.last().unwrap().text, "go");
    assert_eq!(i.state, InstanceState::Running);
    assert_eq!(i.port, FIRST_APP_PORT);
    assert_eq!(i.request_id, r.id);
    assert_eq!((i.restart_nonce, i.gone), (0, false));
    assert_eq!(i.volume_id, data.id);
    assert_eq!(generation(&store, "n1").await, before + 1);
    assert_eq!(generation(&store, "n2").await, 2, "other nodes untouched");

    // Decided once.
    for err in [
        store
            .approve_app_request(r.id, &user_name("root"), "", NOW)
            .await
            .unwrap_err(),
        store
            .reject_app_request(r.id, &user_name("root"), "no", NOW)
            .await
            .unwrap_err(),
    ] {
        assert!(is_conflict(&err), "{err:?}");
        assert!(err.to_string().contains("approved by root"), "{err}");
    }
    // Comments still go on the record.
    let r = store
        .comment_app_request(
            r.id,
            CommentRecord {
                author: user_name("alice"),
                at_unix: NOW + 3,
                text: "thanks".into(),
            },
        )
        .await
        .unwrap();
    let texts: Vec<&str> = r.comments.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "we would like radicale",
            "which calendar clients?",
            "go",
            "thanks"
        ]
    );

    // A live instance refuses another request for the app.
    let err = store
        .create_app_request(new_request("asso-a", "radicale", "n1", &data), NOW)
        .await
        .unwrap_err();
    assert!(is_conflict(&err), "{err:?}");
    assert!(
        err.to_string().contains("already deployed on node n1"),
        "{err}"
    );

    // Rejection needs nothing but a pending request.
    let s = store
        .create_app_request(new_request("asso-a", "site", "n1", &data), NOW)
        .await
        .unwrap();
    let s = store
        .reject_app_request(s.id, &user_name("root"), "not now", NOW + 4)
        .await
        .unwrap();
    assert_eq!(s.state, RequestState::Rejected);
    assert_eq!(generation(&store, "n1").await, before + 1);

    let all = store.list_app_requests(None, None).await.unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), [r.id, s.id]);
    let rejected = store
        .list_app_requests(Some(&tenant_name("asso-a")), Some(RequestState::Rejected))
        .await
        .unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].app, app("site"));
    assert!(
        store
            .list_app_requests(Some(&tenant_name("asso-b")), None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.get_app_request(r.id).await.unwrap(), r);
}

#[tokio::test]
async fn one_live_instance_per_tenant_and_app_cooperative_wide() {
    let store = fleet(&["n1", "n2"]).await;
    let data = app_fleet(&store).await;
    let other = store
        .create_volume(volume("asso-a", "other", "n2", GIB), NOW)
        .await
        .unwrap();
    let r = store
        .create_app_request(new_request("asso-a", "radicale", "n2", &other), NOW)
        .await
        .unwrap();
    // An instance appears on n1 meanwhile (a second colocd, a bug):
    // approval refuses, and so would the database.
    {
        let conn = store.conn.lock().unwrap();
        conn.execute(
            "INSERT INTO app_requests (tenant, app, node, volume_id, requested_by, \
             created_unix, state, decided_by, decided_unix) VALUES ('asso-a', 'radicale', \
             'n1', ?1, 'bob', 0, 'approved', 'root', 0)",
            [data.id.as_str()],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO app_instances (tenant, app, node, volume_id, port, state, \
             request_id, created_unix) VALUES ('asso-a', 'radicale', 'n1', ?1, 20000, \
             'stopped', last_insert_rowid(), 0)",
            [data.id.as_str()],
        )
        .unwrap();
        let err = conn
            .execute(
                "INSERT INTO app_instances (tenant, app, node, volume_id, port, state, \
                 request_id, created_unix) VALUES ('asso-a', 'radicale', 'n2', ?1, 20000, \
                 'running', ?2, 0)",
                params![other.id.as_str(), r.id as i64],
            )
            .unwrap_err();
        assert!(err.to_string().contains("UNIQUE"), "{err}");
    }
    let gen_n2 = generation(&store, "n2").await;
    let err = store
        .approve_app_request(r.id, &user_name("root"), "", NOW)
        .await
        .unwrap_err();
    assert!(is_conflict(&err), "{err:?}");
    assert!(
        err.to_string()
            .contains("already deployed on node n1 (stopped)"),
        "{err}"
    );
    assert_eq!(generation(&store, "n2").await, gen_n2, "nothing changed");
    assert_eq!(
        store.get_app_request(r.id).await.unwrap().state,
        RequestState::Pending
    );

    // Once removed there, the app may live elsewhere; the removed one
    // stays on n1 until its node reports it gone.
    store
        .change_instance(
            &tenant_name("asso-a"),
            &app("radicale"),
            InstanceChange::Remove,
        )
        .await
        .unwrap();
    let (_, i) = store
        .approve_app_request(r.id, &user_name("root"), "", NOW)
        .await
        .unwrap();
    assert_eq!((i.node.as_str(), i.port), ("n2", FIRST_APP_PORT));
    let got = store
        .get_instance(&tenant_name("asso-a"), &app("radicale"))
        .await
        .unwrap();
    assert_eq!(got.node.as_str(), "n2", "the live one first");
    let listed = store
        .list_instances(InstanceFilter::default())
        .await
        .unwrap();
    let states: Vec<(&str, InstanceState)> =
        listed.iter().map(|i| (i.node.as_str(), i.state)).collect();
    assert_eq!(
        states,
        [
            ("n1", InstanceState::Removed),
            ("n2", InstanceState::Running)
        ]
    );
}

#[tokio::test]
async fn instance_changes_bump_the_generation_only_when_they_change_something() {
    let store = fleet(&["n1", "n2"]).await;
    let data = app_fleet(&store).await;
    let r = store
        .create_app_request(new_request("asso-a", "radicale", "n1", &data), NOW)
        .await
        .unwrap();
    store
        .approve_app_request(r.id, &user_name("root"), "", NOW)
        .await
        .unwrap();
    let (t, a) = (tenant_name("asso-a"), app("radicale"));
    let mut expected = generation(&store, "n1").await;
    let steps = [
        (InstanceChange::Start, InstanceState::Running, 0, false),
        (InstanceChange::Stop, InstanceState::Stopped, 0, true),
        (InstanceChange::Stop, InstanceState::Stopped, 0, false),
        (InstanceChange::Start, InstanceState::Running, 0, true),
        (InstanceChange::Restart, InstanceState::Running, 1, true),
        (InstanceChange::Stop, InstanceState::Stopped, 1, true),
        // A restart of a stopped instance starts it.
        (InstanceChange::Restart, InstanceState::Running, 2, true),
    ];
    for (change, state, nonce, bumps) in steps {
        let i = store.change_instance(&t, &a, change).await.unwrap();
        assert_eq!((i.state, i.restart_nonce), (state, nonce), "{change:?}");
        if bumps {
            expected += 1;
        }
        assert_eq!(generation(&store, "n1").await, expected, "{change:?}");
    }

    // Reports are recorded on this node's instances only, and are not
    // desired state.
    let running = AppStatus {
        tenant: "asso-a".into(),
        app: "radicale".into(),
        unit: "coloc-app-asso-a-radicale.service".into(),
        active_state: "active".into(),
        sub_state: "running".into(),
        healthy: true,
        ..AppStatus::default()
    };
    let gone = store
        .record_apps(&node_name("n2"), vec![running.clone()])
        .await
        .unwrap();
    assert!(gone.is_empty());
    assert_eq!(store.get_instance(&t, &a).await.unwrap().observed, None);
    let gone = store
        .record_apps(
            &node_name("n1"),
            vec![
                running.clone(),
                AppStatus {
                    tenant: "asso-a".into(),
                    app: "nothere".into(),
                    ..AppStatus::default()
                },
            ],
        )
        .await
        .unwrap();
    assert!(gone.is_empty());
    assert_eq!(
        store.get_instance(&t, &a).await.unwrap().observed,
        Some(running.clone())
    );
    // "removed" means nothing for an instance that should run.
    let removed = AppStatus {
        active_state: "removed".into(),
        sub_state: String::new(),
        ..running.clone()
    };
    assert!(
        store
            .record_apps(&node_name("n1"), vec![removed.clone()])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(generation(&store, "n1").await, expected);

    let i = store
        .change_instance(&t, &a, InstanceChange::Remove)
        .await
        .unwrap();
    assert_eq!(i.state, InstanceState::Removed);
    expected += 1;
    assert_eq!(generation(&store, "n1").await, expected);
    for change in [
        InstanceChange::Start,
        InstanceChange::Stop,
        InstanceChange::Restart,
        InstanceChange::Remove,
    ] {
        let err = store.change_instance(&t, &a, change).await.unwrap_err();
        assert!(is_conflict(&err), "{change:?}: {err:?}");
    }
    let err = store
        .change_instance(&t, &app("site"), InstanceChange::Start)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotFound {
                kind: "instance",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        generation(&store, "n1").await,
        expected,
        "refusals change nothing"
    );

    // Still in the node's configuration until the node says it is gone.
    let d = store.desired_configs(&[node_name("n1")]).await.unwrap();
    assert_eq!(d[0].apps.len(), 1);
    assert_eq!(d[0].apps[0].instance.state, InstanceState::Removed);
    let gone = store
        .record_apps(&node_name("n1"), vec![removed.clone()])
        .await
        .unwrap();
    assert_eq!(gone.len(), 1);
    assert!(gone[0].gone);
    assert_eq!(gone[0].observed, Some(removed));
    expected += 1;
    assert_eq!(generation(&store, "n1").await, expected);
    let d = store.desired_configs(&[node_name("n1")]).await.unwrap();
    assert!(d[0].apps.is_empty());
    assert!(
        store
            .list_instances(InstanceFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    // Kept for the record.
    let i = store.get_instance(&t, &a).await.unwrap();
    assert!(i.gone && i.state == InstanceState::Removed);
}

#[tokio::test]
async fn desired_configs_carry_instances_with_their_owner_and_volume() {
    let store = fleet(&["n1", "n2"]).await;
    let data = app_fleet(&store).await;
    for name in ["site", "radicale"] {
        let r = store
            .create_app_request(new_request("asso-a", name, "n1", &data), NOW)
            .await
            .unwrap();
        store
            .approve_app_request(r.id, &user_name("root"), "", NOW)
            .await
            .unwrap();
    }
    store.delete_volume(&data.id, NOW).await.unwrap();
    let d = store
        .desired_configs(&[node_name("n1"), node_name("n2")])
        .await
        .unwrap();
    let apps: Vec<(&str, u16)> = d[0]
        .apps
        .iter()
        .map(|a| (a.instance.app.as_str(), a.instance.port))
        .collect();
    assert_eq!(apps, [("radicale", 20_001), ("site", 20_000)], "by app");
    for a in &d[0].apps {
        assert_eq!(a.owner, FIRST_POSIX_ID);
        assert_eq!(a.instance.volume_name.as_str(), "data");
        assert_eq!(a.instance.volume_lifecycle, VolumeLifecycle::Retained);
    }
    assert!(d[1].apps.is_empty());
    // A request needs an active volume; so does an approval.
    let err = store
        .create_app_request(new_request("asso-a", "prosody", "n1", &data), NOW)
        .await
        .unwrap_err();
    assert!(is_conflict(&err), "{err:?}");
}

#[tokio::test]
async fn ports_stay_unique_per_node_under_concurrent_approvals() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("colocd.db");
    let first = SqliteStore::open(&path).unwrap();
    let second = SqliteStore::open(&path).unwrap();
    first.create_site(site("paris-1")).await.unwrap();
    for n in ["n1", "n2"] {
        let id = format!("jt-{n}");
        first
            .create_join_token(join_token(&id, "paris-1", NOW + 3600))
            .await
            .unwrap();
        first
            .enroll_node(&format!("hash-of-{id}"), new_node(n), NOW)
            .await
            .unwrap();
        first
            .create_pool(pool(n, "tank", PoolKind::Zfs))
            .await
            .unwrap();
    }
    let mut ids = Vec::new();
    for i in 0..16 {
        let t = format!("asso-{i}");
        first.create_tenant(tenant(&t)).await.unwrap();
        let node = if i < 12 { "n1" } else { "n2" };
        let v = first
            .create_volume(volume(&t, "data", node, GIB), NOW)
            .await
            .unwrap();
        let r = first
            .create_app_request(new_request(&t, "radicale", node, &v), NOW)
            .await
            .unwrap();
        ids.push(r.id);
    }
    let mut tasks = Vec::new();
    for (k, id) in ids.iter().copied().enumerate() {
        let store = if k % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tasks.push(tokio::spawn(async move {
            store
                .approve_app_request(id, &user_name("root"), "", NOW)
                .await
        }));
    }
    let mut per_node: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    for t in tasks {
        let (_, i) = t.await.unwrap().unwrap();
        assert!(
            per_node
                .entry(i.node.to_string())
                .or_default()
                .insert(i.port),
            "port {} given twice on {}",
            i.port,
            i.node
        );
    }
    let expect = |n: u16| (FIRST_APP_PORT..FIRST_APP_PORT + n).collect::<BTreeSet<u16>>();
    assert_eq!(per_node["n1"], expect(12), "lowest ports first, no gap");
    assert_eq!(per_node["n2"], expect(4), "per node");
    // Each approval bumped its node once.
    assert_eq!(generation(&first, "n1").await, 2 + 12 + 12);

    // A removed instance keeps its port until its node reports it
    // gone; then the port is handed out again.
    let (t3, radicale) = (tenant_name("asso-3"), app("radicale"));
    let i = first
        .change_instance(&t3, &radicale, InstanceChange::Remove)
        .await
        .unwrap();
    let freed = i.port;
    let v = first
        .find_volume(&t3, &VolumeName::new("data").unwrap())
        .await
        .unwrap();
    let r = first
        .create_app_request(new_request("asso-3", "site", "n1", &v), NOW)
        .await
        .unwrap();
    let (_, site_i) = first
        .approve_app_request(r.id, &user_name("root"), "", NOW)
        .await
        .unwrap();
    assert_eq!(site_i.port, FIRST_APP_PORT + 12);
    first
        .record_apps(
            &node_name("n1"),
            vec![AppStatus {
                tenant: "asso-3".into(),
                app: "radicale".into(),
                active_state: "removed".into(),
                ..AppStatus::default()
            }],
        )
        .await
        .unwrap();
    let r = first
        .create_app_request(new_request("asso-3", "radicale", "n1", &v), NOW)
        .await
        .unwrap();
    let (_, again) = first
        .approve_app_request(r.id, &user_name("root"), "", NOW)
        .await
        .unwrap();
    assert_eq!(again.port, freed, "freed port reused");
}

#[tokio::test]
async fn a_new_instance_takes_over_a_removed_one_on_the_same_node() {
    let store = fleet(&["n1", "n2"]).await;
    let data = app_fleet(&store).await;
    let (t, a) = (tenant_name("asso-a"), app("radicale"));
    let r = store
        .create_app_request(new_request("asso-a", "radicale", "n1", &data), NOW)
        .await
        .unwrap();
    store
        .approve_app_request(r.id, &user_name("root"), "", NOW)
        .await
        .unwrap();
    store
        .change_instance(&t, &a, InstanceChange::Remove)
        .await
        .unwrap();
    let r = store
        .create_app_request(new_request("asso-a", "radicale", "n1", &data), NOW)
        .await
        .unwrap();
    let (_, i) = store
        .approve_app_request(r.id, &user_name("root"), "", NOW)
        .await
        .unwrap();
    assert_eq!(i.port, FIRST_APP_PORT, "the removed one's port");
    let d = store.desired_configs(&[node_name("n1")]).await.unwrap();
    assert_eq!(d[0].apps.len(), 1, "one unit per tenant and app");
    assert_eq!(d[0].apps[0].instance.request_id, r.id);
}
