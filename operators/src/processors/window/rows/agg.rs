//! Aggregate states, value equality and the distinct-count sketch.

use std::cmp::Ordering;
use std::hash::{BuildHasher, Hasher};

use hyperloglogplus::{HyperLogLog, HyperLogLogPlus};
use rustc_hash::FxHashMap;
use sketches_ddsketch::DDSketch;

use super::config::{AggregateFn, AggregateSpec};
use crate::row::{cmp_values, ArchivedValue, Fnv, MapEntry, Type, Value};

/// [`cmp_values`] of an owned value and an archived one, without copying
/// scalars.
fn cmp_archived(a: &Value, b: &ArchivedValue) -> Ordering {
    match (a, b) {
        (Value::Int(a), ArchivedValue::Int(b)) => a.cmp(&b.to_native()),
        (Value::Float(a), ArchivedValue::Float(b)) => a.total_cmp(&b.to_native()),
        (Value::String(a), ArchivedValue::String(b)) => a.as_str().cmp(b.as_str()),
        (Value::Timestamp(a), ArchivedValue::Timestamp(b)) => a.cmp(&b.to_native()),
        (Value::Ip(a), ArchivedValue::Ip(b)) => a.0.cmp(&b.0),
        (Value::Bool(a), ArchivedValue::Bool(b)) => a.cmp(b),
        _ => cmp_values(a, &b.to_value()),
    }
}

/// Whether an owned value equals an archived one (floats by bits, so NaN
/// groups with NaN).
pub(crate) fn same(a: &Value, b: &ArchivedValue) -> bool {
    match (a, b) {
        (Value::Null, ArchivedValue::Null) => true,
        (Value::Bool(a), ArchivedValue::Bool(b)) => a == b,
        (Value::Int(a), ArchivedValue::Int(b)) => *a == b.to_native(),
        (Value::Float(a), ArchivedValue::Float(b)) => a.to_bits() == b.to_native().to_bits(),
        (Value::String(a), ArchivedValue::String(b)) => a.as_str() == b.as_str(),
        (Value::Timestamp(a), ArchivedValue::Timestamp(b)) => *a == b.to_native(),
        (Value::Ip(a), ArchivedValue::Ip(b)) => a.0 == b.0,
        (Value::List(a), ArchivedValue::List(b)) => {
            a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| same(x, y))
        }
        (Value::Map(a), ArchivedValue::Map(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b.iter())
                    .all(|(x, y)| x.key == y.key.as_str() && same(&x.value, &y.value))
        }
        _ => false,
    }
}

/// Whether two owned values are the same (floats by bits).
fn same_owned(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
        (Value::List(a), Value::List(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_owned(x, y))
        }
        (Value::Map(a), Value::Map(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| x.key == y.key && same_owned(&x.value, &y.value))
        }
        _ => a == b,
    }
}

/// The 64-bit hash the distinct-count sketch and the top-k table use: the
/// FNV hash of the value, finished with the murmur3 mixer so every bit
/// depends on every input bit (HyperLogLog reads the top bits).
pub(crate) fn value_hash(value: &ArchivedValue) -> u64 {
    let mut hasher = Fnv::default();
    value.hash_into(&mut hasher);
    mix(hasher.finish())
}

/// The same as [`value_hash`], of an owned value (off the hot path).
fn owned_hash(value: &Value) -> u64 {
    mix(crate::row::hash_values(std::slice::from_ref(value)))
}

/// murmur3's 64-bit finalizer.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Hands the sketch the already computed 64-bit hash unchanged: the
/// sketch's state is then a function of the values alone (no random seed).
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct PassThrough;

