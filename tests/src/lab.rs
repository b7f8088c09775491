//! The QEMU lab: what it takes to boot real node images that join a
//! colocd, shared by the end-to-end tests, `coloc-lab` (`make demo`) and
//! the VM benchmarks. It owns the image and seed tool the environment of
//! `make test` names, the test-only SSH key, one seed per node (host name,
//! site, the controller's address as the guest sees it, the CA, a fresh
//! join token, the SSH key), and the shape of a node's VM (CPUs, memory,
//! extra NVMe and virtio disks with serials, forwarded ports).
//!
//! Booting itself is coloc-vm's job, and what a test checks once a node is
//! up is the test's. Nothing here may point at production nodes: the key
//! it seeds is the tests' own channel into the guest.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use coloc_controller::config::ControllerConfig;
use coloc_vm::{Boot, DiskKind, DiskSpec, Forward, Vm, VmSpec};

use crate::api::Api;
use crate::controller::{TestController, fast_config};
use crate::fixtures::{create_site, join_token, wait_node_ready};
use crate::{Context, Result, bail, programs, wait_for};

/// The node image `make test` builds.
pub const IMAGE_ENV: &str = "COLOC_TEST_IMAGE";
/// The coloc-image binary `make test` builds, for seeds.
pub const COLOC_IMAGE_ENV: &str = "COLOC_IMAGE_BIN";
/// The site every lab node joins unless told otherwise.
pub const SITE: &str = "paris-1";
/// How long a seed's join token lasts: a first boot under TCG is slow.
const JOIN_TOKEN_TTL_SECS: u64 = 3600;

/// A path from the environment `make test` sets; panics with how to run
/// the tests when it is missing, since nothing can go on without it.
pub fn env_path(var: &str) -> PathBuf {
    let v = std::env::var_os(var).unwrap_or_else(|| {
        panic!("{var} is not set: run these tests with `make test` (it builds the image)")
    });
    PathBuf::from(v)
}

/// The node image under test ([`IMAGE_ENV`]).
pub fn test_image() -> PathBuf {
    env_path(IMAGE_ENV)
}

/// coloc-image, to write seeds ([`COLOC_IMAGE_ENV`]).
pub fn coloc_image_bin() -> PathBuf {
    env_path(COLOC_IMAGE_ENV)
}

/// A controller for real nodes booting under TCG: heartbeats every 5 s
/// rather than every second, and two minutes before a silent node counts
/// as unreachable, since a loaded guest can stall that long.
pub fn vm_config() -> ControllerConfig {
    ControllerConfig {
        heartbeat_interval_secs: 5,
        unreachable_after_secs: 120,
        ..fast_config()
    }
}

/// colocd's URL as a guest sees it: QEMU's user-mode network puts the
/// host's loopback behind the gateway 10.0.2.2.
pub fn controller_url_from_guest(port: u16) -> String {
    format!("https://10.0.2.2:{port}")
}

/// An ed25519 key pair for the test-only SSH channel.
#[derive(Debug, Clone)]
pub struct SshKey {
    pub private: PathBuf,
    pub public: PathBuf,
}

impl SshKey {
    /// Generates `path` and `path.pub`.
    pub fn generate(path: &Path, comment: &str) -> Result<SshKey> {
        programs::ssh_keygen(path, comment)?;
        Ok(Self::at(path))
    }

    /// The pair at `path`, generated the first time (a lab kept across
    /// runs keeps its key).
    pub fn reuse_or_generate(path: &Path, comment: &str) -> Result<SshKey> {
        if path.exists() {
            Ok(Self::at(path))
        } else {
            Self::generate(path, comment)
        }
    }

    fn at(path: &Path) -> SshKey {
        SshKey {
            private: path.to_owned(),
            public: path.with_extension("pub"),
        }
    }
}

/// An NVMe disk whose serial is also its id (pools name it
/// `serial:<serial>`).
pub fn nvme(serial: &str, size_mib: u64) -> DiskSpec {
    DiskSpec {
        id: serial.into(),
        size_mib,
        kind: DiskKind::Nvme {
            serial: serial.into(),
        },
    }
}

