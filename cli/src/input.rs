//! Parsers for what people type that is not a plain name: lifetimes
//! (`90d`), dates, free text, label changes, sizes (`20G`), volume
//! references (`asso-x/data`), app names and instances
//! (`asso-x/radicale`), request comments, and in [`health`] alert ids,
//! silences, pools and disks. Pure functions, used as clap value parsers
//! or right after parsing, so that a bad value is refused before anything
//! is sent to colocd.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use coloc_proto::apps::AppName;
use coloc_proto::domain::{self, Country, NodeName, TenantName, Text};
use coloc_proto::storage::{self, VolumeId, VolumeName};
use time::Date;
use time::macros::format_description;

use crate::error::Failure;

mod health;
pub use health::{DiskRef, parse_alert_id, parse_disk_ref, parse_silence, parse_zpool_name};

// Free texts are checked by the limits colocd applies (coloc_proto's
// `Text`), so that a long value is refused before the round trip.

/// A lifetime typed as `<number><unit>` with unit s, m, h or d.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl(Duration);

impl Ttl {
    pub fn secs(self) -> u64 {
        self.0.as_secs()
    }
}

/// Parses `30s`, `15m`, `1h`, `90d`. A bare number is refused: a lifetime
/// silently read in the wrong unit is worse than an error.
pub fn parse_ttl(text: &str) -> Result<Ttl, String> {
    let text = text.trim();
    let Some(unit) = text.chars().last() else {
        return Err("empty lifetime; use e.g. 30m, 1h or 90d".to_string());
    };
    let factor: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => {
            return Err(format!(
                "{text:?} has no unit; use a number followed by s, m, h or d (e.g. 1h, 90d)"
            ));
        }
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{text:?} is not a number followed by s, m, h or d (e.g. 1h, 90d)"
        ));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is too large"))?;
    let secs = n
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))?;
    if secs == 0 {
        return Err("a lifetime must be longer than zero".to_string());
    }
    Ok(Ttl(Duration::from_secs(secs)))
}

/// A calendar date, `YYYY-MM-DD`, returned in that canonical form.
pub fn parse_date(text: &str) -> Result<String, String> {
    let format = format_description!("[year]-[month]-[day]");
    let date = Date::parse(text.trim(), format)
        .map_err(|_| format!("{text:?} is not a date written YYYY-MM-DD"))?;
    date.format(format).map_err(|e| e.to_string())
}

pub fn parse_country(text: &str) -> Result<Country, String> {
    Country::new(text).map_err(|e| e.to_string())
}

pub fn parse_display_name(text: &str) -> Result<String, String> {
    Text::DisplayName.check(text).map_err(|e| e.to_string())?;
    Ok(text.to_string())
}

pub fn parse_site_description(text: &str) -> Result<String, String> {
    Text::SiteDescription
        .check(text)
        .map_err(|e| e.to_string())?;
    Ok(text.to_string())
}

pub fn parse_token_description(text: &str) -> Result<String, String> {
    Text::TokenDescription
        .check(text)
        .map_err(|e| e.to_string())?;
    Ok(text.to_string())
}

/// Why admins suspend a tenant: its users read it, so it is not empty.
pub fn parse_suspension_reason(text: &str) -> Result<String, String> {
    Text::SuspensionReason
        .check(text)
        .map_err(|e| e.to_string())?;
    if text.trim().is_empty() {
        return Err("say why the tenant is suspended: its users read it".to_string());
    }
    Ok(text.to_string())
}

pub fn parse_city(text: &str) -> Result<String, String> {
    Text::City.check(text).map_err(|e| e.to_string())?;
    Ok(text.to_string())
}

/// Audit actors look like `user:alice`, `node:n1` or `anonymous`.
pub fn parse_actor(text: &str) -> Result<String, String> {
    Text::Actor.check(text).map_err(|e| e.to_string())?;
    Ok(text.to_string())
}

/// Token ids are opaque to the CLI; only refuse what cannot be an id.
pub fn parse_token_id(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("empty token id".to_string());
    }
    domain::check_text("token id", text, 128).map_err(|e| e.to_string())?;
    if text.contains(char::is_whitespace) {
        return Err(format!("{text:?} contains spaces; token ids have none"));
    }
    Ok(text.to_string())
}

