//! The root filesystem as a tarball: a flat local apt repository made of
//! exactly the locked .debs (Packages written by apt-ftparchive, with the
//! archive's priorities and sections replayed from the lock), and
//! mmdebstrap installing the spec's package set from it alone, under
//! SOURCE_DATE_EPOCH, with our customize hook (see hook.rs). mmdebstrap
//! writes the tarball sorted by name with mtimes clamped. The build host's
//! apt sources play no part.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cache::DebCache;
use crate::hook::{HOOK_NAME, HookPlan, PLAN_ENV};
use crate::lockfile::Lock;
use crate::runner::Cmd;
use crate::spec::Spec;
use crate::workdir::Tmpfs;

/// Where the local repository is made (see image.rs).
pub const REPO_PARENT: &str = "/tmp";
const AUTOMOUNT_HOOKS: &str = "/usr/share/mmdebstrap/hooks/file-mirror-automount";

/// Lays out `<work>/repo` with the locked packages and its indexes.
pub fn make_repository(work: &Path, spec: &Spec, lock: &Lock, cache: &DebCache) -> Result<PathBuf> {
    let repo = work.join("repo");
    std::fs::create_dir_all(&repo)?;
    for p in &lock.packages {
        let src = cache.deb_path(&p.sha256);
        let dest = repo.join(p.deb_file_name());
        // A hard link costs nothing; the cache may be on another
        // filesystem, where a copy does.
        if std::fs::hard_link(&src, &dest).is_err() {
            std::fs::copy(&src, &dest).with_context(|| {
                format!("cannot copy {} into the build repository", src.display())
            })?;
        }
    }
    let overrides = work.join("override");
    std::fs::write(&overrides, lock.override_file())?;
    let packages = Cmd::new("apt-ftparchive")
        .args(["packages", "."])
        .arg(&overrides)
        .current_dir(&repo)
        .run()
        .context("apt-ftparchive could not index the locked packages")?;
    std::fs::write(repo.join("Packages"), &packages.stdout)?;
    let suite = &spec.file.apt.suite;
    let release = Cmd::new("apt-ftparchive")
        .arg("-o")
        .arg(format!("APT::FTPArchive::Release::Suite={suite}"))
        .arg("-o")
        .arg(format!("APT::FTPArchive::Release::Codename={suite}"))
        .arg("-o")
        .arg(format!(
            "APT::FTPArchive::Release::Architectures={}",
            spec.file.apt.architecture
        ))
        .args(["release", "."])
        .current_dir(&repo)
        .run()?;
    std::fs::write(repo.join("Release"), &release.stdout)?;
    Ok(repo)
}

#[derive(Debug)]
pub struct RootfsParams<'a> {
    pub spec: &'a Spec,
    pub work: &'a Path,
    pub repo: &'a Path,
    pub plan: &'a HookPlan,
    pub epoch: i64,
    pub tar: &'a Path,
}

/// Runs mmdebstrap from the local repository into `tar`.
pub fn build_tar(p: &RootfsParams, each: &dyn Fn(&str)) -> Result<()> {
    let plan_path = p.work.join("hook-plan.json");
    std::fs::write(&plan_path, serde_json::to_vec_pretty(p.plan)?)?;
    // mmdebstrap runs an executable hook file directly (no shell), with
    // the chroot as its argument: a symlink to this very binary, which
    // recognises the name.
    let hooks = p.work.join("hooks");
    std::fs::create_dir_all(&hooks)?;
    let hook = hooks.join(HOOK_NAME);
    let exe = std::env::current_exe().context("cannot find the coloc-image binary")?;
    std::os::unix::fs::symlink(&exe, &hook)?;
    // mmdebstrap builds the chroot under TMPDIR: on a tmpfs, the fsyncs of
    // dpkg and the I/O of the DKMS build cost nothing.
    let tmp = Tmpfs::mount(&p.work.join("tmp"), "mmdebstrap's chroot")?;

    let f = &p.spec.file;
    let mut cmd = Cmd::new("mmdebstrap")
        .arg("--mode=root")
        .arg("--verbose")
        .arg("--variant=minbase")
        .arg("--format=tar")
        .arg(format!("--architectures={}", f.apt.architecture))
        .arg(format!("--include={}", p.spec.install_set().join(",")));
    for pat in &f.dpkg.path_exclude {
        cmd = cmd.arg(format!("--dpkgopt=path-exclude={pat}"));
    }
    for pat in &f.dpkg.path_include {
        cmd = cmd.arg(format!("--dpkgopt=path-include={pat}"));
    }
    // The automount hooks bind-mount the repository into the chroot (apt
    // runs inside it) and unmount it in their customize step, which runs
    // before ours since it is named first.
    cmd = cmd
        .arg(format!("--hook-dir={AUTOMOUNT_HOOKS}"))
        .arg(format!("--customize-hook={}", hook.display()))
        .arg(&f.apt.suite)
        .arg(p.tar)
        .arg(format!("deb [trusted=yes] file://{} ./", p.repo.display()))
        .env("SOURCE_DATE_EPOCH", p.epoch.to_string())
        .env("TMPDIR", tmp.path())
        .env(PLAN_ENV, &plan_path)
        // DKMS builds during package installation, before our hook: the
        // kernel build system reads these for anything it stamps.
        .env("KBUILD_BUILD_TIMESTAMP", format!("@{}", p.epoch))
        .env("KBUILD_BUILD_USER", "coloc")
        .env("KBUILD_BUILD_HOST", "coloc-image");
    cmd.run_streaming(each)
        .map_err(|e| crate::lock::explain_mmdebstrap_failure(e, p.spec))?;
    tmp.unmount()?;
    Ok(())
}
