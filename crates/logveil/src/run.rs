//! `logveil run`: the batch pipeline, source → parse → pseudonymize → join → aggregate →
//! disclose → write. One thread reads line-aligned chunks; rayon workers (`--threads`)
//! each aggregate their chunks into their own partial report states, merged once at the
//! end, so memory is bounded by the chunks in flight plus the report cells, never by the
//! input size.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use anyhow::{Context, Result};
use logveil_accounts::{AccountSource, LoadStats};
use logveil_ingest::{Chunk, DEFAULT_CHUNK_BYTES};
use logveil_parse::{ParserState, RejectReason};
use rayon::prelude::*;
use serde::Serialize;

use crate::chunks::Chunker;
use crate::config::Pipeline;
use crate::engine::{Partial, Rejected, RunContext, process_chunk_into};
use crate::publish::{self, ReportSummary};

/// The dead-letter file: one JSON object per rejected line, in input order.
struct DeadLetter {
    path: PathBuf,
    out: BufWriter<File>,
}

#[derive(Serialize)]
struct DeadLetterEntry<'a> {
    reason: &'static str,
    file: &'a str,
    offset: u64,
    line: Option<&'a str>,
}

impl DeadLetter {
    /// Creates or truncates the file, so a run never leaves an earlier run's lines behind.
    fn create(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating dead-letter directory {}", dir.display()))?;
        }
        let file = File::create(path)
            .with_context(|| format!("creating dead-letter file {}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            out: BufWriter::new(file),
        })
    }

    fn write(&mut self, file: &str, rejected: &[Rejected]) -> Result<()> {
        for r in rejected {
            let entry = DeadLetterEntry {
                reason: r.reason.as_str(),
                file,
                offset: r.offset,
                line: r.line.as_deref(),
            };
            serde_json::to_writer(&mut self.out, &entry)?;
            self.out.write_all(b"\n")?;
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        let context = || format!("writing dead-letter file {}", self.path.display());
        let file = self
            .out
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)
            .with_context(context)?;
        file.sync_all().with_context(context)
    }
}

/// What a run did; printed for people and written as JSON with `--summary`.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub pipeline: String,
    /// The newest key of the ring.
    pub key_id: String,
    /// Every key of the ring, oldest first (each report file names the ones it used).
    pub key_ids: Vec<String>,
    pub demo_key: bool,
    pub inputs: Vec<String>,
    pub lines_read: u64,
    pub lines_parsed: u64,
    /// W3C `#` directive lines (neither parsed requests nor rejected).
    pub lines_directives: u64,
    pub lines_rejected: BTreeMap<&'static str, u64>,
    /// Parsed lines with a value cut to its cap (a page over 1 KiB; README "URL sanitising").
    pub values_cut: u64,
    pub accounts: Option<AccountsSummary>,
    pub reports: BTreeMap<String, ReportSummary>,
    pub outputs: Vec<String>,
    /// The dead-letter file, when the run wrote one.
    pub dead_letter: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct AccountsSummary {
    pub source: String,
    pub accounts: u64,
    pub cookie_links: u64,
    pub ambiguous_cookies: u64,
    pub invalid_birth_dates: u64,
    /// Per source column, values that are none of the dimension's spellings (they became
    /// `unknown` or `other`); only columns with a count.
    pub account_values_unrecognised: BTreeMap<&'static str, u64>,
}

impl AccountsSummary {
    pub fn new(source: &AccountSource, stats: &LoadStats) -> Self {
        Self {
            // A file source reads best with its path tidied; a database URL is shown with
            // its password redacted (the source's `Display`).
            source: match source {
                AccountSource::Postgres(_) => source.to_string(),
                _ => logveil_ingest::normalize_path(source.path())
                    .display()
                    .to_string(),
            },
            accounts: stats.accounts,
            cookie_links: stats.cookie_links,
            ambiguous_cookies: stats.ambiguous_cookies,
            invalid_birth_dates: stats.invalid_birth_dates,
            account_values_unrecognised: stats.unrecognised.clone(),
        }
    }
}

/// One chunk on its way to a worker: its place in the input, its bytes and the parser
/// state it starts from.
struct Work {
    seq: u64,
    file: usize,
    chunk: Chunk,
    start: ParserState,
}

/// What workers hand back to the reading thread.
enum Done {
    /// A chunk is finished: its size (for the progress bar) and, with a dead-letter file,
    /// its rejected lines (written in input order).
    Chunk {
        seq: u64,
        file: usize,
        bytes: u64,
        rejected: Vec<Rejected>,
        /// The chunk's buffer, to be read into again.
        buffer: Vec<u8>,
    },
    /// A worker's state over all its chunks, when the input is exhausted.
    Worker(Box<Partial>),
}

