//! The fake's Apps service: the catalog, install requests with their
//! discussion, instances and their journals, kept in memory and seeded
//! with a small story (a pending request, a healthy radicale, a prosody
//! that hit systemd's start limit, a stopped site on a node whose session
//! is down). Each refusal uses the code colocd uses for it, and every call
//! is recorded in `State::calls` like the storage calls.

use std::collections::HashMap;

use coloc_proto::agent::v1 as agent;
use coloc_proto::controller::v1::apps_server::Apps;

use super::storage::NOW;
use super::*;

const MIB: u64 = 1024 * 1024;
/// The domain apps are served under.
pub const DOMAIN: &str = "coloc.example";

/// Apps: what the catalog holds and what tenants asked for and run.
#[derive(Default)]
pub struct AppsState {
    pub catalog: Vec<pb::CatalogApp>,
    pub requests: Vec<pb::AppRequest>,
    pub instances: Vec<pb::AppInstance>,
    /// Each instance's journal ("<tenant>/<app>"), oldest first; line k
    /// (from 1) has the cursor "c<k>".
    pub journals: HashMap<String, Vec<String>>,
    /// The after_cursor and lines of every GetInstanceLogs call, in order.
    pub log_asks: Vec<(String, u32)>,
    /// Nodes whose session is down: their journals cannot be read.
    pub disconnected: Vec<String>,
}

fn catalog_app(
    name: &str,
    description: &str,
    replaces: &str,
    offers: &[pb::Offer],
    memory_mib: u64,
    cpu: u32,
) -> pb::CatalogApp {
    pb::CatalogApp {
        name: name.into(),
        description: description.into(),
        replaces: replaces.into(),
        packages: vec![name.into()],
        offers: offers.iter().map(|o| *o as i32).collect(),
        memory_max_bytes: memory_mib * MIB,
        cpu_quota_percent: cpu,
    }
}

fn url(tenant: &str, app: &str) -> String {
    format!("https://{app}.{tenant}.{DOMAIN}/")
}

fn unit(tenant: &str, app: &str) -> String {
    format!("coloc-app-{tenant}-{app}.service")
}

