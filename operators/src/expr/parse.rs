//! Tokens to a syntax tree, by precedence climbing. Every node keeps the
//! byte span it came from so type errors can point into the source.

use super::lex::{lex, Tok, Token};
use super::ExprError;
use crate::limits::EXPR_MAX_DEPTH;

/// A syntax tree node and its source span.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Ast {
    pub kind: AstKind,
    pub start: usize,
    pub end: usize,
    /// Levels of nodes, this one included.
    pub depth: usize,
}

impl Ast {
    fn new(kind: AstKind, start: usize, end: usize) -> Ast {
        let depth = 1 + match &kind {
            AstKind::Lit(_) | AstKind::Field(_) => 0,
            AstKind::Unary(_, operand) => operand.depth,
            AstKind::Binary(_, left, right, _) => left.depth.max(right.depth),
            AstKind::Call(_, args) => args.iter().map(|arg| arg.depth).max().unwrap_or(0),
        };
        Ast {
            kind,
            start,
            end,
            depth,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum AstKind {
    Lit(Lit),
    /// A field, by name.
    Field(String),
    Unary(UnOp, Box<Ast>),
    /// An operator, its operands and the operator's offset.
    Binary(BinOp, Box<Ast>, Box<Ast>, usize),
    /// A function call: name and arguments.
    Call(String, Vec<Ast>),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// Milliseconds.
    Duration(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UnOp {
    Not,
    Neg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "or",
            BinOp::And => "and",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
        }
    }
}

/// Parses the whole of `src`.
pub(super) fn parse(src: &str) -> Result<Ast, ExprError> {
    let tokens = lex(src)?;
    let mut parser = Parser {
        src,
        tokens,
        pos: 0,
        nesting: 0,
    };
    let ast = parser.or()?;
    let next = parser.peek();
    if next.kind != Tok::End {
        let mut message = if next.kind == Tok::RParen {
            "unmatched `)`".to_owned()
        } else {
            format!(
                "expected an operator after `{}`, found {}",
                parser.previous_text(),
                parser.describe(parser.pos)
            )
        };
        match next.kind {
            Tok::Name("in") => {
                message.push_str("; test a network with `cidr_contains(\"10.0.0.0/8\", field)`")
            }
            Tok::Name("AND" | "OR" | "NOT") => {
                message.push_str("; `and`, `or` and `not` are written in lower case")
            }
            _ => {}
        }
        return Err(ExprError::new(next.start, message));
    }
    Ok(ast)
}

struct Parser<'s> {
    src: &'s str,
    tokens: Vec<Token<'s>>,
    pos: usize,
    /// Recursive calls under way.
    nesting: usize,
}

impl<'s> Parser<'s> {
    fn peek(&self) -> &Token<'s> {
        &self.tokens[self.pos]
    }

    fn bump(&mut self) -> Token<'s> {
        let token = self.tokens[self.pos].clone();
        if token.kind != Tok::End {
            self.pos += 1;
        }
        token
    }