/// The number of worker threads: `--threads`, else one per core.
fn worker_threads(requested: Option<usize>) -> usize {
    requested
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
        .max(1)
}

/// Runs `pipeline` with `threads` workers (`None`: one per core).
///
/// Plain input files of a stateless format without a dead-letter file are cut into one
/// byte range per worker, and each worker of a rayon pool reads its range in line-aligned
/// chunks (a line belongs to the range it starts in). Otherwise (compressed inputs, stdin,
/// W3C, a dead-letter file, which needs input order) the calling thread reads each input
/// in chunks and queues them, a few per worker. Either way each worker parses,
/// pseudonymizes and aggregates its chunks into its own [`Partial`]; memory is bounded by
/// the chunks in flight plus the report cells. The states are merged once at the end, and
/// the reports disclosed and written in parallel.
pub fn run(pipeline: &Pipeline, threads: Option<usize>) -> Result<Summary> {
    let threads = worker_threads(threads);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("logveil-worker-{i}"))
        .build()
        .context("starting worker threads")?;
    let (ctx, ring, accounts_summary) = RunContext::load(pipeline)?;

    let files = logveil_ingest::expand_inputs(&pipeline.inputs, &pipeline.inputs_base)?;
    let dead_letter = pipeline
        .dead_letter
        .as_deref()
        .map(DeadLetter::create)
        .transpose()?;
    let progress = Progress::new(&files);
    // Phase times at `LOGVEIL_LOG=debug` (where a run's time goes).
    let started = std::time::Instant::now();
    let phase = |name: &str| {
        tracing::debug!(
            seconds = format!("{:.3}", started.elapsed().as_secs_f64()),
            threads,
            "{name}"
        );
    };
    let workers = match split_inputs(&ctx, &files, threads)? {
        // Plain files, stateless format, no dead-letter file: each worker reads its own
        // byte range (its own part of the day, for time-ordered logs).
        Some(slices) => {
            for name in files.iter().map(ToString::to_string) {
                progress.suspend(|| tracing::info!(file = %name, "reading (split by byte ranges)"));
            }
            pool.install(|| read_ranges(&ctx, &files, slices, &progress))?
        }
        None => pool.in_place_scope(|scope| {
            read_and_process(scope, &ctx, &files, threads, dead_letter, &progress)
        })?,
    };
    progress.finish();
    phase("inputs read, parsed and aggregated");
    let total = pool.install(|| {
        workers
            .into_iter()
            .fold(Partial::new(pipeline), Partial::merge)
    });
    phase("worker states merged");

    let (reports, outputs) = pool.install(|| publish_all(pipeline, &ring, &files, total.states))?;
    phase("reports disclosed and written");
    Ok(Summary {
        pipeline: pipeline.path.display().to_string(),
        key_id: ring.newest().id().to_string(),
        key_ids: ring.keys().iter().map(|k| k.id().to_string()).collect(),
        demo_key: ring.is_demo(),
        inputs: files.iter().map(ToString::to_string).collect(),
        lines_read: total.lines.read,
        lines_parsed: total.lines.parsed,
        lines_directives: total.lines.directives,
        values_cut: total.lines.values_cut,
        lines_rejected: RejectReason::ALL
            .iter()
            .zip(total.lines.rejected)
            .map(|(r, n)| (r.as_str(), n))
            .collect(),
        accounts: accounts_summary,
        reports,
        outputs,
        dead_letter: pipeline
            .dead_letter
            .as_ref()
            .map(|p| p.display().to_string()),
    })
}

/// Below this many input bytes per worker a run reads sequentially.
const MIN_SPLIT_BYTES: u64 = 64 * 1024;

/// A byte range of one input file: the lines that start in `[start, end)`.
struct Piece {
    file: usize,
    start: u64,
    end: u64,
}

