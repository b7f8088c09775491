//! How the CLI fails: one [`Failure`] carrying a sentence for people and an
//! [`Exit`] code for scripts. This module owns the mapping from gRPC status
//! codes to those sentences and codes; nothing else decides exit codes.

use std::fmt;

use coloc_proto::domain::InvalidInput;
use coloc_proto::error_chain;
use tonic::{Code, Status};

/// Exit codes, stable for scripts. Keep [`EXIT_CODES_HELP`] in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Generic = 1,
    Usage = 2,
    Unauthenticated = 3,
    PermissionDenied = 4,
    NotFound = 5,
    Conflict = 6,
    InvalidArgument = 7,
    Unavailable = 8,
}

impl Exit {
    #[cfg(test)]
    pub const ALL: [Exit; 8] = [
        Exit::Generic,
        Exit::Usage,
        Exit::Unauthenticated,
        Exit::PermissionDenied,
        Exit::NotFound,
        Exit::Conflict,
        Exit::InvalidArgument,
        Exit::Unavailable,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }
}

/// The exit code table shown by `coloc --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  generic failure (unexpected server error, local I/O error)
  2  usage: bad command line or configuration (no server, unreadable config, CA, certificate or key file)
  3  not authenticated: no credentials, or colocd refused the token or certificate
  4  permission denied: authenticated, but the role, tenant or node grant does not allow it
  5  not found: the named site, node, tenant, pool, volume, snapshot, user or token does not exist
  6  already exists or conflict (name taken, state forbids it, refused by the cooperative's policy)
  7  invalid argument: a value refused, locally (name, ttl, date, label, text) or by colocd
  8  unavailable: colocd cannot be reached (connection, TLS, timeout), or colocd cannot reach the node";

/// A failed command: what to tell the person, and how to exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Failure {
            exit,
            message: message.into(),
        }
    }

    pub fn generic(message: impl Into<String>) -> Self {
        Self::new(Exit::Generic, message)
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Exit::InvalidArgument, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<InvalidInput> for Failure {
    fn from(e: InvalidInput) -> Self {
        Failure::invalid(e.to_string())
    }
}

/// How the caller authenticated, so that an Unauthenticated answer can say
/// which credential to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    Token,
    Certificate,
    None,
}

/// What a status needs to become a useful sentence.
#[derive(Debug, Clone)]
pub struct StatusContext {
    pub server: String,
    pub credential: CredentialKind,
}

