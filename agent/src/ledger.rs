//! The ledger: the last desired configuration the agent accepted.
//!
//! The node must keep working when the controller is down, including after
//! a reboot, so every accepted [`DesiredConfig`] is persisted here before
//! it is applied, and reloaded at start. The ledger only moves forward: a
//! configuration older than the one held is refused. On disk
//! ([`FileLedger`]) the protobuf bytes sit behind a small header carrying a
//! format version, the length and a SHA-256 of the payload, so a torn or
//! corrupted file is reported as such and never applied. This module does
//! not decide what to do with a configuration; the session and the
//! reconciler do.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use coloc_proto::agent::v1::DesiredConfig;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::durable;

/// File name of the ledger inside the state directory.
pub const LEDGER_FILE: &str = "ledger.pb";

const MAGIC: &[u8; 4] = b"CLDG";
const FORMAT_VERSION: u8 = 1;
/// magic + version + payload length (u32, big endian) + SHA-256.
const HEADER_LEN: usize = 4 + 1 + 4 + 32;

/// What went wrong with the ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger {path}: I/O error")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ledger {path} is corrupted ({reason}); it is not applied")]
    Corrupt { path: PathBuf, reason: String },
    #[error("ledger {path}: format version {version} is not supported by this agent")]
    UnsupportedVersion { path: PathBuf, version: u8 },
    #[error("refusing desired generation {offered}: the ledger holds generation {held}")]
    Stale { held: u64, offered: u64 },
    #[error("ledger lock poisoned by a panic")]
    Poisoned,
}

/// Storage of the last accepted desired configuration.
///
/// Implementations do blocking I/O; async callers run them on the
/// blocking pool.
pub trait LedgerStore: Send + Sync {
    /// The configuration held, `None` when nothing was ever stored.
    fn load(&self) -> Result<Option<DesiredConfig>, LedgerError>;
    /// Replaces the held configuration. Refuses (with
    /// [`LedgerError::Stale`]) a generation lower than the one held; the
    /// same generation is accepted and rewritten.
    fn store(&self, desired: &DesiredConfig) -> Result<(), LedgerError>;
}

/// The ledger in `<state_dir>/ledger.pb`.
#[derive(Debug)]
pub struct FileLedger {
    path: PathBuf,
    /// Serialises stores: the generation check and the replacement must
    /// not interleave.
    write_lock: Mutex<()>,
}

impl FileLedger {
    /// The ledger of the agent whose state lives in `state_dir`.
    pub fn new(state_dir: &Path) -> FileLedger {
        FileLedger::at(state_dir.join(LEDGER_FILE))
    }

    /// A ledger at an explicit path.
    pub fn at(path: PathBuf) -> FileLedger {
        FileLedger {
            path,
            write_lock: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Encodes a configuration with the ledger header.
pub fn encode(desired: &DesiredConfig) -> Vec<u8> {
    let payload = desired.encode_to_vec();
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    // A ledger is a few hundred bytes; the message size limit keeps it far
    // below 4 GiB, so the conversion cannot fail in practice.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&Sha256::digest(&payload));
    out.extend_from_slice(&payload);
    out
}

/// Decodes ledger bytes, checking header, length and checksum.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<DesiredConfig, LedgerError> {
    let corrupt = |reason: &str| LedgerError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    if bytes.len() < HEADER_LEN {
        return Err(corrupt("shorter than its header"));
    }
    if &bytes[..4] != MAGIC {
        return Err(corrupt("not a coloc ledger (bad magic)"));
    }
    if bytes[4] != FORMAT_VERSION {
        return Err(LedgerError::UnsupportedVersion {
            path: path.to_path_buf(),
            version: bytes[4],
        });
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&bytes[5..9]);
    let len = u32::from_be_bytes(len) as usize;
    let payload = &bytes[HEADER_LEN..];
    if payload.len() != len {
        return Err(corrupt("length does not match its header (torn write?)"));
    }
    if Sha256::digest(payload).as_slice() != &bytes[9..HEADER_LEN] {
        return Err(corrupt("checksum mismatch"));
    }
    DesiredConfig::decode(payload).map_err(|e| corrupt(&format!("undecodable payload: {e}")))
}

impl LedgerStore for FileLedger {
    fn load(&self) -> Result<Option<DesiredConfig>, LedgerError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => decode(&self.path, &bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(LedgerError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    fn store(&self, desired: &DesiredConfig) -> Result<(), LedgerError> {
        let _guard = self.write_lock.lock().map_err(|_| LedgerError::Poisoned)?;
        match self.load() {
            Ok(Some(held)) if held.generation > desired.generation => {
                return Err(LedgerError::Stale {
                    held: held.generation,
                    offered: desired.generation,
                });
            }
            Ok(_) => {}
            // A damaged ledger must not block the controller from
            // repairing it with a fresh configuration.
            Err(e @ (LedgerError::Corrupt { .. } | LedgerError::UnsupportedVersion { .. })) => {
                tracing::warn!(error = %e, "overwriting unreadable ledger");
            }
            Err(e) => return Err(e),
        }
        if let Some(dir) = self.path.parent() {
            durable::ensure_private_dir(dir).map_err(|source| LedgerError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        durable::write_atomic(&self.path, &encode(desired), 0o600).map_err(|source| {
            LedgerError::Io {
                path: self.path.clone(),
                source,
            }
        })
    }
}

/// A ledger kept in memory, for simulations and tests.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    held: Mutex<Option<DesiredConfig>>,
}

impl MemoryLedger {
    pub fn new() -> MemoryLedger {
        MemoryLedger::default()
    }

    /// A ledger already holding `desired`.
    pub fn holding(desired: DesiredConfig) -> MemoryLedger {
        MemoryLedger {
            held: Mutex::new(Some(desired)),
        }
    }
}

impl LedgerStore for MemoryLedger {
    fn load(&self) -> Result<Option<DesiredConfig>, LedgerError> {
        Ok(self.held.lock().map_err(|_| LedgerError::Poisoned)?.clone())
    }

    fn store(&self, desired: &DesiredConfig) -> Result<(), LedgerError> {
        let mut held = self.held.lock().map_err(|_| LedgerError::Poisoned)?;
        if let Some(current) = held.as_ref()
            && current.generation > desired.generation
        {
            return Err(LedgerError::Stale {
                held: current.generation,
                offered: desired.generation,
            });
        }
        *held = Some(desired.clone());
        Ok(())
    }
}
