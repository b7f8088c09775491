//! Store records to wire messages. Conversions the other way (requests to
//! validated domain values) are in [`super::wire`].

use coloc_proto::agent::v1 as apb;
use coloc_proto::apps::WebProtection;
use coloc_proto::controller::v1 as pb;
use coloc_proto::storage::mount_path;

use crate::rules::standing::Membership;
use crate::store::{
    ApiTokenRecord, AppRequestRecord, AuditOutcome, AuditRecord, ConnState, CredentialRef,
    InstanceRecord, InstanceState, JoinTokenRecord, MembershipPhase, NodeRecord, PoolRecord,
    RequestState, SiteRecord, TenantRecord, UserCertRecord, UserRecord, VolumeLifecycle,
    VolumeRecord,
};
use coloc_proto::apps::app_hostname;

pub fn site(r: SiteRecord) -> pb::Site {
    pb::Site {
        name: r.name.into(),
        country: r.country,
        city: r.city,
        description: r.description,
        created_unix: r.created_unix,
    }
}

pub fn node_status(r: &NodeRecord) -> pb::NodeStatus {
    if r.removed.is_some() {
        return pb::NodeStatus::Removed;
    }
    match r.conn_state {
        ConnState::Enrolling => pb::NodeStatus::Enrolling,
        ConnState::Unreachable => pb::NodeStatus::Unreachable,
        // A session that dropped less than the unreachable delay ago is
        // still counted as ready: agents reconnect within seconds.
        ConnState::Connected | ConnState::Disconnected => {
            if r.draining {
                pb::NodeStatus::Draining
            } else {
                pb::NodeStatus::Ready
            }
        }
    }
}

pub fn node(r: NodeRecord) -> pb::Node {
    let status = node_status(&r) as i32;
    pb::Node {
        status,
        connected: r.conn_state == ConnState::Connected,
        name: r.name.into(),
        site: r.site.into(),
        draining: r.draining,
        enrolled_unix: r.enrolled_unix,
        last_seen_unix: r.last_seen_unix.unwrap_or(0),
        desired_generation: r.desired_generation,
        applied_generation: r.applied_generation,
        last_outcome: r.last_outcome,
        last_message: r.last_message,
        facts: r.facts,
        labels: r.labels.into_iter().collect(),
        cert_fingerprint: r.cert.fingerprint,
        cert_not_after_unix: r.cert.not_after_unix,
        cert_renew_after_unix: r.cert.renew_after_unix,
        next_cert_fingerprint: r.next_cert.map(|c| c.fingerprint).unwrap_or_default(),
        removed_unix: r.removed.as_ref().map_or(0, |x| x.at_unix),
        removed_by: r.removed.map(|x| x.by).unwrap_or_default(),
    }
}

pub fn join_token(r: JoinTokenRecord) -> pb::JoinToken {
    pb::JoinToken {
        id: r.id,
        site: r.site.into(),
        secret: String::new(),
        expires_unix: r.expires_unix,
        created_unix: r.created_unix,
        used_by_node: r.used_by_node.map(String::from).unwrap_or_default(),
        created_by: r.created_by,
    }
}

/// A tenant with its membership at `now_unix`, `grace_days` being
/// colocd.toml's `membership_grace_days`.
pub fn tenant(r: TenantRecord, grace_days: u32, now_unix: i64) -> pb::Tenant {
    let m = Membership::of(&r, grace_days, now_unix);
    let state = match m.phase {
        MembershipPhase::Current => pb::MembershipState::Current,
        MembershipPhase::Expired => pb::MembershipState::Expired,
        MembershipPhase::Frozen => pb::MembershipState::Frozen,
    };
    let (suspended, suspended_unix, suspended_by, suspended_reason) = match r.suspension {
        Some(s) => (true, s.since_unix, s.by.into(), s.reason),
        None => (false, 0, String::new(), String::new()),
    };
    pb::Tenant {
        name: r.name.into(),
        display_name: r.display_name,
        offer: coloc_proto::controller::v1::Offer::from(r.offer) as i32,
        membership_expires: r.membership_expires.to_string(),
        created_unix: r.created_unix,
        membership_expired: m.phase != MembershipPhase::Current,
        storage_quota_bytes: r.storage_quota_bytes,
        storage_used_bytes: r.storage_used_bytes,
        volume_grace_days: r.volume_grace_days,
        posix_id: r.posix_id,
        membership_state: state as i32,
        frozen_from: m.frozen_from.to_string(),
        suspended,
        suspended_unix,
        suspended_by,
        suspended_reason,
    }
}

pub fn pool(r: PoolRecord) -> pb::Pool {
    pb::Pool {
        node: r.node.into(),
        name: r.name.into(),
        kind: r.kind as i32,
        layout: r.layout as i32,
        disks: r.disks.iter().map(ToString::to_string).collect(),
        force: r.force,
        created_unix: r.created_unix,
        observed: r.observed,
        orphans: r.orphans,
    }
}

pub fn volume_lifecycle(l: VolumeLifecycle) -> pb::VolumeLifecycle {
    match l {
        VolumeLifecycle::Active => pb::VolumeLifecycle::Active,
        VolumeLifecycle::Retained => pb::VolumeLifecycle::Retained,
        VolumeLifecycle::Purging => pb::VolumeLifecycle::Purging,
        VolumeLifecycle::Destroyed => pb::VolumeLifecycle::Destroyed,
    }
}

