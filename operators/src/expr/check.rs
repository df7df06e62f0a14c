//! Type checking: a syntax tree and a schema to a typed, compiled [`Node`]
//! tree, with every literal that needs converting (IP addresses,
//! timestamps, CIDR blocks, regular expressions) converted once here.

use std::net::IpAddr;

use regex::Regex;

use super::parse::{Ast, AstKind, BinOp, Lit, UnOp};
use super::ExprError;
use crate::row::{parse_timestamp, Ip, Schema, Type};

/// A static type: the schema's types plus `null` (the literal) and
/// `duration` (milliseconds, an `int` at run time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
    Null,
    Bool,
    Int,
    Float,
    Str,
    Ts,
    Ip,
    Dur,
    List,
    Map,
}

impl Ty {
    pub fn name(self) -> &'static str {
        match self {
            Ty::Null => "null",
            Ty::Bool => "bool",
            Ty::Int => "int",
            Ty::Float => "float",
            Ty::Str => "string",
            Ty::Ts => "timestamp",
            Ty::Ip => "ip",
            Ty::Dur => "duration",
            Ty::List => "list",
            Ty::Map => "map",
        }
    }

    fn of(ty: Type) -> Ty {
        match ty {
            Type::Bool => Ty::Bool,
            Type::Int => Ty::Int,
            Type::Float => Ty::Float,
            Type::String => Ty::Str,
            Type::Timestamp => Ty::Ts,
            Type::Ip => Ty::Ip,
            Type::List => Ty::List,
            Type::Map => Ty::Map,
        }
    }

    /// The row type of values of this static type (`duration` is `int`).
    pub fn row_type(self) -> Option<Type> {
        Some(match self {
            Ty::Null => return None,
            Ty::Bool => Type::Bool,
            Ty::Int | Ty::Dur => Type::Int,
            Ty::Float => Type::Float,
            Ty::Str => Type::String,
            Ty::Ts => Type::Timestamp,
            Ty::Ip => Type::Ip,
            Ty::List => Type::List,
            Ty::Map => Type::Map,
        })
    }

    fn is_numeric(self) -> bool {
        matches!(self, Ty::Int | Ty::Float | Ty::Dur)
    }
}

/// A compiled expression node.
#[derive(Debug, Clone)]
pub(super) enum Node {
    Const(Const),
    Field(usize),
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Neg(Num, Box<Node>),
    Arith(ArOp, Num, Box<Node>, Box<Node>),
    /// Timestamp plus (or, when `true`, minus) duration.
    TsShift(bool, Box<Node>, Box<Node>),
    /// Timestamp minus timestamp, in milliseconds.
    TsDiff(Box<Node>, Box<Node>),
    Cmp(CmpOp, CmpKind, Box<Node>, Box<Node>),
    StrTest(StrTest, Box<Node>, Box<Node>),
    /// `lower` (false) or `upper` (true), into scratch buffer `slot`.
    Case(bool, usize, Box<Node>),
    Len(Box<Node>),
    Matches(Box<Node>, Regex),
    IsNull(Box<Node>),
    /// The address is in the network: `(ip & mask) == net`.
    Cidr {
        ip: Box<Node>,
        net: [u8; 16],
        mask: [u8; 16],
    },
    /// Into scratch buffer `slot`.
    ToString(usize, Box<Node>),
    ToInt(Box<Node>),
    ToFloat(Box<Node>),
}

#[derive(Debug, Clone)]
pub(super) enum Const {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Box<str>),
    Ts(i64),
    Ip(Ip),
}

/// How arithmetic runs: on `i64` (checked) or `f64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Num {
    Int,
    Float,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ArOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// What a comparison compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CmpKind {
    Int,
    Float,
    Str,
    Bool,
    Ts,
    Ip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StrTest {
    Contains,
    StartsWith,
    EndsWith,
}

/// The functions there are, for "did you mean".
pub(super) const FUNCTIONS: &[&str] = &[
    "contains",
    "starts_with",
    "ends_with",
    "lower",
    "upper",
    "len",
    "matches",
    "is_null",
    "cidr_contains",
    "to_string",
    "to_int",
    "to_float",
];

