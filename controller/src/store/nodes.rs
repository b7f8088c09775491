//! The fleet's area of the store: sites, join tokens and enrollment,
//! nodes with their connection state, labels, facts and last reported
//! outcome, and each node's desired configuration.
//!
//! The desired configuration lives here although it reads pools, volumes
//! and app instances: it is what a node is told, its consistency anchor is
//! the node's desired generation (a node column every area bumps), and its
//! one reader is the session manager. Reading it in one transaction with
//! the generation is what makes the generation mean something; splitting
//! it across areas would lose that.
//!
//! This module declares records and the trait; it holds no SQL and makes
//! no decision (the session manager decides when a node is unreachable).

use std::collections::BTreeMap;

use async_trait::async_trait;
use coloc_proto::agent::v1::NodeFacts;
use coloc_proto::domain::{NodeName, SiteName};

use super::{
    DesiredApp, DesiredVolume, InstanceRecord, PoolRecord, StoreResult, UnixSecs, VolumeRecord,
};

#[derive(Debug, Clone, PartialEq)]
pub struct SiteRecord {
    pub name: SiteName,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
    pub city: String,
    pub description: String,
    pub created_unix: UnixSecs,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JoinTokenRecord {
    /// Public identifier, e.g. "jt-3f2a9c".
    pub id: String,
    pub site: SiteName,
    /// sha256 of the secret, hex. The secret itself is never stored.
    pub secret_hash: String,
    pub created_unix: UnixSecs,
    pub expires_unix: UnixSecs,
    /// "user:alice".
    pub created_by: String,
    pub used_by_node: Option<NodeName>,
    pub used_unix: Option<UnixSecs>,
}

/// Connection state as the session manager last recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Certificate issued, never connected.
    Enrolling,
    Connected,
    /// Session dropped; not yet past the unreachable delay.
    Disconnected,
    Unreachable,
}

impl ConnState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Enrolling => "enrolling",
            ConnState::Connected => "connected",
            ConnState::Disconnected => "disconnected",
            ConnState::Unreachable => "unreachable",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "enrolling" => Some(ConnState::Enrolling),
            "connected" => Some(ConnState::Connected),
            "disconnected" => Some(ConnState::Disconnected),
            "unreachable" => Some(ConnState::Unreachable),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    pub name: NodeName,
    pub site: SiteName,
    pub enrolled_unix: UnixSecs,
    pub last_seen_unix: Option<UnixSecs>,
    pub conn_state: ConnState,
    /// When conn_state last changed.
    pub conn_changed_unix: UnixSecs,
    pub draining: bool,
    pub labels: BTreeMap<String, String>,
    /// Generation of the desired configuration; bumped by every change.
    pub desired_generation: u64,
    /// Generation the agent last reported as held in its ledger.
    pub applied_generation: u64,
    /// coloc.agent.v1.ReconcileOutcome as i32.
    pub last_outcome: i32,
    pub last_message: String,
    pub facts: Option<NodeFacts>,
    /// The certificate the node uses.
    pub cert: NodeCert,
    /// A renewed certificate not used yet; it replaces `cert` the first
    /// time the node opens a session with it ([`crate::rules::certs`]).
    pub next_cert: Option<NodeCert>,
    /// Set once an admin removed the node: its certificates are refused,
    /// its volumes and instances are orphans, the row stays as a record.
    pub removed: Option<Removal>,
}

/// One certificate of a node, as colocd signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCert {
    /// sha256 of the certificate's DER, hex.
    pub fingerprint: String,
    pub not_after_unix: UnixSecs,
    /// When it is due for renewal ([`crate::rules::certs::renew_after`]).
    pub renew_after_unix: UnixSecs,
}

/// When and by whom a node was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub at_unix: UnixSecs,
    /// "user:alice".
    pub by: String,
}

/// A new node, created by [`NodeStore::enroll_node`].
#[derive(Debug, Clone)]
pub struct NewNode {
    pub name: NodeName,
    pub cert: NodeCert,
    pub facts: Option<NodeFacts>,
}

/// A node just removed, with what it leaves behind: its volumes that are
/// not destroyed and its instances that are not gone, now orphans.
#[derive(Debug, Clone, PartialEq)]
pub struct RemovedNode {
    pub node: NodeRecord,
    pub volumes: Vec<VolumeRecord>,
    pub instances: Vec<InstanceRecord>,
}

/// A change to the labels of nodes; each touched node gets a new
/// desired generation.
#[derive(Debug, Clone, Default)]
pub struct LabelChange {
    /// Empty: every node.
    pub nodes: Vec<NodeName>,
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

/// Everything a node's desired configuration is made of, read in one
/// transaction so that the generation matches the content.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeDesired {
    pub node: NodeRecord,
    pub pools: Vec<PoolRecord>,
    /// Every volume of the node that is not destroyed, by id.
    pub volumes: Vec<DesiredVolume>,
    /// Every instance of the node that is not gone, by tenant then app.
    pub apps: Vec<DesiredApp>,
}

