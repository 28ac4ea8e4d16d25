//! From finished [`ReportState`]s to files, in three steps so that a refused run writes
//! nothing:
//!
//! 1. every partition of every report goes through its audience's disclosure control
//!    ([`logveil_report::disclose`]), in memory;
//! 2. the differentially private releases among them are charged to the privacy budget
//!    ledger all at once: over budget, the run stops here with an error naming audience,
//!    period, spent, requested and budget;
//! 3. one Parquet file per partition, with its provenance.
//!
//! Shared by `run` and `daemon`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use logveil_privacy::KeyRing;
use logveil_report::calendar::format_day;
use logveil_report::disclose::{Disclosed, disclose};
use logveil_report::dp::{Rational, seed_for};
use logveil_report::ledger::{Budget, Ledger, Spend};
use logveil_report::write::{Provenance, write_partition};
use logveil_report::{Bucket, BudgetPeriod, Calendar, JoinCounts, ReportSpec, ReportState};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::Pipeline;

#[derive(Debug, Serialize)]
pub struct ReportSummary {
    pub audience: String,
    pub k_min: u32,
    pub rows: u64,
    /// Cells withheld: below `k_min` (or the DP release threshold) plus complementary.
    pub cells_suppressed: u64,
    /// Of those, withheld by complementary suppression.
    pub cells_secondary: u64,
    pub partitions: u64,
    /// Join outcomes over the report's views (only for reports that join accounts).
    pub joins: Option<JoinCounts>,
    /// ε and δ charged to the audience's budget by this run (DP reports only; identical
    /// re-releases are free).
    pub epsilon: Option<String>,
    pub delta: Option<String>,
}

/// What publishing wrote.
#[derive(Debug)]
pub struct Published {
    pub reports: BTreeMap<String, ReportSummary>,
    pub outputs: Vec<PathBuf>,
}

/// What a release depends on besides the input: keys, policy and report definition.
pub struct PublishContext<'a> {
    pub pipeline: &'a Pipeline,
    pub ring: &'a KeyRing,
    /// Hex SHA-256 of the input list ([`input_digest`]).
    pub input_sha256: String,
}

/// One partition, disclosed and ready to write.
struct Release {
    report: usize,
    day: i32,
    disclosed: Disclosed,
    key_ids: Vec<String>,
    spend: Option<Spend>,
}

/// The bucket starts a partition has by the calendar, whatever the data.
fn partition_buckets(bucket: Bucket, calendar: &Calendar, day: i32) -> Vec<i64> {
    const HOUR: i64 = 3_600_000_000;
    match bucket {
        // Local days are within ±14 hours of the UTC day.
        Bucket::Hour => (i64::from(day) * 24 - 14..i64::from(day) * 24 + 38)
            .map(|h| h * HOUR)
            .filter(|&h| calendar.day_of(h) == day)
            .collect(),
        Bucket::Day | Bucket::Week | Bucket::Month => vec![i64::from(day)],
    }
}

fn period_of(period: BudgetPeriod, day: i32) -> String {
    let date = format_day(day);
    match period {
        BudgetPeriod::Day => date,
        BudgetPeriod::Month => date[..7].to_owned(),
    }
}

