//! `weir top` and `weir tap`: clients of a running pipeline's admin
//! endpoint (`[runtime] metrics_listen`).
//!
//! - `weir top` scrapes `/metrics` once a second and shows, per component,
//!   events in and out per second, bytes out per second, errors, input
//!   ring occupancy and backpressure waits, and per sink its commit
//!   backlog, newest committed epoch, retries and delivery latency; above
//!   them the last committed epoch, epoch commit latency and WAL sync
//!   latency. A terminal UI (ratatui); `--once` prints one text frame.
//! - `weir tap OUTPUT` prints a sample of what a component emits as NDJSON
//!   (`/tap`, on when the pipeline sets `[runtime] tap = true`).
//! - `weir reload` sends SIGHUP to the run holding a data directory.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Where the admin endpoint is: `--url`, or the pipeline file's
/// `metrics_listen`.
#[derive(clap::Args, Debug)]
pub struct Endpoint {
    /// The admin endpoint, e.g. `http://127.0.0.1:9898`.
    #[arg(long, conflicts_with = "config")]
    url: Option<String>,
    /// The running pipeline's file: its `[runtime] metrics_listen` is the
    /// endpoint.
    #[arg(long)]
    config: Option<PathBuf>,
}

impl Endpoint {
    fn base(&self) -> Result<String> {
        if let Some(url) = &self.url {
            return Ok(url.trim_end_matches('/').to_owned());
        }
        let Some(path) = &self.config else {
            bail!("say where the pipeline's admin endpoint is: --url http://HOST:PORT or --config PIPELINE.toml");
        };
        let config = weir::operators::config::load_all(path).map_err(|errors| {
            let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("{}", text.join("\n"))
        })?;
        let Some(listen) = &config.runtime.metrics_listen else {
            bail!(
                "{} sets no `[runtime] metrics_listen`: the pipeline serves no admin endpoint",
                path.display()
            );
        };
        let mut addr: std::net::SocketAddr = listen
            .parse()
            .with_context(|| format!("`[runtime] metrics_listen` = {listen:?}"))?;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        Ok(format!("http://{addr}"))
    }
}

/// Options of `weir tap`.
#[derive(clap::Args, Debug)]
pub struct TapArgs {
    /// What to sample: `COMPONENT` (its main output) or `COMPONENT.OUTPUT`
    /// (a side output, e.g. `parse.dead_letter`, `window.late`).
    output: String,
    /// At most this many records.
    #[arg(long, default_value_t = 10)]
    limit: usize,
    /// Wait at most this long for them (e.g. `5s`).
    #[arg(long, default_value = "5s", value_parser = weir_loadgen::parse_duration)]
    wait: Duration,
    #[command(flatten)]
    endpoint: Endpoint,
}

/// Options of `weir top`.
#[derive(clap::Args, Debug)]
pub struct TopArgs {
    /// Seconds between refreshes.
    #[arg(long, default_value = "1s", value_parser = weir_loadgen::parse_duration)]
    interval: Duration,
    /// Print one frame as text (rates over one interval) and exit.
    #[arg(long)]
    once: bool,
    #[command(flatten)]
    endpoint: Endpoint,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(75)))
        .build()
        .into()
}

