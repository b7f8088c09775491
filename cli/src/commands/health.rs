//! `coloc node health`, `coloc node scrub`, `coloc node self-test`,
//! `coloc alert` and the HEALTH column of `coloc node list` (colocd's
//! Health and Alerts services).

use coloc_proto::agent::v1 as agent;
use coloc_proto::controller::v1 as pb;
use coloc_proto::domain::NodeName;
use serde_json::json;
use tonic::Code;

use super::{call, connect, now_unix};
use crate::args::GlobalArgs;
use crate::args::health::AlertCommand;
use crate::client::Api;
use crate::error::Failure;
use crate::output::Printer;
use crate::output::alerts::{
    FleetHealth, alert_changed_text, alert_details, alert_json, alerts_table,
};
use crate::output::health::{
    maintenance_kind_json, maintenance_started_text, node_health_json, node_health_text,
};

/// colocd's largest page of alerts (`ListAlertsRequest.limit`).
const MAX_ALERTS: u32 = 1000;

pub async fn node_health(global: &GlobalArgs, out: Printer, name: NodeName) -> Result<(), Failure> {
    let api = connect(global).await?;
    let health = call(
        &api,
        api.health()
            .get_node_health(pb::NodeHealthRequest { node: name.into() }),
    )
    .await?;
    let now = now_unix();
    out.emit(node_health_json(&health), || node_health_text(&health, now))
}

/// Starts a scrub (of a pool) or a self-test (of a disk) now.
pub async fn maintenance(
    global: &GlobalArgs,
    out: Printer,
    node: NodeName,
    kind: agent::MaintenanceKind,
    subject: String,
) -> Result<(), Failure> {
    let api = connect(global).await?;
    let started = call(
        &api,
        api.health().start_maintenance(pb::StartMaintenanceRequest {
            node: node.to_string(),
            kind: kind as i32,
            subject: subject.clone(),
        }),
    )
    .await?;
    // colocd names what the agent resolved (a serial becomes its device).
    let on = if started.subject.is_empty() {
        subject
    } else {
        started.subject
    };
    let json = json!({
        "node": node.as_str(),
        "kind": maintenance_kind_json(kind as i32),
        "subject": on,
    });
    out.emit(json, || maintenance_started_text(node.as_str(), kind, &on))
}

pub async fn alert(
    global: &GlobalArgs,
    out: Printer,
    command: AlertCommand,
) -> Result<(), Failure> {
    match command {
        AlertCommand::List {
            all,
            node,
            tenant,
            limit,
        } => {
            let request = pb::ListAlertsRequest {
                include_resolved: all,
                node: node.map(String::from).unwrap_or_default(),
                tenant: tenant.map(String::from).unwrap_or_default(),
                // 0: colocd's default.
                limit: limit.unwrap_or(0),
            };
            let api = connect(global).await?;
            let list = call(&api, api.alerts().list_alerts(request)).await?;
            let now = now_unix();
            out.list(&list.alerts, alert_json, |alerts| {
                if alerts.is_empty() && !all {
                    "No firing alert ('coloc alert list --all' includes resolved ones).\n"
                        .to_string()
                } else {
                    alerts_table(alerts, now)
                }
            })
        }
        AlertCommand::Show { id } => {
            let api = connect(global).await?;
            let a = call(&api, api.alerts().get_alert(pb::AlertRef { id })).await?;
            let now = now_unix();
            out.emit(alert_json(&a), || alert_details(&a, now))
        }
        AlertCommand::Ack { id, comment } => {
            let api = connect(global).await?;
            let a = call(
                &api,
                api.alerts().ack_alert(pb::AckAlertRequest { id, comment }),
            )
            .await?;
            let now = now_unix();
            out.emit(alert_json(&a), || {
                alert_changed_text("acknowledged", &a, now)
            })
        }
        AlertCommand::Silence {
            id,
            duration_secs,
            comment,
        } => {
            let api = connect(global).await?;
            let a = call(
                &api,
                api.alerts().silence_alert(pb::SilenceAlertRequest {
                    id,
                    duration_secs,
                    comment: comment.unwrap_or_default(),
                }),
            )
            .await?;
            let now = now_unix();
            out.emit(alert_json(&a), || alert_changed_text("silenced", &a, now))
        }
        AlertCommand::Unsilence { id } => {
            let api = connect(global).await?;
            let a = call(
                &api,
                api.alerts().silence_alert(pb::SilenceAlertRequest {
                    id,
                    duration_secs: 0,
                    comment: String::new(),
                }),
            )
            .await?;
            let now = now_unix();
            out.emit(alert_json(&a), || {
                alert_changed_text("no longer silenced", &a, now)
            })
        }
    }
}

/// The HEALTH column of `coloc node list`: every firing alert in one
/// call, counted per node. Only admins see every alert (members see their
/// tenant's, which would make a node with a failing disk look fine), so
/// the caller's role is asked first and others get `-`. The list of
/// nodes is what was asked for: nothing here fails the command, a
/// problem only leaves the column empty and says why on stderr.
pub async fn fleet_health(api: &Api, out: Printer) -> FleetHealth {
    let me = match api.users().who_am_i(pb::WhoAmIRequest {}).await {
        Ok(me) => me.into_inner(),
        Err(status) => {
            out.note(&format!("HEALTH left '-': {}", api.fail(status).message));
            return FleetHealth::Hidden;
        }
    };
    if me.role != pb::Role::Admin as i32 {
        return FleetHealth::Hidden;
    }
    let request = pb::ListAlertsRequest {
        include_resolved: false,
        node: String::new(),
        tenant: String::new(),
        limit: MAX_ALERTS,
    };
    match api.alerts().list_alerts(request).await {
        Ok(list) => {
            let alerts = list.into_inner().alerts;
            if alerts.len() >= MAX_ALERTS as usize {
                out.note(&format!(
                    "HEALTH counts the newest {MAX_ALERTS} firing alerts only; 'coloc alert list --node NODE' lists a node's"
                ));
            }
            FleetHealth::from_alerts(&alerts)
        }
        Err(status) if status.code() == Code::Unimplemented => {
            out.note("HEALTH left '-': this colocd does not keep alerts yet");
            FleetHealth::Hidden
        }
        Err(status) => {
            out.note(&format!("HEALTH left '-': {}", api.fail(status).message));
            FleetHealth::Hidden
        }
    }
}
