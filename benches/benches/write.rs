//! Disclosure and Parquet writing of the sample's `page_views_hourly` (`k_min` 1): every
//! partition disclosed and written (zstd, atomically) to a temporary directory; and what
//! an external release adds to that: its identity (a digest of the true state, every
//! (cell, visitor) pair) and cell-key perturbation of every cell.
//!
//! `cargo bench -p logveil-benches --bench write`

mod common;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use logveil_accounts::JoinOutcome;
use std::sync::Arc;

use logveil_report::cellkey::{
    CellKeyMethod, DEFAULT_MAGNITUDE, DEFAULT_MAX_NOISE, DEFAULT_VARIANCE, PTable, RecordKeys,
};
use logveil_report::disclose::{Noise, disclose, disclose_with};
use logveil_report::identity::release_id;
use logveil_report::write::{Provenance, write_partition};
use logveil_report::{Calendar, ReportState};

fn bench(c: &mut Criterion) {
    let events = common::events(&common::sample());
    let spec = common::bench_specs().remove(0);
    let calendar = Calendar::Utc;
    let mut state = ReportState::new(&spec);
    for event in &events {
        state.observe(&spec, &calendar, event, JoinOutcome::NoAccount, None);
    }
    let cells = state.cells.len() as u64;
    let dir = tempfile::tempdir().unwrap();
    let provenance = Provenance {
        policy_sha256: "0".repeat(64),
        key_id: "demo-2026".to_owned(),
        extra: Vec::new(),
    };

    let mut group = c.benchmark_group("write");
    group.throughput(Throughput::Elements(cells));
    group.sample_size(20);
    group.bench_function("disclose+parquet page_views_hourly", |b| {
        b.iter_batched(
            || state.clone(),
            |state| {
                for (day, partition) in state.into_partitions() {
                    let buckets: Vec<i64> = (0..24)
                        .map(|h| (i64::from(day) * 24 + h) * 3_600_000_000)
                        .collect();
                    let disclosed = disclose(&spec, partition.cells, None, day, &buckets).unwrap();
                    write_partition(dir.path(), &spec, day, &disclosed.rows, &provenance).unwrap();
                }
            },
            BatchSize::LargeInput,
        );
    });
    let pairs: u64 = state.cells.values().map(|c| c.visitors.len() as u64).sum();
    group.throughput(Throughput::Elements(pairs));
    group.bench_function(
        "release identity page_views_hourly (per visitor-cell pair)",
        |b| {
            let partitions: Vec<_> = state.clone().into_partitions().into_iter().collect();
            b.iter(|| {
                for (day, partition) in &partitions {
                    std::hint::black_box(release_id(&spec, "demo-2026", *day, &partition.cells));
                }
            });
        },
    );
    let mut perturbed = spec.clone();
    perturbed.perturbation = Some(Arc::new(CellKeyMethod {
        ptable: Arc::new(PTable::generate(DEFAULT_MAX_NOISE, DEFAULT_VARIANCE).unwrap()),
        magnitude: DEFAULT_MAGNITUDE,
    }));
    let keys = RecordKeys::new(&[7; 32], "partner");
    group.bench_function(
        "disclose with cell key page_views_hourly (per visitor-cell pair)",
        |b| {
            b.iter_batched(
                || state.clone(),
                |state| {
                    for (day, partition) in state.into_partitions() {
                        let buckets: Vec<i64> = (0..24)
                            .map(|h| (i64::from(day) * 24 + h) * 3_600_000_000)
                            .collect();
                        let noise = Noise::CellKey(&keys);
                        std::hint::black_box(
                            disclose_with(&perturbed, partition.cells, &noise, day, &buckets)
                                .unwrap(),
                        );
                    }
                },
                BatchSize::LargeInput,
            );
        },
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
