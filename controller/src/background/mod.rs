//! colocd's background tasks: periodic work nobody asks for, each a named
//! task with a period, run by one [`Driver`] that records what every run
//! did on a [`TaskBoard`] admins read with `coloc tasks`.
//!
//! The tasks (names are stable; scripts read them):
//!
//! | name | period | what it does |
//! |---|---|---|
//! | `heartbeat-flush` | `seen_flush_ms` | writes the heartbeats folded in memory to the store in one batch (and once more at shutdown) |
//! | `silent-sessions` | `seen_flush_ms` | closes sessions silent for three heartbeat intervals + 5 s (a power-cut server sends no FIN) |
//! | `unreachable-nodes` | `seen_flush_ms` | marks nodes unreachable once their session has been gone for `unreachable_after_secs` |
//! | `volume-purge` | 2 s | moves retained volumes past their grace period to purging and tells their nodes |
//! | `membership` | 5 s | writes to the audit log, once, that an association's membership expired or that it is now frozen |
//! | `refusal-summaries` | 1 s | writes one audit entry per address for the refusals the per-address limits counted without writing them ("N further refused calls from ADDR") |
//! | `node-certificates` | 5 s | renews node certificates over their sessions after two thirds of their lifetime; closes sessions whose certificate expired |
//! | `server-certificate` | 5 s | renews colocd's own server certificate after two thirds of its lifetime; fails once the CA has less than two years left |
//! | `health-flush` | `seen_flush_ms` | writes the health reports accepted since the last run to the store in one batch (and once more at shutdown) |
//! | `alerts` | 1 s | runs the alert rules when a health report arrived, else every 10 s; fires, resolves and updates alerts (audited, with the notifier's outbox events) |
//!
//! A task does one idempotent pass over the store and the session registry
//! per run and returns a short summary or an error; it never loops or
//! sleeps itself, and never decides policy that an API call could not
//! (the grace period, the unreachable delay come from the store and the
//! configuration). The driver owns timing, overlap and shutdown.
//!
//! Layout: [`driver`] (the [`Driver`]: one timer per task, no overlapping
//! runs, shutdown), [`status`] (the [`TaskBoard`] and what `Tasks.ListTasks`
//! returns), `summary` (how a task words what it did), and one module per
//! task, named after it: `heartbeat_flush`, `health_flush`, `alerts`, `silent_sessions`,
//! `unreachable_nodes`, `volume_purge`, `membership`, `refusal_summaries`,
//! `node_certificates`, `server_certificate`. A new task is a new module
//! here and one entry in [`colocd_tasks`].

mod alerts;
pub mod driver;
mod health_flush;
mod heartbeat_flush;
mod membership;
pub mod node_certificates;
pub mod refusal_summaries;
pub mod server_certificate;
mod silent_sessions;
pub mod status;
mod summary;
mod unreachable_nodes;
mod volume_purge;

use std::path::Path;
use std::time::Duration;

pub use driver::{BackgroundTask, Driver, TaskDefinition, TaskError};
pub use status::{Outcome, TaskBoard, TaskStatus};

use crate::context::Ctx;

/// How often the `alerts` task looks for a new health report (it
/// evaluates the rules only then, or every 10 s).
const ALERTS_INTERVAL: Duration = Duration::from_secs(1);

/// How often retained volumes are checked for the end of their grace
/// period.
const PURGE_INTERVAL: Duration = Duration::from_secs(2);
/// How often closed refusal windows are summed up in the audit log.
const REFUSAL_SUMMARY_INTERVAL: Duration = Duration::from_secs(1);

/// How often memberships are checked for a new phase. A phase changes at
/// midnight UTC (or when an admin renews); a few seconds late is soon
/// enough, and a pass is one read of the tenants.
const MEMBERSHIP_INTERVAL: Duration = Duration::from_secs(5);

/// How often certificates are checked: the node query uses an index and
/// the server certificate is in memory, so this costs next to nothing.
const CERTIFICATE_INTERVAL: Duration = Duration::from_secs(5);

/// colocd's tasks, with their periods from the configuration;
/// `data_dir` is where colocd's server certificate is written.
pub fn colocd_tasks(ctx: &Ctx, data_dir: &Path) -> Vec<TaskDefinition> {
    let flush = Duration::from_millis(ctx.config.seen_flush_ms);
    vec![
        TaskDefinition {
            name: "heartbeat-flush",
            description: "write agents' heartbeats (last seen times) to the store in one batch",
            period: flush,
            activate_on_shutdown: true,
            task: Box::new(heartbeat_flush::HeartbeatFlush::new(ctx.clone())),
        },
        TaskDefinition {
            name: "silent-sessions",
            description: "close agent sessions silent for three heartbeat intervals (+5 s)",
            period: flush,
            activate_on_shutdown: false,
            task: Box::new(silent_sessions::SilentSessions::new(ctx.clone())),
        },
        TaskDefinition {
            name: "unreachable-nodes",
            description: "mark nodes unreachable once their session has been gone for unreachable_after_secs",
            period: flush,
            activate_on_shutdown: false,
            task: Box::new(unreachable_nodes::UnreachableNodes::new(ctx.clone())),
        },
        TaskDefinition {
            name: "volume-purge",
            description: "purge deleted volumes past their grace period and tell their nodes",
            period: PURGE_INTERVAL,
            activate_on_shutdown: false,
            task: Box::new(volume_purge::VolumePurge::new(ctx.clone())),
        },
        TaskDefinition {
            name: "membership",
            description: "audit, once, that an association's membership expired or that it is now frozen (nothing is stopped or deleted)",
            period: MEMBERSHIP_INTERVAL,
            activate_on_shutdown: false,
            task: Box::new(membership::MembershipNotes::new(ctx.clone())),
        },
        TaskDefinition {
            name: "refusal-summaries",
            description: "sum up in the audit log the refusals the per-address limits did not write one by one",
            period: REFUSAL_SUMMARY_INTERVAL,
            activate_on_shutdown: false,
            task: Box::new(refusal_summaries::RefusalSummaries::new(ctx.clone())),
        },
        TaskDefinition {
            name: "node-certificates",
            description: "renew node certificates over their sessions after two thirds of their lifetime; close sessions whose certificate expired",
            period: CERTIFICATE_INTERVAL,
            activate_on_shutdown: false,
            task: Box::new(node_certificates::NodeCertificates::new(ctx.clone())),
        },
        TaskDefinition {
            name: "server-certificate",
            description: "renew colocd's server certificate after two thirds of its lifetime; watch the CA's end",
            period: CERTIFICATE_INTERVAL,
            activate_on_shutdown: false,
            task: Box::new(server_certificate::ServerCertificate::new(
                ctx.clone(),
                data_dir.to_owned(),
            )),
        },
        TaskDefinition {
            name: "health-flush",
            description: "write the nodes' latest health reports to the store in one batch",
            period: flush,
            activate_on_shutdown: true,
            task: Box::new(health_flush::HealthFlush::new(ctx.clone())),
        },
        TaskDefinition {
            name: "alerts",
            description: "run the alert rules over the latest health reports and the store; fire and resolve alerts",
            period: ALERTS_INTERVAL,
            activate_on_shutdown: false,
            task: Box::new(alerts::Alerts::new(ctx.clone())),
        },
    ]
}
