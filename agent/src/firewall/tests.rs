//! The ruleset for fixed instances, word for word, and the pass that
//! keeps it in force.

use std::collections::HashMap;

use coloc_host::FakeHost;
use coloc_proto::agent::v1::{self as pb, AppSpec, AppState, app_spec};
use coloc_proto::apps::AppIdentity;

use super::*;

const VOLUME: &str = "0123456789abcdef";

fn spec(tenant: &str, name: &str, port: u32, uid: u32) -> AppSpec {
    let data = format!("/srv/tenants/{tenant}/data/apps/{name}");
    AppSpec {
        tenant: tenant.into(),
        app: name.into(),
        state: AppState::Running.into(),
        packages: vec!["radicale".into()],
        exec: "/usr/bin/radicale".into(),
        environment: HashMap::from([("HOME".into(), data.clone())]),
        port,
        data_dir: data,
        config_dir: format!("/etc/coloc/apps/{tenant}-{name}"),
        uid,
        gid: uid,
        hostname: format!("{name}.{tenant}.coloc.test"),
        health: Some(app_spec::Health::HealthTcp(true)),
        volume_id: VOLUME.into(),
        web_auth: coloc_proto::agent::v1::WebAuth::Own.into(),
        ..AppSpec::default()
    }
}

fn deploy(spec: &AppSpec) -> AppEntry {
    AppEntry::Deploy(Box::new(
        AppDecl::from_spec(spec, None).expect("valid spec"),
    ))
}

fn inbound(port: u32, transport: pb::Transport) -> pb::InboundPort {
    pb::InboundPort {
        port,
        transport: transport.into(),
    }
}

/// Two tenants: asso-a with a closed app and one that may go out and opens
/// 5222/tcp and 5222/udp; asso-b with one closed app; a removed instance
/// that counts for nothing.
fn instances() -> Vec<AppEntry> {
    let mut chat = spec("asso-a", "chat", 20_002, 200_001);
    chat.outbound = true;
    chat.inbound = vec![
        inbound(5269, pb::Transport::Tcp),
        inbound(5222, pb::Transport::Tcp),
        inbound(5222, pb::Transport::Udp),
    ];
    let removed = spec("asso-c", "gone", 20_009, 200_009);
    vec![
        deploy(&spec("asso-b", "site", 20_001, 200_002)),
        deploy(&spec("asso-a", "radicale", 20_000, 200_001)),
        deploy(&chat),
        AppEntry::Remove(AppIdentity::try_from(&removed).expect("identity")),
    ]
}

const EXPECTED: &str = include_str!("expected.nft");

#[test]
fn the_ruleset_is_rendered_word_for_word() {
    let text = render_ruleset(&instances());
    assert_eq!(text, EXPECTED);
    coloc_host::firewall::check_scope(&text).expect("touches coloc's table only");
}

#[test]
fn the_same_instances_in_any_order_give_the_same_ruleset() {
    let mut reversed = instances();
    reversed.reverse();
    assert_eq!(render_ruleset(&reversed), render_ruleset(&instances()));
    // Another port, another digest.
    let mut moved = instances();
    moved[0] = deploy(&spec("asso-b", "site", 20_003, 200_002));
    assert_ne!(
        ruleset_comment(&render_ruleset(&moved)),
        ruleset_comment(&render_ruleset(&instances()))
    );
}

#[test]
fn with_no_instance_only_the_nodes_own_ports_are_open() {
    let text = render_ruleset(&[]);
    assert!(text.contains("policy drop;"), "{text}");
    assert!(text.contains("tcp dport { 22, 80, 443 } accept"), "{text}");
    // Empty sets, no elements line: nothing else is open or reachable.
    assert!(!text.contains("elements"), "{text}");
    coloc_host::firewall::check_scope(&text).expect("touches coloc's table only");
}

#[tokio::test]
async fn a_pass_applies_once_and_again_after_the_table_is_lost() {
    let fake = FakeHost::new("node-1");
    let host = fake.host();
    let apps = instances();
    assert!(reconcile_firewall(&host, &apps).await.expect("applied"));
    assert_eq!(fake.firewall.ruleset().as_deref(), Some(EXPECTED));
    assert!(!reconcile_firewall(&host, &apps).await.expect("kept"));
    assert_eq!(fake.firewall.applies(), 1);
    // Someone runs `nft delete table inet coloc`: the next pass puts it back.
    fake.firewall.delete_table();
    assert!(
        reconcile_firewall(&host, &apps)
            .await
            .expect("applied again")
    );
    assert_eq!(fake.firewall.applies(), 2);
    // A kernel that refuses the ruleset is an error the pass reports.
    fake.firewall.delete_table();
    fake.firewall.set_fails(true);
    assert!(reconcile_firewall(&host, &apps).await.is_err());
}

/// What the image loads at boot, before the agent runs, is the agent's own
/// ruleset with nothing deployed: default-deny inbound from the first
/// packet, and the agent's first pass sees its own comment and keeps it.
#[test]
fn the_image_boots_with_the_agents_empty_ruleset() {
    let boot = include_str!("../../../image/rootfs/usr/lib/coloc/firewall-boot.nft");
    let body = |text: &str| -> String {
        text.lines()
            .skip_while(|l| l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    assert_eq!(body(boot), body(&render_ruleset(&[])));
    coloc_host::firewall::check_scope(boot).expect("touches coloc's table only");
}
