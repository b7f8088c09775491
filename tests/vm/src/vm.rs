//! A running (or powered-off) QEMU guest and the operator's verbs on it:
//! wait for the console, for SSH, for a unit; run commands; pull a disk;
//! cut the power; power on again; shut down; dump what went wrong.
//!
//! Every wait has a deadline and fails fast when QEMU has exited, and every
//! failure carries what a human needs to see: the command and its stderr,
//! the unit's status and journal, the console's tail.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tracing::{debug, info, warn};

use crate::accel::{Accel, qemu_accel};
use crate::console::{self, NeedleScanner};
use crate::ports::pick_free_ports;
use crate::programs::command;
use crate::qemu::{
    AttachedDisk, Firmware, Launch, PortForward, QEMU, create_overlay, image_format, resolve_binary,
};
use crate::qmp::Qmp;
use crate::spec::{Boot, VmSpec};
use crate::ssh::{self, RemoteOutput, SshTarget, remote_command};

const QMP_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The guest has to acknowledge an unplug (ACPI or pciehp, which waits
/// 5 s for a "button" cancel); TCG makes that slower.
const UNPLUG_TIMEOUT: Duration = Duration::from_secs(60);
const POWER_CUT_EXIT_TIMEOUT: Duration = Duration::from_secs(10);
const KILL_REAP_TIMEOUT: Duration = Duration::from_secs(5);
const CONSOLE_POLL: Duration = Duration::from_millis(100);
const GUEST_POLL: Duration = Duration::from_millis(500);
const DIAGNOSTICS_SSH_TIMEOUT: Duration = Duration::from_secs(30);
/// Linux's limit for a unix socket path (sun_path), terminator included.
const MAX_SOCKET_PATH: usize = 107;
const START_ATTEMPTS: usize = 3;
const TAIL_LINES: usize = 60;

/// A QEMU guest. Dropping it kills QEMU.
///
/// A `Vm` belongs to the tokio runtime that started it (its process handle
/// and QMP socket are registered there): share a VM between test cases by
/// running them inside one test, not across `#[tokio::test]` functions.
#[derive(Debug)]
pub struct Vm {
    spec: VmSpec,
    workdir: PathBuf,
    launch: Launch,
    qemu_log: PathBuf,
    ssh: Option<SshTarget>,
    child: Mutex<Child>,
    pid: Option<u32>,
    /// `None` once QEMU has been stopped by `power_cut` or `shutdown`.
    qmp: tokio::sync::Mutex<Option<Qmp>>,
    /// Console offset where the current boot's output starts.
    boot_offset: u64,
    unplugged: Mutex<Vec<String>>,
}

impl Vm {
    /// Prepares `workdir` (created if needed; the harness's files in it are
    /// replaced) and starts QEMU. Returns once QMP answers; the guest is
    /// then booting, see [`Vm::wait_for_ssh`] and [`Vm::wait_for_console`].
    pub async fn start(spec: VmSpec, workdir: &Path) -> Result<Vm> {
        spec.validate()?;
        let name = spec.name.clone();
        tokio::fs::create_dir_all(workdir)
            .await
            .with_context(|| format!("creating work dir {}", workdir.display()))?;
        let workdir = std::path::absolute(workdir)
            .with_context(|| format!("resolving {}", workdir.display()))?;
        let qmp_path = workdir.join("qmp.sock");
        if qmp_path.as_os_str().len() > MAX_SOCKET_PATH {
            bail!(
                "VM {name}: work dir {} is too long for a unix socket path ({} > {MAX_SOCKET_PATH} bytes); use a shorter one",
                workdir.display(),
                qmp_path.as_os_str().len()
            );
        }
        let console_path = workdir.join("console.log");
        let qemu_log = workdir.join("qemu.log");
        let overlay = workdir.join("overlay.qcow2");
        let vars = workdir.join("OVMF_VARS.fd");
        let key_copy = workdir.join("ssh_key");
        for stale in [&console_path, &qemu_log, &qmp_path, &overlay, &vars] {
            remove_if_present(stale)?;
        }

        let accel = tokio::task::spawn_blocking(qemu_accel)
            .await
            .context("accelerator probe panicked")?;

        let image = std::fs::canonicalize(&spec.image)
            .with_context(|| format!("VM {name}: base image {}", spec.image.display()))?;
        let format = image_format(&image).await?;
        create_overlay(&image, &format, &overlay, spec.disk_size_mib).await?;

        let boot = match &spec.boot {
            Boot::Uefi => Boot::Uefi,
            Boot::Kernel {
                kernel,
                initrd,
                append,
            } => Boot::Kernel {
                kernel: std::fs::canonicalize(kernel)
                    .with_context(|| format!("VM {name}: kernel {}", kernel.display()))?,
                initrd: match initrd {
                    Some(i) => Some(
                        std::fs::canonicalize(i)
                            .with_context(|| format!("VM {name}: initrd {}", i.display()))?,
                    ),
                    None => None,
                },
                append: append.clone(),
            },
        };
        let firmware = match boot {
            Boot::Uefi => {
                let fw = Firmware::find()?;
                std::fs::copy(&fw.vars_template, &vars).with_context(|| {
                    format!(
                        "copying {} to {}",
                        fw.vars_template.display(),
                        vars.display()
                    )
                })?;
                Some((fw.code, vars))
            }
            Boot::Kernel { .. } => None,
        };
        let seed = match &spec.seed {
            Some(s) => Some(
                std::fs::canonicalize(s)
                    .with_context(|| format!("VM {name}: seed {}", s.display()))?,
            ),
            None => None,
        };

        let mut disks = Vec::with_capacity(spec.disks.len());
        for (port, disk) in spec.disks.iter().enumerate() {
            let file = workdir.join(format!("disk-{}.img", disk.id));
            // Sparse and empty, like a new drive.
            std::fs::File::create(&file)
                .and_then(|f| f.set_len(disk.size_mib * 1024 * 1024))
                .with_context(|| format!("creating disk {}", file.display()))?;
            disks.push(AttachedDisk {
                spec: disk.clone(),
                file,
                port,
            });
        }

        let ssh_key = match &spec.ssh_key {
            Some(key) => {
                ssh::install_key(key, &key_copy)?;
                Some(key_copy)
            }
            None => None,
        };

        let mut launch = Launch {
            name: name.clone(),
            accel,
            cpus: spec.cpus,
            memory_mib: spec.memory_mib,
            boot,
            firmware,
            overlay,
            seed,
            disks,
            forwards: Vec::new(),
            console: console_path,
            qmp: qmp_path,
        };

        let mut attempt = 0;
        let (child, qmp) = loop {
            attempt += 1;
            let (forwards, picked_any) = resolve_forwards(&spec)?;
            launch.forwards = forwards;
            match spawn(&launch, &qemu_log).await {
                Ok(started) => break started,
                Err(e) if picked_any && attempt < START_ATTEMPTS && port_was_taken(&qemu_log) => {
                    warn!(vm = %name, error = %format!("{e:#}"), "a picked port was taken meanwhile; retrying with new ports");
                }
                Err(e) => return Err(e),
            }
        };

        let ssh = ssh_key.map(|key| SshTarget {
            port: forwarded(&launch.forwards, 22).expect("ssh forward is resolved with the key"),
            key,
        });
        let pid = child.id();
        info!(
            vm = %name,
            ?accel,
            pid,
            ssh_port = ssh.as_ref().map(|s| s.port),
            workdir = %workdir.display(),
            "VM started"
        );
        Ok(Vm {
            spec,
            workdir,
            launch,
            qemu_log,
            ssh,
            child: Mutex::new(child),
            pid,
            qmp: tokio::sync::Mutex::new(Some(qmp)),
            boot_offset: 0,
            unplugged: Mutex::new(Vec::new()),
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    pub fn accel(&self) -> Accel {
        self.launch.accel
    }

    /// The serial console log (all boots of this VM, appended).
    pub fn console_path(&self) -> &Path {
        &self.launch.console
    }

    /// QEMU's own output (warnings, errors), after a line with each
    /// command line it was started with.
    pub fn qemu_log_path(&self) -> &Path {
        &self.qemu_log
    }

    /// QEMU's process id while it was last started.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Host port on 127.0.0.1 that reaches the guest's sshd.
    pub fn ssh_port(&self) -> Option<u16> {
        self.ssh.as_ref().map(|s| s.port)
    }

    /// Host port on 127.0.0.1 forwarded to `guest_port`.
    pub fn forwarded(&self, guest_port: u16) -> Option<u16> {
        forwarded(&self.launch.forwards, guest_port)
    }

    /// Whether QEMU is still running.
    pub fn is_running(&self) -> bool {
        self.exit_status().is_none()
    }

    fn exit_status(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        match child.try_wait() {
            Ok(status) => status,
            Err(e) => {
                warn!(vm = %self.name(), error = %e, "cannot query QEMU's status");
                None
            }
        }
    }

    /// Fails with the console and QEMU log tails once QEMU has exited.
    fn ensure_running(&self) -> Result<()> {
        match self.exit_status() {
            None => Ok(()),
            Some(status) => bail!(
                "VM {}: QEMU is not running ({status})\n{}",
                self.name(),
                self.tails()
            ),
        }
    }

    fn console_tail(&self) -> String {
        console::tail(self.console_path(), 0, TAIL_LINES)
    }

    fn tails(&self) -> String {
        format!(
            "--- console tail ({}) ---\n{}\n--- qemu log tail ({}) ---\n{}",
            self.console_path().display(),
            self.console_tail(),
            self.qemu_log.display(),
            console::tail(&self.qemu_log, 0, 15)
        )
    }

    /// Waits until `needle` appears in this boot's console output (ANSI
    /// colours and `\r` ignored).
    pub async fn wait_for_console(&self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut scanner = NeedleScanner::new(needle);
        let mut offset = self.boot_offset;
        loop {
            // Read before checking QEMU, so output written just before it
            // exited is still searched.
            let exited = self.exit_status();
            let (bytes, next) = console::read_from(self.console_path(), offset)
                .with_context(|| format!("reading {}", self.console_path().display()))?;
            offset = next;
            if scanner.feed(&bytes) {
                debug!(vm = %self.name(), needle, "console line seen");
                return Ok(());
            }
            if let Some(status) = exited {
                bail!(
                    "VM {}: QEMU exited ({status}) before {needle:?} appeared on the console\n{}",
                    self.name(),
                    self.tails()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "VM {}: {needle:?} did not appear on the console within {}s\n{}",
                    self.name(),
                    timeout.as_secs_f32(),
                    self.tails()
                );
            }
            tokio::time::sleep(CONSOLE_POLL).await;
        }
    }

    fn ssh_target(&self) -> Result<&SshTarget> {
        self.ssh.as_ref().ok_or_else(|| {
            anyhow!(
                "VM {}: no ssh_key in its spec, so no guest commands",
                self.name()
            )
        })
    }

    async fn run(&self, cmd: &[&str]) -> Result<RemoteOutput> {
        if cmd.is_empty() {
            bail!("VM {}: empty guest command", self.name());
        }
        let target = self.ssh_target()?;
        debug!(vm = %self.name(), argv = ?cmd, "guest command");
        ssh::run(target, cmd).await
    }

    fn describe_failure(&self, cmd: &[&str], out: &RemoteOutput) -> String {
        let what = match out.status {
            Some(255) => {
                "failed over ssh (status 255: ssh could not connect or the command exited 255)"
                    .to_string()
            }
            Some(code) => format!("exited with status {code}"),
            None => "ssh was killed by a signal".to_string(),
        };
        let mut msg = format!("VM {}: `{}` {what}", self.name(), remote_command(cmd));
        let stderr = console::tail_of(out.stderr.as_bytes(), 30);
        if !stderr.is_empty() {
            msg.push_str(&format!("\nstderr:\n{stderr}"));
        }
        let stdout = console::tail_of(out.stdout.as_bytes(), 30);
        if !stdout.is_empty() {
            msg.push_str(&format!("\nstdout (tail):\n{stdout}"));
        }
        msg
    }

    /// Runs `cmd` in the guest as root and returns its stdout; fails with
    /// the command, its status and stderr unless it exits 0.
    pub async fn succeed(&self, cmd: &[&str]) -> Result<String> {
        let out = self.run(cmd).await?;
        if out.status == Some(0) {
            return Ok(out.stdout);
        }
        Err(self.command_error(cmd, &out))
    }

    /// Runs `cmd` in the guest and returns its exit status and stdout. Only
    /// failing to run it is an error; since `ssh` reports its own failures
    /// as 255, a command exiting 255 counts as such a failure.
    pub async fn execute(&self, cmd: &[&str]) -> Result<(i32, String)> {
        let out = self.run(cmd).await?;
        match out.status {
            Some(code) if code != 255 => Ok((code, out.stdout)),
            _ => Err(self.command_error(cmd, &out)),
        }
    }

    /// A failed command, plus QEMU's tails when the VM is what failed.
    fn command_error(&self, cmd: &[&str], out: &RemoteOutput) -> anyhow::Error {
        let mut err = self.describe_failure(cmd, out);
        if let Some(status) = self.exit_status() {
            err.push_str(&format!("\nQEMU has exited ({status})\n{}", self.tails()));
        }
        anyhow!(err)
    }

    /// Retries `cmd` until it exits 0 and returns that run's stdout; fails
    /// at the deadline with the last attempt's failure, or at once if QEMU
    /// exits.
    pub async fn wait_until_succeeds(&self, cmd: &[&str], timeout: Duration) -> Result<String> {
        self.ssh_target()?;
        let deadline = Instant::now() + timeout;
        loop {
            self.ensure_running()
                .with_context(|| format!("waiting for `{}` to succeed", remote_command(cmd)))?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let last = match tokio::time::timeout(remaining, self.run(cmd)).await {
                Ok(Ok(out)) if out.status == Some(0) => return Ok(out.stdout),
                Ok(Ok(out)) => self.describe_failure(cmd, &out),
                Ok(Err(e)) => format!("{e:#}"),
                Err(_) => "the last attempt was still running at the deadline".into(),
            };
            if Instant::now() >= deadline {
                bail!(
                    "VM {}: `{}` did not succeed within {}s; last attempt:\n{last}\n{}",
                    self.name(),
                    remote_command(cmd),
                    timeout.as_secs_f32(),
                    self.tails()
                );
            }
            tokio::time::sleep(GUEST_POLL.min(deadline.saturating_duration_since(Instant::now())))
                .await;
        }
    }

    /// Waits until a command runs over SSH.
    pub async fn wait_for_ssh(&self, timeout: Duration) -> Result<()> {
        self.wait_until_succeeds(&["true"], timeout)
            .await
            .with_context(|| format!("VM {}: waiting for SSH", self.name()))?;
        info!(vm = %self.name(), "SSH is up");
        Ok(())
    }

    /// Waits until `systemctl is-active` says `active`. A `failed` unit
    /// fails at once, with its status and journal; any other state
    /// (activating, inactive, ...) is waited out until the deadline.
    pub async fn wait_for_unit(&self, unit: &str, timeout: Duration) -> Result<()> {
        self.ssh_target()?;
        let deadline = Instant::now() + timeout;
        let cmd = ["systemctl", "is-active", "--", unit];
        loop {
            self.ensure_running()
                .with_context(|| format!("waiting for unit {unit}"))?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let last = match tokio::time::timeout(remaining, self.run(&cmd)).await {
                Ok(Ok(out)) if matches!(out.status, Some(code) if code != 255) => {
                    let state = out.stdout.trim();
                    match state {
                        "active" => {
                            info!(vm = %self.name(), unit, "unit active");
                            return Ok(());
                        }
                        "failed" => {
                            bail!(
                                "VM {}: unit {unit} failed\n{}",
                                self.name(),
                                self.unit_report(unit).await
                            );
                        }
                        other => format!("state {other:?}"),
                    }
                }
                Ok(Ok(out)) => self.describe_failure(&cmd, &out),
                Ok(Err(e)) => format!("{e:#}"),
                Err(_) => "systemctl was still running at the deadline".into(),
            };
            if Instant::now() >= deadline {
                bail!(
                    "VM {}: unit {unit} not active within {}s (last: {last})\n{}\n{}",
                    self.name(),
                    timeout.as_secs_f32(),
                    self.unit_report(unit).await,
                    self.tails()
                );
            }
            tokio::time::sleep(GUEST_POLL.min(deadline.saturating_duration_since(Instant::now())))
                .await;
        }
    }

    /// `systemctl status` and the journal of one unit, best effort.
    async fn unit_report(&self, unit: &str) -> String {
        let unit_arg = format!("--unit={unit}");
        let status = self
            .guest_text(&["systemctl", "status", "--no-pager", "--full", "--", unit])
            .await;
        let journal = self
            .guest_text(&["journalctl", "-b", "--no-pager", "-n", "100", &unit_arg])
            .await;
        format!(
            "--- systemctl status {unit} ---\n{status}\n--- journalctl -u {unit} (last 100) ---\n{journal}"
        )
    }

    /// Stdout of a diagnostic command whatever its status, or why there is
    /// none; bounded in time so a dying guest cannot hang a report.
    async fn guest_text(&self, cmd: &[&str]) -> String {
        match tokio::time::timeout(DIAGNOSTICS_SSH_TIMEOUT, self.run(cmd)).await {
            Ok(Ok(out)) if matches!(out.status, Some(code) if code != 255) => {
                out.stdout.trim_end().to_string()
            }
            Ok(Ok(out)) => format!("(unavailable: {})", out.stderr.trim()),
            Ok(Err(e)) => format!("(unavailable: {e:#})"),
            Err(_) => format!(
                "(unavailable: no answer within {}s)",
                DIAGNOSTICS_SSH_TIMEOUT.as_secs()
            ),
        }
    }

    /// Sends a raw QMP command (`query-block`, `stop`, ...).
    pub async fn qmp(&self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let mut guard = self.qmp.lock().await;
        let qmp = guard
            .as_mut()
            .ok_or_else(|| anyhow!("VM {}: QEMU is not running", self.name()))?;
        qmp.execute(command, arguments)
            .await
            .with_context(|| format!("VM {}", self.name()))
    }

    /// Pulls an extra disk out, as a technician would: `device_del`, then
    /// waits for QEMU's `DEVICE_DELETED`, which only comes once the guest
    /// has released the device. The disk stays out across [`Vm::restart`].
    pub async fn hot_unplug(&self, disk_id: &str) -> Result<()> {
        if !self.spec.disks.iter().any(|d| d.id == disk_id) {
            bail!("VM {}: no disk {disk_id:?} in its spec", self.name());
        }
        if self
            .unplugged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|d| d == disk_id)
        {
            bail!("VM {}: disk {disk_id} is already unplugged", self.name());
        }
        let started = Instant::now();
        let mut guard = self.qmp.lock().await;
        let qmp = guard
            .as_mut()
            .ok_or_else(|| anyhow!("VM {}: QEMU is not running", self.name()))?;
        qmp.execute("device_del", Some(json!({ "id": disk_id })))
            .await
            .with_context(|| format!("VM {}: unplugging {disk_id}", self.name()))?;
        let deleted = qmp
            .wait_event(
                |e| e.name == "DEVICE_DELETED" && e.data.get("device") == Some(&json!(disk_id)),
                UNPLUG_TIMEOUT,
            )
            .await;
        drop(guard);
        if let Err(e) = deleted {
            bail!(
                "VM {}: disk {disk_id} was not released by the guest ({e}); a guest still booting \
                 or hung does not answer the unplug request\n{}",
                self.name(),
                self.tails()
            );
        }
        self.unplugged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(disk_id.to_string());
        info!(vm = %self.name(), disk = disk_id, elapsed_ms = started.elapsed().as_millis() as u64, "disk unplugged");
        Ok(())
    }

    /// Cuts the power: QEMU stops at once (QMP `quit`, SIGKILL if it does
    /// not exit), the guest gets no shutdown and loses what it had not
    /// flushed. The disks keep what QEMU wrote, so [`Vm::restart`] boots
    /// the same machine again.
    pub async fn power_cut(&mut self) -> Result<()> {
        let mut qmp = self.qmp.get_mut().take();
        if self.exit_status().is_some() {
            return Ok(());
        }
        info!(vm = %self.name(), "power cut");
        if let Some(qmp) = qmp.as_mut() {
            // QEMU may close the socket before the reply; either way it quits.
            match tokio::time::timeout(Duration::from_secs(5), qmp.execute("quit", None)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => debug!(vm = %self.name(), error = %format!("{e:#}"), "QMP quit"),
                Err(_) => debug!(vm = %self.name(), "QMP quit got no reply"),
            }
        }
        drop(qmp);
        if self.wait_exit(POWER_CUT_EXIT_TIMEOUT).await?.is_none() {
            warn!(vm = %self.name(), "QEMU ignored quit; killing it");
            self.kill().await?;
        }
        Ok(())
    }

    /// Presses the power button (ACPI) and waits for the guest to power
    /// off; past `timeout` QEMU is killed and this fails with the console
    /// tail. The guest needs something handling the button (systemd-logind).
    pub async fn shutdown(&mut self, timeout: Duration) -> Result<()> {
        if self.exit_status().is_some() {
            *self.qmp.get_mut() = None;
            return Ok(());
        }
        info!(vm = %self.name(), "ACPI power button");
        let powerdown = match self.qmp.get_mut().as_mut() {
            Some(qmp) => qmp.execute("system_powerdown", None).await.map(|_| ()),
            None => Err(anyhow!("no QMP connection")),
        };
        if let Err(e) = powerdown {
            self.kill().await?;
            *self.qmp.get_mut() = None;
            bail!(
                "VM {}: system_powerdown failed ({e:#}); killed QEMU\n{}",
                self.name(),
                self.tails()
            );
        }
        let exited = self.wait_exit(timeout).await?;
        *self.qmp.get_mut() = None;
        match exited {
            Some(status) => {
                info!(vm = %self.name(), %status, "powered off");
                Ok(())
            }
            None => {
                self.kill().await?;
                bail!(
                    "VM {}: did not power off within {}s; killed QEMU\n{}",
                    self.name(),
                    timeout.as_secs_f32(),
                    self.tails()
                )
            }
        }
    }

    /// Powers the VM on again after [`Vm::power_cut`] or [`Vm::shutdown`]:
    /// same overlay, disks (minus unplugged ones), UEFI variables and host
    /// ports. The console log is appended to; console waits look at the
    /// new boot only.
    pub async fn restart(&mut self) -> Result<()> {
        if self.exit_status().is_none() {
            bail!(
                "VM {}: still running; power_cut or shutdown first",
                self.name()
            );
        }
        let unplugged = self
            .unplugged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.launch
            .disks
            .retain(|d| !unplugged.contains(&d.spec.id));
        self.boot_offset = std::fs::metadata(self.console_path())
            .map(|m| m.len())
            .unwrap_or(0);
        remove_if_present(&self.launch.qmp)?;
        let (child, qmp) = spawn(&self.launch, &self.qemu_log).await?;
        self.pid = child.id();
        *self.child.get_mut().unwrap_or_else(|p| p.into_inner()) = child;
        *self.qmp.get_mut() = Some(qmp);
        info!(vm = %self.name(), pid = self.pid, "VM restarted");
        Ok(())
    }

    async fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(status) => Ok(Some(status.context("waiting for QEMU")?)),
            Err(_) => Ok(None),
        }
    }

    async fn kill(&mut self) -> Result<()> {
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = child.start_kill() {
            // Already exited and reaped: nothing to kill.
            debug!(error = %e, "SIGKILL");
        }
        tokio::time::timeout(KILL_REAP_TIMEOUT, child.wait())
            .await
            .map_err(|_| anyhow!("QEMU did not exit after SIGKILL"))?
            .context("waiting for QEMU")?;
        Ok(())
    }

    /// Everything worth printing when a test fails: QEMU's state, the
    /// console and QEMU log tails, and, if the guest still answers, the
    /// failed units and the last 200 journal lines.
    pub async fn dump_diagnostics(&self) -> String {
        let state = match self.exit_status() {
            None => "running".to_string(),
            Some(status) => format!("exited ({status})"),
        };
        let mut out = format!(
            "===== VM {} ({:?}, QEMU {state}, work dir {}) =====\n--- console: last 100 lines of {} ---\n{}\n--- qemu log: {} ---\n{}\n",
            self.name(),
            self.accel(),
            self.workdir.display(),
            self.console_path().display(),
            console::tail(self.console_path(), 0, 100),
            self.qemu_log.display(),
            console::tail(&self.qemu_log, 0, 20),
        );
        if self.ssh.is_some() && state == "running" {
            out.push_str("--- systemctl --failed ---\n");
            out.push_str(
                &self
                    .guest_text(&["systemctl", "--failed", "--no-pager", "--no-legend"])
                    .await,
            );
            out.push_str("\n--- journalctl -b -n 200 ---\n");
            out.push_str(
                &self
                    .guest_text(&["journalctl", "-b", "--no-pager", "-n", "200"])
                    .await,
            );
            out.push('\n');
        }
        out.push_str(&format!("===== end of VM {} =====", self.name()));
        out
    }

    /// `err` with this VM's diagnostics attached: for tests, so that a
    /// failing step prints the console and journal.
    pub async fn diagnose(&self, err: anyhow::Error) -> anyhow::Error {
        let report = self.dump_diagnostics().await;
        err.context(report)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        if let Err(e) = child.start_kill() {
            warn!(vm = %self.spec.name, error = %e, "killing QEMU");
            return;
        }
        // Reap it here rather than leave it to tokio's orphan queue, so
        // the process is gone when the test's next line runs.
        let deadline = Instant::now() + KILL_REAP_TIMEOUT;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        warn!(vm = %self.spec.name, pid = self.pid, "QEMU still running after SIGKILL");
    }
}

fn forwarded(forwards: &[PortForward], guest: u16) -> Option<u16> {
    forwards.iter().find(|f| f.guest == guest).map(|f| f.host)
}

/// Host ports for the spec's forwards, plus guest 22 when an SSH key is
/// set (unless the spec already forwards 22). The bool says whether any
/// port was picked (and so could be retried).
fn resolve_forwards(spec: &VmSpec) -> Result<(Vec<PortForward>, bool)> {
    let mut wanted: Vec<(u16, Option<u16>)> =
        spec.forwards.iter().map(|f| (f.guest, f.host)).collect();
    if spec.ssh_key.is_some() && !wanted.iter().any(|(g, _)| *g == 22) {
        wanted.push((22, None));
    }
    let need = wanted.iter().filter(|(_, h)| h.is_none()).count();
    let mut picked = pick_free_ports(need)
        .with_context(|| format!("VM {}: picking free ports", spec.name))?
        .into_iter();
    let forwards = wanted
        .into_iter()
        .map(|(guest, host)| PortForward {
            guest,
            host: host.unwrap_or_else(|| picked.next().expect("one picked port per open forward")),
        })
        .collect();
    Ok((forwards, need > 0))
}

fn port_was_taken(qemu_log: &Path) -> bool {
    std::fs::read_to_string(qemu_log)
        .map(|log| log.contains("host forwarding rule"))
        .unwrap_or(false)
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// Starts QEMU for `launch` and connects to its QMP socket. QEMU's stdout
/// and stderr are appended to `qemu_log`, after a line with the command.
async fn spawn(launch: &Launch, qemu_log: &Path) -> Result<(Child, Qmp)> {
    let qemu = resolve_binary(QEMU)?;
    let args = launch.args();
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(qemu_log)
        .with_context(|| format!("opening {}", qemu_log.display()))?;
    {
        use std::io::Write;
        let shown: Vec<String> = args
            .iter()
            .map(|a| ssh::shell_quote(&a.to_string_lossy()))
            .collect();
        writeln!(log, "# {} {}", qemu.display(), shown.join(" "))
            .with_context(|| format!("writing {}", qemu_log.display()))?;
    }
    let log_err = log
        .try_clone()
        .with_context(|| format!("opening {}", qemu_log.display()))?;
    debug!(vm = %launch.name, ?args, "starting QEMU");
    // The harness is not the agent: it drives QEMU itself, as a test tool,
    // with its own cleared environment and log capture.
    let mut child = Command::from(command(&qemu))
        .args(&args)
        .env_clear()
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", qemu.display()))?;

    let deadline = Instant::now() + QMP_CONNECT_TIMEOUT;
    let mut last_err = None;
    loop {
        if let Some(status) = child.try_wait().context("checking QEMU")? {
            bail!(
                "VM {}: QEMU exited at start ({status}):\n{}",
                launch.name,
                console::tail(qemu_log, 0, 20)
            );
        }
        if launch.qmp.exists() {
            match Qmp::connect(&launch.qmp).await {
                Ok(qmp) => return Ok((child, qmp)),
                Err(e) => last_err = Some(e),
            }
        }
        if Instant::now() >= deadline {
            // Dropping the child kills it (kill_on_drop).
            bail!(
                "VM {}: no QMP on {} within {}s ({})\n{}",
                launch.name,
                launch.qmp.display(),
                QMP_CONNECT_TIMEOUT.as_secs(),
                last_err.map_or_else(|| "socket never appeared".to_string(), |e| format!("{e:#}")),
                console::tail(qemu_log, 0, 20)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Forward;

    #[test]
    fn ssh_gets_its_own_forward_next_to_the_specs() {
        let mut spec = VmSpec::new("n1", "/img");
        spec.forwards = vec![
            Forward::guest(7443),
            Forward {
                guest: 80,
                host: Some(18080),
            },
        ];
        spec.ssh_key = Some("/k".into());
        let (fwds, picked) = resolve_forwards(&spec).unwrap();
        assert!(picked);
        assert_eq!(fwds.len(), 3);
        assert_eq!(forwarded(&fwds, 80), Some(18080));
        let a = forwarded(&fwds, 7443).unwrap();
        let b = forwarded(&fwds, 22).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, 18080);
    }

    #[test]
    fn an_explicit_ssh_forward_is_reused_and_fixed_ports_are_not_retried() {
        let mut spec = VmSpec::new("n1", "/img");
        spec.forwards = vec![Forward {
            guest: 22,
            host: Some(2222),
        }];
        spec.ssh_key = Some("/k".into());
        let (fwds, picked) = resolve_forwards(&spec).unwrap();
        assert!(!picked);
        assert_eq!(
            fwds,
            vec![PortForward {
                host: 2222,
                guest: 22
            }]
        );
        let (none, picked) = resolve_forwards(&VmSpec::new("n2", "/img")).unwrap();
        assert!(none.is_empty() && !picked);
    }

    #[test]
    fn a_taken_port_is_recognised_in_qemus_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("qemu.log");
        assert!(!port_was_taken(&log));
        // Recorded: QEMU 10.0.2 when the host port is in use.
        std::fs::write(
            &log,
            "qemu-system-x86_64: -netdev user,id=coloc-net,hostfwd=tcp:127.0.0.1:55833-:22: Could not set up host forwarding rule 'tcp:127.0.0.1:55833-:22'\n",
        )
        .unwrap();
        assert!(port_was_taken(&log));
    }

    #[tokio::test]
    async fn a_bad_spec_is_refused_before_touching_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = VmSpec::new("n1", dir.path().join("missing.img"));
        spec.cpus = 0;
        let err = Vm::start(spec, &dir.path().join("w")).await.unwrap_err();
        assert!(err.to_string().contains("cpus"), "{err}");
        assert!(!dir.path().join("w").exists());
    }

    #[tokio::test]
    async fn a_work_dir_too_long_for_the_qmp_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let long = dir.path().join("x".repeat(120));
        let spec = VmSpec::new("n1", dir.path().join("missing.img"));
        let err = Vm::start(spec, &long).await.unwrap_err();
        assert!(err.to_string().contains("too long"), "{err}");
    }
}
