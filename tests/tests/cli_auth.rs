//! Who the `coloc` binary says it is, against a real colocd: the bearer
//! token it sends and where it finds it (flag, environment, config file,
//! the default file under HOME), the user certificate it asks for with a
//! key that never leaves the machine and then authenticates with, and how
//! each refusal reads and exits (3 not authenticated, 6 refusing to
//! overwrite a key, 8 a server it cannot trust).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use coloc_proto::controller::v1 as pb;
use coloc_tests::cli::{Coloc, fails, json, row, stderr, text};
use coloc_tests::*;

/// A controller with tenant asso-x and its member mia; returns mia's token.
async fn with_member(ctl: &TestController) -> Result<String> {
    let mut admin = ctl.admin().await?;
    create_tenant(&mut admin, "asso-x", pb::Offer::Participatif).await?;
    create_user(&mut admin, "mia", "asso-x", pb::Role::Member).await
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

#[tokio::test]
async fn whoami_sends_the_bearer_token() -> Result<()> {
    let ctl = TestController::start().await?;
    let mia = with_member(&ctl).await?;
    let coloc = Coloc::new(&ctl).await?;

    let me = coloc
        .user(&ctl.admin_token)
        .json(&["whoami", "--json"])
        .await;
    assert_eq!(me["name"], "admin");
    assert_eq!(me["role"], "admin");

    let shown = coloc.user(&mia).ok(&["whoami"]).await;
    for line in [
        "Name:          mia",
        "Role:          member",
        "Tenant:        asso-x",
    ] {
        assert!(shown.contains(line), "{line:?} missing in\n{shown}");
    }
    Ok(())
}

#[tokio::test]
async fn a_refused_token_exits_3() -> Result<()> {
    let ctl = TestController::start().await?;
    let coloc = Coloc::new(&ctl).await?;
    let err = coloc.user("cat_wrong").fails(&["whoami"], 3).await;
    assert_eq!(
        err.trim_end(),
        "coloc: not authenticated: check your token (unknown token)"
    );
    // The refusal is colocd's: it is in the audit log.
    let mut admin = ctl.admin().await?;
    let refused = audit_entries(&mut admin, "anonymous").await?;
    assert!(
        has_audit_entry(
            &refused,
            "anonymous",
            "user.whoami",
            pb::AuditOutcome::Denied
        ),
        "{refused:#?}"
    );

    // No credential anywhere: colocd refuses, and the message says where
    // one would come from.
    let err = coloc.anonymous().fails(&["whoami"], 3).await;
    assert!(err.contains("COLOC_TOKEN"), "{err}");
    Ok(())
}

#[tokio::test]
async fn user_cert_then_authenticate_with_it() -> Result<()> {
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    create_tenant(&mut admin, "asso-x", pb::Offer::Participatif).await?;
    create_user(&mut admin, "alice", "asso-x", pb::Role::Operator).await?;
    let coloc = Coloc::new(&ctl).await?;
    let root = coloc.user(&ctl.admin_token);
    let out_dir = coloc.home().join("certs");
    let out = out_dir.to_str().context("UTF-8 path")?;

    let said = root
        .ok(&[
            "user",
            "cert",
            "issue",
            "alice",
            "--out-dir",
            out,
            "--ttl",
            "30d",
        ])
        .await;
    assert!(said.starts_with("Wrote "), "{said}");
    let key = out_dir.join("alice.key");
    let crt = out_dir.join("alice.crt");
    assert_eq!(
        std::fs::metadata(&key)?.permissions().mode() & 0o777,
        0o600,
        "the private key is the user's alone"
    );
    let issued = audit_entries(&mut admin, "user:admin").await?;
    let issued: Vec<_> = issued
        .iter()
        .filter(|e| e.action == "user.cert.issue")
        .collect();
    assert_eq!(issued.len(), 1, "{issued:#?}");
    assert_eq!(issued[0].target, "user:alice");
    assert_eq!(issued[0].outcome, pb::AuditOutcome::Allowed as i32);

    // The key written here and the certificate colocd signed for its CSR
    // authenticate together, token-less.
    let me = json(
        &coloc
            .anonymous()
            .run(&[
                "whoami",
                "--json",
                "--cert",
                crt.to_str().context("UTF-8 path")?,
                "--key",
                key.to_str().context("UTF-8 path")?,
            ])
            .await,
    );
    assert_eq!(me["name"], "alice");

    // A second run does not clobber the key, and asks colocd for nothing.
    let err = root
        .fails(&["user", "cert", "issue", "alice", "--out-dir", out], 6)
        .await;
    assert!(err.contains("already exists"), "{err}");
    let after = audit_entries(&mut admin, "user:admin").await?;
    assert_eq!(
        after
            .iter()
            .filter(|e| e.action == "user.cert.issue")
            .count(),
        1,
        "{after:#?}"
    );
    Ok(())
}

#[tokio::test]
async fn config_file_and_its_precedence() -> Result<()> {
    let ctl = TestController::start().await?;
    let mia = with_member(&ctl).await?;
    let coloc = Coloc::new(&ctl).await?;
    let home = coloc.home();
    // The layout `colocd init` leaves: admin.toml next to ca.pem, with a
    // relative ca_file, found through COLOC_CONFIG.
    let data = home.join("colocd");
    std::fs::create_dir_all(&data)?;
    std::fs::copy(coloc.ca_file(), data.join("ca.pem"))?;
    let admin_toml = data.join("admin.toml");
    write_private(
        &admin_toml,
        &format!(
            "server = \"{}\"\nca_file = \"ca.pem\"\ntoken = \"{}\"\n",
            coloc.server(),
            ctl.admin_token
        ),
    )?;
    let config_env = [("COLOC_CONFIG", admin_toml.to_str().context("UTF-8 path")?)];
    let me = json(&coloc.run(&["whoami", "--json"], &config_env).await);
    assert_eq!(me["name"], "admin");

    // The environment beats the file...
    let mut env = config_env.to_vec();
    env.push(("COLOC_TOKEN", &mia));
    let me = json(&coloc.run(&["whoami", "--json"], &env).await);
    assert_eq!(me["name"], "mia");

    // ...and a flag beats the environment.
    let o = coloc
        .run(&["whoami", "--json", "--token", "cat_wrong"], &env)
        .await;
    fails(&o, 3);

    // The default location under HOME is read when nothing names a file.
    let default_dir = home.join(".config/coloc");
    std::fs::create_dir_all(&default_dir)?;
    std::fs::copy(coloc.ca_file(), default_dir.join("ca.pem"))?;
    write_private(
        &default_dir.join("config.toml"),
        &format!(
            "server = \"{}\"\nca_file = \"ca.pem\"\ntoken_file = \"token\"\n",
            coloc.server()
        ),
    )?;
    write_private(&default_dir.join("token"), &format!("{mia}\n"))?;
    let me = json(&coloc.run(&["whoami", "--json"], &[]).await);
    assert_eq!(me["name"], "mia");
    Ok(())
}

#[tokio::test]
async fn a_server_from_another_ca_is_unavailable() -> Result<()> {
    let ctl = TestController::start().await?;
    let coloc = Coloc::new(&ctl).await?;
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "someone else's CA");
    let other_ca = coloc.home().join("other-ca.pem");
    std::fs::write(&other_ca, params.self_signed(&key)?.pem())?;

    let o = coloc
        .run(
            &["whoami"],
            &[
                ("COLOC_SERVER", coloc.server()),
                ("COLOC_CA_FILE", other_ca.to_str().context("UTF-8 path")?),
                ("COLOC_TOKEN", &ctl.admin_token),
            ],
        )
        .await;
    let err = fails(&o, 8);
    assert!(
        err.starts_with(&format!("coloc: cannot reach colocd at {}", coloc.server())),
        "{err}"
    );
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // The same token against the right CA works: the CA made the difference.
    text(&coloc.user(&ctl.admin_token).run(&["whoami"]).await);
    Ok(())
}

