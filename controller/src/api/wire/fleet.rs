//! Sites and nodes requests.

use std::collections::BTreeMap;

use coloc_proto::controller::v1 as pb;
use coloc_proto::domain::{
    Country, InvalidInput, NodeName, SiteName, Text, check_label, check_name,
};

use super::{optional, required};
use crate::store::LabelChange;

/// Lifetime of a join token when the caller asks for 0.
pub const JOIN_TOKEN_DEFAULT_TTL: u64 = 3600;
/// Shortest and longest lifetime of a join token.
pub const JOIN_TOKEN_MIN_TTL: u64 = 60;
pub const JOIN_TOKEN_MAX_TTL: u64 = 7 * 86400;
/// Nodes in a page of a listing when the caller asks for 0, and at most.
pub const NODE_PAGE_DEFAULT: usize = 500;
pub const NODE_PAGE_MAX: u32 = 1000;

/// `CreateSite`. Whether the country is one the cooperative hosts in is
/// policy, the handler's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSite {
    pub name: SiteName,
    pub country: Country,
    pub city: String,
    pub description: String,
}

impl TryFrom<pb::CreateSiteRequest> for CreateSite {
    type Error = InvalidInput;
    fn try_from(r: pb::CreateSiteRequest) -> Result<Self, InvalidInput> {
        let name = required(r.name)?;
        let country = Country::new(&r.country)?;
        Text::City.check(&r.city)?;
        Text::SiteDescription.check(&r.description)?;
        Ok(CreateSite {
            name,
            country,
            city: r.city,
            description: r.description,
        })
    }
}

/// `CreateJoinToken`, its lifetime resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateJoinToken {
    pub site: SiteName,
    pub ttl_secs: u64,
}

impl TryFrom<pb::CreateJoinTokenRequest> for CreateJoinToken {
    type Error = InvalidInput;
    fn try_from(r: pb::CreateJoinTokenRequest) -> Result<Self, InvalidInput> {
        let site = required(r.site)?;
        let ttl_secs = match r.ttl_secs {
            0 => JOIN_TOKEN_DEFAULT_TTL,
            t if (JOIN_TOKEN_MIN_TTL..=JOIN_TOKEN_MAX_TTL).contains(&t) => t,
            t => {
                return Err(InvalidInput::field(
                    "ttl",
                    format!("{t} s is outside 60 s to 7 days"),
                ));
            }
        };
        Ok(CreateJoinToken { site, ttl_secs })
    }
}

/// `ListNodes`: one page, sorted by name, after `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListNodes {
    pub site: Option<SiteName>,
    pub limit: usize,
    pub after: Option<NodeName>,
}

impl TryFrom<pb::ListNodesRequest> for ListNodes {
    type Error = InvalidInput;
    fn try_from(r: pb::ListNodesRequest) -> Result<Self, InvalidInput> {
        let site = optional(&r.site, SiteName::new)?;
        let limit = match r.limit {
            0 => NODE_PAGE_DEFAULT,
            l if l <= NODE_PAGE_MAX => l as usize,
            _ => {
                return Err(InvalidInput::field(
                    "limit",
                    format!("at most {NODE_PAGE_MAX} nodes per page"),
                ));
            }
        };
        let after = optional(&r.after, NodeName::new)?;
        Ok(ListNodes { site, limit, after })
    }
}

/// `GetNode`, `PingNode`, `RefreshNodeFacts`: one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetNode {
    pub name: NodeName,
}

impl TryFrom<pb::GetNodeRequest> for GetNode {
    type Error = InvalidInput;
    fn try_from(r: pb::GetNodeRequest) -> Result<Self, InvalidInput> {
        Ok(GetNode {
            name: required(r.name)?,
        })
    }
}

/// `DrainNode`: drain or undrain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainNode {
    pub name: NodeName,
    pub drain: bool,
}

impl TryFrom<pb::DrainNodeRequest> for DrainNode {
    type Error = InvalidInput;
    fn try_from(r: pb::DrainNodeRequest) -> Result<Self, InvalidInput> {
        Ok(DrainNode {
            name: required(r.name)?,
            drain: r.drain,
        })
    }
}

/// `RemoveNode`: the node, its name typed twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveNode {
    pub name: NodeName,
}

impl TryFrom<pb::RemoveNodeRequest> for RemoveNode {
    type Error = InvalidInput;
    fn try_from(r: pb::RemoveNodeRequest) -> Result<Self, InvalidInput> {
        let name: NodeName = required(r.name)?;
        if r.confirm != name.as_str() {
            return Err(InvalidInput::field(
                "confirm",
                format!(
                    "removing a node refuses its certificates for good and orphans its \
                     volumes and apps: confirm with {:?}",
                    name.as_str()
                ),
            ));
        }
        Ok(RemoveNode { name })
    }
}

