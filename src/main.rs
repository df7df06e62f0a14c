//! The `weir` command line.
//!
//! - `weir demo`: starts a built-in ingest pipeline and drives the load
//!   generator against it in one process, then prints throughput, the
//!   latency table and where the histogram files went (`demo.rs`).
//! - `weir run PIPELINE.toml [--data-dir DIR]`: runs a pipeline declared in
//!   a config file, exactly-once when it has a data directory; a run on a
//!   directory that holds a previous run recovers from its last committed
//!   epoch. SIGTERM or SIGINT stops it with a savepoint (open windows stay
//!   open; the next start resumes), `--drain` makes that stop the end of
//!   input instead. An invalid config exits with status 2, a failed run
//!   with 1, a stop that gave up at its bound with 3 (nothing lost: the
//!   next start finishes it). `[runtime] metrics_listen` serves Prometheus
//!   metrics while it runs.
//!   Lifecycle events (start, recovery, final commit, failures) are logged
//!   to standard error; `WEIR_LOG` filters them (`tracing-subscriber`'s
//!   `EnvFilter` syntax, default `info`).
//! - `weir validate PIPELINE.toml`: every check `weir run` makes before
//!   starting, without running (exit status 2 if invalid); `weir graph
//!   PIPELINE.toml [--format text|dot]` prints its components and edges.
//!   SIGHUP (or `weir reload`) re-reads the file and, when it is valid,
//!   keeps `[runtime]` and is compatible with the running components'
//!   state, stops with a savepoint and starts it in the same process;
//!   otherwise the run goes on and the log says why.
//! - `weir top` and `weir tap OUTPUT` (`--url` or `--config`): a live
//!   view of a running pipeline and a sample of what a component emits,
//!   from its admin endpoint (`admin.rs`).
//! - `weir wal inspect DIR`: describes a write-ahead log directory (or every
//!   log of a data directory) without changing it; exits with status 1 if a
//!   log would be refused at open (corruption, missing segments, a shard
//!   log that ends below what the commit records name), 0 for clean logs
//!   and torn tails (`wal_inspect.rs`).

mod admin;
mod demo;
mod wal_inspect;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use weir::runtime::Runtime;

#[derive(Parser, Debug)]
#[command(
    name = "weir",
    version,
    about = "A thread-per-core, exactly-once stream processor"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Ingest → keyed window → files, driven by the load generator for ten
    /// seconds: prints throughput and latency.
    Demo(demo::DemoArgs),
    /// Run a pipeline declared in a pipeline file (TOML, or YAML for `.yaml`/`.yml`).
    Run(RunArgs),
    /// Check a pipeline file without running it (exit status 2 if invalid).
    Validate {
        /// The pipeline config file.
        config: PathBuf,
    },
    /// Print a pipeline file's graph: a readable list, or Graphviz DOT.
    Graph {
        /// The pipeline config file.
        config: PathBuf,
        /// `text` or `dot` (`weir graph P.toml --format dot | dot -Tsvg`).
        #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
        format: GraphFormat,
    },
    /// A live view of a running pipeline, from its metrics endpoint:
    /// per-component rates, backpressure, sink backlogs, epochs.
    Top(admin::TopArgs),
    /// Print a sample of what a running pipeline's component emits, as
    /// NDJSON (the pipeline must set `[runtime] tap = true`).
    Tap(admin::TapArgs),
    /// Ask a running `weir run` to reload its pipeline file (sends it
    /// SIGHUP): it checks the file and, if it can, restarts the pipeline
    /// in-process from a savepoint; a file it cannot take leaves the run
    /// unchanged (its log says why).
    Reload {
        /// The pipeline file the run was started with: its `[runtime]
        /// data_dir` names the run.
        #[arg(required_unless_present = "data_dir")]
        config: Option<PathBuf>,
        /// The run's data directory (`weir run --data-dir`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Work with write-ahead log directories.
    Wal {
        #[command(subcommand)]
        command: WalCommand,
    },
    /// Generate load against an ingest source and measure latency
    /// (`weir loadgen plot` overlays `.hgrm` files).
    Loadgen(Box<weir_loadgen::Cli>),
}

