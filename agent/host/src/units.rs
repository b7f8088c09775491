//! Real [`Units`]: systemd's manager over the system bus (D-Bus API of
//! org.freedesktop.systemd1(5)), with zbus.
//!
//! The bus connection is made on first use and kept; if it breaks (dbus or
//! systemd restarted) it is dropped and the next call reconnects. Start,
//! stop, restart and reload-or-restart behave like `systemctl`: the job is
//! queued with mode "replace" and the call returns when systemd reports the
//! job finished (`JobRemoved`), with an error unless its result is "done".
//! The signal subscription is made before the job is queued, so a job that
//! finishes at once cannot be missed.
//!
//! Enable, disable and mask only change the unit-file symlinks, exactly as
//! the `*UnitFiles` methods do; unlike `systemctl` they do not reload the
//! manager afterwards: callers that need systemd to see the change at once
//! call [`Units::daemon_reload`] themselves, once for a batch of changes.
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

use crate::{HostError, UnitDetails, UnitName, UnitOp, UnitState, Units};

/// How long start/stop/restart wait for systemd's job, and a daemon-reload
/// for systemd to finish: systemd's own default start timeout, plus a
/// margin for the job to be dispatched.
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

    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    fn reload_or_restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;

    /// daemon-reload; the reply comes once systemd has re-read its units.
    fn reload(&self) -> zbus::Result<()>;

    /// Returns (carries_install_info, changes as (type, file, destination)).
    fn enable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<(bool, Vec<(String, String, String)>)>;

    fn disable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
    ) -> zbus::Result<Vec<(String, String, String)>>;

    fn mask_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<Vec<(String, String, String)>>;

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

/// The type-specific interface of `.service` units.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Service",
    default_service = "org.freedesktop.systemd1"
)]
trait SystemdService {
    #[zbus(property)]
    fn result(&self) -> zbus::Result<String>;

    #[zbus(property, name = "NRestarts")]
    fn n_restarts(&self) -> zbus::Result<u32>;

    /// u64::MAX when memory is not accounted or the unit has no cgroup.
    #[zbus(property, name = "MemoryCurrent")]
    fn memory_current(&self) -> zbus::Result<u64>;
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

