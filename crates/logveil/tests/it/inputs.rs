//! Input variants: compressed files, CSV accounts, hostile bytes, time zones.

use std::io::Write;

use crate::util::{bin, files_under, repo, report_rows, run_daily, truth};

#[test]
fn gzip_and_zstd_inputs_give_the_same_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = repo().join("sample-logs");
    let gz = tmp.path().join("access-2026-11-01.log.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(&std::fs::read(logs.join("access-2026-11-01.log")).unwrap())
        .unwrap();
    enc.finish().unwrap();
    let zst = tmp.path().join("access-2026-11-02.log.zst");
    std::fs::write(
        &zst,
        zstd::encode_all(
            &std::fs::read(logs.join("access-2026-11-02.log")).unwrap()[..],
            3,
        )
        .unwrap(),
    )
    .unwrap();
    let run = run_daily(&[
        "--input",
        gz.to_str().unwrap(),
        "--input",
        zst.to_str().unwrap(),
    ]);
    let truth = truth();
    assert_eq!(run.summary["lines_read"], truth["lines_total"]);
    for report in ["page_views_hourly", "demographics_daily"] {
        crate::util::assert_matches_truth(&run.out_dir, report, "gzip+zstd");
    }
}

#[test]
fn csv_accounts_give_the_same_demographics_as_sqlite() {
    let run = run_daily(&["--accounts", "csv:sample-logs/accounts.csv"]);
    crate::util::assert_matches_truth(&run.out_dir, "demographics_daily", "csv");
}

#[test]
fn hostile_bytes_are_counted_never_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.log");
    let mut bytes: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    bytes.extend_from_slice(b"\n\"\"\"[[[]]]\n\xff\xfe\x00\n");
    bytes.extend(std::iter::repeat_n(b'A', 100_000));
    std::fs::write(&junk, &bytes).unwrap();
    let run = run_daily(&["--input", junk.to_str().unwrap()]);
    let s = &run.summary;
    let rejected: u64 = s["lines_rejected"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(s["lines_parsed"], 0);
    assert_eq!(rejected, s["lines_read"].as_u64().unwrap());
    assert!(rejected > 100, "{s}");
    assert!(s["lines_rejected"]["too_long"].as_u64().unwrap() >= 1);
    assert!(
        files_under(&run.out_dir).is_empty(),
        "no partition for days never seen"
    );
}

#[test]
fn missing_input_fails_loudly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bin()
        .current_dir(repo())
        .args([
            "run",
            "pipelines/daily.toml",
            "--input",
            "no/such/*.log",
            "--out",
        ])
        .arg(tmp.path().join("out"))
        .arg("--privacy-state")
        .arg(tmp.path().join("privacy-state"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("input pattern `no/such/*.log` matches no file")
    );
}

#[test]
fn timezone_moves_daily_partitions() {
    let original = std::fs::read_to_string(repo().join("pipelines/daily.toml")).unwrap();
    let path = repo()
        .join("pipelines")
        .join(format!(".test-tz-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        original.replace("# timezone = \"Asia/Tokyo\"", "timezone = \"+09:00\""),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let out = bin()
        .arg("run")
        .arg(&path)
        .arg("--out")
        .arg(&out_dir)
        .arg("--privacy-state")
        .arg(tmp.path().join("privacy-state"))
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Two UTC days at +09:00 span three local days; views are conserved.
    let rows = report_rows(&out_dir, "visitors_daily");
    let dates: Vec<&str> = rows.iter().map(|r| r["date"].as_str().unwrap()).collect();
    assert_eq!(dates, ["2026-11-01", "2026-11-02", "2026-11-03"]);
    let views: i64 = rows.iter().map(|r| r["views"].as_i64().unwrap()).sum();
    let truth_views: i64 = truth()["reports"]["visitors_daily"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["views"].as_i64().unwrap())
        .sum();
    assert_eq!(views, truth_views);
    // Hourly rows are still UTC instants; only their partition moves.
    assert_eq!(
        report_rows(&out_dir, "page_views_hourly").len(),
        truth()["reports"]["page_views_hourly"]
            .as_array()
            .unwrap()
            .len()
    );
}

#[test]
fn format_override_accepts_a_logformat_string_and_a_wrong_preset_is_counted_not_crashed() {
    let spelled_out = r#"%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" "%{Cookie}i""#;
    let run = run_daily(&["--format", spelled_out]);
    assert_eq!(
        report_rows(&run.out_dir, "referrers_daily"),
        crate::util::sorted(truth()["reports"]["referrers_daily"].as_array().unwrap())
    );
    // `combined` lacks the cookie field: the cookie column is extra text on every line.
    let run = run_daily(&["--format", "combined"]);
    let s = &run.summary;
    assert_eq!(s["lines_parsed"], 0, "{s}");
    assert_eq!(
        s["lines_rejected"]["field_count"].as_u64().unwrap() + 12,
        s["lines_read"].as_u64().unwrap(),
        "{s}"
    );
}
