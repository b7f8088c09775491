//! colocd's configuration: `<data_dir>/colocd.toml`, written by
//! `colocd init` and read by `colocd serve`. Strict: unknown keys are
//! refused so that a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

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
}

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

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            tls_names: Vec::new(),
            unreachable_after_secs: default_unreachable_after(),
            heartbeat_interval_secs: default_heartbeat(),
            seen_flush_ms: default_flush(),
            default_tenant_quota_bytes: default_tenant_quota(),
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
        // The store keeps sizes in signed 64-bit integers.
        if i64::try_from(self.default_tenant_quota_bytes).is_err() {
            return Err(invalid("default_tenant_quota_bytes is too large"));
        }
        Ok(())
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
}
