//! coloc-sim: runs simulated nodes (the real agent logic over in-memory
//! hosts) against a colocd, for `make demo` and for trying the CLI without
//! hardware. Each node enrolls with a join token the tool asks for with
//! the admin configuration, then keeps its key and ledger in its state
//! directory, so a second run reconnects the same nodes.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use coloc_agent::{SimAgentSpec, spawn_sim_agent};
use coloc_tests::{Remote, Result, ensure_site, init_tool_logging, join_token, until_stopped};

#[derive(Debug, Parser)]
#[command(
    name = "coloc-sim",
    version,
    about = "Run simulated coloc nodes against a colocd"
)]
struct Args {
    /// CLI configuration of an admin (colocd init writes <data-dir>/admin.toml).
    #[arg(long)]
    admin_config: PathBuf,
    /// Site the nodes join (created in France if missing).
    #[arg(long, default_value = "paris-1")]
    site: String,
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    count: usize,
    /// Node names are <prefix>-1, <prefix>-2, ...
    #[arg(long, default_value = "sim")]
    prefix: String,
    /// Where each node keeps its key, certificate and ledger.
    #[arg(long)]
    state_dir: PathBuf,
}

#[tokio::main]
async fn main() -> Result<()> {
    init_tool_logging();
    let args = Args::parse();
    let remote = Remote::from_admin_config(&args.admin_config)?;
    let mut api = remote.api().await?;
    ensure_site(&mut api, &args.site, "simulated nodes").await?;
    let mut agents = Vec::new();
    for i in 1..=args.count {
        let name = format!("{}-{i}", args.prefix);
        let dir = args.state_dir.join(&name);
        // An enrolled node needs no token any more.
        let token = if dir.join("node.crt").exists() {
            String::new()
        } else {
            join_token(&mut api, &args.site, 3600).await?
        };
        agents.push(spawn_sim_agent(SimAgentSpec {
            node_name: name,
            controller: remote.url.clone(),
            ca_pem: remote.ca_pem.clone(),
            join_token: token,
            state_dir: dir,
            backoff_initial_ms: 500,
            backoff_max_ms: 10_000,
        }));
    }
    tracing::info!(count = agents.len(), "simulated nodes started");
    until_stopped().await?;
    tracing::info!("stopping simulated nodes");
    let stop = futures::future::join_all(agents.into_iter().map(|a| a.shutdown()));
    if tokio::time::timeout(Duration::from_secs(10), stop)
        .await
        .is_err()
    {
        tracing::warn!("some simulated nodes did not stop within 10 s");
    }
    Ok(())
}
