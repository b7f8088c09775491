//! What systemd tells over the system bus: the failed units (the
//! manager's `ListUnits`, with each one's `Result`) and whether the clock
//! is synchronised (systemd-timedated's `NTPSynchronized`, which is the
//! kernel's adjtimex(2) status).
//!
//! The connection is made on first use, kept, and dropped when a call
//! fails, so that a restarted dbus does not silence these sources.

use coloc_proto::agent::v1::FailedUnit;
use zbus::proxy::CacheProperties;
use zbus::{Connection, OwnedObjectPath};

/// One row of `ListUnits`.
type UnitRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    OwnedObjectPath,
    u32,
    String,
    OwnedObjectPath,
);

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait HealthManager {
    fn list_units(&self) -> zbus::Result<Vec<UnitRow>>;
}

#[zbus::proxy(
    interface = "org.freedesktop.timedate1",
    default_service = "org.freedesktop.timedate1",
    default_path = "/org/freedesktop/timedate1"
)]
trait Timedate {
    #[zbus(property, name = "NTPSynchronized")]
    fn ntp_synchronized(&self) -> zbus::Result<bool>;
}

/// The lazily made, shared system bus connection of the health sources.
#[derive(Debug, Default)]
pub(crate) struct Bus {
    connection: tokio::sync::Mutex<Option<Connection>>,
    /// Another bus than the system bus (tests: a private dbus-daemon).
    pub(crate) address: Option<String>,
}

impl Bus {
    /// A bus not yet connected to, at `address` (`None`: the system bus).
    pub(crate) fn at(address: Option<String>) -> Bus {
        Bus {
            connection: tokio::sync::Mutex::new(None),
            address,
        }
    }

    async fn connection(&self) -> zbus::Result<Connection> {
        let mut cached = self.connection.lock().await;
        if let Some(c) = cached.as_ref() {
            return Ok(c.clone());
        }
        let c = match &self.address {
            Some(address) => {
                zbus::connection::Builder::address(address.as_str())
                    .build()
                    .await?
            }
            None => Connection::system().await?,
        };
        *cached = Some(c.clone());
        Ok(c)
    }

    async fn forget(&self) {
        *self.connection.lock().await = None;
    }

    /// Units whose active state is "failed", by name, with their `Result`
    /// ("failed" when the unit type has none).
    pub(crate) async fn failed_units(&self) -> zbus::Result<Vec<FailedUnit>> {
        let result = self.failed_units_once().await;
        if result.is_err() {
            self.forget().await;
        }
        result
    }

    async fn failed_units_once(&self) -> zbus::Result<Vec<FailedUnit>> {
        let conn = self.connection().await?;
        let manager = HealthManagerProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        let mut failed = Vec::new();
        for row in manager.list_units().await? {
            let (name, _description, _load, active, _sub, _following, path, ..) = row;
            if active != "failed" {
                continue;
            }
            let result = match result_interface(&name) {
                Some(interface) => {
                    let proxy: zbus::Proxy<'_> = zbus::proxy::Builder::new(&conn)
                        .destination("org.freedesktop.systemd1")
                        .path(path)
                        .interface(interface)
                        .cache_properties(CacheProperties::No)
                        .build()
                        .await?;
                    proxy.get_property::<String>("Result").await?
                }
                None => "failed".to_owned(),
            };
            failed.push(FailedUnit { name, result });
        }
        failed.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(failed)
    }

    /// timedated's `NTPSynchronized`.
    pub(crate) async fn ntp_synchronized(&self) -> zbus::Result<bool> {
        let result = async {
            let conn = self.connection().await?;
            TimedateProxy::builder(&conn)
                .cache_properties(CacheProperties::No)
                .build()
                .await?
                .ntp_synchronized()
                .await
        }
        .await;
        if result.is_err() {
            self.forget().await;
        }
        result
    }
}

/// The type-specific interface that carries a unit's `Result`.
fn result_interface(unit: &str) -> Option<&'static str> {
    Some(match unit.rsplit_once('.')?.1 {
        "service" => "org.freedesktop.systemd1.Service",
        "socket" => "org.freedesktop.systemd1.Socket",
        "mount" => "org.freedesktop.systemd1.Mount",
        "automount" => "org.freedesktop.systemd1.Automount",
        "swap" => "org.freedesktop.systemd1.Swap",
        "timer" => "org.freedesktop.systemd1.Timer",
        "path" => "org.freedesktop.systemd1.Path",
        "scope" => "org.freedesktop.systemd1.Scope",
        _ => return None,
    })
}