/// A volume size: parsed in binary units, checked against colocd's bounds
/// (64 MiB to 1 PiB) and rounded up to 4 MiB as colocd would, so that the
/// size sent is the size the volume gets.
pub fn parse_volume_size(text: &str) -> Result<u64, String> {
    let bytes = storage::parse_size(text).map_err(|e| e.to_string())?;
    storage::volume_size(bytes).map_err(|e| e.to_string())
}

/// Any size (a reservation, a quota): parsed in binary units, no bounds.
pub fn parse_size(text: &str) -> Result<u64, String> {
    storage::parse_size(text).map_err(|e| e.to_string())
}

/// How a command names a volume: `<tenant>/<name>` or its 16-digit id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeRef {
    Named {
        tenant: TenantName,
        name: VolumeName,
    },
    Id(VolumeId),
}

impl VolumeRef {
    /// `<tenant>/<name>` when the volume was named that way.
    pub fn qualified_name(&self) -> Option<String> {
        match self {
            VolumeRef::Named { tenant, name } => Some(format!("{tenant}/{name}")),
            VolumeRef::Id(_) => None,
        }
    }
}

impl fmt::Display for VolumeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VolumeRef::Named { tenant, name } => write!(f, "{tenant}/{name}"),
            VolumeRef::Id(id) => f.write_str(id.as_str()),
        }
    }
}

/// Parses `asso-x/data` (tenant and volume names checked) or a volume id.
pub fn parse_volume_ref(text: &str) -> Result<VolumeRef, String> {
    match text.split_once('/') {
        Some((tenant, name)) => Ok(VolumeRef::Named {
            tenant: TenantName::new(tenant).map_err(|e| e.to_string())?,
            name: VolumeName::new(name).map_err(|e| e.to_string())?,
        }),
        None => VolumeId::new(text).map(VolumeRef::Id).map_err(|_| {
            format!(
                "{:?} is neither <tenant>/<name> (e.g. asso-x/data) nor a volume id (16 hex digits)",
                text.chars().take(80).collect::<String>()
            )
        }),
    }
}

/// Checks the `--confirm` of a rollback against the volume's
/// `<tenant>/<name>`. A rollback throws away every change made since the
/// snapshot, so the person must type the volume's name a second time.
pub fn check_rollback_confirm(
    volume: &str,
    snapshot: &str,
    confirm: Option<&str>,
) -> Result<(), Failure> {
    let explain = format!(
        "rolling {volume} back to snapshot {snapshot} loses every change made to it since {snapshot} was taken"
    );
    confirmed_by_name("volume", volume, "the volume's name", &explain, confirm)
}

/// What `coloc node label` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelChange {
    /// Empty means every node (`--all`).
    pub nodes: Vec<NodeName>,
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

/// Splits `NAME... key=value...` (a node name never contains '='), checks
/// every name, key and value, and refuses changes that say nothing or
/// contradict themselves.
pub fn parse_label_change(
    words: &[String],
    remove: &[String],
    all: bool,
) -> Result<LabelChange, Failure> {
    let mut nodes = Vec::new();
    let mut set = BTreeMap::new();
    for word in words {
        match word.split_once('=') {
            Some((key, value)) => {
                domain::check_label(key, value)?;
                if let Some(previous) = set.insert(key.to_string(), value.to_string())
                    && previous != value
                {
                    return Err(Failure::invalid(format!(
                        "label {key:?} is given twice with different values"
                    )));
                }
            }
            None => {
                let node = NodeName::new(word.as_str())?;
                if !nodes.contains(&node) {
                    nodes.push(node);
                }
            }
        }
    }
    let mut removed = Vec::new();
    for key in remove {
        domain::check_name("label key", key)?;
        if set.contains_key(key) {
            return Err(Failure::invalid(format!(
                "label {key:?} is both set and removed"
            )));
        }
        if !removed.contains(key) {
            removed.push(key.clone());
        }
    }
    if all && !nodes.is_empty() {
        return Err(Failure::usage("give either node names or --all, not both"));
    }
    if !all && nodes.is_empty() {
        return Err(Failure::usage(
            "name at least one node, or pass --all to change every node",
        ));
    }
    if set.is_empty() && removed.is_empty() {
        return Err(Failure::usage(
            "nothing to change: give key=value labels to set or --remove KEY",
        ));
    }
    Ok(LabelChange {
        nodes,
        set,
        remove: removed,
    })
}

