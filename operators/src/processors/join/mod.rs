//! `join`: two streams joined on equal keys, as Flink's regular, interval,
//! window and temporal joins do. The reference is `docs/operators.md`
//! ("`join`"); in short:
//!
//! ```toml
//! [processors.q7]
//! type = "join"
//! inputs = ["bids", "max_prices"]   # left, right: exactly two
//! left_key = ["price"]
//! right_key = ["max_price"]
//! mode = "inner"                    # or "left": unmatched left rows too
//! left_time_field = "dateTime"      # both default to `time_field`,
//! right_time_field = "window_end"   # which defaults to "timestamp"
//! lower = "-10s"                    # right.time >= left.time + lower
//! upper = "0s"                      # right.time <= left.time + upper
//! ```
//!
//! Rows match when every `left_key` field equals the `right_key` field at
//! its place (a null key matches nothing), and then by kind:
//! - **regular** (no `lower`, `upper` or `window`): always; both sides are
//!   kept for the whole run ([`Join`]);
//! - **interval** (`lower`, `upper`): the right time lies in
//!   `[left.time + lower, left.time + upper]`; a left row is kept until the
//!   watermark passes `left.time + upper`, a right one until it passes
//!   `right.time - lower` ([`Join`]);
//! - **window** (`window` with `size`, `slide` or `gap`): both lie in one
//!   tumbling, sliding or session window, emitted when it fires, with
//!   `window_start, window_end` first ([`WindowJoin`]);
//! - **temporal** (`kind = "temporal"`): the right input is a changing
//!   table; each left row meets its key's version current at its time,
//!   once the watermark passes that time ([`TemporalJoin`]).
//!
//! Output rows are the left fields then the right ones (a right name the
//! left has taken gets `right_prefix`, default `right_`). With
//! `mode = "left"` an unmatched left row is emitted, right fields null,
//! once no row still to come could match it (never known in a regular
//! join, so a regular join cannot be a left join). Rows that arrive after
//! their partners may be gone (older than the watermark; a window join's
//! rows whose windows all fired) or with a null time go to
//! `NAME.late_left` or `NAME.late_right`; rows of an upstream that keeps to
//! its watermarks never do, so the output does not depend on how the two
//! inputs' batches interleave. The edge from each side is hash-partitioned
//! by its key; the state (kept rows and the watermark) is snapshotted whole
//! at every epoch and restored after a crash.

mod interval;
mod temporal;
mod window;

pub use interval::Join;
pub use temporal::TemporalJoin;
pub use window::WindowJoin;

use serde::{Deserialize, Serialize};

use crate::component::{state_options, Component, Input, Node, Output, PlanContext, Planned};
use weir_runtime::{Emitter, OperatorError};

use crate::row::{ArchivedRow, OptionError, Row, Schema, SchemaRef, Type, Value};

/// The configuration of a `join` (a `[processors.NAME]` table without its
/// `type`); see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinConfig {
    /// The left input, then the right one.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// `"inner"` (the default) or `"left"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The left side's key fields.
    pub left_key: Vec<String>,
    /// The right side's key fields, one per left key field.
    pub right_key: Vec<String>,
    /// The time field of both sides, unless one is named on its own
    /// (default `timestamp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_field: Option<String>,
    /// The left side's time field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_time_field: Option<String>,
    /// The right side's time field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub right_time_field: Option<String>,
    /// The interval's start, relative to the left row's time (`"-10s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower: Option<String>,
    /// The interval's end, relative to the left row's time (`"0s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper: Option<String>,
    /// `"regular"`, `"interval"`, `"window"` or `"temporal"`; by default
    /// `"interval"` with `lower` and `upper`, `"window"` with `window`,
    /// else `"regular"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// A window join's windows: `"tumbling"`, `"sliding"` or `"session"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Tumbling and sliding windows' length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// How often a sliding window starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slide: Option<String>,
    /// The inactivity that closes a session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<String>,
    /// Put before the name of a right field the left side has too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub right_prefix: Option<String>,
}

/// The output port of late left rows.
pub const LATE_LEFT: usize = 1;
/// The output port of late right rows.
pub const LATE_RIGHT: usize = 2;

