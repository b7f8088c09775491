//! A node's certificates (current, next, promotion, due for renewal) and
//! its removal, with what it does to every area: orphaned volumes and
//! instances kept as they were, never purged, only released; every other
//! change to the node refused; its name never given to another node.

use coloc_proto::domain::Role;

use super::fixtures::*;
use crate::store::prelude::*;
use crate::store::sqlite::SqliteStore;
use crate::store::{
    ConnState, InstanceChange, InstanceFilter, InstanceState, LabelChange, NodeCert, StoreError,
    VolumeFilter, VolumeLifecycle,
};

fn cert(fp: &str, not_after: i64) -> NodeCert {
    NodeCert {
        fingerprint: fp.into(),
        not_after_unix: not_after,
        renew_after_unix: not_after - 100,
    }
}

fn removed_refusal(err: &StoreError) -> bool {
    matches!(err, StoreError::Conflict { kind: "node", reason, .. }
        if reason.starts_with("was removed on") && reason.contains("orphans"))
}

#[tokio::test]
async fn a_renewed_certificate_replaces_the_current_one_when_first_used() {
    let store = fleet(&["n1", "n2"]).await;
    let n1 = node_name("n1");
    let next = cert("fp-n1-next", NOW + 2 * CERT_TTL);
    let rec = store.set_next_cert(&n1, next.clone()).await.unwrap();
    assert_eq!(rec.cert, new_node("n1").cert, "current one unchanged");
    assert_eq!(rec.next_cert, Some(next.clone()));
    // Both fingerprints find the node until the next one is used.
    for fp in ["fp-n1", "fp-n1-next"] {
        let found = store.node_by_fingerprint(fp).await.unwrap().unwrap();
        assert_eq!(found.name, n1, "{fp}");
    }
    // A second renewal before the first is used replaces it.
    let newer = cert("fp-n1-newer", NOW + 2 * CERT_TTL + 5);
    store.set_next_cert(&n1, newer.clone()).await.unwrap();
    assert!(
        store
            .node_by_fingerprint("fp-n1-next")
            .await
            .unwrap()
            .is_none()
    );
    // Only the node's own next certificate is promoted.
    let err = store.promote_next_cert(&n1, "fp-n2").await.unwrap_err();
    assert!(is_conflict(&err), "{err:?}");
    let err = store
        .promote_next_cert(&node_name("n2"), "fp-n1-newer")
        .await
        .unwrap_err();
    assert!(is_conflict(&err), "{err:?}");

    let rec = store.promote_next_cert(&n1, "fp-n1-newer").await.unwrap();
    assert_eq!(rec.cert, newer);
    assert_eq!(rec.next_cert, None);
    assert!(store.node_by_fingerprint("fp-n1").await.unwrap().is_none());
    // A certificate belongs to one node: another node's is refused.
    let err = store
        .set_next_cert(&node_name("n2"), cert("fp-n1-newer", NOW + 10))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
}

#[tokio::test]
async fn connected_nodes_whose_certificate_is_due_are_found_longest_due_first() {
    let store = fleet(&["n1", "n2", "n3", "n4"]).await;
    for n in ["n1", "n2", "n3"] {
        store
            .set_conn_state(&node_name(n), ConnState::Connected, NOW)
            .await
            .unwrap();
    }
    let due_at = new_node("n1").cert.renew_after_unix;
    assert!(store.certs_due(due_at - 1, 10).await.unwrap().is_empty());
    // n2 renewed (and uses it): due later than the others.
    store
        .set_next_cert(&node_name("n2"), cert("fp-n2-b", due_at + 1000))
        .await
        .unwrap();
    store
        .promote_next_cert(&node_name("n2"), "fp-n2-b")
        .await
        .unwrap();
    // n4 is not connected; n3 is removed.
    store
        .remove_node(&node_name("n3"), "user:root", NOW)
        .await
        .unwrap();
    let due = store.certs_due(due_at, 10).await.unwrap();
    assert_eq!(names(&due), ["n1"]);
    let due = store.certs_due(due_at + 900, 10).await.unwrap();
    assert_eq!(names(&due), ["n1", "n2"]);
    assert_eq!(
        names(&store.certs_due(due_at + 900, 1).await.unwrap()),
        ["n1"]
    );
}