/// What compiling collects besides the tree.
#[derive(Debug, Default)]
pub(super) struct Checker {
    /// Field indices read, in order of appearance (with repeats).
    pub fields: Vec<usize>,
    /// Scratch string buffers needed.
    pub slots: usize,
}

type Checked = Result<(Node, Ty), ExprError>;

fn boxed(node: Node) -> Box<Node> {
    Box::new(node)
}

impl Checker {
    pub fn check(&mut self, ast: &Ast, schema: &Schema) -> Checked {
        match &ast.kind {
            AstKind::Lit(lit) => Ok(match lit {
                Lit::Null => (Node::Const(Const::Null), Ty::Null),
                Lit::Bool(value) => (Node::Const(Const::Bool(*value)), Ty::Bool),
                Lit::Int(value) => (Node::Const(Const::Int(*value)), Ty::Int),
                Lit::Float(value) => (Node::Const(Const::Float(*value)), Ty::Float),
                Lit::Str(text) => (Node::Const(Const::Str(text.as_str().into())), Ty::Str),
                Lit::Duration(ms) => (Node::Const(Const::Int(*ms)), Ty::Dur),
            }),
            AstKind::Field(name) => {
                let (index, ty) = schema
                    .lookup(name)
                    .map_err(|message| ExprError::new(ast.start, message))?;
                self.fields.push(index);
                Ok((Node::Field(index), Ty::of(ty)))
            }
            AstKind::Unary(UnOp::Not, operand) => {
                let (node, ty) = self.check(operand, schema)?;
                expect_bool(ty, operand, || "`not` needs a bool".to_owned())?;
                Ok((Node::Not(boxed(node)), Ty::Bool))
            }
            AstKind::Unary(UnOp::Neg, operand) => {
                let (node, ty) = self.check(operand, schema)?;
                let (num, ty) = match ty {
                    Ty::Int | Ty::Null => (Num::Int, Ty::Int),
                    Ty::Dur => (Num::Int, Ty::Dur),
                    Ty::Float => (Num::Float, Ty::Float),
                    other => {
                        return Err(ExprError::new(
                            ast.start,
                            format!("cannot negate a {}", other.name()),
                        ))
                    }
                };
                Ok((Node::Neg(num, boxed(node)), ty))
            }
            AstKind::Binary(op, left, right, at) => self.binary(*op, left, right, *at, schema),
            AstKind::Call(name, args) => self.call(name, args, ast, schema),
        }
    }

    fn binary(
        &mut self,
        op: BinOp,
        left: &Ast,
        right: &Ast,
        at: usize,
        schema: &Schema,
    ) -> Checked {
        let (lnode, lty) = self.check(left, schema)?;
        let (rnode, rty) = self.check(right, schema)?;
        match op {
            BinOp::And | BinOp::Or => {
                let word = op.symbol();
                expect_bool(lty, left, || {
                    format!("the left side of `{word}` must be a bool")
                })?;
                expect_bool(rty, right, || {
                    format!("the right side of `{word}` must be a bool")
                })?;
                let node = if op == BinOp::And {
                    Node::And(boxed(lnode), boxed(rnode))
                } else {
                    Node::Or(boxed(lnode), boxed(rnode))
                };
                Ok((node, Ty::Bool))
            }
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => {
                arithmetic(op, lnode, lty, rnode, rty, at)
            }
            _ => comparison(op, (lnode, lty, left), (rnode, rty, right), at),
        }
    }

