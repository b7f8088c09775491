//! `coloc-image build`: the whole pipeline from spec to disk image, in
//! stages the user sees — packages into the cache, local repository,
//! mmdebstrap with the customize hook, tree on tmpfs, ext4, ESP, GPT — each
//! writing only inside the work directory, then the image written as
//! `<out>.partial` and renamed into place at the very end. Any error removes
//! the partial file and the work directory: no half-written image is ever
//! left under the output name.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};

use crate::cache::DebCache;
use crate::digest::{derived_uuid, derived_volume_id, sha256_file};
use crate::hook::HookPlan;
use crate::inputs::{Epoch, source_date_epoch, units_to_enable};
use crate::lockfile::Lock;
use crate::progress::{Progress, human_bytes, stamp};
use crate::spec::Spec;
use crate::workdir::{Tmpfs, WorkDir};
use crate::{esp, ext4, gpt, hook, rootfs, tree};

const MIB: u64 = 1 << 20;

#[derive(Debug)]
pub struct BuildOptions {
    pub spec: PathBuf,
    pub out: PathBuf,
    pub agent: PathBuf,
    pub cache: DebCache,
    pub work_dir: Option<PathBuf>,
    pub keep_work_dir: bool,
    pub manifest: Option<PathBuf>,
    pub verbose: bool,
}

/// What a finished build reports.
#[derive(Debug)]
pub struct Summary {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    pub seconds: f64,
}

/// Removes `<out>.partial` unless the build got to the rename.
struct PartialFile {
    path: PathBuf,
    done: bool,
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.done
            && let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("coloc-image: cannot remove {}: {e}", self.path.display());
        }
    }
}

pub fn build(opts: &BuildOptions) -> Result<Summary> {
    let progress = Progress::new();
    progress.stage(&format!("reading {}", opts.spec.display()));
    let spec = Spec::load(&opts.spec)?;
    let lock = Lock::load_for(&spec.lock_path(), &spec.path, &spec.package_set_digest())?;
    let epoch = source_date_epoch(&spec.dir())?;
    let agent = opts.agent.canonicalize().with_context(|| {
        format!(
            "the coloc-agent binary {} is missing; build it with \
                 `cargo build --release -p coloc-agent` or pass --agent",
            opts.agent.display()
        )
    })?;
    let overlay = spec.overlay_dir();
    if !overlay.is_dir() {
        bail!(
            "the rootfs overlay {} (rootfs.overlay in {}) is not a directory",
            overlay.display(),
            spec.path.display()
        );
    }
    let overlay = overlay.canonicalize()?;
    let units = units_to_enable(&overlay)?;
    progress.note(&format!(
        "{} locked packages; SOURCE_DATE_EPOCH={} ({}); {} units to enable",
        lock.packages.len(),
        epoch.seconds,
        epoch.origin,
        units.len()
    ));

    let out = absolute(&opts.out)?;
    let partial = PartialFile {
        path: partial_path(&out),
        done: false,
    };
    let mut work = WorkDir::create(opts.work_dir.as_deref(), "coloc-image")?;
    if opts.keep_work_dir {
        work.keep();
    }
    let result = build_in(
        opts,
        &spec,
        &lock,
        &epoch,
        &agent,
        &overlay,
        units,
        &work,
        &partial.path,
        &progress,
    );
    match result {
        Ok(()) => {
            let mut partial = partial;
            progress.stage("checksumming the image");
            let sha256 = sha256_file(&partial.path)?;
            let size = std::fs::metadata(&partial.path)?.len();
            std::fs::rename(&partial.path, &out)
                .with_context(|| format!("cannot move the image to {}", out.display()))?;
            partial.done = true;
            Ok(Summary {
                path: out,
                size,
                sha256,
                seconds: progress.elapsed().as_secs_f64(),
            })
        }
        Err(e) => Err(e),
    }
}

