//! The cell-key method: consistent, bounded noise on published counts and magnitudes, so
//! that differencing overlapping tables (across reports, periods and re-runs) is not exact.
//!
//! # The method
//!
//! The cell-key method is the post-tabular perturbation of the Australian Bureau of
//! Statistics (Thompson, Broadfoot and Elazar 2013, "Methodology for the Automatic
//! Confidentialisation of Statistical Outputs from Remote Servers at the Australian Bureau
//! of Statistics", used by ABS `TableBuilder`), of the UK Office for National Statistics for
//! Census 2021 ("Protecting personal data in Census 2021 results", ons.gov.uk; open code in
//! `ONSdigital/cell-key-perturbation`) and of the European statistical system's census 2021
//! outputs (Destatis' `sdcTools/ptable` and `sdcTools/cellKey`, Tau-Argus):
//!
//! 1. every record — here every visitor pseudonym — has a fixed random **record key**
//!    ([`RecordKeys`]: a keyed BLAKE3 hash of the pseudonym with a secret per root key and
//!    audience);
//! 2. a cell's **cell key** is the sum of the record keys of the people in it, modulo 2⁶⁴
//!    (ABS: the sum of record keys in `[0, 1)` modulo 1; ONS: keys 0–255 summed modulo 256),
//!    a function of the *set* of contributors only ([`cell_keys`]);
//! 3. a **perturbation table** ([`PTable`], "ptable") maps the true count `n` and the cell
//!    key to a noise `d` with `|d| ≤ D` ([`PTable::noise`]); the published count is `n + d`.
//!
//! The same contributors therefore get the same noise in every table, every report and every
//! re-run (consistency): publishing a cell again, or publishing it as part of another
//! cross-tabulation, repeats its noise instead of giving a fresh draw, so the noise cannot be
//! averaged away. Two *different* contributor sets — a month and the same month without one
//! day, a total and a total without one cell, yesterday's file and a re-run after one person
//! withdrew consent — have unrelated cell keys, so their difference carries the noise of both
//! and is not the exact difference. With the defaults, a one-person difference between two
//! large cells is exact with probability Σ p(d)² ≈ 0.19 (see [`DEFAULT_MAX_NOISE`]).
//!
//! # Perturbation tables
//!
//! [`PTable::generate`] builds, for each true count `n = 1..=2D+1` (the last row serves all
//! larger counts), the maximum-entropy distribution of `d` on `max(−D, 1−n)..=D` with mean 0
//! and variance V — p(d) ∝ exp(−a·d − b·d²) — as in the `ptable` package (Marley and Leaver
//! 2011; Giessing 2016). Noise never makes a non-empty cell 0 or negative, and empty cells are
//! never perturbed (no cell without contributors exists here). A small count whose support
//! cannot reach variance V with mean 0 gets the largest variance it can (see
//! [`PTable::generate`]); in particular a count of 1 is never perturbed when it has to stay
//! ≥ 1 with mean 0 (there is no room below it), which is one reason why k-thresholds stay.
//! Probabilities are integers out of 10⁹, so lookups are integer arithmetic and the table is
//! pinned by the SHA-256 of its canonical CSV ([`PTable::sha256`]), written into every file's
//! metadata. [`PTable::from_csv_file`] reads a table made elsewhere (CSV
//! `count,noise,probability`).
//!
//! # Views and bytes
//!
//! Magnitudes are perturbed with noise proportional to the cell and never smaller than the
//! largest single visitor's views in it, so one person's contribution is hidden in every cell
//! (compare `sdcTools/cellKey`'s "top contributor" magnitude noise); see
//! [`CellKeyMethod::perturb`].
//!
//! # Totals
//!
//! A total (a bucket total, a first-dimension total) is perturbed as a cell in its own right,
//! from its own contributor set (the union of its cells' visitors), not as the sum of its
//! perturbed cells. It is then consistent with every other table that has the same
//! contributors: the same bucket's total in another report (another slicing of the same
//! people) gets the same noise, where a sum of perturbed cells would differ between slicings
//! and let a reader average the differences. The price is that published tables are not
//! additive: cells do not sum exactly to their total, by design.
//!
//! # k-thresholds apply to true counts
//!
//! The caller decides k-thresholds and complementary suppression on the *true* counts before
//! perturbing: every published cell still stands for at least `k_min` real people, and
//! suppression's guarantee (no withheld cell can be recomputed exactly) is a statement about
//! the true table. Perturbation is a second layer, against differencing of *different*
//! tables, which suppression within one table cannot see. (Differential privacy gates on
//! noisy counts instead because its noise is fresh and its guarantee is about the decision
//! itself; the cell-key method makes no such claim.)
//!
//! # What it does not protect against
//!
//! - **Fresh keys.** Consistency holds only while the record keys stay the same. An audience
//!   that obtains the same people's cells perturbed with different keys (a re-run under another
//!   root key, or another audience's secret) holds independent draws and can average them. The
//!   release ledger refuses such re-releases ([`crate::release`]); keep the key file.
//! - **Bounded noise.** Noise is at most ±D, so every published count bounds the true count
//!   within ±D, and a published cell is known to have at least `k_min` true visitors: a
//!   published count near `k_min` is pinned more tightly than that.
//! - **Many linked tables.** It is not differential privacy. Each different contributor set
//!   has its own noise, so an attacker who can request many tables whose contributor sets
//!   differ in known ways can combine them and shrink the uncertainty; only a privacy budget
//!   ([`crate::dp`]) bounds that.
//! - **Bytes concentrated in one person.** The bytes noise is scaled by the views' noise scale
//!   (relative to the cell's views), not by one person's share of bytes, which the state does
//!   not track: a visitor who downloaded most of a cell's bytes with few views is not hidden.

use std::fmt::{self, Write as _};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use logveil_privacy::Pseudonym;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::aggregate::CellState;
use crate::dp::seed_for;

