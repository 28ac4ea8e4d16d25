//! No input panics a run, and a panic never prints input (issue #15, item 6).

use crate::util::{bin, dead_letters, repo, run_into};

/// A first field that starts with a byte that is not UTF-8 and holds a `]`: redacting it
/// for the dead-letter file sliced inside the U+FFFD it became, and the panic (exit 101)
/// printed the field. Now the line is rejected and dead-lettered like any other.
#[test]
fn a_non_utf8_first_field_with_a_bracket_is_dead_lettered_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("odd.log");
    let line: &[u8] = b"\xff10.0.0.1] - - [01/Nov/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 200 1\n";
    std::fs::write(&log, line).unwrap();
    let dead_letter = tmp.path().join("rejected.jsonl");
    let run = run_into(
        &tmp.path().join("out"),
        &tmp.path().join("summary.json"),
        &[
            "--input",
            log.to_str().unwrap(),
            "--dead-letter",
            dead_letter.to_str().unwrap(),
        ],
        tempfile::tempdir().unwrap(),
    );
    assert_eq!(run.summary["lines_read"], 1);
    let rejected: u64 = run.summary["lines_rejected"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(rejected, 1, "{}", run.summary["lines_rejected"]);

    // Leaks first, with messages that do not quote what leaked.
    let written = std::fs::read_to_string(&dead_letter).unwrap();
    assert!(
        !written.contains("10.0.0.1"),
        "the address reached the dead letter"
    );
    assert!(
        !run.stderr().contains("10.0.0.1"),
        "the address reached stderr"
    );

    let entries = dead_letters(&dead_letter);
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry["offset"], 0);
    assert!(
        run.summary["lines_rejected"][entry["reason"].as_str().unwrap()] == 1,
        "{entry}"
    );
    let redacted = entry["line"].as_str().unwrap();
    assert!(redacted.starts_with("id:"), "the field is a token: {entry}");
    assert!(redacted.contains("[01/Nov/2026:10:00:00 +0000]"), "{entry}");
}

/// The panic hook prints a fixed line with the location and exits 101; the payload (here
/// planted by the debug-build-only `LOGVEIL_TEST_PANIC`) never reaches stderr.
#[cfg(debug_assertions)]
#[test]
fn a_panic_prints_its_location_and_never_its_message() {
    let planted = "visitor pat.doe@example.com from 198.51.100.23";
    let output = bin()
        .current_dir(repo())
        .env("LOGVEIL_TEST_PANIC", planted)
        .env("RUST_BACKTRACE", "1")
        .arg("--version")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Leaks first, with messages that do not quote what leaked.
    for part in ["pat.doe", "example.com", "198.51.100.23", "visitor"] {
        assert!(
            !stderr.contains(part),
            "the payload leaked ({} chars)",
            part.len()
        );
    }
    assert_eq!(output.status.code(), Some(101), "{stderr}");
    assert!(output.stdout.is_empty());
    let line = stderr.trim_end();
    assert!(!line.contains('\n'), "one line only: {stderr}");
    let location = line
        .strip_prefix("logveil: internal error at crates/logveil/src/main.rs:")
        .and_then(|rest| {
            rest.strip_suffix(" (a bug: please report it with the command line, not the input)")
        })
        .unwrap_or_else(|| panic!("not the fixed message: {stderr}"));
    let (row, column) = location.split_once(':').unwrap();
    assert!(
        row.parse::<u32>().is_ok() && column.parse::<u32>().is_ok(),
        "{stderr}"
    );
}
