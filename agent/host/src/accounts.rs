//! Tenants' system accounts. Apps run as their tenant's posix id, and
//! systemd only starts a unit whose `User=` resolves in the user database
//! (a bare numeric uid fails with status 217/USER). Each tenant gets a
//! group and a user `ct<id>` ("coloc tenant"; Linux names are limited to
//! 32 characters, tenant names are not) with no home and no shell.

use std::collections::BTreeSet;
use std::sync::Mutex;

use async_trait::async_trait;
use coloc_proto::apps::check_posix_id;

use crate::runner::Runner;
use crate::{Accounts, HostError};

/// The account name of posix id `id`.
pub fn account_name(id: u32) -> String {
    format!("ct{id}")
}

/// Tenant ids by proto's rule (at least 1000, never nobody or -1), so
/// that no system account is ever created or reused for a tenant.
fn check_id(uid: u32, gid: u32) -> Result<(), HostError> {
    check_posix_id("uid", uid)
        .and_then(|()| check_posix_id("gid", gid))
        .map_err(|e| HostError::Refused {
            object: format!("account {uid}:{gid}"),
            reason: e.to_string(),
        })
}

/// [`Accounts`] through getent, groupadd and useradd.
#[derive(Debug, Clone)]
pub struct RealAccounts {
    runner: Runner,
}

impl RealAccounts {
    pub fn new(runner: Runner) -> RealAccounts {
        RealAccounts { runner }
    }

    /// Whether `getent <db> <key>` finds an entry (exit status 2: none).
    async fn exists(&self, db: &str, key: &str) -> Result<bool, HostError> {
        let out = self
            .runner
            .run_allow_status("getent", &[db, key], &[2])
            .await
            .map_err(|e| HostError::storage("look up", format!("{db} {key}"), e))?;
        Ok(out.status == 0)
    }
}

#[async_trait]
impl Accounts for RealAccounts {
    async fn ensure(&self, uid: u32, gid: u32) -> Result<(), HostError> {
        check_id(uid, gid)?;
        let name = account_name(uid);
        let gid_text = gid.to_string();
        let uid_text = uid.to_string();
        if !self.exists("group", &gid_text).await? {
            self.runner
                .run("groupadd", &["--gid", &gid_text, &account_name(gid)])
                .await
                .map_err(|e| HostError::storage("create group", account_name(gid), e))?;
        }
        if !self.exists("passwd", &uid_text).await? {
            self.runner
                .run(
                    "useradd",
                    &[
                        "--uid",
                        &uid_text,
                        "--gid",
                        &gid_text,
                        "--no-create-home",
                        "--home-dir",
                        "/nonexistent",
                        "--shell",
                        "/usr/sbin/nologin",
                        "--comment",
                        "coloc tenant",
                        &name,
                    ],
                )
                .await
                .map_err(|e| HostError::storage("create user", &name, e))?;
        }
        Ok(())
    }
}

/// In-memory [`Accounts`]: remembers which ids were ensured.
#[derive(Debug, Default)]
pub struct FakeAccounts {
    ensured: Mutex<BTreeSet<(u32, u32)>>,
}

impl FakeAccounts {
    pub fn ensured(&self) -> BTreeSet<(u32, u32)> {
        self.ensured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[async_trait]
impl Accounts for FakeAccounts {
    async fn ensure(&self, uid: u32, gid: u32) -> Result<(), HostError> {
        check_id(uid, gid)?;
        self.ensured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((uid, gid));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_linux_limits_and_ids_are_tenant_ids() {
        assert_eq!(account_name(200_000), "ct200000");
        assert!(account_name(u32::MAX - 1).len() <= 32);
        assert!(check_id(200_000, 200_000).is_ok());
        assert!(check_id(0, 200_000).is_err());
        assert!(check_id(200_000, 999).is_err());
        assert!(check_id(u32::MAX, 200_000).is_err());
    }

    #[tokio::test]
    async fn the_fake_refuses_system_ids() {
        let fake = FakeAccounts::default();
        fake.ensure(200_001, 200_001).await.unwrap();
        assert!(fake.ensure(0, 0).await.is_err());
        assert_eq!(fake.ensured().len(), 1);
    }
}