#[derive(clap::Args, Debug, Clone)]
struct RunArgs {
    /// The pipeline config file.
    config: PathBuf,
    /// The data directory (write-ahead logs, commit log); overrides
    /// `[runtime] data_dir`. Without one the run is not exactly-once.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// On SIGTERM/SIGINT, end the input instead of stopping with a
    /// savepoint: every open window fires, sinks publish it, and the data
    /// directory's run is complete (a later start runs nothing). Without
    /// it a stop keeps every operator's state for the next start.
    #[arg(long)]
    drain: bool,
    /// Start COMPONENT without the state the data directory holds for it
    /// (its options changed, or it was removed); repeat for several.
    /// Without it such a start is refused, naming what changed.
    #[arg(long, value_name = "COMPONENT")]
    discard_state: Vec<String>,
    /// How long a stop may take before it gives up, leaving the sink
    /// commits it could not finish to the next start (e.g. `10s`);
    /// overrides `[runtime] stop_timeout` (default 10s).
    #[arg(long, value_name = "DURATION")]
    stop_timeout: Option<String>,
}

/// How `weir graph` prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum GraphFormat {
    /// One line per component with its type and inputs.
    Text,
    /// Graphviz DOT.
    Dot,
}

#[derive(Subcommand, Debug)]
enum WalCommand {
    /// List segments, records, epochs, the durable end and any damage, of
    /// one log or of every log in a data directory. Exits with status 1 if
    /// a log would be refused at open (corrupt, segments missing, or a
    /// shard log shorter than the commit records say).
    Inspect {
        /// A data directory (`--data-dir`), or one log directory in it.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Run(args) => return run(&args),
        Command::Validate { config } => return validate(&config, None),
        Command::Graph { config, format } => return validate(&config, Some(format)),
        Command::Wal {
            command: WalCommand::Inspect { dir },
        } => wal_inspect::inspect(&dir),
        Command::Loadgen(cli) => weir_loadgen::cli_main(*cli),
        Command::Top(args) => admin::top(&args),
        Command::Reload { config, data_dir } => admin::reload(config.as_deref(), data_dir),
        Command::Tap(args) => admin::tap(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("weir: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// On SIGINT or SIGTERM, stops the run gracefully: sources stop, what they
/// emitted drains through the graph, and the final epoch commits, holding
/// every operator's state as it is (or, with `drain`, after every window
/// fired). The signals are handled from before the run starts: one that
/// arrives while the data directory is still being recovered stops the run
/// as soon as it has started, and a second one then ends the process at
/// once (nothing ran yet; the next start recovers again). A second signal
/// while a stop runs is not special: `kill -9` is always safe, the next
/// start recovers.
struct Signals {
    state: Arc<Mutex<SignalState>>,
    drain: bool,
}

#[derive(Default)]
struct SignalState {
    /// The run's handle, once it started.
    handle: Option<weir::runtime::Handle>,
    /// A signal came before the run started.
    pending: bool,
    /// How SIGHUP checks a changed pipeline file against the running one.
    reloader: Option<Reloader>,
    /// A checked, changed pipeline to start once the run stopped.
    reload: Option<Loaded>,
}

/// What SIGHUP needs to check a changed pipeline file: where it is, and
/// what runs now.
struct Reloader {
    args: RunArgs,
    /// The running graph's state fingerprints.
    fingerprints: std::collections::BTreeMap<String, String>,
    /// The running pipeline file, as loaded.
    current: weir::operators::config::PipelineConfig,
}

impl Reloader {
    /// The changed file's pipeline, if it can replace the running one in
    /// this process from a savepoint: it loads and plans, its `[runtime]`
    /// table is unchanged (shards, data directory and endpoint stay with
    /// the process), and every component that keeps state keeps options
    /// compatible with it. Otherwise why not.
    fn prepare(&self) -> std::result::Result<Loaded, String> {
        let (next, graph) = load_pipeline(&self.args).map_err(|failure| failure.to_string())?;
        if next.runtime != self.current.runtime {
            return Err(
                "its `[runtime]` table changed, which a reload cannot apply: stop \
                        and start weir for that"
                    .into(),
            );
        }
        let problems = graph.state_changes_from(&self.fingerprints);
        if !problems.is_empty() {
            return Err(format!(
                "{}; stop weir and start it with --discard-state COMPONENT to drop that state",
                problems.join("; ")
            ));
        }
        if next == self.current {
            return Err("the file did not change".into());
        }
        Ok((next, graph))
    }
}

impl Signals {
    fn install(drain: bool) -> Result<Signals> {
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
        ])
        .context("cannot handle SIGINT, SIGTERM and SIGHUP")?;
        let state: Arc<Mutex<SignalState>> = Arc::default();
        let shared = state.clone();
        std::thread::Builder::new()
            .name("weir-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    let mut state = shared.lock().unwrap_or_else(|p| p.into_inner());
                    if signal == signal_hook::consts::SIGHUP {
                        reload(&mut state);
                        continue;
                    }
                    if let Some(handle) = &state.handle {
                        stop(handle, drain);
                    } else if state.pending {
                        eprintln!(
                            "weir: stopped while starting, before the run began; the next \
                             start recovers the data directory again"
                        );
                        std::process::exit(0);
                    } else {
                        state.pending = true;
                        eprintln!(
                            "weir: stopping as soon as the run has started (a second signal \
                             ends the process now)"
                        );
                    }
                }
            })
            .context("cannot start the signal thread")?;
        Ok(Signals { state, drain })
    }

