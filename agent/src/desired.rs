//! The desired configuration as the agent works on it: the wire
//! [`DesiredConfig`] converted once, as a whole, into checked domain values
//! ([`Desired`]), before the ledger accepts it and before any pass.
//!
//! The rules for each value are proto's (names in `coloc_proto::domain`,
//! pools and volumes in `coloc_proto::storage`, apps and the proxy in
//! `coloc_proto::apps`), the same the controller applied when it rendered
//! the configuration; the agent applies them again as if the controller
//! were compromised. What only makes sense for a whole configuration is
//! checked here: a pool, volume or app declared twice, two volumes on one
//! mount path (purged ones aside), two instances on one port. A configuration with a single
//! bad value is refused as a whole with one error naming the entry, so
//! that a node never applies half of what it was told.

use std::collections::{BTreeMap, BTreeSet};

use coloc_proto::agent::v1::{AppSpec, AppState, DesiredConfig, VolumeState};
use coloc_proto::apps::{AppDecl, AppIdentity, ProxyDecl, app_state};
use coloc_proto::domain::{InvalidInput, NodeName, SiteName, check_label, clip};
use coloc_proto::storage::{PoolDecl, PoolName, VolumeDecl, VolumeId};

/// A desired configuration whose every value passed proto's rules and
/// whose entries do not contradict each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub generation: u64,
    pub node: NodeName,
    /// `None` when the controller did not say (older controllers).
    pub site: Option<SiteName>,
    pub draining: bool,
    pub labels: BTreeMap<String, String>,
    /// Pools this node must have; a pool not listed is left alone.
    pub pools: Vec<PoolDecl>,
    /// Every coloc volume of the node, in every state.
    pub volumes: Vec<VolumeDecl>,
    /// App instances, in the configuration's order.
    pub apps: Vec<AppEntry>,
    pub proxy: Option<ProxyDecl>,
}

/// One app instance of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppEntry {
    /// RUNNING or STOPPED, every field checked.
    Deploy(Box<AppDecl>),
    /// REMOVED: only who it is matters (and is checked), so that an
    /// instance is always removable, whatever else its specification says.
    Remove(AppIdentity),
}

impl AppEntry {
    pub fn identity(
        &self,
    ) -> (
        &coloc_proto::domain::TenantName,
        &coloc_proto::apps::AppName,
    ) {
        match self {
            AppEntry::Deploy(app) => (&app.tenant, &app.app),
            AppEntry::Remove(id) => (&id.tenant, &id.app),
        }
    }
}