/// When every input is a plain file, the format needs no state from earlier lines and no
/// dead-letter file is written (its lines must come out in input order): the inputs, seen
/// as one run of bytes, cut into `threads` equal slices, one per worker. `None` otherwise,
/// and for inputs too small to be worth it.
fn split_inputs(
    ctx: &RunContext<'_>,
    files: &[logveil_ingest::Input],
    threads: usize,
) -> Result<Option<Vec<Vec<Piece>>>> {
    let pipeline = ctx.pipeline;
    if threads < 2 || pipeline.dead_letter.is_some() || ctx.parser.is_stateful() {
        return Ok(None);
    }
    let mut sizes = Vec::with_capacity(files.len());
    for input in files {
        let logveil_ingest::Input::File(path) = input else {
            return Ok(None);
        };
        // Regular files only (a FIFO or device has no ranges, and must not be read twice).
        let Ok(metadata) = std::fs::metadata(path) else {
            return Ok(None);
        };
        if !metadata.is_file() {
            return Ok(None);
        }
        let (_, compression) = logveil_ingest::open(input, pipeline.max_decompressed_bytes)?;
        if !matches!(compression, logveil_ingest::Compression::None) {
            return Ok(None);
        }
        sizes.push(metadata.len());
    }
    let total: u64 = sizes.iter().sum();
    if total < threads as u64 * MIN_SPLIT_BYTES {
        return Ok(None);
    }
    let share = total.div_ceil(threads as u64);
    let mut slices: Vec<Vec<Piece>> = (0..threads).map(|_| Vec::new()).collect();
    let mut base = 0u64;
    for (file, size) in sizes.iter().enumerate() {
        let (lo, hi) = (base, base + size);
        for (k, slice) in slices.iter_mut().enumerate() {
            let from = (k as u64 * share).max(lo);
            let to = ((k as u64 + 1) * share).min(total).min(hi);
            if from < to {
                slice.push(Piece {
                    file,
                    start: from - lo,
                    end: to - lo,
                });
            }
        }
        base = hi;
    }
    Ok(Some(slices))
}

/// Each worker reads its slices' byte ranges itself (a line belongs to the range it starts
/// in) and aggregates them into its own state.
fn read_ranges(
    ctx: &RunContext<'_>,
    files: &[logveil_ingest::Input],
    slices: Vec<Vec<Piece>>,
    progress: &Progress,
) -> Result<Vec<Partial>> {
    let pipeline = ctx.pipeline;
    slices
        .into_par_iter()
        .map(|slice| {
            let mut partial = Partial::new(pipeline);
            let mut buffer = Vec::new();
            // Stateless formats only: every chunk starts from the default state.
            let state = ParserState::default();
            for piece in slice {
                let logveil_ingest::Input::File(path) = &files[piece.file] else {
                    unreachable!("split runs read files only");
                };
                let context = || format!("reading {}", path.display());
                let mut file = File::open(path).with_context(context)?;
                let start = crate::chunks::line_start_at_or_after(&mut file, piece.start)
                    .with_context(context)?;
                let mut chunks = Chunker::with_range(
                    file,
                    start,
                    piece.end,
                    DEFAULT_CHUNK_BYTES,
                    pipeline.max_line_bytes,
                );
                while let Some(chunk) = chunks
                    .next_chunk(std::mem::take(&mut buffer))
                    .with_context(context)?
                {
                    process_chunk_into(ctx, &chunk, &state, &mut partial);
                    progress.inc(chunk.data.len() as u64);
                    buffer = chunk.data;
                }
            }
            Ok(partial)
        })
        .collect()
}

/// Reads every input on this thread and feeds the chunks to `threads` workers spawned on
/// `scope`; writes the dead-letter file in input order. Returns the workers' states.
fn read_and_process<'s>(
    scope: &rayon::Scope<'s>,
    ctx: &'s RunContext<'s>,
    files: &[logveil_ingest::Input],
    threads: usize,
    mut dead_letter: Option<DeadLetter>,
    progress: &Progress,
) -> Result<Vec<Partial>> {
    let pipeline = ctx.pipeline;
    let names: Vec<String> = files.iter().map(ToString::to_string).collect();
    // A few chunks queued per worker keep every worker busy while the next is read.
    let (work_tx, work_rx) = mpsc::sync_channel::<Work>(threads * 2);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    for _ in 0..threads {
        let work_rx = Arc::clone(&work_rx);
        let done_tx = done_tx.clone();
        scope.spawn(move |_| {
            let mut partial = Partial::new(pipeline);
            loop {
                // The lock is held only while waiting for the next chunk.
                let next = work_rx
                    .lock()
                    .map_err(|_| ())
                    .and_then(|rx| rx.recv().map_err(|_| ()));
                let Ok(work) = next else { break };
                process_chunk_into(ctx, &work.chunk, &work.start, &mut partial);
                let done = Done::Chunk {
                    seq: work.seq,
                    file: work.file,
                    bytes: work.chunk.data.len() as u64,
                    rejected: std::mem::take(&mut partial.rejected),
                    buffer: work.chunk.data,
                };
                if done_tx.send(done).is_err() {
                    return;
                }
            }
            let _ = done_tx.send(Done::Worker(Box::new(partial)));
        });
    }
    drop(done_tx);

    let mut collector = Collector {
        names: &names,
        dead_letter: dead_letter.as_mut(),
        progress,
        next_seq: 0,
        pending: BTreeMap::new(),
        workers: Vec::with_capacity(threads),
        spare: Vec::new(),
    };
    let read = read_inputs(
        ctx,
        files,
        &names,
        &work_tx,
        &done_rx,
        &mut collector,
        progress,
    );
    // Workers finish the queued chunks and hand back their state.
    drop(work_tx);
    for done in done_rx {
        collector.take(done)?;
    }
    read?;
    let workers = collector.workers;
    if let Some(dead_letter) = dead_letter {
        dead_letter.finish()?;
    }
    Ok(workers)
}

