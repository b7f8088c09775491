//! The QEMU harness every coloc end-to-end test uses, in the spirit of the
//! NixOS test driver: a test starts a [`Vm`] from a node image, waits for a
//! console line, for SSH or for a unit, runs checks inside the guest, pulls a
//! disk or the power, and on failure prints the console and the journal.
//!
//! It owns the QEMU process and everything in the VM's work directory: a
//! qcow2 overlay over the base image (the base image is never written, so a
//! cached image can back any number of VMs), a copy of the OVMF variable
//! store, the extra disks, the serial console log, QEMU's own log and the QMP
//! socket. QEMU and `ssh` are spawned with argument vectors, never through a
//! local shell; guest commands are argument vectors quoted for the remote
//! shell by [`ssh::shell_quote`]. Port forwards bind 127.0.0.1 only. Dropping
//! a [`Vm`] kills its QEMU: a test never leaves a process behind.
//!
//! The test channel is SSH as root with a key the *test* seed carries
//! (docs/IMAGE.md): production images contain no key, so nothing here works
//! against a production node that was not given one.
//!
//! KVM is tried once per process ([`qemu_accel`]) with a tiny guest that must
//! reach a known state; where KVM is absent or broken (the build machines)
//! everything runs under TCG.
//!
//! Layout: `spec` (what a test asks for: [`VmSpec`], [`DiskSpec`],
//! [`Forward`]), `vm` (a running guest and the verbs on it: [`Vm`]),
//! `qemu` (QEMU's argument vector, `qemu-img`, OVMF), [`qmp`] (the QMP
//! client for hot-unplug and power), `console` (reading the serial log),
//! [`ssh`] (the test channel into the guest), `ports` (free loopback
//! ports for forwards), `accel` (KVM or TCG), [`baseline`] (a plain
//! Debian guest, for the harness's own tests and the boot benchmark) and
//! `programs` (the one place that starts QEMU, qemu-img, ssh and the
//! other helper programs).
//!
//! ```no_run
//! use std::time::Duration;
//! use coloc_vm::{DiskKind, DiskSpec, Forward, Vm, VmSpec};
//!
//! # async fn story() -> anyhow::Result<()> {
//! let mut spec = VmSpec::new("n1", "/var/cache/coloc/node.img");
//! spec.seed = Some("n1-seed.img".into()); // carries the test key's public half
//! spec.ssh_key = Some("test_ed25519".into());
//! spec.disks.push(DiskSpec {
//!     id: "nvme1".into(),
//!     size_mib: 1024,
//!     kind: DiskKind::Nvme { serial: "COLOC0001".into() },
//! });
//! spec.forwards.push(Forward::guest(9100));
//! let workdir = tempfile::tempdir()?;
//! let mut vm = Vm::start(spec, workdir.path()).await?;
//! let steps = async {
//!     vm.wait_for_unit("coloc-agent.service", Duration::from_secs(300)).await?;
//!     let disks = vm.succeed(&["lsblk", "-dn", "-o", "NAME,SERIAL"]).await?;
//!     anyhow::ensure!(disks.contains("COLOC0001"), "{disks}");
//!     vm.hot_unplug("nvme1").await
//! };
//! if let Err(e) = steps.await {
//!     return Err(vm.diagnose(e).await); // console, QEMU log, journal
//! }
//! vm.power_cut().await?;
//! # Ok(()) }
//! ```

mod accel;
pub mod baseline;
mod console;
mod ports;
mod programs;
mod qemu;
pub mod qmp;
mod spec;
pub mod ssh;
mod vm;

pub use accel::{Accel, ProbeVerdict, probe_accel, qemu_accel};
pub use spec::{Boot, DiskKind, DiskSpec, Forward, VmSpec};
pub use vm::Vm;
