//! Arrow → Parquet: one file per report partition, written atomically.
//!
//! Layout: `OUT/<report>/date=YYYY-MM-DD/part-00000.parquet` (Hive-style, so `DuckDB`,
//! pyarrow, polars and Spark read the `date` partition column). A run writes each
//! partition's file under a temporary name in the same directory, fsyncs it, and renames
//! it over the old one: readers see the old file or the new one, never half of either,
//! and re-running a day replaces that day.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, Date32Array, DictionaryArray, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::calendar::format_day;
use crate::disclose::PublishedRow;
use crate::spec::{Bucket, Metric, ReportSpec};

/// The file name of a partition's single data file.
pub const PART_FILE: &str = "part-00000.parquet";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error("report `{report}`: {source}")]
    Arrow {
        report: String,
        source: arrow_schema::ArrowError,
    },
}

/// Columns of pseudonymous exports: the audience pseudonym and the key that made it.
pub const VISITOR_ID: &str = "visitor_id";
pub const KEY_ID: &str = "key_id";
/// Column of reports with `totals = true`: null for ordinary rows, `bucket` or
/// `first_dimension` for total rows (whose summed-over dimensions are null).
pub const TOTAL: &str = "total";

/// Dimension columns: dictionary-encoded strings (few distinct values, many rows), which
/// pandas reads as `category`, polars as `Categorical`, `DuckDB` and Spark as strings.
fn dictionary() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// The Arrow schema of a report's files.
pub fn schema(spec: &ReportSpec) -> Schema {
    let bucket = match spec.bucket {
        Bucket::Hour => Field::new(
            spec.bucket.column(),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Bucket::Day | Bucket::Week | Bucket::Month => {
            Field::new(spec.bucket.column(), DataType::Date32, false)
        }
    };
    let mut fields = vec![bucket];
    if spec.visitor_id {
        fields.push(Field::new(VISITOR_ID, DataType::Utf8, false));
        fields.push(Field::new(KEY_ID, DataType::Utf8, false));
    }
    if spec.totals {
        fields.push(Field::new(TOTAL, dictionary(), true));
    }
    fields.extend(
        spec.dimensions
            .iter()
            .map(|d| Field::new(d.as_str(), dictionary(), spec.totals)),
    );
    fields.extend(
        spec.metrics
            .iter()
            .map(|m| Field::new(m.as_str(), DataType::Int64, false)),
    );
    Schema::new(fields)
}

fn record_batch(
    spec: &ReportSpec,
    rows: &[PublishedRow],
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let schema = Arc::new(schema(spec));
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    columns.push(match spec.bucket {
        Bucket::Hour => Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.key.bucket))
                .with_timezone("UTC"),
        ),
        Bucket::Day | Bucket::Week | Bucket::Month => Arc::new(Date32Array::from_iter_values(
            rows.iter().map(|r| r.key.bucket as i32),
        )),
    });
    if spec.visitor_id {
        let visitor = |r: &PublishedRow| {
            r.key
                .visitor
                .as_ref()
                .map(|(v, k)| (v.to_hex(), Arc::clone(k)))
        };
        columns.push(Arc::new(StringArray::from_iter_values(
            rows.iter()
                .map(|r| visitor(r).map(|(v, _)| v).unwrap_or_default()),
        )));
        columns.push(Arc::new(StringArray::from_iter_values(rows.iter().map(
            |r| visitor(r).map(|(_, k)| k.to_string()).unwrap_or_default(),
        ))));
    }
    if spec.totals {
        let totals: DictionaryArray<Int32Type> = rows
            .iter()
            .map(|r| r.total.map(crate::disclose::Total::as_str))
            .collect();
        columns.push(Arc::new(totals));
    }
    for i in 0..spec.dimensions.len() {
        // In a total row the dimensions it sums over are null: all of them for a bucket
        // total, all but the first for a first-dimension total.
        let kept = |r: &PublishedRow| match r.total {
            None => true,
            Some(crate::disclose::Total::Bucket) => false,
            Some(crate::disclose::Total::FirstDimension) => i == 0,
        };
        let values: DictionaryArray<Int32Type> = rows
            .iter()
            .map(|r| kept(r).then(|| &*r.key.dims[i]))
            .collect();
        columns.push(Arc::new(values));
    }
    for metric in &spec.metrics {
        let value = |r: &PublishedRow| -> i64 {
            let v = match metric {
                Metric::Views => r.views,
                Metric::Visitors => r.visitors,
                Metric::Bytes => r.bytes,
                Metric::Accounts => r.accounts,
            };
            i64::try_from(v).unwrap_or(i64::MAX)
        };
        columns.push(Arc::new(Int64Array::from_iter_values(
            rows.iter().map(value),
        )));
    }
    RecordBatch::try_new(schema, columns)
}

