//! `join`: two streams joined on equal keys, as Flink's interval join and
//! regular join (SQL `JOIN ... ON`) do.
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
//! A left row and a right row match when every `left_key` field equals the
//! `right_key` field at its place (a null key matches nothing) and, with
//! `lower` and `upper` (an *interval join*), the right row's time lies in
//! `[left.time + lower, left.time + upper]`. Without them it is a *regular
//! join*: every pair of rows with equal keys, whenever they arrive, and
//! both sides are kept for the whole run (Flink keeps a regular join's
//! state forever too, unless given a TTL).
//!
//! # Output
//! Each match is one row: the left row's fields, then the right row's, a
//! right field whose name the left side has taken renamed to
//! `right_prefix` + its name (default `right_`). It is emitted when the
//! second of the two rows arrives. With `mode = "left"` (an interval join
//! only), a left row that matched nothing is emitted once, its right fields
//! null, when the watermark shows no right row can match it any more
//! (`left.time + upper` passed).
//!
//! # Time, lateness and state
//! An interval join keeps a left row until the watermark passes
//! `left.time + upper` and a right row until it passes
//! `right.time - lower`: after that no row still to come can match it. A
//! row older than the watermark when it arrives (its partners may be gone),
//! or with a null time, is not joined: it goes to the side output
//! `NAME.late_left` or `NAME.late_right`, with its side's schema. Rows of
//! an upstream that keeps to its watermarks (every source of weir) are
//! never late, so the output does not depend on how the two inputs'
//! batches interleave. Output rows keep both sides' times, so they may be
//! older than the watermark that follows them: a window reading a join
//! should use a time that is not (a right row's `window_end`, say).
//!
//! The edge from each side is hash-partitioned by its key, so equal keys
//! meet on one shard. The state (both sides' rows, and the watermark) is
//! snapshotted whole at every epoch and restored after a crash.

mod interval;

pub use interval::Join;

use serde::{Deserialize, Serialize};

use crate::component::{state_options, Component, Input, Node, Output, PlanContext, Planned};
use crate::row::{OptionError, Row, Schema, SchemaRef, Type};

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
    /// Put before the name of a right field the left side has too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub right_prefix: Option<String>,
}

/// The output port of late left rows.
pub const LATE_LEFT: usize = 1;
/// The output port of late right rows.
pub const LATE_RIGHT: usize = 2;

/// A join checked against its inputs' schemas.
#[derive(Debug, Clone)]
pub struct JoinSpec {
    /// Key field indices of the left rows, then of the right rows.
    pub(crate) keys: [Vec<usize>; 2],
    /// Time field index of each side, for an interval join.
    pub(crate) times: Option<[usize; 2]>,
    /// `lower` and `upper`, in milliseconds.
    pub(crate) bounds: Option<(i64, i64)>,
    /// Emit unmatched left rows.
    pub(crate) left_outer: bool,
    /// Fields of the right side.
    pub(crate) right_width: usize,
}

impl JoinSpec {
    /// The hash an edge from side `side` partitions by.
    pub fn key_hash(&self, side: usize, row: &Row) -> u64 {
        row.hash_fields(&self.keys[side])
    }
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
    if left_outer && bounds.is_none() {
        return Err(OptionError::new(
            "mode",
            "a left join needs `lower` and `upper`: in a regular join a left row could still \
             match any time, so it is never known to be unmatched (weir emits no retractions)",
        ));
    }
    let times = match bounds {
        None => None,
        Some(_) => {
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
                        format!("`{name}` is a {ty}; an interval join needs a timestamp field"),
                    ));
                }
                times[side] = index;
            }
            Some(times)
        }
    };
    let prefix = config.right_prefix.as_deref().unwrap_or("right_");
    let mut fields: Vec<(String, Type)> = left
        .fields()
        .iter()
        .map(|field| (field.name.clone(), field.ty))
        .collect();
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
        left_outer,
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
        if spec.bounds.is_some() {
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
            &["left_key", "right_key", "mode", "lower", "upper"],
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
        graph
            .processor(name, move |_| Join::new(spec.clone()))
            .state_fingerprint(self.fingerprint.clone());
    }
}
