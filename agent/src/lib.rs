//! coloc-agent: the daemon on every server of the cooperative.
//!
//! It owns the node's side of the contract in `coloc.agent.v1`: enrolling
//! once with a join token, holding one mTLS session with colocd, keeping
//! the last desired configuration in a ledger on disk and reconciling the
//! host against it (identity, draining, labels, storage pools and tenants'
//! volumes, app instances and the reverse proxy), with or without the
//! controller, again every `resync_interval_secs`. Host access (storage,
//! units, packages, journal, health) lives behind the traits of [`host`]
//! and is not done anywhere else; this crate must never shell out by
//! itself. The one exception is plain files under the agent's root
//! (units, app configuration, the Caddyfile), which [`apps`] writes
//! itself.
//!
//! Tests and simulations drive whole agents through [`spawn_agent`] and
//! [`sim::spawn_sim_agent`], which run the real logic on tokio tasks.

pub mod apps;
pub mod backoff;
pub mod config;
pub mod durable;
pub mod enroll;
pub mod host;
pub mod ledger;
pub mod logging;
pub mod notify;
pub mod reconcile;
pub mod runner;
pub mod seed;
pub mod session;
pub mod sim;
pub mod status;
pub mod storage;
pub mod supervisor;
pub mod tls;

pub use config::AgentConfig;
pub use ledger::{FileLedger, LedgerStore, MemoryLedger};
pub use reconcile::{ReconcileReport, Reconciler};
pub use session::handle_desired;
pub use sim::{SimAgentSpec, spawn_sim_agent, spawn_sim_agent_with};
pub use status::AgentStatus;
pub use supervisor::{AgentHandle, AgentOptions, spawn_agent};

use coloc_proto::agent::v1::NodeFacts;
use coloc_proto::domain::NodeName;
use tokio::sync::watch;

/// This agent's version, as reported in `Hello` and in facts.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The stop signal shared by one agent's tasks. Fires when the handle asks
/// for shutdown or is dropped.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub fn new(rx: watch::Receiver<bool>) -> Shutdown {
        Shutdown(rx)
    }

    /// Resolves once shutdown is requested. Cancel-safe, for `select!`.
    pub async fn wait(&mut self) {
        // An error means the sender is gone, which also means "stop".
        if self.0.wait_for(|stop| *stop).await.is_err() {
            tracing::trace!("agent handle dropped; stopping");
        }
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }
}

/// The host's facts for `Hello` and enrollment. A host that cannot be
/// probed must not keep the node off the controller: its absence of facts
/// is logged and the controller gets the minimum.
pub async fn gather_facts(host: &host::Host, node: &NodeName) -> NodeFacts {
    let mut facts = match host.health.facts().await {
        Ok(facts) => facts,
        Err(e) => {
            tracing::warn!(node = %node, error = %coloc_proto::error_chain(&e), "cannot gather host facts; sending the minimum");
            NodeFacts {
                hostname: node.to_string(),
                ..NodeFacts::default()
            }
        }
    };
    if facts.agent_version.is_empty() {
        facts.agent_version = AGENT_VERSION.to_owned();
    }
    facts
}
