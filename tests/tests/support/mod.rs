//! What the end-to-end tests share: the image and seed tool from the
//! environment `make test` sets, the test-only SSH key, and per-node seeds.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use coloc_tests::*;

pub fn env_path(var: &str) -> PathBuf {
    let v = std::env::var_os(var).unwrap_or_else(|| {
        panic!("{var} is not set: run these tests with `make test` (it builds the image)")
    });
    PathBuf::from(v)
}

/// An ed25519 key pair for the test-only SSH channel.
pub fn ssh_key(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let key = dir.join("id_ed25519");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "coloc-e2e", "-f"])
        .arg(&key)
        .status()?;
    if !status.success() {
        bail!("ssh-keygen failed");
    }
    Ok((key.clone(), key.with_extension("pub")))
}

/// A seed volume for `hostname` joining `ctl` at site paris-1.
pub fn seed(
    dir: &Path,
    ctl: &TestController,
    hostname: &str,
    token: &str,
    ssh_pub: &Path,
) -> Result<PathBuf> {
    let out = dir.join(format!("{hostname}-seed.img"));
    let token_file = dir.join(format!("{hostname}.token"));
    std::fs::write(&token_file, token)?;
    let status = std::process::Command::new(env_path("COLOC_IMAGE_BIN"))
        .arg("seed")
        .args(["--hostname", hostname, "--site", "paris-1"])
        // The guest reaches the host's loopback through QEMU's gateway.
        .args([
            "--controller",
            &format!("https://10.0.2.2:{}", ctl.addr().port()),
        ])
        .arg("--ca-file")
        .arg(ctl.data_dir().join("ca.pem"))
        .arg("--join-token-file")
        .arg(&token_file)
        .arg("--ssh-key-file")
        .arg(ssh_pub)
        .arg("-o")
        .arg(&out)
        .status()?;
    if !status.success() {
        bail!("coloc-image seed failed");
    }
    Ok(out)
}
