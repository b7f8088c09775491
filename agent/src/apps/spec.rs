//! Validation of an [`AppSpec`] into a [`ValidApp`]: every value that will
//! reach a unit file, a path, a command line or the proxy's configuration
//! is checked here, before anything is written or started.
//!
//! The controller already refuses bad values; this is the node's own
//! check, written as if the controller were compromised: a tenant name, an
//! argument or a path can never add a directive, start a shell or reach
//! outside the tenant's directory. Path rules are exact shapes (the data
//! directory *is* `/srv/tenants/<tenant>/<volume>/apps/<app>`), not prefix
//! checks, so there is no `..` or `//` to normalise.

use std::collections::{BTreeMap, BTreeSet};

use coloc_proto::agent::v1::{AppSpec, AppState, app_spec};
use coloc_proto::domain::{InvalidInput, TenantName};
use coloc_proto::storage::{VolumeId, VolumeName};

use crate::host::UnitName;

/// Longest app name: the catalog's rule `[a-z][a-z0-9]{0,30}`.
pub const MAX_APP_NAME_LEN: usize = 31;
/// Lowest uid/gid a tenant may run as: below are system accounts.
pub const MIN_TENANT_ID: u32 = 1000;
/// Bounds on what one argument, variable or path may hold, so that a
/// unit file stays a reasonable size.
const MAX_VALUE_LEN: usize = 4096;
const MAX_ARGS: usize = 256;
const MAX_ENV: usize = 128;
const MAX_FILES: usize = 64;
const MAX_FILE_BYTES: usize = 1024 * 1024;
/// Highest CPUQuota= accepted, in percent of one CPU.
const MAX_CPU_PERCENT: u32 = 100 * 1024;

/// What the instance's health probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheck {
    /// `GET <path>` over HTTP/1.0; healthy below status 500.
    Http { path: String },
    /// A TCP connection to the port is accepted.
    Tcp,
    /// No probe declared: healthy when the unit is active.
    None,
}

/// An instance whose every field passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidApp {
    pub tenant: TenantName,
    pub app: String,
    /// `coloc-app-<tenant>-<app>.service`.
    pub unit: UnitName,
    pub state: AppState,
    pub packages: Vec<String>,
    pub package_units: Vec<UnitName>,
    pub exec: String,
    pub args: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub port: u16,
    /// `/srv/tenants/<tenant>/<volume>/apps/<app>`.
    pub data_dir: String,
    /// The volume's mount path, `/srv/tenants/<tenant>/<volume>`.
    pub volume_path: String,
    /// Relative paths under `data_dir`, each split into its components.
    pub data_dirs: Vec<Vec<String>>,
    /// `/etc/coloc/apps/<tenant>-<app>`.
    pub config_dir: String,
    /// (name, content), names unique.
    pub files: Vec<(String, String)>,
    pub uid: u32,
    pub gid: u32,
    /// 0: no limit.
    pub memory_max_bytes: u64,
    /// 0: no limit.
    pub cpu_quota_percent: u32,
    pub hostname: String,
    pub health: HealthCheck,
    pub restart_nonce: u64,
    pub volume_id: VolumeId,
    pub proxy_upstream_host: bool,
}

/// Who an instance is: enough to stop and remove it even when the rest of
/// its specification is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppIdentity {
    pub tenant: TenantName,
    pub app: String,
    pub unit: UnitName,
    pub config_dir: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidInput {
    InvalidInput::field(field, reason)
}

/// At most 80 characters of a refused value, for messages.
pub(crate) fn clip(text: &str) -> String {
    text.chars().take(80).collect()
}

/// The catalog's app name rule, `[a-z][a-z0-9]{0,30}`: no `-`, so that
/// `coloc-app-<tenant>-<app>` reads back unambiguously.
pub fn check_app_name(app: &str) -> Result<(), InvalidInput> {
    let bytes = app.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_APP_NAME_LEN
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "app name",
            format!("{:?} does not match [a-z][a-z0-9]{{0,30}}", clip(app)),
        ))
    }
}