pub fn volume(r: VolumeRecord) -> pb::Volume {
    pb::Volume {
        mount_path: mount_path(r.tenant.as_str(), r.name.as_str()),
        id: r.id.into(),
        tenant: r.tenant.into(),
        name: r.name.into(),
        node: r.node.into(),
        pool: r.pool.into(),
        pool_kind: r.pool_kind as i32,
        size_bytes: r.size_bytes,
        reservation_bytes: r.reservation_bytes,
        encrypted: r.encrypted,
        lifecycle: volume_lifecycle(r.lifecycle) as i32,
        created_unix: r.created_unix,
        deleted_unix: r.deleted_unix.unwrap_or(0),
        purge_after_unix: r.purge_after_unix.unwrap_or(0),
        snapshots: r.snapshots.into_iter().map(String::from).collect(),
        observed: r.observed,
        node_removed: r.node_removed,
    }
}

pub fn user(r: UserRecord) -> pb::User {
    pb::User {
        name: r.name.into(),
        tenant: r.tenant.map(String::from).unwrap_or_default(),
        role: pb::Role::from(r.role) as i32,
        display_name: r.display_name,
        node_grants: r.node_grants.into_iter().map(String::from).collect(),
        created_unix: r.created_unix,
        disabled: r.disabled_unix.is_some(),
        disabled_unix: r.disabled_unix.unwrap_or(0),
    }
}

pub fn credential(r: CredentialRef) -> pb::CredentialRef {
    pb::CredentialRef {
        kind: Some(match r {
            CredentialRef::Token(id) => pb::credential_ref::Kind::TokenId(id),
            CredentialRef::Certificate(serial) => {
                pb::credential_ref::Kind::CertificateSerial(serial.into())
            }
        }),
    }
}

pub fn credentials(r: Vec<CredentialRef>) -> Vec<pb::CredentialRef> {
    r.into_iter().map(credential).collect()
}

pub fn api_token(r: ApiTokenRecord) -> pb::ApiToken {
    pb::ApiToken {
        id: r.id,
        user: r.user.into(),
        description: r.description,
        secret: String::new(),
        created_unix: r.created_unix,
        expires_unix: r.expires_unix,
        revoked: r.revoked_unix.is_some(),
        revoked_unix: r.revoked_unix.unwrap_or(0),
        minted_by: r.minted_by.map(credential),
        expiry_limited_by_minter: false,
        also_revoked: Vec::new(),
    }
}

pub fn user_certificate(r: UserCertRecord) -> pb::UserCertificate {
    pb::UserCertificate {
        serial: r.serial.into(),
        fingerprint: r.fingerprint,
        user: r.user.into(),
        created_unix: r.created_unix,
        expires_unix: r.expires_unix,
        revoked: r.revoked_unix.is_some(),
        revoked_unix: r.revoked_unix.unwrap_or(0),
        minted_by: r.minted_by.map(credential),
        also_revoked: Vec::new(),
    }
}

pub fn audit(r: AuditRecord) -> pb::AuditEntry {
    let id = r.id();
    let r = r.into_fields();
    pb::AuditEntry {
        id,
        at_unix_ms: r.at_unix_ms,
        actor: r.actor,
        action: r.action,
        target: r.target,
        tenant: r.tenant.map(String::from).unwrap_or_default(),
        outcome: match r.outcome {
            AuditOutcome::Allowed => pb::AuditOutcome::Allowed,
            AuditOutcome::Denied => pb::AuditOutcome::Denied,
            AuditOutcome::Failed => pb::AuditOutcome::Failed,
        } as i32,
        detail: r.detail,
    }
}

pub fn request_state(s: RequestState) -> pb::RequestState {
    match s {
        RequestState::Pending => pb::RequestState::Pending,
        RequestState::Approved => pb::RequestState::Approved,
        RequestState::Rejected => pb::RequestState::Rejected,
    }
}

pub fn app_request(r: AppRequestRecord) -> pb::AppRequest {
    pb::AppRequest {
        id: r.id,
        tenant: r.tenant.into(),
        app: r.app.into(),
        node: r.node.into(),
        volume: r.volume_name.into(),
        requested_by: r.requested_by.into(),
        created_unix: r.created_unix,
        state: request_state(r.state) as i32,
        decided_by: r.decided_by.map(String::from).unwrap_or_default(),
        decided_unix: r.decided_unix.unwrap_or(0),
        comments: r
            .comments
            .into_iter()
            .map(|c| pb::RequestComment {
                author: c.author.into(),
                at_unix: c.at_unix,
                text: c.text,
            })
            .collect(),
    }
}

pub fn instance_state(s: InstanceState) -> pb::InstanceState {
    match s {
        InstanceState::Running => pb::InstanceState::Running,
        InstanceState::Stopped => pb::InstanceState::Stopped,
        InstanceState::Removed => pb::InstanceState::Removed,
    }
}

/// `<app>.<tenant>.<domain>`: where the node's proxy routes the instance.
/// `web` is how the catalog protects the app's web endpoint (None: the
/// app left the catalog).
pub fn instance(r: InstanceRecord, domain: &str, web: Option<WebProtection>) -> pb::AppInstance {
    let web_user = match web {
        Some(WebProtection::Proxy) => r.web_login.as_ref().map(|l| l.user.to_string()),
        _ => None,
    };
    pb::AppInstance {
        url: format!("https://{}/", app_hostname(&r.app, &r.tenant, domain)),
        tenant: r.tenant.into(),
        app: r.app.into(),
        node: r.node.into(),
        volume: r.volume_name.into(),
        port: u32::from(r.port),
        state: instance_state(r.state) as i32,
        request_id: r.request_id,
        created_unix: r.created_unix,
        observed: r.observed,
        tenant_suspended: r.tenant_suspended,
        node_removed: r.node_removed,
        web_auth: web.map_or(apb::WebAuth::Unspecified, apb::WebAuth::from) as i32,
        web_user: web_user.unwrap_or_default(),
    }
}
