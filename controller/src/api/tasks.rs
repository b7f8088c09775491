//! colocd's background tasks as admins see them (`coloc tasks`): the status
//! the driver records, read from the board in the context. Read-only; a
//! refused read is audited like any other.

use coloc_proto::controller::v1 as pb;
use coloc_proto::controller::v1::tasks_server::Tasks;
use tonic::{Request, Response, Status};

use crate::auth;
use crate::background::{Outcome, TaskStatus};
use crate::context::Ctx;

#[derive(Debug, Clone)]
pub struct TasksApi(pub Ctx);

fn task(s: TaskStatus) -> pb::BackgroundTask {
    let (outcome, summary) = match s.last_outcome {
        None => (pb::TaskOutcome::Unspecified, String::new()),
        Some(Outcome::Ok(summary)) => (pb::TaskOutcome::Ok, summary),
        Some(Outcome::Error(error)) => (pb::TaskOutcome::Error, error),
    };
    let (error_at, error) = s.last_error.unwrap_or_default();
    pb::BackgroundTask {
        name: s.name.to_string(),
        description: s.description.to_string(),
        period_ms: u64::try_from(s.period.as_millis()).unwrap_or(u64::MAX),
        runs: s.runs,
        failures: s.failures,
        running: s.running,
        last_start_unix_ms: s.last_start_unix_ms.unwrap_or(0),
        last_duration_us: s
            .last_duration
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        last_outcome: outcome as i32,
        last_summary: summary,
        last_error: error,
        last_error_unix_ms: error_at,
    }
}

#[tonic::async_trait]
impl Tasks for TasksApi {
    async fn list_tasks(
        &self,
        req: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let ctx = &self.0;
        ctx.read(
            req,
            "controller.tasks",
            |_| "controller",
            async |caller, _, _| {
                auth::require_admin(&caller, "reading colocd's background tasks")?;
                Ok(pb::ListTasksResponse {
                    tasks: ctx.tasks.list().into_iter().map(task).collect(),
                    controller_unix_ms: ctx.clock.now_ms(),
                })
            },
        )
        .await
    }
}
