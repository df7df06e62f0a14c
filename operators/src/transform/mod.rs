//! Stateless and keyed transforms driven by [expressions](crate::expr):
//!
//! - [`filter`]: keeps the records a condition holds for;
//! - [`map`]: sets, computes, renames and drops fields;
//! - [`route`]: splits a stream into named outputs by conditions;
//! - [`threshold`]: raises an alert record when a condition over an
//!   aggregate holds, at most once per key per cooldown.
//!
//! Each has a config struct (what a pipeline file's table holds, without
//! `type`), a `build` step that checks it against the input's schema and
//! returns the output schema, and a runtime operator.

pub mod filter;
pub mod map;
pub mod route;
pub mod threshold;

/// Parses the duration of `option` (see [`crate::duration`]).
pub(crate) fn parse_duration_ms(option: &str, text: &str) -> Result<u64, crate::row::OptionError> {
    crate::duration::parse_ms(text).map_err(|message| crate::row::OptionError::new(option, message))
}
