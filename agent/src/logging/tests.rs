//! Events become journal entries with their fields as journal fields.

use std::sync::{Arc, Mutex};

use super::*;

/// Runs `f` with a journal layer that records entries, and returns them.
fn entries(f: impl FnOnce()) -> Vec<Entry> {
    let seen: Arc<Mutex<Vec<Entry>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let subscriber = tracing_subscriber::registry().with(JournalLayer::new(move |e: &Entry| {
        sink.lock().unwrap().push(e.clone());
    }));
    tracing::subscriber::with_default(subscriber, f);
    seen.lock().unwrap().clone()
}

#[test]
fn fields_become_journal_fields_and_stay_readable_in_the_message() {
    let got = entries(|| {
        tracing::info!(
            message_id = ids::CONFIG_APPLIED,
            node = "node-1",
            generation = 4u64,
            tenant = "asso-x",
            volume = %"00000000000000a1",
            "desired configuration applied"
        );
    });
    assert_eq!(got.len(), 1);
    let entry = &got[0];
    assert_eq!(entry.level, Level::INFO);
    assert_eq!(
        entry.message,
        "desired configuration applied node=node-1 generation=4 tenant=asso-x volume=00000000000000a1"
    );
    let field = |name: &str| {
        entry
            .fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(field("MESSAGE_ID"), Some(ids::CONFIG_APPLIED));
    assert_eq!(field("NODE"), Some("node-1"));
    assert_eq!(field("GENERATION"), Some("4"));
    assert_eq!(field("COLOC_TENANT"), Some("asso-x"));
    assert_eq!(field("VOLUME"), Some("00000000000000a1"));
    assert_eq!(field("TENANT"), None);

    // The record handed to the journal writer carries the same fields.
    let mut keys = Vec::new();
    entry.with_record(|record| {
        struct Keys<'a>(&'a mut Vec<String>);
        impl<'kvs> log::kv::VisitSource<'kvs> for Keys<'_> {
            fn visit_pair(
                &mut self,
                key: log::kv::Key<'kvs>,
                value: log::kv::Value<'kvs>,
            ) -> Result<(), log::kv::Error> {
                self.0.push(format!("{key}={value}"));
                Ok(())
            }
        }
        assert_eq!(record.level(), log::Level::Info);
        assert_eq!(record.args().to_string(), entry.message);
        record.key_values().visit(&mut Keys(&mut keys)).unwrap();
    });
    assert!(keys.contains(&"GENERATION=4".to_owned()), "{keys:?}");
    assert!(keys.contains(&"COLOC_TENANT=asso-x".to_owned()), "{keys:?}");
}

#[test]
fn field_names_are_safe_journal_names() {
    assert_eq!(journal_field("generation"), "GENERATION");
    assert_eq!(journal_field("tenant"), "COLOC_TENANT");
    assert_eq!(journal_field("message_id"), "MESSAGE_ID");
    assert_eq!(journal_field("ledger_generation"), "LEDGER_GENERATION");
    assert_eq!(journal_field("r#type"), "R_TYPE");
    assert_eq!(
        journal_field("_pid"),
        "PID",
        "no trusted (underscore) field"
    );
}

#[test]
fn message_ids_are_constant_128_bit_ids_documented_once_each() {
    let doc = include_str!("../../../docs/ARCHITECTURE.md");
    let mut seen = std::collections::BTreeSet::new();
    for (name, id) in ids::ALL {
        assert_eq!(id.len(), 32, "{name}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{name}"
        );
        assert!(seen.insert(*id), "{name} reuses an id");
        assert!(
            doc.contains(&format!("`{id}`")) && doc.contains(&format!("`{name}`")),
            "docs/ARCHITECTURE.md must list {name} ({id})"
        );
    }
}
