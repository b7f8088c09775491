//! The audit log: listing, paging, limits, bounded fields, and that rows
//! never change.

use super::fixtures::*;
use crate::store::audit::{AUDIT_PAGE_BYTES, AUDIT_TARGET_BYTES};
use crate::store::prelude::*;
use crate::store::sqlite::SqliteStore;
use crate::store::{AuditFields, AuditFilter, AuditOutcome, AuditRecord};

fn times(entries: &[AuditRecord]) -> Vec<i64> {
    entries.iter().map(|e| e.fields().at_unix_ms).collect()
}

#[tokio::test]
async fn audit_lists_newest_first_with_filters() {
    let store = SqliteStore::open_in_memory().unwrap();
    let entries = [
        audit(1000, "user:alice", None, AuditOutcome::Allowed),
        audit(2000, "user:bob", Some("asso-x"), AuditOutcome::Denied),
        audit(3000, "user:alice", Some("asso-x"), AuditOutcome::Allowed),
        audit(4000, "user:carol", Some("asso-y"), AuditOutcome::Failed),
        audit(5000, "user:alice", Some("asso-y"), AuditOutcome::Allowed),
    ];
    let mut ids = Vec::new();
    for entry in &entries {
        ids.push(store.append_audit(entry.clone()).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    let all = store.list_audit(AuditFilter::default()).await.unwrap();
    assert_eq!(times(&all.entries), [5000, 4000, 3000, 2000, 1000]);
    assert_eq!(all.next_before, None);
    let expected = AuditRecord::stored(ids[4], entries[4].clone().into_fields());
    assert_eq!(all.entries[0], expected);

    let page = store
        .list_audit(AuditFilter {
            before: Some(ids[3]),
            limit: 2,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(times(&page.entries), [3000, 2000]);
    assert_eq!(page.next_before, Some(ids[1]), "one more entry is older");
    let last = store
        .list_audit(AuditFilter {
            before: page.next_before,
            limit: 2,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(times(&last.entries), [1000]);
    assert_eq!(last.next_before, None);

    let of_x = store
        .list_audit(AuditFilter {
            tenant: Some(tenant_name("asso-x")),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(times(&of_x.entries), [3000, 2000]);

    let by_alice = store
        .list_audit(AuditFilter {
            actor: Some("user:alice".into()),
            before: Some(ids[4]),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(times(&by_alice.entries), [3000, 1000]);

    let alice_in_y = store
        .list_audit(AuditFilter {
            actor: Some("user:alice".into()),
            tenant: Some(tenant_name("asso-y")),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(alice_in_y.entries.len(), 1);
    assert_eq!(
        alice_in_y.entries[0].fields().outcome,
        AuditOutcome::Allowed
    );
    assert_eq!(alice_in_y.entries[0].fields().at_unix_ms, 5000);

    let huge_before = store
        .list_audit(AuditFilter {
            before: Some(u64::MAX),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(huge_before.entries.len(), 5);
}

#[tokio::test]
async fn audit_limit_defaults_to_100_and_caps_at_1000() {
    let store = SqliteStore::open_in_memory().unwrap();
    {
        // Seeded directly: 1100 round trips through the trait would
        // only make the test slow.
        let conn = store.conn.lock().unwrap();
        let tx = conn.unchecked_transaction().unwrap();
        for i in 0..1100 {
            tx.execute(
                "INSERT INTO audit (at_unix_ms, actor, action, target, tenant, outcome, \
                 detail) VALUES (?1, 'user:alice', 'Get', 'x', NULL, 'allowed', '')",
                [i],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let default = store.list_audit(AuditFilter::default()).await.unwrap();
    assert_eq!(default.entries.len(), 100);
    assert_eq!(default.entries[0].fields().at_unix_ms, 1099);
    assert!(default.next_before.is_some());
    let capped = store
        .list_audit(AuditFilter {
            limit: 5000,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(capped.entries.len(), 1000);
    assert_eq!(capped.entries[999].fields().at_unix_ms, 100);
    assert_eq!(capped.next_before, Some(capped.entries[999].id()));
}

/// What the store writes is bounded whoever builds the entry.
#[tokio::test]
async fn appended_entries_are_bounded_and_escaped() {
    let store = SqliteStore::open_in_memory().unwrap();
    let target = format!("node:evil\nforged entry\u{1b}[31m{}", "a".repeat(900_000));
    let id = store
        .append_audit(AuditRecord::new(AuditFields {
            at_unix_ms: 1,
            actor: "anonymous".into(),
            action: "node.show".into(),
            target: target.clone(),
            tenant: None,
            outcome: AuditOutcome::Denied,
            detail: "x\u{202e}y".repeat(10_000),
        }))
        .await
        .unwrap();
    let conn = store.conn.lock().unwrap();
    let (stored_target, detail): (String, String) = conn
        .query_row(
            "SELECT target, detail FROM audit WHERE id = ?1",
            [i64::try_from(id).unwrap()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(
        stored_target.len() <= AUDIT_TARGET_BYTES,
        "{}",
        stored_target.len()
    );
    assert!(
        stored_target.starts_with("node:evil\\nforged entry\\u{1b}[31maaa"),
        "{stored_target}"
    );
    assert!(
        stored_target.ends_with(&format!("… ({} bytes)", target.len())),
        "{stored_target}"
    );
    assert!(!stored_target.contains('\n') && !stored_target.contains('\u{1b}'));
    assert!(detail.starts_with("x\\u{202e}yx\\u{202e}y"), "{detail}");
    assert!(!detail.contains('\u{202e}'));
}

/// A row written before the rule existed (a 900 KB target) is listed
/// bounded, and a page stays within its byte budget.
#[tokio::test]
async fn old_huge_rows_are_listed_bounded_in_pages_of_bounded_size() {
    let store = SqliteStore::open_in_memory().unwrap();
    {
        let conn = store.conn.lock().unwrap();
        let tx = conn.unchecked_transaction().unwrap();
        let huge = format!("node:{}\nforged", "a".repeat(900_000));
        for i in 0..300 {
            tx.execute(
                "INSERT INTO audit (at_unix_ms, actor, action, target, tenant, outcome, \
                 detail) VALUES (?1, 'anonymous', 'node.show', ?2, NULL, 'denied', ?2)",
                rusqlite::params![i, huge],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let mut before = None;
    let mut seen = 0;
    let mut pages = 0;
    loop {
        let page = store
            .list_audit(AuditFilter {
                before,
                limit: 1000,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        let bytes: usize = page.entries.iter().map(AuditRecord::listed_bytes).sum();
        assert!(bytes <= AUDIT_PAGE_BYTES, "page of {bytes} bytes");
        for e in &page.entries {
            let f = e.fields();
            assert!(f.target.len() <= AUDIT_TARGET_BYTES);
            assert!(f.target.ends_with("… (900012 bytes)"), "{}", f.target);
            assert!(!f.detail.contains('\n'));
        }
        seen += page.entries.len();
        pages += 1;
        match page.next_before {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    assert_eq!(seen, 300);
    assert!(pages > 1, "300 entries of ~1.6 KB take more than one page");
}

#[tokio::test]
async fn audit_rows_cannot_be_updated_or_deleted() {
    let store = SqliteStore::open_in_memory().unwrap();
    let id = store
        .append_audit(audit(1000, "user:alice", None, AuditOutcome::Allowed))
        .await
        .unwrap();
    let id = i64::try_from(id).unwrap();

    let conn = store.conn.lock().unwrap();
    let err = conn
        .execute("UPDATE audit SET outcome = 'denied' WHERE id = ?1", [id])
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let err = conn
        .execute("DELETE FROM audit WHERE id = ?1", [id])
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let err = conn.execute("DELETE FROM audit", []).unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let count: i64 = conn
        .query_row(
            "SELECT count(*) FROM audit WHERE outcome = 'allowed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(count, 1);
}
