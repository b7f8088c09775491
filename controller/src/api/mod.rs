//! The public gRPC API (coloc.controller.v1): authenticate, convert,
//! authorize, act, audit. Every handler is an audit action, a target read
//! from the request as sent, and a body, served by
//! [`Ctx::mutation`](crate::context::Ctx::mutation) or
//! [`Ctx::read`](crate::context::Ctx::read):
//!
//! ```text
//! ctx.mutation(
//!     req,
//!     "tenant.create",                          // the audit action
//!     |r| format!("tenant:{}", shown(&r.name)), // its target, from the request as sent
//!     async |caller, r, audit| {                // authenticated, else refused first
//!         let r: CreateTenant = r.try_into()?;  // wire -> domain, once
//!         policy…; rules…; store…;
//!         audit.detail = …;                     // tenant, target, detail as learnt
//!         convert back…
//!     },
//! )
//! .await                                        // mutation: always logged
//! ```
//!
//! so that a refused or failed mutation is logged exactly like a
//! successful one. Reads log only refusals. A request is converted right
//! after authentication; a policy check that needs none of its fields
//! (`require_admin`) comes before the conversion, so that a caller without
//! the right is told so whatever they sent. Past the conversion a handler
//! sees domain types only. The context, these two and the audit scope live
//! in [`crate::context`]; policy in [`crate::auth`]. A handler that changes
//! what a node must be tells its agent through [`crate::agents::push_nodes`],
//! and never talks to a session otherwise than through the
//! [`crate::agents::SessionRegistry`].
//!
//! One module per service family: [`fleet`] (Sites, Nodes), [`tenancy`]
//! (Tenants, Users) with [`credentials`] (Tokens, and the user
//! certificates of Users), [`storage`] (Pools, Volumes, tenant storage),
//! [`apps`] (catalog, requests, instances), [`audit`], [`tasks`] (colocd's
//! background tasks), [`health`] (nodes' health, maintenance) and
//! [`alerts`]. The two edges of the wire: [`wire`] turns requests
//! into validated domain values (one `TryFrom` per request message, split
//! by the same families), [`convert`] turns records back into messages.

pub mod alerts;
pub mod apps;
pub mod audit;
pub mod convert;
pub mod credentials;
pub mod fleet;
pub mod health;
pub mod storage;
pub mod tasks;
pub mod tenancy;
pub mod wire;
