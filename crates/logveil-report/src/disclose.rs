//! Disclosure control: which cells of a finished partition may be published, and with what
//! numbers. Each audience gets one of three regimes (from the policy):
//!
//! 1. **k-threshold** (every audience): a cell is published only if at least `k_min`
//!    distinct visitors stand behind it (people, not requests). Withheld cells are dropped,
//!    not zeroed, and counted.
//! 2. **Complementary suppression** (audiences with `complementary_suppression`, the
//!    default for external ones), when a report publishes totals or has two or more
//!    dimensions: further cells are withheld so that no withheld cell can be recomputed
//!    from the published cells and totals ([`crate::suppress`]). Each bucket is one table:
//!    rows are the values of the first dimension, columns the combinations of the others;
//!    every margin (row totals, column totals, the bucket total) is treated as published,
//!    even the ones this report does not print, because another report may.
//! 3. **Differential privacy** (audiences with `[audience.NAME.dp]`): per bucket, each
//!    visitor's contribution is bounded ([`crate::dp::bound_contributions`]), discrete
//!    Laplace noise is added to visitors and views, and a data-dependent cell is released
//!    only when its noisy visitor count reaches `max(τ, k_min)`, τ from ε and δ
//!    ([`crate::dp::release_threshold`]); with `public_keys`, every combination of the
//!    dimensions' public value lists is released instead (noise on zeros too, clamped at
//!    0). Noise is drawn from a stream seeded by a secret, the report, the partition and the
//!    input digest, so a re-run reproduces the same release. `k_min` applies to the noisy
//!    count here: gating on the true count would make a cell's presence depend on one
//!    person, which is exactly what the noise is there to hide.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use logveil_privacy::Dimension;
use logveil_privacy::classify::{BrowserFamily, DeviceClass};
use logveil_privacy::generalize::{AGE_BANDS, UNKNOWN};

use crate::aggregate::{CellKey, CellState};
use crate::cellkey::{CellKeyMethod, RecordKeys};
use crate::dp::{
    DiscreteLaplace, DpError, NoiseRng, Rational, bound_contributions, release_threshold, seed_for,
};
use crate::spec::{DpSpec, Metric, ReportSpec};
use crate::suppress::{STRUCTURAL_ZERO, SuppressError, secondary_1d, secondary_2d};

/// Which total a total row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Total {
    /// All cells of the bucket (every dimension column null).
    Bucket,
    /// All cells of the bucket with this value of the first dimension (the other dimension
    /// columns null).
    FirstDimension,
}

impl Total {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Bucket => "bucket",
            Self::FirstDimension => "first_dimension",
        }
    }
}

/// A cell cleared for publication, with its metrics (exact, or noisy under DP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedRow {
    pub key: CellKey,
    /// `Some` for total rows; the dimensions they sum over are written as null.
    pub total: Option<Total>,
    pub views: u64,
    pub visitors: u64,
    pub bytes: u64,
    pub accounts: u64,
}

/// What differential privacy did to one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpRelease {
    /// Buckets released (each costs the audience's ε and δ).
    pub buckets: u64,
    /// ε and δ charged for the whole partition: per-bucket values times `buckets`.
    pub epsilon: Rational,
    pub delta: Rational,
    /// The noisy visitor count a data-dependent cell needed; `None` with public keys.
    pub threshold: Option<i64>,
    /// (visitor, cell) pairs dropped by contribution bounding.
    pub dropped_pairs: u64,
    /// Views removed by clamping to `max_views_per_cell`.
    pub clamped_views: u64,
}

/// The published rows of one partition and what was withheld.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Disclosed {
    pub rows: Vec<PublishedRow>,
    /// Cells (and totals) withheld for being below `k_min` (or, under DP, below the
    /// release threshold).
    pub suppressed: u64,
    /// Further cells withheld by complementary suppression.
    pub secondary: u64,
    /// Set when the partition was released with differential privacy.
    pub dp: Option<DpRelease>,
}

impl Disclosed {
    /// Every withheld cell, primary and secondary.
    pub fn suppressed_cells(&self) -> u64 {
        self.suppressed + self.secondary
    }
}