#[tokio::test]
async fn removal_keeps_the_record_refuses_changes_and_lists_the_orphans() {
    let store = fleet(&["n1", "n2"]).await;
    let data = app_fleet(&store).await;
    let other = store
        .create_volume(volume("asso-a", "other", "n2", GIB), NOW)
        .await
        .unwrap();
    let r = store
        .create_app_request(new_request("asso-a", "radicale", "n1", &data), NOW)
        .await
        .unwrap();
    store
        .approve_app_request(r.id, &user_name("root"), "", NOW)
        .await
        .unwrap();
    let n1 = node_name("n1");
    store
        .set_next_cert(&n1, cert("fp-n1-next", NOW + 2 * CERT_TTL))
        .await
        .unwrap();
    let before = generation(&store, "n1").await;

    let removed = store.remove_node(&n1, "user:root", NOW + 50).await.unwrap();
    let removal = removed.node.removed.clone().unwrap();
    assert_eq!(
        (removal.at_unix, removal.by.as_str()),
        (NOW + 50, "user:root")
    );
    assert_eq!(removed.node.next_cert, None, "an unused renewal goes");
    assert_eq!(
        removed
            .volumes
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>(),
        ["data"]
    );
    assert!(removed.volumes.iter().all(|v| v.node_removed));
    assert_eq!(removed.instances.len(), 1);
    assert!(removed.instances[0].node_removed);
    // The record stays, found by its current certificate (to be refused
    // by name), not by the renewal it never used.
    let found = store.node_by_fingerprint("fp-n1").await.unwrap().unwrap();
    assert!(found.removed.is_some());
    assert!(
        store
            .node_by_fingerprint("fp-n1-next")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(names(&store.list_nodes(None).await.unwrap()), ["n1", "n2"]);

    let err = store
        .remove_node(&n1, "user:root", NOW + 60)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { reason, .. } if reason.contains("already removed")),
        "{err:?}"
    );

    // Every change that would tell the node something is refused.
    let refusals = [
        store.set_draining(&n1, true).await.unwrap_err(),
        store
            .change_labels(LabelChange {
                nodes: vec![n1.clone()],
                set: [("a".to_string(), "b".to_string())].into(),
                remove: Vec::new(),
            })
            .await
            .unwrap_err(),
        store
            .create_pool(pool("n1", "tank2", coloc_proto::agent::v1::PoolKind::Zfs))
            .await
            .unwrap_err(),
        store
            .create_volume(volume("asso-a", "more", "n1", GIB), NOW)
            .await
            .unwrap_err(),
        store
            .resize_volume(&data.id, 2 * GIB, false)
            .await
            .unwrap_err(),
        store.add_snapshot(&data.id, &snap("s1")).await.unwrap_err(),
        store
            .change_instance(
                &tenant_name("asso-a"),
                &app("radicale"),
                InstanceChange::Stop,
            )
            .await
            .unwrap_err(),
        store
            .set_next_cert(&n1, cert("fp-x", NOW + 10))
            .await
            .unwrap_err(),
        store
            .record_storage(&n1, Default::default())
            .await
            .unwrap_err(),
        store.record_apps(&n1, Vec::new()).await.unwrap_err(),
    ];
    for err in &refusals {
        assert!(
            removed_refusal(err)
                || matches!(err, StoreError::Conflict { kind: "instance", reason, .. } if reason.contains("orphans")),
            "{err:?}"
        );
    }
    assert_eq!(generation(&store, "n1").await, before, "nothing reached n1");
    // Labels for every node skip it.
    let all = store
        .change_labels(LabelChange {
            nodes: Vec::new(),
            set: [("zone".to_string(), "paris".to_string())].into(),
            remove: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(names(&all), ["n2"]);
    // No new grant on it.
    store
        .create_user(user("olga", Some("asso-a"), Role::Operator))
        .await
        .unwrap();
    let err = store.grant_node(&user_name("olga"), &n1).await.unwrap_err();
    assert!(removed_refusal(&err), "{err:?}");

    // The other node is untouched.
    assert!(!store.get_volume(&other.id).await.unwrap().node_removed);
}

#[tokio::test]
async fn orphans_are_never_purged_and_only_released() {
    let store = fleet(&["n1", "n2"]).await;
    let data = app_fleet(&store).await;
    let kept = store
        .create_volume(volume("asso-a", "kept", "n1", GIB), NOW)
        .await
        .unwrap();
    let elsewhere = store
        .create_volume(volume("asso-a", "elsewhere", "n2", GIB), NOW)
        .await
        .unwrap();
    let r = store
        .create_app_request(new_request("asso-a", "radicale", "n1", &data), NOW)
        .await
        .unwrap();
    store
        .approve_app_request(r.id, &user_name("root"), "", NOW)
        .await
        .unwrap();
    // Deleted before the node goes: retained, due in 30 days.
    store.delete_volume(&kept.id, NOW).await.unwrap();
    store.delete_volume(&elsewhere.id, NOW).await.unwrap();
    store
        .remove_node(&node_name("n1"), "user:root", NOW + 1)
        .await
        .unwrap();
    // Past the grace period only the live node's volume is purged.
    let due = store.purge_due(NOW + 365 * 86_400).await.unwrap();
    let used_before = store
        .get_tenant(&tenant_name("asso-a"))
        .await
        .unwrap()
        .storage_used_bytes;
    assert_eq!(used_before, 2 * GIB, "the orphans still count");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, elsewhere.id);
    let kept_now = store.get_volume(&kept.id).await.unwrap();
    assert_eq!(kept_now.lifecycle, VolumeLifecycle::Retained);
    assert!(kept_now.node_removed);

    // Deleting an orphan releases it at once: destroyed as a record, its
    // name and quota freed, the deletion date kept.
    let released = store.delete_volume(&kept.id, NOW + 100).await.unwrap();
    assert_eq!(released.lifecycle, VolumeLifecycle::Destroyed);
    assert_eq!(released.deleted_unix, Some(NOW));
    let released = store.delete_volume(&data.id, NOW + 100).await.unwrap();
    assert_eq!(released.lifecycle, VolumeLifecycle::Destroyed);
    assert_eq!(released.deleted_unix, Some(NOW + 100));
    let err = store.delete_volume(&data.id, NOW + 200).await.unwrap_err();
    assert!(is_conflict(&err), "{err:?}");
    let tenant = store.get_tenant(&tenant_name("asso-a")).await.unwrap();
    assert_eq!(tenant.storage_used_bytes, used_before - 2 * GIB);
    let listed = store
        .list_volumes(VolumeFilter {
            node: Some(node_name("n1")),
            ..VolumeFilter::default()
        })
        .await
        .unwrap();
    assert!(listed.is_empty(), "{listed:?}");

    // The orphaned instance: anything but removing it is refused; removing
    // releases it (gone at once, its name free).
    let (t, a) = (tenant_name("asso-a"), app("radicale"));
    let err = store
        .change_instance(&t, &a, InstanceChange::Restart)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { reason, .. } if reason.contains("is on node n1, which was removed")),
        "{err:?}"
    );
    let gone = store
        .change_instance(&t, &a, InstanceChange::Remove)
        .await
        .unwrap();
    assert_eq!(gone.state, InstanceState::Removed);
    assert!(gone.gone && gone.node_removed);
    assert!(
        store
            .list_instances(InstanceFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    let err = store
        .change_instance(&t, &a, InstanceChange::Remove)
        .await
        .unwrap_err();
    assert!(is_conflict(&err), "released once: {err:?}");
}

#[tokio::test]
async fn an_instance_removed_before_its_node_is_released_too() {
    let store = fleet(&["n1"]).await;
    let data = app_fleet_on_n1(&store).await;
    let r = store
        .create_app_request(new_request("asso-a", "radicale", "n1", &data), NOW)
        .await
        .unwrap();
    store
        .approve_app_request(r.id, &user_name("root"), "", NOW)
        .await
        .unwrap();
    let (t, a) = (tenant_name("asso-a"), app("radicale"));
    // Removed, but the node died before reporting its unit gone.
    store
        .change_instance(&t, &a, InstanceChange::Remove)
        .await
        .unwrap();
    store
        .remove_node(&node_name("n1"), "user:root", NOW)
        .await
        .unwrap();
    let listed = store
        .list_instances(InstanceFilter::default())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].node_removed);
    let gone = store
        .change_instance(&t, &a, InstanceChange::Remove)
        .await
        .unwrap();
    assert!(gone.gone);
}

