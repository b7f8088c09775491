//! [`Firewall`]: the node's packet filter, as far as coloc owns it: one
//! nftables table, `inet coloc` ([`TABLE_FAMILY`], [`TABLE_NAME`]).
//!
//! [`RealFirewall`] hands a complete ruleset to `nft -f` (one netlink
//! transaction: the whole file is in force afterwards, or, on any error,
//! nothing of it) and keeps a copy of what it applied, which the image's
//! `nftables.service` loads at the next boot before any app starts. It
//! reads back only the comment the agent tags its table with
//! (`nft list table inet coloc`), to notice a table that someone flushed,
//! deleted or replaced by hand.
//!
//! The ruleset itself is the agent's to write; this module only refuses,
//! before anything runs, a file that would touch anything but coloc's
//! table ([`check_scope`]): rules other software or an admin put in other
//! tables are never flushed or changed from here.
//!
//! [`FakeFirewall`] keeps the last ruleset in memory for the simulated
//! agent and the reconciler's tests.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use crate::runner::{CommandError, Runner};
use crate::{Firewall, HostError, durable};

/// coloc's table: `table inet coloc`.
pub const TABLE_FAMILY: &str = "inet";
pub const TABLE_NAME: &str = "coloc";

/// nft's exit status for every error, a missing table included.
const NFT_ERROR_STATUS: i32 = 1;

/// What `nft list table` says of a table that does not exist.
const NO_SUCH_TABLE: &str = "No such file or directory";

/// Refuses a ruleset that does anything at its top level but create,
/// delete or fill `table inet coloc`: no `flush ruleset`, no other table,
/// no `add rule` into someone else's chain. Lines inside the table's
/// braces are the table's own.
pub fn check_scope(ruleset: &str) -> Result<(), HostError> {
    let table = format!("table {TABLE_FAMILY} {TABLE_NAME}");
    let delete = format!("delete {table}");
    let refused = |line: &str, why: &str| HostError::Refused {
        object: "firewall ruleset".into(),
        reason: format!("{why}: {:?}", line.chars().take(80).collect::<String>()),
    };
    let mut depth: usize = 0;
    for raw in ruleset.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.contains(';') && depth == 0 {
            return Err(refused(line, "several statements on one top-level line"));
        }
        if depth == 0 {
            let allowed = line == table || line == delete || line == format!("{table} {{").as_str();
            if !allowed {
                return Err(refused(
                    line,
                    "a top-level statement outside coloc's own table",
                ));
            }
        }
        for c in line.chars() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth
                        .checked_sub(1)
                        .ok_or_else(|| refused(line, "a closing brace with no opening one"))?;
                }
                _ => {}
            }
        }
    }
    if depth != 0 {
        return Err(refused("", "unbalanced braces"));
    }
    Ok(())
}

/// The comment of the table in `nft list table inet coloc` output: the
/// line right after the table's opening line, if it is a comment.
pub fn parse_table_comment(listing: &str) -> Option<String> {
    let opening = format!("table {TABLE_FAMILY} {TABLE_NAME} {{");
    let mut lines = listing.lines().map(str::trim);
    lines.by_ref().find(|l| *l == opening)?;
    let next = lines.next()?;
    let quoted = next.strip_prefix("comment \"")?.strip_suffix('"')?;
    Some(quoted.to_owned())
}

/// [`Firewall`] through `nft`.
#[derive(Debug, Clone)]
pub struct RealFirewall {
    runner: Runner,
    saved: PathBuf,
}

impl RealFirewall {
    /// Keeps the applied ruleset at `saved` (the image's nftables.service
    /// loads `/var/lib/coloc/firewall.nft` at boot).
    pub fn new(runner: Runner, saved: impl Into<PathBuf>) -> RealFirewall {
        RealFirewall {
            runner,
            saved: saved.into(),
        }
    }

    /// Where the ruleset waits while nft checks and applies it.
    fn pending(&self) -> PathBuf {
        let name = self
            .saved
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.saved.with_file_name(format!("{name}.new"))
    }
}

fn write(path: &Path, text: &str) -> Result<(), HostError> {
    durable::write_atomic(path, text.as_bytes(), 0o600).map_err(|source| HostError::Io {
        what: "cannot write the firewall ruleset",
        path: path.display().to_string(),
        source,
    })
}

#[async_trait]
impl Firewall for RealFirewall {
    async fn table_comment(&self) -> Result<Option<String>, HostError> {
        let out = self
            .runner
            .run_allow_status(
                "nft",
                &["list", "table", TABLE_FAMILY, TABLE_NAME],
                &[NFT_ERROR_STATUS],
            )
            .await
            .map_err(|e| HostError::storage("list", "coloc's firewall table", e))?;
        if out.status == 0 {
            return Ok(parse_table_comment(&out.stdout));
        }
        if out.stderr.contains(NO_SUCH_TABLE) {
            return Ok(None);
        }
        Err(HostError::Storage {
            op: "list",
            object: "coloc's firewall table".into(),
            source: CommandError::Failed {
                command: format!("nft list table {TABLE_FAMILY} {TABLE_NAME}"),
                status: out.status,
                stderr_tail: crate::runner::stderr_tail(&out.stderr),
            },
        })
    }

