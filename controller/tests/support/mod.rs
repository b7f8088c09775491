//! Shared by the metrics tests and the render benchmark.

pub mod fleet;
