//! The node seed (docs/IMAGE.md, "Seed volume"): what makes a generic node
//! image *this* node — its name, the controller it reports to, the
//! cooperative's CA, a one-time join token, the admins' SSH keys — as one
//! `seed.toml` on a small FAT volume labelled `COLOCSEED`.
//!
//! Two programs share this contract: `coloc-image seed` writes the file and
//! `coloc-agent seed apply` reads it at first boot. Both validate it here,
//! with the same rules the agent applies to its own configuration
//! ([`check_controller_url`], [`check_join_token`], [`check_ca_pem`]), so
//! that a seed the builder accepts is never refused on the node. This
//! module does no I/O: reading the volume and writing the node's files is
//! the agent's job.

use serde::{Deserialize, Serialize};

use crate::domain::{InvalidInput, NodeName, SiteName};

/// The FAT volume label of a seed volume (at most 11 characters, upper case).
pub const SEED_LABEL: &str = "COLOCSEED";
/// The one file on the seed volume.
pub const SEED_FILE: &str = "seed.toml";
/// The keys of `seed.toml`, in the order they are written. docs/IMAGE.md
/// and `coloc-image seed` depend on these exact names; tests pin them.
pub const SEED_FIELDS: [&str; 6] = [
    "hostname",
    "site",
    "controller",
    "ca_pem",
    "join_token",
    "ssh_authorized_keys",
];

/// Where the agent keeps its key, certificate, ledger and status.
pub const STATE_DIR: &str = "/var/lib/coloc";
/// Where the node's files go, as paths on the node.
pub const AGENT_CONFIG_PATH: &str = "/etc/coloc/agent.toml";
pub const HOSTNAME_PATH: &str = "/etc/hostname";
pub const CA_PATH: &str = "/etc/coloc/ca.pem";
pub const JOIN_TOKEN_PATH: &str = "/etc/coloc/join-token";
pub const AUTHORIZED_KEYS_PATH: &str = "/root/.ssh/authorized_keys";
/// The ZFS host id (`zgenhostid`'s file).
pub const HOSTID_PATH: &str = "/etc/hostid";

/// A seed is a few kilobytes; anything much larger is the wrong file, and
/// is refused before it is parsed.
pub const MAX_SEED_BYTES: usize = 256 * 1024;
/// More keys than this is a mistake, not an admin team.
const MAX_SSH_KEYS: usize = 64;
/// An RSA-16384 public key is under 3 KiB of base64.
const MAX_SSH_KEY_LEN: usize = 8 * 1024;
/// Longest join token accepted; tokens are short random strings, anything
/// longer is a wrong file.
pub const MAX_JOIN_TOKEN_LEN: usize = 512;
/// Key types accepted in `ssh_authorized_keys`, with the number of
/// length-prefixed fields their key data holds (RFC 4253 section 6.6,
/// RFC 5656, OpenSSH's PROTOCOL.u2f): what OpenSSH 9 (bookworm) accepts by
/// default. DSA keys are disabled there, so they are refused here rather
/// than silently ignored by sshd.
const SSH_KEY_TYPES: [(&str, usize); 7] = [
    ("ssh-ed25519", 2),
    ("ssh-rsa", 3),
    ("ecdsa-sha2-nistp256", 3),
    ("ecdsa-sha2-nistp384", 3),
    ("ecdsa-sha2-nistp521", 3),
    ("sk-ssh-ed25519@openssh.com", 3),
    ("sk-ecdsa-sha2-nistp256@openssh.com", 4),
];

