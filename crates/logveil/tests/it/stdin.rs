//! Inputs that are not plain files on disk: standard input (plain, gzip, zstd; `--input -`
//! and `paths = ["-"]`) and the cap on decompressed size.

use std::ffi::OsStr;
use std::io::Write;

use crate::util::{
    EditedPipeline, assert_matches_truth, bin, dead_letters, files_under, repo, report_rows,
    run_with_stdin, sample, sorted, truth,
};

fn both_days() -> (Vec<u8>, Vec<u8>) {
    (
        sample("access-2026-11-01.log"),
        sample("access-2026-11-02.log"),
    )
}

fn gzip_members(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(part).unwrap();
        out.extend(e.finish().unwrap());
    }
    out
}

#[test]
fn stdin_plain_gzip_and_zstd_give_the_truth() {
    let (day1, day2) = both_days();
    let plain = [day1.as_slice(), day2.as_slice()].concat();
    let encodings = [
        ("plain", plain.clone()),
        // One gzip member per day, as `cat a.gz b.gz |` would send.
        ("gzip", gzip_members(&[&day1, &day2])),
        ("zstd", zstd::encode_all(plain.as_slice(), 3).unwrap()),
    ];
    let truth = truth();
    for (name, bytes) in encodings {
        let tmp = tempfile::tempdir().unwrap();
        let out_dir = tmp.path().join("out");
        let summary_path = tmp.path().join("summary.json");
        let output = run_with_stdin(
            &[
                OsStr::new("run"),
                OsStr::new("pipelines/daily.toml"),
                OsStr::new("--input"),
                OsStr::new("-"),
                OsStr::new("--out"),
                out_dir.as_os_str(),
                OsStr::new("--summary"),
                summary_path.as_os_str(),
                OsStr::new("--privacy-state"),
                tmp.path().join("privacy-state").as_os_str(),
            ],
            &bytes,
        );
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
        assert_eq!(summary["inputs"], serde_json::json!(["<stdin>"]), "{name}");
        assert_eq!(summary["lines_read"], truth["lines_total"], "{name}");
        assert_eq!(
            report_rows(&out_dir, "page_views_hourly"),
            sorted(truth["reports"]["page_views_hourly"].as_array().unwrap()),
            "{name}: page_views_hourly"
        );
        assert_matches_truth(&out_dir, "demographics_daily", name);
    }
}

#[test]
fn pipeline_paths_dash_reads_stdin_and_dead_letter_is_relative_to_the_pipeline() {
    let dead_letter_name = format!(".test-stdin-dead-letter-{}.jsonl", std::process::id());
    let pipeline = EditedPipeline::new("stdin", |p| {
        p.replace(
            r#"paths = ["../sample-logs/access-*.log"]"#,
            &format!("paths = [\"-\"]\ndead_letter = \"{dead_letter_name}\""),
        )
    });
    let dead_letter = repo().join("pipelines").join(&dead_letter_name);
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let mut log = sample("access-2026-11-01.log");
    log.truncate(log.iter().position(|&b| b == b'\n').unwrap() + 1);
    log.extend_from_slice(b"not a log line\n");
    let output = run_with_stdin(
        &[
            OsStr::new("run"),
            pipeline.0.as_os_str(),
            OsStr::new("--out"),
            out_dir.as_os_str(),
            OsStr::new("--privacy-state"),
            tmp.path().join("privacy-state").as_os_str(),
        ],
        &log,
    );
    let entries = std::fs::exists(&dead_letter)
        .unwrap()
        .then(|| dead_letters(&dead_letter));
    let _ = std::fs::remove_file(&dead_letter);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("2 read, 1 parsed, 1 rejected"), "{stdout}");
    let entries = entries.expect("dead-letter file beside the pipeline");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["file"], "<stdin>");
    assert_eq!(entries[0]["offset"], log.len() - b"not a log line\n".len());
}

#[test]
fn decompression_bomb_stops_at_the_cap_with_an_error_naming_input_and_cap() {
    let pipeline = EditedPipeline::new("cap", |p| {
        p.replace(
            "format = \"combined_cookie\"",
            "format = \"combined_cookie\"\nmax_decompressed_bytes = 100000",
        )
    });
    let tmp = tempfile::tempdir().unwrap();
    // 2.6 MB of log once decompressed: far over a 100 kB cap.
    let gz = tmp.path().join("access.log.gz");
    std::fs::write(&gz, gzip_members(&[&sample("access-2026-11-01.log")])).unwrap();
    let out_dir = tmp.path().join("out");
    let output = bin()
        .arg("run")
        .arg(&pipeline.0)
        .arg("--input")
        .arg(&gz)
        .arg("--out")
        .arg(&out_dir)
        .arg("--privacy-state")
        .arg(tmp.path().join("privacy-state"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("reading {}", gz.display()))
            && stderr.contains("max_decompressed_bytes = 100000"),
        "{stderr}"
    );
    assert!(
        files_under(&out_dir).is_empty(),
        "no report from a partial read"
    );

    // The same bomb on standard input.
    let output = run_with_stdin(
        &[
            OsStr::new("run"),
            pipeline.0.as_os_str(),
            OsStr::new("--input"),
            OsStr::new("-"),
            OsStr::new("--out"),
            out_dir.as_os_str(),
            OsStr::new("--privacy-state"),
            tmp.path().join("privacy-state").as_os_str(),
        ],
        &std::fs::read(&gz).unwrap(),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("reading <stdin>") && stderr.contains("max_decompressed_bytes = 100000"),
        "{stderr}"
    );
}

#[test]
fn a_zero_cap_is_a_config_error() {
    let pipeline = EditedPipeline::new("cap0", |p| {
        p.replace(
            "format = \"combined_cookie\"",
            "format = \"combined_cookie\"\nmax_decompressed_bytes = 0",
        )
    });
    let output = bin().arg("check").arg(&pipeline.0).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("input.max_decompressed_bytes: 0 is out of range"),
        "{stderr}"
    );
}
