//! Partial aggregates as Parquet: the exact [`ReportState`] of one report, one window and
//! one batch of messages, written by an aggregator worker and merged later.
//!
//! Workers each own some partitions of the event stream (a visitor is always in one
//! partition). For each report, window (a `partition_day`) and batch (a stream-sequence
//! range) a worker writes one *partial* with [`encode_partial`] under
//! [`partial_file_name`]; `logveil merge` reads every partial of a window with
//! [`decode_partial`], folds them with [`ReportState::merge`] and only then applies
//! disclosure control. A partial keeps the visitor and account sets (with each visitor's
//! views, which differential privacy bounds), not counts: the same visitor shows up in many
//! batches of its partition. Partials are pseudonymous data for internal use, never
//! published as they are.
//!
//! # Layout
//!
//! One row per cell, sorted by cell key; pseudonyms are their 16 raw bytes.
//!
//! | column | type | |
//! |---|---|---|
//! | `bucket` | `Int64` | [`CellKey::bucket`]: UTC microseconds for hourly reports, a day number otherwise |
//! | `partition_day` | `Date32` | the window; the same in every row |
//! | one per dimension, named as the report's dimension (`page`, `referrer_domain`, …) | `Utf8` | |
//! | `visitor_id` | `FixedSizeBinary(16)`, nullable | the audience pseudonym of `visitor_id = true` exports, null otherwise |
//! | `visitor_key_id` | `Utf8`, nullable | the key that made `visitor_id` |
//! | `views`, `bytes` | `UInt64` | |
//! | `visitors` | `List<FixedSizeBinary(16)>` | the cell's visitor pseudonyms, sorted |
//! | `visitor_views` | `List<UInt64>` | each visitor's views (parallel to `visitors`) |
//! | `accounts` | `List<FixedSizeBinary(16)>` | the cell's account pseudonyms, sorted |
//! | `visitors_hll` | `Binary` | only with `hll_lg_k`: see below |
//!
//! List items are named `element` (Parquet's LIST convention). The key-value metadata
//! entry `logveil.partial` ([`PARTIAL_METADATA_KEY`]) is JSON:
//! `{"format": 1, "meta": {PartialMeta}, "bucket": "date", "dimensions": [...],
//! "hll_lg_k": 12 | null, "partitions": {"<day number>": ["<key id>", ...]}, "joins": {...} | null,
//! "rows": R, "data": {"bytes": N, "blake3": "<hex>"}}` (`partitions` and `joins` as in
//! [`ReportState`]; `data` the length and digest of the file's first N bytes, everything
//! before the page indexes and footer). `logveil.partial.blake3` ([`PARTIAL_DIGEST_KEY`]) is
//! the digest of that JSON text, and `logveil.report` and `logveil.version` are there too.
//! Parquet itself checksums nothing: [`decode_partial`] checks both digests before it
//! decodes a page, and the row count after. A window with parsed lines but no cell in the
//! batch is a file with zero rows whose metadata still carries `partitions` and `joins`.
//!
//! `visitors_hll` is an Apache `DataSketches` `HLL_4` sketch (compact serialization, which
//! the Java and C++ libraries read, and with them `DuckDB`'s `datasketches` extension, Spark
//! and Druid) of the cell's visitors, each updated with the pseudonym's 16 raw bytes
//! (`MurmurHash3`, seed 9001, as Java's `update(byte[])`; hashing the hex or a `&str`
//! instead makes other sketches of the same visitors count them twice in a union): distinct
//! counts and unions without reading the lists. Sketches are built over the visitors in
//! pseudonym order (the header's HIP estimate depends on the order), so they are
//! reproducible. [`decode_partial`] does not read them (the lists are exact).
//!
//! No column holding pseudonyms (`visitor_id`, `visitors`, `accounts`, and `visitors_hll`)
//! has statistics, a page index or a bloom filter: they would answer "is X in this
//! file?" from the footer. Only `bucket`, `partition_day` and the dimensions of the
//! public class have (chunk) statistics. Compression is zstd.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::File;
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, FixedSizeBinaryBuilder, ListBuilder, StringBuilder, UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Int64Type, UInt64Type};
use arrow_array::{
    Array, ArrayRef, Date32Array, FixedSizeBinaryArray, Int64Array, ListArray, RecordBatch,
    StringArray, UInt64Array,
};
use arrow_schema::{DataType, Field, FieldRef, Schema};
use datasketches::hash::value::raw_bytes;
use datasketches::hll::{HllSketch, HllType};
use logveil_privacy::Pseudonym;
use logveil_privacy::policy::DimensionClass;
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::ChunkReader;
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

