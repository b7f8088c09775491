//! The node's facts as the agent reports them, at enrollment, in `Hello`
//! and on `RefreshFacts`: what [`Health`](crate::host::Health) says of the
//! machine, stamped with the agent's own version (which the host layer
//! cannot know). It must not probe the host itself.

use coloc_proto::agent::v1::NodeFacts;
use coloc_proto::domain::NodeName;

use crate::host::{Host, HostError};
use crate::version::AGENT_VERSION;

/// The host's facts with this agent's version, or the host's error.
pub async fn host_facts(host: &Host) -> Result<NodeFacts, HostError> {
    let mut facts = host.health.facts().await?;
    facts.agent_version = AGENT_VERSION.to_owned();
    Ok(facts)
}

/// The facts for `Hello` and enrollment. A host that cannot be probed must
/// not keep the node off the controller: its absence of facts is logged
/// and the controller gets the minimum (host name and agent version).
pub async fn gather_facts(host: &Host, node: &NodeName) -> NodeFacts {
    match host_facts(host).await {
        Ok(facts) => facts,
        Err(e) => {
            tracing::warn!(node = %node, error = %coloc_proto::error_chain(&e), "cannot gather host facts; sending the minimum");
            NodeFacts {
                hostname: node.to_string(),
                agent_version: AGENT_VERSION.to_owned(),
                ..NodeFacts::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;

    use super::*;
    use crate::host::health::HealthInputs;
    use crate::host::{Health, SmartReport};
    use coloc_proto::agent::v1::{HealthReport, MaintenanceKind, Unobserved};

    /// A host whose probes all fail.
    struct Unprobeable;

    #[async_trait]
    impl Health for Unprobeable {
        async fn facts(&self) -> Result<NodeFacts, HostError> {
            Err(HostError::ToolMissing {
                tool: "lsblk".into(),
            })
        }

        async fn smart(&self, device: &str) -> Result<SmartReport, HostError> {
            Err(HostError::ToolMissing {
                tool: format!("smartctl for {device}"),
            })
        }

        async fn report(&self, _inputs: &HealthInputs) -> HealthReport {
            HealthReport {
                unobserved: vec![Unobserved {
                    source: "disks".into(),
                    reason: "lsblk is not installed on this host".into(),
                }],
                ..HealthReport::default()
            }
        }

        async fn start_maintenance(
            &self,
            _kind: MaintenanceKind,
            subject: &str,
        ) -> Result<String, HostError> {
            Err(HostError::ToolMissing {
                tool: format!("zpool or smartctl for {subject}"),
            })
        }
    }

    #[tokio::test]
    async fn facts_carry_the_agent_version() {
        let node = NodeName::new("n1").unwrap();
        let facts = gather_facts(&Host::fake("n1"), &node).await;
        assert_eq!(facts.agent_version, AGENT_VERSION);
        assert_eq!(facts.hostname, "n1");
        assert_eq!(facts.disks.len(), 4, "the host's facts, not the minimum");
        let refreshed = host_facts(&Host::fake("n1")).await.unwrap();
        assert_eq!(refreshed, facts);
    }

    #[tokio::test]
    async fn a_host_that_cannot_be_probed_still_gets_the_minimum_through() {
        let mut host = Host::fake("n1");
        host.health = Arc::new(Unprobeable);
        let node = NodeName::new("n1").unwrap();
        let facts = gather_facts(&host, &node).await;
        assert_eq!(
            facts,
            NodeFacts {
                hostname: "n1".into(),
                agent_version: AGENT_VERSION.to_owned(),
                ..NodeFacts::default()
            }
        );
        assert!(host_facts(&host).await.unwrap_err().is_tool_missing());
    }
}
