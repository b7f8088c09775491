//! Tenancy: tenants (member associations, with their storage quota and
//! use), users with their roles and node grants, and their credentials
//! (API tokens, client certificates).

use std::borrow::Cow;

use coloc_proto::controller::v1 as pb;
use coloc_proto::domain;
use serde_json::{Value, json};

use super::{Details, Table, clean, fmt_bytes, fmt_time, joined, or_dash, with_secret};

// ---------------------------------------------------------------- status words

pub fn role_word(role: i32) -> &'static str {
    domain::Role::try_from(role).map_or("unknown", domain::Role::as_str)
}

pub fn offer_word(offer: i32) -> &'static str {
    domain::Offer::try_from(offer).map_or("unknown", domain::Offer::as_str)
}

pub fn api_token_state(t: &pb::ApiToken, now_unix: i64) -> &'static str {
    if t.revoked {
        "revoked"
    } else if t.expires_unix > 0 && t.expires_unix <= now_unix {
        "expired"
    } else {
        "active"
    }
}

/// A user certificate's state, as a token's.
pub fn user_cert_state(c: &pb::UserCertificate, now_unix: i64) -> &'static str {
    if c.revoked {
        "revoked"
    } else if c.expires_unix > 0 && c.expires_unix <= now_unix {
        "expired"
    } else {
        "active"
    }
}

pub fn user_state(u: &pb::User) -> &'static str {
    if u.disabled { "disabled" } else { "enabled" }
}

// ---------------------------------------------------------------- credentials

/// `token tok-1`, `certificate 7f3a…`: a credential as colocd names it.
pub fn credential_name(c: &pb::CredentialRef) -> String {
    use pb::credential_ref::Kind;
    match &c.kind {
        Some(Kind::TokenId(id)) => format!("token {}", clean(id)),
        Some(Kind::CertificateSerial(s)) => format!("certificate {}", clean(s)),
        None => "unknown credential".to_string(),
    }
}

/// What minted a credential: `-` for colocd's own roots.
fn minted_by(c: Option<&pb::CredentialRef>) -> String {
    c.map_or_else(|| "- (colocd)".to_string(), credential_name)
}

fn credential_json(c: &pb::CredentialRef) -> Value {
    use pb::credential_ref::Kind;
    match &c.kind {
        Some(Kind::TokenId(id)) => json!({"token": id}),
        Some(Kind::CertificateSerial(s)) => json!({"certificate": s}),
        None => Value::Null,
    }
}

fn credentials_json(list: &[pb::CredentialRef]) -> Value {
    Value::Array(list.iter().map(credential_json).collect())
}

/// "Also revoked, minted with it: …" after a revocation; empty if none.
pub fn also_revoked_text(list: &[pb::CredentialRef]) -> String {
    if list.is_empty() {
        return String::new();
    }
    let names: Vec<String> = list.iter().map(credential_name).collect();
    format!(
        "Also revoked, minted with it ({}): {}\n",
        list.len(),
        names.join(", ")
    )
}

/// The note when colocd shortened a new credential's lifetime.
pub fn limited_note(limited: bool, minted_by: Option<&pb::CredentialRef>) -> Option<String> {
    limited.then(|| {
        format!(
            "Note: shorter than asked: it cannot outlive {}, the credential you asked with.",
            self::minted_by(minted_by)
        )
    })
}

// ---------------------------------------------------------------- tenants

pub fn tenant_json(t: &pb::Tenant) -> Value {
    json!({
        "name": t.name,
        "display_name": t.display_name,
        "offer": offer_word(t.offer),
        "membership_expires": t.membership_expires,
        "membership_expired": t.membership_expired,
        "membership_state": membership_word(t),
        "frozen_from": t.frozen_from,
        "suspended": t.suspended,
        "suspended_unix": t.suspended_unix,
        "suspended_by": t.suspended_by,
        "suspended_reason": t.suspended_reason,
        "created_unix": t.created_unix,
        "storage_quota_bytes": t.storage_quota_bytes,
        "storage_used_bytes": t.storage_used_bytes,
        "volume_grace_days": t.volume_grace_days,
        "posix_id": t.posix_id,
    })
}

