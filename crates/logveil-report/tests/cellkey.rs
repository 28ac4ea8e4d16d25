//! The cell-key method (`logveil_report::cellkey`): perturbation tables (generated and read
//! from CSV), consistency (noise is a function of the contributor set), bounds, and the
//! statistics that make differencing non-exact.

use std::sync::Arc;

use logveil_privacy::Pseudonym;
use logveil_report::CellState;
use logveil_report::cellkey::{
    CellKeyError, CellKeyMethod, DEFAULT_MAGNITUDE, DEFAULT_MAX_NOISE, DEFAULT_VARIANCE,
    MAX_PTABLE_FILE_BYTES, PROBABILITY_UNITS, PTable, Perturbed, RecordKeys, cell_keys,
};
use proptest::prelude::*;

fn pseudonym(bytes: [u8; 16]) -> Pseudonym {
    serde_json::from_str(&format!("{bytes:?}")).unwrap()
}

/// The `i`-th pseudonym of a deterministic stream named `stream`.
fn nth_pseudonym(stream: &str, i: u64) -> Pseudonym {
    let mut hasher = blake3::Hasher::new();
    hasher.update(stream.as_bytes());
    hasher.update(&i.to_le_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    pseudonym(bytes)
}

fn add(cell: &mut CellState, visitor: Pseudonym, views: u64, bytes: u64) {
    cell.views += views;
    cell.bytes += bytes;
    *cell.visitors.entry(visitor).or_default() += views;
}

fn default_table() -> PTable {
    PTable::generate(DEFAULT_MAX_NOISE, DEFAULT_VARIANCE).unwrap()
}

fn default_method() -> CellKeyMethod {
    CellKeyMethod::new(Arc::new(default_table()), DEFAULT_MAGNITUDE).unwrap()
}

fn keys() -> RecordKeys {
    RecordKeys::new(&[42u8; 32], "public")
}

fn moments(row: &[(i64, u32)]) -> (f64, f64) {
    let units = f64::from(PROBABILITY_UNITS);
    let mean = row
        .iter()
        .map(|&(d, p)| d as f64 * f64::from(p))
        .sum::<f64>()
        / units;
    let m2 = row
        .iter()
        .map(|&(d, p)| (d * d) as f64 * f64::from(p))
        .sum::<f64>()
        / units;
    (mean, m2 - mean * mean)
}

// ---------------------------------------------------------------------------------------
// Generated tables
// ---------------------------------------------------------------------------------------

#[test]
fn default_table_rows_are_valid() {
    let table = default_table();
    let d = i64::from(DEFAULT_MAX_NOISE);
    assert_eq!(table.max_noise(), DEFAULT_MAX_NOISE);
    assert_eq!(table.largest_count(), 2 * u64::from(DEFAULT_MAX_NOISE) + 1);
    for n in 1..=20u64 {
        let row = table.probabilities(n);
        let sum: u64 = row.iter().map(|&(_, p)| u64::from(p)).sum();
        assert_eq!(sum, u64::from(PROBABILITY_UNITS), "n {n}");
        for &(noise, p) in &row {
            assert!((-d..=d).contains(&noise), "n {n}: noise {noise}");
            assert!(
                p == 0 || n as i64 + noise >= 1,
                "n {n}: noise {noise} p {p}"
            );
        }
        let (mean, _) = moments(&row);
        assert!(mean.abs() < 0.01, "n {n}: mean {mean}");
    }
    // A count of 1 cannot go down, so with mean 0 it cannot move at all.
    assert_eq!(
        table.probabilities(1),
        (0..=i64::from(DEFAULT_MAX_NOISE))
            .map(|d| (d, if d == 0 { PROBABILITY_UNITS } else { 0 }))
            .collect::<Vec<_>>()
    );
    let large = table.probabilities(1_000_000);
    let (mean, variance) = moments(&large);
    assert!(mean.abs() < 0.01, "mean {mean}");
    assert!(
        (variance - DEFAULT_VARIANCE).abs() < 1e-6,
        "variance {variance}"
    );
    assert!((table.variance() - DEFAULT_VARIANCE).abs() < 1e-6);
}

/// The reason for the defaults: two large cells that differ by one person get equal noise
/// (so their published difference is exact) with probability Σ p(d)², which must be at most
/// 0.3 — a one-person difference is hidden with probability at least 0.7.
#[test]
fn default_table_hides_a_one_person_difference_with_probability_at_least_0_7() {
    let table = default_table();
    let units = f64::from(PROBABILITY_UNITS);
    let equal: f64 = table
        .probabilities(1_000)
        .iter()
        .map(|&(_, p)| (f64::from(p) / units).powi(2))
        .sum();
    assert!(equal <= 0.3, "Σ p² = {equal}");
    // The rows of counts n and n − 1 just above the table's own rows, likewise.
    let n = table.largest_count() + 1;
    let cross: f64 = table
        .probabilities(n)
        .iter()
        .zip(table.probabilities(n - 1))
        .map(|(&(d, p), (e, q))| {
            assert_eq!(d, e);
            f64::from(p) / units * f64::from(q) / units
        })
        .sum();
    assert!(cross <= 0.3, "Σ p_n p_(n-1) = {cross}");
}

/// Pins the default table. Changing it changes every published number (and every file's
/// `ptable_sha256`): only ever change it on purpose, as a new method version.
#[test]
fn default_table_golden_sha256() {
    assert_eq!(
        default_table().sha256(),
        "a6e56755315b3456738eb947cda4bb2fcb62b652f3ab29d69ecb882546f73fa3"
    );
}

#[test]
fn generated_tables_round_trip_through_csv() {
    for (d, v) in [
        (1, 0.5),
        (2, 1.0),
        (3, 1.0),
        (5, 2.5),
        (20, 100.0),
        (20, 0.01),
    ] {
        let table = PTable::generate(d, v).unwrap();
        let csv = table.to_csv();
        let back = PTable::parse_csv(csv.as_bytes()).unwrap();
        assert_eq!(back, table, "D {d} V {v}");
        assert_eq!(back.sha256(), table.sha256());
        assert_eq!(back.to_csv(), csv);
    }
}

#[test]
fn csv_forms_of_one_table_parse_to_it() {
    let canonical = "count,noise,probability\n1,0,1.000000000\n1,1,0.000000000\n2,-1,0.250000000\n2,0,0.500000000\n2,1,0.250000000\n";
    let table = PTable::parse_csv(canonical.as_bytes()).unwrap();
    assert_eq!(table.to_csv(), canonical);
    assert_eq!(table.max_noise(), 1);
    // BOM, CRLF, spaces, blank lines, any order, zero probabilities left out.
    let loose = "\u{feff}count,noise,probability\r\n\r\n2, 1 ,0.25\r\n 2,-1,.25\r\n";
    assert!(
        PTable::parse_csv(loose.as_bytes()).is_err(),
        "`.25` is not a decimal"
    );
    let loose =
        "\u{feff}count,noise,probability\r\n\r\n2, 1 ,0.25\r\n 2,-1,0.25\r\n2,+0,0.5\r\n1,0,1\r\n";
    assert_eq!(PTable::parse_csv(loose.as_bytes()).unwrap(), table);
}

// ---------------------------------------------------------------------------------------
// Malformed tables: errors naming the line, never panics
// ---------------------------------------------------------------------------------------

fn csv_error(input: &[u8]) -> (usize, String) {
    match PTable::parse_csv(input) {
        Err(CellKeyError::Csv { line, reason }) => (line, reason),
        other => panic!(
            "expected a CSV error for {:?}, got {other:?}",
            String::from_utf8_lossy(input)
        ),
    }
}

#[test]
fn malformed_csvs_are_errors_naming_the_line() {
    const H: &str = "count,noise,probability\n";
    let cases: Vec<(Vec<u8>, usize, &str)> = vec![
        (b"".to_vec(), 1, "header"),
        (b"1,0,1\n2,-1,0.5\n2,1,0.5\n".to_vec(), 1, "header"),
        (
            b"count,noise,probability,extra\n1,0,1\n".to_vec(),
            1,
            "header",
        ),
        (H.as_bytes().to_vec(), 2, "no rows"),
        // A row not summing to 1 (named at the count's first line).
        (
            format!("{H}1,0,1\n2,-1,0.3\n2,0,0.3\n2,1,0.3\n").into_bytes(),
            3,
            "sum to 0.900000000",
        ),
        (
            format!("{H}1,0,0.6\n1,1,0.6\n2,-1,0.5\n2,1,0.5\n").into_bytes(),
            2,
            "sum to 1.200000000",
        ),
        // Noise beyond D (D = the largest noise of the last row).
        (
            format!("{H}1,0,0.5\n1,3,0.5\n2,-1,0.5\n2,1,0.5\n").into_bytes(),
            3,
            "beyond ±1",
        ),
        // n + d < 1.
        (
            format!("{H}1,-1,0.5\n1,1,0.5\n").into_bytes(),
            2,
            "count + noise ≥ 1",
        ),
        (
            format!("{H}1,0,1\n2,-2,0.5\n2,2,0.5\n").into_bytes(),
            3,
            "count + noise ≥ 1",
        ),
        // Not UTF-8.
        (
            format!("{H}1,0,1\n")
                .into_bytes()
                .into_iter()
                .chain(*b"2,0,\xff\n")
                .collect(),
            3,
            "UTF-8",
        ),
        // Huge numbers.
        (
            format!("{H}99999999999999999999999,0,1\n").into_bytes(),
            2,
            "count must be",
        ),
        (format!("{H}10001,0,1\n").into_bytes(), 2, "count must be"),
        (format!("{H}0,0,1\n").into_bytes(), 2, "count must be"),
        (
            format!("{H}1,100000000000000,1\n").into_bytes(),
            2,
            "noise must be",
        ),
        (format!("{H}1,21,1\n").into_bytes(), 2, "noise must be"),
        (
            format!("{H}1,0,100000000000000000000000000\n").into_bytes(),
            2,
            "probability must be",
        ),
        (
            format!("{H}1,0,1.5\n").into_bytes(),
            2,
            "probability must be",
        ),
        (
            format!("{H}1,0,0.1234567891\n").into_bytes(),
            2,
            "probability must be",
        ),
        (
            format!("{H}1,0,-0\n").into_bytes(),
            2,
            "probability must be",
        ),
        (
            format!("{H}1,0,1e0\n").into_bytes(),
            2,
            "probability must be",
        ),
        // Shape.
        (format!("{H}1,0\n").into_bytes(), 2, "3 fields"),
        (format!("{H}1,0,1,0\n").into_bytes(), 2, "3 fields"),
        (format!("{H}1,0,1\n1,0,0\n").into_bytes(), 3, "twice"),
        (
            format!("{H}1,0,1\n3,-1,0.5\n3,1,0.5\n").into_bytes(),
            3,
            "no row for count 2",
        ),
        (
            format!("{H}2,-1,0.5\n2,1,0.5\n").into_bytes(),
            2,
            "no row for count 1",
        ),
        // The last row must add noise.
        (
            format!("{H}1,0,1\n2,-1,0\n2,0,1\n2,1,0\n").into_bytes(),
            3,
            "never adds noise",
        ),
        (format!("{H}1,0,1\n").into_bytes(), 2, "never adds noise"),
    ];
    for (input, line, fragment) in cases {
        let (got_line, reason) = csv_error(&input);
        assert_eq!(
            got_line,
            line,
            "{:?}: {reason}",
            String::from_utf8_lossy(&input)
        );
        assert!(
            reason.contains(fragment),
            "{:?}: `{reason}` lacks `{fragment}`",
            String::from_utf8_lossy(&input)
        );
    }
}

#[test]
fn ptable_files_name_path_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.csv");
    std::fs::write(&good, default_table().to_csv()).unwrap();
    assert_eq!(PTable::from_csv_file(&good).unwrap(), default_table());

    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "count,noise,probability\n1,0,1\n2,-1,0.5\n2,1,0.4\n").unwrap();
    let err = PTable::from_csv_file(&bad).unwrap_err();
    assert!(
        matches!(err, CellKeyError::CsvFile { line: 3, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("bad.csv") && text.contains("line 3"),
        "{text}"
    );

    let missing = dir.path().join("missing.csv");
    let err = PTable::from_csv_file(&missing).unwrap_err();
    assert!(matches!(err, CellKeyError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.csv"));

    let large = dir.path().join("large.csv");
    std::fs::write(&large, vec![b'\n'; MAX_PTABLE_FILE_BYTES as usize + 1]).unwrap();
    let err = PTable::from_csv_file(&large).unwrap_err();
    assert!(matches!(err, CellKeyError::TooLarge { .. }), "{err:?}");
}

proptest! {
    #[test]
    fn parse_csv_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = PTable::parse_csv(&bytes);
        let mut with_header = b"count,noise,probability\n".to_vec();
        with_header.extend_from_slice(&bytes);
        let _ = PTable::parse_csv(&with_header);
    }

    #[test]
    fn parse_csv_never_panics_on_mutated_tables(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut bytes = PTable::generate(2, 1.0).unwrap().to_csv().into_bytes();
        for (at, byte, kind) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => { bytes.remove(i); }
            }
        }
        if let Ok(table) = PTable::parse_csv(&bytes) {
            // Anything accepted is a valid table and round-trips.
            let back = PTable::parse_csv(table.to_csv().as_bytes()).unwrap();
            prop_assert_eq!(&back, &table);
            for n in 1..=table.largest_count() + 1 {
                let row = table.probabilities(n);
                prop_assert_eq!(row.iter().map(|&(_, p)| u64::from(p)).sum::<u64>(), u64::from(PROBABILITY_UNITS));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Perturbation
// ---------------------------------------------------------------------------------------

/// Pins the whole chain (record keys, cell keys, lookup, magnitudes) for one cell: a change
/// changes every published number.
#[test]
fn perturbation_golden() {
    let mut cell = CellState::default();
    for i in 0..25 {
        add(
            &mut cell,
            nth_pseudonym("golden", i),
            1 + i % 4,
            1_000 * (i + 1),
        );
    }
    let keys = RecordKeys::new(&[42u8; 32], "public");
    let ck = cell_keys(&keys, &cell);
    let p = default_method().perturb(&keys, &cell);
    assert_eq!(
        (ck.count, ck.magnitude, p),
        (
            GOLDEN_COUNT_KEY,
            GOLDEN_MAGNITUDE_KEY,
            Perturbed {
                visitors: GOLDEN_PERTURBED.0,
                views: GOLDEN_PERTURBED.1,
                bytes: GOLDEN_PERTURBED.2,
            }
        )
    );
}

const GOLDEN_COUNT_KEY: u64 = 7_558_271_378_990_644_457;
const GOLDEN_MAGNITUDE_KEY: u64 = 5_320_238_784_723_133_466;
/// True values: 25 visitors, 61 views, 325 000 bytes.
const GOLDEN_PERTURBED: (u64, u64, u64) = (25, 60, 320_483);

#[test]
fn an_empty_cell_is_not_perturbed() {
    let cell = CellState::default();
    assert_eq!(
        default_method().perturb(&keys(), &cell),
        Perturbed {
            visitors: 0,
            views: 0,
            bytes: 0
        }
    );
}

#[test]
fn one_dominant_visitor_is_hidden_in_views() {
    // One visitor with 1000 of 1010 views: the scale is at least their views, so views are
    // not pinned to within 5 %.
    let method = default_method();
    let keys = keys();
    let mut spread = 0u64;
    for set in 0..200 {
        let mut cell = CellState::default();
        add(&mut cell, nth_pseudonym("dominant", set * 100), 1_000, 0);
        for i in 1..=10 {
            add(&mut cell, nth_pseudonym("dominant", set * 100 + i), 1, 0);
        }
        let p = method.perturb(&keys, &cell);
        assert!(p.views <= 2_010 && p.views >= p.visitors, "{p:?}");
        spread = spread.max(p.views.abs_diff(1_010));
    }
    assert!(spread > 500, "largest deviation {spread}");
}

#[test]
fn audiences_get_unrelated_noise() {
    let table = default_table();
    let (a, b) = (
        RecordKeys::new(&[1u8; 32], "public"),
        RecordKeys::new(&[1u8; 32], "partner"),
    );
    let mut equal = 0;
    for set in 0..1000 {
        let mut cell = CellState::default();
        for i in 0..30 {
            add(&mut cell, nth_pseudonym("audiences", set * 1000 + i), 1, 0);
        }
        equal += u32::from(
            table.noise(30, cell_keys(&a, &cell).count)
                == table.noise(30, cell_keys(&b, &cell).count),
        );
    }
    // Independent draws agree with probability Σ p² ≈ 0.275.
    assert!((200..=350).contains(&equal), "{equal} of 1000 equal");
}

fn build(entries: &[([u8; 16], u64, u64)], order: &[usize]) -> CellState {
    let mut cell = CellState::default();
    for &i in order {
        let (p, views, bytes) = entries[i];
        add(&mut cell, pseudonym(p), views, bytes);
    }
    cell
}

proptest! {
    #[test]
    fn perturbation_is_a_function_of_the_contributor_set(
        entries in prop::collection::vec((any::<[u8; 16]>(), 1u64..50, 0u64..1_000_000), 1..60),
        split in any::<prop::sample::Index>(),
        shuffle in any::<u64>(),
        magnitude in 0.0f64..=1.0,
    ) {
        let method = CellKeyMethod::new(Arc::new(default_table()), magnitude).unwrap();
        let keys = keys();
        let forward: Vec<usize> = (0..entries.len()).collect();
        let reverse: Vec<usize> = forward.iter().rev().copied().collect();
        let mut shuffled = forward.clone();
        shuffled.sort_by_key(|&i| blake3::hash(&[shuffle.to_le_bytes(), (i as u64).to_le_bytes()].concat()).as_bytes()[..8].to_vec());
        let a = build(&entries, &forward);
        let expected = method.perturb(&keys, &a);
        prop_assert_eq!(method.perturb(&keys, &build(&entries, &reverse)), expected);
        prop_assert_eq!(method.perturb(&keys, &build(&entries, &shuffled)), expected);
        // Split across two states (as two workers would), then merged.
        let at = split.index(entries.len() + 1);
        let mut left = build(&entries, &shuffled[..at]);
        let right = build(&entries, &shuffled[at..]);
        let mut by_ref = left.clone();
        by_ref.merge_ref(&right);
        left.merge(right);
        prop_assert_eq!(method.perturb(&keys, &left), expected);
        prop_assert_eq!(method.perturb(&keys, &by_ref), expected);
        prop_assert_eq!(cell_keys(&keys, &left), cell_keys(&keys, &a));

        // Bounds.
        let n = a.visitors.len() as u64;
        let d = u64::from(DEFAULT_MAX_NOISE);
        prop_assert!(expected.visitors.abs_diff(n) <= d);
        prop_assert!(expected.visitors >= 1);
        prop_assert!(expected.views >= expected.visitors);
        let largest = a.visitors.values().copied().max().unwrap();
        let scale = (magnitude * a.views as f64).max(largest as f64);
        prop_assert!(expected.views as f64 >= a.views as f64 - scale - 0.5);
        prop_assert!(expected.views as f64 <= (a.views as f64 + scale + 0.5).max(expected.visitors as f64));
        let ratio = scale / a.views as f64;
        prop_assert!((expected.bytes as f64 - a.bytes as f64).abs() <= a.bytes as f64 * ratio + 0.5);
    }
}

// ---------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------

/// Over 2000 random sets of 20 visitors: the visitor noise has mean ≈ 0, and a set and the
/// same set without one visitor (a one-person difference) get equal noise — so an exact
/// difference — in at most 25 % of pairs (Σ p² ≈ 0.19 for the default table).
#[test]
fn noise_is_unbiased_and_one_person_differences_are_not_exact() {
    let method = default_method();
    let keys = keys();
    let sets = 2_000u64;
    let (mut total_noise, mut equal, mut nonzero) = (0i64, 0u64, 0u64);
    for set in 0..sets {
        let mut cell = CellState::default();
        for i in 0..20 {
            add(&mut cell, nth_pseudonym("statistics", set * 20 + i), 1, 100);
        }
        let full = method.perturb(&keys, &cell);
        let noise = full.visitors as i64 - 20;
        total_noise += noise;
        nonzero += u64::from(noise != 0);
        let leaver = nth_pseudonym("statistics", set * 20 + set % 20);
        cell.visitors.remove(&leaver);
        cell.views -= 1;
        cell.bytes -= 100;
        let without = method.perturb(&keys, &cell);
        equal += u64::from(without.visitors as i64 - 19 == noise);
    }
    let mean = total_noise as f64 / sets as f64;
    let equal = equal as f64 / sets as f64;
    let nonzero = nonzero as f64 / sets as f64;
    assert!(mean.abs() <= 0.15, "mean noise {mean}");
    assert!(equal <= 0.25, "{equal} of one-person differences exact");
    // And the noise is really there (p(0) ≈ 0.28 for the large row).
    assert!(
        (0.65..=0.80).contains(&nonzero),
        "{nonzero} of cells perturbed"
    );
}
