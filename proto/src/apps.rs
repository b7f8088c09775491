//! Apps (docs/APPS.md): the rules for every value of an app instance that
//! reaches a unit file, a path, a command line or the proxy's
//! configuration, and [`AppDecl`], an `AppSpec` whose every field passed
//! them.
//!
//! Both sides use this module: the controller's catalog checks what it
//! loads and what it renders with these rules, and the agent converts each
//! `AppSpec` it receives into an [`AppDecl`] before anything is written or
//! started, as if the controller were compromised: a tenant name, an
//! argument or a path can never add a directive, start a shell or reach
//! outside the tenant's directory. Path rules are exact shapes (the data
//! directory *is* `/srv/tenants/<tenant>/<volume>/apps/<app>`), not prefix
//! checks, so there is no `..` or `//` to normalise. Escaping for systemd is
//! the agent's job when it writes the unit, not this module's.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use crate::agent::v1::{self as pb, AppSpec, AppState, ProxySpec, app_spec};
use crate::domain::{InvalidInput, TenantName, check_domain_name, clip, validated_string};
use crate::storage::{VolumeId, VolumeName};
use crate::units::{UnitName, check_package_unit};

pub mod web;
pub use web::{WebAccess, WebLogin, WebProtection};

/// Longest app name: `coloc-app-<tenant>-<app>.service` must stay a sane
/// unit name and `<app>.<tenant>.<domain>` a host name.
pub const MAX_APP_NAME_LEN: usize = 31;
/// Lowest uid/gid a tenant may run as: below are system accounts.
pub const MIN_TENANT_ID: u32 = 1000;
/// Longest argument, environment value or other printable value, so that a
/// unit file stays a reasonable size.
pub const MAX_VALUE_LEN: usize = 4096;
/// Most arguments, environment variables and files of one instance.
pub const MAX_ARGS: usize = 256;
pub const MAX_ENV: usize = 128;
pub const MAX_FILES: usize = 64;
/// Largest configuration file the agent writes for an instance.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;
/// Highest CPUQuota= accepted, in percent of one CPU.
pub const MAX_CPU_PERCENT: u32 = 100 * 1024;
/// Longest Debian package name and environment variable name.
pub const MAX_PACKAGE_NAME_LEN: usize = 128;
pub const MAX_ENV_KEY_LEN: usize = 128;
/// Longest program path and file name.
pub const MAX_EXEC_LEN: usize = 255;
pub const MAX_FILE_NAME_LEN: usize = 64;
/// Most components of a directory under an app's data directory.
pub const MAX_DATA_DIR_DEPTH: usize = 8;
/// Longest HTTP health probe path.
pub const MAX_PROBE_PATH_LEN: usize = 200;
/// The first port the controller hands out to an instance on 127.0.0.1
/// (the app port range runs from here to 65535). Ports an app opens to the
/// outside lie below it, so that no instance can ever bind another's port.
pub const FIRST_APP_PORT: u16 = 20_000;
/// Most ports one instance may open to the outside.
pub const MAX_INBOUND_PORTS: usize = 16;

validated_string!(
    /// A catalog app's name, `[a-z][a-z0-9]{0,30}`: no `-`, so that the
    /// unit name `coloc-app-<tenant>-<app>.service` reads back unambiguously
    /// (tenant names may contain `-`).
    AppName, "app name", check_app_name);

validated_string!(
    /// A Debian package name (Debian Policy 5.6.1): at least two characters
    /// of `[a-z0-9+.-]`, starting with a letter or digit.
    PackageName, "package", check_package_name);

fn check_app_name(kind: &'static str, name: &str) -> Result<(), InvalidInput> {
    let bad = |why: &str| {
        InvalidInput::field(
            kind,
            format!(
                "{:?} {why} (allowed: 1 to {MAX_APP_NAME_LEN} characters a-z and 0-9, starting with a letter, e.g. radicale)",
                clip(name)
            ),
        )
    };
    let bytes = name.as_bytes();
    match bytes.first() {
        None => return Err(bad("empty")),
        Some(b) if !b.is_ascii_lowercase() => {
            return Err(bad("must start with a lowercase letter"));
        }
        Some(_) => {}
    }
    if bytes.len() > MAX_APP_NAME_LEN {
        return Err(bad("longer than 31 characters"));
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(bad("contains a character outside a-z and 0-9"));
    }
    Ok(())
}