use crate::aggregate::{CellKey, CellState, FastMap, FastSet, JoinCounts, ReportState};
use crate::calendar::format_day;
use crate::spec::ReportSpec;

/// The key-value metadata entry that makes a Parquet file a partial.
pub const PARTIAL_METADATA_KEY: &str = "logveil.partial";
/// The entry with the BLAKE3 digest (hex) of the `logveil.partial` entry.
pub const PARTIAL_DIGEST_KEY: &str = "logveil.partial.blake3";
/// The layout version written in `logveil.partial` (`format`).
pub const FORMAT_VERSION: u32 = 1;

pub const BUCKET: &str = "bucket";
pub const PARTITION_DAY: &str = "partition_day";
pub const VISITOR_ID: &str = "visitor_id";
pub const VISITOR_KEY_ID: &str = "visitor_key_id";
pub const VIEWS: &str = "views";
pub const BYTES: &str = "bytes";
pub const VISITORS: &str = "visitors";
pub const VISITOR_VIEWS: &str = "visitor_views";
pub const ACCOUNTS: &str = "accounts";
pub const VISITORS_HLL: &str = "visitors_hll";

/// Bytes of a pseudonym.
const PSEUDONYM_LEN: i32 = 16;
/// The name of list items (Parquet's LIST convention, what pyarrow and Spark write).
const ELEMENT: &str = "element";

