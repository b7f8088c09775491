//! The agent's configuration: `/etc/coloc/agent.toml`, parsed strictly.
//!
//! The file is what a sysadmin writes once per server (controller address,
//! the cooperative's CA, a join token until the node is enrolled). Unknown
//! keys are refused so that a typo never silently falls back to a default.
//! Parsing resolves defaults and validates every value, so the rest of the
//! agent works with an [`AgentConfig`] it can trust. This module does no
//! network I/O; it reads only the files it is asked to read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use coloc_proto::domain::{InvalidInput, NodeName};
use serde::Deserialize;

/// Where the agent keeps its key, certificate, ledger and status.
pub const DEFAULT_STATE_DIR: &str = coloc_proto::seed::STATE_DIR;
/// Where `coloc-agent run` looks for its configuration by default.
pub const DEFAULT_CONFIG_PATH: &str = coloc_proto::seed::AGENT_CONFIG_PATH;

const DEFAULT_BACKOFF_INITIAL_MS: u64 = 500;
const DEFAULT_BACKOFF_MAX_MS: u64 = 30_000;
const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10_000;
/// How often the agent reconciles again from its ledger without a new
/// configuration (docs/STORAGE.md: usage stays fresh, a pool that comes
/// back is picked up).
pub const DEFAULT_RESYNC_INTERVAL_SECS: u64 = 30;
/// Bounds on `resync_interval_secs`: more often than every second is
/// busy-looping on `zfs list`; less often than hourly leaves mounts and
/// usage figures stale for too long.
pub const RESYNC_INTERVAL_SECS_RANGE: std::ops::RangeInclusive<u64> = 1..=3600;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid agent configuration")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// A value broke one of the rules the agent shares with the seed and
    /// the CLI (coloc_proto): the message names the field.
    #[error(transparent)]
    Rule(#[from] InvalidInput),
    #[error("invalid node_name")]
    NodeName(#[source] InvalidInput),
    #[error(
        "node_name is not set and the host name cannot be used as one; set node_name in the configuration"
    )]
    NoHostName(#[source] std::io::Error),
}

impl ConfigError {
    fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// The file as written, before defaults and validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    controller: String,
    ca_file: PathBuf,
    join_token: Option<String>,
    join_token_file: Option<PathBuf>,
    node_name: Option<String>,
    state_dir: Option<PathBuf>,
    resync_interval_secs: Option<u64>,
    #[serde(default)]
    session: RawSession,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSession {
    backoff_initial_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
}

/// Where the cooperative's CA certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSource {
    /// A PEM file (`ca_file` in the configuration).
    File(PathBuf),
    /// PEM text held in memory (simulated agents share one CA string).
    Pem(String),
}

impl CaSource {
    /// Reads the PEM bytes.
    pub fn read(&self) -> Result<Vec<u8>, ConfigError> {
        match self {
            CaSource::File(path) => std::fs::read(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            }),
            CaSource::Pem(pem) => Ok(pem.as_bytes().to_vec()),
        }
    }
}

/// Where the one-time join token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinTokenSource {
    Inline(String),
    /// Read again on every enrollment attempt, so that a sysadmin who
    /// replaces a used or expired token does not have to restart the agent.
    File(PathBuf),
}

impl JoinTokenSource {
    /// The token, trimmed of surrounding white space.
    pub fn read(&self) -> Result<String, ConfigError> {
        let raw = match self {
            JoinTokenSource::Inline(token) => token.clone(),
            JoinTokenSource::File(path) => {
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?
            }
        };
        let token = raw.trim().to_owned();
        check_join_token(&token)?;
        Ok(token)
    }
}

fn check_join_token(token: &str) -> Result<(), ConfigError> {
    coloc_proto::seed::check_join_token(token).map_err(ConfigError::from)
}

/// The `[session]` table: how the agent dials the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// First reconnection delay; doubles up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Bound on TCP connect, TLS handshake and opening the session.
    pub connect_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            backoff_initial: Duration::from_millis(DEFAULT_BACKOFF_INITIAL_MS),
            backoff_max: Duration::from_millis(DEFAULT_BACKOFF_MAX_MS),
            connect_timeout: Duration::from_millis(DEFAULT_CONNECT_TIMEOUT_MS),
        }
    }
}

/// A validated agent configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// `https://host:port` of colocd. The certificate presented there must
    /// carry [`coloc_proto::CONTROLLER_TLS_NAME`], whatever address is dialled.
    pub controller: String,
    pub ca: CaSource,
    /// Only needed until the node is enrolled.
    pub join_token: Option<JoinTokenSource>,
    pub node_name: NodeName,
    pub state_dir: PathBuf,
    pub session: SessionConfig,
    /// Time between two reconciliation passes from the ledger when no new
    /// configuration arrives.
    pub resync_interval: Duration,
    /// The directory app units, app configuration and the Caddyfile are
    /// written under: `/` for the daemon (not settable in the file, a
    /// node has one root); simulated agents use a private directory so
    /// that they never write to the machine running them.
    pub host_root: PathBuf,
}