#[allow(clippy::too_many_arguments)]
fn build_in(
    opts: &BuildOptions,
    spec: &Spec,
    lock: &Lock,
    epoch: &Epoch,
    agent: &Path,
    overlay: &Path,
    units: Vec<String>,
    work: &WorkDir,
    partial: &Path,
    progress: &Progress,
) -> Result<()> {
    let w = work.path();

    progress.stage("checking the package cache");
    ensure_cached(lock, &opts.cache, progress)?;

    progress.stage("making the local repository from the lockfile");
    // Under /tmp whatever the work directory: mmdebstrap makes the
    // repository's path inside the chroot too (to bind-mount it there), and
    // under /tmp those directories are certain to go (see hook.rs).
    let repo_work = WorkDir::create(Some(Path::new(rootfs::REPO_PARENT)), "coloc-repo")?;
    let repo = rootfs::make_repository(repo_work.path(), spec, lock, &opts.cache)?;

    progress.stage("installing the root filesystem (mmdebstrap; DKMS builds ZFS here)");
    let plan = HookPlan {
        source_date_epoch: epoch.seconds,
        dkms_modules: spec.file.build.dkms_modules.clone(),
        build_packages: spec.file.build.packages.clone(),
        stash_dir: w.join("stash"),
        overlay_dir: overlay.to_owned(),
        agent: agent.to_owned(),
        sources_list: spec
            .sources()
            .iter()
            .map(|s| format!("{}\n", s.line()))
            .collect(),
        units,
        repo_dir: repo.clone(),
    };
    let tar = w.join("rootfs.tar");
    let verbose = opts.verbose;
    let rootfs_progress = |line: &str| {
        if verbose || crate::progress::is_milestone(line) {
            progress.note(line);
        }
    };
    rootfs::build_tar(
        &rootfs::RootfsParams {
            spec,
            work: w,
            repo: &repo,
            plan: &plan,
            epoch: epoch.seconds,
            tar: &tar,
        },
        &rootfs_progress,
    )?;
    // The repository and the tar's source are no longer needed; free the
    // space before the tree and the filesystem images take theirs.
    drop(repo_work);

    progress.stage("extracting the tree onto a tmpfs (sorted order)");
    let tmpfs = Tmpfs::mount(&w.join("tree"), "the root tree")?;
    let root = tmpfs.path().to_owned();
    tree::extract(&tar, &root)?;
    std::fs::remove_file(&tar)?;
    tree::finish(&root)?;
    let stats = tree::clamp_and_measure(&root, epoch.seconds)?;
    progress.note(&format!(
        "{} entries, {} of content, {} times clamped",
        stats.inodes,
        human_bytes(stats.bytes),
        stats.clamped
    ));
    if let Some(path) = &opts.manifest {
        std::fs::write(path, tree::manifest(&root)?)
            .with_context(|| format!("cannot write the manifest {}", path.display()))?;
        progress.note(&format!("manifest written to {}", path.display()));
    }
    let kver = hook::kernel_version(&root)?;
    let boot = tree::boot_files(&root, &kver)?;

    let seed = &spec.digest;
    progress.stage("making the EFI system partition");
    let esp_img = w.join("esp.img");
    let esp_size = spec.file.disk.esp_mib * MIB;
    esp::make(&esp::EspParams {
        image: &esp_img,
        size_bytes: esp_size,
        volume_id: &derived_volume_id(seed, "esp"),
        epoch: epoch.seconds,
        boot: &boot,
        image_name: &spec.file.name,
        scratch: w,
    })?;

    let root_size = ext4::filesystem_size(stats.bytes, stats.inodes, spec.file.disk.root_slack_mib);
    progress.stage(&format!(
        "making the ext4 root filesystem ({})",
        human_bytes(root_size)
    ));
    let root_img = w.join("root.img");
    ext4::make(&ext4::Ext4Params {
        tree: &root,
        image: &root_img,
        size_bytes: root_size,
        uuid: &derived_uuid(seed, "root filesystem"),
        hash_seed: &derived_uuid(seed, "root filesystem hash seed"),
        epoch: epoch.seconds,
        scratch: w,
    })?;
    tmpfs.unmount()?;

    progress.stage("writing the GPT disk image");
    let layout = gpt::Layout::new(esp_size, root_size)?;
    let ids = gpt::DiskIds {
        disk: derived_uuid(seed, "disk"),
        esp: derived_uuid(seed, "esp partition"),
        root: derived_uuid(seed, "root partition"),
    };
    gpt::partition(partial, &layout, &ids)?;
    gpt::write_at(partial, layout.esp_offset, layout.esp_size, &esp_img)?;
    gpt::write_at(partial, layout.root_offset, layout.root_size, &root_img)?;
    Ok(())
}

/// Makes sure every locked package is in the cache, downloading the
/// missing ones from their mirror.
fn ensure_cached(lock: &Lock, cache: &DebCache, progress: &Progress) -> Result<()> {
    let mut missing = Vec::new();
    for p in &lock.packages {
        if !cache.holds(&p.sha256)? {
            missing.push(p);
        }
    }
    if missing.is_empty() {
        progress.note(&format!(
            "all {} packages cached in {}",
            lock.packages.len(),
            cache.root().display()
        ));
        return Ok(());
    }
    let total: u64 = missing.iter().map(|p| p.size).sum();
    progress.note(&format!(
        "{} of {} packages to download ({})",
        missing.len(),
        lock.packages.len(),
        human_bytes(total)
    ));
    // A few downloads at a time: most packages are small, and one at a
    // time the round trips dominate.
    const PARALLEL: usize = 4;
    let started = std::time::Instant::now();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let state = Mutex::new((0usize, 0u64, None::<anyhow::Error>));
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL.min(missing.len()) {
            scope.spawn(|| {
                while !failed.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(p) = missing.get(i) else { break };
                    let result = cache.fetch(p);
                    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                    match result {
                        Ok(()) => {
                            st.0 += 1;
                            st.1 += p.size;
                            let n = st.0;
                            if n == missing.len() || n.is_multiple_of(25) {
                                progress.note(&format!(
                                    "downloaded {n}/{} ({} of {}) in {}",
                                    missing.len(),
                                    human_bytes(st.1),
                                    human_bytes(total),
                                    stamp(started.elapsed()).trim()
                                ));
                            }
                        }
                        Err(e) => {
                            failed.store(true, Ordering::SeqCst);
                            if st.2.is_none() {
                                st.2 = Some(e);
                            }
                        }
                    }
                }
            });
        }
    });
    let (_, _, error) = state.into_inner().unwrap_or_else(|e| e.into_inner());
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_owned();
    name.push(".partial");
    out.with_file_name(name)
}

fn absolute(p: &Path) -> Result<PathBuf> {
    let p = if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir()?.join(p)
    };
    if p.file_name().is_none() {
        bail!("the output {} names no file", p.display());
    }
    if let Some(parent) = p.parent()
        && !parent.is_dir()
    {
        bail!("the output directory {} does not exist", parent.display());
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_names_sit_beside_the_output() {
        assert_eq!(
            partial_path(Path::new("/tmp/node.img")),
            Path::new("/tmp/node.img.partial")
        );
    }

    #[test]
    fn partial_file_is_removed_unless_done() {
        let t = tempfile::tempdir().expect("tempdir");
        let p = t.path().join("x.partial");
        std::fs::write(&p, b"half").expect("write");
        drop(PartialFile {
            path: p.clone(),
            done: false,
        });
        assert!(!p.exists());
        std::fs::write(&p, b"whole").expect("write");
        drop(PartialFile {
            path: p.clone(),
            done: true,
        });
        assert!(p.exists());
    }
}
