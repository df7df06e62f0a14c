use std::net::IpAddr;

use proptest::prelude::*;

use super::parse::{parse, Ast, AstKind, Lit, UnOp};
use super::*;
use crate::row::{Ip, MapEntry, Row};

fn schema() -> Schema {
    Schema::new([
        ("status", Type::Int),
        ("path", Type::String),
        ("method", Type::String),
        ("latency", Type::Float),
        ("client", Type::Ip),
        ("ts", Type::Timestamp),
        ("start", Type::Timestamp),
        ("user", Type::String),
        ("ok", Type::Bool),
        ("tags", Type::List),
        ("attrs", Type::Map),
        ("http.status", Type::Int),
    ])
}

fn ip(text: &str) -> Value {
    Value::Ip(Ip::from(text.parse::<IpAddr>().unwrap()))
}

/// 2026-11-26T14:05:00Z
const TS: i64 = 1_795_701_900_000;

fn base_row() -> Row {
    Row {
        values: vec![
            Value::Int(503),
            Value::String("/api/v1/Users".into()),
            Value::String("GET".into()),
            Value::Float(12.5),
            ip("10.1.2.3"),
            Value::Timestamp(TS),
            Value::Timestamp(TS - 300_000),
            Value::Null,
            Value::Bool(true),
            Value::List(vec![Value::Int(1), Value::String("x".into())]),
            Value::Map(vec![MapEntry {
                key: "k".into(),
                value: Value::Bool(false),
            }]),
            Value::Int(200),
        ],
    }
}

fn with_row<R>(row: &Row, f: impl FnOnce(&ArchivedRow) -> R) -> R {
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(row).unwrap();
    let archived = rkyv::access::<ArchivedRow, rkyv::rancor::Error>(&bytes).unwrap();
    f(archived)
}

fn eval_on(text: &str, row: &Row) -> Value {
    let expr = Expr::compile(text, &schema()).unwrap_or_else(|e| panic!("{text}: {e}"));
    with_row(row, |archived| expr.eval(archived, &mut Scratch::default()))
}

fn eval(text: &str) -> Value {
    eval_on(text, &base_row())
}

fn test_on(text: &str, row: &Row) -> bool {
    let expr = Expr::compile_condition(text, &schema()).unwrap_or_else(|e| panic!("{text}: {e}"));
    with_row(row, |archived| expr.test(archived, &mut Scratch::default()))
}

fn test(text: &str) -> bool {
    test_on(text, &base_row())
}

fn error(text: &str) -> ExprError {
    match Expr::compile(text, &schema()) {
        Ok(expr) => panic!("{text} compiled to {expr:?}"),
        Err(error) => error,
    }
}

/// Asserts the error's offset and that its message contains each part.
fn assert_error(text: &str, offset: usize, parts: &[&str]) {
    let error = error(text);
    assert_eq!(error.offset, offset, "{text}: {error}");
    for part in parts {
        assert!(
            error.message.contains(part),
            "{text}: `{}` lacks `{part}`",
            error.message
        );
    }
}

/// The tree fully parenthesized, prefix style.
fn show(ast: &Ast) -> String {
    match &ast.kind {
        AstKind::Lit(Lit::Int(value)) => value.to_string(),
        AstKind::Lit(lit) => format!("{lit:?}"),
        AstKind::Field(name) => name.clone(),
        AstKind::Unary(UnOp::Not, operand) => format!("(not {})", show(operand)),
        AstKind::Unary(UnOp::Neg, operand) => format!("(neg {})", show(operand)),
        AstKind::Binary(op, left, right, _) => {
            format!("({} {} {})", op.symbol(), show(left), show(right))
        }
        AstKind::Call(name, args) => {
            let args: Vec<String> = args.iter().map(show).collect();
            format!("({name} {})", args.join(" "))
        }
    }
}

fn tree(text: &str) -> String {
    show(&parse(text).unwrap())
}

#[test]
fn and_binds_tighter_than_or() {
    assert_eq!(tree("a or b and c"), "(or a (and b c))");
    assert_eq!(tree("a and b or c"), "(or (and a b) c)");
    assert_eq!(tree("a || b && c"), "(or a (and b c))");
    assert_eq!(tree("(a or b) and c"), "(and (or a b) c)");
}

