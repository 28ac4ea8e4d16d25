//! The whole per-line path of a run on arbitrary bytes, as `engine::for_each_line` and
//! `Partial::reject` drive it: the first byte picks a format (every preset, `w3c` and
//! `json` included, and a custom format with `X-Forwarded-For` and a cookie header), the
//! rest is a chunk of lines parsed in order with one `ParserState`. Each record goes
//! through `Pseudonymizer::event` (behind trusted proxies, with route templates and the
//! UTM allowlist) and through `event_cached`, which must agree, also on a cache hit; each
//! rejected line (all but `too_long`) and each record without a usable time goes through
//! the dead-letter redaction. Nothing may panic.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use logveil_parse::{Parsed, Parser, ParserState, RejectReason};
use logveil_privacy::client::{ClientPolicy, TrustedProxies};
use logveil_privacy::pseudonym::EventCache;
use logveil_privacy::redact::redact_line;
use logveil_privacy::sanitize::{QueryParam, RouteTemplates, SanitizePolicy};
use logveil_privacy::{KeyRing, Pseudonymizer};

const CUSTOM: &str = r#"%v %h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" "%{X-Forwarded-For}i" "%{Cookie}i""#;

struct Setup {
    parsers: Vec<Parser>,
    pseudonymizer: Pseudonymizer,
    client: ClientPolicy,
    sanitize: SanitizePolicy,
}

static SETUP: LazyLock<Setup> = LazyLock::new(|| {
    let parsers = Parser::preset_names()
        .into_iter()
        .chain([CUSTOM])
        .map(|spec| Parser::new(spec, Some("jt_uid"), None).expect("fixed format compiles"))
        .collect();
    // The published demo key (its secret protects nothing: fine for fuzzing).
    let key = concat!(env!("CARGO_MANIFEST_DIR"), "/../sample-logs/demo.key");
    let pseudonymizer = Pseudonymizer::new(KeyRing::load(key.as_ref()).expect("demo key").newest());
    let client = ClientPolicy {
        trusted_proxies: TrustedProxies::parse(&["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"])
            .expect("fixed networks"),
        ..ClientPolicy::default()
    };
    let templates = [
        "/{lang}/{city}/hotels/{id}",
        "/{lang}/{city}/{topic}",
        "/account/*",
        "/",
    ];
    let sanitize = SanitizePolicy {
        query_allow: QueryParam::ALL.into_iter().collect(),
        routes: RouteTemplates::parse(&templates.map(String::from)).expect("fixed templates"),
    };
    Setup {
        parsers,
        pseudonymizer,
        client,
        sanitize,
    }
});

fn dead_letter(setup: &Setup, reason: RejectReason, line: &[u8]) {
    if reason != RejectReason::TooLong {
        let out = redact_line(line, &setup.pseudonymizer);
        assert!(serde_json::to_string(&out).is_ok_and(|json| !json.contains('\n')));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, chunk)) = data.split_first() else {
        return;
    };
    let setup = &*SETUP;
    let parser = &setup.parsers[usize::from(selector) % setup.parsers.len()];
    let mut state = ParserState::default();
    let mut cache = EventCache::new(&setup.pseudonymizer);
    for line in chunk.split_inclusive(|&b| b == b'\n') {
        let record = match parser.parse(line, &mut state) {
            Ok(Parsed::Record(record)) => record,
            Ok(Parsed::Directive) => continue,
            Err(reason) => {
                dead_letter(setup, reason, line);
                continue;
            }
        };
        let event = setup
            .pseudonymizer
            .event(&record, &setup.client, &setup.sanitize);
        for _ in 0..2 {
            let cached = setup.pseudonymizer.event_cached(
                &record,
                &setup.client,
                &setup.sanitize,
                &mut cache,
            );
            assert_eq!(cached, event, "event_cached disagrees with event");
        }
        if event.is_none() {
            dead_letter(setup, RejectReason::BadTime, line);
        }
    }
});
