//! The release protocol — plan → protect → charge → write — shared by `logveil run`,
//! `logveil daemon` and `logveil merge`, so that a window gives the same release, the
//! same charge and the same bytes whichever of them publishes it.
//!
//! 1. **Plan.** Every partition of every report becomes a release. For a report that
//!    goes to an external audience or uses DP, the release gets its identity
//!    ([`crate::identity::release_id`]: definition, noise key, partition and the true
//!    aggregated state) and its noise key: the newest key that pseudonymized a line of
//!    the partition, else the key in force on the partition day.
//! 2. **Protect.** Disclosure control per partition, in parallel ([`crate::disclose`]):
//!    DP noise is seeded by the noise key's secret and the release identity (same identity
//!    ⇒ same noise: a re-run reveals nothing new and averaging gains nothing; any change
//!    ⇒ independent noise); cell-key perturbation uses the audience's record keys.
//! 3. **Charge.** Every external release is recorded in its audience's ledger in the
//!    state directory ([`crate::ledger`]), all at once: DP releases are charged ε and δ
//!    (identical re-releases are free; over budget, nothing is written); a cell-key
//!    re-release of a partition first released under another noise key is refused (the
//!    audience would hold two independent perturbations of the same people).
//! 4. **Write.** One Parquet file per partition, with its provenance. Files for external
//!    audiences carry no count that did not go through the same protection as the cells:
//!    no join outcomes, suppressed-cell counts, DP diagnostics or input digests (the run
//!    summary keeps them, for the operator).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use logveil_privacy::KeyRing;
use logveil_privacy::keys::RootKey;
use serde::Serialize;

use crate::aggregate::{JoinCounts, Partition, ReportState};
use crate::calendar::{Calendar, format_day};
use crate::cellkey::RecordKeys;
use crate::disclose::{DiscloseError, Disclosed, Noise, disclose_with};
use crate::dp::{Rational, seed_for};
use crate::identity::{ReleaseId, release_id};
use crate::ledger::{Budget, Ledger, LedgerError, Mechanism, Spend};
use crate::spec::{Bucket, BudgetPeriod, ReportSpec};
use crate::write::{Provenance, WriteError, write_partition};

/// What the protocol needs besides the states.
#[derive(Debug)]
pub struct ReleaseSettings<'a> {
    /// The pipeline's reports; states name them by index.
    pub reports: &'a [ReportSpec],
    pub calendar: &'a Calendar,
    pub ring: &'a KeyRing,
    /// Hex SHA-256 of the policy file (`logveil.policy_sha256`).
    pub policy_sha256: &'a str,
    /// Where the Parquet files go.
    pub out_dir: &'a Path,
    /// The state directory that holds the audiences' ledgers (`[privacy] state_dir`).
    pub state_dir: &'a Path,
    /// Output directories the state directory must not be under (the configured one and
    /// any override): a ledger published with the reports, or replaced with them, is no
    /// ledger.
    pub output_dirs: &'a [PathBuf],
    /// Where ledgers of the old layout may be (`OUT/privacy-ledger.json`, `[output]
    /// ledger`): each that exists is migrated into the state directory.
    pub legacy_ledgers: &'a [PathBuf],
    /// Digest of the run's inputs, for internal files only (`logveil.input_sha256`).
    pub input_sha256: Option<&'a str>,
}

/// What one report's releases came to (the run summary; operators only).
#[derive(Debug, Clone, Serialize)]
pub struct ReportSummary {
    pub audience: String,
    pub k_min: u32,
    pub rows: u64,
    /// Cells withheld: below `k_min` (or the DP release threshold) plus complementary.
    pub cells_suppressed: u64,
    /// Of those, withheld by complementary suppression.
    pub cells_secondary: u64,
    pub partitions: u64,
    /// Join outcomes over the report's views (only for reports that join accounts).
    pub joins: Option<JoinCounts>,
    /// ε and δ charged to the audience's budget by this run (DP reports only; identical
    /// re-releases are free).
    pub epsilon: Option<String>,
    pub delta: Option<String>,
    /// Partitions that were new releases to an external audience (charged or recorded);
    /// the others were identical to a recorded release.
    pub new_releases: u64,
}

/// What the protocol wrote.
#[derive(Debug)]
pub struct Released {
    pub reports: BTreeMap<String, ReportSummary>,
    pub outputs: Vec<PathBuf>,
}

