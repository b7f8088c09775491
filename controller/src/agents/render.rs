//! A node's desired configuration, rendered from one store read
//! ([`NodeDesired`]: the node, its pools, volumes and app instances, with
//! the generation they share), the app catalog loaded at start
//! (docs/APPS.md) and colocd's configuration.
//!
//! Pure functions: no I/O, no session, no store. What the agent must never
//! misread is decided here: a volume gone from disk is left out (absence
//! never means "destroy"), an instance whose volume is not active is sent
//! stopped, a removed instance the catalog can no longer render still goes
//! out so that its unit and route are removed.

use coloc_proto::agent::v1 as pb;
use coloc_proto::storage::mount_path;

use coloc_proto::apps::app_hostname;

use crate::catalog::{Catalog, RenderContext};
use crate::config::ControllerConfig;
use crate::store::{DesiredApp, InstanceRecord, InstanceState, NodeDesired, VolumeLifecycle};

fn volume_state(l: VolumeLifecycle) -> Option<pb::VolumeState> {
    match l {
        VolumeLifecycle::Active => Some(pb::VolumeState::Active),
        VolumeLifecycle::Retained => Some(pb::VolumeState::Retained),
        VolumeLifecycle::Purging => Some(pb::VolumeState::Purged),
        // Gone from disk: absent from the configuration (absence never
        // means "destroy" to the agent).
        VolumeLifecycle::Destroyed => None,
    }
}

/// What an instance is told to be on its node. An instance whose volume
/// is not active (deleted, being destroyed) is sent STOPPED whatever its
/// recorded state: its data directory is unmounted or read-only, and it
/// comes back by itself if the volume is restored. So is an instance of
/// a tenant an admin suspended, until it is resumed: stopped, never
/// removed, its unit, route and data kept. A membership's expiry or
/// freeze plays no part here: apps keep serving.
fn app_state(i: &InstanceRecord) -> pb::AppState {
    match (i.state, i.volume_lifecycle, i.tenant_suspended) {
        (InstanceState::Removed, _, _) => pb::AppState::Removed,
        (InstanceState::Stopped, _, _) => pb::AppState::Stopped,
        (InstanceState::Running, VolumeLifecycle::Active, false) => pb::AppState::Running,
        (InstanceState::Running, VolumeLifecycle::Active, true) => pb::AppState::Stopped,
        (
            InstanceState::Running,
            VolumeLifecycle::Retained | VolumeLifecycle::Purging | VolumeLifecycle::Destroyed,
            _,
        ) => pb::AppState::Stopped,
    }
}

/// One instance rendered through the catalog. A removed instance the
/// catalog cannot render (its app left the catalog) still goes out with
/// what the agent needs to remove its unit and route; any other instance
/// that does not render is left out and logged.
fn app_spec(da: &DesiredApp, catalog: &Catalog, config: &ControllerConfig) -> Option<pb::AppSpec> {
    let i = &da.instance;
    let state = app_state(i);
    let rendered = match catalog.get(i.app.as_str()) {
        Some(app) => app
            .render(&RenderContext {
                tenant: i.tenant.clone(),
                uid: da.owner,
                gid: da.owner,
                port: i.port,
                volume_id: i.volume_id.to_string(),
                volume_mount: mount_path(i.tenant.as_str(), i.volume_name.as_str()),
                domain: config.apps_domain.clone(),
                state,
                restart_nonce: i.restart_nonce,
                web_login: i.web_login.clone(),
            })
            .map_err(|e| e.to_string()),
        None => Err("the app is not in the catalog".to_string()),
    };
    match rendered {
        Ok(spec) => Some(spec),
        Err(_) if state == pb::AppState::Removed => Some(pb::AppSpec {
            tenant: i.tenant.to_string(),
            app: i.app.to_string(),
            state: state as i32,
            port: u32::from(i.port),
            hostname: app_hostname(&i.app, &i.tenant, &config.apps_domain),
            restart_nonce: i.restart_nonce,
            volume_id: i.volume_id.to_string(),
            uid: da.owner,
            gid: da.owner,
            ..Default::default()
        }),
        Err(error) => {
            tracing::error!(node = %i.node, tenant = %i.tenant, app = %i.app, error = %error, "cannot render app instance; left out of the node's configuration");
            None
        }
    }
}

