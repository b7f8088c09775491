//! coloc's wire contracts and the validated domain types behind them.
//!
//! Generated prost/tonic code lives in [`agent::v1`] (the node's contract
//! with colocd) and [`controller::v1`] (colocd's public API). Wire messages
//! carry plain strings and numbers; every crate converts them into the
//! types of this crate where they arrive and works on those past that
//! point, so that both sides of the wire check a value by the same rule,
//! each once. This crate owns no I/O.
//!
//! Layout: [`domain`] (the `validated_string!` names of sites, nodes,
//! tenants and users, roles, offers, countries, labels, and the free-text
//! limits of [`domain::Text`]), [`storage`] (sizes, pool, volume and
//! snapshot names, volume ids, disk references, the pool layouts each
//! kind allows, and [`storage::PoolDecl`] / [`storage::VolumeDecl`], a
//! pool or volume as a node is asked to have it), [`apps`] (every value
//! of an app instance that reaches a unit, a path or the proxy, and
//! [`apps::AppDecl`] / [`apps::ProxyDecl`]), [`units`] (systemd unit
//! names), [`seed`] (the node seed's schema, shared by `coloc-image seed`
//! and `coloc-agent seed apply`), [`health`] (health report bounds, the
//! maintenance schedule's defaults, device paths) and [`error_chain`], the one way every
//! crate prints an error with its causes (in the private `report`
//! module). A rule that two crates apply belongs here.

pub mod apps;
pub mod domain;
pub mod health;
mod report;
pub mod seed;
pub mod storage;
pub mod units;

pub use report::error_chain;

pub mod agent {
    pub mod v1 {
        tonic::include_proto!("coloc.agent.v1");
    }
}

pub mod controller {
    pub mod v1 {
        tonic::include_proto!("coloc.controller.v1");
    }
}

/// Encoded `FileDescriptorSet` of every coloc package, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/coloc_descriptor.bin"));

/// Largest message either side accepts. Facts of a big server fit in a
/// few kilobytes; anything near this limit is a bug or an attack.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Most bytes of journal lines one page of an app's logs carries (each
/// line counted with its protobuf framing): half of
/// [`MAX_MESSAGE_BYTES`], the rest is margin for the cursor and the
/// envelopes, so that a node's answer never ends its own session. The
/// agent leaves lines out past it and says so (`AppLogs.truncated`).
pub const MAX_LOG_PAGE_BYTES: usize = MAX_MESSAGE_BYTES / 2;

/// The DNS name every colocd server certificate carries, so that agents and
/// the CLI can verify the controller whatever address they reach it by.
pub const CONTROLLER_TLS_NAME: &str = "colocd";

/// Response header colocd adds to every public API answer for a user of an
/// association whose membership expired or that is suspended: one value
/// per notice, an ASCII sentence for people, which `coloc` prints.
pub const TENANT_NOTICE_HEADER: &str = "coloc-tenant-notice";
