//! `logveil daemon`: follows live logs and writes each report window once it is complete,
//! with the output a batch run over the same lines would give.
//!
//! One loop on the main thread does all the work, in turns: look at the globs (every
//! `poll_interval`), read at most [`READ_BUDGET`] bytes of complete lines
//! ([`logveil_ingest::tail`]), parse and aggregate them in parallel with the batch
//! engine ([`crate::engine::process_chunk_with`]) into the open report states, advance
//! the watermark, write the windows it closed ([`crate::publish`]), and commit the
//! checkpoint ([`checkpoint`]) after them. Reading waits for aggregation (there is no
//! queue between them), so memory is bounded by one read batch plus the open windows.
//! A tokio runtime around the loop handles signals, timers and the metrics listener.
//!
//! Exactly once: the checkpoint holds the file offsets together with the report states
//! those offsets produced, and is committed only after the windows it no longer holds
//! were written. A crash loses only the work since the last checkpoint, which the
//! restart redoes from the same offsets; a window written twice is written the same
//! (atomic replace).

pub mod checkpoint;
pub mod metrics;
pub mod settings;
pub mod windows;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use logveil_ingest::Chunk;
use logveil_ingest::tail::{TailRead, Tailer};
use logveil_parse::ParserState;
use logveil_parse::time::MICROS_PER_DAY;
use logveil_report::{ReportSpec, ReportState};
use rayon::prelude::*;
use serde::Serialize;
use tokio::sync::Notify;

use crate::config::{Overrides, Pipeline};
use crate::engine::{RunContext, process_chunk_with};
use crate::publish;
use checkpoint::{Checkpoint, LineTotals, ReportCheckpoint, fingerprint};
use metrics::Metrics;

/// Bytes read per turn of the loop, over all files.
pub const READ_BUDGET: usize = 8 << 20;
/// Read batches are cut into pieces of about this size, parsed in parallel.
const PIECE_BYTES: usize = 1 << 20;
/// A file that left the globs (renamed away, deleted) is forgotten once read to its end
/// and quiet this long.
pub(crate) const DRAIN_GRACE: Duration = Duration::from_secs(30);
/// Event times further ahead of the clock than this do not move the watermark (one
/// line with a wrong clock must not close every window).
pub(crate) const MAX_FUTURE_MICROS: i64 = MICROS_PER_DAY;

/// `logveil daemon` arguments.
#[derive(Debug, Clone)]
pub struct DaemonArgs {
    pub pipeline: PathBuf,
    pub inputs: Vec<String>,
    pub out: Option<PathBuf>,
    pub state: Option<PathBuf>,
    pub idle_exit: Option<u64>,
    pub summary: Option<PathBuf>,
    pub metrics_addr: Option<String>,
    pub privacy_state: Option<PathBuf>,
}

/// Set by the signal task, read by the loop.
#[derive(Debug, Default)]
struct Control {
    terminate: AtomicBool,
    reload: AtomicBool,
    wake: Notify,
}

/// Why the daemon stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Stop {
    Signal,
    Idle,
}

enum Next {
    Stop(Stop),
    Reload(Box<Pipeline>),
}

/// What the daemon prints when it stops (and writes as JSON with `--summary`).
#[derive(Debug, Serialize)]
struct Summary {
    pipeline: String,
    stopped: Stop,
    key_id: String,
    demo_key: bool,
    /// Every counter covers all lines the state has seen, across restarts.
    lines_read: u64,
    lines_parsed: u64,
    lines_directives: u64,
    lines_rejected: std::collections::BTreeMap<String, u64>,
    lines_late: u64,
    windows_written: u64,
    /// Report → partitions still open (kept in the checkpoint).
    open_windows: std::collections::BTreeMap<String, Vec<String>>,
    files: Vec<SummaryFile>,
    state: String,
}

#[derive(Debug, Serialize)]
struct SummaryFile {
    path: String,
    offset: u64,
}

pub fn run(args: &DaemonArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("logveil-io")
        .enable_io()
        .enable_time()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(daemon(args))
}

fn load_pipeline(path: &Path, overrides: &Overrides) -> Result<Pipeline, String> {
    let mut pipeline = Pipeline::load(path, overrides).map_err(|e| e.to_string())?;
    // Rejected lines are counted (metrics, summary); the daemon writes no dead-letter file.
    if pipeline.dead_letter.take().is_some() {
        tracing::info!(
            "input.dead_letter is not written by the daemon: rejected lines are counted in /metrics and the summary"
        );
    }
    Ok(pipeline)
}