/// `coloc whoami` with a certificate and key written by `user cert issue`.
async fn whoami_with_cert(coloc: &Coloc, dir: &Path, user: &str) -> std::process::Output {
    let crt = dir.join(format!("{user}.crt"));
    let key = dir.join(format!("{user}.key"));
    coloc
        .anonymous()
        .run(&[
            "whoami",
            "--json",
            "--cert",
            crt.to_str().expect("UTF-8 path"),
            "--key",
            key.to_str().expect("UTF-8 path"),
        ])
        .await
}

/// The attack of issue 10 item 2: a member holding a token that lives one
/// hour asks for a token and a certificate that live a year. Both are cut
/// to the hour; once an admin revokes the hour-long token, neither the
/// token nor the certificate minted with it authenticates any more.
#[tokio::test]
async fn a_credential_cannot_outlive_its_minter_and_dies_with_it() -> Result<()> {
    const HOUR: i64 = 3600;
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    create_tenant(&mut admin, "asso-x", pb::Offer::Participatif).await?;
    create_user(&mut admin, "mia", "asso-x", pb::Role::Member).await?;
    let short = admin
        .tokens
        .create_token(pb::CreateTokenRequest {
            user: "mia".into(),
            description: "one hour".into(),
            ttl_secs: HOUR as u64,
        })
        .await?
        .into_inner();
    let coloc = Coloc::new(&ctl).await?;
    let mia = coloc.user(&short.secret);
    let root = coloc.user(&ctl.admin_token);

    // A year is asked for; the hour of the minter is what is given.
    let o = mia
        .run(&["token", "create", "--ttl", "365d", "--description", "long"])
        .await;
    let long_secret = text(&o).trim().to_string();
    assert!(long_secret.starts_with("cat_"), "{long_secret}");
    assert!(
        stderr(&o).contains(&format!(
            "Note: shorter than asked: it cannot outlive token {}",
            short.id
        )),
        "{}",
        stderr(&o)
    );
    let toks = coloc
        .user(&long_secret)
        .json(&["token", "list", "--json"])
        .await;
    let long = toks
        .as_array()
        .context("a list")?
        .iter()
        .find(|t| t["description"] == "long")
        .context("the new token is listed")?
        .clone();
    assert_eq!(long["expires_unix"], short.expires_unix);
    assert_eq!(long["minted_by"]["token"], short.id.as_str());

    let dir = coloc.home().join("mia-certs");
    let out = dir.to_str().context("UTF-8 path")?;
    let cert = mia
        .json(&[
            "user",
            "cert",
            "issue",
            "mia",
            "--out-dir",
            out,
            "--ttl",
            "365d",
            "--json",
        ])
        .await;
    assert_eq!(cert["expiry_limited_by_minter"], true, "{cert}");
    let cert_expires = cert["expires_unix"].as_i64().context("expires_unix")?;
    assert!(
        cert_expires <= short.expires_unix && cert_expires > ctl.now() + HOUR - 120,
        "{cert_expires} vs {}",
        short.expires_unix
    );
    let serial = cert["serial"].as_str().context("serial")?.to_string();
    // Nor can a member mint for someone else, let alone an admin.
    let err = mia
        .fails(&["token", "create", "--user", "admin", "--ttl", "1h"], 4)
        .await;
    assert!(err.contains("permission denied"), "{err}");

    // The certificate authenticates over mTLS, token-less.
    let me = json(&whoami_with_cert(&coloc, &dir, "mia").await);
    assert_eq!(me["name"], "mia");

    // An admin revokes the hour-long token: what it minted goes with it.
    let said = root.ok(&["token", "revoke", &short.id]).await;
    assert!(said.contains("Also revoked, minted with it (2)"), "{said}");
    assert!(said.contains(&format!("certificate {serial}")), "{said}");

    let err = fails(&whoami_with_cert(&coloc, &dir, "mia").await, 3);
    assert!(
        err.contains(&format!("certificate {serial} has been revoked")),
        "{err}"
    );
    let err = coloc.user(&long_secret).fails(&["whoami"], 3).await;
    assert!(err.contains("has been revoked"), "{err}");
    let err = mia.fails(&["whoami"], 3).await;
    assert!(err.contains("has been revoked"), "{err}");

    // The admin sees the certificate revoked, by serial.
    let certs = root
        .json(&["user", "cert", "list", "--user", "mia", "--json"])
        .await;
    let listed = certs
        .as_array()
        .context("a list")?
        .iter()
        .find(|c| c["serial"] == serial.as_str())
        .context("the certificate is listed")?;
    assert_eq!(listed["revoked"], true, "{listed}");
    let revoked = audit_entries(&mut admin, "user:admin").await?;
    let entry = revoked
        .iter()
        .find(|e| e.action == "token.revoke")
        .context("token.revoke audited")?;
    assert!(
        entry.detail.contains(&format!("certificate {serial}")),
        "{entry:?}"
    );
    Ok(())
}

