//! Records and inputs for the rules' tests.

use std::collections::{HashMap, HashSet};

use coloc_proto::agent::v1::PoolKind;
use coloc_proto::domain::{NodeName, Offer, SiteName, TenantName};
use coloc_proto::storage::{PoolName, VolumeId, VolumeName};

use super::{Condition, Inputs};
use crate::config::AlertsConfig;
use crate::health::NodeHealth;
use crate::store::{
    AppName, ConnState, InstanceRecord, InstanceState, MembershipPhase, NodeCert, NodeRecord,
    TenantRecord, UnixSecs, VolumeLifecycle, VolumeRecord,
};

pub(crate) fn node(n: &str) -> NodeName {
    NodeName::new(n).unwrap()
}

pub(crate) fn rules(c: &[Condition]) -> Vec<&'static str> {
    c.iter().map(|c| c.rule).collect()
}

pub(crate) fn node_record(name: &str) -> NodeRecord {
    NodeRecord {
        name: node(name),
        site: SiteName::new("paris-1").unwrap(),
        enrolled_unix: 0,
        last_seen_unix: Some(0),
        conn_state: ConnState::Connected,
        conn_changed_unix: 0,
        draining: false,
        labels: Default::default(),
        desired_generation: 1,
        applied_generation: 1,
        last_outcome: 0,
        last_message: String::new(),
        facts: None,
        cert: NodeCert {
            fingerprint: format!("fp-{name}"),
            not_after_unix: i64::MAX / 2,
            renew_after_unix: i64::MAX / 4,
        },
        next_cert: None,
        removed: None,
    }
}

pub(crate) fn tenant(name: &str) -> TenantRecord {
    TenantRecord {
        name: TenantName::new(name).unwrap(),
        display_name: name.into(),
        offer: Offer::Participatif,
        membership_expires: time::macros::date!(2099 - 06 - 30),
        membership_noted: MembershipPhase::Current,
        suspension: None,
        created_unix: 0,
        storage_quota_bytes: 10 << 30,
        volume_grace_days: 30,
        posix_id: 0,
        storage_used_bytes: 0,
    }
}

pub(crate) fn volume(tenant: &str, name: &str, on: &str, size: u64) -> VolumeRecord {
    VolumeRecord {
        id: VolumeId::random(),
        tenant: TenantName::new(tenant).unwrap(),
        name: VolumeName::new(name).unwrap(),
        node: node(on),
        pool: PoolName::new("tank").unwrap(),
        pool_kind: PoolKind::Unspecified,
        size_bytes: size,
        reservation_bytes: 0,
        encrypted: false,
        lifecycle: VolumeLifecycle::Active,
        created_unix: 0,
        deleted_unix: None,
        purge_after_unix: None,
        snapshots: Vec::new(),
        allow_shrink: false,
        observed: None,
        node_removed: false,
    }
}

pub(crate) fn instance(tenant: &str, app: &str, on: &str) -> InstanceRecord {
    InstanceRecord {
        tenant: TenantName::new(tenant).unwrap(),
        app: AppName::new(app).unwrap(),
        node: node(on),
        volume_id: VolumeId::random(),
        volume_name: VolumeName::new("data").unwrap(),
        volume_lifecycle: VolumeLifecycle::Active,
        port: 20_000,
        state: InstanceState::Running,
        restart_nonce: 0,
        request_id: 1,
        created_unix: 0,
        gone: false,
        observed: None,
        tenant_suspended: false,
        node_removed: false,
        web_login: None,
    }
}

/// Inputs with nothing but these nodes and reports, a 60 s period and
/// monthly scrubs.
pub(crate) fn inputs_for<'a>(
    now: UnixSecs,
    t: &'a AlertsConfig,
    nodes: &'a [NodeRecord],
    connected: &'a HashSet<NodeName>,
    reports: &'a HashMap<NodeName, NodeHealth>,
) -> Inputs<'a> {
    Inputs {
        now,
        period_secs: 60,
        scrub_period_days: Some(30),
        thresholds: t,
        nodes,
        connected,
        reports,
        volumes: &[],
        instances: &[],
        restarts: empty_restarts(),
        tenants: &[],
        server_cert_not_after: i64::MAX / 2,
    }
}

fn empty_restarts() -> &'static HashMap<super::InstanceKey, super::RestartGrowth> {
    static EMPTY: std::sync::OnceLock<HashMap<super::InstanceKey, super::RestartGrowth>> =
        std::sync::OnceLock::new();
    EMPTY.get_or_init(HashMap::new)
}