/// Runs `weir tap`.
pub fn tap(args: &TapArgs) -> Result<()> {
    let base = args.endpoint.base()?;
    let url = format!(
        "{base}/tap?output={}&limit={}&wait_ms={}",
        args.output,
        args.limit,
        args.wait.as_millis()
    );
    let mut response = agent()
        .get(&url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response
        .body_mut()
        .read_to_string()
        .with_context(|| format!("GET {url}: reading the answer"))?;
    if !status.is_success() {
        bail!("{url} answered {status}: {}", body.trim_end());
    }
    print!("{body}");
    Ok(())
}

/// One sample: metric name, label pairs, value.
type Sample = (String, Vec<(String, String)>, f64);

/// One scrape: every sample by metric name and label pairs.
#[derive(Debug, Default, Clone)]
pub(crate) struct Scrape {
    samples: Vec<Sample>,
}

impl Scrape {
    /// Parses the Prometheus text format (what weir renders: no escapes
    /// inside label values besides `\"` and `\\`).
    pub(crate) fn parse(text: &str) -> Scrape {
        let mut samples = Vec::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = match line.rsplit_once(' ') {
                Some(split) => split,
                None => continue,
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, Vec::new()),
            };
            samples.push((name.to_owned(), labels, value));
        }
        Scrape { samples }
    }

    /// The sum of `name`'s samples whose labels include every pair of
    /// `with`.
    fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.matching(name, with).sum()
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        with: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = f64> + 'a {
        self.samples
            .iter()
            .filter(move |(n, labels, _)| {
                n == name
                    && with
                        .iter()
                        .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, value)| *value)
    }

    /// The values of label `label` on `name`'s samples.
    fn label_values(&self, name: &str, label: &str) -> BTreeSet<String> {
        self.samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .filter_map(|(_, labels, _)| {
                labels
                    .iter()
                    .find(|(k, _)| k == label)
                    .map(|(_, v)| v.clone())
            })
            .collect()
    }
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((index, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = index + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.push((key.trim_start_matches(',').to_owned(), value));
        rest = &after[end..];
    }
    labels
}

/// What `weir top` shows, from two scrapes `seconds` apart.
#[derive(Debug, Default)]
pub(crate) struct Frame {
    pub(crate) committed_epoch: Option<f64>,
    /// Mean epoch commit latency over the interval, in ms.
    pub(crate) commit_ms: Option<f64>,
    /// Mean shard WAL sync latency over the interval, in ms.
    pub(crate) wal_sync_ms: Option<f64>,
    pub(crate) components: Vec<ComponentRow>,
}

/// One component's line.
#[derive(Debug, Default, Clone)]
pub(crate) struct ComponentRow {
    pub(crate) name: String,
    pub(crate) in_per_s: f64,
    pub(crate) out_per_s: f64,
    pub(crate) bytes_out_per_s: f64,
    /// Failures and dead letters, in total.
    pub(crate) errors: f64,
    /// Messages waiting in its input rings (all shards).
    pub(crate) ring: f64,
    /// Times per second it found an output ring full.
    pub(crate) full_waits_per_s: f64,
    pub(crate) sink: Option<SinkState>,
}

/// A sink's delivery state.
#[derive(Debug, Default, Clone)]
pub(crate) struct SinkState {
    /// Pre-committed epochs not yet published, summed over shards.
    pub(crate) backlog: f64,
    /// The newest epoch every shard published.
    pub(crate) committed: f64,
    pub(crate) retries: f64,
    /// Mean delivery latency over the interval, in ms.
    pub(crate) latency_ms: Option<f64>,
}

/// The mean of histogram `name` (with `with`) over the interval, in ms.
fn mean_ms(old: &Scrape, new: &Scrape, name: &str, with: &[(&str, &str)]) -> Option<f64> {
    let count = new.sum(&format!("{name}_count"), with) - old.sum(&format!("{name}_count"), with);
    let sum = new.sum(&format!("{name}_sum"), with) - old.sum(&format!("{name}_sum"), with);
    (count > 0.0).then(|| sum / count * 1e3)
}

