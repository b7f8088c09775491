//! Apps requests (docs/APPS.md). Every string of a request (tenant, app,
//! node and volume names, comments, journal cursors) is checked here: a
//! value that could end up in a unit file, a path or a host name is a
//! strict name, free text is bounded and free of control characters.

use coloc_proto::apps::web::{PasswordHash, WebLogin, WebUser};
use coloc_proto::controller::v1 as pb;
use coloc_proto::domain::{InvalidInput, NodeName, TenantName, Text};
use coloc_proto::storage::VolumeName;

use super::{optional, required};
use crate::store::{AppName, InstanceFilter, RequestState};

/// Journal lines returned when the caller asks for 0.
pub const DEFAULT_LOG_LINES: u32 = 100;
/// Most journal lines one call returns.
pub const MAX_LOG_LINES: u32 = 1000;
/// Longest journal cursor accepted (systemd's are about 150 characters).
pub const MAX_CURSOR_LEN: usize = 1024;

/// An instance reference: "<tenant>/<app>".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceArg {
    pub tenant: TenantName,
    pub app: AppName,
}

impl InstanceArg {
    pub fn parse(text: &str) -> Result<Self, InvalidInput> {
        let (tenant, app) = text.split_once('/').ok_or_else(|| {
            InvalidInput::field(
                "instance",
                "must be \"<tenant>/<app>\", e.g. asso-x/radicale",
            )
        })?;
        Ok(InstanceArg {
            tenant: TenantName::new(tenant)?,
            app: AppName::new(app)?,
        })
    }
}

/// `GetInstance`, `StartInstance`, `StopInstance`, `RestartInstance`,
/// `RemoveInstance`.
impl TryFrom<pb::InstanceRef> for InstanceArg {
    type Error = InvalidInput;
    fn try_from(r: pb::InstanceRef) -> Result<Self, InvalidInput> {
        InstanceArg::parse(&r.instance)
    }
}

/// `SetInstancePassword`: the instance, the user name and the bcrypt hash
/// made on the caller's computer, each by proto's rules (the hash goes
/// into the node's proxy configuration).
#[derive(Debug, Clone)]
pub struct SetPassword {
    pub instance: InstanceArg,
    pub login: WebLogin,
}

impl TryFrom<pb::SetInstancePasswordRequest> for SetPassword {
    type Error = InvalidInput;
    fn try_from(r: pb::SetInstancePasswordRequest) -> Result<Self, InvalidInput> {
        Ok(SetPassword {
            instance: InstanceArg::parse(&r.instance)?,
            login: WebLogin {
                user: WebUser::new(r.user)?,
                hash: PasswordHash::new(r.password_hash)?,
            },
        })
    }
}

/// A comment of a request's discussion: [`Text::Comment`]'s limit, not
/// blank when `required`. Returned trimmed.
fn comment(text: &str, required: bool) -> Result<String, InvalidInput> {
    Text::Comment.check(text)?;
    let text = text.trim();
    if required && text.is_empty() {
        return Err(InvalidInput::field(
            Text::Comment.field(),
            "must not be empty",
        ));
    }
    Ok(text.to_owned())
}

/// The `volume` of a request: "<name>" or "<tenant>/<name>" of that
/// tenant; empty for the default.
fn requested_volume(tenant: &TenantName, text: &str) -> Result<Option<VolumeName>, InvalidInput> {
    optional(text, |text| match text.split_once('/') {
        None => VolumeName::new(text),
        Some((t, name)) => {
            let t = TenantName::new(t)?;
            if &t != tenant {
                return Err(InvalidInput::field(
                    "volume",
                    format!("{text:?} is a volume of tenant {t}, not {tenant}"),
                ));
            }
            VolumeName::new(name)
        }
    })
}

/// `RequestApp`. The volume is picked among the tenant's on the node by
/// the handler when none is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestApp {
    pub tenant: TenantName,
    pub app: AppName,
    pub node: NodeName,
    pub volume: Option<VolumeName>,
    /// Trimmed; may be empty.
    pub comment: String,
}

impl TryFrom<pb::RequestAppRequest> for RequestApp {
    type Error = InvalidInput;
    fn try_from(r: pb::RequestAppRequest) -> Result<Self, InvalidInput> {
        let tenant = required(r.tenant)?;
        let app = required(r.app)?;
        let node = required(r.node)?;
        let volume = requested_volume(&tenant, &r.volume)?;
        let comment = comment(&r.comment, false)?;
        Ok(RequestApp {
            tenant,
            app,
            node,
            volume,
            comment,
        })
    }
}

/// `ListRequests`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequests {
    pub tenant: Option<TenantName>,
    /// `None`: every state.
    pub state: Option<RequestState>,
}

