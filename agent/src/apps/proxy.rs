//! The node's reverse proxy: Caddy's configuration, rendered by a pure
//! function from the proxy settings and the running instances.
//!
//! Every value that reaches the Caddyfile is checked again here (host
//! names and the ACME e-mail by strict character sets: no space, brace,
//! quote or newline can open a block or a directive).

use coloc_proto::agent::v1::ProxySpec;
use coloc_proto::domain::InvalidInput;

use super::spec::{check_domain, clip};

/// Where Debian's caddy package reads its configuration.
pub const CADDYFILE: &str = "/etc/caddy/Caddyfile";
/// The proxy's unit, shipped by the caddy package.
pub const CADDY_UNIT: &str = "caddy.service";
/// The package that provides it.
pub const CADDY_PACKAGE: &str = "caddy";

/// One route: `https://<hostname>` to `127.0.0.1:<port>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Site {
    pub hostname: String,
    pub port: u16,
    /// Send `Host: 127.0.0.1:<port>` to the app instead of `hostname`.
    pub upstream_host: bool,
}

/// An ACME account e-mail: `local@domain`, the local part of
/// `[A-Za-z0-9._+-]`, the domain by [`check_domain`] (lowercase).
pub fn check_acme_email(email: &str) -> Result<(), InvalidInput> {
    let bad = || {
        InvalidInput::field(
            "acme_email",
            format!("{:?} is not a plain e-mail address", clip(email)),
        )
    };
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || local.len() > 64
        || !local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
    {
        return Err(bad());
    }
    check_domain("acme_email", domain).map_err(|_| bad())
}

/// Checks the proxy settings: a valid domain, an e-mail that is empty or
/// plain.
pub fn check_proxy(proxy: &ProxySpec) -> Result<(), InvalidInput> {
    check_domain("proxy domain", &proxy.domain)?;
    if !proxy.acme_email.is_empty() {
        check_acme_email(&proxy.acme_email)?;
    }
    Ok(())
}

/// The Caddyfile: a global block (`local_certs` without an ACME e-mail,
/// Caddy's internal CA; `email <acme_email>` otherwise), then one block
/// per site, sorted by host name so that the text only changes when the
/// routes do.
pub fn render_caddyfile(proxy: &ProxySpec, sites: &[Site]) -> Result<String, InvalidInput> {
    check_proxy(proxy)?;
    let mut sites = sites.to_vec();
    sites.sort();
    sites.dedup();
    let mut text = String::from(
        "# Written by coloc-agent from the node's desired configuration;\n\
         # local changes are overwritten.\n{\n",
    );
    if proxy.acme_email.is_empty() {
        text.push_str("\tlocal_certs\n");
    } else {
        text.push_str(&format!("\temail {}\n", proxy.acme_email));
    }
    text.push_str("}\n");
    for site in &sites {
        check_domain("site host name", &site.hostname)?;
        if site.port < 1024 {
            return Err(InvalidInput::field(
                "site port",
                format!("{} is below 1024", site.port),
            ));
        }
        if site.upstream_host {
            text.push_str(&format!(
                "\n{} {{\n\treverse_proxy 127.0.0.1:{} {{\n\t\theader_up Host {{upstream_hostport}}\n\t}}\n}}\n",
                site.hostname, site.port
            ));
        } else {
            text.push_str(&format!(
                "\n{} {{\n\treverse_proxy 127.0.0.1:{}\n}}\n",
                site.hostname, site.port
            ));
        }
    }
    Ok(text)
}
