//! The `window` processor: windowed aggregation over event time.
//!
//! [`rows`] is the `window` of pipeline files: tumbling, sliding and
//! session windows over rows, with aggregates. The legacy `size_ms` form
//! ([`WindowConfig`], `size_ms`) is planned as a tumbling row window and a
//! projection to its legacy columns. Windows queue the rows of closed
//! windows in a [`ClosedRows`] and hand them to the runtime one batch at a
//! time through `Processor::drain`, so a window over a million keys does
//! not stage a million rows at once.

pub mod closed_rows;
pub mod rows;
mod size_ms;

pub use closed_rows::ClosedRows;
pub use size_ms::{size_ms_schema, Aggregate, WindowConfig};
