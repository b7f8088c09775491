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
//! calling and what they may do), [`api`] (the public gRPC services),
//! [`agents`] (the agent-facing service and the session registry),
//! [`server`] (wiring), [`config`].

pub mod agents;
pub mod api;
pub mod auth;
pub mod ca;
pub mod catalog;
pub mod config;
pub mod error;
pub mod rules;
pub mod server;
pub mod store;
pub mod time;