fn check_package_name(kind: &'static str, name: &str) -> Result<(), InvalidInput> {
    let bytes = name.as_bytes();
    let ok = bytes.len() >= 2
        && bytes.len() <= MAX_PACKAGE_NAME_LEN
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+.-".contains(b))
        // `apt-get install caddy-` means "remove caddy" when no package has
        // the exact name: never a name coloc passes to apt. (A trailing
        // `+`, apt's "install" operator, is harmless and needed: `g++`.)
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(InvalidInput::field(
            kind,
            format!(
                "{:?} is not a Debian package name ([a-z0-9][a-z0-9+.-]+, not ending with '-', at most {MAX_PACKAGE_NAME_LEN})",
                clip(name)
            ),
        ))
    }
}

/// The unit an instance runs as: `coloc-app-<tenant>-<app>.service`.
pub fn app_unit(tenant: &TenantName, app: &AppName) -> UnitName {
    UnitName::new(format!("coloc-app-{tenant}-{app}.service"))
        .expect("tenant and app names always make a unit name")
}

/// Where the agent writes an instance's configuration files.
pub fn app_config_dir(tenant: &TenantName, app: &AppName) -> String {
    format!("/etc/coloc/apps/{tenant}-{app}")
}

/// An instance's data directory on its tenant's volume.
pub fn app_data_dir(tenant: &TenantName, volume: &VolumeName, app: &AppName) -> String {
    format!("/srv/tenants/{tenant}/{volume}/apps/{app}")
}

/// An instance's public host name under the apps domain.
pub fn app_hostname(app: &AppName, tenant: &TenantName, domain: &str) -> String {
    format!("{app}.{tenant}.{domain}")
}

/// Printable text with no control character (newline, carriage return,
/// NUL, escape, DEL, C1), at most [`MAX_VALUE_LEN`] bytes: arguments and
/// environment values.
pub fn check_printable(field: &'static str, value: &str) -> Result<(), InvalidInput> {
    if value.len() > MAX_VALUE_LEN {
        return Err(InvalidInput::field(
            field,
            format!("longer than {MAX_VALUE_LEN} bytes"),
        ));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(InvalidInput::field(
            field,
            format!("{:?} contains the control character {c:?}", clip(value)),
        ));
    }
    Ok(())
}

/// An absolute program path: `/`-separated components of
/// `[A-Za-z0-9._+-]`, none empty, `.` or `..`, at most [`MAX_EXEC_LEN`].
pub fn check_exec(exec: &str) -> Result<(), InvalidInput> {
    let bad = |why: &str| InvalidInput::field("exec", format!("{:?} {why}", clip(exec)));
    if exec.len() > MAX_EXEC_LEN {
        return Err(bad(&format!("is longer than {MAX_EXEC_LEN} characters")));
    }
    let Some(rest) = exec.strip_prefix('/') else {
        return Err(bad("is not an absolute path"));
    };
    for component in rest.split('/') {
        if component.is_empty() || component == "." || component == ".." {
            return Err(bad("has an empty, '.' or '..' component"));
        }
        if !component
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
        {
            return Err(bad("contains a character outside A-Z a-z 0-9 . _ + - /"));
        }
    }
    Ok(())
}

/// An environment variable name, `[A-Z_][A-Z0-9_]*`, at most
/// [`MAX_ENV_KEY_LEN`].
pub fn check_env_key(key: &str) -> Result<(), InvalidInput> {
    let bytes = key.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_ENV_KEY_LEN
        && (bytes[0].is_ascii_uppercase() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_');
    if ok {
        Ok(())
    } else {
        Err(InvalidInput::field(
            "environment variable name",
            format!(
                "{:?} does not match [A-Z_][A-Z0-9_]* (at most {MAX_ENV_KEY_LEN})",
                clip(key)
            ),
        ))
    }
}

/// A file or directory name the agent writes: `[a-z0-9._-]`, at most
/// [`MAX_FILE_NAME_LEN`], not `.`, and no `..` anywhere.
pub fn check_file_name(field: &'static str, name: &str) -> Result<(), InvalidInput> {
    let ok = !name.is_empty()
        && name.len() <= MAX_FILE_NAME_LEN
        && name != "."
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(InvalidInput::field(
            field,
            format!(
                "{:?} is not a name of [a-z0-9._-] (at most {MAX_FILE_NAME_LEN}, not '.', no '..')",
                clip(name)
            ),
        ))
    }
}