/// Context of the record-key secret, under [`seed_for`]. Changing it changes every
/// published number.
pub const RECORD_KEY_CONTEXT: &str = "logveil 2026-12-07 cell key record v1";
/// Context of the second, independent magnitude key (bytes), derived from the magnitude key.
const BYTES_KEY_CONTEXT: &str = "logveil 2026-12-07 cell key bytes v1";
/// Tag byte of the count record key: `0x01 ‖ pseudonym`.
const TAG_COUNT: u8 = 0x01;
/// Tag byte of the magnitude record key: `0x02 ‖ pseudonym`.
const TAG_MAGNITUDE: u8 = 0x02;

/// Default maximum noise D on a count.
///
/// Destatis' `sdcTools/ptable` vignette uses D = 2, V = 1 as its example
/// (`create_cnt_ptable(D = 2, V = 1)`; `pt_ex_cnts()` uses D = 2, V = 1.05). ABS and ONS do
/// not publish their production tables (ONS reports that about 14 % of a typical Census
/// 2021 dataset's cells were perturbed, small counts more often). That example's large row
/// has Σ p(d)² ≈ 0.275: two large cells that differ by one person get equal noise — an
/// exact difference — with probability ≈ 0.27, which measured 68.5 % non-exact recovery in
/// one of issue #14's attacks (`tests/linked_tables.rs`), short of the 70 % we require.
/// We ship D = 3, V = 2: Σ p² is about 0.19 (a one-person difference is hidden in about
/// 80 % of cases), at a mean absolute error of about one visitor per cell.
pub const DEFAULT_MAX_NOISE: u32 = 3;
/// Default variance V of the noise on large counts (see [`DEFAULT_MAX_NOISE`]).
pub const DEFAULT_VARIANCE: f64 = 2.0;
/// Default relative magnitude noise m: up to 5 % of a cell's views and bytes (and never
/// less than the largest single visitor's views).
pub const DEFAULT_MAGNITUDE: f64 = 0.05;
/// The largest maximum noise D a table may have.
pub const MAX_NOISE_LIMIT: u32 = 20;
/// The smallest variance V a generated table may have: below it the large row would round
/// to no noise at all (p(0) = 1 in units of 10⁻⁹), a table that protects nothing.
pub const MIN_VARIANCE: f64 = 0.01;
/// Probabilities are integers out of this (10⁹): each row sums to it exactly.
pub const PROBABILITY_UNITS: u32 = 1_000_000_000;
/// The largest count a ptable file may list a row for.
pub const MAX_PTABLE_COUNT: u64 = 10_000;
/// The largest ptable file read.
pub const MAX_PTABLE_FILE_BYTES: u64 = 16 << 20;

const CSV_HEADER: &str = "count,noise,probability";

/// Errors building or reading a perturbation table, or configuring the method. Each says
/// what is wrong and what is allowed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CellKeyError {
    #[error("max_noise {max_noise} is not allowed (allowed: 1 to {MAX_NOISE_LIMIT})")]
    MaxNoise { max_noise: u32 },
    #[error(
        "variance {variance} is not allowed with max_noise {max_noise} (allowed: at least {MIN_VARIANCE} and less than max_noise² = {limit})"
    )]
    Variance {
        variance: f64,
        max_noise: u32,
        limit: u32,
    },
    #[error("magnitude {magnitude} is not allowed (allowed: 0 to 1, a fraction of the cell)")]
    Magnitude { magnitude: f64 },
    #[error(
        "the perturbation table row for count {count} did not converge (max_noise {max_noise}, variance {variance}); choose a variance further from 0 and from max_noise²"
    )]
    NoConvergence {
        count: u64,
        max_noise: u32,
        variance: f64,
    },
    #[error("ptable line {line}: {reason}")]
    Csv { line: usize, reason: String },
    #[error("ptable file {}: line {line}: {reason}", path.display())]
    CsvFile {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("cannot read ptable file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "ptable file {} is too large (allowed: at most {MAX_PTABLE_FILE_BYTES} bytes)",
        path.display()
    )]
    TooLarge { path: PathBuf },
}

// ---------------------------------------------------------------------------------------
// Record keys and cell keys
// ---------------------------------------------------------------------------------------

/// The secret of one (root key, audience) from which every visitor's record keys are
/// derived. Wiped when dropped, never formatted.
pub struct RecordKeys {
    secret: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for RecordKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordKeys").finish_non_exhaustive()
    }
}

impl RecordKeys {
    /// `noise_secret`: the secret of the root key in force
    /// (`RootKey::noise_secret()`); `audience`: the audience's name. The secret is
    /// `dp::seed_for(noise_secret, [RECORD_KEY_CONTEXT, audience])`, so two audiences' noise
    /// is unrelated.
    pub fn new(noise_secret: &[u8; 32], audience: &str) -> Self {
        Self {
            secret: Zeroizing::new(seed_for(
                noise_secret,
                &[RECORD_KEY_CONTEXT.as_bytes(), audience.as_bytes()],
            )),
        }
    }

    /// The 64-bit record key of one visitor for counts: the first 8 bytes (little-endian) of
    /// `blake3::keyed_hash(secret, 0x01 ‖ pseudonym)`.
    pub fn count_key(&self, visitor: &Pseudonym) -> u64 {
        self.key(TAG_COUNT, visitor)
    }

    /// An independent 64-bit record key for magnitude noise: tag `0x02` instead of `0x01`.
    pub fn magnitude_key(&self, visitor: &Pseudonym) -> u64 {
        self.key(TAG_MAGNITUDE, visitor)
    }

    fn key(&self, tag: u8, visitor: &Pseudonym) -> u64 {
        let mut input = [0u8; 17];
        input[0] = tag;
        input[1..].copy_from_slice(visitor.as_bytes());
        first_word(blake3::keyed_hash(&self.secret, &input).as_bytes())
    }
}

fn first_word(bytes: &[u8; 32]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

/// The cell keys of a contributor set: the wrapping sums (mod 2⁶⁴) of its record keys. A
/// function of the set alone — independent of insertion order, threads, merging, and of the
/// report or table the cell is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CellKeys {
    pub count: u64,
    pub magnitude: u64,
}