/// `current`, `expired` (its users are warned) or `frozen` (they read
/// but change nothing); a server that does not say gives `expired` or
/// `current` from `membership_expired`.
pub fn membership_word(t: &pb::Tenant) -> &'static str {
    match pb::MembershipState::try_from(t.membership_state) {
        Ok(pb::MembershipState::Current) => "current",
        Ok(pb::MembershipState::Expired) => "expired",
        Ok(pb::MembershipState::Frozen) => "frozen",
        _ if t.membership_expired => "expired",
        _ => "current",
    }
}

fn membership(t: &pb::Tenant) -> String {
    let until = clean(&t.membership_expires);
    let from = clean(&t.frozen_from);
    match membership_word(t) {
        "expired" if !from.is_empty() => {
            format!("{until} (expired; frozen from {from} unless renewed)")
        }
        "frozen" if !from.is_empty() => format!("{until} (frozen since {from})"),
        "current" => until.into_owned(),
        word => format!("{until} ({word})"),
    }
}

/// The membership phase, and `suspended` when admins stopped its apps.
fn standing(t: &pb::Tenant) -> String {
    let word = membership_word(t);
    if t.suspended {
        format!("{word}, suspended")
    } else {
        word.to_string()
    }
}

fn suspension(t: &pb::Tenant) -> String {
    if !t.suspended {
        return "no".to_string();
    }
    format!(
        "since {} by {}: {} (its apps are stopped; nothing is deleted)",
        fmt_time(t.suspended_unix),
        clean(&t.suspended_by),
        clean(&t.suspended_reason)
    )
}

/// `20.0 GiB / 100.0 GiB`: used, then quota.
fn storage_use(t: &pb::Tenant) -> String {
    format!(
        "{} / {}",
        fmt_bytes(t.storage_used_bytes),
        fmt_bytes(t.storage_quota_bytes)
    )
}

fn grace(days: u32) -> String {
    match days {
        0 => "-".to_string(),
        1 => "1 day".to_string(),
        n => format!("{n} days"),
    }
}

/// The uid/gid owning the tenant's volumes; 0 means none allocated yet.
fn posix_id(id: u32) -> String {
    if id == 0 {
        "-".to_string()
    } else {
        id.to_string()
    }
}

pub fn tenant_details(t: &pb::Tenant) -> String {
    Details::new()
        .field("Name", clean(&t.name))
        .field("Display name", or_dash(&t.display_name))
        .field("Offer", offer_word(t.offer))
        .field("Membership until", membership(t))
        .field("Suspended", suspension(t))
        .field("Storage quota", fmt_bytes(t.storage_quota_bytes))
        .field(
            "Storage used",
            format!(
                "{} (active and deleted-but-kept volumes)",
                fmt_bytes(t.storage_used_bytes)
            ),
        )
        .field("Deleted volumes kept", grace(t.volume_grace_days))
        .field("POSIX uid/gid", posix_id(t.posix_id))
        .field("Created", fmt_time(t.created_unix))
        .render()
}

pub fn tenants_table(tenants: &[pb::Tenant]) -> String {
    Table::new(&[
        "NAME",
        "OFFER",
        "MEMBERSHIP UNTIL",
        "STANDING",
        "STORAGE USED/QUOTA",
        "GRACE",
        "POSIX ID",
        "CREATED",
        "DISPLAY NAME",
    ])
    .rows(tenants, |x| {
        vec![
            clean(&x.name).into(),
            offer_word(x.offer).to_string(),
            clean(&x.membership_expires).into(),
            standing(x),
            storage_use(x),
            grace(x.volume_grace_days),
            posix_id(x.posix_id),
            fmt_time(x.created_unix),
            or_dash(&x.display_name).into(),
        ]
    })
    .render_or("no tenants")
}

// ---------------------------------------------------------------- users