/// Sends every chunk of every input to the workers, in order, collecting what comes back
/// between sends.
fn read_inputs(
    ctx: &RunContext<'_>,
    files: &[logveil_ingest::Input],
    names: &[String],
    work_tx: &mpsc::SyncSender<Work>,
    done_rx: &mpsc::Receiver<Done>,
    collector: &mut Collector<'_>,
    progress: &Progress,
) -> Result<()> {
    let pipeline = ctx.pipeline;
    let mut seq = 0u64;
    for (index, input) in files.iter().enumerate() {
        let name = &names[index];
        let (reader, compression) = logveil_ingest::open(input, pipeline.max_decompressed_bytes)?;
        progress.suspend(|| tracing::info!(file = %name, ?compression, "reading"));
        let mut chunks = Chunker::new(reader, DEFAULT_CHUNK_BYTES, pipeline.max_line_bytes);
        // State carried from line to line (W3C `#Fields:`): each chunk starts from what the
        // chunks before it declared, found by a cheap sequential scan before parsing in parallel.
        let mut state = ParserState::default();
        while let Some(chunk) = chunks
            .next_chunk(collector.spare.pop().unwrap_or_default())
            .with_context(|| format!("reading {name}"))?
        {
            let start = state.clone();
            ctx.parser.scan(&chunk.data, &mut state);
            let mut work = Work {
                seq,
                file: index,
                chunk,
                start,
            };
            seq += 1;
            // Hand the chunk over, writing finished chunks' rejected lines while the queue is full.
            loop {
                match work_tx.try_send(work) {
                    Ok(()) => break,
                    Err(mpsc::TrySendError::Full(back)) => {
                        work = back;
                        match done_rx.recv_timeout(std::time::Duration::from_millis(20)) {
                            Ok(done) => collector.take(done)?,
                            Err(mpsc::RecvTimeoutError::Timeout) => {}
                            Err(mpsc::RecvTimeoutError::Disconnected) => {
                                anyhow::bail!("worker threads stopped")
                            }
                        }
                    }
                    Err(mpsc::TrySendError::Disconnected(_)) => {
                        anyhow::bail!("worker threads stopped")
                    }
                }
            }
            while let Ok(done) = done_rx.try_recv() {
                collector.take(done)?;
            }
        }
    }
    Ok(())
}

/// Puts finished chunks back in input order for the dead-letter file and the progress bar,
/// and keeps the workers' states.
struct Collector<'a> {
    names: &'a [String],
    dead_letter: Option<&'a mut DeadLetter>,
    progress: &'a Progress,
    next_seq: u64,
    pending: BTreeMap<u64, (usize, Vec<Rejected>)>,
    workers: Vec<Partial>,
    /// Finished chunks' buffers, read into again.
    spare: Vec<Vec<u8>>,
}

impl Collector<'_> {
    fn take(&mut self, done: Done) -> Result<()> {
        match done {
            Done::Worker(partial) => self.workers.push(*partial),
            Done::Chunk {
                seq,
                file,
                bytes,
                rejected,
                buffer,
            } => {
                self.spare.push(buffer);
                self.progress.inc(bytes);
                self.pending.insert(seq, (file, rejected));
                while let Some((file, rejected)) = self.pending.remove(&self.next_seq) {
                    if let Some(dead_letter) = self.dead_letter.as_deref_mut() {
                        dead_letter.write(&self.names[file], &rejected)?;
                    }
                    self.next_seq += 1;
                }
            }
        }
        Ok(())
    }
}

/// Discloses, charges (DP) and writes every report; returns the summaries and files.
fn publish_all(
    pipeline: &Pipeline,
    ring: &logveil_privacy::KeyRing,
    files: &[logveil_ingest::Input],
    states: Vec<logveil_report::ReportState>,
) -> Result<(BTreeMap<String, ReportSummary>, Vec<String>)> {
    let ctx = publish::PublishContext {
        pipeline,
        ring,
        input_sha256: Some(publish::input_digest(files)),
    };
    let published = publish::publish(&ctx, states)?;
    let outputs = published
        .outputs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    Ok((published.reports, outputs))
}

