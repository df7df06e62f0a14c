//! The configuration of the row `window` processor and its build step.

use std::fmt;
use std::time::Duration;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::limits::SLIDING_WINDOWS_MAX;
use crate::row::{OptionError, Schema, Type};

/// Configuration of the `window` processor over rows; see the
/// [module docs](super) for the semantics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowWindowConfig {
    /// Upstream components (wired by the pipeline integrator).
    #[serde(default)]
    pub inputs: Vec<String>,
    /// `tumbling` (default), `sliding` or `session`.
    #[serde(default)]
    pub kind: WindowKindConfig,
    /// Window length ("5m", "1s", "250ms"); required for tumbling and
    /// sliding windows, refused for session windows.
    #[serde(default, with = "humane_option")]
    pub size: Option<Duration>,
    /// How often a sliding window starts; sliding windows only, at most
    /// `size` and at least `size / 1000`.
    #[serde(default, with = "humane_option")]
    pub slide: Option<Duration>,
    /// Inactivity that closes a session; session windows only.
    #[serde(default, with = "humane_option")]
    pub gap: Option<Duration>,
    /// The event-time field, of type `timestamp` (default `timestamp`).
    #[serde(default = "default_time_field")]
    pub time_field: String,
    /// Fields rows are grouped by, zero or more; one name may be written
    /// as a plain string.
    #[serde(default, deserialize_with = "one_or_many")]
    pub group_by: Vec<String>,
    /// What each output row computes; see [`AggregateConfig`].
    #[serde(default)]
    pub aggregates: Vec<AggregateConfig>,
    /// How long after its end a window keeps accepting events (default
    /// "0s"): it fires when the watermark reaches `end + allowed_lateness`.
    #[serde(default = "zero", with = "humane")]
    pub allowed_lateness: Duration,
}

fn default_time_field() -> String {
    "timestamp".into()
}

fn zero() -> Duration {
    Duration::ZERO
}

/// The kind of window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKindConfig {
    /// Back-to-back windows of `size`.
    #[default]
    Tumbling,
    /// Windows of `size` starting every `slide`.
    Sliding,
    /// Per-group sessions closed by `gap` of inactivity.
    Session,
}

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregateFn {
    /// Rows in the window and group (`int`).
    Count,
    /// Sum of a numeric field's non-null values (`int` or `float`, as the
    /// field; integers wrap on overflow).
    Sum,
    /// Smallest non-null value (type of the field).
    Min,
    /// Largest non-null value (type of the field).
    Max,
    /// Mean of a numeric field's non-null values (`float`).
    Avg,
    /// Estimated number of distinct non-null values (`int`, HyperLogLog++).
    CountDistinct,
    /// The `k` most frequent non-null values with their counts (`list` of
    /// `{value, count}` maps).
    TopK,
    /// Estimated quantiles `q` of a numeric field's non-null values
    /// (`float`, one field per `q`; DDSketch, within a relative `error`).
    Quantile,
}

impl AggregateFn {
    /// The name pipeline files use.
    pub fn name(self) -> &'static str {
        match self {
            AggregateFn::Count => "count",
            AggregateFn::Sum => "sum",
            AggregateFn::Min => "min",
            AggregateFn::Max => "max",
            AggregateFn::Avg => "avg",
            AggregateFn::CountDistinct => "count_distinct",
            AggregateFn::TopK => "top_k",
            AggregateFn::Quantile => "quantile",
        }
    }

    fn parse(name: &str) -> Option<AggregateFn> {
        Some(match name {
            "count" => AggregateFn::Count,
            "sum" => AggregateFn::Sum,
            "min" => AggregateFn::Min,
            "max" => AggregateFn::Max,
            "avg" => AggregateFn::Avg,
            "count_distinct" => AggregateFn::CountDistinct,
            "top_k" => AggregateFn::TopK,
            "quantile" => AggregateFn::Quantile,
            _ => return None,
        })
    }
}

