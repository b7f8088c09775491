//! The app reconciler: makes the node's app instances and its reverse
//! proxy match the desired configuration (docs/APPS.md, "On the node").
//!
//! One pass takes every instance on its own, so that one failing
//! instance never stops the others. Every field was checked, and
//! duplicates and port clashes refused, when the configuration came in
//! ([`crate::desired`], with proto's rules in `coloc_proto::apps`). For
//! each instance the pass waits for its volume to be READY, installs its
//! packages and masks the units they ship, creates its data directories
//! on the tenant's volume and writes its configuration files, renders and
//! writes its unit ([`unit`](mod@unit)), reloads systemd once if any unit
//! file changed, then enables and starts it (or restarts it, when the
//! restart nonce moved or its files changed), stops and disables it, or
//! removes it. It then reads each unit's state, probes its health
//! ([`probe`]) and, for a failed unit, attaches the end of its journal
//! (`logs`, which also answers `coloc app logs` within the message limit).
//! Last, the proxy: Caddy's configuration
//! ([`proxy`]) routes every RUNNING instance's host name to its port.
//!
//! Files go under a root directory (`/` on a node, a temporary directory
//! in tests), written only when their content changes and never through
//! a symbolic link (`fsops`); systemd, apt and the journal are reached
//! only through the [`Host`] traits. The reconciler never touches a
//! tenant's data beyond creating its directories: removal stops the unit
//! and deletes the unit file and configuration, the data stays.

mod fsops;
mod logs;
pub mod probe;
pub mod proxy;
pub mod unit;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use coloc_proto::agent::v1::{AppState, AppStatus, VolumePhase, VolumeStatus};
pub use coloc_proto::apps::{AppDecl, AppIdentity, HealthCheck};
use coloc_proto::apps::{AppName, ProxyDecl};
use coloc_proto::domain::{InvalidInput, TenantName, clip};

use crate::desired::AppEntry;
use crate::host::{Host, HostError, UnitDetails, UnitName};
use crate::logging::ids;
use coloc_proto::error_chain;
pub use fsops::FsError;
use fsops::{Dir, Owner};
pub use logs::{MAX_LOG_LINE_BYTES, STATUS_LOG_LINE_BYTES, app_logs};
pub use probe::{PROBE_TIMEOUT, ProbeOutcome};
pub use proxy::{
    ADMIN_SOCKET, CADDY_PACKAGE, CADDY_UNIT, CADDYFILE, DEBIAN_CADDY_UNITS, LOCKED_BODY, Site,
    SiteAccess, render_caddyfile,
};
pub use unit::{UNIT_DIR, render_unit};

/// Where the agent records each instance's last applied restart nonce.
pub const NONCE_DIR: &str = "/var/lib/coloc/apps";
/// Journal lines attached to the status of a failed instance.
pub const FAILED_LOG_LINES: u32 = 20;
/// Bounds on the lines one `GetAppLogs` returns.
pub const LOG_LINES_RANGE: std::ops::RangeInclusive<u32> = 1..=1000;
/// `active_state` reported once an instance's unit is gone.
pub const REMOVED_STATE: &str = "removed";

/// Why an instance (or the proxy) is not in its desired state.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("refused")]
    Invalid(#[source] InvalidInput),
    #[error("volume {volume} is not ready: {reason}")]
    VolumeNotReady { volume: String, reason: String },
    #[error("could not {what}")]
    Files {
        what: &'static str,
        #[source]
        source: FsError,
    },
    #[error("could not {op} {object}")]
    Host {
        op: &'static str,
        object: String,
        #[source]
        source: Box<HostError>,
    },
    #[error("{unit} failed (result {result:?})")]
    Failed { unit: UnitName, result: String },
    #[error("{unit} is {state}, not running")]
    NotRunning { unit: UnitName, state: String },
    /// A package unit to mask that none of the app's packages installed.
    #[error("{unit} is not a unit the app's packages ship; it is not masked")]
    NotShipped { unit: String },
    #[error("{count} running instance(s) but no proxy in the desired configuration")]
    NoProxy { count: usize },
    /// systemd did not re-read the unit files; shared by every instance
    /// whose unit changed, hence a message rather than a source.
    #[error("systemd could not reload unit files: {message}")]
    Reload { message: String },
    #[error("a blocking file task did not complete")]
    Blocking(#[source] tokio::task::JoinError),
}

impl From<InvalidInput> for AppError {
    fn from(e: InvalidInput) -> AppError {
        AppError::Invalid(e)
    }
}

fn host_err(op: &'static str, object: impl ToString) -> impl FnOnce(HostError) -> AppError {
    let object = object.to_string();
    move |source| AppError::Host {
        op,
        object,
        source: Box::new(source),
    }
}

fn files_err(what: &'static str) -> impl FnOnce(FsError) -> AppError {
    move |source| AppError::Files { what, source }
}

/// What an app pass found and did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppsReport {
    /// One per instance in the desired configuration, in its order.
    pub statuses: Vec<AppStatus>,
    /// One line per instance (or the proxy) that failed.
    pub failures: Vec<String>,
    /// Instances that run but did not answer their probe yet (an app
    /// still starting): probed again shortly ([`Settling`]).
    pub settling: Vec<Settling>,
}

