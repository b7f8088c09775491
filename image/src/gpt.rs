//! The disk image: the GPT layout (1 MiB aligned, ESP then root), the
//! sfdisk script that writes it with fixed disk and partition GUIDs, the
//! check of what sfdisk wrote (`sfdisk --json`), and copying each
//! partition's filesystem image in at its offset, skipping zero blocks so
//! the image stays sparse.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::runner::Cmd;

pub const SECTOR: u64 = 512;
const MIB: u64 = 1 << 20;
pub const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// "Linux root (x86-64)" from the Discoverable Partitions Specification,
/// which systemd-repart's `Type=root` matches on x86-64.
pub const ROOT_TYPE: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
pub const ESP_NAME: &str = "ESP";
pub const ROOT_NAME: &str = "coloc-root";

/// Where each partition sits, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub esp_offset: u64,
    pub esp_size: u64,
    pub root_offset: u64,
    pub root_size: u64,
    pub disk_size: u64,
}

impl Layout {
    /// 1 MiB for the primary GPT, the ESP, the root, 1 MiB for the backup
    /// GPT; every partition starts on a MiB boundary.
    pub fn new(esp_size: u64, root_size: u64) -> Result<Layout> {
        if !esp_size.is_multiple_of(MIB)
            || !root_size.is_multiple_of(MIB)
            || esp_size == 0
            || root_size == 0
        {
            bail!("partition sizes must be whole, non-zero MiB ({esp_size}, {root_size})");
        }
        let esp_offset = MIB;
        let root_offset = esp_offset + esp_size;
        Ok(Layout {
            esp_offset,
            esp_size,
            root_offset,
            root_size,
            disk_size: root_offset + root_size + MIB,
        })
    }
}

/// The GUIDs that make rebuilds identical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskIds {
    pub disk: String,
    pub esp: String,
    pub root: String,
}

/// The sfdisk input for `layout`.
pub fn sfdisk_script(layout: &Layout, ids: &DiskIds) -> String {
    let s = |b: u64| b / SECTOR;
    format!(
        "label: gpt\n\
         label-id: {disk}\n\
         unit: sectors\n\
         first-lba: 2048\n\
         sector-size: {SECTOR}\n\
         \n\
         start={es}, size={ez}, type={ESP_TYPE}, uuid={esp}, name=\"{ESP_NAME}\"\n\
         start={rs}, size={rz}, type={ROOT_TYPE}, uuid={root}, name=\"{ROOT_NAME}\"\n",
        disk = ids.disk.to_uppercase(),
        esp = ids.esp.to_uppercase(),
        root = ids.root.to_uppercase(),
        es = s(layout.esp_offset),
        ez = s(layout.esp_size),
        rs = s(layout.root_offset),
        rz = s(layout.root_size),
    )
}

#[derive(Debug, Deserialize)]
struct SfdiskJson {
    partitiontable: PartitionTable,
}

#[derive(Debug, Deserialize)]
struct PartitionTable {
    label: String,
    id: String,
    partitions: Vec<JsonPartition>,
}

#[derive(Debug, Deserialize)]
struct JsonPartition {
    start: u64,
    size: u64,
    #[serde(rename = "type")]
    type_: String,
    uuid: String,
    #[serde(default)]
    name: String,
}

/// Checks `sfdisk --json` output against what was asked for.
pub fn check_sfdisk_json(json: &str, layout: &Layout, ids: &DiskIds) -> Result<()> {
    let t: SfdiskJson =
        serde_json::from_str(json).context("sfdisk --json output is not as expected")?;
    let t = t.partitiontable;
    if t.label != "gpt" || !t.id.eq_ignore_ascii_case(&ids.disk) {
        bail!(
            "the disk has label {} id {}, not gpt {}",
            t.label,
            t.id,
            ids.disk
        );
    }
    let want = [
        (
            layout.esp_offset,
            layout.esp_size,
            ESP_TYPE,
            &ids.esp,
            ESP_NAME,
        ),
        (
            layout.root_offset,
            layout.root_size,
            ROOT_TYPE,
            &ids.root,
            ROOT_NAME,
        ),
    ];
    if t.partitions.len() != want.len() {
        bail!("the disk has {} partitions, not 2", t.partitions.len());
    }
    for (p, (off, size, ty, uuid, name)) in t.partitions.iter().zip(want) {
        let ok = p.start * SECTOR == off
            && p.size * SECTOR == size
            && p.type_.eq_ignore_ascii_case(ty)
            && p.uuid.eq_ignore_ascii_case(uuid)
            && p.name == name;
        if !ok {
            bail!("partition {name} came out as {p:?}");
        }
    }
    Ok(())
}

/// Creates the (sparse) disk file and writes its partition table.
pub fn partition(disk: &Path, layout: &Layout, ids: &DiskIds) -> Result<()> {
    let f = File::create(disk).with_context(|| format!("cannot create {}", disk.display()))?;
    f.set_len(layout.disk_size)?;
    drop(f);
    Cmd::new("sfdisk")
        .args([
            "--quiet",
            "--no-reread",
            "--no-tell-kernel",
            "--wipe",
            "never",
        ])
        .arg(disk)
        .stdin(sfdisk_script(layout, ids))
        .run()
        .context("sfdisk could not write the partition table")?;
    let json = Cmd::new("sfdisk")
        .arg("--json")
        .arg(disk)
        .run()?
        .stdout_str();
    check_sfdisk_json(&json, layout, ids)
}