/// The cell keys of `cell`'s visitors.
pub fn cell_keys(keys: &RecordKeys, cell: &CellState) -> CellKeys {
    cell.visitors.keys().fold(
        CellKeys {
            count: 0,
            magnitude: 0,
        },
        |acc, visitor| CellKeys {
            count: acc.count.wrapping_add(keys.count_key(visitor)),
            magnitude: acc.magnitude.wrapping_add(keys.magnitude_key(visitor)),
        },
    )
}

// ---------------------------------------------------------------------------------------
// Perturbation tables
// ---------------------------------------------------------------------------------------

/// A perturbation table: for each true count `n = 1..=N` (row N also serves every larger
/// count), the probability of each noise `d` in `−D..=D`, in units of 10⁻⁹.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PTable {
    max_noise: u32,
    /// `rows[n − 1][d + D]`: probability of noise `d` for count `n`, out of
    /// [`PROBABILITY_UNITS`]; each row sums to it exactly, and is 0 where `n + d < 1`.
    rows: Vec<Box<[u32]>>,
}

impl PTable {
    /// Generates the table for maximum noise `max_noise` (D, 1..=20) and variance `variance`
    /// (V, finite, [`MIN_VARIANCE`] ≤ V < D²), with rows for `n = 1..=2D+1` (rows from `D+1` on are equal:
    /// their support is the whole `−D..=D`).
    ///
    /// Row `n` is the maximum-entropy distribution on `max(−D, 1−n)..=D` with mean 0 and
    /// variance V, p(d) ∝ exp(−a·d − b·d²), found by damped Newton steps on the convex dual
    /// (log-partition + b·V; its gradient is the two moment equations). For rows with the whole
    /// support the distribution is symmetric (a = 0, computed from |d|, so p(d) = p(−d) before
    /// rounding). A support `lo..=D` with `lo < 0` reaches variances below `−lo·D` with mean 0;
    /// when V is not below that, V is relaxed to that largest variance, whose only mean-zero
    /// distribution puts `D/(D−lo)` on `lo` and `−lo/(D−lo)` on D (for `lo = 0`, count 1 when
    /// D ≥ 1: no noise at all). Probabilities are then rounded to integers out of 10⁹ by
    /// largest remainder (ties: smaller |d|, then negative first), each row summing to 10⁹.
    ///
    /// The solver uses `f64` (`exp`, `ln`), so a platform's libm could in principle round one
    /// probability differently; the CSV ([`PTable::to_csv`]) and its SHA-256 in every file's
    /// metadata are the authoritative record of the table used.
    pub fn generate(max_noise: u32, variance: f64) -> Result<Self, CellKeyError> {
        if !(1..=MAX_NOISE_LIMIT).contains(&max_noise) {
            return Err(CellKeyError::MaxNoise { max_noise });
        }
        let limit = max_noise * max_noise;
        if !variance.is_finite() || variance < MIN_VARIANCE || variance >= f64::from(limit) {
            return Err(CellKeyError::Variance {
                variance,
                max_noise,
                limit,
            });
        }
        let d = i64::from(max_noise);
        let width = 2 * max_noise as usize + 1;
        let mut rows: Vec<Box<[u32]>> = Vec::with_capacity(width);
        let mut full: Option<Box<[u32]>> = None;
        for n in 1..=width as u64 {
            let lo = (1 - n as i64).max(-d);
            if lo == -d
                && let Some(row) = &full
            {
                rows.push(row.clone());
                continue;
            }
            let probabilities =
                max_entropy(lo, d, variance).ok_or(CellKeyError::NoConvergence {
                    count: n,
                    max_noise,
                    variance,
                })?;
            let units = quantise(&probabilities, lo);
            let mut row = vec![0u32; width].into_boxed_slice();
            for (i, u) in units.into_iter().enumerate() {
                row[(lo + d) as usize + i] = u;
            }
            if lo == -d {
                full = Some(row.clone());
            }
            rows.push(row);
        }
        Ok(Self { max_noise, rows })
    }

