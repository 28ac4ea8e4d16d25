//! Benchmarks live in `benches/`; see the README section "Performance".
