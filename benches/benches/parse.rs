//! Parser and pseudonymizer throughput on the bundled combined+cookie sample (one core).
//!
//! `cargo bench -p logveil-benches --bench parse`

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use logveil_parse::{LineParser, LogFormat};
use logveil_privacy::client::ClientPolicy;
use logveil_privacy::sanitize::{QueryParam, RouteTemplates, SanitizePolicy};
use logveil_privacy::{KeyRing, Pseudonymizer};

fn sample() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-logs/access-2026-11-01.log");
    let mut data = std::fs::read(&path).expect("sample log (run from the repository)");
    // Drop the deliberately over-long line so the numbers describe ordinary traffic.
    data = data
        .split(|&b| b == b'\n')
        .filter(|l| l.len() < 4096)
        .collect::<Vec<_>>()
        .join(&b'\n');
    data.push(b'\n');
    data
}

fn bench_parse(c: &mut Criterion) {
    let data = sample();
    let parser = LineParser::new(
        LogFormat::from_name_or_format("combined_cookie").unwrap(),
        Some("jt_uid"),
    );
    let ring =
        KeyRing::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-logs/demo.key"))
            .unwrap();
    let pseudonymizer = Pseudonymizer::new(ring.newest());

    let mut group = c.benchmark_group("combined_cookie");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("parse", |b| {
        b.iter(|| {
            let mut ok = 0u64;
            for line in logveil_ingest::lines(&data) {
                ok += u64::from(parser.parse(line).is_ok());
            }
            ok
        });
    });
    group.bench_function("parse+pseudonymize", |b| {
        b.iter(|| {
            let mut views = 0u64;
            for line in logveil_ingest::lines(&data) {
                if let Ok(record) = parser.parse(line)
                    && let Some(event) = pseudonymizer.event(
                        &record,
                        &ClientPolicy::default(),
                        &SanitizePolicy::default(),
                    )
                {
                    views += u64::from(event.is_view(false));
                }
            }
            views
        });
    });
    // With the shipped policy's query allowlist and route templates like pipelines/daily.toml.
    let sanitize = SanitizePolicy {
        query_allow: QueryParam::ALL.into_iter().collect(),
        routes: RouteTemplates::parse(
            &[
                "/{lang}/{city}/hotels",
                "/{lang}/{city}/temples",
                "/{lang}/{city}/food",
                "/{lang}/guides/{guide}",
                "/account/*",
                "/",
            ]
            .map(String::from),
        )
        .unwrap(),
    };
    group.bench_function("parse+pseudonymize+query+routes", |b| {
        b.iter(|| {
            let mut views = 0u64;
            for line in logveil_ingest::lines(&data) {
                if let Ok(record) = parser.parse(line)
                    && let Some(event) =
                        pseudonymizer.event(&record, &ClientPolicy::default(), &sanitize)
                {
                    views += u64::from(event.is_view(false) && event.page_group.is_some());
                }
            }
            views
        });
    });
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
