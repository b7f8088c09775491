//! A node's life after enrollment, through a real colocd with agent
//! sessions driven by hand: `Nodes.RemoveNode` (admins only, confirmed,
//! audited) refuses the node's certificate from then on and closes its
//! session, leaving its volumes as orphans; node certificates renewed
//! over the session once two thirds of their lifetime have passed (the
//! clock is moved, never slept on). The real agent's side of the renewal
//! is tested in agent/.

use std::time::Duration;

use coloc_controller::config::ControllerConfig;
use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_tests::*;
use tonic::Code;

const GIB: u64 = 1 << 30;

/// The status colocd answered with, from a test helper's error.
fn status_of(err: &anyhow::Error) -> Option<&tonic::Status> {
    err.chain().find_map(|e| e.downcast_ref::<tonic::Status>())
}

fn remove_req(name: &str, confirm: &str) -> pb::RemoveNodeRequest {
    pb::RemoveNodeRequest {
        name: name.into(),
        confirm: confirm.into(),
    }
}

/// The attack: a member tries to remove a node; an admin removes it; its
/// agent, reconnecting with the certificate it still holds, is refused.
#[tokio::test]
async fn a_removed_node_is_cut_off_and_its_volumes_orphaned() -> Result<()> {
    init_test_logging();
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let mut agents = raw_fleet(&ctl, "paris-1", &["n1", "n2"]).await?;
    let n2 = agents.pop().expect("two agents");
    let n1 = agents.pop().expect("two agents");
    create_pool(
        &mut admin,
        "n1",
        "tank",
        apb::PoolKind::Zfs,
        "serial:tank-n1-1",
    )
    .await?;
    create_tenant(&mut admin, "asso-a", pb::Offer::Participatif).await?;
    let member = create_user(&mut admin, "mia", "asso-a", pb::Role::Member).await?;
    create_volume(
        &mut admin,
        NewVolume {
            tenant: "asso-a",
            name: "data",
            node: "n1",
            pool: "tank",
            size_bytes: GIB,
            encrypted: false,
        },
    )
    .await?;

    // A member cannot remove a node, even confirmed; nothing changes.
    let mut mia = ctl.api(&member).await?;
    let refused = mia
        .nodes
        .remove_node(remove_req("n1", "n1"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    // Nor can an anonymous caller.
    let mut anonymous = ctl.anonymous().await?;
    let refused = anonymous
        .nodes
        .remove_node(remove_req("n1", "n1"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    // An admin must confirm with the name.
    for confirm in ["", "n2", "N1"] {
        let refused = admin
            .nodes
            .remove_node(remove_req("n1", confirm))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().contains("confirm"), "{refused:?}");
    }
    assert!(!n1.is_ended());
    let n = node(&mut admin, "n1").await?;
    assert_eq!(n.status, pb::NodeStatus::Ready as i32);
    assert_eq!(n.removed_unix, 0);

    let removed = admin
        .nodes
        .remove_node(remove_req("n1", "n1"))
        .await?
        .into_inner();
    assert_eq!(removed.orphaned_volumes, vec!["asso-a/data".to_string()]);
    assert!(removed.orphaned_instances.is_empty());
    let n = removed.node.expect("the node");
    assert_eq!(n.status, pb::NodeStatus::Removed as i32);
    assert_eq!(n.removed_by, "user:admin");
    assert!(n.removed_unix > 0);

    // Its session is closed at once; the other node's is not.
    n1.wait_ended().await?;
    assert!(!n2.is_ended());

    // Reconnecting with its old certificate is refused.
    let (key, cert) = n1.identity();
    let (key, cert) = (key.to_string(), cert.to_string());
    drop(n1);
    let err = RawAgent::connect(&ctl, "n1", key.clone(), cert.clone())
        .await
        .err()
        .expect("a removed node's certificate opened a session");
    let status = status_of(&err).unwrap_or_else(|| panic!("not refused by colocd: {err:#}"));
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("was removed"), "{status:?}");
    // The certificate does not work as a user credential either.
    let ch = ctl.channel_with_identity(&cert, &key).await?;
    let mut as_cert = Api::new(ch, None);
    let refused = as_cert
        .nodes
        .list_nodes(pb::ListNodesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    // Removing it again is refused; so is draining it.
    let again = admin
        .nodes
        .remove_node(remove_req("n1", "n1"))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
    let drain = admin
        .nodes
        .drain_node(pb::DrainNodeRequest {
            name: "n1".into(),
            drain: true,
        })
        .await
        .unwrap_err();
    assert_eq!(drain.code(), Code::FailedPrecondition, "{drain:?}");

    // The node is listed as removed, its volume as an orphan, untouched.
    let nodes = all_nodes(&mut admin).await?;
    let listed = nodes.iter().find(|n| n.name == "n1").expect("n1 listed");
    assert_eq!(listed.status, pb::NodeStatus::Removed as i32);
    let v = volume(&mut admin, "asso-a/data").await?;
    assert!(v.node_removed, "{v:?}");
    assert_eq!(v.lifecycle, pb::VolumeLifecycle::Active as i32);
    // The tenant's members see it too.
    let v = volume(&mut mia, "asso-a/data").await?;
    assert!(v.node_removed, "{v:?}");

    // Deleting the orphan releases it at once (nothing to tell a node).
    let v = admin
        .storage
        .delete_volume(pb::VolumeRef {
            volume: "asso-a/data".into(),
        })
        .await?
        .into_inner();
    assert_eq!(v.lifecycle, pb::VolumeLifecycle::Destroyed as i32, "{v:?}");

    // Audited: the refusal and the removal.
    let entries = audit_entries(&mut admin, "user:mia").await?;
    assert!(has_audit_entry(
        &entries,
        "user:mia",
        "node.remove",
        pb::AuditOutcome::Denied
    ));
    let entries = audit_entries(&mut admin, "user:admin").await?;
    let entry = entries
        .iter()
        .find(|e| e.action == "node.remove" && e.outcome == pb::AuditOutcome::Allowed as i32)
        .expect("the removal is audited");
    assert_eq!(entry.target, "node:n1");
    assert!(entry.detail.contains("asso-a/data"), "{entry:?}");
    Ok(())
}

/// Waits until a run of the task that started at or after `after_ms`
/// (colocd's clock) has finished; returns its summary.
async fn wait_task_run(admin: &Api, task: &str, after_ms: i64) -> Result<String> {
    wait_for(
        &format!("a run of {task} after {after_ms}"),
        Duration::from_secs(20),
        || {
            let mut api = admin.clone();
            async move {
                let tasks = api
                    .tasks
                    .list_tasks(pb::ListTasksRequest {})
                    .await
                    .ok()?
                    .into_inner()
                    .tasks;
                let t = tasks.into_iter().find(|t| t.name == task)?;
                (t.last_start_unix_ms >= after_ms && !t.running).then_some(t.last_summary)
            }
        },
    )
    .await
}

/// Takes the next request, which must be a certificate renewal.
async fn next_renewal(agent: &mut RawAgent) -> Result<apb::Request> {
    loop {
        let request = agent.next_request().await?;
        if matches!(request.kind, Some(apb::request::Kind::RenewCertificate(_))) {
            return Ok(request);
        }
    }
}

fn ok_result(id: u64, payload: Option<apb::request_result::Payload>) -> apb::RequestResult {
    apb::RequestResult {
        request_id: id,
        ok: true,
        error: String::new(),
        payload,
    }
}

#[tokio::test]
async fn node_certificates_are_renewed_after_two_thirds_of_their_life() -> Result<()> {
    init_test_logging();
    let ctl = TestController::start_with(ControllerConfig {
        node_cert_days: 30,
        ..fast_config()
    })
    .await?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let mut agent = raw_fleet(&ctl, "paris-1", &["n1"])
        .await?
        .pop()
        .expect("n1");
    let before = node(&mut admin, "n1").await?;
    let life = before.cert_not_after_unix - before.enrolled_unix;
    assert!((29 * 86_400..=30 * 86_400).contains(&life), "{before:?}");
    assert!(before.next_cert_fingerprint.is_empty());

    // Not due before two thirds of its life: nothing is asked.
    ctl.clock.advance_secs(19 * 86_400);
    wait_task_run(&admin, "node-certificates", ctl.now() * 1000).await?;
    assert!(agent.try_next_request().is_none());

    // Past two thirds: colocd asks for a CSR, signs it, sends it.
    ctl.clock.advance_secs(2 * 86_400);
    let request = next_renewal(&mut agent).await?;
    let (key, csr) = key_and_csr("n1")?;
    agent
        .answer(ok_result(
            request.id,
            Some(apb::request_result::Payload::Csr(apb::CertificateRequest {
                csr_pem: csr,
            })),
        ))
        .await?;
    let install = agent.next_request().await?;
    let Some(apb::request::Kind::InstallCertificate(new)) = install.kind else {
        panic!("expected the renewed certificate, got {install:?}");
    };
    assert!(new.not_after_unix > before.cert_not_after_unix);
    agent.answer(ok_result(install.id, None)).await?;
    // colocd closes the session so that the node reconnects with it.
    agent.wait_ended().await?;
    let pending = node(&mut admin, "n1").await?;
    assert_eq!(pending.cert_fingerprint, before.cert_fingerprint);
    assert!(!pending.next_cert_fingerprint.is_empty());

    let (old_key, old_cert) = agent.identity();
    let (old_key, old_cert) = (old_key.to_string(), old_cert.to_string());
    drop(agent);
    let renewed = RawAgent::connect(&ctl, "n1", key, new.certificate_pem).await?;
    renewed
        .wait_desired("configuration after renewal", |d| d.generation >= 1)
        .await?;
    let after = node(&mut admin, "n1").await?;
    assert_eq!(after.cert_fingerprint, pending.next_cert_fingerprint);
    assert!(after.next_cert_fingerprint.is_empty());
    assert_eq!(after.cert_not_after_unix, new.not_after_unix);
    assert!(after.cert_renew_after_unix > ctl.now());

    // The replaced certificate is refused from now on.
    let err = RawAgent::connect(&ctl, "n1", old_key, old_cert)
        .await
        .err()
        .expect("the replaced certificate opened a session");
    let status = status_of(&err).unwrap_or_else(|| panic!("not refused by colocd: {err:#}"));
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    let entries = audit_entries(&mut admin, "system").await?;
    for action in ["node.certificate.renew", "node.certificate.use"] {
        assert!(
            has_audit_entry(&entries, "system", action, pb::AuditOutcome::Allowed),
            "{action} not audited: {entries:#?}"
        );
    }
    Ok(())
}

/// A TLS time at colocd's clock, so that the test checks colocd's
/// certificate as a client would on the date the test moved to.
#[derive(Debug)]
struct ControllerTime(std::sync::Arc<coloc_controller::time::OffsetClock>);

impl rustls::time_provider::TimeProvider for ControllerTime {
    fn current_time(&self) -> Option<rustls::pki_types::UnixTime> {
        use coloc_controller::time::Clock;
        let secs = u64::try_from(self.0.now()).ok()?;
        Some(rustls::pki_types::UnixTime::since_unix_epoch(
            Duration::from_secs(secs),
        ))
    }
}

/// The certificate colocd presents to a new connection, checked against
/// the cooperative's CA at colocd's clock (DER).
async fn presented_certificate(ctl: &TestController) -> Result<Vec<u8>> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca = pem::parse(&ctl.ca_pem)?;
    roots.add(rustls::pki_types::CertificateDer::from(ca.into_contents()))?;
    let config = rustls::ClientConfig::builder_with_details(
        provider,
        std::sync::Arc::new(ControllerTime(ctl.clock.clone())),
    )
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(ctl.addr()).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let tls = connector.connect(name, tcp).await?;
    let (_, session) = tls.get_ref();
    let cert = session
        .peer_certificates()
        .and_then(|c| c.first())
        .context("no certificate presented")?;
    Ok(cert.to_vec())
}

/// colocd's own certificate is renewed by its background task once two
/// thirds of its two years have passed, and presented to new connections
/// without a restart; open sessions keep going.
#[tokio::test]
async fn the_server_certificate_is_renewed_and_swapped_without_a_restart() -> Result<()> {
    init_test_logging();
    let mut ctl = TestController::start_with(ControllerConfig {
        // The node's own certificate must outlive the clock's move.
        node_cert_days: 1825,
        ..fast_config()
    })
    .await?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let agent = raw_fleet(&ctl, "paris-1", &["n1"])
        .await?
        .pop()
        .expect("n1");
    let first = presented_certificate(&ctl).await?;
    let on_disk = std::fs::read_to_string(ctl.data_dir().join("server.pem"))?;

    // Two thirds of two years, and a day.
    ctl.clock.advance_secs(2 * 2 * 365 * 86_400 / 3 + 86_400);
    let renewed = wait_for(
        "a renewed server certificate on new connections",
        Duration::from_secs(20),
        || async {
            presented_certificate(&ctl)
                .await
                .ok()
                .filter(|c| *c != first)
        },
    )
    .await?;
    // Written too, so that a restart presents it.
    let written = std::fs::read_to_string(ctl.data_dir().join("server.pem"))?;
    assert_ne!(written, on_disk);
    // The session opened before is still open.
    assert!(!agent.is_ended());
    drop(agent);

    ctl.restart().await?;
    assert_eq!(presented_certificate(&ctl).await?, renewed);
    Ok(())
}