async fn daemon(args: &DaemonArgs) -> Result<ExitCode> {
    // Signals first: a SIGTERM during start-up must not kill the process mid-write.
    let control = Arc::new(Control::default());
    spawn_signal_task(Arc::clone(&control))?;

    let overrides = Overrides {
        inputs: args.inputs.clone(),
        out: args.out.clone(),
        privacy_state: args.privacy_state.clone(),
        ..Overrides::default()
    };
    let pipeline = match load_pipeline(&args.pipeline, &overrides) {
        Ok(p) => p,
        Err(errors) => {
            for e in errors.lines() {
                tracing::error!("{e}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    if pipeline.inputs.iter().any(|i| i == "-") {
        bail!(
            "{}: input `-` (standard input) cannot be followed: the daemon reads files (use `logveil run` for a pipe)",
            args.pipeline.display()
        );
    }
    let (state_dir, _lock) = checkpoint::open_state_dir(args.state.as_ref(), &pipeline, "daemon")?;

    let metrics = Arc::new(Metrics::new());
    let metrics_addr = match &args.metrics_addr {
        Some(text) => Some(
            settings::check_metrics_addr(text)
                .map_err(|e| anyhow::anyhow!("--metrics-addr: {e}"))?,
        ),
        None => pipeline.daemon.metrics_addr,
    };
    if let Some(addr) = metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics listener to {addr}"))?;
        let bound = listener.local_addr()?;
        tracing::info!(addr = %bound, "metrics on http://{bound}/metrics and /healthz");
        tokio::spawn(metrics::serve(listener, Arc::clone(&metrics)));
    }

    let mut core = Core::start(&pipeline, &state_dir, Arc::clone(&metrics))?;
    let mut pipeline = pipeline;
    let mut ctx_result = RunContext::load(&pipeline)
        .map(|(ctx, ring, _)| (ctx, ring.newest().id().to_string(), ring.is_demo()));
    loop {
        let (ctx, key_id, demo) = ctx_result?;
        let next = core
            .serve(&pipeline, ctx, &control, args, &overrides)
            .await?;
        match next {
            Next::Stop(stop) => {
                let summary = core.summary(&pipeline, stop, key_id, demo);
                if let Some(path) = &args.summary {
                    std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
                        .with_context(|| format!("writing summary {}", path.display()))?;
                }
                crate::write_stdout(&render(&summary))?;
                return Ok(ExitCode::SUCCESS);
            }
            Next::Reload(new) => {
                let old = std::mem::replace(&mut pipeline, *new);
                core.reconcile(&old, &pipeline)?;
                ctx_result = RunContext::load(&pipeline)
                    .map(|(ctx, ring, _)| (ctx, ring.newest().id().to_string(), ring.is_demo()));
                if let Err(e) = &ctx_result {
                    // Validated just before; a key or account source that broke since.
                    tracing::error!(error = %format!("{e:#}"), "reloaded pipeline failed to load its keys or accounts; going back to the previous pipeline");
                    core.reconcile(&pipeline, &old)?;
                    pipeline = old;
                    ctx_result = RunContext::load(&pipeline).map(|(ctx, ring, _)| {
                        (ctx, ring.newest().id().to_string(), ring.is_demo())
                    });
                }
            }
        }
    }
}

fn spawn_signal_task(control: Arc<Control>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {
                    tracing::info!("SIGTERM: checkpointing and stopping");
                    control.terminate.store(true, Ordering::SeqCst);
                }
                _ = int.recv() => {
                    tracing::info!("SIGINT: checkpointing and stopping");
                    control.terminate.store(true, Ordering::SeqCst);
                }
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading the pipeline");
                    control.reload.store(true, Ordering::SeqCst);
                }
            }
            control.wake.notify_one();
        }
    });
    Ok(())
}

pub(crate) fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Everything the daemon carries from turn to turn (and in the checkpoint).
struct Core {
    state_dir: PathBuf,
    salt: [u8; 32],
    tailer: Tailer,
    /// Parser state per followed stream (W3C `#Fields:`).
    parser_states: HashMap<u64, ParserState>,
    /// One per pipeline report, in order.
    open: Vec<ReportState>,
    max_event: Option<i64>,
    lines: LineTotals,
    windows_written: u64,
    metrics: Arc<Metrics>,
    last_checkpoint: Instant,
    /// Work done since the last checkpoint.
    dirty: bool,
}

