//! colocd's side of the agents: who is connected, what each node is told
//! to be, and what the agents report back.
//!
//! - [`registry`]: the live sessions (memory only): pushes, imperative
//!   requests and their results, heartbeats waiting to be written;
//! - [`service`]: the coloc.agent.v1 gRPC service: enrollment, sessions,
//!   recording what agents observe;
//! - [`render`]: a node's desired configuration from one store read, the
//!   catalog and the configuration (pure);
//! - [`push`]: sending changed configurations to connected nodes;
//! - [`node_certs`]: which node certificate opens a session, and renewing
//!   one over the session;
//! - [`system_audit`]: colocd's own audit entries (actor `system`).
//!
//! The periodic work on sessions (flushing heartbeats, closing silent
//! sessions, marking nodes unreachable, purging volumes, renewing
//! certificates) is in
//! [`crate::background`]. Nothing here depends on the public API
//! ([`crate::api`]); both sit on [`crate::context`].

pub mod node_certs;
pub mod push;
pub mod registry;
pub mod render;
pub mod service;
pub mod system_audit;

pub use push::push_nodes;
pub use registry::{SessionRegistry, SessionStats};
pub use render::desired_of;
pub use service::AgentApi;
