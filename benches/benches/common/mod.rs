//! Shared setup of the pipeline benches: the bundled sample, its parser and key, and the
//! report definitions of `pipelines/bench.toml`.

#![allow(dead_code, reason = "each bench uses a part")]

use std::path::Path;

use logveil_parse::{LineParser, LogFormat, LogRecord};
use logveil_privacy::client::ClientPolicy;
use logveil_privacy::pseudonym::EventCache;
use logveil_privacy::sanitize::SanitizePolicy;
use logveil_privacy::{Dimension, Event, KeyRing, Pseudonymizer, Purpose};
use logveil_report::{Bucket, Filters, LegalClass, Metric, ReportSpec};

pub fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Both sample days without the deliberately over-long line.
pub fn sample() -> Vec<u8> {
    let mut data = Vec::new();
    for day in ["01", "02"] {
        let path = repo(&format!("sample-logs/access-2026-11-{day}.log"));
        let text = std::fs::read(&path).expect("sample log (run from the repository)");
        for line in text.split(|&b| b == b'\n').filter(|l| l.len() < 4096) {
            data.extend_from_slice(line);
            data.push(b'\n');
        }
    }
    data
}

pub fn parser() -> LineParser {
    LineParser::new(
        LogFormat::from_name_or_format("combined_cookie").unwrap(),
        Some("jt_uid"),
    )
}

pub fn pseudonymizer() -> Pseudonymizer {
    let ring = KeyRing::load(&repo("sample-logs/demo.key")).unwrap();
    Pseudonymizer::new(ring.newest())
}

pub fn records<'a>(parser: &LineParser, data: &'a [u8]) -> Vec<LogRecord<'a>> {
    logveil_ingest::lines(data)
        .filter_map(|line| parser.parse(line).ok())
        .collect()
}

/// Every parsed line of the sample as an event (one cache over the sample, as a chunk).
pub fn events(data: &[u8]) -> Vec<Event> {
    let parser = parser();
    let p = pseudonymizer();
    let records = records(&parser, data);
    let mut cache = EventCache::new(&p);
    records
        .iter()
        .filter_map(|r| {
            p.event_cached(
                r,
                &ClientPolicy::default(),
                &SanitizePolicy::default(),
                &mut cache,
            )
        })
        .collect()
}

/// A report of the internal audience (`k_min` 1), no joins, like `pipelines/bench.toml`.
pub fn spec(name: &str, dimensions: &[Dimension], metrics: &[Metric]) -> ReportSpec {
    ReportSpec {
        name: name.to_owned(),
        audience: "internal".to_owned(),
        purpose_name: "improve_services".to_owned(),
        purpose: Purpose {
            description: String::new(),
            join_accounts: false,
            consent: None,
            contact: false,
        },
        bucket: Bucket::Hour,
        dimensions: dimensions.to_vec(),
        metrics: metrics.to_vec(),
        include_bots: false,
        k_min: 1,
        visitor_id: false,
        filters: Filters::default(),
        totals: false,
        complementary_suppression: false,
        dp: None,
        legal_class: LegalClass::InternalPseudonymous,
        external: false,
        perturbation: None,
    }
}

/// The two reports of `pipelines/bench.toml`.
pub fn bench_specs() -> Vec<ReportSpec> {
    vec![
        spec(
            "page_views_hourly",
            &[Dimension::Page],
            &[Metric::Views, Metric::Visitors],
        ),
        spec("visitors_hourly", &[], &[Metric::Visitors]),
    ]
}
