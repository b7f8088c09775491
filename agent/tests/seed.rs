//! First boot, as a sysadmin would see it: a seed volume made with the
//! same tools as `coloc-image seed` (mkfs.vfat + mcopy, from dosfstools
//! and mtools, which tools/install-deps installs) is applied into a
//! temporary root, and the node ends up with exactly the files the
//! contract in docs/IMAGE.md names, or with nothing at all when the seed
//! is wrong.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use coloc_agent::config::{AgentConfig, CaSource, JoinTokenSource};
use coloc_agent::enroll::{NodeIdentity, store_identity};
use coloc_agent::runner::Runner;
use coloc_agent::seed::{ApplyError, ApplyOptions, ApplyOutcome, apply};
use coloc_agent::tls::ClientIdentity;
use coloc_proto::domain::NodeName;
use coloc_proto::seed::{self, SEED_FIELDS, SeedError, SeedFile};
use sha2::{Digest, Sha256};

const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAF3zTC0/3PlhsozXjmYjmiijVI9+V1Ajk5cz14d0pOA admin@coop";

fn ca_pem() -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["coloc-ca".to_owned()]).expect("params");
    params.self_signed(&key).expect("self-signed").pem()
}

/// The seed text as docs/IMAGE.md shows it, written by hand rather than
/// by the code under test.
fn seed_text(hostname: &str, token: &str, ca: &str) -> String {
    format!(
        "hostname = \"{hostname}\"\nsite = \"paris-1\"\ncontroller = \"https://10.0.2.2:7443\"\nca_pem = \"\"\"\n{ca}\"\"\"\njoin_token = \"{token}\"\nssh_authorized_keys = [\"{ED25519}\"]\n"
    )
}

fn run(program: &str, args: &[&str]) {
    // Test setup: mkfs.vfat and mcopy build a seed volume, as an operator
    // would; the code under test reads it through its own runner.
    #[allow(clippy::disallowed_methods)]
    let out = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}); install dosfstools and mtools (tools/install-deps)")
        });
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A seed volume like the one `coloc-image seed` writes; `None` for a
/// labelled volume that holds no seed.toml.
fn seed_image(dir: &Path, name: &str, text: Option<&str>) -> PathBuf {
    let image = dir.join(name);
    let image_arg = image.to_str().expect("utf-8 path");
    run(
        "mkfs.vfat",
        &[
            "--invariant",
            "-n",
            seed::SEED_LABEL,
            "-C",
            image_arg,
            "1024",
        ],
    );
    if let Some(text) = text {
        let file = dir.join(format!("{name}.seed.toml"));
        std::fs::write(&file, text).expect("write seed.toml");
        run(
            "mcopy",
            &[
                "-i",
                image_arg,
                file.to_str().expect("utf-8"),
                "::seed.toml",
            ],
        );
    }
    image
}

struct Node {
    _dir: tempfile::TempDir,
    work: PathBuf,
    root: PathBuf,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join("work");
        let root = dir.path().join("root");
        std::fs::create_dir_all(&work).expect("work dir");
        std::fs::create_dir_all(&root).expect("root dir");
        Node {
            _dir: dir,
            work,
            root,
        }
    }

    fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    fn read(&self, abs: &str) -> String {
        std::fs::read_to_string(self.path(abs)).unwrap_or_else(|e| panic!("{abs}: {e}"))
    }

    fn mode(&self, abs: &str) -> u32 {
        std::fs::metadata(self.path(abs))
            .unwrap_or_else(|e| panic!("{abs}: {e}"))
            .permissions()
            .mode()
            & 0o7777
    }

    /// Every path under the root, relative, sorted.
    fn tree(&self) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).expect("read_dir") {
                let path = entry.expect("entry").path();
                out.push(
                    path.strip_prefix(base)
                        .expect("prefix")
                        .display()
                        .to_string(),
                );
                if path.is_dir() {
                    walk(&path, base, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &self.root, &mut out);
        out.sort();
        out
    }

    fn options(&self, device: &Path) -> ApplyOptions {
        ApplyOptions {
            device: device.to_path_buf(),
            root: self.root.clone(),
            force: false,
        }
    }
}