    /// Reads a ptable file (see [`PTable::parse_csv`]; at most [`MAX_PTABLE_FILE_BYTES`]).
    /// Errors name the file and line.
    pub fn from_csv_file(path: &Path) -> Result<Self, CellKeyError> {
        let read_error = |source| CellKeyError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let mut bytes = Vec::new();
        file.take(MAX_PTABLE_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if bytes.len() as u64 > MAX_PTABLE_FILE_BYTES {
            return Err(CellKeyError::TooLarge {
                path: path.to_owned(),
            });
        }
        Self::parse_csv(&bytes).map_err(|e| match e {
            CellKeyError::Csv { line, reason } => CellKeyError::CsvFile {
                path: path.to_owned(),
                line,
                reason,
            },
            other => other,
        })
    }

    /// Parses a ptable: CSV with the header `count,noise,probability`, then one line per
    /// (count, noise) in any order (blank lines, CRLF, a UTF-8 BOM and spaces around fields
    /// are accepted). Rules:
    ///
    /// - `count` is a whole number `1..=10000`, and the counts present run `1, 2, …, N`
    ///   without gaps; row N serves every larger count;
    /// - `noise` is a whole number with `count + noise ≥ 1`; D is the largest |noise| listed
    ///   for count N (1..=20), and no row lists noise beyond ±D;
    /// - `probability` is a decimal from 0 to 1 with at most 9 digits after the point; the
    ///   probabilities of one count sum to exactly 1, and row N gives some probability to a
    ///   noise other than 0; each (count, noise) appears once; unlisted noise has probability 0.
    ///
    /// Never panics, whatever the bytes.
    pub fn parse_csv(bytes: &[u8]) -> Result<Self, CellKeyError> {
        parse_csv(bytes)
    }

    /// The canonical CSV: the header, then for each count `1..=N` in order every noise from
    /// `max(−D, 1−count)` to D (zero probabilities included), probabilities with exactly 9
    /// digits after the point. [`PTable::parse_csv`] reads it back to an equal table.
    pub fn to_csv(&self) -> String {
        let d = i64::from(self.max_noise);
        let mut out = String::with_capacity(32 * self.rows.len() * (2 * d as usize + 1));
        out.push_str(CSV_HEADER);
        out.push('\n');
        for (index, row) in self.rows.iter().enumerate() {
            let count = index as i64 + 1;
            for noise in (1 - count).max(-d)..=d {
                let p = row[(noise + d) as usize];
                let _ = writeln!(
                    out,
                    "{count},{noise},{}.{:09}",
                    p / PROBABILITY_UNITS,
                    p % PROBABILITY_UNITS
                );
            }
        }
        out
    }

    /// Lower-case hex SHA-256 of [`PTable::to_csv`]: written into file metadata as
    /// `ptable_sha256`.
    pub fn sha256(&self) -> String {
        format!("{:x}", Sha256::digest(self.to_csv().as_bytes()))
    }

    /// D: the largest absolute noise.
    pub fn max_noise(&self) -> u32 {
        self.max_noise
    }

    /// N: the largest count with its own row (row N serves all larger counts).
    pub fn largest_count(&self) -> u64 {
        self.rows.len() as u64
    }

    /// The variance of the noise of the large-count row (row N), from its integer
    /// probabilities.
    pub fn variance(&self) -> f64 {
        let d = i64::from(self.max_noise);
        let (mut s1, mut s2) = (0i128, 0i128);
        for (i, &p) in self.large_row().iter().enumerate() {
            let noise = i128::from(i as i64 - d);
            s1 += i128::from(p) * noise;
            s2 += i128::from(p) * noise * noise;
        }
        let units = f64::from(PROBABILITY_UNITS);
        let mean = s1 as f64 / units;
        s2 as f64 / units - mean * mean
    }

    /// The row used for count `n`: each allowed noise (`max(−D, 1−row)..=D`) with its
    /// probability out of [`PROBABILITY_UNITS`]. `n = 0` gives `[(0, 10⁹)]` (zeros are never
    /// perturbed).
    pub fn probabilities(&self, n: u64) -> Vec<(i64, u32)> {
        if n == 0 {
            return vec![(0, PROBABILITY_UNITS)];
        }
        let row_count = n.min(self.largest_count());
        let d = i64::from(self.max_noise);
        let row = &self.rows[row_count as usize - 1];
        ((1 - row_count as i64).max(-d)..=d)
            .map(|noise| (noise, row[(noise + d) as usize]))
            .collect()
    }

    /// The noise for true count `n` and a cell key: `u = ⌊key·10⁹ / 2⁶⁴⌋` picks the `d` with
    /// `cum(d−1) ≤ u < cum(d)` in row `min(n, N)`. Integer arithmetic only. `n = 0` → 0.
    pub fn noise(&self, n: u64, key: u64) -> i64 {
        if n == 0 {
            return 0;
        }
        let row = &self.rows[n.min(self.largest_count()) as usize - 1];
        self.draw(row, key).0
    }

    fn large_row(&self) -> &[u32] {
        self.rows.last().map_or(&[], |row| row)
    }

    /// A noise from `row` and the fraction of the key's position inside that noise's interval
    /// (the low 64 bits of `key·10⁹`, uniform given the noise).
    fn draw(&self, row: &[u32], key: u64) -> (i64, u64) {
        let product = u128::from(key) * u128::from(PROBABILITY_UNITS);
        let u = (product >> 64) as u64;
        let rest = product as u64;
        let d = i64::from(self.max_noise);
        let mut cumulative = 0u64;
        let mut last = 0;
        for (i, &p) in row.iter().enumerate() {
            if p == 0 {
                continue;
            }
            last = i;
            cumulative += u64::from(p);
            if u < cumulative {
                return (i as i64 - d, rest);
            }
        }
        // Unreachable: rows sum to 10⁹ > u.
        (last as i64 - d, rest)
    }

    /// A value in `[−1, 1)` shaped like the large row: `(d + jitter) / (D + ½)` with `d` drawn
    /// from row N by `key` and `jitter ∈ [−½, ½)` from the key's position inside `d`'s
    /// interval. Only correctly rounded `f64` operations on integers: deterministic.
    fn unit_noise(&self, key: u64) -> f64 {
        let (d, rest) = self.draw(self.large_row(), key);
        let jitter = (rest >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        (d as f64 + jitter) / (f64::from(self.max_noise) + 0.5)
    }
}

/// Moments of p(d) ∝ exp(−a·d − b·d²) on a support.
struct Moments {
    p: Vec<f64>,
    log_z: f64,
    m1: f64,
    m2: f64,
    m3: f64,
    m4: f64,
}

impl Moments {
    fn at(support: &[f64], a: f64, b: f64) -> Self {
        let exponents: Vec<f64> = support.iter().map(|&d| -a * d - b * d * d).collect();
        let top = exponents.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = exponents.iter().map(|e| (e - top).exp()).collect();
        let z: f64 = weights.iter().sum();
        let p: Vec<f64> = weights.iter().map(|w| w / z).collect();
        let (mut m1, mut m2, mut m3, mut m4) = (0.0, 0.0, 0.0, 0.0);
        for (&pi, &d) in p.iter().zip(support) {
            m1 += pi * d;
            m2 += pi * d * d;
            m3 += pi * d * d * d;
            m4 += pi * d * d * d * d;
        }
        Self {
            p,
            log_z: top + z.ln(),
            m1,
            m2,
            m3,
            m4,
        }
    }
}

const MAX_ITERATIONS: usize = 500;
const TOLERANCE: f64 = 1e-11;

/// The maximum-entropy distribution on `lo..=hi` (`lo ≤ 0 < hi`) with mean 0 and variance
/// `variance`, or the largest variance the support allows (see [`PTable::generate`]).
/// `None` if the solver does not converge.
fn max_entropy(lo: i64, hi: i64, variance: f64) -> Option<Vec<f64>> {
    let largest = (-lo * hi) as f64;
    if variance >= largest {
        let span = (hi - lo) as f64;
        let mut p = vec![0.0; (hi - lo + 1) as usize];
        p[0] = hi as f64 / span;
        if let Some(top) = p.last_mut() {
            *top = -lo as f64 / span;
        }
        return Some(p);
    }
    let support: Vec<f64> = (lo..=hi).map(|d| d as f64).collect();
    let symmetric = lo == -hi;
    let (mut a, mut b) = (0.0f64, 0.0f64);
    let mut m = Moments::at(&support, a, b);
    for _ in 0..MAX_ITERATIONS {
        // Gradient of F(a, b) = log Z + b·V: (−E[d], V − E[d²]).
        let g = [-m.m1, variance - m.m2];
        if g[0].abs() <= TOLERANCE && g[1].abs() <= TOLERANCE * variance.max(1.0) {
            return Some(m.p);
        }
        // Hessian: the covariance of (d, d²).
        let h11 = m.m2 - m.m1 * m.m1;
        let h12 = m.m3 - m.m1 * m.m2;
        let h22 = m.m4 - m.m2 * m.m2;
        let (da, db) = if symmetric {
            (0.0, -g[1] / h22)
        } else {
            let det = h11 * h22 - h12 * h12;
            (
                -(h22 * g[0] - h12 * g[1]) / det,
                -(h11 * g[1] - h12 * g[0]) / det,
            )
        };
        if !da.is_finite() || !db.is_finite() {
            return None;
        }
        let f0 = m.log_z + b * variance;
        let slope = g[0] * da + g[1] * db;
        let norm = g[0].hypot(g[1]);
        let mut t = 1.0;
        loop {
            let (na, nb) = (a + t * da, b + t * db);
            let next = Moments::at(&support, na, nb);
            let f1 = next.log_z + nb * variance;
            let next_norm = next.m1.hypot(variance - next.m2);
            // Armijo; or, where F is flat to rounding, a smaller gradient.
            if f1 <= f0 + 1e-4 * t * slope || next_norm < 0.5 * norm || t < 1e-12 {
                a = na;
                b = nb;
                m = next;
                break;
            }
            t *= 0.5;
        }
    }
    None
}

/// Rounds probabilities (of noise `lo, lo+1, …`) to integers summing to 10⁹ by largest
/// remainder; ties go to the smaller |d|, then to the negative one.
fn quantise(p: &[f64], lo: i64) -> Vec<u32> {
    let scale = f64::from(PROBABILITY_UNITS);
    let mut units: Vec<u64> = p
        .iter()
        .map(|&x| (x.clamp(0.0, 1.0) * scale).floor() as u64)
        .collect();
    let remainder = |i: usize| p[i].clamp(0.0, 1.0) * scale - units[i] as f64;
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&i, &j| {
        remainder(j)
            .total_cmp(&remainder(i))
            .then(((lo + i as i64).abs()).cmp(&(lo + j as i64).abs()))
            .then(i.cmp(&j))
    });
    let total: u64 = units.iter().sum();
    let target = u64::from(PROBABILITY_UNITS);
    if total < target {
        for k in 0..(target - total) as usize {
            units[order[k % order.len()]] += 1;
        }
    } else {
        let mut excess = total - target;
        // Take from the smallest remainders first, never below 0.
        while excess > 0 {
            for &i in order.iter().rev() {
                if excess > 0 && units[i] > 0 {
                    units[i] -= 1;
                    excess -= 1;
                }
            }
        }
    }
    units.into_iter().map(|u| u as u32).collect()
}

fn csv_error(line: usize, reason: impl Into<String>) -> CellKeyError {
    CellKeyError::Csv {
        line,
        reason: reason.into(),
    }
}

fn parse_csv(bytes: &[u8]) -> Result<PTable, CellKeyError> {
    use std::collections::BTreeMap;

    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut lines = bytes.split(|&b| b == b'\n').enumerate().map(|(i, line)| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        (i + 1, line)
    });
    let header_ok = lines
        .next()
        .is_some_and(|(_, line)| line.trim_ascii() == CSV_HEADER.as_bytes());
    if !header_ok {
        return Err(csv_error(
            1,
            format!("expected the header `{CSV_HEADER}` (a ptable is CSV: {CSV_HEADER})"),
        ));
    }
    let limit = i64::from(MAX_NOISE_LIMIT);
    // count → noise → (probability units, line); count → first line.
    let mut rows: BTreeMap<u64, BTreeMap<i64, (u32, usize)>> = BTreeMap::new();
    let mut last_line = 1;
    for (number, line) in lines {
        last_line = number;
        if line.trim_ascii().is_empty() {
            continue;
        }
        let Ok(text) = std::str::from_utf8(line) else {
            return Err(csv_error(number, "not valid UTF-8 text"));
        };
        let fields: Vec<&str> = text.split(',').map(str::trim).collect();
        let [count, noise, probability] = fields[..] else {
            return Err(csv_error(
                number,
                format!("expected 3 fields `{CSV_HEADER}`, found {}", fields.len()),
            ));
        };
        let count = parse_whole(count)
            .and_then(|c| u64::try_from(c).ok())
            .filter(|c| (1..=MAX_PTABLE_COUNT).contains(c))
            .ok_or_else(|| {
                csv_error(
                    number,
                    format!(
                        "count must be a whole number from 1 to {MAX_PTABLE_COUNT} (zeros are never perturbed)"
                    ),
                )
            })?;
        let noise = parse_whole(noise)
            .filter(|d| (-limit..=limit).contains(d))
            .ok_or_else(|| {
                csv_error(
                    number,
                    format!("noise must be a whole number from -{limit} to {limit}"),
                )
            })?;
        if count as i64 + noise < 1 {
            return Err(csv_error(
                number,
                format!(
                    "count {count} with noise {noise} would publish {}; allowed: count + noise ≥ 1 (noise ≥ {})",
                    count as i64 + noise,
                    1 - count as i64
                ),
            ));
        }
        let probability = parse_probability(probability).ok_or_else(|| {
            csv_error(
                number,
                "probability must be a decimal from 0 to 1 with at most 9 digits after the point",
            )
        })?;
        if let Some((_, first)) = rows
            .entry(count)
            .or_default()
            .insert(noise, (probability, number))
        {
            return Err(csv_error(
                number,
                format!(
                    "count {count}, noise {noise} is listed twice (first on line {first}); allowed: once"
                ),
            ));
        }
    }
    let Some((&largest, large_row)) = rows.last_key_value() else {
        return Err(csv_error(
            last_line,
            "no rows: a ptable needs rows for counts 1, 2, … (at least count 1)",
        ));
    };
    let first_line =
        |row: &BTreeMap<i64, (u32, usize)>| row.values().map(|&(_, line)| line).min().unwrap_or(1);
    for (expected, (&count, row)) in (1u64..).zip(&rows) {
        if count != expected {
            return Err(csv_error(
                first_line(row),
                format!(
                    "count {count} follows no row for count {expected}; allowed: counts 1, 2, 3, … without gaps"
                ),
            ));
        }
    }
    let max_noise = large_row
        .keys()
        .map(|d| d.unsigned_abs())
        .max()
        .unwrap_or(0);
    if !large_row.iter().any(|(&d, &(p, _))| d != 0 && p > 0) {
        return Err(csv_error(
            first_line(large_row),
            format!(
                "the row for count {largest} (used for every larger count) never adds noise; allowed: some probability on a noise other than 0"
            ),
        ));
    }
    let max_noise = max_noise as u32; // ≤ 20: every noise was checked against the limit
    let d = i64::from(max_noise);
    let width = 2 * max_noise as usize + 1;
    let mut dense = Vec::with_capacity(rows.len());
    for (&count, row) in &rows {
        let mut out = vec![0u32; width].into_boxed_slice();
        let mut sum = 0u64;
        for (&noise, &(p, line)) in row {
            if noise.abs() > d {
                return Err(csv_error(
                    line,
                    format!(
                        "noise {noise} is beyond ±{d}, the largest noise of the row for count {largest} (used for every larger count); allowed: -{d} to {d}"
                    ),
                ));
            }
            out[(noise + d) as usize] = p;
            sum += u64::from(p);
        }
        if sum != u64::from(PROBABILITY_UNITS) {
            return Err(csv_error(
                first_line(row),
                format!(
                    "the probabilities of count {count} sum to {}.{:09}; allowed: exactly 1",
                    sum / u64::from(PROBABILITY_UNITS),
                    sum % u64::from(PROBABILITY_UNITS)
                ),
            ));
        }
        dense.push(out);
    }
    Ok(PTable {
        max_noise,
        rows: dense,
    })
}

