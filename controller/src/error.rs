//! Errors of the API layer and their one mapping to gRPC status codes.
//!
//! The match in [`ApiError::to_status`] is exhaustive on purpose: a new
//! error variant must be given its code deliberately.

use coloc_proto::domain::InvalidInput;
use tonic::{Code, Status};

use crate::ca::CaError;
use crate::catalog::CatalogError;
use crate::rules::standing::Frozen;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// Something the caller may not see, found by an identifier they may
    /// have read or guessed (a volume id, a request number, a token id):
    /// they read exactly what a missing one gives, so they learn neither
    /// that it exists nor whose it is. The audit log, and this text, keep
    /// the refusal ([`crate::auth::unseen`]).
    #[error("permission denied: {reason}")]
    Hidden {
        kind: &'static str,
        name: String,
        reason: String,
    },
    /// A rule of the cooperative refuses the request (e.g. a site outside
    /// France).
    #[error("refused by policy: {0}")]
    Policy(String),
    /// The request is well-formed but the current state forbids it.
    #[error("{0}")]
    Conflict(String),
    /// A change by a user of an association frozen for an expired
    /// membership.
    #[error(transparent)]
    Frozen(#[from] Frozen),
    #[error("node {0} is not connected")]
    NodeOffline(String),
    #[error("node {node} did not answer within {secs} s")]
    NodeTimeout { node: String, secs: u64 },
    /// Something the request needs cannot be reached right now (a node
    /// whose session is down); trying again later may work.
    #[error("{0}")]
    Unavailable(String),
    /// Too many calls of a kind anyone can make (without credentials,
    /// enrollment) from one address; refused without any other work.
    #[error("too many {what} from {peer}; try again in {retry_after_secs} s")]
    RateLimited {
        what: &'static str,
        peer: String,
        retry_after_secs: u64,
    },
    /// The catalog refuses to render an instance with these values.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ca(#[from] CaError),
}

impl ApiError {
    /// Whether the audit log records this as a refusal rather than a
    /// failure.
    pub fn is_denial(&self) -> bool {
        matches!(
            self,
            ApiError::Unauthenticated(_)
                | ApiError::PermissionDenied(_)
                | ApiError::Hidden { .. }
                | ApiError::Frozen(_)
                | ApiError::RateLimited { .. }
        )
    }

    pub fn to_status(&self) -> Status {
        match self {
            ApiError::Invalid(e) => Status::invalid_argument(e.to_string()),
            ApiError::Unauthenticated(m) => Status::unauthenticated(m.clone()),
            ApiError::PermissionDenied(m) => Status::permission_denied(m.clone()),
            ApiError::Hidden { kind, name, .. } => Status::not_found(
                StoreError::NotFound {
                    kind,
                    name: name.clone(),
                }
                .to_string(),
            ),
            ApiError::Policy(m) => Status::failed_precondition(format!("refused by policy: {m}")),
            ApiError::Conflict(m) => Status::failed_precondition(m.clone()),
            ApiError::Frozen(e) => Status::failed_precondition(e.to_string()),
            ApiError::NodeOffline(_) => Status::unavailable(self.to_string()),
            ApiError::NodeTimeout { .. } => Status::deadline_exceeded(self.to_string()),
            ApiError::Unavailable(m) => Status::unavailable(m.clone()),
            ApiError::RateLimited { .. } => Status::resource_exhausted(self.to_string()),
            ApiError::Catalog(e) => match e {
                // The catalog was checked when colocd started; what is left
                // is a value this instance brings that the app cannot take.
                CatalogError::Render { .. } => Status::failed_precondition(e.to_string()),
                CatalogError::ReadDir { .. }
                | CatalogError::ReadFile { .. }
                | CatalogError::Empty { .. }
                | CatalogError::Parse { .. }
                | CatalogError::Field { .. } => internal(self),
            },
            ApiError::Store(e) => match e {
                StoreError::AlreadyExists { .. } => Status::already_exists(e.to_string()),
                StoreError::NotFound { .. } => Status::not_found(e.to_string()),
                StoreError::Conflict { .. } => Status::failed_precondition(e.to_string()),
                StoreError::QuotaExceeded { .. } => Status::resource_exhausted(e.to_string()),
                StoreError::JoinTokenUnknown | StoreError::JoinTokenExpired => {
                    Status::unauthenticated(e.to_string())
                }
                // The caller is anonymous: which node took the token is for
                // the audit log (this error's text), not for them.
                StoreError::JoinTokenUsed { .. } => {
                    Status::unauthenticated("join token was already used")
                }
                StoreError::Backend(_) | StoreError::SchemaTooNew { .. } => internal(self),
            },
            ApiError::Ca(e) => match e {
                CaError::BadCsr(_) => Status::invalid_argument(e.to_string()),
                CaError::Read { .. }
                | CaError::Write { .. }
                | CaError::Invalid { .. }
                | CaError::Unreadable { .. }
                | CaError::KeyMismatch { .. } => internal(self),
            },
        }
    }
}

/// Internal errors are logged with their whole chain and reported to the
/// caller without details.
fn internal(err: &ApiError) -> Status {
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    tracing::error!(error = %chain, "internal error");
    Status::new(Code::Internal, "internal error in colocd; see its log")
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        e.to_status()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