impl Core {
    fn start(pipeline: &Pipeline, state_dir: &Path, metrics: Arc<Metrics>) -> Result<Self> {
        let saved = Checkpoint::load(state_dir)?;
        let salt = if let Some(c) = &saved {
            checkpoint::unhex32(&c.salt)
                .with_context(|| format!("{}: bad salt", Checkpoint::path(state_dir).display()))?
        } else {
            let mut salt = [0u8; 32];
            getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("random salt: {e}"))?;
            salt
        };
        let mut core = Self {
            state_dir: state_dir.to_owned(),
            salt,
            parser_states: HashMap::new(),
            open: pipeline.reports.iter().map(ReportState::new).collect(),
            max_event: None,
            lines: LineTotals::default().with_every_reason(),
            windows_written: 0,
            metrics,
            last_checkpoint: Instant::now(),
            dirty: false,
            tailer: Tailer::new(
                pipeline.inputs.clone(),
                pipeline.inputs_base.clone(),
                salt,
                pipeline.max_line_bytes,
                DRAIN_GRACE,
            ),
        };
        match saved {
            Some(saved) => {
                tracing::info!(
                    state = %Checkpoint::path(state_dir).display(),
                    files = saved.files.len(),
                    lines_read = saved.lines.read,
                    "resuming from checkpoint"
                );
                core.max_event = saved.max_event_micros;
                core.lines = saved.lines.with_every_reason();
                core.windows_written = saved.windows_written;
                core.tailer.restore(saved.files);
                let mut saved_reports: Vec<Option<ReportCheckpoint>> =
                    saved.reports.into_iter().map(Some).collect();
                for (spec, open) in pipeline.reports.iter().zip(&mut core.open) {
                    let fp = fingerprint(spec, &pipeline.calendar);
                    if let Some(slot) = saved_reports
                        .iter_mut()
                        .find(|r| r.as_ref().is_some_and(|r| r.name == spec.name))
                    {
                        let r = slot.take().expect("found above");
                        if r.fingerprint == fp {
                            *open = r.state;
                        } else {
                            tracing::warn!(report = %spec.name, open_windows = ?windows::open_days(&r.state), "report definition changed while stopped: its open windows are dropped (rebuild those days with `logveil run`)");
                        }
                    }
                }
                for r in saved_reports.into_iter().flatten() {
                    tracing::warn!(report = %r.name, open_windows = ?windows::open_days(&r.state), "report no longer in the pipeline: its open windows are dropped");
                }
            }
            None => {
                tracing::info!(state = %state_dir.display(), "no checkpoint: starting from the beginning of every file");
            }
        }
        core.publish_metrics(pipeline);
        Ok(core)
    }

    /// Runs turns until a signal, idle exit or reload.
    async fn serve(
        &mut self,
        pipeline: &Pipeline,
        mut ctx: RunContext<'_>,
        control: &Control,
        args: &DaemonArgs,
        overrides: &Overrides,
    ) -> Result<Next> {
        let settings = &pipeline.daemon;
        self.metrics.allowed_lateness_micros.store(
            settings.allowed_lateness.as_micros() as i64,
            Ordering::Relaxed,
        );
        let mut last_scan: Option<Instant> = None;
        let mut last_refresh = Instant::now();
        loop {
            self.metrics.heartbeat();
            if control.terminate.load(Ordering::SeqCst) {
                // Open windows stay open, in the checkpoint.
                self.checkpoint(pipeline)?;
                return Ok(Next::Stop(Stop::Signal));
            }
            if control.reload.swap(false, Ordering::SeqCst) {
                match load_pipeline(&args.pipeline, overrides) {
                    Ok(new) => match RunContext::load(&new) {
                        Ok(_) => {
                            tracing::info!(pipeline = %args.pipeline.display(), "pipeline reloaded");
                            self.checkpoint(pipeline)?;
                            return Ok(Next::Reload(Box::new(new)));
                        }
                        Err(e) => {
                            tracing::error!(error = %format!("{e:#}"), "reload refused (keys or accounts): keeping the running pipeline");
                        }
                    },
                    Err(errors) => {
                        tracing::error!(error = %errors, "reload refused: keeping the running pipeline");
                    }
                }
            }
            if last_refresh.elapsed() >= settings.accounts_refresh {
                last_refresh = Instant::now();
                match RunContext::load(pipeline) {
                    Ok((fresh, ring, _)) => {
                        ctx = fresh;
                        tracing::info!(key_id = %ring.newest().id(), "key ring and account snapshot refreshed");
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "refreshing keys and accounts failed: keeping the previous snapshot");
                    }
                }
            }
            if last_scan.is_none_or(|t| t.elapsed() >= settings.poll_interval) {
                self.tailer.scan();
                let live: std::collections::HashSet<u64> = self.tailer.streams().collect();
                self.parser_states.retain(|s, _| live.contains(s));
                last_scan = Some(Instant::now());
            }
            let (reads, consumed) = self.tailer.read(READ_BUDGET);
            if consumed > 0 {
                self.dirty = true;
            }
            if !reads.is_empty() {
                self.process(pipeline, &ctx, reads);
            }
            let closed = self.close_windows(pipeline)?;
            if closed > 0
                || (self.dirty && self.last_checkpoint.elapsed() >= settings.checkpoint_interval)
            {
                self.checkpoint(pipeline)?;
            }
            self.publish_metrics(pipeline);
            if consumed == 0 {
                if let Some(idle) = args.idle_exit
                    && self.tailer.idle_for() >= Duration::from_secs(idle)
                {
                    tracing::info!(
                        idle_seconds = idle,
                        "no input growth: writing every window and stopping"
                    );
                    self.write_all_windows(pipeline)?;
                    self.checkpoint(pipeline)?;
                    return Ok(Next::Stop(Stop::Idle));
                }
                let wake = control.wake.notified();
                tokio::select! {
                    () = tokio::time::sleep(settings.poll_interval) => {}
                    () = wake => {}
                }
            }
        }
    }

    /// Parses and aggregates what was read into the open states.
    fn process(&mut self, pipeline: &Pipeline, ctx: &RunContext<'_>, reads: Vec<TailRead>) {
        let jobs: Vec<(Chunk, ParserState)> =
            parse_jobs(pipeline, &self.tailer, &mut self.parser_states, reads)
                .into_iter()
                .map(|(_, chunk, start)| (chunk, start))
                .collect();
        let lateness = pipeline.daemon.allowed_lateness.as_micros() as i64;
        let watermark = self.max_event.map(|m| m - lateness);
        let floors: Vec<i32> = pipeline
            .reports
            .iter()
            .map(|spec| windows::floor(spec.bucket, &pipeline.calendar, watermark))
            .collect();
        let cap = now_micros() + MAX_FUTURE_MICROS;
        let calendar = &pipeline.calendar;
        let reports = &pipeline.reports;
        let results: Vec<_> = jobs
            .par_iter()
            .map(|(chunk, start)| {
                let mut max: Option<i64> = None;
                let (partial, late) = process_chunk_with(ctx, chunk, start, |r, t| {
                    if t <= cap && max.is_none_or(|m| t > m) {
                        max = Some(t);
                    }
                    windows::partition_of(reports[r].bucket, calendar, t) >= floors[r]
                });
                (partial, late, max)
            })
            .collect();
        let late: u64 = results.iter().map(|(_, late, _)| late).sum();
        if late > 0 {
            tracing::warn!(
                late,
                "lines for windows already written: counted as late and left out (rebuild those days with `logveil run` to include them)"
            );
        }
        for (partial, late, max) in results {
            self.lines.add(&partial.lines, late);
            for (open, state) in self.open.iter_mut().zip(partial.states) {
                open.merge(state);
            }
            if let Some(max) = max {
                self.max_event = Some(self.max_event.map_or(max, |m| m.max(max)));
            }
        }
    }

    fn floors(&self, pipeline: &Pipeline) -> Vec<i32> {
        let lateness = pipeline.daemon.allowed_lateness.as_micros() as i64;
        let watermark = self.max_event.map(|m| m - lateness);
        pipeline
            .reports
            .iter()
            .map(|spec| windows::floor(spec.bucket, &pipeline.calendar, watermark))
            .collect()
    }

    /// Writes and drops the windows the watermark has passed; returns how many.
    fn close_windows(&mut self, pipeline: &Pipeline) -> Result<u64> {
        let floors = self.floors(pipeline);
        let mut written = 0;
        for ((spec, open), floor) in pipeline.reports.iter().zip(&mut self.open).zip(floors) {
            if let Some(closed) = windows::take_before(spec, open, floor) {
                written += write_windows(pipeline, spec, closed, "closed")?;
            }
        }
        self.windows_written += written;
        Ok(written)
    }

    /// `--idle-exit`: writes every window. Those the watermark has not passed stay open
    /// in the checkpoint (written as they are now; a later run adds to them and writes
    /// them again), so lines still to come for them are not late.
    fn write_all_windows(&mut self, pipeline: &Pipeline) -> Result<()> {
        self.close_windows(pipeline)?;
        for (spec, open) in pipeline.reports.iter().zip(&self.open) {
            if !open.partitions.is_empty() {
                self.windows_written += write_windows(pipeline, spec, open.clone(), "open")?;
            }
        }
        Ok(())
    }

    fn checkpoint(&mut self, pipeline: &Pipeline) -> Result<()> {
        let started = Instant::now();
        let checkpoint = Checkpoint {
            version: checkpoint::VERSION,
            salt: checkpoint::hex(&self.salt),
            written_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            pipeline: pipeline.path.display().to_string(),
            max_event_micros: self.max_event,
            lines: self.lines.clone(),
            windows_written: self.windows_written,
            files: self.tailer.checkpoint(),
            reports: pipeline
                .reports
                .iter()
                .zip(&self.open)
                .map(|(spec, state)| ReportCheckpoint {
                    name: spec.name.clone(),
                    fingerprint: fingerprint(spec, &pipeline.calendar),
                    state: state.clone(),
                })
                .collect(),
        };
        checkpoint.commit(&self.state_dir)?;
        self.dirty = false;
        self.last_checkpoint = Instant::now();
        self.metrics.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .checkpoint_at_ms
            .store(metrics::now_ms(), Ordering::Relaxed);
        tracing::debug!(
            files = checkpoint.files.len(),
            lines_read = checkpoint.lines.read,
            ms = started.elapsed().as_millis() as u64,
            "checkpoint committed"
        );
        Ok(())
    }

    /// After a reload: carries each report's open state over when its definition is
    /// unchanged; a changed or removed report's open windows are written as they are.
    fn reconcile(&mut self, old: &Pipeline, new: &Pipeline) -> Result<()> {
        let mut states: Vec<Option<ReportState>> = std::mem::take(&mut self.open)
            .into_iter()
            .map(Some)
            .collect();
        for spec in &new.reports {
            let fp = fingerprint(spec, &new.calendar);
            let kept = old
                .reports
                .iter()
                .position(|o| o.name == spec.name && fingerprint(o, &old.calendar) == fp)
                .and_then(|i| states[i].take());
            self.open.push(kept.unwrap_or_else(|| {
                tracing::info!(report = %spec.name, "report new or changed: counting from here on");
                ReportState::new(spec)
            }));
        }
        for (spec, state) in old.reports.iter().zip(states) {
            if let Some(state) = state.filter(|s| !s.partitions.is_empty()) {
                tracing::warn!(report = %spec.name, windows = ?windows::open_days(&state), "report changed or removed by the reload: its open windows are written as they are (rebuild those days with `logveil run` for complete files)");
                self.windows_written += write_windows(old, spec, state, "partial")?;
            }
        }
        self.tailer
            .set_patterns(new.inputs.clone(), new.inputs_base.clone());
        self.tailer.set_max_line_bytes(new.max_line_bytes);
        self.checkpoint(new)
    }

    fn publish_metrics(&self, pipeline: &Pipeline) {
        let m = &self.metrics;
        m.set_lines(&self.lines);
        m.windows_written
            .store(self.windows_written, Ordering::Relaxed);
        m.max_event_micros
            .store(self.max_event.unwrap_or(i64::MIN), Ordering::Relaxed);
        let labelled = metrics::Labelled {
            rejected: self
                .lines
                .rejected
                .iter()
                .map(|(r, n)| (r.clone(), *n))
                .collect(),
            files: self.tailer.status(),
            joins: pipeline
                .reports
                .iter()
                .zip(&self.open)
                .filter_map(|(spec, s)| Some((spec.name.clone(), s.joins.clone()?)))
                .collect(),
            open_windows: pipeline
                .reports
                .iter()
                .zip(&self.open)
                .map(|(spec, s)| (spec.name.clone(), s.partitions.len()))
                .collect(),
        };
        if let Ok(mut l) = m.labelled.lock() {
            *l = labelled;
        }
    }

    fn summary(
        &self,
        pipeline: &Pipeline,
        stopped: Stop,
        key_id: String,
        demo_key: bool,
    ) -> Summary {
        Summary {
            pipeline: pipeline.path.display().to_string(),
            stopped,
            key_id,
            demo_key,
            lines_read: self.lines.read,
            lines_parsed: self.lines.parsed,
            lines_directives: self.lines.directives,
            lines_rejected: self.lines.rejected.clone(),
            lines_late: self.lines.late,
            windows_written: self.windows_written,
            open_windows: pipeline
                .reports
                .iter()
                .zip(&self.open)
                .map(|(spec, s)| (spec.name.clone(), windows::open_days(s)))
                .collect(),
            files: self
                .tailer
                .status()
                .into_iter()
                .map(|f| SummaryFile {
                    path: f.path.display().to_string(),
                    offset: f.offset,
                })
                .collect(),
            state: Checkpoint::path(&self.state_dir).display().to_string(),
        }
    }
}

