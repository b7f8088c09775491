//! Who may open an instance's web endpoint (docs/APPS.md, "Web access").
//!
//! Every catalog entry says how its web endpoint is protected: public (a
//! website), by the app's own login, or by the node's proxy. Where the
//! proxy protects it, the tenant sets a user and a password with `coloc app
//! set-password`; the password is hashed with bcrypt on the person's
//! computer and only the hash travels: to colocd, into the node's desired
//! configuration, into the proxy's configuration. Until a password is set
//! the route answers 503: an app without a login of its own is never
//! published open.
//!
//! The hash goes into the Caddyfile, so its shape is exact: bcrypt's
//! modular crypt format and nothing else (no space, brace, quote or
//! newline can pass).

use crate::agent::v1::{self as pb, WebAuth};
use crate::domain::{InvalidInput, check_name, clip, validated_string};

/// The bcrypt cost `coloc app set-password` uses: about a quarter of a
/// second on a current CPU. The proxy remembers a checked password, so the
/// cost is paid once per password, not per request.
pub const PASSWORD_COST: u32 = 12;
/// Lowest and highest cost accepted in a hash.
pub const MIN_PASSWORD_COST: u32 = 10;
pub const MAX_PASSWORD_COST: u32 = 16;
/// Shortest password `coloc app set-password` accepts, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// bcrypt reads at most 72 bytes; a longer password would be cut silently.
pub const MAX_PASSWORD_BYTES: usize = 72;

/// A bcrypt hash in modular crypt format: `$2a$`, `$2b$` or `$2y$`, a
/// two-digit cost from [`MIN_PASSWORD_COST`] to [`MAX_PASSWORD_COST`], `$`,
/// then 22 characters of salt and 31 of hash in bcrypt's alphabet.
pub fn check_password_hash(kind: &'static str, value: &str) -> Result<(), InvalidInput> {
    let bad = |why: &str| InvalidInput::field(kind, format!("{:?} {why}", clip(value)));
    let bytes = value.as_bytes();
    if bytes.len() != 60 || !value.is_ascii() {
        return Err(bad("is not a bcrypt hash (60 characters)"));
    }
    if !(value.starts_with("$2a$") || value.starts_with("$2b$") || value.starts_with("$2y$")) {
        return Err(bad(
            "is not a bcrypt hash (it starts with $2a$, $2b$ or $2y$)",
        ));
    }
    let cost = &value[4..6];
    let cost: u32 = match cost.parse() {
        Ok(c) if cost.bytes().all(|b| b.is_ascii_digit()) => c,
        _ => return Err(bad("has no two-digit cost")),
    };
    if !(MIN_PASSWORD_COST..=MAX_PASSWORD_COST).contains(&cost) {
        return Err(bad(&format!(
            "has cost {cost}, outside {MIN_PASSWORD_COST} to {MAX_PASSWORD_COST}"
        )));
    }
    if bytes[6] != b'$' {
        return Err(bad("has no '$' after its cost"));
    }
    if !bytes[7..]
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'/')
    {
        return Err(bad("has a character outside bcrypt's alphabet"));
    }
    Ok(())
}

/// A password as typed, before it is hashed: at least
/// [`MIN_PASSWORD_CHARS`] characters, at most [`MAX_PASSWORD_BYTES`] bytes,
/// no control character. The value is never shown back.
pub fn check_password(password: &str) -> Result<(), InvalidInput> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(InvalidInput::field(
            "password",
            format!("shorter than {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(InvalidInput::field(
            "password",
            format!("longer than {MAX_PASSWORD_BYTES} bytes (bcrypt would ignore the rest)"),
        ));
    }
    if password.chars().any(char::is_control) {
        return Err(InvalidInput::field(
            "password",
            "contains a control character",
        ));
    }
    Ok(())
}

validated_string!(
    /// The user name a proxy login asks for: the rule of every name in
    /// coloc (a-z, 0-9 and '-').
    WebUser, "web user", check_name);
validated_string!(
    /// A password's bcrypt hash ([`check_password_hash`]).
    PasswordHash, "password hash", check_password_hash);

/// A login the node's proxy checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebLogin {
    pub user: WebUser,
    pub hash: PasswordHash,
}

impl TryFrom<&pb::WebLogin> for WebLogin {
    type Error = InvalidInput;
    fn try_from(login: &pb::WebLogin) -> Result<Self, Self::Error> {
        Ok(WebLogin {
            user: WebUser::new(login.user.as_str())?,
            hash: PasswordHash::new(login.password_hash.as_str())?,
        })
    }
}

impl From<&WebLogin> for pb::WebLogin {
    fn from(login: &WebLogin) -> Self {
        pb::WebLogin {
            user: login.user.to_string(),
            password_hash: login.hash.to_string(),
        }
    }
}

/// How a catalog entry's web endpoint is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebProtection {
    /// Meant for everyone (a website).
    Public,
    /// The app has a login of its own.
    Own,
    /// The proxy asks for the tenant's login.
    Proxy,
}

