//! [`Packages`]: Debian packages the apps need, installed with apt the way
//! an operator would do it by hand on a server that is in production.
//!
//! [`RealPackages`] asks `dpkg-query` what is already installed and runs
//! `apt-get install` only for the rest, non-interactively
//! (`DEBIAN_FRONTEND=noninteractive`, the configuration files the admin may
//! have changed kept: `--force-confdef --force-confold`) and without
//! letting the packages start their services (a `policy-rc.d` that says
//! "no" for the duration of the install, removed afterwards even when the
//! install failed, and never touched if the admin already has one): the app
//! reconciler masks those units and runs the apps in its own units. A
//! package apt does not know triggers one `apt-get update` and a retry; one
//! still unknown after that is [`HostError::Refused`] naming it. Names are
//! checked against Debian's package name rule and must match exactly:
//! apt's own readings of a command-line word (a trailing `-` removes a
//! package, a word with `.` or `+` may be taken as a regular expression)
//! are refused or switched off, and dpkg must list every name installed
//! afterwards, so a name can only ever install itself.
//! Installs are serialised: apt holds one lock for the whole system.
//!
//! [`FakePackages`] keeps the installed set in memory for the simulated
//! agent and the app reconciler's tests.

use coloc_proto::apps::PackageName;
use coloc_proto::domain::clip;
use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use crate::runner::{CommandError, Runner, display_command, stderr_tail};
use crate::{HostError, Packages, UnitName};

/// How long one `apt-get install` may take: downloads of a large
/// application (and its database server) over a slow mirror.
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// How long `apt-get update` may take.
pub const UPDATE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Where Debian's maintainer scripts look for the local policy on starting
/// services (invoke-rc.d and deb-systemd-invoke read it).
pub const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// "Action forbidden by policy": invoke-rc.d then starts nothing.
const POLICY_RC_D_DENY_ALL: &[u8] = b"#!/bin/sh\nexit 101\n";

/// How long apt waits for its lock when something else (unattended
/// upgrades, an admin) holds it, rather than failing at once.
const APT_LOCK_TIMEOUT_SECS: &str = "120";

/// apt-get's exit status for any error.
const APT_ERROR_STATUS: i32 = 100;

/// dpkg-query's exit status when some of the names are not known to dpkg.
const DPKG_QUERY_NOT_FOUND_STATUS: i32 = 1;

/// Why nothing could install the package.
const NOT_AVAILABLE: &str = "not available from the configured Debian mirrors";

/// Refuses anything that is not a Debian package name by proto's rule
/// ([`PackageName`]: Debian policy 5.6.1, `[a-z0-9][a-z0-9+.-]+`, and no
/// trailing `-`, which `apt-get install` reads as "remove"), before any
/// command runs.
pub fn validate_package_name(name: &str) -> Result<(), HostError> {
    PackageName::new(name)
        .map(drop)
        .map_err(|e| HostError::Refused {
            object: format!("package {:?}", clip(name)),
            reason: e.reason(),
        })
}

/// The packages `dpkg-query -W -f '${Package}\t${db:Status-Abbrev}\n'`
/// reports as fully installed: status `ii` with no error flag. Anything
/// else (`rc` config files only, `iU` unpacked, `iiR` reinstall required,
/// `un` known but not installed) needs apt.
pub fn parse_dpkg_installed(output: &str) -> Result<BTreeSet<String>, HostError> {
    let mut installed = BTreeSet::new();
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        let Some((name, status)) = line.split_once('\t') else {
            return Err(HostError::parse(
                "dpkg-query output",
                format!("no tab in {line:?}"),
            ));
        };
        if status.trim_end() == "ii" {
            installed.insert(name.to_owned());
        }
    }
    Ok(installed)
}

/// The packages apt-get says it cannot install from its lists: "Unable to
/// locate package X" (unknown) and "Package 'X' has no installation
/// candidate" (known only as a virtual package or from dpkg's status).
pub fn parse_apt_unavailable(stderr: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in stderr.lines() {
        let line = line.trim_end();
        let name = if let Some(name) = line.strip_prefix("E: Unable to locate package ") {
            Some(name)
        } else {
            line.strip_prefix("E: Package '")
                .and_then(|rest| rest.strip_suffix("' has no installation candidate"))
        };
        if let Some(name) = name
            && !names.iter().any(|n| n == name)
        {
            names.push(name.to_owned());
        }
    }
    names
}