    /// What SIGHUP checks a changed file against, for the run starting.
    fn reloader(&self, reloader: Reloader) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.reloader = Some(reloader);
        state.reload = None;
    }

    /// The pipeline a SIGHUP asked to start, once the run stopped; the next
    /// run's signals wait for its start ([`Signals::running`]).
    fn take_reload(&self) -> Option<Loaded> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let reload = state.reload.take();
        if reload.is_some() {
            state.handle = None;
        }
        reload
    }

    /// The run started: a signal now stops it, and one that came before
    /// does so now.
    fn running(&self, handle: weir::runtime::Handle) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.pending {
            stop(&handle, self.drain);
        }
        state.handle = Some(handle);
    }
}

/// SIGHUP: checks the pipeline file again and, if it can replace the
/// running pipeline, stops the run with a savepoint so that the main
/// thread starts it ([`Signals::take_reload`]). A file that cannot leaves
/// the run untouched, and says why.
fn reload(state: &mut SignalState) {
    let (Some(handle), Some(reloader)) = (&state.handle, &state.reloader) else {
        eprintln!("weir: SIGHUP before the run started: nothing to reload yet");
        return;
    };
    if state.reload.is_some() {
        eprintln!("weir: SIGHUP: a reload is under way already");
        return;
    }
    let file = reloader.args.config.display().to_string();
    match reloader.prepare() {
        Ok(next) => {
            eprintln!(
                "weir: SIGHUP: {file} changed and is valid: stopping with a savepoint to \
                 start it"
            );
            state.reload = Some(next);
            handle.shutdown();
        }
        Err(why) => {
            eprintln!(
                "weir: SIGHUP: not reloading {file}: {why}; the running pipeline goes on \
                 unchanged"
            );
            tracing::warn!(file = %file, reason = %why, "reload refused");
        }
    }
}

fn stop(handle: &weir::runtime::Handle, drain: bool) {
    if drain {
        eprintln!(
            "weir: draining: ending the input, firing every open window and committing \
             the final epoch (the run completes)"
        );
        handle.shutdown_and_drain();
    } else {
        eprintln!(
            "weir: stopping: committing a final epoch that keeps every operator's state \
             (a savepoint); the next start resumes from it"
        );
        handle.shutdown();
    }
}

