//! The webhook target: one HTTP POST per group, as JSON or in ntfy's
//! form, with an optional bearer token. TLS is rustls on ring (the
//! workspace's one provider), trusting the system's CAs and an optional
//! extra CA; redirects are not followed (the token would follow them).

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderValue};

use super::config::{WebhookConfig, WebhookFormat};
use super::files::{read_ca_file, read_secret};
use super::message::{
    header_safe, json_payload, ntfy_priority, ntfy_tags, render_subject, render_text,
};
use super::{AlertEvent, NotifyError};

/// How much of an error answer's body goes into the log.
const BODY_IN_ERROR: usize = 200;

pub(super) struct WebhookTarget {
    /// "webhook NAME".
    target: String,
    url: reqwest::Url,
    format: WebhookFormat,
    token: Option<String>,
    client: reqwest::Client,
}

impl WebhookTarget {
    pub(super) fn new(cfg: &WebhookConfig, timeout: Duration) -> Result<Self, NotifyError> {
        let target = format!("webhook {}", cfg.name);
        let key = |field: &str| format!("notify.webhook {:?}.{field}", cfg.name);
        let tls_error = |source: Box<dyn std::error::Error + Send + Sync>| NotifyError::Tls {
            target: target.clone(),
            source,
        };
        let url = reqwest::Url::parse(&cfg.url).map_err(|e| {
            NotifyError::Config(super::NotifyConfigError {
                key: key("url"),
                reason: format!("{:?} is not a URL: {e}", cfg.url),
            })
        })?;
        let token = match &cfg.token_file {
            Some(path) => Some(read_secret(&key("token_file"), path)?),
            None => None,
        };
        let mut roots = rustls::RootCertStore::empty();
        // A system without CA certificates can still reach an endpoint
        // whose CA is in ca_file; the others fail at send, with the
        // handshake's reason.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(path) = &cfg.ca_file {
            for cert in read_ca_file(&key("ca_file"), path)? {
                roots.add(cert).map_err(|e| tls_error(Box::new(e)))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(Box::new(e)))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("colocd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| tls_error(Box::new(e)))?;
        Ok(WebhookTarget {
            target,
            url,
            format: cfg.format,
            token,
            client,
        })
    }

    pub(super) fn name(&self) -> &str {
        &self.target
    }

    pub(super) async fn send(&self, events: &[AlertEvent]) -> Result<(), NotifyError> {
        let request = self.client.post(self.url.clone());
        let request = match self.format {
            WebhookFormat::Json => request
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(json_payload(events).to_string()),
            WebhookFormat::Ntfy => request
                .header(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                )
                .header("Title", header_safe(&render_subject(events)))
                .header("Priority", ntfy_priority(events))
                .header("Tags", ntfy_tags(events))
                .body(render_text(events)),
        };
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let http_error = |source| NotifyError::Http {
            target: self.target.clone(),
            source,
        };
        let answer = request.send().await.map_err(http_error)?;
        let status = answer.status();
        if status.is_success() {
            return Ok(());
        }
        let body = answer.text().await.unwrap_or_default();
        let mut body: String = body
            .chars()
            .take(BODY_IN_ERROR)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        body.truncate(body.trim_end().len());
        Err(NotifyError::HttpStatus {
            target: self.target.clone(),
            status: status.as_u16(),
            body,
        })
    }
}