pub fn seed(state: &mut State) {
    use pb::Offer::{Participatif, Responsable};
    let apps = &mut state.apps;
    apps.catalog = vec![
        catalog_app(
            "prosody",
            "Chat (XMPP)",
            "WhatsApp, Slack",
            &[Responsable, Participatif],
            256,
            50,
        ),
        catalog_app(
            "radicale",
            "Calendars and contacts (CalDAV, CardDAV)",
            "Google Calendar, Google Contacts",
            &[Responsable, Participatif],
            256,
            50,
        ),
        catalog_app(
            "site",
            "Static website",
            "Wix, Google Sites",
            &[Responsable, Participatif],
            64,
            25,
        ),
        catalog_app(
            "syncthing",
            "File synchronisation",
            "Dropbox, Google Drive",
            &[Participatif],
            512,
            100,
        ),
    ];
    apps.requests = vec![
        pb::AppRequest {
            id: 1,
            tenant: "asso-x".into(),
            app: "site".into(),
            node: "n1".into(),
            volume: "data".into(),
            requested_by: "mia".into(),
            created_unix: NOW,
            state: pb::RequestState::Pending as i32,
            comments: vec![pb::RequestComment {
                author: "mia".into(),
                at_unix: NOW,
                text: "Un site pour annoncer nos balades".into(),
            }],
            ..Default::default()
        },
        pb::AppRequest {
            id: 2,
            tenant: "asso-x".into(),
            app: "radicale".into(),
            node: "n1".into(),
            volume: "data".into(),
            requested_by: "mia".into(),
            created_unix: NOW,
            state: pb::RequestState::Approved as i32,
            decided_by: "root".into(),
            decided_unix: NOW + 3600,
            comments: vec![
                pb::RequestComment {
                    author: "mia".into(),
                    at_unix: NOW,
                    text: "Calendars for the volunteers".into(),
                },
                pb::RequestComment {
                    author: "root".into(),
                    at_unix: NOW + 3600,
                    text: "Done, enjoy".into(),
                },
            ],
        },
    ];
    apps.instances = vec![
        pb::AppInstance {
            tenant: "asso-x".into(),
            app: "radicale".into(),
            node: "n1".into(),
            volume: "data".into(),
            url: url("asso-x", "radicale"),
            port: 20_000,
            state: pb::InstanceState::Running as i32,
            request_id: 2,
            created_unix: NOW + 3600,
            observed: Some(agent::AppStatus {
                tenant: "asso-x".into(),
                app: "radicale".into(),
                unit: unit("asso-x", "radicale"),
                active_state: "active".into(),
                sub_state: "running".into(),
                restarts: 0,
                memory_bytes: 42 * MIB,
                healthy: true,
                health_detail: "HTTP 200 on /.web/".into(),
                ..Default::default()
            }),
        },
        pb::AppInstance {
            tenant: "asso-x".into(),
            app: "prosody".into(),
            node: "n1".into(),
            volume: "data".into(),
            url: url("asso-x", "prosody"),
            port: 20_001,
            state: pb::InstanceState::Running as i32,
            request_id: 0,
            created_unix: NOW + 7200,
            observed: Some(agent::AppStatus {
                tenant: "asso-x".into(),
                app: "prosody".into(),
                unit: unit("asso-x", "prosody"),
                active_state: "failed".into(),
                sub_state: "failed".into(),
                restarts: 5,
                memory_bytes: 0,
                healthy: false,
                health_detail: "connection refused".into(),
                error: "the unit failed 5 times and hit its start limit".into(),
                last_log_lines: vec![
                    "prosody: certmanager error: no certificate".into(),
                    "systemd: coloc-app-asso-x-prosody.service: Failed with result 'exit-code'."
                        .into(),
                ],
            }),
        },
        pb::AppInstance {
            tenant: "asso-y".into(),
            app: "site".into(),
            node: "n2".into(),
            volume: "www".into(),
            url: url("asso-y", "site"),
            port: 20_000,
            state: pb::InstanceState::Stopped as i32,
            request_id: 0,
            created_unix: NOW,
            observed: Some(agent::AppStatus {
                tenant: "asso-y".into(),
                app: "site".into(),
                unit: unit("asso-y", "site"),
                active_state: "inactive".into(),
                sub_state: "dead".into(),
                ..Default::default()
            }),
        },
    ];
    apps.journals.insert(
        "asso-x/radicale".into(),
        vec![
            "Jan 01 01:00:00 n1 radicale[812]: Starting Radicale".into(),
            "Jan 01 01:00:01 n1 radicale[812]: Listening on 127.0.0.1:20000".into(),
            "Jan 01 01:00:02 n1 radicale[812]: Radicale server ready".into(),
        ],
    );
    apps.disconnected = vec!["n2".into()];
}

fn instance_key(i: &pb::AppInstance) -> String {
    format!("{}/{}", i.tenant, i.app)
}

fn find_instance<'a>(
    apps: &'a mut AppsState,
    name: &str,
    only: Option<&str>,
) -> Result<&'a mut pb::AppInstance, Status> {
    apps.instances
        .iter_mut()
        .find(|i| instance_key(i) == name && only.is_none_or(|o| i.tenant == o))
        .ok_or_else(|| Status::not_found(format!("no app instance {name}")))
}

fn find_request<'a>(
    apps: &'a mut AppsState,
    id: u64,
    only: Option<&str>,
) -> Result<&'a mut pb::AppRequest, Status> {
    apps.requests
        .iter_mut()
        .find(|r| r.id == id && only.is_none_or(|o| r.tenant == o))
        .ok_or_else(|| Status::not_found(format!("no request {id}")))
}

fn text_or_refuse(text: &str) -> Result<(), Status> {
    if text.trim().is_empty() || text.chars().count() > 2000 || text.chars().any(char::is_control) {
        return Err(Status::invalid_argument(
            "comment: one line of 1 to 2000 characters",
        ));
    }
    Ok(())
}

impl Fake {
    /// Members read only; admins act on instances.
    fn apps_admin<T>(&self, req: &Request<T>, what: &str) -> Result<String, Status> {
        match self.caller(req)? {
            (name, Role::Admin) => Ok(name),
            (name, Role::Member) => Err(Status::permission_denied(format!(
                "user {name} is a member and cannot {what}"
            ))),
        }
    }

