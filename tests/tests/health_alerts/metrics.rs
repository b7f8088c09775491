//! colocd's `/metrics` for the fleet, as Prometheus scrapes it: a node's
//! health report and a firing alert show in it.

use coloc_controller::metrics::MetricsConfig;
use coloc_proto::controller::v1 as pb;
use coloc_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{DEADLINE, Watch, nvme, report, send_report};

async fn scrape(addr: std::net::SocketAddr) -> Result<String> {
    let mut conn = TcpStream::connect(addr).await?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nhost: colocd\r\nconnection: close\r\n\r\n")
        .await?;
    let mut out = Vec::new();
    conn.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The value of the first sample line of `name` holding every label.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|lab| l.contains(lab)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn a_firing_alert_and_a_nodes_disks_are_in_the_metrics() -> Result<()> {
    init_test_logging();
    let mut config = fast_config();
    config.metrics = Some(MetricsConfig {
        listen: "127.0.0.1:0".parse()?,
        bearer_token_file: None,
    });
    let ctl = TestController::start_with(config).await?;
    let addr = ctl.running().metrics_addr.context("no metrics address")?;
    let mut api = ctl.admin().await?;
    create_site(&mut api, "paris-1").await?;
    let agents = raw_fleet(&ctl, "paris-1", &["n1"]).await?;
    let admin = Watch::new(&ctl, &ctl.admin_token).await?;

    let before = scrape(addr).await?;
    assert!(before.starts_with("HTTP/1.1 200"), "{before}");
    let rule = "rule=\"disk-nvme-critical-warning\"";
    assert_eq!(
        sample(
            &before,
            "coloc_alerts_firing",
            &[rule, "severity=\"critical\""]
        ),
        Some(0.0),
        "{before}"
    );
    send_report(&agents[0], report(1, vec![nvme("COLOC0001", 4)])).await?;
    admin
        .wait_alert("disk-nvme-critical-warning", pb::AlertState::Firing)
        .await?;
    // A render is kept about a second: scrape until the new one.
    let text = wait_for("the alert in /metrics", DEADLINE, || async {
        let text = scrape(addr).await.ok()?;
        (sample(
            &text,
            "coloc_alerts_firing",
            &[rule, "severity=\"critical\""],
        ) == Some(1.0))
        .then_some(text)
    })
    .await?;
    assert!(
        text.lines()
            .any(|l| l.contains("COLOC0001") && l.contains("node=\"n1\"")),
        "the disk is not in the metrics: {text}"
    );
    Ok(())
}
