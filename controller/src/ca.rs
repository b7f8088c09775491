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
//!
//! Lifetimes: the CA 20 years, colocd's server certificate 2 years, node
//! certificates `node_cert_days` (colocd.toml), user certificates as asked.
//! No certificate is signed past the CA's own end: its validity is cut
//! there, so what it says is when it really stops working. colocd renews
//! its server certificate and the nodes' certificates by itself
//! (`background::certificates`, `agents::renewal`); the CA itself is not
//! rotated (docs/DECISIONS.md says why and what a sysadmin does instead).

use std::path::{Path, PathBuf};

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;

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
    #[error("{what} cannot be read: {reason}")]
    Unreadable { what: &'static str, reason: String },
    #[error("the key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
}

/// A signed certificate with its identifying fingerprint.
#[derive(Debug, Clone)]
pub struct Issued {
    pub pem: String,
    pub fingerprint: String,
    /// Its serial number, lowercase hex, as `openssl x509 -serial` shows it.
    pub serial: String,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
}

/// Material for colocd's own TLS endpoint.
#[derive(Debug, Clone)]
pub struct ServerIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What colocd needs to know of a certificate it holds: its validity,
/// the names it carries, its public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before_unix: i64,
    pub not_after_unix: i64,
    /// DNS names and IP addresses, as `issue_server` takes them.
    pub names: Vec<String>,
    /// SubjectPublicKeyInfo, DER.
    pub public_key_der: Vec<u8>,
    pub fingerprint: String,
}

/// Reads the first certificate of a PEM document.
pub fn inspect(pem: &str, what: &'static str) -> Result<CertInfo, CaError> {
    let unreadable = |reason: String| CaError::Unreadable { what, reason };
    let der = pem_to_der(pem).ok_or_else(|| unreadable("no PEM certificate".into()))?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| unreadable(e.to_string()))?;
    let validity = cert.validity();
    let mut names = Vec::new();
    if let Some(san) = cert
        .subject_alternative_name()
        .map_err(|e| unreadable(e.to_string()))?
    {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push((*dns).to_string()),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).map(IpAddr::from).ok(),
                        16 => <[u8; 16]>::try_from(*bytes).map(IpAddr::from).ok(),
                        _ => None,
                    };
                    let ip =
                        ip.ok_or_else(|| unreadable("an IP address name is malformed".into()))?;
                    names.push(ip.to_string());
                }
                _ => {}
            }
        }
    }
    Ok(CertInfo {
        not_before_unix: validity.not_before.timestamp(),
        not_after_unix: validity.not_after.timestamp(),
        names,
        public_key_der: cert.public_key().raw.to_vec(),
        fingerprint: fingerprint_der(&der),
    })
}

pub struct CertificateAuthority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    /// The CA's own end: nothing it signs outlives it.
    not_after_unix: i64,
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
pub const SERVER_CERT_FILE: &str = "server.pem";
pub const SERVER_KEY_FILE: &str = "server.key";

/// Lifetime of the CA.
pub const CA_TTL_SECS: i64 = 20 * 365 * 86400;
/// Lifetime of colocd's server certificate.
pub const SERVER_CERT_TTL_SECS: i64 = 2 * 365 * 86400;
/// How far back a certificate's validity starts, so that a peer whose
/// clock lags slightly still accepts it.
const BACKDATE_SECS: i64 = 300;

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

/// Sets the validity of a certificate signed at `now_unix` for `ttl_secs`,
/// cut at `until_unix` (the CA's end); returns (not before, not after).
fn validity(
    params: &mut CertificateParams,
    now_unix: i64,
    ttl_secs: i64,
    until_unix: i64,
) -> (i64, i64) {
    let nb = now_unix - BACKDATE_SECS;
    let na = now_unix.saturating_add(ttl_secs).min(until_unix);
    params.not_before =
        time::OffsetDateTime::from_unix_timestamp(nb).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    params.not_after =
        time::OffsetDateTime::from_unix_timestamp(na).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    (nb, na)
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
        let (_, not_after_unix) = validity(&mut params, now_unix, CA_TTL_SECS, i64::MAX);
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
            not_after_unix,
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
        let not_after_unix = inspect(&cert_pem, "the CA certificate")?.not_after_unix;
        Ok(Self {
            cert_pem,
            issuer,
            not_after_unix,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// When the CA, and with it every certificate it signed, stops working.
    pub fn not_after_unix(&self) -> i64 {
        self.not_after_unix
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
        self.sign_server(names, now_unix)
    }

    /// A new server certificate, with a new key, for exactly `names` (a
    /// renewal passes the names of the certificate it replaces).
    pub fn sign_server(
        &self,
        names: Vec<String>,
        now_unix: i64,
    ) -> Result<ServerIdentity, CaError> {
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
        validity(
            &mut params,
            now_unix,
            SERVER_CERT_TTL_SECS,
            self.not_after_unix,
        );
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
        let (not_before, not_after) =
            validity(&mut params, now_unix, ttl_secs, self.not_after_unix);
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
            not_before_unix: not_before,
            not_after_unix: not_after,
        })
    }
}

/// Writes colocd's server identity next to the CA, each file replaced
/// atomically, the key first. A crash between the two leaves a key that
/// does not fit the certificate, which [`read_server_identity`] reports
/// and `server::start` repairs by signing a new pair.
pub fn write_server_identity(dir: &Path, id: &ServerIdentity) -> Result<(), CaError> {
    write_private(&dir.join(SERVER_KEY_FILE), &id.key_pem, 0o600)?;
    write_private(&dir.join(SERVER_CERT_FILE), &id.cert_pem, 0o644)
}

/// Reads colocd's server identity and checks that its key belongs to its
/// certificate.
pub fn read_server_identity(dir: &Path) -> Result<(ServerIdentity, CertInfo), CaError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| CaError::Read { path, source })
    };
    let identity = ServerIdentity {
        cert_pem: read(SERVER_CERT_FILE)?,
        key_pem: read(SERVER_KEY_FILE)?,
    };
    let info = check_server_identity(&identity)?;
    Ok((identity, info))
}

/// The certificate's details, once its key is known to belong to it.
pub fn check_server_identity(identity: &ServerIdentity) -> Result<CertInfo, CaError> {
    let info = inspect(&identity.cert_pem, "colocd's server certificate")?;
    let key = KeyPair::from_pem(&identity.key_pem).map_err(|source| CaError::Invalid {
        what: "colocd's server key",
        source,
    })?;
    if key.subject_public_key_info() != info.public_key_der {
        return Err(CaError::KeyMismatch {
            cert: PathBuf::from(SERVER_CERT_FILE),
            key: PathBuf::from(SERVER_KEY_FILE),
        });
    }
    Ok(info)
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