/// Exit status for an invalid config file.
const EXIT_CONFIG: u8 = 2;

/// Exit status for a stop that gave up at its bound
/// (`RunError::StopTimedOut`): the committed output is consistent and the
/// next start completes what was pending, but the stop did not finish.
const EXIT_STOP_TIMED_OUT: u8 = 3;

/// Logs the runtime's `tracing` events to standard error, filtered by
/// `WEIR_LOG` (default `info`). Only `weir run` logs: the other commands'
/// output stays as it is.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Fails only if a subscriber is already installed; keep that one.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Prints every error of a pipeline file, then how many there were.
fn config_errors(errors: &[weir::operators::config::ConfigError]) -> ExitCode {
    for error in errors {
        eprintln!("weir: {error}");
    }
    if errors.len() > 1 {
        eprintln!("weir: {} errors", errors.len());
    }
    ExitCode::from(EXIT_CONFIG)
}

/// `weir validate` (`format` is `None`) and `weir graph`: loads the file and
/// builds its graph, so every check `weir run` makes before starting is
/// made; then prints the verdict or the graph.
fn validate(path: &std::path::Path, format: Option<GraphFormat>) -> ExitCode {
    let config = match weir::operators::config::load_all(path) {
        Ok(config) => config,
        Err(errors) => return config_errors(&errors),
    };
    let file_name = path.display().to_string();
    if let Err(error) = weir::operators::config::build_graph_named(&config, &file_name) {
        eprintln!("weir: {error}");
        return ExitCode::from(EXIT_CONFIG);
    }
    match format {
        None => println!(
            "{file_name}: valid: {} sources, {} processors, {} sinks",
            config.sources.len(),
            config.processors.len(),
            config.sinks.len()
        ),
        Some(format) => print!("{}", render_graph(&config, format)),
    }
    ExitCode::SUCCESS
}

/// The components of `config` and their inputs, as text or DOT.
fn render_graph(config: &weir::operators::config::PipelineConfig, format: GraphFormat) -> String {
    use std::fmt::Write as _;
    // (section, name, type, inputs)
    let mut nodes: Vec<(&str, &str, &str, &[String])> = Vec::new();
    for (name, source) in &config.sources {
        nodes.push(("source", name, source.kind(), &[]));
    }
    for (name, processor) in &config.processors {
        nodes.push(("processor", name, processor.kind(), processor.inputs()));
    }
    for (name, sink) in &config.sinks {
        nodes.push(("sink", name, sink.kind(), sink.inputs()));
    }
    // A scaled-out pipeline's repartition and changelog topics.
    let topics = weir::operators::config::internal_topics(config);
    let mut out = String::new();
    match format {
        GraphFormat::Text => {
            for (section, name, kind, inputs) in &nodes {
                let _ = write!(out, "{section:<9} {name} ({kind})");
                if !inputs.is_empty() {
                    let _ = write!(out, " <- {}", inputs.join(", "));
                }
                out.push('\n');
            }
            for topic in &topics {
                let _ = writeln!(
                    out,
                    "topic     {} (kafka, {} of {})",
                    topic.topic, topic.kind, topic.component
                );
            }
        }
        GraphFormat::Dot => {
            let escape = |text: &str| text.replace('\\', "\\\\").replace('"', "\\\"");
            let quote = |text: &str| format!("\"{}\"", escape(text));
            out.push_str("digraph pipeline {\n  rankdir=LR;\n");
            for (section, name, kind, _) in &nodes {
                let shape = match *section {
                    "source" => "invhouse",
                    "sink" => "house",
                    _ => "box",
                };
                // `\n` inside a DOT string is a line break in the label.
                let label = format!("\"{}\\n{}\"", escape(name), escape(kind));
                let _ = writeln!(out, "  {} [shape={shape}, label={label}];", quote(name));
            }
            for (_, name, _, inputs) in &nodes {
                for input in inputs.iter() {
                    // `NAME.PORT` is an edge from NAME's side output PORT.
                    match input.split_once('.') {
                        Some((from, port)) => {
                            let _ = writeln!(
                                out,
                                "  {} -> {} [label={}];",
                                quote(from),
                                quote(name),
                                quote(port)
                            );
                        }
                        None => {
                            let _ = writeln!(out, "  {} -> {};", quote(input), quote(name));
                        }
                    }
                }
            }
            for topic in &topics {
                let label = format!("\"{}\\nkafka {}\"", escape(&topic.topic), topic.kind);
                let node = quote(&topic.topic);
                let _ = writeln!(out, "  {node} [shape=cylinder, label={label}];");
                let component = quote(&topic.component);
                if topic.kind == "repartition" {
                    // The component sends its rows there and reads them
                    // back.
                    let _ = writeln!(out, "  {component} -> {node} [style=dashed];");
                    let _ = writeln!(out, "  {node} -> {component} [style=dashed];");
                } else {
                    let _ = writeln!(out, "  {component} -> {node} [style=dotted];");
                }
            }
            out.push_str("}\n");
        }
    }
    out
}