/// The node's whole desired configuration.
pub fn desired_of(
    d: &NodeDesired,
    catalog: &Catalog,
    config: &ControllerConfig,
) -> pb::DesiredConfig {
    let rec = &d.node;
    let apps: Vec<pb::AppSpec> = d
        .apps
        .iter()
        .filter_map(|da| app_spec(da, catalog, config))
        .collect();
    // The proxy serves deployed apps; a node whose instances are all being
    // removed has none left to serve.
    let proxy = d
        .apps
        .iter()
        .any(|da| da.instance.state != InstanceState::Removed)
        .then(|| pb::ProxySpec {
            domain: config.apps_domain.clone(),
            acme_email: config.acme_email.clone(),
        });
    pb::DesiredConfig {
        generation: rec.desired_generation,
        node_name: rec.name.to_string(),
        site: rec.site.to_string(),
        draining: rec.draining,
        labels: rec.labels.clone().into_iter().collect(),
        pools: d
            .pools
            .iter()
            .map(|p| pb::PoolSpec {
                name: p.name.to_string(),
                kind: p.kind as i32,
                layout: p.layout as i32,
                disks: p.disks.iter().map(ToString::to_string).collect(),
                force: p.force,
            })
            .collect(),
        volumes: d
            .volumes
            .iter()
            .filter_map(|dv| {
                let v = &dv.volume;
                let state = volume_state(v.lifecycle)?;
                Some(pb::VolumeSpec {
                    id: v.id.to_string(),
                    tenant: v.tenant.to_string(),
                    name: v.name.to_string(),
                    pool: v.pool.to_string(),
                    pool_kind: v.pool_kind as i32,
                    size_bytes: v.size_bytes,
                    reservation_bytes: v.reservation_bytes,
                    encrypted: v.encrypted,
                    state: state as i32,
                    owner_uid: dv.owner,
                    owner_gid: dv.owner,
                    snapshots: v.snapshots.iter().map(ToString::to_string).collect(),
                    allow_shrink: v.allow_shrink,
                })
            })
            .collect(),
        apps,
        proxy,
    }
}

#[cfg(test)]
mod tests {
    use coloc_proto::domain::{NodeName, SiteName, TenantName};
    use coloc_proto::storage::{VolumeId, VolumeName};

    use super::*;
    use crate::store::{AppName, ConnState, NodeCert, NodeRecord};

    const NOTES: &str = r#"
name = "notes"
description = "Shared notes"
replaces = "Google Keep"
packages = ["notes-server"]
offers = ["participatif"]

[service]
exec = "/usr/bin/notes-server"
args = ["--listen", "127.0.0.1:{port}"]

[health]
tcp = true

[resources]
memory = "64M"
cpu_percent = 10

[web]
auth = "own"
"#;

    fn catalog() -> Catalog {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.toml"), NOTES).unwrap();
        Catalog::from_dir(dir.path()).unwrap()
    }

    fn node() -> NodeRecord {
        NodeRecord {
            name: NodeName::new("n1").unwrap(),
            site: SiteName::new("paris-1").unwrap(),
            enrolled_unix: 0,
            last_seen_unix: None,
            conn_state: ConnState::Connected,
            conn_changed_unix: 0,
            draining: false,
            labels: Default::default(),
            desired_generation: 7,
            applied_generation: 0,
            last_outcome: 0,
            last_message: String::new(),
            facts: None,
            cert: NodeCert {
                fingerprint: String::new(),
                not_after_unix: 0,
                renew_after_unix: 0,
            },
            next_cert: None,
            removed: None,
        }
    }

    fn instance(app: &str, state: InstanceState, volume: VolumeLifecycle) -> DesiredApp {
        DesiredApp {
            instance: InstanceRecord {
                tenant: TenantName::new("asso-a").unwrap(),
                app: AppName::new(app).unwrap(),
                node: NodeName::new("n1").unwrap(),
                volume_id: VolumeId::new("00000000000000aa").unwrap(),
                volume_name: VolumeName::new("data").unwrap(),
                volume_lifecycle: volume,
                port: 20_001,
                state,
                restart_nonce: 3,
                request_id: 1,
                created_unix: 0,
                gone: false,
                observed: None,
                tenant_suspended: false,
                node_removed: false,
                web_login: None,
            },
            owner: 200_000,
        }
    }