pub fn user_json(u: &pb::User) -> Value {
    json!({
        "name": u.name,
        "tenant": u.tenant,
        "role": role_word(u.role),
        "display_name": u.display_name,
        "node_grants": u.node_grants,
        "created_unix": u.created_unix,
        "disabled": u.disabled,
        "disabled_unix": u.disabled_unix,
    })
}

fn tenant_of(u: &pb::User) -> Cow<'_, str> {
    if u.tenant.is_empty() {
        Cow::Borrowed("- (cooperative)")
    } else {
        clean(&u.tenant)
    }
}

/// `enabled`, or `disabled since …`.
fn disabled_since(u: &pb::User) -> String {
    if u.disabled {
        format!("disabled since {} UTC", fmt_time(u.disabled_unix))
    } else {
        user_state(u).to_string()
    }
}

pub fn user_details(u: &pb::User) -> String {
    Details::new()
        .field("Name", clean(&u.name))
        .field("Role", role_word(u.role))
        .field("State", disabled_since(u))
        .field("Tenant", tenant_of(u))
        .field("Display name", or_dash(&u.display_name))
        .field("Node grants", joined(&u.node_grants))
        .field("Created", fmt_time(u.created_unix))
        .render()
}

pub fn users_table(users: &[pb::User]) -> String {
    Table::new(&[
        "NAME",
        "ROLE",
        "STATE",
        "TENANT",
        "NODE GRANTS",
        "CREATED",
        "DISPLAY NAME",
    ])
    .rows(users, |u| {
        vec![
            clean(&u.name).into(),
            role_word(u.role).to_string(),
            user_state(u).to_string(),
            or_dash(&u.tenant).into(),
            joined(&u.node_grants),
            fmt_time(u.created_unix),
            or_dash(&u.display_name).into(),
        ]
    })
    .render_or("no users")
}

// ---------------------------------------------------------------- api tokens

pub fn api_token_json(t: &pb::ApiToken) -> Value {
    let v = json!({
        "id": t.id,
        "user": t.user,
        "description": t.description,
        "created_unix": t.created_unix,
        "expires_unix": t.expires_unix,
        "revoked": t.revoked,
        "revoked_unix": t.revoked_unix,
        "minted_by": t.minted_by.as_ref().map_or(Value::Null, credential_json),
        "expiry_limited_by_minter": t.expiry_limited_by_minter,
        "also_revoked": credentials_json(&t.also_revoked),
    });
    with_secret(v, &t.secret)
}

pub fn api_token_details(t: &pb::ApiToken, now_unix: i64) -> String {
    Details::new()
        .field("Id", clean(&t.id))
        .field("User", clean(&t.user))
        .field("State", api_token_state(t, now_unix))
        .field("Description", or_dash(&t.description))
        .field("Created", fmt_time(t.created_unix))
        .field("Expires", fmt_time(t.expires_unix))
        .field("Minted with", minted_by(t.minted_by.as_ref()))
        .render()
}

pub fn api_tokens_table(tokens: &[pb::ApiToken], now_unix: i64) -> String {
    Table::new(&["ID", "USER", "STATE", "CREATED", "EXPIRES", "DESCRIPTION"])
        .rows(tokens, |x| {
            vec![
                clean(&x.id).into(),
                clean(&x.user).into(),
                api_token_state(x, now_unix).to_string(),
                fmt_time(x.created_unix),
                fmt_time(x.expires_unix),
                or_dash(&x.description).into(),
            ]
        })
        .render_or("no tokens")
}

// ---------------------------------------------------------------- user certificates

pub fn user_cert_json(c: &pb::UserCertificate) -> Value {
    json!({
        "serial": c.serial,
        "fingerprint": c.fingerprint,
        "user": c.user,
        "created_unix": c.created_unix,
        "expires_unix": c.expires_unix,
        "revoked": c.revoked,
        "revoked_unix": c.revoked_unix,
        "minted_by": c.minted_by.as_ref().map_or(Value::Null, credential_json),
        "also_revoked": credentials_json(&c.also_revoked),
    })
}

