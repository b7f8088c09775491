//! The public gRPC API (coloc.controller.v1): parse, authorize, act,
//! audit. Handlers follow one shape:
//!
//! ```text
//! let caller = ctx.caller(&req).await;          // not yet checked
//! let mut audit = ctx.audit(&caller, "tenant.create", target);
//! let result = async { let caller = caller?; policy…; validate…; store… }.await;
//! audit.finish(result).await                    // mutation: always logged
//! ```
//!
//! so that a refused or failed mutation is logged exactly like a
//! successful one. Reads log only refusals. The context and the audit
//! scope live in [`crate::context`]; policy in [`crate::auth`]. A handler
//! that changes what a node must be tells its agent through
//! [`crate::agents::push_nodes`], and never talks to a session otherwise
//! than through the [`crate::agents::SessionRegistry`].
//!
//! One module per service family: [`fleet`] (Sites, Nodes), [`tenancy`]
//! (Tenants, Users, Tokens), [`storage`], [`apps`], [`audit`], [`tasks`]
//! (colocd's background tasks); [`convert`] turns records into messages.

pub mod apps;
pub mod audit;
pub mod convert;
pub mod fleet;
pub mod storage;
pub mod tasks;
pub mod tenancy;
