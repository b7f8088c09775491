//! First boot: turning a generic node image into *this* node.
//!
//! What makes a node itself arrives on a small FAT volume labelled
//! `COLOCSEED` holding one `seed.toml`, written by `coloc-image seed`
//! (docs/IMAGE.md, "Seed volume"). The file's schema and validation are the
//! shared contract in [`coloc_proto::seed`]; this module is `coloc-agent
//! seed apply` ([`apply`]): it reads the file off the volume with mtools
//! through the agent's [`Runner`] (no mount: no vfat module, no mount point,
//! nothing left mounted), checks everything — including that the agent
//! configuration it is about to write loads with the agent's own parser —
//! then writes the node's files under a root directory, each one
//! atomically. The seed's sha256 is remembered: later boots with the same
//! key still plugged in change nothing, and a seed is applied at first boot
//! only — another key labelled COLOCSEED plugged in later replaces neither
//! root's SSH keys, the controller nor the CA
//! ([`ApplyOutcome::AlreadyProvisioned`]) unless re-provisioning is asked
//! for explicitly ([`ApplyOptions::force`], `seed apply --force`).
//!
//! A seed that does not validate writes nothing at all. This module never
//! talks to the controller: enrolling with the join token is the daemon's
//! job, once the configuration written here exists.

use std::fmt;
use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use coloc_proto::domain::{NodeName, SiteName};
use coloc_proto::seed::{
    AGENT_CONFIG_PATH, AUTHORIZED_KEYS_PATH, CA_PATH, HOSTID_PATH, HOSTNAME_PATH, JOIN_TOKEN_PATH,
    MAX_SEED_BYTES, SEED_FILE, STATE_DIR, Seed, SeedError,
};
use sha2::{Digest, Sha256};

use crate::config::{AgentConfig, ConfigError};
use crate::durable;
use crate::runner::{CommandError, Runner};

/// Where udev exposes the seed volume, whatever the disk is called.
pub const DEFAULT_SEED_DEVICE: &str = "/dev/disk/by-label/COLOCSEED";
/// The sha256 of the last seed applied, inside the agent's state directory.
pub const APPLIED_FILE: &str = "seed.applied";

/// Why a seed was refused or could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot read {SEED_FILE} from the seed volume {device}")]
    Read {
        device: PathBuf,
        #[source]
        source: CommandError,
    },
    #[error("{SEED_FILE} on {device} is {size} bytes; a seed is at most {MAX_SEED_BYTES}")]
    TooLarge { device: PathBuf, size: usize },
    #[error("{device} is not a UTF-8 path")]
    DevicePath { device: PathBuf },
    #[error(transparent)]
    Seed(#[from] SeedError),
    #[error("the seed does not make a valid agent configuration")]
    Config(#[source] ConfigError),
    #[error(
        "this node is already enrolled as {enrolled} (identity in {state_dir}); refusing a seed for {seed}. Plug in this node's own seed, or remove {state_dir} to provision it anew"
    )]
    OtherNode {
        enrolled: NodeName,
        seed: NodeName,
        state_dir: PathBuf,
    },
    #[error("cannot use {path} as the root to provision")]
    Root {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read {path}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot set the running host name to {hostname}")]
    SetHostname {
        hostname: NodeName,
        #[source]
        source: io::Error,
    },
}

/// What `seed apply` is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOptions {
    /// The seed volume; when it does not exist there is nothing to apply.
    pub device: PathBuf,
    /// Where the node's file system is: `/` on a node, a temporary
    /// directory in tests. The running host name is only changed for `/`.
    pub root: PathBuf,
    /// Apply a seed even though another one was applied before: the
    /// explicit act of re-provisioning (`seed apply --force`). Without it
    /// a seed is only ever applied at first boot.
    pub force: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            device: PathBuf::from(DEFAULT_SEED_DEVICE),
            root: PathBuf::from("/"),
            force: false,
        }
    }
}

