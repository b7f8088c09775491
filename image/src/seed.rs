//! `coloc-image seed`: one node's seed volume.
//!
//! The node image is generic; this writes the small FAT volume that makes
//! a machine booted from it *one* node (docs/IMAGE.md, "Seed volume"): a
//! 1 MiB image labelled `COLOCSEED` holding `seed.toml`, to be written to
//! a USB key or attached to a VM as a second drive. The schema, the
//! rendering and the validation are the contract shared with the agent
//! ([`coloc_proto::seed`]), so a seed accepted here is never refused by
//! `coloc-agent seed apply` at first boot; this module gathers the inputs
//! from flags and files and writes the image.
//!
//! The image is deterministic: `mkfs.vfat --invariant` fixes the volume id
//! and timestamps, and `mcopy` stamps `seed.toml` with a fixed
//! `SOURCE_DATE_EPOCH` (mtools honours it), so identical inputs give
//! identical bytes. It is built as `<output>.partial` and renamed into
//! place, so a failure never leaves a half-written seed under the final
//! name. The image holds a join token and is written readable by its
//! owner only.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use coloc_proto::domain::{NodeName, SiteName};
use coloc_proto::seed::{SEED_FILE, SEED_LABEL, Seed, SeedError, SeedFile, check_ssh_public_key};
use sha2::{Digest, Sha256};

use crate::runner::{Cmd, CmdError};

/// Size of the seed volume, in KiB: the smallest FAT12 `mkfs.vfat` makes
/// comfortably, and plenty for a few kilobytes of TOML.
pub const SEED_IMAGE_KIB: u32 = 1024;
/// 1980-01-01T00:00:00Z, the FAT epoch: the date of `seed.toml` on every
/// seed volume, whatever the clock says.
const FAT_EPOCH: &str = "315532800";

/// Write a node's seed volume: its identity, read by the agent at first boot.
#[derive(Debug, Clone, clap::Args)]
pub struct SeedArgs {
    /// The node's host name, which becomes its node name in the fleet (a
    /// lowercase DNS label, e.g. n1).
    #[arg(long)]
    pub hostname: NodeName,
    /// The site the node is installed at (e.g. paris-1).
    #[arg(long)]
    pub site: SiteName,
    /// colocd's address as the node will reach it, an https:// URL (e.g.
    /// https://10.0.2.2:7443 from a QEMU guest).
    #[arg(long)]
    pub controller: String,
    /// The cooperative's CA certificate (PEM) that colocd's certificate is
    /// issued by.
    #[arg(long, value_name = "PEM_FILE")]
    pub ca_file: PathBuf,
    /// The one-time join token from `coloc node token create`. Prefer
    /// --join-token-file: a command line is visible to other local users.
    #[arg(
        long,
        conflicts_with = "join_token_file",
        required_unless_present = "join_token_file"
    )]
    pub join_token: Option<String>,
    /// A file holding the join token (surrounding white space is ignored).
    #[arg(long, value_name = "FILE")]
    pub join_token_file: Option<PathBuf>,
    /// An OpenSSH public key file (e.g. id_ed25519.pub) whose keys may log
    /// in as root on the node; repeat for several. Blank lines and lines
    /// starting with '#' are skipped.
    #[arg(long = "ssh-key-file", value_name = "FILE")]
    pub ssh_key_files: Vec<PathBuf>,
    /// Where to write the seed image.
    #[arg(short = 'o', long = "output", value_name = "SEED_IMG")]
    pub output: PathBuf,
}

