//! A real colocd running inside the test process on a temporary data
//! directory: real SQLite, real CA, real mTLS on loopback, and a clock the
//! test can move ([`TestController::clock`], [`TestController::set_now`])
//! instead of sleeping.
//!
//! It never fakes the controller: what a test sees here is what a sysadmin
//! would see from `colocd serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use coloc_controller::config::ControllerConfig;
use coloc_controller::server::{self, InitOptions, Running};
use coloc_controller::time::{Clock, OffsetClock};
use coloc_proto::agent::v1::agent_service_client::AgentServiceClient;
use tonic::transport::{Channel, Endpoint, Identity};

use crate::Result;
use crate::api::{Api, endpoint};

/// Settings that make time-based behaviour quick to observe in tests.
pub fn fast_config() -> ControllerConfig {
    ControllerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls_names: Vec::new(),
        unreachable_after_secs: 2,
        heartbeat_interval_secs: 1,
        seen_flush_ms: 100,
        default_tenant_quota_bytes: 100 << 30,
        ..ControllerConfig::default()
    }
}

/// A colocd running in this process on a temporary data directory.
pub struct TestController {
    pub dir: tempfile::TempDir,
    pub clock: Arc<OffsetClock>,
    pub admin_token: String,
    pub ca_pem: String,
    addr: SocketAddr,
    running: Option<Running>,
}

impl TestController {
    pub async fn start() -> Result<Self> {
        Self::start_with(fast_config()).await
    }

    pub async fn start_with(config: ControllerConfig) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let clock = Arc::new(OffsetClock::default());
        let out = server::init(
            dir.path(),
            InitOptions {
                config,
                admin: "admin".into(),
                // Long enough to survive tests that move the clock by days
                // (grace periods).
                admin_token_ttl_secs: 365 * 86400,
            },
            clock.clone(),
        )
        .await?;
        let running = server::start(dir.path(), None, clock.clone()).await?;
        let ca_pem = std::fs::read_to_string(dir.path().join("ca.pem"))?;
        Ok(Self {
            addr: running.addr,
            dir,
            clock,
            admin_token: out.admin_token,
            ca_pem,
            running: Some(running),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// The CA certificate `colocd init` wrote, as clients are given it.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("controller is running")
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Moves the controller's clock so that it reads `unix` now; it keeps
    /// running from there. Tests that check printed times pin the clock
    /// right before the action whose time is shown, so the expected text
    /// is fixed. Certificates colocd signs take their validity from this
    /// clock while TLS checks them against the real one: enroll nodes and
    /// issue user certificates before moving the clock far back.
    pub fn set_now(&self, unix: i64) {
        self.clock.advance_secs(unix - self.clock.now());
    }

    /// The database's size once everything is in the main file: the
    /// write-ahead log is checkpointed into `colocd.db` and truncated
    /// (through a second connection, as `sqlite3` would), then the size is
    /// `page_count × page_size`, free pages included: what the database
    /// takes on disk. Comparing two readings gives what a test's calls
    /// wrote, whatever the state of the WAL before.
    pub fn db_bytes(&self) -> Result<u64> {
        let conn = rusqlite::Connection::open(self.dir.path().join(server::DB_FILE))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let (busy, _, _): (i64, i64, i64) =
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        anyhow::ensure!(busy == 0, "the WAL checkpoint could not complete");
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok(u64::try_from(pages * page_size)?)
    }

    pub async fn stop(&mut self) -> Result<()> {
        if let Some(r) = self.running.take() {
            r.stop().await?;
        }
        Ok(())
    }

    /// Starts again on the same address and data directory.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        let running = server::start(self.dir.path(), Some(self.addr), self.clock.clone()).await?;
        self.running = Some(running);
        Ok(())
    }

    fn endpoint(&self, identity: Option<Identity>) -> Result<Endpoint> {
        endpoint(&self.url(), &self.ca_pem, identity)
    }

    pub async fn channel(&self) -> Result<Channel> {
        Ok(self.endpoint(None)?.connect().await?)
    }

    pub async fn channel_with_identity(&self, cert_pem: &str, key_pem: &str) -> Result<Channel> {
        Ok(self
            .endpoint(Some(Identity::from_pem(cert_pem, key_pem)))?
            .connect()
            .await?)
    }

    pub async fn api(&self, token: &str) -> Result<Api> {
        Ok(Api::new(self.channel().await?, Some(token)))
    }

    pub async fn admin(&self) -> Result<Api> {
        self.api(&self.admin_token).await
    }

    pub async fn anonymous(&self) -> Result<Api> {
        Ok(Api::new(self.channel().await?, None))
    }

    pub async fn agent_client(&self) -> Result<AgentServiceClient<Channel>> {
        Ok(AgentServiceClient::new(self.channel().await?))
    }
}