/// A status made on this side by the transport (it then carries the
/// underlying error as its source; statuses colocd sends never do) means
/// colocd was not reached or did not answer in time.
fn transport_failure(status: &Status, ctx: &StatusContext) -> Option<Failure> {
    let source = std::error::Error::source(status)?;
    let mut link: Option<&(dyn std::error::Error + 'static)> = Some(source);
    while let Some(e) = link {
        if e.is::<tonic::TimeoutExpired>() {
            return Some(Failure::new(
                Exit::Unavailable,
                format!("colocd at {} did not answer in time", ctx.server),
            ));
        }
        link = e.source();
    }
    match status.code() {
        Code::Unavailable | Code::Cancelled | Code::Unknown | Code::DeadlineExceeded => {
            let chain = error_chain(source);
            let message = status.message();
            let detail = if message.is_empty() || chain.starts_with(message) {
                chain
            } else {
                format!("{message}: {chain}")
            };
            Some(Failure::new(
                Exit::Unavailable,
                format!("cannot reach colocd at {}: {detail}", ctx.server),
            ))
        }
        _ => None,
    }
}

/// Turns a gRPC status into a sentence and an exit code. The match lists
/// every code so that a code added to tonic gets a deliberate choice.
pub fn from_status(status: &Status, ctx: &StatusContext) -> Failure {
    let server_says = if status.message().is_empty() {
        status.code().description().to_string()
    } else {
        status.message().to_string()
    };
    if let Some(failure) = transport_failure(status, ctx) {
        return failure;
    }
    match status.code() {
        Code::Unauthenticated => {
            let what = match ctx.credential {
                CredentialKind::Token => "check your token",
                CredentialKind::Certificate => "check your client certificate and key",
                CredentialKind::None => {
                    "no token or certificate was given (--token, COLOC_TOKEN or the config file)"
                }
            };
            Failure::new(
                Exit::Unauthenticated,
                format!("not authenticated: {what} ({server_says})"),
            )
        }
        Code::PermissionDenied => Failure::new(
            Exit::PermissionDenied,
            format!("permission denied: {server_says}"),
        ),
        Code::NotFound => Failure::new(Exit::NotFound, server_says),
        Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => {
            Failure::new(Exit::Conflict, server_says)
        }
        Code::InvalidArgument | Code::OutOfRange => {
            Failure::new(Exit::InvalidArgument, server_says)
        }
        // Sent by colocd itself: something behind it (a node's session) is
        // unreachable or slow, and colocd's sentence says which.
        Code::Unavailable | Code::DeadlineExceeded => Failure::new(Exit::Unavailable, server_says),
        Code::Unimplemented => Failure::generic(format!(
            "colocd at {} does not implement this call (is it older than this coloc?): {server_says}",
            ctx.server
        )),
        Code::ResourceExhausted => Failure::generic(format!(
            "colocd is overloaded or a limit was reached: {server_says}"
        )),
        Code::Ok | Code::Cancelled | Code::Unknown | Code::Internal | Code::DataLoss => {
            Failure::generic(format!("colocd error: {server_says}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(credential: CredentialKind) -> StatusContext {
        StatusContext {
            server: "https://127.0.0.1:7443".into(),
            credential,
        }
    }

    #[test]
    fn codes_map_to_distinct_exits() {
        let cases = [
            (Code::Unauthenticated, Exit::Unauthenticated),
            (Code::PermissionDenied, Exit::PermissionDenied),
            (Code::NotFound, Exit::NotFound),
            (Code::AlreadyExists, Exit::Conflict),
            (Code::FailedPrecondition, Exit::Conflict),
            (Code::InvalidArgument, Exit::InvalidArgument),
            (Code::Unavailable, Exit::Unavailable),
            (Code::DeadlineExceeded, Exit::Unavailable),
            (Code::Internal, Exit::Generic),
        ];
        for (code, exit) in cases {
            let f = from_status(&Status::new(code, "x"), &ctx(CredentialKind::Token));
            assert_eq!(f.exit, exit, "{code:?}");
        }
    }

    #[test]
    fn sentences_carry_the_server_message() {
        let f = from_status(
            &Status::unauthenticated("token expired"),
            &ctx(CredentialKind::Token),
        );
        assert_eq!(
            f.message,
            "not authenticated: check your token (token expired)"
        );
        let f = from_status(
            &Status::permission_denied("members cannot create sites"),
            &ctx(CredentialKind::Certificate),
        );
        assert_eq!(f.message, "permission denied: members cannot create sites");
        let f = from_status(
            &Status::not_found("no node n9"),
            &ctx(CredentialKind::Token),
        );
        assert_eq!(f.message, "no node n9");
        let refused =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let f = from_status(
            &Status::from_error(Box::new(tonic::ConnectError(Box::new(refused)))),
            &ctx(CredentialKind::Token),
        );
        assert_eq!(f.exit, Exit::Unavailable);
        assert!(
            f.message
                .starts_with("cannot reach colocd at https://127.0.0.1:7443: "),
            "{}",
            f.message
        );
        assert!(f.message.contains("connection refused"), "{}", f.message);
        let f = from_status(
            &Status::from_error(Box::new(tonic::TimeoutExpired(()))),
            &ctx(CredentialKind::Token),
        );
        assert_eq!(f.exit, Exit::Unavailable);
        assert_eq!(
            f.message,
            "colocd at https://127.0.0.1:7443 did not answer in time"
        );
        // colocd answering that a node is offline is not colocd being down.
        let f = from_status(
            &Status::unavailable("node n1 is not connected"),
            &ctx(CredentialKind::Token),
        );
        assert_eq!(f.exit, Exit::Unavailable);
        assert_eq!(f.message, "node n1 is not connected");
        let f = from_status(
            &Status::unauthenticated(""),
            &ctx(CredentialKind::Certificate),
        );
        assert!(f.message.contains("client certificate"), "{}", f.message);
    }

    #[test]
    fn help_lists_every_exit_code() {
        for exit in Exit::ALL {
            let line = format!("\n  {}  ", exit.code());
            assert!(EXIT_CODES_HELP.contains(&line), "{exit:?} missing");
        }
    }
}