/// Why no seed image was written.
#[derive(Debug, thiserror::Error)]
pub enum SeedImageError {
    #[error("cannot read the {what} {path}")]
    Input {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}, line {line}: not a usable SSH public key: {reason}")]
    SshKey {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path} holds no SSH public key")]
    NoSshKey { path: PathBuf },
    #[error("the seed is invalid")]
    Seed(#[from] SeedError),
    #[error("cannot {step}")]
    Command {
        step: &'static str,
        #[source]
        source: CmdError,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: seed.toml does not read back as it was written")]
    Verify { path: PathBuf },
}

/// What was written, for the summary line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedImage {
    pub path: PathBuf,
    /// Of the whole image.
    pub sha256: String,
    pub bytes: u64,
    /// Of `seed.toml`: what the node records in
    /// `/var/lib/coloc/seed.applied` once it has applied this seed.
    pub seed_sha256: String,
}

/// `coloc-image seed`.
pub fn run(args: SeedArgs) -> anyhow::Result<()> {
    let seed = seed_from_args(&args)?;
    let image = write_seed_image(&seed, &args.output)
        .with_context(|| format!("writing the seed image {}", args.output.display()))?;
    println!(
        "seed for node {} (site {}, controller {}, {} SSH key(s)) written to {}: {} bytes, sha256 {}; seed.toml sha256 {}",
        seed.hostname(),
        seed.site(),
        seed.controller(),
        seed.ssh_authorized_keys().len(),
        image.path.display(),
        image.bytes,
        image.sha256,
        image.seed_sha256
    );
    Ok(())
}

/// Reads the files the flags name and validates the seed they make.
pub fn seed_from_args(args: &SeedArgs) -> Result<Seed, SeedImageError> {
    let read = |what: &'static str, path: &Path| {
        std::fs::read_to_string(path).map_err(|source| SeedImageError::Input {
            what,
            path: path.to_path_buf(),
            source,
        })
    };
    let ca_pem = read("CA certificate", &args.ca_file)?;
    let join_token = match (&args.join_token, &args.join_token_file) {
        (Some(token), _) => token.clone(),
        (None, Some(path)) => read("join token file", path)?,
        // clap requires one of the two; an empty token is refused below.
        (None, None) => String::new(),
    };
    let mut ssh_authorized_keys = Vec::new();
    for path in &args.ssh_key_files {
        ssh_authorized_keys.extend(ssh_keys_in(path, &read("SSH public key file", path)?)?);
    }
    let seed = Seed::validate(SeedFile {
        hostname: args.hostname.to_string(),
        site: args.site.to_string(),
        controller: args.controller.clone(),
        ca_pem,
        join_token,
        ssh_authorized_keys,
    })?;
    Ok(seed)
}

/// The keys of one public key file, each checked with the file and line
/// named in the error (the seed's own check only knows "key 3").
fn ssh_keys_in(path: &Path, text: &str) -> Result<Vec<String>, SeedImageError> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let key = check_ssh_public_key(trimmed).map_err(|reason| SeedImageError::SshKey {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        })?;
        keys.push(key.to_owned());
    }
    if keys.is_empty() {
        return Err(SeedImageError::NoSshKey {
            path: path.to_path_buf(),
        });
    }
    Ok(keys)
}

/// Writes `seed` as a seed volume at `output`: built beside it as
/// `<output>.partial`, checked by reading `seed.toml` back, then renamed.
pub fn write_seed_image(seed: &Seed, output: &Path) -> Result<SeedImage, SeedImageError> {
    let text = seed.to_toml()?;
    let partial = partial_path(output);
    let result = build_image(&text, &partial).and_then(|()| {
        std::fs::rename(&partial, output).map_err(|source| SeedImageError::Write {
            path: output.to_path_buf(),
            source,
        })?;
        sync_parent(output)
    });
    if let Err(e) = result {
        // Nothing half-written may stay behind; the error being returned
        // is the one that matters.
        if partial.exists() {
            let _ignored = std::fs::remove_file(&partial);
        }
        return Err(e);
    }
    let bytes = std::fs::read(output).map_err(|source| SeedImageError::Write {
        path: output.to_path_buf(),
        source,
    })?;
    Ok(SeedImage {
        path: output.to_path_buf(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        bytes: bytes.len() as u64,
        seed_sha256: hex::encode(Sha256::digest(text.as_bytes())),
    })
}

fn partial_path(output: &Path) -> PathBuf {
    let mut name = output
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".partial");
    output.with_file_name(name)
}

fn build_image(text: &str, partial: &Path) -> Result<(), SeedImageError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SeedImageError::Write { path, source }
    };
    // A leftover from an interrupted run: mkfs.vfat -C refuses to reuse it.
    match std::fs::remove_file(partial) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(write_err(partial)(e)),
    }
    // seed.toml is staged in a private directory: it holds the join token.
    let staging = tempfile::tempdir().map_err(write_err(Path::new("a temporary directory")))?;
    let source = staging.path().join(SEED_FILE);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&source)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(write_err(&source))?;

    let size = SEED_IMAGE_KIB.to_string();
    Cmd::new("mkfs.vfat")
        .args(["--invariant", "-n", SEED_LABEL, "-C"])
        .arg(partial)
        .arg(&size)
        .run()
        .map_err(|source| SeedImageError::Command {
            step: "create the FAT file system",
            source,
        })?;
    std::fs::set_permissions(partial, std::fs::Permissions::from_mode(0o600))
        .map_err(write_err(partial))?;
    let target = format!("::{SEED_FILE}");
    Cmd::new("mcopy")
        .arg("-i")
        .arg(partial)
        .arg(&source)
        .arg(&target)
        .env("SOURCE_DATE_EPOCH", FAT_EPOCH)
        .run()
        .map_err(|source| SeedImageError::Command {
            step: "copy seed.toml into the image",
            source,
        })?;
    let back = Cmd::new("mcopy")
        .arg("-i")
        .arg(partial)
        .arg(&target)
        .arg("-")
        .run()
        .map_err(|source| SeedImageError::Command {
            step: "read seed.toml back",
            source,
        })?;
    if back.stdout != text.as_bytes() {
        return Err(SeedImageError::Verify {
            path: partial.to_path_buf(),
        });
    }
    File::open(partial)
        .and_then(|f| f.sync_all())
        .map_err(write_err(partial))
}

