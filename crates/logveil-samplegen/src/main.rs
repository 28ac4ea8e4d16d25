//! `logveil-samplegen`: deterministic, seedable sample data for logveil.
//!
//! Writes two days of Apache access logs, an accounts table (CSV, `SQLite` and Parquet), a demo key
//! and `truth.json`, the expected reports computed from what was generated.

mod accounts;
mod catalog;
mod logs;
mod output;
mod rng;
mod time;
mod truth;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "logveil-samplegen", version, about)]
struct Args {
    /// Seed for every random choice; the same seed gives byte-identical files.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output directory (created if missing; files in it are overwritten).
    #[arg(long, default_value = "sample-logs")]
    out: PathBuf,
    /// Instead of the samples: write only a big `combined_cookie` log of exactly N lines
    /// (the sample traffic model, repeated; for benchmarks). Needs `--log`.
    #[arg(long, value_name = "N", requires = "log")]
    lines: Option<u64>,
    /// Where `--lines` writes its log (a `PATH.parts` directory is used while writing).
    #[arg(long, value_name = "PATH", requires = "lines")]
    log: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let (Some(lines), Some(log)) = (args.lines, &args.log) {
        let bytes = logs::write_big_log(args.seed, lines, log)?;
        eprintln!(
            "logveil-samplegen: seed {} -> {}: {lines} lines, {bytes} bytes",
            args.seed,
            log.display()
        );
        return Ok(());
    }
    let s = output::generate(args.seed, &args.out)?;
    let suppressed = s.truth.demographics_daily_suppressed;
    eprintln!(
        "logveil-samplegen: seed {} -> {}: {} lines ({} rejected), {} accounts, {} distinct visitors, {} demographic cells published / {suppressed} suppressed",
        args.seed,
        args.out.display(),
        s.truth.lines_total,
        s.truth.lines_total - s.truth.lines_parsed(),
        s.accounts,
        s.truth.distinct_visitors,
        s.truth.demographics_daily.len(),
    );
    Ok(())
}
