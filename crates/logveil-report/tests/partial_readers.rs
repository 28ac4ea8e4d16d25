//! The `visitors_hll` column of partials as analysts read it: Apache `DataSketches`' Python
//! bindings deserialize every sketch, estimate each cell within 3 % (or the sketch's
//! 3-sigma bounds) of its exact visitors, and union the sketches of a dimension key across
//! windows and partitions to within the union's 3-sigma bounds of the exact distinct
//! visitors; `DuckDB` reads the column as BLOB. The checks are `tests/readers/check_hll.py`.
//!
//! Needs the workspace's `.venv` (`scripts/setup-test-deps`) with `datasketches`, `duckdb`
//! and `pyarrow` (or a Python with them in `LOGVEIL_PYTHON`, as `scripts/test` sets).
//! Without it the test is skipped with a notice, except under CI (`CI` set), where that is
//! a failure.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, BinaryArray, RecordBatch};
use logveil_parse::time::days_from_civil;
use logveil_privacy::{Dimension, Pseudonym, Purpose};
use logveil_report::partial::{PartialMeta, VISITORS_HLL, partial_file_name};
use logveil_report::{
    Bucket, CellKey, Filters, LegalClass, Metric, ReportSpec, ReportState, encode_partial,
};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::WriterProperties;

const PARTITIONS: u32 = 3;
const LG_K: u8 = 12;
/// Pages and the share of a window's visitors that view each.
const PAGES: [(&str, u64); 4] = [
    ("/", 90),
    ("/news", 50),
    ("/pricing", 20),
    ("/docs/install", 10),
];
/// Referrer domains and the share of visitors that come from each (a visitor always the same).
const REFERRERS: [(&str, u64); 2] = [("-", 70), ("search.example", 30)];

fn spec() -> ReportSpec {
    ReportSpec {
        name: "pages_daily".into(),
        audience: "internal".into(),
        purpose_name: "analytics".into(),
        purpose: Purpose {
            description: String::new(),
            join_accounts: false,
            consent: None,
            contact: false,
        },
        bucket: Bucket::Day,
        dimensions: vec![Dimension::Page, Dimension::ReferrerDomain],
        metrics: vec![Metric::Views, Metric::Visitors],
        include_bots: false,
        k_min: 1,
        visitor_id: false,
        filters: Filters::default(),
        totals: false,
        complementary_suppression: false,
        dp: None,
        legal_class: LegalClass::InternalPseudonymous,
        external: false,
        perturbation: None,
    }
}

fn pseudonym(bytes: [u8; 16]) -> Pseudonym {
    // Pseudonyms are opaque; serde is the public constructor.
    serde_json::from_value(serde_json::json!(bytes)).unwrap()
}

/// A deterministic pseudo-random number in 0..100 for (seed, visitor, what).
fn roll(visitor: u64, what: &str) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"partial_readers seed 1");
    hasher.update(&visitor.to_le_bytes());
    hasher.update(what.as_bytes());
    u64::from_le_bytes(hasher.finalize().as_bytes()[..8].try_into().unwrap()) % 100
}

/// The `i`-th visitor's pseudonym (uniformly distributed bytes).
fn visitor(i: u64) -> Pseudonym {
    let hash = blake3::hash(&i.to_le_bytes());
    pseudonym(hash.as_bytes()[..16].try_into().unwrap())
}

/// Picks from `(value, percent)` pairs that sum to 100.
fn pick<'a>(choices: &[(&'a str, u64)], r: u64) -> &'a str {
    let mut acc = 0;
    for (value, share) in choices {
        acc += share;
        if r < acc {
            return value;
        }
    }
    unreachable!("shares sum to 100")
}

/// The states of one window, one per partition: visitors `range` each view every page
/// they roll (1 to 4 views), from their referrer.
fn window_states(day: i32, range: std::ops::Range<u64>) -> Vec<ReportState> {
    let mut states: Vec<ReportState> = (0..PARTITIONS)
        .map(|_| {
            let mut state = ReportState::default();
            state
                .partitions
                .insert(day, BTreeSet::from([Arc::from("prod-2027")]));
            state
        })
        .collect();
    for i in range {
        let pseudonym = visitor(i);
        let state = &mut states[pseudonym.partition(PARTITIONS) as usize];
        let referrer = pick(&REFERRERS, roll(i, "referrer"));
        for (page, share) in PAGES {
            if roll(i, &format!("{day} {page}")) >= share {
                continue;
            }
            let views = 1 + roll(i, &format!("{day} {page} views")) % 4;
            let cell = state
                .cells
                .entry(CellKey {
                    bucket: i64::from(day),
                    partition_day: day,
                    dims: vec![Arc::from(page), Arc::from(referrer)].into_boxed_slice(),
                    visitor: None,
                })
                .or_default();
            cell.views += views;
            cell.bytes += views * 12_000;
            cell.visitors.insert(pseudonym, views);
        }
    }
    states
}

