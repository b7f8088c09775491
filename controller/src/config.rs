//! colocd's configuration: `<data_dir>/colocd.toml`, written by
//! `colocd init` and read by `colocd serve`. Strict: unknown keys are
//! refused so that a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use coloc_proto::apps::{check_acme_email, check_apps_domain};
use coloc_proto::error_chain;
use serde::{Deserialize, Serialize};

mod health;

pub use self::health::{AlertsConfig, HealthConfig};
use crate::metrics::MetricsConfig;
use crate::notify::NotifyConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    /// Address the gRPC endpoint (agents and public API) listens on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Extra DNS names or IP addresses for colocd's server certificate
    /// (besides `colocd`, `localhost`, 127.0.0.1 and ::1).
    #[serde(default)]
    pub tls_names: Vec<String>,
    /// A node whose session dropped is marked unreachable after this long.
    #[serde(default = "default_unreachable_after")]
    pub unreachable_after_secs: u64,
    /// Interval agents are told to send heartbeats at.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_interval_secs: u32,
    /// Heartbeats are folded in memory and written to the database in
    /// one batch this often.
    #[serde(default = "default_flush")]
    pub seen_flush_ms: u64,
    /// Storage quota given to a new tenant (admins change it per tenant).
    #[serde(default = "default_tenant_quota")]
    pub default_tenant_quota_bytes: u64,
    /// Apps are reached at `https://<app>.<tenant>.<apps_domain>/`.
    #[serde(default = "default_apps_domain")]
    pub apps_domain: String,
    /// ACME account e-mail the nodes' reverse proxies get certificates
    /// with; empty: the proxies' internal CA (tests, no ACME server).
    #[serde(default)]
    pub acme_email: String,
    /// A directory of `<app>.toml` files replacing the catalog built into
    /// colocd; relative to the data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_dir: Option<PathBuf>,
    /// Days between a membership's expiry and the freeze of its
    /// association (read-only for its users), the same for every
    /// association; 0 freezes the day after the last paid day.
    #[serde(default = "default_membership_grace")]
    pub membership_grace_days: u32,
    /// Connections colocd holds open at once (agents hold one each, so
    /// this is above the fleet's size, and below the process's open-file
    /// limit); further clients wait until one closes.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Connections one address (an IPv4 address or an IPv6 /64) may hold
    /// at once; further ones are closed as they come.
    #[serde(default = "default_max_connections_per_address")]
    pub max_connections_per_address: u32,
    /// Enrollment attempts one address may make per minute; further ones
    /// are refused at once (agents retry with backoff).
    #[serde(default = "default_enrollments_per_minute")]
    pub enrollments_per_minute: u32,
    /// Lifetime of the node certificates colocd signs, at enrollment and
    /// at each renewal (renewed over the session after two thirds of it).
    #[serde(default = "default_node_cert_days")]
    pub node_cert_days: u32,
    /// `[health]`: the health policy sent to every agent.
    #[serde(default)]
    pub health: HealthConfig,
    /// `[alerts]`: the thresholds of the alert rules.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// `[notify]`: who is told about alerts, by e-mail and webhooks.
    #[serde(default, skip_serializing_if = "NotifyConfig::is_default")]
    pub notify: NotifyConfig,
    /// `[metrics]`: the Prometheus endpoint; absent, none is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsConfig>,
}

/// Longest `membership_grace_days`: past a year, the membership is two
/// fees behind.
pub const MAX_MEMBERSHIP_GRACE_DAYS: u32 = 365;

