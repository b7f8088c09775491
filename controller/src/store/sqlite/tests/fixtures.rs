//! Records and fleets the store tests build on: a site `paris-1` with
//! nodes enrolled by join tokens, tenant `asso-a` with a ZFS pool `tank`
//! on n1 and n2, an active volume for apps.

use coloc_proto::agent::v1::{Disk, NodeFacts, PoolKind, PoolLayout};
use coloc_proto::domain::{CertSerial, NodeName, Offer, Role, SiteName, TenantName, UserName};
use coloc_proto::storage::{DiskRef, PoolName, SnapshotName, VolumeId, VolumeName};

use crate::store::prelude::*;
use crate::store::sqlite::SqliteStore;
use crate::store::{
    ApiTokenRecord, AppName, AuditFields, AuditOutcome, AuditRecord, JoinTokenRecord,
    NewAppRequest, NewNode, NodeCert, NodeRecord, PoolRecord, SiteRecord, StoreError, TenantRecord,
    UnixSecs, UserCertRecord, UserRecord, VolumeLifecycle, VolumeRecord,
};

pub(super) const NOW: UnixSecs = 1_800_000_000;
/// Lifetime of the node certificates of [`new_node`].
pub(super) const CERT_TTL: UnixSecs = 365 * 86_400;

pub(super) fn site_name(s: &str) -> SiteName {
    SiteName::new(s).unwrap()
}
pub(super) fn node_name(s: &str) -> NodeName {
    NodeName::new(s).unwrap()
}
pub(super) fn tenant_name(s: &str) -> TenantName {
    TenantName::new(s).unwrap()
}
pub(super) fn user_name(s: &str) -> UserName {
    UserName::new(s).unwrap()
}

pub(super) fn site(name: &str) -> SiteRecord {
    SiteRecord {
        name: site_name(name),
        country: "FR".into(),
        city: "Paris".into(),
        description: format!("site {name}"),
        created_unix: NOW - 1000,
    }
}

pub(super) fn join_token(id: &str, site: &str, expires_unix: UnixSecs) -> JoinTokenRecord {
    JoinTokenRecord {
        id: id.into(),
        site: site_name(site),
        secret_hash: format!("hash-of-{id}"),
        created_unix: NOW - 100,
        expires_unix,
        created_by: "user:alice".into(),
        used_by_node: None,
        used_unix: None,
    }
}

pub(super) fn facts(hostname: &str) -> NodeFacts {
    NodeFacts {
        hostname: hostname.into(),
        cpu_model: "EPYC".into(),
        cpu_count: 16,
        memory_bytes: 64 << 30,
        disks: vec![Disk {
            name: "nvme0n1".into(),
            model: "QEMU NVMe Ctrl".into(),
            serial: "COLOC0001".into(),
            size_bytes: 1 << 40,
            transport: "nvme".into(),
            rotational: false,
        }],
        ..NodeFacts::default()
    }
}

pub(super) fn new_node(name: &str) -> NewNode {
    NewNode {
        name: node_name(name),
        cert: NodeCert {
            fingerprint: format!("fp-{name}"),
            not_after_unix: NOW + CERT_TTL,
            renew_after_unix: NOW + CERT_TTL * 2 / 3,
        },
        facts: Some(facts(name)),
    }
}

pub(super) fn tenant(name: &str) -> TenantRecord {
    TenantRecord {
        name: tenant_name(name),
        display_name: format!("Association {name}"),
        offer: Offer::Participatif,
        membership_expires: time::macros::date!(2027 - 06 - 30),
        membership_noted: crate::store::MembershipPhase::Current,
        suspension: None,
        created_unix: NOW,
        storage_quota_bytes: 10 << 30,
        volume_grace_days: 30,
        posix_id: 0,
        storage_used_bytes: 0,
    }
}

pub(super) fn user(name: &str, tenant: Option<&str>, role: Role) -> UserRecord {
    UserRecord {
        name: user_name(name),
        tenant: tenant.map(tenant_name),
        role,
        display_name: format!("User {name}"),
        created_unix: NOW,
        node_grants: Vec::new(),
        disabled_unix: None,
    }
}

pub(super) fn api_token(id: &str, user: &str) -> ApiTokenRecord {
    ApiTokenRecord {
        id: id.into(),
        user: user_name(user),
        description: format!("token {id}"),
        secret_hash: format!("hash-of-{id}"),
        created_unix: NOW,
        expires_unix: NOW + 3600,
        revoked_unix: None,
        minted_by: None,
    }
}

pub(super) fn serial(s: &str) -> CertSerial {
    CertSerial::new(s).unwrap()
}