/// An instance whose unit runs but whose health probe has not passed yet:
/// what it takes to probe it again without a whole pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Settling {
    pub tenant: String,
    pub app: String,
    pub check: HealthCheck,
    pub port: u16,
    pub hostname: String,
}

impl Settling {
    /// Probes the instance once; true when it answers as its check wants.
    pub async fn probe(&self, timeout: std::time::Duration) -> bool {
        probe::probe(&self.check, self.port, &self.hostname, timeout)
            .await
            .healthy
    }
}

impl AppsReport {
    pub fn failed(&self) -> bool {
        !self.failures.is_empty()
    }

    /// What failed, on one line; empty when nothing did.
    pub fn summary(&self) -> String {
        self.failures.join("; ")
    }
}

/// What is to be done with one instance.
enum Plan {
    /// RUNNING or STOPPED.
    Apply(Box<Apply>),
    Remove(AppIdentity),
}

struct Apply {
    app: AppDecl,
    /// The unit file was written this pass.
    unit_changed: bool,
    /// A configuration file was written or removed this pass.
    config_changed: bool,
}

struct Instance {
    status: AppStatus,
    plan: Plan,
    /// The first thing that went wrong; later steps are skipped.
    error: Option<AppError>,
    unit: UnitName,
}

impl Instance {
    fn ok(&self) -> bool {
        self.error.is_none()
    }

    fn fail(&mut self, error: AppError) {
        if self.error.is_none() {
            self.error = Some(error);
        }
    }

    fn apply(&self) -> Option<&Apply> {
        match &self.plan {
            Plan::Apply(apply) => Some(apply),
            _ => None,
        }
    }
}

fn new_instance(entry: &AppEntry) -> Instance {
    let (tenant, app) = entry.identity();
    let (plan, unit) = match entry {
        AppEntry::Deploy(app) => (
            Plan::Apply(Box::new(Apply {
                app: (**app).clone(),
                unit_changed: false,
                config_changed: false,
            })),
            app.unit.clone(),
        ),
        AppEntry::Remove(id) => (Plan::Remove(id.clone()), id.unit.clone()),
    };
    Instance {
        status: AppStatus {
            tenant: tenant.to_string(),
            app: app.to_string(),
            unit: unit.to_string(),
            ..AppStatus::default()
        },
        plan,
        error: None,
        unit,
    }
}

/// Checks that the volume holding `app`'s data is READY, mounted
/// read-write where `data_dir` expects it.
fn check_volume(app: &AppDecl, volumes: &[VolumeStatus]) -> Result<(), AppError> {
    let not_ready = |reason: String| AppError::VolumeNotReady {
        volume: app.volume_id.to_string(),
        reason,
    };
    let volume = volumes
        .iter()
        .find(|v| v.id == app.volume_id.as_str())
        .ok_or_else(|| not_ready("not among this node's volumes".into()))?;
    if volume.phase() != VolumePhase::Ready {
        return Err(not_ready(format!(
            "phase {}",
            volume
                .phase()
                .as_str_name()
                .trim_start_matches("VOLUME_PHASE_")
        )));
    }
    if !volume.mounted || volume.read_only {
        return Err(not_ready("not mounted read-write".into()));
    }
    if volume.mount_path != app.volume_path {
        return Err(not_ready(format!(
            "mounted at {}, but data_dir is under {}",
            clip(&volume.mount_path),
            app.volume_path
        )));
    }
    Ok(())
}

