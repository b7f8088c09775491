//! The `[health]` and `[alerts]` tables of `colocd.toml`: the health
//! policy every agent is sent (docs/HEALTH.md, "What the agent watches",
//! "Maintenance the agent schedules") and the thresholds of colocd's alert
//! rules (docs/HEALTH.md, "Alert rules").

use coloc_proto::agent::v1::HealthPolicy;
use coloc_proto::health::{MAX_MAINTENANCE_PERIOD_DAYS, MAX_PERIOD_SECS, MIN_PERIOD_SECS};
use serde::{Deserialize, Serialize};

/// `[health]`: what every agent is told in its session parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// How often each agent sends a full report, 10 to 3600 s.
    pub period_secs: u32,
    /// Scrub each ZFS pool this often, 1 to 366 days; 0 turns scrubs off.
    pub scrub_period_days: u32,
    /// SMART short and long self-tests of each disk this often, 1 to 366
    /// days.
    pub short_self_test_period_days: u32,
    pub long_self_test_period_days: u32,
    /// Whether agents run the scheduled SMART self-tests at all.
    pub self_tests: bool,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            period_secs: coloc_proto::health::DEFAULT_PERIOD_SECS,
            scrub_period_days: coloc_proto::health::DEFAULT_SCRUB_PERIOD_DAYS,
            short_self_test_period_days: coloc_proto::health::DEFAULT_SHORT_SELF_TEST_PERIOD_DAYS,
            long_self_test_period_days: coloc_proto::health::DEFAULT_LONG_SELF_TEST_PERIOD_DAYS,
            self_tests: true,
        }
    }
}

impl HealthConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        if !(MIN_PERIOD_SECS..=MAX_PERIOD_SECS).contains(&self.period_secs) {
            return Err(format!(
                "health.period_secs must be between {MIN_PERIOD_SECS} and {MAX_PERIOD_SECS}"
            ));
        }
        if self.scrub_period_days > MAX_MAINTENANCE_PERIOD_DAYS {
            return Err(format!(
                "health.scrub_period_days must be between 1 and {MAX_MAINTENANCE_PERIOD_DAYS} \
                 (0 turns scrubs off)"
            ));
        }
        for (key, value) in [
            (
                "short_self_test_period_days",
                self.short_self_test_period_days,
            ),
            (
                "long_self_test_period_days",
                self.long_self_test_period_days,
            ),
        ] {
            if !(1..=MAX_MAINTENANCE_PERIOD_DAYS).contains(&value) {
                return Err(format!(
                    "health.{key} must be between 1 and {MAX_MAINTENANCE_PERIOD_DAYS} \
                     (health.self_tests = false turns self-tests off)"
                ));
            }
        }
        Ok(())
    }

    /// The policy sent to every agent in its session parameters.
    pub fn policy(&self) -> HealthPolicy {
        HealthPolicy {
            period_secs: self.period_secs,
            scrub_period_days: self.scrub_period_days,
            short_self_test_period_days: self.short_self_test_period_days,
            long_self_test_period_days: self.long_self_test_period_days,
            scrub_disabled: self.scrub_period_days == 0,
            self_tests_disabled: !self.self_tests,
        }
    }

    /// The health period, in seconds.
    pub fn period(&self) -> i64 {
        i64::from(self.period_secs)
    }
}

/// `[alerts]`: the thresholds of the alert rules (docs/HEALTH.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// A disk without a warning temperature of its own is too hot above
    /// this.
    pub disk_temperature_celsius: u32,
    /// A sensor without a critical threshold of its own is too hot above
    /// this.
    pub sensor_temperature_celsius: u32,
    /// ZFS pools and LVM thin pools (data and metadata): warning and
    /// critical use, in percent.
    pub pool_warning_percent: u32,
    pub pool_critical_percent: u32,
    /// The root filesystem's use that raises `filesystem-full`.
    pub filesystem_percent: u32,
    /// A volume's use against its size that raises `volume-full`.
    pub volume_percent: u32,
    /// An SSD's "percentage used" that raises `disk-wearout`.
    pub disk_wearout_percent: u32,
    /// Days after a scrub period without a finished scrub before
    /// `scrub-overdue`.
    pub scrub_grace_days: u32,
    /// `app-restart-loop`: this many restarts within the window.
    pub app_restarts: u32,
    pub app_restart_window_secs: u32,
    /// Certificates expiring within these many days: warning, critical.
    pub certificate_warning_days: u32,
    pub certificate_critical_days: u32,
    /// Memberships expiring within this many days: warning (critical once
    /// past).
    pub membership_warning_days: u32,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            disk_temperature_celsius: 60,
            sensor_temperature_celsius: 90,
            pool_warning_percent: 80,
            pool_critical_percent: 90,
            filesystem_percent: 90,
            volume_percent: 90,
            disk_wearout_percent: 90,
            scrub_grace_days: 7,
            app_restarts: 5,
            app_restart_window_secs: 600,
            certificate_warning_days: 14,
            certificate_critical_days: 3,
            membership_warning_days: 30,
        }
    }
}

