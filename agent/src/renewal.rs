//! Renewing the node's certificate over the session, when colocd asks.
//!
//! colocd decides when (two thirds of the certificate's lifetime, its
//! clock). `RenewCertificate`: the agent makes a new key (it never leaves
//! the node), writes it as `node.key.next` and answers with a CSR.
//! `InstallCertificate`: the agent checks that the certificate is for that
//! key and this node, writes it as `node.crt.next` (the commit point), then
//! renames both over `node.key` and `node.crt`, and answers. colocd then
//! ends the session; the next one is opened with the new pair, and from
//! that moment colocd refuses the old certificate.
//!
//! Two files cannot be replaced in one step, so a crash is repaired by
//! [`recover`], which `enroll::load_identity` runs first: a `node.crt.next`
//! means the renewal was committed and is finished (the key renamed if it
//! was not yet, then the certificate); a `node.key.next` alone is a
//! renewal that got no certificate, and is forgotten. Either way the node
//! holds a key and certificate that belong together, and colocd accepts
//! the old one until the new one is used.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use coloc_proto::domain::NodeName;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData};

use crate::durable;
use crate::enroll::{CERT_FILE, KEY_FILE};
use crate::tls::ClientIdentity;

/// The key of a renewal under way.
pub const NEXT_KEY_FILE: &str = "node.key.next";
/// The renewed certificate, written before it replaces `node.crt`.
pub const NEXT_CERT_FILE: &str = "node.crt.next";
/// Longest certificate accepted from colocd.
const MAX_CERT_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RenewalError {
    #[error("cannot generate the new node key or its CSR")]
    KeyGen(#[source] rcgen::Error),
    #[error("no certificate request is under way (the agent restarted since, or was never asked)")]
    NoPendingKey,
    #[error("the certificate is unusable: {0}")]
    BadCertificate(String),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The renewal under way, shared by the session's request handlers and the
/// loop that opens sessions.
#[derive(Debug)]
pub struct Renewal {
    state_dir: PathBuf,
    node_name: NodeName,
    /// The key of the last `RenewCertificate`, PEM.
    pending_key: Mutex<Option<String>>,
    /// A pair installed and not yet used for a session.
    installed: Mutex<Option<ClientIdentity>>,
}

fn write_error(path: PathBuf) -> impl FnOnce(std::io::Error) -> RenewalError {
    move |source| RenewalError::Write { path, source }
}

impl Renewal {
    pub fn new(state_dir: PathBuf, node_name: NodeName) -> Self {
        Self {
            state_dir,
            node_name,
            pending_key: Mutex::new(None),
            installed: Mutex::new(None),
        }
    }

    /// `RenewCertificate`: a new key, written durably, and a CSR for it.
    /// Blocking (file system).
    pub fn request(&self) -> Result<String, RenewalError> {
        let key = KeyPair::generate().map_err(RenewalError::KeyGen)?;
        let mut params = CertificateParams::new(vec![self.node_name.to_string()])
            .map_err(RenewalError::KeyGen)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, self.node_name.as_str());
        params.distinguished_name = dn;
        let csr = params
            .serialize_request(&key)
            .and_then(|csr| csr.pem())
            .map_err(RenewalError::KeyGen)?;
        let key_pem = key.serialize_pem();
        let path = self.state_dir.join(NEXT_KEY_FILE);
        durable::write_atomic(&path, key_pem.as_bytes(), 0o600).map_err(write_error(path))?;
        *self
            .pending_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(key_pem);
        Ok(csr)
    }

    /// `InstallCertificate`: checks the certificate against the pending
    /// key and the node's name, then replaces the node's key and
    /// certificate with them. Blocking (file system).
    pub fn install(&self, cert_pem: &str) -> Result<(), RenewalError> {
        let mut pending = self
            .pending_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key_pem = pending.clone().ok_or(RenewalError::NoPendingKey)?;
        check_certificate(cert_pem, &key_pem, &self.node_name)
            .map_err(RenewalError::BadCertificate)?;
        let next_cert = self.state_dir.join(NEXT_CERT_FILE);
        durable::write_atomic(&next_cert, cert_pem.as_bytes(), 0o644)
            .map_err(write_error(next_cert))?;
        // Committed: from here on `recover` finishes it after a crash.
        finish(&self.state_dir).map_err(write_error(self.state_dir.clone()))?;
        *pending = None;
        *self
            .installed
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(ClientIdentity {
            cert_pem: cert_pem.to_string(),
            key_pem,
        });
        Ok(())
    }

    /// The pair installed since the last call, if any: the next session
    /// opens with it.
    pub fn take_installed(&self) -> Option<ClientIdentity> {
        self.installed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Whether `cert_pem` is a certificate for `key_pem`'s public key, naming
/// `node` as its subject.
fn check_certificate(cert_pem: &str, key_pem: &str, node: &NodeName) -> Result<(), String> {
    if cert_pem.len() > MAX_CERT_BYTES {
        return Err(format!("larger than {MAX_CERT_BYTES} bytes"));
    }
    let der = pem::parse(cert_pem)
        .map_err(|e| format!("not a PEM certificate: {e}"))?
        .into_contents();
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default();
    if cn != node.as_str() {
        return Err(format!(
            "it is for {:?}, not for this node {node}",
            cn.chars().take(80).collect::<String>()
        ));
    }
    let key = KeyPair::from_pem(key_pem).map_err(|e| format!("the pending key: {e}"))?;
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err("it is not for the key this node made".into());
    }
    Ok(())
}

/// Moves a committed renewal's files over the node's own: key first, then
/// the certificate (whose `.next` file is what says "committed").
fn finish(state_dir: &Path) -> std::io::Result<()> {
    let next_key = state_dir.join(NEXT_KEY_FILE);
    if next_key.is_file() {
        std::fs::rename(&next_key, state_dir.join(KEY_FILE))?;
    }
    std::fs::rename(state_dir.join(NEXT_CERT_FILE), state_dir.join(CERT_FILE))?;
    durable::sync_dir(state_dir)
}

/// Repairs what a crash during a renewal left: finishes a committed one,
/// forgets one that got no certificate. Nothing to do most of the time.
pub fn recover(state_dir: &Path) -> std::io::Result<()> {
    if state_dir.join(NEXT_CERT_FILE).is_file() {
        tracing::warn!(state_dir = %state_dir.display(), "finishing a certificate renewal interrupted by a restart");
        return finish(state_dir);
    }
    let next_key = state_dir.join(NEXT_KEY_FILE);
    if next_key.is_file() {
        tracing::info!(state_dir = %state_dir.display(), "forgetting the key of a certificate renewal that got no certificate");
        std::fs::remove_file(&next_key)?;
        durable::sync_dir(state_dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateSigningRequestParams, IsCa, Issuer};

    use super::*;

    struct Ca(Issuer<'static, KeyPair>);

    impl Ca {
        fn new() -> Self {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::default();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            Ca(Issuer::new(params, key))
        }

        /// Signs a CSR as colocd does: its public key, colocd's subject.
        fn sign(&self, csr_pem: &str, cn: &str) -> String {
            let csr = CertificateSigningRequestParams::from_pem(csr_pem).unwrap();
            let mut params = CertificateParams::default();
            params.distinguished_name.push(DnType::CommonName, cn);
            params.signed_by(&csr.public_key, &self.0).unwrap().pem()
        }
    }

    fn dir_with_identity() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), "old key").unwrap();
        std::fs::write(dir.path().join(CERT_FILE), "old cert").unwrap();
        dir
    }

    fn read(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).unwrap()
    }

    fn n1() -> NodeName {
        NodeName::new("n1").unwrap()
    }

    #[test]
    fn a_renewal_replaces_key_and_certificate() {
        let dir = dir_with_identity();
        let ca = Ca::new();
        let renewal = Renewal::new(dir.path().to_owned(), n1());
        let csr = renewal.request().unwrap();
        // The old pair stays until the certificate arrives.
        assert_eq!(read(dir.path(), KEY_FILE), "old key");
        let next_key = read(dir.path(), NEXT_KEY_FILE);
        let cert = ca.sign(&csr, "n1");
        renewal.install(&cert).unwrap();
        assert_eq!(read(dir.path(), KEY_FILE), next_key);
        assert_eq!(read(dir.path(), CERT_FILE), cert);
        assert!(!dir.path().join(NEXT_KEY_FILE).exists());
        assert!(!dir.path().join(NEXT_CERT_FILE).exists());
        let installed = renewal.take_installed().unwrap();
        assert_eq!(installed.cert_pem, cert);
        assert_eq!(installed.key_pem, next_key);
        assert!(renewal.take_installed().is_none());
        // Once only.
        assert!(matches!(
            renewal.install(&cert),
            Err(RenewalError::NoPendingKey)
        ));
    }

    #[test]
    fn a_certificate_for_another_key_or_node_is_refused_and_nothing_changes() {
        let dir = dir_with_identity();
        let ca = Ca::new();
        let renewal = Renewal::new(dir.path().to_owned(), n1());
        let csr = renewal.request().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let other = Renewal::new(elsewhere.path().to_owned(), n1());
        let other_csr = other.request().unwrap();
        for (cert, why) in [
            (ca.sign(&other_csr, "n1"), "not for the key"),
            (ca.sign(&csr, "n2"), "not for this node n1"),
            ("garbage".to_string(), "not a PEM certificate"),
        ] {
            let err = renewal.install(&cert).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
            assert_eq!(read(dir.path(), KEY_FILE), "old key");
            assert_eq!(read(dir.path(), CERT_FILE), "old cert");
            assert!(!dir.path().join(NEXT_CERT_FILE).exists());
        }
        // The right one still goes through afterwards.
        renewal.install(&ca.sign(&csr, "n1")).unwrap();
        assert!(renewal.take_installed().is_some());
    }

    #[test]
    fn recovery_finishes_a_committed_renewal_and_forgets_the_rest() {
        // Crashed after the key was asked for: forgotten.
        let dir = dir_with_identity();
        std::fs::write(dir.path().join(NEXT_KEY_FILE), "new key").unwrap();
        recover(dir.path()).unwrap();
        assert_eq!(read(dir.path(), KEY_FILE), "old key");
        assert!(!dir.path().join(NEXT_KEY_FILE).exists());

        // Crashed after the certificate was written: finished.
        std::fs::write(dir.path().join(NEXT_KEY_FILE), "new key").unwrap();
        std::fs::write(dir.path().join(NEXT_CERT_FILE), "new cert").unwrap();
        recover(dir.path()).unwrap();
        assert_eq!(read(dir.path(), KEY_FILE), "new key");
        assert_eq!(read(dir.path(), CERT_FILE), "new cert");

        // Crashed between the two renames: finished.
        std::fs::write(dir.path().join(NEXT_CERT_FILE), "newer cert").unwrap();
        recover(dir.path()).unwrap();
        assert_eq!(read(dir.path(), KEY_FILE), "new key");
        assert_eq!(read(dir.path(), CERT_FILE), "newer cert");

        // Nothing under way: nothing done.
        recover(dir.path()).unwrap();
        assert_eq!(read(dir.path(), CERT_FILE), "newer cert");
    }
}