/// What `seed apply` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// No seed volume is plugged in: a normal boot after the first.
    NoDevice { device: PathBuf },
    /// This exact seed was applied before; nothing was written.
    Unchanged { node: NodeName, sha256: String },
    /// Another seed was applied before (first boot is over) and
    /// re-provisioning was not asked for: a key plugged in later replaces
    /// neither the SSH keys, the controller nor the CA. Nothing was written.
    AlreadyProvisioned {
        /// The seed offered now.
        sha256: String,
        /// The one applied at provisioning.
        applied: String,
    },
    /// The seed's files were written.
    Applied {
        node: NodeName,
        site: SiteName,
        sha256: String,
        /// Every file written, as paths on the provisioned root.
        files: Vec<PathBuf>,
        /// Whether the running host name was set (only when the root is `/`).
        hostname_set: bool,
    },
}

impl fmt::Display for ApplyOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyOutcome::NoDevice { device } => write!(
                f,
                "no seed volume at {}; nothing to apply",
                device.display()
            ),
            ApplyOutcome::Unchanged { node, sha256 } => write!(
                f,
                "seed sha256:{sha256} for node {node} was already applied; nothing changed"
            ),
            ApplyOutcome::AlreadyProvisioned { sha256, applied } => write!(
                f,
                "this node was provisioned with seed sha256:{applied}; seed sha256:{sha256} is ignored (re-provision explicitly with `coloc-agent seed apply --force`)"
            ),
            ApplyOutcome::Applied {
                node,
                site,
                sha256,
                files,
                hostname_set,
            } => {
                let files: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "applied seed sha256:{sha256} for node {node} (site {site}): wrote {}",
                    files.join(", ")
                )?;
                if *hostname_set {
                    write!(f, "; host name set to {node}")?;
                }
                Ok(())
            }
        }
    }
}

/// `coloc-agent seed apply`: reads `seed.toml` from the seed volume and
/// applies it with [`apply_text`].
pub async fn apply(runner: &Runner, options: &ApplyOptions) -> Result<ApplyOutcome, ApplyError> {
    let device = &options.device;
    match device.try_exists() {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(device = %device.display(), "no seed volume; nothing to apply");
            return Ok(ApplyOutcome::NoDevice {
                device: device.clone(),
            });
        }
        Err(source) => {
            return Err(ApplyError::ReadFile {
                path: device.clone(),
                source,
            });
        }
    }
    let text = read_seed(runner, device).await?;
    apply_text(&text, options)
}

/// Reads `seed.toml` off a FAT volume (a device or an image file) without
/// mounting it.
pub async fn read_seed(runner: &Runner, device: &Path) -> Result<String, ApplyError> {
    let device_arg = device.to_str().ok_or_else(|| ApplyError::DevicePath {
        device: device.to_path_buf(),
    })?;
    let source_arg = format!("::{SEED_FILE}");
    let output = runner
        .run("mcopy", &["-i", device_arg, &source_arg, "-"])
        .await
        .map_err(|source| ApplyError::Read {
            device: device.to_path_buf(),
            source,
        })?;
    if output.stdout.len() > MAX_SEED_BYTES {
        return Err(ApplyError::TooLarge {
            device: device.to_path_buf(),
            size: output.stdout.len(),
        });
    }
    Ok(output.stdout)
}