#[tokio::test]
async fn a_real_seed_volume_provisions_the_node() {
    let node = Node::new();
    let ca = ca_pem();
    let text = seed_text("n1", "cjt_first", &ca);
    let image = seed_image(&node.work, "seed.img", Some(&text));

    let outcome = apply(&Runner::new(), &node.options(&image))
        .await
        .expect("seed applies");
    let sha256 = hex::encode(Sha256::digest(text.as_bytes()));
    let ApplyOutcome::Applied {
        node: name,
        site,
        sha256: applied,
        files,
        hostname_set,
    } = outcome
    else {
        panic!("expected Applied, got {outcome:?}");
    };
    assert_eq!(name.as_str(), "n1");
    assert_eq!(site.as_str(), "paris-1");
    assert_eq!(applied, sha256);
    assert!(!hostname_set, "a temporary root must not rename the host");
    let files: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(
        files,
        [
            "/etc/hostname",
            "/etc/coloc/ca.pem",
            "/etc/coloc/join-token",
            "/etc/coloc/agent.toml",
            "/etc/hostid",
            "/root/.ssh/authorized_keys"
        ]
    );
    let hostid = std::fs::read(node.path("/etc/hostid")).expect("hostid written");
    assert_eq!(hostid.len(), 4);
    assert_ne!(hostid, [0, 0, 0, 0]);

    assert_eq!(node.read("/etc/hostname"), "n1\n");
    assert_eq!(node.read("/etc/coloc/ca.pem"), ca);
    assert_eq!(node.read("/etc/coloc/join-token"), "cjt_first\n");
    assert_eq!(
        node.read("/root/.ssh/authorized_keys"),
        format!("{ED25519}\n")
    );
    assert_eq!(
        node.read("/var/lib/coloc/seed.applied"),
        format!("{sha256}\n")
    );
    assert_eq!(node.mode("/etc/coloc/join-token"), 0o600);
    assert_eq!(node.mode("/root/.ssh/authorized_keys"), 0o600);
    assert_eq!(node.mode("/root/.ssh"), 0o700);
    assert_eq!(node.mode("/var/lib/coloc"), 0o700);
    assert_eq!(node.mode("/etc/coloc/agent.toml"), 0o644);

    // The daemon's own loader accepts what was written, and it points at
    // the node's paths.
    let config = AgentConfig::load(&node.path("/etc/coloc/agent.toml")).expect("agent.toml loads");
    assert_eq!(config.controller, "https://10.0.2.2:7443");
    assert_eq!(config.node_name.as_str(), "n1");
    assert_eq!(config.ca, CaSource::File("/etc/coloc/ca.pem".into()));
    assert_eq!(
        config.join_token,
        Some(JoinTokenSource::File("/etc/coloc/join-token".into()))
    );
    assert_eq!(config.state_dir, PathBuf::from("/var/lib/coloc"));
    // No temporary file is left next to what was written.
    assert!(
        node.tree().iter().all(|p| !p.ends_with(".tmp")),
        "{:?}",
        node.tree()
    );
}

#[tokio::test]
async fn the_same_seed_twice_changes_nothing_and_a_late_one_only_with_force() {
    let node = Node::new();
    let ca = ca_pem();
    let first = seed_image(
        &node.work,
        "first.img",
        Some(&seed_text("n1", "cjt_first", &ca)),
    );
    apply(&Runner::new(), &node.options(&first))
        .await
        .expect("first apply");
    // A sysadmin edits a file after first boot; the key is still plugged in.
    std::fs::write(node.path("/etc/coloc/join-token"), "edited\n").expect("edit");
    let again = apply(&Runner::new(), &node.options(&first))
        .await
        .expect("second apply");
    assert!(
        matches!(&again, ApplyOutcome::Unchanged { node, .. } if node.as_str() == "n1"),
        "{again:?}"
    );
    assert_eq!(node.read("/etc/coloc/join-token"), "edited\n");

    // The attack: a key labelled COLOCSEED plugged in after first boot,
    // with its own SSH key, controller and token. Nothing changes.
    let keys_before = node.read("/root/.ssh/authorized_keys");
    let config_before = node.read("/etc/coloc/agent.toml");
    let ca_before = node.read("/etc/coloc/ca.pem");
    let applied_before = node.read("/var/lib/coloc/seed.applied");
    let late = seed_text("n1", "cjt_second", &ca_pem())
        .replace("https://10.0.2.2:7443", "https://evil.example:7443");
    let late = seed_image(&node.work, "late.img", Some(&late));
    let outcome = apply(&Runner::new(), &node.options(&late))
        .await
        .expect("late seed");
    assert!(
        matches!(&outcome, ApplyOutcome::AlreadyProvisioned { .. }),
        "{outcome:?}"
    );
    assert!(outcome.to_string().contains("--force"), "{outcome}");
    assert_eq!(node.read("/root/.ssh/authorized_keys"), keys_before);
    assert_eq!(node.read("/etc/coloc/agent.toml"), config_before);
    assert_eq!(node.read("/etc/coloc/ca.pem"), ca_before);
    assert_eq!(node.read("/etc/coloc/join-token"), "edited\n");
    assert_eq!(node.read("/var/lib/coloc/seed.applied"), applied_before);

    // Re-provisioning is an explicit act: with force, the new seed (a
    // fresh token) is applied over the old one.
    let second = seed_image(
        &node.work,
        "second.img",
        Some(&seed_text("n1", "cjt_second", &ca)),
    );
    let forced = ApplyOptions {
        force: true,
        ..node.options(&second)
    };
    let outcome = apply(&Runner::new(), &forced).await.expect("new seed");
    assert!(
        matches!(outcome, ApplyOutcome::Applied { .. }),
        "{outcome:?}"
    );
    assert_eq!(node.read("/etc/coloc/join-token"), "cjt_second\n");
}