/// The one-node variant of [`app_fleet`]: a pool on n1 and a volume.
async fn app_fleet_on_n1(store: &SqliteStore) -> crate::store::VolumeRecord {
    store
        .create_pool(pool("n1", "tank", coloc_proto::agent::v1::PoolKind::Zfs))
        .await
        .unwrap();
    store.create_tenant(tenant("asso-a")).await.unwrap();
    store
        .create_volume(volume("asso-a", "data", "n1", GIB), NOW)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_removed_node_s_name_is_not_given_to_a_new_node() {
    let store = fleet(&["n1"]).await;
    store
        .remove_node(&node_name("n1"), "user:root", NOW)
        .await
        .unwrap();
    store
        .create_join_token(join_token("jt-again", "paris-1", NOW + 3600))
        .await
        .unwrap();
    let mut again = new_node("n1");
    again.cert.fingerprint = "fp-n1-again".into();
    let err = store
        .enroll_node("hash-of-jt-again", again, NOW + 10)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { reason, .. }
            if reason.contains("names of removed nodes are not reused")),
        "{err:?}"
    );
    // The token is still usable, for another name.
    let mut other = new_node("n1b");
    other.cert.fingerprint = "fp-n1b".into();
    store
        .enroll_node("hash-of-jt-again", other, NOW + 20)
        .await
        .unwrap();
}
