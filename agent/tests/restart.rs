//! After a reboot with the controller down, the node runs what its ledger
//! holds: the agent reconciles from it before, and without, any session.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use coloc_agent::config::{AgentConfig, CaSource, JoinTokenSource, SessionConfig};
use coloc_agent::enroll::{NodeIdentity, store_identity};
use coloc_agent::host::Host;
use coloc_agent::ledger::{FileLedger, LedgerStore};
use coloc_agent::status::{AgentStatus, Outcome, read_status};
use coloc_agent::tls::ClientIdentity;
use coloc_agent::{AgentOptions, spawn_agent};
use coloc_proto::agent::v1::DesiredConfig;
use coloc_proto::domain::NodeName;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};
use tokio::sync::watch;

const DEADLINE: Duration = Duration::from_secs(20);

/// A throwaway CA, and a node certificate it signed.
struct Pki {
    ca_pem: String,
    node_cert_pem: String,
    node_key_pem: String,
}

fn pki(node: &str) -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let node_key = KeyPair::generate().expect("node key");
    let mut node_params = CertificateParams::new(vec![node.to_owned()]).expect("node params");
    node_params
        .distinguished_name
        .push(DnType::CommonName, node);
    let node_cert = node_params
        .signed_by(&node_key, &issuer)
        .expect("node cert");
    Pki {
        ca_pem: ca_cert.pem(),
        node_cert_pem: node_cert.pem(),
        node_key_pem: node_key.serialize_pem(),
    }
}

/// An address where nothing listens: connections are refused at once.
fn refusing_controller() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("https://127.0.0.1:{port}")
}

fn ledgered(generation: u64) -> DesiredConfig {
    DesiredConfig {
        generation,
        node_name: "n1".into(),
        site: "paris-1".into(),
        draining: true,
        labels: HashMap::from([
            ("rack".into(), "b2".into()),
            ("power".into(), "ups-1".into()),
        ]),
        ..Default::default()
    }
}

fn config(state_dir: &Path, ca_pem: &str) -> AgentConfig {
    let mut config = AgentConfig::new(
        refusing_controller(),
        CaSource::Pem(ca_pem.to_owned()),
        NodeName::new("n1").expect("valid"),
        state_dir,
    )
    .expect("config");
    config.join_token = Some(JoinTokenSource::Inline("token-1".into()));
    config.session = SessionConfig {
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(2_000),
    };
    config
}

async fn wait_for(
    rx: &mut watch::Receiver<AgentStatus>,
    what: &str,
    cond: impl FnMut(&AgentStatus) -> bool,
) -> AgentStatus {
    let waited = tokio::time::timeout(DEADLINE, rx.wait_for(cond))
        .await
        .map(|r| r.map(|status| status.clone()));
    match waited {
        Ok(Ok(status)) => status,
        Ok(Err(_)) => panic!("agent stopped while waiting for {what}"),
        Err(_) => panic!(
            "timed out waiting for {what}; last status: {:#?}",
            *rx.borrow()
        ),
    }
}

fn assert_runs_generation_7(status: &AgentStatus) {
    assert_eq!(status.ledger_generation, 7);
    assert!(status.reconcile_passes >= 1);
    assert!(!status.connected);
    assert!(status.ready);
    assert_eq!(status.applied_generation, 7);
    assert_eq!(status.last_outcome, Some(Outcome::Applied));
    assert!(status.draining);
    assert_eq!(status.labels.get("rack").map(String::as_str), Some("b2"));
    assert_eq!(
        status.labels.get("power").map(String::as_str),
        Some("ups-1")
    );
    assert_eq!(status.site, "paris-1");
}

#[tokio::test]
async fn enrolled_node_reconciles_from_its_ledger_while_the_controller_is_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let pki = pki("n1");
    store_identity(
        &state,
        &NodeIdentity {
            node_name: NodeName::new("n1").expect("valid"),
            site: "paris-1".into(),
            client: ClientIdentity {
                cert_pem: pki.node_cert_pem.clone(),
                key_pem: pki.node_key_pem.clone(),
            },
            ca_pem: Some(pki.ca_pem.clone()),
        },
    )
    .expect("identity");
    FileLedger::new(&state).store(&ledgered(7)).expect("ledger");

    let agent = spawn_agent(AgentOptions {
        config: config(&state, &pki.ca_pem),
        host: Host::fake("n1"),
        ledger: Arc::new(FileLedger::new(&state)),
        write_state_files: true,
        device_events: None,
    });
    let mut rx = agent.status();
    let status = wait_for(&mut rx, "the ledger pass", |s| {
        s.ledger_generation == 7 && s.reconcile_passes >= 1
    })
    .await;
    assert_runs_generation_7(&status);

    // The session loop keeps trying in the background.
    let status = wait_for(&mut rx, "a failed connection attempt", |s| {
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("connect"))
    })
    .await;
    assert!(status.enrolled);
    assert!(!status.connected);
    assert_eq!(status.sessions_opened, 0);
    assert_runs_generation_7(&status);

    // `coloc-agent status` reads this file with everything down.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Ok(on_disk) = read_status(&state)
            && on_disk.ledger_generation == 7
            && on_disk.reconcile_passes >= 1
        {
            assert!(on_disk.draining);
            assert!(!on_disk.connected);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "status.json never showed generation 7"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    tokio::time::timeout(DEADLINE, agent.shutdown())
        .await
        .expect("shutdown must be prompt");
    let final_status = read_status(&state).expect("status after shutdown");
    assert!(!final_status.connected);
}

#[tokio::test]
async fn node_not_yet_enrolled_still_applies_its_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let pki = pki("n1");
    FileLedger::new(&state).store(&ledgered(7)).expect("ledger");

    let agent = spawn_agent(AgentOptions {
        config: config(&state, &pki.ca_pem),
        host: Host::fake("n1"),
        ledger: Arc::new(FileLedger::new(&state)),
        write_state_files: false,
        device_events: None,
    });
    let mut rx = agent.status();
    let status = wait_for(&mut rx, "the ledger pass", |s| {
        s.ledger_generation == 7 && s.reconcile_passes >= 1
    })
    .await;
    assert_runs_generation_7(&status);
    let status = wait_for(&mut rx, "a failed enrollment attempt", |s| {
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("reach the controller"))
    })
    .await;
    assert!(!status.enrolled);
    assert!(
        !state.join("status.json").exists(),
        "write_state_files is off"
    );
    tokio::time::timeout(DEADLINE, agent.shutdown())
        .await
        .expect("shutdown must be prompt");
}

#[tokio::test]
async fn corrupted_ledger_is_reported_and_not_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let pki = pki("n1");
    let ledger = FileLedger::new(&state);
    ledger.store(&ledgered(7)).expect("ledger");
    let mut bytes = std::fs::read(ledger.path()).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(ledger.path(), bytes).expect("corrupt");

    let agent = spawn_agent(AgentOptions {
        config: config(&state, &pki.ca_pem),
        host: Host::fake("n1"),
        ledger: Arc::new(ledger),
        write_state_files: false,
        device_events: None,
    });
    let mut rx = agent.status();
    let status = wait_for(&mut rx, "readiness", |s| s.ready).await;
    assert_eq!(status.reconcile_passes, 0);
    assert_eq!(status.ledger_generation, 0);
    assert!(!status.draining);
    assert!(
        status
            .ledger_error
            .as_deref()
            .is_some_and(|e| e.contains("corrupted")),
        "{status:#?}"
    );
    agent.shutdown().await;
}