/// `SetNodeLabels`: what the store changes, in one transaction.
impl TryFrom<pb::SetNodeLabelsRequest> for LabelChange {
    type Error = InvalidInput;
    fn try_from(r: pb::SetNodeLabelsRequest) -> Result<Self, InvalidInput> {
        if r.set.is_empty() && r.remove.is_empty() {
            return Err(InvalidInput::field("labels", "nothing to set or remove"));
        }
        let nodes = r
            .nodes
            .into_iter()
            .map(required)
            .collect::<Result<Vec<NodeName>, _>>()?;
        let mut set = BTreeMap::new();
        for (key, value) in r.set {
            check_label(&key, &value)?;
            set.insert(key, value);
        }
        for key in &r.remove {
            check_name("label key", key)?;
        }
        Ok(LabelChange {
            nodes,
            set,
            remove: r.remove,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::refused;

    fn site(name: &str, country: &str, city: &str, description: &str) -> pb::CreateSiteRequest {
        pb::CreateSiteRequest {
            name: name.into(),
            country: country.into(),
            city: city.into(),
            description: description.into(),
        }
    }

    #[test]
    fn node_removal_is_confirmed_with_the_name() {
        let ask = |name: &str, confirm: &str| {
            RemoveNode::try_from(pb::RemoveNodeRequest {
                name: name.into(),
                confirm: confirm.into(),
            })
        };
        assert_eq!(ask("n1", "n1").unwrap().name.as_str(), "n1");
        refused(ask("n1", ""), "confirm");
        refused(ask("n1", "n2"), "confirm");
        refused(ask("n1", "N1"), "confirm");
        refused(ask("", ""), "node name");
        refused(ask("N1", "N1"), "node name");
    }

    #[test]
    fn sites() {
        let s = CreateSite::try_from(site("paris-1", "fr", "Paris", "the basement")).unwrap();
        assert_eq!(s.name.as_str(), "paris-1");
        assert!(s.country.is_france());
        assert_eq!(
            (s.city.as_str(), s.description.as_str()),
            ("Paris", "the basement")
        );
        refused(CreateSite::try_from(site("", "FR", "", "")), "site name");
        refused(
            CreateSite::try_from(site("Paris 1", "FR", "", "")),
            "site name",
        );
        refused(CreateSite::try_from(site("p", "FRA", "", "")), "country");
        refused(CreateSite::try_from(site("p", "", "", "")), "country");
        refused(CreateSite::try_from(site("p", "FR", "a\nb", "")), "city");
        refused(
            CreateSite::try_from(site("p", "FR", &"c".repeat(101), "")),
            "city",
        );
        refused(
            CreateSite::try_from(site("p", "FR", "", &"d".repeat(501))),
            "description",
        );
        refused(
            CreateSite::try_from(site("p", "FR", "", "\u{1b}[2J")),
            "description",
        );
    }

    #[test]
    fn join_token_lifetimes() {
        let t = |site: &str, ttl_secs| pb::CreateJoinTokenRequest {
            site: site.into(),
            ttl_secs,
        };
        let ok = CreateJoinToken::try_from(t("paris-1", 0)).unwrap();
        assert_eq!(ok.ttl_secs, JOIN_TOKEN_DEFAULT_TTL);
        assert_eq!(
            CreateJoinToken::try_from(t("paris-1", 60))
                .unwrap()
                .ttl_secs,
            60
        );
        assert_eq!(
            CreateJoinToken::try_from(t("paris-1", JOIN_TOKEN_MAX_TTL))
                .unwrap()
                .ttl_secs,
            JOIN_TOKEN_MAX_TTL
        );
        refused(CreateJoinToken::try_from(t("paris-1", 59)), "invalid ttl");
        refused(
            CreateJoinToken::try_from(t("paris-1", JOIN_TOKEN_MAX_TTL + 1)),
            "invalid ttl",
        );
        refused(CreateJoinToken::try_from(t("", 0)), "site name");
    }

    #[test]
    fn node_pages() {
        let l = |site: &str, limit, after: &str| pb::ListNodesRequest {
            site: site.into(),
            limit,
            after: after.into(),
        };
        assert_eq!(
            ListNodes::try_from(l("", 0, "")).unwrap(),
            ListNodes {
                site: None,
                limit: NODE_PAGE_DEFAULT,
                after: None
            }
        );
        let page = ListNodes::try_from(l("paris-1", 10, "n1")).unwrap();
        assert_eq!(page.site.unwrap().as_str(), "paris-1");
        assert_eq!(page.limit, 10);
        assert_eq!(page.after.unwrap().as_str(), "n1");
        refused(ListNodes::try_from(l("", 1001, "")), "invalid limit");
        refused(ListNodes::try_from(l("Paris", 0, "")), "site name");
        refused(ListNodes::try_from(l("", 0, "n1;reboot")), "node name");
    }

    #[test]
    fn node_references() {
        let get = |name: &str| GetNode::try_from(pb::GetNodeRequest { name: name.into() });
        assert_eq!(get("n1").unwrap().name.as_str(), "n1");
        for bad in ["", "N1", "n1\n", &"n".repeat(64)] {
            refused(get(bad), "node name");
        }
        let drain = DrainNode::try_from(pb::DrainNodeRequest {
            name: "n1".into(),
            drain: true,
        })
        .unwrap();
        assert!(drain.drain);
    }

    #[test]
    fn label_changes() {
        let req =
            |nodes: &[&str], set: &[(&str, &str)], remove: &[&str]| pb::SetNodeLabelsRequest {
                nodes: nodes.iter().map(|s| s.to_string()).collect(),
                set: set
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                remove: remove.iter().map(|s| s.to_string()).collect(),
            };
        let c = LabelChange::try_from(req(&["n1", "n2"], &[("rack", "b2")], &["old"])).unwrap();
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(c.set.get("rack").map(String::as_str), Some("b2"));
        assert_eq!(c.remove, ["old"]);
        assert!(
            LabelChange::try_from(req(&[], &[], &["old"]))
                .unwrap()
                .nodes
                .is_empty()
        );
        refused(
            LabelChange::try_from(req(&["n1"], &[], &[])),
            "nothing to set",
        );
        refused(
            LabelChange::try_from(req(&["N1"], &[("a", "b")], &[])),
            "node name",
        );
        refused(
            LabelChange::try_from(req(&[], &[("Rack", "b")], &[])),
            "label key",
        );
        refused(
            LabelChange::try_from(req(&[], &[("rack", "b\n2")], &[])),
            "label value",
        );
        refused(LabelChange::try_from(req(&[], &[], &["a b"])), "label key");
    }
}