/// The digest a release's noise and ledger entry are tied to: the inputs, the policy and
/// the report's full definition. Re-running the same report on the same inputs gives the
/// same digest (same noise, no new spend); anything else is a new release.
fn release_digest(ctx: &PublishContext<'_>, spec: &ReportSpec) -> String {
    let mut h = Sha256::new();
    h.update(ctx.input_sha256.as_bytes());
    h.update(b"\0");
    h.update(ctx.pipeline.policy.sha256.as_bytes());
    h.update(b"\0");
    h.update(format!("{spec:?}").as_bytes());
    hex(&h.finalize())
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
    use rayon::prelude::*;
    let pipeline = ctx.pipeline;
    let joins: BTreeMap<usize, Option<JoinCounts>> =
        states.iter().map(|(i, s)| (*i, s.joins.clone())).collect();
    // Disclosure per partition, in parallel (complementary suppression and noise are the
    // costly parts); the order of `releases` stays deterministic.
    let work: Vec<(usize, i32, logveil_report::aggregate::Partition)> = states
        .into_iter()
        .flat_map(|(index, state)| {
            state
                .into_partitions()
                .into_iter()
                .map(move |(day, partition)| (index, day, partition))
        })
        .collect();
    let digests: BTreeMap<usize, String> = joins
        .keys()
        .filter(|i| pipeline.reports[**i].dp.is_some())
        .map(|i| (*i, release_digest(ctx, &pipeline.reports[*i])))
        .collect();
    let releases: Vec<Release> = work
        .into_par_iter()
        .map(|(index, day, partition)| {
            let spec = &pipeline.reports[index];
            let digest = digests.get(&index);
            let day_text = format_day(day);
            let seed = match (&spec.dp, digest) {
                (Some(_), Some(digest)) => {
                    // The key in force for the partition seeds its noise: the newest that
                    // pseudonymized any of its lines, else the one for the day.
                    let key = partition
                        .key_ids
                        .iter()
                        .rev()
                        .find_map(|id| ctx.ring.keys().iter().find(|k| k.id().as_str() == id))
                        .or_else(|| ctx.ring.key_for_day(day))
                        .unwrap_or_else(|| ctx.ring.newest());
                    Some(seed_for(
                        &key.noise_secret(),
                        &[spec.name.as_bytes(), day_text.as_bytes(), digest.as_bytes()],
                    ))
                }
                _ => None,
            };
            let buckets = partition_buckets(spec.bucket, &pipeline.calendar, day);
            let disclosed = disclose(spec, partition.cells, seed.as_ref(), day, &buckets)
                .with_context(|| format!("report `{}`, partition {day_text}", spec.name))?;
            let spend = match (&spec.dp, &disclosed.dp, digest) {
                (Some(dp), Some(release), Some(digest)) => Some(Spend {
                    audience: spec.audience.clone(),
                    period: period_of(dp.period, day),
                    report: spec.name.clone(),
                    partition: day_text,
                    input_digest: digest.clone(),
                    epsilon: release.epsilon,
                    delta: release.delta,
                }),
                _ => None,
            };
            Ok(Release {
                report: index,
                day,
                disclosed,
                key_ids: partition.key_ids,
                spend,
            })
        })
        .collect::<Result<_>>()?;

    let spends: Vec<Spend> = releases.iter().filter_map(|r| r.spend.clone()).collect();
    if !spends.is_empty() {
        let budgets: BTreeMap<&str, Budget> = pipeline
            .reports
            .iter()
            .filter_map(|s| s.dp.as_ref().map(|dp| (s.audience.as_str(), dp.budget)))
            .collect();
        if let Some(dir) = pipeline
            .ledger
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the ledger's directory {}", dir.display()))?;
        }
        let mut ledger = Ledger::open(&pipeline.ledger)?;
        ledger
            .check_and_spend_with(&spends, |audience| budgets[audience])
            .with_context(|| {
                format!(
                    "refusing the run: nothing was written (ledger {})",
                    pipeline.ledger.display()
                )
            })?;
    }

    let mut reports: BTreeMap<String, ReportSummary> = joins
        .into_iter()
        .map(|(index, joins)| {
            let spec = &pipeline.reports[index];
            (
                spec.name.clone(),
                ReportSummary {
                    audience: spec.audience.clone(),
                    k_min: spec.k_min,
                    rows: 0,
                    cells_suppressed: 0,
                    cells_secondary: 0,
                    partitions: 0,
                    joins,
                    epsilon: None,
                    delta: None,
                },
            )
        })
        .collect();
    let written: Vec<PathBuf> = releases
        .par_iter()
        .map(|release| {
            let spec = &pipeline.reports[release.report];
            let joins = reports[&spec.name].joins.as_ref();
            let provenance = provenance(ctx, spec, release, joins);
            write_partition(
                &pipeline.out_dir,
                spec,
                release.day,
                &release.disclosed.rows,
                &provenance,
            )
            .map_err(anyhow::Error::from)
        })
        .collect::<Result<_>>()?;
    let mut outputs = Vec::new();
    for (release, path) in releases.into_iter().zip(written) {
        let spec = &pipeline.reports[release.report];
        let summary = reports.get_mut(&spec.name).expect("one summary per report");
        summary.rows += release.disclosed.rows.len() as u64;
        summary.cells_suppressed += release.disclosed.suppressed_cells();
        summary.cells_secondary += release.disclosed.secondary;
        summary.partitions += 1;
        if let Some(dp) = &release.disclosed.dp {
            let add = |acc: &Option<String>, r: Rational| {
                let sum = acc
                    .as_deref()
                    .and_then(|a| Rational::parse(a).ok())
                    .and_then(|a| a.checked_add(r))
                    .unwrap_or(r);
                Some(sum.to_string())
            };
            summary.epsilon = add(&summary.epsilon, dp.epsilon);
            summary.delta = add(&summary.delta, dp.delta);
        }
        outputs.push(path);
    }
    Ok(Published { reports, outputs })
}

