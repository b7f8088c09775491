//! Tenants and their POSIX ids, users, their grants, roles, disabling and
//! deletion, and API tokens as records (their trees are in
//! `credentials`).

use std::collections::BTreeSet;

use coloc_proto::domain::{Offer, Role};

use super::fixtures::*;
use crate::store::prelude::*;
use crate::store::sqlite::SqliteStore;
use crate::store::{
    ApiTokenRecord, CredentialRef, FIRST_POSIX_ID, RoleChange, StoreError, TenantRecord,
};

#[tokio::test]
async fn tenants_are_created_listed_and_unique() {
    let store = SqliteStore::open_in_memory().unwrap();
    let y = store.create_tenant(tenant("asso-y")).await.unwrap();
    let x = store.create_tenant(tenant("asso-x")).await.unwrap();
    assert_eq!(
        y,
        TenantRecord {
            posix_id: FIRST_POSIX_ID,
            ..tenant("asso-y")
        }
    );
    assert_eq!(x.posix_id, FIRST_POSIX_ID + 1);

    let listed = store.list_tenants().await.unwrap();
    assert_eq!(listed, [x, y.clone()]);
    assert_eq!(store.get_tenant(&tenant_name("asso-y")).await.unwrap(), y);
    let err = store.create_tenant(tenant("asso-x")).await.unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { kind: "tenant", ref name } if name == "asso-x"),
        "{err:?}"
    );
    let err = store.get_tenant(&tenant_name("asso-z")).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "tenant", ref name } if name == "asso-z"),
        "{err:?}"
    );
}

#[tokio::test]
async fn posix_ids_stay_unique_under_concurrent_creation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("colocd.db");
    let first = SqliteStore::open(&path).unwrap();
    let second = SqliteStore::open(&path).unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tasks.push(tokio::spawn(async move {
            store.create_tenant(tenant(&format!("asso-{i}"))).await
        }));
    }
    let mut ids = BTreeSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap().unwrap().posix_id);
    }
    assert_eq!(ids.len(), 20);
    assert_eq!(ids.first(), Some(&FIRST_POSIX_ID));
    assert_eq!(ids.last(), Some(&(FIRST_POSIX_ID + 19)));
    // The database refuses a duplicate whatever the code does.
    let conn = first.conn.lock().unwrap();
    let err = conn
        .execute(
            // Whichever tenant got which id first, these two differ.
            "UPDATE tenants SET posix_id = (SELECT posix_id FROM tenants \
             WHERE name = 'asso-0') WHERE name = 'asso-1'",
            [],
        )
        .unwrap_err();
    assert!(err.to_string().contains("UNIQUE"), "{err}");
}

