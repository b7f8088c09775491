//! The one way coloc-agent runs a host command.
//!
//! Every `lsblk`, `zpool`, `vgs`, `smartctl` the agent runs goes through
//! [`Runner`], so that all of them get the same treatment: the binary is
//! resolved to an absolute path in a fixed search path (never the daemon's
//! `PATH`), arguments are passed as a vector (never through a shell), the
//! environment is cleared down to `LC_ALL=C` and a fixed `PATH` (plus the
//! few variables a caller names, such as apt's `DEBIAN_FRONTEND`) so that
//! output is parseable whatever the operator's locale, stdin is closed, the
//! full argv is logged at debug level, and a command that outlives its
//! timeout is killed with everything it spawned. Errors carry the command
//! line, the exit status and the tail of stderr, because "zpool failed" is
//! useless to an operator and "zpool list -Hp … exited with 1: The ZFS
//! modules are not loaded" is not.
//!
//! This module knows nothing about what the commands mean; interpreting
//! their output is the job of the rest of this crate. It is the only place
//! in the agent allowed to spawn a process: `clippy.toml` forbids
//! `Command::new` everywhere else.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// Directories searched for host binaries, in order. Also the `PATH` given
/// to every child, so that tools which exec helpers find the same ones.
pub const SEARCH_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// How long a command may run before it is killed, unless the runner was
/// built with [`Runner::with_timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How many trailing lines of stderr an error keeps.
const STDERR_TAIL_LINES: usize = 20;

/// Upper bound on the stderr tail, in bytes, so that one pathological line
/// cannot turn an error message into megabytes of log.
const STDERR_TAIL_MAX_BYTES: usize = 4096;

/// Runs host commands. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Runner {
    search_path: Vec<PathBuf>,
    timeout: Duration,
}

/// What a command that ran to completion produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Exit status (0 on success, or a status the caller allowed).
    pub status: i32,
    /// Standard output; guaranteed valid UTF-8 (else [`CommandError::InvalidUtf8`]).
    pub stdout: String,
    /// Standard error, decoded lossily: it is diagnostics, not data.
    pub stderr: String,
}

/// Why a host command did not produce an acceptable [`Output`].
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The program is not installed in the search path, or a program name
    /// was refused (relative path, empty name).
    #[error("{program}: not found in {SEARCH_PATH}")]
    NotFound { program: String },
    /// The program exists but could not be started, or the I/O with it
    /// (waiting for it, reading its output) failed.
    #[error("could not run `{command}`")]
    Spawn {
        command: String,
        #[source]
        io: std::io::Error,
    },
    /// The program ran and exited with a status the caller did not accept.
    /// A program killed by a signal is reported with status 128 + signal,
    /// the shell's convention, and is never accepted.
    #[error("`{command}` exited with status {status}: {stderr_tail}")]
    Failed {
        command: String,
        status: i32,
        stderr_tail: String,
    },
    /// The program was still running when the timeout expired; it and its
    /// process group were killed.
    #[error("`{command}` timed out after {secs} s and was killed")]
    Timeout { command: String, secs: u64 },
    /// The program's standard output is not UTF-8.
    #[error("`{command}` wrote output that is not UTF-8")]
    InvalidUtf8 { command: String },
}

impl CommandError {
    /// The program was not found: callers map this to "tool missing".
    pub fn is_not_found(&self) -> bool {
        matches!(self, CommandError::NotFound { .. })
    }
}

impl Default for Runner {
    fn default() -> Self {
        Runner::new()
    }
}

