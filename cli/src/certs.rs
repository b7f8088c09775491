//! Client certificates for people: an ECDSA P-256 key and a CSR made on
//! this machine (the key never travels), and writing the key and the
//! certificate colocd signed. The key file is created with mode 0600 from
//! the start, never written wider and tightened afterwards.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use coloc_proto::domain::UserName;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};

use crate::error::{Exit, Failure};

/// A fresh key and the request to sign it, both PEM.
pub struct KeyAndCsr {
    pub key_pem: String,
    pub csr_pem: String,
}

impl std::fmt::Debug for KeyAndCsr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key, even in a debug dump.
        f.debug_struct("KeyAndCsr")
            .field("csr_pem", &self.csr_pem)
            .finish_non_exhaustive()
    }
}

/// Generates the key and a CSR whose common name is the user's name.
pub fn make_csr(user: &UserName) -> Result<KeyAndCsr, Failure> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| Failure::generic(format!("cannot generate a key: {e}")))?;
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|e| Failure::generic(format!("cannot prepare the CSR: {e}")))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, user.as_str());
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(|e| Failure::generic(format!("cannot build the CSR: {e}")))?;
    Ok(KeyAndCsr {
        key_pem: key.serialize_pem(),
        csr_pem: csr,
    })
}

/// Where `coloc user cert issue` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    pub key: PathBuf,
    pub cert: PathBuf,
}

pub fn cert_paths(dir: &Path, user: &UserName) -> CertPaths {
    CertPaths {
        key: dir.join(format!("{user}.key")),
        cert: dir.join(format!("{user}.crt")),
    }
}

/// Checks before asking colocd for anything, so a refusal to overwrite
/// does not leave a signed certificate nobody holds the key of.
pub fn check_writable(paths: &CertPaths, force: bool) -> Result<(), Failure> {
    if force {
        return Ok(());
    }
    for p in [&paths.key, &paths.cert] {
        if p.exists() {
            return Err(Failure::new(
                Exit::Conflict,
                format!("{} already exists; pass --force to replace it", p.display()),
            ));
        }
    }
    Ok(())
}

/// Writes the key (0600) then the certificate (0644). The folder is
/// created 0700 if missing.
pub fn write_files(
    dir: &Path,
    paths: &CertPaths,
    key_pem: &str,
    cert_pem: &str,
    force: bool,
) -> Result<(), Failure> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Failure::generic(format!("cannot create {}: {e}", dir.display())))?;
    write_one(&paths.key, key_pem, 0o600, force)?;
    write_one(&paths.cert, cert_pem, 0o644, force)
}

fn write_one(path: &Path, text: &str, mode: u32, force: bool) -> Result<(), Failure> {
    let fail =
        |e: std::io::Error| Failure::generic(format!("cannot write {}: {e}", path.display()));
    if force {
        // Replacing: remove first so the new file is created with `mode`
        // rather than inheriting the old file's permissions.
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e)),
        }
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Failure::new(
                    Exit::Conflict,
                    format!(
                        "{} already exists; pass --force to replace it",
                        path.display()
                    ),
                )
            } else {
                fail(e)
            }
        })?;
    file.write_all(text.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn alice() -> UserName {
        UserName::new("alice").unwrap()
    }

    #[test]
    fn csr_names_the_user_and_verifies() {
        let k = make_csr(&alice()).unwrap();
        assert!(k.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let parsed = rcgen::CertificateSigningRequestParams::from_pem(&k.csr_pem).unwrap();
        let cn = parsed
            .params
            .distinguished_name
            .get(&DnType::CommonName)
            .unwrap();
        assert_eq!(cn, &rcgen::DnValue::Utf8String("alice".into()));
        assert_eq!(parsed.public_key.algorithm(), &PKCS_ECDSA_P256_SHA256);
        assert!(!format!("{k:?}").contains("PRIVATE"));
    }

    #[test]
    fn files_are_written_with_modes_and_not_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        let paths = cert_paths(&dir, &alice());
        assert_eq!(paths.key, dir.join("alice.key"));
        check_writable(&paths, false).unwrap();
        write_files(&dir, &paths, "KEY", "CERT", false).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&paths.key), 0o600);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(std::fs::read_to_string(&paths.cert).unwrap(), "CERT");

        let err = check_writable(&paths, false).unwrap_err();
        assert_eq!(err.exit, Exit::Conflict);
        let err = write_files(&dir, &paths, "KEY2", "CERT2", false).unwrap_err();
        assert_eq!(err.exit, Exit::Conflict);
        assert_eq!(std::fs::read_to_string(&paths.key).unwrap(), "KEY");

        std::fs::set_permissions(&paths.key, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_files(&dir, &paths, "KEY2", "CERT2", true).unwrap();
        assert_eq!(std::fs::read_to_string(&paths.key).unwrap(), "KEY2");
        assert_eq!(mode(&paths.key), 0o600);
    }
}