/// Which report, window, partition and batch a partial holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialMeta {
    pub report: String,
    /// The window: the partition day every cell of the partial is written under.
    pub partition_day: i32,
    /// The stream partition the worker aggregated.
    pub partition: u32,
    /// How many partitions the stream has.
    pub partitions: u32,
    /// The stream-sequence range of the batch (inclusive).
    pub first_seq: u64,
    pub last_seq: u64,
    /// Opaque (a digest of the report's spec and calendar, given by the caller):
    /// [`decode_partial`] returns it; the caller checks it.
    pub report_fingerprint: String,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PartialError {
    /// The state or meta given to [`encode_partial`] cannot make a partial.
    #[error("report `{report}`: cannot write a partial: {reason}")]
    Invalid { report: String, reason: String },
    /// Not a Parquet file, or a damaged one.
    #[error("not a readable Parquet file: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("partial: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("partial: HLL sketch: {0}")]
    Sketch(#[from] datasketches::error::Error),
    /// A Parquet file without (readable) `logveil.partial` metadata.
    #[error("not a logveil partial: {0}")]
    NotAPartial(String),
    /// A partial whose data or footer does not match its digest, whose column chunks lie
    /// outside the checked bytes, that has fewer rows than written, or on which the Parquet
    /// reader panicked.
    #[error("damaged partial: {0}")]
    Damaged(String),
    /// A partial of another report.
    #[error("partial of report `{found}`, expected `{expected}`")]
    WrongReport { expected: String, found: String },
    /// A partial of this report whose layout or content does not fit its spec.
    #[error("partial of report `{report}`: {reason}")]
    Mismatch { report: String, reason: String },
}

/// The `logveil.partial` metadata entry.
#[derive(Debug, Serialize, Deserialize)]
struct Footer {
    format: u32,
    meta: PartialMeta,
    /// The bucket column of the report (`hour`, `date`, `week`, `month`).
    bucket: String,
    dimensions: Vec<String>,
    hll_lg_k: Option<u8>,
    partitions: BTreeMap<i32, BTreeSet<Arc<str>>>,
    joins: Option<JoinCounts>,
    /// Rows (cells) in the file.
    rows: u64,
    data: DataDigest,
}

/// The length and BLAKE3 digest of the file's bytes before the page indexes and footer
/// (Parquet pages carry no checksum, and a damaged page can make the Parquet reader panic).
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct DataDigest {
    bytes: u64,
    blake3: String,
}

impl DataDigest {
    fn of(data: &[u8]) -> Self {
        Self {
            bytes: data.len() as u64,
            blake3: blake3::hash(data).to_hex().to_string(),
        }
    }
}

/// The relative key of a partial:
/// `<report>/day=YYYY-MM-DD/p=0007/seq-<first_seq>-<last_seq>.parquet`, numbers
/// zero-padded (20 digits for sequences) so that names sort by partition and sequence.
pub fn partial_file_name(meta: &PartialMeta) -> String {
    format!(
        "{}/day={}/p={:04}/seq-{:020}-{:020}.parquet",
        meta.report,
        format_day(meta.partition_day),
        meta.partition,
        meta.first_seq,
        meta.last_seq
    )
}

/// The Arrow schema of a report's partials.
pub fn schema(spec: &ReportSpec, with_hll: bool) -> Schema {
    let mut fields = vec![
        Field::new(BUCKET, DataType::Int64, false),
        Field::new(PARTITION_DAY, DataType::Date32, false),
    ];
    fields.extend(
        spec.dimensions
            .iter()
            .map(|d| Field::new(d.as_str(), DataType::Utf8, false)),
    );
    fields.extend([
        Field::new(VISITOR_ID, DataType::FixedSizeBinary(PSEUDONYM_LEN), true),
        Field::new(VISITOR_KEY_ID, DataType::Utf8, true),
        Field::new(VIEWS, DataType::UInt64, false),
        Field::new(BYTES, DataType::UInt64, false),
        Field::new(VISITORS, DataType::List(pseudonym_item()), false),
        Field::new(VISITOR_VIEWS, DataType::List(views_item()), false),
        Field::new(ACCOUNTS, DataType::List(pseudonym_item()), false),
    ]);
    if with_hll {
        fields.push(Field::new(VISITORS_HLL, DataType::Binary, false));
    }
    Schema::new(fields)
}

fn pseudonym_item() -> FieldRef {
    Arc::new(Field::new(
        ELEMENT,
        DataType::FixedSizeBinary(PSEUDONYM_LEN),
        false,
    ))
}

fn views_item() -> FieldRef {
    Arc::new(Field::new(ELEMENT, DataType::UInt64, false))
}

/// Writes `state` (the cells of one window, `meta.partition_day`) as a partial.
///
/// With `hll_lg_k = Some(k)` (4 to 21; 12 gives about 1.6 % relative standard error) each
/// row also carries an `HLL_4` sketch of its visitors. The bytes depend only on the
/// arguments (rows sorted, sets sorted), so re-encoding a batch gives the same file.
pub fn encode_partial(
    spec: &ReportSpec,
    state: &ReportState,
    meta: &PartialMeta,
    hll_lg_k: Option<u8>,
) -> Result<Vec<u8>, PartialError> {
    let invalid = |reason: String| PartialError::Invalid {
        report: spec.name.clone(),
        reason,
    };
    if meta.report != spec.name {
        return Err(invalid(format!("the meta names report `{}`", meta.report)));
    }
    if meta.partition >= meta.partitions {
        return Err(invalid(format!(
            "partition {} of {} partitions",
            meta.partition, meta.partitions
        )));
    }
    if meta.first_seq > meta.last_seq {
        return Err(invalid(format!(
            "sequence range {}..={} is empty",
            meta.first_seq, meta.last_seq
        )));
    }
    let window = meta.partition_day;
    if let Some(day) = state.partitions.keys().find(|d| **d != window) {
        return Err(invalid(format!(
            "the state has lines of partition day {} in a partial of {}",
            format_day(*day),
            format_day(window)
        )));
    }
    let mut cells: Vec<(&CellKey, &CellState)> = state.cells.iter().collect();
    for (key, _) in &cells {
        if key.partition_day != window {
            return Err(invalid(format!(
                "the state has a cell of partition day {} in a partial of {}",
                format_day(key.partition_day),
                format_day(window)
            )));
        }
        if key.dims.len() != spec.dimensions.len() {
            return Err(invalid(format!(
                "a cell has {} dimension values, the report {} dimensions",
                key.dims.len(),
                spec.dimensions.len()
            )));
        }
    }
    cells.sort_unstable_by(|a, b| a.0.cmp(b.0));

    let batch = record_batch(spec, &cells, hll_lg_k)?;
    let mut writer =
        ArrowWriter::try_new(Vec::new(), batch.schema(), Some(writer_properties(spec)))?;
    if batch.num_rows() > 0 {
        writer.write(&batch)?;
    }
    // Everything before the footer (and the page indexes) is written now: its digest goes
    // into the footer.
    writer.flush()?;
    writer.sync().map_err(|e| PartialError::Parquet(e.into()))?;
    let data = writer.inner();
    let footer = Footer {
        format: FORMAT_VERSION,
        meta: meta.clone(),
        bucket: spec.bucket.column().to_owned(),
        dimensions: dimension_names(spec),
        hll_lg_k,
        partitions: state.partitions.clone(),
        joins: state.joins.clone(),
        rows: cells.len() as u64,
        data: DataDigest::of(data),
    };
    let footer = serde_json::to_string(&footer)
        .map_err(|e| invalid(format!("metadata does not serialise: {e}")))?;
    writer.append_key_value_metadata(KeyValue::new(
        PARTIAL_DIGEST_KEY.into(),
        blake3::hash(footer.as_bytes()).to_hex().to_string(),
    ));
    writer.append_key_value_metadata(KeyValue::new(PARTIAL_METADATA_KEY.into(), footer));
    Ok(writer.into_inner()?)
}

fn dimension_names(spec: &ReportSpec) -> Vec<String> {
    spec.dimensions
        .iter()
        .map(|d| d.as_str().to_owned())
        .collect()
}

/// zstd; statistics off by default and on only where they reveal no pseudonym; no
/// dictionary for random 16-byte values (it would only grow the file).
fn writer_properties(spec: &ReportSpec) -> WriterProperties {
    let metadata = vec![
        KeyValue::new(
            "logveil.version".into(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
        KeyValue::new("logveil.report".into(), spec.name.clone()),
    ];
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("3 is a valid zstd level"),
        ))
        .set_statistics_enabled(EnabledStatistics::None)
        .set_bloom_filter_enabled(false)
        .set_key_value_metadata(Some(metadata))
        .set_created_by(format!("logveil {}", env!("CARGO_PKG_VERSION")));
    let public_dimensions = spec
        .dimensions
        .iter()
        .filter(|d| d.class() == DimensionClass::Public)
        .map(|d| d.as_str());
    for column in [BUCKET, PARTITION_DAY].into_iter().chain(public_dimensions) {
        props =
            props.set_column_statistics_enabled(ColumnPath::from(column), EnabledStatistics::Chunk);
    }
    for column in [
        VISITOR_ID.to_owned(),
        format!("{VISITORS}.list.{ELEMENT}"),
        format!("{ACCOUNTS}.list.{ELEMENT}"),
        VISITORS_HLL.to_owned(),
    ] {
        props = props.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    props.build()
}

fn record_batch(
    spec: &ReportSpec,
    cells: &[(&CellKey, &CellState)],
    hll_lg_k: Option<u8>,
) -> Result<RecordBatch, PartialError> {
    let schema = Arc::new(schema(spec, hll_lg_k.is_some()));
    let rows = cells.len();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    columns.push(Arc::new(Int64Array::from_iter_values(
        cells.iter().map(|(k, _)| k.bucket),
    )));
    columns.push(Arc::new(Date32Array::from_iter_values(
        cells.iter().map(|(k, _)| k.partition_day),
    )));
    for i in 0..spec.dimensions.len() {
        columns.push(Arc::new(StringArray::from_iter_values(
            cells.iter().map(|(k, _)| &*k.dims[i]),
        )));
    }
    let mut visitor_ids = FixedSizeBinaryBuilder::with_capacity(rows, PSEUDONYM_LEN);
    let mut visitor_key_ids = StringBuilder::new();
    for (key, _) in cells {
        if let Some((visitor, key_id)) = &key.visitor {
            visitor_ids.append_value(visitor.as_bytes())?;
            visitor_key_ids.append_value(key_id);
        } else {
            visitor_ids.append_null();
            visitor_key_ids.append_null();
        }
    }
    columns.push(Arc::new(visitor_ids.finish()));
    columns.push(Arc::new(visitor_key_ids.finish()));
    columns.push(Arc::new(UInt64Array::from_iter_values(
        cells.iter().map(|(_, c)| c.views),
    )));
    columns.push(Arc::new(UInt64Array::from_iter_values(
        cells.iter().map(|(_, c)| c.bytes),
    )));

    let pseudonym_list = || {
        ListBuilder::with_capacity(FixedSizeBinaryBuilder::new(PSEUDONYM_LEN), rows)
            .with_field(pseudonym_item())
    };
    let mut visitors = pseudonym_list();
    let mut visitor_views =
        ListBuilder::with_capacity(UInt64Builder::new(), rows).with_field(views_item());
    let mut accounts = pseudonym_list();
    let mut sketches = hll_lg_k.map(|_| BinaryBuilder::new());
    let mut sorted_visitors: Vec<(Pseudonym, u64)> = Vec::new();
    let mut sorted_accounts: Vec<Pseudonym> = Vec::new();
    for (_, cell) in cells {
        sorted_visitors.clear();
        sorted_visitors.extend(cell.visitors.iter().map(|(v, n)| (*v, *n)));
        sorted_visitors.sort_unstable();
        for (visitor, views) in &sorted_visitors {
            visitors.values().append_value(visitor.as_bytes())?;
            visitor_views.values().append_value(*views);
        }
        visitors.append(true);
        visitor_views.append(true);

        sorted_accounts.clear();
        sorted_accounts.extend(cell.accounts.iter().copied());
        sorted_accounts.sort_unstable();
        for account in &sorted_accounts {
            accounts.values().append_value(account.as_bytes())?;
        }
        accounts.append(true);

        if let (Some(sketches), Some(lg_k)) = (&mut sketches, hll_lg_k) {
            let mut sketch = HllSketch::new(lg_k, HllType::Hll4)?;
            for (visitor, _) in &sorted_visitors {
                sketch.update(raw_bytes::from_slice(visitor.as_bytes()));
            }
            sketches.append_value(sketch.serialize());
        }
    }
    columns.push(Arc::new(visitors.finish()));
    columns.push(Arc::new(visitor_views.finish()));
    columns.push(Arc::new(accounts.finish()));
    if let Some(mut sketches) = sketches {
        columns.push(Arc::new(sketches.finish()));
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Reads a partial of `spec`'s report: its exact state and its meta.
///
/// Fails, without panicking, on anything that is not an intact partial of this report with
/// this report's bucket and dimensions. The caller checks `report_fingerprint` (and
/// whatever it expects of the rest of the meta).
pub fn decode_partial(
    spec: &ReportSpec,
    bytes: &[u8],
) -> Result<(ReportState, PartialMeta), PartialError> {
    // The data is checked against its digest before it is decoded, but the footer cannot
    // carry its own digest, and the Parquet reader asserts on some damaged footers: a
    // panic there is a damaged file, not a bug of the caller. (The panic hook still
    // prints its message.)
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode(spec, bytes))).unwrap_or_else(
        |panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(ToString::to_string)
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(PartialError::Damaged(format!(
                "the Parquet reader failed: {message}"
            )))
        },
    )
}

fn decode(spec: &ReportSpec, bytes: &[u8]) -> Result<(ReportState, PartialMeta), PartialError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(in_memory(
        bytes.to_vec(),
        <File as ChunkReader>::get_bytes,
    ))?;
    let entry = |key: &str| {
        builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|e| e.key == key))
            .and_then(|e| e.value.as_deref())
    };
    let footer = entry(PARTIAL_METADATA_KEY).ok_or_else(|| {
        PartialError::NotAPartial(format!("no `{PARTIAL_METADATA_KEY}` metadata"))
    })?;
    if entry(PARTIAL_DIGEST_KEY) != Some(&*blake3::hash(footer.as_bytes()).to_hex()) {
        return Err(PartialError::Damaged(format!(
            "`{PARTIAL_METADATA_KEY}` does not match its digest `{PARTIAL_DIGEST_KEY}`"
        )));
    }
    let footer: Footer = serde_json::from_str(footer)
        .map_err(|e| PartialError::NotAPartial(format!("`{PARTIAL_METADATA_KEY}`: {e}")))?;
    if footer.format != FORMAT_VERSION {
        return Err(PartialError::NotAPartial(format!(
            "format {} (this build reads format {FORMAT_VERSION})",
            footer.format
        )));
    }
    let data = usize::try_from(footer.data.bytes)
        .ok()
        .and_then(|n| bytes.get(..n))
        .ok_or_else(|| {
            PartialError::Damaged(format!("shorter than its {} data bytes", footer.data.bytes))
        })?;
    if DataDigest::of(data) != footer.data {
        return Err(PartialError::Damaged(
            "the data bytes do not match their BLAKE3 digest".into(),
        ));
    }
    // Every column chunk must lie in the checked bytes.
    for chunk in builder
        .metadata()
        .row_groups()
        .iter()
        .flat_map(parquet::file::metadata::RowGroupMetaData::columns)
    {
        let start = chunk
            .dictionary_page_offset()
            .unwrap_or_else(|| chunk.data_page_offset());
        let end = start.checked_add(chunk.compressed_size());
        if start < 0 || end.is_none_or(|end| end < start || end as u64 > footer.data.bytes) {
            return Err(PartialError::Damaged(format!(
                "column chunk `{}` outside the data bytes",
                chunk.column_path()
            )));
        }
    }
    if footer.meta.report != spec.name {
        return Err(PartialError::WrongReport {
            expected: spec.name.clone(),
            found: footer.meta.report,
        });
    }
    let mismatch = |reason: String| PartialError::Mismatch {
        report: spec.name.clone(),
        reason,
    };
    if footer.bucket != spec.bucket.column() {
        return Err(mismatch(format!(
            "bucket `{}`, the report's is `{}`",
            footer.bucket,
            spec.bucket.column()
        )));
    }
    let dimensions = dimension_names(spec);
    if footer.dimensions != dimensions {
        return Err(mismatch(format!(
            "dimensions [{}], the report's are [{}]",
            footer.dimensions.join(", "),
            dimensions.join(", ")
        )));
    }
    let window = footer.meta.partition_day;
    if let Some(day) = footer.partitions.keys().find(|d| **d != window) {
        return Err(mismatch(format!(
            "partition day {} listed in a partial of {}",
            format_day(*day),
            format_day(window)
        )));
    }

    // Every column but the sketches (the lists are exact).
    let parquet_schema = builder.parquet_schema();
    let wanted: Vec<usize> = parquet_schema
        .root_schema()
        .get_fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.name() != VISITORS_HLL)
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(parquet_schema, wanted);
    let reader = builder.with_projection(mask).build()?;

    let mut state = ReportState {
        cells: FastMap::default(),
        partitions: footer.partitions,
        joins: footer.joins,
    };
    let mut strings = Interner::default();
    for batch in reader {
        read_batch(&batch?, &dimensions, window, &mut strings, &mut state).map_err(mismatch)?;
    }
    if state.cells.len() as u64 != footer.rows {
        return Err(PartialError::Damaged(format!(
            "{} rows read of {}",
            state.cells.len(),
            footer.rows
        )));
    }
    Ok((state, footer.meta))
}

