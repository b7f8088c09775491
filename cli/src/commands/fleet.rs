//! `coloc site`, `coloc node` (join tokens, listing, draining, removal,
//! labels, ping, facts) and `coloc stats`.

use coloc_proto::agent::v1 as agent;
use coloc_proto::controller::v1 as pb;
use coloc_proto::domain;

use super::health::{fleet_health, maintenance, node_health};
use super::{call, connect, now_unix, print_secret};
use crate::args::GlobalArgs;
use crate::args::fleet::{NodeCommand, NodeTokenCommand, SiteCommand};
use crate::client::Api;
use crate::error::Failure;
use crate::input::{check_node_remove_confirm, parse_label_change};
use crate::output::fleet::{
    join_token_json, join_tokens_table, node_details, node_generation_json, node_generations_table,
    node_json, node_list_json, node_removed_json, node_removed_text, node_status, nodes_table,
    ping_line, site_details, site_json, sites_table, stats_details, stats_json,
};
use crate::output::{self, Printer};

pub async fn site(global: &GlobalArgs, out: Printer, command: SiteCommand) -> Result<(), Failure> {
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
            out.emit(site_json(&site), || {
                format!("Created site:\n{}", site_details(&site))
            })
        }
        SiteCommand::List => {
            let api = connect(global).await?;
            let list = call(&api, api.sites().list_sites(pb::ListSitesRequest {})).await?;
            out.list(&list.sites, site_json, sites_table)
        }
    }
}

pub async fn node(global: &GlobalArgs, out: Printer, command: NodeCommand) -> Result<(), Failure> {
    match command {
        NodeCommand::Token { command } => node_token(global, out, command).await,
        NodeCommand::List { site } => {
            let site = site.map(String::from).unwrap_or_default();
            let api = connect(global).await?;
            let nodes = list_all_nodes(&api, &site).await?;
            let health = fleet_health(&api, out).await;
            out.list(
                &nodes,
                |n| node_list_json(n, &health),
                |n| nodes_table(n, &health),
            )
        }
        NodeCommand::Health { name } => node_health(global, out, name).await,
        NodeCommand::Scrub { name, pool } => {
            maintenance(global, out, name, agent::MaintenanceKind::Scrub, pool).await
        }
        NodeCommand::SelfTest { name, disk, long } => {
            let kind = if long {
                agent::MaintenanceKind::SmartLong
            } else {
                agent::MaintenanceKind::SmartShort
            };
            maintenance(global, out, name, kind, disk.subject().to_string()).await
        }
        NodeCommand::Show { name } => {
            let api = connect(global).await?;
            let node = call(
                &api,
                api.nodes()
                    .get_node(pb::GetNodeRequest { name: name.into() }),
            )
            .await?;
            out.emit(node_json(&node), || node_details(&node))
        }
        NodeCommand::Drain { name } => drain(global, out, name, true).await,
        NodeCommand::Undrain { name } => drain(global, out, name, false).await,
        NodeCommand::Remove { name, confirm } => {
            check_node_remove_confirm(&name, confirm.as_deref())?;
            let api = connect(global).await?;
            let removed = call(
                &api,
                api.nodes().remove_node(pb::RemoveNodeRequest {
                    name: name.to_string(),
                    confirm: confirm.unwrap_or_default(),
                }),
            )
            .await?;
            out.emit(node_removed_json(&removed), || node_removed_text(&removed))
        }
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
            out.emit(json, || ping_line(&name, &pong))
        }
        NodeCommand::RefreshFacts { name } => {
            let api = connect(global).await?;
            let node = call(
                &api,
                api.nodes()
                    .refresh_node_facts(pb::GetNodeRequest { name: name.into() }),
            )
            .await?;
            out.emit(node_json(&node), || node_details(&node))
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
            out.list(
                &changed.updated,
                node_generation_json,
                node_generations_table,
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
    out.emit(node_json(&node), || {
        let what = if drain {
            "draining: it keeps what it runs and takes no new workload"
        } else {
            "not draining: it takes new workload again"
        };
        format!(
            "Node {} is {what} (status: {}).\n",
            output::clean(&node.name),
            node_status(node.status)
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
            print_secret(out, join_token_json(&token), &token.secret, about)
        }
        NodeTokenCommand::List => {
            let api = connect(global).await?;
            let list = call(
                &api,
                api.nodes().list_join_tokens(pb::ListJoinTokensRequest {}),
            )
            .await?;
            let now = now_unix();
            out.list(&list.tokens, join_token_json, |x| join_tokens_table(x, now))
        }
    }
}

/// colocd's session counters since it started.
pub async fn stats(global: &GlobalArgs, out: Printer) -> Result<(), Failure> {
    let api = connect(global).await?;
    let stats = call(
        &api,
        api.nodes()
            .get_controller_stats(pb::GetControllerStatsRequest {}),
    )
    .await?;
    out.emit(stats_json(&stats), || stats_details(&stats))
}