/// A directory under an app's data directory: relative, at most
/// [`MAX_DATA_DIR_DEPTH`] components, each a [`check_file_name`] name.
/// Returns the components.
pub fn check_data_subdir(dir: &str) -> Result<Vec<String>, InvalidInput> {
    if dir.starts_with('/') {
        return Err(InvalidInput::field(
            "data_dirs",
            format!(
                "{:?} is absolute; it must be relative to the app's data directory",
                clip(dir)
            ),
        ));
    }
    let components: Vec<&str> = dir.split('/').collect();
    if components.len() > MAX_DATA_DIR_DEPTH {
        return Err(InvalidInput::field(
            "data_dirs",
            format!(
                "{:?} has more than {MAX_DATA_DIR_DEPTH} components",
                clip(dir)
            ),
        ));
    }
    components
        .into_iter()
        .map(|c| check_file_name("data_dirs", c).map(|()| c.to_owned()))
        .collect()
}

/// The files an instance gets once in its data directory: each path by
/// [`check_data_subdir`]'s rule, listed once, its content at most
/// [`MAX_FILE_BYTES`], at most [`MAX_FILES`] of them.
pub fn check_data_files(files: &[pb::AppFile]) -> Result<Vec<(Vec<String>, String)>, InvalidInput> {
    if files.len() > MAX_FILES {
        return Err(InvalidInput::field(
            "data_files",
            format!("more than {MAX_FILES}"),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(files.len());
    for file in files {
        let path = check_data_subdir(&file.name)
            .map_err(|e| InvalidInput::field("data_files", e.reason()))?;
        if !seen.insert(file.name.as_str()) {
            return Err(InvalidInput::field(
                "data_files",
                format!("{:?} is listed twice", clip(&file.name)),
            ));
        }
        if file.content.len() > MAX_FILE_BYTES {
            return Err(InvalidInput::field(
                "data_files",
                format!("{} is larger than 1 MiB", clip(&file.name)),
            ));
        }
        out.push((path, file.content.clone()));
    }
    Ok(out)
}

/// An HTTP probe path: starts with `/`, visible ASCII only (it goes into
/// the request line, where a space or CR/LF would forge a request), at most
/// [`MAX_PROBE_PATH_LEN`].
pub fn check_probe_path(path: &str) -> Result<(), InvalidInput> {
    let ok = path.starts_with('/')
        && path.len() <= MAX_PROBE_PATH_LEN
        && path.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(InvalidInput::field(
            "health path",
            format!(
                "{:?} is not an absolute path of visible ASCII (at most {MAX_PROBE_PATH_LEN})",
                clip(path)
            ),
        ))
    }
}

/// A tenant's uid or gid: at least [`MIN_TENANT_ID`]; never 65534
/// (nobody/nogroup, shared by unrelated daemons) nor u32::MAX ((uid_t)-1,
/// which chown reads as "leave unchanged").
pub fn check_posix_id(field: &'static str, id: u32) -> Result<(), InvalidInput> {
    if id < MIN_TENANT_ID || id == 65534 || id == u32::MAX {
        return Err(InvalidInput::field(
            field,
            format!("{id} is not a tenant's id (at least {MIN_TENANT_ID}, not nobody or -1)"),
        ));
    }
    Ok(())
}

/// The state an instance is declared in: running, stopped or removed.
pub fn app_state(raw: i32) -> Result<AppState, InvalidInput> {
    match AppState::try_from(raw) {
        Ok(state @ (AppState::Running | AppState::Stopped | AppState::Removed)) => Ok(state),
        _ => Err(InvalidInput::field(
            "app state",
            format!("{raw} is not running, stopped or removed"),
        )),
    }
}

/// The transport of a port an app opens to the outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// A port an instance opens on the node's public addresses, such as
/// `5222/tcp`: at least 1024 (below are the node's own: SSH, HTTP, HTTPS)
/// and below [`FIRST_APP_PORT`] (above are the instances' loopback ports).
/// The node's firewall lets the outside reach it, and only the instance's
/// unit may bind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InboundPort {
    pub port: u16,
    pub transport: Transport,
}

impl InboundPort {
    /// Checks the port number against the range above.
    pub fn new(port: u32, transport: Transport) -> Result<InboundPort, InvalidInput> {
        let port = u16::try_from(port)
            .ok()
            .filter(|p| (1024..FIRST_APP_PORT).contains(p))
            .ok_or_else(|| {
                InvalidInput::field(
                    "inbound port",
                    format!(
                        "{port}/{} is not in 1024..{FIRST_APP_PORT} (below are the node's own ports, above the apps' loopback ports)",
                        transport.as_str()
                    ),
                )
            })?;
        Ok(InboundPort { port, transport })
    }
}

impl fmt::Display for InboundPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.transport.as_str())
    }
}