pub fn user_cert_details(c: &pb::UserCertificate, now_unix: i64) -> String {
    Details::new()
        .field("Serial", clean(&c.serial))
        .field("User", clean(&c.user))
        .field("State", user_cert_state(c, now_unix))
        .field("Created", fmt_time(c.created_unix))
        .field("Expires", fmt_time(c.expires_unix))
        .field("Minted with", minted_by(c.minted_by.as_ref()))
        .field("Sha256", clean(&c.fingerprint))
        .render()
}

pub fn user_certs_table(certs: &[pb::UserCertificate], now_unix: i64) -> String {
    Table::new(&[
        "SERIAL",
        "USER",
        "STATE",
        "CREATED",
        "EXPIRES",
        "MINTED WITH",
    ])
    .rows(certs, |c| {
        vec![
            clean(&c.serial).into(),
            clean(&c.user).into(),
            user_cert_state(c, now_unix).to_string(),
            fmt_time(c.created_unix),
            fmt_time(c.expires_unix),
            minted_by(c.minted_by.as_ref()),
        ]
    })
    .render_or("no certificates")
}

/// `coloc user delete`: who went, what went with them.
pub fn deleted_user_json(d: &pb::DeleteUserResponse) -> Value {
    json!({
        "user": d.user.as_ref().map_or(Value::Null, user_json),
        "deleted": credentials_json(&d.deleted),
        "also_revoked": credentials_json(&d.also_revoked),
    })
}