/// Parquet reads from memory through `bytes::Bytes`, which this crate does not depend on:
/// its type is taken from the return type of `ChunkReader::get_bytes` (`witness`).
fn in_memory<B: From<Vec<u8>>>(
    data: Vec<u8>,
    _witness: fn(&File, u64, usize) -> parquet::errors::Result<B>,
) -> B {
    B::from(data)
}

/// One `Arc<str>` per distinct dimension value or key id, as [`ReportState::observe`] shares them.
#[derive(Debug, Default)]
struct Interner(HashSet<Arc<str>>);

impl Interner {
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(s) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(s);
        self.0.insert(Arc::clone(&shared));
        shared
    }
}

fn read_batch(
    batch: &RecordBatch,
    dimensions: &[String],
    window: i32,
    strings: &mut Interner,
    state: &mut ReportState,
) -> Result<(), String> {
    let buckets: &Int64Array = required(batch, BUCKET, |a| a.as_primitive_opt::<Int64Type>())?;
    let days: &Date32Array =
        required(batch, PARTITION_DAY, |a| a.as_primitive_opt::<Date32Type>())?;
    let dims: Vec<&StringArray> = dimensions
        .iter()
        .map(|d| required(batch, d, |a| a.as_string_opt::<i32>()))
        .collect::<Result<_, _>>()?;
    let visitor_ids: &FixedSizeBinaryArray = column(batch, VISITOR_ID, |a| {
        a.as_fixed_size_binary_opt()
            .filter(|a| a.value_length() == PSEUDONYM_LEN)
    })?;
    let visitor_key_ids: &StringArray =
        column(batch, VISITOR_KEY_ID, |a| a.as_string_opt::<i32>())?;
    let views: &UInt64Array = required(batch, VIEWS, |a| a.as_primitive_opt::<UInt64Type>())?;
    let bytes: &UInt64Array = required(batch, BYTES, |a| a.as_primitive_opt::<UInt64Type>())?;
    let (visitors, visitor_pseudonyms) = pseudonym_list(batch, VISITORS)?;
    let (accounts, account_pseudonyms) = pseudonym_list(batch, ACCOUNTS)?;
    let visitor_views: &ListArray = required(batch, VISITOR_VIEWS, |a| a.as_list_opt::<i32>())?;
    let visitor_view_values: &UInt64Array = list_values(VISITOR_VIEWS, visitor_views, |a| {
        a.as_primitive_opt::<UInt64Type>()
    })?;

    for row in 0..batch.num_rows() {
        if days.value(row) != window {
            return Err(format!(
                "a cell of partition day {} in a partial of {}",
                format_day(days.value(row)),
                format_day(window)
            ));
        }
        let visitor = match (visitor_ids.is_valid(row), visitor_key_ids.is_valid(row)) {
            (true, true) => Some((
                pseudonym(visitor_ids.value(row))?,
                strings.get(visitor_key_ids.value(row)),
            )),
            (false, false) => None,
            _ => {
                return Err(format!(
                    "`{VISITOR_ID}` without `{VISITOR_KEY_ID}` or the reverse"
                ));
            }
        };
        let key = CellKey {
            bucket: buckets.value(row),
            partition_day: window,
            dims: dims.iter().map(|d| strings.get(d.value(row))).collect(),
            visitor,
        };

        let range = |list: &ListArray| {
            let offsets = list.value_offsets();
            offsets[row] as usize..offsets[row + 1] as usize
        };
        let (visitor_range, views_range) = (range(visitors), range(visitor_views));
        if visitor_range.len() != views_range.len() {
            return Err(format!(
                "`{VISITORS}` and `{VISITOR_VIEWS}` differ in length in row {row}"
            ));
        }
        let mut cell = CellState {
            views: views.value(row),
            bytes: bytes.value(row),
            visitors: FastMap::default(),
            accounts: FastSet::default(),
        };
        cell.visitors.reserve(visitor_range.len());
        for (i, j) in visitor_range.zip(views_range) {
            let visitor = pseudonym(visitor_pseudonyms.value(i))?;
            if cell
                .visitors
                .insert(visitor, visitor_view_values.value(j))
                .is_some()
            {
                return Err(format!("a visitor listed twice in row {row}"));
            }
        }
        for i in range(accounts) {
            if !cell
                .accounts
                .insert(pseudonym(account_pseudonyms.value(i))?)
            {
                return Err(format!("an account listed twice in row {row}"));
            }
        }
        if state.cells.insert(key, cell).is_some() {
            return Err(format!("a cell listed twice (row {row})"));
        }
    }
    Ok(())
}

