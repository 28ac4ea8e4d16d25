//! Reader compatibility: every output file opens in `DuckDB` and pyarrow with the documented types.
//!
//! Needs a Python with `duckdb`, `pyarrow` and `pandas`: `scripts/test` provides one
//! (`.venv`) and passes it as `LOGVEIL_PYTHON`. Without it the test is skipped with a
//! notice, except under CI (`CI` set), where that is a failure.

use crate::util::{repo, run_daily};

#[test]
fn duckdb_and_pyarrow_read_every_file_with_documented_types() {
    let python = match std::env::var("LOGVEIL_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            assert!(
                std::env::var("CI").map_or(true, |v| v.is_empty()),
                "CI must run the reader test: run the suite through scripts/test (sets LOGVEIL_PYTHON)"
            );
            eprintln!(
                "notice: skipping reader test: LOGVEIL_PYTHON not set (run scripts/test to include it)"
            );
            return;
        }
    };
    let run = run_daily(&[]);
    let out = std::process::Command::new(&python)
        .arg(repo().join("tests/readers/check_parquet.py"))
        .arg(&run.out_dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "reader check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("checked 8 files"), "{stdout}");
}
