//! `logveil aggregate`: owns some partitions of the site's stream (one durable pull
//! consumer each, `agg-<p>`), joins the events to accounts where the policy allows, builds
//! per-window partial states and commits them in batches.
//!
//! A batch is the messages of one partition with stream sequences `first..=last`. Commit:
//! one partial per (report, window) — `partial_file_name` holds report, window, partition
//! and sequence range, written create-only — then the batch manifest
//! (`manifests/p=<p>/seq-<first>-<last>.json`, also create-only: the commit point), then
//! the acknowledgement (ack-all up to `last`), then the partition's watermark in the KV
//! bucket. After a crash the consumer redelivers what was not acknowledged: messages at or
//! below the last manifest's sequence are acknowledged and skipped; a batch cut the same
//! way finds its partials already there (same name, same content) and a batch cut
//! differently writes new names, leaving unreferenced files that merge never reads.
//!
//! Partials hold visitor pseudonyms: internal data, never published as they are.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use async_nats::jetstream::{self, consumer::pull};
use futures_util::StreamExt as _;
use logveil_privacy::wire;
use logveil_report::ReportState;
use logveil_report::partial::{PartialMeta, encode_partial, partial_file_name};
use serde::{Deserialize, Serialize};

use crate::config::{Overrides, Pipeline};
use crate::daemon::checkpoint::fingerprint;
use crate::daemon::windows;
use crate::engine::{RunContext, observe_events};
use crate::scaleout::{PartitionWatermark, watermark_key};
use crate::store::Store;

/// Messages fetched per request.
const FETCH: usize = 1000;
/// Messages held before a commit, at most (also bounds memory).
const BATCH_MESSAGES: usize = 5000;

/// `logveil aggregate` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct AggregateArgs {
    /// The pipeline file (TOML), with a `[scaleout]` section.
    pub pipeline: PathBuf,
    /// NATS server URL (`nats://host:4222`).
    #[arg(long, value_name = "URL")]
    pub nats: String,
    /// Partitions this worker owns: a range `0-3`, a list `0,2,5` or both.
    #[arg(long, value_name = "LIST")]
    pub partitions: String,
    /// Where partials go (a directory or `s3://bucket/prefix`) instead of `scaleout.partials`.
    #[arg(long, value_name = "LOCATION")]
    pub partials: Option<String>,
    /// Stop after SECS without new messages.
    #[arg(long, value_name = "SECS")]
    pub idle_exit: Option<u64>,
    /// Also write the summary as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
}

/// One committed batch: what merge reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub partition: u32,
    pub first_seq: u64,
    pub last_seq: u64,
    /// Partial file keys (relative to the partials location).
    pub files: Vec<String>,
    /// Each edge's watermark after this batch (`i64::MAX`: drained).
    pub edges: BTreeMap<String, i64>,
    pub messages: u64,
    pub events: u64,
    /// Lines the edges counted (reported in partition 0's messages only).
    pub lines_read: u64,
    pub lines_parsed: u64,
    pub lines_rejected: BTreeMap<String, u64>,
    pub lines_late: u64,
    /// Events whose key id the aggregator's key ring does not have (not counted).
    pub unknown_key: u64,
    /// Events whose visitor belongs to another partition (not counted).
    #[serde(default)]
    pub events_rejected: u64,
}

/// The manifest key of a batch (zero-padded so keys sort by sequence).
pub fn manifest_name(partition: u32, first: u64, last: u64) -> String {
    format!("manifests/p={partition:04}/seq-{first:020}-{last:020}.json")
}

/// `(first, last)` from a manifest key.
pub fn parse_manifest_name(key: &str) -> Option<(u32, u64, u64)> {
    let rest = key.strip_prefix("manifests/p=")?;
    let (p, rest) = rest.split_once("/seq-")?;
    let rest = rest.strip_suffix(".json")?;
    let (a, b) = rest.split_once('-')?;
    Some((p.parse().ok()?, a.parse().ok()?, b.parse().ok()?))
}

