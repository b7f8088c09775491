//! Hardware health end to end: the node image booted in QEMU (TCG) with
//! an emulated NVMe drive and a ZFS mirror, the real agent reading real
//! `smartctl --json` and `zpool status`, colocd raising alerts, e-mailing
//! them to a real SMTP server (Debian's aiosmtpd, a Maildir) and serving
//! `/metrics`:
//!
//! - the NVMe drive raises a critical warning at run time (QMP `qom-set`
//!   on QEMU's `smart_critical_warning`): the alert fires, a mail says so,
//!   the metric shows the bits; cleared, the alert resolves and a second
//!   mail says so;
//! - a scrub asked for with `StartMaintenance` runs and is reported;
//! - a volume filled past 90 % of its size fires volume-full;
//! - an app (the static site, nginx from Debian) killed again and again:
//!   systemd restarts it each time, app-restart-loop fires;
//! - one disk of the mirror pulled out (hot-unplug) degrades the pool:
//!   pool-degraded fires;
//! - the node's power cut fires node-unreachable; powered back, it
//!   resolves.
//!
//! Slow: `#[ignore]`, run by `make test` (`make test-vm`) with --ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use coloc_controller::config::{AlertsConfig, ControllerConfig, HealthConfig};
use coloc_controller::metrics::MetricsConfig;
use coloc_controller::notify::{EmailConfig, NotifyConfig, SmtpTls};
use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_tests::lab::{Lab, NodeSpec, diagnosed, nvme, virtio, vm_config};
use coloc_tests::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BOOT: Duration = Duration::from_secs(600);
/// Two health periods of 10 s, a collection of real tools under TCG, the
/// alerts task's pass: with room for a loaded machine.
const ALERT: Duration = Duration::from_secs(180);
const MIB: u64 = 1024 * 1024;
const NVME: &str = "COLOCH01";
/// Installing an app's packages from Debian in a TCG guest.
const DEPLOY: Duration = Duration::from_secs(900);
/// Restarts that make a loop here (5 by default, in 10 minutes).
const RESTARTS: u32 = 3;

/// Debian's aiosmtpd on the host's loopback, keeping each message it
/// takes in a Maildir.
struct Smtp {
    child: Child,
    maildir: PathBuf,
    port: u16,
}