/// One aggregate: a table `{ fn = "sum", field = "bytes", as = "total" }`
/// or the short string `"count"`, `"sum:bytes"`, `"top_k:path"`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AggregateConfig {
    /// The function.
    #[serde(rename = "fn")]
    pub function: AggregateFn,
    /// The input field it reads; every function but `count` needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The output field's name; default `count`, else `FN_FIELD`
    /// (`sum_bytes`, `count_distinct_user`).
    #[serde(default, rename = "as", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `top_k` only: how many values (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    /// `count_distinct`: the relative standard error the estimate may
    /// have (default 0.01), from which the sketch's precision is chosen.
    /// `quantile`: the relative error of each quantile (default 0.01).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<f64>,
    /// `quantile` only: the quantiles, each in `(0, 1)`: one number or a
    /// list (`q = [0.5, 0.95, 0.99]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<Vec<f64>>,
}

/// The table form of [`AggregateConfig`], as read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AggregateTable {
    #[serde(rename = "fn")]
    function: AggregateFn,
    #[serde(default)]
    field: Option<String>,
    #[serde(default, rename = "as")]
    name: Option<String>,
    #[serde(default)]
    k: Option<usize>,
    #[serde(default)]
    error: Option<f64>,
    #[serde(default, deserialize_with = "one_or_many_numbers")]
    q: Option<Vec<f64>>,
}

impl AggregateConfig {
    /// The short form `FN` or `FN:FIELD`.
    pub fn parse_short(text: &str) -> Result<AggregateConfig, String> {
        let (function, field) = match text.split_once(':') {
            Some((function, field)) => (function, Some(field.to_owned())),
            None => (text, None),
        };
        let function = AggregateFn::parse(function).ok_or_else(|| {
            format!(
                "unknown aggregate `{function}`, expected one of count, sum, min, max, avg, \
                 count_distinct, top_k, quantile (as `FN` or `FN:FIELD`)"
            )
        })?;
        Ok(AggregateConfig {
            function,
            field,
            name: None,
            k: None,
            error: None,
            q: None,
        })
    }
}

impl<'de> Deserialize<'de> for AggregateConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AggregateVisitor;
        impl<'de> Visitor<'de> for AggregateVisitor {
            type Value = AggregateConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an aggregate: \"FN:FIELD\" or a table { fn = ..., field = ... }")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<AggregateConfig, E> {
                AggregateConfig::parse_short(text).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<AggregateConfig, A::Error> {
                let table =
                    AggregateTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(AggregateConfig {
                    function: table.function,
                    field: table.field,
                    name: table.name,
                    k: table.k,
                    error: table.error,
                    q: table.q,
                })
            }
        }
        deserializer.deserialize_any(AggregateVisitor)
    }
}

/// A string or a list of strings.
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct OneOrMany;
    impl<'de> Visitor<'de> for OneOrMany {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a field name or a list of field names")
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<String>, E> {
            Ok(vec![text.to_owned()])
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut names = Vec::new();
            while let Some(name) = seq.next_element::<String>()? {
                names.push(name);
            }
            Ok(names)
        }
    }
    deserializer.deserialize_any(OneOrMany)
}

/// A number or a list of numbers (`quantile`'s `q`).
fn one_or_many_numbers<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<f64>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(f64),
        Many(Vec<f64>),
    }
    Ok(Some(
        match OneOrMany::deserialize(deserializer).map_err(|_| {
            de::Error::custom("`q` must be a number or a list of numbers, e.g. [0.5, 0.95, 0.99]")
        })? {
            OneOrMany::One(q) => vec![q],
            OneOrMany::Many(qs) => qs,
        },
    ))
}

/// Durations as humane strings ("5m", "250ms").
mod humane {
    use super::*;

    pub(super) fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*value).to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|error| {
            de::Error::custom(format!(
                "invalid duration `{text}` ({error}); write e.g. \"5m\", \"1s\", \"250ms\""
            ))
        })
    }
}

/// Optional durations as humane strings.
mod humane_option {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => humane::serialize(value, s),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        humane::deserialize(d).map(Some)
    }
}

