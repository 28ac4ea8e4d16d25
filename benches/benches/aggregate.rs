//! Aggregation alone (events already made): the two reports of `pipelines/bench.toml`
//! (views and visitors per hour and page; visitors per hour), and merging two states.
//!
//! `cargo bench -p logveil-benches --bench aggregate`

mod common;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use logveil_accounts::JoinOutcome;
use logveil_report::{Calendar, ReportState};

fn bench(c: &mut Criterion) {
    let events = common::events(&common::sample());
    let specs = common::bench_specs();
    let calendar = Calendar::Utc;
    let observe_all = |events: &[logveil_privacy::Event]| {
        let mut states: Vec<ReportState> = specs.iter().map(ReportState::new).collect();
        for event in events {
            for (spec, state) in specs.iter().zip(&mut states) {
                state.observe(spec, &calendar, event, JoinOutcome::NoAccount, None);
            }
        }
        states
    };

    let mut group = c.benchmark_group("aggregate");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("observe (bench.toml reports)", |b| {
        b.iter(|| observe_all(&events));
    });
    let (first, second) = events.split_at(events.len() / 2);
    group.bench_function("merge two halves", |b| {
        b.iter_batched(
            || (observe_all(first), observe_all(second)),
            |(mut mine, theirs)| {
                for (m, t) in mine.iter_mut().zip(theirs) {
                    m.merge(t);
                }
                mine
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
