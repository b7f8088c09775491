//! Pools, volumes and tenant storage requests (docs/STORAGE.md). Names,
//! disk references, sizes and pool layouts follow `coloc_proto::storage`,
//! the rules the agent applies again when the declaration reaches it.

use coloc_proto::controller::v1 as pb;
use coloc_proto::domain::{InvalidInput, NodeName, TenantName};
use coloc_proto::storage::{PoolDecl, PoolName, SnapshotName, VolumeId, VolumeName, volume_size};

use super::{optional, required};
use crate::store::VolumeFilter;

/// Longest grace period of a deleted volume: ten years.
pub const MAX_GRACE_DAYS: u32 = 3650;

/// A `volume` field: "<tenant>/<name>" or a volume id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeArg {
    Named(TenantName, VolumeName),
    Id(VolumeId),
}

impl VolumeArg {
    pub fn parse(text: &str) -> Result<Self, InvalidInput> {
        match text.split_once('/') {
            Some((tenant, name)) => Ok(VolumeArg::Named(
                TenantName::new(tenant)?,
                VolumeName::new(name)?,
            )),
            None => Ok(VolumeArg::Id(VolumeId::new(text)?)),
        }
    }

    /// The tenant, when the caller named the volume by it.
    pub fn tenant(&self) -> Option<&TenantName> {
        match self {
            VolumeArg::Named(t, _) => Some(t),
            VolumeArg::Id(_) => None,
        }
    }
}

/// As the caller wrote it, and as a missing volume is named.
impl std::fmt::Display for VolumeArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VolumeArg::Named(tenant, name) => write!(f, "{tenant}/{name}"),
            VolumeArg::Id(id) => write!(f, "{id}"),
        }
    }
}

/// The requests that name one volume and change it, as the handlers'
/// shared shape takes them: the caller's text (for the audit entry, before
/// it is checked) and, once converted, the volume.
pub trait VolumeRequest {
    /// The `volume` field as the caller wrote it.
    fn volume_text(&self) -> &str;
}

/// A converted request that names one volume.
pub trait OnVolume {
    fn volume(&self) -> &VolumeArg;
}

/// `GetVolume`, `DeleteVolume`, `RestoreVolume`.
impl TryFrom<pb::VolumeRef> for VolumeArg {
    type Error = InvalidInput;
    fn try_from(r: pb::VolumeRef) -> Result<Self, InvalidInput> {
        VolumeArg::parse(&r.volume)
    }
}

impl VolumeRequest for pb::VolumeRef {
    fn volume_text(&self) -> &str {
        &self.volume
    }
}

impl OnVolume for VolumeArg {
    fn volume(&self) -> &VolumeArg {
        self
    }
}

/// `CreatePool`: a declaration checked whole by the rule the agent also
/// applies ([`PoolDecl`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatePool {
    pub node: NodeName,
    pub pool: PoolDecl,
}

impl TryFrom<pb::CreatePoolRequest> for CreatePool {
    type Error = InvalidInput;
    fn try_from(r: pb::CreatePoolRequest) -> Result<Self, InvalidInput> {
        let node = required(r.node)?;
        let pool = PoolDecl::new(&r.name, r.kind, r.layout, &r.disks, r.force)?;
        Ok(CreatePool { node, pool })
    }
}

/// `ListPools`: one node's, or every node the caller sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPools {
    pub node: Option<NodeName>,
}

impl TryFrom<pb::ListPoolsRequest> for ListPools {
    type Error = InvalidInput;
    fn try_from(r: pb::ListPoolsRequest) -> Result<Self, InvalidInput> {
        Ok(ListPools {
            node: optional(&r.node, NodeName::new)?,
        })
    }
}

/// `CreateVolume`, its size aligned and bounded. Whether the pool can
/// reserve space is known once the pool is read: the handler checks the
/// reservation with `coloc_proto::storage::check_reservation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateVolume {
    pub tenant: TenantName,
    pub name: VolumeName,
    pub node: NodeName,
    pub pool: PoolName,
    pub size_bytes: u64,
    pub reservation_bytes: u64,
    pub encrypted: bool,
}

