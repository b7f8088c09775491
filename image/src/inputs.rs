//! What an image is a function of, and its name: SOURCE_DATE_EPOCH (the
//! environment's, else the commit time of the repository's HEAD), the units
//! to enable, and the content hash of every input — spec, lockfile,
//! coloc-agent binary, rootfs overlay, this builder's own source, the
//! versions of the host tools that write bytes into the image, and the
//! epoch. The QEMU harness caches built images under that hash
//! (`coloc-image hash`), so anything that can change the image must be in
//! it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::digest::{FieldHasher, sha256_file};
use crate::runner::Cmd;
use crate::spec::Spec;

/// This builder's own source, hashed into the cache key (seed.rs builds
/// seed volumes, not images, and is left out).
pub const BUILDER_SOURCES: &[(&str, &str)] = &[
    ("main.rs", include_str!("main.rs")),
    ("cache.rs", include_str!("cache.rs")),
    ("digest.rs", include_str!("digest.rs")),
    ("esp.rs", include_str!("esp.rs")),
    ("ext4.rs", include_str!("ext4.rs")),
    ("gpt.rs", include_str!("gpt.rs")),
    ("hook.rs", include_str!("hook.rs")),
    ("image.rs", include_str!("image.rs")),
    ("index.rs", include_str!("index.rs")),
    ("inputs.rs", include_str!("inputs.rs")),
    ("lock.rs", include_str!("lock.rs")),
    ("lockfile.rs", include_str!("lockfile.rs")),
    ("mke2fs.conf", include_str!("mke2fs.conf")),
    ("progress.rs", include_str!("progress.rs")),
    ("rootfs.rs", include_str!("rootfs.rs")),
    ("runner.rs", include_str!("runner.rs")),
    ("spec.rs", include_str!("spec.rs")),
    ("tree.rs", include_str!("tree.rs")),
    ("workdir.rs", include_str!("workdir.rs")),
];

/// Host packages whose version can change the image's bytes.
const HOST_TOOLS: &[&str] = &[
    "mmdebstrap",
    "apt",
    "apt-utils",
    "dpkg",
    "tar",
    "e2fsprogs",
    "dosfstools",
    "mtools",
    "fdisk",
];

/// SOURCE_DATE_EPOCH and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Epoch {
    pub seconds: i64,
    pub origin: String,
}

/// `$SOURCE_DATE_EPOCH` if set, else `git log -1 --format=%ct` in the
/// repository holding the spec.
pub fn source_date_epoch(spec_dir: &Path) -> Result<Epoch> {
    if let Some(v) = std::env::var_os("SOURCE_DATE_EPOCH") {
        let s = v.to_string_lossy();
        let seconds = parse_epoch(&s)
            .with_context(|| format!("SOURCE_DATE_EPOCH={s:?} is not a number of seconds"))?;
        return Ok(Epoch {
            seconds,
            origin: "SOURCE_DATE_EPOCH".into(),
        });
    }
    let out = Cmd::new("git")
        .arg("-C")
        .arg(spec_dir)
        .args(["log", "-1", "--format=%ct"])
        .run()
        .context(
            "cannot take SOURCE_DATE_EPOCH from git (is the spec in a git checkout?); \
             set SOURCE_DATE_EPOCH explicitly",
        )?
        .stdout_str();
    let seconds = parse_epoch(out.trim())
        .with_context(|| format!("git printed {:?} for the commit time", out.trim()))?;
    Ok(Epoch {
        seconds,
        origin: "git commit time of HEAD".into(),
    })
}

fn parse_epoch(s: &str) -> Result<i64> {
    let v: i64 = s.trim().parse()?;
    if v < 0 {
        bail!("negative");
    }
    Ok(v)
}

/// The units listed in `<overlay>/etc/coloc-image/enable`: one per line,
/// `#` comments and blank lines ignored. No file, no units.
pub fn units_to_enable(overlay: &Path) -> Result<Vec<String>> {
    let path = overlay.join("etc/coloc-image/enable");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    parse_enable_list(&text).with_context(|| format!("in {}", path.display()))
}

pub fn parse_enable_list(text: &str) -> Result<Vec<String>> {
    const SUFFIXES: &[&str] = &[
        ".service",
        ".socket",
        ".timer",
        ".target",
        ".path",
        ".mount",
        ".automount",
        ".swap",
    ];
    let mut units = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let ok_chars = line
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":-_.\\@".contains(c));
        if !ok_chars || !SUFFIXES.iter().any(|s| line.ends_with(s)) || line.starts_with('-') {
            bail!(
                "line {}: {line:?} is not a unit name (one unit per line, e.g. coloc-agent.service)",
                n + 1
            );
        }
        if !units.iter().any(|u| u == line) {
            units.push(line.to_owned());
        }
    }
    Ok(units)
}

