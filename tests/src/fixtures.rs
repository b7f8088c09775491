//! What tests and benchmarks set up and look up through the public API, as
//! an admin would: sites, join tokens, tenants, users, pools and volumes,
//! the objects they read back, the waits on a node, a volume or an app
//! instance reaching a state, and the audit log.
//!
//! Every helper is one API call (or one poll of one) and fails with the
//! status colocd returned; none of them asserts on behaviour, that is the
//! tests' business.

use std::sync::Mutex;
use std::time::Duration;

use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;

use crate::api::Api;
use crate::{Context, Result, wait_for};

pub async fn create_site(api: &mut Api, name: &str) -> Result<pb::Site> {
    Ok(api
        .sites
        .create_site(pb::CreateSiteRequest {
            name: name.into(),
            country: "FR".into(),
            city: "Paris".into(),
            description: String::new(),
        })
        .await?
        .into_inner())
}

/// Creates the site in Paris unless it exists (tools run against a colocd
/// that may already have it).
pub async fn ensure_site(api: &mut Api, name: &str, description: &str) -> Result<()> {
    let created = api
        .sites
        .create_site(pb::CreateSiteRequest {
            name: name.into(),
            country: "FR".into(),
            city: "Paris".into(),
            description: description.into(),
        })
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::AlreadyExists => Ok(()),
        Err(s) => Err(s.into()),
    }
}

pub async fn join_token(api: &mut Api, site: &str, ttl_secs: u64) -> Result<String> {
    Ok(api
        .nodes
        .create_join_token(pb::CreateJoinTokenRequest {
            site: site.into(),
            ttl_secs,
        })
        .await?
        .into_inner()
        .secret)
}

pub async fn create_tenant(api: &mut Api, name: &str, offer: pb::Offer) -> Result<pb::Tenant> {
    Ok(api
        .tenants
        .create_tenant(pb::CreateTenantRequest {
            name: name.into(),
            display_name: format!("Association {name}"),
            offer: offer as i32,
            membership_expires: "2099-12-31".into(),
        })
        .await?
        .into_inner())
}

pub async fn tenant(api: &mut Api, name: &str) -> Result<pb::Tenant> {
    Ok(api
        .tenants
        .get_tenant(pb::GetTenantRequest { name: name.into() })
        .await?
        .into_inner())
}

/// Creates a user and returns a token for them.
pub async fn create_user(
    api: &mut Api,
    name: &str,
    tenant: &str,
    role: pb::Role,
) -> Result<String> {
    api.users
        .create_user(pb::CreateUserRequest {
            name: name.into(),
            tenant: tenant.into(),
            role: role as i32,
            display_name: String::new(),
        })
        .await?;
    Ok(api
        .tokens
        .create_token(pb::CreateTokenRequest {
            user: name.into(),
            description: "test".into(),
            ttl_secs: 0,
        })
        .await?
        .into_inner()
        .secret)
}

pub async fn node(api: &mut Api, name: &str) -> Result<pb::Node> {
    Ok(api
        .nodes
        .get_node(pb::GetNodeRequest { name: name.into() })
        .await?
        .into_inner())
}

/// Waits until `cond` holds for the node as colocd shows it.
pub async fn wait_node(
    api: &Api,
    name: &str,
    what: &str,
    deadline: Duration,
    cond: impl Fn(&pb::Node) -> bool,
) -> Result<pb::Node> {
    wait_for(what, deadline, || {
        let mut api = api.clone();
        let cond = &cond;
        async move { node(&mut api, name).await.ok().filter(|n| cond(n)) }
    })
    .await
}

/// Waits until colocd shows `name` Ready (enrolled, session up) and
/// returns it.
pub async fn wait_node_ready(api: &Api, name: &str, deadline: Duration) -> Result<pb::Node> {
    wait_node(
        api,
        name,
        &format!("{name} ready in colocd"),
        deadline,
        |n| n.status == pb::NodeStatus::Ready as i32,
    )
    .await
}

/// Declares a single-disk pool, the disk named as `coloc pool create
/// --disk` takes it (`serial:...`, `id:...`).
pub async fn create_pool(
    api: &mut Api,
    node: &str,
    name: &str,
    kind: apb::PoolKind,
    disk: &str,
) -> Result<pb::Pool> {
    Ok(api
        .storage
        .create_pool(pb::CreatePoolRequest {
            node: node.into(),
            name: name.into(),
            kind: kind as i32,
            layout: apb::PoolLayout::Single as i32,
            disks: vec![disk.into()],
            force: false,
        })
        .await?
        .into_inner())
}

pub async fn pools(api: &mut Api, node: &str) -> Result<Vec<pb::Pool>> {
    Ok(api
        .storage
        .list_pools(pb::ListPoolsRequest { node: node.into() })
        .await?
        .into_inner()
        .pools)
}

