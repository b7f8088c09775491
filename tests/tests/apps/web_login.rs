//! The login the node's proxy asks for in front of an app without one of
//! its own (`notes` here is such an app, `wiki` has its own): who may set
//! it, what reaches the node (the bcrypt hash, never a password), and the
//! attacks: another tenant, a member, crafted users and hashes, an app
//! that has its own login, a removed instance.

use super::*;

const HASH: &str = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";

fn set(instance: &str, user: &str, hash: &str) -> pb::SetInstancePasswordRequest {
    pb::SetInstancePasswordRequest {
        instance: instance.into(),
        user: user.into(),
        password_hash: hash.into(),
    }
}

#[tokio::test]
async fn the_proxy_asks_for_the_login_the_tenants_operators_set() -> Result<()> {
    let mut w = world().await?;
    deploy(&mut w, "op-a", "asso-a", "notes", "n1", "data").await?;
    deploy(&mut w, "op-a", "asso-a", "wiki", "n1", "data").await?;

    // The catalog says how each app is protected.
    let catalog = w
        .mem_a
        .apps
        .list_catalog(pb::ListCatalogRequest {})
        .await?
        .into_inner()
        .apps;
    let auth_of = |name: &str| catalog.iter().find(|a| a.name == name).unwrap().web_auth;
    assert_eq!(auth_of("notes"), apb::WebAuth::Proxy as i32);
    assert_eq!(auth_of("wiki"), apb::WebAuth::Own as i32);

    // Until a password is set the node gets no login: its proxy answers
    // 503 (agent/tests/apps, e2e_apps).
    let d = w
        .agent
        .wait_desired("notes deployed", |d| {
            app_spec(d, "asso-a", "notes").is_some()
        })
        .await?;
    let spec = app_spec(&d, "asso-a", "notes").unwrap();
    assert_eq!(spec.web_auth, apb::WebAuth::Proxy as i32);
    assert_eq!(spec.web_login, None);
    let wiki = app_spec(&d, "asso-a", "wiki").unwrap();
    assert_eq!(wiki.web_auth, apb::WebAuth::Own as i32);
    let i = w.mem_a.apps.get_instance(iref("asso-a/notes")).await?;
    assert_eq!(i.get_ref().web_auth, apb::WebAuth::Proxy as i32);
    assert_eq!(i.get_ref().web_user, "");

    // Members, other tenants' people and outsiders cannot set it.
    assert_eq!(
        code(
            w.mem_a
                .apps
                .set_instance_password(set("asso-a/notes", "mem-a", HASH))
                .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            w.op_b
                .apps
                .set_instance_password(set("asso-a/notes", "op-b", HASH))
                .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            w.mem_r
                .apps
                .set_instance_password(set("asso-a/notes", "mem-r", HASH))
                .await
        ),
        Code::PermissionDenied
    );
    let mut anonymous = w.ctl.anonymous().await?;
    assert_eq!(
        code(
            anonymous
                .apps
                .set_instance_password(set("asso-a/notes", "x", HASH))
                .await
        ),
        Code::Unauthenticated
    );

    // Crafted values never reach the store or the node: a user or hash
    // that could open a Caddyfile block, a password sent in clear, a
    // hash too cheap to resist guessing.
    for (user, hash) in [
        ("asso-a\n}\nimport /etc/*", HASH),
        ("asso a", HASH),
        ("", HASH),
        ("asso-a", "correct horse battery staple"),
        ("asso-a", &HASH.replace("$12$", "$04$")),
        ("asso-a", &HASH.replace("R9h", "R9}")),
        ("asso-a", &format!("{HASH}\n")),
    ] {
        assert_eq!(
            code(
                w.op_a
                    .apps
                    .set_instance_password(set("asso-a/notes", user, hash))
                    .await
            ),
            Code::InvalidArgument,
            "{user:?} {hash:?}"
        );
    }
    assert_eq!(
        code(
            w.op_a
                .apps
                .set_instance_password(set("asso-a/ghost", "asso-a", HASH))
                .await
        ),
        Code::NotFound
    );
    // An app with a login of its own gets no proxy login in front of it.
    let err = w
        .op_a
        .apps
        .set_instance_password(set("asso-a/wiki", "asso-a", HASH))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.message().contains("logins of its own"), "{err}");
    let generation = w.agent.desired().map_or(0, |d| d.generation);

    // The tenant's operator sets it: the node gets the hash.
    let i = w
        .op_a
        .apps
        .set_instance_password(set("asso-a/notes", "asso-a", HASH))
        .await?
        .into_inner();
    assert_eq!(i.web_user, "asso-a");
    let d = w
        .agent
        .wait_desired("the login on the node", |d| {
            app_spec(d, "asso-a", "notes").is_some_and(|s| s.web_login.is_some())
        })
        .await?;
    assert!(d.generation > generation);
    let login = app_spec(&d, "asso-a", "notes")
        .unwrap()
        .web_login
        .clone()
        .unwrap();
    assert_eq!(
        (login.user.as_str(), login.password_hash.as_str()),
        ("asso-a", HASH)
    );
    assert_eq!(app_spec(&d, "asso-a", "wiki").unwrap().web_login, None);

    // An admin replaces it.
    let other = HASH.replace("R9h", "Q8g");
    w.admin
        .apps
        .set_instance_password(set("asso-a/notes", "bureau", &other))
        .await?;
    w.agent
        .wait_desired("the new login on the node", |d| {
            app_spec(d, "asso-a", "notes")
                .and_then(|s| s.web_login.as_ref())
                .is_some_and(|l| l.user == "bureau" && l.password_hash == other)
        })
        .await?;

    // A removed instance takes no login.
    w.admin.apps.remove_instance(iref("asso-a/notes")).await?;
    assert_eq!(
        code(
            w.admin
                .apps
                .set_instance_password(set("asso-a/notes", "asso-a", HASH))
                .await
        ),
        Code::FailedPrecondition
    );

    // Every attempt is audited under the tenant, without the hash.
    let entries = tenant_audit(&mut w.admin, "asso-a").await?;
    use pb::AuditOutcome::{Allowed, Denied, Failed};
    for (actor, outcome) in [
        ("user:mem-a", Denied),
        ("user:op-b", Denied),
        ("user:op-a", Allowed),
        ("user:op-a", Failed),
        ("user:admin", Allowed),
        ("user:admin", Failed),
    ] {
        assert!(
            has_audit_entry(&entries, actor, "app.password.set", outcome),
            "missing {actor} {outcome:?} in {entries:#?}"
        );
    }
    for e in entries.iter().filter(|e| e.action == "app.password.set") {
        assert!(!e.detail.contains("$2b$"), "{e:?}");
        assert!(!e.target.contains("$2b$"), "{e:?}");
    }
    drop(w.ctl);
    Ok(())
}