/// `<port>/tcp` or `<port>/udp`, as the catalog writes it.
impl FromStr for InboundPort {
    type Err = InvalidInput;
    fn from_str(text: &str) -> Result<InboundPort, InvalidInput> {
        let bad = || {
            InvalidInput::field(
                "inbound port",
                format!("{:?} is not <port>/tcp or <port>/udp", clip(text)),
            )
        };
        let (port, transport) = text.split_once('/').ok_or_else(bad)?;
        let transport = match transport {
            "tcp" => Transport::Tcp,
            "udp" => Transport::Udp,
            _ => return Err(bad()),
        };
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let port: u32 = port.parse().map_err(|_| bad())?;
        InboundPort::new(port, transport)
    }
}

impl TryFrom<&pb::InboundPort> for InboundPort {
    type Error = InvalidInput;
    fn try_from(wire: &pb::InboundPort) -> Result<InboundPort, InvalidInput> {
        let transport = match pb::Transport::try_from(wire.transport) {
            Ok(pb::Transport::Tcp) => Transport::Tcp,
            Ok(pb::Transport::Udp) => Transport::Udp,
            _ => {
                return Err(InvalidInput::field(
                    "inbound port",
                    format!("transport {} is not tcp or udp", wire.transport),
                ));
            }
        };
        InboundPort::new(wire.port, transport)
    }
}

impl From<InboundPort> for pb::InboundPort {
    fn from(port: InboundPort) -> pb::InboundPort {
        pb::InboundPort {
            port: u32::from(port.port),
            transport: match port.transport {
                Transport::Tcp => pb::Transport::Tcp,
                Transport::Udp => pb::Transport::Udp,
            }
            .into(),
        }
    }
}

/// An instance's inbound ports: at most [`MAX_INBOUND_PORTS`], none twice,
/// none equal to its own loopback `port`. Returned sorted.
pub fn check_inbound_ports(
    ports: impl IntoIterator<Item = InboundPort>,
    own_port: u16,
) -> Result<Vec<InboundPort>, InvalidInput> {
    let mut seen = BTreeSet::new();
    for port in ports {
        if port.port == own_port {
            return Err(InvalidInput::field(
                "inbound port",
                format!("{port} is the instance's own loopback port"),
            ));
        }
        if !seen.insert(port) {
            return Err(InvalidInput::field(
                "inbound port",
                format!("{port} is listed twice"),
            ));
        }
        if seen.len() > MAX_INBOUND_PORTS {
            return Err(InvalidInput::field(
                "inbound port",
                format!("more than {MAX_INBOUND_PORTS}"),
            ));
        }
    }
    Ok(seen.into_iter().collect())
}

/// What an instance's health probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheck {
    /// `GET <path>` over HTTP/1.0; healthy below status 500.
    Http { path: String },
    /// A TCP connection to the port is accepted.
    Tcp,
    /// No probe declared: healthy when the unit is active.
    None,
}