/// A window join's windows, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Windows {
    /// `[k·size, (k+1)·size)`.
    Tumbling {
        /// The length.
        size: i64,
    },
    /// `[k·slide, k·slide + size)`.
    Sliding {
        /// The length.
        size: i64,
        /// How often one starts.
        slide: i64,
    },
    /// Per key, rows of both sides closer than `gap` share a window.
    Session {
        /// The inactivity that closes one.
        gap: i64,
    },
}

/// The kind of a join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Every pair with equal keys.
    Regular,
    /// Pairs with the right time in `[left + lower, left + upper]`.
    Interval {
        /// The interval's start, relative to the left time.
        lower: i64,
        /// Its end.
        upper: i64,
    },
    /// Pairs in one window.
    Window(Windows),
    /// Each left row with the right row of its key that was current at the
    /// left row's time (the latest at or before it).
    Temporal,
}

/// A join checked against its inputs' schemas.
#[derive(Debug, Clone)]
pub struct JoinSpec {
    /// Key field indices of the left rows, then of the right rows.
    pub(crate) keys: [Vec<usize>; 2],
    /// Time field index of each side (all kinds but regular joins).
    pub(crate) times: Option<[usize; 2]>,
    /// `lower` and `upper`, in milliseconds, of an interval join.
    pub(crate) bounds: Option<(i64, i64)>,
    /// The kind.
    pub(crate) kind: JoinKind,
    /// Emit unmatched left rows.
    pub(crate) left_outer: bool,
    /// Fields of the left side.
    pub(crate) left_width: usize,
    /// Fields of the right side.
    pub(crate) right_width: usize,
}

impl JoinSpec {
    /// The join's kind.
    pub fn kind(&self) -> JoinKind {
        self.kind
    }

    /// The hash an edge from side `side` partitions by.
    pub fn key_hash(&self, side: usize, row: &Row) -> u64 {
        row.hash_fields(&self.keys[side])
    }

    /// Whether a key field of `row`, from side `side`, is null (it then
    /// matches nothing).
    pub(crate) fn null_key(&self, side: usize, row: &Row) -> bool {
        self.keys[side]
            .iter()
            .any(|&index| matches!(row.values.get(index), None | Some(Value::Null)))
    }

    /// Whether `left`'s key equals `right`'s, field by field (rows of
    /// colliding hashes are told apart here).
    pub(crate) fn keys_equal(&self, left: &Row, right: &Row) -> bool {
        self.keys[LEFT]
            .iter()
            .zip(&self.keys[RIGHT])
            .all(|(&l, &r)| left.values.get(l) == right.values.get(r))
    }
}

/// The left side: input port 0, and index 0 of per-side arrays.
pub(crate) const LEFT: usize = 0;
/// The right side: input port 1.
pub(crate) const RIGHT: usize = 1;

/// The side an input port reads.
pub(crate) fn side_of(port: usize) -> usize {
    if port == 0 {
        LEFT
    } else {
        RIGHT
    }
}

/// Sends `row`, which arrived on `side` too late to be joined (or with a
/// null time), to that side's late output, if anything reads it.
pub(crate) fn send_late(side: usize, row: &ArchivedRow, out: &mut Emitter<Row>) {
    let port = if side == LEFT { LATE_LEFT } else { LATE_RIGHT };
    if out.has_port(port) {
        out.push_to(port, &row.to_row());
    }
}

/// A join's state as snapshot bytes.
pub(crate) fn state_bytes<T>(state: &T) -> Result<Vec<u8>, OperatorError>
where
    T: for<'a> rkyv::Serialize<
        rkyv::api::high::HighSerializer<
            rkyv::util::AlignedVec,
            rkyv::ser::allocator::ArenaHandle<'a>,
            rkyv::rancor::Error,
        >,
    >,
{
    rkyv::to_bytes::<rkyv::rancor::Error>(state)
        .map(|bytes| bytes.to_vec())
        .map_err(|error| OperatorError::other(error.to_string()))
}

