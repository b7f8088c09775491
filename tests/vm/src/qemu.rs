//! QEMU's command line, built as an argument vector from a [`Launch`], plus
//! the host tools around it (`qemu-img`, OVMF files). Every value that lands
//! inside one of QEMU's `key=value,key=value` option strings goes through
//! [`escape_opt`], so a path with a comma cannot add an option.
//!
//! Device layout: the image, the seed, the NIC and an RNG sit on the root
//! complex (not hot-pluggable, like a real board); each extra disk gets its
//! own `pcie-root-port`, which is what makes `device_del` work on q35.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use tokio::process::Command;

use crate::accel::Accel;
use crate::programs::command;
use crate::spec::{Boot, DiskKind, DiskSpec};

pub(crate) const QEMU: &str = "qemu-system-x86_64";
pub(crate) const QEMU_IMG: &str = "qemu-img";

/// Device ids the harness gives its own devices (disk ids may not use the
/// `coloc-` prefix, see `spec::check_device_id`).
pub(crate) const ROOT_DEVICE: &str = "coloc-root";
pub(crate) const SEED_DEVICE: &str = "coloc-seed";
pub(crate) const CONSOLE_CHARDEV: &str = "coloc-console";
pub(crate) const QMP_CHARDEV: &str = "coloc-qmp";

/// Finds `name` in PATH, or explains which package provides it.
pub(crate) fn resolve_binary(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let hint = match name {
        QEMU => " (apt-get install -t bookworm-backports qemu-system-x86)",
        QEMU_IMG => " (apt-get install -t bookworm-backports qemu-utils)",
        "ssh" => " (apt-get install openssh-client)",
        _ => "",
    };
    bail!("{name} not found in PATH{hint}")
}

/// Escapes a value for QEMU's option syntax, where `,` separates options
/// and `,,` stands for a literal comma.
pub(crate) fn escape_opt(value: &OsStr) -> OsString {
    let mut out = Vec::with_capacity(value.len());
    for &b in value.as_bytes() {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

/// OVMF from Debian's `ovmf` package, or `COLOC_OVMF_CODE` /
/// `COLOC_OVMF_VARS` where another distribution puts it elsewhere.
#[derive(Debug, Clone)]
pub(crate) struct Firmware {
    pub code: PathBuf,
    pub vars_template: PathBuf,
}

impl Firmware {
    pub(crate) fn find() -> Result<Firmware> {
        let pick = |var: &str, default: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(default))
        };
        let fw = Firmware {
            code: pick("COLOC_OVMF_CODE", "/usr/share/OVMF/OVMF_CODE_4M.fd"),
            vars_template: pick("COLOC_OVMF_VARS", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
        };
        for f in [&fw.code, &fw.vars_template] {
            if !f.is_file() {
                bail!(
                    "UEFI firmware file {} not found (apt-get install -t bookworm-backports ovmf, \
                     or set COLOC_OVMF_CODE / COLOC_OVMF_VARS)",
                    f.display()
                );
            }
        }
        Ok(fw)
    }
}

/// A disk as attached for this launch: its spec, the file backing it and
/// the root port it sits on (stable across restarts, so the guest sees the
/// remaining disks at the same PCI addresses).
#[derive(Debug, Clone)]
pub(crate) struct AttachedDisk {
    pub spec: DiskSpec,
    pub file: PathBuf,
    pub port: usize,
}

/// A resolved host-to-guest forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PortForward {
    pub host: u16,
    pub guest: u16,
}

/// Everything one QEMU invocation needs, resolved to files and ports.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub name: String,
    pub accel: Accel,
    pub cpus: u32,
    pub memory_mib: u32,
    pub boot: Boot,
    /// OVMF code (read-only) and this VM's variable store; UEFI boot only.
    pub firmware: Option<(PathBuf, PathBuf)>,
    pub overlay: PathBuf,
    pub seed: Option<PathBuf>,
    pub disks: Vec<AttachedDisk>,
    pub forwards: Vec<PortForward>,
    pub console: PathBuf,
    pub qmp: PathBuf,
}

fn kv(prefix: &str, value: &OsStr, suffix: &str) -> OsString {
    let mut s = OsString::from(prefix);
    s.push(escape_opt(value));
    s.push(suffix);
    s
}

