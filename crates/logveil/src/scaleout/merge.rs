//! `logveil merge`: finalises each window once every partition's watermark has passed it.
//!
//! The committed batches are the manifests aggregators wrote; a window's partials are the
//! files those manifests list for it. They are decoded and summed with
//! [`ReportState::merge`] — visitors are disjoint across partitions, so distinct counts
//! add up exactly, and within a partition the visitor sets are unioned — and only then
//! does disclosure control run ([`crate::publish`]: k on true visitors, complementary
//! suppression, differential privacy with the budget ledger), once, on the merged counts.
//! The final files have the layout and metadata of `logveil run`.
//!
//! Idempotent: each finalised window's list of partials is recorded
//! (`merged/<report>/<day>.json` beside the partials); a window whose list is unchanged is
//! skipped, one whose list grew (late lines) is merged and written again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use logveil_privacy::KeyRing;
use logveil_report::ReportState;
use logveil_report::calendar::format_day;
use logveil_report::partial::decode_partial;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::aggregate::{Manifest, parse_manifest_name, partials_location};
use crate::config::{Overrides, Pipeline};
use crate::daemon::checkpoint::fingerprint;
use crate::daemon::windows;
use crate::publish::{PublishContext, publish_some};
use crate::store::Store;

/// `logveil merge` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct MergeArgs {
    /// The pipeline file (TOML), with a `[scaleout]` section.
    pub pipeline: PathBuf,
    /// NATS server URL (`nats://host:4222`), for the partition watermarks.
    #[arg(long, value_name = "URL")]
    pub nats: String,
    /// Where the partials are, instead of `scaleout.partials`.
    #[arg(long, value_name = "LOCATION")]
    pub partials: Option<String>,
    /// Where reports go (a directory or `s3://bucket/prefix`) instead of `output.dir`.
    #[arg(long, value_name = "LOCATION")]
    pub out: Option<String>,
    /// Keep running, merging every SECS, until SIGTERM.
    #[arg(long = "loop", value_name = "SECS")]
    pub every: Option<u64>,
    /// Also write the summary as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// Privacy state directory (the audiences' release ledgers) instead of `privacy.state_dir`.
    #[arg(long, value_name = "DIR")]
    pub privacy_state: Option<PathBuf>,
}

/// What a finalised window was made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MergeRecord {
    report: String,
    day: String,
    partials: Vec<String>,
    sha256: String,
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    /// The lowest partition watermark (UTC µs); `None` while a partition has none.
    watermark_micros: Option<i64>,
    windows_written: u64,
    /// Windows finalised before whose partials have not changed.
    windows_unchanged: u64,
    /// Windows with partials that the watermark has not passed yet.
    windows_open: u64,
    partials_read: u64,
    outputs: Vec<String>,
}

pub fn run(args: &MergeArgs) -> Result<ExitCode> {
    super::runtime("logveil-merge")?.block_on(merge_loop(args))
}