/// `/a/b/c` as `["a", "b", "c"]`.
fn components(path: &str) -> Vec<&str> {
    path.split('/').filter(|c| !c.is_empty()).collect()
}

/// What writing an instance's files changed.
struct Written {
    unit: bool,
    config: bool,
}

/// Data directories, configuration files and the unit file of `app`
/// under `root`. Blocking.
fn write_files(root: &Path, app: &AppDecl) -> Result<Written, AppError> {
    let top = Dir::open_root(root).map_err(files_err("open the root directory"))?;
    // The volume's mount point is never created here: a missing one means
    // the volume is not mounted, and writing there would fill the root
    // file system.
    let volume = top
        .require_path(&components(&app.volume_path))
        .map_err(files_err("open the volume"))?
        .ok_or_else(|| AppError::VolumeNotReady {
            volume: app.volume_id.to_string(),
            reason: format!("{} does not exist", app.volume_path),
        })?;
    let tenant = Owner {
        uid: app.uid,
        gid: app.gid,
        mode: 0o750,
    };
    let data = volume
        .ensure_path(&["apps", app.app.as_str()], Some(tenant), 0o750)
        .map_err(files_err("prepare the data directory"))?;
    for dir in &app.data_dirs {
        let parts: Vec<&str> = dir.iter().map(String::as_str).collect();
        data.ensure_path(&parts, Some(tenant), 0o750)
            .map_err(files_err("prepare a data subdirectory"))?;
    }
    // Given once: the app owns them from then on.
    for (path, content) in &app.data_files {
        let parts: Vec<&str> = path.iter().map(String::as_str).collect();
        let (name, parents) = parts
            .split_last()
            .expect("a data file path has at least one component");
        let created = data
            .ensure_path(parents, Some(tenant), 0o750)
            .and_then(|dir| {
                dir.create_file_once(
                    name,
                    content.as_bytes(),
                    Owner {
                        mode: 0o640,
                        ..tenant
                    },
                )
            })
            .map_err(files_err("write a data file"))?;
        if created {
            tracing::info!(tenant = %app.tenant, app = %app.app, file = %path.join("/"), "initial data file written");
        }
    }

    let config_parent = components(&app.config_dir);
    let (config_name, parents) = config_parent
        .split_last()
        .expect("config_dir was validated as /etc/coloc/apps/<tenant>-<app>");
    let config = top
        .ensure_path(parents, None, 0o755)
        .and_then(|parent| {
            parent.ensure_dir(
                config_name,
                Some(Owner {
                    uid: 0,
                    gid: app.gid,
                    mode: 0o750,
                }),
                0o750,
            )
        })
        .map_err(files_err("prepare the configuration directory"))?;
    let mut config_changed = false;
    let file_owner = Owner {
        uid: 0,
        gid: app.gid,
        mode: 0o640,
    };
    for (name, content) in &app.files {
        config_changed |= config
            .write_file(name, content.as_bytes(), file_owner)
            .map_err(files_err("write a configuration file"))?;
    }
    let wanted: BTreeSet<&str> = app.files.iter().map(|(n, _)| n.as_str()).collect();
    for name in config
        .file_names()
        .map_err(files_err("list the configuration directory"))?
    {
        if !wanted.contains(name.as_str()) {
            config_changed |= config
                .remove_file(&name)
                .map_err(files_err("remove a stale configuration file"))?;
        }
    }

    let text = render_unit(app)?;
    let units = top
        .ensure_path(&components(UNIT_DIR), None, 0o755)
        .map_err(files_err("open the unit directory"))?;
    let unit_changed = units
        .write_file(
            app.unit.as_str(),
            text.as_bytes(),
            Owner {
                uid: 0,
                gid: 0,
                mode: 0o644,
            },
        )
        .map_err(files_err("write the unit file"))?;
    Ok(Written {
        unit: unit_changed,
        config: config_changed,
    })
}

