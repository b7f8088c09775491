//! The kernel's own files: memory, load and CPU from `/proc`, sensors and
//! NICs from `/sys`, whether a reboot is needed from `/run` and `/boot`,
//! and filesystem use from statvfs(3). Every reader takes its root
//! directory, so tests point it at a fixture tree.

use std::path::Path;

use coloc_proto::agent::v1::{FilesystemUse, NicHealth, RebootHealth, SystemLoad, Temperature};

use crate::HostError;

/// Readings outside this range are not trusted (a disconnected probe
/// reads -128 or 255 °C).
pub(crate) const SANE_CELSIUS: std::ops::RangeInclusive<f64> = -40.0..=150.0;

/// The busy and total jiffies of all CPUs, from `/proc/stat`'s "cpu" line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSample {
    pub busy: u64,
    pub total: u64,
    /// The "cpuN" lines.
    pub cpu_count: u32,
}

impl CpuSample {
    /// The share of CPU time spent busy between `previous` and `self`, 0 to
    /// 1; since boot without a previous sample.
    pub fn busy_ratio_since(&self, previous: Option<&CpuSample>) -> f64 {
        let (busy, total) = match previous {
            Some(p) if self.total > p.total && self.busy >= p.busy => {
                (self.busy - p.busy, self.total - p.total)
            }
            _ => (self.busy, self.total),
        };
        if total == 0 {
            return 0.0;
        }
        (busy as f64 / total as f64).clamp(0.0, 1.0)
    }
}

/// `/proc/stat`: the aggregate "cpu" line (user nice system idle iowait
/// irq softirq steal; guest time is already in user) and the CPU count.
pub fn parse_cpu_sample(text: &str) -> Result<CpuSample, HostError> {
    const WHAT: &str = "/proc/stat";
    let mut sample = None;
    let mut cpu_count = 0u32;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("cpu") => {
                let values: Vec<u64> = fields
                    .take(8)
                    .map(|v| {
                        v.parse()
                            .map_err(|_| HostError::parse(WHAT, format!("{line:?}")))
                    })
                    .collect::<Result<_, _>>()?;
                if values.len() < 4 {
                    return Err(HostError::parse(WHAT, format!("short cpu line {line:?}")));
                }
                let total: u64 = values.iter().sum();
                let idle = values[3] + values.get(4).copied().unwrap_or(0);
                sample = Some((total - idle, total));
            }
            Some(name) if name.starts_with("cpu") => cpu_count += 1,
            _ => {}
        }
    }
    let (busy, total) = sample.ok_or_else(|| HostError::parse(WHAT, "no \"cpu\" line"))?;
    Ok(CpuSample {
        busy,
        total,
        cpu_count,
    })
}

/// `/proc/meminfo`: total and available memory, swap total and free, in
/// bytes, into `load`.
pub fn parse_meminfo(text: &str, load: &mut SystemLoad) -> Result<(), HostError> {
    const WHAT: &str = "/proc/meminfo";
    let field = |key: &str| -> Result<u64, HostError> {
        let line = text
            .lines()
            .find(|l| l.split(':').next() == Some(key))
            .ok_or_else(|| HostError::parse(WHAT, format!("no {key} line")))?;
        let mut words = line
            .split(':')
            .nth(1)
            .unwrap_or_default()
            .split_whitespace();
        let value: u64 = words
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| HostError::parse(WHAT, format!("{line:?}")))?;
        match words.next() {
            Some("kB") => Ok(value.saturating_mul(1024)),
            None => Ok(value),
            Some(unit) => Err(HostError::parse(WHAT, format!("unit {unit:?} in {line:?}"))),
        }
    };
    load.memory_total_bytes = field("MemTotal")?;
    load.memory_available_bytes = field("MemAvailable")?;
    load.swap_total_bytes = field("SwapTotal")?;
    load.swap_free_bytes = field("SwapFree")?;
    Ok(())
}

/// `/proc/loadavg`: the 1, 5 and 15 minute load averages.
pub fn parse_loadavg(text: &str) -> Result<(f64, f64, f64), HostError> {
    let values: Vec<f64> = text
        .split_whitespace()
        .take(3)
        .map(|v| v.parse().ok().filter(|l: &f64| l.is_finite() && *l >= 0.0))
        .collect::<Option<_>>()
        .ok_or_else(|| HostError::parse("/proc/loadavg", format!("{text:?}")))?;
    match values[..] {
        [a, b, c] => Ok((a, b, c)),
        _ => Err(HostError::parse("/proc/loadavg", format!("{text:?}"))),
    }
}

