//! `logveil edge`: runs on a web server, follows its logs like `logveil daemon`, parses
//! and pseudonymizes them there, and publishes the events to `JetStream`. Raw identifiers
//! never leave the machine: a message holds keyed pseudonyms, sanitised pages, truncated
//! network prefixes and closed user-agent classes only ([`logveil_privacy::wire`]).
//!
//! Exactly once, end to end: before publishing what it read, the edge writes the byte
//! ranges and their message ids to its checkpoint as *pending*; it publishes, waits for
//! every acknowledgement, then checkpoints the new offsets. After a crash it re-reads
//! exactly the pending ranges and publishes them again under the same ids
//! (`host/file-fingerprint/start-end/p<partition>.<piece>`): `JetStream` drops what it already
//! has (within `scaleout.duplicate_window`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use async_nats::jetstream;
use logveil_ingest::tail::{FileCheckpoint, TailRead, Tailer};
use logveil_parse::ParserState;
use logveil_privacy::wire::{self, BatchHeader};
use logveil_privacy::{Event, KeyRing};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::{Overrides, Pipeline};
use crate::daemon::checkpoint::{self, LineTotals};
use crate::engine::{LineCounts, RunContext, events_of_chunk};

const CHECKPOINT_FILE: &str = "edge-checkpoint.json";
const CHECKPOINT_VERSION: u32 = 1;
/// Bytes read per turn: a turn's messages stay well under NATS's 1 MiB payload limit
/// once split per partition and piece.
const READ_BUDGET: usize = 4 << 20;
/// Files quiet this long (or `lateness`, if longer) make the edge's watermark follow the clock.
const QUIET_AFTER: Duration = Duration::from_mins(1);
/// How often a quiet edge publishes its watermark.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(15);
/// Events per message at most (a message is ~20 bytes an event compressed).
const EVENTS_PER_MESSAGE: usize = 20_000;

/// `logveil edge` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct EdgeArgs {
    /// The pipeline file (TOML), with a `[scaleout]` section.
    pub pipeline: PathBuf,
    /// NATS server URL (`nats://host:4222`).
    #[arg(long, value_name = "URL")]
    pub nats: String,
    /// Input file or glob, instead of `input.paths` (repeatable).
    #[arg(long = "input", value_name = "GLOB")]
    pub inputs: Vec<String>,
    /// State directory (checkpoint and lock) instead of `daemon.state_dir`.
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// This edge's name in message ids (default: the machine's host name).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Stop once every file is read to its end and quiet for SECS (publishing a final watermark).
    #[arg(long, value_name = "SECS")]
    pub idle_exit: Option<u64>,
    /// Also write the summary as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// Tell every partition that this host (--host) is gone for good, so its last watermark stops holding windows open; then exit.
    #[arg(long)]
    pub retire: bool,
}

/// A range read and published but not yet checkpointed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Pending {
    dev: u64,
    ino: u64,
    start: u64,
    end: u64,
    /// `host/fingerprint/start-end`: the partition and piece are appended.
    id: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct EdgeCheckpoint {
    version: u32,
    salt: String,
    host: String,
    files: Vec<FileCheckpoint>,
    pending: Vec<Pending>,
    max_event_micros: Option<i64>,
    lines: LineTotals,
    messages_published: u64,
    duplicates: u64,
}

/// What the edge prints when it stops (and writes as JSON with `--summary`).
#[derive(Debug, Serialize)]
struct Summary {
    host: String,
    site: String,
    stopped: &'static str,
    lines_read: u64,
    lines_parsed: u64,
    lines_rejected: BTreeMap<String, u64>,
    lines_late: u64,
    messages_published: u64,
    /// Messages the server already had (replays after a crash).
    duplicates: u64,
    watermark_micros: Option<i64>,
}

pub fn run(args: &EdgeArgs) -> Result<ExitCode> {
    super::runtime("logveil-edge")?.block_on(edge(args))
}