/// Why a seed was refused.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("{SEED_FILE} is not a valid seed")]
    Parse(#[source] toml::de::Error),
    #[error("invalid {field} in the seed")]
    Name {
        field: &'static str,
        #[source]
        source: InvalidInput,
    },
    #[error("invalid {field} in the seed")]
    Invalid {
        field: &'static str,
        #[source]
        source: InvalidInput,
    },
    #[error("cannot render the seed as TOML")]
    Render(#[source] toml::ser::Error),
}

/// The controller's address as a node or the CLI dials it: an `https://`
/// URL with a host. The agent never talks to the controller in clear text:
/// the join token and every desired configuration travel on this link.
pub fn check_controller_url(url: &str) -> Result<(), InvalidInput> {
    let shown = crate::domain::clip(url);
    if !url.starts_with("https://") {
        return Err(InvalidInput::field(
            "controller",
            format!("{shown:?} must be an https:// URL"),
        ));
    }
    let uri: tonic::codegen::http::Uri = url
        .parse()
        .map_err(|e| InvalidInput::field("controller", format!("{shown:?}: {e}")))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(InvalidInput::field(
            "controller",
            format!("{shown:?} has no host"),
        ));
    }
    Ok(())
}

/// A join token as a node holds it: not empty, at most
/// [`MAX_JOIN_TOKEN_LEN`] bytes, no white space or control character.
pub fn check_join_token(token: &str) -> Result<(), InvalidInput> {
    if token.is_empty() {
        return Err(InvalidInput::field("join_token", "empty"));
    }
    if token.len() > MAX_JOIN_TOKEN_LEN {
        return Err(InvalidInput::field(
            "join_token",
            format!("longer than {MAX_JOIN_TOKEN_LEN} bytes"),
        ));
    }
    if token.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(InvalidInput::field(
            "join_token",
            "contains white space or control characters",
        ));
    }
    Ok(())
}

/// A CA bundle: one or more PEM `CERTIFICATE` blocks, each a parsable X.509
/// certificate, and nothing else. Returns how many certificates it holds.
pub fn check_ca_pem(pem: &[u8]) -> Result<usize, InvalidInput> {
    let bad = |reason: String| InvalidInput::field("ca_pem", reason);
    let mut count = 0;
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| bad(format!("PEM block {} unreadable: {e}", count + 1)))?;
        if block.label != "CERTIFICATE" {
            return Err(bad(format!(
                "PEM block {} is a {:?}, not a CERTIFICATE",
                count + 1,
                block.label
            )));
        }
        block
            .parse_x509()
            .map_err(|e| bad(format!("certificate {} does not parse: {e}", count + 1)))?;
        count += 1;
    }
    if count == 0 {
        return Err(bad("no PEM certificate found".into()));
    }
    Ok(count)
}

/// `seed.toml` as written on the volume: the wire form, strings only.
/// [`Seed`] is the validated form the rest of the code uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedFile {
    /// Becomes `/etc/hostname` and the node's name in the fleet.
    pub hostname: String,
    /// Where the node is installed; informational on the node (the
    /// controller records the site at enrollment).
    pub site: String,
    /// colocd's `https://` URL as seen from the node.
    pub controller: String,
    /// The cooperative's CA certificate(s), PEM.
    pub ca_pem: String,
    /// The one-time join token.
    pub join_token: String,
    /// OpenSSH public keys for root, one key per entry; optional.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_authorized_keys: Vec<String>,
}

/// A seed whose every field was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    hostname: NodeName,
    site: SiteName,
    controller: String,
    ca_pem: String,
    join_token: String,
    ssh_authorized_keys: Vec<String>,
}

