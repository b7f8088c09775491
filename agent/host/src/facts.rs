//! Real [`Health`]: node facts from the kernel (through `sysinfo`, run on
//! the blocking pool because it reads `/proc` synchronously), disks from
//! `lsblk` (the same listing the disk prober reads), the OS name from
//! `os-release`, and SMART through `smartctl`. The agent's own version is
//! not the host's to know: the agent stamps it on the facts it sends.

use std::sync::Arc;

use async_trait::async_trait;
use coloc_proto::agent::v1::{Disk, HealthReport, MaintenanceKind, Nic, NodeFacts};
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, Networks, RefreshKind, System};

use crate::health::HealthInputs;
use crate::health::real::Collector;
use crate::runner::Runner;

use crate::lsblk::list_disks;
use crate::smart::{parse_smartctl, smartctl_statuses, validate_device};
use crate::{BlockDevice, Health, HostError, SmartReport};

/// os-release(5): the first file that exists wins.
const OS_RELEASE_PATHS: &[&str] = &["/etc/os-release", "/usr/lib/os-release"];

/// [`Health`] backed by the host. Cheap to clone; clones share the
/// collection's memory (the previous CPU sample, the self-tests seen
/// running) and its bus connection.
#[derive(Debug, Clone)]
pub struct RealHealth {
    pub(crate) runner: Runner,
    pub(crate) collector: Arc<Collector>,
}

impl RealHealth {
    /// Tools through `runner` (each health source with its own deadline,
    /// see [`Source::default_deadline`](crate::health::Source)), kernel files at their usual
    /// places. The builder methods in `health::real` change both.
    pub fn new(runner: Runner) -> RealHealth {
        RealHealth {
            runner,
            collector: Arc::default(),
        }
    }
}

/// Everything in [`NodeFacts`] that does not come from a host command.
struct SystemFacts {
    hostname: String,
    cpu_model: String,
    cpu_count: u32,
    memory_bytes: u64,
    nics: Vec<Nic>,
    kernel_version: String,
    os_name: String,
    boot_time_unix: u64,
}

#[async_trait]
impl Health for RealHealth {
    async fn facts(&self) -> Result<NodeFacts, HostError> {
        let system = tokio::task::spawn_blocking(read_system_facts)
            .await
            .map_err(|source| HostError::Blocking { source })??;
        let disks = list_disks(&self.runner)
            .await?
            .iter()
            .map(|d| d.block_device())
            .collect::<Result<Vec<BlockDevice>, HostError>>()?;
        Ok(NodeFacts {
            hostname: system.hostname,
            cpu_model: system.cpu_model,
            cpu_count: system.cpu_count,
            memory_bytes: system.memory_bytes,
            disks: disks.iter().map(Disk::from).collect(),
            nics: system.nics,
            kernel_version: system.kernel_version,
            os_name: system.os_name,
            agent_version: String::new(),
            boot_time_unix: system.boot_time_unix,
        })
    }

    async fn smart(&self, device: &str) -> Result<SmartReport, HostError> {
        validate_device(device)?;
        let out = self
            .runner
            .run_allow_status("smartctl", &["--json", "-a", device], &smartctl_statuses())
            .await
            .map_err(|e| {
                HostError::from_command(e, |source| HostError::Smart {
                    device: device.to_owned(),
                    source,
                })
            })?;
        parse_smartctl(device, out.status, &out.stdout)
    }

    async fn report(&self, inputs: &HealthInputs) -> HealthReport {
        self.collect(inputs).await
    }

    async fn start_maintenance(
        &self,
        kind: MaintenanceKind,
        subject: &str,
    ) -> Result<String, HostError> {
        self.start(kind, subject).await
    }
}

