//! Reading the TOML document into [`PipelineConfig`], one component at a
//! time, keeping where each thing was written.
//!
//! The file is parsed once into toml's spanned tree ([`DeTable`]): every key
//! and value keeps its byte range in the text. Each component's table is
//! then deserialized on its own, its `type` picking the Rust type, so a
//! schema error (unknown field, wrong type) is reported with the component's
//! name and the span toml gives for the offending key or value. The spans
//! the semantic checks need later (a component's name, its fields' values,
//! each `inputs` entry) are kept in [`Spans`].

use std::collections::BTreeMap;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::{ConfigError, ConfigErrorKind, Source};
use super::model::PipelineConfig;
use super::registry::{deserialize, ProcessorConfig, SinkConfig, SourceConfig};

/// The sections a pipeline file may have, besides `runtime`.
pub(crate) const SECTIONS: [&str; 3] = ["sources", "processors", "sinks"];

/// Where one component's parts were written.
#[derive(Debug, Clone, Default)]
pub(crate) struct ComponentSpans {
    /// The component's name in its table header or dotted key.
    pub(crate) name: Range<usize>,
    /// Each field's value, by field name.
    pub(crate) fields: BTreeMap<String, Range<usize>>,
    /// Each entry of `inputs`, in order.
    pub(crate) inputs: Vec<Range<usize>>,
}

/// Where every component was written, by `SECTION.NAME`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Spans {
    pub(crate) components: BTreeMap<String, ComponentSpans>,
}

impl Spans {
    /// The span of `component`'s `field` value, or of its name.
    pub(crate) fn field(&self, component: &str, field: &str) -> Range<usize> {
        let spans = self.component(component);
        spans.fields.get(field).unwrap_or(&spans.name).clone()
    }

    /// The spans of `component`.
    pub(crate) fn component(&self, component: &str) -> &ComponentSpans {
        static NONE: std::sync::OnceLock<ComponentSpans> = std::sync::OnceLock::new();
        self.components
            .get(component)
            .unwrap_or_else(|| NONE.get_or_init(ComponentSpans::default))
    }
}

/// One component's table, split from its `type`.
struct Component<'i> {
    /// `SECTION.NAME`.
    path: String,
    kind: Spanned<String>,
    /// The table without `type`.
    body: Spanned<DeValue<'i>>,
}

/// What [`read`] found: the components that parsed, where everything was
/// written, the errors of those that did not, and their names (so later
/// checks do not report an input naming a broken component as unknown).
#[derive(Debug, Default)]
pub(crate) struct Document {
    pub(crate) config: PipelineConfig,
    pub(crate) spans: Spans,
    pub(crate) errors: Vec<ConfigError>,
    pub(crate) broken: std::collections::BTreeSet<String>,
}

/// Parses TOML text into the spanned tree [`read`] takes.
pub(crate) fn parse_toml<'i>(source: &Source<'i>) -> Result<Spanned<DeTable<'i>>, ConfigError> {
    DeTable::parse(source.text).map_err(|error| ConfigError::from_toml(source, &error, None, 0..0))
}

/// Reads the whole document, every component on its own: one that does not
/// fit its type is reported and left out, and the rest are still read.
pub(crate) fn read(source: &Source<'_>, root: &Spanned<DeTable<'_>>) -> Document {
    let mut document = Document::default();
    for (key, value) in root.get_ref().iter() {
        let section = key.get_ref().as_ref();
        if section == "runtime" {
            record_spans(&mut document.spans, "runtime", key.span(), value);
            match deserialize(source, value.clone(), "runtime") {
                Ok(runtime) => document.config.runtime = runtime,
                Err(error) => document.errors.push(error),
            }
            continue;
        }
        if !SECTIONS.contains(&section) {
            let message = format!(
                "unknown section `{section}`, expected one of `runtime`, `sources`, \
                 `processors`, `sinks`"
            );
            document.errors.push(ConfigError::at(
                ConfigErrorKind::Schema,
                source,
                key.span(),
                None,
                message,
            ));
            continue;
        }
        let components = match components(source, section, value, &mut document) {
            Ok(components) => components,
            Err(error) => {
                document.errors.push(error);
                continue;
            }
        };
        for component in components {
            let name = component.path[section.len() + 1..].to_owned();
            if let Err(error) = read_component(source, section, component, &mut document.config) {
                document.errors.push(error);
                document.broken.insert(name);
            }
        }
    }
    document
}

