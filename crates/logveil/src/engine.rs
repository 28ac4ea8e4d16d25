//! The per-line engine shared by `run` and `daemon`: parse → pseudonymize → join →
//! aggregate into mergeable [`ReportState`]s. No I/O here besides loading keys and accounts.

use anyhow::{Context, Result};
use logveil_accounts::{AccountSource, AccountStore, JoinOutcome};
use logveil_ingest::Chunk;
use logveil_parse::time::MICROS_PER_DAY;
use logveil_parse::{Parsed, Parser, ParserState, RejectReason};
use logveil_privacy::redact::redact_line;
use logveil_privacy::{KeyRing, Pseudonymizer};
use logveil_report::ReportState;

use crate::config::Pipeline;
use crate::run::AccountsSummary;

/// Line counts; mergeable like report states.
#[derive(Debug, Default, Clone)]
pub struct LineCounts {
    pub read: u64,
    pub parsed: u64,
    /// W3C `#` directives: neither requests nor errors.
    pub directives: u64,
    pub rejected: [u64; RejectReason::ALL.len()],
}

impl LineCounts {
    pub fn reject(&mut self, reason: RejectReason, n: u64) {
        let i = RejectReason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("ALL lists every reason");
        self.rejected[i] += n;
        self.read += n;
    }

    pub fn merge(&mut self, other: &LineCounts) {
        self.read += other.read;
        self.parsed += other.parsed;
        self.directives += other.directives;
        for (a, b) in self.rejected.iter_mut().zip(other.rejected) {
            *a += b;
        }
    }
}

pub struct RunContext<'a> {
    pub pipeline: &'a Pipeline,
    pub parser: &'a Parser,
    /// Oldest first.
    pub epochs: Vec<KeyEpoch>,
}

/// What one root key provides: pseudonyms for the days it is in force, and the account
/// table hashed with it.
pub struct KeyEpoch {
    pub not_before_day: i32,
    pub pseudonymizer: Pseudonymizer,
    pub accounts: Option<AccountStore>,
}

impl<'a> RunContext<'a> {
    /// Loads the key ring and, when a report joins accounts, the account table once per
    /// key (a join only works within one key).
    pub fn load(pipeline: &'a Pipeline) -> Result<(Self, KeyRing, Option<AccountsSummary>)> {
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
        Ok((ctx, ring, accounts_summary))
    }

    /// The epoch in force on a UTC day: the newest key whose `not_before` ≤ that day.
    pub fn epoch_for(&self, utc_day: i32) -> Option<&KeyEpoch> {
        self.epochs
            .iter()
            .rev()
            .find(|e| e.not_before_day <= utc_day)
    }

    /// Redaction tokens in the dead-letter file use the newest key.
    pub fn newest(&self) -> &Pseudonymizer {
        &self
            .epochs
            .last()
            .expect("a key ring has a key")
            .pseudonymizer
    }
}

pub struct Partial {
    pub lines: LineCounts,
    pub states: Vec<ReportState>,
    /// Rejected lines in stream order, kept only when there is a dead-letter file.
    pub rejected: Vec<Rejected>,
}

/// One rejected line: where it starts, why, and its redacted text (`None` for `too_long`).
pub struct Rejected {
    pub offset: u64,
    pub reason: RejectReason,
    pub line: Option<String>,
}

impl Partial {
    pub fn new(pipeline: &Pipeline) -> Self {
        Self {
            lines: LineCounts::default(),
            states: pipeline.reports.iter().map(ReportState::new).collect(),
            rejected: Vec::new(),
        }
    }

    pub fn merge(mut self, mut other: Partial) -> Partial {
        self.lines.merge(&other.lines);
        for (mine, theirs) in self.states.iter_mut().zip(other.states) {
            mine.merge(theirs);
        }
        self.rejected.append(&mut other.rejected);
        self
    }

    /// Counts a rejected line and, with a dead-letter file, keeps it redacted.
    pub fn reject(&mut self, ctx: &RunContext<'_>, reason: RejectReason, offset: u64, line: &[u8]) {
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

pub fn process_chunk(ctx: &RunContext<'_>, chunk: &Chunk, start: &ParserState) -> Partial {
    process_chunk_with(ctx, chunk, start, |_, _| true).0
}

/// [`process_chunk`] with a say per report: `admit(report_index, event_utc_micros)` is
/// called for every parsed line and report, before the report observes the event, and the
/// report skips the event when it returns `false` (the daemon's late lines). Also returns
/// how many parsed lines were skipped by at least one report.
pub fn process_chunk_with(
    ctx: &RunContext<'_>,
    chunk: &Chunk,
    start: &ParserState,
    mut admit: impl FnMut(usize, i64) -> bool,
) -> (Partial, u64) {
    let pipeline = ctx.pipeline;
    let mut skipped = 0;
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
        let mut skipped_here = false;
        for (i, (spec, state)) in pipeline.reports.iter().zip(&mut partial.states).enumerate() {
            if !admit(i, event.utc_micros) {
                skipped_here = true;
                continue;
            }
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
        skipped += u64::from(skipped_here);
    }
    (partial, skipped)
}