fn host_name(args: &EdgeArgs) -> Result<String> {
    let host = match &args.host {
        Some(h) => h.clone(),
        None => std::fs::read_to_string("/etc/hostname")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
    };
    if host.is_empty()
        || host.len() > 128
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        bail!(
            "--host: `{host}` is not a host name (allowed: 1 to 128 letters, digits, `-`, `_` and `.`; it goes into message ids)"
        );
    }
    Ok(host)
}

pub(crate) fn spawn_signals(stop: Arc<AtomicBool>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        stop.store(true, Ordering::SeqCst);
    });
    Ok(())
}

struct Edge<'a> {
    pipeline: &'a Pipeline,
    ctx: RunContext<'a>,
    js: jetstream::Context,
    host: String,
    state_dir: PathBuf,
    salt: [u8; 32],
    fingerprint_key: zeroize::Zeroizing<[u8; 32]>,
    tailer: Tailer,
    parser_states: HashMap<u64, ParserState>,
    max_event: Option<i64>,
    lines: LineTotals,
    messages_published: u64,
    duplicates: u64,
    /// Ranges in flight at the last stop, re-published first.
    replay: Vec<Pending>,
}

async fn edge(args: &EdgeArgs) -> Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    spawn_signals(Arc::clone(&stop))?;
    let overrides = Overrides {
        inputs: args.inputs.clone(),
        ..Overrides::default()
    };
    let pipeline = Pipeline::load(&args.pipeline, &overrides)?;
    if pipeline.scaleout.site.is_empty() {
        bail!(
            "{}: `logveil edge` needs a [scaleout] section with `site`",
            args.pipeline.display()
        );
    }
    if pipeline.inputs.iter().any(|i| i == "-") {
        bail!(
            "{}: input `-` (standard input) cannot be followed: the edge reads files",
            args.pipeline.display()
        );
    }
    let host = host_name(args)?;
    if args.retire {
        return retire(&pipeline, args, host).await;
    }
    let (state_dir, _lock) = checkpoint::open_state_dir(args.state.as_ref(), &pipeline, "edge")?;
    let (ctx, ring, _) = RunContext::load_with(&pipeline, false)?;
    let (_client, js) = crate::scaleout::connect(&args.nats, &pipeline.scaleout).await?;
    let mut edge = Edge::start(&pipeline, ctx, &ring, js, host, state_dir)?;
    let stopped = edge.serve(args, &stop).await?;
    let summary = Summary {
        host: edge.host.clone(),
        site: pipeline.scaleout.site.clone(),
        stopped,
        lines_read: edge.lines.read,
        lines_parsed: edge.lines.parsed,
        lines_rejected: edge.lines.rejected.clone(),
        lines_late: edge.lines.late,
        messages_published: edge.messages_published,
        duplicates: edge.duplicates,
        watermark_micros: edge.watermark(),
    };
    if let Some(path) = &args.summary {
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("writing summary {}", path.display()))?;
    }
    crate::write_stdout(&format!(
        "edge {} stopped ({}): {} lines read, {} parsed, {} late; {} messages published, {} duplicates dropped by the server\n",
        summary.host,
        summary.stopped,
        summary.lines_read,
        summary.lines_parsed,
        summary.lines_late,
        summary.messages_published,
        summary.duplicates
    ))?;
    Ok(ExitCode::SUCCESS)
}

