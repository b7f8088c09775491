//! The `[notify]` group of colocd.toml: who is told about alerts, and how
//! patiently. Strict like the rest of the file: unknown keys are refused,
//! and [`NotifyConfig::validate`] refuses anything that would send alerts
//! in clear text over a network or never stop retrying. Secrets are not in
//! the file: the SMTP password and webhook tokens are read from their own
//! files when the notifier starts.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[notify]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// After the first new event, wait this long for more before sending:
    /// a burst gives one message per target.
    #[serde(default = "default_group_wait")]
    pub group_wait_secs: u64,
    /// First delay before a failed target is tried again; it doubles after
    /// each failure up to `retry_max_secs`.
    #[serde(default = "default_retry_initial")]
    pub retry_initial_secs: u64,
    #[serde(default = "default_retry_max")]
    pub retry_max_secs: u64,
    /// A target still failing this long after the first attempt is given
    /// up for that message (logged as an error); the events are then
    /// marked notified, so nothing is retried forever.
    #[serde(default = "default_retry_give_up")]
    pub retry_give_up_secs: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailConfig>,
    #[serde(default, rename = "webhook", skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<WebhookConfig>,
}

/// `[notify.email]`: one SMTP server, one message to all recipients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    #[serde(default)]
    pub tls: SmtpTls,
    /// Login, with `password_file`; both or neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// "coloc <alerts@coloc.example>" or a bare address.
    pub from: String,
    pub to: Vec<String>,
    /// A PEM file of extra CA certificates (a self-hosted server's own
    /// CA), trusted besides the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required (never a
    /// silent fallback to clear text). Port 587.
    #[default]
    Starttls,
    /// TLS from the first byte. Port 465.
    Tls,
    /// No TLS: only for a relay on the same machine (localhost).
    None,
}

impl SmtpTls {
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpTls::Starttls => "starttls",
            SmtpTls::Tls => "tls",
            SmtpTls::None => "none",
        }
    }
}

/// `[[notify.webhook]]`: an HTTP POST per message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Names the target in logs and errors; unique.
    pub name: String,
    /// https, or http for a localhost address only.
    pub url: String,
    #[serde(default)]
    pub format: WebhookFormat,
    /// A file holding a bearer token, sent as `Authorization: Bearer ...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// A PEM file of extra CA certificates, trusted besides the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// What a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// `{"version":1,"status":...,"title":...,"text":...,"events":[...]}`
    /// (Mattermost and Matrix bridges read `text`).
    #[default]
    Json,
    /// ntfy: the text as the body, with Title, Priority and Tags headers.
    Ntfy,
}

impl WebhookFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Json => "json",
            WebhookFormat::Ntfy => "ntfy",
        }
    }
}

fn default_group_wait() -> u64 {
    30
}
fn default_retry_initial() -> u64 {
    10
}
fn default_retry_max() -> u64 {
    600
}
fn default_retry_give_up() -> u64 {
    86_400
}
fn default_smtp_port() -> u16 {
    587
}

/// Longest group wait: an alert an hour late is no longer news.
pub const MAX_GROUP_WAIT_SECS: u64 = 3600;
/// Longest give-up delay: a week.
pub const MAX_GIVE_UP_SECS: u64 = 7 * 86_400;

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            group_wait_secs: default_group_wait(),
            retry_initial_secs: default_retry_initial(),
            retry_max_secs: default_retry_max(),
            retry_give_up_secs: default_retry_give_up(),
            email: None,
            webhooks: Vec::new(),
        }
    }
}

/// Why a `[notify]` group was refused; the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct NotifyConfigError {
    /// "notify.email.tls", "notify.webhook \"ntfy\".url".
    pub key: String,
    pub reason: String,
}