/// Where a new volume goes and how big it is.
#[derive(Debug, Clone)]
pub struct NewVolume<'a> {
    pub tenant: &'a str,
    pub name: &'a str,
    pub node: &'a str,
    pub pool: &'a str,
    pub size_bytes: u64,
    pub encrypted: bool,
}

pub async fn create_volume(api: &mut Api, v: NewVolume<'_>) -> Result<pb::Volume> {
    Ok(api
        .storage
        .create_volume(pb::CreateVolumeRequest {
            tenant: v.tenant.into(),
            name: v.name.into(),
            node: v.node.into(),
            pool: v.pool.into(),
            size_bytes: v.size_bytes,
            reservation_bytes: 0,
            encrypted: v.encrypted,
        })
        .await?
        .into_inner())
}

/// A volume by `<tenant>/<name>` or id.
pub async fn volume(api: &mut Api, name: &str) -> Result<pb::Volume> {
    Ok(api
        .storage
        .get_volume(pb::VolumeRef {
            volume: name.into(),
        })
        .await?
        .into_inner())
}

/// Waits until `cond` holds for the volume; on timeout the error shows the
/// volume as last seen.
pub async fn wait_volume(
    api: &Api,
    name: &str,
    what: &str,
    deadline: Duration,
    cond: impl Fn(&pb::Volume) -> bool,
) -> Result<pb::Volume> {
    let last = Mutex::new(None::<pb::Volume>);
    let got = wait_for(&format!("{name}: {what}"), deadline, || {
        let mut api = api.clone();
        let (last, cond) = (&last, &cond);
        async move {
            let v = volume(&mut api, name).await.ok()?;
            *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(v.clone());
            cond(&v).then_some(v)
        }
    })
    .await;
    got.with_context(|| {
        format!(
            "last seen: {:#?}",
            last.lock().unwrap_or_else(|p| p.into_inner())
        )
    })
}

/// Asks for `app` for `tenant` on `node` (on `volume`, or the tenant's
/// only volume there when empty) and approves the request: an admin's
/// two steps. Returns the request's id.
pub async fn request_approved(
    admin: &mut Api,
    tenant: &str,
    app: &str,
    node: &str,
    volume: &str,
) -> Result<u64> {
    let id = admin
        .apps
        .request_app(pb::RequestAppRequest {
            tenant: tenant.into(),
            app: app.into(),
            node: node.into(),
            volume: volume.into(),
            comment: format!("{app} for {tenant}"),
        })
        .await?
        .into_inner()
        .id;
    admin
        .apps
        .approve_request(pb::DecideRequestRequest {
            id,
            comment: "approved".into(),
        })
        .await?;
    Ok(id)
}

/// An app instance by `<tenant>/<app>`.
pub async fn instance(api: &mut Api, name: &str) -> Result<pb::AppInstance> {
    Ok(api
        .apps
        .get_instance(pb::InstanceRef {
            instance: name.into(),
        })
        .await?
        .into_inner())
}

/// Waits until `cond` holds for the instance; on timeout the error shows
/// the instance as last seen.
pub async fn wait_instance(
    api: &Api,
    name: &str,
    what: &str,
    deadline: Duration,
    cond: impl Fn(&pb::AppInstance) -> bool,
) -> Result<pb::AppInstance> {
    let last = Mutex::new(None::<pb::AppInstance>);
    let got = wait_for(&format!("{name}: {what}"), deadline, || {
        let mut api = api.clone();
        let (last, cond) = (&last, &cond);
        async move {
            let i = instance(&mut api, name).await.ok()?;
            *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(i.clone());
            cond(&i).then_some(i)
        }
    })
    .await;
    got.with_context(|| {
        format!(
            "last seen: {:#?}",
            last.lock().unwrap_or_else(|p| p.into_inner())
        )
    })
}

/// The newest audit entries of one actor, as the admin sees them.
pub async fn audit_entries(api: &mut Api, actor: &str) -> Result<Vec<pb::AuditEntry>> {
    Ok(api
        .audit
        .list_audit(pb::ListAuditRequest {
            before: 0,
            limit: 1000,
            tenant: String::new(),
            actor: actor.into(),
        })
        .await?
        .into_inner()
        .entries)
}

/// The newest audit entries about one tenant.
pub async fn tenant_audit(api: &mut Api, tenant: &str) -> Result<Vec<pb::AuditEntry>> {
    Ok(api
        .audit
        .list_audit(pb::ListAuditRequest {
            before: 0,
            limit: 1000,
            tenant: tenant.into(),
            actor: String::new(),
        })
        .await?
        .into_inner()
        .entries)
}

/// Whether `entries` hold one by `actor` for `action` with `outcome`.
pub fn has_audit_entry(
    entries: &[pb::AuditEntry],
    actor: &str,
    action: &str,
    outcome: pb::AuditOutcome,
) -> bool {
    entries
        .iter()
        .any(|e| e.actor == actor && e.action == action && e.outcome == outcome as i32)
}
