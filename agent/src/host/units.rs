//! Real [`Units`]: systemd's manager over the system bus (D-Bus API of
//! org.freedesktop.systemd1(5)), with zbus.
//!
//! The bus connection is made on first use and kept; if it breaks (dbus or
//! systemd restarted) it is dropped and the next call reconnects. Start and
//! stop behave like `systemctl start/stop`: the job is queued with mode
//! "replace" and the call returns when systemd reports the job finished
//! (`JobRemoved`), with an error unless its result is "done". The signal
//! subscription is made before the job is queued, so a job that finishes
//! at once cannot be missed.
//!
//! None of this can run on the build machines (no system bus); it is
//! exercised in the QEMU guests.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use zbus::Connection;
use zbus::OwnedObjectPath;
use zbus::proxy::CacheProperties;

use super::{HostError, UnitName, UnitOp, UnitState, Units};

/// How long start/stop wait for systemd's job: systemd's own default
/// start timeout, plus a margin for the job to be dispatched.
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(100);

/// The error systemd returns for a unit it has not loaded.
const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";

/// Returned by `Subscribe` on a connection already subscribed.
const ALREADY_SUBSCRIBED: &str = "org.freedesktop.systemd1.AlreadySubscribed";

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;

    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    /// Asks systemd to emit job and unit signals to this client.
    fn subscribe(&self) -> zbus::Result<()>;

    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
trait SystemdUnit {
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;

    #[zbus(property)]
    fn sub_state(&self) -> zbus::Result<String>;

    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;
}

/// [`Units`] backed by systemd on the system bus.
#[derive(Debug)]
pub struct RealUnits {
    connection: tokio::sync::Mutex<Option<Connection>>,
    job_timeout: Duration,
}

impl Default for RealUnits {
    fn default() -> Self {
        RealUnits::new()
    }
}

impl RealUnits {
    /// Does not touch the bus: the connection is made on first use.
    pub fn new() -> RealUnits {
        RealUnits {
            connection: tokio::sync::Mutex::new(None),
            job_timeout: DEFAULT_JOB_TIMEOUT,
        }
    }

    /// The same, waiting at most `timeout` for each start/stop job.
    pub fn with_job_timeout(mut self, timeout: Duration) -> RealUnits {
        self.job_timeout = timeout;
        self
    }

    async fn connection(&self) -> Result<Connection, HostError> {
        let mut cached = self.connection.lock().await;
        if let Some(conn) = cached.as_ref() {
            return Ok(conn.clone());
        }
        let conn = Connection::system()
            .await
            .map_err(|source| HostError::Bus { source })?;
        let manager = ManagerProxy::new(&conn)
            .await
            .map_err(|source| HostError::Bus { source })?;
        match manager.subscribe().await {
            Ok(()) => {}
            Err(e) if is_method_error(&e, ALREADY_SUBSCRIBED) => {}
            Err(source) => return Err(HostError::Bus { source }),
        }
        tracing::debug!("connected to systemd on the system bus");
        *cached = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets the cached connection when `err` says the transport is gone,
    /// so that the next call reconnects instead of failing forever.
    async fn forget_if_broken(&self, err: &zbus::Error) {
        if matches!(
            err,
            zbus::Error::InputOutput(_) | zbus::Error::Connection(..)
        ) {
            tracing::warn!(error = %err, "system bus connection lost; will reconnect");
            *self.connection.lock().await = None;
        }
    }

    async fn manager(&self) -> Result<ManagerProxy<'static>, HostError> {
        let conn = self.connection().await?;
        match ManagerProxy::new(&conn).await {
            Ok(manager) => Ok(manager),
            Err(source) => {
                self.forget_if_broken(&source).await;
                Err(HostError::Bus { source })
            }
        }
    }

