//! The node's reverse proxy: Caddy's configuration, rendered by a pure
//! function from the proxy settings and the running instances.
//!
//! Every value that reaches the Caddyfile is checked by strict character
//! sets (proto's [`ProxyDecl`] for the domain and the ACME e-mail, the
//! domain rule again here for each site's host name): no space, brace,
//! quote or newline can open a block or a directive.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use coloc_proto::apps::ProxyDecl;
use coloc_proto::apps::web::{WebAccess, WebLogin, check_password_hash};
use coloc_proto::domain::{InvalidInput, check_domain_name, check_name};

/// Where Debian's caddy package reads its configuration.
pub const CADDYFILE: &str = "/etc/caddy/Caddyfile";
/// The proxy's unit: coloc's own, shipped by the image
/// (`image/rootfs/etc/systemd/system/coloc-proxy.service`), sandboxed like
/// the app units: it binds 80 and 443, reads its configuration, keeps its
/// certificates under /var/lib/caddy, and nothing more.
pub const CADDY_UNIT: &str = "coloc-proxy.service";
/// The units Debian's caddy package ships, masked and stopped: they would
/// run Caddy as root-started daemons without sandboxing, and
/// `caddy-api.service` with its admin API on TCP.
pub const DEBIAN_CADDY_UNITS: &[&str] = &["caddy.service", "caddy-api.service"];
/// Caddy's admin API: a unix socket in the unit's runtime directory
/// (mode 0700, owned by the caddy user), never a TCP port a tenant's app
/// could reach on loopback.
pub const ADMIN_SOCKET: &str = "/run/coloc-proxy/admin.sock";
/// The package that provides it.
pub const CADDY_PACKAGE: &str = "caddy";

/// One route: `https://<hostname>` to `127.0.0.1:<port>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Site {
    pub hostname: String,
    pub port: u16,
    /// Send `Host: 127.0.0.1:<port>` to the app instead of `hostname`.
    pub upstream_host: bool,
    pub access: SiteAccess,
}

/// What the proxy asks before it passes a request on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SiteAccess {
    /// Nothing: the site is public, or the app asks for its own login.
    Open,
    /// HTTP basic authentication with this user and bcrypt hash; the
    /// `Authorization` header stays with the proxy.
    Login { user: String, hash: String },
    /// The app has no login of its own and the tenant set no password
    /// yet: 503 with a word on what to do, nothing reaches the app.
    Locked,
}

impl From<&WebAccess> for SiteAccess {
    fn from(web: &WebAccess) -> Self {
        match web {
            WebAccess::Public | WebAccess::Own => SiteAccess::Open,
            WebAccess::Proxy(None) => SiteAccess::Locked,
            WebAccess::Proxy(Some(WebLogin { user, hash })) => SiteAccess::Login {
                user: user.to_string(),
                hash: hash.to_string(),
            },
        }
    }
}

/// What a locked route answers.
pub const LOCKED_BODY: &str = "This app has no login of its own and its association has not set a password yet (coloc app set-password).";

/// The Caddyfile: a global block (the admin API on [`ADMIN_SOCKET`];
/// `local_certs` without an ACME e-mail, Caddy's internal CA;
/// `email <acme_email>` otherwise), then one block
/// per site, sorted by host name so that the text only changes when the
/// routes do.
pub fn render_caddyfile(proxy: &ProxyDecl, sites: &[Site]) -> Result<String, InvalidInput> {
    let mut sites = sites.to_vec();
    sites.sort();
    sites.dedup();
    let mut text = String::from(
        "# Written by coloc-agent from the node's desired configuration;\n\
         # local changes are overwritten.\n{\n",
    );
    text.push_str(&format!("\tadmin unix/{ADMIN_SOCKET}\n"));
    match &proxy.acme_email {
        None => text.push_str("\tlocal_certs\n"),
        Some(email) => text.push_str(&format!("\temail {email}\n")),
    }
    text.push_str("}\n");
    for site in &sites {
        check_domain_name("site host name", &site.hostname)?;
        if site.port < 1024 {
            return Err(InvalidInput::field(
                "site port",
                format!("{} is below 1024", site.port),
            ));
        }
        text.push_str(&format!("\n{} {{\n", site.hostname));
        let mut upstream = Vec::new();
        match &site.access {
            SiteAccess::Open => {}
            SiteAccess::Locked => {
                text.push_str(&format!("\trespond \"{LOCKED_BODY}\" 503\n}}\n"));
                continue;
            }
            SiteAccess::Login { user, hash } => {
                // Checked again here: these words go into the Caddyfile.
                check_name("web user", user)?;
                check_password_hash("password hash", hash)?;
                // Caddy 2.6 (Debian bookworm) reads the hash base64-encoded
                // and names the directive `basicauth`.
                text.push_str(&format!(
                    "\tbasicauth {{\n\t\t{user} {}\n\t}}\n",
                    BASE64.encode(hash)
                ));
                upstream.push("header_up -Authorization");
            }
        }
        if site.upstream_host {
            upstream.push("header_up Host {upstream_hostport}");
        }
        if upstream.is_empty() {
            text.push_str(&format!("\treverse_proxy 127.0.0.1:{}\n}}\n", site.port));
        } else {
            text.push_str(&format!("\treverse_proxy 127.0.0.1:{} {{\n", site.port));
            for line in upstream {
                text.push_str(&format!("\t\t{line}\n"));
            }
            text.push_str("\t}\n}\n");
        }
    }
    Ok(text)
}
