//! colocd: `colocd init` prepares a data directory; `colocd serve` runs
//! the controller from it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use coloc_controller::config::{CONFIG_FILE, ControllerConfig};
use coloc_controller::notify::Notifier;
use coloc_controller::server::{self, InitOptions};
use coloc_controller::time::SystemClock;

#[derive(Debug, Parser)]
#[command(
    name = "colocd",
    version,
    about = "coloc's controller: the cooperative's source of truth and the agents' peer"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a data directory: database, certificate authority, server
    /// certificate, and the first admin with a token.
    Init {
        /// Directory to create (mode 0700).
        #[arg(long, env = "COLOCD_DATA_DIR", default_value = "/var/lib/colocd")]
        data_dir: PathBuf,
        /// Address to listen on, written into colocd.toml.
        #[arg(long, default_value = "127.0.0.1:7443")]
        listen: SocketAddr,
        /// Extra DNS name or IP address for the server certificate (repeatable).
        #[arg(long = "tls-name")]
        tls_names: Vec<String>,
        /// Login of the first admin.
        #[arg(long, default_value = "admin")]
        admin: String,
        /// Lifetime of the first admin's token, in days.
        #[arg(long, default_value_t = 30)]
        admin_token_days: i64,
    },
    /// Mint a new root token for an enabled admin, on colocd's host.
    ///
    /// Every token and certificate expires with the credential it was minted
    /// with, so all of them descend from a root token like the one `colocd
    /// init` prints; this makes a new one (audited) before the last expires
    /// or after it was revoked. It needs the data directory, i.e. root on
    /// this host.
    AdminToken {
        /// Data directory prepared by `colocd init`.
        #[arg(long, env = "COLOCD_DATA_DIR", default_value = "/var/lib/colocd")]
        data_dir: PathBuf,
        /// The admin the token is for.
        #[arg(long, default_value = "admin")]
        admin: String,
        /// Lifetime of the token, in days (1 to 365).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(i64).range(1..=365))]
        days: i64,
    },
    /// Send one test message to every notification target of colocd.toml
    /// ([notify.email], [[notify.webhook]]) and say which failed and why.
    NotifyTest {
        /// Data directory prepared by `colocd init`.
        #[arg(long, env = "COLOCD_DATA_DIR", default_value = "/var/lib/colocd")]
        data_dir: PathBuf,
    },
    /// Run the controller.
    Serve {
        /// Data directory prepared by `colocd init`.
        #[arg(long, env = "COLOCD_DATA_DIR", default_value = "/var/lib/colocd")]
        data_dir: PathBuf,
        /// Listen on this address instead of the configured one.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(cli: Cli) -> Result<(), server::ServerError> {
    match cli.command {
        Command::Init {
            data_dir,
            listen,
            tls_names,
            admin,
            admin_token_days,
        } => {
            let config = ControllerConfig {
                listen,
                tls_names,
                ..ControllerConfig::default()
            };
            let out = server::init(
                &data_dir,
                InitOptions {
                    config,
                    admin,
                    admin_token_ttl_secs: admin_token_days.clamp(1, 365) * 86400,
                },
                Arc::new(SystemClock),
            )
            .await?;
            println!("colocd initialised in {}", data_dir.display());
            println!("CA fingerprint (sha256): {}", out.ca_fingerprint);
            println!("first admin token (shown once): {}", out.admin_token);
            println!(
                "CLI configuration for that admin: {}\n  coloc --config {} node list",
                out.admin_config.display(),
                out.admin_config.display()
            );
            Ok(())
        }
        Command::AdminToken {
            data_dir,
            admin,
            days,
        } => {
            let out =
                server::admin_token(&data_dir, &admin, days * 86400, Arc::new(SystemClock)).await?;
            eprintln!(
                "token {} for {admin}, valid {days} days; shown once, store it now:",
                out.id
            );
            println!("{}", out.token);
            Ok(())
        }
        Command::NotifyTest { data_dir } => {
            let config = ControllerConfig::load(&data_dir.join(CONFIG_FILE))?;
            Notifier::send_test(&config.notify).await?;
            eprintln!("test message sent to every notification target");
            Ok(())
        }
        Command::Serve { data_dir, listen } => {
            let running = server::start(&data_dir, listen, Arc::new(SystemClock)).await?;
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(
                    |source| server::ServerError::Io {
                        path: PathBuf::from("SIGTERM handler"),
                        source,
                    },
                )?;
            let stats = running.ctx.sessions.clone();
            let mut report = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => break,
                    _ = term.recv() => break,
                    _ = report.tick() => {
                        use std::sync::atomic::Ordering::Relaxed;
                        tracing::info!(
                            sessions = stats.connected_count(),
                            sessions_opened = stats.stats.sessions_opened.load(Relaxed),
                            heartbeats = stats.stats.heartbeats.load(Relaxed),
                            observed = stats.stats.observed.load(Relaxed),
                            "stats"
                        );
                    }
                }
                if running.is_finished() {
                    break;
                }
            }
            tracing::info!("shutting down");
            running.stop().await
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("colocd: {}", coloc_proto::error_chain(&err));
            ExitCode::FAILURE
        }
    }
}
