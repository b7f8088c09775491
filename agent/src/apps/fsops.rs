//! The app reconciler's file operations, relative to a root directory and
//! never following a symbolic link below it.
//!
//! A tenant's data directory sits on the tenant's own volume, where a
//! symbolic link planted by the tenant could otherwise redirect a `chown`
//! or a write anywhere on the node. So paths are walked one component at
//! a time with `openat(O_NOFOLLOW | O_DIRECTORY)` from a descriptor of the
//! root, and ownership, modes and files are changed through the
//! descriptors obtained, never through a path: a link anywhere below the
//! root is refused, and swapping one in between a check and a use changes
//! nothing. Files are replaced by writing a temporary file next to them
//! and renaming it over, only when their content differs.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, linkat, unlinkat};

/// Why a file operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{path} is a symbolic link or not a directory; refused")]
    NotADirectory { path: String },
    #[error("{path} does not exist")]
    Missing { path: String },
    #[error("{path} is not a regular file; refused")]
    NotAFile { path: String },
    #[error("could not {op} {path}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(op: &'static str, path: &Path, errno: Errno) -> FsError {
    FsError::Io {
        op,
        path: path.display().to_string(),
        source: std::io::Error::from(errno),
    }
}

/// Who owns a directory or file the agent manages, and its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// An open directory and the path it was reached by (for messages only).
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

impl Dir {
    /// Opens `root` itself, which is trusted (it may be a link, e.g. a
    /// temporary directory in tests).
    pub fn open_root(root: &Path) -> Result<Dir, FsError> {
        let fd = nix::fcntl::open(
            root,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err("open", root, e))?;
        Ok(Dir {
            fd,
            path: root.to_path_buf(),
        })
    }

    /// Opens the subdirectory `name`; `None` when it does not exist.
    pub fn open_dir(&self, name: &str) -> Result<Option<Dir>, FsError> {
        let path = self.path.join(name);
        match openat(self.fd.as_fd(), name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => Ok(Some(Dir { fd, path })),
            Err(Errno::ENOENT) => Ok(None),
            Err(Errno::ELOOP | Errno::ENOTDIR) => Err(FsError::NotADirectory {
                path: path.display().to_string(),
            }),
            Err(e) => Err(io_err("open", &path, e)),
        }
    }

    /// Opens the subdirectory `name`, which must exist.
    pub fn require_dir(&self, name: &str) -> Result<Dir, FsError> {
        self.open_dir(name)?.ok_or_else(|| FsError::Missing {
            path: self.path.join(name).display().to_string(),
        })
    }

    /// Opens the subdirectory `name`, creating it if missing; when
    /// `owner` is given, its ownership and mode are set to it (created or
    /// not), otherwise a new directory gets `default_mode` and root.
    pub fn ensure_dir(
        &self,
        name: &str,
        owner: Option<Owner>,
        default_mode: u32,
    ) -> Result<Dir, FsError> {
        let dir = match self.open_dir(name)? {
            Some(dir) => dir,
            None => {
                let path = self.path.join(name);
                let mode = owner.map_or(default_mode, |o| o.mode);
                match mkdirat(self.fd.as_fd(), name, Mode::from_bits_truncate(mode)) {
                    // Someone else created it meanwhile: the open below
                    // checks what it is.
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(io_err("create", &path, e)),
                }
                let dir = self.require_dir(name)?;
                if owner.is_none() {
                    // The umask may have taken bits away.
                    fchmod(dir.fd.as_fd(), Mode::from_bits_truncate(default_mode))
                        .map_err(|e| io_err("set the mode of", &path, e))?;
                }
                dir
            }
        };
        if let Some(owner) = owner {
            set_owner(&dir.fd, &dir.path, owner, SFlag::S_IFDIR)?;
        }
        Ok(dir)
    }

    /// Walks `components` below this directory, creating what is missing
    /// as [`Dir::ensure_dir`] does.
    pub fn ensure_path(
        &self,
        components: &[&str],
        owner: Option<Owner>,
        default_mode: u32,
    ) -> Result<Dir, FsError> {
        let mut components = components.iter();
        let Some(first) = components.next() else {
            return Dir::open_root(&self.path);
        };
        let mut dir = self.ensure_dir(first, owner, default_mode)?;
        for name in components {
            dir = dir.ensure_dir(name, owner, default_mode)?;
        }
        Ok(dir)
    }

