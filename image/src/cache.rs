//! The content-addressed package cache (`$COLOC_CACHE`, by default
//! /var/cache/coloc): every locked .deb as `debs/<sha256>.deb`. A file is
//! only ever added under its verified digest (written aside, then renamed),
//! so a cache entry is either absent or exactly the package the lockfile
//! names; that is what lets an image be rebuilt after the mirror has moved
//! on. Fetching from a mirror goes through apt's own `apt-helper`, which
//! honours apt's proxy settings and checks the hash as it downloads.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::digest::sha256_file;
use crate::lockfile::LockedPackage;
use crate::runner::Cmd;

pub const DEFAULT_CACHE: &str = "/var/cache/coloc";
const APT_HELPER: &str = "/usr/lib/apt/apt-helper";

#[derive(Debug, Clone)]
pub struct DebCache {
    root: PathBuf,
}

impl DebCache {
    pub fn new(root: PathBuf) -> Self {
        DebCache { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn deb_path(&self, sha256: &str) -> PathBuf {
        self.root.join("debs").join(format!("{sha256}.deb"))
    }

    fn incoming(&self) -> Result<PathBuf> {
        let dir = self.root.join("debs").join(".incoming");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the package cache {}", dir.display()))?;
        Ok(dir)
    }

    /// Whether the cache holds `sha256`'s file intact. A file whose content
    /// no longer matches its name (a disk error, a hand edit) is removed, so
    /// that it is fetched again rather than built into an image.
    pub fn holds(&self, sha256: &str) -> Result<bool> {
        let path = self.deb_path(sha256);
        if !path.exists() {
            return Ok(false);
        }
        let actual =
            sha256_file(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if actual == sha256 {
            return Ok(true);
        }
        tracing::warn!(path = %path.display(), actual, "cached package is corrupt; removing it");
        std::fs::remove_file(&path)
            .with_context(|| format!("cannot remove corrupt {}", path.display()))?;
        Ok(false)
    }

    /// Adds a file by content; returns its digest.
    pub fn insert(&self, src: &Path) -> Result<String> {
        let sha = sha256_file(src).with_context(|| format!("cannot read {}", src.display()))?;
        let dest = self.deb_path(&sha);
        if dest.exists() {
            return Ok(sha);
        }
        let tmp = self.incoming()?.join(format!("{sha}.part"));
        std::fs::copy(src, &tmp)
            .with_context(|| format!("cannot copy {} into the cache", src.display()))?;
        std::fs::rename(&tmp, &dest)
            .with_context(|| format!("cannot move {} into place", dest.display()))?;
        Ok(sha)
    }

    /// Downloads one locked package from its mirror into the cache.
    pub fn fetch(&self, pkg: &LockedPackage) -> Result<()> {
        let tmp = self.incoming()?.join(format!("{}.part", pkg.sha256));
        let _ = std::fs::remove_file(&tmp);
        let result = Cmd::new(APT_HELPER)
            .args(["-o", "APT::Sandbox::User=root", "download-file"])
            .arg(pkg.url())
            .arg(&tmp)
            .arg(format!("SHA256:{}", pkg.sha256))
            .run();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            let tail = e.tail();
            if tail.contains("404") || tail.contains("Not Found") {
                bail!(
                    "the mirror no longer has {} {} ({}): Debian keeps only current versions. \
                     Run `coloc-image lock <spec>` to pin the current ones, or restore the \
                     package cache ({}) from a machine that has it.",
                    pkg.name,
                    pkg.version,
                    pkg.url(),
                    self.root.display()
                );
            }
            if tail.contains("Hash Sum mismatch") || tail.contains("Hashes of expected file") {
                bail!(
                    "the mirror serves {} {} with a different SHA-256 than the lockfile pins \
                     ({}); the lockfile or the mirror is wrong — run `coloc-image lock <spec>` \
                     if the mirror was rebuilt.",
                    pkg.name,
                    pkg.version,
                    pkg.url()
                );
            }
            return Err(anyhow::Error::new(e).context(format!(
                "cannot download {} {} from {}: is the mirror reachable?",
                pkg.name, pkg.version, pkg.mirror
            )));
        }
        // apt-helper checked the hash while downloading; check again what is
        // on disk before it becomes a cache entry.
        let actual = sha256_file(&tmp)?;
        if actual != pkg.sha256 {
            let _ = std::fs::remove_file(&tmp);
            bail!(
                "{} downloaded with SHA-256 {actual}, not {} as locked",
                pkg.url(),
                pkg.sha256
            );
        }
        let dest = self.deb_path(&pkg.sha256);
        std::fs::rename(&tmp, &dest)
            .with_context(|| format!("cannot move {} into place", dest.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_is_content_addressed_and_holds_detects_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = DebCache::new(dir.path().join("cache"));
        let src = dir.path().join("a.deb");
        std::fs::write(&src, b"not really a deb").expect("write");
        let sha = cache.insert(&src).expect("insert");
        assert_eq!(sha, crate::digest::sha256_hex(b"not really a deb"));
        assert!(cache.deb_path(&sha).ends_with(format!("debs/{sha}.deb")));
        assert!(cache.holds(&sha).expect("holds"));
        // Inserting again is a no-op.
        assert_eq!(cache.insert(&src).expect("again"), sha);
        std::fs::write(cache.deb_path(&sha), b"bit rot").expect("corrupt");
        assert!(!cache.holds(&sha).expect("holds"));
        assert!(!cache.deb_path(&sha).exists(), "corrupt entry removed");
        assert!(!cache.holds(&"0".repeat(64)).expect("absent"));
    }
}