impl Frame {
    pub(crate) fn new(old: &Scrape, new: &Scrape, seconds: f64) -> Frame {
        let rate = |name: &str, with: &[(&str, &str)]| {
            ((new.sum(name, with) - old.sum(name, with)) / seconds).max(0.0)
        };
        let mut names = BTreeSet::new();
        for family in [
            "weir_component_events_in_total",
            "weir_component_events_out_total",
            "weir_sink_commits_total",
        ] {
            names.extend(new.label_values(family, "component"));
        }
        let error_families: BTreeSet<&str> = new
            .samples
            .iter()
            .map(|(name, _, _)| name.as_str())
            .filter(|name| name.ends_with("dead_letters_total"))
            .collect();
        let components = names
            .into_iter()
            .map(|name| {
                let with = [("component", name.as_str())];
                let errors = new.sum("weir_component_failures_total", &with)
                    + error_families
                        .iter()
                        .map(|family| new.sum(family, &with))
                        .sum::<f64>();
                let sink = (new.matching("weir_sink_commits_total", &with).count() > 0
                    || new.matching("weir_sink_backlog_epochs", &with).count() > 0)
                    .then(|| SinkState {
                        backlog: new.sum("weir_sink_backlog_epochs", &with),
                        committed: new
                            .matching("weir_sink_committed_epoch", &with)
                            .fold(f64::INFINITY, f64::min),
                        retries: new.sum("weir_sink_commit_retries_total", &with),
                        latency_ms: mean_ms(old, new, "weir_sink_delivery_latency_seconds", &with),
                    });
                ComponentRow {
                    in_per_s: rate("weir_component_events_in_total", &with),
                    out_per_s: rate("weir_component_events_out_total", &with),
                    bytes_out_per_s: rate("weir_component_bytes_out_total", &with),
                    errors,
                    ring: new.sum("weir_ring_occupancy_batches", &with),
                    full_waits_per_s: rate("weir_ring_full_waits_total", &with),
                    sink,
                    name,
                }
            })
            .collect();
        Frame {
            committed_epoch: new.matching("weir_epoch_committed", &[]).next(),
            commit_ms: mean_ms(old, new, "weir_epoch_commit_latency_seconds", &[]),
            wal_sync_ms: mean_ms(
                old,
                new,
                "weir_wal_sync_latency_seconds",
                &[("log", "shard")],
            ),
            components,
        }
    }

    /// The header line.
    fn summary(&self) -> String {
        let ms =
            |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1} ms"));
        format!(
            "committed epoch {}   epoch commit {}   WAL sync {}",
            self.committed_epoch
                .map_or_else(|| "-".to_owned(), |e| format!("{e:.0}")),
            ms(self.commit_ms),
            ms(self.wal_sync_ms),
        )
    }

    const HEADER: [&'static str; 11] = [
        "component",
        "in/s",
        "out/s",
        "bytes out/s",
        "errors",
        "ring",
        "full/s",
        "backlog",
        "sink epoch",
        "retries",
        "deliver",
    ];

    /// Each component's cells, in [`Self::HEADER`]'s order.
    fn cells(&self) -> Vec<[String; 11]> {
        self.components
            .iter()
            .map(|row| {
                let sink = row.sink.as_ref();
                let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
                [
                    row.name.clone(),
                    human(row.in_per_s),
                    human(row.out_per_s),
                    human_bytes(row.bytes_out_per_s),
                    format!("{:.0}", row.errors),
                    format!("{:.0}", row.ring),
                    human(row.full_waits_per_s),
                    or_dash(sink.map(|s| format!("{:.0}", s.backlog))),
                    or_dash(
                        sink.filter(|s| s.committed.is_finite())
                            .map(|s| format!("{:.0}", s.committed)),
                    ),
                    or_dash(sink.map(|s| format!("{:.0}", s.retries))),
                    or_dash(
                        sink.and_then(|s| s.latency_ms)
                            .map(|ms| format!("{ms:.1} ms")),
                    ),
                ]
            })
            .collect()
    }

    /// The frame as plain text (`--once`).
    pub(crate) fn text(&self) -> String {
        let mut rows = vec![Self::HEADER.map(str::to_owned)];
        rows.extend(self.cells());
        let widths: Vec<usize> = (0..Self::HEADER.len())
            .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
            .collect();
        let mut out = self.summary();
        out.push('\n');
        for row in rows {
            let mut line = String::new();
            for (column, cell) in row.iter().enumerate() {
                if column == 0 {
                    let _ = write!(line, "{cell:<width$}", width = widths[0]);
                } else {
                    let _ = write!(line, "  {cell:>width$}", width = widths[column]);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `12.3M`, `45.6k`, `789`.
fn human(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

/// `12.3 MB`, `45.6 kB`, `789 B`.
fn human_bytes(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.1} MB", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1} kB", value / 1e3)
    } else {
        format!("{value:.0} B")
    }
}

fn scrape(agent: &ureq::Agent, url: &str) -> Result<Scrape> {
    let mut response = agent
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response.body_mut().read_to_string()?;
    if !status.is_success() {
        bail!("{url} answered {status}: {}", body.trim_end());
    }
    Ok(Scrape::parse(&body))
}

/// Runs `weir top`.
pub fn top(args: &TopArgs) -> Result<()> {
    let url = format!("{}/metrics", args.endpoint.base()?);
    let agent = agent();
    let interval = args.interval.max(Duration::from_millis(100));
    let mut old = scrape(&agent, &url)?;
    let mut at = Instant::now();
    if args.once {
        std::thread::sleep(interval);
        let new = scrape(&agent, &url)?;
        print!(
            "{}",
            Frame::new(&old, &new, at.elapsed().as_secs_f64()).text()
        );
        return Ok(());
    }
    let mut terminal = ratatui::init();
    let result = (|| -> Result<()> {
        let mut frame = Frame::default();
        let mut error: Option<String> = None;
        loop {
            terminal.draw(|f| draw(f, &url, &frame, error.as_deref()))?;
            let deadline = at + interval;
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                if ratatui::crossterm::event::poll(left)? {
                    if let ratatui::crossterm::event::Event::Key(key) =
                        ratatui::crossterm::event::read()?
                    {
                        use ratatui::crossterm::event::{KeyCode, KeyModifiers};
                        let ctrl_c = key.code == KeyCode::Char('c')
                            && key.modifiers.contains(KeyModifiers::CONTROL);
                        if matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                            return Ok(());
                        }
                    }
                }
            }
            match scrape(&agent, &url) {
                Ok(new) => {
                    frame = Frame::new(&old, &new, at.elapsed().as_secs_f64());
                    old = new;
                    error = None;
                }
                Err(e) => error = Some(format!("{e:#}")),
            }
            at = Instant::now();
        }
    })();
    ratatui::restore();
    result
}

