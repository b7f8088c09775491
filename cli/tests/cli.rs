//! The `coloc` binary as a script sees it: exit codes, stdout and stderr,
//! without a colocd. Each run gets an empty environment and a fresh HOME so
//! the developer's own config never leaks in. What the CLI does against a
//! colocd is tested against the real one, in tests/tests/cli*.rs; only a
//! server no colocd would be (one that never answers) is played here.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `coloc args` with nothing in its environment but HOME and `env`.
fn command(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    // The one spawn point here: the binary under test, started as a script
    // would (clippy.toml).
    #[allow(clippy::disallowed_methods)]
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coloc"));
    cmd.env_clear()
        .env("HOME", home)
        .args(args)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn coloc(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    command(home, args, env).output().expect("run coloc")
}

/// Like [`coloc`], for a run that may hang: past `deadline` the process is
/// killed and the test fails, rather than the test hanging with it.
fn coloc_within(deadline: Duration, home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = command(home, args, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start coloc");
    let started = Instant::now();
    while child.try_wait().expect("wait for coloc").is_none() {
        if started.elapsed() > deadline {
            child.kill().expect("kill coloc");
            let o = child.wait_with_output().expect("reap coloc");
            panic!(
                "coloc {args:?} still running after {deadline:?}; stderr: {}",
                stderr(&o)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Exited: its output is in the pipes (a few lines, under their buffer).
    child.wait_with_output().expect("read coloc's output")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn self_signed_ca(dir: &Path) -> std::path::PathBuf {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    let path = dir.join("ca.pem");
    std::fs::write(&path, cert.pem()).unwrap();
    path
}

#[test]
fn long_help_documents_exit_codes_and_configuration() {
    let home = tempfile::tempdir().unwrap();
    let o = coloc(home.path(), &["--help"], &[]);
    assert_eq!(o.status.code(), Some(0));
    let text = stdout(&o);
    for needle in [
        "Exit codes:",
        "3  not authenticated",
        "8  unavailable",
        "COLOC_TOKEN",
        "config.toml",
        "--json",
    ] {
        assert!(
            text.contains(needle),
            "{needle:?} missing from --help:\n{text}"
        );
    }
}

#[test]
fn every_command_has_help() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        &["site", "create", "--help"][..],
        &["node", "token", "create", "--help"],
        &["node", "label", "--help"],
        &["tenant", "create", "--help"],
        &["user", "cert", "--help"],
        &["user", "cert", "issue", "--help"],
        &["user", "cert", "list", "--help"],
        &["user", "cert", "revoke", "--help"],
        &["user", "set-role", "--help"],
        &["user", "disable", "--help"],
        &["user", "enable", "--help"],
        &["user", "delete", "--help"],
        &["token", "list", "--help"],
        &["audit", "--help"],
        &["tenant", "set-storage", "--help"],
        &["pool", "create", "--help"],
        &["pool", "list", "--help"],
        &["volume", "create", "--help"],
        &["volume", "list", "--help"],
        &["volume", "show", "--help"],
        &["volume", "resize", "--help"],
        &["volume", "delete", "--help"],
        &["volume", "restore", "--help"],
        &["volume", "snapshot", "create", "--help"],
        &["volume", "snapshot", "list", "--help"],
        &["volume", "snapshot", "delete", "--help"],
        &["volume", "rollback", "--help"],
        &["app", "catalog", "--help"],
        &["app", "request", "--help"],
        &["app", "list", "--help"],
        &["app", "status", "--help"],
        &["app", "start", "--help"],
        &["app", "stop", "--help"],
        &["app", "restart", "--help"],
        &["app", "remove", "--help"],
        &["app", "logs", "--help"],
        &["request", "list", "--help"],
        &["request", "show", "--help"],
        &["request", "comment", "--help"],
        &["request", "approve", "--help"],
        &["request", "reject", "--help"],
        &["node", "health", "--help"],
        &["node", "scrub", "--help"],
        &["node", "self-test", "--help"],
        &["alert", "list", "--help"],
        &["alert", "show", "--help"],
        &["alert", "ack", "--help"],
        &["alert", "silence", "--help"],
        &["alert", "unsilence", "--help"],
    ] {
        let o = coloc(home.path(), args, &[]);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).contains("Usage: coloc"), "{args:?}");
    }
}

#[test]
fn bad_names_exit_7_before_any_connection() {
    let home = tempfile::tempdir().unwrap();
    // No server is configured at all: the name is refused first.
    let o = coloc(home.path(), &["node", "show", "Web_1"], &[]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.starts_with("coloc: "), "{err}");
    assert!(err.contains("invalid node name"), "{err}");

    for args in [
        &["site", "create", "paris-1", "--country", "FRA"][..],
        &[
            "node", "token", "create", "--site", "paris-1", "--ttl", "10",
        ],
        &[
            "tenant",
            "create",
            "asso-x",
            "--offer",
            "responsable",
            "--expires",
            "31/12/2027",
        ],
        &["user", "create", "bob", "--role", "member"],
        &["node", "label", "n1", "Role=web"],
        &["app", "status", "asso-x/my-app"],
        &["app", "logs", "asso-x/radicale", "-n", "5000"],
        &["request", "comment", "1", "a\tb"],
        &["node", "health", "N1"],
        &["node", "scrub", "n1", "raidz1"],
        &["node", "self-test", "n1", "/dev/../sda"],
        &["alert", "show", "0"],
        &["alert", "silence", "3", "--for", "31d"],
        &["alert", "ack", "3", "--comment", ""],
    ] {
        let o = coloc(home.path(), args, &[]);
        assert_eq!(o.status.code(), Some(7), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn usage_errors_exit_2() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        &["node", "frobnicate"][..],
        &["site", "create"],
        &["node", "label", "n1"],
        &["whoami", "--cert", "me.crt"],
        &["app", "remove", "asso-x/radicale"],
        &["request", "reject", "1"],
        &["alert", "ack", "3"],
        &["alert", "silence", "3"],
        &["node", "self-test", "n1"],
    ] {
        let o = coloc(home.path(), args, &[]);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn missing_server_is_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    let o = coloc(home.path(), &["site", "list"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no server given"), "{}", stderr(&o));
}

#[test]
fn plain_http_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let o = coloc(
        home.path(),
        &["site", "list"],
        &[
            ("COLOC_SERVER", "http://127.0.0.1:7443"),
            ("COLOC_CA_FILE", "/nonexistent"),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("only speaks TLS"), "{}", stderr(&o));
}

#[test]
fn unknown_config_keys_are_refused() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join(".config/coloc");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        "server = \"https://127.0.0.1:7443\"\nca_file = \"ca.pem\"\nsecret = \"x\"\n",
    )
    .unwrap();
    let o = coloc(home.path(), &["site", "list"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("secret"), "{}", stderr(&o));
}

#[test]
fn an_explicit_config_file_must_exist() {
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("nope.toml");
    let o = coloc(
        home.path(),
        &["site", "list", "--config", missing.to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot read config file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_example_config_is_accepted() {
    // Copy the example next to the files it names, then run a command
    // against a closed port: reaching "cannot reach" means the config was
    // read, its relative paths resolved, and the token file found.
    let home = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config.toml");
    let dir = home.path().join("conf");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&example, dir.join("config.toml")).unwrap();
    self_signed_ca(&dir);
    std::fs::write(dir.join("token"), "cat_example\n").unwrap();
    let port = closed_port();
    let o = coloc(
        home.path(),
        &[
            "whoami",
            "--config",
            dir.join("config.toml").to_str().unwrap(),
        ],
        &[("COLOC_SERVER", &format!("https://127.0.0.1:{port}"))],
    );
    assert_eq!(o.status.code(), Some(8), "{}", stderr(&o));
}

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn an_unreachable_server_exits_8() {
    let home = tempfile::tempdir().unwrap();
    let ca = self_signed_ca(home.path());
    let port = closed_port();
    let server = format!("https://127.0.0.1:{port}");
    let o = coloc(
        home.path(),
        &[
            "site",
            "list",
            "--server",
            &server,
            "--ca-file",
            ca.to_str().unwrap(),
        ],
        &[("COLOC_TOKEN", "cat_x")],
    );
    assert_eq!(o.status.code(), Some(8), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!("coloc: cannot reach colocd at {server}: ")),
        "{err}"
    );
}

#[test]
fn a_server_that_never_answers_exits_8() {
    // Accepts the connection and then says nothing: no TLS handshake, no
    // answer. The CLI gives up on its own rather than hang.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = std::thread::spawn(move || listener.accept().map(|(stream, _)| stream));
    let home = tempfile::tempdir().unwrap();
    let ca = self_signed_ca(home.path());
    let server = format!("https://127.0.0.1:{port}");
    let started = Instant::now();
    let o = coloc_within(
        Duration::from_secs(60),
        home.path(),
        &[
            "site",
            "list",
            "--server",
            &server,
            "--ca-file",
            ca.to_str().unwrap(),
        ],
        &[("COLOC_TOKEN", "cat_x")],
    );
    assert_eq!(o.status.code(), Some(8), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.starts_with("coloc: "), "{err}");
    assert!(
        err.starts_with(&format!("coloc: cannot reach colocd at {server}: ")),
        "{err}"
    );
    assert!(err.contains("no answer within 10 s"), "{err}");
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    // The CLI's own limit (10 s) ended it, not the test's.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "gave up after {:?}",
        started.elapsed()
    );
    drop(held.join().unwrap());
}

#[test]
fn a_missing_ca_file_is_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    let o = coloc(
        home.path(),
        &["site", "list"],
        &[
            ("COLOC_SERVER", "https://127.0.0.1:7443"),
            ("COLOC_CA_FILE", "/nonexistent/ca.pem"),
            ("COLOC_TOKEN", "cat_x"),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent/ca.pem"), "{}", stderr(&o));
}
