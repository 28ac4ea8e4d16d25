//! Arbitrary UTF-8 as an Apache `LogFormat` string. Compiling must return `Ok` or `Err`
//! without panicking; when it compiles, parsing a few fixed lines must not panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logveil_parse::{LineParser, LogFormat};

const LINES: &[&[u8]] = &[
    br#"192.0.2.1 - - [01/Nov/2026:09:15:02 +0900] "GET /a?x=1 HTTP/1.1" 200 5123 "https://example.com/" "Mozilla/5.0 \"q\"" "lang=ja; jt_uid=u-1""#,
    br#"localhost:443 192.0.2.9 id user [26/Jul/2023:00:01:26 -0700] "GET /x HTTP/2.0" 200 17163 "-" "Mozilla/5.0" 116075"#,
    br#"frank.mtsu.edu - - [03/Jul/1995:02:41:15 -0400] "GET /images/" HTTP/1.0" 404 -"#,
];

fuzz_target!(|data: &[u8]| {
    let Ok(format) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(compiled) = LogFormat::apache(format) else {
        return;
    };
    assert_eq!(compiled.source(), format);
    let parser = LineParser::new(compiled, Some("jt_uid"));
    for line in LINES {
        if let Ok(record) = parser.parse(line) {
            assert!(record.time.is_some());
        }
    }
});