impl AlertsConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        for (key, value) in [
            ("disk_temperature_celsius", self.disk_temperature_celsius),
            (
                "sensor_temperature_celsius",
                self.sensor_temperature_celsius,
            ),
        ] {
            if !(20..=150).contains(&value) {
                return Err(format!("alerts.{key} must be between 20 and 150"));
            }
        }
        for (key, value) in [
            ("pool_warning_percent", self.pool_warning_percent),
            ("pool_critical_percent", self.pool_critical_percent),
            ("filesystem_percent", self.filesystem_percent),
            ("volume_percent", self.volume_percent),
            ("disk_wearout_percent", self.disk_wearout_percent),
        ] {
            if !(1..=100).contains(&value) {
                return Err(format!("alerts.{key} must be between 1 and 100"));
            }
        }
        if self.pool_warning_percent > self.pool_critical_percent {
            return Err(
                "alerts.pool_warning_percent must not be above alerts.pool_critical_percent".into(),
            );
        }
        if self.scrub_grace_days > 366 {
            return Err("alerts.scrub_grace_days must be between 0 and 366".into());
        }
        if !(1..=1000).contains(&self.app_restarts) {
            return Err("alerts.app_restarts must be between 1 and 1000".into());
        }
        if !(60..=86_400).contains(&self.app_restart_window_secs) {
            return Err("alerts.app_restart_window_secs must be between 60 and 86400".into());
        }
        if !(1..=365).contains(&self.certificate_warning_days)
            || self.certificate_critical_days > self.certificate_warning_days
        {
            return Err(
                "alerts.certificate_warning_days must be between 1 and 365, and \
                 alerts.certificate_critical_days not above it"
                    .into(),
            );
        }
        if self.membership_warning_days > 365 {
            return Err("alerts.membership_warning_days must be between 0 and 365".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::ControllerConfig;

    #[test]
    fn health_defaults_become_the_policy() {
        let cfg = ControllerConfig::parse("", "x").unwrap();
        let p = cfg.health.policy();
        assert_eq!(p.period_secs, 60);
        assert_eq!(p.scrub_period_days, 30);
        assert_eq!(p.short_self_test_period_days, 7);
        assert_eq!(p.long_self_test_period_days, 30);
        assert!(!p.scrub_disabled && !p.self_tests_disabled);
        let cfg = ControllerConfig::parse(
            "[health]\nperiod_secs = 10\nscrub_period_days = 0\nself_tests = false\n",
            "x",
        )
        .unwrap();
        let p = cfg.health.policy();
        assert_eq!(p.period_secs, 10);
        assert!(p.scrub_disabled && p.self_tests_disabled);
    }

    #[test]
    fn notify_is_checked_with_the_rest_and_left_out_when_default() {
        let err = ControllerConfig::parse("[notify]\ngroup_wait_secs = 99999\n", "x").unwrap_err();
        assert!(
            coloc_proto::error_chain(&err).contains("notify.group_wait_secs"),
            "{err}"
        );
        let cfg = ControllerConfig::parse("", "x").unwrap();
        assert!(!cfg.notify.has_targets());
        assert!(!cfg.to_toml().contains("[notify]"));
    }

    #[test]
    fn health_and_alert_bounds_are_checked() {
        for (bad, says) in [
            ("[health]\nperiod_secs = 9", "health.period_secs"),
            ("[health]\nperiod_secs = 3601", "health.period_secs"),
            (
                "[health]\nscrub_period_days = 367",
                "health.scrub_period_days",
            ),
            (
                "[health]\nshort_self_test_period_days = 0",
                "health.short_self_test_period_days",
            ),
            (
                "[health]\nlong_self_test_period_days = 400",
                "health.long_self_test_period_days",
            ),
            ("[health]\nperiod = 10", "not a valid"),
            (
                "[alerts]\npool_warning_percent = 95",
                "pool_warning_percent",
            ),
            ("[alerts]\nvolume_percent = 0", "alerts.volume_percent"),
            (
                "[alerts]\ndisk_temperature_celsius = 500",
                "disk_temperature",
            ),
            ("[alerts]\napp_restarts = 0", "alerts.app_restarts"),
            (
                "[alerts]\ncertificate_critical_days = 20",
                "certificate_critical_days",
            ),
            ("[alerts]\nthreshold = 3", "not a valid"),
        ] {
            let err = ControllerConfig::parse(bad, "x").unwrap_err();
            let text = coloc_proto::error_chain(&err);
            assert!(text.contains(says), "{bad}: {text}");
        }
        let cfg = ControllerConfig::parse(
            "[alerts]\ndisk_temperature_celsius = 55\npool_warning_percent = 70\n",
            "x",
        )
        .unwrap();
        assert_eq!(cfg.alerts.disk_temperature_celsius, 55);
        assert_eq!(cfg.alerts.pool_warning_percent, 70);
        assert_eq!(cfg.alerts.pool_critical_percent, 90);
    }
}