    /// The source text of the token before the current one.
    fn previous_text(&self) -> &'s str {
        match self.pos.checked_sub(1) {
            Some(index) => {
                let token = &self.tokens[index];
                &self.src[token.start..token.end]
            }
            None => "",
        }
    }

    /// The token at `index` for messages: `` `foo` `` or "the end".
    fn describe(&self, index: usize) -> String {
        let token = &self.tokens[index];
        match token.kind {
            Tok::End => "the end of the expression".to_owned(),
            _ => format!("`{}`", &self.src[token.start..token.end]),
        }
    }

    fn binary(
        &mut self,
        next: fn(&mut Self) -> Result<Ast, ExprError>,
        op_of: fn(&Tok<'_>) -> Option<BinOp>,
    ) -> Result<Ast, ExprError> {
        let mut left = next(self)?;
        while let Some(op) = op_of(&self.peek().kind) {
            let op_start = self.bump().start;
            let right = next(self)?;
            let (start, end) = (left.start, right.end);
            left = Ast::new(
                AstKind::Binary(op, Box::new(left), Box::new(right), op_start),
                start,
                end,
            );
            self.check_depth(&left)?;
        }
        Ok(left)
    }

    fn or(&mut self) -> Result<Ast, ExprError> {
        self.nest(|parser| parser.binary(Self::and, |tok| (*tok == Tok::Or).then_some(BinOp::Or)))
    }

    /// Runs `parse` one level of recursion deeper, failing past
    /// [`EXPR_MAX_DEPTH`] levels.
    fn nest(
        &mut self,
        parse: impl FnOnce(&mut Self) -> Result<Ast, ExprError>,
    ) -> Result<Ast, ExprError> {
        self.nesting += 1;
        if self.nesting > EXPR_MAX_DEPTH {
            return Err(self.too_deep(self.peek().start));
        }
        let ast = parse(self)?;
        self.nesting -= 1;
        self.check_depth(&ast)?;
        Ok(ast)
    }

    fn check_depth(&self, ast: &Ast) -> Result<(), ExprError> {
        if ast.depth > EXPR_MAX_DEPTH {
            return Err(self.too_deep(ast.start));
        }
        Ok(())
    }

    fn too_deep(&self, at: usize) -> ExprError {
        ExprError::new(
            at,
            format!("the expression nests more than {EXPR_MAX_DEPTH} levels deep; split it up"),
        )
    }

    fn and(&mut self) -> Result<Ast, ExprError> {
        self.binary(Self::not, |tok| (*tok == Tok::And).then_some(BinOp::And))
    }

    /// `not` binds looser than comparisons: `not a == b` is `not (a == b)`.
    fn not(&mut self) -> Result<Ast, ExprError> {
        if self.peek().kind == Tok::Not {
            let start = self.bump().start;
            let operand = self.nest(Self::not)?;
            let end = operand.end;
            return Ok(Ast::new(
                AstKind::Unary(UnOp::Not, Box::new(operand)),
                start,
                end,
            ));
        }
        self.comparison()
    }

    /// Comparisons do not chain: `a < b < c` is an error.
    fn comparison(&mut self) -> Result<Ast, ExprError> {
        let left = self.additive()?;
        let Some(op) = comparison_op(&self.peek().kind) else {
            return Ok(left);
        };
        let op_start = self.bump().start;
        let right = self.additive()?;
        if comparison_op(&self.peek().kind).is_some() {
            return Err(ExprError::new(
                self.peek().start,
                "comparisons do not chain; join them with `and`".to_owned(),
            ));
        }
        let (start, end) = (left.start, right.end);
        Ok(Ast::new(
            AstKind::Binary(op, Box::new(left), Box::new(right), op_start),
            start,
            end,
        ))
    }

    fn additive(&mut self) -> Result<Ast, ExprError> {
        self.binary(Self::multiplicative, |tok| match tok {
            Tok::Plus => Some(BinOp::Add),
            Tok::Minus => Some(BinOp::Sub),
            _ => None,
        })
    }

    fn multiplicative(&mut self) -> Result<Ast, ExprError> {
        self.binary(Self::unary, |tok| match tok {
            Tok::Star => Some(BinOp::Mul),
            Tok::Slash => Some(BinOp::Div),
            Tok::Percent => Some(BinOp::Rem),
            _ => None,
        })
    }

    fn unary(&mut self) -> Result<Ast, ExprError> {
        let op = match self.peek().kind {
            Tok::Minus => UnOp::Neg,
            Tok::Not => UnOp::Not,
            _ => return self.primary(),
        };
        let start = self.bump().start;
        let operand = self.nest(Self::unary)?;
        let end = operand.end;
        // Fold `-literal` so `-5` and `-5m` stay literals.
        let kind = match (op, operand.kind) {
            (UnOp::Neg, AstKind::Lit(Lit::Int(value))) => AstKind::Lit(Lit::Int(-value)),
            (UnOp::Neg, AstKind::Lit(Lit::Float(value))) => AstKind::Lit(Lit::Float(-value)),
            (UnOp::Neg, AstKind::Lit(Lit::Duration(value))) => AstKind::Lit(Lit::Duration(-value)),
            (op, kind) => AstKind::Unary(op, Box::new(Ast { kind, ..operand })),
        };
        Ok(Ast::new(kind, start, end))
    }

    fn primary(&mut self) -> Result<Ast, ExprError> {
        let index = self.pos;
        let token = self.bump();
        let lit = |lit| Ok(AstKind::Lit(lit));
        let kind = match token.kind {
            Tok::Int(value) => lit(Lit::Int(value)),
            Tok::Float(value) => lit(Lit::Float(value)),
            Tok::Duration(value) => lit(Lit::Duration(value)),
            Tok::Str(ref text) => lit(Lit::Str(text.clone())),
            Tok::True => lit(Lit::Bool(true)),
            Tok::False => lit(Lit::Bool(false)),
            Tok::Null => lit(Lit::Null),
            Tok::Quoted(name) => Ok(AstKind::Field(name.to_owned())),
            Tok::Name(name) if self.peek().kind == Tok::LParen => {
                self.bump();
                let args = self.arguments(name)?;
                let end = self.tokens[self.pos - 1].end;
                return Ok(Ast::new(
                    AstKind::Call(name.to_owned(), args),
                    token.start,
                    end,
                ));
            }
            Tok::Name(name) => Ok(AstKind::Field(name.to_owned())),
            Tok::LParen => {
                let inner = self.or()?;
                if self.peek().kind != Tok::RParen {
                    return Err(ExprError::new(
                        self.peek().start,
                        format!(
                            "expected `)` or an operator after `{}`, found {}",
                            self.previous_text(),
                            self.describe(self.pos)
                        ),
                    ));
                }
                let close = self.bump();
                return Ok(Ast {
                    start: token.start,
                    end: close.end,
                    ..inner
                });
            }
            _ => {
                let message = if index == 0 {
                    format!("expected a value, found {}", self.describe(index))
                } else {
                    let previous = &self.tokens[index - 1];
                    format!(
                        "expected a value after `{}`, found {}",
                        &self.src[previous.start..previous.end],
                        self.describe(index)
                    )
                };
                Err(ExprError::new(token.start, message))
            }
        }?;
        Ok(Ast::new(kind, token.start, token.end))
    }

    /// Arguments after `name(`, through the closing `)`.
    fn arguments(&mut self, name: &str) -> Result<Vec<Ast>, ExprError> {
        let mut args = Vec::new();
        if self.peek().kind == Tok::RParen {
            self.bump();
            return Ok(args);
        }
        loop {
            args.push(self.or()?);
            match self.peek().kind {
                Tok::Comma => {
                    self.bump();
                }
                Tok::RParen => {
                    self.bump();
                    return Ok(args);
                }
                _ => {
                    return Err(ExprError::new(
                        self.peek().start,
                        format!(
                            "expected `,` or `)` in the arguments of `{name}` after `{}`, found {}",
                            self.previous_text(),
                            self.describe(self.pos)
                        ),
                    ))
                }
            }
        }
    }
}

fn comparison_op(tok: &Tok<'_>) -> Option<BinOp> {
    Some(match tok {
        Tok::Eq => BinOp::Eq,
        Tok::Ne => BinOp::Ne,
        Tok::Lt => BinOp::Lt,
        Tok::Le => BinOp::Le,
        Tok::Gt => BinOp::Gt,
        Tok::Ge => BinOp::Ge,
        _ => return None,
    })
}