#[async_trait]
pub trait NodeStore: Send + Sync + 'static {
    // ---- sites
    async fn create_site(&self, site: SiteRecord) -> StoreResult<()>;
    async fn get_site(&self, name: &SiteName) -> StoreResult<SiteRecord>;
    async fn list_sites(&self) -> StoreResult<Vec<SiteRecord>>;

    // ---- join tokens and enrollment
    async fn create_join_token(&self, token: JoinTokenRecord) -> StoreResult<()>;
    async fn list_join_tokens(&self) -> StoreResult<Vec<JoinTokenRecord>>;
    /// The join token with this hash, if it can enroll a node at `now`;
    /// otherwise the refusal [`NodeStore::enroll_node`] would give
    /// (JoinTokenUnknown / JoinTokenUsed / JoinTokenExpired). Changes
    /// nothing: enrollment looks at the token before anything else of the
    /// request, and `enroll_node` checks it again in its transaction.
    async fn usable_join_token(
        &self,
        secret_hash: &str,
        now: UnixSecs,
    ) -> StoreResult<JoinTokenRecord>;
    /// In one transaction: find the unused, unexpired token with this
    /// hash, mark it used by `node.name`, and create the node at the
    /// token's site (conn_state Enrolling, generation 1). Errors:
    /// JoinTokenUnknown / JoinTokenExpired / JoinTokenUsed, or
    /// AlreadyExists if a node of that name exists (the token then stays
    /// unused).
    async fn enroll_node(
        &self,
        secret_hash: &str,
        node: NewNode,
        now: UnixSecs,
    ) -> StoreResult<NodeRecord>;

    // ---- nodes
    async fn get_node(&self, name: &NodeName) -> StoreResult<NodeRecord>;
    /// The node whose current or next certificate has this fingerprint,
    /// removed nodes included (their certificates are refused by name).
    async fn node_by_fingerprint(&self, fingerprint: &str) -> StoreResult<Option<NodeRecord>>;
    /// Every node, removed ones included.
    async fn list_nodes(&self, site: Option<&SiteName>) -> StoreResult<Vec<NodeRecord>>;
    /// Sets draining and bumps the desired generation if it changed.
    /// Conflict for a removed node.
    async fn set_draining(&self, name: &NodeName, draining: bool) -> StoreResult<NodeRecord>;
    /// Applies the change to every named node (every node not removed
    /// when empty) in one transaction, bumping each one's generation.
    /// NotFound if a named node does not exist, Conflict if it was removed
    /// (nothing is changed then).
    async fn change_labels(&self, change: LabelChange) -> StoreResult<Vec<NodeRecord>>;
    /// Marks the node removed by `by` at `now`, forgets a renewed
    /// certificate it has not used, and returns what it leaves behind.
    /// Conflict if it was removed already.
    async fn remove_node(
        &self,
        name: &NodeName,
        by: &str,
        now: UnixSecs,
    ) -> StoreResult<RemovedNode>;

    // ---- node certificates
    /// Records a renewed certificate as the node's next one (replacing a
    /// next one it never used). Conflict for a removed node.
    async fn set_next_cert(&self, name: &NodeName, cert: NodeCert) -> StoreResult<NodeRecord>;
    /// The node opened a session with its next certificate: it becomes
    /// the current one, and the old one matches nothing from now on.
    /// Conflict if `fingerprint` is not the node's next certificate.
    async fn promote_next_cert(
        &self,
        name: &NodeName,
        fingerprint: &str,
    ) -> StoreResult<NodeRecord>;
    /// Up to `limit` connected nodes, not removed, whose current
    /// certificate is due for renewal at `now` (expired ones included),
    /// the longest due first.
    async fn certs_due(&self, now: UnixSecs, limit: usize) -> StoreResult<Vec<NodeRecord>>;
    async fn set_conn_state(
        &self,
        name: &NodeName,
        state: ConnState,
        now: UnixSecs,
    ) -> StoreResult<()>;
    /// Nodes Disconnected since before `cutoff` become Unreachable;
    /// returns their names.
    async fn mark_unreachable(&self, cutoff: UnixSecs, now: UnixSecs)
    -> StoreResult<Vec<NodeName>>;
    /// Batched last-seen updates from heartbeats (one transaction).
    async fn record_seen(&self, seen: Vec<(NodeName, UnixSecs)>) -> StoreResult<()>;
    async fn record_observed(
        &self,
        name: &NodeName,
        applied_generation: u64,
        outcome: i32,
        message: &str,
    ) -> StoreResult<()>;
    async fn record_facts(&self, name: &NodeName, facts: &NodeFacts) -> StoreResult<()>;

    // ---- desired configuration
    /// The desired configuration of each named node, one transaction per
    /// call. NotFound if one does not exist.
    async fn desired_configs(&self, nodes: &[NodeName]) -> StoreResult<Vec<NodeDesired>>;
}
