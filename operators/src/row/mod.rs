//! Records of config-driven pipelines: a [`Row`] of [`Value`]s laid out by
//! a [`Schema`] known when the pipeline is built.
//!
//! A row is positional: field `i` of the stream's schema is
//! `row.values[i]`. Processors resolve field names to indices once, at
//! build time (a missing field is a config error), and then read
//! `ArchivedRow::values[i]` in place from the rkyv batch, with no lookup by
//! name and no copy.
//!
//! Every field may be [`Value::Null`] (absent from the input, or failed to
//! convert); a typed field otherwise holds a value of its [`Type`]. `List`
//! and `Map` hold any values: they carry the nested parts of JSON logs
//! through a pipeline, and expressions treat them as opaque.
//!
//! Timestamps are milliseconds since the Unix epoch (UTC), signed; IP
//! addresses are 16 bytes, IPv4 stored IPv4-mapped (`::ffff:a.b.c.d`) so one
//! comparison serves both families.

pub(crate) mod convert;
mod fields;
mod json;
mod order;

pub use fields::FieldTypes;
pub use json::{
    json_object_into, parse_timestamp, tap_format, value_from_json, write_json_value,
    write_row_json,
};

pub(crate) use order::{cmp_slices, cmp_values};

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use rkyv::{Archive, Deserialize, Serialize};

/// A field's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Type {
    /// `true` / `false`.
    Bool,
    /// 64-bit signed integer.
    Int,
    /// 64-bit float.
    Float,
    /// UTF-8 text.
    String,
    /// Milliseconds since the Unix epoch.
    Timestamp,
    /// An IPv4 or IPv6 address.
    Ip,
    /// A list of any values.
    List,
    /// String keys to any values.
    Map,
}

impl Type {
    /// The name pipeline files use.
    pub fn name(self) -> &'static str {
        match self {
            Type::Bool => "bool",
            Type::Int => "int",
            Type::Float => "float",
            Type::String => "string",
            Type::Timestamp => "timestamp",
            Type::Ip => "ip",
            Type::List => "list",
            Type::Map => "map",
        }
    }

    /// The type called `name` in a pipeline file.
    pub fn parse(name: &str) -> Option<Type> {
        Some(match name {
            "bool" => Type::Bool,
            "int" => Type::Int,
            "float" => Type::Float,
            "string" => Type::String,
            "timestamp" => Type::Timestamp,
            "ip" => Type::Ip,
            "list" => Type::List,
            "map" => Type::Map,
            _ => return None,
        })
    }

    /// Whether values of this type are numbers (`int` or `float`).
    pub fn is_numeric(self) -> bool {
        matches!(self, Type::Int | Type::Float)
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One named, typed field of a [`Schema`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The name expressions and configs use.
    pub name: String,
    /// What every non-null value of the field is.
    pub ty: Type,
}

/// The fields of a stream, in row order. Shared by every operator reading
/// the stream ([`SchemaRef`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Schema {
    fields: Vec<Field>,
}

/// A shared schema.
pub type SchemaRef = Arc<Schema>;

impl Schema {
    /// A schema of `fields`, in order.
    ///
    /// # Panics
    /// If two fields share a name: schemas are built by weir from checked
    /// configurations, so a duplicate is a bug.
    pub fn new(fields: impl IntoIterator<Item = (impl Into<String>, Type)>) -> Schema {
        let mut schema = Schema::default();
        for (name, ty) in fields {
            let name = name.into();
            assert!(schema.index(&name).is_none(), "duplicate field `{name}`");
            schema.fields.push(Field { name, ty });
        }
        schema
    }

