//! The `window` processor: windowed aggregation over event time.
//!
//! [`rows`] is the `window` of pipeline files: tumbling, sliding and
//! session windows over rows, with aggregates. [`KeyedWindow`] is its
//! legacy `size_ms` form: tumbling windows over
//! [`GeneratedEvent`](crate::records::GeneratedEvent)s, grouped by a field,
//! with `count` and `sum` aggregates (see `keyed`). Both queue the rows of
//! closed windows in a [`ClosedRows`] and hand them to the runtime one
//! batch at a time through `Processor::drain`, so a window over a million
//! keys does not stage a million rows at once.

pub mod closed_rows;
mod keyed;
mod keyed_config;
pub mod rows;

pub use closed_rows::ClosedRows;
pub use keyed::{EventField, KeyedWindow, KeyedWindowSpec};
pub use keyed_config::{Aggregate, WindowConfig};
