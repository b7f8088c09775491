//! The driver on tasks made for the purpose: short periods, and every wait
//! bounded by a deadline.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::*;
use crate::background::status::TaskStatus;
use crate::time::SystemClock;

const DEADLINE: Duration = Duration::from_secs(10);

/// Polls the board until `check` holds for the task, or fails after
/// [`DEADLINE`] with what it last saw.
async fn wait_for(
    board: &TaskBoard,
    name: &str,
    check: impl Fn(&TaskStatus) -> bool,
) -> TaskStatus {
    let start = Instant::now();
    loop {
        let status = board.get(name);
        if let Some(s) = &status
            && check(s)
        {
            return s.clone();
        }
        assert!(
            start.elapsed() < DEADLINE,
            "task {name} never reached the expected state; last seen {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn start(tasks: Vec<TaskDefinition>) -> (Arc<TaskBoard>, Driver, watch::Sender<bool>) {
    let board = Arc::new(TaskBoard::default());
    let (stop, shutdown) = watch::channel(false);
    let driver = Driver::start(board.clone(), Arc::new(SystemClock), tasks, shutdown);
    (board, driver, stop)
}

fn define(
    name: &'static str,
    period_ms: u64,
    task: impl BackgroundTask + 'static,
) -> TaskDefinition {
    TaskDefinition {
        name,
        description: "a test task",
        period: Duration::from_millis(period_ms),
        activate_on_shutdown: false,
        task: Box::new(task),
    }
}

async fn stop(driver: Driver, stop: watch::Sender<bool>) {
    stop.send(true).expect("the driver's tasks hold receivers");
    tokio::time::timeout(DEADLINE, driver.join())
        .await
        .expect("the driver stops within the deadline");
}

/// Fails every other run: odd runs fail, even runs succeed.
struct Flaky {
    runs: u64,
}

#[async_trait::async_trait]
impl BackgroundTask for Flaky {
    async fn activate(&mut self) -> Result<String, TaskError> {
        self.runs += 1;
        if self.runs % 2 == 1 {
            Err(TaskError::store("record heartbeats")(
                StoreError::Conflict {
                    kind: "node",
                    name: "n1".into(),
                    reason: "disk on fire".into(),
                },
            ))
        } else {
            Ok(format!("run {}", self.runs))
        }
    }
}

#[tokio::test]
async fn a_failing_run_shows_its_error_and_the_error_stays_after_a_success() {
    let (board, driver, tx) = start(vec![define("flaky", 10, Flaky { runs: 0 })]);
    let failed = wait_for(&board, "flaky", |s| {
        matches!(s.last_outcome, Some(Outcome::Error(_)))
    })
    .await;
    assert_eq!(
        failed.last_outcome,
        Some(Outcome::Error(
            "cannot record heartbeats: node n1: disk on fire".into()
        ))
    );
    assert_eq!(failed.failures, failed.runs.div_ceil(2));
    let (at, text) = failed.last_error.clone().expect("the error is kept");
    assert_eq!(Some(at), failed.last_start_unix_ms);
    assert!(text.contains("disk on fire"), "{text}");

    let ok = wait_for(&board, "flaky", |s| {
        matches!(s.last_outcome, Some(Outcome::Ok(_)))
    })
    .await;
    assert_eq!(
        ok.last_outcome,
        Some(Outcome::Ok(format!("run {}", ok.runs)))
    );
    assert_eq!(ok.failures, ok.runs / 2);
    assert!(ok.last_error.is_some(), "an earlier failure stays visible");
    assert_eq!(ok.period, Duration::from_millis(10));
    assert_eq!(ok.description, "a test task");
    assert!(ok.last_duration.is_some());
    stop(driver, tx).await;
}

/// Takes longer than its period, and counts how many runs are in flight.
struct Slow {
    in_flight: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl BackgroundTask for Slow {
    async fn activate(&mut self) -> Result<String, TaskError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        Ok("slept".into())
    }
}

#[tokio::test]
async fn a_slow_task_never_overlaps_itself() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let task = Slow {
        in_flight: in_flight.clone(),
        most: most.clone(),
    };
    let (board, driver, tx) = start(vec![define("slow", 1, task)]);
    let seen = wait_for(&board, "slow", |s| s.runs >= 4).await;
    assert_eq!(most.load(Ordering::SeqCst), 1, "runs overlapped");
    assert!(seen.last_duration.unwrap() >= Duration::from_millis(30));
    stop(driver, tx).await;
    assert_eq!(in_flight.load(Ordering::SeqCst), 0);
}

/// Counts its runs, and whether one is in progress.
struct Counting {
    runs: Arc<AtomicU64>,
    busy: Arc<AtomicBool>,
    takes: Duration,
}

#[async_trait::async_trait]
impl BackgroundTask for Counting {
    async fn activate(&mut self) -> Result<String, TaskError> {
        self.busy.store(true, Ordering::SeqCst);
        tokio::time::sleep(self.takes).await;
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.busy.store(false, Ordering::SeqCst);
        Ok(String::new())
    }
}

#[tokio::test]
async fn shutdown_stops_every_task_and_runs_the_last_activations() {
    let every = Arc::new(AtomicU64::new(0));
    let last = Arc::new(AtomicU64::new(0));
    let busy = Arc::new(AtomicBool::new(false));
    let mut flush = define(
        "flush",
        3_600_000,
        Counting {
            runs: last.clone(),
            busy: Arc::new(AtomicBool::new(false)),
            takes: Duration::ZERO,
        },
    );
    flush.activate_on_shutdown = true;
    let tasks = vec![
        define(
            "busy",
            5,
            Counting {
                runs: every.clone(),
                busy: busy.clone(),
                takes: Duration::from_millis(20),
            },
        ),
        flush,
    ];
    let (board, driver, tx) = start(tasks);
    wait_for(&board, "busy", |s| s.runs >= 2).await;
    // The hourly task ran once, at start.
    wait_for(&board, "flush", |s| s.runs == 1).await;
    // Signalled while a run may be in progress: it finishes, no other
    // starts, and once joined nothing can run any more.
    stop(driver, tx).await;
    assert!(!busy.load(Ordering::SeqCst), "a run was cut in the middle");
    let after = every.load(Ordering::SeqCst);
    assert_eq!(board.get("busy").unwrap().runs, after);
    assert!(!board.get("busy").unwrap().running);
    assert_eq!(last.load(Ordering::SeqCst), 2, "one more run at shutdown");
    assert_eq!(board.get("flush").unwrap().runs, 2);
}

#[tokio::test]
async fn a_driver_stopped_before_it_starts_runs_nothing_but_last_activations() {
    let runs = Arc::new(AtomicU64::new(0));
    let board = Arc::new(TaskBoard::default());
    let (tx, shutdown) = watch::channel(true);
    let mut def = define(
        "flush",
        5,
        Counting {
            runs: runs.clone(),
            busy: Arc::new(AtomicBool::new(false)),
            takes: Duration::ZERO,
        },
    );
    def.activate_on_shutdown = true;
    let driver = Driver::start(board.clone(), Arc::new(SystemClock), vec![def], shutdown);
    tokio::time::timeout(DEADLINE, driver.join())
        .await
        .expect("the driver stops within the deadline");
    drop(tx);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

struct Panics;

#[async_trait::async_trait]
impl BackgroundTask for Panics {
    async fn activate(&mut self) -> Result<String, TaskError> {
        panic!("boom")
    }
}

#[tokio::test]
async fn a_panicking_task_is_reported_and_keeps_its_schedule() {
    let (board, driver, tx) = start(vec![define("panics", 5, Panics)]);
    let s = wait_for(&board, "panics", |s| s.runs >= 2).await;
    assert_eq!(s.failures, s.runs);
    assert_eq!(
        s.last_error.map(|(_, e)| e),
        Some("the task panicked: boom".to_string())
    );
    stop(driver, tx).await;
}