/// The unit an instance runs as.
pub fn unit_name(tenant: &TenantName, app: &str) -> Result<UnitName, InvalidInput> {
    check_app_name(app)?;
    UnitName::new(format!("coloc-app-{tenant}-{app}.service"))
        .map_err(|e| invalid("unit name", e.to_string()))
}

/// Tenant, app, unit and config directory of a spec.
pub fn identity(spec: &AppSpec) -> Result<AppIdentity, InvalidInput> {
    let tenant = TenantName::new(spec.tenant.as_str())?;
    check_app_name(&spec.app)?;
    let unit = unit_name(&tenant, &spec.app)?;
    Ok(AppIdentity {
        config_dir: format!("/etc/coloc/apps/{tenant}-{}", spec.app),
        tenant,
        app: spec.app.clone(),
        unit,
    })
}

/// Printable text with no control character (newline, carriage return,
/// NUL, escape, DEL, C1), at most [`MAX_VALUE_LEN`] bytes.
pub fn check_printable(field: &'static str, value: &str) -> Result<(), InvalidInput> {
    if value.len() > MAX_VALUE_LEN {
        return Err(invalid(field, format!("longer than {MAX_VALUE_LEN} bytes")));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(invalid(
            field,
            format!("{:?} contains the control character {c:?}", clip(value)),
        ));
    }
    Ok(())
}

/// An absolute program path: `/`-separated components of
/// `[A-Za-z0-9._+-]`, none empty, `.` or `..`.
pub fn check_exec(exec: &str) -> Result<(), InvalidInput> {
    check_printable("exec", exec)?;
    let Some(rest) = exec.strip_prefix('/') else {
        return Err(invalid(
            "exec",
            format!("{:?} is not an absolute path", clip(exec)),
        ));
    };
    for component in rest.split('/') {
        if component.is_empty() || component == "." || component == ".." {
            return Err(invalid(
                "exec",
                format!("{:?} has an empty, '.' or '..' component", clip(exec)),
            ));
        }
        if !component
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
        {
            return Err(invalid(
                "exec",
                format!(
                    "{:?} contains a character outside A-Z a-z 0-9 . _ + - /",
                    clip(exec)
                ),
            ));
        }
    }
    Ok(())
}

/// An environment variable name, `[A-Z_][A-Z0-9_]*`.
pub fn check_env_key(key: &str) -> Result<(), InvalidInput> {
    let bytes = key.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_uppercase() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "environment variable name",
            format!("{:?} does not match [A-Z_][A-Z0-9_]*", clip(key)),
        ))
    }
}

/// A file or directory name written by the agent, `[a-z0-9._-]+`, not
/// `.` or `..`.
pub fn check_file_name(field: &'static str, name: &str) -> Result<(), InvalidInput> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "{:?} is not a name of [a-z0-9._-] (nor . or ..)",
                clip(name)
            ),
        ))
    }
}

/// A Debian package name (Debian Policy 5.6.1): at least two characters
/// of `[a-z0-9+.-]`, starting with a letter or digit.
pub fn check_package(name: &str) -> Result<(), InvalidInput> {
    let bytes = name.as_bytes();
    let ok = bytes.len() >= 2
        && bytes.len() <= 128
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+.-".contains(b));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "package",
            format!("{:?} is not a Debian package name", clip(name)),
        ))
    }
}

/// A DNS domain in lowercase: at least two labels of `[a-z0-9-]`, each 1
/// to 63 characters not starting or ending with `-`, 253 at most in all.
pub fn check_domain(field: &'static str, domain: &str) -> Result<(), InvalidInput> {
    let bad = |reason: &str| invalid(field, format!("{:?} {reason}", clip(domain)));
    if domain.is_empty() || domain.len() > 253 {
        return Err(bad("is not 1 to 253 characters"));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(bad("needs at least two labels"));
    }
    for label in labels {
        let bytes = label.as_bytes();
        if bytes.is_empty() || bytes.len() > 63 {
            return Err(bad("has an empty or too long label"));
        }
        if bytes[0] == b'-' || bytes[bytes.len() - 1] == b'-' {
            return Err(bad("has a label starting or ending with '-'"));
        }
        if !bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        {
            return Err(bad("has a character outside a-z, 0-9, '-' and '.'"));
        }
    }
    Ok(())
}