/// Why a release was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    #[error("report `{report}`, partition {partition}: {source}")]
    Disclose {
        report: String,
        partition: String,
        source: DiscloseError,
    },
    #[error("refusing the run: nothing was written ({0})")]
    Ledger(#[source] LedgerError),
    #[error(
        "the state directory {} is under the output directory {}: the privacy ledger would be published with the reports and reset with them; set `[privacy] state_dir` outside every output directory",
        state_dir.display(), out_dir.display()
    )]
    StateUnderOutput {
        state_dir: PathBuf,
        out_dir: PathBuf,
    },
    #[error(
        "refusing the run: nothing was written: report `{report}`, partition {partition} was released to audience `{audience}` with noise key `{first_key}`; releasing it again with key `{key}` would give that audience a second, independent perturbation of the same people. Restore the key file that made the first release (`logveil ledger show` lists what was released)"
    )]
    NoiseKeyChanged {
        audience: String,
        report: String,
        partition: String,
        first_key: String,
        key: String,
    },
    #[error(
        "refusing the run: nothing was written: report `{report}`, partition {partition} was released to audience `{audience}` protected by {first}; a re-release must go through the same protection (now: {now}). Restore the audience's settings in the policy, or release under a new report name"
    )]
    ProtectionChanged {
        audience: String,
        report: String,
        partition: String,
        first: String,
        now: String,
    },
    #[error("the ring has no key for partition {partition}")]
    NoKey { partition: String },
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// One partition, planned and disclosed.
struct Planned {
    report: usize,
    day: i32,
    disclosed: Disclosed,
    key_ids: Vec<String>,
    identity: Option<(ReleaseId, String)>,
    spend: Option<Spend>,
}

/// The bucket starts a partition has by the calendar, whatever the data.
fn partition_buckets(bucket: Bucket, calendar: &Calendar, day: i32) -> Vec<i64> {
    const HOUR: i64 = 3_600_000_000;
    match bucket {
        // Local days are within ±14 hours of the UTC day.
        Bucket::Hour => (i64::from(day) * 24 - 14..i64::from(day) * 24 + 38)
            .map(|h| h * HOUR)
            .filter(|&h| calendar.day_of(h) == day)
            .collect(),
        Bucket::Day | Bucket::Week | Bucket::Month => vec![i64::from(day)],
    }
}

/// The budget period a partition is charged to (`2026-11` or `2026-11-29`).
pub fn period_of(period: BudgetPeriod, day: i32) -> String {
    let date = format_day(day);
    match period {
        BudgetPeriod::Day => date,
        BudgetPeriod::Month => date[..7].to_owned(),
    }
}

/// The key whose secret seeds a partition's noise: the newest that pseudonymized any of
/// its lines, else the one in force on the day, else the newest.
pub fn noise_key<'r>(ring: &'r KeyRing, partition_key_ids: &[String], day: i32) -> &'r RootKey {
    partition_key_ids
        .iter()
        .rev()
        .find_map(|id| ring.keys().iter().find(|k| k.id().as_str() == id))
        .or_else(|| ring.key_for_day(day))
        .unwrap_or_else(|| ring.newest())
}

/// The key whose secret makes an audience's record keys for a partition (cell-key
/// perturbation): the one in force on the partition day, else the oldest (lines before
/// every key are rejected, so that partition can only be empty).
pub fn record_key_source(ring: &KeyRing, day: i32) -> &RootKey {
    ring.key_for_day(day)
        .or_else(|| ring.keys().first())
        .unwrap_or_else(|| ring.newest())
}

/// Whether a report's releases are accountable (identity, ledger): external audiences and
/// every DP release.
fn accountable(spec: &ReportSpec) -> bool {
    (spec.external || spec.dp.is_some()) && !spec.visitor_id
}