/// Deletes the unit file, configuration directory and nonce of a removed
/// instance; true when the unit file existed. Blocking.
fn remove_files(root: &Path, id: &AppIdentity) -> Result<bool, AppError> {
    let top = Dir::open_root(root).map_err(files_err("open the root directory"))?;
    let unit_removed = match top
        .require_path(&components(UNIT_DIR))
        .map_err(files_err("open the unit directory"))?
    {
        Some(units) => units
            .remove_file(id.unit.as_str())
            .map_err(files_err("delete the unit file"))?,
        None => false,
    };
    let config_parts = components(&id.config_dir);
    if let Some((name, parents)) = config_parts.split_last()
        && let Some(parent) = top
            .require_path(parents)
            .map_err(files_err("open the configuration directories"))?
    {
        parent
            .remove_dir_with_files(name)
            .map_err(files_err("remove the configuration directory"))?;
    }
    if let Some(nonces) = top
        .require_path(&components(NONCE_DIR))
        .map_err(files_err("open the nonce directory"))?
    {
        nonces
            .remove_file(&nonce_file(&id.tenant, &id.app))
            .map_err(files_err("delete the nonce file"))?;
    }
    Ok(unit_removed)
}

fn nonce_file(tenant: &TenantName, app: &AppName) -> String {
    format!("{tenant}-{app}.nonce")
}

/// The restart nonce last applied, if recorded. Blocking.
fn read_nonce(root: &Path, app: &AppDecl) -> Result<Option<u64>, AppError> {
    let top = Dir::open_root(root).map_err(files_err("open the root directory"))?;
    let Some(dir) = top
        .require_path(&components(NONCE_DIR))
        .map_err(files_err("open the nonce directory"))?
    else {
        return Ok(None);
    };
    let content = dir
        .read_small_file(&nonce_file(&app.tenant, &app.app))
        .map_err(files_err("read the nonce file"))?;
    // An unreadable record means "unknown": the next start is a plain
    // start and the record is rewritten.
    Ok(content.and_then(|c| String::from_utf8(c).ok()?.trim().parse().ok()))
}

/// Records `app`'s restart nonce as applied. Blocking.
fn write_nonce(root: &Path, app: &AppDecl) -> Result<(), AppError> {
    let top = Dir::open_root(root).map_err(files_err("open the root directory"))?;
    let dir = top
        .ensure_path(&components(NONCE_DIR), None, 0o700)
        .map_err(files_err("prepare the nonce directory"))?;
    dir.write_file(
        &nonce_file(&app.tenant, &app.app),
        format!("{}\n", app.restart_nonce).as_bytes(),
        Owner {
            uid: 0,
            gid: 0,
            mode: 0o600,
        },
    )
    .map_err(files_err("write the nonce file"))?;
    Ok(())
}

/// Runs a blocking file step off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(AppError::Blocking)?
}

/// Installs `app`'s packages and masks (and stops) the units they ship,
/// and makes sure the tenant's account exists (systemd resolves `User=`).
async fn prepare_packages(host: &Host, app: &AppDecl) -> Result<(), AppError> {
    host.accounts
        .ensure(app.uid, app.gid)
        .await
        .map_err(host_err("create the account of", &app.unit))?;
    if !app.packages.is_empty() {
        host.packages
            .ensure_installed(
                &app.packages
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
            )
            .await
            .map_err(host_err("install the packages of", &app.unit))?;
    }
    // Only units whose files the app's own packages installed are masked:
    // a catalog entry cannot make the node mask ssh, the agent or anything
    // systemd runs (proto refuses those names too).
    let mut shipped = std::collections::BTreeSet::new();
    if !app.package_units.is_empty() {
        for package in &app.packages {
            shipped.extend(
                host.packages
                    .unit_files(package.as_str())
                    .await
                    .map_err(host_err("list the units of", package))?,
            );
        }
    }
    if let Some(unit) = app.package_units.iter().find(|u| !shipped.contains(*u)) {
        return Err(AppError::NotShipped {
            unit: unit.to_string(),
        });
    }
    for unit in &app.package_units {
        host.units
            .mask(unit)
            .await
            .map_err(host_err("mask", unit))?;
        host.units
            .stop(unit)
            .await
            .map_err(host_err("stop", unit))?;
    }
    Ok(())
}

/// Stops and disables a removed instance's unit, then deletes its files.
/// Returns whether the unit file existed.
async fn remove(host: &Host, root: &Path, id: &AppIdentity) -> Result<bool, AppError> {
    host.units
        .stop(&id.unit)
        .await
        .map_err(host_err("stop", &id.unit))?;
    host.units
        .disable(&id.unit)
        .await
        .map_err(host_err("disable", &id.unit))?;
    let root = root.to_path_buf();
    let removed = {
        let id = id.clone();
        blocking(move || remove_files(&root, &id)).await?
    };
    if removed {
        tracing::info!(message_id = ids::APP_REMOVED, tenant = %id.tenant, app = %id.app, unit = %id.unit, "app removed; its data is kept");
    }
    Ok(removed)
}

