//! Health reports and alerts through a real colocd: raw agent sessions
//! send crafted health reports, and the tests read what an admin, an
//! operator or a member sees through the Health and Alerts services.
//!
//! - `reports`: the policy reaches the agent; a critical warning fires an
//!   alert, repeated reports keep one, clearing it resolves it; a report
//!   past its bounds or with a control character is refused and changes
//!   nothing; the last report and the alerts survive a restart of colocd.
//! - `people`: acknowledging and silencing, with their audit entries and
//!   their refusals; a member of one tenant neither sees nor acts on
//!   another tenant's alerts or on the nodes' alerts; a volume filling up
//!   is its tenant's alert.
//! - `maintenance`: scrubs and self-tests on demand, checked against the
//!   node's latest report.
//! - `notifications`: firing and resolution posted to a real webhook, a
//!   silenced alert's not.
//! - `metrics`: a firing alert and a node's disks in colocd's `/metrics`.
//! - `reachability`: a node whose session is gone fires node-unreachable,
//!   which resolves when it comes back.

mod maintenance;
mod metrics;
mod notifications;
mod people;
mod reachability;
mod reports;

use std::time::Duration;

use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_proto::controller::v1::alerts_client::AlertsClient;
use coloc_proto::controller::v1::health_client::HealthClient;
use coloc_tests::*;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub const DEADLINE: Duration = Duration::from_secs(30);

/// Adds the caller's bearer token to every call.
#[derive(Clone)]
pub struct Token(MetadataValue<Ascii>);

impl tonic::service::Interceptor for Token {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

type Authed = InterceptedService<Channel, Token>;

/// The Health and Alerts services as one caller.
#[derive(Clone)]
pub struct Watch {
    pub health: HealthClient<Authed>,
    pub alerts: AlertsClient<Authed>,
}

impl Watch {
    pub async fn new(ctl: &TestController, token: &str) -> Result<Self> {
        let channel = ctl.channel().await?;
        let t = Token(format!("Bearer {token}").parse()?);
        Ok(Self {
            health: HealthClient::with_interceptor(channel.clone(), t.clone()),
            alerts: AlertsClient::with_interceptor(channel, t),
        })
    }

    /// Alerts as this caller lists them.
    pub async fn list(&mut self, include_resolved: bool) -> Result<Vec<pb::Alert>> {
        Ok(self
            .alerts
            .list_alerts(pb::ListAlertsRequest {
                include_resolved,
                ..Default::default()
            })
            .await?
            .into_inner()
            .alerts)
    }

    /// Waits until an alert of `rule` in `state` is listed (resolved ones
    /// included) and returns it.
    pub async fn wait_alert(&self, rule: &str, state: pb::AlertState) -> Result<pb::Alert> {
        wait_for(&format!("a {state:?} {rule} alert"), DEADLINE, || {
            let mut me = self.clone();
            async move {
                me.list(true)
                    .await
                    .ok()?
                    .into_iter()
                    .find(|a| a.rule == rule && a.state == state as i32)
            }
        })
        .await
    }

    pub async fn node_health(&mut self, node: &str) -> Result<pb::NodeHealth> {
        Ok(self
            .health
            .get_node_health(pb::NodeHealthRequest { node: node.into() })
            .await?
            .into_inner())
    }
}

/// An NVMe drive with these critical-warning bits, otherwise healthy.
pub fn nvme(serial: &str, critical_warning: u32) -> apb::DiskHealth {
    apb::DiskHealth {
        device: "/dev/nvme0n1".into(),
        model: "QEMU NVMe Ctrl".into(),
        serial: serial.into(),
        transport: "nvme".into(),
        size_bytes: 1 << 30,
        smart: apb::SmartVerdict::Passed as i32,
        temperature_c: Some(35),
        temperature_limit_c: Some(70),
        critical_warning: Some(critical_warning),
        percentage_used: Some(1),
        available_spare: Some(100),
        available_spare_threshold: Some(10),
        ..Default::default()
    }
}

/// A report holding these disks, marked by `collected_unix_ms`.
pub fn report(marker: u64, disks: Vec<apb::DiskHealth>) -> apb::HealthReport {
    apb::HealthReport {
        collected_unix_ms: marker,
        disks,
        ..Default::default()
    }
}

pub async fn send_report(agent: &RawAgent, report: apb::HealthReport) -> Result<()> {
    agent
        .send(apb::agent_message::Body::Health(Box::new(report)))
        .await
}

/// Waits until colocd holds the report marked `marker` for `node`.
pub async fn wait_report(admin: &Watch, node: &str, marker: u64) -> Result<pb::NodeHealth> {
    wait_for(&format!("report {marker} of {node}"), DEADLINE, || {
        let mut me = admin.clone();
        async move {
            let h = me.node_health(node).await.ok()?;
            (h.report.as_ref()?.collected_unix_ms == marker).then_some(h)
        }
    })
    .await
}

/// A controller with one site and raw agents for `nodes`, and the admin's
/// view of health and alerts.
pub async fn fleet(nodes: &[&str]) -> Result<(TestController, Vec<RawAgent>, Watch)> {
    init_test_logging();
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let agents = raw_fleet(&ctl, "paris-1", nodes).await?;
    let watch = Watch::new(&ctl, &ctl.admin_token).await?;
    Ok((ctl, agents, watch))
}