/// The one place the daemon publishes: disclosure control and files, exactly as `run`.
fn write_windows(
    pipeline: &Pipeline,
    spec: &ReportSpec,
    state: ReportState,
    why: &str,
) -> Result<u64> {
    let published = publish::publish_report(pipeline, spec, state)?;
    for path in &published.outputs {
        tracing::info!(report = %spec.name, file = %path.display(), window = why, "window written");
    }
    Ok(published.summary.partitions)
}

/// The parse jobs of a turn's reads: each read cut into pieces ([`split`]), each piece with
/// the parser state it starts in and the index of its read. Parser state (W3C `#Fields:`)
/// is kept per followed stream in `states`; a stream met first after a restart gets it
/// rebuilt from the bytes before its offset. Shared by the daemon and `logveil edge`.
pub(crate) fn parse_jobs(
    pipeline: &Pipeline,
    tailer: &Tailer,
    states: &mut HashMap<u64, ParserState>,
    reads: Vec<TailRead>,
) -> Vec<(usize, Chunk, ParserState)> {
    let stateful = pipeline.parser.is_stateful();
    let mut jobs = Vec::new();
    for (r, read) in reads.into_iter().enumerate() {
        let state = states.entry(read.stream).or_insert_with(|| {
            let mut state = ParserState::default();
            if stateful && read.chunk.offset > 0 {
                // After a restart: the directives before the offset.
                if let Err(e) = tailer
                    .replay_prefix(read.stream, |bytes| pipeline.parser.scan(bytes, &mut state))
                {
                    tracing::warn!(file = %read.path.display(), error = %e, "cannot re-read the directives before the offset");
                }
            }
            state
        });
        for piece in split(read.chunk) {
            let start = state.clone();
            if stateful {
                pipeline.parser.scan(&piece.data, state);
            }
            jobs.push((r, piece, start));
        }
    }
    jobs
}

