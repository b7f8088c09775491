//! The harness tested for real: a throwaway Debian guest (see `fixture`)
//! booted under QEMU, driven the way coloc's end-to-end tests will drive
//! node images.
//!
//! These tests are slow (the first run builds the guest with mmdebstrap,
//! a few minutes; every boot takes tens of seconds under TCG) and need
//! root, QEMU, OVMF, mmdebstrap, dosfstools, mtools, fdisk and
//! openssh-client, so they are ignored by default. Run them with:
//!
//!     cargo test -p coloc-vm -- --ignored --nocapture
//!
//! They run one VM at a time (the build machines have two cores, and the
//! printed timings should mean something).

use coloc_vm::baseline as fixture;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use coloc_vm::{
    Accel, Boot, DiskKind, DiskSpec, Forward, ProbeVerdict, Vm, VmSpec, probe_accel, qemu_accel,
};

static ONE_VM_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const BOOT_TIMEOUT: Duration = Duration::from_secs(400);
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// Step timings, printed as they happen and again at the end.
struct Clock {
    test: &'static str,
    steps: Vec<(String, Duration)>,
}

impl Clock {
    fn new(test: &'static str) -> Clock {
        Clock {
            test,
            steps: Vec::new(),
        }
    }

    async fn time<T>(&mut self, step: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
        let started = Instant::now();
        let out = fut.await.with_context(|| format!("step: {step}"))?;
        let took = started.elapsed();
        eprintln!("[{}] {step}: {:.1}s", self.test, took.as_secs_f64());
        self.steps.push((step.to_string(), took));
        Ok(out)
    }

    fn report(&self) {
        eprintln!("[{}] timings:", self.test);
        for (step, took) in &self.steps {
            eprintln!("  {:>7.1}s  {step}", took.as_secs_f64());
        }
    }
}