impl Launch {
    pub(crate) fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(OsString::from));
        push(&["-name", &format!("guest={}", self.name)]);
        push(&["-no-user-config", "-nodefaults", "-display", "none"]);
        push(&["-machine", "q35"]);
        push(&self.accel.vm_args());
        push(&["-smp", &self.cpus.to_string()]);
        push(&["-m", &self.memory_mib.to_string()]);

        match &self.boot {
            Boot::Uefi => {
                if let Some((code, vars)) = &self.firmware {
                    a.push("-drive".into());
                    a.push(kv(
                        "if=pflash,format=raw,unit=0,readonly=on,file=",
                        code.as_os_str(),
                        "",
                    ));
                    a.push("-drive".into());
                    a.push(kv(
                        "if=pflash,format=raw,unit=1,file=",
                        vars.as_os_str(),
                        "",
                    ));
                }
            }
            Boot::Kernel {
                kernel,
                initrd,
                append,
            } => {
                // -kernel/-initrd/-append take plain values, not option strings.
                a.push("-kernel".into());
                a.push(kernel.into());
                if let Some(initrd) = initrd {
                    a.push("-initrd".into());
                    a.push(initrd.into());
                }
                a.push("-append".into());
                a.push(append.into());
            }
        }

        a.push("-chardev".into());
        a.push(kv(
            &format!("file,id={CONSOLE_CHARDEV},path="),
            self.console.as_os_str(),
            // append: a restarted VM keeps the earlier boots' console.
            ",append=on",
        ));
        a.push("-serial".into());
        a.push(format!("chardev:{CONSOLE_CHARDEV}").into());
        a.push("-chardev".into());
        a.push(kv(
            &format!("socket,id={QMP_CHARDEV},path="),
            self.qmp.as_os_str(),
            ",server=on,wait=off",
        ));
        a.push("-mon".into());
        a.push(format!("chardev={QMP_CHARDEV},mode=control").into());

        a.push("-drive".into());
        a.push(kv(
            "file=",
            self.overlay.as_os_str(),
            &format!(",format=qcow2,if=none,id=drive-{ROOT_DEVICE},discard=unmap"),
        ));
        a.push("-device".into());
        let root = format!("virtio-blk-pci,drive=drive-{ROOT_DEVICE},id={ROOT_DEVICE}");
        a.push(match self.boot {
            Boot::Uefi => format!("{root},bootindex=0").into(),
            // -kernel boots through an option ROM that claims bootindex 0.
            Boot::Kernel { .. } => root.into(),
        });

        if let Some(seed) = &self.seed {
            a.push("-drive".into());
            a.push(kv(
                "file=",
                seed.as_os_str(),
                &format!(",format=raw,if=none,id=drive-{SEED_DEVICE},readonly=on"),
            ));
            a.push("-device".into());
            a.push(
                format!(
                    "virtio-blk-pci,drive=drive-{SEED_DEVICE},id={SEED_DEVICE},serial={SEED_DEVICE}"
                )
                .into(),
            );
        }

        let mut netdev = String::from("user,id=coloc-net");
        for f in &self.forwards {
            // Host side bound to loopback only; empty guest address means
            // the guest's DHCP address.
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{}-:{}", f.host, f.guest));
        }
        a.push("-netdev".into());
        a.push(netdev.into());
        a.push("-device".into());
        // No option ROM: OVMF would otherwise try PXE before giving up.
        a.push("virtio-net-pci,netdev=coloc-net,romfile=".into());
        a.push("-device".into());
        // Entropy for early boot: without it sshd's key exchange can stall
        // for a long time under TCG.
        a.push("virtio-rng-pci".into());

        for d in &self.disks {
            let port = format!("coloc-port{}", d.port);
            a.push("-device".into());
            a.push(
                format!(
                    "pcie-root-port,id={port},bus=pcie.0,chassis={},slot={}",
                    d.port + 1,
                    d.port + 1
                )
                .into(),
            );
            a.push("-drive".into());
            a.push(kv(
                "file=",
                d.file.as_os_str(),
                &format!(",format=raw,if=none,id=drive-{}", d.spec.id),
            ));
            a.push("-device".into());
            let device = match &d.spec.kind {
                DiskKind::Virtio => {
                    let serial: String = d.spec.id.chars().take(20).collect();
                    format!(
                        "virtio-blk-pci,drive=drive-{id},id={id},bus={port},serial={serial}",
                        id = d.spec.id
                    )
                }
                DiskKind::Nvme { serial } => format!(
                    "nvme,drive=drive-{id},id={id},bus={port},serial={serial}",
                    id = d.spec.id
                ),
            };
            a.push(device.into());
        }
        a
    }
}

