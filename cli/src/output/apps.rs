//! Apps: the catalog, the requests that install an app and their
//! discussion, the instances tenants run with their unit's state and
//! health, and their journal lines.

use std::fmt::Write as _;

use coloc_proto::agent::v1 as agent;
use coloc_proto::controller::v1 as pb;
use serde_json::{Value, json};

use super::tenancy::offer_word;
use super::{Details, Table, clean, fmt_bytes, fmt_time, or_dash};

pub fn request_state_word(state: i32) -> &'static str {
    match pb::RequestState::try_from(state) {
        Ok(pb::RequestState::Pending) => "pending",
        Ok(pb::RequestState::Approved) => "approved",
        Ok(pb::RequestState::Rejected) => "rejected",
        Ok(pb::RequestState::Unspecified) | Err(_) => "unknown",
    }
}

/// The wanted state, with `(tenant suspended)` when admins keep the
/// tenant's apps stopped whatever it says.
fn wanted_state(i: &pb::AppInstance) -> String {
    let word = instance_state_word(i.state);
    if i.tenant_suspended && i.state != pb::InstanceState::Removed as i32 {
        format!("{word} (tenant suspended)")
    } else {
        word.to_string()
    }
}

/// How the web endpoint is protected, as the catalog files write it:
/// `public`, `own` (the app's login) or `proxy` (the proxy asks).
pub fn web_auth_word(web_auth: i32) -> &'static str {
    match agent::WebAuth::try_from(web_auth) {
        Ok(agent::WebAuth::Public) => "public",
        Ok(agent::WebAuth::Own) => "own",
        Ok(agent::WebAuth::Proxy) => "proxy",
        Ok(agent::WebAuth::Unspecified) | Err(_) => "unknown",
    }
}

/// Who may open the instance's address, with what to do when the proxy
/// still waits for a password.
fn web_access(i: &pb::AppInstance) -> String {
    match agent::WebAuth::try_from(i.web_auth) {
        Ok(agent::WebAuth::Proxy) if i.web_user.is_empty() => format!(
            "locked (503) until a password is set: coloc app set-password {}",
            instance_name(i)
        ),
        Ok(agent::WebAuth::Proxy) => {
            format!("login asked by the proxy, user {}", clean(&i.web_user))
        }
        Ok(agent::WebAuth::Own) => "the app's own login".to_string(),
        Ok(agent::WebAuth::Public) => "public".to_string(),
        Ok(agent::WebAuth::Unspecified) | Err(_) => "unknown".to_string(),
    }
}

pub fn instance_state_word(state: i32) -> &'static str {
    match pb::InstanceState::try_from(state) {
        Ok(pb::InstanceState::Running) => "running",
        Ok(pb::InstanceState::Stopped) => "stopped",
        Ok(pb::InstanceState::Removed) => "removed",
        Ok(pb::InstanceState::Unspecified) | Err(_) => "unknown",
    }
}

fn offer_words(offers: &[i32]) -> Vec<&'static str> {
    offers.iter().map(|o| offer_word(*o)).collect()
}

/// A catalog limit: `256.0 MiB`, or `-` when the app sets none.
fn memory_limit(bytes: u64) -> String {
    if bytes == 0 {
        "-".to_string()
    } else {
        fmt_bytes(bytes)
    }
}

/// systemd's CPUQuota: 100% is one core.
fn cpu_limit(percent: u32) -> String {
    if percent == 0 {
        "-".to_string()
    } else {
        format!("{percent}%")
    }
}

pub fn catalog_json(a: &pb::CatalogApp) -> Value {
    json!({
        "name": a.name,
        "description": a.description,
        "replaces": a.replaces,
        "packages": a.packages,
        "offers": offer_words(&a.offers),
        "memory_max_bytes": a.memory_max_bytes,
        "cpu_quota_percent": a.cpu_quota_percent,
        "web_auth": web_auth_word(a.web_auth),
    })
}

