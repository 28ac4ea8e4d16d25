//! From a finished [`ReportState`] to files: disclosure control for the report's audience,
//! then one Parquet file per partition with its provenance. Shared by `run` and `daemon`.

use std::path::PathBuf;

use anyhow::Result;
use logveil_report::disclose::apply_k_threshold;
use logveil_report::write::{Provenance, write_partition};
use logveil_report::{JoinCounts, ReportSpec, ReportState};
use serde::Serialize;

use crate::config::Pipeline;

#[derive(Debug, Serialize)]
pub struct ReportSummary {
    pub audience: String,
    pub k_min: u32,
    pub rows: u64,
    pub cells_suppressed: u64,
    pub partitions: u64,
    /// Join outcomes over the report's views (only for reports that join accounts).
    pub joins: Option<JoinCounts>,
}

/// What publishing one report wrote.
#[derive(Debug)]
pub struct Published {
    pub summary: ReportSummary,
    pub outputs: Vec<PathBuf>,
}

/// Applies the audience's disclosure control to every partition of `state` and writes it.
pub fn publish_report(
    pipeline: &Pipeline,
    spec: &ReportSpec,
    state: ReportState,
) -> Result<Published> {
    let joins = state.joins.clone();
    let mut provenance = Provenance {
        policy_sha256: pipeline.policy.sha256.clone(),
        key_id: String::new(),
        extra: vec![("logveil.bucket".into(), spec.bucket.column().into())],
    };
    if let Some(j) = &joins {
        provenance.extra.extend([
            ("logveil.joins.joined".into(), j.joined.to_string()),
            ("logveil.joins.no_account".into(), j.no_account.to_string()),
            ("logveil.joins.no_consent".into(), j.no_consent.to_string()),
            ("logveil.joins.deleted".into(), j.deleted.to_string()),
        ]);
    }
    let mut summary = ReportSummary {
        audience: spec.audience.clone(),
        k_min: spec.k_min,
        rows: 0,
        cells_suppressed: 0,
        partitions: 0,
        joins,
    };
    let mut outputs = Vec::new();
    for (day, partition) in state.into_partitions() {
        // A pseudonymous export is one row per visitor by design: no threshold applies
        // (the policy allows it only for audiences with `pseudonymous = true`).
        let k_min = if spec.visitor_id { 1 } else { spec.k_min };
        let disclosed = apply_k_threshold(partition.cells, k_min);
        provenance.key_id = partition.key_ids.join(",");
        let path = write_partition(&pipeline.out_dir, spec, day, &disclosed.rows, &provenance)?;
        summary.rows += disclosed.rows.len() as u64;
        summary.cells_suppressed += disclosed.suppressed;
        summary.partitions += 1;
        outputs.push(path);
    }
    Ok(Published { summary, outputs })
}
