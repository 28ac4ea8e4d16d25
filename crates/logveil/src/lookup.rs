//! `logveil lookup` and `logveil audit verify`: audited re-identification.
//!
//! A lookup turns one raw identifier (a visitor cookie value or a client address) into the
//! visitor ids an audience sees for it in pseudonymous exports
//! (`Pseudonymizer::for_audience`), for legal requests and fraud cases. Before anything is
//! printed it appends a record (who, when, why, which pseudonyms — never the identifier) to
//! the hash-chained audit log (`logveil_privacy::audit`). Neither the output, the log, nor
//! any error or tracing message contains the identifier.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{ArgGroup, Args, Subcommand};
use logveil_ingest::{ChunkReader, DEFAULT_CHUNK_BYTES};
use logveil_parse::time::MICROS_PER_DAY;
use logveil_parse::{Parsed, ParserState};
use logveil_privacy::audit::{self, AuditError, AuditResult, ClientMatcher, Entry, LookupKind};
use logveil_privacy::{KeyRing, Pseudonymizer};

use crate::config::{Overrides, Pipeline};

/// An identifier read from standard input is at most this long.
const MAX_STDIN_IDENTIFIER: u64 = 64 * 1024;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("identifier").required(true).args(["cookie", "ip"])))]
pub struct LookupArgs {
    /// The pipeline file (TOML): its keys, policy, inputs and audit log are used.
    pub pipeline: PathBuf,
    /// The visitor cookie's value as the log has it; `-` reads it from standard input (keeps it out of shell history and `ps`).
    #[arg(long, value_name = "VALUE")]
    pub cookie: Option<String>,
    /// A client address or host name; the pipeline's inputs are scanned for it. `-` reads it from standard input.
    #[arg(long, value_name = "VALUE")]
    pub ip: Option<String>,
    /// Why: the legal request or fraud case. Required, non-empty; written to the audit log.
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Only this audience (repeatable); default: every audience with `pseudonymous = true`.
    #[arg(long = "audience", value_name = "NAME")]
    pub audiences: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Check every record's hash and the chain; exit 1 naming the first broken record.
    Verify {
        /// The audit log (JSON lines).
        log: PathBuf,
        /// A record hash kept elsewhere earlier (`head` of a previous verify): fail unless it is still in the chain.
        #[arg(long, value_name = "HASH")]
        anchor: Option<String>,
    },
}

/// One output row: a visitor id under one key for one audience.
struct Row {
    key_index: usize,
    audience: String,
    visitor_id: String,
    lines: Option<u64>,
}

/// Runs a lookup: records it in the audit log, then returns what to print.
pub fn lookup(args: &LookupArgs) -> Result<String> {
    let reason = args.reason.trim();
    if reason.is_empty() {
        bail!(
            "--reason is empty: say why this lookup is made (the legal request or fraud case); it goes into the audit log"
        );
    }
    let (kind, flag, given) = match (&args.cookie, &args.ip) {
        (Some(v), None) => (LookupKind::Cookie, "--cookie", v),
        (None, Some(v)) => (LookupKind::Ip, "--ip", v),
        _ => bail!("give exactly one of --cookie VALUE or --ip VALUE"),
    };
    let value = read_identifier(flag, given)?;
    if value.len() >= 4 && contains(reason.as_bytes(), &value) {
        bail!(
            "--reason contains the {flag} value itself; describe the case instead (the audit log never holds raw identifiers)"
        );
    }

    let pipeline = Pipeline::load(&args.pipeline, &Overrides::default())?;
    let audiences = audiences(&pipeline, &args.audiences)?;
    if pipeline.audit_log.starts_with(&pipeline.out_dir) {
        bail!(
            "audit log {} is under the output directory {}: set `[audit] log` elsewhere",
            pipeline.audit_log.display(),
            pipeline.out_dir.display()
        );
    }
    let ring = KeyRing::load(&pipeline.key_file).context("loading keys")?;
    if ring.is_demo() {
        tracing::warn!(key_file = %pipeline.key_file.display(), "DEMO KEY: its secret is published, so these pseudonyms protect nothing");
    }
    let pseudonymizers: Vec<Pseudonymizer> = ring.keys().iter().map(Pseudonymizer::new).collect();

    let rows = match kind {
        LookupKind::Cookie => cookie_rows(&pseudonymizers, &audiences, &value),
        LookupKind::Ip => ip_rows(&pipeline, &ring, &pseudonymizers, &audiences, &value)?,
    };
    drop(value);

    let entry = Entry {
        time: audit::utc_now(),
        user: std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "unknown".into()),
        reason: reason.to_owned(),
        audience: audiences.clone(),
        kind,
        results: rows
            .iter()
            .map(|r| AuditResult {
                key_id: ring.keys()[r.key_index].id().to_string(),
                audience: r.audience.clone(),
                visitor_id: r.visitor_id.clone(),
                lines: r.lines,
            })
            .collect(),
    };
    // No untraced lookup: nothing is shown unless the record is on disk.
    let record = audit::append(&pipeline.audit_log, &entry)
        .context("writing the audit log (nothing is shown without a record)")?;
    tracing::info!(
        log = %pipeline.audit_log.display(),
        seq = record.seq,
        results = rows.len(),
        "lookup recorded in the audit log"
    );

    let mut out = String::new();
    for r in &rows {
        let key = &ring.keys()[r.key_index];
        let _ = write!(
            out,
            "{}\t{}\t{}\t{}",
            key.id(),
            key.not_before(),
            r.audience,
            r.visitor_id
        );
        if let Some(lines) = r.lines {
            let _ = write!(out, "\t{lines}");
        }
        out.push('\n');
    }
    Ok(out)
}