/// A virtio disk; the guest shows it as /dev/disk/by-id/virtio-<id>.
pub fn virtio(id: &str, size_mib: u64) -> DiskSpec {
    DiskSpec {
        id: id.into(),
        size_mib,
        kind: DiskKind::Virtio,
    }
}

/// The hardware of one node VM.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub cpus: u32,
    pub memory_mib: u32,
    pub disks: Vec<DiskSpec>,
    pub forwards: Vec<Forward>,
    /// The boot disk as the guest sees it: a real server's disk is larger
    /// than the image, and first boot grows the root into it.
    pub disk_size_mib: u64,
}

impl NodeSpec {
    /// 2 CPUs, 2 GiB of memory, a 4 GiB boot disk, no extra disk.
    pub fn new(name: &str) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            cpus: 2,
            memory_mib: 2048,
            disks: Vec::new(),
            forwards: Vec::new(),
            disk_size_mib: 4096,
        }
    }
}

/// What nodes need to join one colocd: the image and seed tool, the SSH
/// key, the controller's port on the host's loopback and its CA, the site,
/// and a work directory with one subdirectory per node (seed, join token
/// file, the VM's overlay and console).
#[derive(Debug, Clone)]
pub struct NodeLab {
    pub image: PathBuf,
    pub coloc_image: PathBuf,
    pub key: SshKey,
    pub controller_port: u16,
    pub ca_file: PathBuf,
    pub site: String,
    pub workdir: PathBuf,
}

impl NodeLab {
    /// The directory of node `name`, created if needed.
    pub fn node_dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.workdir.join(name);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Writes node `name`'s seed volume with a fresh join token from
    /// `api`, and returns its path.
    pub async fn seed(&self, api: &mut Api, name: &str) -> Result<PathBuf> {
        let seed = self.node_dir(name)?.join("seed.img");
        let controller = controller_url_from_guest(self.controller_port);
        self.write_seed(api, name, &self.key.public, &controller, &seed)
            .await?;
        Ok(seed)
    }

    /// Writes a seed volume for node `name` at `out` with a fresh join
    /// token from `api`, root's SSH key `ssh_public_key` and the controller
    /// at `controller` (as the guest reaches it).
    pub async fn write_seed(
        &self,
        api: &mut Api,
        name: &str,
        ssh_public_key: &Path,
        controller: &str,
        out: &Path,
    ) -> Result<()> {
        let token_file = out.with_extension("join-token");
        std::fs::write(
            &token_file,
            join_token(api, &self.site, JOIN_TOKEN_TTL_SECS).await?,
        )?;
        let args: [&OsStr; 14] = [
            "--hostname".as_ref(),
            name.as_ref(),
            "--site".as_ref(),
            self.site.as_ref(),
            "--controller".as_ref(),
            controller.as_ref(),
            "--ca-file".as_ref(),
            self.ca_file.as_os_str(),
            "--join-token-file".as_ref(),
            token_file.as_os_str(),
            "--ssh-key-file".as_ref(),
            ssh_public_key.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
        ];
        programs::coloc_image_seed(&self.coloc_image, &args)
    }

    /// The VM of `node` booting the image under UEFI with `seed`.
    pub fn vm_spec(&self, node: &NodeSpec, seed: PathBuf) -> VmSpec {
        VmSpec {
            name: node.name.clone(),
            image: self.image.clone(),
            boot: Boot::Uefi,
            cpus: node.cpus,
            memory_mib: node.memory_mib,
            disks: node.disks.clone(),
            seed: Some(seed),
            forwards: node.forwards.clone(),
            ssh_key: Some(self.key.private.clone()),
            disk_size_mib: Some(node.disk_size_mib),
        }
    }

    /// Seeds and boots `node`; it enrolls on its own once up.
    pub async fn boot(&self, api: &mut Api, node: &NodeSpec) -> Result<Vm> {
        let seed = self.seed(api, &node.name).await?;
        let dir = self.node_dir(&node.name)?;
        Vm::start(self.vm_spec(node, seed), &dir).await
    }
}

/// A lab on a colocd running in this process: the controller, its admin's
/// client, site [`SITE`], and a temporary work directory the nodes live in.
pub struct Lab {
    pub ctl: TestController,
    pub admin: Api,
    pub nodes: NodeLab,
    _work: tempfile::TempDir,
}

