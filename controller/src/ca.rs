//! The cooperative's certificate authority.
//!
//! One ECDSA P-256 CA, created by `colocd init`, signs three kinds of
//! certificates: colocd's server certificate (DNS name `colocd` plus the
//! configured names), node certificates (client auth, CN = node name) and
//! user certificates (client auth, CN = user name). The CA key never leaves
//! the controller's data directory (mode 0600).
//!
//! Certificates are identified afterwards by the sha256 of their DER
//! ("fingerprint"): the TLS layer proves the peer holds a certificate the
//! CA signed, and the store maps its fingerprint to a node or a user. A
//! node certificate presented as a user credential (or the reverse)
//! therefore matches nothing.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} is not valid")]
    Invalid {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("the certificate signing request is not valid: {0}")]
    BadCsr(String),
}

/// A signed certificate with its identifying fingerprint.
#[derive(Debug, Clone)]
pub struct Issued {
    pub pem: String,
    pub fingerprint: String,
    /// Its serial number, lowercase hex, as `openssl x509 -serial` shows it.
    pub serial: String,
    pub not_after_unix: i64,
}

/// Material for colocd's own TLS endpoint.
#[derive(Debug, Clone)]
pub struct ServerIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

pub struct CertificateAuthority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca.key";

/// sha256 of a certificate's DER, lower-case hex.
pub fn fingerprint_der(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Fingerprint of the first certificate in a PEM document.
pub fn fingerprint_pem(pem: &str) -> Option<String> {
    let der = pem_to_der(pem)?;
    Some(fingerprint_der(&der))
}

fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let block = pem::parse(pem).ok()?;
    (block.tag() == "CERTIFICATE").then(|| block.into_contents())
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Keep it positive in DER's two's complement, and its first byte
    // non-zero so that DER's minimal encoding keeps all 16 bytes: the hex
    // of these bytes is then the serial every tool shows.
    bytes[0] = (bytes[0] & 0x7f).max(1);
    SerialNumber::from_slice(&bytes)
}

fn validity(params: &mut CertificateParams, now_unix: i64, ttl_secs: i64) -> i64 {
    // Backdate a little so a node whose clock lags slightly still accepts.
    let nb = now_unix - 300;
    let na = now_unix + ttl_secs;
    params.not_before =
        time::OffsetDateTime::from_unix_timestamp(nb).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    params.not_after =
        time::OffsetDateTime::from_unix_timestamp(na).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    na
}

fn write_private(path: &Path, contents: &str, mode: u32) -> Result<(), CaError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| CaError::Write {
        path: path.to_owned(),
        source,
    })
}

