//! The one way coloc-image runs a host command (mmdebstrap, mkfs.ext4,
//! mtools, sfdisk, ...): an argument vector, never a shell string; the
//! program resolved on a fixed PATH (with the Debian package to install when
//! it is missing); a cleared environment with `LC_ALL=C` and `TZ=UTC` plus
//! only the variables the caller names; the full argv logged at debug; and
//! errors that carry the command, its exit status and the tail of its
//! output. It must not decide anything about images: callers interpret the
//! output.
//!
//! Each command runs in its own process group. On SIGINT, SIGTERM or SIGHUP
//! the runner sends SIGTERM to every running command's group (mmdebstrap,
//! apt, dpkg, the DKMS compilers below it) and the command then fails as
//! "interrupted", so that the build unwinds through its cleanup (unmounts,
//! partial image removed) instead of dying half-way.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::Duration;

/// The PATH every command runs with, and where programs are looked up.
const SEARCH_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Variables passed through from our own environment, so that apt and
/// mmdebstrap honour a configured proxy.
const PASSTHROUGH: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
];

/// How many lines of output an error keeps.
const TAIL_LINES: usize = 25;

#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error(
        "`{program}` is not installed (looked in {SEARCH_PATH}); install the Debian package `{package}`"
    )]
    NotFound {
        program: String,
        package: &'static str,
    },
    #[error("cannot run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` was interrupted")]
    Interrupted { command: String },
    #[error("`{command}` failed ({status}); its last output:\n{tail}")]
    Failed {
        command: String,
        status: ExitStatus,
        tail: String,
    },
}

impl CmdError {
    /// The captured output tail of a failed command ("" for other errors),
    /// for callers that turn a known failure into a clearer message.
    pub fn tail(&self) -> &str {
        match self {
            CmdError::Failed { tail, .. } => tail,
            CmdError::NotFound { .. } | CmdError::Spawn { .. } | CmdError::Interrupted { .. } => "",
        }
    }
}

/// What a finished command wrote.
#[derive(Debug)]
pub struct Output {
    pub stdout: Vec<u8>,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// A command to run: program, arguments, the extra environment, the working
/// directory and what to feed on stdin.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: String,
    args: Vec<OsString>,
    env: Vec<(String, OsString)>,
    cwd: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    cleanup: bool,
}

impl Cmd {
    /// `program` is a bare name looked up on [`SEARCH_PATH`] or an absolute
    /// path.
    pub fn new(program: &str) -> Self {
        Cmd {
            program: program.to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            stdin: None,
            cleanup: false,
        }
    }