/// `/proc/uptime`: whole seconds since boot.
pub fn parse_uptime(text: &str) -> Result<u64, HostError> {
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v as u64)
        .ok_or_else(|| HostError::parse("/proc/uptime", format!("{text:?}")))
}

/// Memory, load, CPU and uptime from `proc` (normally `/proc`); the CPU
/// busy ratio since `previous`. Returns the new CPU sample to keep.
pub(crate) fn read_system(
    proc: &Path,
    previous: Option<&CpuSample>,
) -> Result<(SystemLoad, CpuSample), HostError> {
    let mut load = SystemLoad::default();
    parse_meminfo(&read(&proc.join("meminfo"))?, &mut load)?;
    (load.load1, load.load5, load.load15) = parse_loadavg(&read(&proc.join("loadavg"))?)?;
    let sample = parse_cpu_sample(&read(&proc.join("stat"))?)?;
    load.cpu_count = sample.cpu_count;
    load.cpu_busy_ratio = sample.busy_ratio_since(previous);
    load.uptime_secs = parse_uptime(&read(&proc.join("uptime"))?)?;
    Ok((load, sample))
}

/// Every temperature sensor under `sys/class/hwmon`: "chip label" (the
/// chip's `name`, the input's `label` or its file name), its reading and
/// critical threshold. A reading that cannot be read or is outside
/// −40…150 °C is listed with its reason as `unknown`.
pub fn read_hwmon(sys: &Path) -> Result<Vec<Temperature>, HostError> {
    let dir = sys.join("class/hwmon");
    // A kernel without hwmon (some VMs) has no sensors: nothing unknown.
    if !dir.exists() && sys.join("class").is_dir() {
        return Ok(Vec::new());
    }
    let mut chips = list_dir(&dir)?;
    chips.sort();
    let mut out = Vec::new();
    for chip in chips {
        let chip_dir = dir.join(&chip);
        let chip_name = read(&chip_dir.join("name"))
            .map(|n| n.trim().to_owned())
            .unwrap_or_else(|_| chip.clone());
        let Ok(mut inputs) = list_dir(&chip_dir) else {
            continue;
        };
        inputs.retain(|f| f.starts_with("temp") && f.ends_with("_input"));
        // temp2 before temp10.
        inputs.sort_by_key(|f| {
            f.trim_start_matches("temp")
                .trim_end_matches("_input")
                .parse::<u32>()
                .unwrap_or(u32::MAX)
        });
        for input in inputs {
            let stem = input.trim_end_matches("_input");
            let label = read(&chip_dir.join(format!("{stem}_label")))
                .map(|l| l.trim().to_owned())
                .ok()
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| stem.to_owned());
            let mut t = Temperature {
                sensor: format!("{chip_name} {label}"),
                ..Temperature::default()
            };
            match read(&chip_dir.join(&input)).map(|v| millidegrees(&v)) {
                Ok(Some(c)) if SANE_CELSIUS.contains(&c) => t.celsius = c,
                Ok(Some(c)) => t.unknown = format!("reading {c} °C is outside −40…150 °C"),
                Ok(None) => t.unknown = "the reading is not a number".to_owned(),
                Err(e) => t.unknown = format!("unreadable: {}", coloc_proto::error_chain(&e)),
            }
            t.critical_celsius = read(&chip_dir.join(format!("{stem}_crit")))
                .ok()
                .and_then(|v| millidegrees(&v))
                .filter(|c| SANE_CELSIUS.contains(c));
            out.push(t);
        }
    }
    Ok(out)
}

fn millidegrees(text: &str) -> Option<f64> {
    text.trim().parse::<i64>().ok().map(|m| m as f64 / 1000.0)
}

/// Every network interface under `sys/class/net` backed by a device (a
/// NIC, not `lo`, a bridge, a veth or a tunnel): up when its operstate is
/// "up", its speed when the driver gives one.
pub fn read_nics(sys: &Path) -> Result<Vec<NicHealth>, HostError> {
    let dir = sys.join("class/net");
    let mut names = list_dir(&dir)?;
    names.retain(|n| n != "lo" && dir.join(n).join("device").exists());
    names.sort();
    Ok(names
        .into_iter()
        .map(|name| {
            let nic = dir.join(&name);
            let up = read(&nic.join("operstate")).is_ok_and(|s| s.trim() == "up");
            // Reading speed fails (EINVAL) on a link that is down, and
            // virtio says -1.
            let speed_mbps = read(&nic.join("speed"))
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .and_then(|s| u32::try_from(s).ok())
                .filter(|s| *s > 0);
            NicHealth {
                name,
                up,
                speed_mbps,
            }
        })
        .collect())
}

