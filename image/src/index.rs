//! Reading apt's metadata: `Packages` indexes (deb822 paragraphs), the names
//! apt gives the index files it downloads (so that an index can be traced
//! back to its mirror), and the control fields of a `.deb`. Parsing only:
//! nothing here touches the network or the disk beyond what it is handed.

use std::collections::BTreeMap;

/// One paragraph of a Packages index, with the fields a lock needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub filename: String,
    pub sha256: String,
    pub size: u64,
    pub priority: String,
    pub section: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    #[error("paragraph {paragraph} of the index lacks the field {field}")]
    MissingField {
        paragraph: usize,
        field: &'static str,
    },
    #[error("paragraph {paragraph} of the index has a bad Size {value:?}")]
    BadSize { paragraph: usize, value: String },
}

/// Splits deb822 text into paragraphs of (field, value). Continuation lines
/// (starting with a space or tab) are folded into the previous value; field
/// names are kept as written.
pub fn paragraphs(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    let mut cur: BTreeMap<String, String> = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            last = None;
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(k) = &last
                && let Some(v) = cur.get_mut(k)
            {
                v.push('\n');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            let k = k.trim().to_owned();
            cur.insert(k.clone(), v.trim().to_owned());
            last = Some(k);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Parses a Packages index.
pub fn parse_packages(text: &str) -> Result<Vec<IndexEntry>, IndexError> {
    paragraphs(text)
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let paragraph = i + 1;
            let get = |field: &'static str| {
                p.get(field)
                    .cloned()
                    .ok_or(IndexError::MissingField { paragraph, field })
            };
            let size = get("Size")?;
            Ok(IndexEntry {
                name: get("Package")?,
                version: get("Version")?,
                architecture: get("Architecture")?,
                filename: get("Filename")?,
                sha256: get("SHA256")?,
                size: size.parse().map_err(|_| IndexError::BadSize {
                    paragraph,
                    value: size.clone(),
                })?,
                // Both are overridable by the archive and may be absent
                // from old indexes; "optional"/"misc" are dpkg's defaults.
                priority: p
                    .get("Priority")
                    .cloned()
                    .unwrap_or_else(|| "optional".into()),
                section: p.get("Section").cloned().unwrap_or_else(|| "misc".into()),
            })
        })
        .collect()
}

/// The name apt gives, under /var/lib/apt/lists, to files fetched from
/// `uri` (apt's `URItoFileName`): the scheme and credentials dropped, a set
/// of characters %-quoted, '/' turned into '_'. Every index file from a
/// mirror starts with `list_prefix(mirror) + "_dists_"`.
pub fn list_prefix(uri: &str) -> String {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    // user:password@ is dropped.
    let rest = match rest.split_once('/') {
        Some((host, path)) => {
            let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
            format!("{host}/{path}")
        }
        None => rest.rsplit_once('@').map_or(rest, |(_, h)| h).to_owned(),
    };
    let rest = rest.trim_end_matches('/');
    const BAD: &str = "\\|{}[]<>\"^~_=!@#$%^&*";
    let mut out = String::new();
    for b in rest.bytes() {
        let c = b as char;
        if BAD.contains(c) || !(0x21..0x7f).contains(&b) {
            out.push_str(&format!("%{b:02x}"));
        } else if c == '/' {
            out.push('_');
        } else {
            out.push(c);
        }
    }
    out
}

/// The (Package, Version, Architecture) of a `.deb`, from `dpkg-deb
/// --field <deb> Package Version Architecture` output.
pub fn parse_deb_fields(text: &str) -> Option<(String, String, String)> {
    let p = paragraphs(text).into_iter().next()?;
    Some((
        p.get("Package")?.clone(),
        p.get("Version")?.clone(),
        p.get("Architecture")?.clone(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKAGES: &str = "\
Package: zfsutils-linux
Source: zfs-linux
Version: 2.1.11-1+deb12u1
Installed-Size: 1862
Maintainer: Debian ZFS on Linux maintainers <pkg-zfsonlinux-devel@alioth-lists.debian.net>
Architecture: amd64
Depends: libc6 (>= 2.34),
 libnvpair3linux (= 2.1.11-1+deb12u1)
Description: command-line tools to manage OpenZFS filesystems
 The Z file system is a pooled filesystem designed for maximum data
 .
 integrity.
Section: contrib/admin
Priority: optional
Filename: pool/contrib/z/zfs-linux/zfsutils-linux_2.1.11-1+deb12u1_amd64.deb
Size: 482820
SHA256: 8e1f7b1a1c3b0e6d8a1fb0c1e56ad0d0d1b8ce13c6f3e7a6a1a9d6a1f2b3c4d5

Package: adduser
Version: 3.134
Architecture: all
Priority: important
Section: admin
Filename: pool/main/a/adduser/adduser_3.134_all.deb
Size: 170928
SHA256: 00aa
";

    #[test]
    fn packages_index_parses_with_continuations() {
        let e = parse_packages(PACKAGES).expect("parses");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].name, "zfsutils-linux");
        assert_eq!(e[0].version, "2.1.11-1+deb12u1");
        assert_eq!(e[0].section, "contrib/admin");
        assert_eq!(e[0].size, 482820);
        assert_eq!(
            e[0].filename,
            "pool/contrib/z/zfs-linux/zfsutils-linux_2.1.11-1+deb12u1_amd64.deb"
        );
        assert_eq!(e[1].priority, "important");
        let p = paragraphs(PACKAGES);
        assert_eq!(
            p[0]["Depends"],
            "libc6 (>= 2.34),\nlibnvpair3linux (= 2.1.11-1+deb12u1)"
        );
    }

    #[test]
    fn missing_fields_are_reported_with_the_paragraph() {
        let text = PACKAGES.replace("SHA256: 00aa\n", "");
        assert_eq!(
            parse_packages(&text),
            Err(IndexError::MissingField {
                paragraph: 2,
                field: "SHA256"
            })
        );
        assert!(parse_packages("").expect("empty").is_empty());
        let text = PACKAGES.replace("Size: 170928", "Size: big");
        assert!(matches!(
            parse_packages(&text),
            Err(IndexError::BadSize { .. })
        ));
    }

    #[test]
    fn list_names_match_apt() {
        // Names as they appear in /var/lib/apt/lists on Debian.
        assert_eq!(
            list_prefix("http://deb.debian.org/debian"),
            "deb.debian.org_debian"
        );
        assert_eq!(
            list_prefix("http://deb.debian.org/debian-security/"),
            "deb.debian.org_debian-security"
        );
        assert_eq!(
            list_prefix("https://user:pw@mirror.example:8080/de_bian"),
            "mirror.example:8080_de%5fbian"
        );
        // The two Debian mirrors must not be prefixes of each other's
        // `_dists_` names.
        let a = format!("{}_dists_", list_prefix("http://deb.debian.org/debian"));
        assert!(
            !"deb.debian.org_debian-security_dists_bookworm-security_main_binary-amd64_Packages"
                .starts_with(&a)
        );
    }

    #[test]
    fn deb_fields() {
        let out = "Package: adduser\nVersion: 3.134\nArchitecture: all\n";
        assert_eq!(
            parse_deb_fields(out),
            Some(("adduser".into(), "3.134".into(), "all".into()))
        );
        assert_eq!(parse_deb_fields("Package: x\n"), None);
    }
}
