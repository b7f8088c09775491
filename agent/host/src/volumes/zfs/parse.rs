//! The parsers of the ZFS tools' machine-readable output (`-Hp`:
//! tab-separated, exact bytes, `-` for "not applicable"), one per output
//! the backend asks for, and the columns it asks for. Pure functions,
//! tested against outputs recorded from OpenZFS 2.1 in the node image
//! (`tests/fixtures/storage/`). They report what the tools printed and
//! refuse what does not have the requested shape; deciding what to do
//! about it is the backend's job.

use std::collections::BTreeMap;
use std::fmt;

use coloc_proto::agent::v1::PoolKind;

use crate::HostError;
use crate::volumes::{SnapshotObject, VolumeObject};

/// `zpool list` arguments read by [`parse_zpool_list`].
pub(super) const ZPOOL_LIST_ARGS: &[&str] = &["list", "-Hp", "-o", "name,size,alloc,free,health"];

/// Columns of the volume listing, in the order [`parse_zfs_list`] reads
/// them. `referenced` (not `used`) is the space the tenant's data takes:
/// `used` also counts the refreservation and the snapshots, and
/// `refquota`, which is the volume's size, limits `referenced`.
pub(super) const VOLUME_COLUMNS: &str = "name,coloc:volume-id,refquota,refreservation,referenced,avail,\
usedbysnapshots,readonly,encryption,keystatus,mounted,mountpoint";
const VOLUME_COLUMN_COUNT: usize = 12;

/// Columns of the snapshot listing read by [`parse_zfs_snapshots`].
pub(super) const SNAPSHOT_COLUMNS: &str = "name,creation,used";

/// A pool's health as `zpool` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolHealth {
    Online,
    Degraded,
    Faulted,
    Offline,
    Removed,
    Unavail,
    Suspended,
    /// A word this version of the agent does not know, kept verbatim.
    Other(String),
}

impl PoolHealth {
    /// From `zpool list -o health` output.
    pub fn from_zpool(word: &str) -> PoolHealth {
        match word {
            "ONLINE" => PoolHealth::Online,
            "DEGRADED" => PoolHealth::Degraded,
            "FAULTED" => PoolHealth::Faulted,
            "OFFLINE" => PoolHealth::Offline,
            "REMOVED" => PoolHealth::Removed,
            "UNAVAIL" => PoolHealth::Unavail,
            "SUSPENDED" => PoolHealth::Suspended,
            other => PoolHealth::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for PoolHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PoolHealth::Online => "ONLINE",
            PoolHealth::Degraded => "DEGRADED",
            PoolHealth::Faulted => "FAULTED",
            PoolHealth::Offline => "OFFLINE",
            PoolHealth::Removed => "REMOVED",
            PoolHealth::Unavail => "UNAVAIL",
            PoolHealth::Suspended => "SUSPENDED",
            PoolHealth::Other(word) => word,
        })
    }
}

/// One imported ZFS pool, sizes in bytes. `zpool` prints `-` for the sizes
/// of a pool whose configuration is unavailable; those read as 0 and the
/// health says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZpoolInfo {
    pub name: String,
    pub size_bytes: u64,
    pub alloc_bytes: u64,
    pub free_bytes: u64,
    pub health: PoolHealth,
}

/// Parses `zpool list -Hp -o name,size,alloc,free,health`
/// (`ZPOOL_LIST_ARGS`): one pool per line, tab-separated, exact byte
/// counts. No pools is empty output.
pub fn parse_zpool_list(text: &str) -> Result<Vec<ZpoolInfo>, HostError> {
    const WHAT: &str = "zpool list output";
    let mut pools = Vec::new();
    for line in text.lines() {
        // Without -H zpool says this instead of printing nothing; accept
        // it so that a change of flags cannot turn "no pools" into an error.
        if line.trim().is_empty() || line.trim() == "no pools available" {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, size, alloc, free, health] = fields[..] else {
            return Err(HostError::parse(
                WHAT,
                format!(
                    "expected 5 tab-separated columns, got {}: {line:?}",
                    fields.len()
                ),
            ));
        };
        if name.is_empty() {
            return Err(HostError::parse(WHAT, format!("empty pool name: {line:?}")));
        }
        pools.push(ZpoolInfo {
            name: name.to_owned(),
            size_bytes: bytes(WHAT, name, "size", size)?,
            alloc_bytes: bytes(WHAT, name, "alloc", alloc)?,
            free_bytes: bytes(WHAT, name, "free", free)?,
            health: PoolHealth::from_zpool(health),
        });
    }
    Ok(pools)
}

