//! `--accounts` from CSV, `SQLite`, Parquet and `PostgreSQL` (a throwaway cluster, when
//! installed; required under CI): the same `demographics_daily`, join counts and load
//! counts, and a `PostgreSQL` password never shows in what the run prints or writes.

#[path = "../../../logveil-accounts/tests/support/postgres_cluster.rs"]
mod postgres_cluster;

use crate::util::{
    Run, assert_matches_truth, bin, files_under, privacy_state_beside, repo, report_rows, run_daily,
};

/// What must not depend on the source: the report, its join counts, the load counts.
fn comparable(run: &Run) -> (Vec<serde_json::Value>, serde_json::Value, serde_json::Value) {
    let mut accounts = run.summary["accounts"].clone();
    accounts
        .as_object_mut()
        .expect("summary has accounts")
        .remove("source");
    (
        report_rows(&run.out_dir, "demographics_daily"),
        run.summary["reports"]["demographics_daily"]["joins"].clone(),
        accounts,
    )
}

/// A run with `--accounts spec` and the environment variables `env`.
fn run_with_accounts(spec: &str, env: &[(&str, &str)]) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let summary_path = tmp.path().join("summary.json");
    let output = bin()
        .current_dir(repo())
        .envs(env.iter().copied())
        .args(["run", "pipelines/daily.toml", "--accounts", spec, "--out"])
        .arg(&out_dir)
        .arg("--summary")
        .arg(&summary_path)
        .arg("--privacy-state")
        .arg(privacy_state_beside(&out_dir))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "logveil run --accounts {spec} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    Run {
        output,
        out_dir,
        summary,
        _tmp: tmp,
    }
}

/// Every byte the run printed or wrote, as text.
fn everything_written(run: &Run) -> String {
    let mut all = run.stdout() + &run.stderr() + &run.summary.to_string();
    for file in files_under(&run.out_dir) {
        all.push_str(&String::from_utf8_lossy(
            &std::fs::read(run.out_dir.join(file)).unwrap(),
        ));
    }
    all
}

#[test]
fn every_account_source_gives_the_same_demographics() {
    let csv = run_daily(&["--accounts", "csv:sample-logs/accounts.csv"]);
    assert_matches_truth(&csv.out_dir, "demographics_daily", "csv");
    let want = comparable(&csv);
    assert_eq!(want.2["accounts"], 600);
    assert!(want.1["joined"].as_u64().unwrap() > 0, "{}", want.1);
    for spec in [
        "sqlite:sample-logs/accounts.db",
        "parquet:sample-logs/accounts.parquet",
    ] {
        let run = run_daily(&["--accounts", spec]);
        assert_eq!(comparable(&run), want, "{spec}");
    }

    let Some(cluster) =
        postgres_cluster::start_or_skip("every_account_source_gives_the_same_demographics")
    else {
        return;
    };
    let password = postgres_cluster::READER_PASSWORD;
    // Password in the URL (date/boolean columns).
    let url = cluster.url(postgres_cluster::READER, Some(password), "crm_typed");
    let run = run_with_accounts(&url, &[]);
    assert_eq!(comparable(&run), want, "postgres crm_typed");
    let written = everything_written(&run);
    assert!(
        !written.contains(password),
        "the password leaked:\n{written}"
    );
    assert!(
        run.summary["accounts"]["source"]
            .as_str()
            .unwrap()
            .contains("logveil_reader:***@"),
        "{}",
        run.summary["accounts"]
    );
    // Password from PGPASSWORD (text/integer columns).
    let url = cluster.url(postgres_cluster::READER, None, "crm_plain");
    let run = run_with_accounts(&url, &[("PGPASSWORD", password)]);
    assert_eq!(comparable(&run), want, "postgres crm_plain");
    assert!(!everything_written(&run).contains(password));

    // A wrong password: the run fails, saying why, without showing it.
    let wrong = "Wr0ng-Pa55-in-url-7731";
    let tmp = tempfile::tempdir().unwrap();
    let out = bin()
        .current_dir(repo())
        .args(["run", "pipelines/daily.toml", "--accounts"])
        .arg(cluster.url(postgres_cluster::READER, Some(wrong), "crm_typed"))
        .arg("--out")
        .arg(tmp.path().join("out"))
        .arg("--privacy-state")
        .arg(tmp.path().join("privacy-state"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("password authentication failed") && !stderr.contains(wrong),
        "{stderr}"
    );
}
