//! Partials ([`logveil_report::partial`]): exact round trips of random states, merging
//! decoded partials, the HLL column's accuracy and unions, what the footer reveals, and
//! errors (never panics) on anything that is not a partial of the report.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch};
use datasketches::hash::value::raw_bytes;
use datasketches::hll::{HllSketch, HllType, HllUnion};
use logveil_parse::time::days_from_civil;
use logveil_privacy::{Dimension, Pseudonym, Purpose};
use logveil_report::partial::{self, PartialError, PartialMeta, VISITORS_HLL};
use logveil_report::{
    Bucket, CellKey, CellState, Filters, JoinCounts, LegalClass, Metric, ReportSpec, ReportState,
    decode_partial, encode_partial,
};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use proptest::prelude::*;

fn spec(name: &str, visitor_id: bool) -> ReportSpec {
    ReportSpec {
        name: name.into(),
        audience: "internal".into(),
        purpose_name: "analytics".into(),
        purpose: Purpose {
            description: String::new(),
            join_accounts: true,
            consent: None,
            contact: false,
        },
        bucket: Bucket::Day,
        // A public dimension, one with statistics off (ip_prefix is pseudonymous).
        dimensions: vec![Dimension::Page, Dimension::IpPrefix],
        metrics: vec![Metric::Views, Metric::Visitors, Metric::Accounts],
        include_bots: false,
        k_min: 1,
        visitor_id,
        filters: Filters::default(),
        totals: false,
        complementary_suppression: false,
        dp: None,
        legal_class: LegalClass::InternalPseudonymous,
        external: false,
        perturbation: None,
    }
}

fn day() -> i32 {
    days_from_civil(2026, 11, 29)
}

fn meta(report: &str) -> PartialMeta {
    PartialMeta {
        report: report.into(),
        partition_day: day(),
        partition: 3,
        partitions: 8,
        first_seq: 1_000,
        last_seq: 1_999,
        report_fingerprint: "sha256:0123abcd".into(),
    }
}

fn pseudonym(bytes: [u8; 16]) -> Pseudonym {
    // Pseudonyms are opaque; serde is the public constructor.
    serde_json::from_value(serde_json::json!(bytes)).unwrap()
}

/// The `i`-th of a fixed sequence of uniformly distributed pseudonyms.
fn nth_pseudonym(i: u64) -> Pseudonym {
    let hash = blake3::hash(&i.to_le_bytes());
    pseudonym(hash.as_bytes()[..16].try_into().unwrap())
}

