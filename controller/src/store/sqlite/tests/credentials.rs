//! API tokens and user certificates as trees: each minted within its
//! minter's life and only while the minter is live, revoked with it, and
//! certificates found by fingerprint and by serial.

use coloc_proto::domain::Role;

use super::fixtures::*;
use crate::store::prelude::*;
use crate::store::sqlite::SqliteStore;
use crate::store::{ApiTokenRecord, CredentialRef, StoreError, UserCertRecord};

/// Admin root and member mia, each with a root token (`tok-root`,
/// `tok-mia`) valid for an hour from NOW.
async fn people() -> SqliteStore {
    let store = SqliteStore::open_in_memory().unwrap();
    store.create_tenant(tenant("asso-x")).await.unwrap();
    store
        .create_user(user("root", None, Role::Admin))
        .await
        .unwrap();
    store
        .create_user(user("mia", Some("asso-x"), Role::Member))
        .await
        .unwrap();
    for (id, owner) in [("tok-root", "root"), ("tok-mia", "mia")] {
        store.create_api_token(api_token(id, owner)).await.unwrap();
    }
    store
}

fn token(id: &str) -> CredentialRef {
    CredentialRef::Token(id.into())
}

fn cert(s: &str) -> CredentialRef {
    CredentialRef::Certificate(serial(s))
}

/// `id` of `owner`, minted by `minter`, expiring at `expires`.
fn minted_token(id: &str, owner: &str, minter: CredentialRef, expires: i64) -> ApiTokenRecord {
    ApiTokenRecord {
        expires_unix: expires,
        minted_by: Some(minter),
        ..api_token(id, owner)
    }
}

fn minted_cert(s: &str, owner: &str, minter: CredentialRef, expires: i64) -> UserCertRecord {
    UserCertRecord {
        expires_unix: expires,
        minted_by: Some(minter),
        ..user_cert(s, owner)
    }
}

fn conflict_saying(err: &StoreError, why: &str) {
    match err {
        StoreError::Conflict { reason, .. } => {
            assert!(reason.contains(why), "{reason:?} does not say {why:?}");
        }
        other => panic!("expected a conflict saying {why:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_minted_credential_lives_within_its_minter() {
    let store = people().await;
    // Up to the minter's expiry: recorded, with its minter.
    let t = minted_token("tok-a", "mia", token("tok-mia"), NOW + 3600);
    store.create_api_token(t.clone()).await.unwrap();
    assert_eq!(store.get_api_token("tok-a").await.unwrap(), t);
    let c = minted_cert("0b01", "mia", token("tok-a"), NOW + 3600);
    store.add_user_cert(c.clone()).await.unwrap();
    assert_eq!(store.get_user_cert(&serial("0b01")).await.unwrap(), c);

    // A second past it: refused, nothing recorded.
    let err = store
        .create_api_token(minted_token("tok-b", "mia", token("tok-mia"), NOW + 3601))
        .await
        .unwrap_err();
    conflict_saying(&err, "would expire after token tok-mia");
    let err = store
        .add_user_cert(minted_cert("0b02", "mia", cert("0b01"), NOW + 3601))
        .await
        .unwrap_err();
    conflict_saying(&err, "would expire after certificate 0b01");
    assert!(matches!(
        store.get_api_token("tok-b").await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
    assert!(matches!(
        store.get_user_cert(&serial("0b02")).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));

    // A minter past its expiry at the time of minting mints nothing.
    let late = ApiTokenRecord {
        created_unix: NOW + 3600,
        ..minted_token("tok-c", "mia", token("tok-mia"), NOW + 3600)
    };
    let err = store.create_api_token(late).await.unwrap_err();
    conflict_saying(&err, "token tok-mia has expired");

    // An unknown minter is an unknown credential.
    let err = store
        .create_api_token(minted_token("tok-d", "mia", token("tok-zz"), NOW + 60))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "api token", ref name } if name == "tok-zz"),
        "{err:?}"
    );
}

#[tokio::test]
async fn revoking_takes_everything_minted_from_it() {
    let store = people().await;
    // tok-mia -> tok-a -> cert 0c01 -> tok-b, and tok-mia -> cert 0c02;
    // tok-root -> tok-r stays out of it.
    let hour = NOW + 3600;
    store
        .create_api_token(minted_token("tok-a", "mia", token("tok-mia"), hour))
        .await
        .unwrap();
    store
        .add_user_cert(minted_cert("0c01", "mia", token("tok-a"), hour))
        .await
        .unwrap();
    store
        .create_api_token(minted_token("tok-b", "mia", cert("0c01"), hour))
        .await
        .unwrap();
    store
        .add_user_cert(minted_cert("0c02", "mia", token("tok-mia"), hour))
        .await
        .unwrap();
    store
        .create_api_token(minted_token("tok-r", "root", token("tok-root"), hour))
        .await
        .unwrap();
    // tok-b revoked first on its own.
    let b = store.revoke_api_token("tok-b", NOW + 1).await.unwrap();
    assert_eq!(b.record.revoked_unix, Some(NOW + 1));
    assert!(b.also_revoked.is_empty());

    let revoked = store.revoke_api_token("tok-mia", NOW + 10).await.unwrap();
    assert_eq!(revoked.record.revoked_unix, Some(NOW + 10));
    let mut also = revoked.also_revoked.clone();
    also.sort();
    // tok-b was revoked before: not listed, and keeps its time.
    assert_eq!(also, [token("tok-a"), cert("0c01"), cert("0c02")]);
    for id in ["tok-a"] {
        assert_eq!(
            store.get_api_token(id).await.unwrap().revoked_unix,
            Some(NOW + 10)
        );
    }
    assert_eq!(
        store.get_api_token("tok-b").await.unwrap().revoked_unix,
        Some(NOW + 1)
    );
    for s in ["0c01", "0c02"] {
        assert_eq!(
            store.get_user_cert(&serial(s)).await.unwrap().revoked_unix,
            Some(NOW + 10)
        );
    }
    assert_eq!(
        store.get_api_token("tok-r").await.unwrap().revoked_unix,
        None
    );
    assert_eq!(
        store.get_api_token("tok-root").await.unwrap().revoked_unix,
        None
    );

    // Again: the first time stays, nothing more is listed.
    let again = store.revoke_api_token("tok-mia", NOW + 99).await.unwrap();
    assert_eq!(again.record.revoked_unix, Some(NOW + 10));
    assert!(again.also_revoked.is_empty());

    // A revoked credential mints nothing, even within its lifetime.
    let err = store
        .create_api_token(minted_token("tok-late", "mia", token("tok-a"), NOW + 60))
        .await
        .unwrap_err();
    conflict_saying(&err, "token tok-a was revoked");
    let err = store
        .add_user_cert(minted_cert("0c03", "mia", cert("0c01"), NOW + 60))
        .await
        .unwrap_err();
    conflict_saying(&err, "certificate 0c01 was revoked");

    let err = store.revoke_api_token("tok-9", NOW).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "api token", ref name } if name == "tok-9"),
        "{err:?}"
    );
}