fn refuse(key: impl Into<String>, reason: impl Into<String>) -> NotifyConfigError {
    NotifyConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

impl NotifyConfig {
    /// Whether anyone is to be told: without a target the notifier is not
    /// started and alerts are only in `coloc alert list`.
    pub fn has_targets(&self) -> bool {
        self.email.is_some() || !self.webhooks.is_empty()
    }

    /// Whether the group is absent from colocd.toml or says only what the
    /// defaults say (for `skip_serializing_if`: `colocd init` need not
    /// write it).
    pub fn is_default(&self) -> bool {
        *self == NotifyConfig::default()
    }

    /// Checks every value; the files named are read later, when the
    /// notifier starts.
    pub fn validate(&self) -> Result<(), NotifyConfigError> {
        if self.group_wait_secs > MAX_GROUP_WAIT_SECS {
            return Err(refuse(
                "notify.group_wait_secs",
                format!("must be between 0 and {MAX_GROUP_WAIT_SECS}"),
            ));
        }
        if !(1..=3600).contains(&self.retry_initial_secs) {
            return Err(refuse(
                "notify.retry_initial_secs",
                "must be between 1 and 3600",
            ));
        }
        if !(self.retry_initial_secs..=86_400).contains(&self.retry_max_secs) {
            return Err(refuse(
                "notify.retry_max_secs",
                "must be between retry_initial_secs and 86400",
            ));
        }
        if !(self.retry_initial_secs..=MAX_GIVE_UP_SECS).contains(&self.retry_give_up_secs) {
            return Err(refuse(
                "notify.retry_give_up_secs",
                format!("must be between retry_initial_secs and {MAX_GIVE_UP_SECS} (a week)"),
            ));
        }
        if let Some(email) = &self.email {
            email.validate()?;
        }
        let mut names: Vec<&str> = Vec::new();
        for hook in &self.webhooks {
            hook.validate()?;
            if names.contains(&hook.name.as_str()) {
                return Err(refuse(
                    format!("notify.webhook {:?}", hook.name),
                    "two webhooks have this name",
                ));
            }
            names.push(&hook.name);
        }
        Ok(())
    }
}

impl EmailConfig {
    fn validate(&self) -> Result<(), NotifyConfigError> {
        if self.host.is_empty() || self.host.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(refuse(
                "notify.email.host",
                format!("{:?} is not a host name or address", self.host),
            ));
        }
        if self.port == 0 {
            return Err(refuse("notify.email.port", "must be between 1 and 65535"));
        }
        if self.tls == SmtpTls::None && !is_localhost(&self.host) {
            return Err(refuse(
                "notify.email.tls",
                format!(
                    "\"none\" sends mail and password in clear text and is only allowed for a \
                     relay on this machine (localhost), not {:?}; use \"starttls\" or \"tls\"",
                    self.host
                ),
            ));
        }
        match (&self.username, &self.password_file) {
            (Some(u), Some(_)) if u.is_empty() => {
                return Err(refuse("notify.email.username", "must not be empty"));
            }
            (Some(_), None) => {
                return Err(refuse(
                    "notify.email.password_file",
                    "a username needs a password_file (the password is never in colocd.toml)",
                ));
            }
            (None, Some(_)) => {
                return Err(refuse(
                    "notify.email.username",
                    "a password_file needs a username",
                ));
            }
            _ => {}
        }
        self.from.parse::<lettre::message::Mailbox>().map_err(|e| {
            refuse(
                "notify.email.from",
                format!("{:?} is not an e-mail address: {e}", self.from),
            )
        })?;
        if self.to.is_empty() {
            return Err(refuse("notify.email.to", "name at least one recipient"));
        }
        for to in &self.to {
            to.parse::<lettre::message::Mailbox>().map_err(|e| {
                refuse(
                    "notify.email.to",
                    format!("{to:?} is not an e-mail address: {e}"),
                )
            })?;
        }
        Ok(())
    }
}

impl WebhookConfig {
    fn validate(&self) -> Result<(), NotifyConfigError> {
        let valid_name = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_name {
            return Err(refuse(
                "notify.webhook.name",
                format!(
                    "{:?}: use 1 to 64 letters, digits, '-', '_' or '.'",
                    self.name
                ),
            ));
        }
        let key = format!("notify.webhook {:?}.url", self.name);
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| refuse(&key, format!("{:?} is not a URL: {e}", self.url)))?;
        let host = url
            .host_str()
            .ok_or_else(|| refuse(&key, format!("{:?} has no host", self.url)))?;
        match url.scheme() {
            "https" => {}
            "http" if is_localhost(host) => {}
            "http" => {
                return Err(refuse(
                    &key,
                    format!(
                        "{:?} uses http, which is only allowed for localhost (alerts and the \
                         token would cross the network in clear text); use https",
                        self.url
                    ),
                ));
            }
            other => {
                return Err(refuse(
                    &key,
                    format!("{:?}: scheme {other:?} is not http or https", self.url),
                ));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse(
                &key,
                "credentials in the URL would be logged; use token_file",
            ));
        }
        Ok(())
    }
}

