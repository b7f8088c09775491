//! The root filesystem as a directory tree, between mmdebstrap's tarball and
//! mkfs.ext4: extracted in the tarball's (sorted) order onto a freshly
//! mounted tmpfs, so that directory order does not depend on the build
//! machine's filesystem; given its final touches (/etc/machine-id); every
//! mtime clamped to SOURCE_DATE_EPOCH; then walked once to measure it and,
//! on request, to write a manifest (path, type, mode, owner, mtime,
//! SHA-256) that two builds can be compared by.

use std::fmt::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;

use crate::digest::sha256_file;
use crate::runner::Cmd;

/// Extracts mmdebstrap's tarball (pax, sorted by name) in archive order,
/// keeping numeric owners, modes and extended attributes.
pub fn extract(tar: &Path, into: &Path) -> Result<()> {
    Cmd::new("tar")
        .args([
            "--extract",
            "--numeric-owner",
            "--same-owner",
            "--preserve-permissions",
            "--xattrs",
            "--xattrs-include=*",
            "--file",
        ])
        .arg(tar)
        .arg("--directory")
        .arg(into)
        .run()?;
    Ok(())
}

/// The final touches on the extracted tree that mmdebstrap's own cleanup
/// would otherwise undo: it empties /etc/machine-id after the hooks ran,
/// and the image wants "uninitialized" so that the first boot is one
/// (machine-id(5), "First Boot Semantics").
pub fn finish(root: &Path) -> Result<()> {
    let mid = root.join("etc/machine-id");
    std::fs::write(&mid, "uninitialized\n")
        .with_context(|| format!("cannot write {}", mid.display()))?;
    std::fs::set_permissions(&mid, std::fs::Permissions::from_mode(0o444))?;
    Ok(())
}

/// What the walk learned about the tree.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TreeStats {
    /// Space the content takes in 4 KiB blocks (files rounded up, one block
    /// per directory and per long symlink).
    pub bytes: u64,
    pub inodes: u64,
    pub clamped: u64,
}

/// Visits every entry below `root` (not `root` itself) in sorted
/// pre-order, with its path relative to `root`.
fn walk_sorted(
    root: &Path,
    mut visit: impl FnMut(&Path, &Path, &std::fs::Metadata) -> Result<()>,
) -> Result<()> {
    walk_dir(root, Path::new(""), &mut visit)
}

fn walk_dir(
    root: &Path,
    rel: &Path,
    visit: &mut impl FnMut(&Path, &Path, &std::fs::Metadata) -> Result<()>,
) -> Result<()> {
    let dir = root.join(rel);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    for name in names {
        let rel_path = rel.join(&name);
        let path = root.join(&rel_path);
        let meta = path
            .symlink_metadata()
            .with_context(|| format!("cannot stat {}", path.display()))?;
        visit(&rel_path, &path, &meta)?;
        if meta.is_dir() {
            walk_dir(root, &rel_path, visit)?;
        }
    }
    Ok(())
}

/// Clamps every mtime (and atime) above `epoch` down to it and measures the
/// tree.
pub fn clamp_and_measure(root: &Path, epoch: i64) -> Result<TreeStats> {
    let mut stats = TreeStats::default();
    // Directories are clamped after their content, since touching entries
    // would move their mtime again.
    let mut dirs = Vec::new();
    walk_sorted(root, |_, path, meta| {
        stats.inodes += 1;
        let ft = meta.file_type();
        if ft.is_dir() {
            stats.bytes += 4096;
            dirs.push(path.to_owned());
            return Ok(());
        }
        if ft.is_file() {
            stats.bytes += meta.len().div_ceil(4096) * 4096;
        } else if ft.is_symlink() && meta.len() >= 60 {
            stats.bytes += 4096;
        }
        if clamp(path, meta, epoch)? {
            stats.clamped += 1;
        }
        Ok(())
    })?;
    dirs.push(root.to_owned());
    for path in dirs.iter().rev() {
        let meta = path.symlink_metadata()?;
        if clamp(path, &meta, epoch)? {
            stats.clamped += 1;
        }
    }
    Ok(stats)
}

/// One line per entry, sorted: `type mode uid:gid mtime size /path content`
/// (content: SHA-256 of a file, target of a symlink, device number of a
/// node). Two builds' manifests differ exactly where their trees do.
pub fn manifest(root: &Path) -> Result<String> {
    let mut out = String::new();
    walk_sorted(root, |rel, path, meta| {
        manifest_line(&mut out, rel, path, meta)
    })?;
    Ok(out)
}