pub fn catalog_table(apps: &[pb::CatalogApp]) -> String {
    Table::new(&[
        "NAME",
        "DESCRIPTION",
        "REPLACES",
        "OFFERS",
        "MEMORY",
        "CPU",
        "WEB LOGIN",
    ])
    .rows(apps, |a| {
        vec![
            clean(&a.name).into(),
            or_dash(&a.description).into(),
            or_dash(&a.replaces).into(),
            if a.offers.is_empty() {
                "-".to_string()
            } else {
                offer_words(&a.offers).join(", ")
            },
            memory_limit(a.memory_max_bytes),
            cpu_limit(a.cpu_quota_percent),
            web_auth_word(a.web_auth).to_string(),
        ]
    })
    .render_or("the catalog is empty")
}

fn comment_json(c: &pb::RequestComment) -> Value {
    json!({ "author": c.author, "at_unix": c.at_unix, "text": c.text })
}

pub fn request_json(r: &pb::AppRequest) -> Value {
    json!({
        "id": r.id,
        "tenant": r.tenant,
        "app": r.app,
        "node": r.node,
        "volume": r.volume,
        "requested_by": r.requested_by,
        "created_unix": r.created_unix,
        "state": request_state_word(r.state),
        "decided_by": r.decided_by,
        "decided_unix": r.decided_unix,
        "comments": r.comments.iter().map(comment_json).collect::<Vec<_>>(),
    })
}

/// `pending`, `approved by root on 2026-01-01 00:00`.
fn request_decision(r: &pb::AppRequest) -> String {
    let word = request_state_word(r.state);
    if r.decided_by.is_empty() {
        word.to_string()
    } else {
        format!(
            "{word} by {} on {} UTC",
            clean(&r.decided_by),
            fmt_time(r.decided_unix)
        )
    }
}

pub fn requests_table(requests: &[pb::AppRequest]) -> String {
    Table::new(&[
        "ID", "TENANT", "APP", "NODE", "VOLUME", "STATE", "ASKED BY", "ASKED", "COMMENTS",
    ])
    .rows(requests, |r| {
        vec![
            r.id.to_string(),
            clean(&r.tenant).into(),
            clean(&r.app).into(),
            clean(&r.node).into(),
            or_dash(&r.volume).into(),
            request_state_word(r.state).to_string(),
            or_dash(&r.requested_by).into(),
            fmt_time(r.created_unix),
            r.comments.len().to_string(),
        ]
    })
    .render_or("no requests")
}

/// The request, then its discussion: each comment under its author and
/// time, oldest first, as colocd keeps them.
pub fn request_details(r: &pb::AppRequest) -> String {
    let volume = if r.volume.is_empty() {
        "- (the tenant's only volume on that node)".to_string()
    } else {
        clean(&r.volume).into_owned()
    };
    let mut out = Details::new()
        .field("Request", r.id.to_string())
        .field("Tenant", clean(&r.tenant))
        .field("App", clean(&r.app))
        .field("Node", clean(&r.node))
        .field("Volume", volume)
        .field("Asked by", or_dash(&r.requested_by))
        .field("Asked", format!("{} UTC", fmt_time(r.created_unix)))
        .field("State", request_decision(r))
        .render();
    out.push_str("\nDiscussion\n");
    if r.comments.is_empty() {
        out.push_str("  no comments\n");
    }
    for c in &r.comments {
        let _ = writeln!(
            out,
            "  {} UTC  {}\n    {}",
            fmt_time(c.at_unix),
            or_dash(&c.author),
            clean(&c.text)
        );
    }
    out
}

/// `asso-x/radicale`.
pub fn instance_name(i: &pb::AppInstance) -> String {
    format!("{}/{}", clean(&i.tenant), clean(&i.app))
}

fn app_status_json(o: &agent::AppStatus) -> Value {
    json!({
        "unit": o.unit,
        "active_state": o.active_state,
        "sub_state": o.sub_state,
        "restarts": o.restarts,
        "memory_bytes": o.memory_bytes,
        "healthy": o.healthy,
        "health_detail": o.health_detail,
        "error": o.error,
        "last_log_lines": o.last_log_lines,
    })
}

