//! Environment variables in pipeline files, as Vector and Docker Compose
//! write them: `${NAME}` is replaced by the variable's value, and
//! `${NAME:-default}` by `default` when the variable is unset or empty.
//! `$$` is a literal `$`; a `$` followed by anything else is left alone.
//!
//! Substitution runs on the raw text before it is parsed, everywhere
//! (comments included), so a value can fill any part of the file. A
//! reference to an unset variable without a default, or an unterminated or
//! malformed `${`, is an error at the reference's line and column; every
//! such reference is reported. Line numbers of later errors are unchanged
//! unless a value contains a newline; their columns count in the
//! substituted text.

use super::error::{ConfigError, ConfigErrorKind, Location};
use crate::limits::ENV_NAME_MAX_BYTES;

/// `text` with every reference replaced; `lookup` reads a variable.
pub fn substitute(
    text: &str,
    file: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<ConfigError>> {
    if !text.contains('$') {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let start = offset + at;
        let consumed = if tail.starts_with("$$") {
            out.push('$');
            2
        } else if tail.starts_with("${") {
            match tail.find('}') {
                None => {
                    errors.push(error(
                        text,
                        file,
                        start,
                        "`${` without a closing `}`".into(),
                    ));
                    tail.len()
                }
                Some(end) => {
                    let inner = &tail[2..end];
                    let (name, default) = match inner.split_once(":-") {
                        Some((name, default)) => (name, Some(default)),
                        None => (inner, None),
                    };
                    let valid = !name.is_empty()
                        && name.len() <= ENV_NAME_MAX_BYTES
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && !name.starts_with(|c: char| c.is_ascii_digit());
                    if !valid {
                        let message = format!(
                            "`${{{inner}}}`: a variable name is letters, digits and `_`, \
                             not starting with a digit"
                        );
                        errors.push(error(text, file, start, message));
                    } else {
                        match (lookup(name).filter(|value| !value.is_empty()), default) {
                            (Some(value), _) => out.push_str(&value),
                            (None, Some(default)) => out.push_str(default),
                            (None, None) => {
                                let message = format!(
                                    "environment variable `{name}` is not set; set it, or \
                                     give a default as `${{{name}:-default}}`"
                                );
                                errors.push(error(text, file, start, message));
                            }
                        }
                    }
                    end + 1
                }
            }
        } else {
            out.push('$');
            1
        };
        rest = &tail[consumed..];
        offset = start + consumed;
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn error(text: &str, file: &str, offset: usize, message: String) -> ConfigError {
    ConfigError {
        kind: ConfigErrorKind::Invalid,
        file: file.to_owned(),
        location: Some(Location::of_offset(text, offset)),
        component: None,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("8080".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn references_are_replaced_and_defaults_apply() {
        let text = "a = \"${PORT}\"\nb = \"${MISSING:-x y}\"\nc = \"${EMPTY:-d}\" $$ $5";
        let out = substitute(text, "p.toml", lookup).unwrap();
        assert_eq!(out, "a = \"8080\"\nb = \"x y\"\nc = \"d\" $ $5");
    }

    #[test]
    fn every_unset_or_malformed_reference_is_reported_where_it_is() {
        let text = "a = \"${NOPE}\"\nb = \"${9x}\"\nc = \"${OPEN";
        let errors = substitute(text, "p.toml", lookup).unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{shown:?}");
        assert!(shown[0].starts_with("p.toml:1:6: environment variable `NOPE`"));
        assert!(shown[1].starts_with("p.toml:2:6: `${9x}`"));
        assert!(shown[2].starts_with("p.toml:3:6: `${` without"));
    }
}
