//! weir's operator library: sources, processors and sinks built on
//! `weir-runtime`.
//!
//! One folder per role, one file or folder per component:
//! - [`sources`]: `generator`, `file`, `tcp`, `http`;
//! - [`processors`]: `filter`, `map`, `route`, `threshold`, `parse`,
//!   `enrich`, `dedup`, `window`;
//! - [`sinks`]: `file` (NDJSON, Parquet), `stdout`, `blackhole`, `webhook`,
//!   `postgres`, `prometheus`.
//!
//! Shared by them: [`component`] (the trait every component implements),
//! [`config`] (pipeline files: the registry of component types, checks,
//! planning and the runtime graph), [`row`] (schema-typed rows) and
//! [`expr`] (expressions), [`limits`] and [`duration`]. Every stream
//! between components carries [`row::Row`]s.
#![warn(missing_docs)]

pub mod component;
pub mod config;
pub mod duration;
pub mod expr;
pub mod kafka;
pub mod limits;
mod pem;
pub mod processors;
pub mod row;
pub mod scale_out;
pub mod sinks;
pub mod sources;