/// Who an instance is: enough to stop and remove it even when the rest of
/// its specification is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppIdentity {
    pub tenant: TenantName,
    pub app: AppName,
    pub unit: UnitName,
    pub config_dir: String,
}

impl TryFrom<&AppSpec> for AppIdentity {
    type Error = InvalidInput;
    fn try_from(spec: &AppSpec) -> Result<AppIdentity, InvalidInput> {
        let tenant = TenantName::new(spec.tenant.as_str())?;
        let app = AppName::new(spec.app.as_str())?;
        Ok(AppIdentity {
            unit: app_unit(&tenant, &app),
            config_dir: app_config_dir(&tenant, &app),
            tenant,
            app,
        })
    }
}

/// An instance whose every field passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppDecl {
    pub tenant: TenantName,
    pub app: AppName,
    /// `coloc-app-<tenant>-<app>.service`.
    pub unit: UnitName,
    pub state: AppState,
    pub packages: Vec<PackageName>,
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
    /// Files written once under `data_dir`: (path components, content),
    /// paths unique.
    pub data_files: Vec<(Vec<String>, String)>,
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
    /// May open connections beyond the node's loopback.
    pub outbound: bool,
    /// Ports opened to the outside for this instance, sorted.
    pub inbound: Vec<InboundPort>,
    /// Who may open its web endpoint through the proxy.
    pub web: WebAccess,
}

