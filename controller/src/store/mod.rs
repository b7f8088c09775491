//! The controller's source of truth, behind one trait made of six.
//!
//! Each area of the registry has its own trait and module, with the
//! records it stores: [`NodeStore`] (sites, join tokens, enrollment,
//! nodes, their sessions' state, labels, facts, and the desired
//! configuration sent to each node), [`TenancyStore`] (tenants, users,
//! grants, API tokens, user certificates), [`StorageStore`] (pools,
//! volumes, snapshots, purge), [`AppStore`] (install requests and app
//! instances), [`AuditStore`] (the append-only log) and [`AlertStore`]
//! (health reports, alerts and the notifier's outbox). [`Store`] is all
//! six: the API layer and the session manager hold an `Arc<dyn Store>`
//! and bring the area traits into scope with `use crate::store::prelude::*`.
//!
//! The embedded SQLite backend ([`sqlite::SqliteStore`]) is the default; a
//! PostgreSQL backend for several controllers implements the same traits
//! later, one area at a time (docs/DECISIONS.md, "Store: areas, rules and
//! protobuf blobs"). Every method is one transaction: enrollment in
//! particular consumes the join token and creates the node atomically, so
//! a token can never be used twice even under concurrent enrollments. The
//! decisions a transaction takes (quota, port, request and lifecycle
//! transitions) are [`crate::rules`]' plain functions, the same for every
//! backend.
//!
//! The store validates nothing about names (the API layer hands it domain
//! types) but enforces uniqueness, referential integrity and the
//! append-only audit log. This module holds only what every area shares:
//! the error, the time unit, the supertrait and the [`prelude`]. The
//! areas' modules are [`nodes`], [`tenancy`], [`storage`], [`apps`] and
//! [`audit`]; the backend is [`sqlite`].

pub mod alerts;
pub mod apps;
pub mod audit;
pub mod nodes;
pub mod sqlite;
pub mod storage;
pub mod tenancy;

pub use self::alerts::{
    ALERTS_DEFAULT_LIMIT, ALERTS_MAX_LIMIT, AlertAck, AlertChanges, AlertEvent, AlertEventKind,
    AlertFilter, AlertRecord, AlertSeverity, AlertSilence, AlertState, AlertStore, AlertSubject,
    AppliedAlerts, NewAlert, StoredHealth, SubjectKind,
};
pub use self::apps::{
    AppName, AppRequestRecord, AppStore, CommentRecord, DesiredApp, FIRST_APP_PORT, InstanceChange,
    InstanceFilter, InstanceRecord, InstanceState, NewAppRequest, RequestState,
};
pub use self::audit::{AuditFields, AuditFilter, AuditOutcome, AuditPage, AuditRecord, AuditStore};
pub use self::nodes::{
    ConnState, JoinTokenRecord, LabelChange, NewNode, NodeCert, NodeDesired, NodeRecord, NodeStore,
    Removal, RemovedNode, SiteRecord,
};
pub use self::storage::{
    DEFAULT_VOLUME_GRACE_DAYS, DesiredVolume, MAX_SNAPSHOTS_PER_VOLUME, ObservedStorage,
    PoolRecord, StorageStore, VolumeFilter, VolumeLifecycle, VolumeRecord,
};
pub use self::tenancy::{
    ApiTokenRecord, CredentialRef, DeletedUser, FIRST_POSIX_ID, MembershipPhase, Revoked,
    RoleChange, Suspension, TenancyStore, TenantRecord, TenantStorageChange, UserCertRecord,
    UserRecord,
};

/// The area traits, for callers that hold a `dyn Store`: a method of a
/// supertrait can only be called with that trait in scope, so such a
/// caller says `use crate::store::prelude::*;`.
pub mod prelude {
    pub use super::{AlertStore, AppStore, AuditStore, NodeStore, StorageStore, TenancyStore};
}

/// Seconds since the Unix epoch.
pub type UnixSecs = i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("{kind} {name:?} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("join token is not valid")]
    JoinTokenUnknown,
    #[error("join token has expired")]
    JoinTokenExpired,
    #[error("join token was already used by node {node:?}")]
    JoinTokenUsed { node: String },
    /// The object exists but its state forbids the change (a retained
    /// volume resized, a snapshot that would be the 65th, ...).
    #[error("{kind} {name}: {reason}")]
    Conflict {
        kind: &'static str,
        name: String,
        reason: String,
    },
    /// The change would take the tenant's volumes past its quota.
    #[error(
        "tenant {tenant} would use {} of its {} storage quota ({} in use, {} more asked)",
        coloc_proto::storage::format_size(used.saturating_add(*asked)),
        coloc_proto::storage::format_size(*quota),
        coloc_proto::storage::format_size(*used),
        coloc_proto::storage::format_size(*asked)
    )]
    QuotaExceeded {
        tenant: String,
        quota: u64,
        used: u64,
        asked: u64,
    },
    #[error("database error")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("database schema version {found} is newer than this colocd understands ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The whole store: every area. Implemented by any type that implements
/// the six area traits, so a backend only ever writes `impl NodeStore for
/// MyBackend` and its siblings.
pub trait Store:
    NodeStore + TenancyStore + StorageStore + AppStore + AuditStore + AlertStore
{
}

impl<T> Store for T where
    T: NodeStore + TenancyStore + StorageStore + AppStore + AuditStore + AlertStore
{
}
