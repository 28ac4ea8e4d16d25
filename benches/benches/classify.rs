//! User-agent classification throughput over the user agents of the bundled sample (one core).
//!
//! `cargo bench -p logveil-benches --bench classify`

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use logveil_parse::{LineParser, LogFormat};
use logveil_privacy::classify::{classify, is_bot};

/// The user agent of every parsed line of the first sample day, in log order.
fn user_agents() -> Vec<Option<Vec<u8>>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-logs/access-2026-11-01.log");
    let data = std::fs::read(&path).expect("sample log (run from the repository)");
    let parser = LineParser::new(
        LogFormat::from_name_or_format("combined_cookie").unwrap(),
        Some("jt_uid"),
    );
    logveil_ingest::lines(&data)
        .filter_map(|line| parser.parse(line).ok())
        .map(|record| record.user_agent.map(<[u8]>::to_vec))
        .collect()
}

fn bench_classify(c: &mut Criterion) {
    let agents = user_agents();
    let agents: Vec<Option<&[u8]>> = agents.iter().map(Option::as_deref).collect();
    let mut group = c.benchmark_group("user_agent");
    group.throughput(Throughput::Elements(agents.len() as u64));
    group.bench_function("classify", |b| {
        b.iter(|| {
            let mut bots = 0u64;
            for ua in &agents {
                bots += u64::from(black_box(classify(black_box(*ua))).bot);
            }
            bots
        });
    });
    group.bench_function("is_bot", |b| {
        b.iter(|| {
            let mut bots = 0u64;
            for ua in &agents {
                bots += u64::from(is_bot(black_box(*ua)));
            }
            bots
        });
    });
    group.finish();
}

criterion_group!(benches, bench_classify);
criterion_main!(benches);