// ---------------------------------------------------------------- apps

pub fn parse_app_name(text: &str) -> Result<AppName, String> {
    AppName::new(text).map_err(|e| e.to_string())
}

/// An app instance, `<tenant>/<app>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRef {
    pub tenant: TenantName,
    pub app: AppName,
}

impl fmt::Display for InstanceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.app)
    }
}

/// Parses `asso-x/radicale`, checking both halves.
pub fn parse_instance_ref(text: &str) -> Result<InstanceRef, String> {
    let Some((tenant, app)) = text.split_once('/') else {
        return Err(format!(
            "{:?} is not <tenant>/<app> (e.g. asso-x/radicale)",
            text.chars().take(80).collect::<String>()
        ));
    };
    Ok(InstanceRef {
        tenant: TenantName::new(tenant).map_err(|e| e.to_string())?,
        app: parse_app_name(app)?,
    })
}

/// A comment in a request's thread: up to `Text::Comment`'s limit on
/// one line, and not blank (an empty comment says nothing to anyone).
pub fn parse_comment(text: &str) -> Result<String, String> {
    Text::Comment.check(text).map_err(|e| e.to_string())?;
    if text.trim().is_empty() {
        return Err("invalid comment: empty".to_string());
    }
    Ok(text.to_string())
}

/// Checks the `--confirm` of `coloc app remove` against the instance:
/// removing stops the app for the association's users, so the instance is
/// typed a second time.
pub fn check_remove_confirm(instance: &InstanceRef, confirm: Option<&str>) -> Result<(), Failure> {
    let explain = format!(
        "removing {instance} stops it and takes it off the web (its data stays on the volume)"
    );
    confirmed_by_name(
        "instance",
        &instance.to_string(),
        "the instance",
        &explain,
        confirm,
    )
}

/// Checks the `--confirm` of `coloc user delete` against the user: a
/// deletion takes their credentials and cannot be undone, so the name is
/// typed a second time.
pub fn check_delete_confirm(user: &domain::UserName, confirm: Option<&str>) -> Result<(), Failure> {
    let explain = format!(
        "deleting {user} deletes their tokens and certificates and cannot be undone \
         (coloc user disable {user} can)"
    );
    confirmed_by_name("user", user.as_str(), "the name", &explain, confirm)
}

/// `coloc node remove`: the node's name typed again, checked before
/// anything is sent (colocd checks it again).
pub fn check_node_remove_confirm(node: &NodeName, confirm: Option<&str>) -> Result<(), Failure> {
    let explain = format!(
        "removing node {node} refuses its certificate for good and leaves its volumes and apps as orphans"
    );
    confirmed_by_name("node", node.as_str(), "the name", &explain, confirm)
}