/// Applies the text of a `seed.toml` under `options.root`. Everything is
/// validated before the first byte is written; then each file is replaced
/// atomically, the configuration after the files it names, and the seed's
/// hash last, so that a power cut halfway applies the seed again at the
/// next boot.
pub fn apply_text(text: &str, options: &ApplyOptions) -> Result<ApplyOutcome, ApplyError> {
    let sha256 = hex::encode(Sha256::digest(text.as_bytes()));
    let seed = Seed::parse(text)?;
    // The guarantee the daemon relies on: what this writes, it loads.
    AgentConfig::from_toml_str(&seed.agent_toml()).map_err(ApplyError::Config)?;
    let root = options
        .root
        .canonicalize()
        .map_err(|source| ApplyError::Root {
            path: options.root.clone(),
            source,
        })?;
    let live = root == Path::new("/");
    let state_dir = under(&root, STATE_DIR);
    let applied_path = state_dir.join(APPLIED_FILE);
    let node = seed.hostname().clone();

    match applied_sha256(&applied_path)? {
        Some(applied) if applied == sha256 => {
            tracing::info!(node = %node, sha256 = %sha256, "seed already applied; nothing to do");
            return Ok(ApplyOutcome::Unchanged { node, sha256 });
        }
        Some(applied) if !options.force => {
            tracing::warn!(
                sha256 = %sha256,
                applied = %applied,
                "a seed volume is plugged in but this node was provisioned already; ignored"
            );
            return Ok(ApplyOutcome::AlreadyProvisioned { sha256, applied });
        }
        _ => {}
    }
    check_not_enrolled_as_another(&state_dir, &node)?;

    let write = |path: &str, bytes: &[u8], mode: u32| -> Result<PathBuf, ApplyError> {
        let target = under(&root, path);
        durable::write_atomic(&target, bytes, mode).map_err(|source| ApplyError::Write {
            path: target.clone(),
            source,
        })?;
        tracing::debug!(path = %target.display(), "written");
        Ok(PathBuf::from(path))
    };
    ensure_dir(&under(&root, "/etc/coloc"), 0o755)?;
    let mut files = vec![
        write(HOSTNAME_PATH, format!("{node}\n").as_bytes(), 0o644)?,
        write(CA_PATH, with_final_newline(seed.ca_pem()).as_bytes(), 0o644)?,
        write(
            JOIN_TOKEN_PATH,
            format!("{}\n", seed.join_token()).as_bytes(),
            0o600,
        )?,
        write(AGENT_CONFIG_PATH, seed.agent_toml().as_bytes(), 0o644)?,
    ];
    // The node's ZFS host id (what `zgenhostid` writes: a u32 in native
    // byte order), made once: pools remember the host that last imported
    // them, so it must differ between nodes and never change on a node.
    let hostid = under(&root, HOSTID_PATH);
    if !hostid.exists() {
        let id: u32 = loop {
            let id: u32 = rand::random();
            if id != 0 {
                break id;
            }
        };
        files.push(write(HOSTID_PATH, &id.to_ne_bytes(), 0o644)?);
    }
    // An empty list leaves any existing keys alone: a seed without keys
    // means "no SSH access from the seed", not "revoke what an admin set up".
    if !seed.ssh_authorized_keys().is_empty() {
        ensure_dir(&under(&root, "/root"), 0o700)?;
        ensure_dir(&under(&root, "/root/.ssh"), 0o700)?;
        let mut keys = seed.ssh_authorized_keys().join("\n");
        keys.push('\n');
        files.push(write(AUTHORIZED_KEYS_PATH, keys.as_bytes(), 0o600)?);
    }

    let hostname_set = if live {
        set_running_hostname(&node)?;
        true
    } else {
        false
    };

    durable::ensure_private_dir(&state_dir).map_err(|source| ApplyError::Write {
        path: state_dir.clone(),
        source,
    })?;
    durable::write_atomic(&applied_path, format!("{sha256}\n").as_bytes(), 0o600).map_err(
        |source| ApplyError::Write {
            path: applied_path.clone(),
            source,
        },
    )?;
    tracing::info!(
        node = %node,
        site = %seed.site(),
        controller = %seed.controller(),
        sha256 = %sha256,
        ssh_keys = seed.ssh_authorized_keys().len(),
        hostname_set,
        "seed applied"
    );
    Ok(ApplyOutcome::Applied {
        node,
        site: seed.site().clone(),
        sha256,
        files,
        hostname_set,
    })
}