/// Where packages install systemd's system units.
const SYSTEM_UNIT_DIRS: &[&str] = &["/lib/systemd/system", "/usr/lib/systemd/system"];

/// The systemd units a package's file list (`dpkg-query -L <package>`)
/// installs: files directly in one of systemd's system unit directories
/// whose name is a unit coloc can address (templates such as
/// `syncthing@.service` and drop-in directories are left out).
pub fn parse_unit_files(listing: &str) -> BTreeSet<UnitName> {
    listing
        .lines()
        .filter_map(|line| {
            let (dir, name) = line.trim_end().rsplit_once('/')?;
            SYSTEM_UNIT_DIRS.contains(&dir).then_some(name)
        })
        .filter_map(|name| UnitName::new(name).ok())
        .collect()
}

/// The error for packages no mirror has.
fn unavailable(names: &[String]) -> HostError {
    let object = match names {
        [one] => format!("package {one}"),
        many => format!("packages {}", many.join(", ")),
    };
    HostError::Refused {
        object,
        reason: NOT_AVAILABLE.to_owned(),
    }
}

/// Validates `packages` and drops duplicates, keeping the first order.
fn checked_names(packages: &[String]) -> Result<Vec<String>, HostError> {
    let mut names: Vec<String> = Vec::with_capacity(packages.len());
    for name in packages {
        validate_package_name(name)?;
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    Ok(names)
}

/// The programs and paths [`RealPackages`] uses.
#[derive(Debug, Clone)]
struct Tools {
    dpkg_query: String,
    apt_get: String,
    policy_rc_d: PathBuf,
}

/// [`Packages`] with dpkg and apt. Cheap to clone; clones share the lock
/// that serialises installs.
#[derive(Debug, Clone)]
pub struct RealPackages {
    runner: Runner,
    tools: Tools,
    lock: Arc<tokio::sync::Mutex<()>>,
}

/// How one `apt-get install` ended.
enum InstallOutcome {
    Installed,
    /// apt cannot find these in its lists; nothing was installed.
    Unavailable(Vec<String>),
}

impl RealPackages {
    /// `dpkg-query` and `apt-get` from the runner's search path, the
    /// system's `POLICY_RC_D`.
    pub fn new(runner: Runner) -> RealPackages {
        RealPackages {
            runner,
            tools: Tools {
                dpkg_query: "dpkg-query".into(),
                apt_get: "apt-get".into(),
                policy_rc_d: PathBuf::from(POLICY_RC_D),
            },
            lock: Arc::default(),
        }
    }

    /// The same with other programs (absolute paths or names in the
    /// runner's search path) and another policy-rc.d path: for tests, which
    /// must not install anything on the machine running them.
    pub fn with_tools(
        mut self,
        dpkg_query: impl Into<String>,
        apt_get: impl Into<String>,
        policy_rc_d: impl Into<PathBuf>,
    ) -> RealPackages {
        self.tools = Tools {
            dpkg_query: dpkg_query.into(),
            apt_get: apt_get.into(),
            policy_rc_d: policy_rc_d.into(),
        };
        self
    }

    /// Those of `names` that dpkg does not report fully installed.
    async fn missing(&self, names: &[String]) -> Result<Vec<String>, HostError> {
        let mut args = vec!["-W", "-f", "${Package}\t${db:Status-Abbrev}\n"];
        args.extend(names.iter().map(String::as_str));
        let output = self
            .runner
            .run_allow_status(
                &self.tools.dpkg_query,
                &args,
                &[DPKG_QUERY_NOT_FOUND_STATUS],
            )
            .await
            .map_err(|e| HostError::storage("query", "installed packages", e))?;
        let installed = parse_dpkg_installed(&output.stdout)?;
        Ok(names
            .iter()
            .filter(|n| !installed.contains(n.as_str()))
            .cloned()
            .collect())
    }

    async fn apt_install(&self, names: &[String]) -> Result<InstallOutcome, HostError> {
        let lock_timeout = format!("DPkg::Lock::Timeout={APT_LOCK_TIMEOUT_SECS}");
        let mut args = vec![
            "install",
            "-y",
            "--no-install-recommends",
            // Exact names only: no regular-expression fallback that would
            // turn "python3.1" into every package matching it.
            "-o",
            "APT::Cmd::Pattern-Only=true",
            "-o",
            &lock_timeout,
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
        ];
        args.extend(names.iter().map(String::as_str));
        tracing::info!(packages = ?names, "installing Debian packages");
        let output = self
            .runner
            .clone()
            .with_timeout(INSTALL_TIMEOUT)
            .run_with_env_allow_status(
                &self.tools.apt_get,
                &args,
                &[("DEBIAN_FRONTEND", "noninteractive")],
                &[APT_ERROR_STATUS],
            )
            .await
            .map_err(|e| HostError::storage("install", packages_object(names), e))?;
        if output.status == 0 {
            return Ok(InstallOutcome::Installed);
        }
        let unavailable = parse_apt_unavailable(&output.stderr);
        if !unavailable.is_empty() {
            return Ok(InstallOutcome::Unavailable(unavailable));
        }
        Err(HostError::Storage {
            op: "install",
            object: packages_object(names),
            source: CommandError::Failed {
                command: display_command(&self.tools.apt_get, &args),
                status: output.status,
                stderr_tail: stderr_tail(&output.stderr),
            },
        })
    }

    async fn apt_update(&self) -> Result<(), HostError> {
        tracing::info!("package unknown to apt: updating the package lists");
        let lock_timeout = format!("DPkg::Lock::Timeout={APT_LOCK_TIMEOUT_SECS}");
        self.runner
            .clone()
            .with_timeout(UPDATE_TIMEOUT)
            .run_with_env(
                &self.tools.apt_get,
                &["update", "-o", &lock_timeout],
                &[("DEBIAN_FRONTEND", "noninteractive")],
            )
            .await
            .map_err(|e| HostError::storage("update", "the package lists", e))?;
        Ok(())
    }

    /// Installs `missing`, updating the lists once if apt does not know a
    /// package. Runs with the policy-rc.d in place.
    async fn install_missing(&self, missing: &[String]) -> Result<(), HostError> {
        match self.apt_install(missing).await? {
            InstallOutcome::Installed => return Ok(()),
            InstallOutcome::Unavailable(names) => {
                tracing::info!(packages = ?names, "apt does not know these packages yet");
            }
        }
        self.apt_update().await?;
        match self.apt_install(missing).await? {
            InstallOutcome::Installed => Ok(()),
            InstallOutcome::Unavailable(names) => Err(unavailable(&names)),
        }
    }
}

fn packages_object(names: &[String]) -> String {
    format!("packages {}", names.join(" "))
}

#[async_trait]
impl Packages for RealPackages {
    async fn unit_files(&self, package: &str) -> Result<BTreeSet<UnitName>, HostError> {
        validate_package_name(package)?;
        let output = self
            .runner
            .run_allow_status(
                &self.tools.dpkg_query,
                &["-L", package],
                &[DPKG_QUERY_NOT_FOUND_STATUS],
            )
            .await
            .map_err(|e| {
                HostError::storage("list the files of", format!("package {package}"), e)
            })?;
        if output.status != 0 {
            return Err(HostError::Refused {
                object: format!("package {package}"),
                reason: "not installed, so it ships no unit".to_owned(),
            });
        }
        Ok(parse_unit_files(&output.stdout))
    }

    async fn ensure_installed(&self, packages: &[String]) -> Result<(), HostError> {
        let names = checked_names(packages)?;
        if names.is_empty() {
            return Ok(());
        }
        let _apt = self.lock.lock().await;
        let missing = self.missing(&names).await?;
        if missing.is_empty() {
            tracing::debug!(packages = ?names, "packages already installed");
            return Ok(());
        }

        let policy = &self.tools.policy_rc_d;
        let ours = write_policy_rc_d(policy).await?;
        let installed = self.install_missing(&missing).await;
        let removed = if ours {
            remove_policy_rc_d(policy).await
        } else {
            Ok(())
        };
        installed?;
        // Left in place, it would keep every later package upgrade from
        // restarting its service: as much a failure as the install's own.
        removed?;

        // apt's success is not the end of the story: check dpkg agrees.
        let still_missing = self.missing(&missing).await?;
        if !still_missing.is_empty() {
            return Err(HostError::Refused {
                object: packages_object(&still_missing),
                reason: "apt-get reported success but dpkg does not list them as installed"
                    .to_owned(),
            });
        }
        tracing::info!(packages = ?missing, "Debian packages installed");
        Ok(())
    }
}

/// Writes the deny-all policy at `path` unless a file is already there;
/// true when this call created it (and must remove it).
async fn write_policy_rc_d(path: &Path) -> Result<bool, HostError> {
    let owned = path.to_owned();
    let io_error = |source| HostError::Io {
        what: "could not write the policy-rc.d that keeps packages from starting services",
        path: path.display().to_string(),
        source,
    };
    let created = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
        // create_new: an admin's own policy is never overwritten, and two
        // writers cannot both believe they own the file.
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(&owned)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(e),
        };
        let written = file
            .write_all(POLICY_RC_D_DENY_ALL)
            .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(0o755)));
        if let Err(e) = written {
            // Do not leave a half-written file that would be taken for the
            // admin's on the next run.
            drop(file);
            if let Err(rm) = std::fs::remove_file(&owned) {
                tracing::warn!(path = %owned.display(), error = %rm, "could not remove a half-written policy-rc.d");
            }
            return Err(e);
        }
        Ok(true)
    })
    .await
    .map_err(|source| HostError::Blocking { source })?
    .map_err(io_error)?;
    if !created {
        tracing::info!(path = %path.display(), "keeping the existing policy-rc.d");
    }
    Ok(created)
}

