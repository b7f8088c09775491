//! The public gRPC API (coloc.controller.v1): authenticate, convert,
//! authorize, act, audit. Handlers follow one shape:
//!
//! ```text
//! let caller = ctx.caller(&req).await;          // not yet checked
//! let r = req.into_inner();
//! let mut audit = ctx.audit(&caller, "tenant.create", target_from(&r));
//! let result = async {
//!     let caller = caller?;                     // unauthenticated: refused first
//!     let r: CreateTenant = r.try_into()?;      // wire -> domain, once
//!     policy…; rules…; store…; convert back…
//! }.await;
//! audit.finish(result).await                    // mutation: always logged
//! ```
//!
//! so that a refused or failed mutation is logged exactly like a
//! successful one. Reads log only refusals. A request is converted right
//! after authentication; a policy check that needs none of its fields
//! (`require_admin`) comes before the conversion, so that a caller without
//! the right is told so whatever they sent. Past the conversion a handler
//! sees domain types only. The context and the audit scope live in
//! [`crate::context`]; policy in [`crate::auth`]. A handler that changes
//! what a node must be tells its agent through [`crate::agents::push_nodes`],
//! and never talks to a session otherwise than through the
//! [`crate::agents::SessionRegistry`].
//!
//! One module per service family: [`fleet`] (Sites, Nodes), [`tenancy`]
//! (Tenants, Users, Tokens), [`storage`] (Pools, Volumes, tenant storage),
//! [`apps`] (catalog, requests, instances), [`audit`], [`tasks`] (colocd's
//! background tasks). The two edges of the wire: [`wire`] turns requests
//! into validated domain values (one `TryFrom` per request message, split
//! by the same families), [`convert`] turns records back into messages.

pub mod apps;
pub mod audit;
pub mod convert;
pub mod fleet;
pub mod storage;
pub mod tasks;
pub mod tenancy;
pub mod wire;