/// See [`PassThrough`].
#[derive(Debug, Default)]
pub(crate) struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in deterministically.
        for &byte in bytes {
            self.0 = mix(self.0 ^ u64::from(byte));
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;
    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

/// The distinct-count sketch: HyperLogLog++ (sparse while small).
pub(crate) type Sketch = HyperLogLogPlus<u64, PassThrough>;

/// A new sketch of precision `p` (checked in `build`).
fn sketch(precision: u8) -> Sketch {
    HyperLogLogPlus::new(precision, PassThrough).expect("precision was checked at build time")
}

/// Exact per-value counts for `top_k`, by value hash.
pub(crate) type TopTable = FxHashMap<u64, Vec<(Value, u64)>>;

/// The running state of one aggregate in one window and group.
#[derive(Debug, Clone)]
pub(crate) enum Acc {
    Count(u64),
    SumInt(Option<i64>),
    SumFloat(Option<f64>),
    Min(Option<Value>),
    Max(Option<Value>),
    Avg { sum: f64, count: u64 },
    Distinct(Box<Sketch>),
    TopK(TopTable),
    Quantile(Box<Quantiles>),
}

/// A [`DDSketch`], which does not implement `Debug` itself.
#[derive(Clone)]
pub(crate) struct Quantiles(DDSketch);

impl std::fmt::Debug for Quantiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quantiles")
            .field("count", &self.0.count())
            .finish()
    }
}

/// The quantile sketch: DDSketch, every value within relative error
/// `accuracy` of the true quantile's (2048 bins at most).
fn quantile_sketch(accuracy: f64) -> Quantiles {
    Quantiles(DDSketch::new(sketches_ddsketch::Config::new(
        accuracy, 2048, 1.0e-9,
    )))
}

impl Acc {
    /// The empty state of `spec`.
    pub(crate) fn new(spec: &AggregateSpec) -> Acc {
        match spec.function {
            AggregateFn::Count => Acc::Count(0),
            AggregateFn::Sum if spec.output == Type::Int => Acc::SumInt(None),
            AggregateFn::Sum => Acc::SumFloat(None),
            AggregateFn::Min => Acc::Min(None),
            AggregateFn::Max => Acc::Max(None),
            AggregateFn::Avg => Acc::Avg { sum: 0.0, count: 0 },
            AggregateFn::CountDistinct => Acc::Distinct(Box::new(sketch(spec.precision))),
            AggregateFn::TopK => Acc::TopK(TopTable::default()),
            AggregateFn::Quantile => Acc::Quantile(Box::new(quantile_sketch(spec.accuracy))),
        }
    }

    /// Adds one row's value of the aggregate's field (`Null` for count).
    #[inline]
    pub(crate) fn add(&mut self, value: &ArchivedValue) {
        match self {
            Acc::Count(count) => *count += 1,
            Acc::SumInt(sum) => {
                if let Some(value) = value.as_int() {
                    *sum = Some(sum.unwrap_or(0).wrapping_add(value));
                }
            }
            Acc::SumFloat(sum) => {
                if let Some(value) = value.as_f64() {
                    *sum = Some(sum.unwrap_or(0.0) + value);
                }
            }
            Acc::Min(current) => {
                if !value.is_null()
                    && current
                        .as_ref()
                        .is_none_or(|current| cmp_archived(current, value) == Ordering::Greater)
                {
                    *current = Some(value.to_value());
                }
            }
            Acc::Max(current) => {
                if !value.is_null()
                    && current
                        .as_ref()
                        .is_none_or(|current| cmp_archived(current, value) == Ordering::Less)
                {
                    *current = Some(value.to_value());
                }
            }
            Acc::Avg { sum, count } => {
                if let Some(value) = value.as_f64() {
                    *sum += value;
                    *count += 1;
                }
            }
            Acc::Distinct(sketch) => {
                if !value.is_null() {
                    sketch.insert(&value_hash(value));
                }
            }
            Acc::Quantile(sketch) => {
                if let Some(value) = value.as_f64() {
                    if value.is_finite() {
                        sketch.0.add(value);
                    }
                }
            }
            Acc::TopK(table) => {
                if value.is_null() {
                    return;
                }
                let entries = table.entry(value_hash(value)).or_default();
                match entries.iter_mut().find(|(seen, _)| same(seen, value)) {
                    Some((_, count)) => *count += 1,
                    None => entries.push((value.to_value(), 1)),
                }
            }
        }
    }