pub fn deleted_user_text(d: &pb::DeleteUserResponse) -> String {
    let name = d.user.as_ref().map_or("?", |u| u.name.as_str());
    let mut text = format!(
        "Deleted user {} and {} credential(s) of theirs; the name will not be given again.\n",
        clean(name),
        d.deleted.len()
    );
    if !d.also_revoked.is_empty() {
        let names: Vec<String> = d.also_revoked.iter().map(credential_name).collect();
        text += &format!(
            "Revoked, minted by other users with theirs ({}): {}\n",
            d.also_revoked.len(),
            names.join(", ")
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_offers_are_words() {
        assert_eq!(role_word(pb::Role::Operator as i32), "operator");
        assert_eq!(offer_word(pb::Offer::Participatif as i32), "participatif");
        assert_eq!(offer_word(0), "unknown");
    }

    #[test]
    fn secrets_only_when_present() {
        let mut t = pb::ApiToken {
            id: "tok1".into(),
            user: "alice".into(),
            ..Default::default()
        };
        assert!(api_token_json(&t).get("secret").is_none());
        t.secret = "cat_s3cret".into();
        assert_eq!(api_token_json(&t)["secret"], "cat_s3cret");
    }

    #[test]
    fn token_states() {
        let now = 1_000;
        let mut a = pb::ApiToken {
            expires_unix: 2_000,
            ..Default::default()
        };
        assert_eq!(api_token_state(&a, now), "active");
        a.expires_unix = 10;
        assert_eq!(api_token_state(&a, now), "expired");
        a.revoked = true;
        assert_eq!(api_token_state(&a, now), "revoked");
    }

    #[test]
    fn credentials_are_named_and_minters_shown() {
        let tok = pb::CredentialRef {
            kind: Some(pb::credential_ref::Kind::TokenId("tok-1".into())),
        };
        let cert = pb::CredentialRef {
            kind: Some(pb::credential_ref::Kind::CertificateSerial("7f3a".into())),
        };
        assert_eq!(credential_name(&tok), "token tok-1");
        assert_eq!(credential_name(&cert), "certificate 7f3a");
        assert_eq!(also_revoked_text(&[]), "");
        assert_eq!(
            also_revoked_text(&[tok.clone(), cert.clone()]),
            "Also revoked, minted with it (2): token tok-1, certificate 7f3a\n"
        );
        assert_eq!(limited_note(false, Some(&tok)), None);
        assert_eq!(
            limited_note(true, Some(&tok)).unwrap(),
            "Note: shorter than asked: it cannot outlive token tok-1, the credential you asked with."
        );
        let c = pb::UserCertificate {
            serial: "7f3a".into(),
            user: "mia".into(),
            expires_unix: 2_000,
            minted_by: Some(tok),
            ..Default::default()
        };
        let table = user_certs_table(std::slice::from_ref(&c), 1_000);
        assert!(table.contains("active"), "{table}");
        assert!(table.contains("token tok-1"), "{table}");
        assert_eq!(user_cert_state(&c, 3_000), "expired");
        assert_eq!(user_cert_json(&c)["minted_by"]["token"], "tok-1");
        let root = pb::UserCertificate { revoked: true, ..c };
        assert_eq!(user_cert_state(&root, 1_000), "revoked");
        assert!(user_cert_details(&root, 1_000).contains("Minted with:  token tok-1"));
    }

    #[test]
    fn disabled_users_say_so() {
        let mut u = pb::User {
            name: "mia".into(),
            role: pb::Role::Member as i32,
            tenant: "asso-x".into(),
            ..Default::default()
        };
        assert!(user_details(&u).contains("State:         enabled"));
        u.disabled = true;
        u.disabled_unix = 86_400;
        assert!(
            user_details(&u).contains("State:         disabled since 1970-01-02 00:00 UTC"),
            "{}",
            user_details(&u)
        );
        assert!(users_table(&[u.clone()]).contains("disabled"));
        assert_eq!(user_json(&u)["disabled"], true);
    }

    #[test]
    fn tenant_and_user_rows() {
        let t = pb::Tenant {
            name: "asso-x".into(),
            offer: pb::Offer::Responsable as i32,
            membership_expires: "2026-01-31".into(),
            membership_expired: true,
            ..Default::default()
        };
        let text = tenants_table(std::slice::from_ref(&t));
        assert!(text.contains("responsable"), "{text}");
        assert!(text.contains("2026-01-31        expired"), "{text}");
        assert!(tenant_details(&t).contains("2026-01-31 (expired)\n"));
        let frozen = pb::Tenant {
            membership_state: pb::MembershipState::Frozen as i32,
            frozen_from: "2026-03-03".into(),
            suspended: true,
            suspended_unix: 1_772_539_200,
            suspended_by: "root".into(),
            suspended_reason: "spam\u{1b}[2J".into(),
            ..t.clone()
        };
        let text = tenants_table(std::slice::from_ref(&frozen));
        assert!(text.contains("frozen, suspended"), "{text}");
        let text = tenant_details(&frozen);
        assert!(
            text.contains("2026-01-31 (frozen since 2026-03-03)\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "since 2026-03-03 12:00 by root: spam\\u{1b}[2J (its apps are stopped; nothing is deleted)"
            ),
            "{text}"
        );
        let expired = pb::Tenant {
            membership_state: pb::MembershipState::Expired as i32,
            frozen_from: "2026-03-03".into(),
            ..t.clone()
        };
        assert!(
            tenant_details(&expired)
                .contains("2026-01-31 (expired; frozen from 2026-03-03 unless renewed)")
        );
        assert_eq!(tenant_json(&frozen)["membership_state"], "frozen");
        assert_eq!(tenant_json(&expired)["suspended"], false);
        let u = pb::User {
            name: "root".into(),
            role: pb::Role::Admin as i32,
            ..Default::default()
        };
        assert!(user_details(&u).contains("- (cooperative)"));
        assert_eq!(user_json(&u)["role"], "admin");
    }

    #[test]
    fn tenant_storage_figures() {
        let t = pb::Tenant {
            name: "asso-x".into(),
            storage_quota_bytes: 100 << 30,
            storage_used_bytes: 30 << 30,
            volume_grace_days: 1,
            ..Default::default()
        };
        let text = tenant_details(&t);
        assert!(text.contains("30.0 GiB (active"), "{text}");
        assert!(text.contains("1 day\n"), "{text}");
        assert!(text.contains("POSIX uid/gid:         -"), "{text}");
        assert!(tenants_table(&[t]).contains("30.0 GiB / 100.0 GiB  1 day"));
    }
}