    /// Walks `components`, all of which must exist.
    pub fn require_path(&self, components: &[&str]) -> Result<Option<Dir>, FsError> {
        let mut dir: Option<Dir> = None;
        for name in components {
            let next = match &dir {
                None => self.open_dir(name)?,
                Some(d) => d.open_dir(name)?,
            };
            match next {
                Some(next) => dir = Some(next),
                None => return Ok(None),
            }
        }
        Ok(dir)
    }

    /// The content of the regular file `name`, at most `limit` bytes;
    /// `None` when it does not exist or is not a regular file.
    fn read_file(&self, name: &str, limit: usize) -> Result<Option<(Vec<u8>, File)>, FsError> {
        let path = self.path.join(name);
        let fd = match openat(
            self.fd.as_fd(),
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ELOOP) => return Ok(None),
            Err(e) => return Err(io_err("open", &path, e)),
        };
        let stat = fstat(fd.as_fd()).map_err(|e| io_err("stat", &path, e))?;
        if !is_kind(&stat, SFlag::S_IFREG) {
            return Ok(None);
        }
        let mut file = File::from(fd);
        let mut content = Vec::new();
        (&mut file)
            .take(u64::try_from(limit).unwrap_or(u64::MAX))
            .read_to_end(&mut content)
            .map_err(|source| FsError::Io {
                op: "read",
                path: path.display().to_string(),
                source,
            })?;
        Ok(Some((content, file)))
    }

    /// The content of the regular file `name`, if there is one.
    pub fn read_small_file(&self, name: &str) -> Result<Option<Vec<u8>>, FsError> {
        Ok(self.read_file(name, 64 * 1024)?.map(|(content, _)| content))
    }

    /// Makes `name` a regular file holding `content`, owned as `owner`
    /// says. Returns true when the content was (re)written; an identical
    /// file only has its ownership and mode corrected.
    pub fn write_file(&self, name: &str, content: &[u8], owner: Owner) -> Result<bool, FsError> {
        let path = self.path.join(name);
        if let Some((existing, file)) = self.read_file(name, content.len() + 1)?
            && existing == content
        {
            set_owner(&OwnedFd::from(file), &path, owner, SFlag::S_IFREG)?;
            return Ok(false);
        }
        let tmp = self.write_temp(name, content, owner)?;
        if let Err(e) = renameat(self.fd.as_fd(), tmp.as_str(), self.fd.as_fd(), name) {
            self.remove_temp(&tmp);
            return Err(io_err("rename into place", &path, e));
        }
        self.sync().map(|()| true)
    }

    /// Creates `name` holding `content`, owned as `owner` says, only if
    /// nothing by that name exists (a file, a link, anything): a file the
    /// app already has is never rewritten or followed. Returns true when it
    /// was created. Written under a temporary name and linked into place
    /// without replacing, so a file the app creates meanwhile wins.
    pub fn create_file_once(
        &self,
        name: &str,
        content: &[u8],
        owner: Owner,
    ) -> Result<bool, FsError> {
        let path = self.path.join(name);
        match fstatat(self.fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(_) => return Ok(false),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(io_err("inspect", &path, e)),
        }
        let tmp = self.write_temp(name, content, owner)?;
        // A hard link never replaces an existing name (EEXIST), which is
        // the write-once rule; `renameat2(RENAME_NOREPLACE)` would say the
        // same but OpenZFS 2.1 (Debian bookworm) refuses its flags with
        // EINVAL, measured in the guest.
        let linked = linkat(
            self.fd.as_fd(),
            tmp.as_str(),
            self.fd.as_fd(),
            name,
            AtFlags::empty(),
        );
        // The temporary name goes in every case (after a link, the file
        // lives on under `name`).
        self.remove_temp(&tmp);
        match linked {
            Ok(()) => self.sync().map(|()| true),
            Err(Errno::EEXIST) => Ok(false),
            Err(e) => Err(io_err("move into place", &path, e)),
        }
    }

    /// Writes `content` durably to a fresh temporary file next to `name`
    /// (a leftover one is replaced), owned as `owner` says, and returns
    /// the temporary name. Nothing is left behind on error.
    fn write_temp(&self, name: &str, content: &[u8], owner: Owner) -> Result<String, FsError> {
        let tmp = format!(".{name}.coloc-tmp");
        let tmp_path = self.path.join(&tmp);
        match unlinkat(self.fd.as_fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(io_err("remove", &tmp_path, e)),
        }
        let fd = openat(
            self.fd.as_fd(),
            tmp.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(owner.mode),
        )
        .map_err(|e| io_err("create", &tmp_path, e))?;
        let written = (|| {
            set_owner(&fd, &tmp_path, owner, SFlag::S_IFREG)?;
            let mut file = File::from(fd);
            let io = |source| FsError::Io {
                op: "write",
                path: tmp_path.display().to_string(),
                source,
            };
            file.write_all(content).map_err(io)?;
            file.sync_all().map_err(io)
        })();
        match written {
            Ok(()) => Ok(tmp),
            Err(e) => {
                self.remove_temp(&tmp);
                Err(e)
            }
        }
    }

    /// Removes a temporary file; it is garbage whatever happens, so a
    /// failure is only logged (the error that matters is the caller's).
    fn remove_temp(&self, tmp: &str) {
        if let Err(e) = unlinkat(self.fd.as_fd(), tmp, UnlinkatFlags::NoRemoveDir)
            && e != Errno::ENOENT
        {
            tracing::debug!(path = %self.path.join(tmp).display(), error = %e, "temporary file not removed");
        }
    }

    /// Removes the file (or symbolic link) `name`; true if it existed.
    pub fn remove_file(&self, name: &str) -> Result<bool, FsError> {
        match unlinkat(self.fd.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => {
                self.sync()?;
                Ok(true)
            }
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(io_err("remove", &self.path.join(name), e)),
        }
    }

    /// Names of the entries of this directory that are regular files or
    /// links (not directories), sorted.
    pub fn file_names(&self) -> Result<Vec<String>, FsError> {
        // Listed through the descriptor (`/proc/self/fd`), so a link
        // swapped in for the path cannot make us list another directory.
        let listing = PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&self.fd)
        ));
        let entries = std::fs::read_dir(&listing).map_err(|source| FsError::Io {
            op: "list",
            path: self.path.display().to_string(),
            source,
        })?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| FsError::Io {
                op: "list",
                path: self.path.display().to_string(),
                source,
            })?;
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if !is_dir {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Removes the subdirectory `name` and the files in it (not
    /// subdirectories of it: the agent never creates any there). True if
    /// it existed.
    pub fn remove_dir_with_files(&self, name: &str) -> Result<bool, FsError> {
        let Some(dir) = self.open_dir(name)? else {
            return Ok(false);
        };
        for file in dir.file_names()? {
            dir.remove_file(&file)?;
        }
        drop(dir);
        match unlinkat(self.fd.as_fd(), name, UnlinkatFlags::RemoveDir) {
            Ok(()) => {
                self.sync()?;
                Ok(true)
            }
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(io_err("remove", &self.path.join(name), e)),
        }
    }

    fn sync(&self) -> Result<(), FsError> {
        nix::unistd::fsync(self.fd.as_fd()).map_err(|e| io_err("sync", &self.path, e))
    }
}

fn is_kind(stat: &FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == kind
}

/// Sets owner and mode through the descriptor, only where they differ
/// (a chown on every pass would churn ctime for nothing).
fn set_owner(fd: &OwnedFd, path: &Path, owner: Owner, kind: SFlag) -> Result<(), FsError> {
    let stat = fstat(fd.as_fd()).map_err(|e| io_err("stat", path, e))?;
    if !is_kind(&stat, kind) {
        return Err(if kind == SFlag::S_IFDIR {
            FsError::NotADirectory {
                path: path.display().to_string(),
            }
        } else {
            FsError::NotAFile {
                path: path.display().to_string(),
            }
        });
    }
    if stat.st_uid != owner.uid || stat.st_gid != owner.gid {
        fchown(
            fd.as_fd(),
            Some(Uid::from_raw(owner.uid)),
            Some(Gid::from_raw(owner.gid)),
        )
        .map_err(|e| io_err("change the owner of", path, e))?;
    }
    // chown clears set-id bits, so the mode is checked after it.
    let stat = fstat(fd.as_fd()).map_err(|e| io_err("stat", path, e))?;
    if stat.st_mode & 0o7777 != owner.mode {
        fchmod(fd.as_fd(), Mode::from_bits_truncate(owner.mode))
            .map_err(|e| io_err("set the mode of", path, e))?;
    }
    Ok(())
}