/// A whole number: optional sign, 1 to 12 ASCII digits.
fn parse_whole(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: i64 = digits.parse().ok()?;
    Some(if negative { -value } else { value })
}

/// A probability in units of 10⁻⁹: `I` or `I.F` with 1–9 digits of `F`, at most 1.
fn parse_probability(text: &str) -> Option<u32> {
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || whole.len() > 10 || !digits(whole) {
        return None;
    }
    if fraction.len() > 9 || !digits(fraction) || (text.contains('.') && fraction.is_empty()) {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let mut units = 0u64;
    for (i, b) in fraction.bytes().enumerate() {
        units += u64::from(b - b'0') * 10u64.pow(8 - i as u32);
    }
    let total = whole
        .checked_mul(u64::from(PROBABILITY_UNITS))?
        .checked_add(units)?;
    u32::try_from(total)
        .ok()
        .filter(|&t| t <= PROBABILITY_UNITS)
}

// ---------------------------------------------------------------------------------------
// The method
// ---------------------------------------------------------------------------------------

/// The cell-key method as configured for an audience.
#[derive(Debug, Clone, PartialEq)]
pub struct CellKeyMethod {
    pub ptable: Arc<PTable>,
    /// Relative magnitude noise m (0 to 1; [`DEFAULT_MAGNITUDE`]). A value outside 0..=1 is
    /// clamped to it, and a non-finite one counts as 0, in [`CellKeyMethod::perturb`] and
    /// [`CellKeyMethod::metadata_json`]; [`CellKeyMethod::new`] refuses both.
    pub magnitude: f64,
}

/// A cell's published values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Perturbed {
    pub visitors: u64,
    pub views: u64,
    pub bytes: u64,
}