/// The kind and lengths of the windows, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Windows `[k * size, (k + 1) * size)`.
    Tumbling {
        /// Window length, positive.
        size: i64,
    },
    /// Windows `[k * slide, k * slide + size)`.
    Sliding {
        /// Window length, positive.
        size: i64,
        /// Distance between window starts, in `1..=size`.
        slide: i64,
    },
    /// Per-group sessions.
    Session {
        /// Inactivity that closes a session, positive.
        gap: i64,
    },
}

/// One aggregate, resolved against the input schema.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateSpec {
    /// The function.
    pub function: AggregateFn,
    /// Index and type of the input field (`None` for `count`).
    pub field: Option<(usize, Type)>,
    /// The output field's name.
    pub name: String,
    /// The output field's type.
    pub output: Type,
    /// `top_k`: how many values.
    pub k: usize,
    /// `count_distinct`: the HyperLogLog precision (register count `2^p`).
    pub precision: u8,
    /// `quantile`: the quantile, in `(0, 1)`.
    pub quantile: f64,
    /// `quantile`: the sketch's relative accuracy.
    pub accuracy: f64,
}

/// What a [`RowWindow`](super::RowWindow) computes, checked by [`build`].
#[derive(Debug, Clone, PartialEq)]
pub struct RowWindowSpec {
    /// Kind and lengths.
    pub kind: WindowKind,
    /// Index of the event-time field.
    pub time_index: usize,
    /// Indices of the group fields, in order.
    pub group_indices: Vec<usize>,
    /// The aggregates, in output order.
    pub aggregates: Vec<AggregateSpec>,
    /// Allowed lateness in milliseconds.
    pub lateness: i64,
}

/// Whole milliseconds of `duration`, for option `option`.
fn millis(option: &str, duration: Duration, positive: bool) -> Result<i64, OptionError> {
    if duration.subsec_nanos() % 1_000_000 != 0 {
        return Err(OptionError::new(
            option,
            format!(
                "{} is not a whole number of milliseconds",
                humantime::format_duration(duration)
            ),
        ));
    }
    let ms = i64::try_from(duration.as_millis())
        .map_err(|_| OptionError::new(option, "duration too long"))?;
    if positive && ms == 0 {
        return Err(OptionError::new(option, "must be positive"));
    }
    Ok(ms)
}

/// The HyperLogLog precision whose standard error `1.04 / sqrt(2^p)` is at
/// most `error`.
pub fn precision_for(error: f64) -> Option<u8> {
    if !(error > 0.0 && error < 1.0) {
        return None;
    }
    (4..=18u8).find(|&p| 1.04 / f64::from(1u32 << p).sqrt() <= error)
}