    /// The fields, in row order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Fields in the schema.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the schema has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The index of the field called `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|field| field.name == name)
    }

    /// The index and type of the field called `name`, or an error that
    /// lists the fields there are.
    pub fn lookup(&self, name: &str) -> Result<(usize, Type), String> {
        match self.index(name) {
            Some(index) => Ok((index, self.fields[index].ty)),
            None => Err(format!(
                "no field `{name}`; the input has {}",
                self.describe()
            )),
        }
    }

    /// Appends a field, or changes the type of the existing field of that
    /// name; returns its index.
    pub fn set(&mut self, name: &str, ty: Type) -> usize {
        match self.index(name) {
            Some(index) => {
                self.fields[index].ty = ty;
                index
            }
            None => {
                self.fields.push(Field {
                    name: name.to_owned(),
                    ty,
                });
                self.fields.len() - 1
            }
        }
    }

    /// `name: type, ...`, for error messages.
    pub fn describe(&self) -> String {
        if self.fields.is_empty() {
            return "no fields".into();
        }
        let fields: Vec<String> = self
            .fields
            .iter()
            .map(|field| format!("`{}: {}`", field.name, field.ty))
            .collect();
        fields.join(", ")
    }
}

/// A problem with one option of a component's configuration, found while
/// building it against its input's schema: `option` is the key as written
/// (`group_by`, `aggregates`, `condition`), so the error can point there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    /// The option's key.
    pub option: String,
    /// What is wrong, e.g. "no field `stauts`; the input has ...".
    pub message: String,
}

impl OptionError {
    /// The message, led by the option's name unless it names it already.
    pub fn naming_option(self) -> String {
        if self.message.contains(&format!("`{}`", self.option)) {
            self.message
        } else {
            format!("`{}`: {}", self.option, self.message)
        }
    }

    /// An error about `option`.
    pub fn new(option: impl Into<String>, message: impl Into<String>) -> OptionError {
        OptionError {
            option: option.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.option, self.message)
    }
}

impl std::error::Error for OptionError {}

/// An IP address as 16 bytes; IPv4 is stored IPv4-mapped.
#[derive(
    Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Hash, PartialOrd, Ord))]
pub struct Ip(pub [u8; 16]);

impl Ip {
    /// The address as the standard library's type (IPv4 when mapped).
    pub fn addr(self) -> IpAddr {
        let v6 = Ipv6Addr::from(self.0);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    }
}

impl From<IpAddr> for Ip {
    fn from(addr: IpAddr) -> Ip {
        match addr {
            IpAddr::V4(v4) => Ip(v4.to_ipv6_mapped().octets()),
            IpAddr::V6(v6) => Ip(v6.octets()),
        }
    }
}

impl fmt::Display for Ip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.addr().fmt(f)
    }
}

impl ArchivedIp {
    /// The address this archived value holds.
    pub fn to_ip(&self) -> Ip {
        Ip(self.0)
    }
}

/// One field's value.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[rkyv(serialize_bounds(
    __S: rkyv::ser::Writer + rkyv::ser::Allocator,
    __S::Error: rkyv::rancor::Source,
))]
#[rkyv(deserialize_bounds(__D::Error: rkyv::rancor::Source))]
#[rkyv(bytecheck(bounds(
    __C: rkyv::validation::ArchiveContext,
    __C::Error: rkyv::rancor::Source,
)))]
pub enum Value {
    /// Absent.
    Null,
    /// A `bool`.
    Bool(bool),
    /// An `int`.
    Int(i64),
    /// A `float`.
    Float(f64),
    /// A `string`.
    String(String),
    /// A `timestamp`: milliseconds since the Unix epoch.
    Timestamp(i64),
    /// An `ip`.
    Ip(Ip),
    /// A `list`.
    List(#[rkyv(omit_bounds)] Vec<Value>),
    /// A `map`, in insertion order.
    Map(#[rkyv(omit_bounds)] Vec<MapEntry>),
}

/// One entry of a [`Value::Map`].
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[rkyv(serialize_bounds(
    __S: rkyv::ser::Writer + rkyv::ser::Allocator,
    __S::Error: rkyv::rancor::Source,
))]
#[rkyv(deserialize_bounds(__D::Error: rkyv::rancor::Source))]
#[rkyv(bytecheck(bounds(
    __C: rkyv::validation::ArchiveContext,
    __C::Error: rkyv::rancor::Source,
)))]
pub struct MapEntry {
    /// The key.
    pub key: String,
    /// The value.
    #[rkyv(omit_bounds)]
    pub value: Value,
}

impl Value {
    /// The value's type; `None` for `Null`.
    pub fn ty(&self) -> Option<Type> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(_) => Type::Bool,
            Value::Int(_) => Type::Int,
            Value::Float(_) => Type::Float,
            Value::String(_) => Type::String,
            Value::Timestamp(_) => Type::Timestamp,
            Value::Ip(_) => Type::Ip,
            Value::List(_) => Type::List,
            Value::Map(_) => Type::Map,
        })
    }
}