pub fn instance_json(i: &pb::AppInstance) -> Value {
    json!({
        "tenant": i.tenant,
        "app": i.app,
        "node": i.node,
        "volume": i.volume,
        "url": i.url,
        "port": i.port,
        "state": instance_state_word(i.state),
        "tenant_suspended": i.tenant_suspended,
        "node_removed": i.node_removed,
        "web_auth": web_auth_word(i.web_auth),
        "web_user": i.web_user,
        "request_id": i.request_id,
        "created_unix": i.created_unix,
        "observed": i.observed.as_ref().map(app_status_json),
    })
}

/// systemd's view: `active/running`, `failed/failed`, or that the agent
/// has not reported the unit yet.
fn unit_state(i: &pb::AppInstance) -> String {
    match &i.observed {
        None => "not reported".to_string(),
        Some(o) if o.sub_state.is_empty() => or_dash(&o.active_state).into_owned(),
        Some(o) => format!("{}/{}", or_dash(&o.active_state), clean(&o.sub_state)),
    }
}

/// Health only means something for an app meant to run.
fn health(i: &pb::AppInstance) -> &'static str {
    match &i.observed {
        None => "-",
        Some(_) if i.state != pb::InstanceState::Running as i32 => "-",
        Some(o) if o.healthy => "healthy",
        Some(_) => "unhealthy",
    }
}

/// The health probe's last result as the agent reported it: `healthy
/// (HTTP 200 on /)`, `unhealthy (connection refused)`; for an app not
/// meant to run, that it is not probed, with what the last probe said.
fn probe_result(i: &pb::AppInstance, o: &agent::AppStatus) -> String {
    let detail = clean(&o.health_detail);
    match health(i) {
        "-" if detail.is_empty() => "- (not probed: the app is not meant to run)".to_string(),
        "-" => format!("- (not probed: the app is not meant to run; last probe: {detail})"),
        word if detail.is_empty() => word.to_string(),
        word => format!("{word} ({detail})"),
    }
}

fn instance_memory(i: &pb::AppInstance) -> String {
    match &i.observed {
        Some(o) if o.memory_bytes > 0 => fmt_bytes(o.memory_bytes),
        Some(_) | None => "-".to_string(),
    }
}

/// True when the agent reported something wrong with the instance.
pub fn instance_has_error(i: &pb::AppInstance) -> bool {
    i.observed.as_ref().is_some_and(|o| !o.error.is_empty())
}

pub fn instances_table(instances: &[pb::AppInstance]) -> String {
    Table::new(&[
        "INSTANCE", "NODE", "URL", "STATE", "UNIT", "RESTARTS", "MEMORY", "HEALTH",
    ])
    .rows(instances, |i| {
        vec![
            instance_name(i),
            clean(&i.node).into(),
            or_dash(&i.url).into(),
            if i.node_removed {
                "orphan (node removed)".to_string()
            } else {
                wanted_state(i)
            },
            unit_state(i),
            i.observed
                .as_ref()
                .map_or_else(|| "-".to_string(), |o| o.restarts.to_string()),
            instance_memory(i),
            health(i).to_string(),
        ]
    })
    .render_or("no apps")
}