/// The `logveil.disclosure` entry: which regime of [`crate::disclose`] the file went through.
pub fn disclosure_label(spec: &ReportSpec) -> String {
    if spec.visitor_id {
        return "pseudonymous_export(one row per visitor; no threshold)".to_owned();
    }
    match &spec.dp {
        Some(dp) => format!(
            "differential_privacy(discrete_laplace; epsilon={} delta={} per bucket; max_cells_per_visitor={} max_views_per_cell={}; keys={}; noisy k_min={})",
            dp.epsilon,
            dp.delta,
            dp.max_cells_per_visitor,
            dp.max_views_per_cell,
            if dp.public_keys {
                "public"
            } else {
                "thresholded"
            },
            spec.k_min
        ),
        None if spec.complementary_suppression => format!(
            "k_threshold(k_min={}) + complementary_suppression",
            spec.k_min
        ),
        None => format!("k_threshold(k_min={})", spec.k_min),
    }
}

/// Provenance written into every file's key-value metadata.
#[derive(Debug, Clone)]
pub struct Provenance {
    pub policy_sha256: String,
    pub key_id: String,
    /// Extra `logveil.*` entries (join outcomes, …).
    pub extra: Vec<(String, String)>,
}

/// Writes one partition of a report atomically; returns the final path.
pub fn write_partition(
    out_dir: &Path,
    spec: &ReportSpec,
    day: i32,
    rows: &[PublishedRow],
    provenance: &Provenance,
) -> Result<PathBuf, WriteError> {
    let dir = out_dir
        .join(&spec.name)
        .join(format!("date={}", format_day(day)));
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| WriteError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let final_path = dir.join(PART_FILE);
    let tmp_path = dir.join(format!(".{PART_FILE}.{}.tmp", std::process::id()));

    let batch = record_batch(spec, rows).map_err(|source| WriteError::Arrow {
        report: spec.name.clone(),
        source,
    })?;
    let mut metadata = vec![
        KeyValue::new(
            "logveil.version".into(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
        KeyValue::new("logveil.report".into(), spec.name.clone()),
        KeyValue::new("logveil.audience".into(), spec.audience.clone()),
        KeyValue::new("logveil.purpose".into(), spec.purpose_name.clone()),
        KeyValue::new(
            "logveil.policy_sha256".into(),
            provenance.policy_sha256.clone(),
        ),
        KeyValue::new("logveil.key_id".into(), provenance.key_id.clone()),
        KeyValue::new("logveil.k_min".into(), spec.k_min.to_string()),
        KeyValue::new("logveil.disclosure".into(), disclosure_label(spec)),
        KeyValue::new("logveil.pseudonymous".into(), spec.visitor_id.to_string()),
    ];
    metadata.extend(
        provenance
            .extra
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
    );
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("3 is a valid zstd level"),
        ))
        // Min/max statistics of a pseudonym column would answer "is this visitor in the
        // file?" from the footer alone; pseudonym columns get none (and no bloom filter).
        .set_column_statistics_enabled(ColumnPath::from(VISITOR_ID), EnabledStatistics::None)
        .set_key_value_metadata(Some(metadata))
        .set_created_by(format!("logveil {}", env!("CARGO_PKG_VERSION")))
        .build();

    let result = (|| {
        let file = File::create(&tmp_path).map_err(io(&tmp_path))?;
        let parquet_err = |source| WriteError::Parquet {
            path: tmp_path.clone(),
            source,
        };
        let mut writer =
            ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(parquet_err)?;
        writer.write(&batch).map_err(parquet_err)?;
        let mut file = writer.into_inner().map_err(parquet_err)?;
        file.flush().map_err(io(&tmp_path))?;
        file.sync_all().map_err(io(&tmp_path))?;
        std::fs::rename(&tmp_path, &final_path).map_err(io(&final_path))?;
        // Make the rename itself durable.
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp_path);
    }
    result.map(|()| final_path)
}
