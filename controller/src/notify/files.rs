//! The files the notifier reads when it starts: the SMTP password, the
//! webhook tokens, extra CA certificates. Read once, so that a missing or
//! empty file stops colocd at start with the key and path named, rather
//! than failing the first alert hours later.

use std::path::Path;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::NotifyError;

/// A secret: the file's content without its final newline; it must not be
/// empty.
pub(super) fn read_secret(key: &str, path: &Path) -> Result<String, NotifyError> {
    let text = std::fs::read_to_string(path).map_err(|source| NotifyError::ReadFile {
        key: key.to_string(),
        path: path.to_owned(),
        source,
    })?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(NotifyError::EmptyFile {
            key: key.to_string(),
            path: path.to_owned(),
        });
    }
    Ok(secret.to_string())
}

/// Every certificate of a PEM file; at least one.
pub(super) fn read_ca_file(
    key: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, NotifyError> {
    let bytes = std::fs::read(path).map_err(|source| NotifyError::ReadFile {
        key: key.to_string(),
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NotifyError::CaFile {
            key: key.to_string(),
            path: path.to_owned(),
            reason: format!("not a PEM file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(NotifyError::CaFile {
            key: key.to_string(),
            path: path.to_owned(),
            reason: "holds no certificate".to_string(),
        });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_lose_their_newline_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        assert_eq!(read_secret("k", &file).unwrap(), "s3cret");
        std::fs::write(&file, "\n").unwrap();
        let err = read_secret("notify.email.password_file", &file).unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
        let err = read_secret("k", &dir.path().join("missing")).unwrap_err();
        assert!(matches!(err, NotifyError::ReadFile { .. }), "{err}");
    }

    #[test]
    fn a_ca_file_needs_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, "nothing here\n").unwrap();
        let err = read_ca_file("notify.email.ca_file", &file).unwrap_err();
        assert!(err.to_string().contains("holds no certificate"), "{err}");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(&file, cert.cert.pem()).unwrap();
        assert_eq!(read_ca_file("k", &file).unwrap().len(), 1);
    }
}
