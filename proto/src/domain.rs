//! Validated domain types. Wire messages carry plain strings; these types
//! are what the rest of coloc works with, so that a bad name is refused
//! once, at the door, with a message that says what is wrong.

use std::fmt;
use std::str::FromStr;

use crate::controller::v1 as pb;

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    #[error(
        "invalid {kind} {value:?}: {reason} (allowed: 1 to 63 characters a-z, 0-9 and '-', starting with a letter, not ending with '-')"
    )]
    Name {
        kind: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("invalid {field}: {reason}")]
    Field { field: &'static str, reason: String },
}

impl InvalidInput {
    pub fn field(field: &'static str, reason: impl Into<String>) -> Self {
        InvalidInput::Field {
            field,
            reason: reason.into(),
        }
    }

    /// Why the value was refused, without the "invalid <field>:" prefix,
    /// for callers that name the field themselves (a catalog file's
    /// `packages[2]`, a CLI flag).
    pub fn reason(&self) -> String {
        match self {
            InvalidInput::Field { reason, .. } => reason.clone(),
            InvalidInput::Name { .. } => self.to_string(),
        }
    }
}

/// Longest name accepted (a DNS label).
pub const MAX_NAME_LEN: usize = 63;

/// Checks the slug rule shared by every object name: a DNS label in
/// lowercase. Names later become host names (`<app>.<tenant>.<domain>`),
/// paths (`/srv/tenants/<tenant>`) and unit names, so the rule is strict on
/// purpose: nothing here can carry a '/', a '.', a space, a quote, a
/// newline or a shell metacharacter.
pub fn check_name(kind: &'static str, value: &str) -> Result<(), InvalidInput> {
    let err = |reason| InvalidInput::Name {
        kind,
        value: clip(value),
        reason,
    };
    if value.is_empty() {
        return Err(err("empty"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(err("too long"));
    }
    let bytes = value.as_bytes();
    if !bytes[0].is_ascii_lowercase() {
        return Err(err("must start with a lowercase letter"));
    }
    if bytes[bytes.len() - 1] == b'-' {
        return Err(err("must not end with '-'"));
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
    {
        return Err(err("contains a character outside a-z, 0-9 and '-'"));
    }
    Ok(())
}

/// A string newtype whose value passed `$check(KIND, value)` on the way in:
/// the one shape of every validated name and id in coloc (nodes, sites,
/// tenants, users, volumes, snapshots, pools, apps, packages, ...). It
/// derives serde through the same check, so a value read from a file is
/// checked like one read from the wire.
macro_rules! validated_string {
    ($(#[$doc:meta])* $ty:ident, $kind:literal, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        impl $ty {
            /// What kind of object this names, for messages and audit targets.
            pub const KIND: &'static str = $kind;

            pub fn new(value: impl Into<String>) -> Result<Self, $crate::domain::InvalidInput> {
                let value = value.into();
                $check($kind, &value)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::domain::InvalidInput;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = $crate::domain::InvalidInput;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = $crate::domain::InvalidInput;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl From<$ty> for String {
            fn from(v: $ty) -> String {
                v.0
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}
pub(crate) use validated_string;

validated_string!(
    /// A server's name, unique in the fleet (its host name).
    NodeName, "node name", check_name);
validated_string!(
    /// A site (a room or a member's premises), e.g. `paris-1`.
    SiteName, "site name", check_name);
validated_string!(
    /// An association, e.g. `asso-x`.
    TenantName, "tenant name", check_name);
validated_string!(
    /// A person's login.
    UserName, "user name", check_name);
validated_string!(
    /// A user certificate's serial, lowercase hex: how people name a
    /// certificate to list or revoke it. colocd's serials are 32 digits;
    /// a certificate issued before colocd recorded serials goes by its
    /// sha256 fingerprint (64 digits) instead.
    CertSerial, "certificate serial", check_cert_serial);

/// Longest [`CertSerial`]: a sha256 fingerprint's 64 hex digits (an X.509
/// serial has at most 40).
pub const MAX_CERT_SERIAL_LEN: usize = 64;

/// The rule of [`CertSerial`]: 1 to 64 lowercase hex digits.
pub fn check_cert_serial(kind: &'static str, value: &str) -> Result<(), InvalidInput> {
    let ok = !value.is_empty()
        && value.len() <= MAX_CERT_SERIAL_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(InvalidInput::field(
            kind,
            format!(
                "{:?} is not 1 to {MAX_CERT_SERIAL_LEN} lowercase hex digits, as `coloc user cert list` shows it",
                clip(value)
            ),
        ))
    }
}

/// ISO 3166-1 alpha-2 country code, upper case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Country(String);

impl Country {
    pub fn new(value: &str) -> Result<Self, InvalidInput> {
        let v = value.trim().to_ascii_uppercase();
        if v.len() != 2 || !v.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(InvalidInput::field(
                "country",
                format!("{value:?} is not a two-letter ISO 3166 code such as FR"),
            ));
        }
        Ok(Self(v))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn is_france(&self) -> bool {
        self.0 == "FR"
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    Operator,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Member => "member",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "member" => Ok(Role::Member),
            other => Err(InvalidInput::field(
                "role",
                format!("{other:?} is not one of admin, operator, member"),
            )),
        }
    }
}

impl TryFrom<i32> for Role {
    type Error = InvalidInput;
    fn try_from(v: i32) -> Result<Self, Self::Error> {
        match pb::Role::try_from(v) {
            Ok(pb::Role::Admin) => Ok(Role::Admin),
            Ok(pb::Role::Operator) => Ok(Role::Operator),
            Ok(pb::Role::Member) => Ok(Role::Member),
            Ok(pb::Role::Unspecified) | Err(_) => Err(InvalidInput::field(
                "role",
                "must be admin, operator or member",
            )),
        }
    }
}

impl From<Role> for pb::Role {
    fn from(r: Role) -> Self {
        match r {
            Role::Admin => pb::Role::Admin,
            Role::Operator => pb::Role::Operator,
            Role::Member => pb::Role::Member,
        }
    }
}

/// The cooperative's two plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Offer {
    /// Managed: the association uses the services.
    Responsable,
    /// The association's members help run the servers.
    Participatif,
}

impl Offer {
    pub fn as_str(self) -> &'static str {
        match self {
            Offer::Responsable => "responsable",
            Offer::Participatif => "participatif",
        }
    }
}

impl fmt::Display for Offer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Offer {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "responsable" => Ok(Offer::Responsable),
            "participatif" => Ok(Offer::Participatif),
            other => Err(InvalidInput::field(
                "offer",
                format!("{other:?} is not one of responsable, participatif"),
            )),
        }
    }
}

impl TryFrom<i32> for Offer {
    type Error = InvalidInput;
    fn try_from(v: i32) -> Result<Self, Self::Error> {
        match pb::Offer::try_from(v) {
            Ok(pb::Offer::Responsable) => Ok(Offer::Responsable),
            Ok(pb::Offer::Participatif) => Ok(Offer::Participatif),
            Ok(pb::Offer::Unspecified) | Err(_) => Err(InvalidInput::field(
                "offer",
                "must be responsable or participatif",
            )),
        }
    }
}

impl From<Offer> for pb::Offer {
    fn from(o: Offer) -> Self {
        match o {
            Offer::Responsable => pb::Offer::Responsable,
            Offer::Participatif => pb::Offer::Participatif,
        }
    }
}

/// Free text shown to people (descriptions, display names, comments):
/// bounded length and no control characters, so it cannot forge lines in
/// a table, a log or an audit entry.
pub fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), InvalidInput> {
    if value.chars().count() > max {
        return Err(InvalidInput::field(
            field,
            format!("longer than {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(InvalidInput::field(
            field,
            "contains control characters (newline, tab, escape, ...)",
        ));
    }
    Ok(())
}

/// A DNS domain in lowercase (an apps domain, the host name of an app):
/// at least two labels of `[a-z0-9-]`, each 1 to 63 characters not starting
/// or ending with `-`, 253 at most in all.
pub fn check_domain_name(field: &'static str, domain: &str) -> Result<(), InvalidInput> {
    let bad = |reason: &str| InvalidInput::field(field, format!("{:?} {reason}", clip(domain)));
    if domain.is_empty() || domain.len() > 253 {
        return Err(bad("is not 1 to 253 characters"));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(bad("needs at least two labels"));
    }
    for label in labels {
        let bytes = label.as_bytes();
        if bytes.is_empty() || bytes.len() > 63 {
            return Err(bad("has an empty or too long label"));
        }
        if bytes[0] == b'-' || bytes[bytes.len() - 1] == b'-' {
            return Err(bad("has a label starting or ending with '-'"));
        }
        if !bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        {
            return Err(bad("has a character outside a-z, 0-9, '-' and '.'"));
        }
    }
    Ok(())
}

/// At most 80 characters of a refused value, for error messages: enough
/// to recognise it, never enough to flood a log or a terminal.
pub fn clip(text: &str) -> String {
    text.chars().take(80).collect()
}

/// Free text the API takes, each with its one limit, checked by the CLI
/// before sending and by colocd on arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text {
    /// A tenant's or a user's display name.
    DisplayName,
    /// A site's city.
    City,
    /// A site's description.
    SiteDescription,
    /// An API token's description.
    TokenDescription,
    /// An audit filter on the actor (`user:alice`, `node:n1`).
    Actor,
    /// A message in an app request's discussion.
    Comment,
    /// Why admins suspended a tenant.
    SuspensionReason,
}

impl Text {
    /// The field name used in messages.
    pub fn field(self) -> &'static str {
        match self {
            Text::DisplayName => "display name",
            Text::City => "city",
            Text::SiteDescription | Text::TokenDescription => "description",
            Text::Actor => "actor",
            Text::Comment => "comment",
            Text::SuspensionReason => "reason",
        }
    }

    /// Longest value, in characters.
    pub fn max_chars(self) -> usize {
        match self {
            Text::DisplayName | Text::City | Text::Actor => 100,
            Text::TokenDescription => 200,
            Text::SiteDescription | Text::SuspensionReason => 500,
            Text::Comment => 2000,
        }
    }

    /// [`check_text`] with this kind's field name and limit.
    pub fn check(self, value: &str) -> Result<(), InvalidInput> {
        check_text(self.field(), value, self.max_chars())
    }
}