/// The Python with the readers, or `None` (after a notice) when it is missing outside CI.
fn python(root: &Path) -> Option<PathBuf> {
    let python = match std::env::var("LOGVEIL_PYTHON") {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => root.join(".venv/bin/python"),
    };
    let ready = Command::new(&python)
        .args(["-c", "import datasketches, duckdb, pyarrow"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        assert!(
            std::env::var("CI").map_or(true, |v| v.is_empty()),
            "CI must run the HLL reader test: {} lacks datasketches, duckdb or pyarrow (run scripts/setup-test-deps)",
            python.display()
        );
        eprintln!(
            "notice: skipping HLL reader test: {} lacks datasketches, duckdb or pyarrow (run scripts/setup-test-deps)",
            python.display()
        );
        return None;
    }
    Some(python)
}

/// Rewrites the partial at `path` with the sketches of its first and last rows swapped
/// (footer metadata kept): every count in it is still exact, but two sketches lie.
fn swap_first_and_last_sketch(path: &Path) {
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap();
    let kv = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned();
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(Result::unwrap).collect();
    let [batch] = batches.as_slice() else {
        panic!(
            "a partial of a few cells is one batch, not {}",
            batches.len()
        );
    };
    let column = batch.schema().index_of(VISITORS_HLL).unwrap();
    let mut sketches: Vec<&[u8]> = batch
        .column(column)
        .as_binary::<i32>()
        .iter()
        .flatten()
        .collect();
    let last = sketches.len() - 1;
    sketches.swap(0, last);
    let mut columns = batch.columns().to_vec();
    columns[column] = Arc::new(BinaryArray::from_iter_values(sketches)) as ArrayRef;
    let tampered = RecordBatch::try_new(batch.schema(), columns).unwrap();
    let props = WriterProperties::builder()
        .set_key_value_metadata(kv)
        .build();
    let mut writer = ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        tampered.schema(),
        Some(props),
    )
    .unwrap();
    writer.write(&tampered).unwrap();
    writer.close().unwrap();
}

#[test]
fn python_datasketches_and_duckdb_read_the_hll_column_and_union_across_windows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let Some(python) = python(&root) else {
        return;
    };
    let spec = spec();
    let first = days_from_civil(2026, 11, 29);
    // Two windows of 40 000 visitors each, 20 000 of them in both.
    let windows = [(first, 0..40_000), (first + 1, 20_000..60_000)];

    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut cells = 0;
    let mut visitors_in_cells = 0;
    let mut smallest_cell = usize::MAX;
    let mut distinct: HashMap<Box<[Arc<str>]>, HashSet<Pseudonym>> = HashMap::new();
    for (day, range) in windows {
        for (partition, state) in window_states(day, range).into_iter().enumerate() {
            let meta = PartialMeta {
                report: spec.name.clone(),
                partition_day: day,
                partition: partition as u32,
                partitions: PARTITIONS,
                first_seq: 1 + partition as u64 * 1_000,
                last_seq: 999 + partition as u64 * 1_000,
                report_fingerprint: "sha256:partial-readers".into(),
            };
            let bytes = encode_partial(&spec, &state, &meta, Some(LG_K)).unwrap();
            let path = dir.path().join(partial_file_name(&meta));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
            files.push(path);
            for (key, cell) in &state.cells {
                cells += 1;
                visitors_in_cells += cell.visitors.len();
                smallest_cell = smallest_cell.min(cell.visitors.len());
                distinct
                    .entry(key.dims.clone())
                    .or_default()
                    .extend(cell.visitors.keys().copied());
            }
        }
    }
    assert_eq!(files.len(), 6);
    assert_eq!(cells, 6 * PAGES.len() * REFERRERS.len());
    assert!(smallest_cell >= 300, "smallest cell {smallest_cell}");
    assert!(visitors_in_cells > 100_000, "{visitors_in_cells}");
    let visitors_in_unions: usize = distinct.values().map(HashSet::len).sum();

    let started = std::time::Instant::now();
    let out = Command::new(&python)
        .current_dir(&root)
        .arg("tests/readers/check_hll.py")
        .args(&files)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "check_hll.py failed:\n{stdout}\n{stderr}"
    );
    eprintln!("check_hll.py in {:.1?}: {stdout}", started.elapsed());
    let summary: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("summary is not JSON ({e}): {stdout}"));
    assert_eq!(summary["files"], 6, "{summary}");
    assert_eq!(summary["windows"], 2, "{summary}");
    assert_eq!(summary["lg_k"], serde_json::json!([LG_K]), "{summary}");
    assert_eq!(summary["cells"], cells, "{summary}");
    assert_eq!(summary["unions"], distinct.len(), "{summary}");
    assert_eq!(
        summary["unions"],
        PAGES.len() * REFERRERS.len(),
        "{summary}"
    );
    assert_eq!(summary["visitors_in_cells"], visitors_in_cells, "{summary}");
    assert_eq!(
        summary["visitors_in_unions"], visitors_in_unions,
        "{summary}"
    );
    assert_eq!(summary["duckdb"], "BLOB", "{summary}");
    // Counts and errors only: no pseudonym (as hex, or as Python's bytes repr) in what the
    // script prints.
    assert!(
        !stdout.contains("\\x") && !stderr.contains("\\x"),
        "{stdout}{stderr}"
    );
    for i in (0..60_000).step_by(97) {
        let hex = visitor(i).as_bytes()[..6]
            .iter()
            .fold(String::new(), |mut hex, b| {
                write!(hex, "{b:02x}").unwrap();
                hex
            });
        assert!(
            !stdout.contains(&hex) && !stderr.contains(&hex),
            "visitor {i}"
        );
    }

    // The checks bite: a partial whose sketches were swapped between two cells fails.
    swap_first_and_last_sketch(&files[0]);
    let out = Command::new(&python)
        .current_dir(&root)
        .arg("tests/readers/check_hll.py")
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "swapped sketches passed: {stdout}");
    assert!(
        stdout.starts_with("FAIL: ") && stdout.contains("row 0: estimate"),
        "{stdout}"
    );
}