#[tokio::test]
async fn certificates_are_found_listed_and_revoked_by_serial() {
    let store = people().await;
    store.add_user_cert(user_cert("0d02", "mia")).await.unwrap();
    store.add_user_cert(user_cert("0d01", "mia")).await.unwrap();
    store
        .add_user_cert(user_cert("0d03", "root"))
        .await
        .unwrap();
    let tok = minted_token("tok-from-cert", "mia", cert("0d01"), NOW + 60);
    store.create_api_token(tok).await.unwrap();

    assert_eq!(
        store.user_cert_by_fingerprint("fp-0d01").await.unwrap(),
        Some(user_cert("0d01", "mia"))
    );
    assert_eq!(store.user_cert_by_fingerprint("fp-x").await.unwrap(), None);
    let all = store.list_user_certs(None).await.unwrap();
    let all: Vec<_> = all.iter().map(|c| c.serial.as_str()).collect();
    assert_eq!(
        all,
        ["0d01", "0d02", "0d03"],
        "by user, then age, then serial"
    );
    let of_mia = store
        .list_user_certs(Some(&user_name("mia")))
        .await
        .unwrap();
    assert_eq!(of_mia, [user_cert("0d01", "mia"), user_cert("0d02", "mia")]);

    let revoked = store
        .revoke_user_cert(&serial("0d01"), NOW + 7)
        .await
        .unwrap();
    assert_eq!(revoked.record.revoked_unix, Some(NOW + 7));
    assert_eq!(revoked.also_revoked, [token("tok-from-cert")]);
    assert_eq!(
        store
            .user_cert_by_fingerprint("fp-0d01")
            .await
            .unwrap()
            .unwrap()
            .revoked_unix,
        Some(NOW + 7)
    );
    assert_eq!(
        store
            .get_user_cert(&serial("0d02"))
            .await
            .unwrap()
            .revoked_unix,
        None
    );

    let err = store
        .revoke_user_cert(&serial("ffff"), NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "user certificate", ref name } if name == "ffff"),
        "{err:?}"
    );
    // A serial or a fingerprint is one certificate.
    let err = store
        .add_user_cert(user_cert("0d02", "root"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::AlreadyExists {
                kind: "user certificate",
                ..
            }
        ),
        "{err:?}"
    );
    let err = store
        .add_user_cert(UserCertRecord {
            fingerprint: "fp-0d02".into(),
            ..user_cert("0d09", "root")
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
    let err = store
        .add_user_cert(user_cert("0d04", "nobody"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "user", ref name } if name == "nobody"),
        "{err:?}"
    );
}

#[tokio::test]
async fn nothing_is_minted_for_a_disabled_user() {
    let store = people().await;
    let mia = user_name("mia");
    store.set_user_disabled(&mia, Some(NOW)).await.unwrap();
    let err = store
        .create_api_token(minted_token("tok-a", "mia", token("tok-root"), NOW + 60))
        .await
        .unwrap_err();
    conflict_saying(&err, "disabled");
    let err = store
        .add_user_cert(minted_cert("0e01", "mia", token("tok-root"), NOW + 60))
        .await
        .unwrap_err();
    conflict_saying(&err, "disabled");
    // Her existing credentials are kept, for when she is enabled again
    // (authentication refuses them meanwhile).
    assert_eq!(
        store.get_api_token("tok-mia").await.unwrap().revoked_unix,
        None
    );
    store.set_user_disabled(&mia, None).await.unwrap();
    store
        .create_api_token(minted_token("tok-a", "mia", token("tok-root"), NOW + 60))
        .await
        .unwrap();
}