impl TryFrom<pb::ListRequestsRequest> for ListRequests {
    type Error = InvalidInput;
    fn try_from(r: pb::ListRequestsRequest) -> Result<Self, InvalidInput> {
        let tenant = optional(&r.tenant, TenantName::new)?;
        let state = match pb::RequestState::try_from(r.state) {
            Ok(pb::RequestState::Unspecified) => None,
            Ok(pb::RequestState::Pending) => Some(RequestState::Pending),
            Ok(pb::RequestState::Approved) => Some(RequestState::Approved),
            Ok(pb::RequestState::Rejected) => Some(RequestState::Rejected),
            Err(_) => {
                return Err(InvalidInput::field(
                    "state",
                    "must be pending, approved or rejected",
                ));
            }
        };
        Ok(ListRequests { tenant, state })
    }
}

/// `CommentRequest`: a comment that says something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentRequest {
    pub id: u64,
    /// Trimmed, not empty.
    pub text: String,
}

impl TryFrom<pb::CommentRequestRequest> for CommentRequest {
    type Error = InvalidInput;
    fn try_from(r: pb::CommentRequestRequest) -> Result<Self, InvalidInput> {
        Ok(CommentRequest {
            id: r.id,
            text: comment(&r.text, true)?,
        })
    }
}

/// `ApproveRequest`: the comment is optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub id: u64,
    /// Trimmed; may be empty.
    pub comment: String,
}

impl TryFrom<pb::DecideRequestRequest> for Approval {
    type Error = InvalidInput;
    fn try_from(r: pb::DecideRequestRequest) -> Result<Self, InvalidInput> {
        Ok(Approval {
            id: r.id,
            comment: comment(&r.comment, false)?,
        })
    }
}

/// `RejectRequest`: a rejection says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub id: u64,
    /// Trimmed, not empty.
    pub comment: String,
}

impl TryFrom<pb::DecideRequestRequest> for Rejection {
    type Error = InvalidInput;
    fn try_from(r: pb::DecideRequestRequest) -> Result<Self, InvalidInput> {
        Ok(Rejection {
            id: r.id,
            comment: comment(&r.comment, true)?,
        })
    }
}

/// `ListInstances`: the store's filter; the handler narrows it to the
/// caller's tenant.
impl TryFrom<pb::ListInstancesRequest> for InstanceFilter {
    type Error = InvalidInput;
    fn try_from(r: pb::ListInstancesRequest) -> Result<Self, InvalidInput> {
        Ok(InstanceFilter {
            tenant: optional(&r.tenant, TenantName::new)?,
            node: optional(&r.node, NodeName::new)?,
        })
    }
}

/// `GetInstanceLogs`: how many lines, after which journal position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceLogs {
    pub instance: InstanceArg,
    /// 1 to [`MAX_LOG_LINES`]; 0 on the wire asks for [`DEFAULT_LOG_LINES`].
    pub lines: u32,
    /// A journal cursor ("s=...;i=...;b=..."), or empty for the latest
    /// lines. It goes to `journalctl --after-cursor` on the node: printable
    /// ASCII without spaces only.
    pub after_cursor: String,
}

