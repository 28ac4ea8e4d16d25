//! `logveil run`: the batch pipeline, source → parse → pseudonymize → join → aggregate →
//! disclose → write. Chunks of each file are parsed in parallel (rayon); each worker builds
//! partial report states that are merged, so memory is bounded by the chunk window plus
//! the report cells, never by the input size.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use logveil_accounts::{AccountSource, AccountStore, JoinOutcome, LoadStats};
use logveil_ingest::{Chunk, ChunkReader, DEFAULT_CHUNK_BYTES};
use logveil_parse::{LineParser, RejectReason};
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
        for (a, b) in self.rejected.iter_mut().zip(other.rejected) {
            *a += b;
        }
    }
}

struct RunContext<'a> {
    pipeline: &'a Pipeline,
    parser: LineParser,
    pseudonymizer: Pseudonymizer,
    accounts: Option<AccountStore>,
}

struct Partial {
    lines: LineCounts,
    states: Vec<ReportState>,
}

impl Partial {
    fn new(pipeline: &Pipeline) -> Self {
        Self {
            lines: LineCounts::default(),
            states: pipeline.reports.iter().map(ReportState::new).collect(),
        }
    }

    fn merge(mut self, other: Partial) -> Partial {
        self.lines.merge(&other.lines);
        for (mine, theirs) in self.states.iter_mut().zip(other.states) {
            mine.merge(theirs);
        }
        self
    }
}

fn process_chunk(ctx: &RunContext<'_>, chunk: &Chunk) -> Partial {
    let pipeline = ctx.pipeline;
    let mut partial = Partial::new(pipeline);
    partial
        .lines
        .reject(RejectReason::TooLong, chunk.too_long_lines);
    for line in logveil_ingest::lines(&chunk.data) {
        let record = match ctx.parser.parse(line) {
            Ok(record) => record,
            Err(reason) => {
                partial.lines.reject(reason, 1);
                continue;
            }
        };
        let Some(event) = ctx.pseudonymizer.event(&record) else {
            partial.lines.reject(RejectReason::BadTime, 1);
            continue;
        };
        // From here on only `event` is used: it holds no raw identifier, and `record`
        // (borrowing the chunk) dies with this iteration.
        partial.lines.read += 1;
        partial.lines.parsed += 1;
        for (spec, state) in pipeline.reports.iter().zip(&mut partial.states) {
            let join = match (&ctx.accounts, spec.needs_join()) {
                (Some(accounts), true) => accounts.join(&event.visitor, &spec.purpose),
                _ => JoinOutcome::NoAccount,
            };
            state.observe(spec, &pipeline.calendar, &event, join);
        }
    }
    partial
}

/// What a run did; printed for people and written as JSON with `--summary`.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub pipeline: String,
    pub key_id: String,
    pub demo_key: bool,
    pub inputs: Vec<String>,
    pub lines_read: u64,
    pub lines_parsed: u64,
    pub lines_rejected: BTreeMap<&'static str, u64>,
    pub accounts: Option<AccountsSummary>,
    pub reports: BTreeMap<String, ReportSummary>,
    pub outputs: Vec<String>,
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
            source: logveil_ingest::normalize_path(source.path())
                .display()
                .to_string(),
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
    let key = ring.newest();
    let pseudonymizer = Pseudonymizer::new(key);
    let mut accounts_summary = None;
    let accounts = match &pipeline.accounts {
        Some((spec, base))
            if pipeline
                .reports
                .iter()
                .any(logveil_report::ReportSpec::needs_join) =>
        {
            let source = AccountSource::parse(spec, base)?;
            let store = AccountStore::load(&source, &pseudonymizer).context("loading accounts")?;
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
            accounts_summary = Some(AccountsSummary::new(&source, store.stats()));
            Some(store)
        }
        _ => None,
    };
    let ctx = RunContext {
        pipeline,
        parser: LineParser::new(pipeline.format.clone(), pipeline.visitor_cookie.as_deref())
            .with_max_line_bytes(pipeline.max_line_bytes),
        pseudonymizer,
        accounts,
    };

    let files = logveil_ingest::expand_inputs(&pipeline.inputs, &pipeline.inputs_base)?;
    let window = rayon::current_num_threads() * 2;
    let mut total = Partial::new(pipeline);
    for file in &files {
        let (reader, compression) = logveil_ingest::open(file)?;
        tracing::info!(file = %file.display(), ?compression, "reading");
        let mut chunks = ChunkReader::new(reader, DEFAULT_CHUNK_BYTES, pipeline.max_line_bytes);
        loop {
            let mut batch = Vec::with_capacity(window);
            while batch.len() < window {
                match chunks
                    .next_chunk()
                    .with_context(|| format!("reading {}", file.display()))?
                {
                    Some(chunk) => batch.push(chunk),
                    None => break,
                }
            }
            if batch.is_empty() {
                break;
            }
            let part = batch
                .par_iter()
                .map(|chunk| process_chunk(&ctx, chunk))
                .reduce(|| Partial::new(pipeline), Partial::merge);
            total = total.merge(part);
        }
    }

    let mut reports = BTreeMap::new();
    let mut outputs = Vec::new();
    for (spec, state) in pipeline.reports.iter().zip(total.states) {
        let joins = state.joins.clone();
        let mut provenance = Provenance {
            policy_sha256: pipeline.policy.sha256.clone(),
            key_id: key.id().to_string(),
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
        for (day, cells) in state.into_partitions() {
            let disclosed = apply_k_threshold(cells, spec.k_min);
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
        key_id: key.id().to_string(),
        demo_key: ring.is_demo(),
        inputs: files.iter().map(|f| f.display().to_string()).collect(),
        lines_read: total.lines.read,
        lines_parsed: total.lines.parsed,
        lines_rejected: RejectReason::ALL
            .iter()
            .zip(total.lines.rejected)
            .map(|(r, n)| (r.as_str(), n))
            .collect(),
        accounts: accounts_summary,
        reports,
        outputs,
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
    s
}
