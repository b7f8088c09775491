//! `coloc pool` and `coloc volume` (with its snapshots and rollback).

use coloc_proto::agent::v1 as agent;
use coloc_proto::controller::v1 as pb;
use coloc_proto::storage::{DiskRef, SnapshotName};

use super::{call, connect};
use crate::args::GlobalArgs;
use crate::args::storage::{
    PoolCommand, PoolLayoutArg, PoolTypeArg, SnapshotCommand, VolumeCommand,
};
use crate::error::Failure;
use crate::input::{VolumeRef, check_rollback_confirm};
use crate::output::storage::{
    pool_details, pool_json, pool_layout_word, pools_table, snapshots_json, snapshots_table,
    volume_details, volume_json, volume_name, volumes_table,
};
use crate::output::{self, Printer};

/// Refuses layouts the backend does not offer and too few or repeated
/// disks, which the agent could only report as a failed pool later.
fn check_pool_layout(
    kind: PoolTypeArg,
    layout: PoolLayoutArg,
    disks: &[DiskRef],
) -> Result<(), Failure> {
    if kind == PoolTypeArg::Lvm && layout != PoolLayoutArg::Single {
        return Err(Failure::invalid(
            "lvm pools are single only: LVM RAID is not offered; use --type zfs for a redundant layout",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for disk in disks {
        if !seen.insert(disk) {
            return Err(Failure::invalid(format!("disk {disk} is given twice")));
        }
    }
    let min = layout.min_disks();
    if disks.len() < min {
        return Err(Failure::invalid(format!(
            "a {} pool needs at least {min} disks, {} given",
            pool_layout_word(agent::PoolLayout::from(layout) as i32),
            disks.len()
        )));
    }
    Ok(())
}

pub async fn pool(global: &GlobalArgs, out: Printer, command: PoolCommand) -> Result<(), Failure> {
    match command {
        PoolCommand::Create {
            node,
            name,
            kind,
            layout,
            disks,
            force,
        } => {
            let layout = layout.unwrap_or(PoolLayoutArg::Single);
            check_pool_layout(kind, layout, &disks)?;
            if force {
                // Said even with --json: it goes to stderr, and it is the
                // one thing a script's author must have seen.
                eprintln!(
                    "warning: --force: any of these disks that holds data (partition table, filesystem, RAID, LVM or ZFS signature) will be wiped when the pool is created"
                );
            }
            let request = pb::CreatePoolRequest {
                node: node.to_string(),
                name: name.to_string(),
                kind: agent::PoolKind::from(kind) as i32,
                layout: agent::PoolLayout::from(layout) as i32,
                disks: disks.iter().map(ToString::to_string).collect(),
                force,
            };
            let api = connect(global).await?;
            let pool = call(&api, api.storage().create_pool(request)).await?;
            out.emit(pool_json(&pool), || {
                let blank = if pool.force {
                    "wiping disks that hold data"
                } else {
                    "on blank disks only; a disk holding data is refused and shown by 'coloc pool list'"
                };
                format!(
                    "Declared pool {} on {}: its agent creates it at its next pass, {blank}.\n{}",
                    output::clean(&pool.name),
                    output::clean(&pool.node),
                    pool_details(&pool)
                )
            })
        }
        PoolCommand::List { node } => {
            let request = pb::ListPoolsRequest {
                node: node.map(String::from).unwrap_or_default(),
            };
            let api = connect(global).await?;
            let list = call(&api, api.storage().list_pools(request)).await?;
            out.list(&list.pools, pool_json, pools_table)?;
            if list.pools.iter().any(|p| !p.orphans.is_empty()) {
                out.note(
                    "Orphans are volumes on disk that colocd does not know; they are never touched. 'coloc pool list --json' lists them.",
                );
            }
            Ok(())
        }
    }
}

/// A reservation larger than the volume would hold pool space nobody can use.
fn check_reservation(size: u64, reserve: Option<u64>) -> Result<u64, Failure> {
    let reserve = reserve.unwrap_or(0);
    if reserve > size {
        return Err(Failure::invalid(format!(
            "--reserve {} is larger than --size {}",
            output::fmt_bytes(reserve),
            output::fmt_bytes(size)
        )));
    }
    Ok(reserve)
}

fn volume_ref(volume: &VolumeRef) -> pb::VolumeRef {
    pb::VolumeRef {
        volume: volume.to_string(),
    }
}

pub async fn volume(
    global: &GlobalArgs,
    out: Printer,
    command: VolumeCommand,
) -> Result<(), Failure> {
    match command {
        VolumeCommand::Create {
            tenant,
            node,
            pool,
            size,
            name,
            reserve,
            encrypted,
        } => {
            let reservation_bytes = check_reservation(size, reserve)?;
            let request = pb::CreateVolumeRequest {
                tenant: tenant.into(),
                name: name.into(),
                node: node.into(),
                pool: pool.into(),
                size_bytes: size,
                reservation_bytes,
                encrypted,
            };
            let api = connect(global).await?;
            let v = call(&api, api.storage().create_volume(request)).await?;
            out.emit(volume_json(&v), || {
                format!(
                    "Created volume {}; its node's agent creates and mounts it at its next pass.\n{}",
                    volume_name(&v),
                    volume_details(&v)
                )
            })
        }
        VolumeCommand::List { tenant, node, all } => {
            let request = pb::ListVolumesRequest {
                tenant: tenant.map(String::from).unwrap_or_default(),
                node: node.map(String::from).unwrap_or_default(),
                include_destroyed: all,
            };
            let api = connect(global).await?;
            let list = call(&api, api.storage().list_volumes(request)).await?;
            out.list(&list.volumes, volume_json, volumes_table)
        }
        VolumeCommand::Show { volume } => {
            let api = connect(global).await?;
            let v = call(&api, api.storage().get_volume(volume_ref(&volume))).await?;
            out.emit(volume_json(&v), || volume_details(&v))
        }
        VolumeCommand::Resize {
            volume,
            size,
            force,
        } => {
            let request = pb::ResizeVolumeRequest {
                volume: volume.to_string(),
                size_bytes: size,
                force,
            };
            let api = connect(global).await?;
            let v = call(&api, api.storage().resize_volume(request)).await?;
            out.emit(volume_json(&v), || {
                format!(
                    "Volume {} is now {}; its agent applies the size at its next pass.\n{}",
                    volume_name(&v),
                    output::fmt_bytes(v.size_bytes),
                    volume_details(&v)
                )
            })
        }
        VolumeCommand::Delete { volume } => {
            let api = connect(global).await?;
            let v = call(&api, api.storage().delete_volume(volume_ref(&volume))).await?;
            out.emit(volume_json(&v), || deleted_text(&v))
        }
        VolumeCommand::Restore { volume } => {
            let api = connect(global).await?;
            let v = call(&api, api.storage().restore_volume(volume_ref(&volume))).await?;
            out.emit(volume_json(&v), || {
                format!(
                    "Restored volume {}: its agent mounts it read-write again at {} at its next pass.\n{}",
                    volume_name(&v),
                    output::clean(&v.mount_path),
                    volume_details(&v)
                )
            })
        }
        VolumeCommand::Snapshot { command } => snapshot(global, out, command).await,
        VolumeCommand::Rollback {
            volume,
            snapshot,
            confirm,
        } => rollback(global, out, volume, snapshot, confirm).await,
    }
}

/// What a deletion means and how to undo it.
fn deleted_text(v: &pb::Volume) -> String {
    let name = volume_name(v);
    format!(
        "Deleted volume {name}: it is unmounted and kept read-only with its snapshots until {} UTC, then destroyed.\n\
         To bring it back before then: coloc volume restore {name}\n",
        output::fmt_time(v.purge_after_unix)
    )
}

async fn snapshot(
    global: &GlobalArgs,
    out: Printer,
    command: SnapshotCommand,
) -> Result<(), Failure> {
    match command {
        SnapshotCommand::Create { volume, snapshot } => {
            let request = pb::SnapshotRequest {
                volume: volume.to_string(),
                snapshot: snapshot.to_string(),
            };
            let api = connect(global).await?;
            let v = call(&api, api.storage().create_snapshot(request)).await?;
            out.emit(volume_json(&v), || {
                format!(
                    "Snapshot {snapshot} of {} requested; its agent takes it at its next pass.\n{}",
                    volume_name(&v),
                    snapshots_table(&v)
                )
            })
        }
        SnapshotCommand::List { volume } => {
            let api = connect(global).await?;
            let v = call(&api, api.storage().get_volume(volume_ref(&volume))).await?;
            out.emit(snapshots_json(&v), || snapshots_table(&v))
        }
        SnapshotCommand::Delete { volume, snapshot } => {
            let request = pb::SnapshotRequest {
                volume: volume.to_string(),
                snapshot: snapshot.to_string(),
            };
            let api = connect(global).await?;
            let v = call(&api, api.storage().delete_snapshot(request)).await?;
            out.emit(volume_json(&v), || {
                format!(
                    "Snapshot {snapshot} of {} deleted; its agent destroys it at its next pass.\n{}",
                    volume_name(&v),
                    snapshots_table(&v)
                )
            })
        }
    }
}

/// Checks the confirmation before anything is sent when the volume was
/// named `<tenant>/<name>`; named by id, its name is looked up first so
/// the same check applies. colocd checks again.
async fn rollback(
    global: &GlobalArgs,
    out: Printer,
    volume: VolumeRef,
    snapshot: SnapshotName,
    confirm: Option<String>,
) -> Result<(), Failure> {
    let api = match volume.qualified_name() {
        Some(name) => {
            check_rollback_confirm(&name, snapshot.as_str(), confirm.as_deref())?;
            connect(global).await?
        }
        None => {
            let api = connect(global).await?;
            let v = call(&api, api.storage().get_volume(volume_ref(&volume))).await?;
            let name = format!("{}/{}", output::clean(&v.tenant), output::clean(&v.name));
            check_rollback_confirm(&name, snapshot.as_str(), confirm.as_deref())?;
            api
        }
    };
    let request = pb::RollbackVolumeRequest {
        volume: volume.to_string(),
        snapshot: snapshot.to_string(),
        confirm: confirm.unwrap_or_default(),
    };
    let v = call(&api, api.storage().rollback_volume(request)).await?;
    out.emit(volume_json(&v), || {
        format!(
            "Rolled {} back to snapshot {snapshot}.\n{}",
            volume_name(&v),
            volume_details(&v)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Exit;

    #[test]
    fn pool_layouts_fit_backend_and_disks() {
        let disks = |refs: &[&str]| -> Vec<DiskRef> {
            refs.iter().map(|r| DiskRef::new(r).unwrap()).collect()
        };
        assert!(
            check_pool_layout(
                PoolTypeArg::Zfs,
                PoolLayoutArg::Single,
                &disks(&["serial:a"])
            )
            .is_ok()
        );
        assert!(
            check_pool_layout(
                PoolTypeArg::Lvm,
                PoolLayoutArg::Single,
                &disks(&["serial:a", "serial:b"])
            )
            .is_ok()
        );
        let err = check_pool_layout(
            PoolTypeArg::Lvm,
            PoolLayoutArg::Mirror,
            &disks(&["serial:a", "serial:b"]),
        )
        .unwrap_err();
        assert!(err.message.contains("single only"), "{}", err.message);
        let err = check_pool_layout(
            PoolTypeArg::Zfs,
            PoolLayoutArg::Mirror,
            &disks(&["serial:a"]),
        )
        .unwrap_err();
        assert_eq!(err.message, "a mirror pool needs at least 2 disks, 1 given");
        assert!(
            check_pool_layout(
                PoolTypeArg::Zfs,
                PoolLayoutArg::Raidz2,
                &disks(&["serial:a", "serial:b"])
            )
            .is_err()
        );
        let err = check_pool_layout(
            PoolTypeArg::Zfs,
            PoolLayoutArg::Mirror,
            &disks(&["serial:a", "serial:a"]),
        )
        .unwrap_err();
        assert_eq!(err.message, "disk serial:a is given twice");
    }

    #[test]
    fn reservations_fit_in_the_volume() {
        assert_eq!(check_reservation(10, None).unwrap(), 0);
        assert_eq!(check_reservation(10, Some(10)).unwrap(), 10);
        assert_eq!(
            check_reservation(10, Some(11)).unwrap_err().exit,
            Exit::InvalidArgument
        );
    }
}
