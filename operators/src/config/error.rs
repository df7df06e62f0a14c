//! [`ConfigError`]: what is wrong with a pipeline file, and where.
//!
//! Every error names the file; every error about the file's contents also
//! names the line and column (1-based, columns counted in characters) and,
//! where one is involved, the component (`sinks.out`, or `runtime`).
//! Display: `FILE:LINE:COLUMN: COMPONENT: MESSAGE`.

use std::fmt;
use std::ops::Range;

/// A 1-based line and column in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` of `text` (clamped to the text).
    pub fn of_offset(text: &str, offset: usize) -> Location {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        Location {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// Which check an error failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// The file could not be read.
    Io,
    /// The file is not valid TOML.
    Syntax,
    /// A table or value does not fit the schema: unknown field or section,
    /// missing field, wrong type, unknown `type` or aggregate.
    Schema,
    /// A size, rate, count or list that must not be zero or empty is.
    Invalid,
    /// A name used twice, or not allowed.
    Name,
    /// A source declares `inputs`.
    SourceWithInputs,
    /// A processor or sink has no inputs.
    MissingInputs,
    /// An `inputs` entry names no component, or a sink.
    UnknownInput,
    /// A component reads a field its input does not have.
    UnknownField,
    /// Nothing reads a source's or processor's output.
    UnusedOutput,
    /// Processors form a cycle.
    Cycle,
    /// A valid combination this version cannot run (e.g. a window reading
    /// a window); see [`build_graph`](super::build_graph).
    Unsupported,
    /// The runtime refused the graph built from the file.
    Graph,
}

/// What is wrong with a pipeline file, and where; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Which check failed.
    pub kind: ConfigErrorKind,
    /// The file, as the caller named it.
    pub file: String,
    /// Where in the file; `None` for errors about the file as a whole.
    pub location: Option<Location>,
    /// The component, as `SECTION.NAME` (or `runtime`), if one is involved.
    pub component: Option<String>,
    /// What is wrong, in words.
    pub message: String,
}

impl ConfigError {
    /// An error at byte `span.start` of `text`.
    pub(crate) fn at(
        kind: ConfigErrorKind,
        source: &Source<'_>,
        span: Range<usize>,
        component: Option<&str>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            kind,
            file: source.file.to_owned(),
            location: Some(Location::of_offset(source.text, span.start)),
            component: component.map(str::to_owned),
            message: message.into(),
        }
    }

    /// An error about the file as a whole.
    pub(crate) fn whole(kind: ConfigErrorKind, file: &str, message: impl Into<String>) -> Self {
        ConfigError {
            kind,
            file: file.to_owned(),
            location: None,
            component: None,
            message: message.into(),
        }
    }

    /// A TOML error raised while reading `component`; `fallback` locates it
    /// when TOML gives no span.
    pub(crate) fn from_toml(
        source: &Source<'_>,
        error: &toml::de::Error,
        component: Option<&str>,
        fallback: Range<usize>,
    ) -> ConfigError {
        let kind = match component {
            None => ConfigErrorKind::Syntax,
            Some(_) => ConfigErrorKind::Schema,
        };
        let span = error.span().unwrap_or(fallback);
        let message = error.message().trim_end().to_owned();
        ConfigError::at(kind, source, span, component, message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(Location { line, column }) = self.location {
            write!(f, ":{line}:{column}")?;
        }
        if let Some(component) = &self.component {
            write!(f, ": {component}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The text being parsed and the name to report it under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub(crate) text: &'a str,
    pub(crate) file: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_lines_and_character_columns() {
        let text = "a = 1\nkey = \"é\" x\n";
        let at = |offset| {
            let Location { line, column } = Location::of_offset(text, offset);
            (line, column)
        };
        assert_eq!(at(0), (1, 1));
        assert_eq!(at(6), (2, 1));
        // `x` follows a two-byte character: byte 17, character column 11.
        assert_eq!(at(text.find('x').unwrap()), (2, 11));
        assert_eq!(at(1000), (3, 1));
    }
}
