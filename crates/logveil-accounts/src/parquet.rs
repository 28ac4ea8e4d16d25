//! The Parquet source: `parquet:PATH`, the columns of the CSV export ([`COLUMNS`], and of
//! [`OPTIONAL_COLUMNS`] those the load wants and the file has, as strings), one row per
//! account–cookie link. Other columns (e-mail, name, …) are left out of the read by a
//! projection mask, so they are never even decoded; rows are read in batches of
//! [`BATCH_ROWS`], so memory stays bounded whatever the file's size.
//!
//! Accepted types: strings as `Utf8`, `LargeUtf8` or `Utf8View`; `birth_date` as `Date32`
//! or a string (`YYYY-MM-DD`); flags as `Boolean` or any integer holding 0 or 1. NULL means
//! empty: an account without a cookie, or an unknown birth date or gender; a NULL
//! `account_id` or flag is an error. Errors name the file, the row (1-based, in file order)
//! and the column, never a value.

use std::fs::File;
use std::path::Path;

use ::parquet::arrow::ProjectionMask;
use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type,
    UInt64Type,
};
use arrow_array::{Array, ArrayRef, Date32Array};
use arrow_schema::DataType;

use crate::{AccountsError, BirthDate, Builder, FLAG_COLUMNS, OPTIONAL_COLUMNS, Row};

/// Rows decoded at a time.
pub const BATCH_ROWS: usize = 8192;

/// The columns read, by name; any others in the file are ignored.
pub const COLUMNS: [&str; 8] = [
    "account_id",
    "cookie_id",
    "birth_date",
    "gender",
    FLAG_COLUMNS[0],
    FLAG_COLUMNS[1],
    FLAG_COLUMNS[2],
    FLAG_COLUMNS[3],
];

#[derive(Clone, Copy)]
enum Kind {
    Text,
    BirthDate,
    Flag,
}

impl Kind {
    fn of(column: usize) -> Self {
        match column {
            2 => Self::BirthDate,
            4.. => Self::Flag,
            _ => Self::Text,
        }
    }

    fn accepts(self, t: &DataType) -> bool {
        let text = matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
        match self {
            Self::Text => text,
            Self::BirthDate => text || *t == DataType::Date32,
            Self::Flag => t.is_integer() || *t == DataType::Boolean,
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Self::Text => "Utf8, LargeUtf8 or Utf8View",
            Self::BirthDate => "Date32, Utf8, LargeUtf8 or Utf8View",
            Self::Flag => "Boolean or an integer type",
        }
    }
}

/// Reads cell `i` of a string column; `None` for NULL.
type TextColumn<'a> = Box<dyn Fn(usize) -> Option<&'a str> + 'a>;
/// Reads cell `i` of a flag column; `None` for NULL or a value other than 0/1.
type FlagColumn<'a> = Box<dyn Fn(usize) -> Option<bool> + 'a>;

fn text_column(a: &ArrayRef) -> Option<TextColumn<'_>> {
    Some(match a.data_type() {
        DataType::Utf8 => {
            let a = a.as_string::<i32>();
            Box::new(move |i| a.is_valid(i).then(|| a.value(i)))
        }
        DataType::LargeUtf8 => {
            let a = a.as_string::<i64>();
            Box::new(move |i| a.is_valid(i).then(|| a.value(i)))
        }
        DataType::Utf8View => {
            let a = a.as_string_view();
            Box::new(move |i| a.is_valid(i).then(|| a.value(i)))
        }
        _ => return None,
    })
}

fn flag_column(a: &ArrayRef) -> Option<FlagColumn<'_>> {
    macro_rules! int {
        ($t:ty) => {{
            let a = a.as_primitive::<$t>();
            Box::new(move |i| match a.is_valid(i).then(|| a.value(i)) {
                Some(0) => Some(false),
                Some(1) => Some(true),
                _ => None,
            })
        }};
    }
    Some(match a.data_type() {
        DataType::Boolean => {
            let a = a.as_boolean();
            Box::new(move |i| a.is_valid(i).then(|| a.value(i)))
        }
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt8 => int!(UInt8Type),
        DataType::UInt16 => int!(UInt16Type),
        DataType::UInt32 => int!(UInt32Type),
        DataType::UInt64 => int!(UInt64Type),
        _ => return None,
    })
}