/// An HTTP probe path: starts with `/`, visible ASCII only (it goes into
/// the request line, where a space or CR/LF would forge a request).
pub fn check_probe_path(path: &str) -> Result<(), InvalidInput> {
    let ok =
        path.starts_with('/') && path.len() <= 1024 && path.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "health path",
            format!("{:?} is not an absolute path of visible ASCII", clip(path)),
        ))
    }
}

/// The data directory: exactly `/srv/tenants/<tenant>/<volume>/apps/<app>`
/// with a valid volume name. Returns the volume's mount path.
pub fn check_data_dir(
    data_dir: &str,
    tenant: &TenantName,
    app: &str,
) -> Result<String, InvalidInput> {
    let bad = |reason: &str| invalid("data_dir", format!("{:?} {reason}", clip(data_dir)));
    let parts: Vec<&str> = data_dir.split('/').collect();
    match parts.as_slice() {
        ["", "srv", "tenants", t, volume, "apps", a] => {
            if *t != tenant.as_str() {
                return Err(bad("is not under this tenant's directory"));
            }
            if *a != app {
                return Err(bad("is not this app's directory"));
            }
            VolumeName::new(*volume).map_err(|_| bad("does not name a volume of the tenant"))?;
            Ok(format!("/srv/tenants/{tenant}/{volume}"))
        }
        _ => Err(bad(&format!(
            "is not /srv/tenants/{tenant}/<volume>/apps/{app}"
        ))),
    }
}

/// A subdirectory of the data directory: relative, components by
/// [`check_file_name`].
fn check_data_subdir(dir: &str) -> Result<Vec<String>, InvalidInput> {
    if dir.starts_with('/') {
        return Err(invalid(
            "data_dirs",
            format!(
                "{:?} is absolute; it must be relative to data_dir",
                clip(dir)
            ),
        ));
    }
    dir.split('/')
        .map(|c| check_file_name("data_dirs", c).map(|()| c.to_owned()))
        .collect()
}

fn check_state(raw: i32) -> Result<AppState, InvalidInput> {
    match AppState::try_from(raw) {
        Ok(state @ (AppState::Running | AppState::Stopped | AppState::Removed)) => Ok(state),
        _ => Err(invalid(
            "app state",
            format!("{raw} is not running, stopped or removed"),
        )),
    }
}

fn check_posix_id(field: &'static str, id: u32) -> Result<(), InvalidInput> {
    // 65534 is nobody/nogroup, shared by unrelated daemons; u32::MAX is
    // (uid_t)-1, which chown reads as "leave unchanged".
    if id < MIN_TENANT_ID || id == 65534 || id == u32::MAX {
        return Err(invalid(
            field,
            format!("{id} is not a tenant's id (at least {MIN_TENANT_ID}, not nobody or -1)"),
        ));
    }
    Ok(())
}

/// The state an instance is declared in, validated.
pub fn desired_state(spec: &AppSpec) -> Result<AppState, InvalidInput> {
    check_state(spec.state)
}

