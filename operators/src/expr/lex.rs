//! Splits expression text into tokens with their byte spans, using `winnow`
//! for the pieces (names, digits, operators) and reporting every problem
//! with the byte offset where it starts.

use winnow::ascii::{digit1, multispace0};
use winnow::combinator::alt;
use winnow::error::ContextError;
use winnow::prelude::*;
use winnow::token::{literal, take_till, take_while};

use super::ExprError;

/// One token and where it is in the source.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token<'s> {
    pub kind: Tok<'s>,
    /// Byte offset of the first character.
    pub start: usize,
    /// Byte offset just past the last character.
    pub end: usize,
}

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok<'s> {
    /// A bare name: a field or a function.
    Name(&'s str),
    /// A backquoted field name, without the quotes.
    Quoted(&'s str),
    Int(i64),
    Float(f64),
    /// A duration literal, in milliseconds.
    Duration(i64),
    Str(String),
    True,
    False,
    Null,
    And,
    Or,
    Not,
    LParen,
    RParen,
    Comma,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    /// Past the last token.
    End,
}

type Input<'s> = &'s str;

/// The tokens of `src`, ending with [`Tok::End`].
pub(super) fn lex(src: &str) -> Result<Vec<Token<'_>>, ExprError> {
    let mut input: Input<'_> = src;
    let mut tokens = Vec::new();
    loop {
        let _ = multispace0::<_, ContextError>(&mut input);
        let start = src.len() - input.len();
        let Some(first) = input.chars().next() else {
            tokens.push(Token {
                kind: Tok::End,
                start,
                end: start,
            });
            return Ok(tokens);
        };
        let kind = match first {
            '0'..='9' => number(&mut input, start)?,
            '"' => string(&mut input, start, src.len())?,
            '`' => quoted(&mut input, start)?,
            c if c.is_alphabetic() || c == '_' => {
                let name = take_while::<_, _, ContextError>(1.., |c: char| {
                    c.is_alphanumeric() || c == '_'
                })
                .parse_next(&mut input)
                .expect("starts with a name character");
                match name {
                    "true" => Tok::True,
                    "false" => Tok::False,
                    "null" => Tok::Null,
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "not" => Tok::Not,
                    name => Tok::Name(name),
                }
            }
            _ => match punct(&mut input) {
                Ok(kind) => kind,
                Err(_) => {
                    let message = match first {
                        '=' => "unexpected `=`; compare with `==`".to_owned(),
                        '&' => "unexpected `&`; use `and` or `&&`".to_owned(),
                        '|' => "unexpected `|`; use `or` or `||`".to_owned(),
                        '\'' => "strings are written in double quotes: \"...\"".to_owned(),
                        other => format!("unexpected character `{other}`"),
                    };
                    return Err(ExprError::new(start, message));
                }
            },
        };
        let end = src.len() - input.len();
        tokens.push(Token { kind, start, end });
    }
}

fn punct<'s>(input: &mut Input<'s>) -> winnow::Result<Tok<'s>> {
    alt((
        alt((
            literal("==").value(Tok::Eq),
            literal("!=").value(Tok::Ne),
            literal("<=").value(Tok::Le),
            literal(">=").value(Tok::Ge),
            literal("&&").value(Tok::And),
            literal("||").value(Tok::Or),
        )),
        alt((
            literal("<").value(Tok::Lt),
            literal(">").value(Tok::Gt),
            literal("!").value(Tok::Not),
        )),
        alt((
            literal("(").value(Tok::LParen),
            literal(")").value(Tok::RParen),
            literal(",").value(Tok::Comma),
            literal("+").value(Tok::Plus),
            literal("-").value(Tok::Minus),
            literal("*").value(Tok::Star),
            literal("/").value(Tok::Slash),
            literal("%").value(Tok::Percent),
        )),
    ))
    .parse_next(input)
}

