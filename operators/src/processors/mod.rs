//! Processors: the components of a pipeline's `[processors]` section, one
//! file or folder each, over [`Row`](crate::row::Row)s.
//!
//! Driven by [expressions](crate::expr):
//! - [`filter`]: keeps the records a condition holds for;
//! - [`map`]: sets, computes, renames and drops fields;
//! - [`route`]: splits a stream into named outputs by conditions;
//! - [`threshold`]: raises an alert record when a condition over an
//!   aggregate holds, at most once per key per cooldown.
//!
//!
//! Record by record:
//! - [`parse`]: turns a text field (a log line) into typed fields, by JSON,
//!   logfmt or a regular expression (with a preset for the combined
//!   access-log format); records that do not parse go to output port 1 as
//!   dead letters.
//! - [`enrich`]: adds columns from a CSV or JSON table loaded once at build
//!   time, joined on a field by exact value or by longest-prefix CIDR match.
//! - [`join`]: joins two streams on equal keys, within a time interval
//!   (an interval join) or at any time (a regular join).
//! - [`dedup`]: lets through the earliest record (by event time) of each
//!   identity per time window, whatever the arrival order.
//!
//! Over time:
//! - [`window`]: tumbling, sliding and session windows with aggregates.
//!
//! Each has a config struct (what a pipeline file's table holds, without
//! `type`) implementing [`Component`](crate::component::Component), a
//! `build` step that checks it against the input's schema and returns the
//! output schema (an [`OptionError`](crate::row::OptionError) names the
//! option), and a runtime operator.

pub mod dedup;
pub mod enrich;
pub mod filter;
pub mod join;
pub mod map;
pub mod parse;
pub mod route;
pub mod threshold;
pub mod window;

/// Parses the duration of `option` (see [`crate::duration`]).
pub(crate) fn parse_duration_ms(option: &str, text: &str) -> Result<u64, crate::row::OptionError> {
    crate::duration::parse_ms(text).map_err(|message| crate::row::OptionError::new(option, message))
}
