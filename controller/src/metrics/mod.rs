//! Prometheus metrics for the whole fleet, served by colocd (docs/HEALTH.md,
//! "Prometheus and Grafana"). Nodes dial out and may sit behind NAT, so
//! Prometheus scrapes colocd rather than the nodes: colocd renders what
//! it knows of every node (up, last seen, generation lag, each health
//! report's disks, pools, thin pools, filesystems, load, temperatures,
//! units, NICs, clock, reboot), of every volume and app, the firing
//! alerts, and its own sessions, RPC and store latency.
//!
//! This module owns the rendering and the HTTP endpoint, nothing else: it
//! reads the fleet through [`FleetSource`] (implemented by whoever holds
//! the health store and the session registry) and colocd's own latency
//! through [`Metrics`], which the gRPC layer and the store feed.
//!
//! Layout: [`snapshot`] (what is rendered, and the source trait),
//! [`registry`] (latency histograms), [`text`] (the exposition format and
//! its escaping), `render` (the families), [`server`] (GET /metrics).

pub mod layer;
pub mod registry;
mod render;
pub mod server;
pub mod snapshot;
pub mod text;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use layer::RpcMetricsLayer;
pub use registry::Metrics;
pub use render::render;
pub use server::{serve, serve_listener};
pub use snapshot::{
    AlertCount, AppMetrics, AppState, ColocdStatus, FleetSnapshot, FleetSource, NodeHealth,
    NodeMetrics, SnapshotError, VolumeMetrics,
};

/// `[metrics]` in colocd.toml; absent, colocd serves no metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address the plain-HTTP `/metrics` endpoint listens on.
    pub listen: SocketAddr,
    /// A file holding the bearer token Prometheus must present, relative
    /// to the data directory. Required unless `listen` is a loopback
    /// address: the metrics name every tenant, node and app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<PathBuf>,
}

/// Shortest and longest token accepted.
pub const TOKEN_LEN: std::ops::RangeInclusive<usize> = 16..=4096;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot listen on {listen} for metrics")]
    Bind {
        listen: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the metrics bearer token file {path}")]
    TokenRead {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("metrics bearer token file {path}: {reason}")]
    Token { path: String, reason: String },
    #[error(
        "[metrics] listens on {listen}, which is not a loopback address, without \
         bearer_token_file: set one, or listen on 127.0.0.1"
    )]
    Unprotected { listen: SocketAddr },
}

impl MetricsConfig {
    /// The bearer token scrapes must present, read from
    /// `bearer_token_file` (resolved against `data_dir`); None when the
    /// endpoint is open, which only a loopback `listen` allows. The file
    /// holds the token alone (a trailing newline is ignored), 16 to 4096
    /// visible ASCII characters, and must not be readable by others.
    pub fn bearer_token(&self, data_dir: &Path) -> Result<Option<String>, MetricsError> {
        let Some(file) = &self.bearer_token_file else {
            if self.listen.ip().is_loopback() {
                return Ok(None);
            }
            return Err(MetricsError::Unprotected {
                listen: self.listen,
            });
        };
        let path = data_dir.join(file);
        let shown = path.display().to_string();
        let invalid = |reason: &str| MetricsError::Token {
            path: shown.clone(),
            reason: reason.to_string(),
        };
        let meta = std::fs::metadata(&path).map_err(|source| MetricsError::TokenRead {
            path: shown.clone(),
            source,
        })?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            if meta.permissions().mode() & 0o007 != 0 {
                return Err(invalid(
                    "is readable or writable by others (chmod o= the file)",
                ));
            }
        }
        let text = std::fs::read_to_string(&path).map_err(|source| MetricsError::TokenRead {
            path: shown.clone(),
            source,
        })?;
        let token = text.trim_end_matches(['\n', '\r']);
        if !TOKEN_LEN.contains(&token.len()) {
            return Err(invalid(&format!(
                "the token must be {} to {} characters long",
                TOKEN_LEN.start(),
                TOKEN_LEN.end()
            )));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "the token must be visible ASCII characters only (no spaces)",
            ));
        }
        Ok(Some(token.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn config(listen: &str, file: Option<&str>) -> MetricsConfig {
        MetricsConfig {
            listen: listen.parse().unwrap(),
            bearer_token_file: file.map(PathBuf::from),
        }
    }

    fn write(dir: &Path, name: &str, text: &str, mode: u32) {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn loopback_may_go_without_a_token_anything_else_may_not() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            config("127.0.0.1:9464", None)
                .bearer_token(dir.path())
                .unwrap(),
            None
        );
        assert!(matches!(
            config("0.0.0.0:9464", None).bearer_token(dir.path()),
            Err(MetricsError::Unprotected { .. })
        ));
    }

    #[test]
    fn token_is_read_relative_to_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "token", "0123456789abcdef-XYZ\n", 0o600);
        let token = config("[::]:9464", Some("token"))
            .bearer_token(dir.path())
            .unwrap();
        assert_eq!(token.as_deref(), Some("0123456789abcdef-XYZ"));
    }

    #[test]
    fn bad_token_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "short", "abc\n", 0o600);
        write(dir.path(), "spaces", "0123456789 abcdef\n", 0o600);
        write(dir.path(), "open", "0123456789abcdef\n", 0o644);
        for name in ["short", "spaces", "open"] {
            let err = config("127.0.0.1:9464", Some(name))
                .bearer_token(dir.path())
                .unwrap_err();
            assert!(matches!(err, MetricsError::Token { .. }), "{name}: {err}");
        }
        let err = config("127.0.0.1:9464", Some("missing"))
            .bearer_token(dir.path())
            .unwrap_err();
        assert!(matches!(err, MetricsError::TokenRead { .. }));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<MetricsConfig>("listen = \"127.0.0.1:9464\"\ntoken = \"x\"\n");
        assert!(err.is_err());
    }
}