fn sync_parent(path: &Path) -> Result<(), SeedImageError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|source| SeedImageError::Write {
            path: parent.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAF3zTC0/3PlhsozXjmYjmiijVI9+V1Ajk5cz14d0pOA admin@coop";
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMAPai8DlFkbywx0EhBQHfTSvXSn8ql4Vbk2bNXW+df3ndynL5aDW7GAtWyCR1XRf5CUCQUTcjaMcjEW/2wxzXI= ops@coop";

    /// The subcommand's flags as a user types them.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: SeedArgs,
    }

    struct Inputs {
        dir: tempfile::TempDir,
    }

    impl Inputs {
        fn new() -> Inputs {
            let dir = tempfile::tempdir().expect("tempdir");
            let key = rcgen::KeyPair::generate().expect("key");
            let params =
                rcgen::CertificateParams::new(vec!["coloc-ca".to_owned()]).expect("params");
            let ca = params.self_signed(&key).expect("self-signed").pem();
            std::fs::write(dir.path().join("ca.pem"), ca).expect("ca");
            std::fs::write(dir.path().join("token"), "cjt_secret\n").expect("token");
            std::fs::write(
                dir.path().join("admins.pub"),
                format!("# the coop's admins\n{ED25519}\n\n{ECDSA}\n"),
            )
            .expect("keys");
            Inputs { dir }
        }

        fn path(&self, name: &str) -> String {
            self.dir.path().join(name).display().to_string()
        }

        fn args(&self, extra: &[&str]) -> Result<SeedArgs, clap::Error> {
            let ca = self.path("ca.pem");
            let token = self.path("token");
            let keys = self.path("admins.pub");
            let out = self.path("seed.img");
            let mut argv = vec![
                "seed",
                "--hostname",
                "n1",
                "--site",
                "paris-1",
                "--controller",
                "https://10.0.2.2:7443",
                "--ca-file",
                &ca,
                "--join-token-file",
                &token,
                "--ssh-key-file",
                &keys,
                "-o",
                &out,
            ];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv).map(|cli| cli.args)
        }
    }

    fn mcopy_out(image: &Path) -> String {
        let out = Cmd::new("mcopy")
            .arg("-i")
            .arg(image)
            .args(["::seed.toml", "-"])
            .run()
            .expect("mcopy reads the seed back (install mtools)");
        String::from_utf8(out.stdout).expect("utf-8")
    }

    #[test]
    fn rendered_seed_has_exactly_the_documented_fields() {
        let inputs = Inputs::new();
        let seed = seed_from_args(&inputs.args(&[]).expect("flags")).expect("valid");
        let text = seed.to_toml().expect("renders");
        let table: toml::Table = toml::from_str(&text).expect("TOML");
        let keys: Vec<&str> = table.keys().map(String::as_str).collect();
        // Pinned here too: this is the contract in docs/IMAGE.md that
        // seeds already on USB keys follow.
        let mut expected = vec![
            "hostname",
            "site",
            "controller",
            "ca_pem",
            "join_token",
            "ssh_authorized_keys",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(table["hostname"].as_str(), Some("n1"));
        assert_eq!(table["site"].as_str(), Some("paris-1"));
        assert_eq!(table["controller"].as_str(), Some("https://10.0.2.2:7443"));
        // The token file's newline is not part of the token.
        assert_eq!(table["join_token"].as_str(), Some("cjt_secret"));
        let keys: Vec<&str> = table["ssh_authorized_keys"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(toml::Value::as_str)
            .collect();
        assert_eq!(keys, [ED25519, ECDSA]);
        assert!(
            table["ca_pem"]
                .as_str()
                .is_some_and(|pem| pem.starts_with("-----BEGIN CERTIFICATE-----")),
            "{text}"
        );
    }

    #[test]
    fn flags_are_checked_before_anything_is_written() {
        let inputs = Inputs::new();
        // clap: hostname and site are domain names; a token is required, once.
        assert!(inputs.args(&["--hostname", "N1"]).is_err());
        assert!(inputs.args(&["--site", "paris 1"]).is_err());
        let both = inputs.args(&["--join-token", "cjt_x"]);
        assert!(both.is_err(), "--join-token and --join-token-file together");
        let argv = [
            "seed",
            "--hostname",
            "n1",
            "--site",
            "s",
            "--controller",
            "https://c:1",
            "--ca-file",
            "ca",
            "-o",
            "x",
        ];
        assert!(Cli::try_parse_from(argv).is_err(), "no token at all");

        let check = |args: SeedArgs, needle: &str| {
            let err = seed_from_args(&args).expect_err(needle);
            let chain = anyhow::Error::from(err);
            let message = format!("{chain:#}");
            assert!(message.contains(needle), "{needle}: {message}");
        };
        let mut args = inputs.args(&[]).expect("flags");
        args.controller = "http://10.0.2.2:7443".into();
        check(args, "https://");

        std::fs::write(inputs.dir.path().join("ca.pem"), "hello").expect("write");
        check(inputs.args(&[]).expect("flags"), "ca_pem");
        let inputs = Inputs::new();

        std::fs::write(inputs.dir.path().join("token"), "  \n").expect("write");
        check(inputs.args(&[]).expect("flags"), "join_token");
        let inputs = Inputs::new();

        std::fs::write(
            inputs.dir.path().join("admins.pub"),
            format!("{ED25519}\nssh-ed25519 AAAAgarbage\n"),
        )
        .expect("write");
        check(inputs.args(&[]).expect("flags"), "admins.pub, line 2");
        std::fs::write(inputs.dir.path().join("admins.pub"), "# nothing\n").expect("write");
        check(inputs.args(&[]).expect("flags"), "holds no SSH public key");

        let mut args = Inputs::new().args(&[]).expect("flags");
        args.ca_file = PathBuf::from("/nonexistent/ca.pem");
        check(args, "/nonexistent/ca.pem");
    }

    #[test]
    fn a_real_seed_image_reads_back_and_is_identical_when_rebuilt() {
        let inputs = Inputs::new();
        let args = inputs.args(&[]).expect("flags");
        let seed = seed_from_args(&args).expect("valid");
        let first = write_seed_image(&seed, &args.output).expect("first image");
        assert_eq!(first.bytes, u64::from(SEED_IMAGE_KIB) * 1024);

        // What the node will read, the way the agent reads it.
        let text = mcopy_out(&args.output);
        assert_eq!(text, seed.to_toml().expect("renders"));
        assert_eq!(Seed::parse(&text).expect("the agent accepts it"), seed);
        let label = Cmd::new("mlabel")
            .args(["-s", "-i"])
            .arg(&args.output)
            .arg("::")
            .run()
            .expect("mlabel");
        assert!(
            String::from_utf8_lossy(&label.stdout).contains("COLOCSEED"),
            "{label:?}"
        );
        // It holds a join token.
        let mode = std::fs::metadata(&args.output)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!partial_path(&args.output).exists());

        // Same inputs, another place, later: the same bytes.
        let other = inputs.dir.path().join("again").join("seed.img");
        std::fs::create_dir_all(other.parent().expect("parent")).expect("mkdir");
        let second = write_seed_image(&seed, &other).expect("second image");
        assert_eq!(first.sha256, second.sha256);
        assert_eq!(
            std::fs::read(&args.output).expect("read"),
            std::fs::read(&other).expect("read")
        );

        // Rewriting over an existing seed (and a stale .partial) works.
        std::fs::write(partial_path(&other), "stale").expect("stale partial");
        let third = write_seed_image(&seed, &other).expect("rewrite");
        assert_eq!(third.sha256, first.sha256);
        assert!(!partial_path(&other).exists());
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let inputs = Inputs::new();
        let args = inputs.args(&[]).expect("flags");
        let seed = seed_from_args(&args).expect("valid");
        // The output's directory does not exist: mkfs.vfat fails.
        let output = inputs.dir.path().join("missing-dir").join("seed.img");
        let err = write_seed_image(&seed, &output).expect_err("no directory");
        assert!(matches!(err, SeedImageError::Command { .. }), "{err:?}");
        assert!(!output.exists());
        assert!(!partial_path(&output).exists());
        // Through `run`, an invalid seed writes no file at all.
        let mut args = inputs.args(&[]).expect("flags");
        args.controller = "ftp://x".into();
        assert!(run(args.clone()).is_err());
        assert!(!args.output.exists());
        assert!(!partial_path(&args.output).exists());
    }
}
