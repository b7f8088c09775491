//! colocd as a sysadmin and an association's members meet it: a real
//! controller on a temporary SQLite file, real mTLS on loopback, raw
//! protocol clients.

use std::time::Duration;

use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_tests::*;
use tonic::Code;

fn code<T: std::fmt::Debug>(r: std::result::Result<T, tonic::Status>) -> Code {
    r.expect_err("the call should have been refused").code()
}

#[tokio::test]
async fn enrollment_consumes_the_token_once() -> Result<()> {
    init_test_logging();
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let token = join_token(&mut admin, "paris-1", 3600).await?;

    let (_key, cert) = enroll_raw(&ctl, &token, "n1").await.expect("enrolls");
    assert!(cert.contains("BEGIN CERTIFICATE"));
    let node = admin
        .nodes
        .get_node(pb::GetNodeRequest { name: "n1".into() })
        .await?
        .into_inner();
    assert_eq!(node.site, "paris-1");
    assert_eq!(node.status, pb::NodeStatus::Enrolling as i32);
    assert_eq!(node.facts.unwrap().cpu_count, 2);

    // The same token again, even for another name, is refused.
    let again = enroll_raw(&ctl, &token, "n2").await;
    assert_eq!(code(again.clone()), Code::Unauthenticated);
    assert!(again.unwrap_err().message().contains("already used"));

    let tokens = admin
        .nodes
        .list_join_tokens(pb::ListJoinTokensRequest {})
        .await?
        .into_inner()
        .tokens;
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].used_by_node, "n1");
    assert!(tokens[0].secret.is_empty(), "secrets are never listed");

    // A duplicate node name leaves a fresh token unused.
    let t2 = join_token(&mut admin, "paris-1", 3600).await?;
    assert_eq!(code(enroll_raw(&ctl, &t2, "n1").await), Code::AlreadyExists);
    enroll_raw(&ctl, &t2, "n2")
        .await
        .expect("token still usable");

    // Both outcomes are in the audit log.
    let entries = audit_entries(&mut admin, "").await?;
    let enrolls: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "node.enroll")
        .collect();
    assert!(
        enrolls
            .iter()
            .any(|e| e.outcome == pb::AuditOutcome::Denied as i32)
    );
    assert_eq!(
        enrolls
            .iter()
            .filter(|e| e.outcome == pb::AuditOutcome::Allowed as i32)
            .count(),
        2
    );
    Ok(())
}