/// The partials location of a pipeline: `--partials`, `[scaleout] partials`, or
/// `<output dir>-partials` beside the output directory — never inside it, so handing the
/// output directory to a client can never include pseudonymous partials.
pub fn partials_location(pipeline: &Pipeline, arg: Option<&String>) -> String {
    arg.cloned()
        .or_else(|| pipeline.scaleout.partials.clone())
        .unwrap_or_else(|| {
            let mut dir = pipeline.out_dir.clone().into_os_string();
            dir.push("-partials");
            std::path::PathBuf::from(dir).display().to_string()
        })
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    partitions: Vec<u32>,
    batches: u64,
    messages: u64,
    events: u64,
    partials_written: u64,
    /// Partials found already written (a batch replayed after a crash).
    partials_present: u64,
    /// Messages redelivered after a crash that were already committed.
    messages_skipped: u64,
    /// Messages that could not be decoded or belong elsewhere (logged, acknowledged).
    messages_rejected: u64,
    /// Events in a partition their visitor does not belong to (logged, left out).
    events_rejected: u64,
}

pub fn run(args: &AggregateArgs) -> Result<ExitCode> {
    super::runtime("logveil-agg")?.block_on(aggregate(args))
}

/// What is being built for one partition.
#[derive(Default)]
struct Open {
    first: Option<u64>,
    last: u64,
    /// The message to acknowledge (ack-all) at commit.
    last_message: Option<jetstream::Message>,
    states: HashMap<(usize, i32), ReportState>,
    manifest: Manifest,
    started: Option<Instant>,
}

struct Partition {
    number: u32,
    consumer: jetstream::consumer::Consumer<pull::Config>,
    committed: u64,
    edges: BTreeMap<String, i64>,
    open: Open,
}

