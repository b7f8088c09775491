//! Store records to wire messages. Conversions the other way (requests to
//! domain values) happen in the handlers, where each field's error can
//! name the field.

use coloc_proto::controller::v1 as pb;

use crate::store::{
    ApiTokenRecord, AuditOutcome, AuditRecord, ConnState, JoinTokenRecord, NodeRecord, SiteRecord,
    TenantRecord, UserRecord,
};
use crate::time::date_of;

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
        cert_fingerprint: r.cert_fingerprint,
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

pub fn tenant(r: TenantRecord, now_unix: i64) -> pb::Tenant {
    let expired = r.membership_expires < date_of(now_unix);
    pb::Tenant {
        name: r.name.into(),
        display_name: r.display_name,
        offer: coloc_proto::controller::v1::Offer::from(r.offer) as i32,
        membership_expires: r.membership_expires,
        created_unix: r.created_unix,
        membership_expired: expired,
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
    }
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
    }
}

pub fn audit(r: AuditRecord) -> pb::AuditEntry {
    pb::AuditEntry {
        id: r.id,
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