/// Why disclosure control could not run.
#[derive(Debug, thiserror::Error)]
pub enum DiscloseError {
    #[error("complementary suppression: {0}")]
    Suppress(#[from] SuppressError),
    #[error("differential privacy: {0}")]
    Dp(#[from] DpError),
    #[error("report `{report}`: differential privacy needs a noise seed")]
    NoSeed { report: String },
    #[error("report `{report}`: cell-key perturbation needs the audience's record keys")]
    NoRecordKeys { report: String },
}

/// Applies the k-threshold alone to one partition's cells (kept in their sorted order).
pub fn apply_k_threshold(cells: Vec<(CellKey, CellState)>, k_min: u32) -> Disclosed {
    let mut out = Disclosed::default();
    for (key, cell) in cells {
        if cell.visitors.len() < k_min as usize {
            out.suppressed += 1;
            continue;
        }
        out.rows.push(row(key, None, &cell, None));
    }
    out
}

/// Applies the report's disclosure control to one partition's cells.
///
/// `noise_seed` is the secret seed of this release (report, partition, input digest), needed
/// only under DP; `partition_buckets` are the bucket starts the partition has by the
/// calendar (24 hours for an hourly report on an ordinary day), whatever the data: the
/// ledger charges each, and with public keys each is released even when empty.
pub fn disclose(
    spec: &ReportSpec,
    cells: Vec<(CellKey, CellState)>,
    noise_seed: Option<&[u8; 32]>,
    partition_day: i32,
    partition_buckets: &[i64],
) -> Result<Disclosed, DiscloseError> {
    let noise = noise_seed.map_or(Noise::None, Noise::Dp);
    disclose_with(spec, cells, &noise, partition_day, partition_buckets)
}

/// The secret material a release's noise comes from.
#[derive(Debug)]
pub enum Noise<'a> {
    /// No noise (internal audiences, k-threshold and suppression only).
    None,
    /// The seed of a differentially private release.
    Dp(&'a [u8; 32]),
    /// The record keys of the audience, for cell-key perturbation.
    CellKey(&'a RecordKeys),
}

/// [`disclose`] with the noise of any regime: the report's own regime decides which
/// [`Noise`] it needs (a missing one is an error, never a silent exact release).
pub fn disclose_with(
    spec: &ReportSpec,
    cells: Vec<(CellKey, CellState)>,
    noise: &Noise<'_>,
    partition_day: i32,
    partition_buckets: &[i64],
) -> Result<Disclosed, DiscloseError> {
    if spec.visitor_id {
        // A pseudonymous export is one row per visitor by design: no threshold applies
        // (the policy allows it only for audiences with `pseudonymous = true`).
        return Ok(apply_k_threshold(cells, 1));
    }
    match (&spec.dp, &spec.perturbation) {
        (Some(dp), _) => {
            let Noise::Dp(seed) = noise else {
                return Err(DiscloseError::NoSeed {
                    report: spec.name.clone(),
                });
            };
            disclose_dp(spec, dp, cells, seed, partition_day, partition_buckets)
        }
        (None, Some(method)) => {
            let Noise::CellKey(keys) = noise else {
                return Err(DiscloseError::NoRecordKeys {
                    report: spec.name.clone(),
                });
            };
            disclose_exact(spec, cells, Some((method, keys)))
        }
        (None, None) => disclose_exact(spec, cells, None),
    }
}

/// A published row from a cell's true state: exact, or perturbed by the cell-key method
/// (the cell's own contributor set decides its noise, totals included).
fn row(
    key: CellKey,
    total: Option<Total>,
    cell: &CellState,
    perturb: Option<(&CellKeyMethod, &RecordKeys)>,
) -> PublishedRow {
    let (visitors, views, bytes) = match perturb {
        Some((method, keys)) => {
            let p = method.perturb(keys, cell);
            (p.visitors, p.views, p.bytes)
        }
        None => (cell.visitors.len() as u64, cell.views, cell.bytes),
    };
    PublishedRow {
        key,
        total,
        views,
        visitors,
        bytes,
        accounts: cell.accounts.len() as u64,
    }
}

fn by_bucket(cells: Vec<(CellKey, CellState)>) -> BTreeMap<i64, Vec<(CellKey, CellState)>> {
    let mut buckets: BTreeMap<i64, Vec<(CellKey, CellState)>> = BTreeMap::new();
    for (key, cell) in cells {
        buckets.entry(key.bucket).or_default().push((key, cell));
    }
    buckets
}

/// A total's key: the bucket of `like`, its first `kept` dimensions, the others empty
/// (written as null; the row's `total` says which).
fn total_key(like: &CellKey, kept: usize) -> CellKey {
    let empty: Arc<str> = Arc::from("");
    CellKey {
        bucket: like.bucket,
        partition_day: like.partition_day,
        dims: like
            .dims
            .iter()
            .enumerate()
            .map(|(i, d)| {
                if i < kept {
                    Arc::clone(d)
                } else {
                    Arc::clone(&empty)
                }
            })
            .collect(),
        visitor: None,
    }
}

fn disclose_exact(
    spec: &ReportSpec,
    cells: Vec<(CellKey, CellState)>,
    perturb: Option<(&CellKeyMethod, &RecordKeys)>,
) -> Result<Disclosed, DiscloseError> {
    let k = spec.k_min as usize;
    let dims = spec.dimensions.len();
    let mut out = Disclosed::default();
    for (_, cells) in by_bucket(cells) {
        let Some(first) = cells.first().map(|(key, _)| key.clone()) else {
            continue;
        };
        let mut suppressed: Vec<bool> = cells.iter().map(|(_, c)| c.visitors.len() < k).collect();
        out.suppressed += suppressed.iter().filter(|s| **s).count() as u64;

        // Margins: the bucket total and, with two or more dimensions, one total per value
        // of the first dimension (rows) and per combination of the others (columns).
        let wants_margins = spec.totals || (spec.complementary_suppression && dims >= 1);
        let mut grand = CellState::default();
        let mut rows: BTreeMap<Arc<str>, CellState> = BTreeMap::new();
        let mut cols: BTreeMap<&[Arc<str>], CellState> = BTreeMap::new();
        if wants_margins {
            for (key, cell) in &cells {
                grand.merge_ref(cell);
                if dims >= 2 {
                    rows.entry(Arc::clone(&key.dims[0]))
                        .or_default()
                        .merge_ref(cell);
                    cols.entry(&key.dims[1..]).or_default().merge_ref(cell);
                }
            }
        }
        let mut grand_suppressed = grand.visitors.len() < k;
        let mut row_suppressed: BTreeMap<Arc<str>, bool> = rows
            .iter()
            .map(|(v, c)| (Arc::clone(v), c.visitors.len() < k))
            .collect();
        if spec.totals && dims >= 1 {
            out.suppressed += u64::from(grand_suppressed);
            if dims >= 2 {
                out.suppressed += row_suppressed.values().filter(|s| **s).count() as u64;
            }
        }

        let protect = spec.complementary_suppression && (spec.totals || dims >= 2);
        if protect && dims == 1 {
            let values: Vec<u64> = cells.iter().map(|(_, c)| c.visitors.len() as u64).collect();
            let primary: BTreeSet<usize> = (0..cells.len()).filter(|&i| suppressed[i]).collect();
            let extra = secondary_1d(&values, &primary)?;
            for i in extra.cells {
                suppressed[i] = true;
                out.secondary += 1;
            }
            if extra.total && !grand_suppressed {
                grand_suppressed = true;
                out.secondary += 1;
            }
        } else if protect && dims >= 2 {
            let row_index: BTreeMap<&Arc<str>, usize> =
                rows.keys().enumerate().map(|(i, v)| (v, i)).collect();
            let col_index: BTreeMap<&[Arc<str>], usize> =
                cols.keys().enumerate().map(|(i, v)| (*v, i)).collect();
            let (r, c) = (rows.len(), cols.len());
            let mut table = vec![vec![STRUCTURAL_ZERO; c]; r];
            let mut at: BTreeMap<(usize, usize), usize> = BTreeMap::new();
            for (i, (key, cell)) in cells.iter().enumerate() {
                let (ri, ci) = (row_index[&key.dims[0]], col_index[&key.dims[1..]]);
                table[ri][ci] = cell.visitors.len() as u64;
                at.insert((ri, ci), i);
            }
            let mut primary: BTreeSet<(usize, usize)> = at
                .iter()
                .filter(|(_, i)| suppressed[**i])
                .map(|(p, _)| *p)
                .collect();
            for (ri, (_, cell)) in rows.iter().enumerate() {
                if cell.visitors.len() < k {
                    primary.insert((ri, c));
                }
            }
            for (ci, (_, cell)) in cols.iter().enumerate() {
                if cell.visitors.len() < k {
                    primary.insert((r, ci));
                }
            }
            if grand_suppressed {
                primary.insert((r, c));
            }
            let extra = if r >= 2 && c >= 2 {
                secondary_2d(&table, &primary)?
            } else {
                // One row or one column: a list of cells whose total is published.
                line_secondary(&table, &primary, r, c)?
            };
            for (ri, ci) in extra {
                if ri < r && ci < c {
                    if let Some(&i) = at.get(&(ri, ci))
                        && !suppressed[i]
                    {
                        suppressed[i] = true;
                        out.secondary += 1;
                    }
                } else if ri < r {
                    let value = rows.keys().nth(ri).expect("row index in range");
                    let s = row_suppressed.get_mut(value).expect("row present");
                    if !*s {
                        *s = true;
                        out.secondary += u64::from(spec.totals);
                    }
                } else if ci == c && !grand_suppressed {
                    grand_suppressed = true;
                    out.secondary += u64::from(spec.totals);
                }
                // Column totals are not printed by this report: nothing to withhold.
            }
        }

        for ((key, cell), hidden) in cells.iter().zip(&suppressed) {
            if !hidden {
                out.rows.push(row(key.clone(), None, cell, perturb));
            }
        }
        if spec.totals && dims >= 1 {
            if !grand_suppressed {
                out.rows.push(row(
                    total_key(&first, 0),
                    Some(Total::Bucket),
                    &grand,
                    perturb,
                ));
            }
            if dims >= 2 {
                for (value, cell) in &rows {
                    if !row_suppressed[value] {
                        let mut key = total_key(&first, 0);
                        let mut dims: Vec<Arc<str>> = key.dims.to_vec();
                        dims[0] = Arc::clone(value);
                        key.dims = dims.into_boxed_slice();
                        out.rows
                            .push(row(key, Some(Total::FirstDimension), cell, perturb));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Complementary suppression of a table with a single row or column: the line's cells and
/// its total (the bucket total; the other margin repeats the cells one by one, so a
/// suppressed cell's own margin is suppressed with it).
fn line_secondary(
    table: &[Vec<u64>],
    primary: &BTreeSet<(usize, usize)>,
    r: usize,
    c: usize,
) -> Result<BTreeSet<(usize, usize)>, SuppressError> {
    let by_row = r == 1;
    let values: Vec<u64> = if by_row {
        table[0].clone()
    } else {
        table.iter().map(|row| row[0]).collect()
    };
    let n = values.len();
    // A margin that repeats a single cell: cell and margin stand or fall together.
    let cell_of = |(ri, ci): (usize, usize)| -> Option<usize> {
        if by_row {
            (ci < c).then_some(ci)
        } else {
            (ri < r).then_some(ri)
        }
    };
    let mut line_primary: BTreeSet<usize> = BTreeSet::new();
    let mut total_primary = false;
    for &p in primary {
        match cell_of(p) {
            Some(i) => {
                line_primary.insert(i);
            }
            None => total_primary = true,
        }
    }
    let mut extra = BTreeSet::new();
    let mut hidden: BTreeSet<usize> = line_primary.clone();
    if !total_primary {
        let more = secondary_1d(&values, &line_primary)?;
        hidden.extend(more.cells.iter().copied());
        if more.total {
            extra.insert((r, c));
        }
    }
    for i in 0..n {
        let (cell, margin) = if by_row {
            ((0, i), (1, i))
        } else {
            ((i, 0), (i, 1))
        };
        if hidden.contains(&i) {
            for p in [cell, margin] {
                if !primary.contains(&p) {
                    extra.insert(p);
                }
            }
        }
    }
    Ok(extra)
}

/// Dimensions with a public value list ([`public_domain`]).
pub const PUBLIC_DOMAIN_DIMENSIONS: &[Dimension] = &[
    Dimension::AgeBand,
    Dimension::DeviceClass,
    Dimension::BrowserFamily,
    Dimension::StatusClass,
];

pub fn has_public_domain(dimension: Dimension) -> bool {
    PUBLIC_DOMAIN_DIMENSIONS.contains(&dimension)
}

/// The public value list of a dimension, for DP releases with `public_keys`: values that
/// exist whatever the data. `None` for dimensions whose values come from the data (pages,
/// referrers, campaigns).
pub fn public_domain(dimension: Dimension, spec: &ReportSpec) -> Option<Vec<Arc<str>>> {
    let list: Vec<&str> = match dimension {
        Dimension::AgeBand => AGE_BANDS.iter().copied().chain([UNKNOWN]).collect(),
        Dimension::DeviceClass => DeviceClass::ALL.iter().map(|d| d.as_str()).collect(),
        Dimension::BrowserFamily => BrowserFamily::ALL.iter().map(|b| b.as_str()).collect(),
        Dimension::StatusClass => {
            return Some(
                spec.filters
                    .status_classes
                    .iter()
                    .map(|c| Arc::from(format!("{c}xx")))
                    .collect(),
            );
        }
        _ => return None,
    };
    Some(list.into_iter().map(Arc::from).collect())
}

/// ε for the visitor counts and for the views of one bucket's release: split evenly when
/// both are published (or when views need a noisy visitor count for key release).
fn split_epsilon(spec: &ReportSpec, dp: &DpSpec) -> (Rational, Option<Rational>) {
    let views = spec.metrics.contains(&Metric::Views);
    if !views {
        return (dp.epsilon, None);
    }
    if dp.public_keys && !spec.metrics.contains(&Metric::Visitors) {
        // Nothing needs a noisy visitor count: all of ε goes to views. (The visitor
        // noise below is then drawn but never published.)
        return (dp.epsilon, Some(dp.epsilon));
    }
    let half =
        Rational::new(dp.epsilon.num(), dp.epsilon.den().saturating_mul(2)).unwrap_or(dp.epsilon);
    (half, Some(half))
}

fn disclose_dp(
    spec: &ReportSpec,
    dp: &DpSpec,
    cells: Vec<(CellKey, CellState)>,
    seed: &[u8; 32],
    partition_day: i32,
    partition_buckets: &[i64],
) -> Result<Disclosed, DiscloseError> {
    let (eps_visitors, eps_views) = split_epsilon(spec, dp);
    let max_cells = dp.max_cells_per_visitor;
    let visitors_noise = DiscreteLaplace::for_epsilon(eps_visitors, max_cells)?;
    let views_noise = eps_views
        .map(|e| DiscreteLaplace::for_epsilon(e, max_cells.saturating_mul(dp.max_views_per_cell)))
        .transpose()?;
    let threshold = if dp.public_keys {
        None
    } else {
        Some(release_threshold(eps_visitors, dp.delta, max_cells)?.max(i64::from(spec.k_min)))
    };
    let public: Option<Vec<Box<[Arc<str>]>>> = dp.public_keys.then(|| {
        let mut combos: Vec<Vec<Arc<str>>> = vec![Vec::new()];
        for d in &spec.dimensions {
            let values = public_domain(*d, spec).unwrap_or_default();
            combos = combos
                .into_iter()
                .flat_map(|prefix| {
                    values.iter().map(move |v| {
                        let mut next = prefix.clone();
                        next.push(Arc::clone(v));
                        next
                    })
                })
                .collect();
        }
        combos.into_iter().map(Vec::into_boxed_slice).collect()
    });
    let buckets = (partition_buckets.len() as u64).max(1);
    let times = |r: Rational| Rational::new(r.num().saturating_mul(buckets), r.den()).unwrap_or(r);
    let mut release = DpRelease {
        buckets,
        epsilon: times(dp.epsilon),
        delta: if dp.public_keys {
            Rational::ZERO
        } else {
            times(dp.delta)
        },
        threshold,
        dropped_pairs: 0,
        clamped_views: 0,
    };
    let mut out = Disclosed::default();
    let mut data = by_bucket(cells);
    if public.is_some() {
        // Every bucket of the partition is released, data or not: an empty bucket that
        // printed nothing would tell that nobody came.
        for bucket in partition_buckets {
            data.entry(*bucket).or_default();
        }
    }
    for (bucket, cells) in data {
        let tag = bucket.to_le_bytes();
        let mut bound_rng = NoiseRng::from_seed(&seed_for(seed, &[b"bound", &tag]));
        let triples = cells.iter().flat_map(|(key, cell)| {
            cell.visitors
                .iter()
                .map(move |(visitor, views)| (*visitor, key.dims.clone(), *views))
        });
        let bounded = bound_contributions(
            triples,
            usize::try_from(max_cells).unwrap_or(usize::MAX),
            dp.max_views_per_cell,
            &mut bound_rng,
        );
        release.dropped_pairs += bounded.dropped_pairs;
        release.clamped_views += bounded.clamped_views;
        let mut noise_rng = NoiseRng::from_seed(&seed_for(seed, &[b"noise", &tag]));
        let keys: Vec<Box<[Arc<str>]>> = match &public {
            Some(all) => all.clone(),
            None => bounded.cells.keys().cloned().collect(),
        };
        for dims in keys {
            let true_counts = bounded.cells.get(&dims).copied().unwrap_or_default();
            let noisy_visitors = i64::try_from(true_counts.visitors).unwrap_or(i64::MAX)
                + visitors_noise.sample(&mut noise_rng);
            let noisy_views = views_noise.as_ref().map_or(0, |n| {
                i64::try_from(true_counts.views).unwrap_or(i64::MAX) + n.sample(&mut noise_rng)
            });
            if let Some(t) = threshold
                && noisy_visitors < t
            {
                out.suppressed += 1;
                continue;
            }
            out.rows.push(PublishedRow {
                key: CellKey {
                    bucket,
                    partition_day,
                    dims,
                    visitor: None,
                },
                total: None,
                views: noisy_views.max(0) as u64,
                visitors: noisy_visitors.max(0) as u64,
                bytes: 0,
                accounts: 0,
            });
        }
    }
    out.dp = Some(release);
    Ok(out)
}
