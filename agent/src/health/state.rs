//! `health.json` in the state directory: the last health policy colocd
//! sent and the maintenance history, so that both survive a restart while
//! the controller is away.

use std::path::Path;

use coloc_proto::agent::v1::HealthPolicy;
use serde::{Deserialize, Serialize};

use super::schedule::Started;

/// The file's name in the state directory.
pub const HEALTH_STATE_FILE: &str = "health.json";

/// What is kept. Unknown fields are refused, so that a file from a newer
/// agent is reported rather than half read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthState {
    /// The policy last sent by colocd; absent before it ever sent one.
    #[serde(default)]
    policy: Option<PolicyFile>,
    /// Per maintenance key, when first seen and last started.
    #[serde(default)]
    pub started: Started,
}

/// [`HealthPolicy`]'s fields, as kept on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    period_secs: u32,
    scrub_period_days: u32,
    short_self_test_period_days: u32,
    long_self_test_period_days: u32,
    scrub_disabled: bool,
    self_tests_disabled: bool,
}

impl HealthState {
    /// Reads the file; a missing file is the default state.
    pub fn load(path: &Path) -> Result<HealthState, String> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| format!("not a health state file: {e}"))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HealthState::default()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Writes the file atomically, readable by root only.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        crate::durable::write_atomic(path, &bytes, 0o600).map_err(|e| e.to_string())
    }

    pub fn policy(&self) -> Option<HealthPolicy> {
        self.policy.map(|p| HealthPolicy {
            period_secs: p.period_secs,
            scrub_period_days: p.scrub_period_days,
            short_self_test_period_days: p.short_self_test_period_days,
            long_self_test_period_days: p.long_self_test_period_days,
            scrub_disabled: p.scrub_disabled,
            self_tests_disabled: p.self_tests_disabled,
        })
    }

    pub fn set_policy(&mut self, policy: Option<HealthPolicy>) {
        self.policy = policy.map(|p| PolicyFile {
            period_secs: p.period_secs,
            scrub_period_days: p.scrub_period_days,
            short_self_test_period_days: p.short_self_test_period_days,
            long_self_test_period_days: p.long_self_test_period_days,
            scrub_disabled: p.scrub_disabled,
            self_tests_disabled: p.self_tests_disabled,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_and_history_survive_a_restart_and_garbage_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(HEALTH_STATE_FILE);
        assert_eq!(HealthState::load(&path), Ok(HealthState::default()));

        let mut state = HealthState::default();
        let policy = HealthPolicy {
            period_secs: 30,
            scrub_period_days: 14,
            self_tests_disabled: true,
            ..HealthPolicy::default()
        };
        state.set_policy(Some(policy));
        state.started.record_start("scrub:tank", 1_800_000_000);
        state.save(&path).expect("save");
        let back = HealthState::load(&path).expect("load");
        assert_eq!(back, state);
        assert_eq!(back.policy(), Some(policy));

        std::fs::write(&path, b"{\"policy\": 12}").expect("write");
        assert!(HealthState::load(&path).is_err());
    }
}
