//! `coloc tasks`: colocd's background tasks.

use coloc_proto::controller::v1 as pb;

use super::{call, connect};
use crate::args::GlobalArgs;
use crate::error::Failure;
use crate::output::Printer;
use crate::output::tasks::{tasks_json, tasks_table};

/// colocd's background tasks, as a table or JSON.
pub async fn tasks(global: &GlobalArgs, out: Printer) -> Result<(), Failure> {
    let api = connect(global).await?;
    let list = call(&api, api.tasks().list_tasks(pb::ListTasksRequest {})).await?;
    out.emit(tasks_json(&list), || tasks_table(&list))
}
