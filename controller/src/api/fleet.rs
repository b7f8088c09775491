//! Sites and nodes: where the cooperative's servers are, how they join,
//! and what they are told to be.

use coloc_proto::controller::v1 as pb;
use coloc_proto::controller::v1::nodes_server::Nodes;
use coloc_proto::controller::v1::sites_server::Sites;
use coloc_proto::domain::NodeName;
use tonic::{Request, Response, Status};

use super::convert;
use super::wire::fleet::{CreateJoinToken, CreateSite, DrainNode, GetNode, ListNodes, RemoveNode};
use super::wire::{shown, shown_up_to};
use crate::agents::node_certs::close_session;
use crate::agents::push_nodes;
use crate::auth::{self, JOIN_TOKEN_PREFIX};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::store::{JoinTokenRecord, LabelChange, SiteRecord};

#[derive(Debug, Clone)]
pub struct SitesApi(pub Ctx);

#[tonic::async_trait]
impl Sites for SitesApi {
    async fn create_site(
        &self,
        req: Request<pb::CreateSiteRequest>,
    ) -> Result<Response<pb::Site>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "site.create",
            |r| format!("site:{}", shown(&r.name)),
            async |caller, r, _| {
                auth::require_admin(&caller, "creating a site")?;
                let CreateSite {
                    name,
                    country,
                    city,
                    description,
                } = r.try_into()?;
                if !country.is_france() {
                    return Err(ApiError::Policy(format!(
                        "coloc hosts only in France: site {name} in {country} is refused \
                     (country must be FR)"
                    )));
                }
                let rec = SiteRecord {
                    name,
                    country: country.as_str().to_string(),
                    city,
                    description,
                    created_unix: ctx.clock.now(),
                };
                ctx.store.create_site(rec.clone()).await?;
                Ok(convert::site(rec))
            },
        )
        .await
    }

    async fn list_sites(
        &self,
        req: Request<pb::ListSitesRequest>,
    ) -> Result<Response<pb::ListSitesResponse>, Status> {
        let ctx = &self.0;
        ctx.read(
            req,
            "site.list",
            |_| "sites",
            async |_, _, _| {
                let sites = ctx.store.list_sites().await?;
                Ok(pb::ListSitesResponse {
                    sites: sites.into_iter().map(convert::site).collect(),
                })
            },
        )
        .await
    }
}

#[derive(Debug, Clone)]
pub struct NodesApi(pub Ctx);