/// Plans, protects, charges and writes the releases of `states` (`(report index, state)`).
pub fn release(
    settings: &ReleaseSettings<'_>,
    states: Vec<(usize, ReportState)>,
) -> Result<Released, ReleaseError> {
    use rayon::prelude::*;
    let reports = settings.reports;
    let any_accountable = states.iter().any(|(i, _)| accountable(&reports[*i]));
    if any_accountable {
        check_state_dir(settings)?;
    }
    let joins: BTreeMap<usize, Option<JoinCounts>> =
        states.iter().map(|(i, s)| (*i, s.joins.clone())).collect();
    let work: Vec<(usize, i32, Partition)> = states
        .into_iter()
        .flat_map(|(index, state)| {
            state
                .into_partitions()
                .into_iter()
                .map(move |(day, partition)| (index, day, partition))
        })
        .collect();
    let planned: Vec<Planned> = work
        .into_par_iter()
        .map(|(index, day, partition)| plan_and_protect(settings, index, day, partition))
        .collect::<Result<_, _>>()?;

    // A report that is no longer accountable (its audience lost `external`, or the report
    // became a pseudonymous export) must not re-release, unprotected, a partition that was
    // released to that audience.
    for p in &planned {
        let spec = &reports[p.report];
        if p.identity.is_none() && Ledger::has_audience(settings.state_dir, &spec.audience) {
            let ledger = Ledger::open(settings.state_dir).map_err(ReleaseError::Ledger)?;
            check_rerelease(&ledger, spec, p.day, "", &protection_text(spec))?;
        }
    }
    let mut newly: Vec<Spend> = Vec::new();
    if any_accountable {
        let mut ledger = Ledger::open(settings.state_dir).map_err(ReleaseError::Ledger)?;
        for legacy in settings.legacy_ledgers.iter().filter(|p| p.exists()) {
            let imported = ledger
                .migrate_legacy(legacy)
                .map_err(ReleaseError::Ledger)?;
            tracing::warn!(
                legacy = %legacy.display(),
                state_dir = %settings.state_dir.display(),
                spends = imported,
                "migrated a privacy ledger of the old layout into the state directory"
            );
        }
        for p in &planned {
            let spec = &reports[p.report];
            if let Some((_, key)) = &p.identity
                && spec.dp.is_none()
            {
                check_rerelease(&ledger, spec, p.day, key, &protection_text(spec))?;
            }
        }
        let spends: Vec<Spend> = planned.iter().filter_map(|p| p.spend.clone()).collect();
        let budgets: BTreeMap<&str, Budget> = reports
            .iter()
            .filter_map(|s| s.dp.as_ref().map(|dp| (s.audience.as_str(), dp.budget)))
            .collect();
        let unlimited = Budget {
            epsilon_per_period: Rational::ZERO,
            delta_per_period: Rational::ZERO,
        };
        newly = ledger
            .check_and_spend_with(&spends, |audience| {
                budgets.get(audience).copied().unwrap_or(unlimited)
            })
            .map_err(ReleaseError::Ledger)?;
    }

    let mut summaries: BTreeMap<String, ReportSummary> = joins
        .into_iter()
        .map(|(index, joins)| {
            let spec = &reports[index];
            (
                spec.name.clone(),
                ReportSummary {
                    audience: spec.audience.clone(),
                    k_min: spec.k_min,
                    rows: 0,
                    cells_suppressed: 0,
                    cells_secondary: 0,
                    partitions: 0,
                    joins,
                    epsilon: None,
                    delta: None,
                    new_releases: 0,
                },
            )
        })
        .collect();
    let written: Vec<PathBuf> = planned
        .par_iter()
        .map(|p| {
            let spec = &reports[p.report];
            let joins = summaries[&spec.name].joins.as_ref();
            let provenance = provenance(settings, spec, p, joins);
            write_partition(
                settings.out_dir,
                spec,
                p.day,
                &p.disclosed.rows,
                &provenance,
            )
            .map_err(ReleaseError::from)
        })
        .collect::<Result<_, _>>()?;
    let mut outputs = Vec::new();
    for (p, path) in planned.into_iter().zip(written) {
        let spec = &reports[p.report];
        let summary = summaries
            .get_mut(&spec.name)
            .expect("one summary per report");
        summary.rows += p.disclosed.rows.len() as u64;
        summary.cells_suppressed += p.disclosed.suppressed_cells();
        summary.cells_secondary += p.disclosed.secondary;
        summary.partitions += 1;
        let charged = p
            .spend
            .as_ref()
            .is_some_and(|s| newly.iter().any(|n| n == s));
        if charged {
            summary.new_releases += 1;
            if let Some(spend) = &p.spend
                && spend.mechanism == Mechanism::Dp
            {
                let add = |acc: &Option<String>, r: Rational| {
                    let sum = acc
                        .as_deref()
                        .and_then(|a| Rational::parse(a).ok())
                        .and_then(|a| a.checked_add(r))
                        .unwrap_or(r);
                    Some(sum.to_string())
                };
                summary.epsilon = add(&summary.epsilon, spend.epsilon);
                summary.delta = add(&summary.delta, spend.delta);
            }
        } else if spec.dp.is_some() && summary.epsilon.is_none() {
            summary.epsilon = Some("0".to_owned());
            summary.delta = Some("0".to_owned());
        }
        outputs.push(path);
    }
    Ok(Released {
        reports: summaries,
        outputs,
    })
}