async fn aggregate(args: &AggregateArgs) -> Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    super::edge::spawn_signals(Arc::clone(&stop))?;
    let pipeline = Pipeline::load(&args.pipeline, &Overrides::default())?;
    let settings = &pipeline.scaleout;
    if settings.site.is_empty() {
        bail!(
            "{}: `logveil aggregate` needs a [scaleout] section with `site`",
            args.pipeline.display()
        );
    }
    let owned = super::parse_partitions(&args.partitions, settings.partitions)?;
    let store = Store::open(&partials_location(&pipeline, args.partials.as_ref()))?;
    let (mut ctx, _ring, _) = RunContext::load(&pipeline)?;
    let (_client, js) = super::connect(&args.nats, settings).await?;
    let kv = super::watermarks(&js, settings).await?;
    let stream = js
        .get_stream(super::stream_name(&settings.site))
        .await
        .context("opening the stream")?;
    let mut partitions = Vec::new();
    for &p in &owned {
        let name = format!("agg-{p}");
        // The last manifest is the commit point: everything up to it is done.
        let manifests = store.list(&format!("manifests/p={p:04}")).await?;
        let last = manifests
            .iter()
            .filter_map(|k| parse_manifest_name(k))
            .max_by_key(|&(_, _, last)| last);
        let (committed, edges) = match last {
            Some((_, first, last)) => {
                let key = manifest_name(p, first, last);
                let bytes = store
                    .get(&key)
                    .await?
                    .with_context(|| format!("{store}: manifest {key} vanished"))?;
                let m: Manifest = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{store}: {key} is not a batch manifest"))?;
                (last, m.edges)
            }
            None => (0, BTreeMap::new()),
        };
        // The consumer is made anew from the commit point on every start: messages a
        // killed worker had fetched but not committed are delivered again at once (not
        // after `ack_wait`), and an ack-all can never cover a message no worker committed.
        let _ = stream.delete_consumer(&name).await;
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: super::subject(&settings.site, p),
                deliver_policy: if committed == 0 {
                    jetstream::consumer::DeliverPolicy::All
                } else {
                    jetstream::consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: committed + 1,
                    }
                },
                ack_policy: jetstream::consumer::AckPolicy::All,
                ack_wait: Duration::from_mins(5),
                max_ack_pending: 100_000,
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating consumer {name}"))?;
        tracing::info!(partition = p, committed_seq = committed, "partition opened");
        let part = Partition {
            number: p,
            consumer,
            committed,
            edges,
            open: Open::default(),
        };
        if committed > 0 {
            // A kill between a manifest and its watermark left the KV behind the commit.
            put_watermark(&kv, &part).await?;
        }
        partitions.push(part);
    }

    let mut summary = Summary {
        partitions: owned.clone(),
        ..Summary::default()
    };
    let fingerprints: Vec<String> = pipeline
        .reports
        .iter()
        .map(|spec| fingerprint(spec, &pipeline.calendar))
        .collect();
    let mut last_message = Instant::now();
    let mut last_refresh = Instant::now();
    loop {
        // Like the daemon: the key ring and account snapshot are reloaded every
        // `[daemon] accounts_refresh` (a withdrawal of consent, a new key).
        if last_refresh.elapsed() >= pipeline.daemon.accounts_refresh {
            last_refresh = Instant::now();
            match RunContext::load(&pipeline) {
                Ok((fresh, ring, _)) => {
                    ctx = fresh;
                    tracing::info!(key_id = %ring.newest().id(), "key ring and account snapshot refreshed");
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "refreshing keys and accounts failed: keeping the previous snapshot");
                }
            }
        }
        let mut received = false;
        for part in &mut partitions {
            let expires = if part.open.first.is_some() {
                Duration::from_millis(100)
            } else {
                Duration::from_millis(300)
            };
            let mut batch = part
                .consumer
                .fetch()
                .max_messages(FETCH)
                .expires(expires)
                .messages()
                .await
                .map_err(|e| anyhow::anyhow!("fetching from partition {}: {e}", part.number))?;
            while let Some(message) = batch.next().await {
                let message =
                    message.map_err(|e| anyhow::anyhow!("partition {}: {e}", part.number))?;
                let seq = message
                    .info()
                    .map_err(|e| anyhow::anyhow!("a message without JetStream info: {e}"))?
                    .stream_sequence;
                if seq <= part.committed || seq <= part.open.last {
                    // Redelivered: committed before a crash, or already in this batch.
                    summary.messages_skipped += 1;
                    if seq <= part.committed && part.open.first.is_none() {
                        message
                            .ack()
                            .await
                            .map_err(|e| anyhow::anyhow!("acknowledging: {e}"))?;
                    }
                    continue;
                }
                received = true;
                take(&pipeline, &ctx, part, &message, seq, &mut summary);
                part.open.last_message = Some(message);
            }
            let due = part.open.first.is_some()
                && (part.open.manifest.messages as usize >= BATCH_MESSAGES
                    || part
                        .open
                        .started
                        .is_some_and(|t| t.elapsed() >= settings.commit_interval));
            if due {
                commit(&pipeline, &fingerprints, &store, &kv, part, &mut summary).await?;
            }
        }
        if received {
            last_message = Instant::now();
        }
        let open = partitions.iter().any(|p| p.open.first.is_some());
        if stop.load(Ordering::SeqCst) {
            // What is not committed is redelivered to the next worker: nothing is lost.
            break;
        }
        if !open
            && let Some(idle) = args.idle_exit
            && last_message.elapsed() >= Duration::from_secs(idle)
        {
            // Quiet is not enough: the stream must hold nothing more for these partitions.
            let mut pending = 0;
            for part in &mut partitions {
                let info = part.consumer.info().await.map_err(|e| {
                    anyhow::anyhow!("consumer info of partition {}: {e}", part.number)
                })?;
                pending += info.num_pending + info.num_ack_pending as u64;
            }
            if pending == 0 {
                break;
            }
            last_message = Instant::now();
        }
    }
    if let Some(path) = &args.summary {
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("writing summary {}", path.display()))?;
    }
    crate::write_stdout(&format!(
        "aggregate (partitions {}) stopped: {} batches, {} messages, {} events; {} partials written, {} already present; {} redelivered messages skipped, {} rejected\n",
        args.partitions,
        summary.batches,
        summary.messages,
        summary.events,
        summary.partials_written,
        summary.partials_present,
        summary.messages_skipped,
        summary.messages_rejected
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// Adds one message to its partition's open batch.
fn take(
    pipeline: &Pipeline,
    ctx: &RunContext<'_>,
    part: &mut Partition,
    message: &jetstream::Message,
    seq: u64,
    summary: &mut Summary,
) {
    let open = &mut part.open;
    if open.first.is_none() {
        open.first = Some(seq);
        open.started = Some(Instant::now());
        open.manifest = Manifest {
            partition: part.number,
            edges: part.edges.clone(),
            ..Manifest::default()
        };
    }
    open.last = seq;
    open.manifest.messages += 1;
    summary.messages += 1;
    let batch = match wire::decode(&message.payload) {
        Ok(b) => b,
        Err(e) => {
            summary.messages_rejected += 1;
            tracing::error!(partition = part.number, seq, error = %e, "message rejected (not an event batch); acknowledged with its batch");
            return;
        }
    };
    let s = &pipeline.scaleout;
    if batch.header.partitions != s.partitions
        || batch.header.partition != part.number
        || batch.header.site != s.site
    {
        summary.messages_rejected += 1;
        tracing::error!(partition = part.number, seq, host = %batch.header.host, their_partitions = batch.header.partitions, "message from an edge with another site or partition count: rejected (every edge and aggregator must use the same [scaleout] site and partitions)");
        return;
    }
    let h = &batch.header;
    open.manifest.edges.insert(
        h.host.clone(),
        if h.last { i64::MAX } else { h.watermark_micros },
    );
    open.manifest.lines_read += h.lines_read;
    open.manifest.lines_parsed += h.lines_parsed;
    open.manifest.lines_late += h.lines_late;
    for (reason, n) in &h.lines_rejected {
        *open
            .manifest
            .lines_rejected
            .entry(reason.clone())
            .or_default() += n;
    }
    // Distinct counts add up across partitions only if every visitor is in its own.
    let mut events = batch.events;
    let before = events.len();
    events.retain(|e| e.visitor.partition(s.partitions) == part.number);
    if events.len() < before {
        let misplaced = (before - events.len()) as u64;
        summary.events_rejected += misplaced;
        open.manifest.events_rejected += misplaced;
        tracing::error!(partition = part.number, seq, host = %h.host, misplaced, "events in the wrong partition: left out and counted (an edge with another partition rule?)");
    }
    open.manifest.events += events.len() as u64;
    summary.events += events.len() as u64;
    let states = &mut open.states;
    let unknown = observe_events(ctx, &events, |i, event, join, visitor_id| {
        let spec = &pipeline.reports[i];
        let day = windows::partition_of(spec.bucket, &pipeline.calendar, event.utc_micros);
        states
            .entry((i, day))
            .or_insert_with(|| ReportState::new(spec))
            .observe(spec, &pipeline.calendar, event, join, visitor_id);
    });
    if unknown > 0 {
        tracing::error!(
            unknown,
            "events pseudonymized with a key this aggregator does not have: left out (give every aggregator the edges' key file)"
        );
        open.manifest.unknown_key += unknown;
    }
}

/// Publishes a partition's watermark: the minimum over the edges it has heard from.
async fn put_watermark(kv: &jetstream::kv::Store, part: &Partition) -> Result<()> {
    let watermark = PartitionWatermark {
        watermark_micros: part.edges.values().copied().min().unwrap_or(i64::MIN),
        committed_seq: part.committed,
        edges: part.edges.clone(),
    };
    kv.put(
        watermark_key(part.number),
        serde_json::to_vec(&watermark)?.into(),
    )
    .await
    .with_context(|| format!("putting the watermark of partition {}", part.number))?;
    Ok(())
}

/// Writes the open batch's partials and manifest, acknowledges, moves the watermark.
async fn commit(
    pipeline: &Pipeline,
    fingerprints: &[String],
    store: &Store,
    kv: &jetstream::kv::Store,
    part: &mut Partition,
    summary: &mut Summary,
) -> Result<()> {
    let mut open = std::mem::take(&mut part.open);
    let first = open.first.expect("a batch is open");
    let last = open.last;
    let mut keys: Vec<((usize, i32), ReportState)> = open.states.drain().collect();
    keys.sort_by_key(|(k, _)| *k);
    for ((i, day), state) in keys {
        let spec = &pipeline.reports[i];
        let meta = PartialMeta {
            report: spec.name.clone(),
            partition_day: day,
            partition: part.number,
            partitions: pipeline.scaleout.partitions,
            first_seq: first,
            last_seq: last,
            report_fingerprint: fingerprints[i].clone(),
        };
        let key = partial_file_name(&meta);
        let bytes = encode_partial(spec, &state, &meta, pipeline.scaleout.hll_lg_k)
            .with_context(|| format!("encoding partial {key}"))?;
        if store.put_create(&key, bytes).await? {
            summary.partials_written += 1;
        } else {
            summary.partials_present += 1;
        }
        open.manifest.files.push(key);
    }
    open.manifest.first_seq = first;
    open.manifest.last_seq = last;
    let name = manifest_name(part.number, first, last);
    store
        .put_create(&name, serde_json::to_vec_pretty(&open.manifest)?)
        .await?;
    if let Some(message) = &open.last_message {
        message
            .double_ack()
            .await
            .map_err(|e| anyhow::anyhow!("acknowledging up to sequence {last}: {e}"))?;
    }
    part.committed = last;
    part.edges = open.manifest.edges.clone();
    put_watermark(kv, part).await?;
    summary.batches += 1;
    tracing::debug!(
        partition = part.number,
        first,
        last,
        files = open.manifest.files.len(),
        "batch committed"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_names_sort_and_parse() {
        let a = manifest_name(3, 7, 120);
        let b = manifest_name(3, 121, 1000);
        assert!(a < b);
        assert_eq!(parse_manifest_name(&a), Some((3, 7, 120)));
        assert_eq!(parse_manifest_name("manifests/p=0003/x.json"), None);
    }
}

#[cfg(test)]
mod additivity {
    //! The claim the whole scale-out rests on: a visitor always lands in one partition, so
    //! per-partition distinct-visitor counts add up exactly to the single-machine count.

    use std::path::Path;

    use logveil_ingest::Chunk;
    use logveil_parse::ParserState;
    use logveil_report::ReportState;

    use crate::config::{Overrides, Pipeline};
    use crate::engine::{LineCounts, RunContext, events_of_chunk, observe_events};

    fn aggregate(
        pipeline: &Pipeline,
        ctx: &RunContext<'_>,
        events: &[logveil_privacy::Event],
    ) -> Vec<ReportState> {
        let mut states: Vec<ReportState> = pipeline.reports.iter().map(ReportState::new).collect();
        observe_events(ctx, events, |i, event, join, visitor_id| {
            states[i].observe(
                &pipeline.reports[i],
                &pipeline.calendar,
                event,
                join,
                visitor_id,
            );
        });
        states
    }

    #[test]
    fn distinct_visitors_add_up_across_partitions() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let pipeline = Pipeline::load(&root.join("pipelines/daily.toml"), &Overrides::default())
            .expect("daily pipeline");
        let (ctx, _, _) = RunContext::load(&pipeline).expect("keys and accounts");
        let mut events = Vec::new();
        for day in ["2026-11-01", "2026-11-02"] {
            let data = std::fs::read(root.join(format!("sample-logs/access-{day}.log"))).unwrap();
            let chunk = Chunk {
                offset: 0,
                data,
                too_long: Vec::new(),
            };
            let mut lines = LineCounts::default();
            events.extend(events_of_chunk(
                &ctx,
                &chunk,
                &ParserState::default(),
                &mut lines,
            ));
        }
        assert!(events.len() > 19_000, "{} events", events.len());
        let whole = aggregate(&pipeline, &ctx, &events);
        for partitions in [1, 3, 8] {
            let parts: Vec<Vec<ReportState>> = (0..partitions)
                .map(|p| {
                    let mine: Vec<_> = events
                        .iter()
                        .filter(|e| e.visitor.partition(partitions) == p)
                        .cloned()
                        .collect();
                    aggregate(&pipeline, &ctx, &mine)
                })
                .collect();
            for (r, spec) in pipeline.reports.iter().enumerate() {
                let mut cells = 0;
                for (key, cell) in &whole[r].cells {
                    let sum: usize = parts
                        .iter()
                        .map(|p| p[r].cells.get(key).map_or(0, |c| c.visitors.len()))
                        .sum();
                    assert_eq!(sum, cell.visitors.len(), "{}: {key:?}", spec.name);
                    let views: u64 = parts
                        .iter()
                        .map(|p| p[r].cells.get(key).map_or(0, |c| c.views))
                        .sum();
                    assert_eq!(views, cell.views);
                    cells += 1;
                }
                // And merging the partitions gives the single-machine state exactly.
                let mut merged = ReportState::new(spec);
                for p in &parts {
                    merged.merge(p[r].clone());
                }
                assert_eq!(merged, whole[r], "{}", spec.name);
                assert!(cells > 0);
            }
        }
    }
}
