//! What the user watches during a build or a lock: each stage printed as it
//! starts with the time elapsed since the command began, and indented notes
//! under it. Output goes to stderr; stdout is kept for results that scripts
//! read (`coloc-image hash`).

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Progress {
    start: Instant,
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            start: Instant::now(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// A new stage begins.
    pub fn stage(&self, what: &str) {
        eprintln!("[{}] {what}", stamp(self.elapsed()));
    }

    /// A detail of the current stage.
    pub fn note(&self, what: &str) {
        eprintln!("           {what}");
    }
}

/// `elapsed` as a fixed-width `MMmSS.Ss`-like stamp, e.g. ` 3m07.2s`.
pub fn stamp(elapsed: Duration) -> String {
    let tenths = elapsed.as_millis() / 100;
    let (min, rest) = (tenths / 600, tenths % 600);
    format!("{min:>2}m{:02}.{}s", rest / 10, rest % 10)
}

/// A byte count for people: `1.4 GiB`, `312.0 MiB`, `12 KiB`.
pub fn human_bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let f = n as f64;
    if f >= KIB * KIB * KIB {
        format!("{:.2} GiB", f / (KIB * KIB * KIB))
    } else if f >= KIB * KIB {
        format!("{:.1} MiB", f / (KIB * KIB))
    } else {
        format!("{} KiB", n.div_ceil(1024))
    }
}

/// The lines of mmdebstrap's verbose output (and of our hook inside it)
/// worth showing when the user did not ask for everything.
pub fn is_milestone(line: &str) -> bool {
    line.starts_with("I: ")
        || line.starts_with("W: ")
        || line.starts_with("E: ")
        || line.starts_with("coloc-hook:")
        || line.contains("DKMS")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milestones_are_stages_and_hook_lines() {
        assert!(is_milestone(
            "I: installing remaining packages inside the chroot..."
        ));
        assert!(is_milestone("coloc-hook: purging the build packages"));
        assert!(!is_milestone("Setting up libc6:amd64 (2.36-9+deb12u9) ..."));
    }

    #[test]
    fn stamps_are_fixed_width() {
        assert_eq!(stamp(Duration::from_millis(0)), " 0m00.0s");
        assert_eq!(stamp(Duration::from_millis(187_250)), " 3m07.2s");
        assert_eq!(stamp(Duration::from_secs(3600)), "60m00.0s");
    }

    #[test]
    fn bytes_for_people() {
        assert_eq!(human_bytes(12 * 1024), "12 KiB");
        assert_eq!(human_bytes(312 * 1024 * 1024), "312.0 MiB");
        assert_eq!(human_bytes(1536 * 1024 * 1024), "1.50 GiB");
    }
}
