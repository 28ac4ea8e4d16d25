//! `logveil run`: the batch pipeline, source → parse → pseudonymize → join → aggregate →
//! disclose → write. Chunks of each file are parsed in parallel (rayon); each worker builds
//! partial report states that are merged, so memory is bounded by the chunk window plus
//! the report cells, never by the input size.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use logveil_accounts::{AccountSource, LoadStats};
use logveil_ingest::{ChunkReader, DEFAULT_CHUNK_BYTES};
use logveil_parse::{ParserState, RejectReason};
use rayon::prelude::*;
use serde::Serialize;

use crate::config::Pipeline;
use crate::engine::{Partial, Rejected, RunContext, process_chunk};
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
        }
    }
}

pub fn run(pipeline: &Pipeline) -> Result<Summary> {
    let (ctx, ring, accounts_summary) = RunContext::load(pipeline)?;

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
        let published = publish::publish_report(pipeline, spec, state)?;
        outputs.extend(published.outputs.iter().map(|p| p.display().to_string()));
        reports.insert(spec.name.clone(), published.summary);
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
