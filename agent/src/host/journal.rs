//! SCAFFOLD: replaced by its owner. Compiles so that the crate builds.
#![allow(dead_code)]
use async_trait::async_trait;

use super::{HostError, Journal, JournalPage, UnitName};
use crate::runner::Runner;

#[derive(Debug, Clone)]
pub struct RealJournal {
    runner: Runner,
}

impl RealJournal {
    pub fn new(runner: Runner) -> RealJournal {
        RealJournal { runner }
    }
}

#[async_trait]
impl Journal for RealJournal {
    async fn unit_lines(
        &self,
        _unit: &UnitName,
        _lines: u32,
        _after_cursor: Option<&str>,
    ) -> Result<JournalPage, HostError> {
        Err(HostError::Unsupported {
            object: "journal".into(),
            what: "scaffold".into(),
        })
    }
}

#[derive(Debug, Default)]
pub struct FakeJournal;

#[async_trait]
impl Journal for FakeJournal {
    async fn unit_lines(
        &self,
        _unit: &UnitName,
        _lines: u32,
        _after_cursor: Option<&str>,
    ) -> Result<JournalPage, HostError> {
        Ok(JournalPage::default())
    }
}