impl Seed {
    /// Checks every field, the same way whether the seed is being written
    /// by `coloc-image seed` or applied on the node, so that a seed the
    /// builder accepts is never refused at first boot.
    pub fn validate(file: SeedFile) -> Result<Seed, SeedError> {
        let hostname = NodeName::new(file.hostname).map_err(|source| SeedError::Name {
            field: "hostname",
            source,
        })?;
        let site = SiteName::new(file.site).map_err(|source| SeedError::Name {
            field: "site",
            source,
        })?;
        let invalid = |field| move |source| SeedError::Invalid { field, source };
        check_controller_url(&file.controller).map_err(invalid("controller"))?;
        check_ca_pem(file.ca_pem.as_bytes()).map_err(invalid("ca_pem"))?;
        let join_token = file.join_token.trim().to_owned();
        check_join_token(&join_token).map_err(invalid("join_token"))?;
        if file.ssh_authorized_keys.len() > MAX_SSH_KEYS {
            return Err(SeedError::Invalid {
                field: "ssh_authorized_keys",
                source: InvalidInput::field(
                    "ssh_authorized_keys",
                    format!("more than {MAX_SSH_KEYS} keys"),
                ),
            });
        }
        let mut ssh_authorized_keys = Vec::with_capacity(file.ssh_authorized_keys.len());
        for (i, key) in file.ssh_authorized_keys.iter().enumerate() {
            let key = check_ssh_public_key(key).map_err(|reason| SeedError::Invalid {
                field: "ssh_authorized_keys",
                source: InvalidInput::field(
                    "ssh_authorized_keys",
                    format!("key {}: {reason}", i + 1),
                ),
            })?;
            ssh_authorized_keys.push(key.to_owned());
        }
        Ok(Seed {
            hostname,
            site,
            controller: file.controller,
            ca_pem: file.ca_pem,
            join_token,
            ssh_authorized_keys,
        })
    }

    /// Parses and validates the text of a `seed.toml`.
    pub fn parse(text: &str) -> Result<Seed, SeedError> {
        let file: SeedFile = toml::from_str(text).map_err(SeedError::Parse)?;
        Seed::validate(file)
    }

    /// The `seed.toml` for this seed. Deterministic: the same seed always
    /// gives the same bytes, so seed images can be compared by hash.
    pub fn to_toml(&self) -> Result<String, SeedError> {
        let body = toml::to_string(&self.to_file()).map_err(SeedError::Render)?;
        Ok(format!(
            "# coloc node seed for {} (docs/IMAGE.md). Holds a join token: keep it private.\n{body}",
            self.hostname
        ))
    }

    /// The wire form of this seed.
    pub fn to_file(&self) -> SeedFile {
        SeedFile {
            hostname: self.hostname.to_string(),
            site: self.site.to_string(),
            controller: self.controller.clone(),
            ca_pem: self.ca_pem.clone(),
            join_token: self.join_token.clone(),
            ssh_authorized_keys: self.ssh_authorized_keys.clone(),
        }
    }

    /// `/etc/coloc/agent.toml` for this node. Paths in it are the node's
    /// own, whatever root the files are written under.
    pub fn agent_toml(&self) -> String {
        let quoted = |s: &str| toml::Value::String(s.to_owned()).to_string();
        format!(
            "# Written by `coloc-agent seed apply` from the seed of node {node} (site {site}).\n\
             # A new seed overwrites this file; `coloc-agent check-config` checks it.\n\
             controller = {controller}\n\
             ca_file = {ca}\n\
             join_token_file = {token}\n\
             node_name = {node_quoted}\n\
             state_dir = {state}\n",
            node = self.hostname,
            site = self.site,
            controller = quoted(&self.controller),
            ca = quoted(CA_PATH),
            token = quoted(JOIN_TOKEN_PATH),
            node_quoted = quoted(self.hostname.as_str()),
            state = quoted(STATE_DIR),
        )
    }

    pub fn hostname(&self) -> &NodeName {
        &self.hostname
    }

    pub fn site(&self) -> &SiteName {
        &self.site
    }

