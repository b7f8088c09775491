//! The agent's version, as it reports itself in `Hello`, in the facts it
//! sends and in its logs. One constant, so that every report agrees.

/// This agent's version, as reported in `Hello` and in facts.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