    /// Marks a command that undoes what a build set up (umount): it still
    /// runs after an interruption, and is not sent SIGTERM.
    pub fn cleanup(mut self) -> Self {
        self.cleanup = true;
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.env.push((key.to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.to_owned());
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// The command line, quoted for a human to read or paste.
    pub fn display(&self) -> String {
        std::iter::once(OsStr::new(&self.program))
            .chain(self.args.iter().map(OsString::as_os_str))
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs to completion, capturing stdout and stderr.
    pub fn run(&self) -> Result<Output, CmdError> {
        let mut child = self.spawn()?;
        let feeder = self.feed_stdin(&mut child);
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        // stderr is drained on a thread so that neither pipe can fill up
        // and stall the child.
        let mut err_pipe = child.stderr.take();
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(p) = err_pipe.as_mut() {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        });
        if let Some(mut out) = child.stdout.take() {
            let _ = out.read_to_end(&mut stdout);
        }
        if let Ok(buf) = err_reader.join() {
            stderr = buf;
        }
        if let Some(f) = feeder {
            let _ = f.join();
        }
        let status = self.wait(&mut child)?;
        if !status.success() {
            let mut combined = String::from_utf8_lossy(&stderr).into_owned();
            if combined.trim().is_empty() {
                combined = String::from_utf8_lossy(&stdout).into_owned();
            }
            return Err(CmdError::Failed {
                command: self.display(),
                status,
                tail: tail_of(&combined, TAIL_LINES),
            });
        }
        Ok(Output { stdout })
    }

    /// Runs to completion, handing every line of stdout and stderr to `each`
    /// as it arrives (for long commands whose progress the user watches).
    pub fn run_streaming(&self, mut each: impl FnMut(&str)) -> Result<(), CmdError> {
        let mut child = self.spawn()?;
        let feeder = self.feed_stdin(&mut child);
        let (tx, rx) = mpsc::channel::<String>();
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(spawn_line_reader(out, tx.clone()));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(spawn_line_reader(err, tx.clone()));
        }
        drop(tx);
        let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
        for line in rx {
            each(&line);
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        for r in readers {
            let _ = r.join();
        }
        if let Some(f) = feeder {
            let _ = f.join();
        }
        let status = self.wait(&mut child)?;
        if !status.success() {
            return Err(CmdError::Failed {
                command: self.display(),
                status,
                tail: tail.into_iter().collect::<Vec<_>>().join("\n"),
            });
        }
        Ok(())
    }

    fn spawn(&self) -> Result<std::process::Child, CmdError> {
        let program = resolve(&self.program)?;
        tracing::debug!(command = %self.display(), "running");
        // coloc-image's own runner, the one spawn point of the image builder:
        // its build tools need a process-group interrupt handler, TZ=UTC and
        // streamed output that the agent's runner does not have (clippy.toml).
        #[allow(clippy::disallowed_methods)]
        let mut cmd = Command::new(&program);
        cmd.args(&self.args)
            .env_clear()
            .env("PATH", SEARCH_PATH)
            .env("LC_ALL", "C")
            .env("TZ", "UTC")
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for key in PASSTHROUGH {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        // Its own process group: a terminal's Ctrl-C reaches only us, and
        // we decide (see `watch_signals`) to stop the whole group.
        cmd.process_group(0);
        if interrupted() && !self.cleanup {
            return Err(CmdError::Interrupted {
                command: self.display(),
            });
        }
        let child = cmd.spawn().map_err(|source| CmdError::Spawn {
            command: self.display(),
            source,
        })?;
        if !self.cleanup {
            running()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(child.id());
        }
        Ok(child)
    }

    fn wait(&self, child: &mut std::process::Child) -> Result<ExitStatus, CmdError> {
        let status = child.wait();
        running()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&p| p != child.id());
        let status = status.map_err(|source| CmdError::Spawn {
            command: self.display(),
            source,
        })?;
        if interrupted() && !status.success() && !self.cleanup {
            return Err(CmdError::Interrupted {
                command: self.display(),
            });
        }
        Ok(status)
    }

    fn feed_stdin(&self, child: &mut std::process::Child) -> Option<std::thread::JoinHandle<()>> {
        let bytes = self.stdin.clone()?;
        let mut pipe = child.stdin.take()?;
        Some(std::thread::spawn(move || {
            // A child that exits without reading all of stdin is reported
            // through its exit status, not through this write.
            let _ = pipe.write_all(&bytes);
        }))
    }
}

fn interrupt_flag() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Process ids (= process group ids) of the commands running now.
fn running() -> &'static Mutex<Vec<u32>> {
    static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());
    &RUNNING
}

/// Whether SIGINT, SIGTERM or SIGHUP arrived.
pub fn interrupted() -> bool {
    interrupt_flag().load(Ordering::SeqCst)
}

/// Installs the signal handling described in the module comment: the
/// signals only set a flag; a watcher thread sends SIGTERM to the process
/// group of every running command once it is set (and again every few
/// seconds, for commands started in between).
pub fn watch_signals() -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        signal_hook::flag::register(sig, Arc::clone(interrupt_flag()))?;
    }
    std::thread::Builder::new()
        .name("signal-forwarder".into())
        .spawn(|| {
            let mut last_sent: Option<std::time::Instant> = None;
            loop {
                std::thread::sleep(Duration::from_millis(100));
                if !interrupted() {
                    continue;
                }
                if last_sent.is_some_and(|t| t.elapsed() < Duration::from_secs(5)) {
                    continue;
                }
                last_sent = Some(std::time::Instant::now());
                let pids = running().lock().unwrap_or_else(|e| e.into_inner()).clone();
                for pid in pids {
                    if let Ok(pid) = i32::try_from(pid) {
                        // The group may be gone already; nothing to do then.
                        let _ = nix::sys::signal::killpg(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGTERM,
                        );
                    }
                }
            }
        })?;
    Ok(())
}