/// A progress bar on standard error when it is a terminal (bytes read and bytes/s);
/// nothing otherwise.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(files: &[logveil_ingest::Input]) -> Self {
        use std::io::IsTerminal as _;
        if !std::io::stderr().is_terminal() {
            return Self(None);
        }
        // The total is known for uncompressed files only; otherwise count bytes and rate.
        let total: Option<u64> = files
            .iter()
            .map(|f| match f {
                logveil_ingest::Input::File(path)
                    if !path
                        .extension()
                        .is_some_and(|e| e == "gz" || e == "zst" || e == "zstd") =>
                {
                    std::fs::metadata(path).ok().map(|m| m.len())
                }
                _ => None,
            })
            .sum();
        let (bar, template) = match total {
            Some(total) => (
                indicatif::ProgressBar::new(total),
                "{elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            ),
            None => (
                indicatif::ProgressBar::no_length(),
                "{elapsed_precise} {bytes} {binary_bytes_per_sec}",
            ),
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        Self(Some(bar))
    }

    fn inc(&self, bytes: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(bytes);
        }
    }

    fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.0 {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// `N read, N parsed, N rejected (reason N, …)`: the line counts of a run or daemon summary.
pub fn line_counts<K: std::fmt::Display>(
    read: u64,
    parsed: u64,
    rejected: &BTreeMap<K, u64>,
) -> String {
    let total: u64 = rejected.values().sum();
    let reasons: Vec<String> = rejected
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    if reasons.is_empty() {
        format!("{read} read, {parsed} parsed, {total} rejected")
    } else {
        format!(
            "{read} read, {parsed} parsed, {total} rejected ({})",
            reasons.join(", ")
        )
    }
}

/// The human summary printed after a run.
pub fn render(summary: &Summary, out_dir: &Path) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "logveil run {} (key {}{})",
        summary.pipeline,
        summary.key_id,
        if summary.demo_key { ", DEMO KEY" } else { "" }
    );
    let _ = writeln!(
        s,
        "  lines: {}",
        line_counts(
            summary.lines_read,
            summary.lines_parsed,
            &summary.lines_rejected
        )
    );
    if summary.lines_directives > 0 {
        let _ = writeln!(
            s,
            "  directives: {} (W3C `#` lines)",
            summary.lines_directives
        );
    }
    if summary.values_cut > 0 {
        let _ = writeln!(
            s,
            "  values cut: {} lines (page over {} bytes)",
            summary.values_cut,
            logveil_privacy::sanitize::PAGE_MAX_BYTES
        );
    }
    if let Some(a) = &summary.accounts {
        let _ = write!(
            s,
            "  accounts: {} loaded, {} cookie links",
            a.accounts, a.cookie_links
        );
        if !a.account_values_unrecognised.is_empty() {
            let columns: Vec<String> = a
                .account_values_unrecognised
                .iter()
                .map(|(column, n)| format!("{n} {column}"))
                .collect();
            let _ = write!(
                s,
                "; unrecognised values (unknown/other): {}",
                columns.join(", ")
            );
        }
        s.push('\n');
    }
    for (name, r) in &summary.reports {
        let _ = write!(
            s,
            "  {name:<24} {:>6} rows, {:>4} cells suppressed{} (k_min {}, audience {}), {} partition(s)",
            r.rows,
            r.cells_suppressed,
            if r.cells_secondary > 0 {
                format!(" ({} complementary)", r.cells_secondary)
            } else {
                String::new()
            },
            r.k_min,
            r.audience,
            r.partitions
        );
        if let (Some(e), Some(d)) = (&r.epsilon, &r.delta) {
            if r.new_releases == 0 {
                let _ = write!(s, "; DP: identical to recorded releases, nothing charged");
            } else {
                let _ = write!(s, "; DP release ε {e}, δ {d} charged");
            }
        }
        if let Some(j) = &r.joins {
            let _ = write!(
                s,
                "; joins: {} joined, {} no_account, {} no_consent, {} deleted",
                j.joined, j.no_account, j.no_consent, j.deleted
            );
        }
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "  wrote {} file(s) under {}",
        summary.outputs.len(),
        out_dir.display()
    );
    if let Some(path) = &summary.dead_letter {
        let _ = writeln!(s, "  rejected lines (redacted) in {path}");
    }
    s
}