/// Sets mtime (and atime) to `epoch` where they are later; true if the
/// mtime was. (mkfs copies atimes too, but debugfs pins those afterwards:
/// they are set here only to keep the tree itself tidy.)
fn clamp(path: &Path, meta: &std::fs::Metadata, epoch: i64) -> Result<bool> {
    if meta.mtime() <= epoch && meta.atime() <= epoch {
        return Ok(false);
    }
    let mtime = if meta.mtime() > epoch {
        TimeSpec::new(epoch, 0)
    } else {
        TimeSpec::new(meta.mtime(), meta.mtime_nsec())
    };
    let atime = TimeSpec::new(epoch.min(meta.atime()), 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .with_context(|| format!("cannot set the times of {}", path.display()))?;
    Ok(meta.mtime() > epoch)
}

fn manifest_line(
    out: &mut String,
    rel: &Path,
    path: &Path,
    meta: &std::fs::Metadata,
) -> Result<()> {
    let ft = meta.file_type();
    let (kind, content) = if ft.is_dir() {
        ("d", String::new())
    } else if ft.is_symlink() {
        ("l", std::fs::read_link(path)?.display().to_string())
    } else if ft.is_file() {
        ("f", sha256_file(path)?)
    } else {
        ("s", format!("rdev={}", meta.rdev()))
    };
    let _ = writeln!(
        out,
        "{kind} {:o} {}:{} {} {} /{} {content}",
        meta.mode() & 0o7777,
        meta.uid(),
        meta.gid(),
        meta.mtime(),
        meta.len(),
        rel.display(),
    );
    Ok(())
}

/// The kernel and initrd the image boots, from /boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    pub version: String,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub systemd_boot: PathBuf,
}

pub fn boot_files(root: &Path, version: &str) -> Result<BootFiles> {
    let kernel = root.join(format!("boot/vmlinuz-{version}"));
    let initrd = root.join(format!("boot/initrd.img-{version}"));
    let systemd_boot = root.join("usr/lib/systemd/boot/efi/systemd-bootx64.efi");
    for (what, p) in [
        ("kernel", &kernel),
        ("initrd", &initrd),
        ("systemd-boot (package systemd-boot-efi)", &systemd_boot),
    ] {
        if !p.is_file() {
            bail!("the root tree has no {what} at {}", p.display());
        }
    }
    Ok(BootFiles {
        version: version.to_owned(),
        kernel,
        initrd,
        systemd_boot,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn clamps_measures_and_lists_in_sorted_order() {
        let t = tempfile::tempdir().expect("tempdir");
        let r = t.path();
        std::fs::create_dir_all(r.join("b/c")).expect("mkdir");
        std::fs::write(r.join("a"), vec![0u8; 5000]).expect("write");
        std::fs::write(r.join("b/c/d"), b"x").expect("write");
        symlink("a", r.join("b/l")).expect("symlink");
        let epoch = 1_700_000_000;
        let stats = clamp_and_measure(r, epoch).expect("walks");
        // A second pass has nothing left to clamp. (Before the manifest:
        // reading files moves atimes outside a noatime mount.)
        let again = clamp_and_measure(r, epoch).expect("walks");
        assert_eq!(again.clamped, 0);
        let manifest = manifest(r).expect("lists");
        assert_eq!(stats.inodes, 5);
        // 8 KiB for a, 4 KiB for d, 4 KiB for each of b, b/c.
        assert_eq!(stats.bytes, 8192 + 4096 + 2 * 4096);
        assert_eq!(stats.clamped, 6, "5 entries and the root");
        let paths: Vec<&str> = manifest
            .lines()
            .map(|l| l.split(' ').nth(5).expect("path"))
            .collect();
        assert_eq!(paths, vec!["/a", "/b", "/b/c", "/b/c/d", "/b/l"]);
        assert!(manifest.contains("f 644 "), "{manifest}");
        assert!(
            manifest
                .lines()
                .all(|l| l.split(' ').nth(3) == Some("1700000000")),
            "{manifest}"
        );
        for p in ["a", "b", "b/c", "b/l"] {
            let m = r.join(p).symlink_metadata().expect("stat");
            assert_eq!(m.mtime(), epoch, "{p}");
        }
    }

    #[test]
    fn finish_marks_first_boot() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(t.path().join("etc")).expect("mkdir");
        std::fs::write(t.path().join("etc/machine-id"), "").expect("write");
        finish(t.path()).expect("finish");
        assert_eq!(
            std::fs::read_to_string(t.path().join("etc/machine-id")).expect("read"),
            "uninitialized\n"
        );
    }

    #[test]
    fn boot_files_must_exist() {
        let t = tempfile::tempdir().expect("tempdir");
        let err = boot_files(t.path(), "6.1.0-28-cloud-amd64").expect_err("missing");
        assert!(err.to_string().contains("no kernel"), "{err}");
    }
}
