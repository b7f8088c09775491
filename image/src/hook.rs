//! The customize step of an image build, run by mmdebstrap as a hook (this
//! same binary, invoked through a symlink named [`HOOK_NAME`], with the
//! chroot directory as its argument and the plan in `$COLOC_HOOK_PLAN`), so
//! that it runs while mmdebstrap still has /proc, /sys and /dev mounted in
//! the chroot. In order: check that DKMS built the modules for the image's
//! kernel, keep them aside, purge the build-only packages (compilers,
//! headers, dkms) and put the modules back; install coloc-agent and the
//! rootfs overlay; enable the listed units; regenerate the initramfs with
//! SOURCE_DATE_EPOCH; and remove everything that carries build-time
//! identity or randomness. It must not decide what goes in the image: the
//! plan says.

use std::collections::BTreeSet;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::runner::Cmd;

/// The file name mmdebstrap executes; a symlink to this binary.
pub const HOOK_NAME: &str = "coloc-image-customize-hook";
/// The environment variable carrying the plan's path.
pub const PLAN_ENV: &str = "COLOC_HOOK_PLAN";

/// Everything the hook needs to know, written by the build as JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HookPlan {
    pub source_date_epoch: i64,
    pub dkms_modules: Vec<String>,
    pub build_packages: Vec<String>,
    /// Outside the chroot: where built modules wait while the build
    /// packages are purged.
    pub stash_dir: PathBuf,
    /// The rootfs overlay (image/rootfs), copied as it is.
    pub overlay_dir: PathBuf,
    /// The coloc-agent binary, installed as /usr/bin/coloc-agent.
    pub agent: PathBuf,
    /// The final /etc/apt/sources.list.
    pub sources_list: String,
    /// Units to `systemctl enable`.
    pub units: Vec<String>,
    /// The local repository's path on the host, which mmdebstrap's
    /// file-mirror-automount hook also created inside the chroot.
    pub repo_dir: PathBuf,
}

/// Entry point when run as [`HOOK_NAME`] by mmdebstrap.
pub fn main_from_mmdebstrap(args: &[String]) -> Result<()> {
    let [root] = args else {
        bail!(
            "{HOOK_NAME} expects exactly one argument, the chroot directory (mmdebstrap passes it)"
        );
    };
    let plan_path = std::env::var_os(PLAN_ENV).with_context(|| {
        format!("{PLAN_ENV} is not set: this hook only runs inside coloc-image build")
    })?;
    let text = std::fs::read_to_string(&plan_path).with_context(|| {
        format!(
            "cannot read the hook plan {}",
            Path::new(&plan_path).display()
        )
    })?;
    let plan: HookPlan = serde_json::from_str(&text).context("the hook plan is malformed")?;
    customize(Path::new(root), &plan)
}

fn say(what: &str) {
    eprintln!("coloc-hook: {what}");
}

fn chroot(root: &Path, plan: &HookPlan) -> Cmd {
    Cmd::new("chroot")
        .arg(root)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("SOURCE_DATE_EPOCH", plan.source_date_epoch.to_string())
        .env(
            "KBUILD_BUILD_TIMESTAMP",
            format!("@{}", plan.source_date_epoch),
        )
        .env("KBUILD_BUILD_USER", "coloc")
        .env("KBUILD_BUILD_HOST", "coloc-image")
        .env("HOME", "/root")
}