    async fn apply(&self, ruleset: &str) -> Result<(), HostError> {
        check_scope(ruleset)?;
        let pending = self.pending();
        write(&pending, ruleset)?;
        let path = pending.to_str().ok_or_else(|| HostError::Refused {
            object: "firewall ruleset".into(),
            reason: format!("{} is not a UTF-8 path", pending.display()),
        })?;
        self.runner
            .run("nft", &["-f", path])
            .await
            .map_err(|e| HostError::storage("apply", "the firewall ruleset", e))?;
        // Kept for the next boot only once the kernel took it.
        std::fs::rename(&pending, &self.saved).map_err(|source| HostError::Io {
            what: "cannot keep the applied firewall ruleset",
            path: self.saved.display().to_string(),
            source,
        })?;
        if let Some(dir) = self.saved.parent() {
            durable::sync_dir(dir).map_err(|source| HostError::Io {
                what: "cannot keep the applied firewall ruleset",
                path: dir.display().to_string(),
                source,
            })?;
        }
        tracing::debug!(saved = %self.saved.display(), "firewall ruleset applied");
        Ok(())
    }
}

/// In-memory [`Firewall`]: the last ruleset applied, and its comment as
/// the kernel would report it. Refuses out-of-scope rulesets as the real
/// one does.
#[derive(Debug, Default)]
pub struct FakeFirewall {
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    ruleset: Option<String>,
    applies: u32,
    fails: bool,
}

impl FakeFirewall {
    pub fn new() -> FakeFirewall {
        FakeFirewall::default()
    }

    /// The ruleset in force, if any.
    pub fn ruleset(&self) -> Option<String> {
        self.lock().ruleset.clone()
    }

    /// How many times a ruleset was applied.
    pub fn applies(&self) -> u32 {
        self.lock().applies
    }

    /// Drops coloc's table, as `nft delete table inet coloc` by hand would.
    pub fn delete_table(&self) {
        self.lock().ruleset = None;
    }

    /// When set, applying fails as nft does on a kernel without nf_tables.
    pub fn set_fails(&self, fails: bool) {
        self.lock().fails = fails;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Firewall for FakeFirewall {
    async fn table_comment(&self) -> Result<Option<String>, HostError> {
        Ok(self.lock().ruleset.as_deref().and_then(|text| {
            // The kernel lists what it holds; the text applied holds the
            // same comment on the line after the table's opening.
            parse_table_comment(text)
        }))
    }

    async fn apply(&self, ruleset: &str) -> Result<(), HostError> {
        check_scope(ruleset)?;
        let mut state = self.lock();
        if state.fails {
            return Err(HostError::Storage {
                op: "apply",
                object: "the firewall ruleset".into(),
                source: CommandError::Failed {
                    command: "nft -f firewall.nft.new".into(),
                    status: NFT_ERROR_STATUS,
                    stderr_tail: "Error: Could not process rule: Operation not supported".into(),
                },
            });
        }
        state.ruleset = Some(ruleset.to_owned());
        state.applies += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = "# comment\ntable inet coloc\ndelete table inet coloc\ntable inet coloc {\n\tcomment \"coloc sha256:ab\"\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t}\n}\n";

    #[test]
    fn only_colocs_table_may_be_touched() {
        check_scope(OURS).expect("ours");
        for bad in [
            "flush ruleset\n",
            "table inet filter {\n}\n",
            "delete table inet filter\n",
            "add rule inet filter input accept\n",
            "table inet coloc\nflush ruleset\n",
            "table inet coloc; flush ruleset\n",
            "table inet coloc {\n}\n}\nflush ruleset\n{\n",
            "table inet coloc {\n",
            "table ip coloc {\n}\n",
            "include \"/etc/other.nft\"\n",
        ] {
            let err = check_scope(bad).expect_err(bad);
            assert!(matches!(err, HostError::Refused { .. }), "{bad}: {err:?}");
        }
    }

    #[test]
    fn the_comment_is_read_from_a_recorded_listing() {
        let listing = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/nft-list-table-coloc.txt"
        ))
        .expect("fixture");
        assert_eq!(
            parse_table_comment(&listing).as_deref(),
            Some("coloc-agent sha256:0123456789abcdef")
        );
        assert_eq!(
            parse_table_comment("table inet coloc {\n\tchain input {\n\t}\n}\n"),
            None
        );
        assert_eq!(parse_table_comment(""), None);
        assert_eq!(
            parse_table_comment("table inet other {\n\tcomment \"x\"\n}\n"),
            None
        );
    }

    #[tokio::test]
    async fn the_fake_keeps_the_last_ruleset_and_its_comment() {
        let fake = FakeFirewall::new();
        assert_eq!(fake.table_comment().await.expect("read"), None);
        fake.apply(OURS).await.expect("applies");
        assert_eq!(
            fake.table_comment().await.expect("read").as_deref(),
            Some("coloc sha256:ab")
        );
        assert!(fake.apply("flush ruleset\n").await.is_err());
        assert_eq!(fake.ruleset().as_deref(), Some(OURS));
        fake.delete_table();
        assert_eq!(fake.table_comment().await.expect("read"), None);
        fake.set_fails(true);
        assert!(fake.apply(OURS).await.is_err());
        assert_eq!(fake.applies(), 1);
    }

    #[tokio::test]
    async fn the_real_firewall_refuses_before_running_anything() {
        // No nft is run: the scope check comes first, and nothing is kept.
        let dir = tempfile::tempdir().expect("tempdir");
        let saved = dir.path().join("firewall.nft");
        let real = RealFirewall::new(Runner::new(), &saved);
        let err = real.apply("flush ruleset\n").await.expect_err("refused");
        assert!(matches!(err, HostError::Refused { .. }), "{err:?}");
        assert!(!saved.exists());
        assert!(!dir.path().join("firewall.nft.new").exists());
    }
}
