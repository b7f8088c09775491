//! Sites, join tokens, enrollment (one node per token, even racing) and
//! nodes.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::fixtures::*;
use crate::store::prelude::*;
use crate::store::sqlite::SqliteStore;
use crate::store::{ConnState, LabelChange, NodeRecord, StoreError};

#[tokio::test]
async fn sites_are_created_listed_by_name_and_unique() {
    let store = SqliteStore::open_in_memory().unwrap();
    store.create_site(site("lyon-1")).await.unwrap();
    store.create_site(site("paris-1")).await.unwrap();
    store.create_site(site("brest-2")).await.unwrap();

    let listed = store.list_sites().await.unwrap();
    let listed: Vec<_> = listed.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(listed, ["brest-2", "lyon-1", "paris-1"]);
    assert_eq!(
        store.get_site(&site_name("paris-1")).await.unwrap(),
        site("paris-1")
    );

    let err = store.create_site(site("paris-1")).await.unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { kind: "site", ref name } if name == "paris-1"),
        "{err:?}"
    );
    let err = store.get_site(&site_name("nantes")).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "site", ref name } if name == "nantes"),
        "{err:?}"
    );
}

#[tokio::test]
async fn join_tokens_need_a_site_and_a_unique_id() {
    let store = fleet(&[]).await;
    store
        .create_join_token(join_token("jt-b", "paris-1", NOW + 60))
        .await
        .unwrap();
    store
        .create_join_token(join_token("jt-a", "paris-1", NOW + 60))
        .await
        .unwrap();
    let tokens = store.list_join_tokens().await.unwrap();
    assert_eq!(
        tokens,
        [
            join_token("jt-a", "paris-1", NOW + 60),
            join_token("jt-b", "paris-1", NOW + 60)
        ]
    );

    let err = store
        .create_join_token(join_token("jt-a", "paris-1", NOW + 60))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { kind: "join token", ref name } if name == "jt-a"),
        "{err:?}"
    );
    let err = store
        .create_join_token(join_token("jt-c", "nowhere", NOW + 60))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "site", ref name } if name == "nowhere"),
        "{err:?}"
    );
}

// ---- enrollment

#[tokio::test]
async fn enrollment_creates_the_node_and_consumes_the_token_once() {
    let store = fleet(&[]).await;
    store
        .create_join_token(join_token("jt-1", "paris-1", NOW + 3600))
        .await
        .unwrap();

    let node = store
        .enroll_node("hash-of-jt-1", new_node("n1"), NOW)
        .await
        .unwrap();
    assert_eq!(
        node,
        NodeRecord {
            name: node_name("n1"),
            site: site_name("paris-1"),
            enrolled_unix: NOW,
            last_seen_unix: None,
            conn_state: ConnState::Enrolling,
            conn_changed_unix: NOW,
            draining: false,
            labels: BTreeMap::new(),
            desired_generation: 1,
            applied_generation: 0,
            last_outcome: 0,
            last_message: String::new(),
            facts: Some(facts("n1")),
            cert: new_node("n1").cert,
            next_cert: None,
            removed: None,
        }
    );
    assert_eq!(store.get_node(&node_name("n1")).await.unwrap(), node);

    let token = &store.list_join_tokens().await.unwrap()[0];
    assert_eq!(token.used_by_node, Some(node_name("n1")));
    assert_eq!(token.used_unix, Some(NOW));

    let err = store
        .enroll_node("hash-of-jt-1", new_node("n2"), NOW + 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::JoinTokenUsed { ref node } if node == "n1"),
        "{err:?}"
    );
    let err = store.get_node(&node_name("n2")).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "node", .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn enrollment_refuses_expired_and_unknown_tokens() {
    let store = fleet(&[]).await;
    store
        .create_join_token(join_token("jt-1", "paris-1", NOW))
        .await
        .unwrap();

    // Expiry is exclusive: a token expiring now is already expired.
    let err = store
        .enroll_node("hash-of-jt-1", new_node("n1"), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::JoinTokenExpired), "{err:?}");
    let ok = store
        .enroll_node("hash-of-jt-1", new_node("n1"), NOW - 1)
        .await
        .unwrap();
    assert_eq!(ok.name.as_str(), "n1");

    let err = store
        .enroll_node("hash-of-nothing", new_node("n2"), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::JoinTokenUnknown), "{err:?}");
    assert_eq!(store.list_nodes(None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_token_is_checked_without_being_spent() {
    let store = fleet(&[]).await;
    store
        .create_join_token(join_token("jt-1", "paris-1", NOW + 60))
        .await
        .unwrap();
    for _ in 0..2 {
        let token = store.usable_join_token("hash-of-jt-1", NOW).await.unwrap();
        assert_eq!(
            (token.id.as_str(), token.site.as_str()),
            ("jt-1", "paris-1")
        );
        assert_eq!(token.used_by_node, None);
    }
    assert_eq!(store.list_join_tokens().await.unwrap()[0].used_unix, None);
    // The same refusals as enrollment, in the same order.
    let err = store
        .usable_join_token("hash-of-nothing", NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::JoinTokenUnknown), "{err:?}");
    let err = store
        .usable_join_token("hash-of-jt-1", NOW + 60)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::JoinTokenExpired), "{err:?}");
    store
        .enroll_node("hash-of-jt-1", new_node("n1"), NOW)
        .await
        .unwrap();
    let err = store
        .usable_join_token("hash-of-jt-1", NOW + 60)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::JoinTokenUsed { ref node } if node == "n1"),
        "{err:?}"
    );
}