pub fn instance_details(i: &pb::AppInstance) -> String {
    let volume = if i.volume.is_empty() {
        "-".to_string()
    } else {
        format!("{}/{}", clean(&i.tenant), clean(&i.volume))
    };
    let port = if i.port == 0 {
        "-".to_string()
    } else {
        format!("127.0.0.1:{}", i.port)
    };
    let request = if i.request_id == 0 {
        "-".to_string()
    } else {
        i.request_id.to_string()
    };
    let mut d = Details::new()
        .field("Instance", instance_name(i))
        .field("URL", or_dash(&i.url))
        .field("Web access", web_access(i))
        .field("Node", clean(&i.node))
        .field("Volume", volume)
        .field("Port", port)
        .field("Wanted state", wanted_state(i))
        .field("Request", request)
        .field("Created", fmt_time(i.created_unix));
    let mut lines: &[String] = &[];
    match &i.observed {
        None => d = d.field("Agent", "not reported yet"),
        Some(o) => {
            let health = probe_result(i, o);
            d = d
                .field("Unit", or_dash(&o.unit))
                .field("Unit state", unit_state(i))
                .field("Restarts", o.restarts.to_string())
                .field("Memory", instance_memory(i))
                .field("Health", health);
            if !o.error.is_empty() {
                d = d.field("Error", clean(&o.error));
            }
            lines = &o.last_log_lines;
        }
    }
    let mut out = d.render();
    if !lines.is_empty() {
        out.push_str("\nLast log lines\n");
        for line in lines {
            let _ = writeln!(out, "  {}", clean(line));
        }
    }
    out
}

pub fn logs_json(l: &pb::InstanceLogs) -> Value {
    json!({ "lines": l.lines, "cursor": l.cursor, "truncated": l.truncated })
}

/// What `coloc app logs` says on stderr when the node cut its answer.
pub fn logs_truncated_note(lines: usize) -> String {
    format!(
        "note: the node sent only the newest {lines} lines: one answer carries at most {} KiB \
         of log; ask for fewer with -n",
        coloc_proto::MAX_LOG_PAGE_BYTES / 1024
    )
}