fn is_up(state: &str) -> bool {
    matches!(state, "active" | "activating" | "reloading")
}

/// Brings a RUNNING instance's unit up (restarting it when its nonce
/// moved or its files changed while it ran), or a STOPPED one down.
async fn drive(host: &Host, root: &Path, apply: &Apply) -> Result<(), AppError> {
    let app = &apply.app;
    let unit = &app.unit;
    match app.state {
        AppState::Running => {
            host.units
                .enable(unit)
                .await
                .map_err(host_err("enable", unit))?;
            let before = host
                .units
                .details(unit)
                .await
                .map_err(host_err("read the state of", unit))?;
            if before.active_state == "failed" {
                host.units
                    .reset_failed(unit)
                    .await
                    .map_err(host_err("reset", unit))?;
            }
            let recorded = {
                let root = root.to_path_buf();
                let app = app.clone();
                blocking(move || read_nonce(&root, &app)).await?
            };
            let nonce_moved = recorded.is_some_and(|n| n != app.restart_nonce);
            let files_changed = apply.unit_changed || apply.config_changed;
            if nonce_moved || (files_changed && is_up(&before.active_state)) {
                tracing::info!(message_id = ids::APP_RESTARTED, tenant = %app.tenant, app = %app.app, unit = %unit, nonce_moved, files_changed, "restarting app");
                host.units
                    .restart(unit)
                    .await
                    .map_err(host_err("restart", unit))?;
            } else {
                host.units
                    .start(unit)
                    .await
                    .map_err(host_err("start", unit))?;
            }
            if recorded != Some(app.restart_nonce) {
                let root = root.to_path_buf();
                let app = app.clone();
                blocking(move || write_nonce(&root, &app)).await?;
            }
        }
        AppState::Stopped => {
            host.units
                .stop(unit)
                .await
                .map_err(host_err("stop", unit))?;
            // Disabled too, so that a reboot keeps it stopped.
            host.units
                .disable(unit)
                .await
                .map_err(host_err("disable", unit))?;
        }
        AppState::Removed | AppState::Unspecified => {}
    }
    Ok(())
}

fn fill_details(status: &mut AppStatus, details: &UnitDetails) {
    status.active_state = details.active_state.clone();
    status.sub_state = details.sub_state.clone();
    status.restarts = details.restarts;
    status.memory_bytes = details.memory_bytes.unwrap_or(0);
}

/// Reads the state of an instance's unit, probes it, and attaches the end
/// of its journal when it failed.
async fn observe(host: &Host, instance: &mut Instance) {
    if let Plan::Remove(_) = instance.plan {
        if instance.ok() {
            instance.status.active_state = REMOVED_STATE.into();
            instance.status.health_detail = "removed".into();
        }
        return;
    }
    let unit = instance.unit.clone();
    let details = match host.units.details(&unit).await {
        Ok(details) => details,
        Err(e) => {
            instance.fail(host_err("read the state of", &unit)(e));
            return;
        }
    };
    fill_details(&mut instance.status, &details);
    // Between two crashes systemd shows "activating (auto-restart)": that
    // is a crash loop in progress, not an app coming up.
    let crashing = details.sub_state == "auto-restart";
    if details.active_state == "failed" || crashing {
        match host.journal.unit_lines(&unit, FAILED_LOG_LINES, None).await {
            Ok(page) => instance.status.last_log_lines = logs::status_lines(page),
            Err(e) => {
                tracing::warn!(unit = %unit, error = %error_chain(&e), "cannot read the journal of a failed app")
            }
        }
    }
    let Some(apply) = instance.apply() else {
        return;
    };
    let app = &apply.app;
    let running_wanted = app.state == AppState::Running;
    if details.active_state == "active" {
        let outcome = probe::probe(&app.health, app.port, &app.hostname, PROBE_TIMEOUT).await;
        instance.status.healthy = outcome.healthy;
        instance.status.health_detail = outcome.detail;
    } else {
        instance.status.health_detail = format!("not running ({})", details.active_state);
    }
    if running_wanted && instance.ok() {
        if details.active_state == "failed" {
            instance.fail(AppError::Failed {
                unit: unit.clone(),
                result: details.result.clone(),
            });
        } else if crashing || !is_up(&details.active_state) {
            instance.fail(AppError::NotRunning {
                unit: unit.clone(),
                state: format!("{} ({})", details.active_state, details.sub_state),
            });
        }
    }
}