/// Runs a story against a VM; on failure the panic carries the VM's
/// console, QEMU log and journal.
async fn run_story<F>(vm: &mut Vm, clock: &mut Clock, story: F)
where
    F: AsyncFnOnce(&mut Vm, &mut Clock) -> Result<()>,
{
    let result = story(vm, clock).await;
    clock.report();
    if let Err(e) = result {
        let e = vm.diagnose(e).await;
        panic!("{e:?}");
    }
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
#[ignore = "needs QEMU; cargo test -p coloc-vm -- --ignored"]
fn the_accelerator_probe_reaches_its_known_state_under_tcg() {
    let _one = ONE_VM_AT_A_TIME.blocking_lock();
    let started = Instant::now();
    assert_eq!(probe_accel(Accel::Tcg).unwrap(), ProbeVerdict::Works);
    eprintln!("TCG probe: {:.2}s", started.elapsed().as_secs_f64());
    let started = Instant::now();
    let kvm = probe_accel(Accel::Kvm).unwrap();
    eprintln!(
        "KVM probe: {kvm:?} in {:.2}s",
        started.elapsed().as_secs_f64()
    );
    let accel = qemu_accel();
    eprintln!("qemu_accel() = {accel:?}");
    assert_eq!(accel == Accel::Kvm, kvm == ProbeVerdict::Works);
}

#[tokio::test]
#[ignore = "boots a VM (minutes under TCG); cargo test -p coloc-vm -- --ignored"]
async fn kernel_boot_story() {
    let _one = ONE_VM_AT_A_TIME.lock().await;
    let mut clock = Clock::new("kernel-boot");
    let guest = clock
        .time(
            "fixture guest (cached after the first build)",
            fixture::guest(std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))),
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let access = fixture::access(dir.path()).unwrap();
    let spec = VmSpec {
        name: "story".into(),
        image: guest.disk.clone(),
        boot: Boot::Kernel {
            kernel: guest.kernel.clone(),
            initrd: Some(guest.initrd.clone()),
            append: fixture::APPEND.into(),
        },
        cpus: 2,
        memory_mib: 1024,
        disks: vec![
            DiskSpec {
                id: "nvme1".into(),
                size_mib: 64,
                kind: DiskKind::Nvme {
                    serial: "COLOC0001".into(),
                },
            },
            DiskSpec {
                id: "data1".into(),
                size_mib: 32,
                kind: DiskKind::Virtio,
            },
        ],
        seed: Some(access.seed.clone()),
        forwards: vec![Forward::guest(7000)],
        ssh_key: Some(access.key.clone()),
        disk_size_mib: None,
    };
    let mut vm = clock
        .time("start QEMU", Vm::start(spec, &dir.path().join("vm")))
        .await
        .unwrap();
    eprintln!("accelerator: {:?}", vm.accel());
    run_story(&mut vm, &mut clock, async |vm, clock| {
        clock
            .time("boot to ssh", vm.wait_for_ssh(BOOT_TIMEOUT))
            .await?;
        clock
            .time(
                "console shows multi-user.target",
                vm.wait_for_console("Reached target multi-user.target", STEP_TIMEOUT),
            )
            .await?;

        // A console wait that times out says so and shows the console.
        let started = Instant::now();
        let err = vm
            .wait_for_console("this line never appears", Duration::from_secs(2))
            .await
            .unwrap_err()
            .to_string();
        ensure!(err.contains("did not appear"), "{err}");
        ensure!(err.contains("--- console tail"), "{err}");
        ensure!(
            err.contains("multi-user.target"),
            "console tail missing: {err}"
        );
        ensure!(started.elapsed() < Duration::from_secs(5));

        let kernel = clock
            .time("succeed(uname -r)", vm.succeed(&["uname", "-r"]))
            .await?;
        ensure!(kernel.trim().ends_with("cloud-amd64"), "{kernel}");

        // Arguments reach the guest unchanged, whatever they contain.
        let nasty = [
            "a b",
            "it's",
            "$HOME",
            "`id`",
            "$(id)",
            "; echo injected",
            "*",
            "",
            "\\",
        ];
        let mut cmd = vec!["printf", "%s|"];
        cmd.extend_from_slice(&nasty);
        let echoed = vm.succeed(&cmd).await?;
        ensure!(echoed == format!("{}|", nasty.join("|")), "got {echoed:?}");

        let (status, out) = vm.execute(&["sh", "-c", "echo out; exit 3"]).await?;
        ensure!((status, out.as_str()) == (3, "out\n"), "{status} {out:?}");
        let err = vm
            .succeed(&["ls", "/nonexistent"])
            .await
            .unwrap_err()
            .to_string();
        ensure!(
            err.contains("exited with status 2") && err.contains("No such file or directory"),
            "{err}"
        );

        clock
            .time(
                "wait_for_unit(ssh.service), already active",
                vm.wait_for_unit("ssh.service", STEP_TIMEOUT),
            )
            .await?;
        vm.succeed(&[
            "systemd-run",
            "--unit=coloc-slow",
            "--no-block",
            "-p",
            "Type=oneshot",
            "-p",
            "RemainAfterExit=yes",
            "sleep",
            "3",
        ])
        .await?;
        clock
            .time(
                "wait_for_unit(coloc-slow), a 3 s oneshot",
                vm.wait_for_unit("coloc-slow.service", STEP_TIMEOUT),
            )
            .await?;

        // A failed unit fails the wait at once, with status and journal.
        vm.succeed(&[
            "systemd-run",
            "--unit=coloc-broken",
            "--no-block",
            "-p",
            "Type=oneshot",
            "sh",
            "-c",
            "echo coloc-broken-marker; exit 7",
        ])
        .await?;
        let started = Instant::now();
        let err = vm
            .wait_for_unit("coloc-broken.service", STEP_TIMEOUT)
            .await
            .unwrap_err()
            .to_string();
        let failed_after = started.elapsed();
        eprintln!(
            "[kernel-boot] wait_for_unit on a failing unit failed after {:.1}s",
            failed_after.as_secs_f64()
        );
        ensure!(failed_after < Duration::from_secs(60), "did not fail fast");
        ensure!(err.contains("unit coloc-broken.service failed"), "{err}");
        ensure!(err.contains("status=7"), "no systemctl status in: {err}");
        ensure!(err.contains("coloc-broken-marker"), "no journal in: {err}");

        let lsblk = clock
            .time(
                "NVMe serial visible (lsblk)",
                vm.succeed(&["lsblk", "-dn", "-o", "NAME,SERIAL"]),
            )
            .await?;
        ensure!(
            lsblk
                .lines()
                .any(|l| l.starts_with("nvme") && l.contains("COLOC0001")),
            "{lsblk}"
        );
        ensure!(
            lsblk
                .lines()
                .any(|l| l.starts_with("vd") && l.contains("data1")),
            "{lsblk}"
        );

        // A forward from the host's loopback reaches a guest port.
        vm.succeed(&[
            "systemd-run",
            "--unit=coloc-echo",
            "systemd-socket-activate",
            "-l",
            "7000",
            "-a",
            "--inetd",
            "cat",
        ])
        .await?;
        vm.wait_for_unit("coloc-echo.service", STEP_TIMEOUT).await?;
        let port = vm.forwarded(7000).context("forward for 7000")?;
        clock
            .time("echo through the 127.0.0.1 forward", echo(port))
            .await?;

        clock
            .time("hot_unplug(nvme1)", vm.hot_unplug("nvme1"))
            .await?;
        vm.wait_until_succeeds(
            &["sh", "-c", "! lsblk -dn -o SERIAL | grep -qx COLOC0001"],
            STEP_TIMEOUT,
        )
        .await?;
        clock
            .time("hot_unplug(data1), virtio", vm.hot_unplug("data1"))
            .await?;
        let err = vm.hot_unplug("nvme1").await.unwrap_err().to_string();
        ensure!(err.contains("already unplugged"), "{err}");
        ensure!(vm.hot_unplug("nope").await.is_err());

        let report = clock
            .time("dump_diagnostics", async {
                Ok(vm.dump_diagnostics().await)
            })
            .await?;
        ensure!(report.contains("--- console: last 100 lines"), "{report}");
        let journal = report
            .split("--- journalctl -b -n 200 ---")
            .nth(1)
            .context("no journal section")?;
        ensure!(!journal.contains("(unavailable"), "{journal}");
        ensure!(journal.contains("systemd"), "{journal}");

        // Power cut: synced data survives, the VM is gone at once.
        vm.succeed(&["sh", "-c", "echo survived > /root/marker && sync"])
            .await?;
        let pid = vm.pid().context("pid")?;
        clock.time("power_cut", vm.power_cut()).await?;
        ensure!(!vm.is_running() && !pid_alive(pid), "QEMU still there");
        let err = vm.succeed(&["true"]).await.unwrap_err().to_string();
        ensure!(err.contains("QEMU has exited"), "{err}");
        let err = vm.wait_for_ssh(STEP_TIMEOUT).await.unwrap_err();
        ensure!(
            format!("{err:#}").contains("QEMU is not running"),
            "{err:#}"
        );
        let err = vm.execute(&["true"]).await.unwrap_err().to_string();
        ensure!(err.contains("QEMU has exited"), "{err}");
        // Diagnostics of a dead VM: its console, no journal.
        let report = vm.dump_diagnostics().await;
        ensure!(
            report.contains("QEMU exited") && report.contains("fixture login:"),
            "{report}"
        );
        ensure!(!report.contains("journalctl"), "{report}");

        clock
            .time("restart after the power cut", vm.restart())
            .await?;
        clock
            .time("restart to ssh", vm.wait_for_ssh(BOOT_TIMEOUT))
            .await?;
        let marker = vm.succeed(&["cat", "/root/marker"]).await?;
        ensure!(marker == "survived\n", "{marker:?}");
        let lsblk = vm.succeed(&["lsblk", "-dn", "-o", "NAME,SERIAL"]).await?;
        ensure!(
            !lsblk.contains("COLOC0001") && !lsblk.contains("data1"),
            "unplugged disks came back: {lsblk}"
        );

        clock
            .time("shutdown (ACPI power button)", vm.shutdown(STEP_TIMEOUT))
            .await?;
        ensure!(!vm.is_running());
        Ok(())
    })
    .await;
}