/// Journal lines as they came, escaped, one per line.
pub fn log_lines(lines: &[String]) -> String {
    let mut out = String::new();
    for line in lines {
        out.push_str(&clean(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_instance() -> pb::AppInstance {
        pb::AppInstance {
            tenant: "asso-x".into(),
            app: "radicale".into(),
            node: "n1".into(),
            volume: "data".into(),
            url: "https://radicale.asso-x.example.org/".into(),
            port: 20_000,
            state: pb::InstanceState::Running as i32,
            request_id: 3,
            created_unix: 1_767_225_600,
            observed: None,
            tenant_suspended: false,
            node_removed: false,
            web_auth: agent::WebAuth::Own as i32,
            web_user: String::new(),
        }
    }

    #[test]
    fn status_says_who_may_open_the_address() {
        let mut i = sample_instance();
        assert!(instance_details(&i).contains("the app's own login"));
        i.web_auth = agent::WebAuth::Proxy as i32;
        let text = instance_details(&i);
        assert!(
            text.contains(
                "locked (503) until a password is set: coloc app set-password asso-x/radicale"
            ),
            "{text}"
        );
        i.web_user = "asso-x".into();
        assert!(instance_details(&i).contains("login asked by the proxy, user asso-x"));
        assert_eq!(instance_json(&i)["web_auth"], "proxy");
        assert_eq!(instance_json(&i)["web_user"], "asso-x");
    }

    #[test]
    fn a_suspended_tenant_s_instances_say_so() {
        let mut i = sample_instance();
        i.tenant_suspended = true;
        assert!(instances_table(std::slice::from_ref(&i)).contains("running (tenant suspended)"));
        assert!(instance_details(&i).contains("running (tenant suspended)"));
        assert_eq!(instance_json(&i)["tenant_suspended"], true);
        i.state = pb::InstanceState::Removed as i32;
        assert_eq!(wanted_state(&i), "removed");
    }

    #[test]
    fn instances_show_unit_and_health() {
        let mut i = sample_instance();
        let table = instances_table(std::slice::from_ref(&i));
        assert!(table.contains("running  not reported  -"), "{table}");
        assert!(instance_details(&i).contains("Agent:         not reported yet"));
        i.observed = Some(agent::AppStatus {
            unit: "coloc-app-asso-x-radicale.service".into(),
            active_state: "failed".into(),
            sub_state: "failed".into(),
            restarts: 5,
            memory_bytes: 0,
            healthy: false,
            health_detail: "connection refused".into(),
            error: "start limit hit\x1b[2J".into(),
            last_log_lines: vec!["Traceback".into(), "ValueError: bad".into()],
            ..Default::default()
        });
        assert!(instance_has_error(&i));
        let text = instance_details(&i);
        for needle in [
            "Unit state:    failed/failed",
            "Restarts:      5",
            "Health:        unhealthy (connection refused)",
            "Volume:        asso-x/data",
            "Port:          127.0.0.1:20000",
            "Last log lines\n  Traceback\n  ValueError: bad\n",
        ] {
            assert!(text.contains(needle), "{needle:?} missing in\n{text}");
        }
        assert!(!text.contains('\x1b'), "{text:?}");
        // A stopped app is not called unhealthy.
        i.state = pb::InstanceState::Stopped as i32;
        assert_eq!(health(&i), "-");
        assert!(
            instance_details(&i).contains(
                "Health:        - (not probed: the app is not meant to run; last probe: connection refused)"
            ),
            "{}",
            instance_details(&i)
        );
        let v = instance_json(&i);
        assert_eq!(v["state"], "stopped");
        assert_eq!(v["observed"]["last_log_lines"][1], "ValueError: bad");
    }

    #[test]
    fn status_shows_the_health_probe_s_last_result() {
        let mut i = sample_instance();
        i.observed = Some(agent::AppStatus {
            active_state: "active".into(),
            sub_state: "running".into(),
            healthy: true,
            health_detail: "HTTP 200 on /.web/".into(),
            ..Default::default()
        });
        let text = instance_details(&i);
        assert!(
            text.contains("Health:        healthy (HTTP 200 on /.web/)\n"),
            "{text}"
        );
        assert!(instances_table(std::slice::from_ref(&i)).contains("  healthy"));
        let v = instance_json(&i);
        assert_eq!(v["observed"]["healthy"], true);
        assert_eq!(v["observed"]["health_detail"], "HTTP 200 on /.web/");
        if let Some(o) = i.observed.as_mut() {
            o.healthy = false;
            o.health_detail.clear();
        }
        assert!(instance_details(&i).contains("Health:        unhealthy\n"));
        i.state = pb::InstanceState::Stopped as i32;
        assert!(
            instance_details(&i)
                .contains("Health:        - (not probed: the app is not meant to run)\n")
        );
    }

    #[test]
    fn requests_show_their_thread() {
        let r = pb::AppRequest {
            id: 7,
            tenant: "asso-x".into(),
            app: "radicale".into(),
            node: "n1".into(),
            requested_by: "mia".into(),
            created_unix: 1_767_225_600,
            state: pb::RequestState::Approved as i32,
            decided_by: "root".into(),
            decided_unix: 1_767_229_200,
            comments: vec![pb::RequestComment {
                author: "mia".into(),
                at_unix: 1_767_225_600,
                text: "Pour nos agendas".into(),
            }],
            ..Default::default()
        };
        let text = request_details(&r);
        assert!(
            text.contains("State:     approved by root on 2026-01-01 01:00 UTC"),
            "{text}"
        );
        assert!(
            text.contains("\nDiscussion\n  2026-01-01 00:00 UTC  mia\n    Pour nos agendas\n"),
            "{text}"
        );
        assert!(text.contains("the tenant's only volume"), "{text}");
        assert_eq!(request_json(&r)["state"], "approved");
        assert_eq!(request_state_word(0), "unknown");
    }

    #[test]
    fn catalog_limits() {
        let a = pb::CatalogApp {
            name: "radicale".into(),
            offers: vec![
                pb::Offer::Responsable as i32,
                pb::Offer::Participatif as i32,
            ],
            memory_max_bytes: 256 << 20,
            cpu_quota_percent: 50,
            ..Default::default()
        };
        let table = catalog_table(std::slice::from_ref(&a));
        assert!(
            table.contains("responsable, participatif  256.0 MiB  50%"),
            "{table}"
        );
        assert_eq!(catalog_json(&a)["offers"][1], "participatif");
        assert_eq!(cpu_limit(0), "-");
        assert_eq!(log_lines(&["a\tb".into()]), "a\\tb\n");
    }
}
