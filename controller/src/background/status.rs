//! What each background task did last, as admins read it (`coloc tasks`):
//! period, runs, the start, duration and outcome of the last run, and the
//! most recent error even after later runs succeeded, so that a failure
//! that comes and goes is still visible.
//!
//! Only the driver ([`super::Driver`]) writes here; the API only reads a
//! copy. Memory only: a restarted colocd starts with no runs.

use std::sync::Mutex;
use std::time::Duration;

/// How a run ended: a short summary of what it did, or the error text
/// (with its causes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok(String),
    Error(String),
}

/// One task's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStatus {
    pub name: &'static str,
    pub description: &'static str,
    pub period: Duration,
    /// Finished runs.
    pub runs: u64,
    /// Finished runs that failed.
    pub failures: u64,
    /// A run is in progress right now.
    pub running: bool,
    /// Start of the current or last run, on the controller's clock.
    pub last_start_unix_ms: Option<i64>,
    pub last_duration: Option<Duration>,
    /// The last finished run.
    pub last_outcome: Option<Outcome>,
    /// The most recent failure: when its run started, and the error.
    pub last_error: Option<(i64, String)>,
}

/// Every task's status, in the order they were registered.
#[derive(Debug, Default)]
pub struct TaskBoard {
    tasks: Mutex<Vec<TaskStatus>>,
}

/// Index of a task on its board, handed out by [`TaskBoard::add`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot(usize);

impl TaskBoard {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<TaskStatus>> {
        // A panic while holding this short lock leaves plain values behind,
        // still good enough to show.
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of every task's status.
    pub fn list(&self) -> Vec<TaskStatus> {
        self.lock().clone()
    }

    /// The status of the task called `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<TaskStatus> {
        self.lock().iter().find(|t| t.name == name).cloned()
    }

    pub(super) fn add(
        &self,
        name: &'static str,
        description: &'static str,
        period: Duration,
    ) -> Slot {
        let mut tasks = self.lock();
        debug_assert!(
            tasks.iter().all(|t| t.name != name),
            "background task {name} registered twice"
        );
        tasks.push(TaskStatus {
            name,
            description,
            period,
            runs: 0,
            failures: 0,
            running: false,
            last_start_unix_ms: None,
            last_duration: None,
            last_outcome: None,
            last_error: None,
        });
        Slot(tasks.len() - 1)
    }

    pub(super) fn started(&self, slot: Slot, at_unix_ms: i64) {
        if let Some(t) = self.lock().get_mut(slot.0) {
            t.running = true;
            t.last_start_unix_ms = Some(at_unix_ms);
        }
    }

    pub(super) fn finished(&self, slot: Slot, took: Duration, outcome: Outcome) {
        if let Some(t) = self.lock().get_mut(slot.0) {
            t.running = false;
            t.runs += 1;
            t.last_duration = Some(took);
            if let Outcome::Error(text) = &outcome {
                t.failures += 1;
                t.last_error = Some((t.last_start_unix_ms.unwrap_or(0), text.clone()));
            }
            t.last_outcome = Some(outcome);
        }
    }
}