/// Whether a reboot is needed: Debian's `run/reboot-required` flag (with
/// the packages in `reboot-required.pkgs`), else a running kernel
/// (`proc/sys/kernel/osrelease`) older than the newest `boot/vmlinuz-*`.
pub fn read_reboot(run: &Path, proc: &Path, boot: &Path) -> Result<RebootHealth, HostError> {
    let flag = run.join("reboot-required");
    if flag.exists() {
        let packages: Vec<String> = read(&run.join("reboot-required.pkgs"))
            .map(|t| {
                let mut p: Vec<String> = t
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect();
                p.sort();
                p.dedup();
                p
            })
            .unwrap_or_default();
        let reason = if packages.is_empty() {
            flag.display().to_string()
        } else {
            format!("{} ({})", flag.display(), packages.join(", "))
        };
        return Ok(RebootHealth {
            required: true,
            reason,
            unknown: String::new(),
        });
    }
    let running = read(&proc.join("sys/kernel/osrelease"))?.trim().to_owned();
    // No /boot to compare with (a container, a kernel booted from
    // elsewhere): nothing says a reboot is needed.
    let newest = list_dir(boot)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|f| f.strip_prefix("vmlinuz-").map(str::to_owned))
        .max_by(|a, b| compare_versions(a, b));
    Ok(match newest {
        Some(newest) if compare_versions(&newest, &running).is_gt() => RebootHealth {
            required: true,
            reason: format!("running kernel {running}, newest installed {newest}"),
            unknown: String::new(),
        },
        _ => RebootHealth::default(),
    })
}

/// Kernel release order: runs of digits compare as numbers, the rest as
/// text ("6.1.0-28-amd64" > "6.1.0-9-amd64").
fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(&pb) {
        let order = match (x, y) {
            ((true, x), (true, y)) => x
                .trim_start_matches('0')
                .len()
                .cmp(&y.trim_start_matches('0').len())
                .then_with(|| x.trim_start_matches('0').cmp(y.trim_start_matches('0'))),
            ((_, x), (_, y)) => x.cmp(y),
        };
        if order.is_ne() {
            return order;
        }
    }
    pa.len().cmp(&pb.len())
}

/// statvfs(3) of `path`: size, used and available bytes.
pub(crate) fn filesystem_use(path: &Path) -> Result<FilesystemUse, std::io::Error> {
    let st = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    let unit = st.fragment_size();
    let size = st.blocks().saturating_mul(unit);
    Ok(FilesystemUse {
        mount_path: path.display().to_string(),
        size_bytes: size,
        used_bytes: st
            .blocks()
            .saturating_sub(st.blocks_free())
            .saturating_mul(unit),
        available_bytes: st.blocks_available().saturating_mul(unit),
        ..FilesystemUse::default()
    })
}

fn read(path: &Path) -> Result<String, HostError> {
    std::fs::read_to_string(path).map_err(|source| HostError::Io {
        what: "could not read",
        path: path.display().to_string(),
        source,
    })
}

fn list_dir(dir: &Path) -> Result<Vec<String>, HostError> {
    let io = |source| HostError::Io {
        what: "could not list",
        path: dir.display().to_string(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        names.push(
            entry
                .map_err(io)?
                .file_name()
                .to_string_lossy()
                .into_owned(),
        );
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_order_by_number() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_versions("6.1.0-28-amd64", "6.1.0-9-amd64"), Greater);
        assert_eq!(compare_versions("6.1.0-28-amd64", "6.1.0-28-amd64"), Equal);
        assert_eq!(compare_versions("6.10.0-1-amd64", "6.9.0-1-amd64"), Greater);
        assert_eq!(
            compare_versions("6.1.0-27-cloud-amd64", "6.1.0-28-cloud-amd64"),
            Less
        );
    }

    #[test]
    fn cpu_busy_ratio_uses_the_difference() {
        let a = CpuSample {
            busy: 100,
            total: 1000,
            cpu_count: 2,
        };
        let b = CpuSample {
            busy: 400,
            total: 1600,
            cpu_count: 2,
        };
        assert!((a.busy_ratio_since(None) - 0.1).abs() < 1e-9);
        assert!((b.busy_ratio_since(Some(&a)) - 0.5).abs() < 1e-9);
        // A counter that went backwards (a new boot): since boot.
        assert!((a.busy_ratio_since(Some(&b)) - 0.1).abs() < 1e-9);
    }
}
