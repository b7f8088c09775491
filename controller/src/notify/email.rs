//! The e-mail target: one message per group to every recipient, through
//! one SMTP server, with STARTTLS required (never a silent fallback to
//! clear text), implicit TLS, or no TLS for a relay on localhost.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::config::{EmailConfig, SmtpTls};
use super::files::{read_ca_file, read_secret};
use super::{NotifyConfigError, NotifyError};

/// What the e-mail target is called in logs, errors and task summaries.
pub(super) const EMAIL_TARGET: &str = "email";

/// `Auto-Submitted: auto-generated` (RFC 3834): vacation responders and
/// mailing lists do not answer an alert.
#[derive(Debug, Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_string())
    }
}

pub(super) struct EmailTarget {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

fn mailbox(key: &str, text: &str) -> Result<Mailbox, NotifyError> {
    text.parse::<Mailbox>().map_err(|e| {
        NotifyError::Config(NotifyConfigError {
            key: key.to_string(),
            reason: format!("{text:?} is not an e-mail address: {e}"),
        })
    })
}

impl EmailTarget {
    /// Reads the password and CA files and prepares the transport; no
    /// connection is made yet.
    pub(super) fn new(cfg: &EmailConfig, timeout: Duration) -> Result<Self, NotifyError> {
        let tls_error = |source: lettre::transport::smtp::Error| NotifyError::Tls {
            target: EMAIL_TARGET.to_string(),
            source: Box::new(source),
        };
        let mut params = TlsParameters::builder(cfg.host.clone());
        if let Some(path) = &cfg.ca_file {
            for der in read_ca_file("notify.email.ca_file", path)? {
                params = params
                    .add_root_certificate(Certificate::from_der(der.to_vec()).map_err(tls_error)?);
            }
        }
        let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.as_str());
        let builder = match cfg.tls {
            SmtpTls::Starttls => {
                builder.tls(Tls::Required(params.build_rustls().map_err(tls_error)?))
            }
            SmtpTls::Tls => builder.tls(Tls::Wrapper(params.build_rustls().map_err(tls_error)?)),
            SmtpTls::None => builder.tls(Tls::None),
        };
        let mut builder = builder.port(cfg.port).timeout(Some(timeout));
        if let (Some(user), Some(path)) = (&cfg.username, &cfg.password_file) {
            let password = read_secret("notify.email.password_file", path)?;
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        let from = mailbox("notify.email.from", &cfg.from)?;
        let to = cfg
            .to
            .iter()
            .map(|t| mailbox("notify.email.to", t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EmailTarget {
            transport: builder.build(),
            from,
            to,
        })
    }

    pub(super) async fn send(&self, subject: &str, text: &str) -> Result<(), NotifyError> {
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(None)
            .header(AutoSubmitted)
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            message = message.to(to.clone());
        }
        let message = message
            .body(text.to_string())
            .map_err(NotifyError::Message)?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|source| NotifyError::Smtp {
                target: EMAIL_TARGET.to_string(),
                source,
            })
    }
}
