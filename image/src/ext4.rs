//! The root filesystem image: `mkfs.ext4 -d` from the prepared tree with
//! everything that would otherwise vary pinned — the feature set (our own
//! mke2fs.conf), the UUID and directory hash seed (derived from the spec),
//! the clock (`E2FSPROGS_FAKE_TIME`). One thing mkfs copies that no tool
//! can set on the source tree is each inode's ctime (the kernel stamps it
//! at extraction), so after mkfs every in-use inode's ctime and atime are
//! set to SOURCE_DATE_EPOCH with debugfs; `e2fsck -fn` then checks the
//! result.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::runner::Cmd;

pub const MKE2FS_CONF: &str = include_str!("mke2fs.conf");
pub const LABEL: &str = "coloc-root";

#[derive(Debug, Clone)]
pub struct Ext4Params<'a> {
    pub tree: &'a Path,
    pub image: &'a Path,
    pub size_bytes: u64,
    pub uuid: &'a str,
    pub hash_seed: &'a str,
    pub epoch: i64,
    /// Scratch directory for the mke2fs.conf and the debugfs script.
    pub scratch: &'a Path,
}

pub fn make(p: &Ext4Params) -> Result<()> {
    if !p.size_bytes.is_multiple_of(1 << 20) {
        bail!("the root filesystem size {} is not whole MiB", p.size_bytes);
    }
    let conf = p.scratch.join("mke2fs.conf");
    std::fs::write(&conf, MKE2FS_CONF)?;
    let _ = std::fs::remove_file(p.image);
    let epoch = p.epoch.to_string();
    Cmd::new("mkfs.ext4")
        .args(["-q", "-F", "-t", "ext4", "-L", LABEL, "-U", p.uuid])
        .arg("-E")
        .arg(format!(
            "hash_seed={},nodiscard,lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0",
            p.hash_seed
        ))
        .arg("-d")
        .arg(p.tree)
        .arg(p.image)
        .arg(format!("{}k", p.size_bytes / 1024))
        .env("MKE2FS_CONFIG", &conf)
        .env("E2FSPROGS_FAKE_TIME", &epoch)
        .run()
        .context("mkfs.ext4 could not build the root filesystem")?;

    let dump = Cmd::new("dumpe2fs")
        .arg(p.image)
        .env("E2FSPROGS_FAKE_TIME", &epoch)
        .run()?
        .stdout_str();
    let inodes = used_inodes(&dump)?;
    let script = debugfs_script(&inodes, p.epoch);
    let script_path = p.scratch.join("debugfs-times");
    std::fs::write(&script_path, script)?;
    Cmd::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&script_path)
        .arg(p.image)
        .env("E2FSPROGS_FAKE_TIME", &epoch)
        .run()
        .context("debugfs could not pin the inode times")?;
    Cmd::new("e2fsck")
        .args(["-f", "-n"])
        .arg(p.image)
        .env("E2FSPROGS_FAKE_TIME", &epoch)
        .run()
        .context("the root filesystem does not pass e2fsck")?;
    Ok(())
}

/// In-use inode numbers from `dumpe2fs` output, excluding the reserved
/// ones other than the root directory (2): every inode that mkfs -d
/// populated from the tree.
pub fn used_inodes(dumpe2fs: &str) -> Result<Vec<u64>> {
    let field = |name: &str| -> Result<u64> {
        dumpe2fs
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim_start_matches(':').trim().parse().ok())
            .with_context(|| format!("dumpe2fs output lacks `{name}`"))
    };
    let count = field("Inode count")?;
    let first = field("First inode")?;
    let mut free = vec![false; count as usize + 1];
    let mut groups = 0;
    for line in dumpe2fs.lines() {
        let Some(list) = line.trim_start().strip_prefix("Free inodes: ") else {
            continue;
        };
        groups += 1;
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (a, b) = match item.split_once('-') {
                Some((a, b)) => (a, b),
                None => (item, item),
            };
            let (a, b): (u64, u64) = (
                a.parse()
                    .with_context(|| format!("bad free inode range {item:?}"))?,
                b.parse()
                    .with_context(|| format!("bad free inode range {item:?}"))?,
            );
            if a > b || b > count {
                bail!("free inode range {item:?} is outside 1..={count}");
            }
            for i in a..=b {
                free[i as usize] = true;
            }
        }
    }
    if groups == 0 {
        bail!("dumpe2fs output lists no group's free inodes");
    }
    Ok((1..=count)
        .filter(|&i| !free[i as usize] && (i == 2 || i >= first))
        .collect())
}

/// The debugfs commands setting ctime and atime of each inode to `epoch`.
pub fn debugfs_script(inodes: &[u64], epoch: i64) -> String {
    let mut s = String::with_capacity(inodes.len() * 64);
    for i in inodes {
        s.push_str(&format!(
            "sif <{i}> ctime @{epoch}\nsif <{i}> atime @{epoch}\n"
        ));
    }
    s
}