/// Cuts a chunk into pieces of about [`PIECE_BYTES`] at line ends (over-long line
/// offsets go with the first piece).
pub(crate) fn split(chunk: Chunk) -> Vec<Chunk> {
    if chunk.data.len() <= PIECE_BYTES {
        return vec![chunk];
    }
    let mut pieces = Vec::new();
    let mut too_long = chunk.too_long;
    let mut at = 0;
    let data = chunk.data;
    while at < data.len() {
        let end = if data.len() - at <= PIECE_BYTES {
            data.len()
        } else {
            memchr::memchr(b'\n', &data[at + PIECE_BYTES..])
                .map_or(data.len(), |i| at + PIECE_BYTES + i + 1)
        };
        pieces.push(Chunk {
            offset: chunk.offset + at as u64,
            data: data[at..end].to_vec(),
            too_long: std::mem::take(&mut too_long),
        });
        at = end;
    }
    pieces
}

fn render(s: &Summary) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "logveil daemon {} (key {}{}): stopped ({})",
        s.pipeline,
        s.key_id,
        if s.demo_key { ", DEMO KEY" } else { "" },
        match s.stopped {
            Stop::Signal => "signal",
            Stop::Idle => "idle",
        }
    );
    let _ = writeln!(
        out,
        "  lines: {}, {} late (dropped)",
        crate::run::line_counts(s.lines_read, s.lines_parsed, &s.lines_rejected),
        s.lines_late
    );
    let open: usize = s.open_windows.values().map(Vec::len).sum();
    let _ = writeln!(
        out,
        "  windows: {} written, {} open (kept in the checkpoint)",
        s.windows_written, open
    );
    let _ = writeln!(
        out,
        "  {} file(s) followed; state {}",
        s.files.len(),
        s.state
    );
    out
}
