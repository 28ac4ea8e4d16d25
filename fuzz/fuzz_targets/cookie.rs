//! `find_cookie` and its W3C variant on arbitrary headers: no panic, and a found value is a
//! non-empty slice of the header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logveil_parse::{find_cookie, find_cookie_plus_spaces};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(0);
    let (name, header) = (&data[..split], &data[split.saturating_add(1).min(data.len())..]);
    for found in [find_cookie(header, name), find_cookie_plus_spaces(header, name)].into_iter().flatten() {
        assert!(!found.is_empty());
        let (start, p) = (header.as_ptr() as usize, found.as_ptr() as usize);
        assert!(p >= start && p + found.len() <= start + header.len());
    }
});