fn spawn_line_reader<R: Read + Send + 'static>(
    pipe: R,
    tx: mpsc::Sender<String>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    // Progress bars redraw with \r; keep the last state.
                    let line = line.trim_end_matches(['\n', '\r']);
                    let line = line.rsplit('\r').next().unwrap_or(line);
                    if tx.send(line.to_owned()).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

/// Finds `program` on [`SEARCH_PATH`] (or checks an absolute path).
pub fn resolve(program: &str) -> Result<PathBuf, CmdError> {
    let not_found = || CmdError::NotFound {
        program: program.to_owned(),
        package: package_for(program),
    };
    if program.starts_with('/') {
        let p = PathBuf::from(program);
        return if p.exists() { Ok(p) } else { Err(not_found()) };
    }
    SEARCH_PATH
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
        .ok_or_else(not_found)
}

/// The Debian package that ships a program we call, for the install hint.
fn package_for(program: &str) -> &'static str {
    let name = program.rsplit('/').next().unwrap_or(program);
    match name {
        "mmdebstrap" => "mmdebstrap",
        "mkfs.vfat" | "fsck.vfat" => "dosfstools",
        "mmd" | "mcopy" | "mdir" | "minfo" | "mlabel" => "mtools",
        "sfdisk" => "fdisk",
        "apt-ftparchive" => "apt-utils",
        "apt-helper" | "apt-get" => "apt",
        "mkfs.ext4" | "debugfs" | "dumpe2fs" | "e2fsck" => "e2fsprogs",
        "dpkg-deb" | "dpkg-query" => "dpkg",
        "git" => "git",
        "tar" => "tar",
        "mount" | "umount" => "mount",
        "chroot" => "coreutils",
        _ => "that provides it",
    }
}

/// The last `n` non-empty lines of `text`.
pub fn tail_of(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Quotes one argument the way a POSIX shell would need it (for display
/// only: nothing here is ever handed to a shell).
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_stdout_and_feeds_stdin() {
        let out = Cmd::new("cat").stdin("hello\n").run().expect("cat runs");
        assert_eq!(out.stdout_str(), "hello\n");
    }

    #[test]
    fn environment_is_cleared_except_what_is_named() {
        let out = Cmd::new("env").env("COLOC_X", "1").run().expect("env runs");
        let text = out.stdout_str();
        assert!(text.contains("COLOC_X=1"));
        assert!(text.contains("LC_ALL=C"));
        assert!(!text.contains("HOME="), "HOME leaked: {text}");
    }

    #[test]
    fn failure_carries_command_status_and_stderr_tail() {
        let err = Cmd::new("ls")
            .arg("/nonexistent/coloc test")
            .run()
            .expect_err("ls must fail");
        let msg = err.to_string();
        assert!(
            msg.contains("`ls '/nonexistent/coloc test'` failed"),
            "{msg}"
        );
        assert!(msg.contains("No such file"), "{msg}");
        assert!(err.tail().contains("No such file"));
    }

    #[test]
    fn missing_program_names_the_package() {
        let err = Cmd::new("mmd-not-a-real-tool").run().expect_err("missing");
        assert!(matches!(err, CmdError::NotFound { .. }));
        let err = resolve("/nonexistent/mcopy").expect_err("missing");
        assert!(err.to_string().contains("`mtools`"), "{err}");
    }

    #[test]
    fn streaming_sees_every_line_and_keeps_the_tail_on_failure() {
        let mut seen = Vec::new();
        Cmd::new("printf")
            .arg("a\nb\r c\n")
            .run_streaming(|l| seen.push(l.to_owned()))
            .expect("printf runs");
        assert_eq!(seen, vec!["a".to_owned(), " c".to_owned()]);
        let err = Cmd::new("ls")
            .arg("/nonexistent")
            .run_streaming(|_| {})
            .expect_err("fails");
        assert!(err.tail().contains("No such file"));
    }

    #[test]
    fn display_quotes_only_what_needs_it() {
        let c = Cmd::new("mcopy").args(["-i", "a b.img", "it's"]);
        assert_eq!(c.display(), r"mcopy -i 'a b.img' 'it'\''s'");
    }
}
