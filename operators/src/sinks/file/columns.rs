//! Rows to Parquet: the file schema derived from a row [`Schema`], and
//! column buffers written out as row groups.
//!
//! # Types
//! Every column is `OPTIONAL` (a null is a missing value, definition level
//! 0), named after its field:
//!
//! | row type    | Parquet physical type | logical type                       |
//! |-------------|-----------------------|------------------------------------|
//! | `bool`      | `BOOLEAN`             |                                    |
//! | `int`       | `INT64`               |                                    |
//! | `float`     | `DOUBLE`              |                                    |
//! | `string`    | `BYTE_ARRAY`          | `STRING` (UTF8)                    |
//! | `timestamp` | `INT64`               | `TIMESTAMP(MILLIS, UTC)`           |
//! | `ip`        | `BYTE_ARRAY`          | `STRING`: the address as text (`10.0.0.1`, `2001:db8::1`) |
//! | `list`      | `BYTE_ARRAY`          | `JSON`: the value as JSON text     |
//! | `map`       | `BYTE_ARRAY`          | `JSON`: the value as JSON text     |
//!
//! IP addresses are text because Parquet has no address type, and text is
//! what every reader shows and filters on; lists and maps hold any values,
//! so they are JSON text (readers that know the `JSON` logical type parse
//! it, the others see a string). A value of another type than its field's
//! (which typed rows do not hold) is written as null, except an `int` in a
//! `float` field, which is converted.
//!
//! # Buffering
//! Values are appended to per-column buffers (no allocation per value:
//! text goes into one byte arena per column) and written out as a row
//! group when [`Columns::is_full`]: after `row_group_rows` rows or
//! [`ROW_GROUP_MAX_BYTES`] bytes of text, and at the end of every epoch.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use parquet::basic::{LogicalType, Repetition, TimeUnit, Type as PhysicalType};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::errors::{ParquetError, Result};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{Type as ParquetType, TypePtr};

use crate::limits::ROW_GROUP_MAX_BYTES;
use crate::row::{write_json_value, ArchivedRow, ArchivedValue, Schema, Type};

/// The Parquet schema (a message named `row`) of rows of `schema`; see the
/// module docs for the types.
pub fn parquet_schema(schema: &Schema) -> Result<TypePtr> {
    let mut fields = Vec::with_capacity(schema.len());
    for field in schema.fields() {
        let (physical, logical) = match field.ty {
            Type::Bool => (PhysicalType::BOOLEAN, None),
            Type::Int => (PhysicalType::INT64, None),
            Type::Float => (PhysicalType::DOUBLE, None),
            Type::String | Type::Ip => (PhysicalType::BYTE_ARRAY, Some(LogicalType::String)),
            Type::Timestamp => (
                PhysicalType::INT64,
                Some(LogicalType::timestamp(true, TimeUnit::MILLIS)),
            ),
            Type::List | Type::Map => (PhysicalType::BYTE_ARRAY, Some(LogicalType::Json)),
        };
        let column = ParquetType::primitive_type_builder(&field.name, physical)
            .with_repetition(Repetition::OPTIONAL)
            .with_logical_type(logical)
            .build()?;
        fields.push(Arc::new(column));
    }
    Ok(Arc::new(
        ParquetType::group_type_builder("row")
            .with_fields(fields)
            .build()?,
    ))
}

/// One column's buffered values: the non-null ones, in order.
#[derive(Debug)]
enum Data {
    Bool(Vec<bool>),
    Int(Vec<i64>),
    Float(Vec<f64>),
    /// Text values back to back in `bytes`; value `i` ends at `ends[i]`.
    Bytes {
        bytes: Vec<u8>,
        ends: Vec<usize>,
    },
}

/// One column: its field type, definition levels (1 present, 0 null) and
/// values.
#[derive(Debug)]
struct Column {
    ty: Type,
    levels: Vec<i16>,
    data: Data,
}

/// Rows buffered column by column until they are written as a row group.
#[derive(Debug)]
pub(crate) struct Columns {
    columns: Vec<Column>,
    rows: usize,
    /// Bytes in every `Data::Bytes` buffer.
    bytes: usize,
    row_group_rows: usize,
    /// Reused to format lists and maps as JSON.
    json: String,
}

