//! Every shared corpus file, parsed with its format through the [`Parser`] facade, gives
//! exactly the pinned counts of records, directives and rejections per reason
//! (`tests/golden/corpus_counts.txt`; regenerate with `UPDATE_GOLDEN=1` after reviewing).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use logveil_parse::{Parsed, Parser, ParserState};

fn corpora_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none_or(|v| v.is_empty()),
        "corpora directory {} is missing: CI must provide ../shared/corpora",
        dir.display()
    );
    eprintln!("notice: skipping corpus counts: ../shared/corpora not present");
    None
}

/// (file relative to the corpora directory, format spec).
const FILES: &[(&str, &str)] = &[
    ("elastic-apache_logs/apache_logs", "combined"),
    (
        "nasa-http-jul95/NASA_access_log_Jul95.first267838.gz",
        "common",
    ),
    ("monitorware-apache-2004/access_log", "common"),
    ("lnav-testlogs/logfile_access_log.0", "combined"),
    ("lnav-testlogs/logfile_access_log.1", "combined"),
    ("lnav-testlogs/logfile_bad_access_log.0", "combined"),
    (
        "lnav-testlogs/logfile_shop_access_log.0",
        r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_forwarded_for""#,
    ),
    (
        "lnav-testlogs/logfile_regexp_access_log.0",
        r#"%v:%p %h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %D"#,
    ),
    ("lnav-testlogs/logfile_w3c.0", "w3c"),
    ("lnav-testlogs/logfile_w3c.1", "w3c"),
    ("lnav-testlogs/logfile_w3c.2", "w3c"),
    ("lnav-testlogs/logfile_w3c.3", "w3c"),
    ("lnav-testlogs/logfile_w3c.4", "w3c"),
    ("lnav-testlogs/logfile_w3c.5", "w3c"),
    ("lnav-testlogs/logfile_w3c.6", "w3c"),
    ("lnav-testlogs/logfile_w3c_big.0", "w3c"),
];

fn read(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .unwrap();
        return out;
    }
    raw
}

fn tally(data: &[u8], spec: &str) -> String {
    let parser = Parser::new(spec, Some("jt_uid"), None).expect("format compiles");
    let mut state = ParserState::default();
    let (mut lines, mut records, mut directives) = (0u64, 0u64, 0u64);
    let mut rejected: BTreeMap<&str, u64> = BTreeMap::new();
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    for line in body.split(|&b| b == b'\n') {
        lines += 1;
        match parser.parse(line, &mut state) {
            Ok(Parsed::Record(r)) => {
                assert!(r.time.is_some(), "a record always has a time");
                records += 1;
            }
            Ok(Parsed::Directive) => directives += 1,
            Err(reason) => *rejected.entry(reason.as_str()).or_default() += 1,
        }
    }
    assert_eq!(
        lines,
        records + directives + rejected.values().sum::<u64>(),
        "every line accounted for"
    );
    let reasons: Vec<String> = rejected.iter().map(|(r, n)| format!("{r}={n}")).collect();
    format!(
        "lines={lines} records={records} directives={directives} rejected[{}]",
        reasons.join(",")
    )
}

#[test]
fn every_corpus_file_has_pinned_counts() {
    let Some(dir) = corpora_dir() else { return };
    let mut actual = String::new();
    for (file, spec) in FILES {
        let preset = if spec.len() > 20 { "custom" } else { spec };
        writeln!(
            actual,
            "{file:<58} {preset:<9} {}",
            tally(&read(&dir.join(file)), spec)
        )
        .unwrap();
    }
    let golden_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/corpus_counts.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden_path, &actual).unwrap();
    }
    let golden = std::fs::read_to_string(&golden_path).unwrap_or_default();
    assert_eq!(
        actual, golden,
        "corpus counts changed (UPDATE_GOLDEN=1 to accept after review)"
    );
}
