//! The `logveil` command: wires the crates together. `run` is the batch job, `check`
//! validates a pipeline, `keygen` makes a key file.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

mod chunks;
mod config;
mod daemon;
mod engine;
mod ledger;
mod lookup;
mod publish;
mod run;
mod scaleout;
mod store;

use config::{Overrides, Pipeline};

#[derive(Debug, Parser)]
#[command(
    name = "logveil",
    version,
    about = "Privacy-preserving web access-log reporting"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a pipeline over its inputs and write its reports.
    Run {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
        /// Input file or glob, instead of `input.paths` (repeatable; relative to the current directory; `-` is stdin).
        #[arg(long = "input", value_name = "PATH")]
        inputs: Vec<String>,
        /// Log format: a preset name (common, combined, `combined_cookie`, `vhost_combined`) or an Apache `LogFormat` string.
        #[arg(long, value_name = "NAME_OR_LOGFORMAT")]
        format: Option<String>,
        /// Account source instead of `accounts.source`: csv:PATH, sqlite:PATH, parquet:PATH or postgres://….
        #[arg(long, value_name = "SOURCE")]
        accounts: Option<String>,
        /// Output directory instead of `output.dir`.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Also write the run summary as JSON to FILE.
        #[arg(long, value_name = "FILE")]
        summary: Option<PathBuf>,
        /// Write rejected lines, redacted, as JSON lines to PATH instead of `input.dead_letter`.
        #[arg(long, value_name = "PATH")]
        dead_letter: Option<PathBuf>,
        /// Worker threads (default: one per core).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        threads: Option<u16>,
        /// Privacy state directory (the audiences' release ledgers) instead of `privacy.state_dir`.
        #[arg(long, value_name = "DIR")]
        privacy_state: Option<PathBuf>,
    },
    /// Follow live logs: write each report window once the watermark passes it, checkpoint, survive rotation and restarts.
    Daemon {
        /// The pipeline file (TOML); SIGHUP reloads it.
        pipeline: PathBuf,
        /// Input glob, instead of `input.paths` (repeatable; relative to the current directory).
        #[arg(long = "input", value_name = "GLOB")]
        inputs: Vec<String>,
        /// Output directory instead of `output.dir`.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// State directory (checkpoint, lock) instead of `daemon.state_dir`.
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// Stop when no input has grown for SECONDS: write every window, checkpoint, exit 0.
        #[arg(long, value_name = "SECONDS")]
        idle_exit: Option<u64>,
        /// Also write the summary as JSON to FILE when stopping.
        #[arg(long, value_name = "FILE")]
        summary: Option<PathBuf>,
        /// Serve /metrics and /healthz here instead of `daemon.metrics_addr` (loopback only).
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<String>,
        /// Privacy state directory (the audiences' release ledgers) instead of `privacy.state_dir`.
        #[arg(long, value_name = "DIR")]
        privacy_state: Option<PathBuf>,
    },
    /// Load and validate a pipeline and its policy; exit 1 listing every problem.
    Check { pipeline: PathBuf },
    /// Inspect or rotate a key file.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Create a key file with one new random 256-bit key (mode 0600; never overwrites).
    Keygen {
        path: PathBuf,
        /// First UTC day the key is used (YYYY-MM-DD).
        #[arg(long, default_value = "1970-01-01")]
        not_before: String,
    },
    /// Scale-out: follow logs on a web server, pseudonymize there and publish the events to NATS `JetStream`.
    Edge(scaleout::edge::EdgeArgs),
    /// Scale-out: consume some partitions from `JetStream` and write partial aggregates.
    Aggregate(scaleout::aggregate::AggregateArgs),
    /// Scale-out: finalise every window all partitions have passed: merge partials, apply disclosure control once, write the reports.
    Merge(scaleout::merge::MergeArgs),
    /// Audited re-identification: the visitor ids under which a cookie value or client address appears; recorded in the audit log before anything is printed.
    Lookup(lookup::LookupArgs),
    /// The re-identification audit log.
    Audit {
        #[command(subcommand)]
        action: lookup::AuditAction,
    },
    /// The releases each audience was given and the privacy budget they spent (the ledgers in `[privacy] state_dir`).
    Ledger {
        #[command(subcommand)]
        action: ledger::LedgerAction,
    },
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// List key ids and the day each comes into force (never key material).
    List { path: PathBuf },
    /// Add a new random key, in force from DATE (later than every existing key).
    Rotate {
        path: PathBuf,
        /// First UTC day the new key is used (YYYY-MM-DD).
        #[arg(long)]
        not_before: String,
    },
}

