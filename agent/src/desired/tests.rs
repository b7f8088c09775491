//! A desired configuration is taken whole or refused whole, with the entry
//! named; every value goes through proto's rules.

use std::collections::HashMap;

use coloc_proto::agent::v1::{
    PoolKind, PoolLayout, PoolSpec, ProxySpec, VolumeSpec, VolumeState, app_spec,
};
use coloc_proto::error_chain;

use super::*;

const VOLUME: &str = "0123456789abcdef";

fn volume() -> VolumeSpec {
    VolumeSpec {
        id: VOLUME.into(),
        tenant: "acme".into(),
        name: "data".into(),
        pool: "tank".into(),
        pool_kind: PoolKind::Zfs.into(),
        size_bytes: (64 << 20) + 1,
        state: VolumeState::Active.into(),
        owner_uid: 200_000,
        owner_gid: 200_000,
        ..VolumeSpec::default()
    }
}

fn pool() -> PoolSpec {
    PoolSpec {
        name: "tank".into(),
        kind: PoolKind::Zfs.into(),
        layout: PoolLayout::Mirror.into(),
        disks: vec!["serial:A".into(), "id:virtio-B".into()],
        force: false,
    }
}

fn app(name: &str, port: u32) -> AppSpec {
    let data = format!("/srv/tenants/acme/data/apps/{name}");
    AppSpec {
        tenant: "acme".into(),
        app: name.into(),
        state: AppState::Running.into(),
        packages: vec!["radicale".into()],
        exec: "/usr/bin/radicale".into(),
        environment: HashMap::from([("HOME".into(), data.clone())]),
        port,
        data_dir: data,
        config_dir: format!("/etc/coloc/apps/acme-{name}"),
        uid: 200_000,
        gid: 200_000,
        hostname: format!("{name}.acme.coloc.test"),
        health: Some(app_spec::Health::HealthTcp(true)),
        volume_id: VOLUME.into(),
        web_auth: coloc_proto::agent::v1::WebAuth::Own.into(),
        ..AppSpec::default()
    }
}

fn config() -> DesiredConfig {
    DesiredConfig {
        generation: 7,
        node_name: "node-1".into(),
        site: "paris-1".into(),
        labels: HashMap::from([("rack".into(), "b2".into())]),
        pools: vec![pool()],
        volumes: vec![volume()],
        apps: vec![app("radicale", 20000)],
        proxy: Some(ProxySpec {
            domain: "coloc.test".into(),
            acme_email: String::new(),
        }),
        ..DesiredConfig::default()
    }
}

/// The refusal as the node reports it.
fn refusal(wire: &DesiredConfig) -> String {
    error_chain(&Desired::try_from(wire).expect_err("refused"))
}

#[test]
fn a_whole_configuration_converts_with_its_derived_values() {
    let d = Desired::try_from(&config()).expect("valid");
    assert_eq!(d.generation, 7);
    assert_eq!(d.node.as_str(), "node-1");
    assert_eq!(d.site.as_ref().map(|s| s.as_str()), Some("paris-1"));
    assert_eq!(d.labels.get("rack").map(String::as_str), Some("b2"));
    assert_eq!(d.pools[0].disks.len(), 2);
    // Sizes are aligned on the way in.
    assert_eq!(d.volumes[0].size_bytes, 68 << 20);
    assert_eq!(d.volumes[0].mount_path, "/srv/tenants/acme/data");
    let AppEntry::Deploy(app) = &d.apps[0] else {
        panic!("a running app is deployed: {:?}", d.apps[0]);
    };
    assert_eq!(app.unit.as_str(), "coloc-app-acme-radicale.service");
    assert_eq!(
        d.proxy.as_ref().map(|p| p.domain.as_str()),
        Some("coloc.test")
    );

    let bare = DesiredConfig {
        node_name: "node-1".into(),
        ..DesiredConfig::default()
    };
    let d = Desired::try_from(&bare).expect("an empty configuration is valid");
    assert_eq!(d.site, None);
    assert_eq!(d.proxy, None);
}

#[test]
fn one_bad_volume_refuses_the_whole_configuration_naming_it() {
    let bad: Vec<fn(&mut VolumeSpec)> = vec![
        |s| s.id = "../etc".into(),
        |s| s.tenant = "Acme".into(),
        |s| s.name = "a/b".into(),
        |s| s.pool = "mirror".into(),
        |s| s.pool_kind = 9,
        |s| s.size_bytes = 1,
        |s| s.state = 0,
        |s| s.snapshots = vec!["ok".into(), "ok".into()],
        |s| s.snapshots = vec!["Not OK".into()],
        |s| s.reservation_bytes = 1 << 40,
        |s| {
            s.pool_kind = PoolKind::LvmThin.into();
            s.reservation_bytes = 64 << 20;
        },
    ];
    for (i, change) in bad.iter().enumerate() {
        let mut wire = config();
        wire.volumes.push(volume());
        wire.volumes[1].id = "fedcba9876543210".into();
        wire.volumes[1].name = "other".into();
        change(&mut wire.volumes[1]);
        let message = refusal(&wire);
        assert!(message.starts_with("volume #1 ("), "case {i}: {message}");
    }
}

