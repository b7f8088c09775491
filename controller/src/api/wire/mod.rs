//! Requests from the wire into validated domain values: the door of the
//! public API. Each request message a handler takes has one `TryFrom`
//! here, into a struct of checked values (names, sizes, enums, bounded
//! text) whose error is an [`InvalidInput`] naming the field; a handler
//! converts once, after authentication, and from then on works on domain
//! types only. Where the store already takes the request's shape (a
//! listing filter, a label change), the request converts into that.
//!
//! What is checked here is what the request alone can tell: a name's
//! rule, a size's bounds, a field that must or must not be given. What
//! needs the caller, the clock or the store (a quota, a volume's pool
//! kind, an expiry date in the past) stays with the handler. The rules
//! themselves are shared with the agent and the CLI and live in
//! `coloc_proto` (`domain`, `storage`, `apps`); this module only applies
//! them to each field.
//!
//! One module per service family, as in `api`: [`fleet`] (Sites, Nodes),
//! [`tenancy`] (Tenants, Users, Tokens), [`storage`], [`apps`], [`audit`].

pub mod apps;
pub mod audit;
pub mod fleet;
pub mod storage;
pub mod tenancy;

use coloc_proto::domain::{InvalidInput, TenantName};

use crate::store::audit::audit_text;

/// A field every request of its kind must carry, checked by its type's
/// own rule, whose error names the field (`invalid tenant name "": empty
/// (...)`).
pub fn required<T>(text: String) -> Result<T, InvalidInput>
where
    T: TryFrom<String, Error = InvalidInput>,
{
    T::try_from(text)
}

/// A field the caller may leave out: empty text is `None`, anything else
/// must pass `parse`. Proto3 strings cannot be absent, so "" is how a
/// filter or a default is asked for.
pub fn optional<'a, T>(
    text: &'a str,
    parse: impl FnOnce(&'a str) -> Result<T, InvalidInput>,
) -> Result<Option<T>, InvalidInput> {
    if text.is_empty() {
        Ok(None)
    } else {
        parse(text).map(Some)
    }
}

/// The tenant an audit entry is filed under, from what the caller wrote:
/// set before the request is converted, so that a refused request is in
/// that tenant's log too whenever the name alone is valid.
pub fn audit_tenant(text: &str) -> Option<TenantName> {
    TenantName::new(text).ok()
}

/// Longest piece of a caller's text an audit target keeps, in bytes.
pub const SHOWN_BYTES: usize = 128;

/// What the caller wrote, for an audit target written before (or
/// whether or not) the value is valid: the audit log's one rule
/// ([`audit_text`]) at [`SHOWN_BYTES`], applied to each value a target
/// names so that one huge value does not push the others out. The entry
/// applies the rule again to the whole field, which changes nothing here.
pub fn shown(text: &str) -> String {
    shown_up_to(text, SHOWN_BYTES)
}

/// [`shown`] with another length, for a target that lists several values.
pub fn shown_up_to(text: &str, max_bytes: usize) -> String {
    audit_text(text, max_bytes)
}

/// Test helper of the conversions: refused, with a message that says
/// `what` (the field's name, usually).
#[cfg(test)]
fn refused<T: std::fmt::Debug>(result: Result<T, InvalidInput>, what: &str) {
    let err = result.unwrap_err().to_string();
    assert!(err.contains(what), "expected {what:?} in: {err}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_fields_are_empty_or_valid() {
        assert_eq!(optional("", TenantName::new).unwrap(), None);
        assert_eq!(
            optional("asso-a", TenantName::new)
                .unwrap()
                .unwrap()
                .as_str(),
            "asso-a"
        );
        let err = optional("Asso A", TenantName::new).unwrap_err();
        assert!(err.to_string().contains("tenant name"), "{err}");
    }

    #[test]
    fn required_fields_name_themselves_when_empty() {
        let err = required::<TenantName>(String::new()).unwrap_err();
        assert!(err.to_string().starts_with("invalid tenant name"), "{err}");
        assert!(err.to_string().contains("empty"), "{err}");
        let ok: TenantName = required("asso-a".into()).unwrap();
        assert_eq!(ok.as_str(), "asso-a");
    }

    #[test]
    fn audit_tenants_are_valid_names_or_nothing() {
        assert_eq!(audit_tenant("asso-a").unwrap().as_str(), "asso-a");
        assert_eq!(audit_tenant(""), None);
        assert_eq!(audit_tenant("asso-a\nforged"), None);
    }

    #[test]
    fn shown_text_is_short_and_single_line() {
        assert_eq!(shown("asso-a\nforged"), "asso-a\\nforged");
        assert_eq!(shown("\u{1b}[31m"), "\\u{1b}[31m");
        let long = shown(&"é".repeat(300));
        assert!(long.len() <= SHOWN_BYTES, "{long}");
        assert!(long.ends_with("… (600 bytes)"), "{long}");
        assert_eq!(
            shown_up_to(&"a".repeat(100), 40),
            format!("{}… (100 bytes)", "a".repeat(25))
        );
    }
}
