//! Test and benchmark harness for coloc. It owns:
//!
//! - [`controller`]: a real colocd in the test process on a temporary data
//!   directory (real SQLite, real CA, real mTLS on loopback), with a clock
//!   the test moves;
//! - [`api`]: typed clients with a bearer token, and [`Remote`] for a
//!   colocd elsewhere;
//! - [`fixtures`]: test data made and read through the public API, and
//!   waits on nodes, volumes and app instances;
//! - [`raw_agent`]: enrollment and agent sessions driven by hand;
//! - [`sim`]: simulated agents (the real agent logic over in-memory
//!   hosts, from `coloc_agent::sim`) pointed at a test controller;
//! - [`cli`]: the `coloc` binary run as a sysadmin runs it;
//! - [`lab`]: QEMU nodes booted from the real image with their seeds;
//! - [`programs`]: the one place that starts helper programs.
//!
//! It never fakes the controller, and nothing in it ships in production.
//! Everything but [`cli`] and [`lab`] is re-exported at the root, so that
//! `use coloc_tests::*;` gives a test what it needs.

pub mod api;
pub mod cli;
pub mod controller;
pub mod fixtures;
pub mod lab;
pub mod programs;
pub mod raw_agent;
pub mod sim;

use std::future::Future;
use std::time::Duration;

pub use anyhow::{Context, Result, anyhow, bail};
pub use api::*;
pub use controller::*;
pub use fixtures::*;
pub use raw_agent::*;
pub use sim::*;

/// Polls `check` every 25 ms until it returns `Some`, or fails after
/// `deadline` naming what was awaited.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if start.elapsed() > deadline {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn init_test_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Logging for the harness's tools (`coloc-sim`, `coloc-lab`): to
/// stderr, `info` unless RUST_LOG says otherwise.
pub fn init_tool_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Waits for Ctrl-C or SIGTERM, how `make demo` stops the tools.
pub async fn until_stopped() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
