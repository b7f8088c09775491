//! Reading the serial console log. systemd colours its status lines
//! (`[  OK  ] Reached target \e[0;1;39mmulti-user.target\e[0m`), so needles
//! are matched against the text with ANSI escape sequences and carriage
//! returns removed, which is also what a human reads in the tails printed on
//! failure. Matching is incremental: a needle split across two reads of the
//! growing file is still found.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Removes ANSI escape sequences (CSI `ESC [ ... final`, OSC `ESC ] ... BEL`
/// or `ESC \`, and two-byte `ESC x`) and `\r`, across chunk boundaries.
#[derive(Debug, Default)]
pub(crate) struct AnsiStripper {
    state: StripState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum StripState {
    #[default]
    Text,
    Escape,
    Csi,
    Osc,
    OscEscape,
}

impl AnsiStripper {
    pub(crate) fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            self.state = match (self.state, b) {
                (StripState::Text, 0x1b) => StripState::Escape,
                (StripState::Text, b'\r') => StripState::Text,
                (StripState::Text, _) => {
                    out.push(b);
                    StripState::Text
                }
                (StripState::Escape, b'[') => StripState::Csi,
                (StripState::Escape, b']') => StripState::Osc,
                (StripState::Escape, _) => StripState::Text,
                // CSI parameters and intermediates are 0x20..=0x3f; the
                // final byte is 0x40..=0x7e.
                (StripState::Csi, 0x40..=0x7e) => StripState::Text,
                (StripState::Csi, _) => StripState::Csi,
                (StripState::Osc, 0x07) => StripState::Text,
                (StripState::Osc, 0x1b) => StripState::OscEscape,
                (StripState::Osc, _) => StripState::Osc,
                (StripState::OscEscape, _) => StripState::Text,
            };
        }
    }
}

/// Finds a needle in a stream of console bytes.
#[derive(Debug)]
pub(crate) struct NeedleScanner {
    needle: Vec<u8>,
    strip: AnsiStripper,
    /// Stripped text not yet ruled out: at most `needle.len() - 1` bytes
    /// carried over from earlier chunks, plus the current chunk.
    window: Vec<u8>,
}

impl NeedleScanner {
    pub(crate) fn new(needle: &str) -> NeedleScanner {
        NeedleScanner {
            needle: needle.as_bytes().to_vec(),
            strip: AnsiStripper::default(),
            window: Vec::new(),
        }
    }

    /// Feeds the next bytes; true once the needle has been seen.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> bool {
        if self.needle.is_empty() {
            return true;
        }
        self.strip.push(bytes, &mut self.window);
        if self
            .window
            .windows(self.needle.len())
            .any(|w| w == self.needle.as_slice())
        {
            return true;
        }
        let keep = self.needle.len() - 1;
        if self.window.len() > keep {
            self.window.drain(..self.window.len() - keep);
        }
        false
    }
}

/// Reads whatever `path` holds past `offset`, returning the bytes and the
/// new offset. A missing file reads as empty: QEMU creates it on start.
pub(crate) fn read_from(path: &Path, offset: u64) -> std::io::Result<(Vec<u8>, u64)> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len <= offset {
        return Ok((Vec::new(), offset));
    }
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity((len - offset) as usize);
    file.read_to_end(&mut buf)?;
    let end = offset + buf.len() as u64;
    Ok((buf, end))
}

/// The last `max_lines` lines of `path` past `from`, escape sequences
/// removed; only the last 256 KiB are read.
pub(crate) fn tail(path: &Path, from: u64, max_lines: usize) -> String {
    const MAX_BYTES: u64 = 256 * 1024;
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) => return format!("(cannot read {}: {e})", path.display()),
    };
    let start = from.max(len.saturating_sub(MAX_BYTES));
    let bytes = match read_from(path, start) {
        Ok((bytes, _)) => bytes,
        Err(e) => return format!("(cannot read {}: {e})", path.display()),
    };
    tail_of(&bytes, max_lines)
}

pub(crate) fn tail_of(bytes: &[u8], max_lines: usize) -> String {
    let mut clean = Vec::with_capacity(bytes.len());
    AnsiStripper::default().push(bytes, &mut clean);
    let text = String::from_utf8_lossy(&clean);
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(max_lines);
    lines[skip..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(input: &[u8]) -> String {
        let mut out = Vec::new();
        AnsiStripper::default().push(input, &mut out);
        String::from_utf8(out).unwrap()
    }

    // Recorded from the fixture guest's console under OVMF.
    const SYSTEMD_LINE: &[u8] = b"[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mmulti-user.target\x1b[0m - Multi-User System.\r\n";

    #[test]
    fn systemd_colours_and_carriage_returns_are_removed() {
        assert_eq!(
            strip(SYSTEMD_LINE),
            "[  OK  ] Reached target multi-user.target - Multi-User System.\n"
        );
        // OSC (title) sequences, two-byte escapes and the cursor-position
        // CSI that OVMF emits.
        assert_eq!(strip(b"a\x1b]0;title\x07b\x1bcc\x1b[06;01Hd"), "abcd");
        assert_eq!(strip(b"a\x1b]0;t\x1b\\b"), "ab");
    }

    #[test]
    fn a_needle_is_found_through_escape_codes() {
        let mut s = NeedleScanner::new("Reached target multi-user.target");
        assert!(s.feed(SYSTEMD_LINE));
    }

    #[test]
    fn a_needle_split_across_reads_is_found_byte_by_byte() {
        let mut s = NeedleScanner::new("Reached target multi-user.target");
        let mut found = false;
        for b in SYSTEMD_LINE {
            found |= s.feed(std::slice::from_ref(b));
        }
        assert!(found);
    }

    #[test]
    fn absent_needles_are_not_found_and_memory_stays_bounded() {
        let mut s = NeedleScanner::new("login:");
        for _ in 0..1000 {
            assert!(!s.feed(b"Starting something... login"));
        }
        assert!(s.window.len() < "login:".len());
        assert!(s.feed(b": "));
    }

    #[test]
    fn an_empty_needle_matches_at_once() {
        assert!(NeedleScanner::new("").feed(b""));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail_of(b"1\n2\n3\n4\n", 2), "3\n4");
        assert_eq!(
            tail_of(SYSTEMD_LINE, 5),
            "[  OK  ] Reached target multi-user.target - Multi-User System."
        );
    }

    #[test]
    fn reading_a_growing_file_from_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        assert_eq!(read_from(&path, 0).unwrap(), (Vec::new(), 0));
        std::fs::write(&path, b"hello ").unwrap();
        let (bytes, off) = read_from(&path, 0).unwrap();
        assert_eq!((bytes.as_slice(), off), (&b"hello "[..], 6));
        std::fs::write(&path, b"hello world").unwrap();
        let (bytes, off) = read_from(&path, off).unwrap();
        assert_eq!((bytes.as_slice(), off), (&b"world"[..], 11));
        assert_eq!(tail(&path, 6, 10), "world");
    }
}