/// Size of the filesystem for a tree of `content` bytes and `inodes`
/// entries: the content, room for metadata (inode tables at one 256-byte
/// inode per 16 KiB, block bitmaps, directory blocks, some fragmentation:
/// 1/8 of the content), the journal (64 MiB at most for these sizes), and
/// the spec's slack; in whole MiB.
pub fn filesystem_size(content: u64, inodes: u64, slack_mib: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    let metadata = content / 8 + inodes * 256;
    let journal = 64 * MIB;
    let total = content + metadata + journal + slack_mib * MIB;
    total.div_ceil(MIB) * MIB
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "\
Filesystem volume name:   coloc-root
Inode count:              8192
Block count:              32768
First inode:              11
Inode size:	          256

Group 0: (Blocks 0-32767) csum 0x1234
  Primary superblock at 0, Group descriptors at 1-1
  Free blocks: 1200-32767
  Free inodes: 15-20, 22-4096
Group 1: (Blocks 32768-65535)
  Free blocks: 
  Free inodes: 4097-8000, 8002-8192
";

    #[test]
    fn used_inodes_are_the_complement_of_free_ranges() {
        let used = used_inodes(DUMP).expect("parses");
        assert_eq!(used, vec![2, 11, 12, 13, 14, 21, 8001]);
    }

    #[test]
    fn a_full_group_has_an_empty_free_list() {
        let d = DUMP.replace("Free inodes: 4097-8000, 8002-8192", "Free inodes: ");
        let used = used_inodes(&d).expect("parses");
        assert_eq!(used.len(), 7 + 4096 - 1);
    }

    #[test]
    fn malformed_dumps_are_errors() {
        assert!(used_inodes("nothing").is_err());
        assert!(used_inodes(&DUMP.replace("22-4096", "22-9999")).is_err());
        assert!(used_inodes(&DUMP.replace("22-4096", "x-4096")).is_err());
        let no_groups: String = DUMP
            .lines()
            .filter(|l| !l.contains("Free inodes"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(used_inodes(&no_groups).is_err());
    }

    #[test]
    fn debugfs_script_sets_both_times() {
        assert_eq!(
            debugfs_script(&[2, 12], 1700000000),
            "sif <2> ctime @1700000000\nsif <2> atime @1700000000\n\
             sif <12> ctime @1700000000\nsif <12> atime @1700000000\n"
        );
    }

    #[test]
    fn size_is_content_plus_overhead_and_slack_in_mib() {
        const MIB: u64 = 1 << 20;
        let s = filesystem_size(800 * MIB, 40_000, 512);
        assert_eq!(s % MIB, 0);
        assert!(s >= 800 * MIB + 512 * MIB + 64 * MIB + 100 * MIB, "{s}");
        assert!(s <= 1500 * MIB, "{s}");
    }

    #[test]
    fn mkfs_pins_every_inode_time() {
        if crate::runner::resolve("mkfs.ext4").is_err()
            || crate::runner::resolve("debugfs").is_err()
        {
            eprintln!("e2fsprogs missing; skipped");
            return;
        }
        let t = tempfile::tempdir().expect("tempdir");
        let tree = t.path().join("tree");
        std::fs::create_dir_all(tree.join("etc")).expect("mkdir");
        std::fs::write(tree.join("etc/hostname"), "x\n").expect("write");
        let epoch = 1_700_000_000;
        crate::tree::clamp_and_measure(&tree, epoch).expect("clamp");
        let mut hashes = Vec::new();
        for i in 0..2 {
            let img = t.path().join(format!("root{i}.img"));
            make(&Ext4Params {
                tree: &tree,
                image: &img,
                size_bytes: 16 << 20,
                uuid: "5d3ef1a2-0000-4000-8000-000000000001",
                hash_seed: "5d3ef1a2-0000-4000-8000-000000000002",
                epoch,
                scratch: t.path(),
            })
            .expect("mkfs");
            hashes.push(crate::digest::sha256_file(&img).expect("hash"));
        }
        assert_eq!(hashes[0], hashes[1]);
        // The source tree's ctimes are "now"; the image's must be the epoch.
        let img = t.path().join("root0.img");
        for path in ["/", "/etc", "/etc/hostname", "/lost+found"] {
            let stat = Cmd::new("debugfs")
                .arg("-R")
                .arg(format!("stat {path}"))
                .arg(&img)
                .run()
                .expect("debugfs stat")
                .stdout_str();
            for field in ["ctime", "atime", "mtime", "crtime"] {
                let want = format!("{field}: 0x{epoch:08x}:00000000");
                assert!(stat.contains(&want), "{path} {field}: {stat}");
            }
        }
    }
}