impl Value {
    /// [`ArchivedValue::hash_into`] of the owned value: equal hashes for
    /// equal values whether archived or not, so an edge can partition
    /// owned rows by the hash a processor computes on archived ones.
    pub fn hash_into(&self, hasher: &mut Fnv) {
        match self {
            Value::Null => hasher.write(&[0]),
            Value::Bool(value) => hasher.write(&[1, u8::from(*value)]),
            Value::Int(value) => {
                hasher.write(&[2]);
                hasher.write(&value.to_le_bytes());
            }
            Value::Float(value) => {
                hasher.write(&[3]);
                hasher.write(&value.to_bits().to_le_bytes());
            }
            Value::String(value) => {
                hasher.write(&[4]);
                hasher.write(value.as_bytes());
                hasher.write(&[0xff]);
            }
            Value::Timestamp(value) => {
                hasher.write(&[5]);
                hasher.write(&value.to_le_bytes());
            }
            Value::Ip(value) => {
                hasher.write(&[6]);
                hasher.write(&value.0);
            }
            Value::List(values) => {
                hasher.write(&[7]);
                for value in values {
                    value.hash_into(hasher);
                }
                hasher.write(&[0xff]);
            }
            Value::Map(entries) => {
                hasher.write(&[8]);
                for entry in entries {
                    hasher.write(entry.key.as_bytes());
                    entry.value.hash_into(hasher);
                }
                hasher.write(&[0xff]);
            }
        }
    }
}

impl ArchivedValue {
    /// The value's type; `None` for `Null`.
    pub fn ty(&self) -> Option<Type> {
        Some(match self {
            ArchivedValue::Null => return None,
            ArchivedValue::Bool(_) => Type::Bool,
            ArchivedValue::Int(_) => Type::Int,
            ArchivedValue::Float(_) => Type::Float,
            ArchivedValue::String(_) => Type::String,
            ArchivedValue::Timestamp(_) => Type::Timestamp,
            ArchivedValue::Ip(_) => Type::Ip,
            ArchivedValue::List(_) => Type::List,
            ArchivedValue::Map(_) => Type::Map,
        })
    }

