//! systemd unit names: the one rule for every unit coloc names, whether the
//! controller renders it (an app's unit, the units its packages ship) or the
//! agent addresses it over D-Bus.

use crate::domain::{InvalidInput, clip, validated_string};

/// Suffixes of the unit types coloc may address.
const UNIT_SUFFIXES: &[&str] = &[
    ".service",
    ".socket",
    ".target",
    ".timer",
    ".mount",
    ".automount",
    ".swap",
    ".path",
    ".slice",
    ".scope",
    ".device",
];

/// systemd's limit on unit name length.
pub const UNIT_NAME_MAX: usize = 255;

validated_string!(
    /// A systemd unit name, e.g. `ssh.service` or
    /// `coloc-app@nextcloud.service`.
    ///
    /// Only `[A-Za-z0-9:_.@-]`, a known type suffix, at most 255 bytes, no
    /// leading `-` (it would read as an option to any tool), and for
    /// templated units a non-empty instance (`foo@.service` is a template,
    /// which cannot be started). systemd's `\x2d`-style escapes are
    /// refused: coloc has no need for them and they are easy to get wrong.
    UnitName, "unit name", check_unit_name);

/// Why `name` is not a unit name coloc addresses, if it is not.
pub fn unit_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty");
    }
    if name.len() > UNIT_NAME_MAX {
        return Some("longer than 255 bytes");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b":_.@-".contains(&b))
    {
        return Some("only letters, digits and : _ . @ - are allowed");
    }
    if name.starts_with('-') {
        return Some("must not start with '-'");
    }
    let Some(stem) = UNIT_SUFFIXES
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
    else {
        return Some("no known unit type suffix (.service, .socket, .target, .timer, ...)");
    };
    if stem.is_empty() {
        return Some("nothing before the type suffix");
    }
    if let Some((prefix, instance)) = stem.split_once('@') {
        if prefix.is_empty() {
            return Some("nothing before '@'");
        }
        if instance.is_empty() {
            return Some("a template ('@' with no instance) cannot be addressed");
        }
    }
    None
}

fn check_unit_name(kind: &'static str, name: &str) -> Result<(), InvalidInput> {
    match unit_name_problem(name) {
        None => Ok(()),
        Some(reason) => Err(InvalidInput::field(
            kind,
            format!("{:?}: {reason}", clip(name)),
        )),
    }
}

/// Units no app's package may have masked, whatever a catalog says: the
/// node's own (coloc's units, SSH, systemd's, the bus, the firewall, the
/// consoles, storage) would lose the node. A unit is protected when its
/// name starts with one of these.
pub const PROTECTED_UNIT_PREFIXES: &[&str] = &[
    "coloc",
    "ssh",
    "systemd-",
    "dbus",
    "nftables",
    "getty",
    "serial-getty",
    "autovt",
    "console-getty",
    "user@",
    "user-runtime-dir",
    "emergency",
    "rescue",
    "zfs",
    "zed",
    "lvm2",
    "dm-event",
    "cryptsetup",
    "udev",
    "kmod",
    "polkit",
    "apt-",
];

/// The protected prefix `name` starts with, if any.
pub fn protected_unit(name: &str) -> Option<&'static str> {
    PROTECTED_UNIT_PREFIXES
        .iter()
        .copied()
        .find(|prefix| name.starts_with(prefix))
}

/// A unit an app's packages ship, which the agent masks so that only
/// coloc's own unit runs the software: a service, socket or timer, and
/// never a protected unit ([`PROTECTED_UNIT_PREFIXES`]). That the unit
/// file really belongs to the app's packages is checked on the node,
/// where dpkg knows.
pub fn check_package_unit(name: &str) -> Result<UnitName, InvalidInput> {
    let unit =
        UnitName::new(name).map_err(|e| InvalidInput::field("package unit", e.to_string()))?;
    if ![".service", ".socket", ".timer"]
        .iter()
        .any(|suffix| name.ends_with(suffix))
    {
        return Err(InvalidInput::field(
            "package unit",
            format!("{:?} is not a .service, .socket or .timer", clip(name)),
        ));
    }
    if let Some(prefix) = protected_unit(name) {
        return Err(InvalidInput::field(
            "package unit",
            format!(
                "{:?} is one of the node's own units ({prefix}*); an app never masks it",
                clip(name)
            ),
        ));
    }
    Ok(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausible_unit_names_are_accepted() {
        for name in [
            "ssh.service",
            "systemd-journald.service",
            "coloc-app@nextcloud.service",
            "getty@tty1.service",
            "zfs-import.target",
            "srv-data.mount",
            "apt-daily.timer",
            "dbus.socket",
            "user-1000.slice",
            "dev-disk-by-label.device",
            "a:b_c.d.service",
        ] {
            let unit = UnitName::new(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(unit.as_str(), name);
            assert_eq!(unit.to_string(), name);
        }
    }

    #[test]
    fn anything_else_is_refused_with_a_reason() {
        let long = format!("{}.service", "a".repeat(250));
        for name in [
            "",
            "ssh",
            "ssh.exe",
            ".service",
            "-ssh.service",
            "--now.service",
            "ssh service.service",
            "ssh.service;reboot",
            "../ssh.service",
            "ssh/x.service",
            "dev-x\\x2dy.device",
            "unité.service",
            "foo@.service",
            "@foo.service",
            "ssh.service\n",
            long.as_str(),
        ] {
            assert!(unit_name_problem(name).is_some(), "{name:?}");
            let err = UnitName::new(name).unwrap_err();
            assert!(err.to_string().starts_with("invalid unit name"), "{err}");
        }
    }

    #[test]
    fn unit_names_deserialize_only_when_valid() {
        let ok: UnitName = serde_json::from_str("\"ssh.service\"").unwrap();
        assert_eq!(ok.as_str(), "ssh.service");
        assert!(serde_json::from_str::<UnitName>("\"-x.service\"").is_err());
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"ssh.service\"");
    }

    #[test]
    fn package_units_are_services_sockets_or_timers_and_never_the_nodes_own() {
        for ok in [
            "nginx.service",
            "radicale.socket",
            "prosody.service",
            "syncthing-resume.service",
            "caddy.service",
        ] {
            assert!(check_package_unit(ok).is_ok(), "{ok}");
        }
        for bad in [
            "coloc-agent.service",
            "coloc-app-a-b.service",
            "coloc-proxy.service",
            "multi-user.target",
            "srv.mount",
            "x;y.service",
        ] {
            assert!(check_package_unit(bad).is_err(), "{bad}");
        }
        // The node's own units, named exactly as Debian ships them.
        for own in [
            "ssh.service",
            "ssh.socket",
            "sshd.service",
            "systemd-resolved.service",
            "systemd-networkd.socket",
            "systemd-journald.socket",
            "dbus.service",
            "dbus.socket",
            "nftables.service",
            "getty@tty1.service",
            "serial-getty@ttyS0.service",
            "zfs-import-cache.service",
            "zed.service",
            "lvm2-monitor.service",
            "apt-daily.timer",
        ] {
            let err = check_package_unit(own).expect_err(own);
            assert!(err.to_string().contains("node's own units"), "{own}: {err}");
        }
    }
}