pub fn customize(root: &Path, plan: &HookPlan) -> Result<()> {
    let kver = kernel_version(root)?;
    say(&format!("image kernel {kver}"));
    remove_repo_leftovers(root, &plan.repo_dir)?;

    if !plan.dkms_modules.is_empty() {
        ensure_dkms_modules(root, plan, &kver)?;
        let n = strip_signatures(&module_dir(root, &kver))?;
        if n > 0 {
            say(&format!(
                "removed DKMS's throwaway signature from {n} modules"
            ));
        }
    }
    if !plan.build_packages.is_empty() {
        purge_build_packages(root, plan, &kver)?;
    }

    say("installing coloc-agent and the rootfs overlay");
    // mmdebstrap copied the build host's files for network access during
    // the build; a generic image has neither.
    remove_if_exists(&root.join("etc/hostname"))?;
    let resolv = root.join("etc/resolv.conf");
    if resolv
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_file())
    {
        std::fs::remove_file(&resolv)?;
    }
    std::fs::write(root.join("etc/apt/sources.list"), &plan.sources_list)?;
    install_file(&plan.agent, &root.join("usr/bin/coloc-agent"), 0o755)?;
    // Where /etc/fstab mounts the ESP (docs/IMAGE.md's partition 1).
    let efi = root.join("boot/efi");
    if !efi.is_dir() {
        std::fs::create_dir(&efi)?;
        std::fs::set_permissions(&efi, std::fs::Permissions::from_mode(0o755))?;
    }
    copy_overlay(&plan.overlay_dir, root)?;

    if !plan.units.is_empty() {
        say(&format!("enabling {}", plan.units.join(" ")));
        chroot(root, plan)
            .args(["systemctl", "enable"])
            .args(&plan.units)
            .run()
            .context("cannot enable the units listed in etc/coloc-image/enable")?;
    }

    say("regenerating the initramfs");
    chroot(root, plan)
        .args(["update-initramfs", "-u", "-k", &kver])
        .run()?;

    say("sealing: removing host keys, logs, caches and build state");
    seal(root)?;
    Ok(())
}

/// The one kernel installed in the chroot.
pub fn kernel_version(root: &Path) -> Result<String> {
    let dir = root.join("lib/modules");
    let mut versions: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("no kernel installed ({} is missing)", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    versions.sort();
    match versions.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "no kernel is installed in the image (empty {})",
            dir.display()
        ),
        many => bail!(
            "the image has several kernels ({}); the spec must pick one",
            many.join(", ")
        ),
    }
}

/// The file-mirror-automount hook unmounts the local repository but leaves
/// the directories it created for the mount point; they would carry the
/// build directory's name into the image. The repository lives under /tmp
/// (rootfs::REPO_PARENT), so everything from there down is ours to remove;
/// /tmp itself stays.
fn remove_repo_leftovers(root: &Path, repo: &Path) -> Result<()> {
    let parent = Path::new(crate::rootfs::REPO_PARENT);
    let Ok(below) = repo.strip_prefix(parent) else {
        bail!(
            "the build repository {} is not under {}",
            repo.display(),
            parent.display()
        );
    };
    let Some(first) = below.components().next() else {
        bail!("the build repository is {} itself", parent.display());
    };
    let top = root
        .join(parent.strip_prefix("/").unwrap_or(parent))
        .join(first);
    // Never delete through a mount that is still there: it is the host's
    // repository (read-only, but still).
    if crate::workdir::is_mount_below(&top)? {
        bail!(
            "{} is still mounted; the automount hook did not unmount it",
            top.display()
        );
    }
    match std::fs::remove_dir_all(&top) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", top.display())),
    }
}

fn module_dir(root: &Path, kver: &str) -> PathBuf {
    root.join("lib/modules").join(kver).join("updates/dkms")
}

fn has_module(root: &Path, kver: &str, module: &str) -> bool {
    let dir = module_dir(root, kver);
    ["ko", "ko.xz", "ko.zst", "ko.gz"]
        .iter()
        .any(|ext| dir.join(format!("{module}.{ext}")).is_file())
}

fn ensure_dkms_modules(root: &Path, plan: &HookPlan, kver: &str) -> Result<()> {
    let missing: Vec<&String> = plan
        .dkms_modules
        .iter()
        .filter(|m| !has_module(root, kver, m))
        .collect();
    if !missing.is_empty() {
        say(&format!(
            "building {} with DKMS for {kver}",
            plan.dkms_modules.join(" ")
        ));
        chroot(root, plan)
            .args(["dkms", "autoinstall", "-k", kver])
            .run()
            .context("DKMS could not build the modules")?;
    } else {
        say(&format!(
            "DKMS built {} for {kver} during installation",
            plan.dkms_modules.join(" ")
        ));
    }
    if let Some(m) = plan
        .dkms_modules
        .iter()
        .find(|m| !has_module(root, kver, m))
    {
        bail!(
            "DKMS did not produce {m}.ko for kernel {kver}: are the matching headers among \
             build.packages?"
        );
    }
    Ok(())
}