/// A cell for a random state: bucket, page, prefix, visitor id (exports), views, bytes,
/// visitors with their views, accounts.
type RawCell = (
    i64,
    &'static str,
    &'static str,
    Option<([u8; 16], &'static str)>,
    u64,
    u64,
    Vec<([u8; 16], u64)>,
    Vec<[u8; 16]>,
);

/// Pseudonyms drawn from `distinct` values, so that states overlap when `distinct` is small.
fn pseudonym_bytes(distinct: u8) -> impl Strategy<Value = [u8; 16]> {
    (0..distinct, any::<[u8; 16]>()).prop_map(move |(i, random)| {
        if distinct == u8::MAX {
            random
        } else {
            let mut bytes = [0u8; 16];
            bytes[15] = i;
            bytes
        }
    })
}

fn raw_cell(visitor_id: bool, distinct: u8, max: u64) -> impl Strategy<Value = RawCell> {
    let texts = || {
        prop::sample::select(vec![
            "",
            "/",
            "/news/ä",
            "/日本",
            "a,b\"c",
            "203.0.113.0/24",
        ])
    };
    let visitor = if visitor_id {
        prop::option::of((
            pseudonym_bytes(distinct),
            prop::sample::select(vec!["k1", "k2"]),
        ))
        .boxed()
    } else {
        Just(None).boxed()
    };
    (
        prop_oneof![Just(i64::from(day())), any::<i64>()],
        texts(),
        texts(),
        visitor,
        0..=max,
        0..=max,
        prop::collection::vec((pseudonym_bytes(distinct), 1u64..1_000), 0..12),
        prop::collection::vec(pseudonym_bytes(distinct), 0..4),
    )
}

fn build_state(
    cells: Vec<RawCell>,
    key_ids: &[&str],
    joins: Option<(u64, u64, u64, u64)>,
) -> ReportState {
    let mut state = ReportState::default();
    for (bucket, page, prefix, visitor, views, bytes, visitors, accounts) in cells {
        let key = CellKey {
            bucket,
            partition_day: day(),
            dims: vec![Arc::from(page), Arc::from(prefix)].into_boxed_slice(),
            visitor: visitor.map(|(v, k)| (pseudonym(v), Arc::from(k))),
        };
        let mut cell = CellState {
            views,
            bytes,
            ..CellState::default()
        };
        for (v, n) in visitors {
            cell.visitors.insert(pseudonym(v), n);
        }
        cell.accounts.extend(accounts.into_iter().map(pseudonym));
        state.cells.insert(key, cell);
    }
    if !key_ids.is_empty() {
        state
            .partitions
            .insert(day(), key_ids.iter().map(|k| Arc::from(*k)).collect());
    }
    state.joins = joins.map(|(joined, no_account, no_consent, deleted)| JoinCounts {
        joined,
        no_account,
        no_consent,
        deleted,
    });
    state
}

/// A random state of `day()`; `distinct` pseudonyms (every one if `u8::MAX`), counts up to `max`.
fn state_strategy(visitor_id: bool, distinct: u8, max: u64) -> impl Strategy<Value = ReportState> {
    (
        prop::collection::vec(raw_cell(visitor_id, distinct, max), 0..16),
        prop::sample::subsequence(vec!["demo-2026", "prod-2027"], 0..=2),
        prop::option::of((0..=max, 0..=max, 0..=max, 0..=max)),
    )
        .prop_map(|(cells, keys, joins)| build_state(cells, &keys, joins))
}

/// Writes `bytes` to a temporary file and reads its record batches (every column).
fn read_back(bytes: &[u8]) -> (Vec<RecordBatch>, parquet::file::metadata::ParquetMetaData) {
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(bytes).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let metadata = builder.metadata().as_ref().clone();
    let batches = builder
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (batches, metadata)
}

/// The `visitors_hll` sketches of a partial, in row order.
fn sketches(bytes: &[u8]) -> Vec<HllSketch> {
    let (batches, _) = read_back(bytes);
    batches
        .iter()
        .flat_map(|b| {
            let column = b.column_by_name(VISITORS_HLL).unwrap().as_binary::<i32>();
            (0..column.len())
                .map(|i| HllSketch::deserialize(column.value(i)).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// One cell of `day()` with the given visitors (one view each).
fn state_with_visitors(visitors: impl Iterator<Item = Pseudonym>) -> ReportState {
    let mut cell = CellState::default();
    for v in visitors {
        cell.views += 1;
        cell.visitors.insert(v, 1);
    }
    let mut state = ReportState::default();
    state
        .partitions
        .insert(day(), BTreeSet::from([Arc::from("k1")]));
    state.cells.insert(
        CellKey {
            bucket: i64::from(day()),
            partition_day: day(),
            dims: vec![Arc::from("/"), Arc::from("-")].into_boxed_slice(),
            visitor: None,
        },
        cell,
    );
    state
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_states_round_trip_exactly(
        visitor_id in any::<bool>(),
        state in any::<bool>().prop_flat_map(|v| state_strategy(v, u8::MAX, u64::MAX)),
        hll in prop::option::of(4u8..=14),
    ) {
        let spec = spec("pages", visitor_id);
        let bytes = encode_partial(&spec, &state, &meta("pages"), hll).unwrap();
        let (decoded, decoded_meta) = decode_partial(&spec, &bytes).unwrap();
        prop_assert_eq!(decoded_meta, meta("pages"));
        prop_assert_eq!(decoded, state.clone());
        // The bytes depend only on the state: re-encoding gives the same file.
        prop_assert_eq!(encode_partial(&spec, &state, &meta("pages"), hll).unwrap(), bytes);
    }

    #[test]
    fn merging_decoded_partials_equals_merging_the_states(
        states in prop::collection::vec(state_strategy(true, 6, u64::from(u32::MAX)), 1..4),
    ) {
        let spec = spec("pages", true);
        let mut merged = ReportState::default();
        let mut merged_decoded = ReportState::default();
        for (i, state) in states.into_iter().enumerate() {
            let meta = PartialMeta { first_seq: i as u64 * 10, last_seq: i as u64 * 10 + 9, ..meta("pages") };
            let bytes = encode_partial(&spec, &state, &meta, Some(10)).unwrap();
            merged_decoded.merge(decode_partial(&spec, &bytes).unwrap().0);
            merged.merge(state);
        }
        prop_assert_eq!(merged_decoded, merged);
    }
}

#[test]
fn damage_is_caught_or_harmless_and_never_panics() {
    let spec = spec("pages", false);
    let state = state_with_visitors((0..50).map(nth_pseudonym));
    let bytes = encode_partial(&spec, &state, &meta("pages"), Some(8)).unwrap();
    // The footer (the last 8 bytes give its length) byte by byte, the data every 7th byte.
    // A few footer flips make the Parquet reader panic: `decode_partial` turns those into
    // errors, but the panic hook still prints them ("panicked at …/parquet-…").
    let footer_len =
        u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap());
    let footer = bytes.len() - footer_len as usize - 8;
    let flips = (footer..bytes.len())
        .flat_map(|at| [(at, 0x01), (at, 0x80), (at, 0xff)])
        .chain((0..footer).step_by(7).map(|at| (at, 0x01)));
    let (mut caught, mut harmless) = (0, 0);
    for (at, xor) in flips {
        let mut damaged = bytes.clone();
        damaged[at] ^= xor;
        // Harmless damage (to the Arrow schema copy, `created_by`, padding…) decodes to
        // the same state and meta; anything else is an error.
        match decode_partial(&spec, &damaged) {
            Ok(decoded) => {
                assert_eq!(
                    decoded,
                    (state.clone(), meta("pages")),
                    "byte {at} ^ {xor:#x}"
                );
                harmless += 1;
            }
            Err(_) => caught += 1,
        }
    }
    assert!(caught > harmless, "{caught} caught, {harmless} harmless");
    for cut in (0..bytes.len()).step_by(13) {
        assert!(
            decode_partial(&spec, &bytes[..cut]).is_err(),
            "cut at {cut}"
        );
    }
}

#[test]
fn an_empty_window_keeps_its_partitions_and_joins() {
    let spec = spec("pages", false);
    let state = ReportState {
        partitions: BTreeMap::from([(day(), BTreeSet::from([Arc::from("demo-2026")]))]),
        joins: Some(JoinCounts {
            joined: 1,
            no_account: 2,
            no_consent: 3,
            deleted: 4,
        }),
        ..ReportState::default()
    };
    let bytes = encode_partial(&spec, &state, &meta("pages"), Some(12)).unwrap();
    let (batches, metadata) = read_back(&bytes);
    assert_eq!(metadata.file_metadata().num_rows(), 0);
    assert!(batches.iter().all(|b| b.num_rows() == 0));
    assert_eq!(
        decode_partial(&spec, &bytes).unwrap(),
        (state, meta("pages"))
    );
    // And a state with nothing at all.
    let nothing = ReportState::default();
    let bytes = encode_partial(&spec, &nothing, &meta("pages"), None).unwrap();
    assert_eq!(decode_partial(&spec, &bytes).unwrap().0, nothing);
}

#[test]
fn a_visitor_id_export_round_trips_with_its_key_ids() {
    let spec = spec("visitors_export", true);
    let mut state = ReportState::default();
    state.partitions.insert(
        day(),
        BTreeSet::from([Arc::from("demo-2026"), Arc::from("prod-2027")]),
    );
    for (i, key_id) in [(1, "demo-2026"), (2, "prod-2027"), (3, "prod-2027")] {
        let visitor = nth_pseudonym(i);
        let mut cell = CellState {
            views: i,
            bytes: 100 * i,
            ..CellState::default()
        };
        cell.visitors.insert(nth_pseudonym(1000 + i), i);
        cell.accounts.insert(nth_pseudonym(2000 + i));
        state.cells.insert(
            CellKey {
                bucket: i64::from(day()),
                partition_day: day(),
                dims: vec![Arc::from("/"), Arc::from("198.51.100.0/24")].into_boxed_slice(),
                visitor: Some((visitor, Arc::from(key_id))),
            },
            cell,
        );
    }
    let bytes = encode_partial(&spec, &state, &meta("visitors_export"), None).unwrap();
    let (decoded, _) = decode_partial(&spec, &bytes).unwrap();
    assert_eq!(decoded, state);
    // Readers see the pseudonym's 16 bytes and the key id.
    let (batches, _) = read_back(&bytes);
    let ids = batches[0].column_by_name("visitor_id").unwrap();
    assert_eq!(ids.as_fixed_size_binary().value(0).len(), 16);
    let key_ids = batches[0].column_by_name("visitor_key_id").unwrap();
    assert_eq!(key_ids.null_count(), 0);
}

#[test]
fn hll_of_ten_thousand_visitors_is_within_three_percent() {
    let spec = spec("pages", false);
    let state = state_with_visitors((0..10_000).map(nth_pseudonym));
    let bytes = encode_partial(&spec, &state, &meta("pages"), Some(12)).unwrap();
    let sketches = sketches(&bytes);
    assert_eq!(sketches.len(), 1);
    let estimate = sketches[0].estimate();
    assert!(
        (estimate - 10_000.0).abs() < 300.0,
        "estimate {estimate} of 10000"
    );
    assert_eq!(sketches[0].lg_config_k(), 12);
    assert_eq!(sketches[0].target_type(), HllType::Hll4);

    // The sketch hashes the pseudonyms' raw bytes (what Java's `update(byte[])` does), in
    // pseudonym order (the HIP estimate in the sketch's header depends on the order).
    let mut visitors: Vec<Pseudonym> = (0..10_000).map(nth_pseudonym).collect();
    visitors.sort_unstable();
    let mut by_hand = HllSketch::new(12, HllType::Hll4).unwrap();
    for visitor in &visitors {
        by_hand.update(raw_bytes::from_slice(visitor.as_bytes()));
    }
    let (batches, _) = read_back(&bytes);
    let column = batches[0]
        .column_by_name(VISITORS_HLL)
        .unwrap()
        .as_binary::<i32>();
    assert_eq!(column.value(0), by_hand.serialize().as_slice());
}

#[test]
fn hll_sketches_of_two_partials_union_to_the_distinct_visitors() {
    let spec = spec("pages", false);
    // 8 000 visitors each, 4 000 in both: 12 000 distinct.
    let first = state_with_visitors((0..8_000).map(nth_pseudonym));
    let second = state_with_visitors((4_000..12_000).map(nth_pseudonym));
    let mut union = HllUnion::new(12).unwrap();
    for state in [&first, &second] {
        let bytes = encode_partial(&spec, state, &meta("pages"), Some(12)).unwrap();
        for sketch in sketches(&bytes) {
            union.update(&sketch);
        }
    }
    let estimate = union.estimate();
    assert!(
        (estimate - 12_000.0).abs() < 360.0,
        "union estimate {estimate} of 12000"
    );
}

#[test]
fn pseudonym_columns_have_no_statistics_or_bloom_filters() {
    let spec = spec("pages", true);
    let mut state = state_with_visitors((0..100).map(nth_pseudonym));
    let (key, mut cell) = state.cells.drain().next().unwrap();
    cell.accounts.insert(nth_pseudonym(5000));
    state.cells.insert(
        CellKey {
            visitor: Some((nth_pseudonym(6000), Arc::from("k1"))),
            ..key
        },
        cell,
    );
    let bytes = encode_partial(&spec, &state, &meta("pages"), Some(12)).unwrap();
    let (_, metadata) = read_back(&bytes);
    let mut with_statistics = Vec::new();
    for column in metadata
        .row_groups()
        .iter()
        .flat_map(parquet::file::metadata::RowGroupMetaData::columns)
    {
        let path = column.column_path().string();
        assert!(
            column.bloom_filter_offset().is_none(),
            "{path} has a bloom filter"
        );
        if column.statistics().is_some() || column.column_index_offset().is_some() {
            with_statistics.push(path);
        }
    }
    assert_eq!(with_statistics, ["bucket", "partition_day", "page"]);
    // The footer names the report and carries the meta as JSON.
    let kv = metadata.file_metadata().key_value_metadata().unwrap();
    let partial = kv
        .iter()
        .find(|e| e.key == partial::PARTIAL_METADATA_KEY)
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(partial.value.as_deref().unwrap()).unwrap();
    assert_eq!(json["meta"]["report_fingerprint"], "sha256:0123abcd");
    assert_eq!(json["partitions"][day().to_string()][0], "k1");
}

#[test]
fn a_thousand_cells_of_twenty_visitors_take_little_more_than_their_pseudonyms() {
    let spec = spec("pages", false);
    let mut state = ReportState::default();
    state
        .partitions
        .insert(day(), BTreeSet::from([Arc::from("k1")]));
    for c in 0..1_000u64 {
        let mut cell = CellState::default();
        for v in 0..20 {
            cell.views += 1 + v % 3;
            cell.bytes += 5_000;
            cell.visitors.insert(nth_pseudonym(c * 20 + v), 1 + v % 3);
        }
        state.cells.insert(
            CellKey {
                bucket: i64::from(day()),
                partition_day: day(),
                dims: vec![Arc::from(format!("/page/{c}")), Arc::from("-")].into_boxed_slice(),
                visitor: None,
            },
            cell,
        );
    }
    let pseudonym_bytes = 1_000 * 20 * 16;
    let plain = encode_partial(&spec, &state, &meta("pages"), None).unwrap();
    assert!(
        plain.len() < pseudonym_bytes * 13 / 10,
        "{} bytes for {pseudonym_bytes} bytes of pseudonyms",
        plain.len()
    );
    // HLL_4 at lg_k 12 in list mode (20 visitors) is a few bytes per visitor.
    let with_hll = encode_partial(&spec, &state, &meta("pages"), Some(12)).unwrap();
    assert!(
        with_hll.len() < plain.len() * 16 / 10,
        "{} bytes with sketches, {} without",
        with_hll.len(),
        plain.len()
    );
}

#[test]
fn anything_but_a_partial_of_the_report_is_an_error() {
    let pages = spec("pages", false);
    let state = state_with_visitors((0..10).map(nth_pseudonym));
    let good = encode_partial(&pages, &state, &meta("pages"), Some(12)).unwrap();

    for garbage in [
        &b""[..],
        b"PAR1",
        b"garbage, not parquet at all",
        &good[..good.len() / 2],
    ] {
        let err = decode_partial(&pages, garbage).unwrap_err();
        assert!(matches!(err, PartialError::Parquet(_)), "{err}");
    }

    // A Parquet file without the partial metadata (a published report, say).
    let batch = RecordBatch::try_from_iter([(
        "bucket",
        Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
    )])
    .unwrap();
    let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    let plain = writer.into_inner().unwrap();
    let err = decode_partial(&pages, &plain).unwrap_err();
    assert!(matches!(err, PartialError::NotAPartial(_)), "{err}");

    // A partial of another report.
    let err = decode_partial(&spec("referrers", false), &good).unwrap_err();
    assert!(
        matches!(&err, PartialError::WrongReport { expected, found } if expected == "referrers" && found == "pages"),
        "{err}"
    );

    // A partial of this report written with other dimensions or another bucket.
    let mut other_dims = spec("pages", false);
    other_dims.dimensions = vec![Dimension::Page];
    let err = decode_partial(&other_dims, &good).unwrap_err();
    assert!(matches!(err, PartialError::Mismatch { .. }), "{err}");
    assert!(err.to_string().contains("ip_prefix"), "{err}");
    let mut hourly = spec("pages", false);
    hourly.bucket = Bucket::Hour;
    let err = decode_partial(&hourly, &good).unwrap_err();
    assert!(matches!(err, PartialError::Mismatch { .. }), "{err}");
}

#[test]
fn encode_refuses_what_is_not_one_window_of_the_report() {
    let pages = spec("pages", false);
    let state = state_with_visitors((0..3).map(nth_pseudonym));
    let invalid = |state: &ReportState, meta: &PartialMeta, hll| {
        let err = encode_partial(&pages, state, meta, hll).unwrap_err();
        assert!(matches!(err, PartialError::Invalid { .. }), "{err}");
        err.to_string()
    };

    // A cell of another day.
    let mut two_days = state.clone();
    let (key, cell) = state.cells.iter().next().unwrap();
    two_days.cells.insert(
        CellKey {
            partition_day: day() + 1,
            ..key.clone()
        },
        cell.clone(),
    );
    assert!(invalid(&two_days, &meta("pages"), None).contains("2026-11-30"));
    // Lines (no cell) of another day.
    let mut other_lines = state.clone();
    other_lines
        .partitions
        .insert(day() - 1, BTreeSet::from([Arc::from("k1")]));
    assert!(invalid(&other_lines, &meta("pages"), None).contains("2026-11-28"));
    // Meta of another report, a partition out of range, an empty sequence range.
    invalid(&state, &meta("referrers"), None);
    invalid(
        &state,
        &PartialMeta {
            partition: 8,
            ..meta("pages")
        },
        None,
    );
    invalid(
        &state,
        &PartialMeta {
            first_seq: 5,
            last_seq: 4,
            ..meta("pages")
        },
        None,
    );
    // A sketch size DataSketches does not have.
    let err = encode_partial(&pages, &state, &meta("pages"), Some(30)).unwrap_err();
    assert!(matches!(err, PartialError::Sketch(_)), "{err}");
}
