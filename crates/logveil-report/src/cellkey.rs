//! TEMPORARY STUB written by the lead so the crate compiles while helper-1 writes the real
//! module: helper-1, replace this whole file with your implementation (same API).
#![allow(dead_code, unused_variables, clippy::pedantic)]
use std::path::Path;
use std::sync::Arc;

use crate::aggregate::CellState;

pub const DEFAULT_MAX_NOISE: u32 = 3;
pub const DEFAULT_VARIANCE: f64 = 1.0;
pub const DEFAULT_MAGNITUDE: f64 = 0.05;

#[derive(Debug, thiserror::Error)]
#[error("stub")]
pub struct CellKeyError;

#[derive(Debug)]
pub struct RecordKeys;
impl RecordKeys {
    pub fn new(noise_secret: &[u8; 32], audience: &str) -> Self {
        Self
    }
}
#[derive(Debug)]
pub struct PTable;
impl PTable {
    pub fn generate(max_noise: u32, variance: f64) -> Result<Self, CellKeyError> {
        Ok(Self)
    }
    pub fn from_csv_file(path: &Path) -> Result<Self, CellKeyError> {
        Ok(Self)
    }
    pub fn sha256(&self) -> String {
        String::new()
    }
}
#[derive(Debug)]
pub struct Perturbed {
    pub visitors: u64,
    pub views: u64,
    pub bytes: u64,
}
#[derive(Debug)]
pub struct CellKeyMethod {
    pub ptable: Arc<PTable>,
    pub magnitude: f64,
}
impl CellKeyMethod {
    pub fn perturb(&self, keys: &RecordKeys, cell: &CellState) -> Perturbed {
        Perturbed {
            visitors: cell.visitors.len() as u64,
            views: cell.views,
            bytes: cell.bytes,
        }
    }
    pub fn metadata_json(&self) -> String {
        String::new()
    }
}