impl Runner {
    /// A runner resolving binaries in [`SEARCH_PATH`] with the
    /// [`DEFAULT_TIMEOUT`].
    pub fn new() -> Runner {
        Runner {
            search_path: std::env::split_paths(SEARCH_PATH).collect(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same runner with another timeout per command.
    pub fn with_timeout(mut self, timeout: Duration) -> Runner {
        self.timeout = timeout;
        self
    }

    /// The timeout applied to each command.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Resolves `program` to the absolute path that would be executed.
    ///
    /// A bare name is looked up in [`SEARCH_PATH`]; a name containing `/`
    /// must be absolute. Anything else, or a name that resolves to nothing
    /// executable, is [`CommandError::NotFound`].
    pub async fn resolve(&self, program: &str) -> Result<PathBuf, CommandError> {
        let not_found = || CommandError::NotFound {
            program: program.to_owned(),
        };
        if program.is_empty() || program.contains('\0') {
            return Err(not_found());
        }
        if program.contains('/') {
            // A relative path would depend on the daemon's working
            // directory; refuse it rather than guess.
            let path = Path::new(program);
            if path.is_absolute() && is_executable_file(path).await {
                return Ok(path.to_owned());
            }
            return Err(not_found());
        }
        for dir in &self.search_path {
            let candidate = dir.join(program);
            if is_executable_file(&candidate).await {
                return Ok(candidate);
            }
        }
        Err(not_found())
    }

    /// Runs `program` with `args` and fails unless it exits with status 0.
    pub async fn run(&self, program: &str, args: &[&str]) -> Result<Output, CommandError> {
        self.run_allow_status(program, args, &[]).await
    }

    /// Runs `program` with `args`, accepting exit status 0 and every status
    /// listed in `ok` (for tools such as `smartctl` whose exit status is a
    /// bit mask of findings rather than a verdict on the command).
    pub async fn run_allow_status(
        &self,
        program: &str,
        args: &[&str],
        ok: &[i32],
    ) -> Result<Output, CommandError> {
        self.run_with_env_allow_status(program, args, &[], ok).await
    }

    /// Runs `program` with `args` and the extra environment variables
    /// `env` (e.g. `DEBIAN_FRONTEND=noninteractive` for apt), failing
    /// unless it exits with status 0. The environment is still cleared
    /// first; `LC_ALL` and `PATH` cannot be overridden.
    pub async fn run_with_env(
        &self,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Output, CommandError> {
        self.run_with_env_allow_status(program, args, env, &[])
            .await
    }

    /// [`Runner::run_with_env`], also accepting the exit statuses in `ok`
    /// (see [`Runner::run_allow_status`]).
    pub async fn run_with_env_allow_status(
        &self,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
        ok: &[i32],
    ) -> Result<Output, CommandError> {
        let path = self.resolve(program).await?;
        let command = display_command(&path.to_string_lossy(), args);
        if let Some((name, _)) = env.iter().find(|(name, value)| !env_entry_ok(name, value)) {
            // A name with '=' or a NUL would be split or truncated by the
            // kernel into some other variable than the one asked for.
            return Err(CommandError::Spawn {
                command,
                io: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("refused environment variable name {name:?}"),
                ),
            });
        }
        tracing::debug!(command = %command, "running host command");
        let started = Instant::now();

        // The one spawn point of the agent (see the module documentation).
        #[allow(clippy::disallowed_methods)]
        let mut cmd = Command::new(&path);
        cmd.args(args).env_clear();
        for (name, value) in env {
            cmd.env(name, value);
        }
        // Set last, so that they win over anything in `env`.
        cmd.env("LC_ALL", "C")
            .env("PATH", SEARCH_PATH)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that a timeout kills whatever the
            // command forked too, not just the direct child.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|io| CommandError::Spawn {
            command: command.clone(),
            io,
        })?;
        let pid = child.id();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();

        let collected = async {
            let (status, out, err) = tokio::join!(child.wait(), read_all(stdout), read_all(stderr));
            (status, out, err)
        };
        let (status, stdout, stderr) = match tokio::time::timeout(self.timeout, collected).await {
            Ok(done) => done,
            Err(_elapsed) => {
                kill_group(pid, &command);
                tracing::warn!(
                    command = %command,
                    timeout_secs = self.timeout.as_secs(),
                    "host command timed out; killed"
                );
                return Err(CommandError::Timeout {
                    command,
                    secs: self.timeout.as_secs(),
                });
            }
        };
        let status = status.map_err(|io| CommandError::Spawn {
            command: command.clone(),
            io,
        })?;
        let stdout = stdout.map_err(|io| CommandError::Spawn {
            command: command.clone(),
            io,
        })?;
        let stderr = stderr.map_err(|io| CommandError::Spawn {
            command: command.clone(),
            io,
        })?;
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        let (code, accepted) = classify_status(status, ok);
        tracing::debug!(
            command = %command,
            status = code,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "host command finished"
        );
        if !accepted {
            return Err(CommandError::Failed {
                command,
                status: code,
                stderr_tail: stderr_tail(&stderr),
            });
        }
        let stdout =
            String::from_utf8(stdout).map_err(|_| CommandError::InvalidUtf8 { command })?;
        Ok(Output {
            status: code,
            stdout,
            stderr,
        })
    }
}

/// An environment entry the kernel will pass on as given: a non-empty
/// name without `=` or NUL, a value without NUL.
fn env_entry_ok(name: &str, value: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0']) && !value.contains('\0')
}

/// The status as an integer, and whether the caller accepts it. A death by
/// signal is never accepted, even if 128 + signal happens to be listed.
fn classify_status(status: ExitStatus, ok: &[i32]) -> (i32, bool) {
    match (status.code(), status.signal()) {
        (Some(code), _) => (code, code == 0 || ok.contains(&code)),
        (None, Some(signal)) => (128 + signal, false),
        // Neither an exit code nor a signal cannot happen for a reaped
        // child on Unix; report it as a failure rather than trust it.
        (None, None) => (-1, false),
    }
}

/// Kills the command's whole process group after a timeout.
///
/// `pid` is the group id because the child was started with
/// `process_group(0)`. If the direct child is still unreaped its pid is
/// pinned; if it was reaped (it exited but a descendant still holds the
/// output pipes), Linux keeps the number reserved while any member of the
/// group lives, and an empty group gives ESRCH. Only a full pid-space
/// wrap-around in between could make the number name someone else's group.
fn kill_group(pid: Option<u32>, command: &str) {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    let group = nix::unistd::Pid::from_raw(pid);
    if let Err(errno) = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL) {
        // ESRCH: everything already exited between the timeout and now.
        if errno != nix::errno::Errno::ESRCH {
            tracing::warn!(command = %command, pgid = pid, error = %errno, "could not kill timed-out command");
        }
    }
}

