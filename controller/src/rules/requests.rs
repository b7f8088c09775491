//! An install request's decision: a pending request is approved or
//! rejected, once.
//!
//! What an approval then creates (the instance, its port) is the store's
//! transaction; this module only says whether the decision may be taken
//! and what state it leaves the request in.

use coloc_proto::domain::UserName;

use crate::store::RequestState;

/// What an admin decides on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
}

/// The request was decided before; a decision is never taken back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "was already {} by {}",
    state.as_str(),
    by.as_ref().map(UserName::as_str).unwrap_or("someone")
)]
pub struct AlreadyDecided {
    pub state: RequestState,
    /// Who decided; None only for a row that lost it.
    pub by: Option<UserName>,
}

/// The state a request in `state`, decided by `decided_by` if it was,
/// takes after `decision`; refused unless it is pending.
pub fn decide(
    state: RequestState,
    decided_by: Option<&UserName>,
    decision: Decision,
) -> Result<RequestState, AlreadyDecided> {
    if state != RequestState::Pending {
        return Err(AlreadyDecided {
            state,
            by: decided_by.cloned(),
        });
    }
    Ok(match decision {
        Decision::Approve => RequestState::Approved,
        Decision::Reject => RequestState::Rejected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> UserName {
        UserName::new("root").unwrap()
    }

    #[test]
    fn a_pending_request_is_approved_or_rejected() {
        assert_eq!(
            decide(RequestState::Pending, None, Decision::Approve),
            Ok(RequestState::Approved)
        );
        assert_eq!(
            decide(RequestState::Pending, None, Decision::Reject),
            Ok(RequestState::Rejected)
        );
    }

    #[test]
    fn deciding_twice_is_refused_whatever_the_decision() {
        for state in [RequestState::Approved, RequestState::Rejected] {
            for decision in [Decision::Approve, Decision::Reject] {
                let err = decide(state, Some(&root()), decision).unwrap_err();
                assert_eq!(
                    err,
                    AlreadyDecided {
                        state,
                        by: Some(root())
                    }
                );
                assert_eq!(
                    err.to_string(),
                    format!("was already {} by root", state.as_str())
                );
            }
        }
    }

    #[test]
    fn a_decision_without_its_author_still_reads() {
        let err = decide(RequestState::Rejected, None, Decision::Approve).unwrap_err();
        assert_eq!(err.to_string(), "was already rejected by someone");
    }
}