/// An exact byte count from `-p` output; `-` (not applicable) is 0.
pub(super) fn bytes(
    what: &'static str,
    object: &str,
    column: &str,
    value: &str,
) -> Result<u64, HostError> {
    if value == "-" {
        return Ok(0);
    }
    value.parse().map_err(|_| {
        HostError::parse(
            what,
            format!("{object}: {column} {value:?} is not a byte count"),
        )
    })
}

/// Parses `zfs list -Hp -o name,coloc:volume-id,refquota,refreservation,
/// referenced,avail,usedbysnapshots,readonly,encryption,keystatus,mounted,
/// mountpoint`. Keeps the datasets that are direct children of a
/// `<pool>/coloc` dataset and carry a volume id (any value but `-`, kept
/// verbatim: a malformed id marks an orphan, not a parse error). A user
/// property is inherited, so a dataset nested deeper would show its
/// parent's id: only the direct children are volumes. Snapshots are left
/// empty (they come from [`parse_zfs_snapshots`]).
pub fn parse_zfs_list(text: &str) -> Result<Vec<VolumeObject>, HostError> {
    const WHAT: &str = "zfs list output";
    let mut volumes = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [
            name,
            id,
            refquota,
            refreservation,
            referenced,
            avail,
            by_snapshots,
            readonly,
            encryption,
            keystatus,
            mounted,
            mountpoint,
        ] = fields[..]
        else {
            return Err(HostError::parse(
                WHAT,
                format!(
                    "expected {VOLUME_COLUMN_COUNT} tab-separated columns, got {}: {line:?}",
                    fields.len()
                ),
            ));
        };
        let parts: Vec<&str> = name.split('/').collect();
        let [pool, "coloc", leaf] = parts[..] else {
            continue;
        };
        if id == "-" || pool.is_empty() || leaf.is_empty() {
            continue;
        }
        let size_bytes = bytes(WHAT, name, "refquota", refquota)?;
        let encrypted = !matches!(encryption, "off" | "-");
        volumes.push(VolumeObject {
            pool: pool.to_owned(),
            kind: PoolKind::Zfs,
            object: name.to_owned(),
            volume_id: id.to_owned(),
            size_bytes,
            reservation_bytes: bytes(WHAT, name, "refreservation", refreservation)?,
            used_bytes: bytes(WHAT, name, "referenced", referenced)?,
            available_bytes: bytes(WHAT, name, "avail", avail)?,
            snapshot_bytes: bytes(WHAT, name, "usedbysnapshots", by_snapshots)?,
            read_only: on_off(WHAT, name, "readonly", readonly)?,
            encrypted,
            unlocked: !encrypted || keystatus == "available",
            has_filesystem: true,
            filesystem_bytes: size_bytes,
            mounted_at: match mounted {
                "yes" if mountpoint.starts_with('/') => Some(mountpoint.to_owned()),
                "yes" | "no" | "-" => None,
                other => {
                    return Err(HostError::parse(
                        WHAT,
                        format!("{name}: mounted is {other:?}, not yes or no"),
                    ));
                }
            },
            snapshots: Vec::new(),
        });
    }
    Ok(volumes)
}

fn on_off(what: &'static str, object: &str, column: &str, value: &str) -> Result<bool, HostError> {
    match value {
        "on" => Ok(true),
        "off" | "-" => Ok(false),
        other => Err(HostError::parse(
            what,
            format!("{object}: {column} is {other:?}, not on or off"),
        )),
    }
}

