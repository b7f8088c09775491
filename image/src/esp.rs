//! The EFI system partition, built in userspace (the build host has no vfat
//! driver): `mkfs.vfat --invariant` with a volume id derived from the spec,
//! then files added with mtools under SOURCE_DATE_EPOCH (which mtools uses
//! for the directory entries it creates) and `mcopy -m` (keeping the
//! source's clamped mtime). Content per docs/IMAGE.md: systemd-boot as
//! EFI/BOOT/BOOTX64.EFI, loader/loader.conf, loader/entries/coloc.conf, the
//! kernel as /vmlinuz and the initramfs as /initrd.img.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::runner::Cmd;
use crate::tree::BootFiles;

/// The kernel command line fixed by docs/IMAGE.md.
pub const KERNEL_CMDLINE: &str = "root=PARTLABEL=coloc-root rw console=tty0 console=ttyS0,115200";
pub const ENTRY_NAME: &str = "coloc.conf";

/// systemd-boot's loader.conf: boot the one entry at once, no editor (the
/// command line is not for anyone at the console to change).
pub fn loader_conf() -> String {
    format!("default {ENTRY_NAME}\ntimeout 0\neditor no\nconsole-mode keep\n")
}

/// The Boot Loader Specification entry for the image's kernel.
pub fn loader_entry(image_name: &str, kernel_version: &str) -> String {
    format!(
        "title   {image_name}\n\
         version {kernel_version}\n\
         linux   /vmlinuz\n\
         initrd  /initrd.img\n\
         options {KERNEL_CMDLINE}\n"
    )
}

#[derive(Debug)]
pub struct EspParams<'a> {
    pub image: &'a Path,
    pub size_bytes: u64,
    pub volume_id: &'a str,
    pub epoch: i64,
    pub boot: &'a BootFiles,
    pub image_name: &'a str,
    /// Scratch directory for the generated loader files.
    pub scratch: &'a Path,
}

pub fn make(p: &EspParams) -> Result<()> {
    let _ = std::fs::remove_file(p.image);
    let file = std::fs::File::create(p.image)
        .with_context(|| format!("cannot create {}", p.image.display()))?;
    file.set_len(p.size_bytes)?;
    drop(file);
    Cmd::new("mkfs.vfat")
        .args([
            "--invariant",
            "-F",
            "32",
            "-S",
            "512",
            "-n",
            "ESP",
            "-i",
            p.volume_id,
        ])
        .arg(p.image)
        .run()
        .context("mkfs.vfat could not make the EFI system partition")?;

    let staging = p.scratch.join("esp");
    std::fs::create_dir_all(&staging)?;
    let conf = write_clamped(&staging, "loader.conf", &loader_conf(), p.epoch)?;
    let entry = write_clamped(
        &staging,
        ENTRY_NAME,
        &loader_entry(p.image_name, &p.boot.version),
        p.epoch,
    )?;

    mtools(
        p,
        "mmd",
        &["::/EFI", "::/EFI/BOOT", "::/loader", "::/loader/entries"],
    )?;
    mcopy(p, &p.boot.systemd_boot, "::/EFI/BOOT/BOOTX64.EFI")?;
    mcopy(p, &conf, "::/loader/loader.conf")?;
    mcopy(p, &entry, &format!("::/loader/entries/{ENTRY_NAME}"))?;
    mcopy(p, &p.boot.kernel, "::/vmlinuz")?;
    mcopy(p, &p.boot.initrd, "::/initrd.img")?;
    Ok(())
}

fn mtools(p: &EspParams, tool: &str, args: &[&str]) -> Result<()> {
    Cmd::new(tool)
        .arg("-i")
        .arg(p.image)
        .args(args)
        .env("SOURCE_DATE_EPOCH", p.epoch.to_string())
        .env("MTOOLS_SKIP_CHECK", "1")
        .run()?;
    Ok(())
}

fn mcopy(p: &EspParams, src: &Path, dest: &str) -> Result<()> {
    let meta = std::fs::metadata(src).with_context(|| format!("cannot read {}", src.display()))?;
    if meta.len() > p.size_bytes / 2 {
        bail!(
            "{} ({} bytes) does not fit the EFI system partition; raise disk.esp_mib",
            src.display(),
            meta.len()
        );
    }
    Cmd::new("mcopy")
        .args(["-m", "-i"])
        .arg(p.image)
        .arg(src)
        .arg(dest)
        .env("SOURCE_DATE_EPOCH", p.epoch.to_string())
        .env("MTOOLS_SKIP_CHECK", "1")
        .run()?;
    Ok(())
}

fn write_clamped(dir: &Path, name: &str, text: &str, epoch: i64) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch.max(0) as u64);
    let f = std::fs::File::options().write(true).open(&path)?;
    f.set_times(std::fs::FileTimes::new().set_accessed(t).set_modified(t))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_entry_follows_the_contract() {
        let e = loader_entry("coloc-node", "6.1.0-28-cloud-amd64");
        assert_eq!(
            e,
            "title   coloc-node\n\
             version 6.1.0-28-cloud-amd64\n\
             linux   /vmlinuz\n\
             initrd  /initrd.img\n\
             options root=PARTLABEL=coloc-root rw console=tty0 console=ttyS0,115200\n"
        );
        assert!(loader_conf().starts_with("default coloc.conf\n"));
    }

    #[test]
    fn esp_is_reproducible_and_holds_the_boot_files() {
        for tool in ["mkfs.vfat", "mcopy", "mdir"] {
            if crate::runner::resolve(tool).is_err() {
                eprintln!("{tool} missing; skipped");
                return;
            }
        }
        let t = tempfile::tempdir().expect("tempdir");
        let src = t.path().join("src");
        std::fs::create_dir_all(&src).expect("mkdir");
        let epoch = 1_700_000_000;
        let mk = |name: &str| write_clamped(&src, name, name, epoch).expect("write");
        let boot = BootFiles {
            version: "6.1.0-28-cloud-amd64".into(),
            kernel: mk("vmlinuz"),
            initrd: mk("initrd"),
            systemd_boot: mk("systemd-bootx64.efi"),
        };
        let mut hashes = Vec::new();
        for i in 0..2 {
            let img = t.path().join(format!("esp{i}.img"));
            let scratch = t.path().join(format!("s{i}"));
            std::fs::create_dir_all(&scratch).expect("mkdir");
            make(&EspParams {
                image: &img,
                size_bytes: 64 << 20,
                volume_id: "c010c010",
                epoch,
                boot: &boot,
                image_name: "coloc-node",
                scratch: &scratch,
            })
            .expect("esp");
            hashes.push(crate::digest::sha256_file(&img).expect("hash"));
        }
        assert_eq!(hashes[0], hashes[1]);
        let listing = Cmd::new("mdir")
            .args(["-/", "-b", "-i"])
            .arg(t.path().join("esp0.img"))
            .arg("::/")
            .env("MTOOLS_SKIP_CHECK", "1")
            .run()
            .expect("mdir")
            .stdout_str();
        for f in [
            "::/EFI/BOOT/BOOTX64.EFI",
            "::/loader/loader.conf",
            "::/loader/entries/coloc.conf",
            "::/vmlinuz",
            "::/initrd.img",
        ] {
            assert!(listing.contains(f), "{f} missing from {listing}");
        }
    }
}