/// `abs` (an absolute path on the node) under `root`.
fn under(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

fn with_final_newline(text: &str) -> String {
    let mut text = text.to_owned();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// The hash recorded by the last successful apply, if any.
fn applied_sha256(path: &Path) -> Result<Option<String>, ApplyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ApplyError::ReadFile {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A seed left plugged into the wrong server must not rename a node that
/// is already enrolled: its certificate would no longer match its name.
fn check_not_enrolled_as_another(state_dir: &Path, seed: &NodeName) -> Result<(), ApplyError> {
    match crate::enroll::load_identity(state_dir) {
        Ok(Some(identity)) if identity.node_name != *seed => Err(ApplyError::OtherNode {
            enrolled: identity.node_name,
            seed: seed.clone(),
            state_dir: state_dir.to_path_buf(),
        }),
        Ok(_) => Ok(()),
        Err(e) => {
            // A damaged identity is the daemon's to report and repair;
            // it must not keep the node from getting its configuration.
            tracing::warn!(
                state_dir = %state_dir.display(),
                error = %coloc_proto::error_chain(&e),
                "cannot read the stored node identity; applying the seed anyway"
            );
            Ok(())
        }
    }
}

/// Creates `dir` (and missing parents) and sets its mode, also when it
/// already existed: `/root/.ssh` must not stay group-writable, or sshd
/// ignores the keys in it.
fn ensure_dir(dir: &Path, mode: u32) -> Result<(), ApplyError> {
    let err = |source| ApplyError::Write {
        path: dir.to_path_buf(),
        source,
    };
    DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(err)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(err)
}

/// Sets the running host name. Writing the kernel's own file is
/// `sethostname(2)` without a helper binary or D-Bus (systemd-hostnamed
/// may not be up this early in boot); the file written to /etc makes it
/// stick across reboots.
fn set_running_hostname(node: &NodeName) -> Result<(), ApplyError> {
    std::fs::write("/proc/sys/kernel/hostname", node.as_str()).map_err(|source| {
        ApplyError::SetHostname {
            hostname: node.clone(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CaSource, JoinTokenSource};
    use coloc_proto::seed::SeedFile;

    fn sample_file() -> SeedFile {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["coloc-ca".to_owned()]).expect("params");
        SeedFile {
            hostname: "n1".into(),
            site: "paris-1".into(),
            controller: "https://10.0.2.2:7443".into(),
            ca_pem: params.self_signed(&key).expect("self-signed").pem(),
            join_token: "cjt_abc123".into(),
            ssh_authorized_keys: Vec::new(),
        }
    }

    #[test]
    fn agent_toml_loads_with_the_agents_own_parser() {
        let seed = Seed::validate(sample_file()).expect("valid");
        let config = AgentConfig::from_toml_str(&seed.agent_toml()).expect("loads");
        assert_eq!(config.controller, "https://10.0.2.2:7443");
        assert_eq!(config.node_name.as_str(), "n1");
        assert_eq!(config.ca, CaSource::File(CA_PATH.into()));
        assert_eq!(
            config.join_token,
            Some(JoinTokenSource::File(JOIN_TOKEN_PATH.into()))
        );
        assert_eq!(config.state_dir, PathBuf::from(STATE_DIR));
    }

    #[test]
    fn outcome_reads_well() {
        let applied = ApplyOutcome::Applied {
            node: NodeName::new("n1").expect("name"),
            site: SiteName::new("paris-1").expect("site"),
            sha256: "ab".into(),
            files: vec![HOSTNAME_PATH.into(), AGENT_CONFIG_PATH.into()],
            hostname_set: true,
        };
        assert_eq!(
            applied.to_string(),
            "applied seed sha256:ab for node n1 (site paris-1): wrote /etc/hostname, /etc/coloc/agent.toml; host name set to n1"
        );
    }
}