#[test]
fn one_bad_pool_refuses_the_whole_configuration_naming_it() {
    let good = pool();
    let mut lvm_mirror = good.clone();
    lvm_mirror.kind = PoolKind::LvmThin.into();
    let mut one_disk_mirror = good.clone();
    one_disk_mirror.disks.truncate(1);
    let mut twice = good.clone();
    twice.disks = vec!["serial:A".into(), "serial:A".into()];
    let mut bad_disk = good.clone();
    bad_disk.disks[0] = "/dev/sda".into();
    let mut no_layout = good.clone();
    no_layout.layout = 0;
    let mut raidz2_of_three = good.clone();
    raidz2_of_three.layout = PoolLayout::Raidz2.into();
    raidz2_of_three.disks = vec!["serial:A".into(), "serial:B".into(), "serial:C".into()];
    for bad in [
        lvm_mirror,
        one_disk_mirror,
        twice,
        bad_disk,
        no_layout,
        raidz2_of_three,
    ] {
        let mut wire = config();
        wire.pools = vec![bad.clone()];
        let message = refusal(&wire);
        assert!(
            message.starts_with("pool #0 (\"tank\")"),
            "{bad:?}: {message}"
        );
    }
}

#[test]
fn bad_identity_site_labels_and_proxy_are_refused() {
    let mut wire = config();
    wire.node_name = "Node 1".into();
    assert!(refusal(&wire).starts_with("invalid node name"));

    let mut wire = config();
    wire.site = "Paris\n1".into();
    assert!(refusal(&wire).starts_with("invalid site"));

    let mut wire = config();
    wire.labels.insert("rack".into(), "b2\u{1b}[31m".into());
    assert!(refusal(&wire).starts_with("invalid label \"rack\""));

    for (domain, email) in [
        ("localhost", ""),
        ("coloc.test\n}", ""),
        ("coloc.test", "x@y.org\n}"),
    ] {
        let mut wire = config();
        wire.proxy = Some(ProxySpec {
            domain: domain.into(),
            acme_email: email.into(),
        });
        assert!(
            refusal(&wire).starts_with("invalid proxy"),
            "{domain:?} {email:?}"
        );
    }
}

#[test]
fn an_app_with_a_crafted_value_is_refused_with_the_configuration() {
    let bad: Vec<fn(&mut AppSpec)> = vec![
        |s| s.tenant = "acme\nExecStartPre=/bin/sh".into(),
        |s| s.app = "Radicale".into(),
        |s| s.exec = "/bin/sh -c 'rm -rf /'".into(),
        |s| s.args = vec!["a\nExecStart=/bin/sh".into()],
        |s| {
            s.environment.insert("PATH=/tmp;".into(), "x".into());
        },
        |s| s.data_dir = "/srv/tenants/other/data/apps/radicale".into(),
        |s| s.config_dir = "/etc/coloc/apps/../../shadow".into(),
        |s| s.uid = 0,
        |s| s.port = 80,
        |s| s.hostname = "radicale.acme.evil.example".into(),
        |s| s.packages = vec!["radicale; rm -rf /".into()],
        |s| s.package_units = vec!["coloc-agent.service".into()],
        |s| s.state = 9,
    ];
    for (i, change) in bad.iter().enumerate() {
        let mut wire = config();
        change(&mut wire.apps[0]);
        let message = refusal(&wire);
        assert!(message.starts_with("app #0 ("), "case {i}: {message}");
        assert!(!message.contains('\n'), "case {i}: {message}");
    }
}

#[test]
fn a_removed_app_needs_only_its_identity() {
    let mut wire = config();
    wire.apps[0].state = AppState::Removed.into();
    wire.apps[0].exec = "not a path".into();
    wire.apps[0].port = 0;
    let d = Desired::try_from(&wire).expect("removable whatever its other fields");
    let AppEntry::Remove(id) = &d.apps[0] else {
        panic!("a removed app is removed: {:?}", d.apps[0]);
    };
    assert_eq!(id.unit.as_str(), "coloc-app-acme-radicale.service");

    wire.apps[0].tenant = "../acme".into();
    assert!(refusal(&wire).starts_with("app #0 ("));
}

#[test]
fn entries_that_contradict_each_other_are_refused() {
    let mut wire = config();
    wire.pools.push(pool());
    assert_eq!(refusal(&wire), "pool tank is declared twice");

    let mut wire = config();
    wire.volumes.push(volume());
    wire.volumes[1].name = "other".into();
    assert_eq!(refusal(&wire), format!("volume {VOLUME} is declared twice"));

    let mut wire = config();
    wire.volumes.push(volume());
    wire.volumes[1].id = "fedcba9876543210".into();
    assert_eq!(
        refusal(&wire),
        format!("volumes {VOLUME} and fedcba9876543210 both mount at /srv/tenants/acme/data")
    );

    // A purged volume gave its name back.
    wire.volumes[0].state = VolumeState::Purged.into();
    assert!(Desired::try_from(&wire).is_ok());

    let mut wire = config();
    wire.apps.push(app("radicale", 20001));
    assert_eq!(refusal(&wire), "app acme/radicale is declared twice");

    let mut wire = config();
    wire.apps.push(app("wiki", 20000));
    assert_eq!(
        refusal(&wire),
        "port 20000 is declared for both acme/radicale and acme/wiki"
    );

    // A removed instance holds no port.
    let mut wire = config();
    wire.apps.push(app("wiki", 20000));
    wire.apps[0].state = AppState::Removed.into();
    assert!(Desired::try_from(&wire).is_ok());
}