impl TryFrom<pb::CreateVolumeRequest> for CreateVolume {
    type Error = InvalidInput;
    fn try_from(r: pb::CreateVolumeRequest) -> Result<Self, InvalidInput> {
        Ok(CreateVolume {
            tenant: required(r.tenant)?,
            name: required(r.name)?,
            node: required(r.node)?,
            pool: required(r.pool)?,
            size_bytes: volume_size(r.size_bytes)?,
            reservation_bytes: r.reservation_bytes,
            encrypted: r.encrypted,
        })
    }
}

/// `ListVolumes`: the store's filter; the handler narrows it to the
/// caller's tenant.
impl TryFrom<pb::ListVolumesRequest> for VolumeFilter {
    type Error = InvalidInput;
    fn try_from(r: pb::ListVolumesRequest) -> Result<Self, InvalidInput> {
        Ok(VolumeFilter {
            tenant: optional(&r.tenant, TenantName::new)?,
            node: optional(&r.node, NodeName::new)?,
            include_destroyed: r.include_destroyed,
        })
    }
}

/// `ResizeVolume`, the new size aligned and bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResizeVolume {
    pub volume: VolumeArg,
    pub size_bytes: u64,
    /// Shrinking is asked for knowingly.
    pub force: bool,
}

impl TryFrom<pb::ResizeVolumeRequest> for ResizeVolume {
    type Error = InvalidInput;
    fn try_from(r: pb::ResizeVolumeRequest) -> Result<Self, InvalidInput> {
        Ok(ResizeVolume {
            volume: VolumeArg::parse(&r.volume)?,
            size_bytes: volume_size(r.size_bytes)?,
            force: r.force,
        })
    }
}

impl VolumeRequest for pb::ResizeVolumeRequest {
    fn volume_text(&self) -> &str {
        &self.volume
    }
}

impl OnVolume for ResizeVolume {
    fn volume(&self) -> &VolumeArg {
        &self.volume
    }
}

/// `CreateSnapshot`, `DeleteSnapshot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSnapshot {
    pub volume: VolumeArg,
    pub snapshot: SnapshotName,
}

impl TryFrom<pb::SnapshotRequest> for VolumeSnapshot {
    type Error = InvalidInput;
    fn try_from(r: pb::SnapshotRequest) -> Result<Self, InvalidInput> {
        Ok(VolumeSnapshot {
            volume: VolumeArg::parse(&r.volume)?,
            snapshot: required(r.snapshot)?,
        })
    }
}

impl VolumeRequest for pb::SnapshotRequest {
    fn volume_text(&self) -> &str {
        &self.volume
    }
}

impl OnVolume for VolumeSnapshot {
    fn volume(&self) -> &VolumeArg {
        &self.volume
    }
}

/// `RollbackVolume`. The confirmation is compared with the volume's full
/// name once it is resolved (a volume id resolves to a name too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackVolume {
    pub volume: VolumeArg,
    pub snapshot: SnapshotName,
    pub confirm: String,
}

impl TryFrom<pb::RollbackVolumeRequest> for RollbackVolume {
    type Error = InvalidInput;
    fn try_from(r: pb::RollbackVolumeRequest) -> Result<Self, InvalidInput> {
        Ok(RollbackVolume {
            volume: VolumeArg::parse(&r.volume)?,
            snapshot: required(r.snapshot)?,
            confirm: r.confirm,
        })
    }
}

/// `SetTenantStorage`: at least one of a quota and a grace period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetTenantStorage {
    pub tenant: TenantName,
    /// Fits the store's signed integers.
    pub storage_quota_bytes: Option<u64>,
    /// 1 to [`MAX_GRACE_DAYS`].
    pub volume_grace_days: Option<u32>,
}

