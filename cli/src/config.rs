//! Where the CLI finds colocd and how it proves who it is: the config file
//! format, the three sources (flags, environment, config file) and the
//! precedence between them. Reading files is kept at the edges
//! ([`ConfigFile::load`], [`Credential`] consumers); [`resolve`] and
//! [`config_location`] are pure so the precedence rules are tested as such.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::args::GlobalArgs;
use crate::error::Failure;

/// The config file, `~/.config/coloc/config.toml` or the `admin.toml`
/// written by `colocd init`. Unknown keys are refused so that a typo
/// (`tokenfile`) is not silently ignored.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// URL of colocd.
    pub server: Option<String>,
    /// The cooperative's CA certificate (PEM).
    pub ca_file: Option<PathBuf>,
    /// Bearer token, in clear.
    pub token: Option<String>,
    /// File holding the bearer token.
    pub token_file: Option<PathBuf>,
    /// Client certificate (PEM).
    pub cert_file: Option<PathBuf>,
    /// Key of the client certificate (PEM).
    pub key_file: Option<PathBuf>,
}

impl ConfigFile {
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    pub fn load(path: &Path) -> Result<Self, Failure> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure::usage(format!("cannot read config file {}: {e}", path.display()))
        })?;
        Self::parse(&text).map_err(|e| {
            Failure::usage(format!(
                "config file {} is not valid: {}",
                path.display(),
                e.to_string().trim_end()
            ))
        })
    }
}

/// The environment variables the CLI reads.
pub mod env {
    pub const SERVER: &str = "COLOC_SERVER";
    pub const CA_FILE: &str = "COLOC_CA_FILE";
    pub const TOKEN: &str = "COLOC_TOKEN";
    pub const CERT: &str = "COLOC_CERT";
    pub const KEY: &str = "COLOC_KEY";
    pub const CONFIG: &str = "COLOC_CONFIG";
}

/// The settings one source provides, with a name for messages.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Layer {
    pub origin: String,
    pub server: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl Layer {
    pub fn from_flags(g: &GlobalArgs) -> Layer {
        Layer {
            origin: "the command line".to_string(),
            server: g.server.clone(),
            ca_file: g.ca_file.clone(),
            token: g.token.clone(),
            token_file: None,
            cert: g.cert.clone(),
            key: g.key.clone(),
        }
    }

    /// Reads the `COLOC_*` variables through `lookup`. An empty variable
    /// counts as unset, as shells make "unset" awkward to express.
    pub fn from_env(lookup: &dyn Fn(&str) -> Option<OsString>) -> Result<Layer, Failure> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let text = |name: &'static str| -> Result<Option<String>, Failure> {
            get(name)
                .map(|v| {
                    v.into_string()
                        .map_err(|_| Failure::usage(format!("{name} is not valid UTF-8")))
                })
                .transpose()
        };
        Ok(Layer {
            origin: "the environment".to_string(),
            server: text(env::SERVER)?,
            ca_file: get(env::CA_FILE).map(PathBuf::from),
            token: text(env::TOKEN)?,
            token_file: None,
            cert: get(env::CERT).map(PathBuf::from),
            key: get(env::KEY).map(PathBuf::from),
        })
    }

    /// Paths in the file are relative to the file's folder, so that
    /// `admin.toml` next to `ca.pem` works from any working directory.
    pub fn from_file(file: ConfigFile, path: &Path) -> Layer {
        let base = path.parent().unwrap_or(Path::new(""));
        let anchor = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        Layer {
            origin: format!("config file {}", path.display()),
            server: file.server,
            ca_file: file.ca_file.map(anchor),
            token: file.token,
            token_file: file.token_file.map(anchor),
            cert: file.cert_file.map(anchor),
            key: file.key_file.map(anchor),
        }
    }

    /// The credential this layer holds, if any, refusing a half or double
    /// one rather than guessing what was meant.
    fn credential(&self) -> Result<Option<Credential>, Failure> {
        let token = self.token.as_ref().map(|t| t.trim().to_string());
        let has_token = token.is_some() || self.token_file.is_some();
        let has_cert = self.cert.is_some() || self.key.is_some();
        if token.is_some() && self.token_file.is_some() {
            return Err(Failure::usage(format!(
                "{} gives both token and token_file; keep one",
                self.origin
            )));
        }
        if has_token && has_cert {
            return Err(Failure::usage(format!(
                "{} gives both a token and a client certificate; keep one",
                self.origin
            )));
        }
        if let Some(token) = token {
            if token.is_empty() {
                return Err(Failure::usage(format!(
                    "{} gives an empty token",
                    self.origin
                )));
            }
            return Ok(Some(Credential::Token {
                token,
                origin: self.origin.clone(),
            }));
        }
        if let Some(path) = &self.token_file {
            return Ok(Some(Credential::TokenFile {
                path: path.clone(),
                origin: self.origin.clone(),
            }));
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Ok(Some(Credential::Certificate {
                cert: cert.clone(),
                key: key.clone(),
                origin: self.origin.clone(),
            })),
            (Some(_), None) => Err(Failure::usage(format!(
                "{} gives a client certificate without its key",
                self.origin
            ))),
            (None, Some(_)) => Err(Failure::usage(format!(
                "{} gives a client key without its certificate",
                self.origin
            ))),
            (None, None) => Ok(None),
        }
    }
}