/// Label keys follow the name rule; values are short printable text.
pub fn check_label(key: &str, value: &str) -> Result<(), InvalidInput> {
    check_name("label key", key)?;
    check_text("label value", value, 128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_dns_labels() {
        for ok in ["a", "asso-x", "paris-1", "n1", &"a".repeat(63)] {
            assert!(TenantName::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn names_refuse_everything_else() {
        let long = "a".repeat(64);
        for bad in [
            "",
            "1abc",
            "-a",
            "a-",
            "A",
            "a b",
            "a/b",
            "a.b",
            "a;rm -rf /",
            "a\nExecStart=/bin/sh",
            "é",
            "../etc",
            "$(id)",
            &long,
        ] {
            let err = TenantName::new(bad).unwrap_err();
            assert!(err.to_string().contains("tenant name"), "{err}");
        }
    }

    #[test]
    fn serde_validates() {
        let ok: Result<NodeName, _> = serde_json::from_str("\"n1\"");
        assert!(ok.is_ok());
        let bad: Result<NodeName, _> = serde_json::from_str("\"N 1\"");
        assert!(bad.is_err());
    }

    #[test]
    fn certificate_serials_are_lowercase_hex() {
        for ok in [
            "1",
            "7f3a09",
            &"a".repeat(32),
            &"0".repeat(MAX_CERT_SERIAL_LEN),
        ] {
            assert_eq!(CertSerial::new(ok).unwrap().as_str(), ok);
        }
        let long = "a".repeat(MAX_CERT_SERIAL_LEN + 1);
        for bad in ["", "7F3A", "7f:3a", "serial=7f", "0x7f", "7g", " 7f", &long] {
            let err = CertSerial::new(bad).unwrap_err();
            assert!(err.to_string().contains("certificate serial"), "{err}");
        }
    }

    #[test]
    fn countries() {
        assert!(Country::new("fr").unwrap().is_france());
        assert!(!Country::new("DE").unwrap().is_france());
        assert!(Country::new("FRA").is_err());
        assert!(Country::new("").is_err());
    }

    #[test]
    fn text_refuses_control_chars() {
        assert!(check_text("comment", "bonjour à tous", 100).is_ok());
        assert!(check_text("comment", "a\nb", 100).is_err());
        assert!(check_text("comment", "\x1b[31m", 100).is_err());
        assert!(check_text("comment", &"x".repeat(101), 100).is_err());
    }

    #[test]
    fn roles_and_offers_round_trip() {
        for r in [Role::Admin, Role::Operator, Role::Member] {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
            assert_eq!(Role::try_from(pb::Role::from(r) as i32).unwrap(), r);
        }
        assert!(Role::try_from(0).is_err());
        assert!(Role::try_from(99).is_err());
        for o in [Offer::Responsable, Offer::Participatif] {
            assert_eq!(o.as_str().parse::<Offer>().unwrap(), o);
            assert_eq!(Offer::try_from(pb::Offer::from(o) as i32).unwrap(), o);
        }
    }
}
