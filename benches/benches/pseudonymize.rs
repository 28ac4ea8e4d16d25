//! Pseudonymize alone (records already parsed): two keyed BLAKE3 hashes at most, page and
//! referrer sanitising, user-agent classification; without and with the per-chunk cache.
//!
//! `cargo bench -p logveil-benches --bench pseudonymize`

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use logveil_privacy::client::ClientPolicy;
use logveil_privacy::pseudonym::EventCache;
use logveil_privacy::sanitize::SanitizePolicy;

fn bench(c: &mut Criterion) {
    let data = common::sample();
    let parser = common::parser();
    let records = common::records(&parser, &data);
    let p = common::pseudonymizer();
    let (clients, sanitize) = (ClientPolicy::default(), SanitizePolicy::default());

    let mut group = c.benchmark_group("pseudonymize");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("event", |b| {
        b.iter(|| {
            records
                .iter()
                .filter_map(|r| p.event(r, &clients, &sanitize))
                .filter(|e| e.is_view(false))
                .count()
        });
    });
    group.bench_function("event_cached (one cache per 4 MiB-like chunk)", |b| {
        b.iter(|| {
            let mut views = 0usize;
            // About 15,000 lines per chunk, as in a run.
            for chunk in records.chunks(15_000) {
                let mut cache = EventCache::new(&p);
                views += chunk
                    .iter()
                    .filter_map(|r| p.event_cached(r, &clients, &sanitize, &mut cache))
                    .filter(|e| e.is_view(false))
                    .count();
            }
            views
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
