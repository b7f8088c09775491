//! colocd: the cooperative's controller and source of truth.
//!
//! It owns the registry of sites, nodes, tenants (associations), users,
//! tokens and the audit log, and holds one session per connected agent
//! over which it pushes each node's desired configuration. It never
//! touches a server directly: every change on a host is made by that
//! host's agent, from the desired configuration it receives.
//!
//! Layout: [`store`] (persistence behind one trait per area), [`rules`]
//! (the quota, port, request and lifecycle rules the store applies),
//! [`ca`] (the cooperative's certificate authority), [`auth`] (who is
//! calling and what they may do), [`context`] (what every handler holds),
//! [`api`] (the public gRPC services, one module per service family;
//! `api::wire` converts each request into validated domain values at the
//! door, `api::convert` turns records back into messages), [`error`] (the
//! API's errors and their gRPC codes), [`agents`] (the agent-facing
//! service, the session registry and the rendering of desired
//! configurations), [`catalog`] (the app catalog and the rendering of one
//! instance), [`health`] (each node's latest health report),
//! [`alerts`] (the alert rules, pure functions), [`background`] (colocd's
//! periodic tasks and their status), [`notify`] (alert e-mails and
//! webhooks, grouped and retried),
//! [`server`] (the data directory, `init` and the one TLS endpoint),
//! [`transport`] (what one port lets anyone hold: connections, call
//! deadlines), [`limiter`] (per-address limits on calls without
//! credentials and on enrollment), [`tls`] (the handshake, with a server
//! certificate renewed in place), [`config`] (`colocd.toml`) and
//! [`time`] (the clock, which tests move).
//!
//! Dependencies go one way: `api` and `agents` sit on `context`; `api`
//! calls into `agents` (pushes, the registry), `background` into both
//! `agents` and the store; nothing below `api` imports it.

pub mod agents;
pub mod alerts;
pub mod api;
pub mod auth;
pub mod background;
pub mod ca;
pub mod catalog;
pub mod config;
pub mod context;
pub mod error;
pub mod health;
pub mod limiter;
pub mod metrics;
pub mod notify;
pub mod rules;
pub mod server;
pub mod store;
pub mod time;
pub mod tls;
pub mod transport;
