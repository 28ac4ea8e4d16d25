//! Reports: aggregate [`Event`](logveil_privacy::Event)s into cells, decide which cells
//! may be published, and write them as Parquet.
//!
//! - [`ReportSpec`]: bucket, dimensions, metrics, audience threshold.
//! - [`ReportState`]: exact, mergeable and serialisable per-cell state.
//! - [`disclose`]: the audience's disclosure control over the merged state.
//! - [`cellkey`]: the cell-key method: consistent, bounded noise on published counts and magnitudes.
//! - [`dp`]: exact discrete noise, per-release seeds, DP parameters, contribution bounding.
//! - [`ledger`]: every external release per audience, and the privacy budget it spent, in a
//!   hash-chained file in the state directory.
//! - [`identity`]: release identities (definition, noise key and true state, canonically encoded).
//! - [`release`]: the release protocol (plan → protect → charge → write) used by run, daemon and merge.
//! - [`suppress`]: complementary (secondary) cell suppression.
//! - [`partial`]: a worker's exact state of one window and batch as a Parquet partial, for merging.
//! - [`write`]: one atomically written Parquet file per report partition, with provenance metadata.

pub mod aggregate;
pub mod calendar;
pub mod cellkey;
pub mod disclose;
pub mod dp;
pub mod identity;
pub mod ledger;
pub mod partial;
pub mod release;
mod spec;
pub mod suppress;
pub mod write;

pub use aggregate::{CellKey, CellState, JoinCounts, ReportState};
pub use calendar::Calendar;
pub use partial::{PartialError, PartialMeta, decode_partial, encode_partial, partial_file_name};
pub use spec::{Bucket, BudgetPeriod, DpSpec, Filters, LegalClass, Metric, ReportSpec};