#[tokio::test]
async fn duplicate_node_name_leaves_the_token_unused() {
    let store = fleet(&["n1"]).await;
    store
        .create_join_token(join_token("jt-2", "paris-1", NOW + 3600))
        .await
        .unwrap();

    let err = store
        .enroll_node("hash-of-jt-2", new_node("n1"), NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { kind: "node", ref name } if name == "n1"),
        "{err:?}"
    );
    let tokens = store.list_join_tokens().await.unwrap();
    let second = tokens.iter().find(|t| t.id == "jt-2").unwrap();
    assert_eq!(second.used_by_node, None);
    assert_eq!(second.used_unix, None);

    // The operator picks another name and the same token works.
    let node = store
        .enroll_node("hash-of-jt-2", new_node("n2"), NOW)
        .await
        .unwrap();
    assert_eq!(node.name.as_str(), "n2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enrollments_with_one_token_admit_exactly_one() {
    let store = Arc::new(fleet(&[]).await);
    store
        .create_join_token(join_token("jt-1", "paris-1", NOW + 3600))
        .await
        .unwrap();

    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .enroll_node("hash-of-jt-1", new_node(&format!("n{i}")), NOW)
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(node) => winners.push(node.name),
            Err(StoreError::JoinTokenUsed { node }) => {
                assert!(node.starts_with('n'), "{node}");
            }
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let nodes = store.list_nodes(None).await.unwrap();
    assert_eq!(names(&nodes), [winners[0].as_str()]);
    let token = &store.list_join_tokens().await.unwrap()[0];
    assert_eq!(token.used_by_node.as_ref(), Some(&winners[0]));
}

/// Two stores (two connections) on one file: the IMMEDIATE transaction
/// and the busy timeout, not just the in-process mutex, keep the token
/// single-use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enrollments_across_connections_admit_exactly_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("colocd.db");
    let first = SqliteStore::open(&path).unwrap();
    let second = SqliteStore::open(&path).unwrap();
    first.create_site(site("paris-1")).await.unwrap();
    first
        .create_join_token(join_token("jt-1", "paris-1", NOW + 3600))
        .await
        .unwrap();

    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            tokio::spawn(async move {
                store
                    .enroll_node("hash-of-jt-1", new_node(&format!("n{i}")), NOW)
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::JoinTokenUsed { .. }) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(second.list_nodes(None).await.unwrap().len(), 1);
}

// ---- nodes