/// A join's state from snapshot bytes; an error names the join's `kind`.
pub(crate) fn state_from<T>(bytes: &[u8], kind: &str) -> Result<T, OperatorError>
where
    T: rkyv::Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<
            rkyv::api::high::HighValidator<'a, rkyv::rancor::BoxedError>,
        > + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::BoxedError>>,
{
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<T, rkyv::rancor::BoxedError>(&aligned)
        .map_err(|error| OperatorError::invalid(format!("{kind} join state: {error}")))
}

/// A signed duration in milliseconds: `"-10s"`, `"0s"`, `"2m"`.
fn signed_ms(option: &str, text: &str) -> Result<i64, OptionError> {
    let (negative, rest) = match text.trim().strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let ms = super::parse_duration_ms(option, rest)?;
    let ms =
        i64::try_from(ms).map_err(|_| OptionError::new(option, format!("`{text}` is too long")))?;
    Ok(if negative { -ms } else { ms })
}

/// The join's kind from `kind` and the options given (interval bounds are
/// filled in by [`build`]).
fn kind(config: &JoinConfig) -> Result<JoinKind, OptionError> {
    let named = match config.kind.as_deref() {
        Some(kind) => kind,
        None if config.lower.is_some() || config.upper.is_some() => "interval",
        None if config.window.is_some() => "window",
        None => "regular",
    };
    let windowed = config.window.is_some()
        || config.size.is_some()
        || config.slide.is_some()
        || config.gap.is_some();
    if named != "window" && windowed {
        return Err(OptionError::new(
            "window",
            "`window`, `size`, `slide` and `gap` belong to a window join (`kind = \"window\"`)",
        ));
    }
    Ok(match named {
        "regular" => JoinKind::Regular,
        "interval" => JoinKind::Interval { lower: 0, upper: 0 },
        "temporal" => JoinKind::Temporal,
        "window" => JoinKind::Window(windows(config)?),
        other => {
            return Err(OptionError::new(
                "kind",
                format!(
                    "`{other}` is not a join kind; use \"regular\", \"interval\", \"window\" \
                     or \"temporal\""
                ),
            ))
        }
    })
}

/// A window join's windows.
fn windows(config: &JoinConfig) -> Result<Windows, OptionError> {
    let duration = |option: &str, text: &Option<String>| -> Result<Option<i64>, OptionError> {
        let Some(text) = text else {
            return Ok(None);
        };
        let ms = super::parse_duration_ms(option, text)?;
        if ms == 0 {
            return Err(OptionError::new(
                option,
                format!("`{option}` must be positive"),
            ));
        }
        i64::try_from(ms)
            .map(Some)
            .map_err(|_| OptionError::new(option, format!("`{text}` is too long")))
    };
    let size = duration("size", &config.size)?;
    let slide = duration("slide", &config.slide)?;
    let gap = duration("gap", &config.gap)?;
    let refuse = |option: &str, message: &str| Err(OptionError::new(option, message));
    match config.window.as_deref() {
        None => refuse(
            "window",
            "a window join needs `window`: \"tumbling\", \"sliding\" or \"session\"",
        ),
        Some("tumbling") => match (size, slide, gap) {
            (Some(size), None, None) => Ok(Windows::Tumbling { size }),
            (None, _, _) => refuse("size", "tumbling windows need `size`"),
            _ => refuse("window", "tumbling windows take `size` only"),
        },
        Some("sliding") => match (size, slide, gap) {
            (Some(size), Some(slide), None) => {
                if slide > size {
                    return refuse("slide", "`slide` must not be longer than `size`");
                }
                if size / slide > crate::limits::SLIDING_WINDOWS_MAX {
                    return refuse(
                        "slide",
                        "`size / slide` must be at most 1000: a row would fall in more windows",
                    );
                }
                Ok(Windows::Sliding { size, slide })
            }
            (None, _, _) => refuse("size", "sliding windows need `size` and `slide`"),
            (_, None, _) => refuse("slide", "sliding windows need `size` and `slide`"),
            _ => refuse("gap", "sliding windows take `size` and `slide` only"),
        },
        Some("session") => match (size, slide, gap) {
            (None, None, Some(gap)) => Ok(Windows::Session { gap }),
            (_, _, None) => refuse("gap", "session windows need `gap`"),
            _ => refuse("window", "session windows take `gap` only"),
        },
        Some(other) => Err(OptionError::new(
            "window",
            format!("`{other}` is not a window; use \"tumbling\", \"sliding\" or \"session\""),
        )),
    }
}

