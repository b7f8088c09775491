//! A build's scratch directory: created fresh, with a plain path (it ends up
//! in apt source lines and mmdebstrap hook paths, which must not need
//! quoting), and removed when the build ends, whatever way it ends. Removal
//! first unmounts anything still mounted below it (our tmpfs, or what a
//! crashed mmdebstrap left in its chroot), so that deleting scratch files
//! can never reach into a mounted /dev or /proc. Scratch trees that are
//! written heavily (mmdebstrap's chroot, the extracted root) live on tmpfs
//! mounts inside it: dpkg's fsyncs cost nothing there.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::runner::Cmd;

#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    /// Creates `<parent>/<prefix>-<pid>-<nanos>`; `parent` defaults to the
    /// system temporary directory.
    pub fn create(parent: Option<&Path>, prefix: &str) -> Result<WorkDir> {
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_owned);
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let parent = parent
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", parent.display()))?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = parent.join(format!("{prefix}-{}-{nanos:09}", std::process::id()));
        if !is_plain_path(&path) {
            bail!(
                "the work directory {} has characters apt and mmdebstrap cannot take \
                 (use letters, digits and ._-/ only); choose another with --work-dir",
                path.display()
            );
        }
        std::fs::create_dir(&path)
            .with_context(|| format!("cannot create the work directory {}", path.display()))?;
        // apt fetches from the build repository as the unprivileged _apt
        // user, which must be able to traverse the path.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        Ok(WorkDir { path, keep: false })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the directory in place at the end (for debugging a build).
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = unmount_below(&self.path) {
            eprintln!(
                "coloc-image: leaving {} in place: {e:#}",
                self.path.display()
            );
            return;
        }
        if self.keep {
            eprintln!("coloc-image: work directory kept: {}", self.path.display());
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("coloc-image: cannot remove {}: {e}", self.path.display());
        }
    }
}

/// Unmounts every mount point at or below `dir`, deepest first.
pub fn unmount_below(dir: &Path) -> Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .context("cannot read /proc/self/mountinfo")?;
    let mut points = mounts_below(&info, dir);
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        Cmd::new("umount")
            .arg(&p)
            .cleanup()
            .run()
            .or_else(|_| Cmd::new("umount").arg("--lazy").arg(&p).cleanup().run())
            .with_context(|| format!("cannot unmount {}", p.display()))?;
    }
    Ok(())
}

/// Whether anything is mounted at or below `dir`.
pub fn is_mount_below(dir: &Path) -> Result<bool> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .context("cannot read /proc/self/mountinfo")?;
    Ok(!mounts_below(&info, dir).is_empty())
}

/// Mount points (field 5 of mountinfo) at or below `dir`.
fn mounts_below(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Letters, digits and `._-/` only.
pub fn is_plain_path(p: &Path) -> bool {
    p.to_str().is_some_and(|s| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
    })
}

/// A tmpfs mounted for the build's lifetime; unmounted on drop.
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
    mounted: bool,
}

impl Tmpfs {
    /// Mounts a tmpfs at `path` (created if needed). noatime: reading a
    /// tree (mkfs, the manifest) must not change it.
    pub fn mount(path: &Path, what: &str) -> Result<Tmpfs> {
        std::fs::create_dir_all(path)?;
        Cmd::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "size=16g,mode=0755,noatime",
                "coloc-image",
            ])
            .arg(path)
            .run()
            .with_context(|| {
                format!("cannot mount a tmpfs for {what} (coloc-image must run as root)")
            })?;
        Ok(Tmpfs {
            path: path.to_owned(),
            mounted: true,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn unmount(mut self) -> Result<()> {
        self.mounted = false;
        Cmd::new("umount").arg(&self.path).cleanup().run()?;
        Ok(())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Whatever is still mounted inside (a chroot's /proc after a failed
        // mmdebstrap) goes first.
        if self.mounted
            && let Err(e) = unmount_below(&self.path)
        {
            eprintln!("coloc-image: cannot unmount {}: {e:#}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mounts_below_a_directory() {
        let info = "\
22 1 253:0 / / rw,relatime - ext4 /dev/vda rw
40 22 0:45 / /tmp/w/tree rw - tmpfs coloc rw
41 22 0:46 / /tmp/w/mm/proc rw - proc proc rw
42 22 0:47 / /tmp/w2 rw - tmpfs x rw
43 22 0:48 / /tmp/w/a\\040b rw - tmpfs x rw
";
        let got = mounts_below(info, Path::new("/tmp/w"));
        assert_eq!(
            got,
            vec![
                PathBuf::from("/tmp/w/tree"),
                PathBuf::from("/tmp/w/mm/proc"),
                PathBuf::from("/tmp/w/a b")
            ]
        );
    }

    #[test]
    fn work_dirs_are_plain_fresh_and_removed() {
        let parent = tempfile::tempdir().expect("tempdir");
        let path;
        {
            let w = WorkDir::create(Some(parent.path()), "t").expect("create");
            path = w.path().to_owned();
            assert!(path.is_dir());
            std::fs::write(path.join("f"), b"x").expect("write");
        }
        assert!(!path.exists(), "removed on drop");
        assert!(is_plain_path(Path::new("/tmp/coloc-image-12-000001")));
        assert!(!is_plain_path(Path::new("/tmp/a b")));
        assert!(!is_plain_path(Path::new("/tmp/a$b")));
    }
}