    async fn run_job(&self, unit: &UnitName, job: Job) -> Result<(), HostError> {
        let op = job.op();
        let manager = self.manager().await?;
        let unit_error = |source| HostError::Unit {
            unit: unit.clone(),
            op,
            source,
        };
        let mut removed = match manager.receive_job_removed().await {
            Ok(stream) => stream,
            Err(e) => {
                self.forget_if_broken(&e).await;
                return Err(unit_error(e));
            }
        };
        tracing::debug!(unit = %unit, op = %op, "queueing systemd job");
        let queued = match job {
            Job::Start => manager.start_unit(unit.as_str(), "replace").await,
            Job::Stop => manager.stop_unit(unit.as_str(), "replace").await,
        };
        let job_path = match queued {
            Ok(path) => path,
            Err(e) if is_method_error(&e, NO_SUCH_UNIT) => {
                return match job {
                    // Not loaded means not running: the stop is achieved.
                    Job::Stop => Ok(()),
                    Job::Start => Err(HostError::NoSuchUnit { unit: unit.clone() }),
                };
            }
            Err(e) => {
                self.forget_if_broken(&e).await;
                return Err(unit_error(e));
            }
        };

        let finished = async {
            while let Some(signal) = removed.next().await {
                let args = signal.args()?;
                if args.job == job_path {
                    return Ok(args.result.clone());
                }
            }
            Err(zbus::Error::InputOutput(Arc::new(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "system bus connection closed while waiting for the job",
            ))))
        };
        match tokio::time::timeout(self.job_timeout, finished).await {
            Ok(Ok(result)) if result == "done" => {
                tracing::debug!(unit = %unit, op = %op, "systemd job done");
                Ok(())
            }
            Ok(Ok(result)) => Err(HostError::UnitJob {
                unit: unit.clone(),
                op,
                result,
            }),
            Ok(Err(e)) => {
                self.forget_if_broken(&e).await;
                Err(unit_error(e))
            }
            Err(_elapsed) => Err(HostError::UnitJobTimeout {
                unit: unit.clone(),
                op,
                secs: self.job_timeout.as_secs(),
            }),
        }
    }
}

/// The operations that queue a systemd job.
#[derive(Debug, Clone, Copy)]
enum Job {
    Start,
    Stop,
}

impl Job {
    fn op(self) -> UnitOp {
        match self {
            Job::Start => UnitOp::Start,
            Job::Stop => UnitOp::Stop,
        }
    }
}

#[async_trait]
impl Units for RealUnits {
    async fn unit_state(&self, unit: &UnitName) -> Result<UnitState, HostError> {
        let manager = self.manager().await?;
        let conn = manager.inner().connection().clone();
        let query_error = |source| HostError::Unit {
            unit: unit.clone(),
            op: UnitOp::Query,
            source,
        };
        // LoadUnit (unlike GetUnit) answers for units that are not loaded
        // yet, and for unknown ones with LoadState "not-found".
        let path = match manager.load_unit(unit.as_str()).await {
            Ok(path) => path,
            Err(e) => {
                self.forget_if_broken(&e).await;
                return Err(query_error(e));
            }
        };
        let read = async {
            let proxy = SystemdUnitProxy::builder(&conn)
                .path(path)
                .cache_properties(CacheProperties::No)
                .build()
                .await?;
            let (active_state, sub_state, load_state) =
                tokio::try_join!(proxy.active_state(), proxy.sub_state(), proxy.load_state())?;
            Ok::<_, zbus::Error>(UnitState {
                active_state,
                sub_state,
                load_state,
            })
        };
        match read.await {
            Ok(state) => Ok(state),
            Err(e) => {
                self.forget_if_broken(&e).await;
                Err(query_error(e))
            }
        }
    }

    async fn start(&self, unit: &UnitName) -> Result<(), HostError> {
        self.run_job(unit, Job::Start).await
    }

    async fn stop(&self, unit: &UnitName) -> Result<(), HostError> {
        self.run_job(unit, Job::Stop).await
    }
}

/// True when `err` is a D-Bus error reply named `name`.
fn is_method_error(err: &zbus::Error, name: &str) -> bool {
    matches!(err, zbus::Error::MethodError(error_name, _, _) if error_name.as_str() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn constructing_does_not_touch_the_bus() {
        // No system bus on the build machines: building the real units must
        // still succeed, and the first call must fail with a Bus error
        // rather than hang or panic.
        let units = RealUnits::new().with_job_timeout(Duration::from_secs(1));
        let unit = UnitName::new("ssh.service").unwrap();
        let bus_present = std::env::var_os("DBUS_SYSTEM_BUS_ADDRESS").is_some()
            || std::path::Path::new("/run/dbus/system_bus_socket").exists()
            || std::path::Path::new("/var/run/dbus/system_bus_socket").exists();
        if bus_present {
            // A real bus (the QEMU guests): covered by the VM tests.
            return;
        }
        let err = units.unit_state(&unit).await.unwrap_err();
        assert!(matches!(err, HostError::Bus { .. }), "{err:?}");
    }

    #[test]
    fn method_errors_are_recognised_by_name() {
        let other = zbus::Error::Unsupported;
        assert!(!is_method_error(&other, NO_SUCH_UNIT));
    }
}