    /// Folds `other` (the same aggregate) into `self`, for merging sessions.
    pub(crate) fn merge(&mut self, other: Acc) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::SumInt(a), Acc::SumInt(b)) => {
                if let Some(b) = b {
                    *a = Some(a.unwrap_or(0).wrapping_add(b));
                }
            }
            (Acc::SumFloat(a), Acc::SumFloat(b)) => {
                if let Some(b) = b {
                    *a = Some(a.unwrap_or(0.0) + b);
                }
            }
            (Acc::Min(a), Acc::Min(Some(b))) => {
                if a.as_ref()
                    .is_none_or(|a| cmp_values(&b, a) == Ordering::Less)
                {
                    *a = Some(b);
                }
            }
            (Acc::Max(a), Acc::Max(Some(b))) => {
                if a.as_ref()
                    .is_none_or(|a| cmp_values(&b, a) == Ordering::Greater)
                {
                    *a = Some(b);
                }
            }
            (Acc::Min(_), Acc::Min(None)) | (Acc::Max(_), Acc::Max(None)) => {}
            (Acc::Avg { sum, count }, Acc::Avg { sum: s, count: c }) => {
                *sum += s;
                *count += c;
            }
            (Acc::Distinct(a), Acc::Distinct(b)) => {
                a.merge(&b)
                    .expect("sketches of one aggregate share a precision");
            }
            (Acc::Quantile(a), Acc::Quantile(b)) => {
                a.0.merge(&b.0)
                    .expect("sketches of one aggregate share an accuracy");
            }
            (Acc::TopK(a), Acc::TopK(b)) => {
                for (hash, values) in b {
                    let entries = a.entry(hash).or_default();
                    for (value, count) in values {
                        match entries
                            .iter_mut()
                            .find(|(seen, _)| same_owned(seen, &value))
                        {
                            Some((_, seen)) => *seen += count,
                            None => entries.push((value, count)),
                        }
                    }
                }
            }
            _ => unreachable!("merging different aggregates"),
        }
    }

    /// The output value of `spec`'s aggregate.
    pub(crate) fn finish(self, spec: &AggregateSpec) -> Value {
        let k = spec.k;
        match self {
            Acc::Count(count) => Value::Int(count as i64),
            Acc::SumInt(sum) => sum.map_or(Value::Null, Value::Int),
            Acc::SumFloat(sum) => sum.map_or(Value::Null, Value::Float),
            Acc::Min(value) | Acc::Max(value) => value.unwrap_or(Value::Null),
            Acc::Avg { count: 0, .. } => Value::Null,
            Acc::Avg { sum, count } => Value::Float(sum / count as f64),
            Acc::Distinct(mut sketch) => Value::Int(sketch.count().round() as i64),
            Acc::Quantile(sketch) => match sketch.0.quantile(spec.quantile) {
                Ok(Some(value)) => Value::Float(value),
                _ => Value::Null,
            },
            Acc::TopK(table) => {
                let mut entries: Vec<(Value, u64)> = table.into_values().flatten().collect();
                entries.sort_by(|(a, x), (b, y)| y.cmp(x).then_with(|| cmp_values(a, b)));
                entries.truncate(k);
                Value::List(
                    entries
                        .into_iter()
                        .map(|(value, count)| {
                            Value::Map(vec![
                                MapEntry {
                                    key: "value".into(),
                                    value,
                                },
                                MapEntry {
                                    key: "count".into(),
                                    value: Value::Int(count as i64),
                                },
                            ])
                        })
                        .collect(),
                )
            }
        }
    }

    /// The state as saved in a snapshot.
    pub(crate) fn save(&self) -> Result<AccState, String> {
        Ok(match self {
            Acc::Count(count) => AccState::Count(*count),
            Acc::SumInt(sum) => AccState::SumInt(*sum),
            Acc::SumFloat(sum) => AccState::SumFloat(*sum),
            Acc::Min(value) => AccState::Min(value.clone()),
            Acc::Max(value) => AccState::Max(value.clone()),
            Acc::Avg { sum, count } => AccState::Avg(*sum, *count),
            Acc::Distinct(sketch) => {
                AccState::Distinct(serde_json::to_vec(sketch).map_err(|error| error.to_string())?)
            }
            Acc::Quantile(sketch) => AccState::Quantile(sketch.0.to_java_bytes()),
            Acc::TopK(table) => {
                let mut entries: Vec<(Value, u64)> = table.values().flatten().cloned().collect();
                entries.sort_by(|(a, _), (b, _)| cmp_values(a, b));
                AccState::TopK(entries)
            }
        })
    }

    /// The state saved by [`save`](Acc::save), checked against `spec`.
    pub(crate) fn load(state: AccState, spec: &AggregateSpec) -> Result<Acc, String> {
        let acc = match (state, Acc::new(spec)) {
            (AccState::Count(count), Acc::Count(_)) => Acc::Count(count),
            (AccState::SumInt(sum), Acc::SumInt(_)) => Acc::SumInt(sum),
            (AccState::SumFloat(sum), Acc::SumFloat(_)) => Acc::SumFloat(sum),
            (AccState::Min(value), Acc::Min(_)) => Acc::Min(value),
            (AccState::Max(value), Acc::Max(_)) => Acc::Max(value),
            (AccState::Avg(sum, count), Acc::Avg { .. }) => Acc::Avg { sum, count },
            (AccState::Distinct(bytes), Acc::Distinct(empty)) => {
                let sketch: Sketch = serde_json::from_slice(&bytes)
                    .map_err(|error| format!("distinct-count sketch: {error}"))?;
                // A sketch of another precision would not merge: check it
                // by merging into an empty one of the configured precision.
                let mut check = empty;
                check
                    .merge(&sketch)
                    .map_err(|_| "distinct-count sketch of another precision".to_owned())?;
                // Keep the loaded one, untouched: its layout (sparse or
                // dense, pending codes) is exactly that of the snapshot.
                Acc::Distinct(Box::new(sketch))
            }
            (AccState::Quantile(bytes), Acc::Quantile(empty)) => {
                let sketch = DDSketch::from_java_bytes(&bytes)
                    .map_err(|error| format!("quantile sketch: {error:?}"))?;
                // A sketch of another accuracy would not merge.
                let mut check = empty;
                check
                    .0
                    .merge(&sketch)
                    .map_err(|_| "quantile sketch of another accuracy".to_owned())?;
                Acc::Quantile(check)
            }
            (AccState::TopK(entries), Acc::TopK(mut table)) => {
                for (value, count) in entries {
                    table
                        .entry(owned_hash(&value))
                        .or_default()
                        .push((value, count));
                }
                Acc::TopK(table)
            }
            (state, _) => {
                return Err(format!(
                    "aggregate `{}` has a saved state of another kind ({state:?})",
                    spec.name
                ))
            }
        };
        Ok(acc)
    }
}

/// An aggregate's state in a snapshot.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
pub(crate) enum AccState {
    Count(u64),
    SumInt(Option<i64>),
    SumFloat(Option<f64>),
    Min(Option<Value>),
    Max(Option<Value>),
    Avg(f64, u64),
    /// The sketch as JSON (its crate serializes with serde).
    Distinct(Vec<u8>),
    /// Every (value, count), ordered by value.
    TopK(Vec<(Value, u64)>),
    /// The quantile sketch in DDSketch's binary format (the Java
    /// library's, exact: JSON would round its floats).
    Quantile(Vec<u8>),
}