fn purge_build_packages(root: &Path, plan: &HookPlan, kver: &str) -> Result<()> {
    let modules = module_dir(root, kver);
    let stash = plan.stash_dir.join("dkms");
    if modules.is_dir() {
        copy_tree_plain(&modules, &stash)?;
    }
    let installed = chroot(root, plan)
        .args([
            "dpkg-query",
            "-W",
            "-f",
            "${db:Status-Abbrev} ${Package}\\n",
        ])
        .run()?
        .stdout_str();
    // The kernel's postinst protects its own version's headers from
    // autoremoval (/etc/apt/apt.conf.d/01autoremove-kernels), so they are
    // named explicitly; their compiler and kbuild then go as unneeded.
    let mut purge = plan.build_packages.clone();
    purge.extend(installed_matching(&installed, "linux-headers-"));
    purge.sort();
    purge.dedup();
    say(&format!("purging the build packages: {}", purge.join(" ")));
    chroot(root, plan)
        // apt keeps whatever an installed package merely recommends or
        // suggests by default, and `apt` suggests dpkg-dev, which
        // recommends build-essential: the whole toolchain would stay.
        // Nothing was installed for a recommendation (mmdebstrap installs
        // none), so only real dependencies keep a package here.
        .args([
            "apt-get",
            "purge",
            "--yes",
            "--autoremove",
            "-o",
            "APT::AutoRemove::RecommendsImportant=false",
            "-o",
            "APT::AutoRemove::SuggestsImportant=false",
            "-o",
            "Dpkg::Use-Pty=0",
        ])
        .args(&purge)
        .run()
        .context("cannot purge the build packages")?;
    let installed = chroot(root, plan)
        .args([
            "dpkg-query",
            "-W",
            "-f",
            "${db:Status-Abbrev} ${Package}\\n",
        ])
        .run()?
        .stdout_str();
    let left = build_leftovers(&installed, &plan.build_packages);
    if !left.is_empty() {
        bail!(
            "after purging the build packages, these remain and would ship compilers or \
             headers: {} (something in `packages` depends on them)",
            left.join(", ")
        );
    }
    if stash.is_dir() {
        copy_tree_plain(&stash, &modules)?;
    }
    chroot(root, plan).args(["depmod", kver]).run()?;
    for m in &plan.dkms_modules {
        let info = chroot(root, plan)
            .args(["modinfo", "-k", kver, "-F", "filename", m])
            .run()
            .with_context(|| format!("{m} is not found by modprobe after the purge"))?
            .stdout_str();
        say(&format!("kept {}", info.trim()));
    }
    Ok(())
}

/// The marker the kernel's sign-file appends to a signed module.
const MODULE_SIG_MAGIC: &[u8] = b"~Module signature appended~\n";

/// A module without its appended signature, if it has one. The layout
/// (include/linux/module_signature.h): module, signature (sig_len bytes,
/// plus signer and key id, both empty for PKCS#7), then a 12-byte struct
/// whose last 4 bytes are sig_len big-endian, then the magic.
pub fn strip_module_signature(ko: &[u8]) -> Option<&[u8]> {
    let body = ko.strip_suffix(MODULE_SIG_MAGIC)?;
    let info_at = body.len().checked_sub(12)?;
    let info = &body[info_at..];
    let signer_len = info[3] as usize;
    let key_id_len = info[4] as usize;
    let sig_len = u32::from_be_bytes([info[8], info[9], info[10], info[11]]) as usize;
    let end = info_at.checked_sub(sig_len + signer_len + key_id_len)?;
    Some(&ko[..end])
}