/// The one rule of every `--confirm`: an action that cannot be undone goes
/// ahead only when the person typed the object's name (`name`, a `kind`)
/// a second time. Missing: a usage error saying what would happen
/// (`explain`) and how to go ahead; different: refused, nothing sent.
fn confirmed_by_name(
    kind: &str,
    name: &str,
    repeat: &str,
    explain: &str,
    confirm: Option<&str>,
) -> Result<(), Failure> {
    match confirm {
        None => Err(Failure::usage(format!(
            "{explain}; to go ahead, repeat {repeat}: --confirm {name}"
        ))),
        Some(c) if c != name => Err(Failure::invalid(format!(
            "--confirm {:?} does not match the {kind} {name}; {explain}; to go ahead, pass --confirm {name}",
            c.chars().take(80).collect::<String>()
        ))),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Exit;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn deleting_a_user_is_confirmed_by_name() {
        let mia = domain::UserName::new("mia").unwrap();
        assert!(check_delete_confirm(&mia, Some("mia")).is_ok());
        let err = check_delete_confirm(&mia, None).unwrap_err();
        assert_eq!(err.exit, Exit::Usage);
        assert!(err.message.contains("--confirm mia"), "{}", err.message);
        let err = check_delete_confirm(&mia, Some("olga")).unwrap_err();
        assert_eq!(err.exit, Exit::InvalidArgument);
    }

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("45s").unwrap().secs(), 45);
        assert_eq!(parse_ttl("30m").unwrap().secs(), 1800);
        assert_eq!(parse_ttl("1h").unwrap().secs(), 3600);
        assert_eq!(parse_ttl("90d").unwrap().secs(), 90 * 86_400);
        assert_eq!(parse_ttl(" 2h ").unwrap().secs(), 7200);
    }

    #[test]
    fn ttl_refusals() {
        for bad in [
            "",
            "h",
            "10",
            "1x",
            "-1h",
            "1.5h",
            "0s",
            "1 h",
            "1H",
            "h1",
            "99999999999999999999d",
            "999999999999999999d",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_ttl("10").unwrap_err().contains("no unit"));
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("2027-06-30").unwrap(), "2027-06-30");
        assert!(parse_date("2027-02-30").is_err());
        assert!(parse_date("30/06/2027").is_err());
        assert!(parse_date("2027-6-30").is_err());
    }

    #[test]
    fn texts_refuse_control_characters() {
        assert!(parse_display_name("Les Amis du Vélo").is_ok());
        assert!(parse_display_name("a\nb").is_err());
        // The limits colocd applies, not numbers of the CLI's own.
        assert!(parse_site_description(&"x".repeat(500)).is_ok());
        assert!(parse_site_description(&"x".repeat(501)).is_err());
        assert!(parse_token_description(&"x".repeat(201)).is_err());
        assert!(parse_city(&"x".repeat(101)).is_err());
        assert!(parse_token_id("tok 1").is_err());
        assert!(parse_token_id("").is_err());
        assert!(parse_token_id("tok_01").is_ok());
    }

    #[test]
    fn labels_split_names_and_pairs() {
        let c = parse_label_change(
            &words(&["n1", "role=web", "n2", "zone=", "n1"]),
            &words(&["old"]),
            false,
        )
        .unwrap();
        assert_eq!(
            c.nodes.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
            ["n1", "n2"]
        );
        assert_eq!(c.set.get("role").map(String::as_str), Some("web"));
        assert_eq!(c.set.get("zone").map(String::as_str), Some(""));
        assert_eq!(c.remove, ["old"]);
    }

    #[test]
    fn labels_for_every_node() {
        let c = parse_label_change(&words(&["tier=gold"]), &[], true).unwrap();
        assert!(c.nodes.is_empty());
        assert_eq!(c.set.len(), 1);
    }

    #[test]
    fn label_refusals() {
        let cases: [(&[&str], &[&str], bool, Exit); 8] = [
            (&["role=web"], &[], false, Exit::Usage),
            (&["n1"], &[], false, Exit::Usage),
            (&["n1", "a=b"], &[], true, Exit::Usage),
            (&["N1", "a=b"], &[], false, Exit::InvalidArgument),
            (&["n1", "Bad=x"], &[], false, Exit::InvalidArgument),
            (&["n1", "a=x\ny"], &[], false, Exit::InvalidArgument),
            (&["n1", "a=1", "a=2"], &[], false, Exit::InvalidArgument),
            (&["n1", "a=1"], &["a"], false, Exit::InvalidArgument),
        ];
        for (w, r, all, exit) in cases {
            let err = parse_label_change(&words(w), &words(r), all).unwrap_err();
            assert_eq!(err.exit, exit, "{w:?} {r:?}: {}", err.message);
        }
    }

    #[test]
    fn volume_sizes_are_checked_and_rounded() {
        assert_eq!(parse_volume_size("20G").unwrap(), 20 << 30);
        assert_eq!(parse_volume_size("65M").unwrap(), 68 << 20);
        assert!(parse_volume_size("1M").unwrap_err().contains("minimum"));
        assert!(
            parse_volume_size("20X")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_volume_size("2000P").is_err());
        assert_eq!(parse_size("5G").unwrap(), 5 << 30);
        assert!(parse_size("five").is_err());
    }

    #[test]
    fn volume_refs() {
        let r = parse_volume_ref("asso-x/data").unwrap();
        assert_eq!(r.qualified_name().as_deref(), Some("asso-x/data"));
        assert_eq!(r.to_string(), "asso-x/data");
        let r = parse_volume_ref("0123456789abcdef").unwrap();
        assert_eq!(r.qualified_name(), None);
        assert_eq!(r.to_string(), "0123456789abcdef");
        assert!(
            parse_volume_ref("data")
                .unwrap_err()
                .contains("<tenant>/<name>")
        );
        assert!(
            parse_volume_ref("Asso/data")
                .unwrap_err()
                .contains("tenant name")
        );
        assert!(
            parse_volume_ref("asso-x/da ta")
                .unwrap_err()
                .contains("volume name")
        );
        assert!(parse_volume_ref("asso-x/a/b").is_err());
    }

    #[test]
    fn rollback_needs_the_name_again() {
        assert!(check_rollback_confirm("asso-x/data", "s1", Some("asso-x/data")).is_ok());
        let err = check_rollback_confirm("asso-x/data", "s1", None).unwrap_err();
        assert_eq!(err.exit, Exit::Usage);
        assert!(
            err.message.contains("--confirm asso-x/data"),
            "{}",
            err.message
        );
        assert!(err.message.contains("since s1"), "{}", err.message);
        let err = check_rollback_confirm("asso-x/data", "s1", Some("asso-x/dat")).unwrap_err();
        assert_eq!(err.exit, Exit::InvalidArgument);
    }

    #[test]
    fn app_names() {
        for good in ["radicale", "site", "a", "app2", &"a".repeat(31)] {
            assert!(AppName::new(good).is_ok(), "{good:?} refused");
        }
        for bad in [
            "",
            "Radicale",
            "my-app",
            "2app",
            "a_b",
            "app.x",
            &"a".repeat(32),
        ] {
            assert!(AppName::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(
            parse_app_name("my-app")
                .unwrap_err()
                .contains("outside a-z and 0-9"),
        );
    }

    #[test]
    fn instance_refs() {
        let r = parse_instance_ref("asso-x/radicale").unwrap();
        assert_eq!(r.tenant.as_str(), "asso-x");
        assert_eq!(r.app.as_str(), "radicale");
        assert_eq!(r.to_string(), "asso-x/radicale");
        assert!(
            parse_instance_ref("radicale")
                .unwrap_err()
                .contains("<tenant>/<app>")
        );
        assert!(
            parse_instance_ref("Asso/radicale")
                .unwrap_err()
                .contains("tenant name")
        );
        assert!(
            parse_instance_ref("asso-x/my-app")
                .unwrap_err()
                .contains("app name")
        );
        assert!(parse_instance_ref("asso-x/radicale/x").is_err());
        assert!(parse_instance_ref("asso-x/").is_err());
    }

    #[test]
    fn comments() {
        assert!(parse_comment("Pour nos calendriers, merci !").is_ok());
        assert!(parse_comment(&"x".repeat(Text::Comment.max_chars())).is_ok());
        assert!(
            parse_comment(&"x".repeat(Text::Comment.max_chars() + 1))
                .unwrap_err()
                .contains("2000")
        );
        assert!(parse_comment("line\nline").unwrap_err().contains("control"));
        assert!(parse_comment("a\u{1b}[2Jb").is_err());
        assert!(parse_comment("   ").unwrap_err().contains("empty"));
    }

    #[test]
    fn remove_needs_the_instance_again() {
        let r = parse_instance_ref("asso-x/radicale").unwrap();
        assert!(check_remove_confirm(&r, Some("asso-x/radicale")).is_ok());
        let err = check_remove_confirm(&r, None).unwrap_err();
        assert_eq!(err.exit, Exit::Usage);
        assert!(
            err.message.contains("--confirm asso-x/radicale"),
            "{}",
            err.message
        );
        assert!(err.message.contains("data stays"), "{}", err.message);
        let err = check_remove_confirm(&r, Some("asso-x/site")).unwrap_err();
        assert_eq!(err.exit, Exit::InvalidArgument);
    }
}