/// Hashes a directory tree: sorted relative paths, entry type, the
/// executable bit (all git keeps), file contents and symlink targets.
pub fn hash_tree(h: &mut FieldHasher, root: &Path) -> Result<()> {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let rel_path = rel.join(&name);
            let path = root.join(&rel_path);
            let meta = path.symlink_metadata()?;
            h.field(rel_path.to_string_lossy().as_bytes());
            if meta.is_dir() {
                h.field(b"d");
                subdirs.push(rel_path);
            } else if meta.file_type().is_symlink() {
                h.field(b"l");
                h.field(std::fs::read_link(&path)?.to_string_lossy().as_bytes());
            } else {
                let exec = meta.permissions().mode() & 0o111 != 0;
                h.field(if exec { b"x" } else { b"f" });
                h.field(sha256_file(&path)?.as_bytes());
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

/// Versions of the host tools, from `dpkg-query`.
fn host_tool_versions() -> Result<String> {
    let out = Cmd::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${Version}\\n"])
        .args(HOST_TOOLS)
        .run()
        .context("cannot read the versions of the build tools")?;
    Ok(out.stdout_str())
}

/// The content hash naming the image that `build` would produce.
pub fn cache_key(spec: &Spec, agent: &Path, epoch: &Epoch) -> Result<String> {
    let mut h = FieldHasher::new("coloc-image image v1");
    h.field(b"spec").field(spec.digest.as_bytes());
    let lock = spec.lock_path();
    h.field(b"lock").field(
        sha256_file(&lock)
            .with_context(|| format!("cannot read the lockfile {}", lock.display()))?
            .as_bytes(),
    );
    h.field(b"agent").field(
        sha256_file(agent)
            .with_context(|| format!("cannot read the agent binary {}", agent.display()))?
            .as_bytes(),
    );
    h.field(b"overlay");
    let overlay = spec.overlay_dir();
    if overlay.is_dir() {
        hash_tree(&mut h, &overlay)?;
    } else {
        h.field(b"absent");
    }
    h.field(b"builder")
        .field(env!("CARGO_PKG_VERSION").as_bytes());
    for (name, text) in BUILDER_SOURCES {
        h.field(name.as_bytes()).field(text.as_bytes());
    }
    h.field(b"tools").field(host_tool_versions()?.as_bytes());
    h.field(b"epoch")
        .field(epoch.seconds.to_string().as_bytes());
    Ok(h.finish_hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builder_source_is_hashed() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("src")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "seed.rs")
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = BUILDER_SOURCES
            .iter()
            .map(|(n, _)| (*n).to_owned())
            .collect();
        listed.sort();
        assert_eq!(
            listed, on_disk,
            "BUILDER_SOURCES must list every file in image/src"
        );
    }

    #[test]
    fn enable_list_parses_and_rejects_junk() {
        let text = "# units the image enables\ncoloc-agent.service\n\n  coloc-seed.service # first boot\nserial-getty@ttyS0.service\ncoloc-agent.service\n";
        assert_eq!(
            parse_enable_list(text).expect("parses"),
            vec![
                "coloc-agent.service",
                "coloc-seed.service",
                "serial-getty@ttyS0.service"
            ]
        );
        assert!(parse_enable_list("coloc-agent").is_err());
        assert!(parse_enable_list("a.service; rm -rf /").is_err());
        assert!(parse_enable_list("--now.service").is_err());
        assert!(parse_enable_list("").expect("empty").is_empty());
    }

    #[test]
    fn tree_hash_sees_content_names_links_and_exec_bits() {
        let t = tempfile::tempdir().expect("tempdir");
        let r = t.path();
        std::fs::create_dir_all(r.join("etc")).expect("mkdir");
        std::fs::write(r.join("etc/a"), "1").expect("write");
        let hash = || {
            let mut h = FieldHasher::new("t");
            hash_tree(&mut h, r).expect("hash");
            h.finish_hex()
        };
        let h0 = hash();
        assert_eq!(h0, hash());
        std::fs::write(r.join("etc/a"), "2").expect("write");
        let h1 = hash();
        assert_ne!(h0, h1);
        std::fs::set_permissions(r.join("etc/a"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let h2 = hash();
        assert_ne!(h1, h2);
        std::os::unix::fs::symlink("a", r.join("etc/b")).expect("symlink");
        assert_ne!(h2, hash());
    }

    #[test]
    fn epoch_parsing() {
        assert_eq!(parse_epoch("1795889832\n").expect("ok"), 1795889832);
        assert!(parse_epoch("yesterday").is_err());
        assert!(parse_epoch("-5").is_err());
    }
}