fn read_system_facts() -> Result<SystemFacts, HostError> {
    let system = System::new_with_specifics(
        RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing())
            .with_memory(MemoryRefreshKind::nothing().with_ram()),
    )
    .map_err(|source| HostError::System {
        what: "CPU and memory",
        source,
    })?;
    let cpus = system.cpus();
    let Some(first) = cpus.first() else {
        return Err(HostError::parse("the CPU list", "the kernel listed no CPU"));
    };
    let cpu_model = match first.brand().trim() {
        "" => first.vendor_id().trim().to_owned(),
        brand => brand.to_owned(),
    };
    let cpu_count = u32::try_from(cpus.len())
        .map_err(|_| HostError::parse("the CPU list", "more CPUs than fit in 32 bits"))?;

    let hostname = System::host_name().map_err(|source| HostError::System {
        what: "the host name",
        source,
    })?;
    let kernel_version = System::kernel_version().map_err(|source| HostError::System {
        what: "the kernel version",
        source,
    })?;
    let boot_time_unix = System::boot_time().map_err(|source| HostError::System {
        what: "the boot time",
        source,
    })?;
    let os_name = match read_os_release_pretty_name() {
        Some(name) => name,
        None => System::long_os_version().map_err(|source| HostError::System {
            what: "the OS name",
            source,
        })?,
    };
    let networks = Networks::new_with_refreshed_list().map_err(|source| HostError::System {
        what: "network interfaces",
        source,
    })?;
    let mut nics: Vec<Nic> = networks
        .iter()
        .filter(|(name, _)| name.as_os_str() != "lo")
        .map(|(name, data)| {
            let mut addresses: Vec<String> = data
                .ip_networks()
                .iter()
                .map(|net| net.addr.to_string())
                .collect();
            addresses.sort();
            addresses.dedup();
            Nic {
                name: name.to_string_lossy().into_owned(),
                mac: data.mac_address().to_string(),
                addresses,
            }
        })
        .collect();
    // The kernel's interface order is not stable across reboots; facts
    // should only change when the machine does.
    nics.sort_by(|a, b| a.name.cmp(&b.name));

    Ok(SystemFacts {
        hostname,
        cpu_model,
        cpu_count,
        memory_bytes: system.total_memory(),
        nics,
        kernel_version,
        os_name,
        boot_time_unix,
    })
}

fn read_os_release_pretty_name() -> Option<String> {
    OS_RELEASE_PATHS
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .and_then(|text| parse_os_release_pretty_name(&text))
}

/// `PRETTY_NAME` from an os-release(5) file, unquoted; `None` if absent or
/// empty. Values are shell-style: double quotes with backslash escapes,
/// single quotes taken literally, or bare words.
pub fn parse_os_release_pretty_name(text: &str) -> Option<String> {
    let raw = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("PRETTY_NAME="))
        // Like the shell that os-release is written for: the last one wins.
        .next_back()?;
    let value = if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(escaped) = chars.next() {
                    out.push(escaped);
                }
            } else {
                out.push(c);
            }
        }
        out
    } else if let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        inner.to_owned()
    } else {
        raw.to_owned()
    };
    let value = value.trim().to_owned();
    (!value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_name_in_its_quoting_styles() {
        let debian = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        assert_eq!(
            parse_os_release_pretty_name(debian).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(
            parse_os_release_pretty_name("PRETTY_NAME='Alpine Linux v3.20'").as_deref(),
            Some("Alpine Linux v3.20")
        );
        assert_eq!(
            parse_os_release_pretty_name("PRETTY_NAME=Plain").as_deref(),
            Some("Plain")
        );
        assert_eq!(
            parse_os_release_pretty_name(r#"PRETTY_NAME="Say \"hi\" \\ \$x""#).as_deref(),
            Some(r#"Say "hi" \ $x"#)
        );
        assert_eq!(parse_os_release_pretty_name("NAME=x\n"), None);
        assert_eq!(parse_os_release_pretty_name("PRETTY_NAME=\"\""), None);
    }

    #[tokio::test]
    async fn facts_of_this_machine_are_plausible() {
        let facts = RealHealth::new(Runner::new()).facts().await.expect("facts");
        assert!(!facts.hostname.is_empty());
        assert!(facts.cpu_count >= 1);
        assert!(!facts.cpu_model.is_empty());
        assert!(facts.memory_bytes > 64 * 1024 * 1024);
        assert!(!facts.kernel_version.is_empty());
        assert!(!facts.os_name.is_empty());
        assert_eq!(
            facts.agent_version, "",
            "stamped by the agent, not the host"
        );
        // After 2020-01-01 and not in the future.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(facts.boot_time_unix > 1_577_836_800 && facts.boot_time_unix <= now);
        assert!(facts.nics.iter().all(|n| n.name != "lo"));
        assert!(
            facts.nics.windows(2).all(|w| w[0].name <= w[1].name),
            "NICs sorted by name"
        );
        // Same disks as lsblk reports, without loop/zram.
        assert!(facts.disks.iter().all(|d| !d.name.starts_with("zram")));
    }

    #[tokio::test]
    async fn smart_refuses_bad_devices_before_running_anything() {
        let err = RealHealth::new(Runner::new())
            .smart("/dev/../etc/shadow")
            .await
            .unwrap_err();
        assert!(matches!(err, HostError::InvalidDevice { .. }), "{err:?}");
    }
}