/// A certificate of `user` valid for an hour from [`NOW`], fingerprint
/// `fp-<serial>`, minted by colocd.
pub(super) fn user_cert(serial_hex: &str, user: &str) -> UserCertRecord {
    UserCertRecord {
        serial: serial(serial_hex),
        fingerprint: format!("fp-{serial_hex}"),
        user: user_name(user),
        created_unix: NOW,
        expires_unix: NOW + 3600,
        revoked_unix: None,
        minted_by: None,
    }
}

pub(super) fn audit(
    at: i64,
    actor: &str,
    tenant: Option<&str>,
    outcome: AuditOutcome,
) -> AuditRecord {
    AuditRecord::new(AuditFields {
        at_unix_ms: at,
        actor: actor.into(),
        action: "CreateApp".into(),
        target: "app/nextcloud".into(),
        tenant: tenant.map(tenant_name),
        outcome,
        detail: String::new(),
    })
}

/// A store with site `paris-1` and nodes enrolled through one token each.
pub(super) async fn fleet(nodes: &[&str]) -> SqliteStore {
    let store = SqliteStore::open_in_memory().unwrap();
    store.create_site(site("paris-1")).await.unwrap();
    for name in nodes {
        let id = format!("jt-{name}");
        store
            .create_join_token(join_token(&id, "paris-1", NOW + 3600))
            .await
            .unwrap();
        store
            .enroll_node(&format!("hash-of-{id}"), new_node(name), NOW)
            .await
            .unwrap();
    }
    store
}

pub(super) fn names(nodes: &[NodeRecord]) -> Vec<&str> {
    nodes.iter().map(|n| n.name.as_str()).collect()
}

pub(super) const GIB: u64 = 1 << 30;

pub(super) fn pool(node: &str, name: &str, kind: PoolKind) -> PoolRecord {
    PoolRecord {
        node: node_name(node),
        name: PoolName::new(name).unwrap(),
        kind,
        layout: PoolLayout::Single,
        disks: vec![DiskRef::new("serial:COLOC0001").unwrap()],
        force: false,
        created_unix: NOW,
        observed: None,
        orphans: Vec::new(),
    }
}

pub(super) fn volume(tenant: &str, name: &str, node: &str, size: u64) -> VolumeRecord {
    VolumeRecord {
        id: VolumeId::random(),
        tenant: tenant_name(tenant),
        name: VolumeName::new(name).unwrap(),
        node: node_name(node),
        pool: PoolName::new("tank").unwrap(),
        pool_kind: PoolKind::Unspecified,
        size_bytes: size,
        reservation_bytes: 0,
        encrypted: false,
        lifecycle: VolumeLifecycle::Active,
        created_unix: 0,
        deleted_unix: None,
        purge_after_unix: None,
        snapshots: Vec::new(),
        allow_shrink: false,
        observed: None,
        node_removed: false,
    }
}

/// Nodes n1 and n2 with a ZFS pool `tank` each, tenant asso-a with a
/// 10 GiB quota.
pub(super) async fn storage_fleet(store: &SqliteStore) {
    for n in ["n1", "n2"] {
        store
            .create_pool(pool(n, "tank", PoolKind::Zfs))
            .await
            .unwrap();
    }
    store.create_tenant(tenant("asso-a")).await.unwrap();
}

pub(super) async fn generation(store: &SqliteStore, node: &str) -> u64 {
    store
        .get_node(&node_name(node))
        .await
        .unwrap()
        .desired_generation
}

pub(super) fn snap(s: &str) -> SnapshotName {
    SnapshotName::new(s).unwrap()
}

pub(super) fn app(name: &str) -> AppName {
    AppName::new(name).unwrap()
}

pub(super) fn new_request(
    tenant: &str,
    name: &str,
    node: &str,
    volume: &VolumeRecord,
) -> NewAppRequest {
    NewAppRequest {
        tenant: tenant_name(tenant),
        app: app(name),
        node: node_name(node),
        volume_id: volume.id.clone(),
        requested_by: user_name("alice"),
        comment: format!("we would like {name}"),
    }
}

/// [`storage_fleet`] plus an active volume `data` of asso-a on n1.
pub(super) async fn app_fleet(store: &SqliteStore) -> VolumeRecord {
    storage_fleet(store).await;
    store
        .create_volume(volume("asso-a", "data", "n1", GIB), NOW)
        .await
        .unwrap()
}

pub(super) fn is_conflict(err: &StoreError) -> bool {
    matches!(err, StoreError::Conflict { .. })
}
