//! `coloc-agent`: the daemon on every server, and the two commands a
//! sysadmin runs next to it (`status`, `check-config`).
//!
//! This binary only wires things together: parse the command line, set up
//! logging, build the real host and the file ledger, start the agent from
//! the library and stop it cleanly on SIGTERM/SIGINT. All behaviour lives
//! in the `coloc_agent` library so that tests run exactly the same code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use coloc_agent::config::{AgentConfig, CaSource, DEFAULT_CONFIG_PATH};
use coloc_agent::host::Host;
use coloc_agent::host::health::{DeviceEvents, RealDeviceEvents};
use coloc_agent::runner::Runner;
use coloc_agent::seed;
use coloc_agent::status::{AgentStatus, read_status, unix_ms_now};
use coloc_agent::{AgentOptions, FileLedger, LedgerStore, Shutdown, enroll, spawn_agent, tls};
use coloc_proto::domain::NodeName;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Volume encryption keys live in `<state_dir>/keys` (docs/STORAGE.md).
const KEYS_DIR: &str = "keys";
/// The firewall ruleset last applied, which the image's nftables.service
/// loads at boot (`/var/lib/coloc/firewall.nft`).
const FIREWALL_FILE: &str = "firewall.nft";

/// coloc's node agent: enrolls the server, keeps its session with colocd and
/// applies the desired configuration, from its own ledger when the
/// controller is away.
#[derive(Debug, Parser)]
#[command(name = "coloc-agent", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent daemon (what the systemd unit starts).
    Run {
        /// Path of the agent's TOML configuration.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Print what the agent last recorded in its state directory; works
    /// with the agent or the controller down.
    Status {
        /// Path of the agent's TOML configuration (to find the state directory).
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Print the raw status as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check a configuration file and the files it points to, then exit.
    CheckConfig {
        /// Path of the agent's TOML configuration to check.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// First boot: provision this node from its seed volume (docs/IMAGE.md).
    Seed {
        #[command(subcommand)]
        command: SeedCommand,
    },
}

#[derive(Debug, Subcommand)]
enum SeedCommand {
    /// Read seed.toml from the seed volume and write the host name,
    /// /etc/coloc/agent.toml, the CA, the join token and root's SSH keys;
    /// does nothing when there is no seed volume or a seed was already
    /// applied (first boot only; `--force` re-provisions).
    Apply {
        /// The seed volume (FAT, holding seed.toml), read with mtools
        /// without mounting it.
        #[arg(long, default_value = seed::DEFAULT_SEED_DEVICE)]
        device: PathBuf,
        /// Root of the file system to provision; the running host name is
        /// only changed when this is `/`.
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// Re-provision: apply the seed even though another one was
        /// applied before (without it, only the first seed is ever applied).
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(&config),
        Command::Status { config, json } => status(&config, json),
        Command::CheckConfig { config } => check_config(&config),
        Command::Seed {
            command:
                SeedCommand::Apply {
                    device,
                    root,
                    force,
                },
        } => seed_apply(device, root, force),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coloc-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config_path: &Path) -> Result<()> {
    let target = coloc_agent::logging::init().context("setting up logging")?;
    let config = AgentConfig::load(config_path)?;
    tracing::info!(
        node = %config.node_name,
        controller = %config.controller,
        state_dir = %config.state_dir.display(),
        log_target = ?target,
        version = coloc_agent::AGENT_VERSION,
        "coloc-agent starting"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let mut terminate =
            signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
        let ledger: Arc<dyn LedgerStore> = Arc::new(FileLedger::new(&config.state_dir));
        let node = config.node_name.clone();
        let agent = spawn_agent(AgentOptions {
            // Keys stay next to the ledger, on the root disk: a data disk
            // that leaves the server must not carry them.
            host: Host::real(
                Runner::new(),
                config.state_dir.join(KEYS_DIR),
                config.state_dir.join(FIREWALL_FILE),
            ),
            ledger,
            config,
            write_state_files: true,
            device_events: device_events(&node),
        });
        let (notify_stop, notify_stop_rx) = watch::channel(false);
        let notifier = tokio::spawn(coloc_agent::notify::follow(
            agent.status(),
            Shutdown::new(notify_stop_rx),
        ));
        let signal_name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(node = %node, signal = signal_name, "shutting down");
        // Stop the notifier first: it says STOPPING=1 while the agent winds down.
        if notify_stop.send(true).is_err() {
            tracing::debug!("systemd notifier already stopped");
        }
        if let Err(e) = notifier.await {
            tracing::warn!(error = %e, "systemd notifier failed");
        }
        agent.shutdown().await;
        Ok(())
    })
}

fn seed_apply(device: PathBuf, root: PathBuf, force: bool) -> Result<()> {
    coloc_agent::logging::init().context("setting up logging")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let options = seed::ApplyOptions {
        device,
        root,
        force,
    };
    let outcome = runtime.block_on(seed::apply(&Runner::new(), &options))?;
    // On stdout as well as in the log: the unit copies stdout to the
    // console, where a sysadmin (or the VM harness) watches first boot.
    println!("coloc-agent seed apply: {outcome}");
    Ok(())
}

fn status(config_path: &Path, json: bool) -> Result<()> {
    let config = AgentConfig::load(config_path)?;
    let status = read_status(&config.state_dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render_status(&status, unix_ms_now()));
    }
    Ok(())
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn render_status(s: &AgentStatus, now_ms: u64) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<20} {v}\n"));
    let site = if s.site.is_empty() { "-" } else { &s.site };
    line("node", s.node_name.clone());
    line("site", site.to_owned());
    line("enrolled", yes_no(s.enrolled).to_owned());
    line("connected", yes_no(s.connected).to_owned());
    line("ledger generation", s.ledger_generation.to_string());
    line("applied generation", s.applied_generation.to_string());
    line(
        "last outcome",
        s.last_outcome.map_or("-", |o| o.as_str()).to_owned(),
    );
    if !s.last_message.is_empty() {
        line("last message", s.last_message.clone());
    }
    line("draining", yes_no(s.draining).to_owned());
    let labels = if s.labels.is_empty() {
        "-".to_owned()
    } else {
        s.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    line("labels", labels);
    line(
        "heartbeat interval",
        format!("{} s", s.heartbeat_interval_secs),
    );
    line("reconcile passes", s.reconcile_passes.to_string());
    line("sessions opened", s.sessions_opened.to_string());
    line("heartbeats sent", s.heartbeats_sent.to_string());
    if let Some(e) = &s.ledger_error {
        line("ledger error", e.clone());
    }
    line(
        "last error",
        s.last_error.clone().unwrap_or_else(|| "-".into()),
    );
    let age_s = now_ms.saturating_sub(s.updated_unix_ms) / 1000;
    line("recorded", format!("{age_s} s ago"));
    out
}

fn check_config(config_path: &Path) -> Result<()> {
    let config = AgentConfig::load(config_path)?;
    println!("configuration {} is valid", config_path.display());
    println!("  node name:   {}", config.node_name);
    println!("  controller:  {}", config.controller);
    println!("  state dir:   {}", config.state_dir.display());
    let ca = config.ca.read().context("reading the CA")?;
    let count = tls::check_ca_pem(&ca).context("checking the CA")?;
    let ca_name = match &config.ca {
        CaSource::File(path) => path.display().to_string(),
        CaSource::Pem(_) => "inline".to_owned(),
    };
    println!("  CA:          {ca_name} ({count} certificate(s))");
    tls::endpoint(
        &config.controller,
        &ca,
        None,
        config.session.connect_timeout,
    )
    .context("building the TLS settings")?;
    match enroll::load_identity(&config.state_dir)? {
        Some(identity) => {
            tls::endpoint(
                &config.controller,
                &ca,
                Some(&identity.client),
                config.session.connect_timeout,
            )
            .context("the stored node key and certificate do not work together")?;
            println!(
                "  enrolled:    yes, as {} (site {})",
                identity.node_name,
                if identity.site.is_empty() {
                    "-"
                } else {
                    &identity.site
                }
            );
            if identity.node_name != config.node_name {
                anyhow::bail!(
                    "the state directory holds the identity of node {}, but the configuration says {}",
                    identity.node_name,
                    config.node_name
                );
            }
        }
        None => {
            let token = config.join_token.as_ref().context(
                "the node is not enrolled and no join token is configured (set join_token or join_token_file)",
            )?;
            token.read().context("reading the join token")?;
            println!("  enrolled:    no; a join token is configured");
        }
    }
    Ok(())
}

/// The kernel's device events for the health loop; without them (a kernel
/// that refuses the socket) health is collected on its period only.
fn device_events(node: &NodeName) -> Option<Box<dyn DeviceEvents>> {
    match RealDeviceEvents::open() {
        Ok(events) => Some(Box::new(events)),
        Err(e) => {
            tracing::warn!(node = %node, error = %coloc_proto::error_chain(&e), "kernel device events unavailable; health is collected on its period only");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed_and_every_flag_has_help() {
        Cli::command().debug_assert();
        let cmd = Cli::command();
        for sub in cmd.get_subcommands() {
            assert!(sub.get_about().is_some(), "{} has no help", sub.get_name());
            for arg in sub.get_arguments() {
                assert!(
                    arg.get_help().is_some(),
                    "--{} of {} has no help",
                    arg.get_id(),
                    sub.get_name()
                );
            }
        }
    }

    #[test]
    fn status_table_shows_the_essentials() {
        let status = AgentStatus {
            node_name: "n1".into(),
            site: "paris-1".into(),
            enrolled: true,
            ledger_generation: 7,
            applied_generation: 7,
            last_outcome: Some(coloc_agent::status::Outcome::Applied),
            updated_unix_ms: 1_000,
            ..AgentStatus::default()
        };
        let text = render_status(&status, 61_000);
        assert!(text.contains("ledger generation    7"), "{text}");
        assert!(text.contains("last outcome         applied"), "{text}");
        assert!(text.contains("recorded             60 s ago"), "{text}");
    }
}
