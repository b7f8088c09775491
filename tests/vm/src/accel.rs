//! Choosing QEMU's accelerator. `/dev/kvm` existing proves nothing: on the
//! build machines it opens fine and a trivial guest even runs, but the first
//! FPU instruction of a real firmware ends in "KVM internal error.
//! Suberror: 1". So the probe boots a 512-byte guest that initialises the
//! FPU, does some x87 arithmetic and then writes to QEMU's `isa-debug-exit`
//! port; only that exit status proves the accelerator works. The answer is
//! cached for the process, and `COLOC_VM_ACCEL=kvm|tcg` skips the probe.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tracing::{info, warn};

use crate::programs::command;
use crate::qemu::{QEMU, escape_opt, resolve_binary};

/// Value the probe guest writes to the debug-exit port; QEMU then exits with
/// status `(value << 1) | 1`.
const PROBE_EXIT_VALUE: u8 = 0x2a;
const PROBE_EXIT_STATUS: i32 = ((PROBE_EXIT_VALUE as i32) << 1) | 1;
/// Under a healthy accelerator the probe exits in well under a second (TCG)
/// or a few seconds (nested KVM); a hang is a verdict too.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
const KVM_INTERNAL_ERROR: &str = "KVM internal error";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// `-accel` and `-cpu` for a real VM. TCG gets one host thread per vCPU.
    pub(crate) fn vm_args(self) -> [&'static str; 4] {
        match self {
            Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
            Accel::Tcg => ["-accel", "tcg,thread=multi", "-cpu", "max"],
        }
    }

    fn probe_arg(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// What a probe run proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeVerdict {
    Works,
    Broken(String),
}

/// The accelerator for every VM of this process: KVM if the probe guest
/// reaches its known state under KVM, TCG otherwise. Probes at most once.
/// Blocks for the probe's duration on the first call.
pub fn qemu_accel() -> Accel {
    static ACCEL: OnceLock<Accel> = OnceLock::new();
    *ACCEL.get_or_init(decide)
}

fn decide() -> Accel {
    match parse_override(std::env::var("COLOC_VM_ACCEL").ok().as_deref()) {
        Ok(Some(accel)) => {
            info!(?accel, "accelerator forced by COLOC_VM_ACCEL");
            return accel;
        }
        Ok(None) => {}
        Err(e) => warn!(error = %e, "ignoring COLOC_VM_ACCEL; probing instead"),
    }
    let started = Instant::now();
    let verdict = probe_accel(Accel::Kvm);
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match verdict {
        Ok(ProbeVerdict::Works) => {
            info!(elapsed_ms, "KVM works; VMs use KVM");
            Accel::Kvm
        }
        Ok(ProbeVerdict::Broken(reason)) => {
            info!(elapsed_ms, %reason, "KVM unusable; VMs use TCG");
            Accel::Tcg
        }
        Err(e) => {
            warn!(elapsed_ms, error = %format!("{e:#}"), "KVM probe could not run; VMs use TCG");
            Accel::Tcg
        }
    }
}

/// `None` when unset or empty; an error for anything but `kvm` or `tcg`.
pub(crate) fn parse_override(value: Option<&str>) -> Result<Option<Accel>, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("kvm") => Ok(Some(Accel::Kvm)),
        Some(v) if v.eq_ignore_ascii_case("tcg") => Ok(Some(Accel::Tcg)),
        Some(other) => Err(format!(
            "COLOC_VM_ACCEL={other:?}: expected \"kvm\" or \"tcg\""
        )),
    }
}