/// DKMS (3.x) signs what it builds with a key it generates on the spot
/// (/var/lib/dkms/mok.key): a signature by a key nobody enrolled verifies
/// nothing (the kernel loads the module either way, tainted), and being
/// random it would make every image different. The modules are shipped
/// unsigned. Returns how many were stripped.
fn strip_signatures(dir: &Path) -> Result<usize> {
    let mut n = 0;
    if !dir.is_dir() {
        return Ok(0);
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "ko") {
            continue;
        }
        let bytes = std::fs::read(&path)?;
        if let Some(unsigned) = strip_module_signature(&bytes) {
            std::fs::write(&path, unsigned)
                .with_context(|| format!("cannot rewrite {}", path.display()))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Installed packages (from `dpkg-query -W -f '${db:Status-Abbrev}
/// ${Package}\n'`) whose name starts with `prefix`.
pub fn installed_matching(dpkg_query: &str, prefix: &str) -> Vec<String> {
    dpkg_query
        .lines()
        .filter_map(|l| l.trim().split_once(' '))
        .filter(|(status, _)| status.starts_with("ii"))
        .map(|(_, name)| name.trim().split(':').next().unwrap_or("").to_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Installed packages (from `dpkg-query -W -f '${db:Status-Abbrev}
/// ${Package}\n'`) that are build packages or ship a compiler or kernel
/// headers.
pub fn build_leftovers(dpkg_query: &str, build_packages: &[String]) -> Vec<String> {
    const TOOLCHAIN: &[&str] = &[
        "gcc",
        "g++",
        "cpp",
        "binutils",
        "linux-headers-",
        "linux-kbuild-",
        "linux-compiler-",
        "libc6-dev",
        "libc-dev-bin",
        "dkms",
        "make",
        "build-essential",
        "clang",
        "llvm",
    ];
    let build: BTreeSet<&str> = build_packages.iter().map(String::as_str).collect();
    dpkg_query
        .lines()
        .filter_map(|l| {
            let (status, name) = l.trim().split_once(' ')?;
            // "ii", "iU", ... : anything whose files are unpacked.
            let unpacked = status.len() >= 2 && !matches!(&status[1..2], "n" | "c");
            unpacked.then(|| name.trim())
        })
        .map(|n| n.split(':').next().unwrap_or(n))
        // gcc-12-base holds only a changelog and a copyright file, and
        // libgcc-s1 (the runtime) depends on it.
        .filter(|n| !(n.starts_with("gcc-") && n.ends_with("-base")))
        .filter(|n| {
            build.contains(n)
                || TOOLCHAIN.iter().any(|t| {
                    if t.ends_with('-') {
                        n.starts_with(t)
                    } else {
                        *n == *t || n.starts_with(&format!("{t}-"))
                    }
                })
        })
        .map(str::to_owned)
        .collect()
}

fn remove_if_exists(p: &Path) -> Result<()> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", p.display())),
    }
}

fn install_file(src: &Path, dest: &Path, mode: u32) -> Result<()> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    remove_if_exists(dest)?;
    std::fs::copy(src, dest)
        .with_context(|| format!("cannot copy {} to {}", src.display(), dest.display()))?;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(mode))?;
    std::os::unix::fs::chown(dest, Some(0), Some(0))
        .with_context(|| format!("cannot chown {}", dest.display()))?;
    Ok(())
}

/// Copies files and directories (no symlinks expected: DKMS output).
fn copy_tree_plain(src: &Path, dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let to = dest.join(entry.file_name());
        let ty = entry.file_type()?;
        if ty.is_dir() {
            copy_tree_plain(&entry.path(), &to)?;
        } else if ty.is_file() {
            let mode = entry.metadata()?.permissions().mode() & 0o7777;
            install_file(&entry.path(), &to, mode)?;
        }
    }
    Ok(())
}

