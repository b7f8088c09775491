//! `coloc app` (catalog, asking for an app, instances, logs) and `coloc
//! request` (the discussion and the decision).

use std::time::Duration;

use coloc_proto::controller::v1 as pb;

use super::{call, connect};
use crate::args::GlobalArgs;
use crate::args::apps::{AppCommand, RequestCommand};
use crate::error::Failure;
use crate::input::{InstanceRef, check_remove_confirm};
use crate::output::apps::{
    catalog_json, catalog_table, instance_details, instance_has_error, instance_json,
    instance_name, instances_table, log_lines, logs_json, logs_truncated_note, request_details,
    request_json, request_state_word, requests_table,
};
use crate::output::{self, Printer};
use crate::password;
use coloc_proto::apps::web::WebUser;

fn instance_ref(instance: &InstanceRef) -> pb::InstanceRef {
    pb::InstanceRef {
        instance: instance.to_string(),
    }
}

pub async fn app(global: &GlobalArgs, out: Printer, command: AppCommand) -> Result<(), Failure> {
    match command {
        AppCommand::Catalog => {
            let api = connect(global).await?;
            let list = call(&api, api.apps().list_catalog(pb::ListCatalogRequest {})).await?;
            out.list(&list.apps, catalog_json, catalog_table)
        }
        AppCommand::Request {
            tenant,
            app,
            node,
            volume,
            comment,
        } => {
            let request = pb::RequestAppRequest {
                tenant: tenant.into(),
                app: app.into(),
                node: node.into(),
                volume: volume.map(String::from).unwrap_or_default(),
                comment,
            };
            let api = connect(global).await?;
            let r = call(&api, api.apps().request_app(request)).await?;
            out.emit(request_json(&r), || {
                format!(
                    "Request {id}: {} for {} on {} is {}.\n\
                     An administrator will discuss and approve it: coloc request show {id}\n",
                    output::clean(&r.app),
                    output::clean(&r.tenant),
                    output::clean(&r.node),
                    request_state_word(r.state),
                    id = r.id,
                )
            })
        }
        AppCommand::List { tenant, node } => {
            let request = pb::ListInstancesRequest {
                tenant: tenant.map(String::from).unwrap_or_default(),
                node: node.map(String::from).unwrap_or_default(),
            };
            let api = connect(global).await?;
            let list = call(&api, api.apps().list_instances(request)).await?;
            out.list(&list.instances, instance_json, instances_table)?;
            if list.instances.iter().any(instance_has_error) {
                out.note("Some apps report an error: 'coloc app status TENANT/APP' shows it with the last log lines.");
            }
            Ok(())
        }
        AppCommand::Status { instance } => {
            let api = connect(global).await?;
            let i = call(&api, api.apps().get_instance(instance_ref(&instance))).await?;
            out.emit(instance_json(&i), || instance_details(&i))
        }
        AppCommand::Start { instance } => {
            let api = connect(global).await?;
            let i = call(&api, api.apps().start_instance(instance_ref(&instance))).await?;
            out.emit(instance_json(&i), || {
                format!(
                    "Starting {}: its node's agent starts it at its next pass.\n{}",
                    instance_name(&i),
                    instance_details(&i)
                )
            })
        }
        AppCommand::Stop { instance } => {
            let api = connect(global).await?;
            let i = call(&api, api.apps().stop_instance(instance_ref(&instance))).await?;
            out.emit(instance_json(&i), || {
                let name = instance_name(&i);
                format!(
                    "Stopping {name}: its node's agent stops it at its next pass; it stays stopped until 'coloc app start {name}'.\n{}",
                    instance_details(&i)
                )
            })
        }
        AppCommand::Restart { instance } => {
            let api = connect(global).await?;
            let i = call(&api, api.apps().restart_instance(instance_ref(&instance))).await?;
            out.emit(instance_json(&i), || {
                format!(
                    "Restarting {}: its node's agent restarts it at its next pass.\n{}",
                    instance_name(&i),
                    instance_details(&i)
                )
            })
        }
        AppCommand::Remove { instance, confirm } => {
            check_remove_confirm(&instance, confirm.as_deref())?;
            let api = connect(global).await?;
            let i = call(&api, api.apps().remove_instance(instance_ref(&instance))).await?;
            out.emit(instance_json(&i), || removed_text(&i))
        }
        AppCommand::SetPassword {
            instance,
            user,
            password_stdin,
        } => {
            let user = match user {
                Some(user) => user,
                None => WebUser::new(instance.tenant.as_str())
                    .map_err(|e| Failure::invalid(e.to_string()))?,
            };
            let source = if password_stdin {
                password::Source::Stdin
            } else {
                password::Source::Terminal
            };
            // Asked before connecting: a typo in the password costs no call.
            let hash = password::read_and_hash(source, &format!("{user} on {instance}")).await?;
            let request = pb::SetInstancePasswordRequest {
                instance: instance.to_string(),
                user: user.to_string(),
                password_hash: hash.to_string(),
            };
            let api = connect(global).await?;
            let i = call(&api, api.apps().set_instance_password(request)).await?;
            out.emit(instance_json(&i), || {
                format!(
                    "The proxy now asks for user {} at {}: its node applies it at its next pass.\n{}",
                    output::clean(&i.web_user),
                    output::clean(&i.url),
                    instance_details(&i)
                )
            })
        }
        AppCommand::Logs {
            instance,
            lines,
            follow,
        } => logs(global, out, &instance, lines, follow).await,
    }
}