impl Lab {
    /// For the end-to-end tests: the image and seed tool from the
    /// environment `make test` sets (a clear panic without it).
    pub async fn start(config: ControllerConfig) -> Result<Lab> {
        let image = test_image();
        let coloc_image = coloc_image_bin();
        Self::start_with(config, image, coloc_image, "coloc-e2e").await
    }

    /// With the image and seed tool given (the benchmarks take them as
    /// arguments); `key_comment` names the SSH key in the guests.
    pub async fn start_with(
        config: ControllerConfig,
        image: PathBuf,
        coloc_image: PathBuf,
        key_comment: &str,
    ) -> Result<Lab> {
        let ctl = TestController::start_with(config).await?;
        let mut admin = ctl.admin().await?;
        create_site(&mut admin, SITE).await?;
        let work = tempfile::tempdir()?;
        let key = SshKey::generate(&work.path().join("id_ed25519"), key_comment)?;
        let nodes = NodeLab {
            image,
            coloc_image,
            key,
            controller_port: ctl.addr().port(),
            ca_file: ctl.ca_file(),
            site: SITE.into(),
            workdir: work.path().to_owned(),
        };
        Ok(Lab {
            ctl,
            admin,
            nodes,
            _work: work,
        })
    }

    /// Seeds and boots `node`.
    pub async fn boot(&mut self, node: &NodeSpec) -> Result<Vm> {
        self.nodes.boot(&mut self.admin, node).await
    }

    /// Waits until `name` shows up Ready in colocd.
    pub async fn wait_ready(&self, name: &str, deadline: Duration) -> Result<()> {
        wait_node_ready(&self.admin, name, deadline).await?;
        Ok(())
    }

    pub fn work_dir(&self) -> &Path {
        &self.nodes.workdir
    }
}

/// Prints the VM's console, QEMU log and journal when `result` is a
/// failure, then hands `result` back: a failed step explains itself.
pub async fn diagnosed<T>(vm: &Vm, result: Result<T>) -> Result<T> {
    if let Err(e) = &result {
        eprintln!(
            "{e:#}\n--- diagnostics ---\n{}",
            vm.dump_diagnostics().await
        );
    }
    result
}

/// GET `https://<host>:<port><path>` through a forwarded port on the
/// host's loopback, trusting only `ca`; returns the status and body.
pub fn https_get(host: &str, port: u16, path: &str, ca: &Path) -> Result<(u16, String)> {
    programs::curl_https(host, port, &format!("https://{host}:{port}{path}"), ca)
}

/// [`https_get`] with HTTP basic authentication as `(user, password)`.
pub fn https_get_as(
    host: &str,
    port: u16,
    path: &str,
    ca: &Path,
    login: (&str, &str),
) -> Result<(u16, String)> {
    programs::curl_https_as(
        host,
        port,
        &format!("https://{host}:{port}{path}"),
        ca,
        Some(login),
    )
}

/// Waits until `https://<host>:<port><path>` answers 200 (a proxy
/// getting its certificate, an app starting) and returns the body.
pub async fn wait_https_ok(
    host: &str,
    port: u16,
    path: &str,
    ca: &Path,
    what: &str,
    deadline: Duration,
) -> Result<String> {
    wait_for(what, deadline, || {
        let got = https_get(host, port, path, ca)
            .ok()
            .filter(|(code, _)| *code == 200)
            .map(|(_, body)| body);
        async move { got }
    })
    .await
}

/// One socket `ss -H -tuln` lists: its protocol, local address (without
/// brackets or `%interface`), the interface it is bound to if any, and
/// its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub proto: String,
    pub address: String,
    pub interface: Option<String>,
    pub port: u16,
}

impl Listener {
    /// Bound to a loopback address or to the loopback interface: not
    /// reachable from the network.
    pub fn is_loopback(&self) -> bool {
        self.interface.as_deref() == Some("lo")
            || self.address == "::1"
            || self.address.starts_with("127.")
            || self.address.starts_with("::ffff:127.")
    }
}

