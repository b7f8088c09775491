//! Every program the harness starts as a child process, in one place:
//! `ssh-keygen` for the test-only SSH key, `coloc-image seed`, `cargo` to
//! build the `coloc` binary and the `coloc` binary itself, `colocd` for the
//! fleet benchmark, and `curl` for HTTPS checks through a VM's forwarded
//! port. Each gets an argument vector, never a shell.
//!
//! The workspace refuses `Command::new` outside the command runners
//! (clippy.toml): the agent's runner is for host commands on a node, with
//! its resolved binaries, cleared environment and timeouts, none of which
//! fits a test's own tools. Every process coloc-tests starts is made by
//! `command` here, the one place the lint is allowed. It does not
//! interpret what the programs print beyond success or failure; callers do.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use crate::{Context, Result, bail};

/// The one place coloc-tests makes a process: `program`, with no
/// standard input. The lint is allowed here only, so that every spawn in
/// the harness goes through this module's named functions.
#[allow(clippy::disallowed_methods)] // the harness's one spawn point (module doc)
fn command(program: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs a program to completion, failing with its stderr when it fails.
fn run(what: &str, program: &Path, args: &[&OsStr]) -> Result<Output> {
    let out = command(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {what} ({})", program.display()))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Writes an ed25519 key pair without a passphrase: `key` and `key.pub`.
pub fn ssh_keygen(key: &Path, comment: &str) -> Result<()> {
    let args: [&OsStr; 9] = [
        "-q".as_ref(),
        "-t".as_ref(),
        "ed25519".as_ref(),
        "-N".as_ref(),
        "".as_ref(),
        "-C".as_ref(),
        comment.as_ref(),
        "-f".as_ref(),
        key.as_os_str(),
    ];
    run("ssh-keygen", Path::new("ssh-keygen"), &args)?;
    Ok(())
}

/// `coloc-image seed <args>`.
pub fn coloc_image_seed(coloc_image: &Path, args: &[&OsStr]) -> Result<()> {
    let mut argv: Vec<&OsStr> = vec!["seed".as_ref()];
    argv.extend_from_slice(args);
    run("coloc-image seed", coloc_image, &argv)?;
    Ok(())
}

/// `curl` over HTTPS to `url`, resolving `host:port` to 127.0.0.1 and
/// trusting only `ca`; returns the HTTP status and body.
pub fn curl_https(host: &str, port: u16, url: &str, ca: &Path) -> Result<(u16, String)> {
    curl_https_as(host, port, url, ca, None)
}

/// [`curl_https`] with HTTP basic authentication as `(user, password)`.
pub fn curl_https_as(
    host: &str,
    port: u16,
    url: &str,
    ca: &Path,
    login: Option<(&str, &str)>,
) -> Result<(u16, String)> {
    let resolve = format!("{host}:{port}:127.0.0.1");
    let user = login.map(|(user, password)| format!("{user}:{password}"));
    let mut args: Vec<&OsStr> = vec![
        "-sS".as_ref(),
        "--max-time".as_ref(),
        "30".as_ref(),
        "-o".as_ref(),
        "-".as_ref(),
        "-w".as_ref(),
        "\n%{http_code}".as_ref(),
        "--resolve".as_ref(),
        resolve.as_ref(),
        "--cacert".as_ref(),
        ca.as_os_str(),
        url.as_ref(),
    ];
    if let Some(user) = &user {
        args.push(OsStr::new("--user"));
        args.push(OsStr::new(user.as_str()));
    }
    let out = run(&format!("curl {url}"), Path::new("curl"), &args)?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').context("curl output")?;
    Ok((code.trim().parse()?, body.to_string()))
}

/// Builds (once per process) the `coloc` binary of this workspace and
/// returns its path, next to the test binaries' `deps` directory.
pub fn coloc_bin() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let args: [&OsStr; 6] = [
            "build".as_ref(),
            "-q".as_ref(),
            "-p".as_ref(),
            "coloc-cli".as_ref(),
            "--bin".as_ref(),
            "coloc".as_ref(),
        ];
        if let Err(e) = run("cargo build -p coloc-cli", Path::new(&cargo), &args) {
            panic!("building coloc failed: {e:#}");
        }
    });
    // target/debug/deps/<test> -> target/debug/coloc
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .join("coloc")
}

/// The `coloc` binary, ready for arguments, with an empty environment:
/// the developer's own configuration never leaks into a test.
pub fn coloc() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::from(command(&coloc_bin()));
    cmd.env_clear().kill_on_drop(true);
    cmd
}

/// A `colocd` binary, ready for arguments (the fleet benchmark runs it as
/// its own process so that its memory is measured alone).
pub fn colocd(bin: &Path) -> tokio::process::Command {
    tokio::process::Command::from(command(bin))
}