/// Boots the probe guest under `accel` and says whether it reached the known
/// state. `Err` means the probe itself could not run (no QEMU, no temp dir).
pub fn probe_accel(accel: Accel) -> Result<ProbeVerdict> {
    if accel == Accel::Kvm
        && let Err(e) = OpenOptions::new().read(true).write(true).open("/dev/kvm")
    {
        return Ok(ProbeVerdict::Broken(format!("cannot open /dev/kvm: {e}")));
    }
    let qemu = resolve_binary(QEMU)?;
    let dir = tempfile::Builder::new()
        .prefix("coloc-vm-probe")
        .tempdir()
        .context("creating a directory for the accelerator probe")?;
    let disk = dir.path().join("probe.img");
    std::fs::File::create(&disk)
        .and_then(|mut f| f.write_all(&probe_disk()))
        .with_context(|| format!("writing {}", disk.display()))?;
    let stderr_path = dir.path().join("stderr");
    let stderr = std::fs::File::create(&stderr_path)
        .with_context(|| format!("creating {}", stderr_path.display()))?;

    // Probing which accelerator QEMU can use: the harness runs QEMU itself.
    let mut child = command(&qemu)
        .args(probe_args(accel, &disk))
        .env_clear()
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {}", qemu.display()))?;

    let deadline = Instant::now() + PROBE_TIMEOUT;
    let (code, timed_out) = loop {
        if let Some(status) = child.try_wait().context("waiting for the probe")? {
            break (status.code(), false);
        }
        // A broken KVM does not exit: QEMU reports and pauses the guest.
        let seen = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        if seen.contains(KVM_INTERNAL_ERROR) {
            kill_and_reap(&mut child);
            break (None, false);
        }
        if Instant::now() >= deadline {
            kill_and_reap(&mut child);
            break (None, true);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    Ok(classify(code, &stderr, timed_out))
}

fn kill_and_reap(child: &mut std::process::Child) {
    if let Err(e) = child.kill() {
        warn!(error = %e, "killing the accelerator probe");
    }
    if let Err(e) = child.wait() {
        warn!(error = %e, "reaping the accelerator probe");
    }
}

fn probe_args(accel: Accel, disk: &Path) -> Vec<OsString> {
    let mut drive = OsString::from("file=");
    drive.push(escape_opt(disk.as_os_str()));
    drive.push(",format=raw,if=none,id=probe");
    let mut args: Vec<OsString> = [
        "-accel",
        accel.probe_arg(),
        "-machine",
        "q35",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-m",
        "32",
        "-drive",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.push(drive);
    for a in [
        "-device",
        "ide-hd,drive=probe,bootindex=0",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
    ] {
        args.push(a.into());
    }
    args
}

/// A 1 MiB disk whose boot sector exercises the x87 FPU (the instructions
/// a broken nested KVM cannot emulate) and then exits QEMU through the
/// debug-exit port. SeaBIOS refuses to boot a disk smaller than a track,
/// hence the padding.
pub(crate) fn probe_disk() -> Vec<u8> {
    let code: [u8; 18] = [
        0x9b,
        0xdb,
        0xe3, // finit
        0xd9,
        0xe8, // fld1
        0xd9,
        0xeb, // fldpi
        0xde,
        0xc9, // fmulp
        0xdd,
        0xd8, // fstp st(0)
        0xb0,
        PROBE_EXIT_VALUE, // mov al, PROBE_EXIT_VALUE
        0xe6,
        0xf4, // out 0xf4, al
        0xf4, // hlt (not reached: QEMU has exited)
        0xeb,
        0xfd, // jmp back to hlt
    ];
    let mut disk = vec![0u8; 1024 * 1024];
    disk[..code.len()].copy_from_slice(&code);
    disk[510] = 0x55;
    disk[511] = 0xaa;
    disk
}

/// Reads a probe run: only the debug-exit status proves the guest ran.
pub(crate) fn classify(code: Option<i32>, stderr: &str, timed_out: bool) -> ProbeVerdict {
    if code == Some(PROBE_EXIT_STATUS) {
        return ProbeVerdict::Works;
    }
    if stderr.contains(KVM_INTERNAL_ERROR) {
        let detail = stderr
            .lines()
            .find(|l| l.contains(KVM_INTERNAL_ERROR))
            .unwrap_or(KVM_INTERNAL_ERROR);
        return ProbeVerdict::Broken(detail.trim().to_string());
    }
    if timed_out {
        return ProbeVerdict::Broken(format!(
            "probe guest did not reach its known state within {}s",
            PROBE_TIMEOUT.as_secs()
        ));
    }
    let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    ProbeVerdict::Broken(format!(
        "probe exited with {}: {}",
        code.map_or_else(|| "a signal".to_string(), |c| format!("status {c}")),
        tail.join(" | ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded on the build machine: `-accel kvm` with this probe disk.
    const KVM_BROKEN_STDERR: &str = "qemu-system-x86_64: warning: host doesn't support requested feature: CPUID.01H:ECX.pni [bit 0]\n\
KVM internal error. Suberror: 1\n\
extra data[0]: 0x0000000000000001\n\
emulation failure\n\
EAX=00000000 EBX=00807000 ECX=00000001 EDX=00807154\n";

    #[test]
    fn the_debug_exit_status_means_it_works() {
        assert_eq!(PROBE_EXIT_STATUS, 85);
        assert_eq!(classify(Some(85), "", false), ProbeVerdict::Works);
        // Warnings on stderr do not matter once the guest reached its state.
        assert_eq!(
            classify(Some(85), "warning: host doesn't support pni", false),
            ProbeVerdict::Works
        );
    }

    #[test]
    fn a_kvm_internal_error_is_broken_with_the_reason() {
        let v = classify(None, KVM_BROKEN_STDERR, false);
        assert_eq!(
            v,
            ProbeVerdict::Broken("KVM internal error. Suberror: 1".into())
        );
    }

    #[test]
    fn a_hang_or_another_exit_is_broken() {
        assert!(
            matches!(classify(None, "", true), ProbeVerdict::Broken(r) if r.contains("did not reach"))
        );
        let v = classify(
            Some(1),
            "qemu-system-x86_64: -accel kvm: Could not access KVM kernel module: No such file or directory\n",
            false,
        );
        assert!(
            matches!(&v, ProbeVerdict::Broken(r) if r.contains("status 1") && r.contains("Could not access KVM")),
            "{v:?}"
        );
        assert!(
            matches!(classify(None, "", false), ProbeVerdict::Broken(r) if r.contains("signal"))
        );
    }

    #[test]
    fn override_parsing() {
        assert_eq!(parse_override(None), Ok(None));
        assert_eq!(parse_override(Some("")), Ok(None));
        assert_eq!(parse_override(Some("kvm")), Ok(Some(Accel::Kvm)));
        assert_eq!(parse_override(Some(" TCG ")), Ok(Some(Accel::Tcg)));
        assert!(parse_override(Some("hvf")).is_err());
    }

    #[test]
    fn probe_disk_is_a_bootable_sector_ending_in_debug_exit() {
        let disk = probe_disk();
        assert_eq!(disk.len(), 1024 * 1024);
        assert_eq!(&disk[510..512], &[0x55, 0xaa]);
        // `mov al, 0x2a; out 0xf4, al` must be there, after the FPU work.
        let code = &disk[..32];
        let out = code
            .windows(4)
            .position(|w| w == [0xb0, PROBE_EXIT_VALUE, 0xe6, 0xf4])
            .expect("debug-exit write");
        assert!(code[..out].starts_with(&[0x9b, 0xdb, 0xe3]), "finit first");
    }

    #[test]
    fn probe_args_escape_the_disk_path_and_use_debug_exit() {
        let args = probe_args(Accel::Kvm, Path::new("/tmp/a,b/probe.img"));
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.contains(&"file=/tmp/a,,b/probe.img,format=raw,if=none,id=probe".into()));
        assert!(args.windows(2).any(|w| w == ["-accel", "kvm"]));
        assert!(args.contains(&"isa-debug-exit,iobase=0xf4,iosize=0x04".into()));
    }
}