impl AgentConfig {
    /// A configuration with every optional value at its default.
    pub fn new(
        controller: impl Into<String>,
        ca: CaSource,
        node_name: NodeName,
        state_dir: impl Into<PathBuf>,
    ) -> Result<AgentConfig, ConfigError> {
        let controller = controller.into();
        check_controller(&controller)?;
        Ok(AgentConfig {
            controller,
            ca,
            join_token: None,
            node_name,
            state_dir: state_dir.into(),
            session: SessionConfig::default(),
            resync_interval: Duration::from_secs(DEFAULT_RESYNC_INTERVAL_SECS),
            host_root: PathBuf::from("/"),
        })
    }

    /// Reads and validates a configuration file. Relative paths inside it
    /// are taken relative to the file's directory.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let raw: RawConfig = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_raw(raw, Some(base))
    }

    /// Parses configuration text; paths are kept as written.
    pub fn from_toml_str(text: &str) -> Result<AgentConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: PathBuf::from("<string>"),
            source,
        })?;
        Self::from_raw(raw, None)
    }

    fn from_raw(raw: RawConfig, base: Option<&Path>) -> Result<AgentConfig, ConfigError> {
        let resolve = |p: PathBuf| match base {
            Some(base) if p.is_relative() => base.join(p),
            _ => p,
        };
        check_controller(&raw.controller)?;
        if raw.ca_file.as_os_str().is_empty() {
            return Err(ConfigError::invalid("ca_file", "empty path"));
        }
        let join_token = match (raw.join_token, raw.join_token_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    "join_token",
                    "set join_token or join_token_file, not both",
                ));
            }
            (Some(token), None) => {
                check_join_token(token.trim())?;
                Some(JoinTokenSource::Inline(token.trim().to_owned()))
            }
            (None, Some(path)) => Some(JoinTokenSource::File(resolve(path))),
            (None, None) => None,
        };
        let node_name = match raw.node_name {
            Some(name) => NodeName::new(name).map_err(ConfigError::NodeName)?,
            None => default_node_name()?,
        };
        let state_dir = resolve(
            raw.state_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
        );
        if state_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("state_dir", "empty path"));
        }
        let session = session_config(raw.session)?;
        let resync = raw
            .resync_interval_secs
            .unwrap_or(DEFAULT_RESYNC_INTERVAL_SECS);
        if !RESYNC_INTERVAL_SECS_RANGE.contains(&resync) {
            return Err(ConfigError::invalid(
                "resync_interval_secs",
                format!(
                    "{resync} is not between {} and {}",
                    RESYNC_INTERVAL_SECS_RANGE.start(),
                    RESYNC_INTERVAL_SECS_RANGE.end()
                ),
            ));
        }
        Ok(AgentConfig {
            controller: raw.controller,
            ca: CaSource::File(resolve(raw.ca_file)),
            join_token,
            node_name,
            state_dir,
            session,
            resync_interval: Duration::from_secs(resync),
            host_root: PathBuf::from("/"),
        })
    }
}

fn session_config(raw: RawSession) -> Result<SessionConfig, ConfigError> {
    let initial = raw.backoff_initial_ms.unwrap_or(DEFAULT_BACKOFF_INITIAL_MS);
    let max = raw.backoff_max_ms.unwrap_or(DEFAULT_BACKOFF_MAX_MS);
    let connect = raw.connect_timeout_ms.unwrap_or(DEFAULT_CONNECT_TIMEOUT_MS);
    if initial == 0 {
        return Err(ConfigError::invalid(
            "session.backoff_initial_ms",
            "must be at least 1",
        ));
    }
    if max < initial {
        return Err(ConfigError::invalid(
            "session.backoff_max_ms",
            format!("{max} is below backoff_initial_ms ({initial})"),
        ));
    }
    // A day between attempts would leave a node unmanaged for no reason.
    if max > 86_400_000 {
        return Err(ConfigError::invalid(
            "session.backoff_max_ms",
            "longer than a day",
        ));
    }
    if !(100..=600_000).contains(&connect) {
        return Err(ConfigError::invalid(
            "session.connect_timeout_ms",
            "must be between 100 and 600000",
        ));
    }
    Ok(SessionConfig {
        backoff_initial: Duration::from_millis(initial),
        backoff_max: Duration::from_millis(max),
        connect_timeout: Duration::from_millis(connect),
    })
}

fn check_controller(url: &str) -> Result<(), ConfigError> {
    coloc_proto::seed::check_controller_url(url).map_err(ConfigError::from)
}

