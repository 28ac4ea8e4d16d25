//! Every time parser on arbitrary bytes, and strftime patterns compiled from the input's
//! first line and applied to the rest: no panic, and results stay in a sane range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logveil_parse::time::{
    TimePattern, parse_clf_time, parse_date_and_time, parse_epoch_seconds, parse_epoch_units, parse_iso8601,
};

fuzz_target!(|data: &[u8]| {
    let sane = |t: Option<logveil_parse::Timestamp>| {
        if let Some(t) = t {
            assert!((-14 * 3600..=14 * 3600).contains(&t.offset_seconds));
        }
    };
    sane(parse_clf_time(data));
    sane(parse_iso8601(data));
    sane(parse_epoch_seconds(data));
    sane(parse_epoch_units(data, 1_000));
    if let Some(space) = data.iter().position(|&b| b == b' ') {
        sane(parse_date_and_time(&data[..space], &data[space + 1..]));
    }
    if let Some(nl) = data.iter().position(|&b| b == b'\n') {
        if let Ok(pattern) = std::str::from_utf8(&data[..nl]) {
            if let Ok(compiled) = TimePattern::compile(pattern) {
                sane(compiled.parse(&data[nl + 1..]));
            }
        }
    }
});
