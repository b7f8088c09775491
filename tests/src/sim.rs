//! Simulated agents (the real agent logic over in-memory hosts, from
//! `coloc_agent::sim`) pointed at a [`TestController`], with the short
//! reconnection backoff and resync period a test wants so that changes
//! show up in seconds.
//!
//! The hosts' fakes belong to `coloc_agent::host`; tests drive them there.

use std::path::Path;
use std::time::Duration;

use coloc_agent::host::FakeHost;
use coloc_agent::{AgentHandle, SimAgentSpec, spawn_sim_agent_with};

use crate::controller::TestController;
use crate::{Result, anyhow};

/// A simulated node `node` joining `ctl` with `token`, keeping its key and
/// ledger under `state_dir/<node>`.
pub fn sim_spec(ctl: &TestController, node: &str, token: &str, state_dir: &Path) -> SimAgentSpec {
    SimAgentSpec {
        node_name: node.into(),
        controller: ctl.url(),
        ca_pem: ctl.ca_pem.clone(),
        join_token: token.into(),
        state_dir: state_dir.join(node),
        backoff_initial_ms: 50,
        backoff_max_ms: 500,
    }
}

/// Starts a simulated node over `host`, which the test keeps to look at
/// or break the node's disks, units and packages. It re-runs its pass
/// every second, for fresh usage figures and retries of failed volumes
/// without waiting for the production 30 s.
pub fn spawn_sim_node(
    ctl: &TestController,
    node: &str,
    token: &str,
    state_dir: &Path,
    host: &FakeHost,
) -> Result<AgentHandle> {
    spawn_sim_node_resyncing(ctl, node, token, state_dir, host, Duration::from_secs(1))
}

/// [`spawn_sim_node`] with the periodic pass every `resync` (a test that
/// must see something happen without a periodic pass sets it long).
pub fn spawn_sim_node_resyncing(
    ctl: &TestController,
    node: &str,
    token: &str,
    state_dir: &Path,
    host: &FakeHost,
    resync: Duration,
) -> Result<AgentHandle> {
    let mut config = sim_spec(ctl, node, token, state_dir)
        .config()
        .map_err(|e| anyhow!("{}", coloc_proto::error_chain(&e)))?;
    config.resync_interval = resync;
    Ok(spawn_sim_agent_with(config, host))
}