/// The column `name` as the array type `cast` picks, or why not.
fn column<'a, T: Array>(
    batch: &'a RecordBatch,
    name: &str,
    cast: impl FnOnce(&'a dyn Array) -> Option<&'a T>,
) -> Result<&'a T, String> {
    let array = batch
        .column_by_name(name)
        .ok_or_else(|| format!("no column `{name}`"))?;
    cast(array.as_ref()).ok_or_else(|| {
        format!(
            "column `{name}` is {}, not the partial layout's type",
            array.data_type()
        )
    })
}

/// Like [`column`], for a column that must have no nulls.
fn required<'a, T: Array>(
    batch: &'a RecordBatch,
    name: &str,
    cast: impl FnOnce(&'a dyn Array) -> Option<&'a T>,
) -> Result<&'a T, String> {
    let array = column(batch, name, cast)?;
    if array.null_count() > 0 {
        return Err(format!("column `{name}` has nulls"));
    }
    Ok(array)
}

/// The values of a list column, which must have no nulls.
fn list_values<'a, T: Array>(
    name: &str,
    list: &'a ListArray,
    cast: impl FnOnce(&'a dyn Array) -> Option<&'a T>,
) -> Result<&'a T, String> {
    let values = cast(list.values().as_ref())
        .ok_or_else(|| format!("column `{name}` has items of type {}", list.value_type()))?;
    if values.null_count() > 0 {
        return Err(format!("column `{name}` has null items"));
    }
    Ok(values)
}

