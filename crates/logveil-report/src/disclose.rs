//! Disclosure control: which cells of a finished state may be published.
//!
//! Now: a k-threshold per audience. A cell is published only if at least `k_min` distinct
//! visitors stand behind it (people, not requests). Withheld cells are dropped, not zeroed,
//! and counted.

use crate::aggregate::{CellKey, CellState};

/// A cell cleared for publication, with its exact metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedRow {
    pub key: CellKey,
    pub views: u64,
    pub visitors: u64,
    pub bytes: u64,
    pub accounts: u64,
}

/// The published rows of one partition and how many cells were withheld.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Disclosed {
    pub rows: Vec<PublishedRow>,
    pub suppressed: u64,
}

/// Applies the k-threshold to one partition's cells (kept in their sorted order).
pub fn apply_k_threshold(cells: Vec<(CellKey, CellState)>, k_min: u32) -> Disclosed {
    let mut out = Disclosed::default();
    for (key, cell) in cells {
        let visitors = cell.visitors.len() as u64;
        if visitors < u64::from(k_min) {
            out.suppressed += 1;
            continue;
        }
        out.rows.push(PublishedRow {
            key,
            views: cell.views,
            visitors,
            bytes: cell.bytes,
            accounts: cell.accounts.len() as u64,
        });
    }
    out
}