    /// Moves an instance between running and stopped (or asks a restart).
    fn set_instance_state(
        &self,
        req: Request<pb::InstanceRef>,
        call: &'static str,
        what: &str,
        to: Option<pb::InstanceState>,
    ) -> Result<Response<pb::AppInstance>, Status> {
        self.record(call);
        self.apps_admin(&req, what)?;
        let name = req.into_inner().instance;
        let mut state = self.state.lock().unwrap();
        let i = find_instance(&mut state.apps, &name, None)?;
        let current = pb::InstanceState::try_from(i.state).unwrap_or_default();
        match (current, to) {
            (pb::InstanceState::Removed, _) => {
                return Err(Status::failed_precondition(format!(
                    "app instance {name} is removed"
                )));
            }
            (pb::InstanceState::Stopped, None) => {
                return Err(Status::failed_precondition(format!(
                    "app instance {name} is stopped; start it instead"
                )));
            }
            (_, Some(to)) => i.state = to as i32,
            (_, None) => {}
        }
        Ok(Response::new(i.clone()))
    }
}

#[tonic::async_trait]
impl Apps for Fake {
    async fn list_catalog(
        &self,
        req: Request<pb::ListCatalogRequest>,
    ) -> Result<Response<pb::ListCatalogResponse>, Status> {
        self.record("ListCatalog");
        self.caller(&req)?;
        let apps = self.state.lock().unwrap().apps.catalog.clone();
        Ok(Response::new(pb::ListCatalogResponse { apps }))
    }

    async fn request_app(
        &self,
        req: Request<pb::RequestAppRequest>,
    ) -> Result<Response<pb::AppRequest>, Status> {
        self.record("RequestApp");
        let (caller, role) = self.caller(&req)?;
        let r = req.into_inner();
        if role == Role::Member && r.tenant != "asso-x" {
            return Err(Status::permission_denied(format!(
                "user {caller} belongs to asso-x and cannot ask for apps for {}",
                r.tenant
            )));
        }
        text_or_refuse(&r.comment)?;
        let mut state = self.state.lock().unwrap();
        let offer = state
            .tenants
            .iter()
            .find(|t| t.name == r.tenant)
            .map(|t| t.offer)
            .ok_or_else(|| Status::not_found(format!("no tenant named {}", r.tenant)))?;
        let app = state
            .apps
            .catalog
            .iter()
            .find(|a| a.name == r.app)
            .ok_or_else(|| Status::not_found(format!("no app {} in the catalog", r.app)))?;
        if !app.offers.contains(&offer) {
            return Err(Status::failed_precondition(format!(
                "{} is not offered to {} tenants",
                r.app,
                coloc_proto::domain::Offer::try_from(offer)
                    .map_or("unknown", coloc_proto::domain::Offer::as_str)
            )));
        }
        if r.node != "n1" && r.node != "n2" {
            return Err(Status::not_found(format!("no node named {}", r.node)));
        }
        let volumes: Vec<&pb::Volume> = state
            .volumes
            .iter()
            .filter(|v| {
                v.tenant == r.tenant
                    && v.node == r.node
                    && v.lifecycle == pb::VolumeLifecycle::Active as i32
            })
            .collect();
        let volume = match (r.volume.as_str(), volumes.as_slice()) {
            ("", [only]) => only.name.clone(),
            ("", _) => {
                return Err(Status::failed_precondition(format!(
                    "tenant {} has no single active volume on {}; name one",
                    r.tenant, r.node
                )));
            }
            (name, _) if volumes.iter().any(|v| v.name == name) => name.to_string(),
            (name, _) => {
                return Err(Status::failed_precondition(format!(
                    "tenant {} has no active volume {name} on {}",
                    r.tenant, r.node
                )));
            }
        };
        let apps = &mut state.apps;
        let id = apps.requests.iter().map(|r| r.id).max().unwrap_or(0) + 1;
        let request = pb::AppRequest {
            id,
            tenant: r.tenant,
            app: r.app,
            node: r.node,
            volume,
            requested_by: caller.clone(),
            created_unix: NOW,
            state: pb::RequestState::Pending as i32,
            comments: vec![pb::RequestComment {
                author: caller,
                at_unix: NOW,
                text: r.comment,
            }],
            ..Default::default()
        };
        apps.requests.push(request.clone());
        Ok(Response::new(request))
    }