/// One app pass: every instance in `apps`, then the proxy. Never fails as
/// a whole: what went wrong is in each instance's status and in
/// `failures`. With no instance and no proxy it touches nothing at all.
pub async fn reconcile_apps(
    host: &Host,
    root: &Path,
    apps: &[AppEntry],
    proxy: Option<&ProxyDecl>,
    volumes: &[VolumeStatus],
) -> AppsReport {
    if apps.is_empty() && proxy.is_none() {
        return AppsReport::default();
    }
    let mut instances: Vec<Instance> = apps.iter().map(new_instance).collect();

    let mut units_changed = false;
    for instance in &mut instances {
        match &mut instance.plan {
            Plan::Remove(id) => match remove(host, root, id).await {
                Ok(existed) => units_changed |= existed,
                Err(e) => instance.fail(e),
            },
            Plan::Apply(apply) => {
                if let Err(e) = check_volume(&apply.app, volumes) {
                    // A stopped instance needs no files to stay stopped;
                    // a running one waits for its volume.
                    if apply.app.state == AppState::Running {
                        instance.fail(e);
                    }
                    continue;
                }
                if let Err(e) = prepare_packages(host, &apply.app).await {
                    instance.fail(e);
                    continue;
                }
                let written = {
                    let root = root.to_path_buf();
                    let app = apply.app.clone();
                    blocking(move || write_files(&root, &app)).await
                };
                match written {
                    Ok(written) => {
                        apply.unit_changed = written.unit;
                        apply.config_changed = written.config;
                        units_changed |= written.unit;
                    }
                    Err(e) => instance.fail(e),
                }
            }
        }
    }

    if units_changed && let Err(e) = host.units.daemon_reload().await {
        let message = error_chain(&e);
        tracing::error!(error = %message, "systemd daemon-reload failed");
        // Every instance whose unit file changed depends on it.
        for instance in &mut instances {
            let depends = match &instance.plan {
                Plan::Apply(apply) => apply.unit_changed,
                _ => false,
            };
            if depends && instance.ok() {
                instance.fail(AppError::Reload {
                    message: message.clone(),
                });
            }
        }
    }

    for instance in &mut instances {
        if !instance.ok() {
            continue;
        }
        if let Plan::Apply(apply) = &instance.plan
            && let Err(e) = drive(host, root, apply).await
        {
            instance.fail(e);
        }
    }

    // Reading states and probing take up to the probe timeout each: all
    // instances at once.
    futures::future::join_all(instances.iter_mut().map(|i| observe(host, i))).await;

    let mut report = AppsReport::default();
    let mut sites = Vec::new();
    let mut deployed = false;
    for instance in instances {
        let mut status = instance.status;
        if let Some(apply) = match &instance.plan {
            Plan::Apply(apply) => Some(apply),
            _ => None,
        } {
            deployed = true;
            if apply.app.state == AppState::Running
                && instance.error.is_none()
                && !status.healthy
                && matches!(status.active_state.as_str(), "active" | "activating")
                && status.sub_state != "auto-restart"
            {
                report.settling.push(Settling {
                    tenant: status.tenant.clone(),
                    app: status.app.clone(),
                    check: apply.app.health.clone(),
                    port: apply.app.port,
                    hostname: apply.app.hostname.clone(),
                });
            }
            if apply.app.state == AppState::Running {
                sites.push(Site {
                    hostname: apply.app.hostname.clone(),
                    port: apply.app.port,
                    upstream_host: apply.app.proxy_upstream_host,
                    access: SiteAccess::from(&apply.app.web),
                });
            }
        }
        if let Some(error) = instance.error {
            let message = error_chain(&error);
            // In the pass's failure, logged once by the reconciler.
            tracing::debug!(tenant = %status.tenant, app = %status.app, error = %message, "app not in its desired state");
            report
                .failures
                .push(format!("{}/{}: {message}", status.tenant, status.app));
            status.error = message;
        }
        report.statuses.push(status);
    }
    if let Err(e) = reconcile_proxy(host, root, proxy, &sites, deployed).await {
        let message = error_chain(&e);
        tracing::debug!(error = %message, "reverse proxy not in its desired state");
        report.failures.push(format!("proxy: {message}"));
    }
    report
}