async fn merge_loop(args: &MergeArgs) -> Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    super::edge::spawn_signals(Arc::clone(&stop))?;
    loop {
        let summary = merge_once(args).await?;
        if let Some(path) = &args.summary {
            std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
                .with_context(|| format!("writing summary {}", path.display()))?;
        }
        crate::write_stdout(&format!(
            "merge: {} windows written, {} unchanged, {} still open; {} partials read\n",
            summary.windows_written,
            summary.windows_unchanged,
            summary.windows_open,
            summary.partials_read
        ))?;
        let Some(every) = args.every else {
            return Ok(ExitCode::SUCCESS);
        };
        let until = std::time::Instant::now() + Duration::from_secs(every);
        while std::time::Instant::now() < until {
            if stop.load(Ordering::SeqCst) {
                return Ok(ExitCode::SUCCESS);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// `(report, day)` of a partial key `<report>/day=YYYY-MM-DD/p=…/seq-….parquet`.
fn window_of(key: &str) -> Option<(&str, i32)> {
    let mut parts = key.split('/');
    let report = parts.next()?;
    let day = parts.next()?.strip_prefix("day=")?;
    Some((report, logveil_privacy::keys::parse_date(day)?))
}

async fn merge_once(args: &MergeArgs) -> Result<Summary> {
    // An S3 destination: files are written to a local staging directory first, with the
    // same code as `logveil run`, then uploaded (each PUT replaces atomically).
    let remote_out = args.out.as_ref().filter(|o| o.contains("://")).cloned();
    let staging = match &remote_out {
        Some(_) => Some(tempfile_dir()?),
        None => None,
    };
    let overrides = Overrides {
        out: match (&staging, &args.out) {
            (Some(dir), _) => Some(dir.clone()),
            (None, Some(out)) => Some(PathBuf::from(out)),
            (None, None) => None,
        },
        privacy_state: args.privacy_state.clone(),
        ..Overrides::default()
    };
    let mut pipeline = Pipeline::load(&args.pipeline, &overrides)?;
    // As configured, without `--out`: where the aggregators put partials by default. (The
    // ledgers live in the state directory, whatever the output.)
    let configured = Pipeline::load(&args.pipeline, &Overrides::default())?;
    if staging.is_some() {
        // Staged files are uploaded: the old-layout ledgers to migrate are the configured ones.
        pipeline
            .legacy_ledgers
            .clone_from(&configured.legacy_ledgers);
    }
    let pipeline = pipeline;
    let settings = &pipeline.scaleout;
    if settings.site.is_empty() {
        bail!(
            "{}: `logveil merge` needs a [scaleout] section with `site`",
            args.pipeline.display()
        );
    }
    let partials = Store::open(&partials_location(&configured, args.partials.as_ref()))?;
    let (_client, js) = super::connect(&args.nats, settings).await?;
    let kv = super::watermarks(&js, settings).await?;
    let mut summary = Summary::default();
    let mut watermark = i64::MAX;
    for p in 0..settings.partitions {
        if let Some(w) = super::read_watermark(&kv, p).await? {
            watermark = watermark.min(w.watermark_micros);
        } else {
            tracing::info!(
                partition = p,
                "no watermark yet for this partition: nothing can be finalised"
            );
            watermark = i64::MIN;
        }
    }
    summary.watermark_micros = (watermark != i64::MIN).then_some(watermark);

    // Every committed batch's partials, by window.
    let mut windows_files: BTreeMap<(String, i32), BTreeSet<String>> = BTreeMap::new();
    for key in partials.list("manifests").await? {
        if parse_manifest_name(&key).is_none() {
            continue;
        }
        let bytes = partials
            .get(&key)
            .await?
            .with_context(|| format!("{partials}: {key} vanished"))?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("{partials}: {key} is not a batch manifest"))?;
        for file in manifest.files {
            let Some((report, day)) = window_of(&file) else {
                bail!("{partials}: {key} lists `{file}`, which is not a partial's name");
            };
            windows_files
                .entry((report.to_owned(), day))
                .or_default()
                .insert(file);
        }
    }

    let ring = KeyRing::load(&pipeline.key_file).context("loading keys")?;
    let mut states: Vec<(usize, ReportState)> = Vec::new();
    let mut records = Vec::new();
    let mut digest = Sha256::new();
    for (i, spec) in pipeline.reports.iter().enumerate() {
        let floor = if watermark == i64::MAX {
            i32::MAX
        } else if watermark == i64::MIN {
            i32::MIN
        } else {
            windows::floor(spec.bucket, &pipeline.calendar, Some(watermark))
        };
        let fp = fingerprint(spec, &pipeline.calendar);
        let mut merged = ReportState::new(spec);
        let mut any = false;
        for ((report, day), files) in windows_files.range((spec.name.clone(), i32::MIN)..) {
            if *report != spec.name {
                break;
            }
            if *day >= floor {
                summary.windows_open += 1;
                continue;
            }
            let files: Vec<String> = files.iter().cloned().collect();
            let record_key = format!("merged/{}/day={}.json", spec.name, format_day(*day));
            let sha = hex(&Sha256::digest(files.join("\n").as_bytes()));
            if let Some(bytes) = partials.get(&record_key).await?
                && serde_json::from_slice::<MergeRecord>(&bytes).is_ok_and(|r| r.sha256 == sha)
            {
                summary.windows_unchanged += 1;
                continue;
            }
            for file in &files {
                let bytes = partials
                    .get(file)
                    .await?
                    .with_context(|| format!("{partials}: partial {file} is listed but missing"))?;
                let (state, meta) = decode_partial(spec, &bytes)
                    .with_context(|| format!("{partials}: reading partial {file}"))?;
                if meta.report_fingerprint != fp {
                    bail!(
                        "{partials}: partial {file} was built with another definition of report `{}` (or another calendar); rebuild that day with `logveil run`, or restore the definition",
                        spec.name
                    );
                }
                merged.merge(state);
                summary.partials_read += 1;
            }
            digest.update(sha.as_bytes());
            records.push((
                record_key,
                MergeRecord {
                    report: spec.name.clone(),
                    day: format_day(*day),
                    partials: files,
                    sha256: sha,
                },
            ));
            any = true;
        }
        if any {
            states.push((i, merged));
        }
    }
    if !states.is_empty() {
        let ctx = PublishContext {
            pipeline: &pipeline,
            ring: &ring,
            input_sha256: Some(hex(&digest.finalize())),
        };
        // Disclosure, the budget ledger and writing: the same path as `logveil run`.
        let published = publish_some(&ctx, states)?;
        match (&remote_out, &staging) {
            (Some(out), Some(dir)) => {
                let store = Store::open(out)?;
                let keys = store.upload_dir(dir, "").await?;
                summary.outputs = keys.iter().map(|k| format!("{store}/{k}")).collect();
                std::fs::remove_dir_all(dir).ok();
            }
            _ => {
                summary.outputs = published
                    .outputs
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
            }
        }
        for (key, record) in &records {
            partials
                .put_replace(key, serde_json::to_vec_pretty(record)?)
                .await?;
        }
        summary.windows_written = records.len() as u64;
    } else if let Some(dir) = &staging {
        std::fs::remove_dir_all(dir).ok();
    }
    Ok(summary)
}

/// A fresh private directory for staging an upload.
fn tempfile_dir() -> Result<PathBuf> {
    let mut name = [0u8; 8];
    getrandom::fill(&mut name).map_err(|e| anyhow::anyhow!("random name: {e}"))?;
    let dir = std::env::temp_dir().join(format!("logveil-merge-{}", hex(&name)));
    crate::daemon::checkpoint::create_dir(&dir)?;
    Ok(dir)
}

fn hex(bytes: &[u8]) -> String {
    crate::daemon::checkpoint::hex(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_of_partial_names() {
        assert_eq!(
            window_of("pages_daily/day=1995-07-01/p=0003/seq-1-2.parquet"),
            Some((
                "pages_daily",
                logveil_privacy::keys::parse_date("1995-07-01").unwrap()
            ))
        );
        assert_eq!(window_of("manifests/p=0001/x.json"), None);
    }
}
