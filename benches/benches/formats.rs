//! Parse throughput per format on the same traffic (one core): the combined+cookie sample
//! as Apache `combined_cookie`, as nginx `nginx_combined_cookie` (byte-identical layout,
//! compiled from the nginx syntax) and rewritten as an IIS W3C extended log. JSON is in
//! `json.rs`. "Parse" means a full record: time parsed to UTC, visitor cookie found.
//!
//! `cargo bench -p logveil-benches --bench formats`

use std::fmt::Write as _;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use logveil_parse::{Parsed, Parser, ParserState};

fn sample() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-logs/access-2026-11-01.log");
    let data = std::fs::read(&path).expect("sample log (run from the repository)");
    let mut out: Vec<u8> = data
        .split(|&b| b == b'\n')
        .filter(|l| l.len() < 4096)
        .collect::<Vec<_>>()
        .join(&b'\n');
    out.push(b'\n');
    out
}

/// The sample as W3C: parsed once with the Apache parser, written with IIS's usual fields.
fn as_w3c(data: &[u8]) -> Vec<u8> {
    let parser = Parser::new("combined_cookie", Some("jt_uid"), None).unwrap();
    let mut state = ParserState::default();
    let mut out = String::from(
        "#Software: Microsoft Internet Information Services 10.0\n#Version: 1.0\n\
         #Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Cookie) cs(Referer) sc-status sc-substatus sc-win32-status sc-bytes time-taken\n",
    );
    let text = |b: Option<&[u8]>| {
        b.map_or("-".to_owned(), |b| {
            String::from_utf8_lossy(b).replace(' ', "+")
        })
    };
    for line in data.split(|&b| b == b'\n') {
        let Ok(Parsed::Record(r)) = parser.parse(line, &mut state) else {
            continue;
        };
        let t = r.time.unwrap().utc_micros / 1_000_000;
        let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
        let (y, m, d) = logveil_parse::time::civil_from_days(days as i32);
        let target = r.target_path().unwrap_or(b"/");
        let target = String::from_utf8_lossy(target);
        let (stem, query) = target.split_once('?').unwrap_or((&target, "-"));
        let _ = writeln!(
            out,
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} 10.0.0.1 {} {stem} {query} 443 - {} {} jt_uid={};+lang=ja {} {} 0 0 {} 15",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60,
            text(r.method()),
            text(r.client.map(|c| c.expose_for_hashing())),
            text(r.user_agent),
            text(r.visitor_cookie.map(|c| c.expose_for_hashing())),
            text(r.referer),
            r.status.unwrap_or(0),
            r.bytes.unwrap_or(0),
        );
    }
    out.into_bytes()
}

fn parse_all(parser: &Parser, data: &[u8]) -> u64 {
    let mut state = ParserState::default();
    let mut records = 0u64;
    for line in data.split(|&b| b == b'\n') {
        if let Ok(Parsed::Record(r)) = parser.parse(line, &mut state) {
            records += u64::from(r.time.is_some() && r.visitor_cookie.is_some());
        }
    }
    records
}

fn bench_formats(c: &mut Criterion) {
    let clf = sample();
    let w3c = as_w3c(&clf);
    let mut group = c.benchmark_group("formats");
    for (name, spec, data) in [
        ("combined_cookie", "combined_cookie", &clf),
        ("nginx_combined_cookie", "nginx_combined_cookie", &clf),
        ("w3c", "w3c", &w3c),
    ] {
        let parser = Parser::new(spec, Some("jt_uid"), None).unwrap();
        assert!(
            parse_all(&parser, data) > 5_000,
            "{name}: the bench input must parse"
        );
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function(name, |b| b.iter(|| parse_all(&parser, data)));
    }
    group.finish();
}

criterion_group!(benches, bench_formats);
criterion_main!(benches);
