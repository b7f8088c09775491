//! The `coloc` binary as a sysadmin or a script runs it against a colocd:
//! a scratch HOME and an empty environment for each run (the developer's
//! own configuration never leaks in), the server, CA and token given the
//! way the CLI documents (`COLOC_SERVER`, `COLOC_CA_FILE`, `COLOC_TOKEN`),
//! and the checks a script makes on what it printed: exit code, stdout,
//! stderr, table rows and cells, JSON.
//!
//! It only runs the binary and reads its output; what the command did is
//! checked by the tests in colocd itself (objects, audit log) or at the
//! node (a [`crate::RawAgent`]).

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

use crate::controller::TestController;
use crate::{Context, Result, programs};

/// Longer than the CLI's own call timeout, so that a hung command is
/// reported by the CLI rather than by the test.
const RUN_DEADLINE: Duration = Duration::from_secs(90);
/// How long a following command (`coloc app logs -f`) may take to print
/// its next line or to stop after Ctrl-C.
const LINE_DEADLINE: Duration = Duration::from_secs(20);

/// The `coloc` binary pointed at one colocd, with its own HOME.
pub struct Coloc {
    home: tempfile::TempDir,
    server: String,
    ca_file: PathBuf,
}

impl Coloc {
    /// Builds the binary the first time (off the async runtime, so that
    /// the controller and agent sessions in the test process keep running
    /// meanwhile).
    pub async fn new(ctl: &TestController) -> Result<Coloc> {
        tokio::task::spawn_blocking(programs::coloc_bin)
            .await
            .context("building coloc")?;
        Ok(Coloc {
            home: tempfile::tempdir()?,
            server: ctl.url(),
            ca_file: ctl.ca_file(),
        })
    }

    /// The HOME every run gets (its `.config/coloc` is the default
    /// configuration directory).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// `https://127.0.0.1:<port>`, as a sysadmin would give it.
    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// Runs `coloc args` with nothing in its environment but HOME and `env`.
    pub async fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = programs::coloc();
        cmd.env("HOME", self.home.path()).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        tokio::time::timeout(RUN_DEADLINE, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("coloc {args:?} did not finish within {RUN_DEADLINE:?}"))
            .unwrap_or_else(|e| panic!("cannot run coloc {args:?}: {e}"))
    }

    /// Runs `coloc args` like [`Coloc::run`], with `input` on its standard
    /// input (`--password-stdin`).
    pub async fn run_with_input(&self, args: &[&str], env: &[(&str, &str)], input: &str) -> Output {
        use tokio::io::AsyncWriteExt;
        let mut cmd = programs::coloc();
        cmd.env("HOME", self.home.path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run coloc {args:?}: {e}"));
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(input.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("cannot write to coloc {args:?}: {e}"));
        drop(stdin);
        tokio::time::timeout(RUN_DEADLINE, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("coloc {args:?} did not finish within {RUN_DEADLINE:?}"))
            .unwrap_or_else(|e| panic!("cannot run coloc {args:?}: {e}"))
    }

    /// The server and CA in the environment, and no credential.
    pub fn anonymous(&self) -> CliUser<'_> {
        CliUser {
            coloc: self,
            token: None,
        }
    }

    /// The server, CA and `token` in the environment.
    pub fn user(&self, token: &str) -> CliUser<'_> {
        CliUser {
            coloc: self,
            token: Some(token.to_owned()),
        }
    }
}

/// Someone at the command line with one credential.
pub struct CliUser<'a> {
    coloc: &'a Coloc,
    token: Option<String>,
}

impl CliUser<'_> {
    fn env(&self) -> Vec<(&str, &str)> {
        let mut env = vec![
            ("COLOC_SERVER", self.coloc.server.as_str()),
            (
                "COLOC_CA_FILE",
                self.coloc
                    .ca_file
                    .to_str()
                    .expect("a temporary path is UTF-8"),
            ),
        ];
        if let Some(token) = &self.token {
            env.push(("COLOC_TOKEN", token));
        }
        env
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        self.coloc.run(args, &self.env()).await
    }

    /// Runs a command with `input` on its standard input.
    pub async fn run_with_input(&self, args: &[&str], input: &str) -> Output {
        self.coloc.run_with_input(args, &self.env(), input).await
    }

    /// Runs a command that must succeed; returns its stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        text(&self.run(args).await)
    }

    /// Runs a command that must succeed and print JSON (give `--json`).
    pub async fn json(&self, args: &[&str]) -> serde_json::Value {
        json(&self.run(args).await)
    }

    /// Runs a command that must fail with exit `code` and print nothing on
    /// stdout; returns its stderr.
    pub async fn fails(&self, args: &[&str], code: i32) -> String {
        fails(&self.run(args).await, code)
    }

    /// Starts a command without waiting for it (`coloc app logs -f`).
    pub fn spawn(&self, args: &[&str]) -> Result<Following> {
        let mut cmd = programs::coloc();
        cmd.env("HOME", self.coloc.home.path())
            .envs(self.env())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("cannot start coloc")?;
        let stdout = child.stdout.take().context("coloc's stdout")?;
        Ok(Following {
            child,
            lines: BufReader::new(stdout).lines(),
        })
    }
}

/// A `coloc` left running, its stdout read line by line.
pub struct Following {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Following {
    /// The next line on stdout; None once stdout is closed.
    pub async fn next_line(&mut self) -> Result<Option<String>> {
        tokio::time::timeout(LINE_DEADLINE, self.lines.next_line())
            .await
            .with_context(|| format!("coloc printed no line within {LINE_DEADLINE:?}"))?
            .context("reading coloc's stdout")
    }

    /// The next line on stdout, which must come.
    pub async fn line(&mut self) -> Result<String> {
        self.next_line()
            .await?
            .context("coloc closed its stdout while a line was expected")
    }

    /// Sends SIGINT, as Ctrl-C in a terminal does.
    pub fn interrupt(&self) -> Result<()> {
        let pid = self.child.id().context("coloc already exited")?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid)?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT)?;
        Ok(())
    }

    /// Waits for the exit; returns the status and everything on stderr.
    pub async fn wait(&mut self) -> Result<(ExitStatus, String)> {
        let status = tokio::time::timeout(LINE_DEADLINE, self.child.wait())
            .await
            .with_context(|| format!("coloc did not exit within {LINE_DEADLINE:?}"))??;
        let mut err = String::new();
        if let Some(stderr) = self.child.stderr.as_mut() {
            stderr.read_to_string(&mut err).await?;
        }
        Ok((status, err))
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success; returns stdout.
pub fn text(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// Asserts success and JSON on stdout.
pub fn json(o: &Output) -> serde_json::Value {
    let out = text(o);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Asserts the exit code and an empty stdout; returns stderr.
pub fn fails(o: &Output, code: i32) -> String {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    assert!(stdout(o).is_empty(), "stdout: {}", stdout(o));
    stderr(o)
}

/// The table row whose first cell is `first`.
pub fn row<'a>(table: &'a str, first: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no row {first:?} in\n{table}"))
}

/// The cells of a table line (cells are separated by two spaces or more).
pub fn cells(line: &str) -> Vec<&str> {
    line.split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect()
}