async fn read_all<R: AsyncRead + Unpin>(pipe: Option<R>) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if let Some(mut pipe) = pipe {
        pipe.read_to_end(&mut buf).await?;
    }
    Ok(buf)
}

async fn is_executable_file(path: &Path) -> bool {
    match tokio::fs::metadata(path).await {
        Ok(meta) => meta.is_file() && meta.permissions().mode() & 0o111 != 0,
        Err(_) => false,
    }
}

/// The last [`STDERR_TAIL_LINES`] non-empty lines of `stderr`, capped at
/// [`STDERR_TAIL_MAX_BYTES`] (keeping the end, where the verdict usually is).
pub(crate) fn stderr_tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(STDERR_TAIL_LINES);
    let tail = lines[start..].join("\n");
    if tail.is_empty() {
        return "(no stderr)".to_owned();
    }
    if tail.len() <= STDERR_TAIL_MAX_BYTES {
        return tail;
    }
    let mut cut = tail.len() - STDERR_TAIL_MAX_BYTES;
    while !tail.is_char_boundary(cut) {
        cut += 1;
    }
    format!("…{}", &tail[cut..])
}

/// The command line for logs and errors: arguments that a reader could
/// misread (empty, spaces, quotes, control characters) are single-quoted.
/// For display only; nothing ever executes this string.
pub fn display_command(program: &str, args: &[&str]) -> String {
    let mut line = quote_for_display(program);
    for arg in args {
        line.push(' ');
        line.push_str(&quote_for_display(arg));
    }
    line
}