impl CellKeyMethod {
    /// The method with a validated `magnitude` (finite, 0 to 1).
    pub fn new(ptable: Arc<PTable>, magnitude: f64) -> Result<Self, CellKeyError> {
        if !(0.0..=1.0).contains(&magnitude) {
            return Err(CellKeyError::Magnitude { magnitude });
        }
        Ok(Self { ptable, magnitude })
    }

    fn m(&self) -> f64 {
        if self.magnitude.is_finite() {
            self.magnitude.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// Perturbs one published cell. k-thresholds and suppression were decided by the caller on
    /// the true counts. With `n` the distinct visitors (`n = 0`: returned unchanged, nothing to
    /// key on and nothing published) and keys from [`cell_keys`]:
    ///
    /// - `visitors' = n + ptable.noise(n, count key)`: `≥ 1`, within ±D;
    /// - views: `z ∈ [−1, 1)` from the magnitude key, shaped like the large row
    ///   (`(d + jitter)/(D + ½)`), scale `s = max(m·views, largest single visitor's views)`,
    ///   `views' = max(views + round(s·z), visitors')` (a visitor has at least one view);
    /// - bytes: `bytes' = bytes + round(bytes · (s / views) · z_b)`, `≥ 0`, where `z_b` is
    ///   drawn the same way from a second key, the first 8 bytes of
    ///   `blake3::derive_key("logveil 2026-12-07 cell key bytes v1", magnitude key as u64 LE)`
    ///   (independent of `z`; `s / views` is replaced by m when views is 0).
    ///
    /// Rounding is deterministic: `f64` is used only on values converted from integers, with
    /// correctly rounded IEEE operations (×, ÷, +, `round` half away from zero), then
    /// converted back with saturation and clamped to `0..=u64::MAX`.
    pub fn perturb(&self, keys: &RecordKeys, cell: &CellState) -> Perturbed {
        let n = cell.visitors.len() as u64;
        if n == 0 {
            return Perturbed {
                visitors: 0,
                views: cell.views,
                bytes: cell.bytes,
            };
        }
        let ck = cell_keys(keys, cell);
        let visitors = n
            .saturating_add_signed(self.ptable.noise(n, ck.count))
            .max(1);
        let m = self.m();
        let largest = cell.visitors.values().copied().max().unwrap_or(0);
        let views_f = cell.views as f64;
        let scale = (m * views_f).max(largest as f64);
        let z = self.ptable.unit_noise(ck.magnitude);
        let views = add_rounded(cell.views, scale * z).max(visitors);
        let ratio = if cell.views > 0 { scale / views_f } else { m };
        let z_bytes = self.ptable.unit_noise(bytes_key(ck.magnitude));
        let bytes = add_rounded(cell.bytes, cell.bytes as f64 * ratio * z_bytes);
        Perturbed {
            visitors,
            views,
            bytes,
        }
    }

    /// For file metadata: `{"method":"cell_key","max_noise":D,"variance":V,"magnitude":m,
    /// "ptable_sha256":"…"}`, keys in that order; V is the large row's variance to 6
    /// decimals.
    pub fn metadata_json(&self) -> String {
        format!(
            r#"{{"method":"cell_key","max_noise":{},"variance":{},"magnitude":{},"ptable_sha256":"{}"}}"#,
            self.ptable.max_noise(),
            decimal(self.ptable.variance(), 6),
            decimal(self.m(), 9),
            self.ptable.sha256()
        )
    }
}

fn bytes_key(magnitude_key: u64) -> u64 {
    let mut hasher = blake3::Hasher::new_derive_key(BYTES_KEY_CONTEXT);
    hasher.update(&magnitude_key.to_le_bytes());
    first_word(hasher.finalize().as_bytes())
}

/// `value + round(delta)`, clamped to `0..=u64::MAX` (`NaN` adds 0).
fn add_rounded(value: u64, delta: f64) -> u64 {
    let sum = i128::from(value) + delta.round() as i128;
    sum.clamp(0, i128::from(u64::MAX)) as u64
}

/// A finite number as a JSON number with at most `places` decimals, trailing zeros trimmed.
fn decimal(x: f64, places: usize) -> String {
    if !x.is_finite() {
        return "0".to_owned();
    }
    let mut s = format!("{x:.places$}");
    if s.contains('.') {
        let trimmed = s.trim_end_matches('0').trim_end_matches('.').len();
        s.truncate(trimmed);
    }
    if s == "-0" {
        return "0".to_owned();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudonym(bytes: [u8; 16]) -> Pseudonym {
        serde_json::from_str(&format!("{bytes:?}")).unwrap()
    }

    fn mean_variance(row: &[(i64, u32)]) -> (f64, f64) {
        let units = f64::from(PROBABILITY_UNITS);
        let mean: f64 = row
            .iter()
            .map(|&(d, p)| d as f64 * f64::from(p))
            .sum::<f64>()
            / units;
        let m2: f64 = row
            .iter()
            .map(|&(d, p)| (d * d) as f64 * f64::from(p))
            .sum::<f64>()
            / units;
        (mean, m2 - mean * mean)
    }

    #[test]
    fn generated_rows_are_valid_for_many_parameters() {
        for d in 1..=MAX_NOISE_LIMIT {
            let limit = f64::from(d * d);
            for v in [
                0.01,
                0.25,
                0.5,
                1.0,
                2.0,
                4.0,
                limit * 0.5,
                limit * 0.9,
                limit * 0.999,
            ] {
                if v >= limit {
                    continue;
                }
                let table = PTable::generate(d, v).unwrap_or_else(|e| panic!("D {d} V {v}: {e}"));
                assert_eq!(table.largest_count(), u64::from(2 * d + 1));
                for n in 1..=table.largest_count() + 3 {
                    let row = table.probabilities(n);
                    let sum: u64 = row.iter().map(|&(_, p)| u64::from(p)).sum();
                    assert_eq!(sum, u64::from(PROBABILITY_UNITS), "D {d} V {v} n {n}");
                    for &(noise, p) in &row {
                        assert!(noise.unsigned_abs() <= u64::from(d));
                        assert!(p == 0 || n as i64 + noise >= 1, "D {d} V {v} n {n}");
                    }
                    let (mean, var) = mean_variance(&row);
                    assert!(mean.abs() < 1e-6, "D {d} V {v} n {n}: mean {mean}");
                    // Relaxed where the support cannot reach V with mean 0.
                    let lo = (1 - n.min(table.largest_count()) as i64).max(-i64::from(d));
                    let reachable = v.min((-lo * i64::from(d)) as f64);
                    assert!(
                        (var - reachable).abs() < 1e-6 * limit.max(1.0),
                        "D {d} V {v} n {n}: variance {var}, expected {reachable}"
                    );
                }
            }
        }
    }

    #[test]
    fn large_row_is_symmetric() {
        let table = PTable::generate(4, 2.5).unwrap();
        let row = table.probabilities(1000);
        for &(d, p) in &row {
            let mirror = row.iter().find(|&&(e, _)| e == -d).unwrap().1;
            assert!(p.abs_diff(mirror) <= 1, "d {d}: {p} vs {mirror}");
        }
    }

    #[test]
    fn invalid_parameters_are_errors() {
        assert!(matches!(
            PTable::generate(0, 1.0),
            Err(CellKeyError::MaxNoise { .. })
        ));
        assert!(matches!(
            PTable::generate(21, 1.0),
            Err(CellKeyError::MaxNoise { .. })
        ));
        for v in [0.0, 0.009, -1.0, 4.0, 5.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                PTable::generate(2, v),
                Err(CellKeyError::Variance { .. })
            ));
        }
        let table = Arc::new(PTable::generate(2, 1.0).unwrap());
        assert!(CellKeyMethod::new(table.clone(), f64::NAN).is_err());
        assert!(CellKeyMethod::new(table.clone(), 1.5).is_err());
        assert!(CellKeyMethod::new(table, 0.05).is_ok());
    }

    #[test]
    fn noise_lookup_follows_cumulative_probabilities() {
        let table = PTable::parse_csv(
            b"count,noise,probability\n1,0,0.5\n1,1,0.5\n2,-1,0.25\n2,0,0.5\n2,1,0.25\n",
        )
        .unwrap();
        // u = floor(key * 1e9 / 2^64).
        let key_for = |u: u64| ((u128::from(u) << 64) / 1_000_000_000 + 1) as u64;
        assert_eq!(table.noise(0, key_for(999_999_999)), 0);
        assert_eq!(table.noise(1, 0), 0);
        assert_eq!(table.noise(1, key_for(499_999_999)), 0);
        assert_eq!(table.noise(1, key_for(500_000_000)), 1);
        assert_eq!(table.noise(2, 0), -1);
        assert_eq!(table.noise(2, key_for(249_999_999)), -1);
        assert_eq!(table.noise(2, key_for(250_000_000)), 0);
        assert_eq!(table.noise(2, key_for(750_000_000)), 1);
        assert_eq!(table.noise(7, u64::MAX), 1);
    }

    #[test]
    fn unit_noise_stays_in_range() {
        let table = PTable::generate(DEFAULT_MAX_NOISE, DEFAULT_VARIANCE).unwrap();
        for key in [0, 1, u64::MAX, u64::MAX / 2, 1 << 63, 12_345_678_901_234] {
            let z = table.unit_noise(key);
            assert!((-1.0..1.0).contains(&z), "{key}: {z}");
        }
        assert!(table.unit_noise(0) <= -1.0 + 1e-9);
    }

    #[test]
    fn record_keys_are_pinned() {
        // Pins the record-key encoding: a change changes every published number.
        let keys = RecordKeys::new(&[7u8; 32], "public");
        let visitor = pseudonym(std::array::from_fn(|i| i as u8 + 1));
        let secret = seed_for(&[7u8; 32], &[RECORD_KEY_CONTEXT.as_bytes(), b"public"]);
        let mut input = vec![0x01];
        input.extend_from_slice(visitor.as_bytes());
        let expected = first_word(blake3::keyed_hash(&secret, &input).as_bytes());
        assert_eq!(keys.count_key(&visitor), expected);
        assert_ne!(keys.count_key(&visitor), keys.magnitude_key(&visitor));
        let other = RecordKeys::new(&[7u8; 32], "partner");
        assert_ne!(keys.count_key(&visitor), other.count_key(&visitor));
        assert_eq!(format!("{keys:?}"), "RecordKeys { .. }");
    }

    #[test]
    fn metadata_json_is_valid_and_ordered() {
        let method = CellKeyMethod::new(
            Arc::new(PTable::generate(DEFAULT_MAX_NOISE, DEFAULT_VARIANCE).unwrap()),
            DEFAULT_MAGNITUDE,
        )
        .unwrap();
        let json = method.metadata_json();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["method"], "cell_key");
        assert_eq!(value["max_noise"], DEFAULT_MAX_NOISE);
        assert_eq!(value["magnitude"], 0.05);
        assert!((value["variance"].as_f64().unwrap() - DEFAULT_VARIANCE).abs() < 1e-6);
        assert_eq!(value["ptable_sha256"], method.ptable.sha256().as_str());
        let order: Vec<usize> = [
            "\"method\"",
            "\"max_noise\"",
            "\"variance\"",
            "\"magnitude\"",
            "\"ptable_sha256\"",
        ]
        .iter()
        .map(|k| json.find(k).unwrap())
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{json}");
    }

