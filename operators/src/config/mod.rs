//! Pipeline files: a Vector-style description of sources, processors and
//! sinks in TOML or YAML, read into [`PipelineConfig`]. The reference for
//! users (every component and option) is `docs/operators.md`.
//!
//! ```toml
//! [runtime]
//! shards = 2              # optional, default: one per usable core
//! epoch_interval_ms = 200 # optional, default 100
//!
//! [sources.auth]
//! type = "generator"
//! profile = "auth"
//! count = 100000
//! events_per_second = 100
//!
//! [processors.failed]
//! type = "filter"
//! inputs = ["auth"]
//! condition = 'outcome == "failure"'
//!
//! [processors.per_ip]
//! type = "window"
//! inputs = ["failed"]
//! size = "1m"
//! group_by = ["source_ip"]
//! aggregates = ["count"]
//!
//! [sinks.out]
//! type = "file"
//! inputs = ["per_ip"]
//! path = "${WEIR_OUT:-./out}/per_ip"
//! format = "parquet"
//! ```
//!
//! Component names are unique across the three sections; `inputs` name a
//! component's main output (`failed`) or a side output (`parse.dead_letter`,
//! `window.late`, `route.NAME`).
//!
//! # Reading and checking
//! 1. [`env`]: `${VAR}` and `${VAR:-default}` are substituted in the text.
//! 2. The text is parsed as TOML, or as YAML (`yaml.rs`) into the same
//!    spanned tree, so both formats share everything after this.
//! 3. `document.rs` reads each component on its own into the model
//!    (`model.rs`), keeping spans.
//! 4. `validate.rs` checks names, values, edges and cycles.
//! 5. `plan.rs` works out every stream's records and schema in dataflow
//!    order and builds each operator's spec against its input schema.
//!
//! [`parse_all`] and [`load_all`] report every problem found, each a
//! [`ConfigError`] naming the file, line, column and component
//! (`pipeline.toml:12:1: sinks.out: unknown field `pth`, ...`); [`parse`]
//! and [`load`] return the first. None of them panics on any input.
//!
//! # Running
//! [`build_graph`] turns a checked [`PipelineConfig`] into a runtime
//! [`Graph`](weir_runtime::Graph) (`graph.rs`); the `[runtime]` table is
//! the runner's to apply.
//!
//! # Limits
//! [`CONFIG_FILE_MAX_BYTES`],
//! [`COMPONENT_NAME_MAX_BYTES`](crate::limits::COMPONENT_NAME_MAX_BYTES),
//! [`KEYS_MAX`](crate::limits::KEYS_MAX),
//! [`SHARDS_MAX`](crate::limits::SHARDS_MAX): all in [`crate::limits`].

mod document;
pub mod env;
mod error;
mod graph;
mod model;
mod plan;
mod registry;
mod validate;
mod yaml;

use std::io::Read;
use std::path::Path;

use crate::limits::CONFIG_FILE_MAX_BYTES;

pub use crate::processors::window::{Aggregate, WindowConfig};
pub use crate::sources::generator::GeneratorConfig;
pub use crate::sources::ingest::IngestConfig;
pub use error::{ConfigError, ConfigErrorKind, Location};
pub use graph::{build_graph, build_graph_named, internal_topics, InternalTopic};
pub use model::{
    FileFormat, FileSinkConfig, PipelineConfig, ProcessorConfig, RuntimeConfig, SinkConfig,
    SourceConfig,
};

/// Reads and checks the pipeline file at `path`. Errors name the file as
/// `path` displays. Returns the first problem; [`load_all`] returns every
/// one.
pub fn load(path: &Path) -> Result<PipelineConfig, ConfigError> {
    load_all(path).map_err(|mut errors| errors.swap_remove(0))
}

/// Reads and checks the pipeline file at `path`, reporting every problem
/// (see [`parse_all`]).
pub fn load_all(path: &Path) -> Result<PipelineConfig, Vec<ConfigError>> {
    let file_name = path.display().to_string();
    let io_error = |error: std::io::Error| {
        ConfigError::whole(
            ConfigErrorKind::Io,
            &file_name,
            format!("cannot read: {error}"),
        )
    };
    let file = std::fs::File::open(path).map_err(|e| vec![io_error(e)])?;
    let mut text = String::new();
    file.take(CONFIG_FILE_MAX_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| vec![io_error(e)])?;
    if text.len() as u64 > CONFIG_FILE_MAX_BYTES {
        let message = format!("larger than {CONFIG_FILE_MAX_BYTES} bytes");
        return Err(vec![ConfigError::whole(
            ConfigErrorKind::Io,
            &file_name,
            message,
        )]);
    }
    parse_in(&text, &file_name, path.parent())
}

/// Parses and checks a pipeline given as text; `file_name` is what errors
/// call it. Returns the first problem; [`parse_all`] returns every one.
pub fn parse(text: &str, file_name: &str) -> Result<PipelineConfig, ConfigError> {
    parse_all(text, file_name).map_err(|mut errors| errors.swap_remove(0))
}

/// Parses and checks a pipeline given as text, reporting every problem
/// found (in file order), never an empty list. `file_name` is what errors
/// call it; a name ending in `.yaml` or `.yml` is read as YAML, anything
/// else as TOML. `${VAR}` and `${VAR:-default}` are replaced by environment
/// variables first (see [`env`]).
pub fn parse_all(text: &str, file_name: &str) -> Result<PipelineConfig, Vec<ConfigError>> {
    parse_in(text, file_name, None)
}

/// [`parse_all`], with relative `table` paths of `enrich` processors
/// resolved against `base` (the pipeline file's directory, so a pipeline
/// and its lookup tables move together).
fn parse_in(
    text: &str,
    file_name: &str,
    base: Option<&Path>,
) -> Result<PipelineConfig, Vec<ConfigError>> {
    let text = env::substitute(text, file_name, |name| std::env::var(name).ok())?;
    let source = error::Source {
        text: &text,
        file: file_name,
    };
    let yaml = file_name.ends_with(".yaml") || file_name.ends_with(".yml");
    let mut numbers = Vec::new();
    let root = if yaml {
        yaml::parse(&source, &mut numbers)
    } else {
        document::parse_toml(&source)
    };
    let root = root.map_err(|error| vec![error])?;
    let mut document = document::read(&source, &root);
    if let Some(base) = base {
        for processor in document.config.processors.values_mut() {
            if let ProcessorConfig::Enrich(enrich) = processor {
                if enrich.table.is_relative() {
                    enrich.table = base.join(&enrich.table);
                }
            }
        }
    }
    let mut errors = document.errors;
    let config = document.config;
    if errors.is_empty() && (config.sources.is_empty() || config.sinks.is_empty()) {
        let message = "a pipeline needs at least one source and one sink";
        errors.push(ConfigError::whole(
            ConfigErrorKind::Invalid,
            file_name,
            message,
        ));
    }
    errors.extend(validate::check(
        &source,
        &config,
        &document.spans,
        &document.broken,
    ));
    // Components that did not parse are left out of the plan, and so are
    // their readers: every error found is first-hand.
    errors.extend(validate::check_plan(&source, &config, &document.spans));
    if errors.is_empty() {
        return Ok(config);
    }
    // In file order; errors about the whole file first.
    errors.sort_by_key(|error| error.location.map(|at| (at.line, at.column)));
    Err(errors)
}