fn provenance(
    ctx: &PublishContext<'_>,
    spec: &ReportSpec,
    release: &Release,
    joins: Option<&JoinCounts>,
) -> Provenance {
    let d = &release.disclosed;
    let (epsilon, delta) = d.dp.as_ref().map_or_else(
        || ("0".to_owned(), "0".to_owned()),
        |dp| (dp.epsilon.to_string(), dp.delta.to_string()),
    );
    let mut extra = vec![
        ("logveil.bucket".into(), spec.bucket.column().into()),
        (
            "logveil.legal_class".into(),
            spec.legal_class.as_str().into(),
        ),
        ("logveil.epsilon".into(), epsilon),
        ("logveil.delta".into(), delta),
        (
            "logveil.suppressed_cells".into(),
            d.suppressed_cells().to_string(),
        ),
        (
            "logveil.complementary_suppression".into(),
            (spec.complementary_suppression && spec.dp.is_none() && !spec.visitor_id).to_string(),
        ),
        ("logveil.input_sha256".into(), ctx.input_sha256.clone()),
        ("logveil.filters".into(), spec.filters.describe()),
        ("logveil.totals".into(), spec.totals.to_string()),
    ];
    if let Some(dp) = &d.dp {
        extra.push((
            "logveil.dp".into(),
            serde_json::json!({
                "mechanism": "discrete_laplace",
                "buckets": dp.buckets,
                "release_threshold": dp.threshold,
                "dropped_pairs": dp.dropped_pairs,
                "clamped_views": dp.clamped_views,
            })
            .to_string(),
        ));
    }
    if let Some(j) = joins {
        extra.push((
            "logveil.join_outcomes".into(),
            serde_json::json!({
                "joined": j.joined,
                "no_account": j.no_account,
                "no_consent": j.no_consent,
                "deleted": j.deleted,
            })
            .to_string(),
        ));
        extra.extend([
            ("logveil.joins.joined".into(), j.joined.to_string()),
            ("logveil.joins.no_account".into(), j.no_account.to_string()),
            ("logveil.joins.no_consent".into(), j.no_consent.to_string()),
            ("logveil.joins.deleted".into(), j.deleted.to_string()),
        ]);
    }
    Provenance {
        policy_sha256: ctx.pipeline.policy.sha256.clone(),
        key_id: release.key_ids.join(","),
        extra,
    }
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
/// Differentially private releases are tied to a digest of the state itself: the same
/// lines give the same release again (a replay after a crash is free), any change is new.
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
    let input_sha256 = if spec.dp.is_some() {
        hex(&Sha256::digest(serde_json::to_vec(&state)?))
    } else {
        String::new()
    };
    let ctx = PublishContext {
        pipeline,
        ring: &ring,
        input_sha256,
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