    /// Maps a failed call about `unit`, dropping a broken connection.
    async fn unit_failure(&self, unit: &UnitName, call: Call, err: zbus::Error) -> HostError {
        self.forget_if_broken(&err).await;
        tracing::debug!(unit = %unit, call = call.as_str(), error = %err, "systemd call failed");
        HostError::Unit {
            unit: unit.clone(),
            op: call.op(),
            source: err,
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
        let name = unit.as_str();
        let queued = match job {
            Job::Start => manager.start_unit(name, "replace").await,
            Job::Stop => manager.stop_unit(name, "replace").await,
            Job::Restart => manager.restart_unit(name, "replace").await,
            Job::ReloadOrRestart => manager.reload_or_restart_unit(name, "replace").await,
        };
        let job_path = match queued {
            Ok(path) => path,
            Err(e) if is_method_error(&e, NO_SUCH_UNIT) => {
                return match job {
                    // Not loaded means not running: the stop is achieved.
                    Job::Stop => Ok(()),
                    Job::Start | Job::Restart | Job::ReloadOrRestart => {
                        Err(HostError::NoSuchUnit { unit: unit.clone() })
                    }
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
    Restart,
    ReloadOrRestart,
}

impl Job {
    fn op(self) -> UnitOp {
        match self {
            Job::Start => UnitOp::Start,
            Job::Stop => UnitOp::Stop,
            Job::Restart => Call::Restart.op(),
            Job::ReloadOrRestart => Call::ReloadOrRestart.op(),
        }
    }
}

/// The unit operations beyond start and stop, each with its own
/// [`UnitOp`] so that an error says exactly what systemd refused.
#[derive(Debug, Clone, Copy)]
enum Call {
    Restart,
    ReloadOrRestart,
    Enable,
    Disable,
    Mask,
    ResetFailed,
    Details,
}

impl Call {
    fn op(self) -> UnitOp {
        match self {
            Call::Restart => UnitOp::Restart,
            Call::ReloadOrRestart => UnitOp::ReloadOrRestart,
            Call::Enable => UnitOp::Enable,
            Call::ResetFailed => UnitOp::ResetFailed,
            Call::Disable => UnitOp::Disable,
            Call::Mask => UnitOp::Mask,
            Call::Details => UnitOp::Query,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Call::Restart => "restart",
            Call::ReloadOrRestart => "reload-or-restart",
            Call::Enable => "enable",
            Call::Disable => "disable",
            Call::Mask => "mask",
            Call::ResetFailed => "reset-failed",
            Call::Details => "details",
        }
    }
}

/// `MemoryCurrent` as the agent reports it: systemd says u64::MAX for
/// "not accounted / no cgroup", which is not a size.
fn memory_from_bus(value: u64) -> Option<u64> {
    (value != u64::MAX).then_some(value)
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

    async fn restart(&self, unit: &UnitName) -> Result<(), HostError> {
        self.run_job(unit, Job::Restart).await
    }

    async fn reload_or_restart(&self, unit: &UnitName) -> Result<(), HostError> {
        self.run_job(unit, Job::ReloadOrRestart).await
    }

    async fn daemon_reload(&self) -> Result<(), HostError> {
        let manager = self.manager().await?;
        tracing::debug!("reloading systemd's unit files");
        let outcome = match tokio::time::timeout(self.job_timeout, manager.reload()).await {
            Ok(outcome) => outcome,
            // A manager that does not answer is as good as unreachable;
            // the connection is dropped below and remade next time.
            Err(_elapsed) => Err(zbus::Error::InputOutput(Arc::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "systemd did not finish reloading within {} s",
                    self.job_timeout.as_secs()
                ),
            )))),
        };
        match outcome {
            Ok(()) => Ok(()),
            Err(source) => {
                self.forget_if_broken(&source).await;
                Err(HostError::Bus { source })
            }
        }
    }

    async fn enable(&self, unit: &UnitName) -> Result<(), HostError> {
        let manager = self.manager().await?;
        match manager
            .enable_unit_files(&[unit.as_str()], false, true)
            .await
        {
            Ok((carries_install_info, changes)) => {
                if !carries_install_info {
                    // Not an error (systemctl only warns): the unit simply
                    // has no [Install] section, so nothing starts it at boot.
                    tracing::warn!(unit = %unit, "unit has no [Install] section; enabling it does nothing");
                }
                tracing::debug!(unit = %unit, changes = changes.len(), "unit enabled");
                Ok(())
            }
            Err(e) if is_method_error(&e, NO_SUCH_UNIT) => {
                Err(HostError::NoSuchUnit { unit: unit.clone() })
            }
            Err(e) => Err(self.unit_failure(unit, Call::Enable, e).await),
        }
    }

    async fn disable(&self, unit: &UnitName) -> Result<(), HostError> {
        let manager = self.manager().await?;
        match manager.disable_unit_files(&[unit.as_str()], false).await {
            Ok(changes) => {
                tracing::debug!(unit = %unit, changes = changes.len(), "unit disabled");
                Ok(())
            }
            // No unit file: nothing can be enabled either.
            Err(e) if is_method_error(&e, NO_SUCH_UNIT) => Ok(()),
            Err(e) => Err(self.unit_failure(unit, Call::Disable, e).await),
        }
    }

    async fn mask(&self, unit: &UnitName) -> Result<(), HostError> {
        let manager = self.manager().await?;
        match manager.mask_unit_files(&[unit.as_str()], false, true).await {
            Ok(changes) => {
                tracing::debug!(unit = %unit, changes = changes.len(), "unit masked");
                Ok(())
            }
            Err(e) => Err(self.unit_failure(unit, Call::Mask, e).await),
        }
    }

    async fn reset_failed(&self, unit: &UnitName) -> Result<(), HostError> {
        let manager = self.manager().await?;
        match manager.reset_failed_unit(unit.as_str()).await {
            Ok(()) => Ok(()),
            // Not loaded: systemd holds no failed state for it.
            Err(e) if is_method_error(&e, NO_SUCH_UNIT) => Ok(()),
            Err(e) => Err(self.unit_failure(unit, Call::ResetFailed, e).await),
        }
    }

    async fn details(&self, unit: &UnitName) -> Result<UnitDetails, HostError> {
        let manager = self.manager().await?;
        let conn = manager.inner().connection().clone();
        let path = match manager.load_unit(unit.as_str()).await {
            Ok(path) => path,
            Err(e) => return Err(self.unit_failure(unit, Call::Details, e).await),
        };
        let is_service = unit.as_str().ends_with(".service");
        let read = async {
            let generic = SystemdUnitProxy::builder(&conn)
                .path(path.clone())
                .cache_properties(CacheProperties::No)
                .build()
                .await?;
            let (active_state, sub_state, load_state) = tokio::try_join!(
                generic.active_state(),
                generic.sub_state(),
                generic.load_state()
            )?;
            let mut details = UnitDetails {
                active_state,
                sub_state,
                load_state,
                ..UnitDetails::default()
            };
            // Restarts, memory and result belong to the Service interface;
            // a unit with no unit file has none worth reading.
            if is_service && details.load_state != "not-found" {
                let service = SystemdServiceProxy::builder(&conn)
                    .path(path)
                    .cache_properties(CacheProperties::No)
                    .build()
                    .await?;
                let (result, restarts, memory) = tokio::try_join!(
                    service.result(),
                    service.n_restarts(),
                    service.memory_current()
                )?;
                details.result = result;
                details.restarts = restarts;
                details.memory_bytes = memory_from_bus(memory);
            }
            Ok::<_, zbus::Error>(details)
        };
        match read.await {
            Ok(details) => Ok(details),
            Err(e) => Err(self.unit_failure(unit, Call::Details, e).await),
        }
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
    fn unaccounted_memory_is_none() {
        assert_eq!(memory_from_bus(u64::MAX), None);
        assert_eq!(memory_from_bus(0), Some(0));
        assert_eq!(memory_from_bus(42 << 20), Some(42 << 20));
    }

    #[tokio::test]
    async fn every_operation_fails_with_a_bus_error_without_a_bus() {
        let bus_present = std::env::var_os("DBUS_SYSTEM_BUS_ADDRESS").is_some()
            || std::path::Path::new("/run/dbus/system_bus_socket").exists()
            || std::path::Path::new("/var/run/dbus/system_bus_socket").exists();
        if bus_present {
            return;
        }
        let units = RealUnits::new().with_job_timeout(Duration::from_secs(1));
        let unit = UnitName::new("coloc-app-t-wiki.service").unwrap();
        let results = [
            units.restart(&unit).await.map(drop),
            units.reload_or_restart(&unit).await.map(drop),
            units.daemon_reload().await.map(drop),
            units.enable(&unit).await.map(drop),
            units.disable(&unit).await.map(drop),
            units.mask(&unit).await.map(drop),
            units.reset_failed(&unit).await.map(drop),
            units.details(&unit).await.map(drop),
        ];
        for result in results {
            assert!(matches!(result, Err(HostError::Bus { .. })), "{result:?}");
        }
    }

    #[test]
    fn method_errors_are_recognised_by_name() {
        let other = zbus::Error::Unsupported;
        assert!(!is_method_error(&other, NO_SUCH_UNIT));
    }
}
