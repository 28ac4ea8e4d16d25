//! Perturbation tables (`PTable::parse_csv`) from arbitrary bytes: no panic, and whatever is
//! accepted is a valid table that round-trips through its canonical CSV.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logveil_report::cellkey::{PROBABILITY_UNITS, PTable};

fuzz_target!(|data: &[u8]| {
    if let Ok(table) = PTable::parse_csv(data) {
        let csv = table.to_csv();
        let back = PTable::parse_csv(csv.as_bytes()).expect("canonical CSV parses");
        assert_eq!(back, table);
        for n in 0..=table.largest_count() + 1 {
            let row = table.probabilities(n);
            let sum: u64 = row.iter().map(|&(_, p)| u64::from(p)).sum();
            assert_eq!(sum, u64::from(PROBABILITY_UNITS));
            let _ = table.noise(n, u64::MAX);
        }
    }
});