/// Checks `config` against the two inputs' schemas; returns the spec and
/// the output schema.
pub fn build(
    config: &JoinConfig,
    left: &Schema,
    right: &Schema,
) -> Result<(JoinSpec, Schema), OptionError> {
    let left_outer = match config.mode.as_deref() {
        None | Some("inner") => false,
        Some("left") => true,
        Some(other) => {
            return Err(OptionError::new(
                "mode",
                format!("`{other}` is not a join mode; use \"inner\" or \"left\""),
            ))
        }
    };
    if config.left_key.is_empty() || config.left_key.len() != config.right_key.len() {
        return Err(OptionError::new(
            "right_key",
            format!(
                "`left_key` and `right_key` must name the same number of fields, at least one \
                 (they have {} and {})",
                config.left_key.len(),
                config.right_key.len()
            ),
        ));
    }
    let mut keys = [Vec::new(), Vec::new()];
    for (left_name, right_name) in config.left_key.iter().zip(&config.right_key) {
        let (l, left_ty) = left
            .lookup(left_name)
            .map_err(|message| OptionError::new("left_key", format!("left input: {message}")))?;
        let (r, right_ty) = right
            .lookup(right_name)
            .map_err(|message| OptionError::new("right_key", format!("right input: {message}")))?;
        if left_ty != right_ty {
            return Err(OptionError::new(
                "right_key",
                format!(
                    "`{right_name}` is a {right_ty} but `{left_name}` is a {left_ty}; keys \
                     compare equal only within one type (convert one with a `map`)"
                ),
            ));
        }
        keys[0].push(l);
        keys[1].push(r);
    }
    let kind = kind(config)?;
    let bounds = match (&config.lower, &config.upper) {
        (None, None) => None,
        (Some(lower), Some(upper)) => {
            let (lower, upper) = (signed_ms("lower", lower)?, signed_ms("upper", upper)?);
            if lower > upper {
                return Err(OptionError::new(
                    "upper",
                    "`upper` must not be before `lower`",
                ));
            }
            Some((lower, upper))
        }
        (Some(_), None) => return Err(OptionError::new(
            "upper",
            "an interval join needs both `lower` and `upper`; leave both out for a regular join",
        )),
        (None, Some(_)) => return Err(OptionError::new(
            "lower",
            "an interval join needs both `lower` and `upper`; leave both out for a regular join",
        )),
    };
    match (bounds, kind) {
        (None, JoinKind::Interval { .. }) => {
            return Err(OptionError::new(
                "lower",
                "an interval join needs `lower` and `upper`",
            ))
        }
        (Some(_), JoinKind::Regular | JoinKind::Window(_) | JoinKind::Temporal) => {
            return Err(OptionError::new(
                "lower",
                "`lower` and `upper` belong to an interval join (`kind = \"interval\"`)",
            ))
        }
        _ => {}
    }
    let kind = match (kind, bounds) {
        (JoinKind::Interval { .. }, Some((lower, upper))) => JoinKind::Interval { lower, upper },
        (kind, _) => kind,
    };
    if left_outer && kind == JoinKind::Regular {
        return Err(OptionError::new(
            "mode",
            "a regular join cannot be a left join: a left row could still match at any time, \
             so it is never known to be unmatched (weir emits no retractions); give the join \
             `lower` and `upper`, or a `window`",
        ));
    }
    let times = match kind {
        JoinKind::Regular => None,
        _ => {
            let default = config.time_field.as_deref().unwrap_or("timestamp");
            let mut times = [0; 2];
            for (side, (schema, option, named)) in [
                (left, "left_time_field", &config.left_time_field),
                (right, "right_time_field", &config.right_time_field),
            ]
            .into_iter()
            .enumerate()
            {
                let name = named.as_deref().unwrap_or(default);
                let option = if named.is_some() {
                    option
                } else {
                    "time_field"
                };
                let (index, ty) = schema
                    .lookup(name)
                    .map_err(|message| OptionError::new(option, message))?;
                if ty != Type::Timestamp {
                    return Err(OptionError::new(
                        option,
                        format!("`{name}` is a {ty}; the join's time must be a timestamp"),
                    ));
                }
                times[side] = index;
            }
            Some(times)
        }
    };
    let prefix = config.right_prefix.as_deref().unwrap_or("right_");
    let mut fields: Vec<(String, Type)> = Vec::new();
    if let JoinKind::Window(_) = kind {
        fields.push(("window_start".into(), Type::Timestamp));
        fields.push(("window_end".into(), Type::Timestamp));
    }
    for field in left.fields() {
        let mut name = field.name.clone();
        if fields.iter().any(|(taken, _)| *taken == name) {
            // Only a window join's own columns come first.
            name = format!("left_{name}");
        }
        fields.push((name, field.ty));
    }
    for field in right.fields() {
        let mut name = field.name.clone();
        if fields.iter().any(|(taken, _)| *taken == name) {
            name = format!("{prefix}{name}");
            if fields.iter().any(|(taken, _)| *taken == name) {
                return Err(OptionError::new(
                    "right_prefix",
                    format!(
                        "the right field `{}` is renamed `{name}`, which is taken too; choose \
                         another `right_prefix`",
                        field.name
                    ),
                ));
            }
        }
        fields.push((name, field.ty));
    }
    let spec = JoinSpec {
        keys,
        times,
        bounds,
        kind,
        left_outer,
        left_width: left.len(),
        right_width: right.len(),
    };
    Ok((spec, Schema::new(fields)))
}