enum BirthColumn<'a> {
    Text(TextColumn<'a>),
    Date(&'a Date32Array),
}

impl BirthColumn<'_> {
    fn get(&self, i: usize) -> BirthDate<'_> {
        match self {
            Self::Text(t) => t(i).map_or(BirthDate::Unknown, |t| BirthDate::Text(t.as_bytes())),
            Self::Date(d) if d.is_valid(i) => BirthDate::Day(d.value(i)),
            Self::Date(_) => BirthDate::Unknown,
        }
    }
}

pub(crate) fn load(path: &Path, builder: &mut Builder<'_>) -> Result<(), AccountsError> {
    let fail = |message: String| AccountsError::Parquet {
        path: path.to_owned(),
        message,
    };
    let file = File::open(path).map_err(|source| AccountsError::Io {
        path: path.to_owned(),
        source,
    })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| fail(format!("not a readable Parquet file: {e}")))?;
    let schema = reader.schema().clone();
    let mut roots = Vec::with_capacity(COLUMNS.len());
    for (k, name) in COLUMNS.iter().enumerate() {
        let Some((index, field)) = schema.column_with_name(name) else {
            return Err(fail(format!(
                "missing column `{name}` (required: {})",
                COLUMNS.join(", ")
            )));
        };
        let kind = Kind::of(k);
        if !kind.accepts(field.data_type()) {
            return Err(fail(format!(
                "column `{name}`: type {} is not supported (expected {})",
                field.data_type(),
                kind.expected()
            )));
        }
        roots.push(index);
    }
    // Optional columns: projected only when wanted and present.
    let mut read = [false; 4];
    for (k, name) in OPTIONAL_COLUMNS.iter().enumerate() {
        if !builder.wants(k) {
            continue;
        }
        let Some((index, field)) = schema.column_with_name(name) else {
            continue;
        };
        if !Kind::Text.accepts(field.data_type()) {
            return Err(fail(format!(
                "column `{name}`: type {} is not supported (expected {})",
                field.data_type(),
                Kind::Text.expected()
            )));
        }
        roots.push(index);
        read[k] = true;
    }
    let mask = ProjectionMask::roots(reader.parquet_schema(), roots);
    let batches = reader
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| fail(e.to_string()))?;

    let mut row_number = 0u64;
    for batch in batches {
        let batch = batch.map_err(|e| fail(format!("after row {row_number}: {e}")))?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| fail(format!("column `{name}` missing from a row group")))
        };
        let text = |name: &str| {
            text_column(column(name)?)
                .ok_or_else(|| fail(format!("column `{name}`: type changed within the file")))
        };
        let (account_id, cookie_id, gender) =
            (text("account_id")?, text("cookie_id")?, text("gender")?);
        let birth_date = {
            let c = column("birth_date")?;
            match c.as_primitive_opt::<Date32Type>() {
                Some(dates) => BirthColumn::Date(dates),
                None => BirthColumn::Text(text("birth_date")?),
            }
        };
        let mut optional_columns = Vec::with_capacity(4);
        for (k, name) in OPTIONAL_COLUMNS.iter().enumerate() {
            optional_columns.push(if read[k] { Some(text(name)?) } else { None });
        }
        let mut flag_columns = Vec::with_capacity(4);
        for name in FLAG_COLUMNS {
            flag_columns.push(
                flag_column(column(name)?).ok_or_else(|| {
                    fail(format!("column `{name}`: type changed within the file"))
                })?,
            );
        }

        for i in 0..batch.num_rows() {
            row_number += 1;
            let bad = |column: &'static str, message: &'static str| AccountsError::BadValue {
                path: path.to_owned(),
                row: row_number,
                column,
                message,
            };
            let id = account_id(i)
                .ok_or_else(|| bad("account_id", "NULL"))?
                .trim_ascii();
            if id.is_empty() {
                return Err(bad("account_id", "empty"));
            }
            let mut flags = [false; 4];
            for (k, read) in flag_columns.iter().enumerate() {
                flags[k] = read(i).ok_or_else(|| bad(FLAG_COLUMNS[k], "expected 0 or 1"))?;
            }
            let mut optional = [None; 4];
            for (k, column) in optional_columns.iter().enumerate() {
                if let Some(column) = column {
                    optional[k] = Some(column(i).unwrap_or_default().as_bytes());
                }
            }
            builder.add(&Row {
                account_id: id.as_bytes(),
                cookie_id: cookie_id(i).map(|c| c.trim_ascii().as_bytes()),
                birth_date: birth_date.get(i),
                gender: gender(i).unwrap_or_default().as_bytes(),
                flags,
                optional,
            });
        }
    }
    Ok(())
}