/// The node name used when the configuration sets none: the host's short
/// name (the part before the first '.'), which must already be a valid
/// node name; the agent never rewrites it, so that the controller and the
/// sysadmin see the same name.
pub fn default_node_name() -> Result<NodeName, ConfigError> {
    let raw =
        std::fs::read_to_string("/proc/sys/kernel/hostname").map_err(ConfigError::NoHostName)?;
    let short = raw.trim().split('.').next().unwrap_or_default();
    NodeName::new(short).map_err(ConfigError::NodeName)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
controller = "https://127.0.0.1:7443"
ca_file = "/etc/coloc/ca.pem"
node_name = "n1"
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let cfg = AgentConfig::from_toml_str(MINIMAL).expect("parses");
        assert_eq!(cfg.controller, "https://127.0.0.1:7443");
        assert_eq!(cfg.ca, CaSource::File("/etc/coloc/ca.pem".into()));
        assert_eq!(cfg.node_name.as_str(), "n1");
        assert_eq!(cfg.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(cfg.join_token, None);
        assert_eq!(cfg.session, SessionConfig::default());
        assert_eq!(cfg.session.backoff_initial, Duration::from_millis(500));
        assert_eq!(cfg.session.backoff_max, Duration::from_millis(30_000));
        assert_eq!(cfg.session.connect_timeout, Duration::from_millis(10_000));
        assert_eq!(cfg.resync_interval, Duration::from_secs(30));
    }

    #[test]
    fn resync_interval_is_set_and_bounded() {
        let cfg = AgentConfig::from_toml_str(&format!("{MINIMAL}resync_interval_secs = 5\n"))
            .expect("parses");
        assert_eq!(cfg.resync_interval, Duration::from_secs(5));
        for bad in ["0", "3601", "-1", "\"30\""] {
            let text = format!("{MINIMAL}resync_interval_secs = {bad}\n");
            assert!(AgentConfig::from_toml_str(&text).is_err(), "{text}");
        }
    }

    #[test]
    fn session_table_overrides_defaults() {
        let text = format!(
            "{MINIMAL}join_token = \"abc\"\n[session]\nbackoff_initial_ms = 100\nbackoff_max_ms = 2000\nconnect_timeout_ms = 300\n"
        );
        let cfg = AgentConfig::from_toml_str(&text).expect("parses");
        assert_eq!(
            cfg.join_token,
            Some(JoinTokenSource::Inline("abc".to_owned()))
        );
        assert_eq!(cfg.session.backoff_initial, Duration::from_millis(100));
        assert_eq!(cfg.session.backoff_max, Duration::from_millis(2000));
        assert_eq!(cfg.session.connect_timeout, Duration::from_millis(300));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = format!("{MINIMAL}controler = \"https://x:1\"\n");
        let err = AgentConfig::from_toml_str(&text).expect_err("typo refused");
        assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
        let text = format!("{MINIMAL}[session]\nbackoff_ms = 3\n");
        assert!(AgentConfig::from_toml_str(&text).is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        let cases = [
            MINIMAL.replace("https://", "http://"),
            MINIMAL.replace("\"n1\"", "\"N1\""),
            MINIMAL.replace("\"n1\"", "\"n1.example.org\""),
            format!("{MINIMAL}join_token = \"a\"\njoin_token_file = \"/t\"\n"),
            format!("{MINIMAL}join_token = \"  \"\n"),
            format!("{MINIMAL}[session]\nbackoff_initial_ms = 0\n"),
            format!("{MINIMAL}[session]\nbackoff_initial_ms = 5000\nbackoff_max_ms = 10\n"),
            format!("{MINIMAL}[session]\nconnect_timeout_ms = 1\n"),
        ];
        for text in cases {
            assert!(AgentConfig::from_toml_str(&text).is_err(), "{text}");
        }
    }

    #[test]
    fn load_resolves_relative_paths_against_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "controller = \"https://colocd:7443\"\nca_file = \"ca.pem\"\nnode_name = \"n2\"\njoin_token_file = \"token\"\nstate_dir = \"state\"\n",
        )
        .expect("write");
        let cfg = AgentConfig::load(&path).expect("loads");
        assert_eq!(cfg.ca, CaSource::File(dir.path().join("ca.pem")));
        assert_eq!(cfg.state_dir, dir.path().join("state"));
        let Some(JoinTokenSource::File(token_path)) = &cfg.join_token else {
            panic!("token file expected, got {:?}", cfg.join_token);
        };
        assert_eq!(token_path, &dir.path().join("token"));
        std::fs::write(token_path, "  secret-1\n").expect("write token");
        let token = cfg.join_token.as_ref().map(JoinTokenSource::read);
        assert_eq!(token.transpose().expect("reads"), Some("secret-1".into()));
    }
}
