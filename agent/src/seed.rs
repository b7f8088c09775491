//! First boot: turning a generic node image into *this* node.
//!
//! What makes a node itself (its name, the controller it reports to, the
//! cooperative's CA, a one-time join token, the admins' SSH keys) arrives
//! on a small FAT volume labelled `COLOCSEED` holding one `seed.toml`,
//! written by `coloc-image seed` (docs/IMAGE.md, "Seed volume"). This
//! module owns that file: its schema ([`SeedFile`], shared with the image
//! builder so that both sides agree on every field), its validation
//! ([`Seed`]) and `coloc-agent seed apply` ([`apply`]), which reads the
//! file off the volume with mtools through the agent's [`Runner`] (no
//! mount: no vfat module, no mount point, nothing left mounted), checks
//! everything, then writes the node's files under a root directory, each
//! one atomically. The seed's sha256 is remembered so that later boots
//! with the same key still plugged in change nothing.
//!
//! A seed that does not validate writes nothing at all. This module never
//! talks to the controller: enrolling with the join token is the daemon's
//! job, once the configuration written here exists.

use std::fmt;
use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use coloc_proto::domain::{InvalidInput, NodeName, SiteName};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{
    AgentConfig, CaSource, ConfigError, DEFAULT_CONFIG_PATH, DEFAULT_STATE_DIR, JoinTokenSource,
};
use crate::durable;
use crate::runner::{CommandError, Runner};
use crate::tls::{self, TlsError};

/// The FAT volume label of a seed volume (at most 11 characters, upper case).
pub const SEED_LABEL: &str = "COLOCSEED";
/// Where udev exposes the seed volume, whatever the disk is called.
pub const DEFAULT_SEED_DEVICE: &str = "/dev/disk/by-label/COLOCSEED";
/// The one file on the seed volume.
pub const SEED_FILE: &str = "seed.toml";
/// The keys of `seed.toml`, in the order they are written. docs/IMAGE.md
/// and `coloc-image seed` depend on these exact names; tests pin them.
pub const SEED_FIELDS: [&str; 6] = [
    "hostname",
    "site",
    "controller",
    "ca_pem",
    "join_token",
    "ssh_authorized_keys",
];

/// Where the node's files go, relative to the root being provisioned.
pub const HOSTNAME_PATH: &str = "/etc/hostname";
pub const AGENT_CONFIG_PATH: &str = DEFAULT_CONFIG_PATH;
pub const CA_PATH: &str = "/etc/coloc/ca.pem";
pub const JOIN_TOKEN_PATH: &str = "/etc/coloc/join-token";
pub const AUTHORIZED_KEYS_PATH: &str = "/root/.ssh/authorized_keys";
/// The ZFS host id (`zgenhostid`'s file).
pub const HOSTID_PATH: &str = "/etc/hostid";
/// The sha256 of the last seed applied, inside the agent's state directory.
pub const APPLIED_FILE: &str = "seed.applied";

/// A seed is a few kilobytes; anything much larger is the wrong file, and
/// is refused before it is parsed.
pub const MAX_SEED_BYTES: usize = 256 * 1024;
/// More keys than this is a mistake, not an admin team.
const MAX_SSH_KEYS: usize = 64;
/// An RSA-16384 public key is under 3 KiB of base64.
const MAX_SSH_KEY_LEN: usize = 8 * 1024;
/// Key types accepted in `ssh_authorized_keys`, with the number of
/// length-prefixed fields their key data holds (RFC 4253 section 6.6,
/// RFC 5656, OpenSSH's PROTOCOL.u2f): what OpenSSH 9 (bookworm) accepts by
/// default. DSA keys are disabled there, so they are refused here rather
/// than silently ignored by sshd.
const SSH_KEY_TYPES: [(&str, usize); 7] = [
    ("ssh-ed25519", 2),
    ("ssh-rsa", 3),
    ("ecdsa-sha2-nistp256", 3),
    ("ecdsa-sha2-nistp384", 3),
    ("ecdsa-sha2-nistp521", 3),
    ("sk-ssh-ed25519@openssh.com", 3),
    ("sk-ecdsa-sha2-nistp256@openssh.com", 4),
];