#[tokio::test]
async fn no_seed_volume_is_a_normal_boot() {
    let node = Node::new();
    let missing = node.work.join("no-such-device");
    let outcome = apply(&Runner::new(), &node.options(&missing))
        .await
        .expect("no device is not an error");
    assert_eq!(outcome, ApplyOutcome::NoDevice { device: missing });
    assert!(node.tree().is_empty(), "{:?}", node.tree());
}

#[tokio::test]
async fn a_malformed_seed_writes_nothing() {
    let node = Node::new();
    let ca = ca_pem();
    let good = seed_text("n1", "cjt_first", &ca);
    let cases = [
        ("unknown key", format!("{good}verbose = true\n")),
        ("bad host name", good.replace("\"n1\"", "\"N1\"")),
        (
            "bad CA",
            seed_text(
                "n1",
                "cjt_first",
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            ),
        ),
        ("clear-text controller", good.replace("https://", "http://")),
        ("not TOML", "hostname = n1\n".to_owned()),
    ];
    for (i, (what, text)) in cases.iter().enumerate() {
        let image = seed_image(&node.work, &format!("bad{i}.img"), Some(text));
        let err = apply(&Runner::new(), &node.options(&image))
            .await
            .expect_err(what);
        assert!(
            matches!(
                err,
                ApplyError::Seed(
                    SeedError::Parse(_) | SeedError::Name { .. } | SeedError::Invalid { .. }
                ) | ApplyError::Config(_)
            ),
            "{what}: {err:?}"
        );
        assert!(node.tree().is_empty(), "{what}: {:?}", node.tree());
    }

    // A labelled volume without seed.toml is a broken seed, not "no seed".
    let empty = seed_image(&node.work, "empty.img", None);
    let err = apply(&Runner::new(), &node.options(&empty))
        .await
        .expect_err("empty volume");
    assert!(matches!(err, ApplyError::Read { .. }), "{err:?}");
    let message = coloc_proto::error_chain(&err);
    assert!(message.contains("mcopy"), "{message}");
    assert!(node.tree().is_empty(), "{:?}", node.tree());
}

#[tokio::test]
async fn an_enrolled_node_refuses_another_nodes_seed() {
    let node = Node::new();
    let state_dir = node.path("/var/lib/coloc");
    let identity = NodeIdentity {
        node_name: NodeName::new("n1").expect("name"),
        site: "paris-1".into(),
        client: ClientIdentity {
            cert_pem: "cert".into(),
            key_pem: "key".into(),
        },
        ca_pem: None,
    };
    store_identity(&state_dir, &identity).expect("store identity");
    let before = node.tree();

    let ca = ca_pem();
    let wrong = seed_image(
        &node.work,
        "n2.img",
        Some(&seed_text("n2", "cjt_other", &ca)),
    );
    let err = apply(&Runner::new(), &node.options(&wrong))
        .await
        .expect_err("another node's seed");
    assert!(
        matches!(&err, ApplyError::OtherNode { enrolled, seed, .. }
            if enrolled.as_str() == "n1" && seed.as_str() == "n2"),
        "{err:?}"
    );
    assert_eq!(node.tree(), before);

    // Its own seed (a new token, say) is fine.
    let own = seed_image(&node.work, "n1.img", Some(&seed_text("n1", "cjt_own", &ca)));
    apply(&Runner::new(), &node.options(&own))
        .await
        .expect("own seed");
    assert_eq!(node.read("/etc/hostname"), "n1\n");
}