/// The identifier from the command line, or from standard input for `-` (one line; the
/// line ending is dropped). Errors never quote it.
fn read_identifier(flag: &str, given: &str) -> Result<Vec<u8>> {
    let mut value = if given == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .lock()
            .take(MAX_STDIN_IDENTIFIER + 1)
            .read_to_end(&mut buf)
            .with_context(|| format!("{flag} -: reading standard input"))?;
        if buf.len() as u64 > MAX_STDIN_IDENTIFIER {
            bail!("{flag} -: standard input is longer than {MAX_STDIN_IDENTIFIER} bytes");
        }
        if let Some(i) = buf.iter().position(|&b| b == b'\n')
            && buf[i + 1..].iter().any(|b| !b.is_ascii_whitespace())
        {
            bail!("{flag} -: standard input has more than one line; give one value");
        }
        buf
    } else {
        given.as_bytes().to_vec()
    };
    while matches!(value.last(), Some(b'\n' | b'\r')) {
        value.pop();
    }
    if value.is_empty() {
        bail!("{flag}: the value is empty");
    }
    Ok(value)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The audiences to look up for: the requested ones, each declared and pseudonymous, or
/// by default every pseudonymous audience of the policy.
fn audiences(pipeline: &Pipeline, requested: &[String]) -> Result<Vec<String>> {
    let policy = &pipeline.policy;
    if requested.is_empty() {
        let all: Vec<String> = policy
            .audiences
            .iter()
            .filter(|(_, a)| a.pseudonymous)
            .map(|(name, _)| name.clone())
            .collect();
        if all.is_empty() {
            bail!(
                "{}: no audience has `pseudonymous = true`, so no one receives visitor ids: there is nothing to look up",
                policy.path.display()
            );
        }
        return Ok(all);
    }
    let mut chosen = Vec::new();
    for name in requested {
        let Some(audience) = policy.audiences.get(name) else {
            bail!(
                "--audience {name}: not declared in {} (declared: {})",
                policy.path.display(),
                policy
                    .audiences
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        if !audience.pseudonymous {
            bail!(
                "--audience {name}: refused: it does not have `pseudonymous = true` in {}, so it never receives visitor ids",
                policy.path.display()
            );
        }
        if !chosen.contains(name) {
            chosen.push(name.clone());
        }
    }
    chosen.sort();
    Ok(chosen)
}

/// A cookie's visitor id under every key of the ring: no log scan needed.
fn cookie_rows(pseudonymizers: &[Pseudonymizer], audiences: &[String], cookie: &[u8]) -> Vec<Row> {
    let mut rows = Vec::new();
    for (key_index, p) in pseudonymizers.iter().enumerate() {
        let visitor = p.visitor_from_cookie(cookie);
        for audience in audiences {
            rows.push(Row {
                key_index,
                audience: audience.clone(),
                visitor_id: p.for_audience(&visitor, audience).to_hex(),
                lines: None,
            });
        }
    }
    rows
}

/// Scans the pipeline's inputs for lines from one client and collects the visitor ids of
/// their events (cookie visitors, or IP + user agent + day), with line counts.
fn ip_rows(
    pipeline: &Pipeline,
    ring: &KeyRing,
    pseudonymizers: &[Pseudonymizer],
    audiences: &[String],
    client: &[u8],
) -> Result<Vec<Row>> {
    let matcher = ClientMatcher::new(client);
    let mut counts: BTreeMap<(usize, String, String), u64> = BTreeMap::new();
    let (mut scanned, mut matched, mut no_key) = (0u64, 0u64, 0u64);
    let files = logveil_ingest::expand_inputs(&pipeline.inputs, &pipeline.inputs_base)?;
    for input in &files {
        let (reader, _) = logveil_ingest::open(input, pipeline.max_decompressed_bytes)?;
        let mut chunks = ChunkReader::new(reader, DEFAULT_CHUNK_BYTES, pipeline.max_line_bytes);
        let mut state = ParserState::default();
        while let Some(chunk) = chunks
            .next_chunk()
            .with_context(|| format!("reading {input}"))?
        {
            for (_, line) in chunk.lines() {
                let Ok(Parsed::Record(record)) = pipeline.parser.parse(line, &mut state) else {
                    continue;
                };
                scanned += 1;
                if !matcher.matches(&record, &pipeline.client_policy) {
                    continue;
                }
                let Some(time) = record.time else { continue };
                let day = time.utc_micros.div_euclid(MICROS_PER_DAY) as i32;
                let Some(key_index) = ring.keys().iter().rposition(|k| k.not_before_day() <= day)
                else {
                    no_key += 1;
                    continue;
                };
                let p = &pseudonymizers[key_index];
                let Some(event) = p.event(&record, &pipeline.client_policy, &pipeline.sanitize)
                else {
                    continue;
                };
                matched += 1;
                for audience in audiences {
                    let id = p.for_audience(&event.visitor, audience).to_hex();
                    *counts.entry((key_index, audience.clone(), id)).or_default() += 1;
                }
            }
        }
    }
    tracing::info!(
        inputs = files.len(),
        lines = scanned,
        matched,
        "inputs scanned"
    );
    if no_key > 0 {
        tracing::warn!(
            lines = no_key,
            "matching lines dated before the first key have no pseudonym"
        );
    }
    Ok(counts
        .into_iter()
        .map(|((key_index, audience, visitor_id), lines)| Row {
            key_index,
            audience,
            visitor_id,
            lines: Some(lines),
        })
        .collect())
}

/// `logveil audit …`.
pub fn audit(action: AuditAction) -> Result<ExitCode> {
    let AuditAction::Verify { log, anchor } = action;
    match audit::verify(&log) {
        Ok(verified) => {
            let mut out = format!("{} records, chain intact\n", verified.records);
            if let Some(head) = verified.head() {
                let _ = writeln!(
                    out,
                    "head: record {} hash {head} (keep it elsewhere; `--anchor` checks it later)",
                    verified.records
                );
            }
            if let Some(anchor) = anchor {
                let Some(at) = verified.position_of(&anchor) else {
                    writeln!(
                        std::io::stderr().lock(),
                        "error: {}: anchor {} is not in the log: records were removed from its end, or the log was replaced",
                        log.display(),
                        anchor.trim()
                    )?;
                    return Ok(ExitCode::FAILURE);
                };
                let _ = writeln!(out, "anchor: record {at}, unchanged");
            }
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(out.as_bytes())?;
            stdout.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Err(AuditError::Broken { path, broken }) => {
            let mut stderr = std::io::stderr().lock();
            writeln!(stderr, "error: {}: {broken}", path.display())?;
            if broken.line > 1 {
                writeln!(
                    stderr,
                    "  lines 1 to {} verify; the log is not intact from line {} on",
                    broken.line - 1,
                    broken.line
                )?;
            }
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}