/// Writes the Caddyfile and makes sure Caddy runs it. With no instance
/// deployed Caddy is left alone, only losing its routes if it runs.
async fn reconcile_proxy(
    host: &Host,
    root: &Path,
    proxy: Option<&ProxyDecl>,
    sites: &[Site],
    deployed: bool,
) -> Result<(), AppError> {
    let Some(proxy) = proxy else {
        if sites.is_empty() {
            return Ok(());
        }
        return Err(AppError::NoProxy { count: sites.len() });
    };
    let text = render_caddyfile(proxy, sites)?;
    let caddy = UnitName::new(CADDY_UNIT)?;
    if deployed {
        host.packages
            .ensure_installed(&[CADDY_PACKAGE.to_owned()])
            .await
            .map_err(host_err("install", CADDY_PACKAGE))?;
        mask_debian_caddy(host).await?;
    }
    let changed = {
        let root = root.to_path_buf();
        blocking(move || write_caddyfile(&root, &text, deployed)).await?
    };
    let state = host
        .units
        .details(&caddy)
        .await
        .map_err(host_err("read the state of", &caddy))?;
    if !deployed {
        if changed && state.active_state == "active" {
            host.units
                .reload_or_restart(&caddy)
                .await
                .map_err(host_err("reload", &caddy))?;
        }
        return Ok(());
    }
    host.units
        .enable(&caddy)
        .await
        .map_err(host_err("enable", &caddy))?;
    if state.active_state == "failed" {
        host.units
            .reset_failed(&caddy)
            .await
            .map_err(host_err("reset", &caddy))?;
    }
    if state.active_state == "active" {
        if changed {
            tracing::info!(sites = sites.len(), "reloading the reverse proxy");
            host.units
                .reload_or_restart(&caddy)
                .await
                .map_err(host_err("reload", &caddy))?;
        }
    } else {
        host.units
            .start(&caddy)
            .await
            .map_err(host_err("start", &caddy))?;
    }
    Ok(())
}

/// Masks and stops the units Debian's caddy package ships (those it really
/// ships, by its file list), so that only coloc's sandboxed proxy unit runs
/// Caddy and binds 80 and 443.
async fn mask_debian_caddy(host: &Host) -> Result<(), AppError> {
    let shipped = host
        .packages
        .unit_files(CADDY_PACKAGE)
        .await
        .map_err(host_err("list the units of", CADDY_PACKAGE))?;
    for name in DEBIAN_CADDY_UNITS {
        let unit = UnitName::new(*name)?;
        if !shipped.contains(&unit) {
            continue;
        }
        host.units
            .mask(&unit)
            .await
            .map_err(host_err("mask", &unit))?;
        host.units
            .stop(&unit)
            .await
            .map_err(host_err("stop", &unit))?;
    }
    Ok(())
}

/// Writes the Caddyfile if its content changed; with nothing deployed,
/// only where Caddy's directory already exists. Blocking.
fn write_caddyfile(root: &Path, text: &str, deployed: bool) -> Result<bool, AppError> {
    let top = Dir::open_root(root).map_err(files_err("open the root directory"))?;
    let parts = components(CADDYFILE);
    let (name, parents) = parts
        .split_last()
        .expect("CADDYFILE is an absolute path with a file name");
    let dir = if deployed {
        top.ensure_path(parents, None, 0o755)
            .map_err(files_err("prepare Caddy's directory"))?
    } else {
        match top
            .require_path(parents)
            .map_err(files_err("open Caddy's directory"))?
        {
            Some(dir) => dir,
            None => return Ok(false),
        }
    };
    dir.write_file(
        name,
        text.as_bytes(),
        Owner {
            uid: 0,
            gid: 0,
            mode: 0o644,
        },
    )
    .map_err(files_err("write the Caddyfile"))
}

/// The root an agent works under when none is configured.
pub fn default_root() -> PathBuf {
    PathBuf::from("/")
}