/// Parses `zfs list -Hp -t snapshot -o name,creation,used`: one
/// `(dataset, snapshot)` per line, in the listing's order.
pub fn parse_zfs_snapshots(text: &str) -> Result<Vec<(String, SnapshotObject)>, HostError> {
    const WHAT: &str = "zfs snapshot list output";
    let mut snapshots = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [full, creation, used] = fields[..] else {
            return Err(HostError::parse(
                WHAT,
                format!(
                    "expected 3 tab-separated columns, got {}: {line:?}",
                    fields.len()
                ),
            ));
        };
        let Some((dataset, name)) = full
            .split_once('@')
            .filter(|(d, n)| !d.is_empty() && !n.is_empty())
        else {
            return Err(HostError::parse(
                WHAT,
                format!("{full:?} is not dataset@snapshot"),
            ));
        };
        snapshots.push((
            dataset.to_owned(),
            SnapshotObject {
                name: name.to_owned(),
                created_unix: bytes(WHAT, full, "creation", creation)?,
                used_bytes: bytes(WHAT, full, "used", used)?,
            },
        ));
    }
    Ok(snapshots)
}

/// Parses `zfs get -Hp -o property,value`.
pub(super) fn parse_zfs_get(text: &str) -> Result<BTreeMap<String, String>, HostError> {
    let mut values = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Some((prop, value)) = line.split_once('\t') else {
            return Err(HostError::parse(
                "zfs get output",
                format!("expected property<TAB>value: {line:?}"),
            ));
        };
        values.insert(prop.to_owned(), value.to_owned());
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded in the node image: `zfs list -Hp -o <VOLUME_COLUMNS>`,
    /// `zfs list -Hp -t snapshot -o <SNAPSHOT_COLUMNS>`, `zpool list -Hp`.
    const MOUNTED: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/storage/zfs-list-volumes-mounted.txt"
    ));
    const LOCKED: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/storage/zfs-list-volumes-locked.txt"
    ));
    const SNAPSHOTS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/storage/zfs-snapshots.txt"
    ));

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn volumes_recorded_while_mounted() {
        let volumes = parse_zfs_list(MOUNTED).unwrap();
        assert_eq!(volumes.len(), 2, "the coloc parent is not a volume");
        let plain = &volumes[0];
        assert_eq!(plain.pool, "tank");
        assert_eq!(plain.object, "tank/coloc/00000000000000a1");
        assert_eq!(plain.volume_id, "00000000000000a1");
        assert_eq!(plain.size_bytes, 256 * MIB);
        assert_eq!(plain.filesystem_bytes, 256 * MIB);
        assert_eq!(plain.reservation_bytes, 128 * MIB);
        assert!(plain.used_bytes > 0 && plain.used_bytes < MIB, "{plain:?}");
        assert!(plain.available_bytes > 0);
        assert!(plain.snapshot_bytes > 0);
        assert!(!plain.read_only && !plain.encrypted && plain.unlocked && plain.has_filesystem);
        assert_eq!(
            plain.mounted_at.as_deref(),
            Some("/srv/tenants/asso-un/data")
        );

        let secret = &volumes[1];
        assert_eq!(secret.volume_id, "00000000000000e1");
        assert_eq!(secret.size_bytes, 128 * MIB);
        assert_eq!(secret.reservation_bytes, 0);
        assert!(secret.encrypted && secret.unlocked);
        assert_eq!(
            secret.mounted_at.as_deref(),
            Some("/srv/tenants/asso-un/secret")
        );
    }

    #[test]
    fn volumes_recorded_locked_and_read_only() {
        let volumes = parse_zfs_list(LOCKED).unwrap();
        assert_eq!(volumes.len(), 2);
        assert!(volumes[0].read_only);
        assert_eq!(volumes[0].mounted_at, None);
        assert!(volumes[1].encrypted);
        assert!(!volumes[1].unlocked, "keystatus unavailable");
        assert_eq!(volumes[1].mounted_at, None);
    }

    #[test]
    fn volume_listing_keeps_only_direct_children_with_an_id() {
        let text = "tank/coloc\t-\t0\t0\t1\t2\t0\toff\toff\t-\tno\tnone\n\
                    tank/other\tabc\t0\t0\t1\t2\t0\toff\toff\t-\tno\tnone\n\
                    tank/coloc/x/nested\tinherited\t0\t0\t1\t2\t0\toff\toff\t-\tno\tnone\n\
                    tank/coloc/bad\tnot-an-id\t67108864\t0\t1\t2\t0\toff\toff\t-\tno\t/srv/x\n";
        let volumes = parse_zfs_list(text).unwrap();
        assert_eq!(volumes.len(), 1);
        assert_eq!(
            volumes[0].volume_id, "not-an-id",
            "kept verbatim: an orphan"
        );
        assert_eq!(parse_zfs_list("").unwrap(), vec![]);
    }

    #[test]
    fn volume_listing_rejects_malformed_lines() {
        let err = parse_zfs_list("tank/coloc/a\tid\t1\n").unwrap_err();
        assert!(err.to_string().contains("zfs list"), "{err}");
        let bad_number = "tank/coloc/a\tid\t1G\t0\t1\t2\t0\toff\toff\t-\tno\tnone\n";
        assert!(matches!(
            parse_zfs_list(bad_number),
            Err(HostError::Parse { .. })
        ));
        let bad_flag = "tank/coloc/a\tid\t1\t0\t1\t2\t0\tmaybe\toff\t-\tno\tnone\n";
        assert!(matches!(
            parse_zfs_list(bad_flag),
            Err(HostError::Parse { .. })
        ));
    }

    #[test]
    fn snapshots_recorded_oldest_first() {
        let snapshots = parse_zfs_snapshots(SNAPSHOTS).unwrap();
        let names: Vec<(&str, &str)> = snapshots
            .iter()
            .map(|(d, s)| (d.as_str(), s.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("tank/coloc/00000000000000a1", "first"),
                ("tank/coloc/00000000000000a1", "second"),
                ("tank/coloc/00000000000000e1", "before-upgrade"),
            ]
        );
        assert!(snapshots[0].1.created_unix > 1_700_000_000);
        assert!(snapshots[0].1.used_bytes > 0);
        assert_eq!(parse_zfs_snapshots("").unwrap(), vec![]);
        assert!(parse_zfs_snapshots("tank/coloc/a\t1\t2\n").is_err(), "no @");
        assert!(parse_zfs_snapshots("tank/coloc/a@s\t1\n").is_err());
    }

    #[test]
    fn zfs_get_pairs() {
        let values = parse_zfs_get("quota\t268435456\nrefquota\t134217728\n").unwrap();
        assert_eq!(values["quota"], "268435456");
        assert!(parse_zfs_get("quota 1\n").is_err());
    }

    #[test]
    fn zpool_list_rejects_wrong_column_counts_and_bad_numbers() {
        let err = parse_zpool_list("tank\t1\t2\t3\n").unwrap_err();
        assert!(err.to_string().contains("5 tab-separated"), "{err}");
        let err = parse_zpool_list("tank\t1.5G\t2\t3\tONLINE\n").unwrap_err();
        assert!(err.to_string().contains("size"), "{err}");
        assert!(parse_zpool_list("\t1\t2\t3\tONLINE\n").is_err());
    }

    #[test]
    fn pool_health_round_trips_and_keeps_unknown_words() {
        for word in [
            "ONLINE",
            "DEGRADED",
            "FAULTED",
            "OFFLINE",
            "REMOVED",
            "UNAVAIL",
            "SUSPENDED",
        ] {
            assert_eq!(PoolHealth::from_zpool(word).to_string(), word);
        }
        assert_eq!(
            PoolHealth::from_zpool("FUTURE"),
            PoolHealth::Other("FUTURE".into())
        );
    }
}