    fn desired(apps: Vec<DesiredApp>) -> pb::DesiredConfig {
        let d = NodeDesired {
            node: node(),
            pools: Vec::new(),
            volumes: Vec::new(),
            apps,
        };
        let config = ControllerConfig {
            apps_domain: "encommun.org".into(),
            acme_email: "admins@encommun.org".into(),
            ..ControllerConfig::default()
        };
        desired_of(&d, &catalog(), &config)
    }

    #[test]
    fn instances_are_rendered_with_their_state_and_the_proxy() {
        use InstanceState::*;
        use VolumeLifecycle::*;
        for (state, volume, sent) in [
            (Running, Active, pb::AppState::Running),
            (Stopped, Active, pb::AppState::Stopped),
            (Removed, Active, pb::AppState::Removed),
            (Running, Retained, pb::AppState::Stopped),
            (Running, Purging, pb::AppState::Stopped),
            (Running, Destroyed, pb::AppState::Stopped),
            (Removed, Retained, pb::AppState::Removed),
        ] {
            let d = desired(vec![instance("notes", state, volume)]);
            assert_eq!(d.apps.len(), 1);
            let s = &d.apps[0];
            assert_eq!(s.state, sent as i32, "{state:?} on a {volume:?} volume");
            assert_eq!(s.args, ["--listen", "127.0.0.1:20001"]);
            assert_eq!(s.hostname, "notes.asso-a.encommun.org");
            assert_eq!((s.uid, s.gid, s.restart_nonce), (200_000, 200_000, 3));
            assert_eq!(s.data_dir, "/srv/tenants/asso-a/data/apps/notes");
            assert_eq!(d.proxy.is_some(), state != Removed, "{state:?}");
        }
        let d = desired(vec![instance("notes", Running, Active)]);
        let proxy = d.proxy.unwrap();
        assert_eq!(
            (proxy.domain.as_str(), proxy.acme_email.as_str()),
            ("encommun.org", "admins@encommun.org")
        );
        assert!(desired(Vec::new()).proxy.is_none());
    }

    #[test]
    fn a_suspended_tenant_s_instances_are_sent_stopped_not_removed() {
        use InstanceState::*;
        use VolumeLifecycle::*;
        for (state, volume, sent) in [
            (Running, Active, pb::AppState::Stopped),
            (Stopped, Active, pb::AppState::Stopped),
            (Removed, Active, pb::AppState::Removed),
            (Running, Retained, pb::AppState::Stopped),
        ] {
            let mut i = instance("notes", state, volume);
            let running = desired(vec![i.clone()]);
            i.instance.tenant_suspended = true;
            let d = desired(vec![i]);
            assert_eq!(d.apps.len(), 1);
            assert_eq!(
                d.apps[0].state, sent as i32,
                "{state:?} on a {volume:?} volume"
            );
            // Everything but the state is what it was: unit, port, data
            // directory and route stay, so resuming starts the same thing.
            let mut same = d.apps[0].clone();
            same.state = running.apps[0].state;
            assert_eq!(same, running.apps[0]);
            assert_eq!(d.proxy, running.proxy);
        }
    }

    #[test]
    fn an_app_gone_from_the_catalog_is_still_removed_but_never_started() {
        let d = desired(vec![
            instance("gone", InstanceState::Removed, VolumeLifecycle::Active),
            instance("other", InstanceState::Running, VolumeLifecycle::Active),
        ]);
        assert_eq!(d.apps.len(), 1, "the running one cannot be rendered");
        let s = &d.apps[0];
        assert_eq!(
            (s.app.as_str(), s.state),
            ("gone", pb::AppState::Removed as i32)
        );
        assert_eq!(s.hostname, "gone.asso-a.encommun.org");
        assert_eq!(s.port, 20_001);
        assert!(s.exec.is_empty() && s.packages.is_empty());
    }
}