/// An integer, a float (`1.5`, `2e3`, `1.5e-3`) or a duration (`5m`).
fn number<'s>(input: &mut Input<'s>, start: usize) -> Result<Tok<'s>, ExprError> {
    let before = *input;
    digit1::<_, ContextError>
        .parse_next(input)
        .expect("starts with a digit");
    let mut is_float = false;
    // A fraction: `.` then digits.
    if input.starts_with('.') && input[1..].starts_with(|c: char| c.is_ascii_digit()) {
        *input = &input[1..];
        let _ = digit1::<_, ContextError>.parse_next(input);
        is_float = true;
    }
    // An exponent: `e`, an optional sign, digits.
    if input.starts_with(['e', 'E']) {
        let mut rest = &input[1..];
        if rest.starts_with(['+', '-']) {
            rest = &rest[1..];
        }
        if rest.starts_with(|c: char| c.is_ascii_digit()) {
            *input = rest;
            let _ = digit1::<_, ContextError>.parse_next(input);
            is_float = true;
        }
    }
    let text = &before[..before.len() - input.len()];
    let unit = take_while::<_, _, ContextError>(0.., |c: char| c.is_alphanumeric() || c == '_')
        .parse_next(input)
        .expect("take_while(0..) does not fail");
    if unit.is_empty() {
        return if is_float {
            text.parse::<f64>()
                .map(Tok::Float)
                .map_err(|_| ExprError::new(start, format!("bad number `{text}`")))
        } else {
            text.parse::<i64>().map(Tok::Int).map_err(|_| {
                ExprError::new(start, format!("integer `{text}` does not fit in 64 bits"))
            })
        };
    }
    let scale: i64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(ExprError::new(
                start + text.len(),
                format!("unknown duration unit `{unit}` after `{text}`; use ms, s, m, h or d"),
            ))
        }
    };
    if is_float {
        return Err(ExprError::new(
            start,
            format!("a duration is a whole number of units; `{text}{unit}` is not"),
        ));
    }
    text.parse::<i64>()
        .ok()
        .and_then(|count| count.checked_mul(scale))
        .map(Tok::Duration)
        .ok_or_else(|| ExprError::new(start, format!("duration `{text}{unit}` is too long")))
}

/// A double-quoted string with `\"`, `\\`, `\n` and `\t` escapes.
fn string<'s>(input: &mut Input<'s>, start: usize, src_len: usize) -> Result<Tok<'s>, ExprError> {
    *input = &input[1..];
    let mut text = String::new();
    loop {
        let piece = take_till::<_, _, ContextError>(0.., ['"', '\\'])
            .parse_next(input)
            .expect("take_till(0..) does not fail");
        text.push_str(piece);
        let mut chars = input.chars();
        match chars.next() {
            Some('"') => {
                *input = &input[1..];
                return Ok(Tok::Str(text));
            }
            Some('\\') => {
                let escaped = match chars.next() {
                    Some('"') => '"',
                    Some('\\') => '\\',
                    Some('n') => '\n',
                    Some('t') => '\t',
                    Some(other) => {
                        return Err(ExprError::new(
                            src_len - input.len(),
                            format!(
                                "unknown escape `\\{other}` in string; use \\\", \\\\, \\n or \\t"
                            ),
                        ));
                    }
                    None => break,
                };
                text.push(escaped);
                // The backslash and one ASCII character.
                *input = &input[2..];
            }
            _ => break,
        }
    }
    Err(ExprError::new(
        start,
        "unterminated string: no closing `\"`".to_owned(),
    ))
}

/// A backquoted field name: `` `http.status` ``.
fn quoted<'s>(input: &mut Input<'s>, start: usize) -> Result<Tok<'s>, ExprError> {
    *input = &input[1..];
    let name = take_till::<_, _, ContextError>(0.., '`')
        .parse_next(input)
        .expect("take_till(0..) does not fail");
    if input.is_empty() {
        return Err(ExprError::new(
            start,
            "unterminated field name: no closing ```".to_owned(),
        ));
    }
    *input = &input[1..];
    if name.is_empty() {
        return Err(ExprError::new(start, "empty field name ``".to_owned()));
    }
    Ok(Tok::Quoted(name))
}
