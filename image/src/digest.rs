//! SHA-256 over files and over structured inputs, and the identifiers
//! derived from a digest (partition GUIDs, filesystem UUIDs, the FAT volume
//! id), so that every "random" number in an image is a function of its
//! spec.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Hex SHA-256 of a file's content.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Hashes a sequence of labelled fields without ambiguity: each field is
/// length-prefixed, so ("ab", "c") and ("a", "bc") differ.
#[derive(Debug, Default)]
pub struct FieldHasher {
    inner: Sha256,
}

impl FieldHasher {
    pub fn new(domain: &str) -> Self {
        let mut h = FieldHasher::default();
        h.field(domain.as_bytes());
        h
    }

    pub fn field(&mut self, bytes: &[u8]) -> &mut Self {
        self.inner.update((bytes.len() as u64).to_le_bytes());
        self.inner.update(bytes);
        self
    }

    pub fn finish_hex(self) -> String {
        hex::encode(self.inner.finalize())
    }

    pub fn finish(self) -> [u8; 32] {
        self.inner.finalize().into()
    }
}

/// A UUID (RFC 9562 version 4 layout, so tools accept it) derived from
/// `seed` for one `purpose`: the same spec always gives the same GUIDs, and
/// different purposes never share one.
pub fn derived_uuid(seed: &str, purpose: &str) -> String {
    let mut h = FieldHasher::new("coloc-image uuid");
    h.field(seed.as_bytes()).field(purpose.as_bytes());
    let d = h.finish();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

/// A 32-bit FAT volume id (8 hex digits) derived from `seed`.
pub fn derived_volume_id(seed: &str, purpose: &str) -> String {
    let mut h = FieldHasher::new("coloc-image volume id");
    h.field(seed.as_bytes()).field(purpose.as_bytes());
    hex::encode(&h.finish()[..4])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_digest_matches_known_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").expect("write");
        assert_eq!(
            sha256_file(&p).expect("hash"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha256_hex(b"abc"), sha256_file(&p).expect("hash"));
    }

    #[test]
    fn fields_are_unambiguous() {
        let mut a = FieldHasher::new("t");
        a.field(b"ab").field(b"c");
        let mut b = FieldHasher::new("t");
        b.field(b"a").field(b"bc");
        assert_ne!(a.finish_hex(), b.finish_hex());
    }

    #[test]
    fn uuids_are_stable_well_formed_and_distinct() {
        let u = derived_uuid("seed", "disk");
        assert_eq!(u, derived_uuid("seed", "disk"));
        assert_ne!(u, derived_uuid("seed", "root"));
        assert_ne!(u, derived_uuid("other", "disk"));
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4", "version nibble in {u}");
        assert!("89ab".contains(&u[19..20]), "variant in {u}");
        let v = derived_volume_id("seed", "esp");
        assert_eq!(v.len(), 8);
        assert!(v.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