async fn remove_policy_rc_d(path: &Path) -> Result<(), HostError> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(HostError::Io {
            what: "could not remove the policy-rc.d written for the install",
            path: path.display().to_string(),
            source,
        }),
    }
}

// ------------------------------------------------------------------- fake

/// The units the packages coloc installs ship in Debian 12, as
/// `dpkg -c` lists them (caddy 2.6.2-5, nginx-common 1.22.1-9+deb12u12,
/// prosody 0.12.3-1+deb12u1, radicale 3.1.8-2, syncthing 1.19.2~ds1-1+b4;
/// syncthing's template syncthing@.service is not addressable and left
/// out, nginx-light ships none): what [`FakePackages`] answers unless a
/// test says otherwise.
const DEBIAN_UNIT_FILES: &[(&str, &[&str])] = &[
    ("caddy", &["caddy-api.service", "caddy.service"]),
    ("nginx-common", &["nginx.service"]),
    ("prosody", &["prosody.service"]),
    ("radicale", &["radicale.service"]),
    ("syncthing", &["syncthing-resume.service"]),
];

#[derive(Debug, Default)]
struct FakeState {
    installed: BTreeSet<String>,
    unavailable: BTreeSet<String>,
    calls: u32,
    installs: Vec<Vec<String>>,
    /// Unit files per package, where a test set them.
    unit_files: std::collections::BTreeMap<String, BTreeSet<UnitName>>,
}