#[tokio::test]
async fn users_belong_to_existing_tenants() {
    let store = SqliteStore::open_in_memory().unwrap();
    store.create_tenant(tenant("asso-x")).await.unwrap();
    store.create_tenant(tenant("asso-y")).await.unwrap();
    store
        .create_user(user("carol", Some("asso-y"), Role::Member))
        .await
        .unwrap();
    store
        .create_user(user("bob", Some("asso-x"), Role::Member))
        .await
        .unwrap();
    store
        .create_user(user("alice", None, Role::Admin))
        .await
        .unwrap();

    let all = store.list_users(None).await.unwrap();
    let all: Vec<_> = all.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(all, ["alice", "bob", "carol"]);
    let of_x = store
        .list_users(Some(&tenant_name("asso-x")))
        .await
        .unwrap();
    assert_eq!(of_x, [user("bob", Some("asso-x"), Role::Member)]);
    assert_eq!(
        store.get_user(&user_name("alice")).await.unwrap(),
        user("alice", None, Role::Admin)
    );

    let err = store
        .create_user(user("dave", Some("asso-q"), Role::Member))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "tenant", ref name } if name == "asso-q"),
        "{err:?}"
    );
    let err = store
        .create_user(user("bob", None, Role::Admin))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { kind: "user", ref name } if name == "bob"),
        "{err:?}"
    );
    let err = store.get_user(&user_name("dave")).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "user", .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn node_grants_are_idempotent_and_sorted() {
    let store = fleet(&["n1", "n2", "n3"]).await;
    store
        .create_user(user("olga", None, Role::Operator))
        .await
        .unwrap();
    let olga = user_name("olga");

    store.grant_node(&olga, &node_name("n3")).await.unwrap();
    store.grant_node(&olga, &node_name("n1")).await.unwrap();
    let record = store.grant_node(&olga, &node_name("n3")).await.unwrap();
    assert_eq!(record.node_grants, [node_name("n1"), node_name("n3")]);
    assert_eq!(store.get_user(&olga).await.unwrap(), record);
    assert_eq!(store.list_users(None).await.unwrap(), [record]);

    let record = store
        .revoke_node_grant(&olga, &node_name("n3"))
        .await
        .unwrap();
    assert_eq!(record.node_grants, [node_name("n1")]);
    let again = store
        .revoke_node_grant(&olga, &node_name("n3"))
        .await
        .unwrap();
    assert_eq!(again, record);

    let err = store
        .grant_node(&user_name("nobody"), &node_name("n1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "user", ref name } if name == "nobody"),
        "{err:?}"
    );
    let err = store
        .grant_node(&olga, &node_name("ghost"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "node", ref name } if name == "ghost"),
        "{err:?}"
    );
    let err = store
        .revoke_node_grant(&user_name("nobody"), &node_name("n1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "user", .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_user_created_with_grants_keeps_them() {
    let store = fleet(&["n1", "n2"]).await;
    let mut olga = user("olga", None, Role::Operator);
    olga.node_grants = vec![node_name("n2"), node_name("n1")];
    store.create_user(olga).await.unwrap();
    let record = store.get_user(&user_name("olga")).await.unwrap();
    assert_eq!(record.node_grants, [node_name("n1"), node_name("n2")]);

    let mut bad = user("boris", None, Role::Operator);
    bad.node_grants = vec![node_name("n1"), node_name("ghost")];
    let err = store.create_user(bad).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "node", ref name } if name == "ghost"),
        "{err:?}"
    );
    // The whole creation was rolled back.
    let err = store.get_user(&user_name("boris")).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "user", .. }),
        "{err:?}"
    );
}

// ---- API tokens and user certificates

#[tokio::test]
async fn api_tokens_are_found_listed_and_revoked_once() {
    let store = SqliteStore::open_in_memory().unwrap();
    store
        .create_user(user("alice", None, Role::Admin))
        .await
        .unwrap();
    store
        .create_user(user("bob", None, Role::Admin))
        .await
        .unwrap();
    store
        .create_api_token(api_token("tok-2", "alice"))
        .await
        .unwrap();
    store
        .create_api_token(api_token("tok-1", "alice"))
        .await
        .unwrap();
    store
        .create_api_token(api_token("tok-3", "bob"))
        .await
        .unwrap();

    assert_eq!(
        store.api_token_by_hash("hash-of-tok-1").await.unwrap(),
        Some(api_token("tok-1", "alice"))
    );
    assert_eq!(store.api_token_by_hash("hash-of-x").await.unwrap(), None);
    assert_eq!(
        store.get_api_token("tok-3").await.unwrap(),
        api_token("tok-3", "bob")
    );
    let all = store.list_api_tokens(None).await.unwrap();
    let all: Vec<_> = all.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(all, ["tok-1", "tok-2", "tok-3"]);
    let of_alice = store
        .list_api_tokens(Some(&user_name("alice")))
        .await
        .unwrap();
    assert_eq!(
        of_alice,
        [api_token("tok-1", "alice"), api_token("tok-2", "alice")]
    );

    let revoked = store.revoke_api_token("tok-1", NOW + 10).await.unwrap();
    assert_eq!(revoked.record.revoked_unix, Some(NOW + 10));
    assert!(revoked.also_revoked.is_empty());
    let again = store.revoke_api_token("tok-1", NOW + 99).await.unwrap();
    assert_eq!(again.record.revoked_unix, Some(NOW + 10));
    assert_eq!(store.get_api_token("tok-1").await.unwrap(), again.record);

    let err = store.revoke_api_token("tok-9", NOW).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "api token", ref name } if name == "tok-9"),
        "{err:?}"
    );
    let err = store.get_api_token("tok-9").await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotFound {
                kind: "api token",
                ..
            }
        ),
        "{err:?}"
    );
    let err = store
        .create_api_token(api_token("tok-1", "alice"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { kind: "api token", ref name } if name == "tok-1"),
        "{err:?}"
    );
    let err = store
        .create_api_token(api_token("tok-4", "nobody"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "user", ref name } if name == "nobody"),
        "{err:?}"
    );
}

