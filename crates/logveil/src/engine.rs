//! The per-line engine shared by `run` and `daemon`: parse → pseudonymize → join →
//! aggregate into mergeable [`ReportState`]s. No I/O here besides loading keys and accounts.

use anyhow::{Context, Result};
use logveil_accounts::{AccountSource, AccountStore, JoinOutcome};
use logveil_ingest::Chunk;
use logveil_parse::time::MICROS_PER_DAY;
use logveil_parse::{Parsed, Parser, ParserState, RejectReason};
use logveil_privacy::pseudonym::EventCache;
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
    /// Parsed lines with a value cut to its cap (a page longer than
    /// [`logveil_privacy::sanitize::PAGE_MAX_BYTES`]).
    pub values_cut: u64,
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

    /// Counts a parsed line's event.
    pub fn parsed(&mut self, event: &logveil_privacy::Event) {
        self.read += 1;
        self.parsed += 1;
        self.values_cut += u64::from(
            event
                .page
                .as_ref()
                .is_some_and(logveil_privacy::Page::is_cut),
        );
    }

    pub fn merge(&mut self, other: &LineCounts) {
        self.read += other.read;
        self.parsed += other.parsed;
        self.directives += other.directives;
        self.values_cut += other.values_cut;
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

impl KeyEpoch {
    /// What a report sees of an event's visitor: the account join for the report's purpose
    /// (when it joins), and the audience pseudonym (for pseudonymous exports only).
    pub fn join(
        &self,
        spec: &logveil_report::ReportSpec,
        event: &logveil_privacy::Event,
    ) -> (JoinOutcome<'_>, Option<logveil_privacy::Pseudonym>) {
        let join = match (&self.accounts, spec.needs_join()) {
            (Some(accounts), true) => accounts.join(&event.visitor, &spec.purpose),
            _ => JoinOutcome::NoAccount,
        };
        let visitor_id = spec.visitor_id.then(|| {
            self.pseudonymizer
                .for_audience(&event.visitor, &spec.audience)
        });
        (join, visitor_id)
    }
}

impl<'a> RunContext<'a> {
    /// Loads the key ring and, when a report joins accounts, the account table once per
    /// key (a join only works within one key).
    pub fn load(pipeline: &'a Pipeline) -> Result<(Self, KeyRing, Option<AccountsSummary>)> {
        Self::load_with(pipeline, true)
    }

    /// [`RunContext::load`], with `accounts = false` for an edge agent: it pseudonymizes
    /// and never joins (the account table stays with the aggregators).
    pub fn load_with(
        pipeline: &'a Pipeline,
        accounts: bool,
    ) -> Result<(Self, KeyRing, Option<AccountsSummary>)> {
        let ring = KeyRing::load(&pipeline.key_file).context("loading keys")?;
        if ring.is_demo() {
            tracing::warn!(key_file = %pipeline.key_file.display(), "DEMO KEY: its secret is published, so these pseudonyms protect nothing; use `logveil keygen` for real logs");
        }
        // One epoch per root key: its pseudonymizer and, when reports join accounts, the
        // account table hashed with its visitor subkey (a join only works within one key).
        let needs_accounts = accounts
            && pipeline
                .reports
                .iter()
                .any(logveil_report::ReportSpec::needs_join);
        let source = match &pipeline.accounts {
            Some((spec, base)) if needs_accounts => Some(AccountSource::parse(spec, base)?),
            _ => None,
        };
        let mut accounts_summary = None;
        let mut epochs = Vec::with_capacity(ring.keys().len());
        // Only the account columns some joined report shows are read (and generalised).
        let attributes = logveil_accounts::Attributes::for_dimensions(
            pipeline
                .reports
                .iter()
                .filter(|r| r.needs_join())
                .flat_map(|r| &r.dimensions),
        );
        for key in ring.keys() {
            let pseudonymizer = Pseudonymizer::new(key);
            let accounts = match &source {
                Some(source) => {
                    let store = AccountStore::load_attributes(source, &pseudonymizer, attributes)
                        .context("loading accounts")?;
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

    /// The index in `epochs` of the epoch in force on a UTC day: the newest key whose
    /// `not_before` ≤ that day.
    pub fn epoch_index_for(&self, utc_day: i32) -> Option<usize> {
        self.epochs
            .iter()
            .rposition(|e| e.not_before_day <= utc_day)
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

    /// Folds `other` (built from other lines) into `self`, each report's state on its own
    /// rayon task (the smaller state into the larger: merging is commutative).
    pub fn merge(mut self, other: Partial) -> Partial {
        use rayon::prelude::*;
        self.lines.merge(&other.lines);
        self.states
            .par_iter_mut()
            .zip(other.states)
            .for_each(|(mine, mut theirs)| {
                if theirs.cells.len() > mine.cells.len() {
                    std::mem::swap(mine, &mut theirs);
                }
                mine.merge(theirs);
            });
        self.rejected.extend(other.rejected);
        self
    }

    /// Folds a chunk's partial into this one, on the calling thread (rejected lines are
    /// appended: `other` comes after `self` in the input).
    pub fn absorb(&mut self, other: Partial) {
        self.lines.merge(&other.lines);
        for (mine, theirs) in self.states.iter_mut().zip(other.states) {
            mine.merge(theirs);
        }
        self.rejected.extend(other.rejected);
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

/// Parses, pseudonymizes and aggregates one chunk into `partial`, the state a worker keeps
/// over all the chunks it processes (merged with the other workers' at the end). Rejected
/// lines are appended to `partial.rejected` in input order. The lines go through
/// [`for_each_line`].
pub fn process_chunk_into(
    ctx: &RunContext<'_>,
    chunk: &Chunk,
    start: &ParserState,
    partial: &mut Partial,
) {
    // The chunk is aggregated into small states of its own first (they stay in cache),
    // then folded into the worker's: the worker's large visitor maps are probed once per
    // distinct (cell, visitor) of the chunk instead of once per line.
    let mut local = Partial::new(ctx.pipeline);
    process_chunk_into_with(ctx, chunk, start, &mut local, |_, _| true);
    partial.absorb(local);
}

/// One chunk into a fresh partial, with a say per report (the daemon's late lines): see
/// [`process_chunk_into_with`].
pub fn process_chunk_with(
    ctx: &RunContext<'_>,
    chunk: &Chunk,
    start: &ParserState,
    admit: impl FnMut(usize, i64) -> bool,
) -> (Partial, u64) {
    let mut partial = Partial::new(ctx.pipeline);
    let skipped = process_chunk_into_with(ctx, chunk, start, &mut partial, admit);
    (partial, skipped)
}

/// What one line of a chunk became.
pub enum LineOutcome<'c> {
    /// A W3C `#` directive: neither a request nor an error.
    Directive,
    Rejected {
        reason: RejectReason,
        offset: u64,
        line: &'c [u8],
    },
    /// A request, pseudonymized with the key of `ctx.epochs[epoch]`.
    Event {
        event: logveil_privacy::Event,
        epoch: usize,
    },
}

/// Parses and pseudonymizes every line of `chunk`, calling `on_line` with the outcome of
/// each, in order (over-long lines first, as `too_long` rejections). The one per-line
/// loop of `run`, `daemon` and `edge`.
///
/// Records borrow the chunk and nothing is allocated per line on the usual path: a
/// per-chunk [`EventCache`] per key epoch hashes each repeated cookie or address once and
/// sanitises each repeated target, Referer and user agent once. Only the `Event` leaves:
/// it holds no raw identifier.
// Inlined into each caller so `on_line` is too: this is the per-line hot path of `run`
// (without it the 2M-line bench job measured ≈ 4 % slower).
#[allow(clippy::inline_always)]
#[inline(always)]
pub fn for_each_line<'c>(
    ctx: &RunContext<'_>,
    chunk: &'c Chunk,
    start: &ParserState,
    mut on_line: impl FnMut(LineOutcome<'c>),
) {
    let pipeline = ctx.pipeline;
    let mut state = start.clone();
    for &offset in &chunk.too_long {
        on_line(LineOutcome::Rejected {
            reason: RejectReason::TooLong,
            offset,
            line: &[],
        });
    }
    let mut caches: Vec<Option<EventCache<'_>>> = ctx.epochs.iter().map(|_| None).collect();
    let ip_prefix = pipeline
        .reports
        .iter()
        .any(|r| r.dimensions.contains(&logveil_privacy::Dimension::IpPrefix));
    for (offset, line) in crate::chunks::lines(chunk) {
        let rejected = |reason| LineOutcome::Rejected {
            reason,
            offset,
            line,
        };
        let record = match ctx.parser.parse(line, &mut state) {
            Ok(Parsed::Record(record)) => record,
            Ok(Parsed::Directive) => {
                on_line(LineOutcome::Directive);
                continue;
            }
            Err(reason) => {
                on_line(rejected(reason));
                continue;
            }
        };
        let utc_day = record
            .time
            .map_or(0, |t| t.utc_micros.div_euclid(MICROS_PER_DAY) as i32);
        let Some(index) = ctx.epoch_index_for(utc_day) else {
            on_line(rejected(RejectReason::NoKey));
            continue;
        };
        let epoch = &ctx.epochs[index];
        let cache = caches[index].get_or_insert_with(|| {
            let cache = EventCache::new(&epoch.pseudonymizer);
            if ip_prefix {
                cache
            } else {
                cache.without_ip_prefix()
            }
        });
        match epoch.pseudonymizer.event_cached(
            &record,
            &pipeline.client_policy,
            &pipeline.sanitize,
            cache,
        ) {
            // `record` (borrowing the chunk) dies with this iteration.
            Some(event) => on_line(LineOutcome::Event {
                event,
                epoch: index,
            }),
            None => on_line(rejected(RejectReason::BadTime)),
        }
    }
}

/// [`process_chunk_into`] with a say per report: `admit(report_index, event_utc_micros)` is
/// called for every parsed line and report, before the report observes the event, and the
/// report skips the event when it returns `false` (the daemon's late lines). Returns how
/// many parsed lines were skipped by at least one report.
pub fn process_chunk_into_with(
    ctx: &RunContext<'_>,
    chunk: &Chunk,
    start: &ParserState,
    partial: &mut Partial,
    mut admit: impl FnMut(usize, i64) -> bool,
) -> u64 {
    let pipeline = ctx.pipeline;
    let mut skipped = 0;
    for_each_line(ctx, chunk, start, |outcome| {
        let (event, epoch) = match outcome {
            LineOutcome::Directive => {
                partial.lines.read += 1;
                partial.lines.directives += 1;
                return;
            }
            LineOutcome::Rejected {
                reason,
                offset,
                line,
            } => {
                partial.reject(ctx, reason, offset, line);
                return;
            }
            LineOutcome::Event { event, epoch } => (event, &ctx.epochs[epoch]),
        };
        partial.lines.parsed(&event);
        let mut skipped_here = false;
        for (i, (spec, state)) in pipeline.reports.iter().zip(&mut partial.states).enumerate() {
            if !admit(i, event.utc_micros) {
                skipped_here = true;
                continue;
            }
            let (join, visitor_id) = epoch.join(spec, &event);
            state.observe(spec, &pipeline.calendar, &event, join, visitor_id);
        }
        skipped += u64::from(skipped_here);
    });
    skipped
}

/// Parses and pseudonymizes one chunk into events, for an edge agent (`logveil edge`):
/// what [`process_chunk_into_with`] does before aggregating. Rejected lines are counted in
/// `lines` (an edge keeps no dead-letter file: its lines stay on the web server).
pub fn events_of_chunk(
    ctx: &RunContext<'_>,
    chunk: &Chunk,
    start: &ParserState,
    lines: &mut LineCounts,
) -> Vec<logveil_privacy::Event> {
    let mut events = Vec::new();
    for_each_line(ctx, chunk, start, |outcome| match outcome {
        LineOutcome::Directive => {
            lines.read += 1;
            lines.directives += 1;
        }
        LineOutcome::Rejected { reason, .. } => lines.reject(reason, 1),
        LineOutcome::Event { event, .. } => {
            lines.parsed(&event);
            events.push(event);
        }
    });
    events
}

/// Adds decoded events (from edge agents) to per-report states: the join, audience
/// pseudonym and aggregation half of [`process_chunk_into_with`], on the aggregator.
/// `observe(report_index, event, join, visitor_id)` adds the event to the state it picks
/// (the aggregator keeps one per window) with [`ReportState::observe`]. Returns how many
/// events had a key id this ring does not have (skipped: the aggregator needs every key
/// its edges use).
pub fn observe_events(
    ctx: &RunContext<'_>,
    events: &[logveil_privacy::Event],
    mut observe: impl FnMut(
        usize,
        &logveil_privacy::Event,
        JoinOutcome<'_>,
        Option<logveil_privacy::Pseudonym>,
    ),
) -> u64 {
    let pipeline = ctx.pipeline;
    let mut unknown_key = 0;
    let mut last: Option<(std::sync::Arc<str>, usize)> = None;
    for event in events {
        let index = match &last {
            Some((id, i)) if **id == *event.key_id => *i,
            _ => {
                let Some(i) = ctx
                    .epochs
                    .iter()
                    .position(|e| e.pseudonymizer.key_id().as_str() == &*event.key_id)
                else {
                    unknown_key += 1;
                    continue;
                };
                last = Some((std::sync::Arc::clone(&event.key_id), i));
                i
            }
        };
        let epoch = &ctx.epochs[index];
        for (i, spec) in pipeline.reports.iter().enumerate() {
            let (join, visitor_id) = epoch.join(spec, event);
            observe(i, event, join, visitor_id);
        }
    }
    unknown_key
}