/// In-memory [`Packages`]: names are validated as for real, packages
/// marked unavailable are refused like apt refuses them (and then nothing
/// of that call is installed), everything else "installs" at once. An
/// installed package ships the units Debian's does ([`DEBIAN_UNIT_FILES`])
/// or the ones a test set.
#[derive(Debug, Default)]
pub struct FakePackages {
    state: Mutex<FakeState>,
}

impl FakePackages {
    /// The units `package` ships from now on.
    pub fn set_unit_files(&self, package: &str, units: &[&str]) {
        let units = units
            .iter()
            .map(|u| UnitName::new(*u).expect("a test names valid units"))
            .collect();
        self.lock().unit_files.insert(package.to_owned(), units);
    }

    /// Nothing installed, everything available.
    pub fn new() -> FakePackages {
        FakePackages::default()
    }

    /// Marks `name` as installed already, as on an image that ships it.
    pub fn preinstall(&self, name: &str) {
        self.lock().installed.insert(name.to_owned());
    }

    /// Whether the mirrors lack `name` from now on.
    pub fn set_unavailable(&self, name: &str, unavailable: bool) {
        let mut state = self.lock();
        if unavailable {
            state.unavailable.insert(name.to_owned());
        } else {
            state.unavailable.remove(name);
        }
    }

    /// Installed packages, sorted.
    pub fn installed(&self) -> BTreeSet<String> {
        self.lock().installed.clone()
    }

    pub fn is_installed(&self, name: &str) -> bool {
        self.lock().installed.contains(name)
    }

    /// How many times [`Packages::ensure_installed`] was called.
    pub fn calls(&self) -> u32 {
        self.lock().calls
    }

