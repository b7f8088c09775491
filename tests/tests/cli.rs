//! The README's story, typed at the `coloc` command line against a real
//! colocd: sites, join tokens, tenants, users, grants, tokens, audit, and
//! the exit codes scripts rely on.

use std::path::PathBuf;
use std::process::Output;

use coloc_tests::*;

/// Builds (if needed) and locates the `coloc` binary of this workspace.
fn coloc_bin() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-q", "-p", "coloc-cli", "--bin", "coloc"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building coloc failed");
    });
    // target/debug/deps/<test> -> target/debug/coloc
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .join("coloc")
}

struct Cli {
    config: PathBuf,
}

impl Cli {
    fn new(ctl: &TestController, token: &str, dir: &std::path::Path) -> Result<Self> {
        let config = dir.join(format!("{}.toml", &token[..12]));
        std::fs::write(
            &config,
            format!(
                "server = \"{}\"\nca_file = \"{}\"\ntoken = \"{token}\"\n",
                ctl.url(),
                ctl.data_dir().join("ca.pem").display()
            ),
        )?;
        Ok(Self { config })
    }

    async fn run(&self, args: &[&str]) -> Output {
        let bin = coloc_bin();
        let mut cmd = tokio::process::Command::new(bin);
        cmd.arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("COLOC_SERVER")
            .env_remove("COLOC_TOKEN")
            .env_remove("COLOC_CONFIG");
        cmd.output().await.expect("coloc runs")
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "coloc {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    async fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        serde_json::from_str(&self.ok(&full).await).expect("--json prints JSON")
    }

    async fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args).await;
        assert_eq!(
            out.status.code(),
            Some(code),
            "coloc {args:?}: stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

#[tokio::test]
async fn the_readme_story_at_the_command_line() -> Result<()> {
    let ctl = TestController::start().await?;
    let dir = tempfile::tempdir()?;
    let admin = Cli::new(&ctl, &ctl.admin_token, dir.path())?;

    admin
        .ok(&[
            "site",
            "create",
            "paris-1",
            "--country",
            "FR",
            "--city",
            "Paris",
        ])
        .await;
    let err = admin
        .fails(&["site", "create", "berlin-1", "--country", "DE"], 6)
        .await;
    assert!(err.contains("France"), "{err}");
    let sites = admin.ok(&["site", "list"]).await;
    assert!(
        sites.contains("paris-1") && !sites.contains("berlin-1"),
        "{sites}"
    );

    let secret = admin
        .ok(&[
            "node", "token", "create", "--site", "paris-1", "--ttl", "1h",
        ])
        .await;
    let secret = secret.trim();
    assert!(secret.starts_with("cjt_"), "{secret}");
    enroll_raw(&ctl, secret, "n1").await?;
    let nodes = admin.json(&["node", "list"]).await;
    let nodes = nodes.as_array().expect("a list");
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["name"], "n1");
    let shown = admin.ok(&["node", "show", "n1"]).await;
    assert!(shown.contains("paris-1"), "{shown}");
    admin.fails(&["node", "show", "ghost"], 5).await;
    admin.fails(&["node", "show", "Bad Name"], 7).await;

    admin
        .ok(&[
            "tenant",
            "create",
            "asso-x",
            "--offer",
            "participatif",
            "--expires",
            "2099-06-30",
        ])
        .await;
    admin
        .fails(
            &[
                "tenant",
                "create",
                "asso-x",
                "--offer",
                "participatif",
                "--expires",
                "2099-06-30",
            ],
            6,
        )
        .await;
    admin
        .ok(&[
            "user", "create", "alice", "--tenant", "asso-x", "--role", "operator",
        ])
        .await;
    admin.ok(&["user", "grant", "alice", "--node", "n1"]).await;
    let alice_token = admin
        .ok(&["token", "create", "--user", "alice", "--ttl", "30d"])
        .await;
    let alice = Cli::new(&ctl, alice_token.trim(), dir.path())?;
    let me = alice.json(&["whoami"]).await;
    assert_eq!(me["name"], "alice");
    let seen = alice.json(&["node", "list"]).await;
    assert_eq!(seen.as_array().map(Vec::len), Some(1));
    let err = alice.fails(&["node", "drain", "n1"], 4).await;
    assert!(err.contains("permission denied"), "{err}");
    alice
        .fails(
            &[
                "tenant",
                "create",
                "asso-y",
                "--offer",
                "responsable",
                "--expires",
                "2099-01-01",
            ],
            4,
        )
        .await;

    admin.ok(&["node", "drain", "n1"]).await;
    let n1 = admin.json(&["node", "show", "n1"]).await;
    assert_eq!(n1["draining"], true);

    let audit = admin.json(&["audit", "--actor", "user:alice"]).await;
    let entries = audit.as_array().expect("a list");
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "node.drain" && e["outcome"] == "denied"),
        "{audit}"
    );
    // Alice's own view of the audit log is her association's.
    let own = alice.json(&["audit"]).await;
    assert!(
        own.as_array()
            .expect("a list")
            .iter()
            .all(|e| e["tenant"] == "asso-x")
    );

    // Revoked: exit code 3 and plain words.
    let toks = admin.json(&["token", "list", "--user", "alice"]).await;
    let id = toks[0]["id"].as_str().expect("an id").to_string();
    admin.ok(&["token", "revoke", &id]).await;
    let err = alice.fails(&["whoami"], 3).await;
    assert!(err.contains("revoked"), "{err}");
    Ok(())
}

#[tokio::test]
async fn unreachable_controller_and_missing_credentials() -> Result<()> {
    let mut ctl = TestController::start().await?;
    let dir = tempfile::tempdir()?;
    let admin = Cli::new(&ctl, &ctl.admin_token, dir.path())?;
    ctl.stop().await?;
    let err = admin.fails(&["site", "list"], 8).await;
    assert!(err.contains("cannot reach colocd"), "{err}");
    ctl.restart().await?;
    admin.ok(&["site", "list"]).await;
    let empty = dir.path().join("empty.toml");
    std::fs::write(
        &empty,
        format!(
            "server = \"{}\"\nca_file = \"{}\"\n",
            ctl.url(),
            ctl.data_dir().join("ca.pem").display()
        ),
    )?;
    let anon = Cli { config: empty };
    anon.fails(&["site", "list"], 3).await;
    Ok(())
}