/// Sends a line through the forward and expects it back; the echo service
/// may still be binding, so connection attempts are retried to a deadline.
async fn echo(port: u16) -> Result<()> {
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let attempt = (|| -> Result<String> {
                let mut s = TcpStream::connect(("127.0.0.1", port))?;
                s.set_read_timeout(Some(Duration::from_secs(10)))?;
                s.write_all(b"ping over the forward\n")?;
                let mut line = String::new();
                BufReader::new(s).read_line(&mut line)?;
                Ok(line)
            })();
            match attempt {
                Ok(line) if line == "ping over the forward\n" => return Ok(()),
                Ok(other) if Instant::now() >= deadline => bail!("echo answered {other:?}"),
                Err(e) if Instant::now() >= deadline => return Err(e),
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    })
    .await?
}

#[tokio::test]
#[ignore = "boots a VM under UEFI (minutes under TCG); cargo test -p coloc-vm -- --ignored"]
async fn uefi_boot_of_a_full_disk_image() {
    let _one = ONE_VM_AT_A_TIME.lock().await;
    let mut clock = Clock::new("uefi-boot");
    let guest = clock
        .time(
            "fixture guest (cached after the first build)",
            fixture::guest(std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))),
        )
        .await
        .unwrap();
    let base_before = std::fs::metadata(&guest.disk).unwrap().modified().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let access = fixture::access(dir.path()).unwrap();
    let mut spec = VmSpec::new("uefi", &guest.disk);
    spec.seed = Some(access.seed.clone());
    spec.ssh_key = Some(access.key.clone());
    spec.disks.push(DiskSpec {
        id: "nvme1".into(),
        size_mib: 64,
        kind: DiskKind::Nvme {
            serial: "COLOCUEFI1".into(),
        },
    });
    let mut vm = clock
        .time("start QEMU", Vm::start(spec, &dir.path().join("vm")))
        .await
        .unwrap();
    let pid = vm.pid().unwrap();
    run_story(&mut vm, &mut clock, async |vm, clock| {
        clock
            .time("UEFI boot to ssh", vm.wait_for_ssh(BOOT_TIMEOUT))
            .await?;
        vm.succeed(&["test", "-d", "/sys/firmware/efi"])
            .await
            .context("not booted through UEFI")?;
        let cmdline = vm.succeed(&["cat", "/proc/cmdline"]).await?;
        ensure!(cmdline.contains("root=PARTLABEL=coloc-root"), "{cmdline}");
        let lsblk = vm.succeed(&["lsblk", "-dn", "-o", "NAME,SERIAL"]).await?;
        ensure!(lsblk.contains("COLOCUEFI1"), "{lsblk}");
        clock
            .time(
                "wait_for_unit(multi-user.target)",
                vm.wait_for_unit("multi-user.target", STEP_TIMEOUT),
            )
            .await?;
        vm.succeed(&[
            "sh",
            "-c",
            "echo write > /root/written-in-the-overlay && sync",
        ])
        .await?;
        Ok(())
    })
    .await;
    // The base image was never written: all writes went to the overlay.
    let base_after = std::fs::metadata(&guest.disk).unwrap().modified().unwrap();
    assert_eq!(base_before, base_after, "the base image was modified");
    // Dropping the VM kills and reaps QEMU at once.
    assert!(pid_alive(pid));
    drop(vm);
    assert!(!pid_alive(pid), "QEMU {pid} survived the Vm's drop");
}