/// Format of a disk image as `qemu-img info` reports it.
pub(crate) async fn image_format(image: &Path) -> Result<String> {
    let qemu_img = resolve_binary(QEMU_IMG)?;
    // qemu-img for the harness's overlays, a test tool.
    let out = Command::from(command(&qemu_img))
        .args(["info", "--force-share", "--output=json"])
        .arg(image)
        .env_clear()
        .env("LC_ALL", "C")
        .output()
        .await
        .with_context(|| format!("running {}", qemu_img.display()))?;
    if !out.status.success() {
        bail!(
            "qemu-img info {} failed ({}): {}",
            image.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_image_format(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("reading qemu-img info for {}", image.display()))
}

pub(crate) fn parse_image_format(json: &str) -> Result<String> {
    let v: serde_json::Value = serde_json::from_str(json).context("qemu-img info is not JSON")?;
    let format = v
        .get("format")
        .and_then(|f| f.as_str())
        .ok_or_else(|| anyhow!("qemu-img info has no \"format\""))?;
    match format {
        "raw" | "qcow2" => Ok(format.to_string()),
        other => bail!("image format {other:?} is not supported (raw or qcow2)"),
    }
}

/// Creates a qcow2 overlay whose backing file is `base` (absolute), so all
/// writes land in the overlay.
pub(crate) async fn create_overlay(
    base: &Path,
    format: &str,
    overlay: &Path,
    size_mib: Option<u64>,
) -> Result<()> {
    let qemu_img = resolve_binary(QEMU_IMG)?;
    // qemu-img for the harness's overlays, a test tool.
    let mut cmd = Command::from(command(&qemu_img));
    cmd.args(["create", "-q", "-f", "qcow2", "-F", format, "-b"])
        .arg(base)
        .arg(overlay);
    if let Some(mib) = size_mib {
        cmd.arg(format!("{mib}M"));
    }
    let out = cmd
        .env_clear()
        .env("LC_ALL", "C")
        .output()
        .await
        .with_context(|| format!("running {}", qemu_img.display()))?;
    if !out.status.success() {
        bail!(
            "qemu-img create overlay {} over {} failed ({}): {}",
            overlay.display(),
            base.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch() -> Launch {
        Launch {
            name: "n1".into(),
            accel: Accel::Tcg,
            cpus: 2,
            memory_mib: 1024,
            boot: Boot::Uefi,
            firmware: Some((
                "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
                "/w/n1/OVMF_VARS.fd".into(),
            )),
            overlay: "/w/n1/overlay.qcow2".into(),
            seed: Some("/w/seeds/n1,seed.img".into()),
            disks: vec![
                AttachedDisk {
                    spec: DiskSpec {
                        id: "nvme1".into(),
                        size_mib: 64,
                        kind: DiskKind::Nvme {
                            serial: "COLOC0001".into(),
                        },
                    },
                    file: "/w/n1/disk-nvme1.img".into(),
                    port: 0,
                },
                AttachedDisk {
                    spec: DiskSpec {
                        id: "a-very-long-virtio-disk-id".into(),
                        size_mib: 64,
                        kind: DiskKind::Virtio,
                    },
                    file: "/w/n1/disk-data.img".into(),
                    port: 2,
                },
            ],
            forwards: vec![
                PortForward {
                    host: 40022,
                    guest: 22,
                },
                PortForward {
                    host: 40443,
                    guest: 7443,
                },
            ],
            console: "/w/n1/console.log".into(),
            qmp: "/w/n1/qmp.sock".into(),
        }
    }

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    /// The value following `flag` for every occurrence of `flag`.
    fn values<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn escape_doubles_commas_only() {
        assert_eq!(
            escape_opt(OsStr::new("/a,b,,c")),
            OsString::from("/a,,b,,,,c")
        );
        assert_eq!(escape_opt(OsStr::new("/plain")), OsString::from("/plain"));
        let raw = OsStr::from_bytes(b"/x\xff,y");
        assert_eq!(escape_opt(raw).as_bytes(), b"/x\xff,,y");
    }

    #[test]
    fn uefi_launch_uses_read_only_code_and_a_private_vars_copy() {
        let args = strings(&launch().args());
        assert_eq!(
            values(&args, "-drive")[..2],
            [
                "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
                "if=pflash,format=raw,unit=1,file=/w/n1/OVMF_VARS.fd",
            ]
        );
        assert_eq!(values(&args, "-machine"), ["q35"]);
        assert_eq!(values(&args, "-accel"), ["tcg,thread=multi"]);
        assert_eq!(values(&args, "-smp"), ["2"]);
        assert_eq!(values(&args, "-m"), ["1024"]);
        assert!(args.contains(&"-nodefaults".to_string()));
        assert_eq!(values(&args, "-display"), ["none"]);
        assert!(values(&args, "-kernel").is_empty());
    }

    #[test]
    fn kernel_launch_passes_kernel_initrd_and_append_verbatim() {
        let mut l = launch();
        l.firmware = None;
        l.boot = Boot::Kernel {
            kernel: "/k/vmlinuz".into(),
            initrd: Some("/k/initrd.img".into()),
            append: "root=LABEL=x rw console=ttyS0,115200".into(),
        };
        let args = strings(&l.args());
        assert_eq!(values(&args, "-kernel"), ["/k/vmlinuz"]);
        assert_eq!(values(&args, "-initrd"), ["/k/initrd.img"]);
        assert_eq!(
            values(&args, "-append"),
            ["root=LABEL=x rw console=ttyS0,115200"]
        );
        assert!(!args.iter().any(|a| a.contains("pflash")));
        assert!(
            values(&args, "-device")
                .contains(&"virtio-blk-pci,drive=drive-coloc-root,id=coloc-root"),
            "no bootindex next to -kernel"
        );
    }

    #[test]
    fn the_image_runs_on_the_overlay_and_the_seed_is_read_only() {
        let args = strings(&launch().args());
        let drives = values(&args, "-drive");
        assert!(drives.contains(
            &"file=/w/n1/overlay.qcow2,format=qcow2,if=none,id=drive-coloc-root,discard=unmap"
        ));
        // The comma in the seed path is escaped, not an option separator.
        assert!(drives.contains(
            &"file=/w/seeds/n1,,seed.img,format=raw,if=none,id=drive-coloc-seed,readonly=on"
        ));
        let devices = values(&args, "-device");
        assert!(
            devices.contains(&"virtio-blk-pci,drive=drive-coloc-root,id=coloc-root,bootindex=0")
        );
    }

    #[test]
    fn forwards_bind_loopback_only() {
        let args = strings(&launch().args());
        assert_eq!(
            values(&args, "-netdev"),
            ["user,id=coloc-net,hostfwd=tcp:127.0.0.1:40022-:22,hostfwd=tcp:127.0.0.1:40443-:7443"]
        );
    }

    #[test]
    fn extra_disks_sit_on_their_own_root_ports_with_serials() {
        let args = strings(&launch().args());
        let devices = values(&args, "-device");
        assert!(devices.contains(&"pcie-root-port,id=coloc-port0,bus=pcie.0,chassis=1,slot=1"));
        assert!(
            devices.contains(&"nvme,drive=drive-nvme1,id=nvme1,bus=coloc-port0,serial=COLOC0001")
        );
        assert!(devices.contains(&"pcie-root-port,id=coloc-port2,bus=pcie.0,chassis=3,slot=3"));
        assert!(devices.contains(
            &"virtio-blk-pci,drive=drive-a-very-long-virtio-disk-id,id=a-very-long-virtio-disk-id,bus=coloc-port2,serial=a-very-long-virtio-d"
        ));
        assert!(
            values(&args, "-drive")
                .contains(&"file=/w/n1/disk-nvme1.img,format=raw,if=none,id=drive-nvme1")
        );
    }

    #[test]
    fn console_and_qmp_go_to_the_work_dir() {
        let args = strings(&launch().args());
        assert_eq!(
            values(&args, "-chardev"),
            [
                "file,id=coloc-console,path=/w/n1/console.log,append=on",
                "socket,id=coloc-qmp,path=/w/n1/qmp.sock,server=on,wait=off",
            ]
        );
        assert_eq!(values(&args, "-serial"), ["chardev:coloc-console"]);
        assert_eq!(values(&args, "-mon"), ["chardev=coloc-qmp,mode=control"]);
    }

    #[test]
    fn kvm_uses_the_host_cpu() {
        let mut l = launch();
        l.accel = Accel::Kvm;
        let args = strings(&l.args());
        assert_eq!(values(&args, "-accel"), ["kvm"]);
        assert_eq!(values(&args, "-cpu"), ["host"]);
    }

    #[test]
    fn image_format_parsing() {
        // Recorded: `qemu-img info --output=json` of a raw GPT disk image.
        let raw = r#"{
    "children": [
        {"name": "file", "info": {"children": [], "virtual-size": 2216689664,
         "filename": "disk.img", "format": "file", "actual-size": 460193792,
         "format-specific": {"type": "file", "data": {}}, "dirty-flag": false}}
    ],
    "virtual-size": 2216689664,
    "filename": "disk.img",
    "format": "raw",
    "actual-size": 460193792,
    "dirty-flag": false
}"#;
        assert_eq!(parse_image_format(raw).unwrap(), "raw");
        assert_eq!(
            parse_image_format(r#"{"format": "qcow2", "virtual-size": 1}"#).unwrap(),
            "qcow2"
        );
        assert!(parse_image_format(r#"{"format": "vmdk"}"#).is_err());
        assert!(parse_image_format(r#"{"virtual-size": 1}"#).is_err());
        assert!(parse_image_format("not json").is_err());
    }
}
