//! The driver: runs each registered task on its own timer until shutdown
//! and records what every run did on the [`TaskBoard`].
//!
//! Each task gets one tokio task of its own, so a slow task delays only
//! itself, and a task never overlaps itself: the next run starts only after
//! the current one has finished (missed ticks are delayed, not queued).
//! Shutdown is checked between runs; a run in progress finishes, so a task
//! is never cut in the middle of a store write. The driver knows nothing of
//! what the tasks do.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::status::{Outcome, Slot, TaskBoard};
use crate::store::StoreError;
use crate::time::Clock;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("cannot {action}")]
    Store {
        /// What the task was doing, e.g. "record heartbeats".
        action: String,
        #[source]
        source: StoreError,
    },
    /// The run went through several objects and some failed; the others
    /// were done.
    #[error("{done}; failed: {failed}")]
    Partly {
        /// What was done, as the summary of a run that succeeds says it.
        done: String,
        /// The objects that failed, each with its reason.
        failed: String,
    },
    /// Something a person has to act on, which the task cannot do itself
    /// (the CA nearing its end).
    #[error("{0}")]
    NeedsAdmin(String),
    #[error("cannot {action}")]
    Other {
        action: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl TaskError {
    pub fn store(action: impl Into<String>) -> impl FnOnce(StoreError) -> TaskError {
        let action = action.into();
        move |source| TaskError::Store { action, source }
    }
}

/// One kind of periodic work. `activate` does one run and says in a few
/// words what it did ("2 nodes marked unreachable"), or why it failed.
#[async_trait::async_trait]
pub trait BackgroundTask: Send {
    async fn activate(&mut self) -> Result<String, TaskError>;
}

/// A task with its name, what it is for, and how often it runs.
pub struct TaskDefinition {
    /// Short, stable, kebab-case: scripts read it from `coloc tasks --json`.
    pub name: &'static str,
    pub description: &'static str,
    pub period: Duration,
    /// Run once more when the driver stops (a last heartbeat flush, so a
    /// clean shutdown loses nothing).
    pub activate_on_shutdown: bool,
    pub task: Box<dyn BackgroundTask>,
}

impl std::fmt::Debug for TaskDefinition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskDefinition")
            .field("name", &self.name)
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

/// The running tasks.
#[derive(Debug)]
pub struct Driver {
    loops: Vec<(&'static str, JoinHandle<()>)>,
}

impl Driver {
    /// Registers every task on `board` and starts them; each runs at once,
    /// then every period, until `shutdown` turns true (or its sender goes).
    pub fn start(
        board: Arc<TaskBoard>,
        clock: Arc<dyn Clock>,
        tasks: Vec<TaskDefinition>,
        shutdown: watch::Receiver<bool>,
    ) -> Driver {
        let loops = tasks
            .into_iter()
            .map(|def| {
                let slot = board.add(def.name, def.description, def.period);
                let name = def.name;
                let runner = Runner {
                    board: board.clone(),
                    clock: clock.clone(),
                    slot,
                    def,
                };
                (name, tokio::spawn(runner.drive(shutdown.clone())))
            })
            .collect();
        Driver { loops }
    }

    /// Waits for every task to stop (after shutdown was signalled).
    pub async fn join(self) {
        for (name, handle) in self.loops {
            if let Err(err) = handle.await {
                tracing::error!(task = name, error = %err, "background task loop ended abnormally");
            }
        }
    }
}

struct Runner {
    board: Arc<TaskBoard>,
    clock: Arc<dyn Clock>,
    slot: Slot,
    def: TaskDefinition,
}

impl Runner {
    async fn drive(mut self, mut shutdown: watch::Receiver<bool>) {
        // tokio refuses a zero period; the configuration never gives one.
        let period = self.def.period.max(Duration::from_millis(1));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            if *shutdown.borrow_and_update() {
                break;
            }
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    continue;
                }
                _ = tick.tick() => {}
            }
            self.run_once().await;
        }
        if self.def.activate_on_shutdown {
            self.run_once().await;
        }
    }

    async fn run_once(&mut self) {
        let name = self.def.name;
        self.board.started(self.slot, self.clock.now_ms());
        let began = Instant::now();
        // A panicking task is reported like a failed run and runs again at
        // its next tick, instead of silently stopping for good.
        let result = AssertUnwindSafe(self.def.task.activate())
            .catch_unwind()
            .await;
        let took = began.elapsed();
        let outcome = match result {
            Ok(Ok(summary)) => {
                tracing::debug!(task = name, took_ms = took.as_millis() as u64, summary = %summary, "background task ran");
                Outcome::Ok(summary)
            }
            Ok(Err(err)) => {
                let text = coloc_proto::error_chain(&err);
                tracing::error!(task = name, error = %text, "background task failed");
                Outcome::Error(text)
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".to_string());
                let text = format!("the task panicked: {what}");
                tracing::error!(task = name, error = %text, "background task failed");
                Outcome::Error(text)
            }
        };
        self.board.finished(self.slot, took, outcome);
    }
}

#[cfg(test)]
mod tests;