/// The mode a file from the overlay gets: git keeps only the executable
/// bit, so the image does not depend on the checkout's umask.
pub fn overlay_mode(is_dir: bool, source_mode: u32) -> u32 {
    if is_dir || source_mode & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

/// Copies the overlay tree over the root, as root:root with normalized
/// modes, keeping symlinks as symlinks. A destination reached through an
/// absolute symlink is refused: it would resolve on the build host.
pub fn copy_overlay(src: &Path, root: &Path) -> Result<()> {
    if !src.is_dir() {
        bail!("the rootfs overlay {} is not a directory", src.display());
    }
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut entries: Vec<_> =
            std::fs::read_dir(src.join(&rel))?.collect::<std::io::Result<Vec<_>>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let rel_path = rel.join(entry.file_name());
            let from = entry.path();
            let to = root.join(&rel_path);
            check_inside(root, &rel_path)?;
            let meta = from.symlink_metadata()?;
            let ft = meta.file_type();
            if ft.is_symlink() {
                let target = std::fs::read_link(&from)?;
                if let Ok(m) = to.symlink_metadata() {
                    if m.is_dir() {
                        bail!(
                            "overlay symlink {} would replace a directory",
                            rel_path.display()
                        );
                    }
                    std::fs::remove_file(&to)?;
                }
                symlink(&target, &to).with_context(|| format!("cannot create {}", to.display()))?;
                std::os::unix::fs::lchown(&to, Some(0), Some(0))?;
            } else if ft.is_dir() {
                match to.symlink_metadata() {
                    Ok(m) if m.is_dir() => {}
                    // A relative symlink to a directory (e.g. /lib ->
                    // usr/lib) is followed, as dpkg would.
                    Ok(m) if m.file_type().is_symlink() && to.is_dir() => {}
                    Ok(_) => bail!(
                        "overlay directory {} would replace a file",
                        rel_path.display()
                    ),
                    Err(_) => {
                        std::fs::create_dir(&to)
                            .with_context(|| format!("cannot create {}", to.display()))?;
                        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))?;
                        std::os::unix::fs::chown(&to, Some(0), Some(0))?;
                    }
                }
                stack.push(rel_path);
            } else if ft.is_file() {
                let mode = overlay_mode(false, meta.permissions().mode());
                install_file(&from, &to, mode)?;
            } else {
                bail!(
                    "the overlay has {} which is neither file, directory nor symlink",
                    rel_path.display()
                );
            }
        }
    }
    Ok(())
}

/// Refuses a path whose parent directories, inside `root`, go through an
/// absolute symlink.
fn check_inside(root: &Path, rel: &Path) -> Result<()> {
    let mut cur = root.to_path_buf();
    let comps: Vec<Component> = rel.components().collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        cur.push(c);
        if let Ok(m) = cur.symlink_metadata()
            && m.file_type().is_symlink()
        {
            let target = std::fs::read_link(&cur)?;
            if target.is_absolute() {
                bail!(
                    "{} is an absolute symlink in the image; the overlay cannot write through it",
                    cur.strip_prefix(root).unwrap_or(&cur).display()
                );
            }
        }
    }
    Ok(())
}

/// Removes what carries build-time identity, randomness or timestamps.
/// (mmdebstrap itself removes dpkg/apt logs, the ldconfig aux cache and
/// /var/lib/dbus/machine-id, and empties /etc/machine-id; the build writes
/// "uninitialized" into it afterwards.)
pub fn seal(root: &Path) -> Result<()> {
    // SSH host keys: generated on each node's first boot.
    let ssh = root.join("etc/ssh");
    if ssh.is_dir() {
        for e in std::fs::read_dir(&ssh)? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with("ssh_host_") {
                std::fs::remove_file(e.path())?;
            }
        }
    }
    // Every log file, keeping the directories (journald wants
    // /var/log/journal).
    empty_files_below(&root.join("var/log"))?;
    for rel in [
        "var/cache/man",
        "var/lib/dkms",
        "var/lib/apt/lists",
        "var/cache/apt/archives",
        "var/tmp",
    ] {
        let dir = root.join(rel);
        if dir.is_dir() {
            empty_files_below(&dir)?;
        }
    }
    for (dir, suffix) in [
        ("var/cache/debconf", "-old"),
        ("var/lib/dpkg", "-old"),
        ("var/cache/apt", ".bin"),
    ] {
        let dir = root.join(dir);
        if !dir.is_dir() {
            continue;
        }
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            if e.file_type()?.is_file() && e.file_name().to_string_lossy().ends_with(suffix) {
                std::fs::remove_file(e.path())?;
            }
        }
    }
    for rel in [
        // Random per-machine ids that packages generate at install time:
        // zfsutils-linux's zgenhostid and nvme-cli's host NQN.
        "etc/hostid",
        "etc/nvme/hostid",
        "etc/nvme/hostnqn",
        "var/lib/systemd/random-seed",
        "var/lib/dbus/machine-id",
        "root/.bash_history",
        "etc/.resolv.conf.systemd-resolved.bak",
    ] {
        remove_if_exists(&root.join(rel))?;
    }
    Ok(())
}