fn read_component(
    source: &Source<'_>,
    section: &str,
    component: Component<'_>,
    config: &mut PipelineConfig,
) -> Result<(), ConfigError> {
    let Component { path, kind, body } = component;
    let name = path[section.len() + 1..].to_owned();
    let unknown = |expected: &str| {
        let message = format!("unknown type `{}`, expected {expected}", kind.get_ref());
        ConfigError::at(
            ConfigErrorKind::Schema,
            source,
            kind.span(),
            Some(&path),
            message,
        )
    };
    let kind = kind.get_ref().as_str();
    match section {
        "sources" => {
            let read = SourceConfig::read(kind, body, source, &path);
            let component = read.ok_or_else(|| unknown(SourceConfig::EXPECTED))??;
            config.sources.insert(name, component);
        }
        "processors" => {
            let read = ProcessorConfig::read(kind, body, source, &path);
            let component = read.ok_or_else(|| unknown(ProcessorConfig::EXPECTED))??;
            config.processors.insert(name, component);
        }
        _ => {
            let read = SinkConfig::read(kind, body, source, &path);
            let component = read.ok_or_else(|| unknown(SinkConfig::EXPECTED))??;
            config.sinks.insert(name, component);
        }
    }
    Ok(())
}

/// Splits a section's table into components, recording their spans.
fn components<'i>(
    source: &Source<'_>,
    section: &str,
    value: &Spanned<DeValue<'i>>,
    document: &mut Document,
) -> Result<Vec<Component<'i>>, ConfigError> {
    let Some(table) = value.get_ref().as_table() else {
        let message = format!("`{section}` must be a table of named components");
        return Err(ConfigError::at(
            ConfigErrorKind::Schema,
            source,
            value.span(),
            None,
            message,
        ));
    };
    let mut components = Vec::with_capacity(table.len());
    for (key, value) in table.iter() {
        let path = format!("{section}.{}", key.get_ref());
        record_spans(&mut document.spans, &path, key.span(), value);
        let broken = |document: &mut Document, error: ConfigError| {
            document.errors.push(error);
            document.broken.insert(key.get_ref().to_string());
        };
        let Some(fields) = value.get_ref().as_table() else {
            let message = "a component must be a table";
            let error = ConfigError::at(
                ConfigErrorKind::Schema,
                source,
                value.span(),
                Some(&path),
                message,
            );
            broken(document, error);
            continue;
        };
        let kind = match component_kind(source, &path, key.span(), fields) {
            Ok(kind) => kind,
            Err(error) => {
                broken(document, error);
                continue;
            }
        };
        if section == "sources" {
            if let Some((inputs, _)) = fields.get_key_value("inputs") {
                let message = "a source reads no inputs; remove `inputs`";
                let kind = ConfigErrorKind::SourceWithInputs;
                let error = ConfigError::at(kind, source, inputs.span(), Some(&path), message);
                broken(document, error);
                continue;
            }
        }
        let mut body = fields.clone();
        body.remove("type");
        let body = Spanned::new(value.span(), DeValue::Table(body));
        components.push(Component { path, kind, body });
    }
    Ok(components)
}

/// The component's `type`, which must be a string.
fn component_kind(
    source: &Source<'_>,
    path: &str,
    name: Range<usize>,
    fields: &DeTable<'_>,
) -> Result<Spanned<String>, ConfigError> {
    let Some(kind) = fields.get("type") else {
        let message = "missing field `type`";
        return Err(ConfigError::at(
            ConfigErrorKind::Schema,
            source,
            name,
            Some(path),
            message,
        ));
    };
    match kind.get_ref().as_str() {
        Some(text) => Ok(Spanned::new(kind.span(), text.to_owned())),
        None => {
            let message = "`type` must be a string";
            Err(ConfigError::at(
                ConfigErrorKind::Schema,
                source,
                kind.span(),
                Some(path),
                message,
            ))
        }
    }
}

/// Records the spans of `path`'s name, its fields' values and its inputs.
fn record_spans(spans: &mut Spans, path: &str, name: Range<usize>, value: &Spanned<DeValue<'_>>) {
    let mut component = ComponentSpans {
        name,
        ..ComponentSpans::default()
    };
    if let Some(fields) = value.get_ref().as_table() {
        for (key, value) in fields.iter() {
            let field = key.get_ref().to_string();
            component.fields.insert(field, value.span());
        }
        if let Some(inputs) = fields.get("inputs").and_then(|v| v.get_ref().as_array()) {
            component.inputs = inputs.iter().map(Spanned::span).collect();
        }
    }
    spans.components.insert(path.to_owned(), component);
}
