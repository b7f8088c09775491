//! The health sources that ask systemd over D-Bus (failed units with their
//! `Result`, timedated's `NTPSynchronized`), against stand-ins for
//! systemd and timedated served by this test on a private `dbus-daemon`
//! (the build machines have no system bus).

use std::path::Path;
use std::time::Duration;

use coloc_host::health::{HealthInputs, HealthPaths, Source};
use coloc_host::runner::Runner;
use coloc_host::{Health, RealHealth};
use coloc_proto::agent::v1::{FailedUnit, HealthReport};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use zbus::OwnedObjectPath;

/// A `dbus-daemon` of this test, stopped when dropped.
struct Daemon {
    pid: Pid,
    address: String,
    _dir: tempfile::TempDir,
}

impl Daemon {
    async fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let listen = format!("--address=unix:path={}", dir.path().join("bus").display());
        let out = Runner::new()
            .with_timeout(Duration::from_secs(20))
            .run(
                "dbus-daemon",
                &[
                    "--session",
                    "--fork",
                    &listen,
                    "--print-address=1",
                    "--print-pid=1",
                ],
            )
            .await
            .expect("dbus-daemon (Debian's dbus-daemon, see tools/install-deps) starts");
        let mut lines = out.stdout.lines();
        let address = lines.next().expect("an address").trim().to_owned();
        let pid: i32 = lines.next().expect("a pid").trim().parse().unwrap();
        Daemon {
            pid: Pid::from_raw(pid),
            address,
            _dir: dir,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Best effort: the daemon of this test only, by its pid.
        if let Err(e) = kill(self.pid, Signal::SIGTERM) {
            eprintln!("could not stop dbus-daemon {}: {e}", self.pid);
        }
    }
}

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