impl TryFrom<pb::SetTenantStorageRequest> for SetTenantStorage {
    type Error = InvalidInput;
    fn try_from(r: pb::SetTenantStorageRequest) -> Result<Self, InvalidInput> {
        let tenant = required(r.name)?;
        if r.storage_quota_bytes.is_none() && r.volume_grace_days.is_none() {
            return Err(InvalidInput::field(
                "storage",
                "nothing to change: give a quota or a grace period",
            ));
        }
        if let Some(q) = r.storage_quota_bytes
            && i64::try_from(q).is_err()
        {
            return Err(InvalidInput::field("quota", "too large"));
        }
        if let Some(days) = r.volume_grace_days
            && !(1..=MAX_GRACE_DAYS).contains(&days)
        {
            return Err(InvalidInput::field(
                "grace days",
                format!("{days} is outside 1 to {MAX_GRACE_DAYS}"),
            ));
        }
        Ok(SetTenantStorage {
            tenant,
            storage_quota_bytes: r.storage_quota_bytes,
            volume_grace_days: r.volume_grace_days,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::refused;
    use coloc_proto::agent::v1::{PoolKind, PoolLayout};

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn volume_refs_are_names_or_ids() {
        assert!(matches!(
            VolumeArg::parse("asso-a/data").unwrap(),
            VolumeArg::Named(t, n) if t.as_str() == "asso-a" && n.as_str() == "data"
        ));
        assert!(matches!(
            VolumeArg::parse("0123456789abcdef").unwrap(),
            VolumeArg::Id(_)
        ));
        for bad in [
            "",
            "data",
            "asso-a/",
            "/data",
            "asso-a/../x",
            "../x",
            "a;reboot",
            "asso-a/a;reboot",
            "asso-a/data/x",
            "0123456789ABCDEF",
        ] {
            assert!(VolumeArg::parse(bad).is_err(), "{bad:?}");
        }
        refused(VolumeArg::parse(""), "volume id");
        refused(VolumeArg::parse("asso-a/"), "volume name");
        refused(VolumeArg::parse("Asso/data"), "tenant name");
    }

    fn pool(name: &str, kind: PoolKind, layout: i32, disks: &[&str]) -> pb::CreatePoolRequest {
        pb::CreatePoolRequest {
            node: "n1".into(),
            name: name.into(),
            kind: kind as i32,
            layout,
            disks: disks.iter().map(|d| d.to_string()).collect(),
            force: false,
        }
    }

    #[test]
    fn pools_are_declared_whole() {
        let mirror = PoolLayout::Mirror as i32;
        let single = PoolLayout::Single as i32;
        let p = CreatePool::try_from(pool("tank", PoolKind::Zfs, mirror, &["serial:A", "id:b"]))
            .unwrap();
        assert_eq!(p.node.as_str(), "n1");
        assert_eq!(p.pool.name.as_str(), "tank");
        assert_eq!(p.pool.layout, PoolLayout::Mirror);
        assert_eq!(p.pool.disks.len(), 2);
        let mut no_node = pool("tank", PoolKind::Zfs, single, &["serial:A"]);
        no_node.node = String::new();
        refused(CreatePool::try_from(no_node), "node name");
        refused(
            CreatePool::try_from(pool("mirror", PoolKind::Zfs, single, &["serial:A"])),
            "pool name",
        );
        refused(
            CreatePool::try_from(pool("t", PoolKind::Unspecified, single, &["serial:A"])),
            "pool kind",
        );
        refused(
            CreatePool::try_from(pool("t", PoolKind::Zfs, 0, &["serial:A"])),
            "pool layout",
        );
        refused(
            CreatePool::try_from(pool("t", PoolKind::Zfs, 42, &["serial:A"])),
            "pool layout",
        );
        refused(
            CreatePool::try_from(pool("t", PoolKind::Zfs, single, &[])),
            "invalid disks",
        );
        refused(
            CreatePool::try_from(pool("t", PoolKind::Zfs, single, &["/dev/sda"])),
            "invalid disk",
        );
        refused(
            CreatePool::try_from(pool("t", PoolKind::Zfs, mirror, &["serial:A", "serial:A"])),
            "listed twice",
        );
        refused(
            CreatePool::try_from(pool("t", PoolKind::Zfs, mirror, &["serial:A"])),
            "pool layout",
        );
        refused(
            CreatePool::try_from(pool(
                "t",
                PoolKind::LvmThin,
                mirror,
                &["serial:A", "serial:B"],
            )),
            "pool layout",
        );
        let many: Vec<String> = (0..65).map(|i| format!("serial:D{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        refused(
            CreatePool::try_from(pool("t", PoolKind::Zfs, PoolLayout::Raidz2 as i32, &many)),
            "at most 64 disks",
        );
        assert_eq!(
            ListPools::try_from(pb::ListPoolsRequest::default())
                .unwrap()
                .node,
            None
        );
        refused(
            ListPools::try_from(pb::ListPoolsRequest { node: "n 1".into() }),
            "node name",
        );
    }

    fn volume(size_bytes: u64) -> pb::CreateVolumeRequest {
        pb::CreateVolumeRequest {
            tenant: "asso-a".into(),
            name: "data".into(),
            node: "n1".into(),
            pool: "tank".into(),
            size_bytes,
            reservation_bytes: 0,
            encrypted: true,
        }
    }

    #[test]
    fn volumes_have_names_and_bounded_aligned_sizes() {
        let v = CreateVolume::try_from(volume(64 * MIB + 1)).unwrap();
        assert_eq!(v.size_bytes, 68 * MIB, "aligned up to 4 MiB");
        assert!(v.encrypted);
        for size in [0, 1, 63 * MIB, (1 << 50) + 1, u64::MAX] {
            refused(CreateVolume::try_from(volume(size)), "invalid size");
        }
        type Mutation = fn(&mut pb::CreateVolumeRequest);
        let cases: [(&str, Mutation); 5] = [
            ("tenant name", |r| r.tenant = String::new()),
            ("volume name", |r| r.name = "a;reboot".into()),
            ("volume name", |r| r.name = "x".repeat(64)),
            ("node name", |r| r.node = "../n1".into()),
            ("pool name", |r| r.pool = "raidz".into()),
        ];
        for (field, mutate) in cases {
            let mut r = volume(GIB);
            mutate(&mut r);
            refused(CreateVolume::try_from(r), field);
        }
        let f = VolumeFilter::try_from(pb::ListVolumesRequest {
            tenant: "asso-a".into(),
            node: String::new(),
            include_destroyed: true,
        })
        .unwrap();
        assert_eq!(f.tenant.unwrap().as_str(), "asso-a");
        assert!(f.node.is_none() && f.include_destroyed);
        refused(
            VolumeFilter::try_from(pb::ListVolumesRequest {
                node: "N".into(),
                ..Default::default()
            }),
            "node name",
        );
    }

    #[test]
    fn volume_changes() {
        let r = ResizeVolume::try_from(pb::ResizeVolumeRequest {
            volume: "asso-a/data".into(),
            size_bytes: GIB,
            force: true,
        })
        .unwrap();
        assert_eq!((r.size_bytes, r.force), (GIB, true));
        assert_eq!(r.volume().tenant().unwrap().as_str(), "asso-a");
        refused(
            ResizeVolume::try_from(pb::ResizeVolumeRequest {
                volume: "asso-a/data".into(),
                size_bytes: 0,
                force: false,
            }),
            "invalid size",
        );
        let snap = |volume: &str, snapshot: &str| {
            VolumeSnapshot::try_from(pb::SnapshotRequest {
                volume: volume.into(),
                snapshot: snapshot.into(),
            })
        };
        assert_eq!(snap("asso-a/data", "s1").unwrap().snapshot.as_str(), "s1");
        refused(snap("asso-a/data", ""), "snapshot name");
        refused(snap("asso-a/data", "a@b"), "snapshot name");
        refused(snap("data", "s1"), "volume id");
        let rb = RollbackVolume::try_from(pb::RollbackVolumeRequest {
            volume: "0123456789abcdef".into(),
            snapshot: "s1".into(),
            confirm: "asso-a/data".into(),
        })
        .unwrap();
        assert!(matches!(rb.volume, VolumeArg::Id(_)));
        assert_eq!(rb.confirm, "asso-a/data");
    }

    #[test]
    fn tenant_storage_changes_something_within_bounds() {
        let set = |quota, days| {
            SetTenantStorage::try_from(pb::SetTenantStorageRequest {
                name: "asso-a".into(),
                storage_quota_bytes: quota,
                volume_grace_days: days,
            })
        };
        let ok = set(Some(5 * GIB), Some(30)).unwrap();
        assert_eq!(
            (ok.storage_quota_bytes, ok.volume_grace_days),
            (Some(5 * GIB), Some(30))
        );
        assert!(set(None, Some(MAX_GRACE_DAYS)).is_ok());
        assert!(set(Some(0), None).is_ok());
        refused(set(None, None), "nothing to change");
        refused(set(Some(u64::MAX), None), "invalid quota");
        refused(set(None, Some(0)), "invalid grace days");
        refused(set(None, Some(MAX_GRACE_DAYS + 1)), "invalid grace days");
        refused(
            SetTenantStorage::try_from(pb::SetTenantStorageRequest {
                name: "A".into(),
                storage_quota_bytes: Some(1),
                volume_grace_days: None,
            }),
            "tenant name",
        );
    }
}