/// Checks `config` against the input schema and returns the spec and the
/// output schema: `window_start`, `window_end` (timestamps), the group
/// fields with their input types, then one field per aggregate.
pub fn build(
    config: &RowWindowConfig,
    input: &Schema,
) -> Result<(RowWindowSpec, Schema), OptionError> {
    let refuse = |option: &str, kind: &str| {
        Err(OptionError::new(
            option,
            format!("not used by {kind} windows"),
        ))
    };
    let need = |option: &str, value: Option<Duration>, kind: &str| {
        value.ok_or_else(|| OptionError::new(option, format!("required for {kind} windows")))
    };
    let kind = match config.kind {
        WindowKindConfig::Tumbling => {
            if config.slide.is_some() {
                return refuse("slide", "tumbling");
            }
            if config.gap.is_some() {
                return refuse("gap", "tumbling");
            }
            let size = millis("size", need("size", config.size, "tumbling")?, true)?;
            WindowKind::Tumbling { size }
        }
        WindowKindConfig::Sliding => {
            if config.gap.is_some() {
                return refuse("gap", "sliding");
            }
            let size = millis("size", need("size", config.size, "sliding")?, true)?;
            let slide = millis("slide", need("slide", config.slide, "sliding")?, true)?;
            if slide > size {
                return Err(OptionError::new("slide", "must not exceed `size`"));
            }
            if size / slide > SLIDING_WINDOWS_MAX {
                return Err(OptionError::new(
                    "slide",
                    format!(
                        "`size / slide` is {}: an event would fall in more than \
                         {SLIDING_WINDOWS_MAX} windows",
                        size / slide
                    ),
                ));
            }
            WindowKind::Sliding { size, slide }
        }
        WindowKindConfig::Session => {
            if config.size.is_some() {
                return refuse("size", "session");
            }
            if config.slide.is_some() {
                return refuse("slide", "session");
            }
            let gap = millis("gap", need("gap", config.gap, "session")?, true)?;
            WindowKind::Session { gap }
        }
    };
    let lateness = millis("allowed_lateness", config.allowed_lateness, false)?;

    let (time_index, time_type) = input
        .lookup(&config.time_field)
        .map_err(|message| OptionError::new("time_field", message))?;
    if time_type != Type::Timestamp {
        return Err(OptionError::new(
            "time_field",
            format!(
                "`{}` is a {time_type}, expected a timestamp",
                config.time_field
            ),
        ));
    }

    let mut output: Vec<(String, Type)> = vec![
        ("window_start".into(), Type::Timestamp),
        ("window_end".into(), Type::Timestamp),
    ];
    let taken = |output: &[(String, Type)], name: &str| output.iter().any(|(n, _)| n == name);
    let mut group_indices = Vec::new();
    for name in &config.group_by {
        let (index, ty) = input
            .lookup(name)
            .map_err(|message| OptionError::new("group_by", message))?;
        if taken(&output, name) {
            return Err(OptionError::new(
                "group_by",
                format!("`{name}` is listed twice or clashes with an output field"),
            ));
        }
        output.push((name.clone(), ty));
        group_indices.push(index);
    }

    let mut aggregates = Vec::new();
    for spec in config
        .aggregates
        .iter()
        .map(|aggregate| aggregate_specs(aggregate, input))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
    {
        if taken(&output, &spec.name) {
            return Err(OptionError::new(
                "aggregates",
                format!(
                    "output field `{}` is named twice; name one with `as`",
                    spec.name
                ),
            ));
        }
        output.push((spec.name.clone(), spec.output));
        aggregates.push(spec);
    }
    if aggregates.is_empty() {
        return Err(OptionError::new(
            "aggregates",
            "at least one aggregate is needed, e.g. [\"count\"]",
        ));
    }

    let spec = RowWindowSpec {
        kind,
        time_index,
        group_indices,
        aggregates,
        lateness,
    };
    Ok((spec, Schema::new(output)))
}

/// The smallest and largest relative error a `quantile` may ask for.
pub const QUANTILE_ERROR_RANGE: (f64, f64) = (0.0001, 0.1);

/// The specs of one configured aggregate: one, or one per `q` of a
/// `quantile` (named `p50_FIELD`, `p99_9_FIELD`, ...).
fn aggregate_specs(
    config: &AggregateConfig,
    input: &Schema,
) -> Result<Vec<AggregateSpec>, OptionError> {
    let error = |message: String| OptionError::new("aggregates", message);
    if config.function != AggregateFn::Quantile {
        if config.q.is_some() {
            let name = config.function.name();
            return Err(error(format!("`q` is for quantile, not {name}")));
        }
        return Ok(vec![aggregate_spec(config, input)?]);
    }
    let qs = match &config.q {
        Some(qs) if !qs.is_empty() => qs,
        _ => {
            return Err(error(
                "quantile needs `q`: a number or a list in (0, 1), e.g. \
                 { fn = \"quantile\", field = \"latency_ms\", q = [0.5, 0.95, 0.99] }"
                    .into(),
            ))
        }
    };
    if let Some(bad) = qs.iter().find(|q| !(**q > 0.0 && **q < 1.0)) {
        return Err(error(format!("quantile: `q` {bad} is not between 0 and 1")));
    }
    if config.name.is_some() && qs.len() > 1 {
        return Err(error(
            "quantile: `as` names one output field; with several `q` the fields are \
             named pNN_FIELD"
                .into(),
        ));
    }
    let accuracy = config.error.unwrap_or(0.01);
    let (low, high) = QUANTILE_ERROR_RANGE;
    if !(low..=high).contains(&accuracy) {
        return Err(error(format!(
            "quantile: `error` {accuracy} is out of range; it must be between {low} and {high}"
        )));
    }
    let base = aggregate_spec(
        &AggregateConfig {
            error: None,
            ..config.clone()
        },
        input,
    )?;
    let field = config.field.as_deref().unwrap_or_default();
    Ok(qs
        .iter()
        .map(|&q| AggregateSpec {
            name: config
                .name
                .clone()
                .unwrap_or_else(|| format!("{}_{field}", percentile_name(q))),
            quantile: q,
            accuracy,
            ..base.clone()
        })
        .collect())
}