fn draw(f: &mut ratatui::Frame, url: &str, frame: &Frame, error: Option<&str>) {
    use ratatui::layout::{Constraint, Layout};
    use ratatui::style::{Modifier, Style};
    use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};

    let [head, body, foot] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(f.area());
    let title = format!(" weir top — {url} ");
    let summary = match error {
        Some(error) => format!("scrape failed: {error}"),
        None => frame.summary(),
    };
    f.render_widget(
        Paragraph::new(summary).block(Block::default().borders(Borders::ALL).title(title)),
        head,
    );
    let widths = [
        Constraint::Min(14),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(11),
        Constraint::Length(6),
        Constraint::Length(5),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(10),
        Constraint::Length(7),
        Constraint::Length(9),
    ];
    let header = Row::new(Frame::HEADER).style(Style::default().add_modifier(Modifier::BOLD));
    let rows: Vec<Row> = frame.cells().into_iter().map(Row::new).collect();
    f.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(Block::default().borders(Borders::ALL).title(" components ")),
        body,
    );
    f.render_widget(
        Paragraph::new(
            "q quit · rates per second over the last interval · ring: batches waiting · \
             backlog: epochs a sink has not published",
        ),
        foot,
    );
}

/// `weir reload`: sends SIGHUP to the `weir run` that holds the data
/// directory (`--data-dir`, or the pipeline file's `[runtime] data_dir`),
/// whose pid its `lock` file names.
pub fn reload(config: Option<&std::path::Path>, data_dir: Option<PathBuf>) -> Result<()> {
    let dir = match (data_dir, config) {
        (Some(dir), _) => dir,
        (None, Some(path)) => {
            let loaded = weir::operators::config::load_all(path).map_err(|errors| {
                let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
                anyhow::anyhow!(
                    "cannot read the run's data directory from {} (name it with --data-dir; \
                     the run would refuse this file anyway):\n{}",
                    path.display(),
                    text.join("\n")
                )
            })?;
            loaded.runtime.data_dir.with_context(|| {
                format!(
                    "{} sets no `[runtime] data_dir`: name the run's with --data-dir",
                    path.display()
                )
            })?
        }
        (None, None) => bail!("name the run: weir reload PIPELINE.toml, or --data-dir DIR"),
    };
    let lock = dir.join("lock");
    let file = std::fs::File::open(&lock).with_context(|| {
        format!(
            "{}: no weir run has used this data directory",
            lock.display()
        )
    })?;
    // A lock nobody holds means no run: taking it would succeed.
    // SAFETY: `flock` on a descriptor this function owns open.
    let free = unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    } == 0;
    if free {
        bail!("no weir run holds {} now", dir.display());
    }
    let text = std::fs::read_to_string(&lock).with_context(|| lock.display().to_string())?;
    let pid: i32 = text
        .trim()
        .parse()
        .with_context(|| format!("{}: not a process id: {:?}", lock.display(), text.trim()))?;
    // SAFETY: `kill` with a pid and a signal number.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        let error = std::io::Error::last_os_error();
        bail!(
            "cannot signal process {pid} (running {}): {error}",
            dir.display()
        );
    }
    println!(
        "weir: asked process {pid} (running {}) to reload its pipeline file; its log says \
         whether it did",
        dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component_names(frame: &Frame) -> Vec<&str> {
        frame.components.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn rates_come_from_two_scrapes() {
        let old = Scrape::parse(
            "weir_component_events_out_total{component=\"src\",output=\"_default\"} 100\n\
             weir_component_events_in_total{component=\"out\"} 50\n\
             weir_sink_commits_total{component=\"out\"} 1\n\
             weir_sink_delivery_latency_seconds_sum{component=\"out\"} 0.5\n\
             weir_sink_delivery_latency_seconds_count{component=\"out\"} 1\n",
        );
        let new = Scrape::parse(
            "# HELP x y\n\
             weir_component_events_out_total{component=\"src\",output=\"_default\"} 300\n\
             weir_component_events_in_total{component=\"out\"} 250\n\
             weir_sink_commits_total{component=\"out\"} 3\n\
             weir_sink_backlog_epochs{component=\"out\",shard=\"0\"} 2\n\
             weir_sink_backlog_epochs{component=\"out\",shard=\"1\"} 1\n\
             weir_sink_committed_epoch{component=\"out\",shard=\"0\"} 7\n\
             weir_sink_committed_epoch{component=\"out\",shard=\"1\"} 6\n\
             weir_sink_delivery_latency_seconds_sum{component=\"out\"} 0.7\n\
             weir_sink_delivery_latency_seconds_count{component=\"out\"} 3\n\
             weir_parse_dead_letters_total{component=\"src\"} 4\n\
             weir_epoch_committed 9\n",
        );
        let frame = Frame::new(&old, &new, 2.0);
        assert_eq!(component_names(&frame), ["out", "src"]);
        let src = &frame.components[1];
        assert_eq!(src.out_per_s, 100.0);
        assert_eq!(src.errors, 4.0);
        assert!(src.sink.is_none());
        let out = &frame.components[0];
        assert_eq!(out.in_per_s, 100.0);
        let sink = out.sink.as_ref().unwrap();
        assert_eq!(sink.backlog, 3.0);
        assert_eq!(sink.committed, 6.0);
        assert!((sink.latency_ms.unwrap() - 100.0).abs() < 1e-9);
        assert_eq!(frame.committed_epoch, Some(9.0));
        let text = frame.text();
        assert!(text.starts_with("committed epoch 9 "), "{text}");
        assert!(text.contains("\nsrc "), "{text}");
    }

    #[test]
    fn labels_with_escapes_parse() {
        let scrape = Scrape::parse("m{a=\"x\\\"y\",b=\"z\"} 1\n");
        assert_eq!(
            scrape.samples[0].1,
            vec![("a".into(), "x\"y".into()), ("b".into(), "z".into())]
        );
    }
}