    async fn list_requests(
        &self,
        req: Request<pb::ListRequestsRequest>,
    ) -> Result<Response<pb::ListRequestsResponse>, Status> {
        self.record("ListRequests");
        let only = self.reader(&req)?;
        let r = req.into_inner();
        let requests = self
            .state
            .lock()
            .unwrap()
            .apps
            .requests
            .iter()
            .filter(|x| only.is_none_or(|o| x.tenant == o))
            .filter(|x| r.tenant.is_empty() || x.tenant == r.tenant)
            .filter(|x| r.state == pb::RequestState::Unspecified as i32 || x.state == r.state)
            .cloned()
            .collect();
        Ok(Response::new(pb::ListRequestsResponse { requests }))
    }

    async fn get_request(
        &self,
        req: Request<pb::GetRequestRequest>,
    ) -> Result<Response<pb::AppRequest>, Status> {
        self.record("GetRequest");
        let only = self.reader(&req)?;
        let id = req.into_inner().id;
        let mut state = self.state.lock().unwrap();
        Ok(Response::new(
            find_request(&mut state.apps, id, only)?.clone(),
        ))
    }

    async fn comment_request(
        &self,
        req: Request<pb::CommentRequestRequest>,
    ) -> Result<Response<pb::AppRequest>, Status> {
        self.record("CommentRequest");
        let only = self.reader(&req)?;
        let (author, _) = self.caller(&req)?;
        let r = req.into_inner();
        text_or_refuse(&r.text)?;
        let mut state = self.state.lock().unwrap();
        let request = find_request(&mut state.apps, r.id, only)?;
        let at_unix = NOW + 60 * i64::try_from(request.comments.len()).unwrap();
        request.comments.push(pb::RequestComment {
            author,
            at_unix,
            text: r.text,
        });
        Ok(Response::new(request.clone()))
    }

    async fn approve_request(
        &self,
        req: Request<pb::DecideRequestRequest>,
    ) -> Result<Response<pb::AppRequest>, Status> {
        self.record("ApproveRequest");
        let admin = self.apps_admin(&req, "approve requests")?;
        let r = req.into_inner();
        if !r.comment.is_empty() {
            text_or_refuse(&r.comment)?;
        }
        let mut state = self.state.lock().unwrap();
        let apps = &mut state.apps;
        let request = find_request(apps, r.id, None)?;
        if request.state != pb::RequestState::Pending as i32 {
            return Err(Status::failed_precondition(format!(
                "request {} is already decided",
                r.id
            )));
        }
        request.state = pb::RequestState::Approved as i32;
        request.decided_by = admin.clone();
        request.decided_unix = NOW + 7200;
        if !r.comment.is_empty() {
            request.comments.push(pb::RequestComment {
                author: admin,
                at_unix: NOW + 7200,
                text: r.comment,
            });
        }
        let request = request.clone();
        let port = 20_000
            + u32::try_from(
                apps.instances
                    .iter()
                    .filter(|i| i.node == request.node)
                    .count(),
            )
            .unwrap();
        apps.instances.push(pb::AppInstance {
            tenant: request.tenant.clone(),
            app: request.app.clone(),
            node: request.node.clone(),
            volume: request.volume.clone(),
            url: url(&request.tenant, &request.app),
            port,
            state: pb::InstanceState::Running as i32,
            request_id: request.id,
            created_unix: NOW + 7200,
            observed: None,
        });
        Ok(Response::new(request))
    }

    async fn reject_request(
        &self,
        req: Request<pb::DecideRequestRequest>,
    ) -> Result<Response<pb::AppRequest>, Status> {
        self.record("RejectRequest");
        let admin = self.apps_admin(&req, "reject requests")?;
        let r = req.into_inner();
        text_or_refuse(&r.comment)?;
        let mut state = self.state.lock().unwrap();
        let request = find_request(&mut state.apps, r.id, None)?;
        if request.state != pb::RequestState::Pending as i32 {
            return Err(Status::failed_precondition(format!(
                "request {} is already decided",
                r.id
            )));
        }
        request.state = pb::RequestState::Rejected as i32;
        request.decided_by = admin.clone();
        request.decided_unix = NOW + 7200;
        request.comments.push(pb::RequestComment {
            author: admin,
            at_unix: NOW + 7200,
            text: r.comment,
        });
        Ok(Response::new(request.clone()))
    }