    fn call(&mut self, name: &str, args: &[Ast], ast: &Ast, schema: &Schema) -> Checked {
        let arity = match name {
            "contains" | "starts_with" | "ends_with" | "matches" | "cidr_contains" => 2,
            "lower" | "upper" | "len" | "is_null" | "to_string" | "to_int" | "to_float" => 1,
            "now" => {
                return Err(ExprError::new(
                    ast.start,
                    "`now()` is not allowed: an expression must give the same result \
                     when a record is replayed; compare with the record's timestamp fields"
                        .to_owned(),
                ))
            }
            _ => {
                let mut message = format!("unknown function `{name}`");
                if let Some(close) = closest(name, FUNCTIONS) {
                    message.push_str(&format!("; did you mean `{close}`?"));
                } else {
                    message.push_str(&format!("; the functions are {}", FUNCTIONS.join(", ")));
                }
                return Err(ExprError::new(ast.start, message));
            }
        };
        if args.len() != arity {
            let plural = if arity == 1 { "" } else { "s" };
            return Err(ExprError::new(
                ast.start,
                format!(
                    "`{name}` takes {arity} argument{plural}, found {}",
                    args.len()
                ),
            ));
        }
        // Arguments that must be literals, converted here.
        match name {
            "matches" => {
                let (text, _) = self.argument(name, args, 0, &[Ty::Str], schema)?;
                let pattern = string_literal(name, &args[1], "pattern")?;
                let regex = Regex::new(pattern).map_err(|error| {
                    ExprError::new(
                        args[1].start,
                        format!("bad regular expression in `matches`: {error}"),
                    )
                })?;
                return Ok((Node::Matches(boxed(text), regex), Ty::Bool));
            }
            "cidr_contains" => {
                let block = string_literal(name, &args[0], "network")?;
                let (net, mask) =
                    parse_cidr(block).map_err(|message| ExprError::new(args[0].start, message))?;
                let (ip, _) = self.argument(name, args, 1, &[Ty::Ip], schema)?;
                return Ok((
                    Node::Cidr {
                        ip: boxed(ip),
                        net,
                        mask,
                    },
                    Ty::Bool,
                ));
            }
            _ => {}
        }
        Ok(match name {
            "contains" | "starts_with" | "ends_with" => {
                let (haystack, _) = self.argument(name, args, 0, &[Ty::Str], schema)?;
                let (needle, _) = self.argument(name, args, 1, &[Ty::Str], schema)?;
                let test = match name {
                    "contains" => StrTest::Contains,
                    "starts_with" => StrTest::StartsWith,
                    _ => StrTest::EndsWith,
                };
                (
                    Node::StrTest(test, boxed(haystack), boxed(needle)),
                    Ty::Bool,
                )
            }
            "lower" | "upper" => {
                let (text, _) = self.argument(name, args, 0, &[Ty::Str], schema)?;
                let slot = self.slot();
                (Node::Case(name == "upper", slot, boxed(text)), Ty::Str)
            }
            "len" => {
                let (value, _) =
                    self.argument(name, args, 0, &[Ty::Str, Ty::List, Ty::Map], schema)?;
                (Node::Len(boxed(value)), Ty::Int)
            }
            "is_null" => {
                let (value, _) = self.check(&args[0], schema)?;
                (Node::IsNull(boxed(value)), Ty::Bool)
            }
            "to_string" => {
                let (value, _) = self.check(&args[0], schema)?;
                let slot = self.slot();
                (Node::ToString(slot, boxed(value)), Ty::Str)
            }
            "to_int" | "to_float" => {
                let allowed = [Ty::Int, Ty::Float, Ty::Dur, Ty::Str, Ty::Bool, Ty::Ts];
                let (value, _) = self.argument(name, args, 0, &allowed, schema)?;
                if name == "to_int" {
                    (Node::ToInt(boxed(value)), Ty::Int)
                } else {
                    (Node::ToFloat(boxed(value)), Ty::Float)
                }
            }
            _ => unreachable!("every function with an arity is handled"),
        })
    }

    /// Argument `index` of `name`, which must be one of `allowed` (or null).
    fn argument(
        &mut self,
        name: &str,
        args: &[Ast],
        index: usize,
        allowed: &[Ty],
        schema: &Schema,
    ) -> Checked {
        let (node, ty) = self.check(&args[index], schema)?;
        if ty != Ty::Null && !allowed.contains(&ty) {
            let wanted: Vec<&str> = allowed.iter().map(|ty| ty.name()).collect();
            return Err(ExprError::new(
                args[index].start,
                format!(
                    "argument {} of `{name}` must be {}, found {}",
                    index + 1,
                    wanted.join(" or "),
                    ty.name()
                ),
            ));
        }
        Ok((node, ty))
    }

