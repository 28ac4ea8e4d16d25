//! `logveil run`: the batch pipeline, source → parse → pseudonymize → join → aggregate →
//! disclose → write. Chunks of each file are parsed in parallel (rayon); each worker builds
//! partial report states that are merged, so memory is bounded by the chunk window plus
//! the report cells, never by the input size.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use logveil_accounts::{AccountSource, AccountStore, JoinOutcome, LoadStats};
use logveil_ingest::{Chunk, ChunkReader, DEFAULT_CHUNK_BYTES};
use logveil_parse::time::MICROS_PER_DAY;
use logveil_parse::{Parsed, Parser, ParserState, RejectReason};
use logveil_privacy::redact::redact_line;
use logveil_privacy::{KeyRing, Pseudonymizer};
use logveil_report::disclose::apply_k_threshold;
use logveil_report::write::{Provenance, write_partition};
use logveil_report::{JoinCounts, ReportState};
use rayon::prelude::*;
use serde::Serialize;

use crate::config::Pipeline;

/// Line counts; mergeable like report states.
#[derive(Debug, Default, Clone)]
struct LineCounts {
    read: u64,
    parsed: u64,
    /// W3C `#` directives: neither requests nor errors.
    directives: u64,
    rejected: [u64; RejectReason::ALL.len()],
}

impl LineCounts {
    fn reject(&mut self, reason: RejectReason, n: u64) {
        let i = RejectReason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("ALL lists every reason");
        self.rejected[i] += n;
        self.read += n;
    }

    fn merge(&mut self, other: &LineCounts) {
        self.read += other.read;
        self.parsed += other.parsed;
        self.directives += other.directives;
        for (a, b) in self.rejected.iter_mut().zip(other.rejected) {
            *a += b;
        }
    }
}

struct RunContext<'a> {
    pipeline: &'a Pipeline,
    parser: &'a Parser,
    /// Oldest first.
    epochs: Vec<KeyEpoch>,
}

/// What one root key provides: pseudonyms for the days it is in force, and the account
/// table hashed with it.
struct KeyEpoch {
    not_before_day: i32,
    pseudonymizer: Pseudonymizer,
    accounts: Option<AccountStore>,
}

impl RunContext<'_> {
    /// The epoch in force on a UTC day: the newest key whose `not_before` ≤ that day.
    fn epoch_for(&self, utc_day: i32) -> Option<&KeyEpoch> {
        self.epochs
            .iter()
            .rev()
            .find(|e| e.not_before_day <= utc_day)
    }

    /// Redaction tokens in the dead-letter file use the newest key.
    fn newest(&self) -> &Pseudonymizer {
        &self
            .epochs
            .last()
            .expect("a key ring has a key")
            .pseudonymizer
    }
}

struct Partial {
    lines: LineCounts,
    states: Vec<ReportState>,
    /// Rejected lines in stream order, kept only when there is a dead-letter file.
    rejected: Vec<Rejected>,
}

/// One rejected line: where it starts, why, and its redacted text (`None` for `too_long`).
struct Rejected {
    offset: u64,
    reason: RejectReason,
    line: Option<String>,
}

impl Partial {
    fn new(pipeline: &Pipeline) -> Self {
        Self {
            lines: LineCounts::default(),
            states: pipeline.reports.iter().map(ReportState::new).collect(),
            rejected: Vec::new(),
        }
    }

    fn merge(mut self, mut other: Partial) -> Partial {
        self.lines.merge(&other.lines);
        for (mine, theirs) in self.states.iter_mut().zip(other.states) {
            mine.merge(theirs);
        }
        self.rejected.append(&mut other.rejected);
        self
    }

    /// Counts a rejected line and, with a dead-letter file, keeps it redacted.
    fn reject(&mut self, ctx: &RunContext<'_>, reason: RejectReason, offset: u64, line: &[u8]) {
        self.lines.reject(reason, 1);
        if ctx.pipeline.dead_letter.is_some() {
            self.rejected.push(Rejected {
                offset,
                reason,
                line: (reason != RejectReason::TooLong).then(|| redact_line(line, ctx.newest())),
            });
        }
    }
}

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

