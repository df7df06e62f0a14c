//! weir's expression language: the conditions of `filter`, `route` and
//! thresholds, and the computed fields of `map`, over rows of a
//! [`Schema`] known when the pipeline is built.
//!
//! An expression is compiled once against the input schema
//! ([`Expr::compile`], [`Expr::compile_condition`]): names are resolved to
//! field indices, types are checked, and literals that need converting
//! (IP addresses, timestamps, CIDR blocks, regular expressions) are
//! converted then. Every mistake is an [`ExprError`] with the byte offset
//! in the text where it is. Evaluation ([`Expr::test`], [`Expr::eval`])
//! reads the archived row in place, borrowing its strings, and a condition
//! allocates nothing per record.
//!
//! # Syntax
//!
//! | Form | Meaning |
//! |------|---------|
//! | `status`, `user_id` | a field by name (letters, digits, `_`; not starting with a digit) |
//! | `` `http.status` `` | a field whose name is not a bare name (or is a keyword) |
//! | `42`, `-7` | `int` (64-bit) |
//! | `1.5`, `2e3`, `1.5e-3` | `float` |
//! | `"text"` | `string`; escapes `\"`, `\\`, `\n`, `\t` |
//! | `true`, `false` | `bool` |
//! | `null` | null (see below) |
//! | `100ms`, `30s`, `5m`, `1h`, `2d` | a duration: whole milliseconds, seconds, minutes, hours, days |
//! | `( e )` | grouping |
//!
//! Operators, loosest first (all binary ones are left-associative):
//!
//! 1. `or` (also `||`)
//! 2. `and` (also `&&`)
//! 3. `not` (also `!`): `not a == b` is `not (a == b)`
//! 4. `==` `!=` `<` `<=` `>` `>=`: comparisons do not chain (`a < b < c` is an error)
//! 5. `+` `-`
//! 6. `*` `/` `%`
//! 7. unary `-`
//!
//! So `a or b and c` is `a or (b and c)` and `1 + 2 * 3` is `7`.
//!
//! # Types
//!
//! Fields have their schema type (`bool`, `int`, `float`, `string`,
//! `timestamp`, `ip`, `list`, `map`); duration literals have type
//! `duration`, which is an `int` of milliseconds at run time.
//!
//! - Arithmetic `+ - * / %` is on numbers: `int` with `int` stays `int`
//!   (division truncates toward zero, `%` takes the sign of the left
//!   side); with a `float` on either side both are promoted to `float`.
//!   Division or remainder by zero, and `int` overflow, give null.
//! - `duration` mixes with `int` (giving `duration`) and `float` (giving
//!   `float`). `timestamp + duration` and `timestamp - duration` give a
//!   `timestamp`; `timestamp - timestamp` gives the `int` milliseconds
//!   between them, which compares with a duration: `end - start > 5m`.
//! - Comparisons need the same kind on both sides: numbers (`int`,
//!   `float`, `duration`, promoted to `float` when one side is a float),
//!   strings (by bytes), timestamps, IP addresses (by their 16-byte form,
//!   IPv4 mapped into IPv6), bools (`==` and `!=` only). A string literal
//!   compared with an `ip` is read as an address at compile time
//!   (`client == "10.0.0.1"`), and one compared with a `timestamp` as an
//!   RFC 3339 or access-log time (`ts >= "2026-11-26T00:00:00Z"`); one
//!   that is neither is a compile error. Any other pair, such as `string`
//!   with `int`, is a compile error naming both types.
//! - `and`, `or` and `not` need bools. `list` and `map` fields can only be
//!   tested with `is_null`, measured with `len`, converted with
//!   `to_string`, or passed through.
//!
//! # Functions
//!
//! | Function | Result |
//! |----------|--------|
//! | `contains(s, sub)`, `starts_with(s, prefix)`, `ends_with(s, suffix)` | `bool` |
//! | `lower(s)`, `upper(s)` | `string` (Unicode case mapping) |
//! | `len(x)` | `int`: characters of a string, elements of a list or map |
//! | `matches(s, "regex")` | `bool`: whether the regular expression (Rust `regex` syntax) matches anywhere in `s`; anchor it with `^...$` for a whole match. The pattern must be a literal; it is compiled once, and a bad one is a compile error |
//! | `cidr_contains("10.0.0.0/8", ip)` | `bool`: whether the `ip` is in the network, IPv4 or IPv6 (`"2001:db8::/32"`); the network must be a literal; a lone address means just that address. An IPv4 network only contains IPv4 addresses |
//! | `is_null(x)` | `bool`: whether `x` is null; never null itself |
//! | `to_string(x)` | `string`: numbers and bools as written, timestamps as RFC 3339 UTC with milliseconds, addresses in standard form, lists and maps as JSON |
//! | `to_int(x)` | `int` from `int`, `float` (truncated), `duration`, `bool` (0/1), `timestamp` (ms), or a string holding a number; null when it does not fit or parse |
//! | `to_float(x)` | `float` from the same |
//!
//! There is no `now()`: an expression must give the same answer when a
//! record is replayed after a restart, so time comes from the record's own
//! timestamp fields.
//!
//! # Null
//!
//! Any field may be null. Every operation and function with a null operand
//! gives null, except that `is_null(x)` tests for it and `and`/`or` use
//! three-valued logic: `false and null` is `false`, `true or null` is
//! `true`, and otherwise a null side makes the result null. A condition
//! that evaluates to null counts as false, so `status >= 500` drops
//! records with no status, and `is_null(status) or status >= 500` keeps
//! them. Comparing with the literal `null` (`x == null`) is a compile
//! error pointing to `is_null`; elsewhere `null` takes the type of what
//! surrounds it, and an expression that is only `null` has no type and is
//! an error.
//!
//! # Errors
//!
//! Compiling reports the first problem as an [`ExprError`]: a message and
//! the byte offset in the text, such as "expected an operator after
//! `status`, found `200`", "unknown function `lowr`; did you mean
//! `lower`?", "cannot compare string with int by `==`", or the schema's
//! "no field `x`; the input has ...". [`ExprError::to_option_error`] turns
//! it into the [`OptionError`] of the configuration key that held the
//! text. Expressions nest at most 128 levels (parentheses, operands,
//! arguments), which bounds the stack that compiling and evaluating use.
//!
//! The text is split into tokens with `winnow` parsers and the tokens are
//! parsed by precedence climbing, so every node knows its place in the
//! text.
//!
//! # Evaluation cost
//!
//! Fields are read from the archived row in place; string comparisons and
//! `contains`/`starts_with`/`ends_with`/`matches` borrow the row's text;
//! `lower`, `upper` and `to_string` write into buffers of a [`Scratch`]
//! that the caller keeps and reuses. Once those have grown, [`Expr::test`]
//! allocates nothing (see `operators/tests/expr_alloc.rs`). [`Expr::eval`]
//! returns an owned [`Value`], which allocates for strings.