/// Shortest and longest node certificate lifetime `node_cert_days` takes.
pub const NODE_CERT_DAYS: std::ops::RangeInclusive<u32> = 30..=1825;

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7443))
}
fn default_unreachable_after() -> u64 {
    30
}
fn default_heartbeat() -> u32 {
    10
}
fn default_flush() -> u64 {
    1000
}
fn default_tenant_quota() -> u64 {
    100 << 30
}
fn default_membership_grace() -> u32 {
    30
}
fn default_apps_domain() -> String {
    "coloc.test".into()
}
fn default_max_connections() -> u32 {
    16_384
}
fn default_max_connections_per_address() -> u32 {
    256
}
fn default_enrollments_per_minute() -> u32 {
    30
}
fn default_node_cert_days() -> u32 {
    365
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            tls_names: Vec::new(),
            unreachable_after_secs: default_unreachable_after(),
            heartbeat_interval_secs: default_heartbeat(),
            seen_flush_ms: default_flush(),
            default_tenant_quota_bytes: default_tenant_quota(),
            apps_domain: default_apps_domain(),
            acme_email: String::new(),
            catalog_dir: None,
            membership_grace_days: default_membership_grace(),
            max_connections: default_max_connections(),
            max_connections_per_address: default_max_connections_per_address(),
            enrollments_per_minute: default_enrollments_per_minute(),
            node_cert_days: default_node_cert_days(),
            health: HealthConfig::default(),
            alerts: AlertsConfig::default(),
            notify: NotifyConfig::default(),
            metrics: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid colocd configuration")]
    Parse {
        path: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

pub const CONFIG_FILE: &str = "colocd.toml";

impl ControllerConfig {
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let cfg: ControllerConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_string(),
            source,
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let invalid = |reason: &str| ConfigError::Invalid {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        if !(1..=3600).contains(&self.heartbeat_interval_secs) {
            return Err(invalid(
                "heartbeat_interval_secs must be between 1 and 3600",
            ));
        }
        if self.unreachable_after_secs == 0 {
            return Err(invalid("unreachable_after_secs must be at least 1"));
        }
        if !(10..=60_000).contains(&self.seen_flush_ms) {
            return Err(invalid("seen_flush_ms must be between 10 and 60000"));
        }
        if !NODE_CERT_DAYS.contains(&self.node_cert_days) {
            return Err(invalid(&format!(
                "node_cert_days must be between {} and {} (a node offline for more than a \
                 third of it may find its certificate expired)",
                NODE_CERT_DAYS.start(),
                NODE_CERT_DAYS.end()
            )));
        }
        // The store keeps sizes in signed 64-bit integers.
        if i64::try_from(self.default_tenant_quota_bytes).is_err() {
            return Err(invalid("default_tenant_quota_bytes is too large"));
        }
        if self.membership_grace_days > MAX_MEMBERSHIP_GRACE_DAYS {
            return Err(invalid("membership_grace_days must be between 0 and 365"));
        }
        // The agents check the proxy settings with the same rules: a value
        // colocd accepts is one every node accepts.
        check_apps_domain("apps_domain", &self.apps_domain)
            .map_err(|e| invalid(&error_chain(&e)))?;
        if !self.acme_email.is_empty() {
            check_acme_email(&self.acme_email).map_err(|e| invalid(&error_chain(&e)))?;
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err(invalid("max_connections must be between 1 and 1000000"));
        }
        if !(1..=self.max_connections).contains(&self.max_connections_per_address) {
            return Err(invalid(
                "max_connections_per_address must be between 1 and max_connections",
            ));
        }
        if !(1..=1_000_000).contains(&self.enrollments_per_minute) {
            return Err(invalid(
                "enrollments_per_minute must be between 1 and 1000000",
            ));
        }
        self.health.validate().map_err(|r| invalid(&r))?;
        self.alerts.validate().map_err(|r| invalid(&r))?;
        self.notify
            .validate()
            .map_err(|e| invalid(&e.to_string()))?;
        Ok(())
    }

    /// Lifetime of a node certificate, in seconds.
    pub fn node_cert_ttl_secs(&self) -> i64 {
        i64::from(self.node_cert_days) * 86_400
    }

    /// The catalog directory, resolved against the data directory; None
    /// for the built-in catalog.
    pub fn catalog_path(&self, data_dir: &Path) -> Option<PathBuf> {
        self.catalog_dir.as_ref().map(|d| data_dir.join(d))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_parses() {
        let text = include_str!("../examples/colocd.toml");
        let cfg = ControllerConfig::parse(text, "examples/colocd.toml").unwrap();
        assert_eq!(cfg.listen.port(), 7443);
        assert_eq!(cfg.default_tenant_quota_bytes, 100 << 30);
        assert_eq!(cfg.apps_domain, "apps.coloc.example");
        assert_eq!(cfg.acme_email, "admins@coloc.example");
        assert_eq!(cfg.catalog_dir, None);
        assert_eq!(cfg.membership_grace_days, 30);
        assert_eq!(cfg.node_cert_days, 365);
        assert_eq!(cfg.health.period_secs, 60);
        assert_eq!(cfg.alerts.disk_temperature_celsius, 60);
    }

    #[test]
    fn apps_settings_default_and_are_checked() {
        let cfg = ControllerConfig::parse("", "x").unwrap();
        assert_eq!(cfg.apps_domain, "coloc.test");
        assert_eq!(cfg.acme_email, "");
        assert_eq!(cfg.catalog_path(Path::new("/var/lib/colocd")), None);
        let cfg = ControllerConfig::parse("catalog_dir = \"catalog\"", "x").unwrap();
        assert_eq!(
            cfg.catalog_path(Path::new("/var/lib/colocd")),
            Some(PathBuf::from("/var/lib/colocd/catalog"))
        );
        let cfg = ControllerConfig::parse("catalog_dir = \"/etc/coloc/catalog\"", "x").unwrap();
        assert_eq!(
            cfg.catalog_path(Path::new("/var/lib/colocd")),
            Some(PathBuf::from("/etc/coloc/catalog"))
        );
        for ok in ["coloc.test", "encommun.org", "a.b-c.d1"] {
            assert!(
                ControllerConfig::parse(&format!("apps_domain = {ok:?}"), "x").is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "",
            // One label: no node would serve `<app>.<tenant>.localhost`.
            "localhost",
            "Coloc.test",
            "coloc..test",
            ".coloc.test",
            "coloc.test.",
            "-a.test",
            "a b.test",
            "a;reboot",
            "x\nExecStart=/bin/sh",
            "*.coloc.test",
            "{ reverse_proxy }",
        ] {
            assert!(
                ControllerConfig::parse(&format!("apps_domain = {bad:?}"), "x").is_err(),
                "{bad:?}"
            );
        }
        assert!(ControllerConfig::parse("acme_email = \"admins@encommun.org\"", "x").is_ok());
        for bad in [
            "admins",
            "@encommun.org",
            "admins@",
            "admins@localhost",
            "a b@encommun.org",
            "a@encommun.org\n}",
            "\"a\"@encommun.org",
            "a@b@encommun.org",
            // Nodes refuse these: colocd does too.
            "a%b@encommun.org",
            "a@Encommun.org",
        ] {
            assert!(
                ControllerConfig::parse(&format!("acme_email = {bad:?}"), "x").is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn unknown_keys_refused() {
        let err = ControllerConfig::parse("listen = \"127.0.0.1:1\"\nlisten_port = 3\n", "x")
            .unwrap_err();
        assert!(err.to_string().contains("not a valid"), "{err}");
    }

    #[test]
    fn round_trips() {
        let cfg = ControllerConfig::default();
        assert_eq!(ControllerConfig::parse(&cfg.to_toml(), "x").unwrap(), cfg);
    }

    #[test]
    fn bounds() {
        assert!(ControllerConfig::parse("heartbeat_interval_secs = 0", "x").is_err());
        assert!(ControllerConfig::parse("unreachable_after_secs = 0", "x").is_err());
        assert_eq!(
            ControllerConfig::parse("", "x")
                .unwrap()
                .membership_grace_days,
            30
        );
        for ok in [0, 365] {
            let text = format!("membership_grace_days = {ok}");
            assert_eq!(
                ControllerConfig::parse(&text, "x")
                    .unwrap()
                    .membership_grace_days,
                ok
            );
        }
        for bad in ["366", "-1", "\"30\"", "4294967296"] {
            assert!(
                ControllerConfig::parse(&format!("membership_grace_days = {bad}"), "x").is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            ControllerConfig::parse("", "x")
                .unwrap()
                .node_cert_ttl_secs(),
            365 * 86_400
        );
        for bad in [0, 29, 1826, 100_000] {
            let err = ControllerConfig::parse(&format!("node_cert_days = {bad}"), "x").unwrap_err();
            assert!(err.to_string().contains("node_cert_days"), "{err}");
        }
        for ok in [30, 90, 1825] {
            assert!(ControllerConfig::parse(&format!("node_cert_days = {ok}"), "x").is_ok());
        }
        assert!(
            ControllerConfig::parse("default_tenant_quota_bytes = 18446744073709551615", "x")
                .is_err()
        );
        assert_eq!(
            ControllerConfig::parse("", "x")
                .unwrap()
                .default_tenant_quota_bytes,
            100 << 30
        );
    }

    #[test]
    fn transport_limits_default_and_are_checked() {
        let cfg = ControllerConfig::parse("", "x").unwrap();
        assert_eq!(
            (
                cfg.max_connections,
                cfg.max_connections_per_address,
                cfg.enrollments_per_minute
            ),
            (16_384, 256, 30)
        );
        let cfg = ControllerConfig::parse(
            "max_connections = 100\nmax_connections_per_address = 100\nenrollments_per_minute = 5",
            "x",
        )
        .unwrap();
        assert_eq!(cfg.max_connections_per_address, 100);
        for (bad, says) in [
            ("max_connections = 0", "max_connections must"),
            (
                "max_connections_per_address = 0",
                "max_connections_per_address",
            ),
            (
                "max_connections = 10\nmax_connections_per_address = 11",
                "max_connections_per_address",
            ),
            ("enrollments_per_minute = 0", "enrollments_per_minute"),
            ("max_connections = -1", "not a valid"),
        ] {
            let err = ControllerConfig::parse(bad, "x").unwrap_err();
            assert!(err.to_string().contains(says), "{bad}: {err}");
        }
    }
}