// ---- roles, disabling, deletion

/// A cooperative with admins root and ada, tenants asso-p (participatif)
/// and asso-r (responsable), operator olga of asso-p granted n1, member
/// mia of asso-p, on nodes n1 and n2.
async fn cooperative() -> SqliteStore {
    let store = fleet(&["n1", "n2"]).await;
    store.create_tenant(tenant("asso-p")).await.unwrap();
    store
        .create_tenant(TenantRecord {
            offer: Offer::Responsable,
            ..tenant("asso-r")
        })
        .await
        .unwrap();
    for u in [
        user("root", None, Role::Admin),
        user("ada", None, Role::Admin),
        user("olga", Some("asso-p"), Role::Operator),
        user("mia", Some("asso-p"), Role::Member),
    ] {
        store.create_user(u).await.unwrap();
    }
    store
        .grant_node(&user_name("olga"), &node_name("n1"))
        .await
        .unwrap();
    store
}

fn to(role: Role, tenant: Option<&str>) -> RoleChange {
    RoleChange {
        role,
        tenant: tenant.map(tenant_name),
    }
}

fn refused_because(err: StoreError, user: &str, why: &str) {
    match &err {
        StoreError::Conflict {
            kind: "user",
            name,
            reason,
        } if name == user => {
            assert!(reason.contains(why), "{reason:?} does not say {why:?}");
        }
        other => panic!("expected a refusal of user {user}, got {other:?}"),
    }
}