    fn slot(&mut self) -> usize {
        self.slots += 1;
        self.slots - 1
    }
}

fn expect_bool(ty: Ty, ast: &Ast, what: impl FnOnce() -> String) -> Result<(), ExprError> {
    if matches!(ty, Ty::Bool | Ty::Null) {
        return Ok(());
    }
    Err(ExprError::new(
        ast.start,
        format!("{}, found {}", what(), ty.name()),
    ))
}

fn string_literal<'a>(function: &str, ast: &'a Ast, what: &str) -> Result<&'a str, ExprError> {
    match &ast.kind {
        AstKind::Lit(Lit::Str(text)) => Ok(text),
        _ => Err(ExprError::new(
            ast.start,
            format!("the {what} of `{function}` must be a string literal in double quotes"),
        )),
    }
}

fn arithmetic(op: BinOp, lnode: Node, lty: Ty, rnode: Node, rty: Ty, at: usize) -> Checked {
    let ar = match op {
        BinOp::Add => ArOp::Add,
        BinOp::Sub => ArOp::Sub,
        BinOp::Mul => ArOp::Mul,
        BinOp::Div => ArOp::Div,
        _ => ArOp::Rem,
    };
    // `null` takes the other side's type (and makes the result null).
    let l = if lty == Ty::Null { rty } else { lty };
    let r = if rty == Ty::Null { lty } else { rty };
    let (l, r) = match (l, r) {
        (Ty::Null, Ty::Null) => (Ty::Int, Ty::Int),
        pair => pair,
    };
    let (lnode, rnode) = (boxed(lnode), boxed(rnode));
    let symbol = op.symbol();
    Ok(match (l, r) {
        (Ty::Int, Ty::Int) => (Node::Arith(ar, Num::Int, lnode, rnode), Ty::Int),
        (Ty::Int | Ty::Dur, Ty::Int | Ty::Dur) => {
            (Node::Arith(ar, Num::Int, lnode, rnode), Ty::Dur)
        }
        (l, r) if l.is_numeric() && r.is_numeric() => {
            (Node::Arith(ar, Num::Float, lnode, rnode), Ty::Float)
        }
        (Ty::Ts, Ty::Dur) if matches!(ar, ArOp::Add | ArOp::Sub) => {
            (Node::TsShift(ar == ArOp::Sub, lnode, rnode), Ty::Ts)
        }
        (Ty::Dur, Ty::Ts) if ar == ArOp::Add => (Node::TsShift(false, rnode, lnode), Ty::Ts),
        (Ty::Ts, Ty::Ts) if ar == ArOp::Sub => (Node::TsDiff(lnode, rnode), Ty::Int),
        (Ty::Ts, Ty::Int | Ty::Float) | (Ty::Int | Ty::Float, Ty::Ts)
            if matches!(ar, ArOp::Add | ArOp::Sub) =>
        {
            return Err(ExprError::new(
                at,
                format!(
                    "cannot apply `{symbol}` to {} and {}; shift a timestamp by a duration \
                     such as `5m`, `30s` or `100ms`",
                    lty.name(),
                    rty.name()
                ),
            ))
        }
        _ => {
            return Err(ExprError::new(
                at,
                format!(
                    "cannot apply `{symbol}` to {} and {}",
                    lty.name(),
                    rty.name()
                ),
            ))
        }
    })
}

