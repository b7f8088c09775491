//! The image spec (`image/specs/*.toml`): what goes into a node image, as
//! strict TOML (unknown keys refused) validated once at the door, so that
//! everything downstream handles only well-formed package names, mirrors and
//! sizes. It owns the spec's digest (from which the image's GUIDs derive)
//! and the digest of its package set (which a lockfile must match).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::digest::{FieldHasher, sha256_hex};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read the image spec {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the image spec {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("the image spec {path} is not valid: `{field}` {reason}")]
    Invalid {
        path: PathBuf,
        field: String,
        reason: String,
    },
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    /// The image's name, used in the loader entry title.
    pub name: String,
    pub apt: Apt,
    /// The kernel meta-package (linux-image-cloud-amd64 for VMs,
    /// linux-image-amd64 for real servers).
    pub kernel: String,
    /// Packages the image keeps.
    pub packages: Vec<String>,
    pub build: Build,
    #[serde(default)]
    pub dpkg: Dpkg,
    pub disk: Disk,
    pub rootfs: Rootfs,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Apt {
    pub suite: String,
    pub mirror: String,
    pub components: Vec<String>,
    /// Where `<suite>-security` comes from; none means no security suite.
    #[serde(default)]
    pub security_mirror: Option<String>,
    pub architecture: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// Installed for the build only, purged before the image is sealed.
    pub packages: Vec<String>,
    /// DKMS modules that must be built for the image's kernel and kept.
    #[serde(default)]
    pub dkms_modules: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dpkg {
    #[serde(default)]
    pub path_exclude: Vec<String>,
    #[serde(default)]
    pub path_include: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    pub esp_mib: u64,
    pub root_slack_mib: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rootfs {
    /// A directory copied as it is over the root filesystem, relative to
    /// the spec file.
    pub overlay: PathBuf,
}

/// One apt source line's worth: where, which suite, which components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub uri: String,
    pub suite: String,
    pub components: Vec<String>,
}

impl Source {
    /// The one-line sources.list form.
    pub fn line(&self) -> String {
        format!(
            "deb {} {} {}",
            self.uri,
            self.suite,
            self.components.join(" ")
        )
    }
}

/// A parsed, validated spec and where it came from.
#[derive(Debug, Clone)]
pub struct Spec {
    pub path: PathBuf,
    pub file: SpecFile,
    /// SHA-256 of the spec file's bytes.
    pub digest: String,
}

impl Spec {
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let bytes = std::fs::read(path).map_err(|source| SpecError::Read {
            path: path.to_owned(),
            source,
        })?;
        let text = String::from_utf8(bytes.clone()).map_err(|_| SpecError::Parse {
            path: path.to_owned(),
            message: "it is not UTF-8".into(),
        })?;
        Spec::parse(path, &text, sha256_hex(&bytes))
    }

    pub fn parse(path: &Path, text: &str, digest: String) -> Result<Spec, SpecError> {
        let file: SpecFile = toml::from_str(text).map_err(|e| SpecError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim().to_owned(),
        })?;
        let spec = Spec {
            path: path.to_owned(),
            file,
            digest,
        };
        spec.validate()?;
        Ok(spec)
    }

    fn invalid(&self, field: &str, reason: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            path: self.path.clone(),
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    fn validate(&self) -> Result<(), SpecError> {
        let f = &self.file;
        if f.name.is_empty()
            || !f
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(self.invalid("name", "must be letters, digits, '-' or '_'"));
        }
        if !is_word(&f.apt.suite) {
            return Err(self.invalid("apt.suite", "must be a suite name like bookworm"));
        }
        check_uri(&f.apt.mirror).map_err(|r| self.invalid("apt.mirror", r))?;
        if let Some(sec) = &f.apt.security_mirror {
            check_uri(sec).map_err(|r| self.invalid("apt.security_mirror", r))?;
        }
        if f.apt.components.is_empty() || !f.apt.components.iter().all(|c| is_word(c)) {
            return Err(self.invalid(
                "apt.components",
                "must list components like \"main\", \"contrib\"",
            ));
        }
        // The ESP boots BOOTX64.EFI and the GPT uses the x86-64 root type:
        // other architectures need more than a different word here.
        if f.apt.architecture != "amd64" {
            return Err(self.invalid("apt.architecture", "must be \"amd64\" (the only one built)"));
        }
        if !f.kernel.starts_with("linux-image-") || !is_package_name(&f.kernel) {
            return Err(self.invalid(
                "kernel",
                "must be a linux-image-* package, e.g. linux-image-amd64",
            ));
        }
        self.check_packages("packages", &f.packages)?;
        self.check_packages("build.packages", &f.build.packages)?;
        let mut all: Vec<&String> = f
            .packages
            .iter()
            .chain(&f.build.packages)
            .chain(std::iter::once(&f.kernel))
            .collect();
        all.sort();
        if let Some(w) = all.windows(2).find(|w| w[0] == w[1]) {
            return Err(self.invalid(
                "packages",
                format!(
                    "names {} twice (kernel, packages and build.packages must not overlap)",
                    w[0]
                ),
            ));
        }
        if !f.build.dkms_modules.is_empty() && f.build.packages.is_empty() {
            return Err(self.invalid(
                "build.dkms_modules",
                "needs build.packages (dkms, the module's -dkms package, headers, a compiler)",
            ));
        }
        for m in &f.build.dkms_modules {
            if m.is_empty()
                || !m
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(self.invalid("build.dkms_modules", format!("has a bad name {m:?}")));
            }
        }
        for (field, list) in [
            ("dpkg.path_exclude", &f.dpkg.path_exclude),
            ("dpkg.path_include", &f.dpkg.path_include),
        ] {
            if let Some(p) = list
                .iter()
                .find(|p| !p.starts_with('/') || p.chars().any(char::is_whitespace))
            {
                return Err(self.invalid(
                    field,
                    format!("has {p:?}: patterns are absolute paths without spaces"),
                ));
            }
        }
        if !(64..=4096).contains(&f.disk.esp_mib) {
            return Err(self.invalid("disk.esp_mib", "must be between 64 and 4096"));
        }
        if f.disk.root_slack_mib > 64 * 1024 {
            return Err(self.invalid("disk.root_slack_mib", "must be at most 65536"));
        }
        if f.rootfs.overlay.as_os_str().is_empty() {
            return Err(self.invalid("rootfs.overlay", "must name a directory"));
        }
        Ok(())
    }

    fn check_packages(&self, field: &str, list: &[String]) -> Result<(), SpecError> {
        match list.iter().find(|p| !is_package_name(p)) {
            Some(bad) => Err(self.invalid(
                field,
                format!("has {bad:?}, which is not a Debian package name"),
            )),
            None => Ok(()),
        }
    }

    /// The directory holding the spec.
    pub fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        }
    }

    /// Where the lockfile lives: beside the spec, `<stem>.lock`.
    pub fn lock_path(&self) -> PathBuf {
        self.path.with_extension("lock")
    }

    pub fn overlay_dir(&self) -> PathBuf {
        self.dir().join(&self.file.rootfs.overlay)
    }

    /// The apt sources the package set is resolved from, in order.
    pub fn sources(&self) -> Vec<Source> {
        let a = &self.file.apt;
        let mut v = vec![
            Source {
                uri: a.mirror.clone(),
                suite: a.suite.clone(),
                components: a.components.clone(),
            },
            Source {
                uri: a.mirror.clone(),
                suite: format!("{}-updates", a.suite),
                components: a.components.clone(),
            },
        ];
        if let Some(sec) = &a.security_mirror {
            v.push(Source {
                uri: sec.clone(),
                suite: format!("{}-security", a.suite),
                components: a.components.clone(),
            });
        }
        v
    }

    /// Every package named for installation: kernel, packages, build packages.
    pub fn install_set(&self) -> Vec<String> {
        let f = &self.file;
        std::iter::once(f.kernel.clone())
            .chain(f.packages.iter().cloned())
            .chain(f.build.packages.iter().cloned())
            .collect()
    }

    /// Digest of what decides the locked package set. A lockfile records it;
    /// a build refuses a lockfile made for another package set.
    pub fn package_set_digest(&self) -> String {
        let a = &self.file.apt;
        let mut h = FieldHasher::new("coloc-image package set v1");
        h.field(b"minbase");
        for s in self.sources() {
            h.field(s.line().as_bytes());
        }
        h.field(a.architecture.as_bytes());
        let mut names = self.install_set();
        names.sort();
        for n in names {
            h.field(n.as_bytes());
        }
        h.finish_hex()
    }
}