    /// Whether it is `Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, ArchivedValue::Null)
    }

    /// The bool, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            ArchivedValue::Bool(value) => Some(*value),
            _ => None,
        }
    }

    /// The integer, if it is an `int`.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            ArchivedValue::Int(value) => Some(value.to_native()),
            _ => None,
        }
    }

    /// The number as a float, if it is an `int` or a `float`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            ArchivedValue::Int(value) => Some(value.to_native() as f64),
            ArchivedValue::Float(value) => Some(value.to_native()),
            _ => None,
        }
    }

    /// The text, if it is a `string`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ArchivedValue::String(value) => Some(value.as_str()),
            _ => None,
        }
    }

    /// The milliseconds, if it is a `timestamp`.
    pub fn as_timestamp(&self) -> Option<i64> {
        match self {
            ArchivedValue::Timestamp(value) => Some(value.to_native()),
            _ => None,
        }
    }

    /// The address, if it is an `ip`.
    pub fn as_ip(&self) -> Option<Ip> {
        match self {
            ArchivedValue::Ip(value) => Some(value.to_ip()),
            _ => None,
        }
    }

    /// An owned copy.
    pub fn to_value(&self) -> Value {
        match self {
            ArchivedValue::Null => Value::Null,
            ArchivedValue::Bool(value) => Value::Bool(*value),
            ArchivedValue::Int(value) => Value::Int(value.to_native()),
            ArchivedValue::Float(value) => Value::Float(value.to_native()),
            ArchivedValue::String(value) => Value::String(value.as_str().to_owned()),
            ArchivedValue::Timestamp(value) => Value::Timestamp(value.to_native()),
            ArchivedValue::Ip(value) => Value::Ip(value.to_ip()),
            ArchivedValue::List(values) => {
                Value::List(values.iter().map(ArchivedValue::to_value).collect())
            }
            ArchivedValue::Map(entries) => Value::Map(
                entries
                    .iter()
                    .map(|entry| MapEntry {
                        key: entry.key.as_str().to_owned(),
                        value: entry.value.to_value(),
                    })
                    .collect(),
            ),
        }
    }

    /// Copies the value into `target`, reusing `target`'s string buffer when
    /// both are strings: a processor forwarding rows through one reused
    /// [`Row`] allocates nothing once its buffers have grown.
    pub fn copy_into(&self, target: &mut Value) {
        match (self, &mut *target) {
            (ArchivedValue::String(text), Value::String(buffer)) => {
                buffer.clear();
                buffer.push_str(text);
            }
            _ => *target = self.to_value(),
        }
    }

    /// Feeds the value to `hasher` so equal values hash equally; used to
    /// partition and group by field values. Floats hash by bits.
    pub fn hash_into(&self, hasher: &mut Fnv) {
        match self {
            ArchivedValue::Null => hasher.write(&[0]),
            ArchivedValue::Bool(value) => hasher.write(&[1, u8::from(*value)]),
            ArchivedValue::Int(value) => {
                hasher.write(&[2]);
                hasher.write(&value.to_native().to_le_bytes());
            }
            ArchivedValue::Float(value) => {
                hasher.write(&[3]);
                hasher.write(&value.to_native().to_bits().to_le_bytes());
            }
            ArchivedValue::String(value) => {
                hasher.write(&[4]);
                hasher.write(value.as_bytes());
                hasher.write(&[0xff]);
            }
            ArchivedValue::Timestamp(value) => {
                hasher.write(&[5]);
                hasher.write(&value.to_native().to_le_bytes());
            }
            ArchivedValue::Ip(value) => {
                hasher.write(&[6]);
                hasher.write(&value.0);
            }
            ArchivedValue::List(values) => {
                hasher.write(&[7]);
                for value in values.iter() {
                    value.hash_into(hasher);
                }
                hasher.write(&[0xff]);
            }
            ArchivedValue::Map(entries) => {
                hasher.write(&[8]);
                for entry in entries.iter() {
                    hasher.write(entry.key.as_bytes());
                    entry.value.hash_into(hasher);
                }
                hasher.write(&[0xff]);
            }
        }
    }
}

impl fmt::Display for ArchivedValue {
    /// Strings bare, everything else as JSON writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchivedValue::String(value) => f.write_str(value),
            other => {
                let mut text = String::new();
                write_json_value(other, &mut text);
                f.write_str(&text)
            }
        }
    }
}

/// 64-bit FNV-1a: stable across runs and builds, so a restarted run sends
/// every key to the shard that holds its state.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Mixes in `bytes`.
    #[inline]
    pub fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// The hash so far.
    pub fn finish(self) -> u64 {
        self.0
    }
}

/// A record of a config-driven pipeline: one value per schema field.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Row {
    /// The values, in schema order.
    pub values: Vec<Value>,
}

/// `row` in the bytes of weir's row encoding (rkyv), as a repartition
/// topic holds it.
pub fn encode_row(row: &Row) -> Result<Vec<u8>, String> {
    rkyv::to_bytes::<rkyv::rancor::Error>(row)
        .map(|bytes| bytes.to_vec())
        .map_err(|error| error.to_string())
}

/// The row [`encode_row`] made `bytes` of; an error naming what does not
/// check.
pub fn decode_row(bytes: &[u8]) -> Result<Row, String> {
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<Row, rkyv::rancor::BoxedError>(&aligned).map_err(|error| error.to_string())
}

impl Row {
    /// A row of `width` nulls.
    pub fn nulls(width: usize) -> Row {
        Row {
            values: vec![Value::Null; width],
        }
    }
}

impl ArchivedRow {
    /// Field `index`, or `Null` past the end (rows from a narrower schema).
    #[inline]
    pub fn get(&self, index: usize) -> &ArchivedValue {
        static NULL: ArchivedValue = ArchivedValue::Null;
        self.values.get(index).unwrap_or(&NULL)
    }

    /// The hash of the fields at `indices`, for partitioning and grouping.
    pub fn hash_fields(&self, indices: &[usize]) -> u64 {
        let mut hasher = Fnv::default();
        for &index in indices {
            self.get(index).hash_into(&mut hasher);
        }
        hasher.finish()
    }