fn comparison(
    op: BinOp,
    (lnode, lty, left): (Node, Ty, &Ast),
    (rnode, rty, right): (Node, Ty, &Ast),
    at: usize,
) -> Checked {
    let cmp = match op {
        BinOp::Eq => CmpOp::Eq,
        BinOp::Ne => CmpOp::Ne,
        BinOp::Lt => CmpOp::Lt,
        BinOp::Le => CmpOp::Le,
        BinOp::Gt => CmpOp::Gt,
        _ => CmpOp::Ge,
    };
    let symbol = op.symbol();
    if lty == Ty::Null || rty == Ty::Null {
        return Err(ExprError::new(
            at,
            format!(
                "comparing with `null` by `{symbol}` is always null (so false); \
                 test for null with `is_null(x)`"
            ),
        ));
    }
    let mismatch = |extra: &str| {
        ExprError::new(
            at,
            format!(
                "cannot compare {} with {} by `{symbol}`{extra}",
                lty.name(),
                rty.name()
            ),
        )
    };
    let (mut lnode, mut rnode) = (lnode, rnode);
    let kind = match (lty, rty) {
        (l, r) if l.is_numeric() && r.is_numeric() => {
            if l == Ty::Float || r == Ty::Float {
                CmpKind::Float
            } else {
                CmpKind::Int
            }
        }
        (Ty::Str, Ty::Str) => CmpKind::Str,
        (Ty::Bool, Ty::Bool) => {
            if !matches!(cmp, CmpOp::Eq | CmpOp::Ne) {
                return Err(ExprError::new(
                    at,
                    format!("bools are compared with `==` and `!=` only, not `{symbol}`"),
                ));
            }
            CmpKind::Bool
        }
        (Ty::Ts, Ty::Ts) => CmpKind::Ts,
        (Ty::Ip, Ty::Ip) => CmpKind::Ip,
        (Ty::Ts, Ty::Str) | (Ty::Str, Ty::Ts) => {
            let (literal, node) = if lty == Ty::Str {
                (left, &mut lnode)
            } else {
                (right, &mut rnode)
            };
            let AstKind::Lit(Lit::Str(text)) = &literal.kind else {
                return Err(mismatch("; only a string literal is read as a timestamp"));
            };
            let Some(ms) = parse_timestamp(text) else {
                return Err(mismatch(&format!(
                    ": \"{text}\" is not a timestamp (write RFC 3339, e.g. \
                     \"2026-11-26T14:00:00Z\")"
                )));
            };
            *node = Node::Const(Const::Ts(ms));
            CmpKind::Ts
        }
        (Ty::Ip, Ty::Str) | (Ty::Str, Ty::Ip) => {
            let (literal, node) = if lty == Ty::Str {
                (left, &mut lnode)
            } else {
                (right, &mut rnode)
            };
            let AstKind::Lit(Lit::Str(text)) = &literal.kind else {
                return Err(mismatch("; only a string literal is read as an IP address"));
            };
            let Ok(addr) = text.parse::<IpAddr>() else {
                return Err(mismatch(&format!(": \"{text}\" is not an IP address")));
            };
            *node = Node::Const(Const::Ip(Ip::from(addr)));
            CmpKind::Ip
        }
        _ => return Err(mismatch("")),
    };
    Ok((Node::Cmp(cmp, kind, boxed(lnode), boxed(rnode)), Ty::Bool))
}

/// `addr/prefix` (or a lone address) as the IPv4-mapped or IPv6 network
/// and mask; host bits in `addr` are ignored.
fn parse_cidr(text: &str) -> Result<([u8; 16], [u8; 16]), String> {
    let bad = || {
        format!("\"{text}\" is not a CIDR block; write it like \"10.0.0.0/8\" or \"2001:db8::/32\"")
    };
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
    let (width, offset) = match addr {
        IpAddr::V4(_) => (32u32, 96u32),
        IpAddr::V6(_) => (128, 0),
    };
    let prefix = match prefix {
        Some(prefix) => prefix.trim().parse::<u32>().map_err(|_| bad())?,
        None => width,
    };
    if prefix > width {
        return Err(format!(
            "\"{text}\": the prefix length is at most {width} for this address"
        ));
    }
    let bits = offset + prefix;
    let mut mask = [0u8; 16];
    for (index, byte) in mask.iter_mut().enumerate() {
        let start = index as u32 * 8;
        *byte = match bits.saturating_sub(start) {
            0 => 0,
            n if n >= 8 => 0xff,
            n => 0xffu8 << (8 - n),
        };
    }
    let mut net = Ip::from(addr).0;
    for (byte, mask) in net.iter_mut().zip(mask) {
        *byte &= mask;
    }
    Ok((net, mask))
}

/// The candidate nearest `name` by edit distance, if it is close.
pub(super) fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|candidate| (edit_distance(name, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}
