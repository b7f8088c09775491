//! The notifier: reads the outbox, groups events into messages, sends each
//! message to every target with per-target retries, and marks the events
//! notified once every target is done with them.
//!
//! It is a background task (`notify`) like the others: each run is one
//! short pass that never waits for a send. A send runs in a tokio task of
//! its own with a timeout; the next pass collects its result. All timing
//! decisions (group wait, backoff, give-up) read colocd's [`Clock`], so
//! tests move time instead of sleeping.
//!
//! Per target, messages go out in order: a target starts the next message
//! only once it is done with the previous one (sent, or given up), so a
//! resolution never overtakes its firing at a webhook that was down. The
//! other targets are not held back.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::config::NotifyConfig;
use super::email::{EMAIL_TARGET, EmailTarget};
use super::message::{render_subject, render_text};
use super::webhook::WebhookTarget;
use super::{AlertEvent, EventKind, NotifyError, Outbox, Severity};
use crate::background::{BackgroundTask, TaskDefinition, TaskError};
use crate::time::{Clock, SystemClock};

/// How often the outbox is read.
pub const POLL_PERIOD: Duration = Duration::from_secs(2);
/// Longest a send may take before it counts as failed.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Events read from the outbox per pass.
const POLL_LIMIT: usize = 200;
/// Events held in memory at most (waiting or in messages being sent);
/// beyond, the rest stay in the outbox until targets catch up.
const MAX_HELD: usize = 2000;

enum Target {
    Email(EmailTarget),
    Webhook(WebhookTarget),
}

impl Target {
    fn name(&self) -> &str {
        match self {
            Target::Email(_) => EMAIL_TARGET,
            Target::Webhook(w) => w.name(),
        }
    }

    async fn send(&self, events: &[AlertEvent]) -> Result<(), NotifyError> {
        match self {
            Target::Email(e) => e.send(&render_subject(events), &render_text(events)).await,
            Target::Webhook(w) => w.send(events).await,
        }
    }
}

fn build_targets(cfg: &NotifyConfig, timeout: Duration) -> Result<Vec<Arc<Target>>, NotifyError> {
    cfg.validate()?;
    let mut targets = Vec::new();
    if let Some(email) = &cfg.email {
        targets.push(Arc::new(Target::Email(EmailTarget::new(email, timeout)?)));
    }
    for hook in &cfg.webhooks {
        targets.push(Arc::new(Target::Webhook(WebhookTarget::new(
            hook, timeout,
        )?)));
    }
    Ok(targets)
}

/// One send with its deadline, in a task of its own.
fn spawn_send(
    target: Arc<Target>,
    events: Arc<Vec<AlertEvent>>,
    timeout: Duration,
) -> JoinHandle<Result<(), NotifyError>> {
    tokio::spawn(async move {
        match tokio::time::timeout(timeout, target.send(&events)).await {
            Ok(result) => result,
            Err(_) => Err(NotifyError::Timeout {
                target: target.name().to_string(),
                secs: timeout.as_secs(),
            }),
        }
    })
}

/// Where one target is with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    /// Not sent yet, or failed and waiting for its next attempt.
    Waiting,
    Sending,
    Sent,
    /// Failed until `retry_give_up_secs` passed; the failure was logged.
    GaveUp,
}

/// What [`Notifier::status`] says about one target of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStatus {
    /// "email" or "webhook NAME".
    pub target: String,
    pub state: TargetState,
    /// Failed attempts so far.
    pub failures: u32,
    pub last_error: Option<String>,
    /// When it is tried next (clock milliseconds), while waiting.
    pub next_attempt_ms: Option<i64>,
}

/// A message being delivered: its events and each target's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchStatus {
    pub events: Vec<i64>,
    pub created_ms: i64,
    pub targets: Vec<TargetStatus>,
}

enum Step {
    Waiting,
    Sending(JoinHandle<Result<(), NotifyError>>),
    Sent,
    GaveUp,
}

struct Progress {
    target: usize,
    step: Step,
    failures: u32,
    last_error: Option<String>,
    next_attempt_ms: i64,
}

impl Progress {
    fn done(&self) -> bool {
        matches!(self.step, Step::Sent | Step::GaveUp)
    }
}

struct Batch {
    events: Arc<Vec<AlertEvent>>,
    created_ms: i64,
    targets: Vec<Progress>,
}

