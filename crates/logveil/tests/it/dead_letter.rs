//! The dead-letter file: one JSON line per rejected line, matching the summary's counts,
//! in input order, at the line's byte offset, and never with a raw identifier.

use std::collections::BTreeMap;

use crate::util::{dead_letters, raw_identifiers, run_into, sample};

#[test]
fn every_rejected_line_once_in_input_order_at_its_offset_and_redacted() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("rejected.jsonl");
    let run = run_into(
        &tmp.path().join("out"),
        &tmp.path().join("summary.json"),
        &["--dead-letter", path.to_str().unwrap()],
        tempfile::tempdir().unwrap(),
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let entries = dead_letters(&path);
    assert!(
        text.lines().all(|l| l.starts_with("{\"reason\":")),
        "fields in the documented order"
    );

    // The summary's reasons and counts, exactly.
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for e in &entries {
        let keys: Vec<&String> = e.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["file", "line", "offset", "reason"], "{e}");
        *counts
            .entry(e["reason"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let expected: BTreeMap<String, u64> = run.summary["lines_rejected"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(r, n)| (r.clone(), n.as_u64().unwrap()))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(counts, expected);
    assert_eq!(entries.len(), 12, "the samples' 12 malformed lines");
    assert_eq!(
        run.summary["dead_letter"],
        path.display().to_string(),
        "the summary names the file"
    );

    // Input order, and each offset is the start of a line of the reason's kind.
    let inputs: Vec<&str> = run.summary["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    let positions: Vec<(usize, u64)> = entries
        .iter()
        .map(|e| {
            let file = e["file"].as_str().unwrap();
            let index = inputs.iter().position(|i| *i == file).expect("an input");
            (index, e["offset"].as_u64().unwrap())
        })
        .collect();
    assert!(positions.is_sorted(), "input order: {positions:?}");
    assert!(positions.windows(2).all(|w| w[0] != w[1]), "each line once");
    for (e, (index, offset)) in entries.iter().zip(positions) {
        let name = std::path::Path::new(inputs[index]).file_name().unwrap();
        let bytes = sample(name.to_str().unwrap());
        let offset = offset as usize;
        assert!(
            offset == 0 || bytes[offset - 1] == b'\n',
            "{e}: not a line start"
        );
        let raw = &bytes[offset..];
        let raw = &raw[..raw.iter().position(|b| *b == b'\n').unwrap_or(raw.len())];
        let raw = String::from_utf8_lossy(raw);
        match e["reason"].as_str().unwrap() {
            "too_long" => {
                assert!(e["line"].is_null(), "{e}");
                assert!(raw.len() > 65_536, "{e}: a {} byte line", raw.len());
            }
            "blank_line" => {
                assert!(raw.trim().is_empty(), "{e}");
                assert_eq!(e["line"], raw.as_ref());
            }
            reason => {
                let line = e["line"].as_str().unwrap_or_else(|| panic!("{e}"));
                assert!(line.starts_with("ip:"), "{e}: the client is pseudonymized");
                // The same line: the same time field, byte for byte.
                let time = |s: &str| s[s.find('[').unwrap()..=s.find(']').unwrap()].to_owned();
                assert_eq!(time(line), time(&raw), "{e}");
                let status = raw.split('"').nth(2).map(|s| s.split_whitespace().next());
                match reason {
                    "bad_status" => assert!(
                        status.flatten().is_some_and(|s| s.parse::<u16>().is_err()),
                        "{e}: {raw}"
                    ),
                    "truncated" | "bad_request" => {
                        assert_eq!(
                            status, None,
                            "{e}: the line ends inside or before the request"
                        );
                    }
                    _ => {}
                }
            }
        }
    }

    // Never a raw identifier.
    let ids = raw_identifiers();
    for id in &ids {
        assert!(
            !text.contains(id.as_str()),
            "a raw identifier ({} chars) leaked into the dead-letter file",
            id.len()
        );
    }
    assert!(!text.contains("@example."), "an e-mail address leaked");
}

#[test]
fn a_run_replaces_the_dead_letter_file_even_without_rejects() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("rejected.jsonl");
    std::fs::write(&path, "{\"stale\":true}\n").unwrap();
    let log = tmp.path().join("clean.log");
    let day1 = sample("access-2026-11-01.log");
    let ten_lines = day1
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(9)
        .unwrap()
        .0;
    std::fs::write(&log, &day1[..=ten_lines]).unwrap();
    let run = run_into(
        &tmp.path().join("out"),
        &tmp.path().join("summary.json"),
        &[
            "--input",
            log.to_str().unwrap(),
            "--dead-letter",
            path.to_str().unwrap(),
        ],
        tempfile::tempdir().unwrap(),
    );
    assert_eq!(run.summary["lines_read"], 10);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
}

/// Issue #15 item 4: a rejected line (status `2OO`) that carries the visitor's own cookie
/// in the referrer and the path, its address as `203-0-113-77` in the referrer, e-mails as
/// `alice%2540example.com` and `alice(at)example.com` in the path and a phone number in
/// the user agent: none of them, in any case or encoding, reaches the dead-letter file;
/// the record keeps its layout, offset and reason.
#[test]
fn a_rejected_line_leaves_no_identifier_in_any_form() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("rejected.jsonl");
    let log = tmp.path().join("leaky.log");
    let cookie = "u-9f3c2a71d04b6e85";
    let good = "198.51.100.1 - - [01/Nov/2026:10:00:00 +0900] \"GET / HTTP/1.1\" 200 1 \"-\" \"Mozilla/5.0\" \"jt_uid=u-0000000000000001\"\n";
    let bad = format!(
        "203.0.113.77 - - [01/Nov/2026:10:00:01 +0900] \"GET /u/alice%2540example.com/m/alice(at)example.com/s/{cookie} HTTP/1.1\" 2OO 512 \"https://203-0-113-77.example.net/r/{upper}\" \"Mozilla/5.0 (X11; tel 090-1234-5678) Gecko/20100101\" \"lang=en; jt_uid={cookie}\"\n",
        upper = cookie.to_ascii_uppercase(),
    );
    std::fs::write(&log, format!("{good}{bad}")).unwrap();
    let run = run_into(
        &tmp.path().join("out"),
        &tmp.path().join("summary.json"),
        &[
            "--input",
            log.to_str().unwrap(),
            "--dead-letter",
            path.to_str().unwrap(),
        ],
        tempfile::tempdir().unwrap(),
    );
    assert_eq!(run.summary["lines_read"], 2);
    let entries = dead_letters(&path);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!(e["reason"], "bad_status", "{e}");
    assert_eq!(e["offset"], good.len() as u64, "{e}");
    let line = e["line"].as_str().unwrap();
    assert!(line.starts_with("ip:"), "the client is a token: {line}");
    assert!(
        line.contains("[01/Nov/2026:10:00:01 +0900] \"GET /u/:redacted/m/:redacted/s/:redacted HTTP/1.1\" 2OO 512 \""),
        "the layout stays: {line}"
    );
    let text = std::fs::read_to_string(&path).unwrap().to_ascii_lowercase();
    for planted in [
        cookie,
        "9f3c2a71d04b6e85",
        "203.0.113.77",
        "203-0-113-77",
        "203%2e0%2e113",
        "alice",
        "example.com",
        "%2540",
        "%40",
        "(at)",
        "090-1234-5678",
        "09012345678",
        "1234-5678",
    ] {
        assert!(
            !text.contains(planted),
            "`{planted}` in the dead-letter file: {text}"
        );
    }
}