/// Removes every non-directory below `dir` (sockets and links included),
/// keeping the directory tree.
fn empty_files_below(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let ft = e.file_type()?;
        if ft.is_dir() {
            empty_files_below(&e.path())?;
        } else {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_catch_toolchains_and_build_packages() {
        let q = "\
ii  systemd
ii  gcc-12
ii  linux-headers-6.1.0-28-cloud-amd64
rc  cpp-12
ii  libgcc-s1:amd64
ii  make
ii  makedev
ii  zfs-dkms
ii  binutils-common:amd64
ii  gcc-12-base:amd64
un  dkms
";
        let left = build_leftovers(q, &["zfs-dkms".to_owned()]);
        assert_eq!(
            left,
            vec![
                "gcc-12",
                "linux-headers-6.1.0-28-cloud-amd64",
                "make",
                "zfs-dkms",
                "binutils-common"
            ]
        );
        assert!(build_leftovers("ii  systemd\nii  libgcc-s1\n", &[]).is_empty());
        assert_eq!(
            installed_matching(q, "linux-headers-"),
            vec!["linux-headers-6.1.0-28-cloud-amd64"]
        );
    }

    #[test]
    fn module_signatures_are_stripped() {
        let module = b"\x7fELF module body".to_vec();
        let sig = vec![0xAAu8; 300];
        let mut signed = module.clone();
        signed.extend_from_slice(&sig);
        // algo, hash, id_type=2 (PKCS#7), signer_len, key_id_len, pad[3],
        // sig_len (big-endian).
        signed.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0]);
        signed.extend_from_slice(&300u32.to_be_bytes());
        signed.extend_from_slice(MODULE_SIG_MAGIC);
        assert_eq!(strip_module_signature(&signed), Some(&module[..]));
        assert_eq!(strip_module_signature(&module), None, "unsigned stays");
        let mut bad = MODULE_SIG_MAGIC.to_vec();
        bad.splice(0..0, [0u8; 4]);
        assert_eq!(strip_module_signature(&bad), None, "too short");
    }

    #[test]
    fn overlay_modes_keep_only_the_executable_bit() {
        assert_eq!(overlay_mode(false, 0o600), 0o644);
        assert_eq!(overlay_mode(false, 0o664), 0o644);
        assert_eq!(overlay_mode(false, 0o700), 0o755);
        assert_eq!(overlay_mode(true, 0o700), 0o755);
    }

    #[test]
    fn overlay_copies_files_dirs_and_symlinks() {
        let t = tempfile::tempdir().expect("tempdir");
        let src = t.path().join("overlay");
        let root = t.path().join("root");
        std::fs::create_dir_all(src.join("etc/systemd/system")).expect("mkdir");
        std::fs::create_dir_all(root.join("usr/lib")).expect("mkdir");
        symlink("usr/lib", root.join("lib")).expect("symlink");
        std::fs::write(src.join("etc/systemd/system/a.service"), "[Unit]\n").expect("write");
        std::fs::create_dir_all(src.join("lib/x")).expect("mkdir");
        std::fs::write(src.join("lib/x/run"), "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(
            src.join("lib/x/run"),
            std::fs::Permissions::from_mode(0o700),
        )
        .expect("chmod");
        symlink("/dev/null", src.join("etc/systemd/system/b.service")).expect("symlink");
        copy_overlay(&src, &root).expect("copies");
        assert_eq!(
            std::fs::read_to_string(root.join("etc/systemd/system/a.service")).expect("read"),
            "[Unit]\n"
        );
        let m = std::fs::metadata(root.join("usr/lib/x/run")).expect("through lib symlink");
        assert_eq!(m.permissions().mode() & 0o7777, 0o755);
        assert_eq!(
            std::fs::read_link(root.join("etc/systemd/system/b.service")).expect("link"),
            Path::new("/dev/null")
        );
        // Copying again replaces in place.
        copy_overlay(&src, &root).expect("idempotent");
    }

    #[test]
    fn overlay_refuses_absolute_symlinked_parents() {
        let t = tempfile::tempdir().expect("tempdir");
        let src = t.path().join("overlay");
        let root = t.path().join("root");
        std::fs::create_dir_all(src.join("etc/x")).expect("mkdir");
        std::fs::write(src.join("etc/x/f"), "x").expect("write");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        symlink("/tmp", root.join("etc/x")).expect("symlink");
        let err = copy_overlay(&src, &root).expect_err("refused");
        assert!(err.to_string().contains("absolute symlink"), "{err}");
    }

    #[test]
    fn seal_removes_identity_and_keeps_directories() {
        let t = tempfile::tempdir().expect("tempdir");
        let r = t.path();
        for d in [
            "etc/ssh",
            "var/log/journal",
            "var/log/apt",
            "var/cache/debconf",
            "var/lib/dpkg",
        ] {
            std::fs::create_dir_all(r.join(d)).expect("mkdir");
        }
        for f in [
            "etc/ssh/ssh_host_ed25519_key",
            "etc/ssh/ssh_host_ed25519_key.pub",
            "etc/ssh/sshd_config",
            "var/log/apt/eipp.log.xz",
            "var/log/lastlog",
            "var/cache/debconf/config.dat-old",
            "var/cache/debconf/config.dat",
            "var/lib/dpkg/status-old",
            "var/lib/dpkg/status",
        ] {
            std::fs::write(r.join(f), "x").expect("write");
        }
        seal(r).expect("seals");
        assert!(!r.join("etc/ssh/ssh_host_ed25519_key").exists());
        assert!(!r.join("etc/ssh/ssh_host_ed25519_key.pub").exists());
        assert!(r.join("etc/ssh/sshd_config").exists());
        assert!(!r.join("var/log/lastlog").exists());
        assert!(r.join("var/log/journal").is_dir());
        assert!(!r.join("var/cache/debconf/config.dat-old").exists());
        assert!(r.join("var/cache/debconf/config.dat").exists());
        assert!(!r.join("var/lib/dpkg/status-old").exists());
        assert!(r.join("var/lib/dpkg/status").exists());
    }

    #[test]
    fn repo_leftovers_are_removed_but_not_tmp() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path();
        std::fs::create_dir_all(root.join("tmp/coloc-repo-1-2/repo")).expect("mkdir");
        remove_repo_leftovers(root, Path::new("/tmp/coloc-repo-1-2/repo")).expect("removes");
        assert!(!root.join("tmp/coloc-repo-1-2").exists());
        assert!(root.join("tmp").is_dir());
        // Already gone (mmdebstrap's /tmp cleanup may come first): fine.
        remove_repo_leftovers(root, Path::new("/tmp/coloc-repo-1-2/repo")).expect("idempotent");
        assert!(remove_repo_leftovers(root, Path::new("/var/tmp/x/repo")).is_err());
    }

    #[test]
    fn kernel_version_needs_exactly_one() {
        let t = tempfile::tempdir().expect("tempdir");
        assert!(kernel_version(t.path()).is_err());
        std::fs::create_dir_all(t.path().join("lib/modules/6.1.0-28-cloud-amd64")).expect("mkdir");
        assert_eq!(
            kernel_version(t.path()).expect("one"),
            "6.1.0-28-cloud-amd64"
        );
        std::fs::create_dir_all(t.path().join("lib/modules/6.1.0-29-cloud-amd64")).expect("mkdir");
        assert!(
            kernel_version(t.path())
                .expect_err("two")
                .to_string()
                .contains("several")
        );
    }
}