impl Component for JoinConfig {
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn check(&self, _name: &str) -> Result<(), OptionError> {
        if self.inputs.len() != 2 {
            return Err(OptionError::new(
                "inputs",
                format!(
                    "a join reads exactly two inputs, the left then the right (it has {})",
                    self.inputs.len()
                ),
            ));
        }
        Ok(())
    }

    fn mixed_inputs(&self) -> bool {
        true
    }

    fn plan(&self, context: &PlanContext<'_>) -> Result<Planned, OptionError> {
        let [left, right] = context.inputs else {
            return Err(OptionError::new(
                "inputs",
                "a join reads exactly two inputs",
            ));
        };
        let (spec, output) = build(self, left, right)?;
        let mut outputs = vec![Output::rows(output)];
        if spec.kind != JoinKind::Regular {
            outputs.push(Output::main(SchemaRef::clone(left)));
            outputs.push(Output::main(SchemaRef::clone(right)));
            outputs[1].name = "late_left".into();
            outputs[1].port = LATE_LEFT;
            outputs[2].name = "late_right".into();
            outputs[2].port = LATE_RIGHT;
        }
        let fingerprint = state_options(
            "join",
            self,
            &[
                "left_key",
                "right_key",
                "mode",
                "kind",
                "lower",
                "upper",
                "window",
                "size",
                "slide",
                "gap",
            ],
        );
        Ok(Planned::new(outputs, JoinNode { spec, fingerprint }))
    }
}

/// A planned join's node.
#[derive(Debug, Clone)]
struct JoinNode {
    spec: JoinSpec,
    fingerprint: Vec<(String, String)>,
}

impl Node for JoinNode {
    fn add(&self, graph: &mut weir_runtime::GraphBuilder, name: &str, inputs: &[Input]) {
        for (side, input) in inputs.iter().enumerate() {
            let spec = self.spec.clone();
            let partition =
                weir_runtime::Partition::hash(move |row: &Row| spec.key_hash(side, row));
            graph.connect_port(&input.node, input.port, name, partition);
        }
        let spec = self.spec.clone();
        let node = match spec.kind {
            JoinKind::Regular | JoinKind::Interval { .. } => {
                graph.processor(name, move |_| Join::new(spec.clone()))
            }
            JoinKind::Window(_) => graph.processor(name, move |_| WindowJoin::new(spec.clone())),
            JoinKind::Temporal => graph.processor(name, move |_| TemporalJoin::new(spec.clone())),
        };
        node.state_fingerprint(self.fingerprint.clone());
    }
}
