//! One function per command: check what only the CLI can check, connect,
//! make the call, print. Connection happens after local validation, so a
//! typo never costs a round trip or depends on the server being up.

use std::future::Future;
use std::time::Duration;

use coloc_proto::agent::v1 as agent;
use coloc_proto::controller::v1 as pb;
use coloc_proto::domain::{self, Role};
use coloc_proto::storage::{DiskRef, SnapshotName};
use tonic::{Response, Status};

use crate::args::{
    AppCommand, AuditArgs, Command, GlobalArgs, NodeCommand, NodeTokenCommand, PoolCommand,
    PoolLayoutArg, PoolTypeArg, RequestCommand, SiteCommand, SnapshotCommand, TenantCommand,
    TokenCommand, UserCommand, VolumeCommand,
};
use crate::certs;
use crate::client::Api;
use crate::config;
use crate::error::Failure;
use crate::input::{
    InstanceRef, VolumeRef, check_remove_confirm, check_rollback_confirm, parse_label_change,
};
use crate::output::{self, Printer, write_stdout};

/// Runs one parsed command line.
pub async fn run(global: GlobalArgs, command: Command) -> Result<(), Failure> {
    let out = Printer { json: global.json };
    match command {
        Command::Site { command } => site(&global, out, command).await,
        Command::Node { command } => node(&global, out, command).await,
        Command::Tenant { command } => tenant(&global, out, command).await,
        Command::Pool { command } => pool(&global, out, command).await,
        Command::Volume { command } => volume(&global, out, command).await,
        Command::App { command } => app(&global, out, command).await,
        Command::Request { command } => request(&global, out, command).await,
        Command::User { command } => user(&global, out, command).await,
        Command::Token { command } => token(&global, out, command).await,
        Command::Whoami => {
            let api = connect(&global).await?;
            let me = call(&api, api.users().who_am_i(pb::WhoAmIRequest {})).await?;
            out.emit(output::tenancy::user_json(&me), || {
                output::tenancy::user_details(&me)
            })
        }
        Command::Stats => {
            let api = connect(&global).await?;
            let stats = call(
                &api,
                api.nodes()
                    .get_controller_stats(pb::GetControllerStatsRequest {}),
            )
            .await?;
            out.emit(output::fleet::stats_json(&stats), || {
                output::fleet::stats_details(&stats)
            })
        }
        Command::Tasks => {
            let api = connect(&global).await?;
            let list = call(&api, api.tasks().list_tasks(pb::ListTasksRequest {})).await?;
            out.emit(output::tasks::tasks_json(&list), || {
                output::tasks::tasks_table(&list)
            })
        }
        Command::Audit(args) => audit(&global, out, args).await,
    }
}

async fn connect(global: &GlobalArgs) -> Result<Api, Failure> {
    let settings = config::load(global)?;
    Api::connect(&settings).await
}