fn process_chunk(ctx: &RunContext<'_>, chunk: &Chunk, start: &ParserState) -> Partial {
    let pipeline = ctx.pipeline;
    let mut partial = Partial::new(pipeline);
    let mut state = start.clone();
    for &offset in &chunk.too_long {
        partial.reject(ctx, RejectReason::TooLong, offset, &[]);
    }
    for (offset, line) in chunk.lines() {
        let record = match ctx.parser.parse(line, &mut state) {
            Ok(Parsed::Record(record)) => record,
            Ok(Parsed::Directive) => {
                partial.lines.read += 1;
                partial.lines.directives += 1;
                continue;
            }
            Err(reason) => {
                partial.reject(ctx, reason, offset, line);
                continue;
            }
        };
        let utc_day = record
            .time
            .map_or(0, |t| t.utc_micros.div_euclid(MICROS_PER_DAY) as i32);
        let Some(epoch) = ctx.epoch_for(utc_day) else {
            partial.reject(ctx, RejectReason::NoKey, offset, line);
            continue;
        };
        let Some(event) =
            epoch
                .pseudonymizer
                .event(&record, &pipeline.client_policy, &pipeline.sanitize)
        else {
            partial.reject(ctx, RejectReason::BadTime, offset, line);
            continue;
        };
        // From here on only `event` is used: it holds no raw identifier, and `record`
        // (borrowing the chunk) dies with this iteration.
        partial.lines.read += 1;
        partial.lines.parsed += 1;
        for (spec, state) in pipeline.reports.iter().zip(&mut partial.states) {
            let join = match (&epoch.accounts, spec.needs_join()) {
                (Some(accounts), true) => accounts.join(&event.visitor, &spec.purpose),
                _ => JoinOutcome::NoAccount,
            };
            let visitor_id = spec.visitor_id.then(|| {
                epoch
                    .pseudonymizer
                    .for_audience(&event.visitor, &spec.audience)
            });
            state.observe(spec, &pipeline.calendar, &event, join, visitor_id);
        }
    }
    partial
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
}

impl AccountsSummary {
    fn new(source: &AccountSource, stats: &LoadStats) -> Self {
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
        }
    }
}

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