#[tokio::test]
async fn ssh_directory_permissions_are_repaired_and_keyless_seeds_keep_keys() {
    let node = Node::new();
    std::fs::create_dir_all(node.path("/root/.ssh")).expect("mkdir");
    std::fs::set_permissions(
        node.path("/root/.ssh"),
        std::fs::Permissions::from_mode(0o775),
    )
    .expect("chmod");
    let ca = ca_pem();
    let with_key = seed_image(&node.work, "key.img", Some(&seed_text("n1", "cjt_a", &ca)));
    apply(&Runner::new(), &node.options(&with_key))
        .await
        .expect("apply");
    assert_eq!(node.mode("/root/.ssh"), 0o700);

    let keyless_text = seed_text("n1", "cjt_b", &ca)
        .replace(&format!("ssh_authorized_keys = [\"{ED25519}\"]\n"), "");
    assert!(!keyless_text.contains("ssh_authorized_keys"));
    let keyless = seed_image(&node.work, "nokey.img", Some(&keyless_text));
    // Re-provisioned explicitly: a keyless seed keeps the keys there are.
    let forced = ApplyOptions {
        force: true,
        ..node.options(&keyless)
    };
    apply(&Runner::new(), &forced).await.expect("apply keyless");
    assert_eq!(node.read("/etc/coloc/join-token"), "cjt_b\n");
    assert_eq!(
        node.read("/root/.ssh/authorized_keys"),
        format!("{ED25519}\n")
    );
}

#[test]
fn the_seed_schema_is_the_documented_one() {
    // The field names are the contract with `coloc-image seed` and
    // docs/IMAGE.md: renaming one breaks every seed already written.
    assert_eq!(
        SEED_FIELDS,
        [
            "hostname",
            "site",
            "controller",
            "ca_pem",
            "join_token",
            "ssh_authorized_keys"
        ]
    );
    let file = SeedFile {
        hostname: "n1".into(),
        site: "paris-1".into(),
        controller: "https://10.0.2.2:7443".into(),
        ca_pem: "pem".into(),
        join_token: "t".into(),
        ssh_authorized_keys: vec!["k".into()],
    };
    let table: toml::Table =
        toml::from_str(&toml::to_string(&file).expect("serialize")).expect("toml");
    let keys: Vec<&str> = table.keys().map(String::as_str).collect();
    let mut expected = SEED_FIELDS.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected);
    // The contract's own example parses as the schema.
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/IMAGE.md"))
            .expect("docs/IMAGE.md");
    for field in SEED_FIELDS {
        assert!(
            doc.contains(&format!("\n{field} = ")),
            "docs/IMAGE.md does not show {field}"
        );
    }
}

#[test]
fn the_binary_applies_seeds_and_fails_loudly_on_bad_ones() {
    let node = Node::new();
    let binary = env!("CARGO_BIN_EXE_coloc-agent");
    // Runs the built coloc-agent binary, the way systemd would.
    #[allow(clippy::disallowed_methods)]
    let run_apply = |device: &Path| {
        Command::new(binary)
            .args(["seed", "apply", "--device"])
            .arg(device)
            .arg("--root")
            .arg(&node.root)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run coloc-agent")
    };

    let out = run_apply(&node.work.join("absent"));
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing to apply"),
        "{out:?}"
    );

    let ca = ca_pem();
    let bad = seed_image(
        &node.work,
        "bad.img",
        Some(&format!(
            "{}colour = \"blue\"\n",
            seed_text("n1", "cjt_x", &ca)
        )),
    );
    let out = run_apply(&bad);
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a valid seed"), "{stderr}");
    assert!(stderr.contains("colour"), "{stderr}");
    assert!(node.tree().is_empty(), "{:?}", node.tree());

    let good = seed_image(&node.work, "good.img", Some(&seed_text("n1", "cjt_x", &ca)));
    let out = run_apply(&good);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("applied seed sha256:"), "{stdout}");
    assert!(stdout.contains("for node n1 (site paris-1)"), "{stdout}");
    assert_eq!(node.read("/etc/hostname"), "n1\n");
}