/// Parses `ss -H -tuln` (no header; columns Netid State Recv-Q Send-Q
/// Local:Port Peer:Port). Local addresses look like `0.0.0.0:22`,
/// `[::]:22`, `*:80`, `127.0.0.53%lo:53`, `10.0.2.15%enp0s2:68`,
/// `[fe80::1%enp0s2]:546` or `[fe80::1]%enp0s2:546`.
pub fn parse_listeners(ss: &str) -> Result<Vec<Listener>> {
    let mut out = Vec::new();
    for line in ss.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (proto, local) = match fields.as_slice() {
            [proto, _state, _recv, _send, local, ..] => (*proto, *local),
            _ => bail!("not an ss line: {line:?}"),
        };
        let (address, port) = local
            .rsplit_once(':')
            .with_context(|| format!("no port in {local:?}"))?;
        let port: u16 = port.parse().with_context(|| format!("port of {local:?}"))?;
        let (address, interface) = match address.split_once('%') {
            Some((a, i)) => (a, Some(i.trim_end_matches(']').to_owned())),
            None => (address, None),
        };
        let address = address.trim_start_matches('[').trim_end_matches(']');
        out.push(Listener {
            proto: proto.to_owned(),
            address: address.to_owned(),
            interface,
            port,
        });
    }
    Ok(out)
}

/// What listens beyond loopback that is not in `allowed` (protocol, port).
pub fn unexpected_listeners(ss: &str, allowed: &[(&str, u16)]) -> Result<Vec<Listener>> {
    Ok(parse_listeners(ss)?
        .into_iter()
        .filter(|l| !l.is_loopback())
        .filter(|l| !allowed.contains(&(l.proto.as_str(), l.port)))
        .collect())
}

/// Sockets a node's own system software keeps on its public interface
/// that are clients, not services: the DHCP clients' (systemd-networkd's
/// DHCPv4 lease on 68/udp, DHCPv6 on 546/udp); the firewall answers only
/// replies from a DHCP server's port there.
pub const DHCP_CLIENT_PORTS: [(&str, u16); 2] = [("udp", 68), ("udp", 546)];

#[cfg(test)]
mod tests {
    use super::*;

    const SS: &str = "\
udp   UNCONN 0      0          127.0.0.53%lo:53        0.0.0.0:*
udp   UNCONN 0      0      10.0.2.15%enp0s2:68         0.0.0.0:*
udp   UNCONN 0      0            0.0.0.0:5355      0.0.0.0:*
udp   UNCONN 0      0      [fe80::5054:ff:fe12:3456]%enp0s2:546 [::]:*
udp   UNCONN 0      0                  *:443             *:*
tcp   LISTEN 0      128          0.0.0.0:22        0.0.0.0:*
tcp   LISTEN 0      4096       127.0.0.1:20000     0.0.0.0:*
tcp   LISTEN 0      128             [::]:22           [::]:*
tcp   LISTEN 0      4096           [::1]:20001        [::]:*
tcp   LISTEN 0      4096               *:80              *:*
tcp   LISTEN 0      4096               *:8384            *:*
";

    #[test]
    fn ss_lines_are_parsed() {
        let all = parse_listeners(SS).expect("parsed");
        assert_eq!(all.len(), 11);
        assert_eq!(
            all[3],
            Listener {
                proto: "udp".into(),
                address: "fe80::5054:ff:fe12:3456".into(),
                interface: Some("enp0s2".into()),
                port: 546,
            }
        );
        assert!(all[0].is_loopback() && all[6].is_loopback() && all[8].is_loopback());
        assert!(!all[1].is_loopback() && !all[5].is_loopback());
        assert!(parse_listeners("garbage").is_err());
    }

    #[test]
    fn only_unexpected_public_listeners_are_reported() {
        let mut allowed = vec![("tcp", 22), ("tcp", 80), ("tcp", 443), ("udp", 443)];
        allowed.extend(DHCP_CLIENT_PORTS);
        let extra = unexpected_listeners(SS, &allowed).expect("parsed");
        let ports: Vec<(String, u16)> = extra.iter().map(|l| (l.proto.clone(), l.port)).collect();
        assert_eq!(
            ports,
            vec![("udp".to_owned(), 5355), ("tcp".to_owned(), 8384)]
        );
    }
}
