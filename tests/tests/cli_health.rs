//! `coloc node health`, `coloc node scrub` / `self-test`, `coloc alert`
//! and the HEALTH column of `coloc node list`, typed at the command line
//! against a real colocd whose node is an agent session driven by hand:
//! the node reports a failing NVMe drive and a degraded mirror, the
//! sysadmin reads it, acknowledges and silences the alert, starts a scrub
//! and a self-test (checked at the node), the node reports healthy again
//! and the alert resolves; a member sees none of the hardware.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_proto::controller::v1::alerts_client::AlertsClient;
use coloc_proto::controller::v1::health_client::HealthClient;
use coloc_tests::cli::{CliUser, Coloc, cells, row};
use coloc_tests::*;
use tonic::Request;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

const GIB: u64 = 1024 * 1024 * 1024;
const DEADLINE: Duration = Duration::from_secs(20);

/// Adds the admin's bearer token to every call.
#[derive(Clone)]
struct AdminAuth(MetadataValue<Ascii>);

impl Interceptor for AdminAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

type Svc = InterceptedService<Channel, AdminAuth>;

/// The Health and Alerts services as the admin, to wait on colocd's state
/// without starting the binary every 25 ms.
#[derive(Clone)]
struct Watch {
    health: HealthClient<Svc>,
    alerts: AlertsClient<Svc>,
}

impl Watch {
    async fn new(ctl: &TestController) -> Result<Watch> {
        let auth = AdminAuth(format!("Bearer {}", ctl.admin_token).parse()?);
        let channel = ctl.channel().await?;
        Ok(Watch {
            health: HealthClient::with_interceptor(channel.clone(), auth.clone()),
            alerts: AlertsClient::with_interceptor(channel, auth),
        })
    }

    async fn node_health(&mut self, node: &str) -> Option<pb::NodeHealth> {
        let request = pb::NodeHealthRequest { node: node.into() };
        self.health
            .get_node_health(request)
            .await
            .ok()
            .map(|r| r.into_inner())
    }

    async fn firing(&mut self) -> Vec<pb::Alert> {
        let request = pb::ListAlertsRequest {
            limit: 1000,
            ..Default::default()
        };
        self.alerts
            .list_alerts(request)
            .await
            .map(|r| r.into_inner().alerts)
            .unwrap_or_default()
    }
}

fn nvme(critical_warning: u32) -> apb::DiskHealth {
    apb::DiskHealth {
        device: "/dev/nvme0n1".into(),
        model: "QEMU NVMe Ctrl".into(),
        serial: "COLOC0001".into(),
        transport: "nvme".into(),
        size_bytes: 64 * GIB,
        smart: apb::SmartVerdict::Passed as i32,
        temperature_c: Some(36),
        temperature_limit_c: Some(70),
        power_on_hours: Some(10),
        critical_warning: Some(critical_warning),
        percentage_used: Some(0),
        available_spare: Some(100),
        available_spare_threshold: Some(10),
        media_errors: Some(0),
        ..Default::default()
    }
}

