//! Evaluation of a compiled tree over one archived row. Values borrow from
//! the row and the tree; strings computed by `lower`, `upper` and
//! `to_string` live in the [`Scratch`] buffer of their node, so evaluation
//! allocates nothing once the buffers have grown.

use std::fmt::Write as _;

use chrono::DateTime;

use super::check::{ArOp, CmpKind, CmpOp, Const, Node, Num, StrTest};
use super::Scratch;
use crate::row::{ArchivedRow, ArchivedValue, Ip, Value};

/// A value during evaluation.
#[derive(Clone, Copy)]
pub(super) enum V<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Text borrowed from the row or the tree.
    Str(&'a str),
    /// Text in scratch buffer `n`.
    Buf(usize),
    Ts(i64),
    Ip(Ip),
    /// A list or a map, as stored.
    Raw(&'a ArchivedValue),
}

impl<'a> V<'a> {
    fn of(value: &'a ArchivedValue) -> V<'a> {
        match value {
            ArchivedValue::Null => V::Null,
            ArchivedValue::Bool(value) => V::Bool(*value),
            ArchivedValue::Int(value) => V::Int(value.to_native()),
            ArchivedValue::Float(value) => V::Float(value.to_native()),
            ArchivedValue::String(value) => V::Str(value.as_str()),
            ArchivedValue::Timestamp(value) => V::Ts(value.to_native()),
            ArchivedValue::Ip(value) => V::Ip(value.to_ip()),
            ArchivedValue::List(_) | ArchivedValue::Map(_) => V::Raw(value),
        }
    }

    fn boolean(self) -> Option<bool> {
        match self {
            V::Bool(value) => Some(value),
            _ => None,
        }
    }

    fn int(self) -> Option<i64> {
        match self {
            V::Int(value) => Some(value),
            _ => None,
        }
    }

    fn float(self) -> Option<f64> {
        match self {
            V::Int(value) => Some(value as f64),
            V::Float(value) => Some(value),
            _ => None,
        }
    }

    fn ts(self) -> Option<i64> {
        match self {
            V::Ts(value) => Some(value),
            _ => None,
        }
    }

    fn ip(self) -> Option<Ip> {
        match self {
            V::Ip(value) => Some(value),
            _ => None,
        }
    }

    /// An owned value.
    pub fn to_value(self, scratch: &Scratch) -> Value {
        match self {
            V::Null => Value::Null,
            V::Bool(value) => Value::Bool(value),
            V::Int(value) => Value::Int(value),
            V::Float(value) => Value::Float(value),
            V::Str(text) => Value::String(text.to_owned()),
            V::Buf(slot) => Value::String(scratch.bufs[slot].clone()),
            V::Ts(value) => Value::Timestamp(value),
            V::Ip(value) => Value::Ip(value),
            V::Raw(value) => value.to_value(),
        }
    }
}

/// The text of a string value.
fn text<'b>(value: V<'b>, bufs: &'b [String]) -> Option<&'b str> {
    match value {
        V::Str(text) => Some(text),
        V::Buf(slot) => Some(&bufs[slot]),
        _ => None,
    }
}

fn from_bool(value: Option<bool>) -> V<'static> {
    value.map_or(V::Null, V::Bool)
}

/// `node` over `row`.
pub(super) fn eval<'a>(node: &'a Node, row: &'a ArchivedRow, scratch: &mut Scratch) -> V<'a> {
    match node {
        Node::Const(value) => match value {
            Const::Null => V::Null,
            Const::Bool(value) => V::Bool(*value),
            Const::Int(value) => V::Int(*value),
            Const::Float(value) => V::Float(*value),
            Const::Str(text) => V::Str(text),
            Const::Ts(value) => V::Ts(*value),
            Const::Ip(value) => V::Ip(*value),
        },
        Node::Field(index) => V::of(row.get(*index)),
        Node::Not(operand) => from_bool(eval(operand, row, scratch).boolean().map(|b| !b)),
        // Three-valued logic: a false side makes `and` false, a true side
        // makes `or` true, even when the other side is null.
        Node::And(left, right) => match eval(left, row, scratch).boolean() {
            Some(false) => V::Bool(false),
            left => match (left, eval(right, row, scratch).boolean()) {
                (_, Some(false)) => V::Bool(false),
                (Some(true), Some(true)) => V::Bool(true),
                _ => V::Null,
            },
        },
        Node::Or(left, right) => match eval(left, row, scratch).boolean() {
            Some(true) => V::Bool(true),
            left => match (left, eval(right, row, scratch).boolean()) {
                (_, Some(true)) => V::Bool(true),
                (Some(false), Some(false)) => V::Bool(false),
                _ => V::Null,
            },
        },
        Node::Neg(Num::Int, operand) => eval(operand, row, scratch)
            .int()
            .and_then(i64::checked_neg)
            .map_or(V::Null, V::Int),
        Node::Neg(Num::Float, operand) => eval(operand, row, scratch)
            .float()
            .map_or(V::Null, |value| V::Float(-value)),
        Node::Arith(op, Num::Int, left, right) => {
            let left = eval(left, row, scratch).int();
            let right = eval(right, row, scratch).int();
            match (left, right) {
                (Some(a), Some(b)) => int_op(*op, a, b).map_or(V::Null, V::Int),
                _ => V::Null,
            }
        }
        Node::Arith(op, Num::Float, left, right) => {
            let left = eval(left, row, scratch).float();
            let right = eval(right, row, scratch).float();
            match (left, right) {
                (Some(a), Some(b)) => float_op(*op, a, b).map_or(V::Null, V::Float),
                _ => V::Null,
            }
        }
        Node::TsShift(subtract, ts, by) => {
            let ts = eval(ts, row, scratch).ts();
            let by = eval(by, row, scratch).int();
            match (ts, by) {
                (Some(ts), Some(by)) => {
                    let shifted = if *subtract {
                        ts.checked_sub(by)
                    } else {
                        ts.checked_add(by)
                    };
                    shifted.map_or(V::Null, V::Ts)
                }
                _ => V::Null,
            }
        }
        Node::TsDiff(left, right) => {
            let left = eval(left, row, scratch).ts();
            let right = eval(right, row, scratch).ts();
            match (left, right) {
                (Some(a), Some(b)) => a.checked_sub(b).map_or(V::Null, V::Int),
                _ => V::Null,
            }
        }
        Node::Cmp(op, kind, left, right) => {
            let left = eval(left, row, scratch);
            let right = eval(right, row, scratch);
            from_bool(compare(*op, *kind, left, right, &scratch.bufs))
        }
        Node::StrTest(test, haystack, needle) => {
            let haystack = eval(haystack, row, scratch);
            let needle = eval(needle, row, scratch);
            let bufs = &scratch.bufs;
            from_bool(
                text(haystack, bufs)
                    .zip(text(needle, bufs))
                    .map(|(haystack, needle)| match test {
                        StrTest::Contains => haystack.contains(needle),
                        StrTest::StartsWith => haystack.starts_with(needle),
                        StrTest::EndsWith => haystack.ends_with(needle),
                    }),
            )
        }
        Node::Case(upper, slot, operand) => {
            let value = eval(operand, row, scratch);
            let mut buf = std::mem::take(&mut scratch.bufs[*slot]);
            buf.clear();
            let result = match text(value, &scratch.bufs) {
                Some(source) => {
                    if source.is_ascii() {
                        buf.push_str(source);
                        if *upper {
                            buf.make_ascii_uppercase();
                        } else {
                            buf.make_ascii_lowercase();
                        }
                    } else if *upper {
                        buf.extend(source.chars().flat_map(char::to_uppercase));
                    } else {
                        buf.extend(source.chars().flat_map(char::to_lowercase));
                    }
                    V::Buf(*slot)
                }
                None => V::Null,
            };
            scratch.bufs[*slot] = buf;
            result
        }
        Node::Len(operand) => {
            let value = eval(operand, row, scratch);
            let length = match value {
                V::Raw(ArchivedValue::List(values)) => Some(values.len()),
                V::Raw(ArchivedValue::Map(entries)) => Some(entries.len()),
                other => text(other, &scratch.bufs).map(|text| text.chars().count()),
            };
            length.map_or(V::Null, |length| V::Int(length as i64))
        }
        Node::Matches(operand, regex) => {
            let value = eval(operand, row, scratch);
            from_bool(text(value, &scratch.bufs).map(|text| regex.is_match(text)))
        }
        Node::IsNull(operand) => V::Bool(matches!(eval(operand, row, scratch), V::Null)),
        Node::Cidr { ip, net, mask } => from_bool(eval(ip, row, scratch).ip().map(|ip| {
            ip.0.iter()
                .zip(mask)
                .zip(net)
                .all(|((byte, mask), net)| byte & mask == *net)
        })),
        Node::ToString(slot, operand) => {
            let value = eval(operand, row, scratch);
            let mut buf = std::mem::take(&mut scratch.bufs[*slot]);
            buf.clear();
            let written = write_text(value, &scratch.bufs, &mut buf);
            scratch.bufs[*slot] = buf;
            if written {
                V::Buf(*slot)
            } else {
                V::Null
            }
        }
        Node::ToInt(operand) => {
            let value = eval(operand, row, scratch);
            let int = match value {
                V::Int(value) | V::Ts(value) => Some(value),
                V::Float(value) => float_to_int(value),
                V::Bool(value) => Some(i64::from(value)),
                other => text(other, &scratch.bufs).and_then(|text| {
                    let text = text.trim();
                    text.parse::<i64>()
                        .ok()
                        .or_else(|| text.parse::<f64>().ok().and_then(float_to_int))
                }),
            };
            int.map_or(V::Null, V::Int)
        }
        Node::ToFloat(operand) => {
            let value = eval(operand, row, scratch);
            let float = match value {
                V::Int(value) | V::Ts(value) => Some(value as f64),
                V::Float(value) => Some(value),
                V::Bool(value) => Some(f64::from(u8::from(value))),
                other => text(other, &scratch.bufs).and_then(|text| text.trim().parse().ok()),
            };
            float.map_or(V::Null, V::Float)
        }
    }
}

/// Integer arithmetic; `None` (null) on overflow and division by zero.
pub(super) fn int_op(op: ArOp, a: i64, b: i64) -> Option<i64> {
    match op {
        ArOp::Add => a.checked_add(b),
        ArOp::Sub => a.checked_sub(b),
        ArOp::Mul => a.checked_mul(b),
        ArOp::Div => a.checked_div(b),
        ArOp::Rem => a.checked_rem(b),
    }
}

/// Float arithmetic; `None` (null) on division by zero.
pub(super) fn float_op(op: ArOp, a: f64, b: f64) -> Option<f64> {
    match op {
        ArOp::Add => Some(a + b),
        ArOp::Sub => Some(a - b),
        ArOp::Mul => Some(a * b),
        ArOp::Div | ArOp::Rem if b == 0.0 => None,
        ArOp::Div => Some(a / b),
        ArOp::Rem => Some(a % b),
    }
}

/// Truncates toward zero; `None` when out of range or not a number.
fn float_to_int(value: f64) -> Option<i64> {
    // `i64::MAX as f64` is 2^63, just past the largest i64.
    (value.is_finite() && value >= i64::MIN as f64 && value < i64::MAX as f64)
        .then(|| value.trunc() as i64)
}

fn compare(op: CmpOp, kind: CmpKind, left: V<'_>, right: V<'_>, bufs: &[String]) -> Option<bool> {
    use std::cmp::Ordering;
    let ordering: Ordering = match kind {
        CmpKind::Float => {
            let (a, b) = (left.float()?, right.float()?);
            // IEEE semantics: NaN equals nothing.
            return Some(match op {
                CmpOp::Eq => a == b,
                CmpOp::Ne => a != b,
                CmpOp::Lt => a < b,
                CmpOp::Le => a <= b,
                CmpOp::Gt => a > b,
                CmpOp::Ge => a >= b,
            });
        }
        CmpKind::Int => left.int()?.cmp(&right.int()?),
        CmpKind::Str => text(left, bufs)?.cmp(text(right, bufs)?),
        CmpKind::Bool => left.boolean()?.cmp(&right.boolean()?),
        CmpKind::Ts => left.ts()?.cmp(&right.ts()?),
        CmpKind::Ip => left.ip()?.cmp(&right.ip()?),
    };
    Some(match op {
        CmpOp::Eq => ordering.is_eq(),
        CmpOp::Ne => ordering.is_ne(),
        CmpOp::Lt => ordering.is_lt(),
        CmpOp::Le => ordering.is_le(),
        CmpOp::Gt => ordering.is_gt(),
        CmpOp::Ge => ordering.is_ge(),
    })
}

/// Writes `value` as text into `out`; `false` for null.
fn write_text(value: V<'_>, bufs: &[String], out: &mut String) -> bool {
    match value {
        V::Null => return false,
        V::Bool(value) => out.push_str(if value { "true" } else { "false" }),
        V::Int(value) => {
            let _ = write!(out, "{value}");
        }
        V::Float(value) => {
            let _ = write!(out, "{value}");
        }
        V::Str(_) | V::Buf(_) => out.push_str(text(value, bufs).unwrap_or_default()),
        V::Ts(ms) => match DateTime::from_timestamp_millis(ms) {
            Some(time) => {
                let _ = write!(out, "{}", time.format("%Y-%m-%dT%H:%M:%S%.3fZ"));
            }
            None => return false,
        },
        V::Ip(ip) => {
            let _ = write!(out, "{ip}");
        }
        V::Raw(value) => {
            let _ = write!(out, "{value}");
        }
    }
    true
}