pub fn run(pipeline: &Pipeline) -> Result<Summary> {
    let ring = KeyRing::load(&pipeline.key_file).context("loading keys")?;
    if ring.is_demo() {
        tracing::warn!(key_file = %pipeline.key_file.display(), "DEMO KEY: its secret is published, so these pseudonyms protect nothing; use `logveil keygen` for real logs");
    }
    // One epoch per root key: its pseudonymizer and, when reports join accounts, the
    // account table hashed with its visitor subkey (a join only works within one key).
    let needs_accounts = pipeline
        .reports
        .iter()
        .any(logveil_report::ReportSpec::needs_join);
    let source = match &pipeline.accounts {
        Some((spec, base)) if needs_accounts => Some(AccountSource::parse(spec, base)?),
        _ => None,
    };
    let mut accounts_summary = None;
    let mut epochs = Vec::with_capacity(ring.keys().len());
    for key in ring.keys() {
        let pseudonymizer = Pseudonymizer::new(key);
        let accounts = match &source {
            Some(source) => {
                let store =
                    AccountStore::load(source, &pseudonymizer).context("loading accounts")?;
                if accounts_summary.is_none() {
                    tracing::info!(
                        accounts = store.stats().accounts,
                        cookie_links = store.stats().cookie_links,
                        "accounts loaded"
                    );
                    if store.stats().ambiguous_cookies > 0 {
                        tracing::warn!(
                            count = store.stats().ambiguous_cookies,
                            "cookies linked to more than one account are never joined"
                        );
                    }
                    accounts_summary = Some(AccountsSummary::new(source, store.stats()));
                }
                Some(store)
            }
            None => None,
        };
        epochs.push(KeyEpoch {
            not_before_day: key.not_before_day(),
            pseudonymizer,
            accounts,
        });
    }
    let ctx = RunContext {
        pipeline,
        parser: &pipeline.parser,
        epochs,
    };

    let files = logveil_ingest::expand_inputs(&pipeline.inputs, &pipeline.inputs_base)?;
    let mut dead_letter = pipeline
        .dead_letter
        .as_deref()
        .map(DeadLetter::create)
        .transpose()?;
    let window = rayon::current_num_threads() * 2;
    let mut total = Partial::new(pipeline);
    for input in &files {
        let name = input.to_string();
        let (reader, compression) = logveil_ingest::open(input, pipeline.max_decompressed_bytes)?;
        tracing::info!(file = %name, ?compression, "reading");
        let mut chunks = ChunkReader::new(reader, DEFAULT_CHUNK_BYTES, pipeline.max_line_bytes);
        // State carried from line to line (W3C `#Fields:`): each chunk starts from what the
        // chunks before it declared, found by a cheap sequential scan before parsing in parallel.
        let mut state = ParserState::default();
        loop {
            let mut batch = Vec::with_capacity(window);
            while batch.len() < window {
                match chunks
                    .next_chunk()
                    .with_context(|| format!("reading {name}"))?
                {
                    Some(chunk) => batch.push(chunk),
                    None => break,
                }
            }
            if batch.is_empty() {
                break;
            }
            let starts: Vec<ParserState> = batch
                .iter()
                .map(|chunk| {
                    let start = state.clone();
                    ctx.parser.scan(&chunk.data, &mut state);
                    start
                })
                .collect();
            // In chunk order, so the dead-letter file follows the input.
            let parts: Vec<Partial> = batch
                .par_iter()
                .zip(&starts)
                .map(|(chunk, start)| process_chunk(&ctx, chunk, start))
                .collect();
            for mut part in parts {
                if let Some(dead_letter) = &mut dead_letter {
                    dead_letter.write(&name, &std::mem::take(&mut part.rejected))?;
                }
                total = total.merge(part);
            }
        }
    }
    if let Some(dead_letter) = dead_letter {
        dead_letter.finish()?;
    }

    let mut reports = BTreeMap::new();
    let mut outputs = Vec::new();
    for (spec, state) in pipeline.reports.iter().zip(total.states) {
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
            outputs.push(path.display().to_string());
        }
        reports.insert(spec.name.clone(), summary);
    }

    Ok(Summary {
        pipeline: pipeline.path.display().to_string(),
        key_id: ring.newest().id().to_string(),
        key_ids: ring.keys().iter().map(|k| k.id().to_string()).collect(),
        demo_key: ring.is_demo(),
        inputs: files.iter().map(ToString::to_string).collect(),
        lines_read: total.lines.read,
        lines_parsed: total.lines.parsed,
        lines_directives: total.lines.directives,
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

/// The human summary printed after a run.
pub fn render(summary: &Summary, out_dir: &Path) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let rejected: u64 = summary.lines_rejected.values().sum();
    let _ = writeln!(
        s,
        "logveil run {} (key {}{})",
        summary.pipeline,
        summary.key_id,
        if summary.demo_key { ", DEMO KEY" } else { "" }
    );
    let reasons: Vec<String> = summary
        .lines_rejected
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    let _ = writeln!(
        s,
        "  lines: {} read, {} parsed, {} rejected{}",
        summary.lines_read,
        summary.lines_parsed,
        rejected,
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        }
    );
    if summary.lines_directives > 0 {
        let _ = writeln!(
            s,
            "  directives: {} (W3C `#` lines)",
            summary.lines_directives
        );
    }
    if let Some(a) = &summary.accounts {
        let _ = writeln!(
            s,
            "  accounts: {} loaded, {} cookie links",
            a.accounts, a.cookie_links
        );
    }
    for (name, r) in &summary.reports {
        let _ = write!(
            s,
            "  {name:<24} {:>6} rows, {:>4} cells suppressed (k_min {}, audience {}), {} partition(s)",
            r.rows, r.cells_suppressed, r.k_min, r.audience, r.partitions
        );
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