impl Smtp {
    fn start(dir: &Path) -> Result<Smtp> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let maildir = dir.join("maildir");
        // The python3 on PATH may not be Debian's (which has aiosmtpd).
        #[allow(clippy::disallowed_methods)]
        let child = Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .spawn()
            .context("run /usr/bin/python3 -m aiosmtpd (apt-get install python3-aiosmtpd)")?;
        Ok(Smtp {
            child,
            maildir,
            port,
        })
    }

    /// Every message taken so far, whole.
    fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .collect()
    }

    async fn wait_message(&self, what: &str, matches: impl Fn(&str) -> bool) -> Result<String> {
        wait_for(what, ALERT, || {
            let found = self.messages().into_iter().find(|m| matches(m));
            async move { found }
        })
        .await
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /metrics` over plain HTTP/1.1; the body.
async fn scrape(addr: SocketAddr) -> Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: colocd\r\nConnection: close\r\n\r\n")
        .await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8(raw)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP header in {text:?}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("/metrics answered {head}");
    }
    Ok(body.to_string())
}

/// The value of the first sample of `family` whose labels contain every
/// `label="value"` of `labels`.
fn sample(body: &str, family: &str, labels: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{'))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn alerts(api: &Api, include_resolved: bool) -> Option<Vec<pb::Alert>> {
    let alerts = api
        .alerts
        .clone()
        .list_alerts(pb::ListAlertsRequest {
            include_resolved,
            node: "n1".into(),
            ..Default::default()
        })
        .await
        .ok()?
        .into_inner()
        .alerts;
    Some(alerts)
}

/// Waits until an alert of `rule` (whose subject names `subject`) fires.
async fn wait_firing(api: &Api, rule: &str, subject: &str) -> Result<pb::Alert> {
    wait_for(
        &format!("{rule} on {subject} to fire"),
        ALERT,
        || async move {
            alerts(api, false).await?.into_iter().find(|a| {
                a.rule == rule
                    && a.subject
                        .as_ref()
                        .is_some_and(|s| s.name.contains(subject) || s.node == subject)
            })
        },
    )
    .await
}

async fn wait_resolved(api: &Api, alert: &pb::Alert) -> Result<pb::Alert> {
    let id = alert.id;
    wait_for(
        &format!("alert {id} ({}) to resolve", alert.rule),
        ALERT,
        || async move {
            alerts(api, true)
                .await?
                .into_iter()
                .find(|a| a.id == id && a.state == pb::AlertState::Resolved as i32)
        },
    )
    .await
}

/// Keeps what a tool printed in the guest under `COLOC_RECORD_DIR`, when
/// set: the recordings the host's parsers are tested on
/// (agent/host/tests/fixtures/health/recorded/).
async fn record(vm: &coloc_vm::Vm, name: &str, command: &[&str]) -> Result<()> {
    let Some(dir) = std::env::var_os("COLOC_RECORD_DIR") else {
        return Ok(());
    };
    let (_, out) = vm.execute(command).await?;
    std::fs::create_dir_all(&dir)?;
    std::fs::write(Path::new(&dir).join(name), out)?;
    Ok(())
}

async fn node_health(api: &Api) -> Option<apb::HealthReport> {
    api.health
        .clone()
        .get_node_health(pb::NodeHealthRequest { node: "n1".into() })
        .await
        .ok()?
        .into_inner()
        .report
}

#[tokio::test]
#[ignore = "boots a VM; run by `make test` with --ignored"]
async fn a_dying_disk_a_degraded_mirror_a_full_volume_and_a_dead_node_reach_the_sysadmins()
-> Result<()> {
    init_test_logging();
    let work = tempfile::tempdir()?;
    let smtp = Smtp::start(work.path())?;
    let mut lab = Lab::start(ControllerConfig {
        unreachable_after_secs: 30,
        health: HealthConfig {
            period_secs: 10,
            ..HealthConfig::default()
        },
        alerts: AlertsConfig {
            app_restarts: RESTARTS,
            ..AlertsConfig::default()
        },
        notify: NotifyConfig {
            group_wait_secs: 1,
            email: Some(EmailConfig {
                host: "127.0.0.1".into(),
                port: smtp.port,
                tls: SmtpTls::None,
                username: None,
                password_file: None,
                from: "coloc <alerts@coloc.test>".into(),
                to: vec!["admins@coloc.test".into()],
                ca_file: None,
            }),
            ..NotifyConfig::default()
        },
        metrics: Some(MetricsConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            bearer_token_file: None,
        }),
        ..vm_config()
    })
    .await?;
    let metrics = lab
        .ctl
        .running()
        .metrics_addr
        .ok_or_else(|| anyhow!("colocd serves no /metrics"))?;
    let mut n1 = NodeSpec::new("n1");
    n1.disks = vec![
        nvme(NVME, 512),
        virtio("COLOCM1", 512),
        virtio("COLOCM2", 512),
    ];
    let mut vm = lab.boot(&n1).await?;
    let mut admin = lab.admin.clone();

    let result = async {
        lab.wait_ready("n1", BOOT).await?;
        // Ready in colocd comes before multi-user.target: the node may
        // still be starting sshd, slowly under TCG.
        vm.wait_for_ssh(BOOT).await?;

        // ---- real SMART from QEMU's NVMe drive, healthy
        let report = wait_for("a health report with the NVMe drive's SMART", ALERT, || {
            let admin = admin.clone();
            async move {
                let r = node_health(&admin).await?;
                r.disks
                    .iter()
                    .any(|d| d.serial == NVME && d.smart == apb::SmartVerdict::Passed as i32)
                    .then_some(r)
            }
        })
        .await?;
        let disk = report.disks.iter().find(|d| d.serial == NVME).unwrap();
        assert_eq!(disk.critical_warning, Some(0), "{disk:?}");
        assert!(disk.unknown.is_empty(), "{disk:?}");
        let smartctl = ["smartctl", "--json", "-a", disk.device.as_str()];
        record(&vm, "smartctl-qemu-nvme-healthy.json", &smartctl).await?;

        // ---- the drive raises "reliability degraded" (bit 2)
        vm.qmp(
            "qom-set",
            Some(json!({"path": format!("/machine/peripheral/{NVME}"), "property": "smart_critical_warning", "value": 4})),
        )
        .await?;
        let warning = wait_firing(&admin, "disk-nvme-critical-warning", NVME).await?;
        record(&vm, "smartctl-qemu-nvme-critical-warning.json", &smartctl).await?;
        assert_eq!(warning.severity, pb::AlertSeverity::Critical as i32, "{warning:?}");
        smtp.wait_message("the mail about the critical warning", |m| {
            m.contains("disk-nvme-critical-warning") && m.contains("firing")
        })
        .await?;
        let body = scrape(metrics).await?;
        assert_eq!(
            sample(&body, "coloc_disk_nvme_critical_warning", &[&format!("serial=\"{NVME}\"")]),
            Some(4.0),
            "{body}"
        );
        vm.qmp(
            "qom-set",
            Some(json!({"path": format!("/machine/peripheral/{NVME}"), "property": "smart_critical_warning", "value": 0})),
        )
        .await?;
        wait_resolved(&admin, &warning).await?;
        smtp.wait_message("the mail about the resolution", |m| {
            m.contains("disk-nvme-critical-warning") && m.contains("resolved")
        })
        .await?;

        // ---- a mirror, scrubbed on demand
        admin
            .storage
            .create_pool(pb::CreatePoolRequest {
                node: "n1".into(),
                name: "tank".into(),
                kind: apb::PoolKind::Zfs as i32,
                layout: apb::PoolLayout::Mirror as i32,
                disks: vec!["serial:COLOCM1".into(), "serial:COLOCM2".into()],
                force: false,
            })
            .await?;
        wait_for("the mirror in a health report, ONLINE", ALERT, || {
            let admin = admin.clone();
            async move {
                let r = node_health(&admin).await?;
                r.zfs_pools
                    .iter()
                    .any(|p| p.name == "tank" && p.state == "ONLINE")
                    .then_some(())
            }
        })
        .await?;
        let asked = lab.ctl.now();
        admin
            .health
            .start_maintenance(pb::StartMaintenanceRequest {
                node: "n1".into(),
                kind: apb::MaintenanceKind::Scrub as i32,
                subject: "tank".into(),
            })
            .await?;
        wait_for("the scrub asked for, reported finished", ALERT, || {
            let admin = admin.clone();
            async move {
                let r = node_health(&admin).await?;
                let pool = r.zfs_pools.iter().find(|p| p.name == "tank")?;
                let scrub = pool.scrub.as_ref()?;
                (scrub.state == apb::ScrubState::Finished as i32
                    && i64::try_from(scrub.started_unix).ok()? >= asked - 5)
                    .then_some(())
            }
        })
        .await?;
        record(&vm, "zpool-status-qemu-scrubbed.txt", &["zpool", "status", "-p", "tank"]).await?;

        // ---- a volume filled past 90 %
        create_tenant(&mut admin, "asso-a", pb::Offer::Participatif).await?;
        create_volume(
            &mut admin,
            NewVolume {
                tenant: "asso-a",
                name: "files",
                node: "n1",
                pool: "tank",
                size_bytes: 64 * MIB,
                encrypted: false,
            },
        )
        .await?;
        let volume = wait_volume(&admin, "asso-a/files", "mounted", ALERT, |v| {
            v.observed.as_ref().is_some_and(|o| o.mounted)
        })
        .await?;
        let path = volume.observed.unwrap().mount_path;
        vm.succeed(&[
            "sh",
            "-c",
            &format!("dd if=/dev/urandom of={path}/fill bs=1M count=60 status=none; sync"),
        ])
        .await?;
        wait_firing(&admin, "volume-full", "files").await?;

        // ---- an app that keeps dying
        create_volume(
            &mut admin,
            NewVolume {
                tenant: "asso-a",
                name: "web",
                node: "n1",
                pool: "tank",
                size_bytes: 64 * MIB,
                encrypted: false,
            },
        )
        .await?;
        wait_volume(&admin, "asso-a/web", "mounted", ALERT, |v| {
            v.observed.as_ref().is_some_and(|o| o.mounted)
        })
        .await?;
        request_approved(&mut admin, "asso-a", "site", "n1", "web").await?;
        wait_instance(&admin, "asso-a/site", "healthy", DEPLOY, |i| {
            i.observed
                .as_ref()
                .is_some_and(|o| o.active_state == "active" && o.healthy && o.restarts == 0)
        })
        .await?;
        let unit = "coloc-app-asso-a-site.service";
        let main_pid = async || -> Result<u32> {
            let out = vm
                .succeed(&["systemctl", "show", "-p", "MainPID", "--value", unit])
                .await?;
            Ok(out.trim().parse()?)
        };
        for _ in 0..RESTARTS {
            let pid = main_pid().await?;
            assert_ne!(pid, 0, "{unit} runs");
            // A crash, as systemd sees one: the main process killed.
            vm.succeed(&["kill", "-KILL", &pid.to_string()]).await?;
            wait_for("systemd to start the app again", ALERT, || async {
                let now = main_pid().await.ok()?;
                (now != 0 && now != pid).then_some(())
            })
            .await?;
        }
        let restarts = vm
            .succeed(&["systemctl", "show", "-p", "NRestarts", "--value", unit])
            .await?;
        assert_eq!(restarts.trim(), RESTARTS.to_string(), "{unit}");
        let looping = wait_firing(&admin, "app-restart-loop", "site").await?;
        assert!(
            looping.summary.contains(&format!("restarted {RESTARTS} times")),
            "{looping:?}"
        );

        // ---- one side of the mirror pulled out
        vm.hot_unplug("COLOCM2").await?;
        // ZFS notices a missing member when it next touches it.
        vm.execute(&["zpool", "scrub", "tank"]).await?;
        wait_firing(&admin, "pool-degraded", "tank").await?;
        record(&vm, "zpool-status-qemu-degraded.txt", &["zpool", "status", "-p", "tank"]).await?;
        record(&vm, "zpool-list-qemu.txt", &["zpool", "list", "-Hp"]).await?;

        // ---- the node's power cut, then back
        vm.power_cut().await?;
        let unreachable = wait_firing(&admin, "node-unreachable", "n1").await?;
        vm.restart().await?;
        lab.wait_ready("n1", BOOT).await?;
        // Ready in colocd comes before multi-user.target: the node may
        // still be starting sshd, slowly under TCG.
        vm.wait_for_ssh(BOOT).await?;
        wait_resolved(&admin, &unreachable).await?;
        Ok(())
    }
    .await;
    diagnosed(&vm, result).await
}
