//! The binary's side of the release protocol ([`logveil_report::release`]: plan →
//! protect → charge → write): it fills the protocol's settings from the pipeline. Shared
//! by `run`, `daemon` and `merge`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use logveil_privacy::KeyRing;
pub use logveil_report::release::ReportSummary;
use logveil_report::release::{ReleaseSettings, release};
use logveil_report::{ReportSpec, ReportState};
use sha2::{Digest, Sha256};

use crate::config::Pipeline;

/// What publishing wrote.
#[derive(Debug)]
pub struct Published {
    pub reports: BTreeMap<String, ReportSummary>,
    pub outputs: Vec<PathBuf>,
}

/// What a release depends on besides the states: the pipeline and its keys.
pub struct PublishContext<'a> {
    pub pipeline: &'a Pipeline,
    pub ring: &'a KeyRing,
    /// Hex SHA-256 of the input list ([`input_digest`]), written into internal files only.
    pub input_sha256: Option<String>,
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Discloses, charges and writes every report of a run (`states` in the pipeline's report
/// order).
pub fn publish(ctx: &PublishContext<'_>, states: Vec<ReportState>) -> Result<Published> {
    publish_some(ctx, states.into_iter().enumerate().collect())
}

/// [`publish`] for some of the pipeline's reports: `(report index, state)` pairs (the daemon
/// publishes the partitions it closes).
pub fn publish_some(
    ctx: &PublishContext<'_>,
    states: Vec<(usize, ReportState)>,
) -> Result<Published> {
    let pipeline = ctx.pipeline;
    let output_dirs = [
        pipeline.configured_out_dir.clone(),
        pipeline.out_dir.clone(),
    ];
    let settings = ReleaseSettings {
        reports: &pipeline.reports,
        calendar: &pipeline.calendar,
        ring: ctx.ring,
        policy_sha256: &pipeline.policy.sha256,
        out_dir: &pipeline.out_dir,
        state_dir: &pipeline.state_dir,
        output_dirs: &output_dirs,
        legacy_ledgers: &pipeline.legacy_ledgers,
        input_sha256: ctx.input_sha256.as_deref(),
    };
    let released = release(&settings, states)
        .with_context(|| format!("state directory {}", pipeline.state_dir.display()))?;
    Ok(Published {
        reports: released.reports,
        outputs: released.outputs,
    })
}

/// Hex SHA-256 over the input list: for each input, its name, size and a hash of its first
/// 64 KiB, one line each, in reading order. Cheap (no full read), and enough to tell a
/// re-run on the same files from a run on changed ones.
pub fn input_digest(inputs: &[logveil_ingest::Input]) -> String {
    use std::io::Read;
    let mut h = Sha256::new();
    for input in inputs {
        h.update(input.to_string().as_bytes());
        h.update(b"\0");
        match input {
            logveil_ingest::Input::File(path) => {
                let size = std::fs::metadata(path).map_or(0, |m| m.len());
                let mut head = Vec::with_capacity(64 * 1024);
                if let Ok(file) = std::fs::File::open(path) {
                    let _ = file.take(64 * 1024).read_to_end(&mut head);
                }
                h.update(size.to_le_bytes());
                h.update(Sha256::digest(&head));
            }
            // Standard input cannot be read twice: every run on it is a new release (a
            // unique digest), so identical-looking re-runs are charged, never free.
            logveil_ingest::Input::Stdin => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                h.update(now.to_le_bytes());
                h.update(std::process::id().to_le_bytes());
            }
        }
        h.update(b"\n");
    }
    hex(&h.finalize())
}

/// What [`publish_report`] wrote for one report.
#[derive(Debug)]
pub struct ReportPublished {
    pub summary: ReportSummary,
    pub outputs: Vec<PathBuf>,
}

/// Publishes one report's state on its own (the daemon closes windows report by report).
pub fn publish_report(
    pipeline: &Pipeline,
    spec: &ReportSpec,
    state: ReportState,
) -> Result<ReportPublished> {
    let ring = KeyRing::load(&pipeline.key_file).context("loading keys")?;
    let index = pipeline
        .reports
        .iter()
        .position(|r| r.name == spec.name)
        .with_context(|| format!("report `{}` is not in the pipeline", spec.name))?;
    // The release identity comes from the window's state itself: the same lines give the
    // same release again (a replay after a crash is free), any change is new.
    let ctx = PublishContext {
        pipeline,
        ring: &ring,
        input_sha256: None,
    };
    let mut published = publish_some(&ctx, vec![(index, state)])?;
    let summary = published
        .reports
        .remove(&spec.name)
        .expect("the report was published");
    Ok(ReportPublished {
        summary,
        outputs: published.outputs,
    })
}