fn quote_for_display(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+%".contains(c));
    if plain {
        return word.to_owned();
    }
    let mut quoted = String::with_capacity(word.len() + 2);
    quoted.push('\'');
    for c in word.chars() {
        match c {
            '\'' => quoted.push_str("'\\''"),
            c if c.is_control() => {
                let _ = write!(quoted, "\\x{:02x}", c as u32);
            }
            c => quoted.push(c),
        }
    }
    quoted.push('\'');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn true_succeeds_with_status_zero() {
        let out = Runner::new().run("true", &[]).await.expect("true runs");
        assert_eq!(out.status, 0);
        assert_eq!(out.stdout, "");
    }

    #[tokio::test]
    async fn false_fails_with_command_and_status() {
        let err = Runner::new().run("false", &[]).await.unwrap_err();
        match err {
            CommandError::Failed {
                command, status, ..
            } => {
                assert_eq!(status, 1);
                assert!(command.ends_with("/false"), "{command}");
                assert!(command.starts_with('/'), "resolved path: {command}");
            }
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn bare_names_resolve_in_the_fixed_search_path() {
        let path = Runner::new().resolve("printenv").await.unwrap();
        assert!(path.is_absolute());
        assert!(
            std::env::split_paths(SEARCH_PATH).any(|dir| path.parent() == Some(dir.as_path())),
            "{path:?}"
        );
    }

    #[tokio::test]
    async fn absolute_paths_are_used_as_given() {
        let out = Runner::new().run("/bin/true", &[]).await.unwrap();
        assert_eq!(out.status, 0);
    }

    #[tokio::test]
    async fn relative_paths_and_unknown_programs_are_not_found() {
        let runner = Runner::new();
        for program in [
            "bin/true",
            "./true",
            "../bin/true",
            "",
            "no-such-program-coloc",
            "/nonexistent/true",
            // A directory is not a program.
            "/usr/bin",
        ] {
            let err = runner.run(program, &[]).await.unwrap_err();
            assert!(
                matches!(&err, CommandError::NotFound { program: p } if p == program),
                "{program:?}: {err:?}"
            );
            assert!(err.is_not_found());
        }
    }

    #[tokio::test]
    async fn non_executable_files_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data");
        std::fs::write(&file, "not a program").unwrap();
        let err = Runner::new()
            .run(file.to_str().unwrap(), &[])
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
    }

    #[tokio::test]
    async fn environment_is_cleared_to_lc_all_and_path() {
        let out = Runner::new().run("printenv", &[]).await.unwrap();
        let mut lines: Vec<&str> = out.stdout.lines().collect();
        lines.sort_unstable();
        assert_eq!(lines, vec!["LC_ALL=C", &format!("PATH={SEARCH_PATH}")]);
    }

    #[tokio::test]
    async fn extra_environment_is_passed_but_cannot_override_the_fixed_one() {
        let out = Runner::new()
            .run_with_env(
                "printenv",
                &[],
                &[
                    ("DEBIAN_FRONTEND", "noninteractive"),
                    ("LC_ALL", "fr_FR.UTF-8"),
                    ("PATH", "/tmp"),
                ],
            )
            .await
            .unwrap();
        let mut lines: Vec<&str> = out.stdout.lines().collect();
        lines.sort_unstable();
        assert_eq!(
            lines,
            vec![
                "DEBIAN_FRONTEND=noninteractive",
                "LC_ALL=C",
                &format!("PATH={SEARCH_PATH}")
            ]
        );
    }

    #[tokio::test]
    async fn malformed_environment_entries_are_refused_before_running() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let script = format!("touch {}", marker.display());
        for (name, value) in [("", "x"), ("A=B", "x"), ("A\0", "x"), ("A", "x\0y")] {
            let err = Runner::new()
                .run_with_env("sh", &["-c", &script], &[(name, value)])
                .await
                .unwrap_err();
            assert!(
                matches!(err, CommandError::Spawn { .. }),
                "{name:?}: {err:?}"
            );
        }
        assert!(!marker.exists());
    }

    #[tokio::test]
    async fn arguments_are_never_interpreted_by_a_shell() {
        let nasty = "$(touch /tmp/coloc-runner-should-not-exist); `id` | cat > x";
        let out = Runner::new().run("printf", &["%s", nasty]).await.unwrap();
        assert_eq!(out.stdout, nasty);
        assert!(!Path::new("/tmp/coloc-runner-should-not-exist").exists());
    }

    #[tokio::test]
    async fn stdin_is_closed() {
        // `cat` with no arguments copies stdin: with stdin null it ends at
        // once instead of waiting for the daemon's terminal.
        let out = Runner::new().run("cat", &[]).await.unwrap();
        assert_eq!(out.stdout, "");
    }

    #[tokio::test]
    async fn failure_carries_the_last_stderr_lines() {
        let script = "for i in $(seq 1 30); do echo line$i >&2; done; exit 3";
        let err = Runner::new().run("sh", &["-c", script]).await.unwrap_err();
        let CommandError::Failed {
            command,
            status,
            stderr_tail,
        } = err
        else {
            panic!("expected Failed");
        };
        assert_eq!(status, 3);
        assert!(command.contains("-c 'for i in"), "{command}");
        let lines: Vec<&str> = stderr_tail.lines().collect();
        assert_eq!(lines.len(), STDERR_TAIL_LINES);
        assert_eq!(lines.first(), Some(&"line11"));
        assert_eq!(lines.last(), Some(&"line30"));
    }

    #[tokio::test]
    async fn allowed_statuses_are_accepted_and_others_refused() {
        let runner = Runner::new();
        let out = runner
            .run_allow_status("sh", &["-c", "echo hi; exit 4"], &[4, 64])
            .await
            .unwrap();
        assert_eq!(out.status, 4);
        assert_eq!(out.stdout, "hi\n");
        let err = runner
            .run_allow_status("sh", &["-c", "exit 2"], &[4, 64])
            .await
            .unwrap_err();
        assert!(
            matches!(err, CommandError::Failed { status: 2, .. }),
            "{err:?}"
        );
        // Zero is always success.
        runner.run_allow_status("true", &[], &[4]).await.unwrap();
    }

    #[tokio::test]
    async fn death_by_signal_is_never_accepted() {
        // 137 = 128 + SIGKILL: listed as allowed, still refused.
        let err = Runner::new()
            .run_allow_status("sh", &["-c", "kill -9 $$"], &[137])
            .await
            .unwrap_err();
        assert!(
            matches!(err, CommandError::Failed { status: 137, .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn timeout_kills_the_command_and_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        // The shell forks a long sleep that inherits the output pipes: a
        // runner that only killed the shell would still hang on the pipes.
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let started = Instant::now();
        let err = Runner::new()
            .with_timeout(Duration::from_secs(2))
            .run("sh", &["-c", &script])
            .await
            .unwrap_err();
        assert!(matches!(err, CommandError::Timeout { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(30));

        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The sleep was killed and (being orphaned) reaped by init; its
            // /proc entry disappears or shows it as a zombie.
            let gone = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => true,
                Ok(stat) => stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z')),
            };
            if gone {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sleep {pid} survived the timeout"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn invalid_utf8_on_stdout_is_an_error() {
        let err = Runner::new()
            .run("printf", &["\\377\\376"])
            .await
            .unwrap_err();
        assert!(matches!(err, CommandError::InvalidUtf8 { .. }), "{err:?}");
    }

    #[test]
    fn display_quotes_only_what_needs_it() {
        assert_eq!(
            display_command("/usr/bin/zpool", &["list", "-Hp", "-o", "name,size"]),
            "/usr/bin/zpool list -Hp -o name,size"
        );
        assert_eq!(
            display_command("sh", &["-c", "echo 'a b'", ""]),
            "sh -c 'echo '\\''a b'\\''' ''"
        );
        assert_eq!(display_command("x", &["a\nb"]), "x 'a\\x0ab'");
    }

    #[test]
    fn stderr_tail_is_bounded() {
        assert_eq!(stderr_tail(""), "(no stderr)");
        assert_eq!(stderr_tail("one\n\n  \ntwo\n"), "one\ntwo");
        let long = "é".repeat(STDERR_TAIL_MAX_BYTES);
        let tail = stderr_tail(&long);
        assert!(tail.len() <= STDERR_TAIL_MAX_BYTES + "…".len());
        assert!(tail.starts_with('…'));
    }
}