impl Columns {
    /// Empty buffers for rows of `schema`, full at `row_group_rows` rows.
    pub(crate) fn new(schema: &Schema, row_group_rows: usize) -> Columns {
        let columns = schema
            .fields()
            .iter()
            .map(|field| Column {
                ty: field.ty,
                levels: Vec::new(),
                data: match field.ty {
                    Type::Bool => Data::Bool(Vec::new()),
                    Type::Int | Type::Timestamp => Data::Int(Vec::new()),
                    Type::Float => Data::Float(Vec::new()),
                    Type::String | Type::Ip | Type::List | Type::Map => Data::Bytes {
                        bytes: Vec::new(),
                        ends: Vec::new(),
                    },
                },
            })
            .collect();
        Columns {
            columns,
            rows: 0,
            bytes: 0,
            row_group_rows: row_group_rows.max(1),
            json: String::new(),
        }
    }

    /// Whether the buffered rows should be written as a row group now.
    pub(crate) fn is_full(&self) -> bool {
        self.rows >= self.row_group_rows || self.bytes >= ROW_GROUP_MAX_BYTES
    }

    /// Appends one row.
    pub(crate) fn push(&mut self, row: &ArchivedRow) {
        for (index, column) in self.columns.iter_mut().enumerate() {
            let value = row.get(index);
            let present = match (&mut column.data, column.ty) {
                (Data::Bool(values), _) => value.as_bool().map(|v| values.push(v)).is_some(),
                (Data::Int(values), Type::Timestamp) => {
                    value.as_timestamp().map(|v| values.push(v)).is_some()
                }
                (Data::Int(values), _) => value.as_int().map(|v| values.push(v)).is_some(),
                (Data::Float(values), _) => value.as_f64().map(|v| values.push(v)).is_some(),
                (Data::Bytes { bytes, ends }, ty) => {
                    let before = bytes.len();
                    let present = match (value, ty) {
                        (ArchivedValue::String(text), Type::String) => {
                            bytes.extend_from_slice(text.as_bytes());
                            true
                        }
                        (ArchivedValue::Ip(ip), Type::Ip) => {
                            // Writing to a Vec cannot fail.
                            let _ = write!(bytes, "{}", ip.to_ip());
                            true
                        }
                        (ArchivedValue::List(_), Type::List)
                        | (ArchivedValue::Map(_), Type::Map) => {
                            self.json.clear();
                            write_json_value(value, &mut self.json);
                            bytes.extend_from_slice(self.json.as_bytes());
                            true
                        }
                        _ => false,
                    };
                    if present {
                        ends.push(bytes.len());
                        self.bytes += bytes.len() - before;
                    }
                    present
                }
            };
            column.levels.push(i16::from(present));
        }
        self.rows += 1;
    }

    /// Writes the buffered rows as one row group of `writer` and empties
    /// the buffers; does nothing without rows.
    pub(crate) fn write_row_group<W: Write + Send>(
        &mut self,
        writer: &mut SerializedFileWriter<W>,
    ) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut group = writer.next_row_group()?;
        for column in &mut self.columns {
            let mut out = group
                .next_column()?
                .ok_or_else(|| ParquetError::General("fewer Parquet columns than fields".into()))?;
            let levels = Some(column.levels.as_slice());
            match &mut column.data {
                Data::Bool(values) => {
                    out.typed::<BoolType>().write_batch(values, levels, None)?;
                    values.clear();
                }
                Data::Int(values) => {
                    out.typed::<Int64Type>().write_batch(values, levels, None)?;
                    values.clear();
                }
                Data::Float(values) => {
                    out.typed::<DoubleType>()
                        .write_batch(values, levels, None)?;
                    values.clear();
                }
                Data::Bytes { bytes, ends } => {
                    // One shared buffer, sliced per value without copying.
                    let shared = Bytes::from(std::mem::take(bytes));
                    let mut start = 0;
                    let values: Vec<ByteArray> = ends
                        .iter()
                        .map(|&end| {
                            let value = ByteArray::from(shared.slice(start..end));
                            start = end;
                            value
                        })
                        .collect();
                    out.typed::<ByteArrayType>()
                        .write_batch(&values, levels, None)?;
                    ends.clear();
                }
            }
            out.close()?;
            column.levels.clear();
        }
        group.close()?;
        self.rows = 0;
        self.bytes = 0;
        Ok(())
    }

    /// Drops the buffered rows (after an error).
    pub(crate) fn clear(&mut self) {
        for column in &mut self.columns {
            column.levels.clear();
            match &mut column.data {
                Data::Bool(values) => values.clear(),
                Data::Int(values) => values.clear(),
                Data::Float(values) => values.clear(),
                Data::Bytes { bytes, ends } => {
                    bytes.clear();
                    ends.clear();
                }
            }
        }
        self.rows = 0;
        self.bytes = 0;
    }
}
