//! Embedding weir in a service: see `docs/embedding.md`.
//!
//! A [`Pipeline`] is declared in code (pipeline.rs) and started into a
//! [`Service`] (service.rs), whose [`Handle`] (handle.rs) pushes, queries
//! and subscribes from any thread; what the handles of a run share and how
//! it shuts down is in control.rs.

mod admission;
mod control;
mod handle;
pub(crate) mod input;
mod pipeline;
pub(crate) mod query;
pub(crate) mod rolling;
mod service;
pub(crate) mod subscribe;

pub use handle::{CallbackId, Handle};
pub use pipeline::Pipeline;
pub use service::Service;
