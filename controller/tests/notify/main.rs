//! Notifications against real servers: an SMTP server (Debian's
//! python3-aiosmtpd, run with /usr/bin/python3) and HTTP endpoints served
//! by the test itself over real TCP (and TLS), both in [`servers`]. The
//! outbox is an in-memory one and the clock moves only when a test says
//! so, so group waits and backoffs are crossed exactly instead of slept
//! through; the notifier is driven pass by pass as colocd's task driver
//! would, until a condition holds or a deadline passes.
//!
//! Run: `cargo test -p coloc-controller --test notify` (needs
//! `apt-get install python3-aiosmtpd`, see tools/install-deps).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use coloc_controller::background::BackgroundTask;
use coloc_controller::notify::{
    AlertEvent, EmailConfig, EventKind, Notifier, NotifyConfig, Outbox, Severity, SmtpTls,
    TargetState, WebhookConfig, WebhookFormat,
};
use coloc_controller::store::{StoreError, StoreResult};
use coloc_controller::time::Clock;
use tokio::net::TcpListener;

mod servers;

use servers::{
    Endpoint, SmtpOptions, SmtpServer, body_of, local_email, private_ca, subject_of, webhook,
};

/// How long any condition may take to come true.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- outbox

#[derive(Default)]
struct MemoryOutbox {
    events: Mutex<Vec<(AlertEvent, bool)>>,
    /// The database is away: every call fails.
    broken: AtomicBool,
}

impl MemoryOutbox {
    fn push(&self, event: AlertEvent) {
        self.events.lock().unwrap().push((event, false));
    }

    fn notified(&self, id: i64) -> bool {
        self.events
            .lock()
            .unwrap()
            .iter()
            .any(|(e, done)| e.id == id && *done)
    }

    fn check(&self) -> StoreResult<()> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("the database is away".into()));
        }
        Ok(())
    }

    fn all_notified(&self) -> bool {
        self.events.lock().unwrap().iter().all(|(_, done)| *done)
    }
}

#[async_trait]
impl Outbox for MemoryOutbox {
    async fn pending(&self, after: i64, limit: usize) -> StoreResult<Vec<AlertEvent>> {
        self.check()?;
        Ok(self
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|(e, done)| !done && e.id > after)
            .take(limit)
            .map(|(e, _)| e.clone())
            .collect())
    }

    async fn mark_notified(&self, ids: &[i64]) -> StoreResult<()> {
        self.check()?;
        for (e, done) in self.events.lock().unwrap().iter_mut() {
            if ids.contains(&e.id) {
                *done = true;
            }
        }
        Ok(())
    }
}

fn event(id: i64, kind: EventKind, rule: &str, subject: &str) -> AlertEvent {
    AlertEvent {
        id,
        alert_id: 1000 + id as u64,
        kind,
        rule: rule.to_string(),
        severity: Severity::Critical,
        node: Some("node-a".to_string()),
        tenant: None,
        subject: subject.to_string(),
        summary: format!("{rule} measured on {subject}"),
        started_unix: 1_764_968_400,
        ended_unix: (kind == EventKind::Resolved).then_some(1_764_972_000),
        silenced: false,
    }
}

// ------------------------------------------------------------ the driving

/// A clock that moves only when told: group waits and backoffs are
/// crossed exactly, whatever the machine's load.
#[derive(Debug)]
struct ManualClock {
    now_ms: AtomicI64,
}