/// A pipeline file as loaded, and its planned graph.
type Loaded = (
    weir::operators::config::PipelineConfig,
    weir::runtime::Graph,
);

/// Reads `args.config` (with `--data-dir` applied) and plans its graph.
fn load_pipeline(args: &RunArgs) -> std::result::Result<Loaded, PlanFailure> {
    let mut config = weir::operators::config::load_all(&args.config).map_err(PlanFailure::Load)?;
    if let Some(dir) = &args.data_dir {
        // `--data-dir` wins over the file's, for planning too (a scaled-out
        // run keeps its checkpoint there).
        config.runtime.data_dir = Some(dir.clone());
    }
    let file_name = args.config.display().to_string();
    let graph = weir::operators::config::build_graph_named(&config, &file_name)
        .map_err(PlanFailure::Plan)?;
    Ok((config, graph))
}

/// Why a pipeline file could not be run.
enum PlanFailure {
    Load(Vec<weir::operators::config::ConfigError>),
    Plan(weir::operators::config::ConfigError),
}

impl std::fmt::Display for PlanFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanFailure::Load(errors) => {
                let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
                write!(f, "{}", lines.join("\n"))
            }
            PlanFailure::Plan(error) => write!(f, "{error}"),
        }
    }
}

fn run(args: &RunArgs) -> ExitCode {
    init_logging();
    let (config, graph) = match load_pipeline(args) {
        Ok(loaded) => loaded,
        Err(PlanFailure::Load(errors)) => return config_errors(&errors),
        Err(PlanFailure::Plan(error)) => {
            eprintln!("weir: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match run_graph(config, args, graph) {
        Ok(()) => {
            // A `kafka` source's consumer thread commits the final epoch's
            // offsets to its group once that epoch committed, just after
            // the run: exiting first could lose them.
            let bound = Duration::from_millis(weir::operators::limits::KAFKA_FINAL_COMMIT_WAIT_MS);
            if !weir::operators::sources::kafka::reader::wait_for_readers(bound) {
                tracing::warn!(
                    "a kafka source did not commit its final offsets to its group within {} ms; \
                     lag tools may show it behind (the output is complete)",
                    bound.as_millis()
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("weir: {error:#}");
            let timed_out = matches!(
                error.downcast_ref::<weir::runtime::RunError>(),
                Some(weir::runtime::RunError::StopTimedOut { .. })
            );
            if timed_out {
                ExitCode::from(EXIT_STOP_TIMED_OUT)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run_graph(
    pipeline: weir::operators::config::PipelineConfig,
    args: &RunArgs,
    graph: weir::runtime::Graph,
) -> Result<()> {
    let config = &pipeline.runtime;
    let mut builder = Runtime::builder()
        .epoch_interval(std::time::Duration::from_millis(config.epoch_interval_ms))
        .discard_state(args.discard_state.iter().cloned());
    if let Some(shards) = config.shards {
        builder = builder.shards(shards);
    } else if config.group.is_some() {
        // Scaled out: one shard per process unless `shards` says more
        // (Kafka Streams' `num.stream.threads` is 1 by default too).
        builder = builder.shards(1);
    }
    let data_dir = args.data_dir.clone().or_else(|| config.data_dir.clone());
    if let (Some(group), None) = (&config.group, &data_dir) {
        anyhow::bail!(
            "`[runtime] group` = {group:?} (scale-out over Kafka) needs a data directory \
             (`--data-dir` or `[runtime] data_dir`): its epochs are its Kafka transactions"
        );
    }
    if let Some(dir) = data_dir {
        builder = builder.data_dir(dir);
    }
    let stop_timeout_ms = match &args.stop_timeout {
        Some(text) => Some(
            weir::operators::duration::parse_positive_ms(text)
                .map_err(|message| anyhow::anyhow!("--stop-timeout: {message}"))?,
        ),
        // Checked when the file was loaded.
        None => config
            .stop_timeout_ms()
            .transpose()
            .map_err(|message| anyhow::anyhow!("`[runtime] stop_timeout`: {message}"))?,
    };
    if let Some(ms) = stop_timeout_ms {
        builder = builder.stop_timeout(std::time::Duration::from_millis(ms));
    }
    if let Some(listen) = &config.metrics_listen {
        // Checked when the config was loaded.
        let addr = listen
            .parse()
            .with_context(|| format!("`[runtime] metrics_listen` = {listen:?}"))?;
        builder = builder.metrics_listen(addr);
    }
    if config.tap {
        builder = builder.tap(config.tap_remote);
    }
    if let Some(epochs) = config.sink_backlog_epochs {
        builder = builder.sink_backlog_epochs(epochs);
    }
    let signals = Signals::install(args.drain)?;
    // The runtime (and its metrics endpoint) lives until the run is over,
    // across reloads.
    let runtime = builder.build()?;
    let mut graph = graph;
    let mut current = pipeline.clone();
    let report = loop {
        signals.reloader(Reloader {
            args: args.clone(),
            fingerprints: graph.state_fingerprints(),
            current: current.clone(),
        });
        let running = runtime.start(graph)?;
        signals.running(running.handle());
        let report = running.wait()?;
        match signals.take_reload() {
            Some((next, next_graph)) if report.stopped => {
                eprintln!(
                    "weir: reloading {}: stopped at epoch {} with a savepoint; starting the \
                     changed pipeline from it",
                    args.config.display(),
                    report.last_committed_epoch
                );
                tracing::info!(
                    file = %args.config.display(),
                    epoch = report.last_committed_epoch,
                    "reloading the pipeline file from a savepoint"
                );
                current = next;
                graph = next_graph;
            }
            _ => break report,
        }
    };
    if report.stopped {
        println!(
            "weir: stopped at epoch {} in {:.3} s, with a savepoint: the next start on \
             this data directory resumes from it",
            report.last_committed_epoch,
            report.elapsed.as_secs_f64()
        );
    } else if report.already_complete {
        println!(
            "weir: this data directory's run already completed (epoch {})",
            report.last_committed_epoch
        );
    } else if report.resumed_from_epoch > 0 {
        println!(
            "weir: resumed from committed epoch {}; finished at epoch {} in {:.3} s",
            report.resumed_from_epoch,
            report.last_committed_epoch,
            report.elapsed.as_secs_f64()
        );
    } else {
        println!(
            "weir: finished at epoch {} in {:.3} s",
            report.last_committed_epoch,
            report.elapsed.as_secs_f64()
        );
    }
    Ok(())
}
