//! Simulated agents: the real agent logic over a fake host.
//!
//! A simulated agent enrolls, keeps its key, certificate and ledger in its
//! own state directory and holds a real mTLS session with a real
//! controller, exactly like the daemon; only the host behind it is a
//! [`FakeHost`] (disks, ZFS and LVM thin in memory, so pools and volumes
//! the controller declares are really created, resized and reported). It
//! writes no `status.json` and never talks to systemd.
//! It is a handful of tokio tasks on the caller's runtime and a few small
//! files, so thousands can run in one test process.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use coloc_proto::domain::NodeName;

use crate::config::{AgentConfig, CaSource, JoinTokenSource, SessionConfig};
use crate::host::FakeHost;
use crate::ledger::FileLedger;
use crate::supervisor::{AgentHandle, AgentOptions, spawn_agent};

/// How to start one simulated agent.
#[derive(Debug, Clone)]
pub struct SimAgentSpec {
    /// Must be a valid node name.
    pub node_name: String,
    /// `https://127.0.0.1:PORT` of the controller under test.
    pub controller: String,
    /// The cooperative CA's certificate, PEM.
    pub ca_pem: String,
    pub join_token: String,
    /// This agent's own directory (key, certificate, ledger).
    pub state_dir: PathBuf,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
}

impl SimAgentSpec {
    /// The agent configuration this spec stands for.
    pub fn config(&self) -> Result<AgentConfig, crate::config::ConfigError> {
        let node_name =
            NodeName::new(self.node_name.as_str()).map_err(crate::config::ConfigError::NodeName)?;
        let mut config = AgentConfig::new(
            self.controller.clone(),
            CaSource::Pem(self.ca_pem.clone()),
            node_name,
            self.state_dir.clone(),
        )?;
        let initial = self.backoff_initial_ms.max(1);
        config.join_token = Some(JoinTokenSource::Inline(self.join_token.clone()));
        config.session = SessionConfig {
            backoff_initial: Duration::from_millis(initial),
            backoff_max: Duration::from_millis(self.backoff_max_ms.max(initial)),
            ..SessionConfig::default()
        };
        Ok(config)
    }
}

/// Starts a simulated agent on the current tokio runtime.
///
/// # Panics
/// If `spec` is unusable (invalid node name, controller not an https URL):
/// that is a bug in the test that built it.
pub fn spawn_sim_agent(spec: SimAgentSpec) -> AgentHandle {
    let config = match spec.config() {
        Ok(config) => config,
        Err(e) => panic!(
            "simulated agent {:?}: {}",
            spec.node_name,
            coloc_proto::error_chain(&e)
        ),
    };
    let host = FakeHost::new(config.node_name.as_str());
    spawn_sim_agent_with(config, &host)
}

/// Starts a simulated agent with an explicit configuration (e.g. a shorter
/// `resync_interval`, from [`SimAgentSpec::config`]) over `host`, which
/// the caller keeps to inspect or change the node's disks, pools and
/// volumes while the agent runs.
pub fn spawn_sim_agent_with(mut config: AgentConfig, host: &FakeHost) -> AgentHandle {
    // A simulated node writes its unit files, app configuration and
    // Caddyfile under its own state directory, never under the real `/`;
    // its fake systemd loads the unit files from there.
    config.host_root = config.state_dir.join("root");
    host.units
        .set_unit_root(config.host_root.join("etc/systemd/system"));
    let ledger = Arc::new(FileLedger::new(&config.state_dir));
    spawn_agent(AgentOptions {
        host: host.host(),
        config,
        ledger,
        write_state_files: false,
        device_events: None,
    })
}
