//! weir's operator library: sources, processors and sinks built on
//! `weir-runtime`.
//!
//! - [`config`]: pipeline files (TOML) and their checks.
//! - [`generator`]: deterministic synthetic sources.
//! - [`window`]: windowed aggregation over event time.
//! - [`sink`]: where records leave the pipeline (files, callbacks).
//! - [`source`]: where records enter from outside (files).
//! - [`pipelines`]: complete example pipelines.
//! - [`process`]: record-level processors of rows: `parse`, `enrich`, `dedup`.
//!
//! Records used across operators live in [`records`].
#![warn(missing_docs)]

pub mod component;
pub mod config;
pub mod duration;
pub mod expr;
pub mod generator;
pub mod ingest;
pub mod latency;
pub mod pipelines;
pub mod process;
pub mod records;
pub mod row;
pub mod sink;
pub mod source;
pub mod transform;
pub mod window;