/// `p50` for 0.5, `p99_9` for 0.999.
fn percentile_name(q: f64) -> String {
    let percent = format!("{:.6}", q * 100.0);
    let percent = percent.trim_end_matches('0').trim_end_matches('.');
    format!("p{}", percent.replace('.', "_"))
}

fn aggregate_spec(config: &AggregateConfig, input: &Schema) -> Result<AggregateSpec, OptionError> {
    let error = |message: String| OptionError::new("aggregates", message);
    let function = config.function;
    let name = function.name();
    if config.k.is_some() && function != AggregateFn::TopK {
        return Err(error(format!("`k` is for top_k, not {name}")));
    }
    if config.error.is_some() && function != AggregateFn::CountDistinct {
        return Err(error(format!(
            "`error` is for count_distinct and quantile, not {name}"
        )));
    }
    let field = match (&config.field, function) {
        (None, AggregateFn::Count) => None,
        (Some(_), AggregateFn::Count) => {
            return Err(error("count takes no `field` (it counts rows)".into()))
        }
        (None, _) => return Err(error(format!("{name} needs a `field`"))),
        (Some(field), _) => {
            let (index, ty) = input
                .lookup(field)
                .map_err(|message| error(format!("{name}: {message}")))?;
            Some((field.as_str(), index, ty))
        }
    };
    let output = match (function, field) {
        (AggregateFn::Count | AggregateFn::CountDistinct, _) => Type::Int,
        (AggregateFn::TopK, _) => Type::List,
        (AggregateFn::Avg | AggregateFn::Quantile, _) => Type::Float,
        (_, None) => unreachable!("every other function has a field"),
        (AggregateFn::Sum, Some((_, _, ty))) => ty,
        (AggregateFn::Min | AggregateFn::Max, Some((_, _, ty))) => ty,
    };
    if let Some((field, _, ty)) = field {
        let fits = match function {
            AggregateFn::Sum | AggregateFn::Avg | AggregateFn::Quantile => ty.is_numeric(),
            AggregateFn::Min | AggregateFn::Max => matches!(
                ty,
                Type::Int | Type::Float | Type::Timestamp | Type::String | Type::Ip
            ),
            AggregateFn::TopK | AggregateFn::CountDistinct => !matches!(ty, Type::List | Type::Map),
            AggregateFn::Count => true,
        };
        if !fits {
            return Err(error(format!("{name} cannot read `{field}`, a {ty}")));
        }
    }
    let k = match config.k {
        Some(0) => return Err(error("top_k: `k` must be positive".into())),
        Some(k) => k,
        None => 10,
    };
    let wanted = config.error.unwrap_or(0.01);
    let precision = precision_for(wanted).ok_or_else(|| {
        error(format!(
            "count_distinct: `error` {wanted} is out of range; it must be between {:.4} and 1",
            1.04 / f64::from(1u32 << 18).sqrt()
        ))
    })?;
    let output_name = match (&config.name, field) {
        (Some(name), _) => name.clone(),
        (None, None) => name.to_owned(),
        (None, Some((field, _, _))) => format!("{name}_{field}"),
    };
    Ok(AggregateSpec {
        function,
        field: field.map(|(_, index, ty)| (index, ty)),
        name: output_name,
        output,
        k,
        precision,
        quantile: 0.5,
        accuracy: 0.01,
    })
}
