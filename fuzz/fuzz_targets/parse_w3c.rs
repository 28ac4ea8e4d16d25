//! A whole W3C extended log (directives and data lines) through the `Parser` facade, with
//! state carried line to line and, separately, through `Parser::scan` chunk by chunk: both
//! paths must agree on every line's outcome, and nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logveil_parse::{Parsed, Parser, ParserState};

fuzz_target!(|data: &[u8]| {
    let parser = Parser::new("w3c", Some("jt_uid"), None).expect("preset");
    let mut sequential = ParserState::default();
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let outcomes: Vec<Option<bool>> = lines
        .iter()
        .map(|line| match parser.parse(line, &mut sequential) {
            Ok(Parsed::Record(r)) => {
                assert!(r.time.is_some());
                Some(true)
            }
            Ok(Parsed::Directive) => Some(false),
            Err(_) => None,
        })
        .collect();
    // Split in two chunks at the middle line: the second chunk starts from `scan` of the first.
    let mid = lines.len() / 2;
    let first = lines[..mid].join(&b'\n');
    let mut carried = ParserState::default();
    parser.scan(&first, &mut carried);
    for (line, expected) in lines[mid..].iter().zip(&outcomes[mid..]) {
        let got = match parser.parse(line, &mut carried) {
            Ok(Parsed::Record(_)) => Some(true),
            Ok(Parsed::Directive) => Some(false),
            Err(_) => None,
        };
        assert_eq!(got, *expected, "scan and sequential parsing disagree");
    }
});