/// Debian policy 5.6.1: lower case letters, digits, `+ - .`, at least two
/// characters, starting with an alphanumeric.
pub fn is_package_name(s: &str) -> bool {
    s.len() >= 2
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn check_uri(uri: &str) -> Result<(), String> {
    let rest = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    if rest.is_empty() || uri.ends_with('/') {
        return Err("must name a host and path without a trailing '/'".into());
    }
    if uri
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '[' || c == ']')
    {
        return Err("must not contain spaces or brackets".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
kernel = "linux-image-cloud-amd64"
packages = ["systemd"]
[apt]
suite = "bookworm"
mirror = "http://deb.debian.org/debian"
components = ["main"]
architecture = "amd64"
[build]
packages = ["build-essential"]
[disk]
esp_mib = 256
root_slack_mib = 512
[rootfs]
overlay = "../rootfs"
"#;

    fn parse(text: &str) -> Result<Spec, SpecError> {
        Spec::parse(Path::new("specs/t.toml"), text, sha256_hex(text.as_bytes()))
    }

    #[test]
    fn the_committed_node_spec_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/node.toml");
        let spec = Spec::load(&path).expect("image/specs/node.toml is valid");
        let f = &spec.file;
        assert_eq!(f.apt.suite, "bookworm");
        assert_eq!(f.kernel, "linux-image-cloud-amd64");
        for p in [
            "systemd",
            "lvm2",
            "zfsutils-linux",
            "openssh-server",
            "systemd-boot-efi",
        ] {
            assert!(f.packages.iter().any(|x| x == p), "node image lacks {p}");
        }
        assert!(f.build.packages.iter().any(|x| x == "zfs-dkms"));
        assert_eq!(f.build.dkms_modules, vec!["zfs".to_owned()]);
        assert_eq!(f.disk.esp_mib, 256);
        assert_eq!(spec.lock_path(), path.with_extension("lock"));
        assert!(spec.overlay_dir().ends_with("specs/../rootfs"));
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = parse(&format!("{MINIMAL}\nhostname = \"n1\"\n")).expect_err("unknown key");
        // The key lands in [rootfs], the last table opened.
        assert!(err.to_string().contains("hostname"), "{err}");
        let err = parse(&MINIMAL.replace("esp_mib", "esp_size")).expect_err("unknown key");
        assert!(err.to_string().contains("esp_size"), "{err}");
    }

    #[test]
    fn bad_values_say_which_field() {
        let cases = [
            (MINIMAL.replace("\"systemd\"", "\"Systemd\""), "`packages`"),
            (
                MINIMAL.replace("linux-image-cloud-amd64", "linux-cloud"),
                "`kernel`",
            ),
            (MINIMAL.replace("http://deb", "ftp://deb"), "`apt.mirror`"),
            (MINIMAL.replace("/debian\"", "/debian/\""), "`apt.mirror`"),
            (
                MINIMAL.replace("amd64\"\n[build]", "arm64\"\n[build]"),
                "`apt.architecture`",
            ),
            (
                MINIMAL.replace("esp_mib = 256", "esp_mib = 8"),
                "`disk.esp_mib`",
            ),
            (
                MINIMAL.replace("[\"build-essential\"]", "[\"systemd\"]"),
                "names systemd twice",
            ),
            (
                MINIMAL.replace("components = [\"main\"]", "components = []"),
                "`apt.components`",
            ),
        ];
        for (text, want) in cases {
            let err = parse(&text).expect_err(want);
            assert!(err.to_string().contains(want), "{want}: {err}");
        }
    }

    #[test]
    fn missing_section_is_a_parse_error() {
        let text = MINIMAL.replace("[disk]\nesp_mib = 256\nroot_slack_mib = 512\n", "");
        let err = parse(&text).expect_err("no disk");
        assert!(err.to_string().contains("disk"), "{err}");
    }

    #[test]
    fn sources_add_updates_and_security() {
        let mut spec = parse(MINIMAL).expect("valid");
        let lines: Vec<String> = spec.sources().iter().map(Source::line).collect();
        assert_eq!(
            lines,
            vec![
                "deb http://deb.debian.org/debian bookworm main",
                "deb http://deb.debian.org/debian bookworm-updates main",
            ]
        );
        spec.file.apt.security_mirror = Some("http://deb.debian.org/debian-security".into());
        assert_eq!(
            spec.sources()[2].line(),
            "deb http://deb.debian.org/debian-security bookworm-security main"
        );
    }

    #[test]
    fn package_set_digest_ignores_order_but_not_content() {
        let a = parse(MINIMAL).expect("valid");
        let b = parse(&MINIMAL.replace("[\"systemd\"]", "[\"systemd\", \"lvm2\"]")).expect("valid");
        let c = parse(&MINIMAL.replace("[\"systemd\"]", "[\"lvm2\", \"systemd\"]")).expect("valid");
        assert_ne!(a.package_set_digest(), b.package_set_digest());
        assert_eq!(b.package_set_digest(), c.package_set_digest());
        // The disk size is not part of the package set.
        let d =
            parse(&MINIMAL.replace("root_slack_mib = 512", "root_slack_mib = 100")).expect("valid");
        assert_eq!(a.package_set_digest(), d.package_set_digest());
    }

    #[test]
    fn package_names_follow_policy() {
        for ok in [
            "systemd",
            "g++",
            "libc6",
            "linux-image-6.1.0-28-cloud-amd64",
            "0ad",
        ] {
            assert!(is_package_name(ok), "{ok}");
        }
        for bad in ["", "a", "-x", "Foo", "a b", "a_b", "x;rm"] {
            assert!(!is_package_name(bad), "{bad}");
        }
    }
}