    /// Copies the row into `target`, reusing its buffers (see
    /// [`ArchivedValue::copy_into`]).
    pub fn copy_into(&self, target: &mut Row) {
        target.values.truncate(self.values.len());
        for (index, value) in self.values.iter().enumerate() {
            match target.values.get_mut(index) {
                Some(slot) => value.copy_into(slot),
                None => target.values.push(value.to_value()),
            }
        }
    }

    /// An owned copy.
    pub fn to_row(&self) -> Row {
        Row {
            values: self.values.iter().map(ArchivedValue::to_value).collect(),
        }
    }
}

/// The same hash as [`ArchivedRow::hash_fields`], of owned values.
pub fn hash_values<'a>(values: impl IntoIterator<Item = &'a Value>) -> u64 {
    let mut hasher = Fnv::default();
    for value in values {
        value.hash_into(&mut hasher);
    }
    hasher.finish()
}

impl Row {
    /// [`ArchivedRow::hash_fields`] of the owned row: what an edge
    /// partitions by.
    pub fn hash_fields(&self, indices: &[usize]) -> u64 {
        static NULL: Value = Value::Null;
        let mut hasher = Fnv::default();
        for &index in indices {
            self.values
                .get(index)
                .unwrap_or(&NULL)
                .hash_into(&mut hasher);
        }
        hasher.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(row: &Row) -> rkyv::util::AlignedVec {
        rkyv::to_bytes::<rkyv::rancor::Error>(row).unwrap()
    }

    #[test]
    fn rows_round_trip_through_rkyv_with_nested_values() {
        let row = Row {
            values: vec![
                Value::Int(-3),
                Value::String("GET".into()),
                Value::Ip(Ip::from("10.0.0.7".parse::<IpAddr>().unwrap())),
                Value::List(vec![Value::Bool(true), Value::Null]),
                Value::Map(vec![MapEntry {
                    key: "ua".into(),
                    value: Value::Float(1.5),
                }]),
                Value::Timestamp(1_700_000_000_000),
            ],
        };
        let bytes = archive(&row);
        let archived = rkyv::access::<ArchivedRow, rkyv::rancor::Error>(&bytes).unwrap();
        assert_eq!(archived.to_row(), row);
        assert_eq!(archived.get(0).as_int(), Some(-3));
        assert_eq!(archived.get(1).as_str(), Some("GET"));
        assert_eq!(archived.get(2).as_ip().unwrap().to_string(), "10.0.0.7");
        assert!(archived.get(99).is_null());
    }

    #[test]
    fn equal_values_hash_equally_and_types_differ() {
        let a = Row {
            values: vec![Value::String("x".into()), Value::Int(1)],
        };
        let b = Row {
            values: vec![Value::String("x".into()), Value::Timestamp(1)],
        };
        let (bytes_a, bytes_b) = (archive(&a), archive(&b));
        let archived_a = rkyv::access::<ArchivedRow, rkyv::rancor::Error>(&bytes_a).unwrap();
        let archived_b = rkyv::access::<ArchivedRow, rkyv::rancor::Error>(&bytes_b).unwrap();
        assert_eq!(archived_a.hash_fields(&[0]), archived_b.hash_fields(&[0]));
        assert_ne!(archived_a.hash_fields(&[1]), archived_b.hash_fields(&[1]));
        assert_eq!(archived_a.hash_fields(&[0, 1]), hash_values(&a.values));
    }

    #[test]
    fn rows_are_runtime_records() {
        fn record<T: weir_runtime::Record + Send + Sync>() {}
        record::<Row>();
    }

    #[test]
    fn schema_lookup_names_the_fields_there_are() {
        let mut schema = Schema::new([("ip", Type::Ip), ("status", Type::Int)]);
        assert_eq!(schema.lookup("status"), Ok((1, Type::Int)));
        let error = schema.lookup("stauts").unwrap_err();
        assert!(error.contains("`ip: ip`, `status: int`"), "{error}");
        assert_eq!(schema.set("country", Type::String), 2);
        assert_eq!(schema.set("status", Type::String), 1);
    }
}
