//! The audit area of the store: an append-only log of who did what to
//! which object, allowed, denied or failed.
//!
//! Entries are appended and listed, never changed or removed: the trait
//! has no method that could, and a backend refuses it below the trait as
//! well (the SQLite schema's triggers). What is worth an entry is decided
//! by the API layer, not here.

use async_trait::async_trait;
use coloc_proto::domain::TenantName;

use super::StoreResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOutcome {
    Allowed,
    Denied,
    Failed,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Allowed => "allowed",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Assigned by the store; ignored by `append_audit`.
    pub id: u64,
    pub at_unix_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    /// Tenant the target belongs to; None for cooperative-wide objects.
    pub tenant: Option<TenantName>,
    pub outcome: AuditOutcome,
    pub detail: String,
}

/// Audit listing: page size when the caller asks for 0, and the most a
/// caller may ask for.
pub const AUDIT_DEFAULT_LIMIT: u32 = 100;
pub const AUDIT_MAX_LIMIT: u32 = 1000;

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only entries with id < before.
    pub before: Option<u64>,
    /// Newest first, at most this many ([`AuditFilter::page_size`]).
    pub limit: u32,
    pub tenant: Option<TenantName>,
    pub actor: Option<String>,
}

impl AuditFilter {
    /// How many entries a listing returns at most: the limit asked,
    /// [`AUDIT_DEFAULT_LIMIT`] for 0, never more than [`AUDIT_MAX_LIMIT`].
    pub fn page_size(&self) -> u32 {
        match self.limit {
            0 => AUDIT_DEFAULT_LIMIT,
            n => n.min(AUDIT_MAX_LIMIT),
        }
    }
}

#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    async fn append_audit(&self, entry: AuditRecord) -> StoreResult<u64>;
    /// Newest first, at most [`AuditFilter::page_size`] entries.
    async fn list_audit(&self, filter: AuditFilter) -> StoreResult<Vec<AuditRecord>>;
}