/// The data directory: exactly `/srv/tenants/<tenant>/<volume>/apps/<app>`
/// with a valid volume name. Returns the volume's mount path.
fn check_data_dir(
    data_dir: &str,
    tenant: &TenantName,
    app: &AppName,
) -> Result<String, InvalidInput> {
    let bad =
        |reason: &str| InvalidInput::field("data_dir", format!("{:?} {reason}", clip(data_dir)));
    let parts: Vec<&str> = data_dir.split('/').collect();
    match parts.as_slice() {
        ["", "srv", "tenants", t, volume, "apps", a] => {
            if *t != tenant.as_str() {
                return Err(bad("is not under this tenant's directory"));
            }
            if *a != app.as_str() {
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

impl AppDecl {
    /// Checks every field of `spec`. `domain` is the proxy's domain when
    /// the configuration has one: the host name must then be under it.
    pub fn from_spec(spec: &AppSpec, domain: Option<&str>) -> Result<AppDecl, InvalidInput> {
        let AppIdentity {
            tenant,
            app,
            unit,
            config_dir,
        } = AppIdentity::try_from(spec)?;
        let state = app_state(spec.state)?;

        let packages = spec
            .packages
            .iter()
            .map(|p| PackageName::new(p.as_str()))
            .collect::<Result<Vec<_>, _>>()?;
        let package_units = spec
            .package_units
            .iter()
            .map(|u| check_package_unit(u))
            .collect::<Result<Vec<_>, _>>()?;

        check_exec(&spec.exec)?;
        if spec.args.len() > MAX_ARGS {
            return Err(InvalidInput::field("args", format!("more than {MAX_ARGS}")));
        }
        for arg in &spec.args {
            check_printable("argument", arg)?;
        }
        if spec.environment.len() > MAX_ENV {
            return Err(InvalidInput::field(
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
            .ok_or_else(|| {
                InvalidInput::field("port", format!("{} is not in 1024..=65535", spec.port))
            })?;

        let volume_path = check_data_dir(&spec.data_dir, &tenant, &app)?;
        let data_dirs = spec
            .data_dirs
            .iter()
            .map(|d| check_data_subdir(d))
            .collect::<Result<Vec<_>, _>>()?;
        let data_files = check_data_files(&spec.data_files)?;
        if spec.config_dir != config_dir {
            return Err(InvalidInput::field(
                "config_dir",
                format!("{:?} is not {config_dir}", clip(&spec.config_dir)),
            ));
        }
        if spec.files.len() > MAX_FILES {
            return Err(InvalidInput::field(
                "files",
                format!("more than {MAX_FILES}"),
            ));
        }
        let mut names = BTreeSet::new();
        let mut files = Vec::new();
        for file in &spec.files {
            check_file_name("file name", &file.name)?;
            if !names.insert(file.name.as_str()) {
                return Err(InvalidInput::field(
                    "file name",
                    format!("{:?} is listed twice", file.name),
                ));
            }
            if file.content.len() > MAX_FILE_BYTES {
                return Err(InvalidInput::field(
                    "file content",
                    format!("{} is larger than 1 MiB", file.name),
                ));
            }
            files.push((file.name.clone(), file.content.clone()));
        }

        check_posix_id("uid", spec.uid)?;
        check_posix_id("gid", spec.gid)?;
        if spec.cpu_quota_percent > MAX_CPU_PERCENT {
            return Err(InvalidInput::field(
                "cpu quota",
                format!(
                    "{}% is more than {MAX_CPU_PERCENT}%",
                    spec.cpu_quota_percent
                ),
            ));
        }

        let prefix = format!("{app}.{tenant}.");
        let Some(host_domain) = spec.hostname.strip_prefix(&prefix) else {
            return Err(InvalidInput::field(
                "hostname",
                format!("{:?} does not start with {prefix}", clip(&spec.hostname)),
            ));
        };
        check_domain_name("hostname", host_domain)?;
        if let Some(domain) = domain
            && host_domain != domain
        {
            return Err(InvalidInput::field(
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
        let inbound = spec
            .inbound
            .iter()
            .map(InboundPort::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let inbound = check_inbound_ports(inbound, port)?;
        let web = WebAccess::from_spec(spec.web_auth, spec.web_login.as_ref())?;

        Ok(AppDecl {
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
            data_files,
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
            outbound: spec.outbound,
            inbound,
            web,
        })
    }
}

/// Longest apps domain: `<app>.<tenant>.` (31 + 63 + 2 characters) in
/// front of it must still fit a 253-character host name.
pub const MAX_APPS_DOMAIN_LEN: usize = 150;

/// The domain apps are published under (`apps_domain` in colocd.toml, the
/// proxy's domain on a node): a lowercase DNS name of at least two labels,
/// at most [`MAX_APPS_DOMAIN_LEN`] characters.
pub fn check_apps_domain(field: &'static str, domain: &str) -> Result<(), InvalidInput> {
    if domain.len() > MAX_APPS_DOMAIN_LEN {
        return Err(InvalidInput::field(
            field,
            format!(
                "{:?} is longer than {MAX_APPS_DOMAIN_LEN} characters",
                clip(domain)
            ),
        ));
    }
    check_domain_name(field, domain)
}

/// An ACME account e-mail: `local@domain`, the local part of
/// `[A-Za-z0-9._+-]` (at most 64 characters), the domain a lowercase DNS
/// name ([`check_domain_name`]). No quote, space, brace or newline: it is
/// written into the proxy's configuration.
pub fn check_acme_email(email: &str) -> Result<(), InvalidInput> {
    let bad = || {
        InvalidInput::field(
            "acme_email",
            format!("{:?} is not a plain e-mail address", clip(email)),
        )
    };
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || local.len() > 64
        || !local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
    {
        return Err(bad());
    }
    check_domain_name("acme_email", domain).map_err(|_| bad())
}

/// A node's reverse proxy settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyDecl {
    /// Apps are served as `<app>.<tenant>.<domain>`.
    pub domain: String,
    /// The ACME account; `None`: Caddy's internal CA.
    pub acme_email: Option<String>,
}

impl TryFrom<&ProxySpec> for ProxyDecl {
    type Error = InvalidInput;
    fn try_from(spec: &ProxySpec) -> Result<ProxyDecl, InvalidInput> {
        check_apps_domain("proxy domain", &spec.domain)?;
        let acme_email = if spec.acme_email.is_empty() {
            None
        } else {
            check_acme_email(&spec.acme_email)?;
            Some(spec.acme_email.clone())
        };
        Ok(ProxyDecl {
            domain: spec.domain.clone(),
            acme_email,
        })
    }
}

#[cfg(test)]
mod tests;
