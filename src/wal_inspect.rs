//! `weir wal inspect DIR`: describes one log, or every log of a data
//! directory (the coordinator's, then each shard's), without changing
//! anything.
//!
//! It fails (exit status 1) if any log would be refused at open: corrupt,
//! missing segments (`docs/wal-format.md` §8), or, in a data directory, a
//! shard log that ends below the durable LSN the coordinator's commit
//! records name for it (§11). A clean log or a torn tail is no failure.

use anyhow::{Context, Result};
use weir::wal::{InspectReport, Verdict};

/// Inspects `dir`; see the module documentation.
pub fn inspect(dir: &std::path::Path) -> Result<()> {
    let logs = weir::runtime::epoch::data_dir_logs(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?;
    if logs.is_empty() {
        let report =
            weir::wal::inspect(dir).with_context(|| format!("cannot inspect {}", dir.display()))?;
        print!("{report}");
        return refused(&[(dir.display().to_string(), report)], &[]);
    }
    println!(
        "data directory {}: {} log(s): {}",
        dir.display(),
        logs.len(),
        logs.iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut reports = Vec::with_capacity(logs.len());
    for (name, log) in &logs {
        let report = weir::wal::inspect(log)
            .with_context(|| format!("cannot inspect {name} ({})", log.display()))?;
        println!("\n== {name} ==");
        print!("{report}");
        reports.push((name.clone(), report));
    }
    let short = ends_below_commits(dir, &reports)?;
    if !short.is_empty() {
        println!("\n== against the commit records ==");
        for problem in &short {
            println!("  ! {problem}");
        }
    }
    refused(&reports, &short)
}

/// The shard logs among `reports` that end below the durable LSN the
/// coordinator's commit records name for them, each said in a line.
fn ends_below_commits(
    dir: &std::path::Path,
    reports: &[(String, InspectReport)],
) -> Result<Vec<String>> {
    let named = weir::runtime::epoch::committed_shard_lsns(dir)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("cannot read the commit records in {}", dir.display()))?;
    let mut short = Vec::new();
    for (name, report) in reports {
        let shard = name
            .strip_prefix("shard ")
            .and_then(|n| n.parse::<usize>().ok());
        let Some(&(durable, epoch)) = shard.and_then(|shard| named.get(shard)) else {
            continue;
        };
        let ends = report.next_lsn();
        if ends < durable && !report.is_refused() {
            short.push(format!(
                "{name}: the log ends at {ends}, but the commit of epoch {epoch} found every \
                 record below {durable} durable: records from {ends} up to {durable} are \
                 missing (its newest segments deleted or lost?)"
            ));
        }
    }
    Ok(short)
}

/// Fails naming every log that would be refused at open, and why.
fn refused(reports: &[(String, InspectReport)], short: &[String]) -> Result<()> {
    let mut refused: Vec<String> = reports
        .iter()
        .filter(|(_, report)| report.is_refused())
        .map(|(name, report)| format!("{name}: {}", verdict(report.verdict())))
        .collect();
    refused.extend(short.iter().cloned());
    if refused.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "{} log(s) would be refused at open: {}",
        refused.len(),
        refused.join("; ")
    )
}

fn verdict(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Corrupt(corruption) => format!("corrupt: {corruption}"),
        Verdict::Gap(gap) => format!("missing segments: {gap}"),
        Verdict::Clean | Verdict::Torn(_) => "opens".to_string(),
    }
}
