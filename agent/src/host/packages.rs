//! SCAFFOLD: replaced by its owner. Compiles so that the crate builds.
#![allow(dead_code)]
use std::sync::Mutex;

use async_trait::async_trait;

use super::{HostError, Packages};
use crate::runner::Runner;

#[derive(Debug, Clone)]
pub struct RealPackages {
    runner: Runner,
}

impl RealPackages {
    pub fn new(runner: Runner) -> RealPackages {
        RealPackages { runner }
    }
}

#[async_trait]
impl Packages for RealPackages {
    async fn ensure_installed(&self, _packages: &[String]) -> Result<(), HostError> {
        Err(HostError::Unsupported {
            object: "apt".into(),
            what: "scaffold".into(),
        })
    }
}

#[derive(Debug, Default)]
pub struct FakePackages {
    installed: Mutex<Vec<String>>,
}

#[async_trait]
impl Packages for FakePackages {
    async fn ensure_installed(&self, packages: &[String]) -> Result<(), HostError> {
        let mut installed = self.installed.lock().unwrap_or_else(|p| p.into_inner());
        installed.extend(packages.iter().cloned());
        Ok(())
    }
}