#[test]
fn not_binds_looser_than_comparison() {
    assert_eq!(tree("not a == b"), "(not (== a b))");
    assert_eq!(tree("!a == b"), "(not (== a b))");
    assert_eq!(tree("not a and b"), "(and (not a) b)");
    assert_eq!(tree("not not a"), "(not (not a))");
}

#[test]
fn arithmetic_precedence_and_associativity() {
    assert_eq!(tree("1 + 2 * 3"), "(+ 1 (* 2 3))");
    assert_eq!(tree("a - b - c"), "(- (- a b) c)");
    assert_eq!(tree("a * b % c / d"), "(/ (% (* a b) c) d)");
    assert_eq!(tree("-a * b"), "(* (neg a) b)");
    assert_eq!(tree("a + b > c * d"), "(> (+ a b) (* c d))");
    assert_eq!(eval("1 + 2 * 3"), Value::Int(7));
    assert_eq!(eval("(1 + 2) * 3"), Value::Int(9));
    assert_eq!(eval("10 - 4 - 3"), Value::Int(3));
    assert_eq!(eval("2 * -3"), Value::Int(-6));
    assert_eq!(eval("-(2 + 3)"), Value::Int(-5));
    assert_eq!(eval("-status"), Value::Int(-503));
    assert_eq!(eval("17 % 5 * 2"), Value::Int(4));
}

#[test]
fn int_arithmetic_stays_int_and_mixes_to_float() {
    assert_eq!(eval("7 / 2"), Value::Int(3));
    assert_eq!(eval("-7 / 2"), Value::Int(-3));
    assert_eq!(eval("7 % -3"), Value::Int(1));
    assert_eq!(eval("7 / 2.0"), Value::Float(3.5));
    assert_eq!(eval("status + latency"), Value::Float(515.5));
    assert_eq!(eval("status > 502.5"), Value::Bool(true));
    assert_eq!(eval("1.5e1"), Value::Float(15.0));
    let expr = Expr::compile("status * 2", &schema()).unwrap();
    assert_eq!(expr.ty(), Type::Int);
    let expr = Expr::compile("status * 2.0", &schema()).unwrap();
    assert_eq!(expr.ty(), Type::Float);
}

#[test]
fn division_by_zero_and_overflow_are_null() {
    assert_eq!(eval("status / 0"), Value::Null);
    assert_eq!(eval("status % 0"), Value::Null);
    assert_eq!(eval("latency / 0"), Value::Null);
    assert_eq!(eval("latency / 0.0"), Value::Null);
    assert_eq!(eval("9223372036854775807 + 1"), Value::Null);
    assert_eq!(eval("(-9223372036854775807 - 1) / -1"), Value::Null);
    assert!(!test("status / 0 == 0"));
    assert!(!test("not (status / 0 == 0)"));
}