impl CertificateAuthority {
    /// Creates a new CA and writes it to `dir` (certificate 0644, key 0600).
    pub fn create(dir: &Path, name: &str, now_unix: i64) -> Result<Self, CaError> {
        let key = KeyPair::generate().map_err(|source| CaError::Invalid {
            what: "generated CA key",
            source,
        })?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("coloc CA {name}"));
        dn.push(DnType::OrganizationName, "coloc");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial());
        validity(&mut params, now_unix, 20 * 365 * 86400);
        let cert = params
            .self_signed(&key)
            .map_err(|source| CaError::Invalid {
                what: "CA certificate",
                source,
            })?;
        let cert_pem = cert.pem();
        write_private(&dir.join(CA_KEY_FILE), &key.serialize_pem(), 0o600)?;
        write_private(&dir.join(CA_CERT_FILE), &cert_pem, 0o644)?;
        Ok(Self {
            cert_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads the CA written by [`CertificateAuthority::create`].
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| CaError::Read { path, source })
        };
        let cert_pem = read(CA_CERT_FILE)?;
        let key = KeyPair::from_pem(&read(CA_KEY_FILE)?).map_err(|source| CaError::Invalid {
            what: "CA key",
            source,
        })?;
        let issuer =
            Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|source| CaError::Invalid {
                what: "CA certificate",
                source,
            })?;
        Ok(Self { cert_pem, issuer })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn fingerprint(&self) -> String {
        fingerprint_pem(&self.cert_pem).unwrap_or_default()
    }

    /// colocd's server certificate: DNS name `colocd`, `localhost`,
    /// 127.0.0.1 and ::1, plus `extra_names` (DNS names or IP addresses).
    pub fn issue_server(
        &self,
        extra_names: &[String],
        now_unix: i64,
    ) -> Result<ServerIdentity, CaError> {
        let mut names = vec![
            coloc_proto::CONTROLLER_TLS_NAME.to_string(),
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        names.extend(extra_names.iter().cloned());
        let mut params = CertificateParams::new(names).map_err(|source| CaError::Invalid {
            what: "server name",
            source,
        })?;
        params
            .distinguished_name
            .push(DnType::CommonName, coloc_proto::CONTROLLER_TLS_NAME);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(random_serial());
        validity(&mut params, now_unix, 2 * 365 * 86400);
        let key = KeyPair::generate().map_err(|source| CaError::Invalid {
            what: "generated server key",
            source,
        })?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| CaError::Invalid {
                what: "server certificate",
                source,
            })?;
        Ok(ServerIdentity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs a client certificate for `common_name` with the public key of
    /// `csr_pem`. Everything else the CSR asks for (subject, names, usages,
    /// CA flag) is ignored: the controller decides what it certifies.
    pub fn sign_client_csr(
        &self,
        csr_pem: &str,
        common_name: &str,
        kind: &str,
        now_unix: i64,
        ttl_secs: i64,
    ) -> Result<Issued, CaError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CaError::BadCsr(e.to_string()))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationalUnitName, kind);
        params.distinguished_name = dn;
        let uri = format!("coloc:{kind}:{common_name}");
        params.subject_alt_names = vec![SanType::URI(uri.try_into().map_err(|source| {
            CaError::Invalid {
                what: "certificate name",
                source,
            }
        })?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let serial = random_serial();
        params.serial_number = Some(serial.clone());
        let not_after = validity(&mut params, now_unix, ttl_secs);
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(|source| CaError::Invalid {
                what: "client certificate",
                source,
            })?;
        Ok(Issued {
            pem: cert.pem(),
            fingerprint: fingerprint_der(cert.der()),
            serial: hex::encode(serial.as_ref()),
            not_after_unix: not_after,
        })
    }
}

/// Writes colocd's server identity next to the CA.
pub fn write_server_identity(dir: &Path, id: &ServerIdentity) -> Result<(), CaError> {
    write_private(&dir.join("server.key"), &id.key_pem, 0o600)?;
    write_private(&dir.join("server.pem"), &id.cert_pem, 0o644)
}

pub fn read_server_identity(dir: &Path) -> Result<ServerIdentity, CaError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| CaError::Read { path, source })
    };
    Ok(ServerIdentity {
        cert_pem: read("server.pem")?,
        key_pem: read("server.key")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(cn: &str) -> (KeyPair, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let pem = params.serialize_request(&key).unwrap().pem().unwrap();
        (key, pem)
    }

    #[test]
    fn create_load_and_sign() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::create(dir.path(), "test", 1_800_000_000).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(CA_KEY_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let again = CertificateAuthority::load(dir.path()).unwrap();
        assert_eq!(ca.fingerprint(), again.fingerprint());
        assert_eq!(ca.fingerprint().len(), 64);

        let (_key, pem) = csr("somebody-else");
        let issued = again
            .sign_client_csr(&pem, "n1", "node", 1_800_000_000, 3600)
            .unwrap();
        assert_eq!(issued.not_after_unix, 1_800_003_600);
        assert_eq!(fingerprint_pem(&issued.pem).unwrap(), issued.fingerprint);
        // Two signatures of the same CSR are different certificates.
        let issued2 = again
            .sign_client_csr(&pem, "n1", "node", 1_800_000_000, 3600)
            .unwrap();
        assert_ne!(issued.fingerprint, issued2.fingerprint);
        assert_ne!(issued.serial, issued2.serial);
        // The serial reported is the one the certificate carries.
        let (_, pem) = x509_parser::pem::parse_x509_pem(issued.pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        assert_eq!(
            hex::encode(cert.tbs_certificate.raw_serial()),
            issued.serial
        );
        assert_eq!(issued.serial.len(), 32);
    }

    #[test]
    fn garbage_csr_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::create(dir.path(), "t", 1_800_000_000).unwrap();
        let err = ca
            .sign_client_csr("not a csr", "n1", "node", 1_800_000_000, 60)
            .unwrap_err();
        assert!(matches!(err, CaError::BadCsr(_)), "{err}");
    }

    #[test]
    fn fingerprint_needs_a_certificate() {
        assert!(fingerprint_pem("garbage").is_none());
        let key = KeyPair::generate().unwrap();
        assert!(fingerprint_pem(&key.serialize_pem()).is_none());
    }
}