    async fn list_instances(
        &self,
        req: Request<pb::ListInstancesRequest>,
    ) -> Result<Response<pb::ListInstancesResponse>, Status> {
        self.record("ListInstances");
        let only = self.reader(&req)?;
        let r = req.into_inner();
        let instances = self
            .state
            .lock()
            .unwrap()
            .apps
            .instances
            .iter()
            .filter(|i| only.is_none_or(|o| i.tenant == o))
            .filter(|i| r.tenant.is_empty() || i.tenant == r.tenant)
            .filter(|i| r.node.is_empty() || i.node == r.node)
            .cloned()
            .collect();
        Ok(Response::new(pb::ListInstancesResponse { instances }))
    }

    async fn get_instance(
        &self,
        req: Request<pb::InstanceRef>,
    ) -> Result<Response<pb::AppInstance>, Status> {
        self.record("GetInstance");
        let only = self.reader(&req)?;
        let name = req.into_inner().instance;
        let mut state = self.state.lock().unwrap();
        Ok(Response::new(
            find_instance(&mut state.apps, &name, only)?.clone(),
        ))
    }

    async fn start_instance(
        &self,
        req: Request<pb::InstanceRef>,
    ) -> Result<Response<pb::AppInstance>, Status> {
        self.set_instance_state(
            req,
            "StartInstance",
            "start apps",
            Some(pb::InstanceState::Running),
        )
    }

    async fn stop_instance(
        &self,
        req: Request<pb::InstanceRef>,
    ) -> Result<Response<pb::AppInstance>, Status> {
        self.set_instance_state(
            req,
            "StopInstance",
            "stop apps",
            Some(pb::InstanceState::Stopped),
        )
    }

    async fn restart_instance(
        &self,
        req: Request<pb::InstanceRef>,
    ) -> Result<Response<pb::AppInstance>, Status> {
        self.set_instance_state(req, "RestartInstance", "restart apps", None)
    }

    async fn remove_instance(
        &self,
        req: Request<pb::InstanceRef>,
    ) -> Result<Response<pb::AppInstance>, Status> {
        self.set_instance_state(
            req,
            "RemoveInstance",
            "remove apps",
            Some(pb::InstanceState::Removed),
        )
    }

    async fn get_instance_logs(
        &self,
        req: Request<pb::GetInstanceLogsRequest>,
    ) -> Result<Response<pb::InstanceLogs>, Status> {
        self.record("GetInstanceLogs");
        let only = self.reader(&req)?;
        let r = req.into_inner();
        let mut state = self.state.lock().unwrap();
        let node = find_instance(&mut state.apps, &r.instance, only)?
            .node
            .clone();
        let apps = &mut state.apps;
        apps.log_asks.push((r.after_cursor.clone(), r.lines));
        if apps.disconnected.contains(&node) {
            return Err(Status::unavailable(format!(
                "node {node} is not connected; its journal cannot be read now"
            )));
        }
        if r.lines == 0 || r.lines > 1000 {
            return Err(Status::invalid_argument("lines: 1 to 1000"));
        }
        let journal = apps.journals.get(&r.instance).cloned().unwrap_or_default();
        let start = if r.after_cursor.is_empty() {
            0
        } else {
            r.after_cursor
                .strip_prefix('c')
                .and_then(|k| k.parse::<usize>().ok())
                .filter(|k| *k <= journal.len())
                .ok_or_else(|| Status::invalid_argument("unknown cursor"))?
        };
        let after = &journal[start..];
        // The last lines, like journalctl -n.
        let skip = after.len().saturating_sub(r.lines as usize);
        let lines = after[skip..].to_vec();
        let cursor = if lines.is_empty() {
            String::new()
        } else {
            format!("c{}", journal.len())
        };
        Ok(Response::new(pb::InstanceLogs { lines, cursor }))
    }
}