    pub fn controller(&self) -> &str {
        &self.controller
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn join_token(&self) -> &str {
        &self.join_token
    }

    pub fn ssh_authorized_keys(&self) -> &[String] {
        &self.ssh_authorized_keys
    }
}

/// Checks one OpenSSH public key line (`type base64 [comment]`, as in a
/// `.pub` file) and returns it trimmed. The base64 blob is decoded and its
/// embedded type compared with the declared one, which catches keys cut
/// short or pasted into the wrong place. `authorized_keys` options
/// (`from=`, `command=`) are refused: a seed grants plain root access or
/// none, and an option is the easiest place to hide a surprise.
pub fn check_ssh_public_key(line: &str) -> Result<&str, String> {
    let key = line.trim();
    if key.is_empty() {
        return Err("empty".to_owned());
    }
    if key.len() > MAX_SSH_KEY_LEN {
        return Err(format!("longer than {MAX_SSH_KEY_LEN} bytes"));
    }
    if key.chars().any(char::is_control) {
        return Err("contains a newline or control character; give one key per entry".to_owned());
    }
    let mut parts = key.split_whitespace();
    let key_type = parts.next().unwrap_or_default();
    let Some(&(_, field_count)) = SSH_KEY_TYPES.iter().find(|(t, _)| *t == key_type) else {
        let shown: String = key_type.chars().take(40).collect();
        let known: Vec<&str> = SSH_KEY_TYPES.iter().map(|(t, _)| *t).collect();
        return Err(format!(
            "starts with {shown:?}, not a key type ({}); authorized_keys options are not accepted",
            known.join(", ")
        ));
    };
    let blob_text = parts.next().ok_or("no key data after the key type")?;
    let blob = decode_base64(blob_text).ok_or("the key data is not base64")?;
    match ssh_fields(&blob) {
        Some(fields) if fields.len() == field_count && fields[0] == key_type.as_bytes() => Ok(key),
        _ => Err(format!(
            "the key data is not a complete {key_type} key (truncated, or another type's data)"
        )),
    }
}

/// Splits SSH wire-format key data into its length-prefixed fields;
/// `None` when a length runs past the end.
fn ssh_fields(mut blob: &[u8]) -> Option<Vec<&[u8]>> {
    let mut fields = Vec::new();
    while !blob.is_empty() {
        let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
        let end = 4usize.checked_add(len)?;
        fields.push(blob.get(4..end)?);
        blob = &blob[end..];
    }
    Some(fields)
}

/// Standard base64 with padding, strictly: no white space, no URL alphabet.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || !text.len().is_multiple_of(4) {
        return None;
    }
    let body = text
        .strip_suffix("==")
        .or_else(|| text.strip_suffix('='))
        .unwrap_or(text);
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in body.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAF3zTC0/3PlhsozXjmYjmiijVI9+V1Ajk5cz14d0pOA admin@coop";
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMAPai8DlFkbywx0EhBQHfTSvXSn8ql4Vbk2bNXW+df3ndynL5aDW7GAtWyCR1XRf5CUCQUTcjaMcjEW/2wxzXI= ops@coop";

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["coloc-ca".to_owned()]).expect("params");
        params.self_signed(&key).expect("self-signed").pem()
    }

    fn sample_file() -> SeedFile {
        SeedFile {
            hostname: "n1".into(),
            site: "paris-1".into(),
            controller: "https://10.0.2.2:7443".into(),
            ca_pem: ca_pem(),
            join_token: "cjt_abc123".into(),
            ssh_authorized_keys: vec![ED25519.into()],
        }
    }

    #[test]
    fn field_names_are_the_documented_ones() {
        let seed = Seed::validate(sample_file()).expect("valid");
        let text = seed.to_toml().expect("renders");
        let table: toml::Table = toml::from_str(&text).expect("parses as TOML");
        let keys: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut expected = SEED_FIELDS.to_vec();
        expected.sort_unstable();
        let mut keys_sorted = keys.clone();
        keys_sorted.sort_unstable();
        assert_eq!(keys_sorted, expected);
        // And in the documented order, so the file reads like docs/IMAGE.md.
        let positions: Vec<usize> = SEED_FIELDS
            .iter()
            .map(|k| text.find(&format!("\n{k} = ")).expect("key at line start"))
            .collect();
        assert!(positions.is_sorted(), "{text}");
    }

    #[test]
    fn rendering_round_trips_and_is_deterministic() {
        let seed = Seed::validate(sample_file()).expect("valid");
        let text = seed.to_toml().expect("renders");
        assert_eq!(text, seed.to_toml().expect("renders again"));
        assert_eq!(Seed::parse(&text).expect("parses back"), seed);
        assert!(
            text.contains("ca_pem = \"\"\"\n-----BEGIN CERTIFICATE-----"),
            "{text}"
        );
    }

    #[test]
    fn ssh_keys_are_optional() {
        let mut file = sample_file();
        file.ssh_authorized_keys.clear();
        let seed = Seed::validate(file).expect("valid");
        let text = seed.to_toml().expect("renders");
        assert!(!text.contains("ssh_authorized_keys"), "{text}");
        assert_eq!(Seed::parse(&text).expect("parses"), seed);
    }

    #[test]
    fn unknown_and_missing_keys_are_refused() {
        let text = Seed::validate(sample_file())
            .expect("valid")
            .to_toml()
            .expect("renders");
        let typo = format!("{text}\nsite_name = \"x\"\n");
        assert!(matches!(Seed::parse(&typo), Err(SeedError::Parse(_))));
        let missing = text.replace("join_token = ", "# join_token = ");
        assert!(matches!(Seed::parse(&missing), Err(SeedError::Parse(_))));
    }

    #[test]
    fn bad_values_are_refused_with_the_field_named() {
        type Case = (&'static str, fn(&mut SeedFile));
        let cases: [Case; 10] = [
            ("hostname", |f| f.hostname = "N1".into()),
            ("hostname", |f| f.hostname = "n1.example.org".into()),
            ("site", |f| f.site = "Paris 1".into()),
            ("controller", |f| {
                f.controller = "http://10.0.2.2:7443".into()
            }),
            ("controller", |f| f.controller = "https://".into()),
            ("ca_pem", |f| f.ca_pem = "not a certificate".into()),
            ("join_token", |f| f.join_token = " ".into()),
            ("join_token", |f| f.join_token = "a b".into()),
            ("ssh_authorized_keys", |f| {
                f.ssh_authorized_keys = vec![format!("{ED25519}\n{ECDSA}")]
            }),
            ("ssh_authorized_keys", |f| {
                f.ssh_authorized_keys = vec![format!("from=\"10.0.0.1\" {ED25519}")]
            }),
        ];
        for (field, mutate) in cases {
            let mut file = sample_file();
            mutate(&mut file);
            let err = Seed::validate(file).expect_err(field);
            let message = crate::error_chain(&err);
            assert!(message.contains(field), "{field}: {message}");
        }
    }

    #[test]
    fn ssh_keys_are_checked_down_to_their_data() {
        assert_eq!(check_ssh_public_key(&format!("  {ED25519}\n")), Ok(ED25519));
        assert!(check_ssh_public_key(ECDSA).is_ok());
        // No comment is fine.
        let bare: String = ED25519.split(' ').take(2).collect::<Vec<_>>().join(" ");
        assert!(check_ssh_public_key(&bare).is_ok());
        let data = ED25519.split(' ').nth(1).expect("data");
        for (bad, why) in [
            ("", "empty"),
            ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "not a key type"),
            ("ssh-ed25519", "no key data"),
            ("ssh-ed25519 AAAA$$$$", "not base64"),
            (&format!("ssh-ed25519 {}", &data[..41]), "not base64"),
            (&format!("ssh-rsa {data}"), "not a complete ssh-rsa key"),
            // Cut after the type field: still base64, still the right type.
            (
                &format!("ssh-ed25519 {}", &data[..20]),
                "not a complete ssh-ed25519 key",
            ),
            (
                &format!("ssh-ed25519 {}", &data[..64]),
                "not a complete ssh-ed25519 key",
            ),
        ] {
            let err = check_ssh_public_key(bad).expect_err(bad);
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn base64_decoding_is_strict_and_correct() {
        assert_eq!(decode_base64("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(decode_base64("aGk="), Some(b"hi".to_vec()));
        assert_eq!(decode_base64("aGVs"), Some(b"hel".to_vec()));
        assert_eq!(decode_base64("aGk"), None);
        assert_eq!(decode_base64("a=Gk"), None);
        assert_eq!(decode_base64("aG-_"), None);
        assert_eq!(decode_base64(""), None);
    }
}