#[test]
fn literals_and_escapes() {
    assert_eq!(
        eval(r#""a\"b\\c\nd\te""#),
        Value::String("a\"b\\c\nd\te".into())
    );
    assert_eq!(eval("true"), Value::Bool(true));
    assert_eq!(eval("`http.status` + 1"), Value::Int(201));
    assert!(test("`http.status` == 200 and `status` == 503"));
    assert_eq!(eval("1h + 30m"), Value::Int(5_400_000));
    assert_eq!(eval("100ms * 3"), Value::Int(300));
    assert_eq!(eval("2d / 1h"), Value::Int(48));
    assert_eq!(eval("-5m"), Value::Int(-300_000));
}

#[test]
fn parse_errors_name_the_problem_and_offset() {
    assert_error(
        "status 200",
        7,
        &["expected an operator after `status`, found `200`"],
    );
    assert_error(
        "status ==",
        9,
        &["expected a value after `==`, found the end of the expression"],
    );
    assert_error("== 1", 0, &["expected a value, found `==`"]);
    assert_error(
        "(status == 1",
        12,
        &["expected `)` or an operator after `1`"],
    );
    assert_error("status == 1)", 11, &["unmatched `)`"]);
    assert_error("path == \"abc", 8, &["unterminated string"]);
    assert_error(r#"path == "a\qb""#, 10, &["unknown escape `\\q`"]);
    assert_error("status = 1", 7, &["compare with `==`"]);
    assert_error("1 < status < 3", 11, &["comparisons do not chain"]);
    assert_error("ts > 5x", 6, &["unknown duration unit `x`"]);
    assert_error("ts > 1.5m", 5, &["whole number"]);
    assert_error(
        "status > 99999999999999999999",
        9,
        &["does not fit in 64 bits"],
    );
    assert_error("`http.status", 0, &["unterminated field name"]);
    assert_error("status # 1", 7, &["unexpected character `#`"]);
    assert_error(
        "client in \"10.0.0.0/8\"",
        7,
        &["found `in`", "cidr_contains(\"10.0.0.0/8\", field)"],
    );
    assert_error("ok AND ok", 3, &["lower case"]);
    assert_error(
        "contains(path \"x\")",
        14,
        &["expected `,` or `)` in the arguments of `contains`"],
    );
}

#[test]
fn function_errors() {
    assert_error(
        "lowr(path) == \"x\"",
        0,
        &["unknown function `lowr`; did you mean `lower`?"],
    );
    assert_error(
        "startswith(path, \"/\")",
        0,
        &["did you mean `starts_with`?"],
    );
    assert_error("frobnicate(path)", 0, &["the functions are contains"]);
    assert_error("ts > now()", 5, &["`now()` is not allowed"]);
    assert_error(
        "contains(path)",
        0,
        &["`contains` takes 2 arguments, found 1"],
    );
    assert_error("lower(path, 1)", 0, &["`lower` takes 1 argument, found 2"]);
    assert_error(
        "contains(path, status)",
        15,
        &["argument 2 of `contains` must be string, found int"],
    );
    assert_error(
        "len(status)",
        4,
        &["must be string or list or map, found int"],
    );
    assert_error("matches(path, \"(\")", 14, &["bad regular expression"]);
    assert_error("matches(path, method)", 14, &["must be a string literal"]);
    assert_error(
        "cidr_contains(\"10.0.0.0/33\", client)",
        14,
        &["at most 32"],
    );
    assert_error("cidr_contains(\"nope\", client)", 14, &["not a CIDR block"]);
    assert_error(
        "cidr_contains(\"10.0.0.0/8\", path)",
        28,
        &["must be ip, found string"],
    );
    assert_error(
        "cidr_contains(path, client)",
        14,
        &["must be a string literal"],
    );
}

#[test]
fn type_errors_name_both_types_and_point_at_the_operator() {
    let error = error("stauts == 1");
    assert_eq!(error.offset, 0);
    assert!(error.message.contains("no field `stauts`"), "{error}");
    assert!(error.message.contains("`status: int`"), "{error}");
    assert_error("1 + bogus", 4, &["no field `bogus`"]);
    assert_error("path == 1", 5, &["cannot compare string with int"]);
    assert_error("status != \"500\"", 7, &["cannot compare int with string"]);
    assert_error(
        "client == \"nope\"",
        7,
        &[
            "cannot compare ip with string",
            "\"nope\" is not an IP address",
        ],
    );
    assert_error(
        "client == path",
        7,
        &["cannot compare ip with string", "only a string literal"],
    );
    assert_error(
        "ts > \"yesterday\"",
        3,
        &["cannot compare timestamp with string"],
    );
    assert_error("ok < true", 3, &["`==` and `!=` only"]);
    assert_error("tags == 1", 5, &["cannot compare list with int"]);
    assert_error("status + path", 7, &["cannot apply `+` to int and string"]);
    assert_error(
        "ts + 5",
        3,
        &["cannot apply `+` to timestamp and int", "`5m`"],
    );
    assert_error("ts * 2", 3, &["cannot apply `*` to timestamp and int"]);
    assert_error("status == null", 7, &["is_null(x)"]);
    assert_error(
        "status and ok",
        0,
        &["left side of `and` must be a bool, found int"],
    );
    assert_error(
        "ok or path",
        6,
        &["right side of `or` must be a bool, found string"],
    );
    assert_error("not status", 4, &["`not` needs a bool, found int"]);
    assert_error("-path", 0, &["cannot negate a string"]);
    assert_error("null", 0, &["always null"]);

    let error = Expr::compile_condition("status + 1", &schema()).unwrap_err();
    assert_eq!(error.offset, 0);
    assert!(
        error.message.contains("a condition must be a bool") && error.message.contains("an int"),
        "{error}"
    );
    let error = Expr::compile_condition("  path", &schema()).unwrap_err();
    assert_eq!(error.offset, 2);
    assert!(error.to_string().contains("(at byte 2)"), "{error}");
    let option = error.to_option_error("condition");
    assert_eq!(option.option, "condition");
}

#[test]
fn null_operands_give_null_and_null_conditions_are_false() {
    // `user` is null in the base row.
    assert_eq!(eval("user"), Value::Null);
    assert_eq!(eval("user == \"x\""), Value::Null);
    assert!(!test("user == \"x\""));
    assert!(!test("user != \"x\""));
    assert!(!test("not (user == \"x\")"));
    assert!(test("is_null(user)"));
    assert!(!test("is_null(path)"));
    assert_eq!(eval("lower(user)"), Value::Null);
    assert_eq!(eval("len(user)"), Value::Null);
    assert_eq!(eval("to_string(user)"), Value::Null);
    assert_eq!(eval("contains(user, \"a\")"), Value::Null);
    assert_eq!(eval("status + null"), Value::Null);
    assert_eq!(eval("lower(null)"), Value::Null);
    assert!(test("is_null(null + 1)"));
    // Three-valued logic.
    assert_eq!(eval("user == \"x\" and false"), Value::Bool(false));
    assert_eq!(eval("false and user == \"x\""), Value::Bool(false));
    assert_eq!(eval("user == \"x\" and true"), Value::Null);
    assert_eq!(eval("user == \"x\" or true"), Value::Bool(true));
    assert_eq!(eval("user == \"x\" or false"), Value::Null);
    assert!(test("is_null(user) or user == \"x\""));

    let mut row = base_row();
    row.values[0] = Value::Null;
    assert!(!test_on("status >= 500", &row));
    assert!(test_on("is_null(status) or status >= 500", &row));
    assert_eq!(eval_on("status * 2", &row), Value::Null);
    // A row from a narrower schema reads missing fields as null.
    let narrow = Row {
        values: vec![Value::Int(1)],
    };
    assert!(test_on("is_null(path) and status == 1", &narrow));
}

#[test]
fn ip_comparison_and_cidr_for_v4_and_v6() {
    assert!(test("client == \"10.1.2.3\""));
    assert!(test("client != \"10.1.2.4\""));
    assert!(test("\"10.1.2.0\" < client"));
    assert!(test("cidr_contains(\"10.0.0.0/8\", client)"));
    assert!(test("cidr_contains(\"10.1.2.0/24\", client)"));
    assert!(test("cidr_contains(\"10.1.2.3\", client)"));
    assert!(test("cidr_contains(\"10.1.2.3/30\", client)"));
    assert!(!test("cidr_contains(\"192.168.0.0/16\", client)"));
    assert!(!test("cidr_contains(\"10.1.2.4/32\", client)"));
    assert!(test("cidr_contains(\"0.0.0.0/0\", client)"));
    assert!(!test("cidr_contains(\"2001:db8::/32\", client)"));

    let mut row = base_row();
    row.values[4] = ip("2001:db8:85a3::8a2e:370:7334");
    assert!(test_on("cidr_contains(\"2001:db8::/32\", client)", &row));
    assert!(test_on(
        "cidr_contains(\"2001:db8:85a3::/48\", client)",
        &row
    ));
    assert!(!test_on("cidr_contains(\"2001:db9::/32\", client)", &row));
    assert!(!test_on(
        "cidr_contains(\"2001:db8:85a4::/48\", client)",
        &row
    ));
    assert!(!test_on("cidr_contains(\"0.0.0.0/0\", client)", &row));
    assert!(test_on("cidr_contains(\"::/0\", client)", &row));
    assert!(test_on("cidr_contains(\"2001:db8::/31\", client)", &row));
    assert!(test_on("client == \"2001:db8:85a3::8a2e:370:7334\"", &row));
    assert_error("cidr_contains(\"::/129\", client)", 14, &["at most 128"]);

    row.values[4] = Value::Null;
    assert!(!test_on("cidr_contains(\"0.0.0.0/0\", client)", &row));
    assert!(!test_on("not cidr_contains(\"0.0.0.0/0\", client)", &row));
    assert_eq!(eval("to_string(client)"), Value::String("10.1.2.3".into()));
}

#[test]
fn regular_expressions() {
    assert!(test("matches(path, \"^/api/v[0-9]+/\")"));
    assert!(!test("matches(path, \"^/v1\")"));
    assert!(test("matches(method, \"^(GET|HEAD)$\")"));
    assert!(test("matches(lower(path), \"users$\")"));
    assert!(!test("matches(path, \"users$\")"));
    assert!(test("matches(path, \"(?i)users$\")"));
    assert!(!test("matches(user, \".*\")"));
}

#[test]
fn durations_and_timestamps() {
    assert!(test("ts - start == 5m"));
    assert!(test("ts - start > 4m and ts - start < 301s"));
    assert!(test("ts - 5m == start"));
    assert!(test("start + 5m == ts"));
    assert!(test("5m + start == ts"));
    assert!(test("ts > start"));
    assert!(test("ts >= \"2026-11-26T14:05:00Z\""));
    assert!(test("ts < \"2026-11-26T14:05:00.001Z\""));
    assert!(test("ts == \"26/Nov/2026:15:05:00 +0100\""));
    assert!(test("ts - start == 300000"));
    assert_eq!(eval("ts + 30s"), Value::Timestamp(TS + 30_000));
    assert_eq!(eval("ts - 1h"), Value::Timestamp(TS - 3_600_000));
    assert_eq!(eval("ts - start"), Value::Int(300_000));
    assert_eq!(eval("start - ts"), Value::Int(-300_000));
    assert_eq!(eval("ts + 2 * 5m"), Value::Timestamp(TS + 600_000));
    assert_eq!(eval("to_int(ts)"), Value::Int(TS));
    assert_eq!(
        eval("to_string(ts + 100ms)"),
        Value::String("2026-11-26T14:05:00.100Z".into())
    );
    let expr = Expr::compile("ts + 1h", &schema()).unwrap();
    assert_eq!(expr.ty(), Type::Timestamp);
    let expr = Expr::compile("5m", &schema()).unwrap();
    assert_eq!(expr.ty(), Type::Int);
    assert_error(
        "ts + start",
        3,
        &["cannot apply `+` to timestamp and timestamp"],
    );
    assert_error(
        "5m - ts",
        3,
        &["cannot apply `-` to duration and timestamp"],
    );
}

#[test]
fn string_functions() {
    assert!(test("contains(path, \"/v1/\")"));
    assert!(!test("contains(path, \"/v2/\")"));
    assert!(test("starts_with(path, \"/api\")"));
    assert!(test("ends_with(path, \"Users\")"));
    assert!(test("lower(method) == \"get\""));
    assert!(test("upper(lower(method)) == method"));
    assert_eq!(eval("lower(path)"), Value::String("/api/v1/users".into()));
    assert_eq!(eval("upper(\"straße\")"), Value::String("STRASSE".into()));
    assert_eq!(eval("lower(\"ÄB\")"), Value::String("äb".into()));
    assert_eq!(eval("len(\"ÄB\")"), Value::Int(2));
    assert_eq!(eval("len(path)"), Value::Int(13));
    assert_eq!(eval("len(tags)"), Value::Int(2));
    assert_eq!(eval("len(attrs)"), Value::Int(1));
    assert!(test("path > \"/a\" and path < \"/b\""));
    assert!(test("contains(lower(path), lower(\"USERS\"))"));
    assert!(test("starts_with(to_string(status), \"5\")"));
}

#[test]
fn conversions() {
    assert_eq!(eval("to_string(status)"), Value::String("503".into()));
    assert_eq!(eval("to_string(latency)"), Value::String("12.5".into()));
    assert_eq!(eval("to_string(ok)"), Value::String("true".into()));
    assert_eq!(
        eval("to_string(path)"),
        Value::String("/api/v1/Users".into())
    );
    assert_eq!(eval("to_string(tags)"), Value::String("[1,\"x\"]".into()));
    assert_eq!(eval("to_int(\" 42 \")"), Value::Int(42));
    assert_eq!(eval("to_int(\"4.7\")"), Value::Int(4));
    assert_eq!(eval("to_int(\"x\")"), Value::Null);
    assert_eq!(eval("to_int(3.9)"), Value::Int(3));
    assert_eq!(eval("to_int(-3.9)"), Value::Int(-3));
    assert_eq!(eval("to_int(1e30)"), Value::Null);
    assert_eq!(eval("to_int(ok)"), Value::Int(1));
    assert_eq!(eval("to_int(5s)"), Value::Int(5000));
    assert_eq!(eval("to_float(\"1.5\")"), Value::Float(1.5));
    assert_eq!(eval("to_float(status)"), Value::Float(503.0));
    assert_eq!(eval("to_float(false)"), Value::Float(0.0));
    assert_eq!(eval("to_int(to_string(status)) + 1"), Value::Int(504));
    assert_eq!(eval("tags"), base_row().values[9]);
    assert_eq!(eval("client"), base_row().values[4]);
    assert_error("to_int(client)", 7, &["must be int or float"]);
}

#[test]
fn fields_lists_each_field_read_once_in_order() {
    let expr = Expr::compile(
        "latency > 1 and status == 2 or status == 3 and contains(path, \"x\")",
        &schema(),
    )
    .unwrap();
    assert_eq!(expr.fields(), vec![0, 1, 3]);
    assert_eq!(expr.ty(), Type::Bool);
    assert_eq!(
        Expr::compile("1 + 2", &schema()).unwrap().fields(),
        Vec::<usize>::new()
    );
}

#[test]
fn one_scratch_serves_many_expressions_and_rows() {
    let schema = schema();
    let first = Expr::compile_condition("lower(method) == \"get\"", &schema).unwrap();
    let second = Expr::compile("upper(path) + \"\" == \"\"", &schema);
    assert!(second.is_err(), "strings do not add");
    let second = Expr::compile("upper(to_string(status))", &schema).unwrap();
    let mut scratch = Scratch::default();
    let mut other = base_row();
    other.values[2] = Value::String("POST".into());
    for _ in 0..3 {
        with_row(&base_row(), |row| {
            assert!(first.test(row, &mut scratch));
            assert_eq!(second.eval(row, &mut scratch), Value::String("503".into()));
        });
        with_row(&other, |row| assert!(!first.test(row, &mut scratch)));
    }
}

// ---- Property test: arithmetic and comparisons against a Rust model ----

/// An arithmetic expression over `i0`, `i1` (int) and `f0`, `f1` (float).
#[derive(Debug, Clone)]
enum Num {
    IntField(usize),
    FloatField(usize),
    Int(i64),
    Float(f64),
    Neg(Box<Num>),
    Bin(char, Box<Num>, Box<Num>),
}

/// A condition over arithmetic expressions.
#[derive(Debug, Clone)]
enum Cond {
    Cmp(&'static str, Num, Num),
    IsNull(Num),
    Not(Box<Cond>),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum M {
    I(Option<i64>),
    F(Option<f64>),
}

impl M {
    fn float(self) -> Option<f64> {
        match self {
            M::I(value) => value.map(|value| value as f64),
            M::F(value) => value,
        }
    }

    fn value(self) -> Value {
        match self {
            M::I(value) => value.map_or(Value::Null, Value::Int),
            M::F(value) => value.map_or(Value::Null, Value::Float),
        }
    }
}

#[derive(Debug, Clone)]
struct Fields {
    ints: [Option<i64>; 2],
    floats: [Option<f64>; 2],
}

fn render(num: &Num) -> String {
    match num {
        Num::IntField(index) => format!("i{index}"),
        Num::FloatField(index) => format!("f{index}"),
        Num::Int(value) => format!("({value})"),
        Num::Float(value) => format!("({value:?})"),
        Num::Neg(operand) => format!("-({})", render(operand)),
        Num::Bin(op, left, right) => format!("({} {op} {})", render(left), render(right)),
    }
}

fn render_cond(cond: &Cond) -> String {
    match cond {
        Cond::Cmp(op, left, right) => format!("{} {op} {}", render(left), render(right)),
        Cond::IsNull(num) => format!("is_null({})", render(num)),
        Cond::Not(inner) => format!("not ({})", render_cond(inner)),
        Cond::And(left, right) => format!("({}) and ({})", render_cond(left), render_cond(right)),
        Cond::Or(left, right) => format!("({}) || ({})", render_cond(left), render_cond(right)),
    }
}

fn model(num: &Num, fields: &Fields) -> M {
    match num {
        Num::IntField(index) => M::I(fields.ints[*index]),
        Num::FloatField(index) => M::F(fields.floats[*index]),
        Num::Int(value) => M::I(Some(*value)),
        Num::Float(value) => M::F(Some(*value)),
        Num::Neg(operand) => match model(operand, fields) {
            M::I(value) => M::I(value.and_then(|value| value.checked_neg())),
            M::F(value) => M::F(value.map(|value| -value)),
        },
        Num::Bin(op, left, right) => match (model(left, fields), model(right, fields)) {
            (M::I(a), M::I(b)) => M::I(a.zip(b).and_then(|(a, b)| match op {
                '+' => a.checked_add(b),
                '-' => a.checked_sub(b),
                '*' => a.checked_mul(b),
                '/' if b == 0 => None,
                '/' => a.checked_div(b),
                _ if b == 0 => None,
                _ => a.checked_rem(b),
            })),
            (a, b) => M::F(a.float().zip(b.float()).and_then(|(a, b)| match op {
                '+' => Some(a + b),
                '-' => Some(a - b),
                '*' => Some(a * b),
                _ if b == 0.0 => None,
                '/' => Some(a / b),
                _ => Some(a % b),
            })),
        },
    }
}

fn model_cond(cond: &Cond, fields: &Fields) -> Option<bool> {
    match cond {
        Cond::Cmp(op, left, right) => {
            let (left, right) = (model(left, fields), model(right, fields));
            match (left, right) {
                (M::I(a), M::I(b)) => {
                    let (a, b) = (a?, b?);
                    Some(match *op {
                        "==" => a == b,
                        "!=" => a != b,
                        "<" => a < b,
                        "<=" => a <= b,
                        ">" => a > b,
                        _ => a >= b,
                    })
                }
                (a, b) => {
                    let (a, b) = (a.float()?, b.float()?);
                    Some(match *op {
                        "==" => a == b,
                        "!=" => a != b,
                        "<" => a < b,
                        "<=" => a <= b,
                        ">" => a > b,
                        _ => a >= b,
                    })
                }
            }
        }
        Cond::IsNull(num) => Some(model(num, fields).float().is_none()),
        Cond::Not(inner) => model_cond(inner, fields).map(|value| !value),
        Cond::And(left, right) => match (model_cond(left, fields), model_cond(right, fields)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Cond::Or(left, right) => match (model_cond(left, fields), model_cond(right, fields)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
    }
}

fn num_strategy() -> impl Strategy<Value = Num> {
    let leaf = prop_oneof![
        (0usize..2).prop_map(Num::IntField),
        (0usize..2).prop_map(Num::FloatField),
        (-1000i64..1000).prop_map(Num::Int),
        prop_oneof![Just(0i64), Just(i64::MAX), Just(i64::MIN + 1), Just(-1)].prop_map(Num::Int),
        (-1000.0f64..1000.0).prop_map(Num::Float),
        Just(Num::Float(0.0)),
    ];
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|num| Num::Neg(Box::new(num))),
            (
                prop_oneof![Just('+'), Just('-'), Just('*'), Just('/'), Just('%')],
                inner.clone(),
                inner
            )
                .prop_map(|(op, left, right)| Num::Bin(
                    op,
                    Box::new(left),
                    Box::new(right)
                )),
        ]
    })
}

fn cond_strategy() -> impl Strategy<Value = Cond> {
    let leaf = prop_oneof![
        (
            prop_oneof![
                Just("=="),
                Just("!="),
                Just("<"),
                Just("<="),
                Just(">"),
                Just(">=")
            ],
            num_strategy(),
            num_strategy()
        )
            .prop_map(|(op, left, right)| Cond::Cmp(op, left, right)),
        num_strategy().prop_map(Cond::IsNull),
    ];
    leaf.prop_recursive(3, 8, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|cond| Cond::Not(Box::new(cond))),
            (inner.clone(), inner.clone())
                .prop_map(|(left, right)| Cond::And(Box::new(left), Box::new(right))),
            (inner.clone(), inner)
                .prop_map(|(left, right)| Cond::Or(Box::new(left), Box::new(right))),
        ]
    })
}