/// Why a seed was refused or could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("cannot read {SEED_FILE} from the seed volume {device}")]
    Read {
        device: PathBuf,
        #[source]
        source: CommandError,
    },
    #[error("{SEED_FILE} on {device} is {size} bytes; a seed is at most {MAX_SEED_BYTES}")]
    TooLarge { device: PathBuf, size: usize },
    #[error("{SEED_FILE} is not a valid seed")]
    Parse(#[source] toml::de::Error),
    #[error("invalid {field} in the seed")]
    Name {
        field: &'static str,
        #[source]
        source: InvalidInput,
    },
    #[error("invalid {field} in the seed: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("invalid ca_pem in the seed")]
    Ca(#[source] TlsError),
    #[error("the seed does not make a valid agent configuration")]
    Config(#[source] ConfigError),
    #[error("cannot render the seed as TOML")]
    Render(#[source] toml::ser::Error),
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

/// `seed.toml` as written on the volume: the wire form, strings only.
/// [`Seed`] is the validated form the rest of the code uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedFile {
    /// Becomes `/etc/hostname` and the node's name in the fleet.
    pub hostname: String,
    /// Where the node is installed; informational on the node (the
    /// controller records the site at enrollment).
    pub site: String,
    /// colocd's `https://` URL as seen from the node.
    pub controller: String,
    /// The cooperative's CA certificate(s), PEM.
    pub ca_pem: String,
    /// The one-time join token.
    pub join_token: String,
    /// OpenSSH public keys for root, one key per entry; optional.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_authorized_keys: Vec<String>,
}

/// A seed whose every field was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    hostname: NodeName,
    site: SiteName,
    controller: String,
    ca_pem: String,
    join_token: String,
    ssh_authorized_keys: Vec<String>,
}

impl Seed {
    /// Checks every field, the same way whether the seed is being written
    /// by `coloc-image seed` or applied on the node, so that a seed the
    /// builder accepts is never refused at first boot.
    pub fn validate(file: SeedFile) -> Result<Seed, SeedError> {
        let hostname = NodeName::new(file.hostname).map_err(|source| SeedError::Name {
            field: "hostname",
            source,
        })?;
        let site = SiteName::new(file.site).map_err(|source| SeedError::Name {
            field: "site",
            source,
        })?;
        tls::check_ca_pem(file.ca_pem.as_bytes()).map_err(SeedError::Ca)?;
        // The configuration's own checks, so that the seed and the file
        // written from it can never disagree on what is valid.
        AgentConfig::new(
            file.controller.as_str(),
            CaSource::Pem(file.ca_pem.clone()),
            hostname.clone(),
            DEFAULT_STATE_DIR,
        )
        .map_err(SeedError::Config)?;
        let join_token = JoinTokenSource::Inline(file.join_token)
            .read()
            .map_err(SeedError::Config)?;
        if file.ssh_authorized_keys.len() > MAX_SSH_KEYS {
            return Err(SeedError::Invalid {
                field: "ssh_authorized_keys",
                reason: format!("more than {MAX_SSH_KEYS} keys"),
            });
        }
        let mut ssh_authorized_keys = Vec::with_capacity(file.ssh_authorized_keys.len());
        for (i, key) in file.ssh_authorized_keys.iter().enumerate() {
            let key = check_ssh_public_key(key).map_err(|reason| SeedError::Invalid {
                field: "ssh_authorized_keys",
                reason: format!("key {}: {reason}", i + 1),
            })?;
            ssh_authorized_keys.push(key.to_owned());
        }
        let seed = Seed {
            hostname,
            site,
            controller: file.controller,
            ca_pem: file.ca_pem,
            join_token,
            ssh_authorized_keys,
        };
        // The guarantee `seed apply` relies on: what it writes, the daemon loads.
        AgentConfig::from_toml_str(&seed.agent_toml()).map_err(SeedError::Config)?;
        Ok(seed)
    }

    /// Parses and validates the text of a `seed.toml`.
    pub fn parse(text: &str) -> Result<Seed, SeedError> {
        let file: SeedFile = toml::from_str(text).map_err(SeedError::Parse)?;
        Seed::validate(file)
    }

    /// The `seed.toml` for this seed. Deterministic: the same seed always
    /// gives the same bytes, so seed images can be compared by hash.
    pub fn to_toml(&self) -> Result<String, SeedError> {
        let body = toml::to_string(&self.to_file()).map_err(SeedError::Render)?;
        Ok(format!(
            "# coloc node seed for {} (docs/IMAGE.md). Holds a join token: keep it private.\n{body}",
            self.hostname
        ))
    }

    /// The wire form of this seed.
    pub fn to_file(&self) -> SeedFile {
        SeedFile {
            hostname: self.hostname.to_string(),
            site: self.site.to_string(),
            controller: self.controller.clone(),
            ca_pem: self.ca_pem.clone(),
            join_token: self.join_token.clone(),
            ssh_authorized_keys: self.ssh_authorized_keys.clone(),
        }
    }

    /// `/etc/coloc/agent.toml` for this node. Paths in it are the node's
    /// own, whatever root the files are written under.
    pub fn agent_toml(&self) -> String {
        let quoted = |s: &str| toml::Value::String(s.to_owned()).to_string();
        format!(
            "# Written by `coloc-agent seed apply` from the seed of node {node} (site {site}).\n\
             # A new seed overwrites this file; `coloc-agent check-config` checks it.\n\
             controller = {controller}\n\
             ca_file = {ca}\n\
             join_token_file = {token}\n\
             node_name = {node_quoted}\n\
             state_dir = {state}\n",
            node = self.hostname,
            site = self.site,
            controller = quoted(&self.controller),
            ca = quoted(CA_PATH),
            token = quoted(JOIN_TOKEN_PATH),
            node_quoted = quoted(self.hostname.as_str()),
            state = quoted(DEFAULT_STATE_DIR),
        )
    }

    pub fn hostname(&self) -> &NodeName {
        &self.hostname
    }

    pub fn site(&self) -> &SiteName {
        &self.site
    }

    pub fn controller(&self) -> &str {
        &self.controller
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn join_token(&self) -> &str {
        &self.join_token
    }

    pub fn ssh_authorized_keys(&self) -> &[String] {
        &self.ssh_authorized_keys
    }
}

/// Checks one OpenSSH public key line (`type base64 [comment]`, as in a
/// `.pub` file) and returns it trimmed. The base64 blob is decoded and its
/// embedded type compared with the declared one, which catches keys cut
/// short or pasted into the wrong place. `authorized_keys` options
/// (`from=`, `command=`) are refused: a seed grants plain root access or
/// none, and an option is the easiest place to hide a surprise.
pub fn check_ssh_public_key(line: &str) -> Result<&str, String> {
    let key = line.trim();
    if key.is_empty() {
        return Err("empty".to_owned());
    }
    if key.len() > MAX_SSH_KEY_LEN {
        return Err(format!("longer than {MAX_SSH_KEY_LEN} bytes"));
    }
    if key.chars().any(char::is_control) {
        return Err("contains a newline or control character; give one key per entry".to_owned());
    }
    let mut parts = key.split_whitespace();
    let key_type = parts.next().unwrap_or_default();
    let Some(&(_, field_count)) = SSH_KEY_TYPES.iter().find(|(t, _)| *t == key_type) else {
        let shown: String = key_type.chars().take(40).collect();
        let known: Vec<&str> = SSH_KEY_TYPES.iter().map(|(t, _)| *t).collect();
        return Err(format!(
            "starts with {shown:?}, not a key type ({}); authorized_keys options are not accepted",
            known.join(", ")
        ));
    };
    let blob_text = parts.next().ok_or("no key data after the key type")?;
    let blob = decode_base64(blob_text).ok_or("the key data is not base64")?;
    match ssh_fields(&blob) {
        Some(fields) if fields.len() == field_count && fields[0] == key_type.as_bytes() => Ok(key),
        _ => Err(format!(
            "the key data is not a complete {key_type} key (truncated, or another type's data)"
        )),
    }
}

/// Splits SSH wire-format key data into its length-prefixed fields;
/// `None` when a length runs past the end.
fn ssh_fields(mut blob: &[u8]) -> Option<Vec<&[u8]>> {
    let mut fields = Vec::new();
    while !blob.is_empty() {
        let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
        let end = 4usize.checked_add(len)?;
        fields.push(blob.get(4..end)?);
        blob = &blob[end..];
    }
    Some(fields)
}

/// Standard base64 with padding, strictly: no white space, no URL alphabet.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || !text.len().is_multiple_of(4) {
        return None;
    }
    let body = text
        .strip_suffix("==")
        .or_else(|| text.strip_suffix('='))
        .unwrap_or(text);
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in body.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// What `seed apply` is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOptions {
    /// The seed volume; when it does not exist there is nothing to apply.
    pub device: PathBuf,
    /// Where the node's file system is: `/` on a node, a temporary
    /// directory in tests. The running host name is only changed for `/`.
    pub root: PathBuf,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            device: PathBuf::from(DEFAULT_SEED_DEVICE),
            root: PathBuf::from("/"),
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
pub async fn apply(runner: &Runner, options: &ApplyOptions) -> Result<ApplyOutcome, SeedError> {
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
            return Err(SeedError::ReadFile {
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
pub async fn read_seed(runner: &Runner, device: &Path) -> Result<String, SeedError> {
    let device_arg = device.to_str().ok_or_else(|| SeedError::Invalid {
        field: "device",
        reason: format!("{} is not a UTF-8 path", device.display()),
    })?;
    let source_arg = format!("::{SEED_FILE}");
    let output = runner
        .run("mcopy", &["-i", device_arg, &source_arg, "-"])
        .await
        .map_err(|source| SeedError::Read {
            device: device.to_path_buf(),
            source,
        })?;
    if output.stdout.len() > MAX_SEED_BYTES {
        return Err(SeedError::TooLarge {
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
pub fn apply_text(text: &str, options: &ApplyOptions) -> Result<ApplyOutcome, SeedError> {
    let sha256 = hex::encode(Sha256::digest(text.as_bytes()));
    let seed = Seed::parse(text)?;
    let root = options
        .root
        .canonicalize()
        .map_err(|source| SeedError::Root {
            path: options.root.clone(),
            source,
        })?;
    let live = root == Path::new("/");
    let state_dir = under(&root, DEFAULT_STATE_DIR);
    let applied_path = state_dir.join(APPLIED_FILE);
    let node = seed.hostname().clone();

    if applied_sha256(&applied_path)?.as_deref() == Some(sha256.as_str()) {
        tracing::info!(node = %node, sha256 = %sha256, "seed already applied; nothing to do");
        return Ok(ApplyOutcome::Unchanged { node, sha256 });
    }
    check_not_enrolled_as_another(&state_dir, &node)?;

    let write = |path: &str, bytes: &[u8], mode: u32| -> Result<PathBuf, SeedError> {
        let target = under(&root, path);
        durable::write_atomic(&target, bytes, mode).map_err(|source| SeedError::Write {
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

    durable::ensure_private_dir(&state_dir).map_err(|source| SeedError::Write {
        path: state_dir.clone(),
        source,
    })?;
    durable::write_atomic(&applied_path, format!("{sha256}\n").as_bytes(), 0o600).map_err(
        |source| SeedError::Write {
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
fn applied_sha256(path: &Path) -> Result<Option<String>, SeedError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SeedError::ReadFile {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A seed left plugged into the wrong server must not rename a node that
/// is already enrolled: its certificate would no longer match its name.
fn check_not_enrolled_as_another(state_dir: &Path, seed: &NodeName) -> Result<(), SeedError> {
    match crate::enroll::load_identity(state_dir) {
        Ok(Some(identity)) if identity.node_name != *seed => Err(SeedError::OtherNode {
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
fn ensure_dir(dir: &Path, mode: u32) -> Result<(), SeedError> {
    let err = |source| SeedError::Write {
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
fn set_running_hostname(node: &NodeName) -> Result<(), SeedError> {
    std::fs::write("/proc/sys/kernel/hostname", node.as_str()).map_err(|source| {
        SeedError::SetHostname {
            hostname: node.clone(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAF3zTC0/3PlhsozXjmYjmiijVI9+V1Ajk5cz14d0pOA admin@coop";
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMAPai8DlFkbywx0EhBQHfTSvXSn8ql4Vbk2bNXW+df3ndynL5aDW7GAtWyCR1XRf5CUCQUTcjaMcjEW/2wxzXI= ops@coop";

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["coloc-ca".to_owned()]).expect("params");
        params.self_signed(&key).expect("self-signed").pem()
    }

    fn sample_file() -> SeedFile {
        SeedFile {
            hostname: "n1".into(),
            site: "paris-1".into(),
            controller: "https://10.0.2.2:7443".into(),
            ca_pem: ca_pem(),
            join_token: "cjt_abc123".into(),
            ssh_authorized_keys: vec![ED25519.into()],
        }
    }

    #[test]
    fn field_names_are_the_documented_ones() {
        let seed = Seed::validate(sample_file()).expect("valid");
        let text = seed.to_toml().expect("renders");
        let table: toml::Table = toml::from_str(&text).expect("parses as TOML");
        let keys: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut expected = SEED_FIELDS.to_vec();
        expected.sort_unstable();
        let mut keys_sorted = keys.clone();
        keys_sorted.sort_unstable();
        assert_eq!(keys_sorted, expected);
        // And in the documented order, so the file reads like docs/IMAGE.md.
        let positions: Vec<usize> = SEED_FIELDS
            .iter()
            .map(|k| text.find(&format!("\n{k} = ")).expect("key at line start"))
            .collect();
        assert!(positions.is_sorted(), "{text}");
    }

    #[test]
    fn rendering_round_trips_and_is_deterministic() {
        let seed = Seed::validate(sample_file()).expect("valid");
        let text = seed.to_toml().expect("renders");
        assert_eq!(text, seed.to_toml().expect("renders again"));
        assert_eq!(Seed::parse(&text).expect("parses back"), seed);
        assert!(
            text.contains("ca_pem = \"\"\"\n-----BEGIN CERTIFICATE-----"),
            "{text}"
        );
    }

    #[test]
    fn ssh_keys_are_optional() {
        let mut file = sample_file();
        file.ssh_authorized_keys.clear();
        let seed = Seed::validate(file).expect("valid");
        let text = seed.to_toml().expect("renders");
        assert!(!text.contains("ssh_authorized_keys"), "{text}");
        assert_eq!(Seed::parse(&text).expect("parses"), seed);
    }

    #[test]
    fn unknown_and_missing_keys_are_refused() {
        let text = Seed::validate(sample_file())
            .expect("valid")
            .to_toml()
            .expect("renders");
        let typo = format!("{text}\nsite_name = \"x\"\n");
        assert!(matches!(Seed::parse(&typo), Err(SeedError::Parse(_))));
        let missing = text.replace("join_token = ", "# join_token = ");
        assert!(matches!(Seed::parse(&missing), Err(SeedError::Parse(_))));
    }

    #[test]
    fn bad_values_are_refused_with_the_field_named() {
        type Case = (&'static str, fn(&mut SeedFile));
        let cases: [Case; 10] = [
            ("hostname", |f| f.hostname = "N1".into()),
            ("hostname", |f| f.hostname = "n1.example.org".into()),
            ("site", |f| f.site = "Paris 1".into()),
            ("controller", |f| {
                f.controller = "http://10.0.2.2:7443".into()
            }),
            ("controller", |f| f.controller = "https://".into()),
            ("ca_pem", |f| f.ca_pem = "not a certificate".into()),
            ("join_token", |f| f.join_token = " ".into()),
            ("join_token", |f| f.join_token = "a b".into()),
            ("ssh_authorized_keys", |f| {
                f.ssh_authorized_keys = vec![format!("{ED25519}\n{ECDSA}")]
            }),
            ("ssh_authorized_keys", |f| {
                f.ssh_authorized_keys = vec![format!("from=\"10.0.0.1\" {ED25519}")]
            }),
        ];
        for (field, mutate) in cases {
            let mut file = sample_file();
            mutate(&mut file);
            let err = Seed::validate(file).expect_err(field);
            let message = coloc_proto::error_chain(&err);
            assert!(message.contains(field), "{field}: {message}");
        }
    }

    #[test]
    fn ssh_keys_are_checked_down_to_their_data() {
        assert_eq!(check_ssh_public_key(&format!("  {ED25519}\n")), Ok(ED25519));
        assert!(check_ssh_public_key(ECDSA).is_ok());
        // No comment is fine.
        let bare: String = ED25519.split(' ').take(2).collect::<Vec<_>>().join(" ");
        assert!(check_ssh_public_key(&bare).is_ok());
        let data = ED25519.split(' ').nth(1).expect("data");
        for (bad, why) in [
            ("", "empty"),
            ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "not a key type"),
            ("ssh-ed25519", "no key data"),
            ("ssh-ed25519 AAAA$$$$", "not base64"),
            (&format!("ssh-ed25519 {}", &data[..41]), "not base64"),
            (&format!("ssh-rsa {data}"), "not a complete ssh-rsa key"),
            // Cut after the type field: still base64, still the right type.
            (
                &format!("ssh-ed25519 {}", &data[..20]),
                "not a complete ssh-ed25519 key",
            ),
            (
                &format!("ssh-ed25519 {}", &data[..64]),
                "not a complete ssh-ed25519 key",
            ),
        ] {
            let err = check_ssh_public_key(bad).expect_err(bad);
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn base64_decoding_is_strict_and_correct() {
        assert_eq!(decode_base64("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(decode_base64("aGk="), Some(b"hi".to_vec()));
        assert_eq!(decode_base64("aGVs"), Some(b"hel".to_vec()));
        assert_eq!(decode_base64("aGk"), None);
        assert_eq!(decode_base64("a=Gk"), None);
        assert_eq!(decode_base64("aG-_"), None);
        assert_eq!(decode_base64(""), None);
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
        assert_eq!(config.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
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
