//! The node's packet filter: coloc's nftables table `inet coloc`, rendered
//! by a pure function from the desired instances and kept in force by
//! every pass ([`reconcile_firewall`]).
//!
//! Inbound (chain `input`, policy drop): loopback, replies, ICMP and
//! DHCP, SSH, HTTP and HTTPS (the proxy), and the ports a catalog app
//! declares (`network.inbound`). Nothing else answers on a public address.
//!
//! Outbound (chain `output`), keyed on the socket's owner: only packets
//! from sockets owned by a tenant's uid (at least [`MIN_TENANT_ID`], not
//! nobody) go through chain `tenant`. System accounts (root, the proxy's
//! caddy user, the agent, systemd's) and packets the kernel sends without
//! a socket (neighbour discovery, resets, ICMP errors) are not restricted.
//! A tenant's uid may, on loopback, connect only to the
//! ports of the instances that run as that uid (and to the stub resolver
//! when one of them may go out); every other loopback destination — other
//! tenants' apps, the proxy, anything the node runs — is refused. Beyond
//! loopback only uids with an instance whose catalog entry says
//! `network.outbound` may connect.
//!
//! The table carries a comment with a digest of its text; a pass applies
//! the ruleset again only when the table in the kernel has another comment
//! (changed configuration, or a table flushed or deleted by hand).

use std::collections::{BTreeMap, BTreeSet};

use coloc_host::{Host, HostError};
use coloc_proto::apps::{AppDecl, MIN_TENANT_ID, Transport};
use sha2::{Digest, Sha256};

use crate::desired::AppEntry;

/// The uid no tenant is given (nobody), left alone like system accounts.
const NOBODY: u32 = 65_534;

/// What the ruleset is made of, per instance.
fn deployed(apps: &[AppEntry]) -> impl Iterator<Item = &AppDecl> {
    apps.iter().filter_map(|entry| match entry {
        AppEntry::Deploy(app) => Some(app.as_ref()),
        AppEntry::Remove(_) => None,
    })
}

fn set(out: &mut String, name: &str, kind: &str, elements: &[String]) {
    out.push_str(&format!("\tset {name} {{\n\t\ttype {kind}\n"));
    if !elements.is_empty() {
        out.push_str(&format!("\t\telements = {{ {} }}\n", elements.join(", ")));
    }
    out.push_str("\t}\n\n");
}

/// The whole `nft -f` file for `apps`: it creates the table if missing,
/// deletes it and writes it again, in one transaction. The same instances
/// always give the same text.
pub fn render_ruleset(apps: &[AppEntry]) -> String {
    let mut inbound: BTreeMap<Transport, BTreeSet<u16>> = BTreeMap::new();
    let mut tenant_ports: BTreeSet<(u32, u16)> = BTreeSet::new();
    let mut outbound: BTreeSet<u32> = BTreeSet::new();
    for app in deployed(apps) {
        tenant_ports.insert((app.uid, app.port));
        for port in &app.inbound {
            inbound.entry(port.transport).or_default().insert(port.port);
        }
        if app.outbound {
            outbound.insert(app.uid);
        }
    }
    let ports = |t: Transport| -> Vec<String> {
        inbound
            .get(&t)
            .map(|p| p.iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    };
    let mut body = String::new();
    set(
        &mut body,
        "inbound_tcp",
        "inet_service",
        &ports(Transport::Tcp),
    );
    set(
        &mut body,
        "inbound_udp",
        "inet_service",
        &ports(Transport::Udp),
    );
    set(
        &mut body,
        "tenant_ports",
        "uid . inet_proto . inet_service",
        &tenant_ports
            .iter()
            .map(|(uid, port)| format!("{uid} . tcp . {port}"))
            .collect::<Vec<_>>(),
    );
    set(
        &mut body,
        "outbound_uids",
        "uid",
        &outbound.iter().map(ToString::to_string).collect::<Vec<_>>(),
    );
    body.push_str(
        "\tchain input {\n\
         \t\ttype filter hook input priority filter; policy drop;\n\
         \t\tiif \"lo\" accept\n\
         \t\ticmpv6 type { echo-request, destination-unreachable, packet-too-big, time-exceeded, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept\n\
         \t\tct state established,related accept\n\
         \t\tct state invalid drop\n\
         \t\ticmp type { echo-request, destination-unreachable, time-exceeded } accept\n\
         \t\tudp sport 67 udp dport 68 accept\n\
         \t\tip6 saddr fe80::/10 udp sport 547 udp dport 546 accept\n\
         \t\ttcp dport { 22, 80, 443 } accept\n\
         \t\tudp dport 443 accept\n\
         \t\ttcp dport @inbound_tcp accept\n\
         \t\tudp dport @inbound_udp accept\n\
         \t}\n\n",
    );
    body.push_str(&format!(
        "\tchain output {{\n\
         \t\ttype filter hook output priority filter; policy accept;\n\
         \t\tmeta skuid != {NOBODY} meta skuid >= {MIN_TENANT_ID} jump tenant\n\
         \t}}\n\n\
         \tchain tenant {{\n\
         \t\tct state established,related accept\n\
         \t\toif \"lo\" meta skuid . meta l4proto . th dport @tenant_ports accept\n\
         \t\toif \"lo\" ip daddr 127.0.0.53 meta l4proto {{ tcp, udp }} th dport 53 meta skuid @outbound_uids accept\n\
         \t\toif \"lo\" meta l4proto tcp reject with tcp reset\n\
         \t\toif \"lo\" reject with icmpx admin-prohibited\n\
         \t\tmeta skuid @outbound_uids accept\n\
         \t\tmeta l4proto tcp reject with tcp reset\n\
         \t\treject with icmpx admin-prohibited\n\
         \t}}\n"
    ));
    let digest = hex::encode(Sha256::digest(body.as_bytes()));
    format!(
        "# Written by coloc-agent from the node's desired configuration;\n\
         # local changes are overwritten.\n\
         table inet coloc\n\
         delete table inet coloc\n\
         table inet coloc {{\n\
         \tcomment \"{}\"\n{body}}}\n",
        comment_for(&digest)
    )
}

fn comment_for(digest: &str) -> String {
    format!("coloc-agent sha256:{}", &digest[..16])
}

/// The comment [`render_ruleset`] put in `ruleset`.
pub fn ruleset_comment(ruleset: &str) -> Option<String> {
    coloc_host::firewall::parse_table_comment(ruleset)
}

/// Puts the ruleset for `apps` in force unless the kernel already holds
/// it. Returns whether it was applied.
pub async fn reconcile_firewall(host: &Host, apps: &[AppEntry]) -> Result<bool, HostError> {
    let ruleset = render_ruleset(apps);
    let wanted = ruleset_comment(&ruleset);
    if host.firewall.table_comment().await? == wanted && wanted.is_some() {
        return Ok(false);
    }
    host.firewall.apply(&ruleset).await?;
    tracing::info!(comment = ?wanted, "firewall ruleset applied");
    Ok(true)
}

#[cfg(test)]
mod tests;