/// How the CLI proves who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Token {
        token: String,
        origin: String,
    },
    TokenFile {
        path: PathBuf,
        origin: String,
    },
    Certificate {
        cert: PathBuf,
        key: PathBuf,
        origin: String,
    },
}

/// Everything needed to call colocd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Normalised `https://` URL.
    pub server: String,
    pub ca_file: PathBuf,
    /// None when no source gives one: calls will then be refused by colocd.
    pub credential: Option<Credential>,
}

/// Merges sources given highest first: each of server and CA from the
/// first source that has it; the credential whole from the first source
/// that has any part of one, so that `--cert/--key` on the command line
/// replaces a token in the config file instead of clashing with it.
pub fn resolve(layers: &[Layer]) -> Result<Settings, Failure> {
    let server = layers
        .iter()
        .find_map(|l| l.server.as_deref())
        .ok_or_else(|| {
            Failure::usage(
                "no server given: pass --server, set COLOC_SERVER or write server = \"https://...\" in the config file",
            )
        })?;
    let server = normalize_server(server)?;
    let ca_file = layers
        .iter()
        .find_map(|l| l.ca_file.clone())
        .ok_or_else(|| {
            Failure::usage(
                "no CA certificate given to verify colocd: pass --ca-file, set COLOC_CA_FILE or write ca_file = \"...\" in the config file",
            )
        })?;
    let mut credential = None;
    for layer in layers {
        if let Some(c) = layer.credential()? {
            credential = Some(c);
            break;
        }
    }
    Ok(Settings {
        server,
        ca_file,
        credential,
    })
}

/// colocd only speaks TLS: `https://host:port`, or `host:port` which is
/// read as https. Anything else is refused here with a sentence rather
/// than failing later inside the transport.
pub fn normalize_server(text: &str) -> Result<String, Failure> {
    let text = text.trim();
    let url = match text.split_once("://") {
        Some(("https", rest)) if !rest.trim_end_matches('/').is_empty() => {
            format!("https://{}", rest.trim_end_matches('/'))
        }
        Some(("https", _)) => {
            return Err(Failure::usage(format!("server {text:?} has no host")));
        }
        Some(("http", _)) => {
            return Err(Failure::usage(format!(
                "server {text:?} uses http://; colocd only speaks TLS, use https://"
            )));
        }
        Some(_) => {
            return Err(Failure::usage(format!(
                "server {text:?} is not an https:// URL"
            )));
        }
        None if !text.trim_end_matches('/').is_empty() => {
            format!("https://{}", text.trim_end_matches('/'))
        }
        None => return Err(Failure::usage("the server URL is empty")),
    };
    if url.contains(char::is_whitespace) {
        return Err(Failure::usage(format!("server {url:?} contains spaces")));
    }
    Ok(url)
}

/// Which config file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigLocation {
    pub path: PathBuf,
    /// Named by --config or COLOC_CONFIG: then it must exist.
    pub explicit: bool,
}