#[tonic::async_trait]
impl Nodes for NodesApi {
    async fn create_join_token(
        &self,
        req: Request<pb::CreateJoinTokenRequest>,
    ) -> Result<Response<pb::JoinToken>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "node.token.create",
            |r| format!("site:{}", shown(&r.site)),
            async |caller, r, audit| {
                auth::require_admin(&caller, "creating a join token")?;
                let CreateJoinToken { site, ttl_secs } = r.try_into()?;
                let site = ctx.store.get_site(&site).await?;
                auth::require_site_in_france(&site)?;
                let (secret, id) = auth::new_secret(JOIN_TOKEN_PREFIX, "jt-");
                let now = ctx.clock.now();
                let rec = JoinTokenRecord {
                    id,
                    site: site.name,
                    secret_hash: auth::hash_secret(&secret),
                    created_unix: now,
                    expires_unix: now + ttl_secs as i64,
                    created_by: caller.actor(),
                    used_by_node: None,
                    used_unix: None,
                };
                ctx.store.create_join_token(rec.clone()).await?;
                let mut out = convert::join_token(rec);
                out.secret = secret;
                audit.detail = format!("join token {} expires at {}", out.id, out.expires_unix);
                Ok(out)
            },
        )
        .await
    }

    async fn list_join_tokens(
        &self,
        req: Request<pb::ListJoinTokensRequest>,
    ) -> Result<Response<pb::ListJoinTokensResponse>, Status> {
        let ctx = &self.0;
        ctx.read(
            req,
            "node.token.list",
            |_| "join-tokens",
            async |caller, _, _| {
                auth::require_admin(&caller, "listing join tokens")?;
                let tokens = ctx.store.list_join_tokens().await?;
                Ok(pb::ListJoinTokensResponse {
                    tokens: tokens.into_iter().map(convert::join_token).collect(),
                })
            },
        )
        .await
    }

    async fn list_nodes(
        &self,
        req: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        let ctx = &self.0;
        ctx.read(
            req,
            "node.list",
            |_| "nodes",
            async |caller, r, _| {
                let ListNodes { site, limit, after } = r.try_into()?;
                // Sorted by name by the store.
                let mut visible = ctx
                    .store
                    .list_nodes(site.as_ref())
                    .await?
                    .into_iter()
                    .filter(|n| auth::can_see_node(&caller, &n.name))
                    .filter(|n| after.as_ref().is_none_or(|a| &n.name > a));
                let nodes: Vec<pb::Node> =
                    visible.by_ref().take(limit).map(convert::node).collect();
                let next_after = match (visible.next(), nodes.last()) {
                    (Some(_), Some(last)) => last.name.clone(),
                    _ => String::new(),
                };
                Ok(pb::ListNodesResponse { nodes, next_after })
            },
        )
        .await
    }

    async fn get_node(
        &self,
        req: Request<pb::GetNodeRequest>,
    ) -> Result<Response<pb::Node>, Status> {
        let ctx = &self.0;
        ctx.read(
            req,
            "node.show",
            |r| format!("node:{}", shown(&r.name)),
            async |caller, r, _| {
                let GetNode { name } = r.try_into()?;
                auth::require_node_read(&caller, &name)?;
                Ok(convert::node(ctx.store.get_node(&name).await?))
            },
        )
        .await
    }

    async fn drain_node(
        &self,
        req: Request<pb::DrainNodeRequest>,
    ) -> Result<Response<pb::Node>, Status> {
        let ctx = &self.0;
        let action = if req.get_ref().drain {
            "node.drain"
        } else {
            "node.undrain"
        };
        ctx.mutation(
            req,
            action,
            |r| format!("node:{}", shown(&r.name)),
            async |caller, r, _| {
                auth::require_admin(&caller, "draining a node")?;
                let DrainNode { name, drain } = r.try_into()?;
                let rec = ctx.store.set_draining(&name, drain).await?;
                push_nodes(ctx, std::slice::from_ref(&rec.name)).await;
                Ok(convert::node(rec))
            },
        )
        .await
    }

    async fn set_node_labels(
        &self,
        req: Request<pb::SetNodeLabelsRequest>,
    ) -> Result<Response<pb::SetNodeLabelsResponse>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "node.label",
            |r| {
                if r.nodes.is_empty() {
                    "nodes:all".to_string()
                } else {
                    format!("nodes:{}", shown_up_to(&r.nodes.join(","), 200))
                }
            },
            async |caller, r, audit| {
                auth::require_admin(&caller, "labelling nodes")?;
                let change = LabelChange::try_from(r)?;
                let updated = ctx.store.change_labels(change).await?;
                let names: Vec<NodeName> = updated.iter().map(|n| n.name.clone()).collect();
                push_nodes(ctx, &names).await;
                audit.detail = format!("{} node(s) updated", updated.len());
                Ok(pb::SetNodeLabelsResponse {
                    updated: updated
                        .into_iter()
                        .map(|n| pb::NodeGeneration {
                            name: n.name.into(),
                            desired_generation: n.desired_generation,
                        })
                        .collect(),
                })
            },
        )
        .await
    }

    async fn ping_node(
        &self,
        req: Request<pb::GetNodeRequest>,
    ) -> Result<Response<pb::PingNodeResponse>, Status> {
        let ctx = &self.0;
        ctx.read(
            req,
            "node.ping",
            |r| format!("node:{}", shown(&r.name)),
            async |caller, r, _| {
                let GetNode { name } = r.try_into()?;
                auth::require_node_read(&caller, &name)?;
                ctx.store.get_node(&name).await?;
                let started = std::time::Instant::now();
                let res = ctx.sessions.ping(&name).await?;
                Ok(pb::PingNodeResponse {
                    round_trip_us: started.elapsed().as_micros() as u64,
                    agent_unix_ms: res,
                })
            },
        )
        .await
    }

    async fn refresh_node_facts(
        &self,
        req: Request<pb::GetNodeRequest>,
    ) -> Result<Response<pb::Node>, Status> {
        let ctx = &self.0;
        ctx.read(
            req,
            "node.refresh-facts",
            |r| format!("node:{}", shown(&r.name)),
            async |caller, r, _| {
                let GetNode { name } = r.try_into()?;
                auth::require_node_read(&caller, &name)?;
                ctx.store.get_node(&name).await?;
                let facts = ctx.sessions.refresh_facts(&name).await?;
                ctx.store.record_facts(&name, &facts).await?;
                Ok(convert::node(ctx.store.get_node(&name).await?))
            },
        )
        .await
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "node.remove",
            |r| format!("node:{}", shown(&r.name)),
            async |caller, r, audit| {
                auth::require_admin(&caller, "removing a node")?;
                let RemoveNode { name } = r.try_into()?;
                let removed = ctx
                    .store
                    .remove_node(&name, &caller.actor(), ctx.clock.now())
                    .await?;
                // Marked first, closed second: a session opening meanwhile
                // reads the mark and closes itself (agents::service).
                close_session(ctx, &name, "node removed").await;
                let volumes: Vec<String> = removed
                    .volumes
                    .iter()
                    .map(|v| format!("{}/{}", v.tenant, v.name))
                    .collect();
                let instances: Vec<String> = removed
                    .instances
                    .iter()
                    .map(|i| format!("{}/{}", i.tenant, i.app))
                    .collect();
                tracing::info!(node = %name, volumes = volumes.len(), instances = instances.len(), "node removed");
                audit.detail = format!(
                    "certificates refused from now on; orphaned: {} volume(s) [{}], {} app \
                     instance(s) [{}]; nothing destroyed",
                    volumes.len(),
                    volumes.join(", "),
                    instances.len(),
                    instances.join(", ")
                );
                Ok(pb::RemoveNodeResponse {
                    node: Some(convert::node(removed.node)),
                    orphaned_volumes: volumes,
                    orphaned_instances: instances,
                })
            },
        )
        .await
    }

    async fn get_controller_stats(
        &self,
        req: Request<pb::GetControllerStatsRequest>,
    ) -> Result<Response<pb::ControllerStats>, Status> {
        use std::sync::atomic::Ordering::Relaxed;
        let ctx = &self.0;
        ctx.read(
            req,
            "controller.stats",
            |_| "controller",
            async |caller, _, _| {
                auth::require_admin(&caller, "reading controller statistics")?;
                let s = &ctx.sessions;
                Ok(pb::ControllerStats {
                    sessions: s.connected_count() as u64,
                    sessions_opened: s.stats.sessions_opened.load(Relaxed),
                    heartbeats: s.stats.heartbeats.load(Relaxed),
                    observed: s.stats.observed.load(Relaxed),
                    unmatched_results: s.stats.unmatched_results.load(Relaxed),
                    health_reports: s.stats.health_reports.load(Relaxed),
                    started_unix: s.started_unix(),
                })
            },
        )
        .await
    }
}