/// Copies `src` into `disk` at `offset`; blocks of zeros are skipped (the
/// disk file is sparse and zero there already). Returns bytes copied.
pub fn write_at(disk: &Path, offset: u64, max_len: u64, src: &Path) -> Result<u64> {
    let mut input = File::open(src).with_context(|| format!("cannot open {}", src.display()))?;
    let len = input.metadata()?.len();
    if len > max_len {
        bail!(
            "{} is {len} bytes, larger than its partition ({max_len})",
            src.display()
        );
    }
    let mut out = File::options()
        .write(true)
        .open(disk)
        .with_context(|| format!("cannot open {}", disk.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while pos < len {
        let want = buf.len().min((len - pos) as usize);
        input.read_exact(&mut buf[..want])?;
        if buf[..want].iter().any(|&b| b != 0) {
            out.seek(SeekFrom::Start(offset + pos))?;
            out.write_all(&buf[..want])?;
        }
        pos += want as u64;
    }
    out.sync_all()?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> DiskIds {
        DiskIds {
            disk: "0d1f2a3b-0000-4000-8000-000000000001".into(),
            esp: "0d1f2a3b-0000-4000-8000-000000000002".into(),
            root: "0d1f2a3b-0000-4000-8000-000000000003".into(),
        }
    }

    #[test]
    fn layout_is_mib_aligned() {
        let l = Layout::new(256 * MIB, 1200 * MIB).expect("layout");
        assert_eq!(l.esp_offset, MIB);
        assert_eq!(l.root_offset, 257 * MIB);
        assert_eq!(l.disk_size, (1 + 256 + 1200 + 1) * MIB);
        assert!(Layout::new(256 * MIB + 1, MIB).is_err());
        assert!(Layout::new(0, MIB).is_err());
    }

    #[test]
    fn script_pins_every_id() {
        let l = Layout::new(256 * MIB, 1024 * MIB).expect("layout");
        assert_eq!(
            sfdisk_script(&l, &ids()),
            "label: gpt\n\
             label-id: 0D1F2A3B-0000-4000-8000-000000000001\n\
             unit: sectors\n\
             first-lba: 2048\n\
             sector-size: 512\n\
             \n\
             start=2048, size=524288, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, \
             uuid=0D1F2A3B-0000-4000-8000-000000000002, name=\"ESP\"\n\
             start=526336, size=2097152, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, \
             uuid=0D1F2A3B-0000-4000-8000-000000000003, name=\"coloc-root\"\n"
        );
    }

    // Recorded from `sfdisk --json` (util-linux 2.38.1) on a disk written
    // with the script above.
    const JSON: &str = r#"{
   "partitiontable": {
      "label": "gpt",
      "id": "0D1F2A3B-0000-4000-8000-000000000001",
      "device": "disk.img",
      "unit": "sectors",
      "firstlba": 2048,
      "lastlba": 2625502,
      "sectorsize": 512,
      "partitions": [
         {
            "node": "disk.img1",
            "start": 2048,
            "size": 524288,
            "type": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            "uuid": "0D1F2A3B-0000-4000-8000-000000000002",
            "name": "ESP"
         },{
            "node": "disk.img2",
            "start": 526336,
            "size": 2097152,
            "type": "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
            "uuid": "0D1F2A3B-0000-4000-8000-000000000003",
            "name": "coloc-root"
         }
      ]
   }
}"#;

    #[test]
    fn sfdisk_json_is_checked() {
        let l = Layout::new(256 * MIB, 1024 * MIB).expect("layout");
        check_sfdisk_json(JSON, &l, &ids()).expect("matches");
        let other = Layout::new(256 * MIB, 2048 * MIB).expect("layout");
        assert!(check_sfdisk_json(JSON, &other, &ids()).is_err());
        let bad = JSON.replace("\"coloc-root\"", "\"root\"");
        assert!(check_sfdisk_json(&bad, &l, &ids()).is_err());
        assert!(check_sfdisk_json("{}", &l, &ids()).is_err());
    }

    #[test]
    fn partitions_and_writes_reproducibly() {
        if crate::runner::resolve("sfdisk").is_err() {
            eprintln!("sfdisk missing; skipped");
            return;
        }
        let t = tempfile::tempdir().expect("tempdir");
        let l = Layout::new(2 * MIB, 3 * MIB).expect("layout");
        let part = t.path().join("part");
        let mut content = vec![0u8; (2 * MIB) as usize];
        content[5] = 7;
        content[(MIB + 9) as usize] = 9;
        std::fs::write(&part, &content).expect("write");
        let mut hashes = Vec::new();
        for i in 0..2 {
            let disk = t.path().join(format!("disk{i}"));
            partition(&disk, &l, &ids()).expect("partitions");
            assert_eq!(
                write_at(&disk, l.esp_offset, l.esp_size, &part).expect("writes"),
                2 * MIB
            );
            hashes.push(crate::digest::sha256_file(&disk).expect("hash"));
            let bytes = std::fs::read(&disk).expect("read");
            assert_eq!(bytes[(l.esp_offset + 5) as usize], 7);
            assert_eq!(bytes[(l.esp_offset + MIB + 9) as usize], 9);
        }
        assert_eq!(hashes[0], hashes[1]);
        assert!(write_at(&t.path().join("disk0"), l.esp_offset, MIB, &part).is_err());
    }
}