struct Manager {
    units: Vec<(&'static str, &'static str, &'static str)>,
}

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl Manager {
    fn list_units(&self) -> Vec<UnitRow> {
        self.units
            .iter()
            .map(|(name, active, path)| {
                (
                    (*name).to_owned(),
                    String::new(),
                    "loaded".to_owned(),
                    (*active).to_owned(),
                    if *active == "failed" {
                        "failed"
                    } else {
                        "running"
                    }
                    .to_owned(),
                    String::new(),
                    OwnedObjectPath::try_from(*path).unwrap(),
                    0,
                    String::new(),
                    OwnedObjectPath::try_from("/").unwrap(),
                )
            })
            .collect()
    }
}

struct Service {
    result: &'static str,
}

#[zbus::interface(name = "org.freedesktop.systemd1.Service")]
impl Service {
    #[zbus(property)]
    fn result(&self) -> String {
        self.result.to_owned()
    }
}

struct Mount;

#[zbus::interface(name = "org.freedesktop.systemd1.Mount")]
impl Mount {
    #[zbus(property)]
    fn result(&self) -> String {
        "exit-code".to_owned()
    }
}

struct Timedate {
    synchronised: bool,
}

#[zbus::interface(name = "org.freedesktop.timedate1")]
impl Timedate {
    #[zbus(property, name = "NTPSynchronized")]
    fn ntp_synchronized(&self) -> bool {
        self.synchronised
    }
}

/// systemd with two failed units among running ones, and timedated.
async fn serve(daemon: &Daemon) -> (zbus::Connection, zbus::Connection) {
    let systemd = zbus::connection::Builder::address(daemon.address.as_str())
        .name("org.freedesktop.systemd1")
        .serve_at(
            "/org/freedesktop/systemd1",
            Manager {
                units: vec![
                    (
                        "ssh.service",
                        "active",
                        "/org/freedesktop/systemd1/unit/ssh_2eservice",
                    ),
                    (
                        "caddy.service",
                        "failed",
                        "/org/freedesktop/systemd1/unit/caddy_2eservice",
                    ),
                    (
                        "srv-data.mount",
                        "failed",
                        "/org/freedesktop/systemd1/unit/srv_2ddata_2emount",
                    ),
                    (
                        "odd.target",
                        "failed",
                        "/org/freedesktop/systemd1/unit/odd_2etarget",
                    ),
                ],
            },
        )
        .serve_at(
            "/org/freedesktop/systemd1/unit/caddy_2eservice",
            Service {
                result: "start-limit-hit",
            },
        )
        .serve_at("/org/freedesktop/systemd1/unit/srv_2ddata_2emount", Mount)
        .build()
        .await
        .expect("systemd's stand-in on the bus");
    let timedated = zbus::connection::Builder::address(daemon.address.as_str())
        .name("org.freedesktop.timedate1")
        .serve_at(
            "/org/freedesktop/timedate1",
            Timedate { synchronised: true },
        )
        .build()
        .await
        .expect("timedated's stand-in on the bus");
    (systemd, timedated)
}

fn health(address: &str) -> RealHealth {
    let empty = Path::new("/nonexistent/coloc-health-test");
    RealHealth::new(Runner::new())
        .with_paths(HealthPaths {
            proc: empty.into(),
            sys: empty.into(),
            run: empty.into(),
            boot: empty.into(),
            root: "/".into(),
        })
        .with_tool("lsblk", "/nonexistent/lsblk")
        .with_tool("zpool", "/nonexistent/zpool")
        .with_tool("lvs", "/nonexistent/lvs")
        .with_bus_address(address)
        .with_deadline(Source::Units, Duration::from_secs(10))
        .with_deadline(Source::Clock, Duration::from_secs(10))
}

fn unobserved(report: &HealthReport, source: &str) -> Option<String> {
    report
        .unobserved
        .iter()
        .find(|u| u.source == source)
        .map(|u| u.reason.clone())
}

#[tokio::test]
async fn failed_units_and_the_clock_come_from_systemd_on_the_bus() {
    let daemon = Daemon::start().await;
    let _services = serve(&daemon).await;
    let report = health(&daemon.address)
        .report(&HealthInputs::default())
        .await;

    assert_eq!(
        unobserved(&report, "units"),
        None,
        "{:?}",
        report.unobserved
    );
    let units = report.units.clone().unwrap();
    assert!(units.unknown.is_empty());
    assert_eq!(
        units.failed,
        [
            FailedUnit {
                name: "caddy.service".into(),
                result: "start-limit-hit".into(),
            },
            // A unit type without a Result property.
            FailedUnit {
                name: "odd.target".into(),
                result: "failed".into(),
            },
            FailedUnit {
                name: "srv-data.mount".into(),
                result: "exit-code".into(),
            },
        ]
    );
    assert_eq!(unobserved(&report, "clock"), None);
    let clock = report.clock.unwrap();
    assert!(clock.synchronised && clock.unknown.is_empty());
}

#[tokio::test]
async fn a_bus_that_goes_away_is_unobserved_and_the_next_report_reconnects() {
    let daemon = Daemon::start().await;
    let health = health(&daemon.address);
    {
        let _services = serve(&daemon).await;
        let report = health.report(&HealthInputs::default()).await;
        assert_eq!(unobserved(&report, "units"), None);
    }
    // systemd's stand-in left the bus: the call fails, with the reason.
    let report = health.report(&HealthInputs::default()).await;
    let reason = unobserved(&report, "units").expect("units unobserved without systemd");
    assert!(reason.contains("systemd"), "{reason}");
    assert!(!report.units.clone().unwrap().unknown.is_empty());
    let clock = report.clock.unwrap();
    assert!(
        !clock.synchronised && !clock.unknown.is_empty(),
        "{clock:?}"
    );
    // Back: read again.
    let _services = serve(&daemon).await;
    let report = health.report(&HealthInputs::default()).await;
    assert_eq!(
        unobserved(&report, "units"),
        None,
        "{:?}",
        report.unobserved
    );
}