/// How a report's releases are protected, as written into each file
/// (`logveil.perturbation`) and each ledger record (`protection`).
pub fn protection_text(spec: &ReportSpec) -> String {
    match (&spec.perturbation, &spec.dp) {
        (Some(method), None) if !spec.visitor_id => method.metadata_json(),
        (_, Some(_)) => r#"{"method":"differential_privacy"}"#.to_owned(),
        _ => r#"{"method":"none"}"#.to_owned(),
    }
}

/// A partition already released to an audience is re-released only with the same
/// protection and, for cell-key perturbation, the same noise key (a second, independent
/// perturbation of the same people could be averaged). `key` is empty for a report that is
/// no longer accountable: any earlier release then refuses it.
fn check_rerelease(
    ledger: &Ledger,
    spec: &ReportSpec,
    day: i32,
    key: &str,
    protection: &str,
) -> Result<(), ReleaseError> {
    let partition = format_day(day);
    let earlier = ledger
        .releases_of(&spec.audience, &spec.name, &partition)
        .map_err(ReleaseError::Ledger)?;
    let Some(first) = earlier.iter().find(|r| !r.key_id.is_empty()) else {
        return Ok(());
    };
    if key.is_empty() || first.protection != protection {
        return Err(ReleaseError::ProtectionChanged {
            audience: spec.audience.clone(),
            report: spec.name.clone(),
            partition,
            first: first.protection.clone(),
            now: protection.to_owned(),
        });
    }
    if first.mechanism == Mechanism::CellKey && first.key_id != key {
        return Err(ReleaseError::NoiseKeyChanged {
            audience: spec.audience.clone(),
            report: spec.name.clone(),
            partition,
            first_key: first.key_id.clone(),
            key: key.to_owned(),
        });
    }
    Ok(())
}

/// Refuses a state directory inside an output directory (compared after resolving both
/// as far as they exist).
fn check_state_dir(settings: &ReleaseSettings<'_>) -> Result<(), ReleaseError> {
    let resolve = |p: &Path| -> PathBuf {
        let absolute = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().map_or_else(|_| p.to_path_buf(), |d| d.join(p))
        };
        // Resolve the longest existing ancestor (symlinks), keep the rest as written.
        let mut existing = absolute.as_path();
        let mut rest = Vec::new();
        loop {
            if let Ok(real) = existing.canonicalize() {
                let mut out = real;
                for part in rest.iter().rev() {
                    out.push(part);
                }
                return out;
            }
            match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_owned());
                    existing = parent;
                }
                _ => return absolute,
            }
        }
    };
    let state = resolve(settings.state_dir);
    for out in settings
        .output_dirs
        .iter()
        .chain([&settings.out_dir.to_path_buf()])
    {
        let out_resolved = resolve(out);
        if state.starts_with(&out_resolved) {
            return Err(ReleaseError::StateUnderOutput {
                state_dir: settings.state_dir.to_path_buf(),
                out_dir: out.clone(),
            });
        }
    }
    Ok(())
}