/// The timing of `[notify]`, in clock milliseconds.
#[derive(Debug, Clone, Copy)]
struct Timing {
    group_wait_ms: i64,
    retry_initial_ms: i64,
    retry_max_ms: i64,
    give_up_ms: i64,
}

impl Timing {
    fn of(cfg: &NotifyConfig) -> Timing {
        let ms = |secs: u64| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        Timing {
            group_wait_ms: ms(cfg.group_wait_secs),
            retry_initial_ms: ms(cfg.retry_initial_secs),
            retry_max_ms: ms(cfg.retry_max_secs),
            give_up_ms: ms(cfg.retry_give_up_secs),
        }
    }

    /// The delay after the `failures`-th failure: initial, doubled each
    /// time, at most max.
    fn backoff_ms(&self, failures: u32) -> i64 {
        let doublings = failures.saturating_sub(1).min(32);
        self.retry_initial_ms
            .saturating_mul(1_i64 << doublings)
            .min(self.retry_max_ms)
    }
}

/// Sends alert events to the configured targets; see the module.
pub struct Notifier {
    timing: Timing,
    outbox: Arc<dyn Outbox>,
    clock: Arc<dyn Clock>,
    targets: Vec<Arc<Target>>,
    send_timeout: Duration,
    /// The highest event id read from the outbox.
    cursor: i64,
    /// Events read and not yet in a message.
    waiting: Vec<AlertEvent>,
    /// When the first of `waiting` was read.
    waiting_since_ms: i64,
    /// Silenced events to mark notified (kept when the marking failed).
    silenced: Vec<i64>,
    batches: Vec<Batch>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field(
                "targets",
                &self.targets.iter().map(|t| t.name()).collect::<Vec<_>>(),
            )
            .field("cursor", &self.cursor)
            .field("waiting", &self.waiting.len())
            .field("batches", &self.batches.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Notifier {
    /// A send still running when colocd stops is abandoned: its events
    /// are not marked, so they are sent again at the next start.
    fn drop(&mut self) {
        for batch in &self.batches {
            for p in &batch.targets {
                if let Step::Sending(handle) = &p.step {
                    handle.abort();
                }
            }
        }
    }
}

impl Notifier {
    /// Checks the configuration, reads the password, token and CA files
    /// and prepares every target (no connection yet). Errors name the key
    /// and the file.
    pub fn new(cfg: &NotifyConfig, outbox: Arc<dyn Outbox>) -> Result<Notifier, NotifyError> {
        Notifier::with_clock(cfg, outbox, Arc::new(SystemClock), SEND_TIMEOUT)
    }

    /// [`Notifier::new`] with the clock that times group waits and
    /// retries, and the longest a send may take.
    pub fn with_clock(
        cfg: &NotifyConfig,
        outbox: Arc<dyn Outbox>,
        clock: Arc<dyn Clock>,
        send_timeout: Duration,
    ) -> Result<Notifier, NotifyError> {
        let targets = build_targets(cfg, send_timeout)?;
        if targets.is_empty() {
            return Err(NotifyError::NoTargets);
        }
        let names: Vec<&str> = targets.iter().map(|t| t.name()).collect();
        tracing::info!(targets = %names.join(", "), group_wait_secs = cfg.group_wait_secs, "alert notifications on");
        Ok(Notifier {
            timing: Timing::of(cfg),
            outbox,
            clock,
            targets,
            send_timeout,
            cursor: 0,
            waiting: Vec::new(),
            waiting_since_ms: 0,
            silenced: Vec::new(),
            batches: Vec::new(),
        })
    }

    /// The `notify` background task, for colocd's task driver.
    pub fn task_definition(self) -> TaskDefinition {
        TaskDefinition {
            name: "notify",
            description: "send alert events by e-mail and webhooks, grouped, with retries",
            period: POLL_PERIOD,
            activate_on_shutdown: false,
            task: Box::new(self),
        }
    }

    /// Sends one test message to every target of `cfg` (for `colocd
    /// notify-test`): Ok when every target took it, otherwise what failed,
    /// target by target.
    pub async fn send_test(cfg: &NotifyConfig) -> Result<(), NotifyError> {
        let targets = build_targets(cfg, SEND_TIMEOUT)?;
        if targets.is_empty() {
            return Err(NotifyError::NoTargets);
        }
        let now = SystemClock.now();
        let events = Arc::new(vec![AlertEvent {
            id: 0,
            alert_id: 0,
            kind: EventKind::Firing,
            rule: "notify-test".to_string(),
            severity: Severity::Warning,
            node: None,
            tenant: None,
            subject: "colocd".to_string(),
            summary: "a test message from colocd notify-test; nothing is wrong".to_string(),
            started_unix: now,
            ended_unix: None,
            silenced: false,
        }]);
        let sends: Vec<_> = targets
            .iter()
            .map(|t| spawn_send(t.clone(), events.clone(), SEND_TIMEOUT))
            .collect();
        let mut failures = Vec::new();
        for (target, send) in targets.iter().zip(sends) {
            let outcome = match send.await {
                Ok(result) => result.map_err(|e| coloc_proto::error_chain(&e)),
                Err(e) => Err(format!("{}: the send task failed: {e}", target.name())),
            };
            match outcome {
                Ok(()) => tracing::info!(target = target.name(), "test notification sent"),
                Err(text) => failures.push(text),
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(NotifyError::TestFailed { failures })
        }
    }

    /// The messages being delivered, oldest first.
    pub fn status(&self) -> Vec<BatchStatus> {
        self.batches
            .iter()
            .map(|b| BatchStatus {
                events: b.events.iter().map(|e| e.id).collect(),
                created_ms: b.created_ms,
                targets: b
                    .targets
                    .iter()
                    .map(|p| TargetStatus {
                        target: self.targets[p.target].name().to_string(),
                        state: match p.step {
                            Step::Waiting => TargetState::Waiting,
                            Step::Sending(_) => TargetState::Sending,
                            Step::Sent => TargetState::Sent,
                            Step::GaveUp => TargetState::GaveUp,
                        },
                        failures: p.failures,
                        last_error: p.last_error.clone(),
                        next_attempt_ms: matches!(p.step, Step::Waiting)
                            .then_some(p.next_attempt_ms),
                    })
                    .collect(),
            })
            .collect()
    }

    /// Events read and waiting for their group to close.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Collects the sends that finished: a success is final, a failure
    /// waits for its backoff or, past the give-up delay, is given up.
    async fn collect_sends(&mut self, now: i64) {
        for batch in &mut self.batches {
            for p in &mut batch.targets {
                let Step::Sending(handle) = &mut p.step else {
                    continue;
                };
                if !handle.is_finished() {
                    continue;
                }
                let name = self.targets[p.target].name();
                let outcome = match handle.await {
                    Ok(result) => result.map_err(|e| coloc_proto::error_chain(&e)),
                    Err(e) => Err(format!("{name}: the send task failed: {e}")),
                };
                let events = batch.events.len();
                match outcome {
                    Ok(()) => {
                        tracing::info!(target = name, events, "notification sent");
                        p.step = Step::Sent;
                    }
                    Err(error) => {
                        p.failures += 1;
                        if now.saturating_sub(batch.created_ms) >= self.timing.give_up_ms {
                            tracing::error!(target = name, events, failures = p.failures, error = %error, "notification given up");
                            p.step = Step::GaveUp;
                        } else {
                            let delay = self.timing.backoff_ms(p.failures);
                            tracing::warn!(target = name, events, failures = p.failures, retry_in_secs = delay / 1000, error = %error, "notification failed; will retry");
                            p.next_attempt_ms = now.saturating_add(delay);
                            p.step = Step::Waiting;
                        }
                        p.last_error = Some(error);
                    }
                }
            }
        }
    }

    /// Reads new events; silenced ones are only to be marked.
    async fn read_outbox(&mut self, now: i64) -> Result<(), TaskError> {
        let held: usize =
            self.waiting.len() + self.batches.iter().map(|b| b.events.len()).sum::<usize>();
        if held >= MAX_HELD {
            return Ok(());
        }
        let events = self
            .outbox
            .pending(self.cursor, POLL_LIMIT.min(MAX_HELD - held))
            .await
            .map_err(TaskError::store("read the alert outbox"))?;
        for event in events {
            self.cursor = self.cursor.max(event.id);
            if event.silenced {
                self.silenced.push(event.id);
                continue;
            }
            if self.waiting.is_empty() {
                self.waiting_since_ms = now;
            }
            self.waiting.push(event);
        }
        Ok(())
    }

    /// Starts the sends that are due: per target, the oldest message it is
    /// not done with, once its backoff has passed.
    fn start_sends(&mut self, now: i64) {
        for target in 0..self.targets.len() {
            let current = self.batches.iter_mut().find_map(|b| {
                let events = &b.events;
                b.targets
                    .iter_mut()
                    .find(|p| p.target == target && !p.done())
                    .map(|p| (events, p))
            });
            let Some((events, p)) = current else {
                continue;
            };
            if matches!(p.step, Step::Waiting) && p.next_attempt_ms <= now {
                p.step = Step::Sending(spawn_send(
                    self.targets[target].clone(),
                    events.clone(),
                    self.send_timeout,
                ));
            }
        }
    }

    /// Marks the events of finished messages, and the silenced ones.
    async fn mark_done(&mut self) -> Result<usize, TaskError> {
        let mut marked = 0;
        if !self.silenced.is_empty() {
            self.outbox
                .mark_notified(&self.silenced)
                .await
                .map_err(TaskError::store("mark silenced alert events notified"))?;
            marked += self.silenced.len();
            self.silenced.clear();
        }
        while let Some(i) = self
            .batches
            .iter()
            .position(|b| b.targets.iter().all(Progress::done))
        {
            let ids: Vec<i64> = self.batches[i].events.iter().map(|e| e.id).collect();
            self.outbox
                .mark_notified(&ids)
                .await
                .map_err(TaskError::store("mark alert events notified"))?;
            marked += ids.len();
            self.batches.remove(i);
        }
        Ok(marked)
    }

    fn summary(&self, marked: usize) -> String {
        let mut parts = Vec::new();
        if marked > 0 {
            parts.push(format!("{} notified", events(marked)));
        }
        if !self.waiting.is_empty() {
            parts.push(format!("{} grouping", events(self.waiting.len())));
        }
        for b in &self.batches {
            let pending: Vec<String> = b
                .targets
                .iter()
                .filter(|p| !p.done())
                .map(|p| {
                    let name = self.targets[p.target].name();
                    match p.step {
                        Step::Sending(_) => format!("{name} sending"),
                        _ if p.failures > 0 => format!("{name} failed {} times", p.failures),
                        _ => format!("{name} queued"),
                    }
                })
                .collect();
            parts.push(format!(
                "message of {}: {}",
                events(b.events.len()),
                pending.join(", ")
            ));
        }
        if parts.is_empty() {
            "nothing to send".to_string()
        } else {
            parts.join("; ")
        }
    }
}

/// "1 event", "3 events".
fn events(n: usize) -> String {
    if n == 1 {
        "1 event".to_string()
    } else {
        format!("{n} events")
    }
}

#[async_trait::async_trait]
impl BackgroundTask for Notifier {
    async fn activate(&mut self) -> Result<String, TaskError> {
        let now = self.clock.now_ms();
        self.collect_sends(now).await;
        // A store that fails to answer must not stop retries already
        // under way: its error is returned after the sends are started.
        let read = self.read_outbox(now).await;
        if !self.waiting.is_empty()
            && now.saturating_sub(self.waiting_since_ms) >= self.timing.group_wait_ms
        {
            let events = std::mem::take(&mut self.waiting);
            self.batches.push(Batch {
                events: Arc::new(events),
                created_ms: now,
                targets: (0..self.targets.len())
                    .map(|target| Progress {
                        target,
                        step: Step::Waiting,
                        failures: 0,
                        last_error: None,
                        next_attempt_ms: now,
                    })
                    .collect(),
            });
        }
        self.start_sends(now);
        let marked = self.mark_done().await?;
        read?;
        Ok(self.summary(marked))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_max() {
        let timing = Timing::of(&NotifyConfig {
            retry_initial_secs: 10,
            retry_max_secs: 60,
            ..NotifyConfig::default()
        });
        let delays: Vec<i64> = (1..=6).map(|n| timing.backoff_ms(n) / 1000).collect();
        assert_eq!(delays, [10, 20, 40, 60, 60, 60]);
        assert_eq!(timing.backoff_ms(u32::MAX), 60_000);
    }
}