impl<'a> Edge<'a> {
    fn start(
        pipeline: &'a Pipeline,
        ctx: RunContext<'a>,
        ring: &KeyRing,
        js: jetstream::Context,
        host: String,
        state_dir: PathBuf,
    ) -> Result<Self> {
        let saved = load_checkpoint(&state_dir)?;
        let salt = if let Some(c) = &saved {
            checkpoint::unhex32(&c.salt).with_context(|| {
                format!("{}: bad salt", state_dir.join(CHECKPOINT_FILE).display())
            })?
        } else {
            let mut salt = [0u8; 32];
            getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("random salt: {e}"))?;
            salt
        };
        let mut edge = Self {
            pipeline,
            ctx,
            js,
            host,
            state_dir,
            salt,
            fingerprint_key: ring.newest().file_fingerprint_key(),
            tailer: Tailer::new(
                pipeline.inputs.clone(),
                pipeline.inputs_base.clone(),
                salt,
                pipeline.max_line_bytes,
                crate::daemon::DRAIN_GRACE,
            ),
            parser_states: HashMap::new(),
            max_event: None,
            lines: LineTotals::default().with_every_reason(),
            messages_published: 0,
            duplicates: 0,
            replay: Vec::new(),
        };
        if let Some(saved) = saved {
            if saved.host != edge.host {
                bail!(
                    "{}: this state belongs to edge `{}`, not `{}` (message ids would not match)",
                    edge.state_dir.display(),
                    saved.host,
                    edge.host
                );
            }
            tracing::info!(
                files = saved.files.len(),
                pending = saved.pending.len(),
                lines_read = saved.lines.read,
                "resuming from checkpoint"
            );
            edge.max_event = saved.max_event_micros;
            edge.lines = saved.lines.with_every_reason();
            edge.messages_published = saved.messages_published;
            edge.duplicates = saved.duplicates;
            edge.tailer.restore(saved.files);
            if !saved.pending.is_empty() {
                tracing::info!(
                    ranges = saved.pending.len(),
                    "re-publishing the ranges in flight at the last stop"
                );
                edge.replay = saved.pending;
            }
        }
        Ok(edge)
    }

    fn watermark(&self) -> Option<i64> {
        let lateness = self.pipeline.scaleout.lateness.as_micros() as i64;
        self.max_event.map(|m| m - lateness)
    }

    /// Runs turns until a signal or idle exit; returns why it stopped.
    async fn serve(&mut self, args: &EdgeArgs, stop: &AtomicBool) -> Result<&'static str> {
        let poll = self.pipeline.daemon.poll_interval;
        let mut last_scan: Option<Instant> = None;
        let mut replay = std::mem::take(&mut self.replay);
        let mut last_heartbeat: Option<Instant> = None;
        loop {
            if stop.load(Ordering::SeqCst) {
                self.commit(Vec::new())?;
                return Ok("signal");
            }
            if last_scan.is_none_or(|t| t.elapsed() >= poll) {
                self.tailer.scan();
                let live: std::collections::HashSet<u64> = self.tailer.streams().collect();
                self.parser_states.retain(|s, _| live.contains(s));
                last_scan = Some(Instant::now());
            }
            let before_files = self.tailer.checkpoint();
            let before: HashMap<(u64, u64), u64> = before_files
                .iter()
                .map(|f| ((f.dev, f.ino), f.offset))
                .collect();
            let (reads, consumed) = if replay.is_empty() {
                self.tailer.read(READ_BUDGET)
            } else {
                // Exactly the ranges in flight at the last stop, nothing else.
                let limits = replay.iter().map(|p| ((p.dev, p.ino), p.end)).collect();
                let budget = replay
                    .iter()
                    .map(|p| (p.end - p.start) as usize)
                    .sum::<usize>()
                    + 1;
                self.tailer.set_read_limits(Some(limits));
                let out = self.tailer.read(budget);
                self.tailer.set_read_limits(None);
                out
            };
            if !reads.is_empty() {
                let pending: Vec<Pending> = reads
                    .iter()
                    .map(|read| self.pending_of(read, &before, &replay))
                    .collect();
                // Ranges and ids first: a crash from here on re-publishes the same messages.
                self.commit_files(before_files, pending.clone())?;
                let messages = self.messages(reads, &pending);
                if !self.publish(messages, stop).await? {
                    return Ok("signal");
                }
                self.commit(Vec::new())?;
            } else if consumed > 0 {
                self.commit(Vec::new())?;
            }
            replay.clear();
            if consumed == 0 {
                if let Some(idle) = args.idle_exit
                    && self.tailer.idle_for() >= Duration::from_secs(idle)
                {
                    tracing::info!(
                        idle_seconds = idle,
                        "no input growth: publishing the final watermark and stopping"
                    );
                    let finals = self.final_messages();
                    if !self.publish(finals, stop).await? {
                        return Ok("signal");
                    }
                    self.commit(Vec::new())?;
                    return Ok("idle");
                }
                if self.tailer.idle_for() >= self.pipeline.scaleout.lateness.max(QUIET_AFTER)
                    && last_heartbeat.is_none_or(|t| t.elapsed() >= HEARTBEAT_EVERY)
                {
                    last_heartbeat = Some(Instant::now());
                    if let Some(beat) = self.heartbeat() {
                        if !self.publish(beat, stop).await? {
                            return Ok("signal");
                        }
                        self.commit(Vec::new())?;
                    }
                }
                tokio::time::sleep(poll).await;
            }
        }
    }

    /// The range a read covers and its message-id prefix.
    fn pending_of(
        &self,
        read: &TailRead,
        before: &HashMap<(u64, u64), u64>,
        replay: &[Pending],
    ) -> Pending {
        let (dev, ino) = self.tailer.file_id(read.stream).unwrap_or_default();
        let start = before.get(&(dev, ino)).copied().unwrap_or(0);
        let end = self
            .tailer
            .offset(read.stream)
            .unwrap_or(read.chunk.offset + read.chunk.data.len() as u64);
        if let Some(p) = replay
            .iter()
            .find(|p| (p.dev, p.ino, p.start, p.end) == (dev, ino, start, end))
        {
            return p.clone();
        }
        let head = self.tailer.head(read.stream).unwrap_or_default();
        let fingerprint = blake3::keyed_hash(&self.fingerprint_key, head);
        let fingerprint = checkpoint::hex(&fingerprint.as_bytes()[..8]);
        Pending {
            dev,
            ino,
            start,
            end,
            id: format!("{}/{fingerprint}/{start}-{end}", self.host),
        }
    }

    /// Parses and pseudonymizes the reads (pieces in parallel) and cuts the events into
    /// messages per partition.
    fn messages(&mut self, reads: Vec<TailRead>, pending: &[Pending]) -> Vec<Message> {
        let pipeline = self.pipeline;
        let jobs =
            crate::daemon::parse_jobs(pipeline, &self.tailer, &mut self.parser_states, reads);
        let ctx = &self.ctx;
        let results: Vec<(usize, LineCounts, Vec<Event>)> = jobs
            .par_iter()
            .map(|(r, chunk, start)| {
                let mut lines = LineCounts::default();
                let events = events_of_chunk(ctx, chunk, start, &mut lines);
                (*r, lines, events)
            })
            .collect();
        let partitions = pipeline.scaleout.partitions;
        let old_watermark = self.watermark();
        let cap = crate::daemon::now_micros() + crate::daemon::MAX_FUTURE_MICROS;
        let mut per_read: Vec<(LineCounts, Vec<Vec<Event>>, u64)> = pending
            .iter()
            .map(|_| {
                (
                    LineCounts::default(),
                    (0..partitions).map(|_| Vec::new()).collect(),
                    0,
                )
            })
            .collect();
        for (r, lines, events) in results {
            let slot = &mut per_read[r];
            slot.0.merge(&lines);
            for event in events {
                let t = event.utc_micros;
                if old_watermark.is_some_and(|w| t < w) {
                    slot.2 += 1;
                }
                if t <= cap && self.max_event.is_none_or(|m| t > m) {
                    self.max_event = Some(t);
                }
                slot.1[event.visitor.partition(partitions) as usize].push(event);
            }
        }
        let watermark = self.watermark().unwrap_or(i64::MIN);
        let mut messages = Vec::new();
        for (p, (lines, by_partition, late)) in pending.iter().zip(per_read) {
            if late > 0 {
                tracing::warn!(
                    late,
                    "lines older than this edge's watermark: published, and merge rewrites the windows they fall in"
                );
            }
            self.lines.add(&lines, late);
            for (partition, events) in by_partition.into_iter().enumerate() {
                let partition = partition as u32;
                let pieces: Vec<&[Event]> = if events.is_empty() {
                    vec![&[]]
                } else {
                    events.chunks(EVENTS_PER_MESSAGE).collect()
                };
                for (i, piece) in pieces.into_iter().enumerate() {
                    let counts = partition == 0 && i == 0;
                    let header = BatchHeader {
                        host: self.host.clone(),
                        site: pipeline.scaleout.site.clone(),
                        partition,
                        partitions,
                        watermark_micros: watermark,
                        last: false,
                        lines_read: if counts { lines.read } else { 0 },
                        lines_parsed: if counts { lines.parsed } else { 0 },
                        lines_rejected: if counts {
                            let mut totals = LineTotals::default();
                            totals.add(&lines, 0);
                            totals.rejected.retain(|_, n| *n > 0);
                            totals.rejected
                        } else {
                            BTreeMap::new()
                        },
                        lines_late: if counts { late } else { 0 },
                    };
                    messages.push(Message {
                        subject: crate::scaleout::subject(&pipeline.scaleout.site, partition),
                        id: format!("{}/p{partition}.{i}", p.id),
                        payload: wire::encode(&header, piece).into(),
                    });
                }
            }
        }
        messages
    }

    /// A quiet edge (its files read to the end for a while) moves its watermark to the
    /// clock minus `lateness`: a line written from now on carries about the current time,
    /// so windows close on a site where some web server has no traffic. One
    /// watermark-only message per partition; `None` when the watermark would not move.
    fn heartbeat(&mut self) -> Option<Vec<Message>> {
        let now = crate::daemon::now_micros();
        if self.max_event.is_some_and(|m| m >= now) {
            return None;
        }
        self.max_event = Some(now);
        let watermark = self.watermark().unwrap_or(i64::MIN);
        Some(watermark_messages(
            &self.pipeline.scaleout,
            &self.host,
            watermark,
            &format!("heartbeat/{watermark}"),
        ))
    }

    /// One watermark-only message per partition: this edge has drained its files.
    fn final_messages(&self) -> Vec<Message> {
        watermark_messages(
            &self.pipeline.scaleout,
            &self.host,
            i64::MAX,
            &format!("final/{}", self.lines.read),
        )
    }

    /// Publishes and waits for every acknowledgement, retrying (same ids, so the server
    /// keeps one copy) while the server is unreachable. `false`: stopped by a signal first.
    async fn publish(&mut self, messages: Vec<Message>, stop: &AtomicBool) -> Result<bool> {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.try_publish(&messages).await {
                Ok((published, duplicates)) => {
                    self.messages_published += published;
                    self.duplicates += duplicates;
                    return Ok(true);
                }
                Err(e) => {
                    if stop.load(Ordering::SeqCst) {
                        tracing::warn!(
                            "stopping before the server acknowledged: the ranges in flight are re-published at the next start"
                        );
                        return Ok(false);
                    }
                    tracing::warn!(error = %format!("{e:#}"), retry_in_ms = delay.as_millis() as u64, "publishing failed; retrying with the same message ids");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn try_publish(&self, messages: &[Message]) -> Result<(u64, u64)> {
        let mut acks = Vec::with_capacity(messages.len());
        for m in messages {
            let ack = self
                .js
                .send_publish(
                    m.subject.clone(),
                    jetstream::message::PublishMessage::build()
                        .payload(m.payload.clone())
                        .message_id(&m.id),
                )
                .await
                .with_context(|| format!("publishing to {}", m.subject))?;
            acks.push(ack);
        }
        let mut duplicates = 0;
        for ack in acks {
            let ack = ack
                .await
                .context("waiting for the server's acknowledgement")?;
            duplicates += u64::from(ack.duplicate);
        }
        Ok((messages.len() as u64, duplicates))
    }

    fn commit(&self, pending: Vec<Pending>) -> Result<()> {
        self.commit_files(self.tailer.checkpoint(), pending)
    }

    fn commit_files(&self, files: Vec<FileCheckpoint>, pending: Vec<Pending>) -> Result<()> {
        let c = EdgeCheckpoint {
            version: CHECKPOINT_VERSION,
            salt: checkpoint::hex(&self.salt),
            host: self.host.clone(),
            files,
            pending,
            max_event_micros: self.max_event,
            lines: self.lines.clone(),
            messages_published: self.messages_published,
            duplicates: self.duplicates,
        };
        let bytes = serde_json::to_vec(&c).context("serialising the edge checkpoint")?;
        checkpoint::write_atomic(&self.state_dir, CHECKPOINT_FILE, &bytes)
    }
}

/// One watermark-only message per partition (no events): a heartbeat, a drained edge
/// (`i64::MAX`, marked `last`) or a retired one. Ids are `host/<what>/p<partition>`.
fn watermark_messages(
    s: &crate::scaleout::ScaleoutSettings,
    host: &str,
    watermark: i64,
    what: &str,
) -> Vec<Message> {
    (0..s.partitions)
        .map(|partition| {
            let header = BatchHeader {
                host: host.to_owned(),
                site: s.site.clone(),
                partition,
                partitions: s.partitions,
                watermark_micros: watermark,
                last: watermark == i64::MAX,
                ..BatchHeader::default()
            };
            Message {
                subject: crate::scaleout::subject(&s.site, partition),
                id: format!("{host}/{what}/p{partition}"),
                payload: wire::encode(&header, &[]).into(),
            }
        })
        .collect()
}

/// A message ready to publish.
struct Message {
    subject: String,
    id: String,
    /// Shared: a retry re-sends it without copying.
    payload: bytes::Bytes,
}

/// `--retire`: tells every partition that this host will publish nothing more, so its last
/// watermark stops holding windows open. Lines it publishes later count as late.
async fn retire(pipeline: &Pipeline, args: &EdgeArgs, host: String) -> Result<ExitCode> {
    let (_client, js) = crate::scaleout::connect(&args.nats, &pipeline.scaleout).await?;
    let mut stamp = [0u8; 8];
    getrandom::fill(&mut stamp).map_err(|e| anyhow::anyhow!("random id: {e}"))?;
    let s = &pipeline.scaleout;
    let messages = watermark_messages(
        s,
        &host,
        i64::MAX,
        &format!("retire/{}", checkpoint::hex(&stamp)),
    );
    for m in messages {
        // A stream another process has just created may not take messages yet ("no
        // stream found for given subject" from nats-server 2.9): retry a few times, with
        // the same id (the server keeps one copy).
        let mut attempt = 0u64;
        loop {
            let sent = async {
                js.send_publish(
                    m.subject.clone(),
                    jetstream::message::PublishMessage::build()
                        .payload(m.payload.clone())
                        .message_id(&m.id),
                )
                .await
                .with_context(|| format!("publishing to {}", m.subject))?
                .await
                .context("waiting for the server's acknowledgement")
            }
            .await;
            match sent {
                Ok(_) => break,
                Err(e) if attempt < 5 => {
                    tracing::warn!(error = %format!("{e:#}"), "retiring: publishing failed; retrying");
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
    crate::write_stdout(&format!(
        "edge {host} retired: {} partitions told it has drained\n",
        s.partitions
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn load_checkpoint(dir: &Path) -> Result<Option<EdgeCheckpoint>> {
    let path = dir.join(CHECKPOINT_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let c: EdgeCheckpoint = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not a logveil edge checkpoint", path.display()))?;
    if c.version != CHECKPOINT_VERSION {
        bail!(
            "{}: checkpoint version {} (this logveil reads version {CHECKPOINT_VERSION})",
            path.display(),
            c.version
        );
    }
    Ok(Some(c))
}
