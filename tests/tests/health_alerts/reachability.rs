//! A node that stops answering fires node-unreachable; it resolves when
//! the node comes back.

use coloc_proto::controller::v1 as pb;
use coloc_tests::*;

use crate::{fleet, nvme, report, send_report, wait_report};

#[tokio::test]
async fn an_unreachable_node_fires_and_resolves_when_it_returns() -> Result<()> {
    let (ctl, mut agents, admin) = fleet(&["n1", "n2"]).await?;
    let n1 = agents.remove(0);
    send_report(&n1, report(1, vec![nvme("S1", 0)])).await?;
    wait_report(&admin, "n1", 1).await?;
    let (key, cert) = (n1.identity().0.to_string(), n1.identity().1.to_string());
    // Power cut: the session ends, and after unreachable_after_secs of the
    // controller's clock the node is marked unreachable.
    drop(n1);
    let fired = admin
        .wait_alert("node-unreachable", pb::AlertState::Firing)
        .await?;
    let subject = fired.subject.clone().context("no subject")?;
    assert_eq!(
        (subject.kind, subject.node.as_str()),
        (pb::AlertSubjectKind::Node as i32, "n1")
    );
    assert_eq!(fired.severity, pb::AlertSeverity::Critical as i32);
    // Only n1: n2 still talks.
    let firing = admin.clone().list(false).await?;
    assert_eq!(firing.len(), 1, "{firing:#?}");

    let n1 = RawAgent::connect(&ctl, "n1", key, cert).await?;
    let resolved = admin
        .wait_alert("node-unreachable", pb::AlertState::Resolved)
        .await?;
    assert_eq!(resolved.id, fired.id);
    drop(n1);
    Ok(())
}
