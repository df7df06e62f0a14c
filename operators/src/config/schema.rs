//! Schema checks: placeholder filled in below.
use super::document::Spans;
use super::error::{ConfigError, Source};
use super::model::PipelineConfig;

pub(crate) fn check(
    _source: &Source<'_>,
    _config: &PipelineConfig,
    _spans: &Spans,
) -> Vec<ConfigError> {
    Vec::new()
}
