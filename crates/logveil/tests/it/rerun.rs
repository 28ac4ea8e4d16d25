//! Re-running a day replaces its partitions: same rows, no extra files.

use crate::util::{files_under, report_rows, run_into};

#[test]
fn rerun_same_input_gives_same_rows_and_no_extra_files() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let first = run_into(
        &out,
        &tmp.path().join("s1.json"),
        &[],
        tempfile::tempdir().unwrap(),
    );
    let files_before = files_under(&out);
    let rows_before: Vec<_> = ["page_views_hourly", "demographics_daily"]
        .iter()
        .map(|r| report_rows(&out, r))
        .collect();
    let _second = run_into(
        &out,
        &tmp.path().join("s2.json"),
        &[],
        tempfile::tempdir().unwrap(),
    );
    assert_eq!(
        files_under(&out),
        files_before,
        "no extra or temporary files"
    );
    let rows_after: Vec<_> = ["page_views_hourly", "demographics_daily"]
        .iter()
        .map(|r| report_rows(&out, r))
        .collect();
    assert_eq!(rows_after, rows_before);
    drop(first);
}

#[test]
fn rerunning_one_day_replaces_only_that_day() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    run_into(
        &out,
        &tmp.path().join("s1.json"),
        &[],
        tempfile::tempdir().unwrap(),
    );
    let all_days = report_rows(&out, "visitors_daily");
    let day2 = crate::util::repo().join("sample-logs/access-2026-11-02.log");
    run_into(
        &out,
        &tmp.path().join("s2.json"),
        &["--input", day2.to_str().unwrap()],
        tempfile::tempdir().unwrap(),
    );
    assert_eq!(
        report_rows(&out, "visitors_daily"),
        all_days,
        "day 1 untouched, day 2 replaced by identical rows"
    );
    assert_eq!(files_under(&out).len(), 8);
}
