//! coloc-bench-volumes: how long colocd and the agent take to realise N
//! volumes on one node, per backend, against the same host commands run
//! directly in a shell loop in the same guest (the per-volume overhead of
//! coloc: the API, the desired-state push, the agent's listing and
//! checking, the observed report).
//!
//! The node image boots in QEMU (TCG here) with a ZFS pool on an NVMe disk
//! and an LVM thin pool on a virtio disk. For each backend: N volumes are
//! created through the API (as one admin would, one call each), and the
//! clock runs from the first call until the controller reports all of
//! them READY (mounted, owned, sized). Then the same guest runs the
//! equivalent commands itself in a loop: ZFS `zfs create` with the same
//! properties + `zfs mount` + `chown`; LVM `lvcreate` thin + `mkfs.ext4` +
//! `mount` + `chown`, timed inside the guest.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_tests::lab::{Lab, NodeSpec, diagnosed, nvme, virtio, vm_config};
use coloc_tests::*;
use coloc_vm::Vm;

const MIB: u64 = 1024 * 1024;
const DEADLINE: Duration = Duration::from_secs(3600);

#[derive(Debug, Parser)]
#[command(
    name = "coloc-bench-volumes",
    about = "Volumes realised through coloc against the same commands run directly"
)]
struct Args {
    /// The node image (coloc-image build).
    #[arg(long)]
    image: PathBuf,
    /// coloc-image, to write the seed.
    #[arg(long)]
    coloc_image: PathBuf,
    /// Volumes per backend.
    #[arg(long, default_value_t = 100)]
    volumes: usize,
}

struct Row {
    backend: &'static str,
    coloc: Duration,
    api_calls: Duration,
    direct: Duration,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut lab = Lab::start_with(
        vm_config(),
        args.image.clone(),
        args.coloc_image.clone(),
        "coloc-bench",
    )
    .await?;
    let mut node = NodeSpec::new("n1");
    node.disks = vec![nvme("COLOCZ01", 4096), virtio("COLOCL01", 8192)];
    let vm = lab.boot(&node).await?;

    let rows = diagnosed(&vm, run(&args, &mut lab.admin, &vm).await).await?;
    println!("accelerator: {:?}", coloc_vm::qemu_accel());
    println!();
    println!(
        "| backend | volumes | coloc: first API call → all READY (s) | of which API calls (s) | \
         coloc per volume (ms) | direct loop (s) | direct per volume (ms) | overhead per volume (ms) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let n = args.volumes as f64;
    for r in rows {
        let per = r.coloc.as_secs_f64() * 1000.0 / n;
        let direct = r.direct.as_secs_f64() * 1000.0 / n;
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.0} | {:.1} | {:.0} | {:.0} |",
            r.backend,
            args.volumes,
            r.coloc.as_secs_f64(),
            r.api_calls.as_secs_f64(),
            per,
            r.direct.as_secs_f64(),
            direct,
            per - direct
        );
    }
    Ok(())
}

async fn run(args: &Args, admin: &mut Api, vm: &Vm) -> Result<Vec<Row>> {
    wait_node_ready(admin, "n1", DEADLINE).await?;
    create_tenant(admin, "bench", pb::Offer::Responsable).await?;
    admin
        .storage
        .set_tenant_storage(pb::SetTenantStorageRequest {
            name: "bench".into(),
            storage_quota_bytes: Some(1 << 50),
            volume_grace_days: None,
        })
        .await?;
    let uid = tenant(admin, "bench").await?.posix_id;
    for (name, kind, serial) in [
        ("tank", apb::PoolKind::Zfs, "COLOCZ01"),
        ("vgdata", apb::PoolKind::LvmThin, "COLOCL01"),
    ] {
        create_pool(admin, "n1", name, kind, &format!("serial:{serial}")).await?;
    }
    wait_for("pools present", DEADLINE, || {
        let mut admin = admin.clone();
        async move {
            let pools = pools(&mut admin, "n1").await.ok()?;
            (pools.len() == 2
                && pools
                    .iter()
                    .all(|p| p.observed.as_ref().is_some_and(|o| o.present)))
            .then_some(())
        }
    })
    .await?;

    let mut rows = Vec::new();
    for (backend, pool, prefix) in [("ZFS", "tank", "z"), ("LVM thin + ext4", "vgdata", "l")] {
        eprintln!(
            "{backend}: creating {} volumes through colocd",
            args.volumes
        );
        let start = Instant::now();
        for i in 0..args.volumes {
            let name = format!("{prefix}{i}");
            let volume = NewVolume {
                tenant: "bench",
                name: &name,
                node: "n1",
                pool,
                size_bytes: 64 * MIB,
                encrypted: false,
            };
            create_volume(admin, volume).await?;
        }
        let api_calls = start.elapsed();
        let want = args.volumes;
        wait_for(&format!("{backend}: all READY"), DEADLINE, || {
            let mut admin = admin.clone();
            async move {
                let vols = admin
                    .storage
                    .list_volumes(pb::ListVolumesRequest {
                        tenant: "bench".into(),
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .volumes;
                let ready = vols
                    .iter()
                    .filter(|v| v.pool == pool)
                    .filter(|v| {
                        v.observed
                            .as_ref()
                            .is_some_and(|o| o.phase == apb::VolumePhase::Ready as i32)
                    })
                    .count();
                (ready == want).then_some(())
            }
        })
        .await?;
        let coloc = start.elapsed();
        eprintln!("{backend}: {:.1}s through coloc", coloc.as_secs_f64());

        let script = match pool {
            "tank" => format!(
                "zfs create -o canmount=off -o mountpoint=none tank/direct; \
                 s=$(date +%s%N); i=0; while [ $i -lt {n} ]; do \
                   zfs create -o refquota=64M -o quota=128M -o compression=lz4 \
                     -o canmount=noauto -o mountpoint=/srv/direct/z$i tank/direct/z$i && \
                   zfs mount tank/direct/z$i && chown {uid}:{uid} /srv/direct/z$i && \
                   chmod 0770 /srv/direct/z$i || exit 1; i=$((i+1)); done; \
                 echo $(( $(date +%s%N) - s ))",
                n = args.volumes
            ),
            _ => format!(
                "s=$(date +%s%N); i=0; while [ $i -lt {n} ]; do \
                   lvcreate -q --type thin -V 64m -n d$i --setactivationskip n vgdata/thin >/dev/null && \
                   mkfs.ext4 -q -m 0 -E lazy_itable_init=1 /dev/vgdata/d$i && \
                   mkdir -p /srv/direct/l$i && mount -o nodev,nosuid /dev/vgdata/d$i /srv/direct/l$i && \
                   chown {uid}:{uid} /srv/direct/l$i && chmod 0770 /srv/direct/l$i || exit 1; \
                   i=$((i+1)); done; echo $(( $(date +%s%N) - s ))",
                n = args.volumes
            ),
        };
        eprintln!("{backend}: the same commands directly in the guest");
        let out = vm.succeed(&["sh", "-c", &script]).await?;
        let nanos: u64 = out
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .with_context(|| format!("no duration in {out:?}"))?;
        let direct = Duration::from_nanos(nanos);
        eprintln!("{backend}: {:.1}s directly", direct.as_secs_f64());
        rows.push(Row {
            backend,
            coloc,
            api_calls,
            direct,
        });
    }
    Ok(rows)
}
