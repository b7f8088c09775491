//! coloc-agent: the daemon on every server of the cooperative.
//!
//! It owns the node's side of the contract in `coloc.agent.v1`: enrolling
//! once with a join token, holding one mTLS session with colocd, keeping
//! the last desired configuration in a ledger on disk and reconciling the
//! host against it (identity, draining, labels, storage pools and tenants'
//! volumes, app instances and the reverse proxy), with or without the
//! controller, again every `resync_interval_secs`. Host access (storage,
//! units, packages, journal, health, and the one command runner) lives in
//! the `coloc-host` library, re-exported as [`host`], and is not done
//! anywhere else; this crate must never shell out by itself. The one
//! exception is plain files under the agent's root (units, app
//! configuration, the Caddyfile), which [`apps`] writes itself.
//!
//! Tests and simulations drive whole agents through [`spawn_agent`] and
//! [`sim::spawn_sim_agent`], which run the real logic on tokio tasks.
//!
//! Layout, in the order a configuration travels: [`config`]
//! (`/etc/coloc/agent.toml`), [`tls`] (how the agent dials colocd),
//! [`enroll`] (a join token turned into the node's certificate, once),
//! [`session`] (the stream with colocd, reopened after [`backoff`]),
//! [`desired`] (a `DesiredConfig` converted whole into proto's domain
//! types, or refused whole), [`ledger`] (the last accepted configuration,
//! on disk), [`reconcile`] (one pass: identity, draining and labels,
//! then [`storage`], then [`apps`]), [`settle`] (instances probed again
//! shortly after a start until they answer), [`facts`] (what the node says of
//! itself), [`health`] (the health loop and the maintenance schedule), [`status`] (what `coloc-agent status` reads), [`logging`]
//! (journal fields and `MESSAGE_ID`s), [`notify`] (readiness and the
//! watchdog for systemd), [`supervisor`] (one agent's tasks and their
//! start order), [`shutdown`] (the stop signal its tasks share),
//! [`seed`] (first boot from the seed volume), [`sim`] (simulated agents
//! over a fake host) and [`version`] (the version the agent reports).

pub mod apps;
pub mod backoff;
pub mod config;
pub mod desired;
pub mod enroll;
pub mod facts;
pub mod firewall;
pub mod health;
pub mod ledger;
pub mod logging;
pub mod notify;
pub mod reconcile;
pub mod renewal;
pub mod seed;
pub mod session;
pub mod settle;
pub mod shutdown;
pub mod sim;
pub mod status;
pub mod storage;
pub mod supervisor;
pub mod tls;
pub mod version;

/// The host-access library: every byte to or from the machine.
pub use coloc_host as host;
/// The agent's own state files (key, certificate, ledger, status, seed)
/// are written the same crash-safe way as the host layer's key files, and
/// the seed is read through the same command runner.
pub use coloc_host::{durable, runner};

pub use config::AgentConfig;
pub use desired::{AppEntry, Desired, DesiredError};
pub use ledger::{FileLedger, LedgerStore, MemoryLedger};
pub use reconcile::{ReconcileReport, Reconciler};
pub use session::handle_desired;
pub use shutdown::Shutdown;
pub use sim::{SimAgentSpec, spawn_sim_agent, spawn_sim_agent_with};
pub use status::AgentStatus;
pub use supervisor::{AgentHandle, AgentOptions, spawn_agent};
pub use version::AGENT_VERSION;
