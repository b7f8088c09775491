//! Alerts reach the sysadmins: colocd's notifier reads the alert store's
//! outbox and posts each firing and resolution to a real HTTP endpoint
//! (a webhook listening on loopback); a silenced alert's events are not
//! sent.

use coloc_controller::notify::{NotifyConfig, WebhookConfig, WebhookFormat};
use coloc_proto::controller::v1 as pb;
use coloc_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::{DEADLINE, Watch, nvme, report, send_report, wait_report};

/// A webhook endpoint: every POST body it receives, parsed as JSON.
async fn webhook() -> Result<(String, mpsc::UnboundedReceiver<serde_json::Value>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks/coloc", listener.local_addr()?);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then Content-Length bytes of body.
                let body_at = loop {
                    let Ok(n) = conn.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..body_at]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < body_at + length {
                    let Ok(n) = conn.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                if let Ok(json) = serde_json::from_slice(&buf[body_at..body_at + length]) {
                    let _ = tx.send(json);
                }
            });
        }
    });
    Ok((url, rx))
}

/// The events of the next message the webhook receives, as
/// (status, rule, subject).
async fn next_events(
    rx: &mut mpsc::UnboundedReceiver<serde_json::Value>,
) -> Result<Vec<(String, String, String)>> {
    let msg = tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .context("no notification within the deadline")?
        .context("the webhook stopped")?;
    let events = msg["events"].as_array().context("no events")?;
    Ok(events
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (s("status"), s("rule"), s("subject"))
        })
        .collect())
}

#[tokio::test]
async fn firing_and_resolution_are_posted_and_a_silenced_alert_is_not() -> Result<()> {
    init_test_logging();
    let (url, mut posts) = webhook().await?;
    let mut config = fast_config();
    config.notify = NotifyConfig {
        group_wait_secs: 0,
        webhooks: vec![WebhookConfig {
            name: "test-hook".into(),
            url,
            format: WebhookFormat::Json,
            token_file: None,
            ca_file: None,
        }],
        ..NotifyConfig::default()
    };
    let ctl = TestController::start_with(config).await?;
    let mut api = ctl.admin().await?;
    create_site(&mut api, "paris-1").await?;
    let agents = raw_fleet(&ctl, "paris-1", &["n1"]).await?;
    let n1 = &agents[0];
    let mut admin = Watch::new(&ctl, &ctl.admin_token).await?;

    send_report(n1, report(1, vec![nvme("S1", 4)])).await?;
    let fired = next_events(&mut posts).await?;
    let firing = (
        "firing".to_string(),
        "disk-nvme-critical-warning".to_string(),
        "disk n1/S1".to_string(),
    );
    assert_eq!(fired, vec![firing.clone()]);
    send_report(n1, report(2, vec![nvme("S1", 0)])).await?;
    let resolved = next_events(&mut posts).await?;
    assert_eq!(resolved[0].0, "resolved");
    assert_eq!(resolved[0].2, "disk n1/S1");

    // Silenced, then resolved: that resolution is not posted. The next
    // alert's firing is, and comes after it in the outbox.
    send_report(n1, report(3, vec![nvme("S2", 4)])).await?;
    assert_eq!(next_events(&mut posts).await?[0].2, "disk n1/S2");
    let s2 = admin
        .list(false)
        .await?
        .into_iter()
        .find(|a| a.subject.as_ref().is_some_and(|s| s.name == "S2"))
        .context("S2's alert")?;
    admin
        .alerts
        .silence_alert(pb::SilenceAlertRequest {
            id: s2.id,
            duration_secs: 3600,
            comment: "drive on order".into(),
        })
        .await?;
    send_report(n1, report(4, vec![nvme("S2", 0)])).await?;
    wait_report(&admin, "n1", 4).await?;
    wait_for("S2's resolution", DEADLINE, || {
        let mut admin = admin.clone();
        async move {
            let a = admin
                .alerts
                .get_alert(pb::AlertRef { id: s2.id })
                .await
                .ok()?
                .into_inner();
            (a.state == pb::AlertState::Resolved as i32).then_some(())
        }
    })
    .await?;
    send_report(n1, report(5, vec![nvme("S3", 4)])).await?;
    let next = next_events(&mut posts).await?;
    assert_eq!(
        next,
        vec![(
            "firing".to_string(),
            "disk-nvme-critical-warning".to_string(),
            "disk n1/S3".to_string()
        )],
        "the silenced resolution was posted"
    );
    Ok(())
}