fn plan_and_protect(
    settings: &ReleaseSettings<'_>,
    index: usize,
    day: i32,
    partition: Partition,
) -> Result<Planned, ReleaseError> {
    let spec = &settings.reports[index];
    let partition_text = format_day(day);
    // DP: the newest key behind the partition's lines. Cell key: the key in force on the
    // partition's first day, which a rotation (always dated later) never changes, so a
    // week or month re-released after a rotation keeps its visitors' record keys.
    let key = if spec.dp.is_none() && spec.perturbation.is_some() {
        record_key_source(settings.ring, day)
    } else {
        noise_key(settings.ring, &partition.key_ids, day)
    };
    let identity = accountable(spec).then(|| {
        let id = release_id(spec, key.id().as_str(), day, &partition.cells);
        (id, key)
    });
    let buckets = partition_buckets(spec.bucket, settings.calendar, day);
    let seed;
    let record_keys;
    let noise = match (&spec.dp, &spec.perturbation, &identity) {
        (Some(_), _, Some((id, key))) => {
            seed = seed_for(
                &key.noise_secret(),
                &[
                    spec.name.as_bytes(),
                    partition_text.as_bytes(),
                    id.as_str().as_bytes(),
                ],
            );
            Noise::Dp(&seed)
        }
        (None, Some(_), _) => {
            record_keys = RecordKeys::new(&key.noise_secret(), &spec.audience);
            Noise::CellKey(&record_keys)
        }
        _ => Noise::None,
    };
    let disclosed =
        disclose_with(spec, partition.cells, &noise, day, &buckets).map_err(|source| {
            ReleaseError::Disclose {
                report: spec.name.clone(),
                partition: partition_text.clone(),
                source,
            }
        })?;
    let identity = identity.map(|(id, key)| (id, key.id().as_str().to_owned()));
    let spend = identity.as_ref().map(|(id, key_id)| {
        let (mechanism, epsilon, delta, period) = match (&spec.dp, &disclosed.dp) {
            (Some(dp), Some(release)) => (
                Mechanism::Dp,
                release.epsilon,
                release.delta,
                period_of(dp.period, day),
            ),
            _ => (
                Mechanism::CellKey,
                Rational::ZERO,
                Rational::ZERO,
                period_of(BudgetPeriod::Month, day),
            ),
        };
        Spend {
            audience: spec.audience.clone(),
            period,
            report: spec.name.clone(),
            partition: partition_text.clone(),
            release_id: id.as_str().to_owned(),
            key_id: key_id.clone(),
            mechanism,
            protection: protection_text(spec),
            epsilon,
            delta,
        }
    });
    Ok(Planned {
        report: index,
        day,
        disclosed,
        key_ids: partition.key_ids,
        identity,
        spend,
    })
}

/// The file's provenance. External audiences get only what describes the release
/// (definition, policy, keys, parameters, identity), never a count that bypassed the
/// protection of the cells.
fn provenance(
    settings: &ReleaseSettings<'_>,
    spec: &ReportSpec,
    p: &Planned,
    joins: Option<&JoinCounts>,
) -> Provenance {
    let d = &p.disclosed;
    let (epsilon, delta) = d.dp.as_ref().map_or_else(
        || ("0".to_owned(), "0".to_owned()),
        |dp| (dp.epsilon.to_string(), dp.delta.to_string()),
    );
    let mut extra = vec![
        ("logveil.bucket".into(), spec.bucket.column().into()),
        (
            "logveil.legal_class".into(),
            spec.legal_class.as_str().into(),
        ),
        ("logveil.epsilon".into(), epsilon),
        ("logveil.delta".into(), delta),
        (
            "logveil.complementary_suppression".into(),
            (spec.complementary_suppression && spec.dp.is_none() && !spec.visitor_id).to_string(),
        ),
        ("logveil.filters".into(), spec.filters.describe()),
        ("logveil.totals".into(), spec.totals.to_string()),
        ("logveil.perturbation".into(), protection_text(spec)),
    ];
    // An external audience does not get the identity: it changes with the true state, so
    // a re-run whose published numbers did not move would still tell it that withheld
    // data changed. The ledger keeps it.
    if let Some((id, _)) = &p.identity
        && !spec.external
    {
        extra.push(("logveil.release_id".into(), id.as_str().to_owned()));
    }
    if let Some(dp) = &d.dp {
        let mut json = serde_json::json!({
            "mechanism": "discrete_laplace",
            "buckets": dp.buckets,
            "release_threshold": dp.threshold,
        });
        if !spec.external {
            json["dropped_pairs"] = dp.dropped_pairs.into();
            json["clamped_views"] = dp.clamped_views.into();
        }
        extra.push(("logveil.dp".into(), json.to_string()));
    }
    if !spec.external {
        // Exact counts outside the cells: for internal readers only.
        extra.push((
            "logveil.suppressed_cells".into(),
            d.suppressed_cells().to_string(),
        ));
        if let Some(input) = settings.input_sha256 {
            extra.push(("logveil.input_sha256".into(), input.to_owned()));
        }
        if let Some(j) = joins {
            extra.push((
                "logveil.join_outcomes".into(),
                serde_json::json!({
                    "joined": j.joined,
                    "no_account": j.no_account,
                    "no_consent": j.no_consent,
                    "deleted": j.deleted,
                })
                .to_string(),
            ));
            extra.extend([
                ("logveil.joins.joined".into(), j.joined.to_string()),
                ("logveil.joins.no_account".into(), j.no_account.to_string()),
                ("logveil.joins.no_consent".into(), j.no_consent.to_string()),
                ("logveil.joins.deleted".into(), j.deleted.to_string()),
            ]);
        }
    }
    Provenance {
        policy_sha256: settings.policy_sha256.to_owned(),
        key_id: p.key_ids.join(","),
        extra,
    }
}