fn main() -> ExitCode {
    install_panic_hook();
    // A hidden, debug-build-only trigger for the integration test of the hook
    // (`tests/it/panics.rs`): release builds do not have it.
    #[cfg(debug_assertions)]
    if let Some(message) = std::env::var_os("LOGVEIL_TEST_PANIC") {
        panic!("{}", message.to_string_lossy());
    }
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOGVEIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    // The daemon logs JSON, one object per line (for journald and log shippers).
    if matches!(
        cli.command,
        Command::Daemon { .. } | Command::Edge(_) | Command::Aggregate(_)
    ) {
        logs.json().flatten_event(true).init();
    } else {
        logs.init();
    }
    match dispatch(cli) {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Replaces the default panic message, which quotes the payload — and a payload can quote
/// input (a slice error prints the string it slices) — by a fixed line with the panic's
/// location only. The exit code stays the default (101 for a panic on the main thread).
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        // Never `eprintln!`: a closed stderr must not panic inside the hook.
        let _ = writeln!(
            std::io::stderr().lock(),
            "{}",
            panic_report(info.location())
        );
    }));
}

/// The one line the panic hook prints: a fixed text and `file:line:column`, never the payload.
fn panic_report(location: Option<&std::panic::Location<'_>>) -> String {
    let at = location.map_or_else(
        || "an unknown location".to_owned(),
        |l| format!("{}:{}:{}", l.file(), l.line(), l.column()),
    );
    format!(
        "logveil: internal error at {at} (a bug: please report it with the command line, not the input)"
    )
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run {
            pipeline,
            inputs,
            format,
            accounts,
            out,
            summary,
            dead_letter,
            threads,
            privacy_state,
        } => {
            let overrides = Overrides {
                inputs,
                format,
                accounts,
                out,
                dead_letter,
                privacy_state,
            };
            let pipeline = match Pipeline::load(&pipeline, &overrides) {
                Ok(p) => p,
                Err(errors) => {
                    for e in &errors.0 {
                        tracing::error!("{e}");
                    }
                    return Ok(ExitCode::FAILURE);
                }
            };
            let result = run::run(&pipeline, threads.map(usize::from))?;
            if let Some(path) = summary {
                let json = serde_json::to_vec_pretty(&result)?;
                std::fs::write(&path, json)
                    .with_context(|| format!("writing summary {}", path.display()))?;
            }
            write_stdout(&run::render(&result, &pipeline.out_dir))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Daemon {
            pipeline,
            inputs,
            out,
            state,
            idle_exit,
            summary,
            metrics_addr,
            privacy_state,
        } => daemon::run(&daemon::DaemonArgs {
            pipeline,
            inputs,
            out,
            state,
            idle_exit,
            summary,
            metrics_addr,
            privacy_state,
        }),
        Command::Edge(args) => scaleout::edge::run(&args),
        Command::Aggregate(args) => scaleout::aggregate::run(&args),
        Command::Merge(args) => scaleout::merge::run(&args),
        Command::Check { pipeline } => match Pipeline::load(&pipeline, &Overrides::default()) {
            Ok(p) => {
                write_stdout(&format!(
                    "{}: ok ({} report(s), policy {} sha256 {})\n",
                    pipeline.display(),
                    p.reports.len(),
                    p.policy.path.display(),
                    &p.policy.sha256[..12]
                ))?;
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                let mut stderr = std::io::stderr().lock();
                for e in &errors.0 {
                    writeln!(stderr, "error: {e}")?;
                }
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Keys {
            action: KeysAction::List { path },
        } => {
            let ring = logveil_privacy::KeyRing::load(&path)?;
            let mut out = format!(
                "{}{}\n",
                path.display(),
                if ring.is_demo() {
                    " (DEMO KEY FILE)"
                } else {
                    ""
                }
            );
            for key in ring.keys() {
                let _ = writeln!(out, "{}\tnot_before {}", key.id(), key.not_before());
            }
            write_stdout(&out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys {
            action: KeysAction::Rotate { path, not_before },
        } => {
            let id = logveil_privacy::KeyRing::rotate(&path, &not_before)?;
            write_stdout(&format!(
                "{}: new key {id} in force from {not_before}; older keys kept for older logs\n",
                path.display()
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keygen { path, not_before } => {
            let id = logveil_privacy::KeyRing::generate(&path, &not_before)?;
            write_stdout(&format!(
                "{}: new key {id} (not before {not_before}), mode 0600\n",
                path.display()
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Lookup(args) => {
            write_stdout(&lookup::lookup(&args)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { action } => lookup::audit(action),
        Command::Ledger { action } => ledger::ledger(&action),
    }
}

fn write_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