/// What a removal does, and what it leaves.
fn removed_text(i: &pb::AppInstance) -> String {
    let name = instance_name(i);
    let app = output::clean(&i.app);
    let data = if i.volume.is_empty() {
        format!("Its data stays on the tenant's volume, under apps/{app}.")
    } else {
        format!(
            "Its data stays on the volume {}/{}, under apps/{app}; a new request for {app} on that volume finds it again.",
            output::clean(&i.tenant),
            output::clean(&i.volume)
        )
    };
    format!(
        "Removed {name}: its node's agent stops and disables its unit and removes its web route at its next pass.\n{data}\n"
    )
}

/// How often `coloc app logs -f` asks the node for new lines.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// Lines asked for on each follow poll: the most colocd gives, so that a
/// burst between two polls is shown whole up to that many.
const FOLLOW_LINES: u32 = 1000;

/// Prints one page of journal lines while following: text lines, or one
/// compact JSON object per page (JSON Lines). False once nobody reads
/// stdout any more (`coloc app logs -f | head`), so following stops.
fn print_follow_page(out: Printer, page: &pb::InstanceLogs) -> Result<bool, Failure> {
    if page.lines.is_empty() {
        return Ok(true);
    }
    let text = if out.json {
        let mut line = serde_json::to_string(&logs_json(page))
            .map_err(|e| Failure::generic(format!("cannot encode JSON: {e}")))?;
        line.push('\n');
        line
    } else {
        log_lines(&page.lines)
    };
    output::write_stdout_while_read(&text)
}