/// A `List<FixedSizeBinary(16)>` column and its items.
fn pseudonym_list<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<(&'a ListArray, &'a FixedSizeBinaryArray), String> {
    let list: &ListArray = required(batch, name, |a| a.as_list_opt::<i32>())?;
    let values = list_values(name, list, |a| {
        a.as_fixed_size_binary_opt()
            .filter(|a| a.value_length() == PSEUDONYM_LEN)
    })?;
    Ok((list, values))
}

/// A pseudonym from its 16 bytes (serde is `Pseudonym`'s public constructor).
fn pseudonym(bytes: &[u8]) -> Result<Pseudonym, String> {
    use serde::de::value::{Error, SeqDeserializer};
    let inner = SeqDeserializer::<_, Error>::new(bytes.iter().copied());
    Pseudonym::deserialize(SeqDeserializer::<_, Error>::new(std::iter::once(inner)))
        .map_err(|e| format!("bad pseudonym: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> PartialMeta {
        PartialMeta {
            report: "page_views_daily".into(),
            partition_day: logveil_parse::time::days_from_civil(2026, 11, 29),
            partition: 7,
            partitions: 16,
            first_seq: 123,
            last_seq: 456,
            report_fingerprint: "f".into(),
        }
    }

    #[test]
    fn file_names_sort_by_report_day_partition_and_sequence() {
        assert_eq!(
            partial_file_name(&meta()),
            "page_views_daily/day=2026-11-29/p=0007/seq-00000000000000000123-00000000000000000456.parquet"
        );
        let later = PartialMeta {
            first_seq: 1000,
            last_seq: 2000,
            ..meta()
        };
        assert!(partial_file_name(&meta()) < partial_file_name(&later));
    }

    #[test]
    fn pseudonyms_come_back_from_their_bytes() {
        let bytes: Vec<u8> = (0..16).collect();
        let p = pseudonym(&bytes).unwrap();
        assert_eq!(p.as_bytes().as_slice(), bytes.as_slice());
        assert!(pseudonym(&bytes[..15]).is_err());
    }
}