fn fields_strategy() -> impl Strategy<Value = Fields> {
    let int = prop::option::of(prop_oneof![
        -100i64..100,
        any::<i64>(),
        Just(0i64),
        Just(i64::MIN)
    ]);
    let float = prop::option::of(prop_oneof![-100.0f64..100.0, Just(0.0)]);
    (int.clone(), int, float.clone(), float).prop_map(|(i0, i1, f0, f1)| Fields {
        ints: [i0, i1],
        floats: [f0, f1],
    })
}

fn number_schema() -> Schema {
    Schema::new([
        ("i0", Type::Int),
        ("i1", Type::Int),
        ("f0", Type::Float),
        ("f1", Type::Float),
    ])
}

fn number_row(fields: &Fields) -> Row {
    let int = |value: Option<i64>| value.map_or(Value::Null, Value::Int);
    let float = |value: Option<f64>| value.map_or(Value::Null, Value::Float);
    Row {
        values: vec![
            int(fields.ints[0]),
            int(fields.ints[1]),
            float(fields.floats[0]),
            float(fields.floats[1]),
        ],
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arithmetic_matches_the_model(num in num_strategy(), fields in fields_strategy()) {
        let text = render(&num);
        let expr = Expr::compile(&text, &number_schema()).unwrap();
        let expected = model(&num, &fields);
        let want_type = match expected { M::I(_) => Type::Int, M::F(_) => Type::Float };
        prop_assert_eq!(expr.ty(), want_type, "{}", text);
        let got = with_row(&number_row(&fields), |row| expr.eval(row, &mut Scratch::default()));
        prop_assert_eq!(got, expected.value(), "{}", text);
    }

    #[test]
    fn conditions_match_the_model(cond in cond_strategy(), fields in fields_strategy()) {
        let text = render_cond(&cond);
        let expr = Expr::compile_condition(&text, &number_schema()).unwrap();
        let expected = model_cond(&cond, &fields);
        let row = number_row(&fields);
        let (value, passed) = with_row(&row, |row| {
            let mut scratch = Scratch::default();
            (expr.eval(row, &mut scratch), expr.test(row, &mut scratch))
        });
        prop_assert_eq!(value, expected.map_or(Value::Null, Value::Bool), "{}", text);
        prop_assert_eq!(passed, expected == Some(true), "{}", text);
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = |open: &str, middle: &str, close: &str, n: usize| {
        format!("{}{middle}{}", open.repeat(n), close.repeat(n))
    };
    for text in [
        deep("(", "1", ")", 100_000),
        deep("-", "1", "", 100_000),
        deep("not ", "ok", "", 100_000),
        deep("lower(", "path", ")", 100_000),
        vec!["1"; 100_000].join(" + "),
        vec!["ok"; 100_000].join(" and "),
    ] {
        let error = Expr::compile(&text, &schema()).unwrap_err();
        assert!(error.message.contains("nests more than"), "{error}");
    }
    // Reasonable depths compile.
    assert_eq!(eval(&deep("(", "1", ")", 100)), Value::Int(1));
    assert_eq!(eval(&vec!["1"; 100].join(" + ")), Value::Int(100));
    assert!(test(&deep("not ", "ok", "", 100)));
}

#[test]
fn batch_filter_appends_one_answer_per_row() {
    let expr = Expr::compile_condition("lower(method) == \"get\"", &schema()).unwrap();
    let mut post = base_row();
    post.values[2] = Value::String("POST".into());
    let rows = [base_row(), post, base_row()];
    let archives: Vec<_> = rows
        .iter()
        .map(|row| rkyv::to_bytes::<rkyv::rancor::Error>(row).unwrap())
        .collect();
    let archived = archives
        .iter()
        .map(|bytes| rkyv::access::<ArchivedRow, rkyv::rancor::Error>(bytes).unwrap());
    let mut out = vec![false];
    eval_batch_filter(&expr, archived, &mut Scratch::default(), &mut out);
    assert_eq!(out, vec![false, true, false, true]);
}