impl TryFrom<pb::GetInstanceLogsRequest> for InstanceLogs {
    type Error = InvalidInput;
    fn try_from(r: pb::GetInstanceLogsRequest) -> Result<Self, InvalidInput> {
        let lines = match r.lines {
            0 => DEFAULT_LOG_LINES,
            1..=MAX_LOG_LINES => r.lines,
            n => {
                return Err(InvalidInput::field(
                    "lines",
                    format!("{n} is more than {MAX_LOG_LINES}"),
                ));
            }
        };
        if r.after_cursor.len() > MAX_CURSOR_LEN {
            return Err(InvalidInput::field(
                "after_cursor",
                format!("longer than {MAX_CURSOR_LEN} characters"),
            ));
        }
        if !r.after_cursor.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidInput::field(
                "after_cursor",
                "is not a journal cursor (printable ASCII without spaces)",
            ));
        }
        Ok(InstanceLogs {
            instance: InstanceArg::parse(&r.instance)?,
            lines,
            after_cursor: r.after_cursor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::refused;

    #[test]
    fn instance_refs_are_tenant_slash_app() {
        let i = InstanceArg::parse("asso-a/radicale").unwrap();
        assert_eq!((i.tenant.as_str(), i.app.as_str()), ("asso-a", "radicale"));
        for bad in [
            "",
            "radicale",
            "asso-a/",
            "/radicale",
            "asso-a/radicale/x",
            "asso-a/../x",
            "../..",
            "a;reboot",
            "asso-a/a;reboot",
            "asso-a/x\nExecStart=/bin/sh",
            "asso-a/Radicale",
            "asso-a/my-app",
            "Asso-a/radicale",
        ] {
            assert!(InstanceArg::parse(bad).is_err(), "{bad:?}");
        }
        refused(InstanceArg::parse("radicale"), "invalid instance");
        refused(InstanceArg::parse("asso-a/"), "app name");
        refused(InstanceArg::parse("/radicale"), "tenant name");
    }

    #[test]
    fn comments_are_bounded_single_line_text() {
        assert_eq!(comment("  hello  ", true).unwrap(), "hello");
        assert_eq!(comment("", false).unwrap(), "");
        refused(comment("   ", true), "invalid comment: must not be empty");
        refused(comment("x\nExecStart=/bin/sh", false), "invalid comment");
        refused(comment("bell\u{7}", false), "invalid comment");
        let max = Text::Comment.max_chars();
        assert!(comment(&"é".repeat(max), true).is_ok());
        refused(comment(&"é".repeat(max + 1), true), "invalid comment");
    }

    #[test]
    fn requested_volumes_belong_to_the_tenant() {
        let t = TenantName::new("asso-a").unwrap();
        assert_eq!(requested_volume(&t, "").unwrap(), None);
        assert_eq!(
            requested_volume(&t, "data").unwrap().unwrap().as_str(),
            "data"
        );
        assert_eq!(
            requested_volume(&t, "asso-a/web")
                .unwrap()
                .unwrap()
                .as_str(),
            "web"
        );
        for bad in ["asso-b/data", "../..", "a;reboot", "data/x", "x\ny"] {
            assert!(requested_volume(&t, bad).is_err(), "{bad:?}");
        }
        refused(requested_volume(&t, "asso-b/data"), "invalid volume");
    }

    fn request(
        tenant: &str,
        app: &str,
        node: &str,
        volume: &str,
        comment: &str,
    ) -> pb::RequestAppRequest {
        pb::RequestAppRequest {
            tenant: tenant.into(),
            app: app.into(),
            node: node.into(),
            volume: volume.into(),
            comment: comment.into(),
        }
    }

    #[test]
    fn app_requests() {
        let r = RequestApp::try_from(request("asso-a", "notes", "n1", "", " hi ")).unwrap();
        assert_eq!(
            r,
            RequestApp {
                tenant: TenantName::new("asso-a").unwrap(),
                app: AppName::new("notes").unwrap(),
                node: NodeName::new("n1").unwrap(),
                volume: None,
                comment: "hi".into(),
            }
        );
        refused(
            RequestApp::try_from(request("", "notes", "n1", "", "")),
            "tenant name",
        );
        refused(
            RequestApp::try_from(request("asso-a", "no-tes", "n1", "", "")),
            "app name",
        );
        refused(
            RequestApp::try_from(request("asso-a", "notes", "N1", "", "")),
            "node name",
        );
        refused(
            RequestApp::try_from(request("asso-a", "notes", "n1", "a;b", "")),
            "volume name",
        );
        refused(
            RequestApp::try_from(request("asso-a", "notes", "n1", "", "\u{1b}[31m")),
            "invalid comment",
        );
        let l = |tenant: &str, state| {
            ListRequests::try_from(pb::ListRequestsRequest {
                tenant: tenant.into(),
                state,
            })
        };
        assert_eq!(
            l("", 0).unwrap(),
            ListRequests {
                tenant: None,
                state: None
            }
        );
        assert_eq!(
            l("asso-a", pb::RequestState::Rejected as i32)
                .unwrap()
                .state,
            Some(RequestState::Rejected)
        );
        refused(l("", 17), "invalid state");
        refused(l("x y", 0), "tenant name");
    }

    #[test]
    fn decisions_and_comments() {
        let d = |comment: &str| pb::DecideRequestRequest {
            id: 7,
            comment: comment.into(),
        };
        assert_eq!(Approval::try_from(d("")).unwrap().comment, "");
        assert_eq!(Rejection::try_from(d(" full ")).unwrap().comment, "full");
        refused(Rejection::try_from(d("  ")), "must not be empty");
        refused(Approval::try_from(d("ok\r\n")), "invalid comment");
        let c = |text: &str| {
            CommentRequest::try_from(pb::CommentRequestRequest {
                id: 7,
                text: text.into(),
            })
        };
        assert_eq!(c("thanks").unwrap().text, "thanks");
        refused(c(""), "invalid comment");
    }

    #[test]
    fn log_requests_are_bounded() {
        let logs = |lines, cursor: &str| {
            InstanceLogs::try_from(pb::GetInstanceLogsRequest {
                instance: "asso-a/notes".into(),
                lines,
                after_cursor: cursor.into(),
            })
        };
        assert_eq!(logs(0, "").unwrap().lines, DEFAULT_LOG_LINES);
        assert_eq!(logs(1, "").unwrap().lines, 1);
        assert_eq!(logs(MAX_LOG_LINES, "").unwrap().lines, MAX_LOG_LINES);
        let cursor = "s=0b1c;i=2a;b=9f;m=1c;t=5f;x=77";
        assert_eq!(logs(10, cursor).unwrap().after_cursor, cursor);
        refused(logs(MAX_LOG_LINES + 1, ""), "invalid lines");
        refused(logs(10, "s=1 --since=yesterday"), "after_cursor");
        refused(logs(10, "x\n"), "after_cursor");
        refused(logs(10, &"a".repeat(MAX_CURSOR_LEN + 1)), "after_cursor");
        let f = InstanceFilter::try_from(pb::ListInstancesRequest {
            tenant: String::new(),
            node: "n1".into(),
        })
        .unwrap();
        assert_eq!((f.tenant, f.node.unwrap().as_str()), (None, "n1"));
    }
}
