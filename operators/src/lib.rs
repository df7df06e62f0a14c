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
//! [`expr`] (expressions).
//!
//! Records used across operators live in [`records`].
#![warn(missing_docs)]

pub mod component;
pub mod config;
pub mod duration;
pub mod expr;
pub mod latency;
pub mod limits;
pub mod processors;
pub mod records;
pub mod row;
pub mod sinks;
pub mod sources;