impl WebProtection {
    /// As written in a catalog file (`[web] auth = "..."`).
    pub fn as_str(self) -> &'static str {
        match self {
            WebProtection::Public => "public",
            WebProtection::Own => "own",
            WebProtection::Proxy => "proxy",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "public" => Some(WebProtection::Public),
            "own" => Some(WebProtection::Own),
            "proxy" => Some(WebProtection::Proxy),
            _ => None,
        }
    }
}

impl From<WebProtection> for WebAuth {
    fn from(p: WebProtection) -> Self {
        match p {
            WebProtection::Public => WebAuth::Public,
            WebProtection::Own => WebAuth::Own,
            WebProtection::Proxy => WebAuth::Proxy,
        }
    }
}

impl TryFrom<i32> for WebProtection {
    type Error = InvalidInput;
    fn try_from(value: i32) -> Result<Self, Self::Error> {
        match WebAuth::try_from(value) {
            Ok(WebAuth::Public) => Ok(WebProtection::Public),
            Ok(WebAuth::Own) => Ok(WebProtection::Own),
            Ok(WebAuth::Proxy) => Ok(WebProtection::Proxy),
            Ok(WebAuth::Unspecified) => Err(InvalidInput::field(
                "web_auth",
                "not set: every app says how its web endpoint is protected",
            )),
            Err(_) => Err(InvalidInput::field(
                "web_auth",
                format!("{value} is not a known protection"),
            )),
        }
    }
}

/// What the proxy does in front of an instance, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebAccess {
    Public,
    Own,
    /// The proxy asks for this login; `None`: no password yet, the route
    /// answers 503.
    Proxy(Option<WebLogin>),
}

impl WebAccess {
    /// From a spec's `web_auth` and `web_login`: a login comes only with
    /// the proxy's protection.
    pub fn from_spec(
        web_auth: i32,
        web_login: Option<&pb::WebLogin>,
    ) -> Result<WebAccess, InvalidInput> {
        let protection = WebProtection::try_from(web_auth)?;
        match (protection, web_login) {
            (WebProtection::Proxy, login) => {
                Ok(WebAccess::Proxy(login.map(WebLogin::try_from).transpose()?))
            }
            (_, Some(_)) => Err(InvalidInput::field(
                "web_login",
                format!(
                    "given for an app whose web endpoint is {}",
                    protection.as_str()
                ),
            )),
            (WebProtection::Public, None) => Ok(WebAccess::Public),
            (WebProtection::Own, None) => Ok(WebAccess::Own),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";

    #[test]
    fn only_bcrypt_hashes_pass() {
        assert_eq!(HASH.len(), 60);
        check_password_hash("h", HASH).unwrap();
        check_password_hash("h", &HASH.replace("$2b$", "$2a$")).unwrap();
        check_password_hash("h", &HASH.replace("$2b$", "$2y$")).unwrap();
        for bad in [
            "",
            "hunter2",
            &HASH[..59],
            &format!("{HASH}x"),
            &HASH.replace("$2b$", "$1$x"),
            &HASH.replace("$12$", "$09$"),
            &HASH.replace("$12$", "$17$"),
            &HASH.replace("$12$", "$1a$"),
            &HASH.replace("$12$", "$+1$"),
            &HASH.replace("R9h", "R9}"),
            &HASH.replace("R9h", "R9\n"),
            &HASH.replace("R9h", "R9 "),
            &HASH.replace("R9h", "R9\""),
            &HASH.replace("R9h", "R9é").replace("UW", "U"),
            &HASH.replace("$12$", "$1é").replace("UW", "U"),
        ] {
            assert!(check_password_hash("h", bad).is_err(), "{bad:?} passed");
        }
    }

    #[test]
    fn passwords_are_long_enough_and_fit_bcrypt() {
        check_password("correct horse battery").unwrap();
        check_password(&"é".repeat(12)).unwrap();
        assert!(check_password("short").is_err());
        assert!(check_password(&"x".repeat(73)).is_err());
        assert!(check_password("tab\tinside the password").is_err());
    }

    #[test]
    fn a_login_comes_only_with_the_proxy() {
        let login = pb::WebLogin {
            user: "asso-a".into(),
            password_hash: HASH.into(),
        };
        assert_eq!(
            WebAccess::from_spec(WebAuth::Proxy as i32, None).unwrap(),
            WebAccess::Proxy(None)
        );
        assert!(matches!(
            WebAccess::from_spec(WebAuth::Proxy as i32, Some(&login)).unwrap(),
            WebAccess::Proxy(Some(_))
        ));
        assert!(WebAccess::from_spec(WebAuth::Own as i32, Some(&login)).is_err());
        assert!(WebAccess::from_spec(WebAuth::Public as i32, Some(&login)).is_err());
        assert!(WebAccess::from_spec(WebAuth::Unspecified as i32, None).is_err());
        assert!(WebAccess::from_spec(42, None).is_err());
        let crafted = pb::WebLogin {
            user: "a\n}\nreverse_proxy".into(),
            password_hash: HASH.into(),
        };
        assert!(WebAccess::from_spec(WebAuth::Proxy as i32, Some(&crafted)).is_err());
    }
}