    /// The missing packages each call that ran apt installed, in order;
    /// calls with nothing to do add nothing.
    pub fn installs(&self) -> Vec<Vec<String>> {
        self.lock().installs.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Packages for FakePackages {
    async fn unit_files(&self, package: &str) -> Result<BTreeSet<UnitName>, HostError> {
        validate_package_name(package)?;
        let state = self.lock();
        if !state.installed.contains(package) {
            return Err(HostError::Refused {
                object: format!("package {package}"),
                reason: "not installed, so it ships no unit".to_owned(),
            });
        }
        if let Some(units) = state.unit_files.get(package) {
            return Ok(units.clone());
        }
        Ok(DEBIAN_UNIT_FILES
            .iter()
            .find(|(name, _)| *name == package)
            .map(|(_, units)| {
                units
                    .iter()
                    .map(|u| UnitName::new(*u).expect("the table holds valid unit names"))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn ensure_installed(&self, packages: &[String]) -> Result<(), HostError> {
        let mut state = self.lock();
        state.calls += 1;
        let names = checked_names(packages)?;
        let missing: Vec<String> = names
            .into_iter()
            .filter(|n| !state.installed.contains(n))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let unknown: Vec<String> = missing
            .iter()
            .filter(|n| state.unavailable.contains(n.as_str()))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(unavailable(&unknown));
        }
        state.installed.extend(missing.iter().cloned());
        state.installs.push(missing);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn debian_package_names_are_accepted() {
        for name in [
            "caddy",
            "g++",
            "libstdc++6",
            "python3.11",
            "postgresql-15",
            "0ad",
            "zlib1g-dev",
            "r-base",
        ] {
            validate_package_name(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn anything_else_is_refused_before_running() {
        for name in [
            "",
            "a",
            "-y",
            "--purge",
            "Caddy",
            "caddy:amd64",
            "caddy=2.6",
            "caddy/bookworm",
            "cad dy",
            "caddy;reboot",
            "caddy*",
            "caddy?",
            "^caddy",
            "caddy$",
            "caddy-",
            "+caddy",
            ".caddy",
            "caddé",
            "caddy\n",
            "./caddy.deb",
        ] {
            match validate_package_name(name) {
                Err(HostError::Refused { object, reason }) => {
                    assert!(object.starts_with("package "), "{object}");
                    assert!(!reason.is_empty());
                }
                other => panic!("{name:?} should be refused, got {other:?}"),
            }
        }
    }

    #[test]
    fn dpkg_query_recorded_on_a_build_machine() {
        // Recorded on Debian 12 (dpkg 1.21) with
        // `dpkg-query -W -f '${Package}\t${db:Status-Abbrev}\n' libc6
        // zlib1g-dev coloc-no-such-package g++`: sorted by name, the
        // unknown package only on stderr (exit status 1).
        let installed = parse_dpkg_installed(&fixture("apt-dpkg-query.txt")).unwrap();
        assert_eq!(
            installed,
            ["g++", "libc6", "zlib1g-dev"]
                .into_iter()
                .map(String::from)
                .collect()
        );
    }

    #[test]
    fn only_ii_without_error_flag_counts_as_installed() {
        // Written by hand after dpkg-query(1)'s db:Status-Abbrev: removed
        // with config files, unpacked, known, reinstall-required.
        let installed = parse_dpkg_installed(&fixture("apt-dpkg-query-states.sample.txt")).unwrap();
        assert_eq!(
            installed,
            ["apache2", "redis-server"]
                .into_iter()
                .map(String::from)
                .collect()
        );
        assert_eq!(parse_dpkg_installed("").unwrap(), BTreeSet::new());
        assert!(matches!(
            parse_dpkg_installed("caddy ii \n"),
            Err(HostError::Parse { .. })
        ));
    }

    #[test]
    fn apt_unknown_and_candidate_less_packages_are_named() {
        // Recorded on Debian 12 (apt 2.6.2): `apt-get install -s -y
        // --no-install-recommends -o APT::Cmd::Pattern-Only=true ...
        // zlib1g-dev coloc-no-such-package mail-transport-agent`, exit 100.
        let stderr = fixture("apt-get-install-unknown.stderr.txt");
        assert_eq!(
            parse_apt_unavailable(&stderr),
            names(&["coloc-no-such-package", "mail-transport-agent"])
        );
        let stdout = fixture("apt-get-install-unknown.stdout.txt");
        assert!(
            parse_apt_unavailable(&stdout).is_empty(),
            "the virtual package list on stdout is not an error"
        );
        assert!(
            parse_apt_unavailable(
                "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 1\n"
            )
            .is_empty()
        );
    }

    #[test]
    fn unit_files_are_read_from_a_recorded_file_list() {
        // Recorded on Debian 12: `dpkg-query -L caddy` (caddy 2.6.2-5).
        let units = parse_unit_files(&fixture("dpkg-query-L-caddy.txt"));
        let names: Vec<&str> = units.iter().map(UnitName::as_str).collect();
        assert_eq!(names, ["caddy-api.service", "caddy.service"]);
        // Templates, drop-ins, other directories and lookalikes are not
        // units a package ships for masking.
        let units = parse_unit_files(
            "/lib/systemd/system/syncthing@.service\n\
             /lib/systemd/system/x.service.d/override.conf\n\
             /etc/systemd/system/evil.service\n\
             /usr/lib/systemd/system/radicale.service\n\
             /usr/lib/systemd/systemx/ssh.service\n\
             /lib/systemd/system\n",
        );
        let names: Vec<&str> = units.iter().map(UnitName::as_str).collect();
        assert_eq!(names, ["radicale.service"]);
    }

    #[tokio::test]
    async fn the_fake_ships_debians_units_for_installed_packages() {
        let fake = FakePackages::new();
        let err = fake
            .unit_files("radicale")
            .await
            .expect_err("not installed");
        assert!(matches!(err, HostError::Refused { .. }), "{err:?}");
        fake.ensure_installed(&names(&["radicale", "nginx-light", "nginx-common"]))
            .await
            .expect("installs");
        let shipped =
            |units: BTreeSet<UnitName>| units.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            shipped(fake.unit_files("radicale").await.unwrap()),
            ["radicale.service"]
        );
        assert!(fake.unit_files("nginx-light").await.unwrap().is_empty());
        assert_eq!(
            shipped(fake.unit_files("nginx-common").await.unwrap()),
            ["nginx.service"]
        );
        fake.set_unit_files("radicale", &["radicale.socket"]);
        assert_eq!(
            shipped(fake.unit_files("radicale").await.unwrap()),
            ["radicale.socket"]
        );
        assert!(fake.unit_files("radicale; reboot").await.is_err());
    }

    #[tokio::test]
    async fn the_fake_installs_once_and_refuses_unavailable_packages() {
        let fake = FakePackages::new();
        fake.preinstall("caddy");
        fake.ensure_installed(&names(&["caddy", "redis-server", "redis-server"]))
            .await
            .unwrap();
        fake.ensure_installed(&names(&["redis-server"]))
            .await
            .unwrap();
        assert_eq!(fake.installs(), vec![names(&["redis-server"])]);
        assert!(fake.is_installed("redis-server"));

        fake.set_unavailable("nextcloud", true);
        match fake
            .ensure_installed(&names(&["php8.2", "nextcloud"]))
            .await
        {
            Err(HostError::Refused { object, reason }) => {
                assert_eq!(object, "package nextcloud");
                assert_eq!(reason, NOT_AVAILABLE);
            }
            other => panic!("{other:?}"),
        }
        assert!(!fake.is_installed("php8.2"), "apt installs all or nothing");
        assert!(matches!(
            fake.ensure_installed(&names(&["-y"])).await,
            Err(HostError::Refused { .. })
        ));
        assert_eq!(fake.calls(), 4);
        fake.set_unavailable("nextcloud", false);
        fake.ensure_installed(&names(&["nextcloud"])).await.unwrap();
        assert!(fake.is_installed("nextcloud"));
    }

    // -------------------------------------------- RealPackages, faked tools

    /// A directory with shell stand-ins for dpkg-query and apt-get that
    /// keep their "dpkg database" in files, so the real install logic runs
    /// end to end without touching the machine's packages.
    struct FakeApt {
        dir: tempfile::TempDir,
    }

    impl FakeApt {
        fn new() -> FakeApt {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path().display().to_string();
            let policy = dir.path().join("policy-rc.d").display().to_string();
            for file in ["installed", "known", "known-after-update"] {
                std::fs::write(dir.path().join(file), "").unwrap();
            }
            let dpkg_query = format!(
                r#"#!/bin/sh
D={d}
echo "$*" >> $D/dpkg-query.log
shift 3
rc=0
for p in "$@"; do
  if grep -qx "$p" $D/installed; then printf '%s\tii \n' "$p"
  else echo "dpkg-query: no packages found matching $p" >&2; rc=1; fi
done
exit $rc
"#
            );
            let apt_get = format!(
                r#"#!/bin/sh
D={d}
echo "$DEBIAN_FRONTEND $*" >> $D/apt-get.log
if [ "$1" = update ]; then
  [ -f $D/update-fails ] && {{ echo "E: Failed to fetch" >&2; exit 100; }}
  touch $D/updated; exit 0
fi
[ -x {policy} ] || {{ echo "no policy-rc.d during install" >&2; exit 99; }}
grep -q 'exit 101' {policy} || {{ echo "policy-rc.d allows starts" >&2; exit 99; }}
[ -f $D/dpkg-breaks ] && {{ echo "E: Sub-process /usr/bin/dpkg returned an error code (1)" >&2; exit 100; }}
shift
pkgs=""; skip=0; rc=0
for a in "$@"; do
  if [ $skip = 1 ]; then skip=0; continue; fi
  case "$a" in -o) skip=1 ;; -*) ;; *) pkgs="$pkgs $a" ;; esac
done
for p in $pkgs; do
  if grep -qx "$p" $D/known; then :
  elif [ -f $D/updated ] && grep -qx "$p" $D/known-after-update; then :
  else echo "E: Unable to locate package $p" >&2; rc=100; fi
done
[ $rc = 0 ] || exit $rc
[ -f $D/lies ] && exit 0
for p in $pkgs; do echo "$p" >> $D/installed; done
"#
            );
            for (name, body) in [("dpkg-query", dpkg_query), ("apt-get", apt_get)] {
                let path = dir.path().join(name);
                std::fs::write(&path, body).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            FakeApt { dir }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn packages(&self) -> RealPackages {
            RealPackages::new(Runner::new()).with_tools(
                self.path("dpkg-query").display().to_string(),
                self.path("apt-get").display().to_string(),
                self.path("policy-rc.d"),
            )
        }

        fn add(&self, file: &str, package: &str) {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(self.path(file))
                .unwrap();
            writeln!(f, "{package}").unwrap();
        }

        fn log(&self, name: &str) -> Vec<String> {
            std::fs::read_to_string(self.path(name))
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect()
        }

        fn installed(&self) -> Vec<String> {
            self.log("installed")
        }
    }

    #[tokio::test]
    async fn installs_only_what_is_missing_with_policy_and_environment() {
        let apt = FakeApt::new();
        apt.add("installed", "caddy");
        apt.add("known", "redis-server");
        let packages = apt.packages();
        packages
            .ensure_installed(&names(&["caddy", "redis-server"]))
            .await
            .unwrap();
        assert_eq!(apt.installed(), names(&["caddy", "redis-server"]));
        let runs = apt.log("apt-get.log");
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert!(
            runs[0].starts_with("noninteractive install -y --no-install-recommends "),
            "{}",
            runs[0]
        );
        for option in [
            "-o APT::Cmd::Pattern-Only=true",
            "-o Dpkg::Options::=--force-confdef",
            "-o Dpkg::Options::=--force-confold",
        ] {
            assert!(runs[0].contains(option), "{option}: {}", runs[0]);
        }
        assert!(runs[0].ends_with(" redis-server"), "{}", runs[0]);
        assert!(!apt.path("policy-rc.d").exists(), "policy removed after");

        // Everything there: dpkg-query only, apt not run again.
        packages
            .ensure_installed(&names(&["redis-server", "caddy"]))
            .await
            .unwrap();
        assert_eq!(apt.log("apt-get.log").len(), 1);
        packages.ensure_installed(&[]).await.unwrap();
    }

    #[tokio::test]
    async fn unknown_packages_update_the_lists_once() {
        let apt = FakeApt::new();
        apt.add("known-after-update", "nextcloud-server");
        let packages = apt.packages();
        packages
            .ensure_installed(&names(&["nextcloud-server"]))
            .await
            .unwrap();
        assert_eq!(apt.installed(), names(&["nextcloud-server"]));
        let runs = apt.log("apt-get.log");
        assert_eq!(runs.len(), 3, "{runs:?}");
        assert!(runs[1].starts_with("noninteractive update"), "{runs:?}");
    }

    #[tokio::test]
    async fn a_package_still_unknown_is_refused_by_name_and_the_policy_removed() {
        let apt = FakeApt::new();
        apt.add("known", "caddy");
        let packages = apt.packages();
        match packages
            .ensure_installed(&names(&["caddy", "coloc-no-such-package"]))
            .await
        {
            Err(HostError::Refused { object, reason }) => {
                assert_eq!(object, "package coloc-no-such-package");
                assert_eq!(reason, NOT_AVAILABLE);
            }
            other => panic!("{other:?}"),
        }
        let runs = apt.log("apt-get.log");
        assert_eq!(runs.len(), 3, "install, update, install: {runs:?}");
        assert!(apt.installed().is_empty());
        assert!(!apt.path("policy-rc.d").exists());
    }

    #[tokio::test]
    async fn other_apt_failures_keep_the_command_and_stderr() {
        let apt = FakeApt::new();
        apt.add("known", "caddy");
        std::fs::write(apt.path("dpkg-breaks"), "").unwrap();
        let err = apt
            .packages()
            .ensure_installed(&names(&["caddy"]))
            .await
            .unwrap_err();
        let HostError::Storage { op, object, source } = &err else {
            panic!("{err:?}");
        };
        assert_eq!((*op, object.as_str()), ("install", "packages caddy"));
        match source {
            CommandError::Failed {
                status,
                stderr_tail,
                command,
            } => {
                assert_eq!(*status, 100);
                assert!(
                    stderr_tail.contains("dpkg returned an error"),
                    "{stderr_tail}"
                );
                assert!(command.contains("install -y"), "{command}");
            }
            other => panic!("{other:?}"),
        }
        assert!(!apt.path("policy-rc.d").exists(), "removed on failure too");
        assert_eq!(
            apt.log("apt-get.log").len(),
            1,
            "no update for a dpkg error"
        );
    }

    #[tokio::test]
    async fn a_failed_update_is_reported() {
        let apt = FakeApt::new();
        std::fs::write(apt.path("update-fails"), "").unwrap();
        let err = apt
            .packages()
            .ensure_installed(&names(&["caddy"]))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, HostError::Storage { op: "update", .. }),
            "{err:?}"
        );
        assert!(!apt.path("policy-rc.d").exists());
    }

    #[tokio::test]
    async fn an_admins_policy_rc_d_is_kept() {
        let apt = FakeApt::new();
        apt.add("known", "caddy");
        let admin_policy = "#!/bin/sh\n# the admin's\nexit 101\n";
        std::fs::write(apt.path("policy-rc.d"), admin_policy).unwrap();
        std::fs::set_permissions(
            apt.path("policy-rc.d"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        apt.packages()
            .ensure_installed(&names(&["caddy"]))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(apt.path("policy-rc.d")).unwrap(),
            admin_policy
        );
    }

    #[tokio::test]
    async fn success_that_dpkg_does_not_confirm_is_an_error() {
        let apt = FakeApt::new();
        apt.add("known", "caddy");
        std::fs::write(apt.path("lies"), "").unwrap();
        let err = apt
            .packages()
            .ensure_installed(&names(&["caddy"]))
            .await
            .unwrap_err();
        assert!(matches!(&err, HostError::Refused { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn bad_names_run_nothing() {
        let apt = FakeApt::new();
        let err = apt
            .packages()
            .ensure_installed(&names(&["caddy", "zlib1g-dev-"]))
            .await
            .unwrap_err();
        assert!(matches!(&err, HostError::Refused { .. }), "{err:?}");
        assert!(apt.log("dpkg-query.log").is_empty());
        assert!(apt.log("apt-get.log").is_empty());
    }

    #[tokio::test]
    async fn concurrent_installs_are_serialised() {
        let apt = FakeApt::new();
        apt.add("known", "caddy");
        let packages = apt.packages();
        let clone = packages.clone();
        let wanted = names(&["caddy"]);
        let (a, b) = tokio::join!(
            packages.ensure_installed(&wanted),
            clone.ensure_installed(&wanted)
        );
        a.unwrap();
        b.unwrap();
        // The second caller saw the first's result and ran no apt.
        assert_eq!(apt.log("apt-get.log").len(), 1);
        assert_eq!(apt.installed(), names(&["caddy"]));
    }
}