/// Why a desired configuration is refused. Entries are named by their
/// position and, where it could be read, their name (clipped).
#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    #[error("invalid node name")]
    Node(#[source] InvalidInput),
    #[error("invalid site")]
    Site(#[source] InvalidInput),
    #[error("invalid label {key:?}")]
    Label {
        key: String,
        #[source]
        source: InvalidInput,
    },
    #[error("pool #{index} ({name:?})")]
    Pool {
        index: usize,
        name: String,
        #[source]
        source: InvalidInput,
    },
    #[error("volume #{index} ({name:?})")]
    Volume {
        index: usize,
        name: String,
        #[source]
        source: InvalidInput,
    },
    #[error("app #{index} ({name:?})")]
    App {
        index: usize,
        name: String,
        #[source]
        source: InvalidInput,
    },
    #[error("invalid proxy")]
    Proxy(#[source] InvalidInput),
    #[error("pool {0} is declared twice")]
    DuplicatePool(PoolName),
    #[error("volume {0} is declared twice")]
    DuplicateVolume(VolumeId),
    #[error("volumes {first} and {second} both mount at {path}")]
    SameMountPath {
        first: VolumeId,
        second: VolumeId,
        path: String,
    },
    #[error("app {0} is declared twice")]
    DuplicateApp(String),
    #[error("port {port} is declared for both {first} and {second}")]
    SamePort {
        port: u16,
        first: String,
        second: String,
    },
}

impl TryFrom<&DesiredConfig> for Desired {
    type Error = DesiredError;

    fn try_from(wire: &DesiredConfig) -> Result<Desired, DesiredError> {
        let node = NodeName::new(wire.node_name.as_str()).map_err(DesiredError::Node)?;
        let site = if wire.site.is_empty() {
            None
        } else {
            Some(SiteName::new(wire.site.as_str()).map_err(DesiredError::Site)?)
        };
        let mut labels = BTreeMap::new();
        for (key, value) in &wire.labels {
            check_label(key, value).map_err(|source| DesiredError::Label {
                key: clip(key),
                source,
            })?;
            labels.insert(key.clone(), value.clone());
        }
        let proxy = wire
            .proxy
            .as_ref()
            .map(ProxyDecl::try_from)
            .transpose()
            .map_err(DesiredError::Proxy)?;
        Ok(Desired {
            generation: wire.generation,
            node,
            site,
            draining: wire.draining,
            labels,
            pools: pools(wire)?,
            volumes: volumes(wire)?,
            apps: apps(wire, proxy.as_ref().map(|p| p.domain.as_str()))?,
            proxy,
        })
    }
}

fn pools(wire: &DesiredConfig) -> Result<Vec<PoolDecl>, DesiredError> {
    let mut seen = BTreeSet::new();
    let mut pools = Vec::with_capacity(wire.pools.len());
    for (index, spec) in wire.pools.iter().enumerate() {
        let pool = PoolDecl::try_from(spec).map_err(|source| DesiredError::Pool {
            index,
            name: clip(&spec.name),
            source,
        })?;
        if !seen.insert(pool.name.clone()) {
            return Err(DesiredError::DuplicatePool(pool.name));
        }
        pools.push(pool);
    }
    Ok(pools)
}

fn volumes(wire: &DesiredConfig) -> Result<Vec<VolumeDecl>, DesiredError> {
    let mut ids = BTreeSet::new();
    let mut paths: BTreeMap<String, VolumeId> = BTreeMap::new();
    let mut volumes = Vec::with_capacity(wire.volumes.len());
    for (index, spec) in wire.volumes.iter().enumerate() {
        let volume = VolumeDecl::try_from(spec).map_err(|source| DesiredError::Volume {
            index,
            name: clip(&format!("{}/{}", spec.tenant, spec.name)),
            source,
        })?;
        if !ids.insert(volume.id.clone()) {
            return Err(DesiredError::DuplicateVolume(volume.id));
        }
        // A purged volume's name may already be taken again by a new one.
        if volume.state != VolumeState::Purged
            && let Some(first) = paths.insert(volume.mount_path.clone(), volume.id.clone())
        {
            return Err(DesiredError::SameMountPath {
                first,
                second: volume.id,
                path: volume.mount_path,
            });
        }
        volumes.push(volume);
    }
    Ok(volumes)
}

fn app(spec: &AppSpec, domain: Option<&str>) -> Result<AppEntry, InvalidInput> {
    if app_state(spec.state)? == AppState::Removed {
        return Ok(AppEntry::Remove(AppIdentity::try_from(spec)?));
    }
    Ok(AppEntry::Deploy(Box::new(AppDecl::from_spec(
        spec, domain,
    )?)))
}

fn apps(wire: &DesiredConfig, domain: Option<&str>) -> Result<Vec<AppEntry>, DesiredError> {
    let mut seen = BTreeSet::new();
    let mut ports: BTreeMap<u16, String> = BTreeMap::new();
    let mut apps = Vec::with_capacity(wire.apps.len());
    for (index, spec) in wire.apps.iter().enumerate() {
        let entry = app(spec, domain).map_err(|source| DesiredError::App {
            index,
            name: clip(&format!("{}/{}", spec.tenant, spec.app)),
            source,
        })?;
        let (tenant, name) = entry.identity();
        let label = format!("{tenant}/{name}");
        if !seen.insert(label.clone()) {
            return Err(DesiredError::DuplicateApp(label));
        }
        if let AppEntry::Deploy(decl) = &entry
            && let Some(first) = ports.insert(decl.port, label.clone())
        {
            return Err(DesiredError::SamePort {
                port: decl.port,
                first,
                second: label,
            });
        }
        apps.push(entry);
    }
    Ok(apps)
}

#[cfg(test)]
mod tests;
