//! Integration tests: run the real `logveil` binary on the bundled samples and read its
//! Parquet back. One test binary made of modules (see `util` for the shared helpers).

mod account_sources;
mod check;
mod classify;
mod consent;
mod daemon;
mod dead_letter;
mod disclosure;
mod export;
mod formats;
mod inputs;
mod keygen;
mod keys;
mod leaks;
mod lookup;
mod nats;
mod panics;
mod privacy;
mod readers;
mod releases;
mod rerun;
mod rotation;
mod s3;
mod sanitize;
mod scaleout;
mod scaleout_s3;
mod secrets;
mod stdin;
mod truth;
mod util;