#[tokio::test]
async fn nodes_are_found_by_name_fingerprint_and_site() {
    let store = fleet(&["n2", "n1"]).await;
    store.create_site(site("lyon-1")).await.unwrap();
    store
        .create_join_token(join_token("jt-l", "lyon-1", NOW + 3600))
        .await
        .unwrap();
    store
        .enroll_node("hash-of-jt-l", new_node("l1"), NOW)
        .await
        .unwrap();

    assert_eq!(
        names(&store.list_nodes(None).await.unwrap()),
        ["l1", "n1", "n2"]
    );
    assert_eq!(
        names(&store.list_nodes(Some(&site_name("paris-1"))).await.unwrap()),
        ["n1", "n2"]
    );
    assert!(
        store
            .list_nodes(Some(&site_name("brest")))
            .await
            .unwrap()
            .is_empty()
    );

    let by_fp = store.node_by_fingerprint("fp-n2").await.unwrap().unwrap();
    assert_eq!(by_fp.name.as_str(), "n2");
    assert_eq!(store.node_by_fingerprint("fp-zz").await.unwrap(), None);

    let err = store.get_node(&node_name("zz")).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "node", ref name } if name == "zz"),
        "{err:?}"
    );
}

#[tokio::test]
async fn draining_bumps_the_generation_only_on_change() {
    let store = fleet(&["n1"]).await;
    let n1 = node_name("n1");

    let node = store.set_draining(&n1, false).await.unwrap();
    assert_eq!((node.draining, node.desired_generation), (false, 1));
    let node = store.set_draining(&n1, true).await.unwrap();
    assert_eq!((node.draining, node.desired_generation), (true, 2));
    let node = store.set_draining(&n1, true).await.unwrap();
    assert_eq!((node.draining, node.desired_generation), (true, 2));
    let node = store.set_draining(&n1, false).await.unwrap();
    assert_eq!((node.draining, node.desired_generation), (false, 3));
    assert_eq!(store.get_node(&n1).await.unwrap(), node);

    let err = store
        .set_draining(&node_name("zz"), true)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "node", .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn label_changes_apply_to_named_nodes_and_bump_generations() {
    let store = fleet(&["n1", "n2", "n3"]).await;

    let changed = store
        .change_labels(LabelChange {
            nodes: vec![node_name("n3"), node_name("n1"), node_name("n3")],
            set: BTreeMap::from([
                ("rack".to_owned(), "a".to_owned()),
                ("tier".to_owned(), "gold".to_owned()),
            ]),
            remove: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(names(&changed), ["n1", "n3"]);
    for node in &changed {
        assert_eq!(node.desired_generation, 2);
        assert_eq!(node.labels["rack"], "a");
        assert_eq!(&store.get_node(&node.name).await.unwrap(), node);
    }
    let n2 = store.get_node(&node_name("n2")).await.unwrap();
    assert!(n2.labels.is_empty());
    assert_eq!(n2.desired_generation, 1);

    // Empty node list: every node; set and remove in one change.
    let changed = store
        .change_labels(LabelChange {
            nodes: Vec::new(),
            set: BTreeMap::from([("rack".to_owned(), "b".to_owned())]),
            remove: vec!["tier".to_owned(), "absent".to_owned()],
        })
        .await
        .unwrap();
    assert_eq!(names(&changed), ["n1", "n2", "n3"]);
    let generations: Vec<_> = changed.iter().map(|n| n.desired_generation).collect();
    assert_eq!(generations, [3, 2, 3]);
    for node in &changed {
        assert_eq!(
            node.labels,
            BTreeMap::from([("rack".to_owned(), "b".to_owned())])
        );
    }
}

#[tokio::test]
async fn label_change_naming_an_unknown_node_changes_nothing() {
    let store = fleet(&["n1"]).await;
    let before = store.get_node(&node_name("n1")).await.unwrap();

    let err = store
        .change_labels(LabelChange {
            nodes: vec![node_name("n1"), node_name("ghost")],
            set: BTreeMap::from([("rack".to_owned(), "a".to_owned())]),
            remove: Vec::new(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "node", ref name } if name == "ghost"),
        "{err:?}"
    );
    assert_eq!(store.get_node(&node_name("n1")).await.unwrap(), before);
}

#[tokio::test]
async fn disconnected_nodes_become_unreachable_after_the_cutoff() {
    let store = fleet(&["n1", "n2", "n3", "n4"]).await;
    store
        .set_conn_state(&node_name("n1"), ConnState::Disconnected, 100)
        .await
        .unwrap();
    store
        .set_conn_state(&node_name("n2"), ConnState::Disconnected, 200)
        .await
        .unwrap();
    store
        .set_conn_state(&node_name("n3"), ConnState::Connected, 50)
        .await
        .unwrap();
    store
        .set_conn_state(&node_name("n4"), ConnState::Disconnected, 90)
        .await
        .unwrap();
    // Repeating a state keeps the time it was entered.
    store
        .set_conn_state(&node_name("n4"), ConnState::Disconnected, 250)
        .await
        .unwrap();
    let n4 = store.get_node(&node_name("n4")).await.unwrap();
    assert_eq!(
        (n4.conn_state, n4.conn_changed_unix),
        (ConnState::Disconnected, 90)
    );

    let marked = store.mark_unreachable(150, 300).await.unwrap();
    assert_eq!(marked, [node_name("n1"), node_name("n4")]);
    let n1 = store.get_node(&node_name("n1")).await.unwrap();
    assert_eq!(
        (n1.conn_state, n1.conn_changed_unix),
        (ConnState::Unreachable, 300)
    );
    let n2 = store.get_node(&node_name("n2")).await.unwrap();
    assert_eq!(
        (n2.conn_state, n2.conn_changed_unix),
        (ConnState::Disconnected, 200)
    );
    let n3 = store.get_node(&node_name("n3")).await.unwrap();
    assert_eq!(n3.conn_state, ConnState::Connected);

    // Already unreachable nodes are not reported again.
    assert!(store.mark_unreachable(150, 400).await.unwrap().is_empty());

    let err = store
        .set_conn_state(&node_name("zz"), ConnState::Connected, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "node", .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn seen_batches_update_known_nodes_and_ignore_the_rest() {
    let store = fleet(&["n1", "n2"]).await;
    store.record_seen(Vec::new()).await.unwrap();

    // A heartbeat batch the size of a large fleet, mostly unknown names.
    let mut batch: Vec<_> = (0..5000)
        .map(|i| (node_name(&format!("gone-{i}")), NOW + 5))
        .collect();
    batch.push((node_name("n1"), NOW + 10));
    batch.push((node_name("n2"), NOW + 20));
    store.record_seen(batch).await.unwrap();

    let nodes = store.list_nodes(None).await.unwrap();
    let seen: Vec<_> = nodes.iter().map(|n| n.last_seen_unix).collect();
    assert_eq!(seen, [Some(NOW + 10), Some(NOW + 20)]);
    assert_eq!(nodes.len(), 2);
}

#[tokio::test]
async fn observed_state_and_facts_are_recorded() {
    let store = fleet(&["n1"]).await;
    let n1 = node_name("n1");

    store
        .record_observed(&n1, 7, 2, "volume quota applied")
        .await
        .unwrap();
    let mut new_facts = facts("n1");
    new_facts.memory_bytes = 128 << 30;
    new_facts.kernel_version = "6.1.0-28-amd64".into();
    store.record_facts(&n1, &new_facts).await.unwrap();

    let node = store.get_node(&n1).await.unwrap();
    assert_eq!(node.applied_generation, 7);
    assert_eq!(node.last_outcome, 2);
    assert_eq!(node.last_message, "volume quota applied");
    assert_eq!(node.facts, Some(new_facts.clone()));

    let zz = node_name("zz");
    let err = store.record_observed(&zz, 1, 0, "").await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "node", .. }),
        "{err:?}"
    );
    let err = store.record_facts(&zz, &new_facts).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "node", .. }),
        "{err:?}"
    );
    let err = store
        .record_observed(&n1, u64::MAX, 0, "")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
}

#[tokio::test]
async fn every_operation_is_timed_under_the_name_of_its_store_method() {
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let store = SqliteStore::open_in_memory()
        .unwrap()
        .with_metrics(metrics.clone());
    store.create_site(site("lyon-1")).await.unwrap();
    store.list_sites().await.unwrap();
    store.list_sites().await.unwrap();
    let _ = store.get_site(&site_name("nantes")).await;

    let ops: BTreeMap<String, u64> = metrics
        .store_values()
        .into_iter()
        .map(|(labels, values)| (labels[0].to_string(), values.count))
        .collect();
    assert_eq!(ops.get("create_site"), Some(&1), "{ops:?}");
    assert_eq!(ops.get("list_sites"), Some(&2), "{ops:?}");
    assert_eq!(
        ops.get("get_site"),
        Some(&1),
        "a refused read is timed too: {ops:?}"
    );
    assert!(
        !ops.contains_key("other"),
        "every operation is named: {ops:?}"
    );
}
