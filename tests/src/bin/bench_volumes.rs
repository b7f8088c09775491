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
use coloc_controller::config::ControllerConfig;
use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_tests::*;
use coloc_vm::{Boot, DiskKind, DiskSpec, Vm, VmSpec};

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
    let work = tempfile::tempdir()?;
    let ctl = TestController::start_with(ControllerConfig {
        heartbeat_interval_secs: 5,
        unreachable_after_secs: 120,
        ..fast_config()
    })
    .await?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;

    let key = work.path().join("id_ed25519");
    let ok = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "coloc-bench", "-f"])
        .arg(&key)
        .status()?
        .success();
    if !ok {
        bail!("ssh-keygen failed");
    }
    let token_file = work.path().join("token");
    std::fs::write(&token_file, join_token(&mut admin, "paris-1", 3600).await?)?;
    let seed = work.path().join("seed.img");
    let ok = std::process::Command::new(&args.coloc_image)
        .arg("seed")
        .args(["--hostname", "n1", "--site", "paris-1"])
        .args([
            "--controller",
            &format!("https://10.0.2.2:{}", ctl.addr().port()),
        ])
        .arg("--ca-file")
        .arg(ctl.data_dir().join("ca.pem"))
        .arg("--join-token-file")
        .arg(&token_file)
        .arg("--ssh-key-file")
        .arg(key.with_extension("pub"))
        .arg("-o")
        .arg(&seed)
        .status()?
        .success();
    if !ok {
        bail!("coloc-image seed failed");
    }
    let vm = Vm::start(
        VmSpec {
            name: "n1".into(),
            image: args.image.clone(),
            boot: Boot::Uefi,
            cpus: 2,
            memory_mib: 2048,
            disks: vec![
                DiskSpec {
                    id: "COLOCZ01".into(),
                    size_mib: 4096,
                    kind: DiskKind::Nvme {
                        serial: "COLOCZ01".into(),
                    },
                },
                DiskSpec {
                    id: "COLOCL01".into(),
                    size_mib: 8192,
                    kind: DiskKind::Virtio,
                },
            ],
            seed: Some(seed),
            forwards: vec![],
            ssh_key: Some(key),
            disk_size_mib: Some(4096),
        },
        work.path(),
    )
    .await?;

    let result = run(&args, &ctl, &mut admin, &vm).await;
    if let Err(e) = &result {
        eprintln!("{e:#}\n{}", vm.dump_diagnostics().await);
    }
    let rows = result?;
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

async fn run(args: &Args, ctl: &TestController, admin: &mut Api, vm: &Vm) -> Result<Vec<Row>> {
    wait_for("n1 ready", DEADLINE, || {
        let mut admin = admin.clone();
        async move {
            let n = admin
                .nodes
                .get_node(pb::GetNodeRequest { name: "n1".into() })
                .await
                .ok()?
                .into_inner();
            (n.status == pb::NodeStatus::Ready as i32).then_some(())
        }
    })
    .await?;
    create_tenant(admin, "bench", pb::Offer::Responsable).await?;
    admin
        .storage
        .set_tenant_storage(pb::SetTenantStorageRequest {
            name: "bench".into(),
            storage_quota_bytes: Some(1 << 50),
            volume_grace_days: None,
        })
        .await?;
    let uid = admin
        .tenants
        .get_tenant(pb::GetTenantRequest {
            name: "bench".into(),
        })
        .await?
        .into_inner()
        .posix_id;
    for (name, kind, serial) in [
        ("tank", apb::PoolKind::Zfs, "COLOCZ01"),
        ("vgdata", apb::PoolKind::LvmThin, "COLOCL01"),
    ] {
        admin
            .storage
            .create_pool(pb::CreatePoolRequest {
                node: "n1".into(),
                name: name.into(),
                kind: kind as i32,
                layout: apb::PoolLayout::Single as i32,
                disks: vec![format!("serial:{serial}")],
                force: false,
            })
            .await?;
    }
    wait_for("pools present", DEADLINE, || {
        let mut admin = admin.clone();
        async move {
            let pools = admin
                .storage
                .list_pools(pb::ListPoolsRequest { node: "n1".into() })
                .await
                .ok()?
                .into_inner()
                .pools;
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
            admin
                .storage
                .create_volume(pb::CreateVolumeRequest {
                    tenant: "bench".into(),
                    name: format!("{prefix}{i}"),
                    node: "n1".into(),
                    pool: pool.into(),
                    size_bytes: 64 * MIB,
                    reservation_bytes: 0,
                    encrypted: false,
                })
                .await?;
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
    let _ = ctl;
    Ok(rows)
}
