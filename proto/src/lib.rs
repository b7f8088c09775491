//! coloc's wire contracts and the validated domain types behind them.
//!
//! Generated prost/tonic code lives in [`agent::v1`] and
//! [`controller::v1`]; nothing outside this crate should construct domain
//! values from raw strings without going through the validating
//! constructors in [`domain`]. This crate owns no I/O.

pub mod apps;
pub mod domain;
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

/// The DNS name every colocd server certificate carries, so that agents and
/// the CLI can verify the controller whatever address they reach it by.
pub const CONTROLLER_TLS_NAME: &str = "colocd";