/// `coloc app logs`: the last `lines` lines; with `follow`, then every
/// second the lines after the last cursor, until Ctrl-C (exit 0).
async fn logs(
    global: &GlobalArgs,
    out: Printer,
    instance: &InstanceRef,
    lines: u32,
    follow: bool,
) -> Result<(), Failure> {
    // Registered before anything else so that a Ctrl-C at any point of a
    // follow ends it cleanly rather than killing the process mid-line.
    let mut interrupt = if follow {
        Some(
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .map_err(|e| Failure::generic(format!("cannot watch for Ctrl-C: {e}")))?,
        )
    } else {
        None
    };
    let api = connect(global).await?;
    let ask = |after_cursor: String, lines: u32| pb::GetInstanceLogsRequest {
        instance: instance.to_string(),
        lines,
        after_cursor,
    };
    let first = call(
        &api,
        api.apps().get_instance_logs(ask(String::new(), lines)),
    )
    .await?;
    let Some(interrupt) = interrupt.as_mut() else {
        if first.lines.is_empty() && !out.json {
            out.note(&format!("no journal lines for {instance} yet"));
            return Ok(());
        }
        out.emit(logs_json(&first), || log_lines(&first.lines))?;
        if first.truncated {
            out.note(&logs_truncated_note(first.lines.len()));
        }
        return Ok(());
    };
    if !print_follow_page(out, &first)? {
        return Ok(());
    }
    if first.truncated {
        out.note(&logs_truncated_note(first.lines.len()));
    }
    let mut cursor = first.cursor;
    let poll = async {
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + FOLLOW_EVERY, FOLLOW_EVERY);
        // A slow answer delays the next poll rather than bunching them.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A page the node cut to fit one answer: the rest comes at once.
        let mut more = false;
        loop {
            if !more {
                tick.tick().await;
            }
            let page = call(
                &api,
                api.apps()
                    .get_instance_logs(ask(cursor.clone(), FOLLOW_LINES)),
            )
            .await?;
            if !print_follow_page(out, &page)? {
                return Ok(());
            }
            more = page.truncated;
            // An empty cursor means nothing new: keep the one we have.
            if !page.cursor.is_empty() {
                cursor = page.cursor;
            }
        }
    };
    tokio::select! {
        done = poll => done,
        _ = interrupt.recv() => Ok(()),
    }
}

pub async fn request(
    global: &GlobalArgs,
    out: Printer,
    command: RequestCommand,
) -> Result<(), Failure> {
    match command {
        RequestCommand::List { tenant, state } => {
            let request = pb::ListRequestsRequest {
                tenant: tenant.map(String::from).unwrap_or_default(),
                state: state.map_or(pb::RequestState::Unspecified, pb::RequestState::from) as i32,
            };
            let api = connect(global).await?;
            let list = call(&api, api.apps().list_requests(request)).await?;
            out.list(&list.requests, request_json, requests_table)
        }
        RequestCommand::Show { id } => {
            let api = connect(global).await?;
            let r = call(&api, api.apps().get_request(pb::GetRequestRequest { id })).await?;
            out.emit(request_json(&r), || request_details(&r))
        }
        RequestCommand::Comment { id, text } => {
            let api = connect(global).await?;
            let r = call(
                &api,
                api.apps()
                    .comment_request(pb::CommentRequestRequest { id, text }),
            )
            .await?;
            out.emit(request_json(&r), || {
                format!(
                    "Comment added to request {}.\n{}",
                    r.id,
                    request_details(&r)
                )
            })
        }
        RequestCommand::Approve { id, comment } => {
            let api = connect(global).await?;
            let r = call(
                &api,
                api.apps().approve_request(pb::DecideRequestRequest {
                    id,
                    comment: comment.unwrap_or_default(),
                }),
            )
            .await?;
            out.emit(request_json(&r), || {
                let instance = format!("{}/{}", output::clean(&r.tenant), output::clean(&r.app));
                format!(
                    "Approved request {}: {instance} is created and its node installs and starts it at its next pass.\n\
                     Follow it: coloc app status {instance}\n",
                    r.id
                )
            })
        }
        RequestCommand::Reject { id, comment } => {
            let Some(comment) = comment else {
                return Err(Failure::usage(format!(
                    "a rejection needs a reason for the tenant: add --comment \"...\" (coloc request reject {id} --comment \"...\")"
                )));
            };
            let api = connect(global).await?;
            let r = call(
                &api,
                api.apps()
                    .reject_request(pb::DecideRequestRequest { id, comment }),
            )
            .await?;
            out.emit(request_json(&r), || {
                format!(
                    "Rejected request {}; the tenant reads why with 'coloc request show {}'.\n",
                    r.id, r.id
                )
            })
        }
    }
}