fn tank(degraded: bool) -> apb::ZfsPoolHealth {
    let state = if degraded { "DEGRADED" } else { "ONLINE" };
    let vdev = |name: &str, depth, state: &str| apb::VdevHealth {
        name: name.into(),
        depth,
        state: state.into(),
        ..Default::default()
    };
    apb::ZfsPoolHealth {
        name: "tank".into(),
        state: state.into(),
        size_bytes: 8 * GIB,
        allocated_bytes: GIB,
        free_bytes: 7 * GIB,
        vdevs: vec![
            vdev("tank", 0, state),
            vdev("mirror-0", 1, state),
            vdev("vda", 2, "ONLINE"),
            vdev("vdb", 2, if degraded { "REMOVED" } else { "ONLINE" }),
        ],
        scrub: Some(apb::ScrubStatus {
            state: apb::ScrubState::Never as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn report(critical_warning: u32, degraded: bool) -> apb::HealthReport {
    apb::HealthReport {
        collected_unix_ms: 1,
        disks: vec![nvme(critical_warning)],
        zfs_pools: vec![tank(degraded)],
        filesystems: vec![apb::FilesystemUse {
            mount_path: "/".into(),
            size_bytes: 10 * GIB,
            used_bytes: GIB,
            available_bytes: 9 * GIB,
            ..Default::default()
        }],
        system: Some(apb::SystemLoad {
            memory_total_bytes: 2 * GIB,
            memory_available_bytes: GIB,
            cpu_count: 2,
            ..Default::default()
        }),
        units: Some(apb::UnitsHealth::default()),
        clock: Some(apb::ClockHealth {
            synchronised: true,
            ..Default::default()
        }),
        reboot: Some(apb::RebootHealth::default()),
        ..Default::default()
    }
}

async fn send_report(agent: &RawAgent, report: apb::HealthReport) -> Result<()> {
    agent
        .send(apb::agent_message::Body::Health(Box::new(report)))
        .await
}

/// The firing alert about the NVMe drive (its subject is the serial).
fn disk_alert(alerts: &[pb::Alert]) -> Option<pb::Alert> {
    alerts
        .iter()
        .find(|a| {
            a.subject.as_ref().is_some_and(|s| {
                s.kind == pb::AlertSubjectKind::Disk as i32 && s.name == "COLOC0001"
            })
        })
        .cloned()
}

async fn health_cell(admin: &CliUser<'_>) -> String {
    let table = admin.ok(&["node", "list"]).await;
    let header = cells(table.lines().next().unwrap_or_default()).to_vec();
    let at = header
        .iter()
        .position(|h| *h == "HEALTH")
        .unwrap_or_else(|| panic!("no HEALTH column in\n{table}"));
    cells(row(&table, "n1"))[at].to_string()
}

#[tokio::test]
async fn a_failing_disk_at_the_command_line() -> Result<()> {
    let ctl = TestController::start().await?;
    let coloc = Coloc::new(&ctl).await?;
    let admin = coloc.user(&ctl.admin_token);
    let watch = Watch::new(&ctl).await?;
    admin
        .ok(&["site", "create", "paris-1", "--country", "FR"])
        .await;
    let mut agents = raw_fleet(&ctl, "paris-1", &["n1"]).await?;
    let mut n1 = agents.remove(0);

    // Nothing reported yet: said in words, nothing looks healthy.
    let text = admin.ok(&["node", "health", "n1"]).await;
    assert!(text.contains("NO HEALTH REPORT"), "{text}");
    admin.fails(&["node", "health", "ghost"], 5).await;

    // Reliability degraded (bit 2), and one disk of the mirror gone.
    send_report(&n1, report(0b100, true)).await?;
    wait_for("n1's report at colocd", DEADLINE, || {
        let mut w = watch.clone();
        async move { w.node_health("n1").await.filter(|h| h.report.is_some()) }
    })
    .await?;
    let alert = wait_for("the disk's alert", DEADLINE, || {
        let mut w = watch.clone();
        async move { disk_alert(&w.firing().await) }
    })
    .await?;
    assert_eq!(alert.severity, pb::AlertSeverity::Critical as i32);
    let id = alert.id.to_string();

    let text = admin.ok(&["node", "health", "n1"]).await;
    for needle in [
        "Health of node n1\n",
        "FIRING ALERTS (",
        "PROBLEMS IN THE REPORT (",
        "!! disk /dev/nvme0n1 (COLOC0001): NVMe CRITICAL WARNING: reliability degraded\n",
        "!! pool tank is DEGRADED\n",
        "!! pool tank: device vdb is REMOVED\n",
        "Critical warning:  RELIABILITY DEGRADED (0x04)\n",
        "Period:     every ",
    ] {
        assert!(text.contains(needle), "{needle:?} missing in\n{text}");
    }
    assert!(!text.contains("STALE"), "{text}");
    let v = admin.json(&["node", "health", "n1", "--json"]).await;
    assert_eq!(
        v["report"]["disks"][0]["critical_warnings"][0],
        "reliability degraded"
    );
    assert_eq!(v["report"]["zfs_pools"][0]["state"], "DEGRADED");
    assert!(v["alerts"].as_array().is_some_and(|a| !a.is_empty()), "{v}");

    // The fleet at a glance.
    let cell = health_cell(&admin).await;
    assert!(cell.contains("critical"), "{cell}");
    let nodes = admin.json(&["node", "list", "--json"]).await;
    assert_eq!(nodes[0]["health"]["state"], "critical");

    let list = admin.ok(&["alert", "list"]).await;
    let line = row(&list, &id);
    assert!(
        line.contains("CRITICAL  firing") && line.contains("disk COLOC0001 on n1"),
        "{list}"
    );

    // Someone is on it.
    let acked = admin
        .ok(&["alert", "ack", &id, "--comment", "spare ordered"])
        .await;
    assert!(
        acked.contains(&format!("Alert {id} acknowledged.")),
        "{acked}"
    );
    assert!(
        acked.contains("Acknowledged:  by ") && acked.contains(": spare ordered"),
        "{acked}"
    );
    let now = ctl.now();
    let silenced = admin
        .json(&["alert", "silence", &id, "--for", "2h", "--json"])
        .await;
    let until = silenced["silenced_until_unix"].as_i64().unwrap_or_default();
    assert!((now + 7100..=now + 7300).contains(&until), "{silenced}");
    let list = admin.ok(&["alert", "list"]).await;
    assert!(
        row(&list, &id).contains("acked by ") && row(&list, &id).contains("silenced until "),
        "{list}"
    );
    let lifted = admin.json(&["alert", "unsilence", &id, "--json"]).await;
    assert!(
        lifted["silenced_until_unix"].as_i64().unwrap_or_default() <= ctl.now(),
        "{lifted}"
    );
    // Refused before anything is sent, or by colocd.
    admin
        .fails(&["alert", "silence", &id, "--for", "31d"], 7)
        .await;
    admin.fails(&["alert", "ack", &id], 2).await;
    admin.fails(&["alert", "show", "999999"], 5).await;

    // A member sees none of the hardware.
    admin
        .ok(&[
            "tenant",
            "create",
            "asso-x",
            "--offer",
            "participatif",
            "--expires",
            "2099-06-30",
        ])
        .await;
    admin
        .ok(&[
            "user", "create", "mia", "--tenant", "asso-x", "--role", "member",
        ])
        .await;
    let token = admin
        .ok(&["token", "create", "--user", "mia", "--ttl", "1d"])
        .await;
    let mia = coloc.user(token.trim());
    mia.fails(&["node", "health", "n1"], 4).await;
    let seen = mia.json(&["alert", "list", "--json"]).await;
    assert_eq!(seen, serde_json::json!([]));

    // Maintenance on demand reaches the node; a serial becomes its device.
    let asked: Arc<Mutex<Vec<apb::RunMaintenance>>> = Arc::default();
    let record = asked.clone();
    n1.answer_requests(move |r| {
        if let Some(apb::request::Kind::RunMaintenance(m)) = &r.kind {
            record.lock().expect("not poisoned").push(m.clone());
        }
        apb::RequestResult {
            request_id: r.id,
            ok: true,
            ..Default::default()
        }
    })?;
    let out = admin.ok(&["node", "scrub", "n1", "tank"]).await;
    assert!(
        out.starts_with("Started a scrub of tank on node n1;"),
        "{out}"
    );
    let out = admin
        .ok(&["node", "self-test", "n1", "COLOC0001", "--long"])
        .await;
    assert!(
        out.starts_with("Started a long self-test of /dev/nvme0n1 on node n1;"),
        "{out}"
    );
    {
        let asked = asked.lock().expect("not poisoned");
        assert_eq!(asked.len(), 2, "{asked:?}");
        assert_eq!(asked[0].kind, apb::MaintenanceKind::Scrub as i32);
        assert_eq!(asked[0].subject, "tank");
        assert_eq!(asked[1].kind, apb::MaintenanceKind::SmartLong as i32);
        assert_eq!(asked[1].subject, "/dev/nvme0n1");
    }
    admin.fails(&["node", "scrub", "n1", "mirror"], 7).await;

    // Healthy again: the alert resolves by itself.
    send_report(&n1, report(0, false)).await?;
    wait_for("the disk's alert to resolve", DEADLINE, || {
        let mut w = watch.clone();
        async move { disk_alert(&w.firing().await).is_none().then_some(()) }
    })
    .await?;
    let all = admin.ok(&["alert", "list", "--all", "--node", "n1"]).await;
    assert!(row(&all, &id).contains("resolved"), "{all}");
    let shown = admin.ok(&["alert", "show", &id]).await;
    assert!(shown.contains("State:         resolved "), "{shown}");

    // A silent node: its last report is marked stale.
    let period = watch
        .clone()
        .node_health("n1")
        .await
        .map_or(60, |h| i64::from(h.period_secs.max(1)));
    ctl.set_now(ctl.now() + 3 * period);
    wait_for("n1's report to go stale", DEADLINE, || {
        let mut w = watch.clone();
        async move { w.node_health("n1").await.filter(|h| h.stale) }
    })
    .await?;
    let text = admin.ok(&["node", "health", "n1"]).await;
    assert!(text.contains("STALE REPORT: received "), "{text}");
    Ok(())
}

/// Members see their tenant's alerts only, so the HEALTH column must not
/// count them (a node with a failing disk would read `ok`): it is `-`,
/// and `health` is null in JSON. Holds whether or not colocd keeps alerts.
#[tokio::test]
async fn node_list_health_column_for_members() -> Result<()> {
    let ctl = TestController::start().await?;
    let coloc = Coloc::new(&ctl).await?;
    let admin = coloc.user(&ctl.admin_token);
    admin
        .ok(&["site", "create", "paris-1", "--country", "FR"])
        .await;
    let _agents = raw_fleet(&ctl, "paris-1", &["n1"]).await?;
    admin
        .ok(&[
            "tenant",
            "create",
            "asso-x",
            "--offer",
            "participatif",
            "--expires",
            "2099-06-30",
        ])
        .await;
    admin
        .ok(&[
            "user", "create", "alice", "--tenant", "asso-x", "--role", "operator",
        ])
        .await;
    admin.ok(&["user", "grant", "alice", "--node", "n1"]).await;
    let token = admin
        .ok(&["token", "create", "--user", "alice", "--ttl", "1d"])
        .await;
    let alice = coloc.user(token.trim());

    assert_eq!(health_cell(&alice).await, "-");
    let nodes = alice.json(&["node", "list", "--json"]).await;
    assert_eq!(nodes[0]["name"], "n1");
    assert!(
        nodes[0]
            .get("health")
            .is_some_and(serde_json::Value::is_null),
        "{nodes}"
    );
    // The admin's list has the column and the key, whatever colocd can
    // say about alerts; the node list itself never fails for them.
    let cell = health_cell(&admin).await;
    assert!(!cell.is_empty(), "{cell}");
    let nodes = admin.json(&["node", "list", "--json"]).await;
    assert!(nodes[0].get("health").is_some(), "{nodes}");
    Ok(())
}
