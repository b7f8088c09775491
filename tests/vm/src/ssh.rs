//! The test channel into a guest: the host's `ssh` client, as root, with
//! the key from the test seed. `ssh` joins everything after the host name
//! with spaces and hands the result to the remote user's shell, so an
//! argument vector only survives if each argument is quoted for that shell:
//! [`shell_quote`] single-quotes every argument, always, which leaves the
//! shell nothing to interpret (no expansion, no keywords, no assignments).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::process::Command;

use crate::programs::command;
use crate::qemu::resolve_binary;

/// How long `ssh` waits for the TCP connection and the server's banner.
/// QEMU's user networking accepts on the host side at once, so this mostly
/// bounds the wait for the guest's sshd.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Quotes one argument for a POSIX shell: `'...'`, with each `'` written as
/// `'\''`. Inside single quotes nothing is special, so the shell passes the
/// bytes through unchanged, whatever they are.
pub fn shell_quote(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('\'');
    for c in arg.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// The remote command line for an argument vector: each argument quoted,
/// joined with spaces.
pub fn remote_command(argv: &[&str]) -> String {
    argv.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where and how to reach a guest.
#[derive(Debug, Clone)]
pub(crate) struct SshTarget {
    pub port: u16,
    pub key: PathBuf,
}

impl SshTarget {
    /// `ssh`'s arguments: no config files, no agent, no known_hosts (every
    /// test VM has fresh host keys), never a password prompt.
    pub(crate) fn args(&self, argv: &[&str]) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            self.key.clone().into(),
            "-p".into(),
            self.port.to_string().into(),
        ];
        for opt in [
            "BatchMode=yes".to_string(),
            "IdentitiesOnly=yes".to_string(),
            "StrictHostKeyChecking=no".to_string(),
            "UserKnownHostsFile=/dev/null".to_string(),
            "LogLevel=ERROR".to_string(),
            format!("ConnectTimeout={}", CONNECT_TIMEOUT.as_secs()),
            // A guest that freezes or is powered off mid-command is noticed
            // within half a minute instead of never.
            "ServerAliveInterval=5".to_string(),
            "ServerAliveCountMax=6".to_string(),
        ] {
            a.push("-o".into());
            a.push(opt.into());
        }
        a.push("-n".into());
        a.push("root@127.0.0.1".into());
        a.push("--".into());
        a.push(remote_command(argv).into());
        a
    }
}

/// What a guest command did. `status` is `None` when `ssh` died of a
/// signal; 255 is `ssh`'s own failure (or a command exiting 255).
#[derive(Debug, Clone)]
pub(crate) struct RemoteOutput {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub(crate) async fn run(target: &SshTarget, argv: &[&str]) -> Result<RemoteOutput> {
    let ssh = resolve_binary("ssh")?;
    // The test-only SSH channel into a guest: the harness runs `ssh` itself
    // (the agent's runner is for the node's own host tools).
    let out = Command::from(command(&ssh))
        .args(target.args(argv))
        .env_clear()
        .env("LC_ALL", "C")
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Dropping the future (a caller's timeout) must not leave ssh behind.
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {}", ssh.display()))?;
    Ok(RemoteOutput {
        status: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Copies the private key into the VM's work directory with mode 0600:
/// `ssh` refuses a key other users can read, and test fixtures rarely get
/// that right.
pub(crate) fn install_key(key: &Path, dest: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let bytes = std::fs::read(key).with_context(|| format!("reading SSH key {}", key.display()))?;
    match std::fs::remove_file(dest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", dest.display())),
    }
    std::fs::write(dest, bytes).with_context(|| format!("writing {}", dest.display()))?;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", dest.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NASTY: &[&str] = &[
        "plain",
        "",
        "two words",
        "it's",
        "'",
        "''",
        "\\'",
        "$HOME",
        "${PATH}",
        "`id`",
        "$(id)",
        "; rm -rf /tmp/x",
        "a && b || c",
        "*",
        "~",
        "FOO=bar",
        "if",
        "!",
        "#comment",
        "line1\nline2",
        "tab\there",
        "-n",
        "--",
        "\"double\"",
        "back\\slash",
        "unicode: é ✓",
        "> /tmp/out",
        "%s|",
    ];

    #[test]
    fn quoting_is_single_quotes_with_escaped_quotes() {
        assert_eq!(shell_quote("abc"), "'abc'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(remote_command(&["echo", "a b"]), "'echo' 'a b'");
    }

    /// The real proof: a POSIX shell given the quoted line runs exactly the
    /// argument vector. `printf '%s\0'` prints each argument it received,
    /// NUL-terminated, so any splitting, expansion or injection shows.
    #[test]
    fn quoted_arguments_reach_the_shell_unchanged() {
        for shell in ["/bin/sh", "/bin/bash"] {
            if !Path::new(shell).exists() {
                continue;
            }
            let mut argv = vec!["printf", "%s\\0"];
            argv.extend_from_slice(NASTY);
            let line = remote_command(&argv);
            // This test checks the quoting against a real local shell.
            let out = crate::programs::command(shell)
                .arg("-c")
                .arg(&line)
                .env_clear()
                .env("HOME", "/should-not-expand")
                .output()
                .unwrap();
            assert!(out.status.success(), "{shell}: {line}");
            let got: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
            let expected: Vec<&[u8]> = NASTY
                .iter()
                .map(|s| s.as_bytes())
                .chain(std::iter::once(&b""[..]))
                .collect();
            assert_eq!(got, expected, "{shell} split or expanded: {line}");
        }
    }

    #[test]
    fn ssh_args_are_batch_mode_on_loopback_with_the_command_last() {
        let t = SshTarget {
            port: 40022,
            key: "/w/n1/ssh_key".into(),
        };
        let args: Vec<String> = t
            .args(&["systemctl", "is-active", "--", "x y"])
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let opts: Vec<&str> = args
            .windows(2)
            .filter(|w| w[0] == "-o")
            .map(|w| w[1].as_str())
            .collect();
        for expected in [
            "BatchMode=yes",
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "IdentitiesOnly=yes",
            "ConnectTimeout=10",
        ] {
            assert!(opts.contains(&expected), "missing {expected}");
        }
        assert!(args.windows(2).any(|w| w == ["-i", "/w/n1/ssh_key"]));
        assert!(args.windows(2).any(|w| w == ["-p", "40022"]));
        assert!(args.windows(2).any(|w| w == ["-F", "/dev/null"]));
        let n = args.len();
        assert_eq!(
            args[n - 3..],
            [
                "root@127.0.0.1".to_string(),
                "--".to_string(),
                "'systemctl' 'is-active' '--' 'x y'".to_string()
            ]
        );
    }

    #[test]
    fn installed_keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("key");
        std::fs::write(&src, "KEY").unwrap();
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o644)).unwrap();
        let dest = dir.path().join("copy");
        install_key(&src, &dest).unwrap();
        install_key(&src, &dest).unwrap();
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "KEY");
    }
}