mod check;
mod eval;
mod lex;
mod parse;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use crate::row::{ArchivedRow, OptionError, Schema, Type, Value};

use check::{Checker, Node};

/// A compiled, type-checked expression. Cheap to clone (the compiled tree
/// and any regular expressions are shared), safe to use from any thread.
#[derive(Debug, Clone)]
pub struct Expr {
    root: Arc<Node>,
    ty: Type,
    fields: Vec<usize>,
    slots: usize,
}

/// A mistake in an expression: what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// Byte offset in the expression text where the problem is.
    pub offset: usize,
    /// What is wrong, e.g. "expected an operator after `status`, found `200`".
    pub message: String,
}

impl ExprError {
    fn new(offset: usize, message: String) -> ExprError {
        ExprError { offset, message }
    }

    /// The error as a problem with the configuration option `option`
    /// holding the expression: the message, then the offset.
    pub fn to_option_error(&self, option: impl Into<String>) -> OptionError {
        OptionError::new(option, self.to_string())
    }
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.offset)
    }
}

impl std::error::Error for ExprError {}

/// Reusable buffers for evaluating expressions, so evaluation does not
/// allocate per record. Keep one per operator (or per thread) and pass it
/// to every call; one `Scratch` serves any number of expressions.
#[derive(Debug, Default)]
pub struct Scratch {
    bufs: Vec<String>,
}

impl Expr {
    /// Compiles `text` against `schema`: any expression with a type.
    pub fn compile(text: &str, schema: &Schema) -> Result<Expr, ExprError> {
        let ast = parse::parse(text)?;
        let mut checker = Checker::default();
        let (root, ty) = checker.check(&ast, schema)?;
        let Some(row_type) = ty.row_type() else {
            return Err(ExprError::new(
                ast.start,
                "the expression is always null, so it has no type".to_owned(),
            ));
        };
        let mut fields = checker.fields;
        fields.sort_unstable();
        fields.dedup();
        Ok(Expr {
            root: Arc::new(root),
            ty: row_type,
            fields,
            slots: checker.slots,
        })
    }

    /// Compiles a condition: `text` must be a `bool` expression.
    pub fn compile_condition(text: &str, schema: &Schema) -> Result<Expr, ExprError> {
        let expr = Expr::compile(text, schema)?;
        if expr.ty != Type::Bool {
            let start = text.len() - text.trim_start().len();
            return Err(ExprError::new(
                start,
                format!(
                    "a condition must be a bool, but this expression is {} {}",
                    article(expr.ty),
                    expr.ty
                ),
            ));
        }
        Ok(expr)
    }

    /// The type of the result (a duration is an `int` of milliseconds).
    pub fn ty(&self) -> Type {
        self.ty
    }

    /// The indices of the fields the expression reads, ascending, once
    /// each.
    pub fn fields(&self) -> Vec<usize> {
        self.fields.clone()
    }

    /// Evaluates over `row`; the result is owned (for `map`). Null when any
    /// operand is null (see the module docs).
    pub fn eval(&self, row: &ArchivedRow, scratch: &mut Scratch) -> Value {
        self.prepare(scratch);
        let value = eval::eval(&self.root, row, scratch);
        value.to_value(scratch)
    }

    /// Evaluates a condition over `row`: `true` only when it is true (null
    /// counts as false). Allocates nothing once `scratch` has grown.
    #[inline]
    pub fn test(&self, row: &ArchivedRow, scratch: &mut Scratch) -> bool {
        self.prepare(scratch);
        matches!(eval::eval(&self.root, row, scratch), eval::V::Bool(true))
    }

    fn prepare(&self, scratch: &mut Scratch) {
        if scratch.bufs.len() < self.slots {
            scratch.bufs.resize_with(self.slots, String::new);
        }
    }
}

/// Tests `expr` on each of `rows`, appending the answers to `out` (which
/// it does not clear): the filter of a batch.
pub fn eval_batch_filter<'r>(
    expr: &Expr,
    rows: impl IntoIterator<Item = &'r ArchivedRow>,
    scratch: &mut Scratch,
    out: &mut Vec<bool>,
) {
    out.extend(rows.into_iter().map(|row| expr.test(row, scratch)));
}

fn article(ty: Type) -> &'static str {
    match ty {
        Type::Int | Type::Ip => "an",
        _ => "a",
    }
}

// Expressions are built once and shared by every shard's operator.
const _: () = {
    const fn shareable<T: Send + Sync + Clone + fmt::Debug>() {}
    shareable::<Expr>();
    shareable::<ExprError>();
};