/// A VM with firmware and nothing to boot: exercises the paths that do not
/// need a guest OS (console waits on OVMF's output, a start that cannot
/// bind its port, raw QMP, a shutdown the guest cannot answer).
#[tokio::test]
#[ignore = "runs QEMU; cargo test -p coloc-vm -- --ignored"]
async fn firmware_only_vm() {
    let _one = ONE_VM_AT_A_TIME.lock().await;
    let mut clock = Clock::new("firmware-only");
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.img");
    std::fs::File::create(&empty)
        .unwrap()
        .set_len(1024 * 1024)
        .unwrap();

    // A fixed host port that is taken is a clear error at start.
    let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut spec = VmSpec::new("busy", &empty);
    spec.forwards.push(Forward {
        guest: 80,
        host: Some(port),
    });
    let err = Vm::start(spec, &dir.path().join("busy"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("QEMU exited at start"), "{err}");
    assert!(err.contains("host forwarding rule"), "{err}");

    let mut vm = clock
        .time(
            "start QEMU",
            Vm::start(VmSpec::new("firmware", &empty), &dir.path().join("fw")),
        )
        .await
        .unwrap();
    run_story(&mut vm, &mut clock, async |vm, clock| {
        clock
            .time(
                "OVMF reaches its shell (console)",
                vm.wait_for_console("Shell>", STEP_TIMEOUT),
            )
            .await?;
        let err = vm.succeed(&["true"]).await.unwrap_err().to_string();
        ensure!(err.contains("no ssh_key"), "{err}");
        let status = vm.qmp("query-status", None).await?;
        ensure!(status["status"] == "running", "{status}");
        // A paused guest cannot answer the power button: shutdown kills it.
        vm.qmp("stop", None).await?;
        let started = Instant::now();
        let err = vm
            .shutdown(Duration::from_secs(3))
            .await
            .unwrap_err()
            .to_string();
        ensure!(err.contains("did not power off"), "{err}");
        ensure!(started.elapsed() < Duration::from_secs(10));
        ensure!(!vm.is_running());
        // Waiting on a dead VM fails at once, not at the deadline.
        let started = Instant::now();
        let err = vm
            .wait_for_console("never printed", STEP_TIMEOUT)
            .await
            .unwrap_err()
            .to_string();
        ensure!(err.contains("QEMU exited"), "{err}");
        ensure!(started.elapsed() < Duration::from_secs(5));
        // The console seen so far is still searched.
        vm.wait_for_console("Shell>", STEP_TIMEOUT).await?;
        Ok(())
    })
    .await;
}
