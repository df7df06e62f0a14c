//! The `weir loadgen` command line: a run with the options of [`Args`], or
//! the `plot` subcommand ([`Cli`], [`cli_main`]).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use crate::cli::Args;
use crate::{plot_svg, read_hgrm, run};

/// The `weir loadgen` command line: a run, or `plot`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Cli {
    /// A subcommand instead of a run.
    #[command(subcommand)]
    pub command: Option<CliCommand>,
    /// The run's options.
    #[command(flatten)]
    pub args: Args,
}

/// `weir loadgen` subcommands.
#[derive(Subcommand, Debug)]
pub enum CliCommand {
    /// Overlay the latency distributions of several runs (`.hgrm` files)
    /// in one SVG plot.
    Plot {
        /// `.hgrm` files, one line each (named after the file).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The SVG file to write.
        #[arg(short, long)]
        output: PathBuf,
    },
}

/// Runs the `weir loadgen` command line: a run (printing its summary table
/// on stdout) or a subcommand.
pub fn cli_main(cli: Cli) -> Result<()> {
    match cli.command {
        Some(CliCommand::Plot { files, output }) => plot_files(&files, &output),
        None => {
            let summary = run(cli.args)?;
            print!("{summary}");
            Ok(())
        }
    }
}

/// Reads `.hgrm` files and writes their overlaid plot to `output`.
pub fn plot_files(files: &[PathBuf], output: &Path) -> Result<()> {
    let mut runs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let rows = read_hgrm(&text);
        if rows.is_empty() {
            bail!("{} holds no percentile distribution", file.display());
        }
        let name = file
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_else(|| file.display().to_string());
        runs.push((name, rows.iter().map(|&(v, p, _)| (p, v)).collect()));
    }
    std::fs::write(output, plot_svg(&runs))
        .with_context(|| format!("cannot write {}", output.display()))
}
