//! `coloc-image lock`: resolves the spec's package set against the real
//! mirrors by running the same mmdebstrap installation a build runs, keeps
//! every .deb it downloaded (`--skip=essential/unlink` and a `sync-out` of
//! apt's archive cache) together with apt's index files, and pins each
//! package by the archive's own Filename and SHA-256 in the lockfile. The
//! downloaded files go into the content-addressed cache, so the first build
//! after a lock downloads nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cache::DebCache;
use crate::index::{IndexEntry, list_prefix, parse_deb_fields, parse_packages};
use crate::lockfile::{Lock, LockedPackage};
use crate::progress::{Progress, human_bytes};
use crate::runner::{Cmd, CmdError};
use crate::spec::Spec;
use crate::workdir::{Tmpfs, WorkDir};

const APT_HELPER: &str = "/usr/lib/apt/apt-helper";

#[derive(Debug)]
pub struct LockOptions {
    pub spec: PathBuf,
    pub out: Option<PathBuf>,
    pub cache: DebCache,
    pub work_dir: Option<PathBuf>,
    pub verbose: bool,
}

pub fn run(opts: LockOptions) -> Result<()> {
    let progress = Progress::new();
    let spec = Spec::load(&opts.spec)?;
    let out = opts.out.clone().unwrap_or_else(|| spec.lock_path());
    let work = WorkDir::create(opts.work_dir.as_deref(), "coloc-lock")?;
    let debs = work.path().join("debs");
    let lists = work.path().join("lists");
    std::fs::create_dir_all(&debs)?;
    std::fs::create_dir_all(&lists)?;
    let chroot_tmp = Tmpfs::mount(&work.path().join("tmp"), "mmdebstrap's chroot")?;

    progress.stage(&format!(
        "resolving {} packages against {} (mmdebstrap, minbase; this installs them, DKMS included)",
        spec.install_set().len(),
        spec.sources()
            .iter()
            .map(|s| format!("{} {}", s.uri, s.suite))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut cmd = Cmd::new("mmdebstrap")
        .arg("--mode=root")
        .arg("--verbose")
        .arg("--variant=minbase")
        .arg("--format=null")
        .arg(format!("--architectures={}", spec.file.apt.architecture))
        .arg(format!("--include={}", spec.install_set().join(",")))
        .arg("--skip=essential/unlink")
        .arg(format!(
            "--customize-hook=sync-out /var/cache/apt/archives {}",
            debs.display()
        ))
        .arg(format!(
            "--customize-hook=sync-out /var/lib/apt/lists {}",
            lists.display()
        ))
        .env("TMPDIR", chroot_tmp.path())
        .arg(&spec.file.apt.suite)
        .arg("/dev/null");
    for s in spec.sources() {
        cmd = cmd.arg(s.line());
    }
    let verbose = opts.verbose;
    cmd.run_streaming(|line| {
        if verbose || crate::progress::is_milestone(line) {
            progress.note(line);
        }
    })
    .map_err(|e| explain_mmdebstrap_failure(e, &spec))?;

    chroot_tmp.unmount()?;

    progress.stage("pinning the downloaded packages to the archive's indexes");
    let index = read_indexes(&lists, &spec)?;
    let mut packages = Vec::new();
    let mut total = 0u64;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&debs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("mmdebstrap finished but left no .deb in {}", debs.display());
    }
    for file in &files {
        let fields = Cmd::new("dpkg-deb")
            .arg("--field")
            .arg(file)
            .args(["Package", "Version", "Architecture"])
            .run()?
            .stdout_str();
        let Some((name, version, arch)) = parse_deb_fields(&fields) else {
            bail!("cannot read the control fields of {}", file.display());
        };
        let key = (name.clone(), version.clone(), arch.clone());
        let Some((mirror, entry)) = index.get(&key) else {
            bail!(
                "{name} {version} ({arch}) was installed but is in none of the indexes of {}",
                spec.path.display()
            );
        };
        let sha = opts.cache.insert(file)?;
        if sha != entry.sha256 {
            bail!(
                "{} has SHA-256 {sha} but the index says {}: the mirror changed during the lock; run it again",
                file.display(),
                entry.sha256
            );
        }
        total += entry.size;
        packages.push(LockedPackage {
            name,
            version,
            architecture: arch,
            sha256: sha,
            size: entry.size,
            mirror: mirror.clone(),
            filename: entry.filename.clone(),
            priority: entry.priority.clone(),
            section: entry.section.clone(),
        });
    }
    let lock = Lock::new(spec.package_set_digest(), packages);
    let text = lock.to_toml(&spec.path);
    let tmp = out.with_extension("lock.partial");
    std::fs::write(&tmp, &text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &out).with_context(|| format!("cannot write {}", out.display()))?;
    progress.stage(&format!(
        "locked {} packages ({}) in {}; they are cached in {}",
        lock.packages.len(),
        human_bytes(total),
        out.display(),
        opts.cache.root().display()
    ));
    Ok(())
}

type IndexMap = HashMap<(String, String, String), (String, IndexEntry)>;

/// Reads every Packages index apt fetched, keyed by (name, version, arch),
/// each with the mirror it came from.
fn read_indexes(lists: &Path, spec: &Spec) -> Result<IndexMap> {
    let mirrors: Vec<(String, String)> = spec
        .sources()
        .into_iter()
        .map(|s| (format!("{}_dists_", list_prefix(&s.uri)), s.uri))
        .collect();
    let mut map = IndexMap::new();
    // Indexes are read in the spec's source order, so that a version that
    // several mirrors carry is pinned to the first (the main mirror).
    let mut names: Vec<(usize, String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(lists)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if !name.contains("_Packages") {
            continue;
        }
        match mirrors
            .iter()
            .position(|(prefix, _)| name.starts_with(prefix))
        {
            Some(i) => names.push((i, name, path)),
            None => tracing::debug!(file = %name, "index from no configured mirror; ignored"),
        }
    }
    names.sort();
    for (i, _, path) in names {
        let mirror = &mirrors[i].1;
        // apt may keep indexes compressed; apt-helper reads any of them.
        let text = Cmd::new(APT_HELPER)
            .arg("cat-file")
            .arg(&path)
            .run()?
            .stdout_str();
        for entry in parse_packages(&text).with_context(|| format!("in {}", path.display()))? {
            let key = (
                entry.name.clone(),
                entry.version.clone(),
                entry.architecture.clone(),
            );
            map.entry(key).or_insert_with(|| (mirror.clone(), entry));
        }
    }
    if map.is_empty() {
        bail!("apt fetched no Packages index from the spec's mirrors");
    }
    Ok(map)
}

/// Turns the usual mmdebstrap failures into one clear paragraph.
pub fn explain_mmdebstrap_failure(e: CmdError, spec: &Spec) -> anyhow::Error {
    let tail = e.tail().to_owned();
    if let Some(line) = tail
        .lines()
        .find(|l| l.contains("Unable to locate package"))
    {
        let pkg = line.rsplit(' ').next().unwrap_or("?");
        return anyhow::anyhow!(
            "package {pkg} does not exist in {} ({}); fix the package list in {}.",
            spec.file.apt.suite,
            spec.file.apt.components.join(", "),
            spec.path.display()
        );
    }
    if tail.contains("has no installation candidate")
        || tail.contains("Unmet dependencies")
        || tail.contains("held broken packages")
    {
        return anyhow::Error::new(e).context(format!(
            "apt cannot install the package set of {}; see the lines above.",
            spec.path.display()
        ));
    }
    if tail.contains("apt-get update")
        || tail.contains("Could not resolve")
        || tail.contains("Failed to fetch")
        || tail.contains("Temporary failure")
        || tail.contains("Could not connect")
    {
        return anyhow::Error::new(e).context(format!(
            "cannot reach the mirror ({}); check the network or the `apt.mirror` in {}.",
            spec.file.apt.mirror,
            spec.path.display()
        ));
    }
    anyhow::Error::new(e).context("mmdebstrap failed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn spec() -> Spec {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/node.toml");
        Spec::load(&path).expect("node spec")
    }

    fn failed(tail: &str) -> CmdError {
        CmdError::Failed {
            command: "mmdebstrap ...".into(),
            status: std::process::ExitStatus::from_raw(256),
            tail: tail.into(),
        }
    }

    #[test]
    fn mmdebstrap_failures_become_one_clear_paragraph() {
        let e = explain_mmdebstrap_failure(
            failed("E: Unable to locate package zfsutils-linuxx\nE: apt-get install failed"),
            &spec(),
        );
        let msg = format!("{e:#}");
        assert!(
            msg.starts_with("package zfsutils-linuxx does not exist in bookworm (main, contrib)"),
            "{msg}"
        );

        let e = explain_mmdebstrap_failure(
            failed(
                "W: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Could not resolve 'deb.debian.org'\nE: apt-get update failed",
            ),
            &spec(),
        );
        let msg = format!("{e:#}");
        assert!(
            msg.starts_with("cannot reach the mirror (http://deb.debian.org/debian)"),
            "{msg}"
        );
        assert!(msg.contains("Could not resolve"), "the cause stays: {msg}");

        let e = explain_mmdebstrap_failure(failed("E: something else"), &spec());
        assert!(format!("{e:#}").starts_with("mmdebstrap failed"));
    }
}
