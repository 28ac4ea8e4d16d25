//! `logveil ledger show|verify PIPELINE`: what each audience was given, from the
//! hash-chained ledgers in the pipeline's state directory ([`logveil_report::ledger`]).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use logveil_report::dp::Rational;
use logveil_report::ledger::{self, Kind, Ledger};

use crate::config::{Overrides, Pipeline};

#[derive(Debug, Subcommand)]
pub enum LedgerAction {
    /// Every release recorded for each audience (or one), and ε and δ spent per period.
    Show {
        pipeline: PathBuf,
        #[arg(long)]
        audience: Option<String>,
        /// Privacy state directory instead of `privacy.state_dir`.
        #[arg(long, value_name = "DIR")]
        privacy_state: Option<PathBuf>,
    },
    /// Check every record's hash and the chain of each audience's ledger; exit 1 naming the first broken record.
    Verify {
        pipeline: PathBuf,
        #[arg(long)]
        audience: Option<String>,
        /// A head hash printed by an earlier verify (with --audience): fail unless it is still in the chain.
        #[arg(long, value_name = "HASH", requires = "audience")]
        anchor: Option<String>,
        /// Privacy state directory instead of `privacy.state_dir`.
        #[arg(long, value_name = "DIR")]
        privacy_state: Option<PathBuf>,
    },
}

pub fn ledger(action: &LedgerAction) -> Result<ExitCode> {
    let (pipeline_path, audience, privacy_state) = match action {
        LedgerAction::Show {
            pipeline,
            audience,
            privacy_state,
        }
        | LedgerAction::Verify {
            pipeline,
            audience,
            privacy_state,
            ..
        } => (pipeline, audience, privacy_state),
    };
    let overrides = Overrides {
        privacy_state: privacy_state.clone(),
        ..Overrides::default()
    };
    let pipeline = Pipeline::load(pipeline_path, &overrides)?;
    let ledger = Ledger::open(&pipeline.state_dir)
        .with_context(|| format!("state directory {}", pipeline.state_dir.display()))?;
    let audiences = match audience {
        Some(a) => vec![a.clone()],
        None => ledger.audiences()?,
    };
    let mut out = format!("state directory {}\n", pipeline.state_dir.display());
    if audiences.is_empty() {
        out.push_str("no releases recorded\n");
    }
    let mut failed = false;
    for audience in &audiences {
        let path = ledger.path_of(audience)?;
        match action {
            LedgerAction::Show { .. } => {
                let records = ledger.records(audience)?;
                let _ = writeln!(out, "audience {audience}: {} record(s)", records.len());
                let mut periods: std::collections::BTreeMap<&str, (Rational, Rational)> =
                    std::collections::BTreeMap::new();
                for r in &records {
                    let _ = writeln!(
                        out,
                        "  {:>4} {} {:<8} {} {} partition {} key {} ε {} δ {} {}",
                        r.seq,
                        r.time,
                        kind_text(r.kind),
                        r.period,
                        r.report,
                        r.partition,
                        if r.key_id.is_empty() { "-" } else { &r.key_id },
                        r.epsilon,
                        r.delta,
                        r.release_id
                    );
                    let entry = periods
                        .entry(r.period.as_str())
                        .or_insert((Rational::ZERO, Rational::ZERO));
                    entry.0 = entry.0.checked_add(r.epsilon).unwrap_or(entry.0);
                    entry.1 = entry.1.checked_add(r.delta).unwrap_or(entry.1);
                }
                for (period, (e, d)) in periods {
                    let _ = writeln!(out, "  spent in {period}: ε {e} δ {d}");
                }
            }
            LedgerAction::Verify { anchor, .. } => match ledger::verify(&path, anchor.as_deref()) {
                Ok(report) => {
                    let _ = writeln!(
                        out,
                        "audience {audience}: {} records, chain intact{}",
                        report.records,
                        report
                            .head_hash
                            .as_deref()
                            .map(|h| format!(
                                "; head {h} (keep it elsewhere; `--anchor` checks it later)"
                            ))
                            .unwrap_or_default()
                    );
                    if let Some(seq) = report.anchor_seq {
                        let _ = writeln!(out, "  anchor: record {seq}, unchanged");
                    }
                }
                Err(e) => {
                    failed = true;
                    writeln!(std::io::stderr().lock(), "error: {audience}: {e}")?;
                }
            },
        }
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn kind_text(kind: Kind) -> &'static str {
    match kind {
        Kind::Spend => "spend",
        Kind::Release => "release",
        Kind::Migrated => "migrated",
    }
}