#[tokio::test]
async fn roles_change_within_the_invariants() {
    let store = cooperative().await;
    let mia = user_name("mia");
    let olga = user_name("olga");

    // A member of a participatif tenant becomes its operator, and back.
    let op = store
        .set_user_role(&mia, to(Role::Operator, None))
        .await
        .unwrap();
    assert_eq!(
        (op.role, op.tenant.clone()),
        (Role::Operator, Some(tenant_name("asso-p")))
    );
    assert_eq!(store.get_user(&mia).await.unwrap(), op);
    // The same role again changes nothing.
    assert_eq!(
        store
            .set_user_role(&mia, to(Role::Operator, Some("asso-p")))
            .await
            .unwrap(),
        op
    );

    // An operator who becomes a member loses their grants.
    let member = store
        .set_user_role(&olga, to(Role::Member, None))
        .await
        .unwrap();
    assert_eq!(member.role, Role::Member);
    assert!(member.node_grants.is_empty());

    // No move between tenants; admins have none; admins who step down join one.
    let err = store
        .set_user_role(&mia, to(Role::Member, Some("asso-r")))
        .await
        .unwrap_err();
    refused_because(err, "mia", "do not move between tenants");
    let err = store
        .set_user_role(&mia, to(Role::Admin, Some("asso-p")))
        .await
        .unwrap_err();
    refused_because(err, "mia", "belong to no tenant");
    let ada = user_name("ada");
    let err = store
        .set_user_role(&ada, to(Role::Member, None))
        .await
        .unwrap_err();
    refused_because(err, "ada", "joins a tenant");
    let err = store
        .set_user_role(&ada, to(Role::Operator, Some("asso-r")))
        .await
        .unwrap_err();
    refused_because(err, "ada", "operators exist only in participatif tenants");
    let err = store
        .set_user_role(&ada, to(Role::Member, Some("asso-q")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "tenant", ref name } if name == "asso-q"),
        "{err:?}"
    );
    // Nothing of the refusals stuck.
    assert_eq!(store.get_user(&ada).await.unwrap().role, Role::Admin);
    let joined = store
        .set_user_role(&ada, to(Role::Member, Some("asso-r")))
        .await
        .unwrap();
    assert_eq!(joined.tenant, Some(tenant_name("asso-r")));
    // A member of a responsable tenant cannot become an operator there.
    let err = store
        .set_user_role(&ada, to(Role::Operator, None))
        .await
        .unwrap_err();
    refused_because(err, "ada", "participatif");

    // A promotion takes the user out of their tenant.
    let admin = store
        .set_user_role(&mia, to(Role::Admin, None))
        .await
        .unwrap();
    assert_eq!((admin.role, admin.tenant), (Role::Admin, None));

    let err = store
        .set_user_role(&user_name("nobody"), to(Role::Member, None))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "user", .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_last_enabled_admin_is_never_lost() {
    let store = cooperative().await;
    let root = user_name("root");
    let ada = user_name("ada");
    // Two admins: one may go.
    let off = store.set_user_disabled(&ada, Some(NOW)).await.unwrap();
    assert_eq!(off.disabled_unix, Some(NOW));
    // Disabling again keeps the first time.
    let again = store.set_user_disabled(&ada, Some(NOW + 50)).await.unwrap();
    assert_eq!(again.disabled_unix, Some(NOW));
    // Now root is the only enabled admin: not disabled, demoted nor deleted.
    let err = store.set_user_disabled(&root, Some(NOW)).await.unwrap_err();
    refused_because(err, "root", "only enabled admin: disabling them");
    let err = store
        .set_user_role(&root, to(Role::Member, Some("asso-p")))
        .await
        .unwrap_err();
    refused_because(err, "root", "only enabled admin: making them a member");
    let err = store.delete_user(&root, NOW).await.unwrap_err();
    refused_because(err, "root", "only enabled admin: deleting them");
    let kept = store.get_user(&root).await.unwrap();
    assert_eq!((kept.role, kept.disabled_unix), (Role::Admin, None));
    // The disabled admin may be demoted or deleted: it takes no admin away.
    store
        .set_user_role(&ada, to(Role::Member, Some("asso-p")))
        .await
        .unwrap();
    // Enabled again, a member now.
    let on = store.set_user_disabled(&ada, None).await.unwrap();
    assert_eq!((on.role, on.disabled_unix), (Role::Member, None));
    let err = store
        .set_user_disabled(&user_name("nobody"), Some(NOW))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "user", .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_deleted_user_takes_their_credentials_and_keeps_their_name() {
    let store = cooperative().await;
    let olga = user_name("olga");
    store
        .create_api_token(api_token("tok-olga", "olga"))
        .await
        .unwrap();
    store
        .add_user_cert(user_cert("0a01", "olga"))
        .await
        .unwrap();
    // root minted a token for olga; olga's token minted one for olga and
    // (as if she had been an admin then) one for mia.
    store
        .create_api_token(api_token("tok-root", "root"))
        .await
        .unwrap();
    for (id, owner, minter) in [
        ("tok-for-olga", "olga", "tok-root"),
        ("tok-olga-2", "olga", "tok-olga"),
        ("tok-mia", "mia", "tok-olga"),
    ] {
        store
            .create_api_token(ApiTokenRecord {
                minted_by: Some(CredentialRef::Token(minter.into())),
                ..api_token(id, owner)
            })
            .await
            .unwrap();
    }

    let gone = store.delete_user(&olga, NOW + 5).await.unwrap();
    assert_eq!(gone.user.name, olga);
    assert_eq!(gone.user.node_grants, [node_name("n1")]);
    let mut deleted = gone.deleted.clone();
    deleted.sort();
    assert_eq!(
        deleted,
        [
            CredentialRef::Token("tok-for-olga".into()),
            CredentialRef::Token("tok-olga".into()),
            CredentialRef::Token("tok-olga-2".into()),
            CredentialRef::Certificate(serial("0a01")),
        ]
    );
    assert_eq!(gone.also_revoked, [CredentialRef::Token("tok-mia".into())]);

    let err = store.get_user(&olga).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "user", .. }),
        "{err:?}"
    );
    assert!(store.list_api_tokens(Some(&olga)).await.unwrap().is_empty());
    assert!(store.list_user_certs(Some(&olga)).await.unwrap().is_empty());
    assert_eq!(
        store.get_api_token("tok-mia").await.unwrap().revoked_unix,
        Some(NOW + 5)
    );
    // The minter of a token she did not own is untouched.
    assert_eq!(
        store.get_api_token("tok-root").await.unwrap().revoked_unix,
        None
    );
    // Her grants went with her: the node can be granted to others.
    let grants: i64 = store
        .conn
        .lock()
        .unwrap()
        .query_row(
            "SELECT count(*) FROM node_grants WHERE user_name = 'olga'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(grants, 0);

    // Her name is never given again.
    let err = store
        .create_user(user("olga", Some("asso-p"), Role::Member))
        .await
        .unwrap_err();
    refused_because(err, "olga", "never given again");
    let err = store.delete_user(&olga, NOW).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "user", .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn memberships_are_renewed_and_noted_once_per_phase() {
    use crate::store::MembershipPhase::*;
    let store = SqliteStore::open_in_memory().unwrap();
    let t = store.create_tenant(tenant("asso-x")).await.unwrap();
    assert_eq!((t.membership_noted, t.suspension), (Current, None));
    let name = tenant_name("asso-x");
    let renewed = store
        .renew_membership(&name, time::macros::date!(2028 - 06 - 30))
        .await
        .unwrap();
    assert_eq!(renewed.membership_expires.to_string(), "2028-06-30");
    assert_eq!(store.get_tenant(&name).await.unwrap(), renewed);
    let err = store
        .renew_membership(&tenant_name("ghost"), time::macros::date!(2028 - 06 - 30))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "tenant", .. }),
        "{err:?}"
    );

    // A compare-and-set: the second of two passes loses.
    assert!(
        store
            .note_membership(&name, Current, Expired)
            .await
            .unwrap()
    );
    assert!(
        !store
            .note_membership(&name, Current, Expired)
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_tenant(&name).await.unwrap().membership_noted,
        Expired
    );
    assert!(store.note_membership(&name, Expired, Frozen).await.unwrap());
    assert!(
        !store
            .note_membership(&tenant_name("ghost"), Current, Expired)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_suspension_tells_the_nodes_of_the_tenant_s_instances_and_keeps_everything() {
    use crate::store::{InstanceFilter, InstanceState, Suspension};
    let store = fleet(&["n1", "n2"]).await;
    let data = app_fleet(&store).await;
    let r = store
        .create_app_request(new_request("asso-a", "radicale", "n1", &data), NOW)
        .await
        .unwrap();
    store
        .approve_app_request(r.id, &user_name("root"), "go", NOW + 1)
        .await
        .unwrap();
    let name = tenant_name("asso-a");
    let (n1, n2) = (
        generation(&store, "n1").await,
        generation(&store, "n2").await,
    );
    let s = Suspension {
        since_unix: NOW + 5,
        by: user_name("root"),
        reason: "spam".into(),
    };
    let (t, nodes) = store.set_suspension(&name, Some(s.clone())).await.unwrap();
    assert_eq!(t.suspension.as_ref(), Some(&s));
    assert_eq!(nodes, [node_name("n1")]);
    assert_eq!(generation(&store, "n1").await, n1 + 1);
    assert_eq!(generation(&store, "n2").await, n2, "no instance there");
    let instances = store
        .list_instances(InstanceFilter::default())
        .await
        .unwrap();
    assert_eq!(instances.len(), 1);
    assert!(instances[0].tenant_suspended);
    assert_eq!(instances[0].state, InstanceState::Running, "kept as wanted");
    // Suspending again keeps the first suspension and tells no one.
    let later = Suspension {
        since_unix: NOW + 9,
        reason: "again".into(),
        ..s.clone()
    };
    let (t, nodes) = store.set_suspension(&name, Some(later)).await.unwrap();
    assert_eq!((t.suspension, nodes.len()), (Some(s), 0));
    assert_eq!(generation(&store, "n1").await, n1 + 1);
    // Resumed: the node is told again; the volume was never touched.
    let (t, nodes) = store.set_suspension(&name, None).await.unwrap();
    assert_eq!((t.suspension, nodes), (None, vec![node_name("n1")]));
    assert_eq!(generation(&store, "n1").await, n1 + 2);
    let instances = store
        .list_instances(InstanceFilter::default())
        .await
        .unwrap();
    assert!(!instances[0].tenant_suspended);
    assert_eq!(store.get_volume(&data.id).await.unwrap(), data);
    let err = store
        .set_suspension(&tenant_name("ghost"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "tenant", .. }),
        "{err:?}"
    );
}