/// `localhost`, or a loopback address (127.0.0.0/8, ::1), with or without
/// the brackets a URL puts around IPv6.
pub(crate) fn is_localhost(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_is_loopback_only() {
        assert!(is_localhost("localhost"));
        assert!(is_localhost("127.0.0.1"));
        assert!(is_localhost("127.1.2.3"));
        assert!(is_localhost("[::1]"));
        assert!(!is_localhost("localhost.example.org"));
        assert!(!is_localhost("10.0.0.1"));
        assert!(!is_localhost("mail.example.org"));
    }

    #[test]
    fn defaults_and_bounds() {
        let cfg: NotifyConfig = toml::from_str("").unwrap();
        assert!(cfg.is_default());
        assert_eq!(cfg.group_wait_secs, 30);
        assert!(!cfg.has_targets());
        cfg.validate().unwrap();
        let bad = NotifyConfig {
            retry_max_secs: 5,
            ..NotifyConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "notify.retry_max_secs");
        let bad = NotifyConfig {
            retry_give_up_secs: 30 * 86_400,
            ..NotifyConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "notify.retry_give_up_secs");
    }

    #[test]
    fn unknown_keys_refused() {
        let err = toml::from_str::<NotifyConfig>(
            "[email]\nhost = \"x\"\nfrom = \"a@b\"\nto = []\npassword = \"x\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("password"), "{err}");
    }

    #[test]
    fn webhook_names_are_unique_and_urls_safe() {
        let hook = |name: &str, url: &str| WebhookConfig {
            name: name.to_string(),
            url: url.to_string(),
            format: WebhookFormat::Json,
            token_file: None,
            ca_file: None,
        };
        let cfg = NotifyConfig {
            webhooks: vec![
                hook("a", "https://ntfy.example.org/coloc"),
                hook("a", "http://127.0.0.1:8080/"),
            ],
            ..NotifyConfig::default()
        };
        assert!(cfg.validate().unwrap_err().reason.contains("two webhooks"));
        for (url, why) in [
            ("https://user:pw@example.org/", "token_file"),
            ("ftp://example.org/", "scheme"),
            ("not a url", "not a URL"),
            ("http://[::2]/", "only allowed for localhost"),
        ] {
            let cfg = NotifyConfig {
                webhooks: vec![hook("a", url)],
                ..NotifyConfig::default()
            };
            let err = cfg.validate().unwrap_err();
            assert!(err.reason.contains(why), "{url}: {err}");
        }
        let cfg = NotifyConfig {
            webhooks: vec![hook("bad name", "https://example.org/")],
            ..NotifyConfig::default()
        };
        assert_eq!(cfg.validate().unwrap_err().key, "notify.webhook.name");
    }

    #[test]
    fn email_login_needs_both_halves_and_real_addresses() {
        let email = EmailConfig {
            host: "mail.example.org".to_string(),
            port: 587,
            tls: SmtpTls::Starttls,
            username: Some("coloc".to_string()),
            password_file: None,
            from: "coloc <alerts@example.org>".to_string(),
            to: vec!["admins@example.org".to_string()],
            ca_file: None,
        };
        let with = |email: EmailConfig| NotifyConfig {
            email: Some(email),
            ..NotifyConfig::default()
        };
        assert_eq!(
            with(email.clone()).validate().unwrap_err().key,
            "notify.email.password_file"
        );
        let ok = EmailConfig {
            password_file: Some("/etc/coloc/smtp-password".into()),
            ..email.clone()
        };
        with(ok.clone()).validate().unwrap();
        let bad_to = EmailConfig {
            to: vec!["not an address".to_string()],
            ..ok.clone()
        };
        assert_eq!(with(bad_to).validate().unwrap_err().key, "notify.email.to");
        let no_to = EmailConfig {
            to: vec![],
            ..ok.clone()
        };
        assert_eq!(with(no_to).validate().unwrap_err().key, "notify.email.to");
        let local_plain = EmailConfig {
            host: "localhost".to_string(),
            port: 25,
            tls: SmtpTls::None,
            ..ok
        };
        with(local_plain).validate().unwrap();
    }
}
