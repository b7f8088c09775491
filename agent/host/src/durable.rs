//! Crash-safe replacement of the agent's small state files.
//!
//! Every file the agent keeps (key, certificate, ledger, status) is
//! replaced the same way: write a temporary file in the same directory,
//! fsync it, rename it over the target, fsync the directory. A power cut at
//! any point leaves either the old content or the new one, never a mix.
//! The temporary name is fixed per target (`.<name>.tmp`): the agent is the
//! only writer of its state directory, and a fixed name means a leftover
//! from a crash is simply overwritten next time instead of accumulating.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The temporary file used while replacing `path`.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Replaces `path` with `bytes`, durably and atomically. `mode` applies
/// from the moment the temporary file exists, so a private key is never
/// readable by others, not even briefly.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = temp_path(path);
    let result = write_then_rename(&tmp, path, bytes, mode);
    if result.is_err() {
        // Best effort: the temporary file is garbage either way, and the
        // error that matters is the one being returned.
        if tmp.is_file() {
            let _ignored = std::fs::remove_file(&tmp);
        }
    }
    result
}

fn write_then_rename(tmp: &Path, path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(tmp)?;
    // `mode` only applies on creation; a leftover temporary file keeps
    // whatever it had, so set it explicitly.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Makes a rename or a creation inside `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

/// Creates the state directory (and its parents) readable by root only:
/// it holds the node's private key.
pub fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_content_and_sets_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.key");
        write_atomic(&path, b"one", 0o600).expect("first write");
        write_atomic(&path, b"two", 0o600).expect("second write");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!temp_path(&path).exists(), "temporary file left behind");
    }

    #[test]
    fn failed_write_keeps_old_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        write_atomic(&path, b"old", 0o644).expect("write");
        // A directory where the temporary file should go makes the write
        // fail even for root.
        std::fs::create_dir(temp_path(&path)).expect("block temp path");
        assert!(write_atomic(&path, b"new", 0o644).is_err());
        assert_eq!(std::fs::read(&path).expect("read"), b"old");
    }
}
