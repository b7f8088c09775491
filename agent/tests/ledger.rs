//! The ledger keeps the last accepted configuration across restarts, and
//! never hands back something damaged or older.

use std::collections::HashMap;

use coloc_agent::durable::temp_path;
use coloc_agent::ledger::{FileLedger, LEDGER_FILE, LedgerError, LedgerStore, MemoryLedger};
use coloc_proto::agent::v1::DesiredConfig;

fn desired(generation: u64) -> DesiredConfig {
    DesiredConfig {
        generation,
        node_name: "n1".into(),
        site: "paris-1".into(),
        draining: generation.is_multiple_of(2),
        labels: HashMap::from([("rack".into(), format!("r{generation}"))]),
        ..Default::default()
    }
}

#[test]
fn empty_ledger_loads_as_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = FileLedger::new(dir.path());
    assert_eq!(ledger.load().expect("load"), None);
}

#[test]
fn stored_configuration_survives_a_new_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    FileLedger::new(dir.path())
        .store(&desired(7))
        .expect("store");
    // A fresh instance stands for the agent after a restart.
    let reloaded = FileLedger::new(dir.path()).load().expect("load");
    assert_eq!(reloaded, Some(desired(7)));
}

#[test]
fn ledger_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = FileLedger::new(dir.path());
    ledger.store(&desired(1)).expect("store");
    let mode = std::fs::metadata(ledger.path())
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "ledger readable by others: {mode:o}");
}

#[test]
fn flipped_byte_is_detected_not_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = FileLedger::new(dir.path());
    ledger.store(&desired(7)).expect("store");
    let mut bytes = std::fs::read(ledger.path()).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(ledger.path(), &bytes).expect("corrupt");
    let err = ledger.load().expect_err("corruption must be reported");
    assert!(matches!(err, LedgerError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn torn_file_is_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = FileLedger::new(dir.path());
    ledger.store(&desired(7)).expect("store");
    let bytes = std::fs::read(ledger.path()).expect("read");
    for cut in [0, 3, 20, bytes.len() - 1] {
        std::fs::write(ledger.path(), &bytes[..cut]).expect("truncate");
        let err = ledger.load().expect_err("torn file must be reported");
        assert!(
            matches!(err, LedgerError::Corrupt { .. }),
            "cut {cut}: {err:?}"
        );
    }
}

#[test]
fn foreign_file_and_future_format_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = FileLedger::new(dir.path());
    std::fs::write(
        ledger.path(),
        b"generation = 7\nthis is not a ledger at all, really",
    )
    .expect("write");
    assert!(matches!(ledger.load(), Err(LedgerError::Corrupt { .. })));

    ledger.store(&desired(7)).expect("store");
    let mut bytes = std::fs::read(ledger.path()).expect("read");
    bytes[4] = 99;
    std::fs::write(ledger.path(), &bytes).expect("write");
    assert!(matches!(
        ledger.load(),
        Err(LedgerError::UnsupportedVersion { version: 99, .. })
    ));
}

#[test]
fn failed_write_leaves_the_previous_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = FileLedger::new(dir.path());
    ledger.store(&desired(7)).expect("store");
    // The write goes through a temporary file; make it impossible to
    // create (a directory in its place stops root too).
    let tmp = temp_path(&dir.path().join(LEDGER_FILE));
    std::fs::create_dir(&tmp).expect("block the temporary file");
    let err = ledger.store(&desired(8)).expect_err("write must fail");
    assert!(matches!(err, LedgerError::Io { .. }), "{err:?}");
    assert_eq!(ledger.load().expect("load"), Some(desired(7)));
    std::fs::remove_dir(&tmp).expect("unblock");
    ledger.store(&desired(8)).expect("store once unblocked");
    assert_eq!(ledger.load().expect("load"), Some(desired(8)));
}

#[test]
fn crash_before_rename_leaves_the_previous_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = FileLedger::new(dir.path());
    ledger.store(&desired(7)).expect("store");
    // What a power cut mid-write leaves: half a temporary file.
    let tmp = temp_path(ledger.path());
    let full = coloc_agent::ledger::encode(&desired(8));
    std::fs::write(&tmp, &full[..full.len() / 2]).expect("half write");
    assert_eq!(ledger.load().expect("load"), Some(desired(7)));
    // The next store simply reuses the temporary name.
    ledger.store(&desired(8)).expect("store");
    assert_eq!(ledger.load().expect("load"), Some(desired(8)));
    assert!(!tmp.exists());
}

#[test]
fn older_generation_is_refused_and_leaves_the_ledger_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = FileLedger::new(dir.path());
    let memory = MemoryLedger::new();
    for ledger in [&file as &dyn LedgerStore, &memory] {
        ledger.store(&desired(7)).expect("store 7");
        let err = ledger.store(&desired(6)).expect_err("6 is stale");
        assert!(
            matches!(
                err,
                LedgerError::Stale {
                    held: 7,
                    offered: 6
                }
            ),
            "{err:?}"
        );
        assert_eq!(ledger.load().expect("load"), Some(desired(7)));
        // The same generation is accepted (an idempotent rewrite).
        ledger.store(&desired(7)).expect("store 7 again");
        ledger.store(&desired(9)).expect("store 9");
        assert_eq!(ledger.load().expect("load"), Some(desired(9)));
    }
}

#[test]
fn corrupted_ledger_can_be_replaced_by_a_fresh_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = FileLedger::new(dir.path());
    std::fs::write(ledger.path(), b"garbage").expect("write");
    ledger
        .store(&desired(3))
        .expect("a damaged ledger must not block repair");
    assert_eq!(ledger.load().expect("load"), Some(desired(3)));
}