/// An admin revokes one certificate by serial, disables, enables,
/// re-roles and deletes a user, from the command line; each is audited,
/// and the last enabled admin cannot be disabled.
#[tokio::test]
async fn admins_revoke_certificates_and_manage_accounts() -> Result<()> {
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    create_tenant(&mut admin, "asso-x", pb::Offer::Participatif).await?;
    let mia_token = create_user(&mut admin, "mia", "asso-x", pb::Role::Member).await?;
    let coloc = Coloc::new(&ctl).await?;
    let root = coloc.user(&ctl.admin_token);
    let mia = coloc.user(&mia_token);
    let dir = coloc.home().join("certs");
    let out = dir.to_str().context("UTF-8 path")?;

    let cert = mia
        .json(&["user", "cert", "issue", "mia", "--out-dir", out, "--json"])
        .await;
    let serial = cert["serial"].as_str().context("serial")?.to_string();
    let mine = mia.ok(&["user", "cert", "list"]).await;
    assert!(row(&mine, &serial).contains("active"), "{mine}");
    // Members see only their own certificates.
    let err = mia.fails(&["user", "cert", "list", "--all"], 4).await;
    assert!(err.contains("permission denied"), "{err}");
    let err = mia.fails(&["user", "disable", "admin"], 4).await;
    assert!(
        err.contains("reserved to the cooperative's admins"),
        "{err}"
    );

    assert_eq!(
        json(&whoami_with_cert(&coloc, &dir, "mia").await)["name"],
        "mia"
    );
    let said = root.ok(&["user", "cert", "revoke", &serial]).await;
    assert!(said.starts_with("Revoked certificate:"), "{said}");
    fails(&whoami_with_cert(&coloc, &dir, "mia").await, 3);
    // Her token still works: one certificate went, not the user.
    assert_eq!(mia.json(&["whoami", "--json"]).await["name"], "mia");

    // Disabled: every credential refused at once; enabled: back.
    let said = root.ok(&["user", "disable", "mia"]).await;
    assert!(said.contains("State:         disabled since"), "{said}");
    let err = mia.fails(&["whoami"], 3).await;
    assert!(err.contains("user mia is disabled"), "{err}");
    let users = root.ok(&["user", "list"]).await;
    assert!(row(&users, "mia").contains("disabled"), "{users}");
    root.ok(&["user", "enable", "mia"]).await;
    assert_eq!(mia.json(&["whoami", "--json"]).await["name"], "mia");

    // A new role, at once.
    root.ok(&["user", "set-role", "mia", "--role", "operator"])
        .await;
    assert_eq!(mia.json(&["whoami", "--json"]).await["role"], "operator");

    // The last enabled admin stays one.
    let err = root.fails(&["user", "disable", "admin"], 6).await;
    assert!(err.contains("admin"), "{err}");
    let err = root
        .fails(
            &[
                "user", "set-role", "admin", "--role", "member", "--tenant", "asso-x",
            ],
            6,
        )
        .await;
    assert!(err.contains("admin"), "{err}");

    // Deleting needs the name typed again; then nothing of hers works.
    root.fails(&["user", "delete", "mia"], 2).await;
    root.fails(&["user", "delete", "mia", "--confirm", "mio"], 7)
        .await;
    assert_eq!(mia.json(&["whoami", "--json"]).await["name"], "mia");
    let said = root
        .ok(&["user", "delete", "mia", "--confirm", "mia"])
        .await;
    assert!(said.starts_with("Deleted user mia"), "{said}");
    let err = mia.fails(&["whoami"], 3).await;
    assert!(err.contains("not authenticated"), "{err}");

    let entries = audit_entries(&mut admin, "user:admin").await?;
    for action in [
        "user.cert.revoke",
        "user.disable",
        "user.enable",
        "user.set-role",
        "user.delete",
    ] {
        assert!(
            has_audit_entry(&entries, "user:admin", action, pb::AuditOutcome::Allowed),
            "{action} not audited: {entries:#?}"
        );
    }
    Ok(())
}