/// Awaits a call and turns its status into a [`Failure`].
async fn call<T>(
    api: &Api,
    request: impl Future<Output = Result<Response<T>, Status>>,
) -> Result<T, Failure> {
    request
        .await
        .map(Response::into_inner)
        .map_err(|s| api.fail(s))
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn array<T>(items: &[T], f: impl Fn(&T) -> serde_json::Value) -> serde_json::Value {
    serde_json::Value::Array(items.iter().map(f).collect())
}

/// Prints a secret that colocd will never show again: the secret alone on
/// stdout (so `$(coloc token create)` captures just it), the explanation
/// on stderr. In JSON mode the whole object goes to stdout.
fn print_secret(
    out: Printer,
    json: serde_json::Value,
    secret: &str,
    about: String,
) -> Result<(), Failure> {
    if secret.is_empty() {
        return Err(Failure::generic(
            "colocd answered without a secret; nothing to show",
        ));
    }
    if out.json {
        return out.emit(json, String::new);
    }
    eprintln!("{about}");
    eprintln!("The secret below is shown only once: colocd keeps only a hash of it. Store it now.");
    write_stdout(&format!("{secret}\n"))
}

// ---------------------------------------------------------------- sites

async fn site(global: &GlobalArgs, out: Printer, command: SiteCommand) -> Result<(), Failure> {
    match command {
        SiteCommand::Create {
            name,
            country,
            city,
            description,
        } => {
            let request = pb::CreateSiteRequest {
                name: name.into(),
                country: country.as_str().to_string(),
                city: city.unwrap_or_default(),
                description: description.unwrap_or_default(),
            };
            let api = connect(global).await?;
            let site = call(&api, api.sites().create_site(request)).await?;
            out.emit(output::fleet::site_json(&site), || {
                format!("Created site:\n{}", output::fleet::site_details(&site))
            })
        }
        SiteCommand::List => {
            let api = connect(global).await?;
            let list = call(&api, api.sites().list_sites(pb::ListSitesRequest {})).await?;
            out.emit(array(&list.sites, output::fleet::site_json), || {
                output::fleet::sites_table(&list.sites)
            })
        }
    }
}

// ---------------------------------------------------------------- nodes

async fn node(global: &GlobalArgs, out: Printer, command: NodeCommand) -> Result<(), Failure> {
    match command {
        NodeCommand::Token { command } => node_token(global, out, command).await,
        NodeCommand::List { site } => {
            let site = site.map(String::from).unwrap_or_default();
            let api = connect(global).await?;
            let nodes = list_all_nodes(&api, &site).await?;
            out.emit(array(&nodes, output::fleet::node_json), || {
                output::fleet::nodes_table(&nodes)
            })
        }
        NodeCommand::Show { name } => {
            let api = connect(global).await?;
            let node = call(
                &api,
                api.nodes()
                    .get_node(pb::GetNodeRequest { name: name.into() }),
            )
            .await?;
            out.emit(output::fleet::node_json(&node), || {
                output::fleet::node_details(&node)
            })
        }
        NodeCommand::Drain { name } => drain(global, out, name, true).await,
        NodeCommand::Undrain { name } => drain(global, out, name, false).await,
        NodeCommand::Ping { name } => {
            let api = connect(global).await?;
            let pong = call(
                &api,
                api.nodes().ping_node(pb::GetNodeRequest {
                    name: name.to_string(),
                }),
            )
            .await?;
            let json = serde_json::json!({
                "node": name.as_str(),
                "round_trip_us": pong.round_trip_us,
                "agent_unix_ms": pong.agent_unix_ms,
            });
            out.emit(json, || output::fleet::ping_line(&name, &pong))
        }
        NodeCommand::RefreshFacts { name } => {
            let api = connect(global).await?;
            let node = call(
                &api,
                api.nodes()
                    .refresh_node_facts(pb::GetNodeRequest { name: name.into() }),
            )
            .await?;
            out.emit(output::fleet::node_json(&node), || {
                output::fleet::node_details(&node)
            })
        }
        NodeCommand::Label { words, remove, all } => {
            let change = parse_label_change(&words, &remove, all)?;
            let request = pb::SetNodeLabelsRequest {
                nodes: change.nodes.into_iter().map(String::from).collect(),
                set: change.set.into_iter().collect(),
                remove: change.remove,
            };
            let api = connect(global).await?;
            let changed = call(&api, api.nodes().set_node_labels(request)).await?;
            out.emit(
                array(&changed.updated, output::fleet::node_generation_json),
                || output::fleet::node_generations_table(&changed.updated),
            )
        }
    }
}

/// Every node, following colocd's pages (names sort, `next_after` says
/// where the next page starts) so the list is whole whatever the fleet size.
async fn list_all_nodes(api: &Api, site: &str) -> Result<Vec<pb::Node>, Failure> {
    let mut nodes = Vec::new();
    let mut after = String::new();
    loop {
        let request = pb::ListNodesRequest {
            site: site.to_string(),
            after: after.clone(),
            // 0: colocd's default page size.
            limit: 0,
        };
        let page = call(api, api.nodes().list_nodes(request)).await?;
        nodes.extend(page.nodes);
        if page.next_after.is_empty() {
            return Ok(nodes);
        }
        // A cursor that does not move would loop forever.
        if page.next_after <= after {
            return Err(Failure::generic(format!(
                "colocd returned a page cursor that does not advance ({:?} after {after:?})",
                page.next_after
            )));
        }
        after = page.next_after;
    }
}

async fn drain(
    global: &GlobalArgs,
    out: Printer,
    name: domain::NodeName,
    drain: bool,
) -> Result<(), Failure> {
    let api = connect(global).await?;
    let node = call(
        &api,
        api.nodes().drain_node(pb::DrainNodeRequest {
            name: name.into(),
            drain,
        }),
    )
    .await?;
    out.emit(output::fleet::node_json(&node), || {
        let what = if drain {
            "draining: it keeps what it runs and takes no new workload"
        } else {
            "not draining: it takes new workload again"
        };
        format!(
            "Node {} is {what} (status: {}).\n",
            output::clean(&node.name),
            output::fleet::node_status(node.status)
        )
    })
}

async fn node_token(
    global: &GlobalArgs,
    out: Printer,
    command: NodeTokenCommand,
) -> Result<(), Failure> {
    match command {
        NodeTokenCommand::Create { site, ttl } => {
            let request = pb::CreateJoinTokenRequest {
                site: site.into(),
                ttl_secs: ttl.map_or(0, |t| t.secs()),
            };
            let api = connect(global).await?;
            let token = call(&api, api.nodes().create_join_token(request)).await?;
            let about = format!(
                "Join token {} for site {}, valid until {} UTC. Give the secret to coloc-agent on the new server.",
                output::clean(&token.id),
                output::clean(&token.site),
                output::fmt_time(token.expires_unix)
            );
            print_secret(
                out,
                output::fleet::join_token_json(&token),
                &token.secret,
                about,
            )
        }
        NodeTokenCommand::List => {
            let api = connect(global).await?;
            let list = call(
                &api,
                api.nodes().list_join_tokens(pb::ListJoinTokensRequest {}),
            )
            .await?;
            let now = now_unix();
            out.emit(array(&list.tokens, output::fleet::join_token_json), || {
                output::fleet::join_tokens_table(&list.tokens, now)
            })
        }
    }
}

// ---------------------------------------------------------------- tenants

async fn tenant(global: &GlobalArgs, out: Printer, command: TenantCommand) -> Result<(), Failure> {
    match command {
        TenantCommand::Create {
            name,
            offer,
            expires,
            display_name,
        } => {
            let request = pb::CreateTenantRequest {
                name: name.into(),
                display_name: display_name.unwrap_or_default(),
                offer: pb::Offer::from(domain::Offer::from(offer)) as i32,
                membership_expires: expires,
            };
            let api = connect(global).await?;
            let tenant = call(&api, api.tenants().create_tenant(request)).await?;
            out.emit(output::tenancy::tenant_json(&tenant), || {
                format!(
                    "Created tenant:\n{}",
                    output::tenancy::tenant_details(&tenant)
                )
            })
        }
        TenantCommand::List => {
            let api = connect(global).await?;
            let list = call(&api, api.tenants().list_tenants(pb::ListTenantsRequest {})).await?;
            out.emit(array(&list.tenants, output::tenancy::tenant_json), || {
                output::tenancy::tenants_table(&list.tenants)
            })
        }
        TenantCommand::Show { name } => {
            let api = connect(global).await?;
            let tenant = call(
                &api,
                api.tenants()
                    .get_tenant(pb::GetTenantRequest { name: name.into() }),
            )
            .await?;
            out.emit(output::tenancy::tenant_json(&tenant), || {
                output::tenancy::tenant_details(&tenant)
            })
        }
        TenantCommand::SetStorage {
            name,
            quota,
            grace_days,
        } => {
            if quota.is_none() && grace_days.is_none() {
                return Err(Failure::usage(
                    "nothing to change: give --quota SIZE and/or --grace-days N",
                ));
            }
            let request = pb::SetTenantStorageRequest {
                name: name.into(),
                storage_quota_bytes: quota,
                volume_grace_days: grace_days,
            };
            let api = connect(global).await?;
            let tenant = call(&api, api.storage().set_tenant_storage(request)).await?;
            out.emit(output::tenancy::tenant_json(&tenant), || {
                format!(
                    "Updated tenant storage:\n{}",
                    output::tenancy::tenant_details(&tenant)
                )
            })
        }
    }
}

// ---------------------------------------------------------------- pools

/// Refuses layouts the backend does not offer and too few or repeated
/// disks, which the agent could only report as a failed pool later.
fn check_pool_layout(
    kind: PoolTypeArg,
    layout: PoolLayoutArg,
    disks: &[DiskRef],
) -> Result<(), Failure> {
    if kind == PoolTypeArg::Lvm && layout != PoolLayoutArg::Single {
        return Err(Failure::invalid(
            "lvm pools are single only: LVM RAID is not offered; use --type zfs for a redundant layout",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for disk in disks {
        if !seen.insert(disk) {
            return Err(Failure::invalid(format!("disk {disk} is given twice")));
        }
    }
    let min = layout.min_disks();
    if disks.len() < min {
        return Err(Failure::invalid(format!(
            "a {} pool needs at least {min} disks, {} given",
            output::storage::pool_layout_word(agent::PoolLayout::from(layout) as i32),
            disks.len()
        )));
    }
    Ok(())
}

async fn pool(global: &GlobalArgs, out: Printer, command: PoolCommand) -> Result<(), Failure> {
    match command {
        PoolCommand::Create {
            node,
            name,
            kind,
            layout,
            disks,
            force,
        } => {
            let layout = layout.unwrap_or(PoolLayoutArg::Single);
            check_pool_layout(kind, layout, &disks)?;
            if force {
                // Said even with --json: it goes to stderr, and it is the
                // one thing a script's author must have seen.
                eprintln!(
                    "warning: --force: any of these disks that holds data (partition table, filesystem, RAID, LVM or ZFS signature) will be wiped when the pool is created"
                );
            }
            let request = pb::CreatePoolRequest {
                node: node.to_string(),
                name: name.to_string(),
                kind: agent::PoolKind::from(kind) as i32,
                layout: agent::PoolLayout::from(layout) as i32,
                disks: disks.iter().map(ToString::to_string).collect(),
                force,
            };
            let api = connect(global).await?;
            let pool = call(&api, api.storage().create_pool(request)).await?;
            out.emit(output::storage::pool_json(&pool), || {
                let blank = if pool.force {
                    "wiping disks that hold data"
                } else {
                    "on blank disks only; a disk holding data is refused and shown by 'coloc pool list'"
                };
                format!(
                    "Declared pool {} on {}: its agent creates it at its next pass, {blank}.\n{}",
                    output::clean(&pool.name),
                    output::clean(&pool.node),
                    output::storage::pool_details(&pool)
                )
            })
        }
        PoolCommand::List { node } => {
            let request = pb::ListPoolsRequest {
                node: node.map(String::from).unwrap_or_default(),
            };
            let api = connect(global).await?;
            let list = call(&api, api.storage().list_pools(request)).await?;
            out.emit(array(&list.pools, output::storage::pool_json), || {
                output::storage::pools_table(&list.pools)
            })?;
            if list.pools.iter().any(|p| !p.orphans.is_empty()) {
                out.note(
                    "Orphans are volumes on disk that colocd does not know; they are never touched. 'coloc pool list --json' lists them.",
                );
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------- volumes

/// A reservation larger than the volume would hold pool space nobody can use.
fn check_reservation(size: u64, reserve: Option<u64>) -> Result<u64, Failure> {
    let reserve = reserve.unwrap_or(0);
    if reserve > size {
        return Err(Failure::invalid(format!(
            "--reserve {} is larger than --size {}",
            output::fmt_bytes(reserve),
            output::fmt_bytes(size)
        )));
    }
    Ok(reserve)
}

fn volume_ref(volume: &VolumeRef) -> pb::VolumeRef {
    pb::VolumeRef {
        volume: volume.to_string(),
    }
}

async fn volume(global: &GlobalArgs, out: Printer, command: VolumeCommand) -> Result<(), Failure> {
    match command {
        VolumeCommand::Create {
            tenant,
            node,
            pool,
            size,
            name,
            reserve,
            encrypted,
        } => {
            let reservation_bytes = check_reservation(size, reserve)?;
            let request = pb::CreateVolumeRequest {
                tenant: tenant.into(),
                name: name.into(),
                node: node.into(),
                pool: pool.into(),
                size_bytes: size,
                reservation_bytes,
                encrypted,
            };
            let api = connect(global).await?;
            let v = call(&api, api.storage().create_volume(request)).await?;
            out.emit(output::storage::volume_json(&v), || {
                format!(
                    "Created volume {}; its node's agent creates and mounts it at its next pass.\n{}",
                    output::storage::volume_name(&v),
                    output::storage::volume_details(&v)
                )
            })
        }
        VolumeCommand::List { tenant, node, all } => {
            let request = pb::ListVolumesRequest {
                tenant: tenant.map(String::from).unwrap_or_default(),
                node: node.map(String::from).unwrap_or_default(),
                include_destroyed: all,
            };
            let api = connect(global).await?;
            let list = call(&api, api.storage().list_volumes(request)).await?;
            out.emit(array(&list.volumes, output::storage::volume_json), || {
                output::storage::volumes_table(&list.volumes)
            })
        }
        VolumeCommand::Show { volume } => {
            let api = connect(global).await?;
            let v = call(&api, api.storage().get_volume(volume_ref(&volume))).await?;
            out.emit(output::storage::volume_json(&v), || {
                output::storage::volume_details(&v)
            })
        }
        VolumeCommand::Resize {
            volume,
            size,
            force,
        } => {
            let request = pb::ResizeVolumeRequest {
                volume: volume.to_string(),
                size_bytes: size,
                force,
            };
            let api = connect(global).await?;
            let v = call(&api, api.storage().resize_volume(request)).await?;
            out.emit(output::storage::volume_json(&v), || {
                format!(
                    "Volume {} is now {}; its agent applies the size at its next pass.\n{}",
                    output::storage::volume_name(&v),
                    output::fmt_bytes(v.size_bytes),
                    output::storage::volume_details(&v)
                )
            })
        }
        VolumeCommand::Delete { volume } => {
            let api = connect(global).await?;
            let v = call(&api, api.storage().delete_volume(volume_ref(&volume))).await?;
            out.emit(output::storage::volume_json(&v), || deleted_text(&v))
        }
        VolumeCommand::Restore { volume } => {
            let api = connect(global).await?;
            let v = call(&api, api.storage().restore_volume(volume_ref(&volume))).await?;
            out.emit(output::storage::volume_json(&v), || {
                format!(
                    "Restored volume {}: its agent mounts it read-write again at {} at its next pass.\n{}",
                    output::storage::volume_name(&v),
                    output::clean(&v.mount_path),
                    output::storage::volume_details(&v)
                )
            })
        }
        VolumeCommand::Snapshot { command } => snapshot(global, out, command).await,
        VolumeCommand::Rollback {
            volume,
            snapshot,
            confirm,
        } => rollback(global, out, volume, snapshot, confirm).await,
    }
}

/// What a deletion means and how to undo it.
fn deleted_text(v: &pb::Volume) -> String {
    let name = output::storage::volume_name(v);
    format!(
        "Deleted volume {name}: it is unmounted and kept read-only with its snapshots until {} UTC, then destroyed.\n\
         To bring it back before then: coloc volume restore {name}\n",
        output::fmt_time(v.purge_after_unix)
    )
}

async fn snapshot(
    global: &GlobalArgs,
    out: Printer,
    command: SnapshotCommand,
) -> Result<(), Failure> {
    match command {
        SnapshotCommand::Create { volume, snapshot } => {
            let request = pb::SnapshotRequest {
                volume: volume.to_string(),
                snapshot: snapshot.to_string(),
            };
            let api = connect(global).await?;
            let v = call(&api, api.storage().create_snapshot(request)).await?;
            out.emit(output::storage::volume_json(&v), || {
                format!(
                    "Snapshot {snapshot} of {} requested; its agent takes it at its next pass.\n{}",
                    output::storage::volume_name(&v),
                    output::storage::snapshots_table(&v)
                )
            })
        }
        SnapshotCommand::List { volume } => {
            let api = connect(global).await?;
            let v = call(&api, api.storage().get_volume(volume_ref(&volume))).await?;
            out.emit(output::storage::snapshots_json(&v), || {
                output::storage::snapshots_table(&v)
            })
        }
        SnapshotCommand::Delete { volume, snapshot } => {
            let request = pb::SnapshotRequest {
                volume: volume.to_string(),
                snapshot: snapshot.to_string(),
            };
            let api = connect(global).await?;
            let v = call(&api, api.storage().delete_snapshot(request)).await?;
            out.emit(output::storage::volume_json(&v), || {
                format!(
                    "Snapshot {snapshot} of {} deleted; its agent destroys it at its next pass.\n{}",
                    output::storage::volume_name(&v),
                    output::storage::snapshots_table(&v)
                )
            })
        }
    }
}

/// Checks the confirmation before anything is sent when the volume was
/// named `<tenant>/<name>`; named by id, its name is looked up first so
/// the same check applies. colocd checks again.
async fn rollback(
    global: &GlobalArgs,
    out: Printer,
    volume: VolumeRef,
    snapshot: SnapshotName,
    confirm: Option<String>,
) -> Result<(), Failure> {
    let api = match volume.qualified_name() {
        Some(name) => {
            check_rollback_confirm(&name, snapshot.as_str(), confirm.as_deref())?;
            connect(global).await?
        }
        None => {
            let api = connect(global).await?;
            let v = call(&api, api.storage().get_volume(volume_ref(&volume))).await?;
            let name = format!("{}/{}", output::clean(&v.tenant), output::clean(&v.name));
            check_rollback_confirm(&name, snapshot.as_str(), confirm.as_deref())?;
            api
        }
    };
    let request = pb::RollbackVolumeRequest {
        volume: volume.to_string(),
        snapshot: snapshot.to_string(),
        confirm: confirm.unwrap_or_default(),
    };
    let v = call(&api, api.storage().rollback_volume(request)).await?;
    out.emit(output::storage::volume_json(&v), || {
        format!(
            "Rolled {} back to snapshot {snapshot}.\n{}",
            output::storage::volume_name(&v),
            output::storage::volume_details(&v)
        )
    })
}

// ---------------------------------------------------------------- apps

fn instance_ref(instance: &InstanceRef) -> pb::InstanceRef {
    pb::InstanceRef {
        instance: instance.to_string(),
    }
}

async fn app(global: &GlobalArgs, out: Printer, command: AppCommand) -> Result<(), Failure> {
    match command {
        AppCommand::Catalog => {
            let api = connect(global).await?;
            let list = call(&api, api.apps().list_catalog(pb::ListCatalogRequest {})).await?;
            out.emit(array(&list.apps, output::apps::catalog_json), || {
                output::apps::catalog_table(&list.apps)
            })
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
            out.emit(output::apps::request_json(&r), || {
                format!(
                    "Request {id}: {} for {} on {} is {}.\n\
                     An administrator will discuss and approve it: coloc request show {id}\n",
                    output::clean(&r.app),
                    output::clean(&r.tenant),
                    output::clean(&r.node),
                    output::apps::request_state_word(r.state),
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
            out.emit(array(&list.instances, output::apps::instance_json), || {
                output::apps::instances_table(&list.instances)
            })?;
            if list.instances.iter().any(output::apps::instance_has_error) {
                out.note("Some apps report an error: 'coloc app status TENANT/APP' shows it with the last log lines.");
            }
            Ok(())
        }
        AppCommand::Status { instance } => {
            let api = connect(global).await?;
            let i = call(&api, api.apps().get_instance(instance_ref(&instance))).await?;
            out.emit(output::apps::instance_json(&i), || {
                output::apps::instance_details(&i)
            })
        }
        AppCommand::Start { instance } => {
            let api = connect(global).await?;
            let i = call(&api, api.apps().start_instance(instance_ref(&instance))).await?;
            out.emit(output::apps::instance_json(&i), || {
                format!(
                    "Starting {}: its node's agent starts it at its next pass.\n{}",
                    output::apps::instance_name(&i),
                    output::apps::instance_details(&i)
                )
            })
        }
        AppCommand::Stop { instance } => {
            let api = connect(global).await?;
            let i = call(&api, api.apps().stop_instance(instance_ref(&instance))).await?;
            out.emit(output::apps::instance_json(&i), || {
                let name = output::apps::instance_name(&i);
                format!(
                    "Stopping {name}: its node's agent stops it at its next pass; it stays stopped until 'coloc app start {name}'.\n{}",
                    output::apps::instance_details(&i)
                )
            })
        }
        AppCommand::Restart { instance } => {
            let api = connect(global).await?;
            let i = call(&api, api.apps().restart_instance(instance_ref(&instance))).await?;
            out.emit(output::apps::instance_json(&i), || {
                format!(
                    "Restarting {}: its node's agent restarts it at its next pass.\n{}",
                    output::apps::instance_name(&i),
                    output::apps::instance_details(&i)
                )
            })
        }
        AppCommand::Remove { instance, confirm } => {
            check_remove_confirm(&instance, confirm.as_deref())?;
            let api = connect(global).await?;
            let i = call(&api, api.apps().remove_instance(instance_ref(&instance))).await?;
            out.emit(output::apps::instance_json(&i), || removed_text(&i))
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
    let name = output::apps::instance_name(i);
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
        let mut line = serde_json::to_string(&output::apps::logs_json(page))
            .map_err(|e| Failure::generic(format!("cannot encode JSON: {e}")))?;
        line.push('\n');
        line
    } else {
        output::apps::log_lines(&page.lines)
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
        return out.emit(output::apps::logs_json(&first), || {
            output::apps::log_lines(&first.lines)
        });
    };
    if !print_follow_page(out, &first)? {
        return Ok(());
    }
    let mut cursor = first.cursor;
    let poll = async {
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + FOLLOW_EVERY, FOLLOW_EVERY);
        // A slow answer delays the next poll rather than bunching them.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let page = call(
                &api,
                api.apps()
                    .get_instance_logs(ask(cursor.clone(), FOLLOW_LINES)),
            )
            .await?;
            if !print_follow_page(out, &page)? {
                return Ok(());
            }
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

// ---------------------------------------------------------------- requests

async fn request(
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
            out.emit(array(&list.requests, output::apps::request_json), || {
                output::apps::requests_table(&list.requests)
            })
        }
        RequestCommand::Show { id } => {
            let api = connect(global).await?;
            let r = call(&api, api.apps().get_request(pb::GetRequestRequest { id })).await?;
            out.emit(output::apps::request_json(&r), || {
                output::apps::request_details(&r)
            })
        }
        RequestCommand::Comment { id, text } => {
            let api = connect(global).await?;
            let r = call(
                &api,
                api.apps()
                    .comment_request(pb::CommentRequestRequest { id, text }),
            )
            .await?;
            out.emit(output::apps::request_json(&r), || {
                format!(
                    "Comment added to request {}.\n{}",
                    r.id,
                    output::apps::request_details(&r)
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
            out.emit(output::apps::request_json(&r), || {
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
            out.emit(output::apps::request_json(&r), || {
                format!(
                    "Rejected request {}; the tenant reads why with 'coloc request show {}'.\n",
                    r.id, r.id
                )
            })
        }
    }
}

// ---------------------------------------------------------------- users

/// Admins belong to the cooperative, everyone else to one tenant.
fn check_role_tenant(role: Role, tenant: Option<&domain::TenantName>) -> Result<(), Failure> {
    match (role, tenant) {
        (Role::Admin, Some(t)) => Err(Failure::invalid(format!(
            "admins belong to the cooperative, not to a tenant: drop --tenant {t}"
        ))),
        (Role::Operator | Role::Member, None) => Err(Failure::invalid(format!(
            "a {role} belongs to a tenant: add --tenant NAME"
        ))),
        (Role::Admin, None) | (Role::Operator | Role::Member, Some(_)) => Ok(()),
    }
}

async fn user(global: &GlobalArgs, out: Printer, command: UserCommand) -> Result<(), Failure> {
    match command {
        UserCommand::Create {
            name,
            role,
            tenant,
            display_name,
        } => {
            let role = Role::from(role);
            check_role_tenant(role, tenant.as_ref())?;
            let request = pb::CreateUserRequest {
                name: name.into(),
                tenant: tenant.map(String::from).unwrap_or_default(),
                role: pb::Role::from(role) as i32,
                display_name: display_name.unwrap_or_default(),
            };
            let api = connect(global).await?;
            let user = call(&api, api.users().create_user(request)).await?;
            out.emit(output::tenancy::user_json(&user), || {
                format!("Created user:\n{}", output::tenancy::user_details(&user))
            })
        }
        UserCommand::List { tenant } => {
            let request = pb::ListUsersRequest {
                tenant: tenant.map(String::from).unwrap_or_default(),
            };
            let api = connect(global).await?;
            let list = call(&api, api.users().list_users(request)).await?;
            out.emit(array(&list.users, output::tenancy::user_json), || {
                output::tenancy::users_table(&list.users)
            })
        }
        UserCommand::Grant { user, node } => {
            let request = pb::GrantNodeRequest {
                user: user.into(),
                node: node.into(),
            };
            let api = connect(global).await?;
            let user = call(&api, api.users().grant_node(request)).await?;
            out.emit(output::tenancy::user_json(&user), || {
                output::tenancy::user_details(&user)
            })
        }
        UserCommand::RevokeGrant { user, node } => {
            let request = pb::GrantNodeRequest {
                user: user.into(),
                node: node.into(),
            };
            let api = connect(global).await?;
            let user = call(&api, api.users().revoke_node_grant(request)).await?;
            out.emit(output::tenancy::user_json(&user), || {
                output::tenancy::user_details(&user)
            })
        }
        UserCommand::Cert {
            user,
            out_dir,
            ttl,
            force,
        } => {
            let paths = certs::cert_paths(&out_dir, &user);
            certs::check_writable(&paths, force)?;
            let fresh = certs::make_csr(&user)?;
            let request = pb::IssueUserCertificateRequest {
                user: user.to_string(),
                csr_pem: fresh.csr_pem.clone(),
                ttl_secs: ttl.map_or(0, |t| t.secs()),
            };
            let api = connect(global).await?;
            let issued = call(&api, api.users().issue_user_certificate(request)).await?;
            if issued.certificate_pem.trim().is_empty() {
                return Err(Failure::generic(
                    "colocd answered without a certificate; nothing written",
                ));
            }
            certs::write_files(
                &out_dir,
                &paths,
                &fresh.key_pem,
                &issued.certificate_pem,
                force,
            )?;
            let json = serde_json::json!({
                "user": user.as_str(),
                "key_file": paths.key,
                "cert_file": paths.cert,
                "fingerprint": issued.fingerprint,
                "expires_unix": issued.expires_unix,
            });
            out.emit(json, || {
                format!(
                    "Wrote {} (private key, mode 0600) and {} for {user}.\n\
                     Valid until {} UTC, sha256 {}.\n\
                     Use them with --cert {} --key {}, or cert_file and key_file in the config file.\n",
                    paths.key.display(),
                    paths.cert.display(),
                    output::fmt_time(issued.expires_unix),
                    output::clean(&issued.fingerprint),
                    paths.cert.display(),
                    paths.key.display(),
                )
            })
        }
    }
}

// ---------------------------------------------------------------- tokens

async fn token(global: &GlobalArgs, out: Printer, command: TokenCommand) -> Result<(), Failure> {
    match command {
        TokenCommand::Create {
            user,
            description,
            ttl,
        } => {
            let request = pb::CreateTokenRequest {
                user: user.map(String::from).unwrap_or_default(),
                description: description.unwrap_or_default(),
                ttl_secs: ttl.map_or(0, |t| t.secs()),
            };
            let api = connect(global).await?;
            let token = call(&api, api.tokens().create_token(request)).await?;
            let about = format!(
                "Token {} for {}, valid until {} UTC.",
                output::clean(&token.id),
                output::clean(&token.user),
                output::fmt_time(token.expires_unix)
            );
            print_secret(
                out,
                output::tenancy::api_token_json(&token),
                &token.secret,
                about,
            )
        }
        TokenCommand::List { user, all } => {
            let request = pb::ListTokensRequest {
                user: user.map(String::from).unwrap_or_default(),
                all,
            };
            let api = connect(global).await?;
            let list = call(&api, api.tokens().list_tokens(request)).await?;
            let now = now_unix();
            out.emit(array(&list.tokens, output::tenancy::api_token_json), || {
                output::tenancy::api_tokens_table(&list.tokens, now)
            })
        }
        TokenCommand::Revoke { id } => {
            let api = connect(global).await?;
            let token = call(
                &api,
                api.tokens().revoke_token(pb::RevokeTokenRequest { id }),
            )
            .await?;
            let now = now_unix();
            out.emit(output::tenancy::api_token_json(&token), || {
                format!(
                    "Revoked token:\n{}",
                    output::tenancy::api_token_details(&token, now)
                )
            })
        }
    }
}

// ---------------------------------------------------------------- audit

/// colocd's page size when none is asked for.
const AUDIT_DEFAULT_LIMIT: u32 = 100;

async fn audit(global: &GlobalArgs, out: Printer, args: AuditArgs) -> Result<(), Failure> {
    let limit = args.limit.unwrap_or(AUDIT_DEFAULT_LIMIT);
    let request = pb::ListAuditRequest {
        before: args.before.unwrap_or(0),
        limit,
        tenant: args
            .tenant
            .as_ref()
            .map(|t| t.to_string())
            .unwrap_or_default(),
        actor: args.actor.clone().unwrap_or_default(),
    };
    let api = connect(global).await?;
    let list = call(&api, api.audit().list_audit(request)).await?;
    out.emit(array(&list.entries, output::audit::audit_json), || {
        output::audit::audit_table(&list.entries)
    })?;
    if let Some(hint) = next_audit_page(&args, limit, &list.entries) {
        out.note(&format!("Older entries may exist: {hint}"));
    }
    Ok(())
}

/// The command that shows the page after a full one (same filters, older
/// entries), or None when the page was not full.
fn next_audit_page(args: &AuditArgs, limit: u32, entries: &[pb::AuditEntry]) -> Option<String> {
    if entries.len() < limit as usize {
        return None;
    }
    let oldest = entries.iter().map(|e| e.id).min()?;
    let mut hint = format!("coloc audit --before {oldest}");
    if let Some(tenant) = &args.tenant {
        hint.push_str(&format!(" --tenant {tenant}"));
    }
    if let Some(actor) = &args.actor {
        hint.push_str(&format!(" --actor {}", shell_word(actor)));
    }
    if let Some(limit) = args.limit {
        hint.push_str(&format!(" --limit {limit}"));
    }
    Some(hint)
}

/// Quotes a word for a POSIX shell when it needs it.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '@' | '/'));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Exit;

    fn entries(ids: &[u64]) -> Vec<pb::AuditEntry> {
        ids.iter()
            .map(|&id| pb::AuditEntry {
                id,
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn audit_paging_hint_keeps_the_filters() {
        let args = AuditArgs {
            tenant: Some(domain::TenantName::new("asso-x").unwrap()),
            actor: Some("user:alice".into()),
            limit: Some(3),
            before: None,
        };
        assert_eq!(
            next_audit_page(&args, 3, &entries(&[12, 11, 9])).as_deref(),
            Some("coloc audit --before 9 --tenant asso-x --actor user:alice --limit 3")
        );
        assert_eq!(next_audit_page(&args, 3, &entries(&[12, 11])), None);
        let plain = AuditArgs {
            tenant: None,
            actor: Some("it's me".into()),
            limit: None,
            before: Some(50),
        };
        assert_eq!(
            next_audit_page(&plain, 2, &entries(&[49, 48])).as_deref(),
            Some("coloc audit --before 48 --actor 'it'\\''s me'")
        );
    }

    #[test]
    fn pool_layouts_fit_backend_and_disks() {
        let disks = |refs: &[&str]| -> Vec<DiskRef> {
            refs.iter().map(|r| DiskRef::new(r).unwrap()).collect()
        };
        assert!(
            check_pool_layout(
                PoolTypeArg::Zfs,
                PoolLayoutArg::Single,
                &disks(&["serial:a"])
            )
            .is_ok()
        );
        assert!(
            check_pool_layout(
                PoolTypeArg::Lvm,
                PoolLayoutArg::Single,
                &disks(&["serial:a", "serial:b"])
            )
            .is_ok()
        );
        let err = check_pool_layout(
            PoolTypeArg::Lvm,
            PoolLayoutArg::Mirror,
            &disks(&["serial:a", "serial:b"]),
        )
        .unwrap_err();
        assert!(err.message.contains("single only"), "{}", err.message);
        let err = check_pool_layout(
            PoolTypeArg::Zfs,
            PoolLayoutArg::Mirror,
            &disks(&["serial:a"]),
        )
        .unwrap_err();
        assert_eq!(err.message, "a mirror pool needs at least 2 disks, 1 given");
        assert!(
            check_pool_layout(
                PoolTypeArg::Zfs,
                PoolLayoutArg::Raidz2,
                &disks(&["serial:a", "serial:b"])
            )
            .is_err()
        );
        let err = check_pool_layout(
            PoolTypeArg::Zfs,
            PoolLayoutArg::Mirror,
            &disks(&["serial:a", "serial:a"]),
        )
        .unwrap_err();
        assert_eq!(err.message, "disk serial:a is given twice");
    }

    #[test]
    fn reservations_fit_in_the_volume() {
        assert_eq!(check_reservation(10, None).unwrap(), 0);
        assert_eq!(check_reservation(10, Some(10)).unwrap(), 10);
        assert_eq!(
            check_reservation(10, Some(11)).unwrap_err().exit,
            Exit::InvalidArgument
        );
    }

    #[test]
    fn role_and_tenant_must_agree() {
        let t = domain::TenantName::new("asso-x").unwrap();
        assert!(check_role_tenant(Role::Admin, None).is_ok());
        assert!(check_role_tenant(Role::Operator, Some(&t)).is_ok());
        assert!(check_role_tenant(Role::Member, Some(&t)).is_ok());
        assert_eq!(
            check_role_tenant(Role::Admin, Some(&t)).unwrap_err().exit,
            Exit::InvalidArgument
        );
        let err = check_role_tenant(Role::Member, None).unwrap_err();
        assert_eq!(err.exit, Exit::InvalidArgument);
        assert!(err.message.contains("--tenant"));
    }
}