/// `--config`, else `COLOC_CONFIG`, else `$XDG_CONFIG_HOME/coloc/config.toml`
/// (only if absolute, as the XDG spec says), else
/// `$HOME/.config/coloc/config.toml`.
pub fn config_location(
    flag: Option<&Path>,
    lookup: &dyn Fn(&str) -> Option<OsString>,
) -> Option<ConfigLocation> {
    let get = |name: &str| lookup(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(path) = flag {
        return Some(ConfigLocation {
            path: path.to_path_buf(),
            explicit: true,
        });
    }
    if let Some(path) = get(env::CONFIG) {
        return Some(ConfigLocation {
            path,
            explicit: true,
        });
    }
    let base = get("XDG_CONFIG_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| get("HOME").map(|h| h.join(".config")))?;
    Some(ConfigLocation {
        path: base.join("coloc").join("config.toml"),
        explicit: false,
    })
}

/// Reads every source from the real process environment and file system.
pub fn load(flags: &GlobalArgs) -> Result<Settings, Failure> {
    let lookup = |name: &str| std::env::var_os(name);
    let mut layers = vec![Layer::from_flags(flags), Layer::from_env(&lookup)?];
    if let Some(location) = config_location(flags.config.as_deref(), &lookup) {
        let exists = location.path.try_exists().map_err(|e| {
            Failure::usage(format!(
                "cannot look at config file {}: {e}",
                location.path.display()
            ))
        })?;
        if exists || location.explicit {
            let file = ConfigFile::load(&location.path)?;
            warn_if_token_readable(&file, &location.path);
            layers.push(Layer::from_file(file, &location.path));
        }
    }
    resolve(&layers)
}

/// A token in a file others can read is as good as published; say so,
/// but do not refuse, as the person may be fixing exactly that.
fn warn_if_token_readable(file: &ConfigFile, path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if file.token.is_none() {
        return;
    }
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        eprintln!(
            "coloc: warning: {} holds a token and is readable by other users; run chmod 600 on it",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Exit;
    use std::collections::HashMap;

    const EXAMPLE: &str = include_str!("../examples/config.toml");

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    fn file_layer(text: &str, path: &str) -> Layer {
        Layer::from_file(ConfigFile::parse(text).unwrap(), Path::new(path))
    }

    #[test]
    fn example_config_parses() {
        let file = ConfigFile::parse(EXAMPLE).unwrap();
        assert_eq!(file.server.as_deref(), Some("https://127.0.0.1:7443"));
        assert!(file.ca_file.is_some());
        let settings = resolve(&[file_layer(EXAMPLE, "/etc/coloc/config.toml")]).unwrap();
        assert!(settings.credential.is_some());
    }

    #[test]
    fn the_colocd_init_format_parses() {
        let text = "server = \"https://127.0.0.1:7443\"\nca_file = \"/var/lib/colocd/ca.pem\"\ntoken = \"cat_abc\"\n";
        let s = resolve(&[file_layer(text, "/var/lib/colocd/admin.toml")]).unwrap();
        assert_eq!(s.server, "https://127.0.0.1:7443");
        assert_eq!(s.ca_file, PathBuf::from("/var/lib/colocd/ca.pem"));
        assert_eq!(
            s.credential,
            Some(Credential::Token {
                token: "cat_abc".into(),
                origin: "config file /var/lib/colocd/admin.toml".into()
            })
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = ConfigFile::parse("server = \"https://x\"\ntokenfile = \"t\"\n").unwrap_err();
        assert!(err.to_string().contains("tokenfile"), "{err}");
        assert!(ConfigFile::parse("[server]\nurl = \"x\"\n").is_err());
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let l = file_layer(
            "ca_file = \"ca.pem\"\ncert_file = \"/abs/me.crt\"\nkey_file = \"keys/me.key\"\n",
            "/home/a/.config/coloc/config.toml",
        );
        assert_eq!(
            l.ca_file,
            Some(PathBuf::from("/home/a/.config/coloc/ca.pem"))
        );
        assert_eq!(l.cert, Some(PathBuf::from("/abs/me.crt")));
        assert_eq!(
            l.key,
            Some(PathBuf::from("/home/a/.config/coloc/keys/me.key"))
        );
    }

    #[test]
    fn flags_beat_environment_beat_file() {
        let flags = Layer {
            origin: "flags".into(),
            server: Some("https://flag:1".into()),
            ..Layer::default()
        };
        let env = Layer::from_env(&env_of(&[
            (env::SERVER, "https://env:1"),
            (env::CA_FILE, "/env/ca.pem"),
            (env::TOKEN, "env-token"),
        ]))
        .unwrap();
        let file = file_layer(
            "server = \"https://file:1\"\nca_file = \"ca.pem\"\ntoken = \"file-token\"\n",
            "/f/config.toml",
        );
        let s = resolve(&[flags.clone(), env.clone(), file.clone()]).unwrap();
        assert_eq!(s.server, "https://flag:1");
        assert_eq!(s.ca_file, PathBuf::from("/env/ca.pem"));
        assert!(
            matches!(s.credential, Some(Credential::Token { ref token, .. }) if token == "env-token")
        );

        let s = resolve(&[Layer::default(), Layer::default(), file]).unwrap();
        assert_eq!(s.server, "https://file:1");
        assert_eq!(s.ca_file, PathBuf::from("/f/ca.pem"));
        assert!(
            matches!(s.credential, Some(Credential::Token { ref token, .. }) if token == "file-token")
        );
    }

    #[test]
    fn a_certificate_on_the_command_line_replaces_a_file_token() {
        let flags = Layer {
            origin: "flags".into(),
            cert: Some("me.crt".into()),
            key: Some("me.key".into()),
            ..Layer::default()
        };
        let file = file_layer(
            "server = \"https://file:1\"\nca_file = \"ca.pem\"\ntoken = \"file-token\"\n",
            "/f/config.toml",
        );
        let s = resolve(&[flags, file]).unwrap();
        assert!(matches!(s.credential, Some(Credential::Certificate { .. })));
    }

    #[test]
    fn half_or_double_credentials_are_refused() {
        let base = "server = \"https://x\"\nca_file = \"ca.pem\"\n";
        for extra in [
            "token = \"t\"\ntoken_file = \"f\"\n",
            "token = \"t\"\ncert_file = \"c\"\nkey_file = \"k\"\n",
            "cert_file = \"c\"\n",
            "key_file = \"k\"\n",
            "token = \"  \"\n",
        ] {
            let l = file_layer(&format!("{base}{extra}"), "/f/c.toml");
            let err = resolve(&[l]).unwrap_err();
            assert_eq!(err.exit, Exit::Usage, "{extra}");
        }
    }

    #[test]
    fn missing_server_or_ca_is_a_usage_error() {
        let err = resolve(&[file_layer("ca_file = \"ca.pem\"\n", "/f/c.toml")]).unwrap_err();
        assert!(err.message.contains("no server"), "{}", err.message);
        let err = resolve(&[file_layer("server = \"https://x\"\n", "/f/c.toml")]).unwrap_err();
        assert!(err.message.contains("no CA"), "{}", err.message);
    }

    #[test]
    fn no_credential_is_not_an_error_here() {
        let s = resolve(&[file_layer(
            "server = \"https://x:1\"\nca_file = \"/ca.pem\"\n",
            "/f/c.toml",
        )])
        .unwrap();
        assert_eq!(s.credential, None);
    }

    #[test]
    fn empty_environment_variables_count_as_unset() {
        let l =
            Layer::from_env(&env_of(&[(env::TOKEN, ""), (env::SERVER, "https://e:1")])).unwrap();
        assert_eq!(l.token, None);
        assert_eq!(l.server.as_deref(), Some("https://e:1"));
    }

    #[test]
    fn server_urls() {
        assert_eq!(
            normalize_server("https://127.0.0.1:7443/").unwrap(),
            "https://127.0.0.1:7443"
        );
        assert_eq!(
            normalize_server("colocd.example:7443").unwrap(),
            "https://colocd.example:7443"
        );
        assert!(normalize_server("http://127.0.0.1:7443").is_err());
        assert!(normalize_server("ftp://x").is_err());
        assert!(normalize_server("https://").is_err());
        assert!(normalize_server("").is_err());
    }

    #[test]
    fn config_file_location() {
        let none = env_of(&[]);
        let loc = config_location(Some(Path::new("/x.toml")), &none).unwrap();
        assert_eq!(
            loc,
            ConfigLocation {
                path: "/x.toml".into(),
                explicit: true
            }
        );

        let e = env_of(&[
            (env::CONFIG, "/y.toml"),
            ("XDG_CONFIG_HOME", "/xdg"),
            ("HOME", "/home/a"),
        ]);
        assert_eq!(
            config_location(None, &e).unwrap().path,
            PathBuf::from("/y.toml")
        );

        let e = env_of(&[("XDG_CONFIG_HOME", "/xdg"), ("HOME", "/home/a")]);
        let loc = config_location(None, &e).unwrap();
        assert_eq!(loc.path, PathBuf::from("/xdg/coloc/config.toml"));
        assert!(!loc.explicit);

        let e = env_of(&[("XDG_CONFIG_HOME", "relative"), ("HOME", "/home/a")]);
        assert_eq!(
            config_location(None, &e).unwrap().path,
            PathBuf::from("/home/a/.config/coloc/config.toml")
        );
        assert_eq!(config_location(None, &none), None);
    }
}
