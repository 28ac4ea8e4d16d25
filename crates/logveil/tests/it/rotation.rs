//! A rotated log read through one glob: oldest rotation first, compressed or not, and the
//! same reports as the unrotated file.

use std::io::Write;

use crate::util::{dead_letters, report_rows, run_into, sample, sorted, truth};

#[test]
fn rotated_files_are_read_oldest_first_and_give_the_same_reports() {
    let day1 = sample("access-2026-11-01.log");
    // Cut the day in three at line boundaries: the oldest part goes to `.2.gz`.
    let starts: Vec<usize> = std::iter::once(0)
        .chain(
            day1.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .collect();
    let (a, b) = (starts[3000], starts[6000]);
    let parts = [&day1[..a], &day1[a..b], &day1[b..]];

    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(logs.join("access.log.2.gz")).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(parts[0]).unwrap();
    gz.finish().unwrap();
    std::fs::write(logs.join("access.log.1"), parts[1]).unwrap();
    std::fs::write(logs.join("access.log"), parts[2]).unwrap();

    let dead_letter = tmp.path().join("rejected.jsonl");
    let pattern = logs.join("access.log*");
    let out_dir = tmp.path().join("out");
    let summary_path = tmp.path().join("summary.json");
    let run = run_into(
        &out_dir,
        &summary_path,
        &[
            "--input",
            pattern.to_str().unwrap(),
            "--dead-letter",
            dead_letter.to_str().unwrap(),
        ],
        tmp,
    );

    let expected_order: Vec<String> = ["access.log.2.gz", "access.log.1", "access.log"]
        .iter()
        .map(|n| logs.join(n).display().to_string())
        .collect();
    assert_eq!(run.summary["inputs"], serde_json::json!(expected_order));
    // `starts` also holds the end of the file (after its last newline).
    assert_eq!(run.summary["lines_read"], starts.len() - 1);
    let truth = truth();
    let day1_rows: Vec<serde_json::Value> = truth["reports"]["page_views_hourly"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["hour"].as_str().unwrap().starts_with("2026-11-01"))
        .cloned()
        .collect();
    assert_eq!(
        report_rows(&out_dir, "page_views_hourly"),
        sorted(&day1_rows)
    );

    // Rejected lines come out in reading order, each at its offset in its own
    // (decompressed) file.
    let entries = dead_letters(&dead_letter);
    assert_eq!(entries.len(), 6, "the day's six malformed lines");
    let positions: Vec<(usize, usize)> = entries
        .iter()
        .map(|e| {
            let file = e["file"].as_str().unwrap();
            let index = expected_order.iter().position(|f| f == file).unwrap();
            (index, e["offset"].as_u64().unwrap() as usize)
        })
        .collect();
    assert!(positions.is_sorted(), "in reading order: {positions:?}");
    for (e, &(index, offset)) in entries.iter().zip(&positions) {
        let part = parts[index];
        assert!(
            offset == 0 || part[offset - 1] == b'\n',
            "{e}: a line start"
        );
        let line_len = part[offset..]
            .iter()
            .position(|b| *b == b'\n')
            .unwrap_or(part.len() - offset);
        if e["reason"] == "too_long" {
            assert!(line_len > 65_536, "{e}");
        }
    }
    let files: Vec<&str> = entries
        .iter()
        .map(|e| e["file"].as_str().unwrap())
        .collect();
    assert!(
        files.contains(&expected_order[0].as_str()) && files.contains(&expected_order[1].as_str()),
        "malformed lines in the compressed and the middle rotation: {files:?}"
    );
}