#[tokio::test]
async fn expired_unknown_and_malformed_join_tokens_are_refused() -> Result<()> {
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let token = join_token(&mut admin, "paris-1", 60).await?;
    ctl.clock.advance_secs(61);
    let err = enroll_raw(&ctl, &token, "n1").await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("expired"), "{}", err.message());

    assert_eq!(
        code(enroll_raw(&ctl, "cjt_0000", "n1").await),
        Code::Unauthenticated
    );
    assert_eq!(
        code(enroll_raw(&ctl, &"x".repeat(10_000), "n1").await),
        Code::Unauthenticated
    );
    // Bad node names never reach the store.
    let good = join_token(&mut admin, "paris-1", 3600).await?;
    for bad in ["N1", "n1;reboot", "../n1", "", "n\n1"] {
        assert_eq!(
            code(enroll_raw(&ctl, &good, bad).await),
            Code::InvalidArgument,
            "{bad:?}"
        );
    }
    // ... and the token survived those attempts.
    enroll_raw(&ctl, &good, "n1")
        .await
        .expect("token still good");
    // A garbage CSR is refused with a clear error and consumes nothing.
    let t3 = join_token(&mut admin, "paris-1", 3600).await?;
    let mut client = ctl.agent_client().await?;
    let err = client
        .enroll(apb::EnrollRequest {
            join_token: t3.clone(),
            node_name: "n3".into(),
            csr_pem:
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
                    .into(),
            facts: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    enroll_raw(&ctl, &t3, "n3").await.expect("token still good");
    Ok(())
}

const GARBAGE_CSR: &str =
    "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n";

/// Enrolls with `token` and a CSR that cannot be parsed.
async fn enroll_with_garbage_csr(
    ctl: &TestController,
    token: &str,
    node: &str,
) -> Result<tonic::Status> {
    let mut client = ctl.agent_client().await?;
    Ok(client
        .enroll(apb::EnrollRequest {
            join_token: token.into(),
            node_name: node.into(),
            csr_pem: GARBAGE_CSR.into(),
            facts: None,
        })
        .await
        .expect_err("a garbage CSR never enrolls"))
}

#[tokio::test]
async fn the_join_token_is_checked_before_anything_else_and_names_no_node() -> Result<()> {
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let used = join_token(&mut admin, "paris-1", 3600).await?;
    enroll_raw(&ctl, &used, "secret-node").await?;
    let expired = join_token(&mut admin, "paris-1", 60).await?;
    ctl.clock.advance_secs(61);

    // Without a usable token the CSR is never read: the refusal is about
    // the token, whatever the CSR holds.
    for (token, says) in [
        ("cjt_0000", "join token is not valid"),
        (used.as_str(), "join token was already used"),
        (expired.as_str(), "join token has expired"),
    ] {
        let err = enroll_with_garbage_csr(&ctl, token, "n2").await?;
        assert_eq!(err.code(), Code::Unauthenticated, "{err}");
        assert_eq!(err.message(), says);
        // An anonymous caller with a spent token learns nothing of the
        // node that spent it.
        assert!(!err.message().contains("secret-node"), "{err}");
        let err = enroll_raw(&ctl, token, "n2").await.unwrap_err();
        assert_eq!(err.message(), says);
    }
    // The admins still read in the audit log who took the token.
    let entries = audit_entries(&mut admin, "anonymous").await?;
    assert!(
        entries.iter().any(|e| e.action == "node.enroll"
            && e.outcome == pb::AuditOutcome::Denied as i32
            && e.detail.contains("secret-node")),
        "{entries:#?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_site_outside_france_refuses_enrollment_without_spending_the_token() -> Result<()> {
    use coloc_controller::auth::hash_secret;
    use coloc_controller::store::{JoinTokenRecord, SiteRecord};
    use coloc_proto::domain::SiteName;

    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    // No API makes a site abroad; a database from elsewhere could hold one.
    let store = &ctl.running().ctx.store;
    let berlin = SiteName::new("berlin-1")?;
    store
        .create_site(SiteRecord {
            name: berlin.clone(),
            country: "DE".into(),
            city: "Berlin".into(),
            description: String::new(),
            created_unix: ctl.now(),
        })
        .await?;
    let secret = "cjt_abroad";
    store
        .create_join_token(JoinTokenRecord {
            id: "jt-abroad".into(),
            site: berlin,
            secret_hash: hash_secret(secret),
            created_unix: ctl.now(),
            expires_unix: ctl.now() + 3600,
            created_by: "user:admin".into(),
            used_by_node: None,
            used_unix: None,
        })
        .await?;
    // The rule refuses before the CSR is read and before the token is
    // spent.
    let err = enroll_with_garbage_csr(&ctl, secret, "n-de").await?;
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert_eq!(
        err.message(),
        "refused by policy: site berlin-1 is not in France"
    );
    let err = enroll_raw(&ctl, secret, "n-de").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    let tokens = admin
        .nodes
        .list_join_tokens(pb::ListJoinTokensRequest {})
        .await?
        .into_inner()
        .tokens;
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].used_by_node, "", "the token is still usable");
    let err = admin
        .nodes
        .get_node(pb::GetNodeRequest {
            name: "n-de".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    Ok(())
}

#[tokio::test]
async fn only_france_is_accepted() -> Result<()> {
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    for country in ["DE", "US", "be"] {
        let err = admin
            .sites
            .create_site(pb::CreateSiteRequest {
                name: "abroad".into(),
                country: country.into(),
                city: String::new(),
                description: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert!(err.message().contains("France"), "{}", err.message());
    }
    let err = admin
        .sites
        .create_site(pb::CreateSiteRequest {
            name: "nowhere".into(),
            country: "France".into(),
            city: String::new(),
            description: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // Nothing was created, and a token for such a site cannot exist.
    let sites = admin
        .sites
        .list_sites(pb::ListSitesRequest {})
        .await?
        .into_inner();
    assert!(sites.sites.is_empty());
    let err = admin
        .nodes
        .create_join_token(pb::CreateJoinTokenRequest {
            site: "abroad".into(),
            ttl_secs: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    create_site(&mut admin, "lyon-1").await?;
    let entries = audit_entries(&mut admin, "user:admin").await?;
    let refused = entries
        .iter()
        .filter(|e| e.action == "site.create" && e.outcome == pb::AuditOutcome::Failed as i32)
        .count();
    assert_eq!(refused, 4);
    Ok(())
}

#[tokio::test]
async fn credentials_are_checked() -> Result<()> {
    let ctl = TestController::start().await?;
    let mut anon = ctl.anonymous().await?;
    let err = anon
        .nodes
        .list_nodes(pb::ListNodesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = anon
        .tenants
        .create_tenant(pb::CreateTenantRequest {
            name: "x".into(),
            display_name: String::new(),
            offer: pb::Offer::Responsable as i32,
            membership_expires: "2099-01-01".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let mut wrong = ctl.api("cat_deadbeef").await?;
    assert_eq!(
        code(wrong.users.who_am_i(pb::WhoAmIRequest {}).await),
        Code::Unauthenticated
    );

    // A token that was revoked, then one that expired.
    let mut admin = ctl.admin().await?;
    let t = admin
        .tokens
        .create_token(pb::CreateTokenRequest {
            user: String::new(),
            description: "short".into(),
            ttl_secs: 120,
        })
        .await?
        .into_inner();
    let mut short = ctl.api(&t.secret).await?;
    assert_eq!(
        short
            .users
            .who_am_i(pb::WhoAmIRequest {})
            .await?
            .into_inner()
            .name,
        "admin"
    );
    ctl.clock.advance_secs(121);
    let err = short
        .users
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap_err();
    assert!(err.message().contains("expired"), "{}", err.message());

    let t2 = admin
        .tokens
        .create_token(pb::CreateTokenRequest::default())
        .await?
        .into_inner();
    admin
        .tokens
        .revoke_token(pb::RevokeTokenRequest { id: t2.id.clone() })
        .await?;
    let mut revoked = ctl.api(&t2.secret).await?;
    let err = revoked
        .users
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap_err();
    assert!(err.message().contains("revoked"), "{}", err.message());

    // The anonymous mutation attempt is audited.
    let entries = audit_entries(&mut admin, "anonymous").await?;
    assert!(
        entries
            .iter()
            .any(|e| e.action == "tenant.create" && e.outcome == pb::AuditOutcome::Denied as i32)
    );
    Ok(())
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() -> Result<()> {
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let token = join_token(&mut admin, "paris-1", 3600).await?;
    let (key, cert) = enroll_raw(&ctl, &token, "n1").await.expect("enrolls");

    // A self-made CA signs a certificate with the same node name.
    let foreign_ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "coloc CA cooperative");
    let issuer = rcgen::Issuer::new(ca_params, foreign_ca_key);
    let node_key = rcgen::KeyPair::generate()?;
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name.push(rcgen::DnType::CommonName, "n1");
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let forged = p.signed_by(&node_key, &issuer)?;

    // The TLS handshake (or the first call on it) fails.
    let refused = match ctl
        .channel_with_identity(&forged.pem(), &node_key.serialize_pem())
        .await
    {
        Err(_) => true,
        Ok(ch) => {
            let mut c = coloc_proto::agent::v1::agent_service_client::AgentServiceClient::new(ch);
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tx.send(apb::AgentMessage {
                body: Some(apb::agent_message::Body::Hello(apb::Hello::default())),
            })
            .await?;
            c.session(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .is_err()
        }
    };
    assert!(
        refused,
        "a foreign CA's certificate must not open a session"
    );

    // The genuine certificate opens one.
    let ch = ctl.channel_with_identity(&cert, &key).await?;
    let mut c = coloc_proto::agent::v1::agent_service_client::AgentServiceClient::new(ch);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(apb::AgentMessage {
        body: Some(apb::agent_message::Body::Hello(apb::Hello::default())),
    })
    .await?;
    let mut inbound = c
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut got_desired = false;
    while let Some(msg) = tokio::time::timeout(Duration::from_secs(5), inbound.message()).await?? {
        if let Some(apb::controller_message::Body::Desired(d)) = msg.body {
            assert_eq!(d.node_name, "n1");
            assert_eq!(d.generation, 1);
            got_desired = true;
            break;
        }
    }
    assert!(got_desired);
    // Node certificates are not user credentials.
    let mut as_user = Api::new(ctl.channel_with_identity(&cert, &key).await?, None);
    let err = as_user
        .users
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    drop(tx);
    Ok(())
}

#[tokio::test]
async fn user_certificates_authenticate() -> Result<()> {
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    let (key, csr) = key_and_csr("whatever")?;
    let issued = admin
        .users
        .issue_user_certificate(pb::IssueUserCertificateRequest {
            user: "admin".into(),
            csr_pem: csr,
            ttl_secs: 0,
        })
        .await?
        .into_inner();
    let mut by_cert = Api::new(
        ctl.channel_with_identity(&issued.certificate_pem, &key)
            .await?,
        None,
    );
    let me = by_cert
        .users
        .who_am_i(pb::WhoAmIRequest {})
        .await?
        .into_inner();
    assert_eq!(me.name, "admin");
    Ok(())
}

#[tokio::test]
async fn oversize_messages_are_refused() -> Result<()> {
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let token = join_token(&mut admin, "paris-1", 3600).await?;
    let (_, csr) = key_and_csr("n1")?;
    let mut client = ctl.agent_client().await?;
    let err = client
        .enroll(apb::EnrollRequest {
            join_token: token.clone(),
            node_name: "n1".into(),
            csr_pem: csr,
            facts: Some(apb::NodeFacts {
                cpu_model: "x".repeat(2 * 1024 * 1024),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.code(),
            Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument
        ),
        "{err:?}"
    );
    // Nothing consumed the token.
    enroll_raw(&ctl, &token, "n1").await.expect("token unused");
    let err = admin
        .sites
        .create_site(pb::CreateSiteRequest {
            name: "big".into(),
            country: "FR".into(),
            city: String::new(),
            description: "y".repeat(501),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    Ok(())
}

#[tokio::test]
async fn crafted_names_and_text_are_refused() -> Result<()> {
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    for bad in [
        "asso x",
        "asso\nExecStart=/bin/sh",
        "$(reboot)",
        "../../etc",
        "ASSO",
        "a;b",
        "",
    ] {
        let err = admin
            .tenants
            .create_tenant(pb::CreateTenantRequest {
                name: bad.into(),
                display_name: String::new(),
                offer: pb::Offer::Responsable as i32,
                membership_expires: "2099-01-01".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}");
        assert!(err.message().contains("tenant name"), "{}", err.message());
    }
    let err = admin
        .tenants
        .create_tenant(pb::CreateTenantRequest {
            name: "asso-x".into(),
            display_name: "evil\r\nline".into(),
            offer: pb::Offer::Responsable as i32,
            membership_expires: "2099-01-01".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    for (offer, expires) in [
        (0, "2099-01-01"),
        (7, "2099-01-01"),
        (1, "2099-02-30"),
        (1, "2001-01-01"),
    ] {
        let err = admin
            .tenants
            .create_tenant(pb::CreateTenantRequest {
                name: "asso-x".into(),
                display_name: String::new(),
                offer,
                membership_expires: expires.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{offer} {expires}");
    }
    let tenants = admin
        .tenants
        .list_tenants(pb::ListTenantsRequest {})
        .await?
        .into_inner();
    assert!(tenants.tenants.is_empty(), "nothing was created");
    // Unknown ids.
    let err = admin
        .nodes
        .get_node(pb::GetNodeRequest {
            name: "ghost".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = admin
        .tokens
        .revoke_token(pb::RevokeTokenRequest {
            id: "tok-000000000000".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    Ok(())
}

/// The services a reflection client of `$v` (`v1` or `v1alpha`) lists,
/// connecting without any credential.
macro_rules! reflected_services {
    ($v:ident, $ch:expr) => {{
        use tonic_reflection::pb::$v::ServerReflectionRequest;
        use tonic_reflection::pb::$v::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$v::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$v::server_reflection_response::MessageResponse;
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = ServerReflectionClient::new($ch)
            .server_reflection_info(tokio_stream::iter([req]))
            .await?
            .into_inner();
        let resp = stream.message().await?.context("a reflection answer")?;
        let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
            bail!("unexpected reflection answer {resp:?}");
        };
        list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
    }};
}

#[tokio::test]
async fn ordinary_grpc_tools_can_talk_to_colocd() -> Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let ctl = TestController::start().await?;
    let ch = ctl.channel().await?;
    let mut health = HealthClient::new(ch.clone());
    for service in [
        "",
        "coloc.agent.v1.AgentService",
        "coloc.controller.v1.Nodes",
    ] {
        let resp = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await?
            .into_inner();
        assert_eq!(resp.status, ServingStatus::Serving as i32, "{service:?}");
    }
    // grpcurl speaks v1; Python's grpcio-reflection and older tools only
    // v1alpha. Neither needs a credential.
    let v1 = reflected_services!(v1, ch.clone());
    let v1alpha = reflected_services!(v1alpha, ch);
    for (version, names) in [("v1", &v1), ("v1alpha", &v1alpha)] {
        for want in [
            "coloc.agent.v1.AgentService",
            "coloc.controller.v1.Sites",
            "coloc.controller.v1.Nodes",
            "coloc.controller.v1.Tenants",
            "coloc.controller.v1.Users",
            "coloc.controller.v1.Tokens",
            "coloc.controller.v1.Audit",
            "coloc.controller.v1.Storage",
            "coloc.controller.v1.Apps",
            "coloc.controller.v1.Tasks",
            "grpc.health.v1.Health",
            &format!("grpc.reflection.{version}.ServerReflection"),
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{version}: {want} missing from {names:?}"
            );
        }
    }
    Ok(())
}

/// Every credential descends from a root token and expires with it: when
/// the root from `colocd init` runs out, so does everything minted with
/// it. `colocd admin-token` (on colocd's host) gives an enabled admin a new
/// root, audited; a member or a disabled admin gets none.
#[tokio::test]
async fn a_new_root_token_outlives_the_first() -> Result<()> {
    use coloc_controller::server;
    use std::sync::Arc;
    const DAY: i64 = 86400;
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    create_tenant(&mut admin, "asso-x", pb::Offer::Participatif).await?;
    create_user(&mut admin, "mia", "asso-x", pb::Role::Member).await?;
    let root = admin
        .tokens
        .list_tokens(pb::ListTokensRequest::default())
        .await?
        .into_inner()
        .tokens
        .into_iter()
        .find(|t| t.minted_by.is_none())
        .context("the root token of colocd init")?;
    let child = admin
        .tokens
        .create_token(pb::CreateTokenRequest {
            user: String::new(),
            description: "a year".into(),
            ttl_secs: 365 * DAY as u64,
        })
        .await?
        .into_inner();
    assert_eq!(child.expires_unix, root.expires_unix);

    ctl.set_now(root.expires_unix + 1);
    for secret in [&ctl.admin_token, &child.secret] {
        let err = ctl
            .api(secret)
            .await?
            .users
            .who_am_i(pb::WhoAmIRequest {})
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
        assert!(err.message().contains("has expired"), "{err:?}");
    }

    let dir = ctl.data_dir();
    let clock: Arc<dyn coloc_controller::time::Clock> = ctl.clock.clone();
    for (who, why) in [("mia", "is not an admin"), ("nobody", "does not exist")] {
        let err = server::admin_token(&dir, who, 30 * DAY, clock.clone())
            .await
            .unwrap_err();
        assert!(err.to_string().contains(why), "{err}");
    }
    let fresh = server::admin_token(&dir, "admin", 30 * DAY, clock.clone()).await?;
    let mut admin = ctl.api(&fresh.token).await?;
    let me = admin
        .users
        .who_am_i(pb::WhoAmIRequest {})
        .await?
        .into_inner();
    assert_eq!(me.name, "admin");
    assert_eq!(fresh.expires_unix, ctl.now() + 30 * DAY);
    let entries = audit_entries(&mut admin, "colocd-admin-token").await?;
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(entries[0].target, format!("token:{}", fresh.id));

    // A disabled admin gets no root either (a second admin disables her).
    create_user(&mut admin, "root2", "", pb::Role::Admin).await?;
    admin
        .users
        .disable_user(pb::UserRef {
            name: "admin".into(),
        })
        .await?;
    let err = server::admin_token(&dir, "admin", DAY, clock)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is disabled"), "{err}");
    Ok(())
}