impl ManualClock {
    fn advance_secs(&self, secs: i64) {
        self.now_ms.fetch_add(secs * 1000, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

struct Rig {
    outbox: Arc<MemoryOutbox>,
    clock: Arc<ManualClock>,
    notifier: Notifier,
}

impl Rig {
    fn new(cfg: &NotifyConfig) -> Rig {
        Rig::with_timeout(cfg, Duration::from_secs(10))
    }

    fn with_timeout(cfg: &NotifyConfig, send_timeout: Duration) -> Rig {
        let outbox = Arc::new(MemoryOutbox::default());
        let clock = Arc::new(ManualClock {
            now_ms: AtomicI64::new(1_764_968_400_000),
        });
        let notifier =
            Notifier::with_clock(cfg, outbox.clone(), clock.clone(), send_timeout).unwrap();
        Rig {
            outbox,
            clock,
            notifier,
        }
    }

    async fn pass(&mut self) -> String {
        self.notifier.activate().await.expect("a notifier pass")
    }

    /// Runs passes, as the task driver does (faster), until `done` holds.
    async fn until(&mut self, what: &str, mut done: impl FnMut(&Rig) -> bool) {
        let start = Instant::now();
        loop {
            let summary = self.pass().await;
            if done(self) {
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{what}: not after {DEADLINE:?}; last pass: {summary}; status: {:?}",
                self.notifier.status()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn target_state(
        &self,
        target: &str,
    ) -> Option<(TargetState, u32, Option<String>, Option<i64>)> {
        self.notifier.status().first().and_then(|b| {
            b.targets
                .iter()
                .find(|t| t.target == target)
                .map(|t| (t.state, t.failures, t.last_error.clone(), t.next_attempt_ms))
        })
    }
}

fn config(email: Option<EmailConfig>, webhooks: Vec<WebhookConfig>) -> NotifyConfig {
    NotifyConfig {
        email,
        webhooks,
        ..NotifyConfig::default()
    }
}

// ------------------------------------------------------------ the tests

#[tokio::test]
async fn a_burst_gives_one_mail_and_one_webhook_call() {
    let work = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(work.path(), SmtpOptions::default()).await;
    let hook = Endpoint::start(&[], None).await;
    let cfg = config(
        Some(local_email(smtp.port)),
        vec![webhook("chat", &hook.url, WebhookFormat::Json)],
    );
    let mut rig = Rig::new(&cfg);

    rig.outbox.push(event(
        1,
        EventKind::Firing,
        "disk-nvme-critical-warning",
        "disk S1 on node-a",
    ));
    rig.pass().await;
    rig.outbox.push(event(
        2,
        EventKind::Firing,
        "pool-degraded",
        "pool tank on node-a",
    ));
    rig.outbox.push(event(
        3,
        EventKind::Resolved,
        "node-unreachable",
        "node node-b",
    ));
    rig.pass().await;
    assert_eq!(rig.notifier.waiting(), 3, "the group is still open");
    assert!(rig.notifier.status().is_empty());

    rig.clock.advance_secs(30);
    rig.until("the burst is notified", |r| r.outbox.all_notified())
        .await;

    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "one mail for the burst: {mails:#?}");
    let mail = &mails[0];
    assert!(
        mail.contains("X-Envelope-To: admins@coloc.test,oncall@coloc.test"),
        "{mail}"
    );
    for header in [
        "\r\nDate: ",
        "\r\nMessage-ID: <",
        "\r\nAuto-Submitted: auto-generated\r\n",
        "\r\nFrom: coloc <alerts@coloc.test>\r\n",
    ] {
        assert!(mail.contains(header), "{header:?} in {mail}");
    }
    assert_eq!(
        subject_of(mail),
        "[coloc] 2 firing, 1 resolved: disk-nvme-critical-warning on disk S1 on node-a, and 2 more"
    );
    let body = body_of(mail);
    for id in [1001, 1002, 1003] {
        assert!(body.contains(&format!("coloc alert show {id}")), "{body}");
    }
    assert!(body.contains("FIRING critical pool-degraded"), "{body}");
    assert!(
        body.contains("RESOLVED critical node-unreachable"),
        "{body}"
    );

    let calls = hook.requests();
    assert_eq!(calls.len(), 1, "one webhook call for the burst");
    assert_eq!(calls[0].path, "/hooks/coloc");
    assert_eq!(calls[0].headers["content-type"], "application/json");
    let doc: serde_json::Value = serde_json::from_str(&calls[0].body).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["status"], "firing");
    let ids: Vec<i64> = doc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(doc["events"][2]["status"], "resolved");
    assert_eq!(doc["events"][2]["ended_unix"], 1_764_972_000);
    assert!(
        doc["text"]
            .as_str()
            .unwrap()
            .contains("coloc alert show 1002")
    );
}

#[tokio::test]
async fn firing_then_resolved_gives_two_mails() {
    let work = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(work.path(), SmtpOptions::default()).await;
    let mut rig = Rig::new(&config(Some(local_email(smtp.port)), vec![]));

    rig.outbox.push(event(
        1,
        EventKind::Firing,
        "pool-capacity",
        "pool tank on node-a",
    ));
    rig.pass().await;
    rig.clock.advance_secs(30);
    rig.until("the firing is notified", |r| r.outbox.notified(1))
        .await;

    rig.outbox.push(event(
        2,
        EventKind::Resolved,
        "pool-capacity",
        "pool tank on node-a",
    ));
    rig.pass().await;
    rig.clock.advance_secs(30);
    rig.until("the resolution is notified", |r| r.outbox.notified(2))
        .await;

    let mails = smtp.messages();
    assert_eq!(mails.len(), 2, "{mails:#?}");
    assert_eq!(
        subject_of(&mails[0]),
        "[coloc] 1 firing: pool-capacity on pool tank on node-a"
    );
    assert_eq!(
        subject_of(&mails[1]),
        "[coloc] 1 resolved: pool-capacity on pool tank on node-a"
    );
    assert!(
        body_of(&mails[1])
            .contains("from 2025-12-05 21:00:00 UTC to 2025-12-05 22:00:00 UTC (1 h 0 min)"),
        "{}",
        mails[1]
    );
}

#[tokio::test]
async fn a_failing_webhook_is_retried_with_backoff_and_the_mail_goes_once() {
    let work = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(work.path(), SmtpOptions::default()).await;
    let hook = Endpoint::start(&[500, 500], None).await;
    let cfg = NotifyConfig {
        retry_initial_secs: 10,
        retry_max_secs: 600,
        ..config(
            Some(local_email(smtp.port)),
            vec![webhook("chat", &hook.url, WebhookFormat::Json)],
        )
    };
    let mut rig = Rig::new(&cfg);
    rig.outbox.push(event(
        1,
        EventKind::Firing,
        "disk-smart-failing",
        "disk S1 on node-a",
    ));
    rig.pass().await;
    rig.clock.advance_secs(30);

    rig.until("the webhook failed once, the mail went", |r| {
        matches!(
            r.target_state("webhook chat"),
            Some((TargetState::Waiting, 1, _, _))
        ) && matches!(r.target_state("email"), Some((TargetState::Sent, 0, _, _)))
    })
    .await;
    let (_, _, error, next) = rig.target_state("webhook chat").unwrap();
    assert!(error.unwrap().contains("HTTP 500"));
    let wait = next.unwrap() - rig.clock.now_ms();
    assert_eq!(wait, 10_000, "first retry after 10 s");
    assert!(
        !rig.outbox.notified(1),
        "not marked while the webhook has not taken it"
    );

    rig.clock.advance_secs(10);
    rig.until("the webhook failed twice", |r| {
        matches!(
            r.target_state("webhook chat"),
            Some((TargetState::Waiting, 2, _, _))
        )
    })
    .await;
    let (_, _, _, next) = rig.target_state("webhook chat").unwrap();
    let wait = next.unwrap() - rig.clock.now_ms();
    assert_eq!(wait, 20_000, "second retry after 20 s");

    rig.clock.advance_secs(20);
    rig.until("the event is notified", |r| r.outbox.notified(1))
        .await;

    let calls = hook.requests();
    assert_eq!(calls.len(), 3, "500, 500, then 200");
    assert!(
        calls.iter().all(|c| c.body == calls[0].body),
        "the same message each time"
    );
    assert_eq!(smtp.messages().len(), 1, "the mail was not sent again");
}

#[tokio::test]
async fn a_resolution_never_overtakes_its_firing_at_a_webhook_that_was_down() {
    let work = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(work.path(), SmtpOptions::default()).await;
    let hook = Endpoint::start(&[503], None).await;
    let cfg = NotifyConfig {
        retry_initial_secs: 60,
        ..config(
            Some(local_email(smtp.port)),
            vec![webhook("chat", &hook.url, WebhookFormat::Json)],
        )
    };
    let mut rig = Rig::new(&cfg);
    rig.outbox.push(event(
        1,
        EventKind::Firing,
        "app-crash-loop",
        "app asso/wiki",
    ));
    rig.pass().await;
    rig.clock.advance_secs(30);
    rig.until("the webhook failed once", |r| {
        matches!(
            r.target_state("webhook chat"),
            Some((TargetState::Waiting, 1, _, _))
        )
    })
    .await;

    rig.outbox.push(event(
        2,
        EventKind::Resolved,
        "app-crash-loop",
        "app asso/wiki",
    ));
    rig.pass().await;
    rig.clock.advance_secs(30);
    rig.until("the mail of the resolution went", |_| {
        smtp.messages().len() == 2
    })
    .await;
    let status = rig.notifier.status();
    assert_eq!(status.len(), 2, "{status:?}");
    let second = status[1]
        .targets
        .iter()
        .find(|t| t.target == "webhook chat");
    assert_eq!(
        second.map(|t| (t.state, t.failures)),
        Some((TargetState::Waiting, 0)),
        "the webhook holds the resolution until the firing went: {status:?}"
    );
    assert_eq!(hook.requests().len(), 1);
    assert!(!rig.outbox.notified(1) && !rig.outbox.notified(2));

    rig.clock.advance_secs(30);
    rig.until("both are notified", |r| r.outbox.all_notified())
        .await;
    let statuses: Vec<String> = hook
        .requests()
        .iter()
        .map(|c| {
            let doc: serde_json::Value = serde_json::from_str(&c.body).unwrap();
            doc["status"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(statuses, ["firing", "firing", "resolved"]);
    assert_eq!(smtp.messages().len(), 2);
}

#[tokio::test]
async fn a_store_that_fails_delays_the_marking_not_the_sending() {
    let hook = Endpoint::start(&[], None).await;
    let mut rig = Rig::new(&config(
        None,
        vec![webhook("chat", &hook.url, WebhookFormat::Json)],
    ));
    rig.outbox.push(event(
        1,
        EventKind::Firing,
        "node-unreachable",
        "node node-a",
    ));
    rig.pass().await;
    rig.clock.advance_secs(30);
    rig.outbox.broken.store(true, Ordering::SeqCst);
    let start = Instant::now();
    let error = loop {
        // Each pass fails, but the message read before still goes out.
        let error = rig.notifier.activate().await.unwrap_err();
        if hook.requests().len() == 1
            && matches!(
                rig.target_state("webhook chat"),
                Some((TargetState::Sent, ..))
            )
        {
            break coloc_proto::error_chain(&error);
        }
        assert!(start.elapsed() < DEADLINE, "the webhook was not called");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(error.contains("the database is away"), "{error}");
    assert!(!rig.outbox.notified(1));

    rig.outbox.broken.store(false, Ordering::SeqCst);
    rig.until("marked once the store is back", |r| r.outbox.notified(1))
        .await;
    assert_eq!(hook.requests().len(), 1, "not sent again");
}

#[tokio::test]
async fn a_dead_smtp_server_does_not_stop_the_webhook_and_is_given_up() {
    let hook = Endpoint::start(&[], None).await;
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let cfg = NotifyConfig {
        retry_initial_secs: 10,
        retry_give_up_secs: 60,
        ..config(
            Some(local_email(dead_port)),
            vec![webhook("chat", &hook.url, WebhookFormat::Json)],
        )
    };
    let mut rig = Rig::new(&cfg);
    rig.outbox.push(event(
        1,
        EventKind::Firing,
        "node-unreachable",
        "node node-a",
    ));
    rig.pass().await;
    rig.clock.advance_secs(30);

    rig.until("the webhook took it while the mail failed", |r| {
        matches!(
            r.target_state("webhook chat"),
            Some((TargetState::Sent, ..))
        ) && matches!(
            r.target_state("email"),
            Some((TargetState::Waiting, 1.., _, _))
        )
    })
    .await;
    assert!(!rig.outbox.notified(1));
    let (_, _, error, _) = rig.target_state("email").unwrap();
    assert!(
        error.unwrap().starts_with("email: "),
        "errors name the target"
    );

    // Past the give-up delay, the next failure is the last one.
    rig.clock.advance_secs(120);
    rig.until("the mail is given up and the event marked", |r| {
        r.outbox.notified(1)
    })
    .await;
    assert!(rig.notifier.status().is_empty());
    assert_eq!(hook.requests().len(), 1, "the webhook was not called again");
}

#[tokio::test]
async fn a_hanging_smtp_server_times_out_without_holding_the_webhook() {
    let hook = Endpoint::start(&[], None).await;
    // Accepts connections and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let holder = held.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = silent.accept().await {
            holder.lock().unwrap().push(stream);
        }
    });
    let cfg = config(
        Some(local_email(port)),
        vec![webhook("chat", &hook.url, WebhookFormat::Json)],
    );
    let mut rig = Rig::with_timeout(&cfg, Duration::from_secs(2));
    rig.outbox.push(event(
        1,
        EventKind::Firing,
        "unit-failed",
        "unit x on node-a",
    ));
    rig.pass().await;
    rig.clock.advance_secs(30);

    rig.until("the webhook took it", |r| {
        matches!(
            r.target_state("webhook chat"),
            Some((TargetState::Sent, ..))
        )
    })
    .await;
    rig.until("the mail timed out", |r| {
        matches!(
            r.target_state("email"),
            Some((TargetState::Waiting, 1, _, _))
        )
    })
    .await;
    assert!(!held.lock().unwrap().is_empty(), "the mail did connect");
    assert!(!rig.outbox.notified(1));
}

#[tokio::test]
async fn silenced_events_are_marked_and_never_sent() {
    let work = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(work.path(), SmtpOptions::default()).await;
    let mut rig = Rig::new(&config(Some(local_email(smtp.port)), vec![]));
    let mut quiet = event(
        1,
        EventKind::Firing,
        "disk-temperature",
        "disk S1 on node-a",
    );
    quiet.silenced = true;
    rig.outbox.push(quiet);
    rig.pass().await;
    assert!(rig.outbox.notified(1), "a silenced event is marked at once");
    assert_eq!(rig.notifier.waiting(), 0);

    let mut quiet = event(
        2,
        EventKind::Resolved,
        "disk-temperature",
        "disk S1 on node-a",
    );
    quiet.silenced = true;
    rig.outbox.push(quiet);
    rig.outbox.push(event(
        3,
        EventKind::Firing,
        "clock-unsynchronised",
        "node node-a",
    ));
    rig.pass().await;
    rig.clock.advance_secs(30);
    rig.until("all marked", |r| r.outbox.all_notified()).await;

    let mails = smtp.messages();
    assert_eq!(
        mails.len(),
        1,
        "only the event that is not silenced: {mails:#?}"
    );
    assert_eq!(
        subject_of(&mails[0]),
        "[coloc] 1 firing: clock-unsynchronised on node node-a"
    );
    assert!(!mails[0].contains("disk-temperature"));
}

#[tokio::test]
async fn ntfy_gets_text_with_title_priority_tags_and_token() {
    let work = tempfile::tempdir().unwrap();
    let hook = Endpoint::start(&[], None).await;
    let token = work.path().join("ntfy-token");
    std::fs::write(&token, "tk_secret\n").unwrap();
    let mut ntfy = webhook("ntfy", &hook.url, WebhookFormat::Ntfy);
    ntfy.token_file = Some(token);
    let mut rig = Rig::new(&config(None, vec![ntfy]));
    rig.outbox.push(event(
        1,
        EventKind::Firing,
        "disk-nvme-critical-warning",
        "disk S1 on node-a",
    ));
    rig.pass().await;
    rig.clock.advance_secs(30);
    rig.until("notified", |r| r.outbox.all_notified()).await;

    let calls = hook.requests();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.headers["authorization"], "Bearer tk_secret");
    assert_eq!(
        call.headers["title"],
        "[coloc] 1 firing: disk-nvme-critical-warning on disk S1 on node-a"
    );
    assert_eq!(call.headers["priority"], "urgent");
    assert_eq!(call.headers["tags"], "rotating_light,coloc,firing");
    assert!(
        call.body.starts_with("coloc alerts: 1 firing."),
        "{}",
        call.body
    );
    assert!(call.body.contains("coloc alert show 1001"));
}

#[tokio::test]
async fn starttls_with_a_private_ca_and_a_login() {
    let work = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(work.path());
    let smtp = SmtpServer::start(
        work.path(),
        SmtpOptions {
            tls: Some((cert, key)),
            login: Some(("coloc".to_string(), "mail-pw".to_string())),
            implicit_tls: false,
        },
    )
    .await;
    let password = work.path().join("smtp-password");
    std::fs::write(&password, "mail-pw\n").unwrap();
    let email = EmailConfig {
        host: "localhost".to_string(),
        tls: SmtpTls::Starttls,
        username: Some("coloc".to_string()),
        password_file: Some(password.clone()),
        ca_file: Some(ca),
        ..local_email(smtp.port)
    };
    Notifier::send_test(&config(Some(email.clone()), vec![]))
        .await
        .unwrap();
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("X-Test-TLS: True"), "{}", mails[0]);
    assert!(mails[0].contains("X-Test-Auth: True"), "{}", mails[0]);
    assert!(subject_of(&mails[0]).contains("notify-test"));

    // Without the private CA the server is not trusted: nothing is sent.
    let untrusted = EmailConfig {
        ca_file: None,
        ..email.clone()
    };
    let err = Notifier::send_test(&config(Some(untrusted), vec![]))
        .await
        .unwrap_err();
    let text = coloc_proto::error_chain(&err);
    assert!(text.starts_with("email: "), "{text}");
    assert!(text.contains("invalid peer certificate"), "{text}");
    // A wrong password is refused by the server.
    std::fs::write(&password, "wrong\n").unwrap();
    let err = Notifier::send_test(&config(Some(email), vec![]))
        .await
        .unwrap_err();
    let text = coloc_proto::error_chain(&err);
    assert!(
        text.contains("535"),
        "the server's refusal is in the error: {text}"
    );
    assert_eq!(smtp.messages().len(), 1);
}

#[tokio::test]
async fn implicit_tls_on_an_smtps_port() {
    let work = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(work.path());
    let smtp = SmtpServer::start(
        work.path(),
        SmtpOptions {
            tls: Some((cert, key)),
            implicit_tls: true,
            login: None,
        },
    )
    .await;
    let email = EmailConfig {
        host: "localhost".to_string(),
        tls: SmtpTls::Tls,
        ca_file: Some(ca),
        ..local_email(smtp.port)
    };
    Notifier::send_test(&config(Some(email.clone()), vec![]))
        .await
        .unwrap();
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("X-Test-TLS: True"), "{}", mails[0]);
}

#[tokio::test]
async fn an_https_webhook_with_a_private_ca() {
    let work = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(work.path());
    let certs = vec![rustls::pki_types::CertificateDer::from(
        pem::parse(std::fs::read(&cert).unwrap())
            .unwrap()
            .into_contents(),
    )];
    let key = rustls::pki_types::PrivateKeyDer::try_from(
        pem::parse(std::fs::read(&key).unwrap())
            .unwrap()
            .into_contents(),
    )
    .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let hook = Endpoint::start(&[], Some(tokio_rustls::TlsAcceptor::from(Arc::new(server)))).await;
    let mut hook_cfg = webhook("matrix", &hook.url, WebhookFormat::Json);
    hook_cfg.ca_file = Some(ca);
    Notifier::send_test(&config(None, vec![hook_cfg.clone()]))
        .await
        .unwrap();
    let calls = hook.requests();
    assert_eq!(calls.len(), 1);
    let doc: serde_json::Value = serde_json::from_str(&calls[0].body).unwrap();
    assert_eq!(doc["events"][0]["rule"], "notify-test");

    hook_cfg.ca_file = None;
    let err = Notifier::send_test(&config(None, vec![hook_cfg]))
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("webhook matrix: "), "{err}");
    assert_eq!(hook.requests().len(), 1);
}

#[tokio::test]
async fn bad_configurations_are_refused_with_the_key_named() {
    let outbox: Arc<dyn Outbox> = Arc::new(MemoryOutbox::default());
    let refused = |cfg: NotifyConfig| {
        let err = Notifier::new(&cfg, outbox.clone()).unwrap_err();
        coloc_proto::error_chain(&err)
    };

    let remote_http = config(
        None,
        vec![webhook(
            "chat",
            "http://chat.example.org/hooks/x",
            WebhookFormat::Json,
        )],
    );
    let err = refused(remote_http);
    assert!(err.contains("notify.webhook \"chat\".url"), "{err}");
    assert!(err.contains("only allowed for localhost"), "{err}");

    let plain_remote = config(
        Some(EmailConfig {
            host: "mail.example.org".to_string(),
            ..local_email(25)
        }),
        vec![],
    );
    let err = refused(plain_remote);
    assert!(err.contains("notify.email.tls"), "{err}");

    let missing = PathBuf::from("/nonexistent/coloc/smtp-password");
    let no_password = config(
        Some(EmailConfig {
            host: "mail.example.org".to_string(),
            tls: SmtpTls::Starttls,
            username: Some("coloc".to_string()),
            password_file: Some(missing),
            ..local_email(587)
        }),
        vec![],
    );
    let err = refused(no_password);
    assert!(
        err.contains("cannot read notify.email.password_file /nonexistent/coloc/smtp-password"),
        "{err}"
    );

    let err = refused(NotifyConfig::default());
    assert!(err.contains("no notification target"), "{err}");
}

#[test]
fn the_example_notify_section_parses_once_uncommented() {
    let example = include_str!("../../examples/colocd.toml");
    let start = example
        .find("#[notify]")
        .expect("examples/colocd.toml has a commented [notify] section");
    let section: String = example[start..]
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        // "#key = value" is a setting; "# text" is a comment.
        .filter(|l| !l.is_empty() && !l.starts_with([' ', '#']))
        .map(|l| format!("{l}\n"))
        .collect();
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        notify: NotifyConfig,
    }
    let file: File = toml::from_str(&section).unwrap_or_else(|e| panic!("{e}\n{section}"));
    file.notify.validate().unwrap();
    assert!(file.notify.has_targets());
    assert_eq!(file.notify.webhooks.len(), 2);
}