/// Validates every field of `spec`. `domain` is the proxy's domain when
/// the configuration has one: the host name must then be under it.
pub fn validate_app(spec: &AppSpec, domain: Option<&str>) -> Result<ValidApp, InvalidInput> {
    let AppIdentity {
        tenant,
        app,
        unit,
        config_dir,
    } = identity(spec)?;
    let state = check_state(spec.state)?;

    let packages = spec
        .packages
        .iter()
        .map(|p| check_package(p).map(|()| p.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let package_units = spec
        .package_units
        .iter()
        .map(|u| UnitName::new(u.as_str()).map_err(|e| invalid("package unit", e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if package_units.contains(&unit) {
        return Err(invalid("package unit", "names the instance's own unit"));
    }

    check_exec(&spec.exec)?;
    if spec.args.len() > MAX_ARGS {
        return Err(invalid("args", format!("more than {MAX_ARGS}")));
    }
    for arg in &spec.args {
        check_printable("argument", arg)?;
    }
    if spec.environment.len() > MAX_ENV {
        return Err(invalid(
            "environment",
            format!("more than {MAX_ENV} variables"),
        ));
    }
    let mut environment = BTreeMap::new();
    for (key, value) in &spec.environment {
        check_env_key(key)?;
        check_printable("environment value", value)?;
        environment.insert(key.clone(), value.clone());
    }

    let port = u16::try_from(spec.port)
        .ok()
        .filter(|p| *p >= 1024)
        .ok_or_else(|| invalid("port", format!("{} is not in 1024..=65535", spec.port)))?;

    let volume_path = check_data_dir(&spec.data_dir, &tenant, &app)?;
    let mut data_dirs = Vec::new();
    for dir in &spec.data_dirs {
        data_dirs.push(check_data_subdir(dir)?);
    }
    if spec.config_dir != config_dir {
        return Err(invalid(
            "config_dir",
            format!("{:?} is not {config_dir}", clip(&spec.config_dir)),
        ));
    }
    if spec.files.len() > MAX_FILES {
        return Err(invalid("files", format!("more than {MAX_FILES}")));
    }
    let mut names = BTreeSet::new();
    let mut files = Vec::new();
    for file in &spec.files {
        check_file_name("file name", &file.name)?;
        if !names.insert(file.name.as_str()) {
            return Err(invalid(
                "file name",
                format!("{:?} is listed twice", file.name),
            ));
        }
        if file.content.len() > MAX_FILE_BYTES {
            return Err(invalid(
                "file content",
                format!("{} is larger than 1 MiB", file.name),
            ));
        }
        files.push((file.name.clone(), file.content.clone()));
    }

    check_posix_id("uid", spec.uid)?;
    check_posix_id("gid", spec.gid)?;
    if spec.cpu_quota_percent > MAX_CPU_PERCENT {
        return Err(invalid(
            "cpu quota",
            format!(
                "{}% is more than {MAX_CPU_PERCENT}%",
                spec.cpu_quota_percent
            ),
        ));
    }

    let prefix = format!("{app}.{tenant}.");
    let Some(host_domain) = spec.hostname.strip_prefix(&prefix) else {
        return Err(invalid(
            "hostname",
            format!("{:?} does not start with {prefix}", clip(&spec.hostname)),
        ));
    };
    check_domain("hostname", host_domain)?;
    if let Some(domain) = domain
        && host_domain != domain
    {
        return Err(invalid(
            "hostname",
            format!(
                "{:?} is not under the proxy's domain {domain}",
                clip(&spec.hostname)
            ),
        ));
    }

    let health = match &spec.health {
        Some(app_spec::Health::HealthHttpPath(path)) => {
            check_probe_path(path)?;
            HealthCheck::Http { path: path.clone() }
        }
        Some(app_spec::Health::HealthTcp(true)) => HealthCheck::Tcp,
        Some(app_spec::Health::HealthTcp(false)) | None => HealthCheck::None,
    };
    let volume_id = VolumeId::new(spec.volume_id.as_str())?;

    Ok(ValidApp {
        tenant,
        app,
        unit,
        state,
        packages,
        package_units,
        exec: spec.exec.clone(),
        args: spec.args.clone(),
        environment,
        port,
        data_dir: spec.data_dir.clone(),
        volume_path,
        data_dirs,
        config_dir,
        files,
        uid: spec.uid,
        gid: spec.gid,
        memory_max_bytes: spec.memory_max_bytes,
        cpu_quota_percent: spec.cpu_quota_percent,
        hostname: spec.hostname.clone(),
        health,
        restart_nonce: spec.restart_nonce,
        volume_id,
        proxy_upstream_host: spec.proxy_upstream_host,
    })
}
