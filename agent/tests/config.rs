//! Every example configuration shipped in the repository parses, and the
//! parser refuses what a sysadmin could get wrong.

use std::path::PathBuf;
use std::time::Duration;

use coloc_agent::config::{AgentConfig, CaSource, JoinTokenSource};

fn example_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/agent.toml")
}

#[test]
fn shipped_example_parses() {
    let cfg = AgentConfig::load(&example_path()).expect("examples/agent.toml must parse");
    assert_eq!(cfg.controller, "https://127.0.0.1:7443");
    assert_eq!(cfg.ca, CaSource::File("/etc/coloc/ca.pem".into()));
    assert_eq!(
        cfg.join_token,
        Some(JoinTokenSource::File("/etc/coloc/join-token".into()))
    );
    assert_eq!(cfg.node_name.as_str(), "n1");
    assert_eq!(cfg.state_dir, PathBuf::from("/var/lib/coloc"));
    assert_eq!(cfg.session.backoff_initial, Duration::from_millis(500));
    assert_eq!(cfg.session.backoff_max, Duration::from_millis(30_000));
    assert_eq!(cfg.session.connect_timeout, Duration::from_millis(10_000));
}

#[test]
fn unknown_key_in_the_example_is_refused() {
    let text = std::fs::read_to_string(example_path()).expect("read example");
    let cases = [
        format!("{text}\nverbose = true\n"),
        text.replace(
            "connect_timeout_ms = 10000",
            "connect_timeout_ms = 10000\nretries = 3",
        ),
    ];
    for case in cases {
        let err = AgentConfig::from_toml_str(&case).expect_err("unknown key must be refused");
        let message = format!("{err:?}");
        assert!(message.contains("unknown field"), "{message}");
    }
    let text = text.replace("state_dir", "statedir");
    let err = AgentConfig::from_toml_str(&text).expect_err("typo refused");
    assert!(format!("{err:?}").contains("statedir"), "{err:?}");
}