    #[test]
    fn decimal_formatting() {
        assert_eq!(decimal(1.0, 6), "1");
        assert_eq!(decimal(0.999_999_999_9, 6), "1");
        assert_eq!(decimal(0.05, 9), "0.05");
        assert_eq!(decimal(-0.0, 6), "0");
        assert_eq!(decimal(f64::NAN, 6), "0");
        assert_eq!(decimal(12.5, 6), "12.5");
    }

    #[test]
    fn probability_and_whole_number_parsing() {
        assert_eq!(parse_probability("1"), Some(PROBABILITY_UNITS));
        assert_eq!(parse_probability("1.000000000"), Some(PROBABILITY_UNITS));
        assert_eq!(parse_probability("0.5"), Some(500_000_000));
        assert_eq!(parse_probability("0.000000001"), Some(1));
        assert_eq!(parse_probability("0.0000000001"), None);
        assert_eq!(parse_probability("1.000000001"), None);
        assert_eq!(parse_probability("2"), None);
        assert_eq!(parse_probability(".5"), None);
        assert_eq!(parse_probability("0."), None);
        assert_eq!(parse_probability("-0.5"), None);
        assert_eq!(parse_probability("99999999999999999999999"), None);
        assert_eq!(parse_probability("1e-3"), None);
        assert_eq!(parse_whole("-3"), Some(-3));
        assert_eq!(parse_whole("+3"), Some(3));
        assert_eq!(parse_whole("-"), None);
        assert_eq!(parse_whole("3.0"), None);
        assert_eq!(parse_whole("99999999999999999999"), None);
    }

    #[test]
    fn quantise_sums_exactly() {
        let units = quantise(&[1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0], -1);
        assert_eq!(
            units.iter().map(|&u| u64::from(u)).sum::<u64>(),
            1_000_000_000
        );
        // The tie goes to the smaller |d|.
        assert_eq!(units, vec![333_333_333, 333_333_334, 333_333_333]);
        let two_point = quantise(&[2.0 / 3.0, 0.0, 0.0, 1.0 / 3.0], -1);
        assert_eq!(two_point, vec![666_666_667, 0, 0, 333_333_333]);
    }
}
