//! The first byte picks a JSON field layout (Caddy, nginx, or a custom one with deep paths,
//! arrays and alternatives), the rest is one log line. The parser must return `Ok` or `Err`
//! without panicking, and what it accepts must have a time and borrow only the line.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use logveil_parse::LogRecord;
use logveil_parse::json::{JsonFields, JsonParser};

static PARSERS: LazyLock<Vec<JsonParser>> = LazyLock::new(|| {
    let s = |v: &str| Some(v.to_owned());
    let custom = JsonFields {
        client: "a.b.c|ip".to_owned(),
        time: "t|ts.s".to_owned(),
        method: s("r.m"),
        uri: s("r.u"),
        request: s("req"),
        status: s("s|r.s"),
        bytes: s("b"),
        referer: s("h.Referer"),
        user_agent: s("h.User-Agent|ua"),
        cookie: s("h.Cookie|c"),
        forwarded_for: s("h.X-Forwarded-For"),
        host: s("ip"),
        duration_seconds: s("d"),
    };
    vec![
        JsonParser::new(JsonFields::caddy(), Some("jt_uid")),
        JsonParser::new(JsonFields::nginx(), Some("jt_uid")),
        JsonParser::new(custom, Some("jt_uid")),
        JsonParser::new(JsonFields::caddy(), None),
    ]
});

fn check(line: &[u8], record: &LogRecord<'_>) {
    assert!(record.time.is_some(), "accepted without a time");
    assert!(record.status.is_none_or(|s| (100..=999).contains(&s)));
    let within = |part: &[u8]| {
        part.is_empty() || {
            let (start, p) = (line.as_ptr() as usize, part.as_ptr() as usize);
            p >= start && p + part.len() <= start + line.len()
        }
    };
    let ids = [
        record.client,
        record.remote_user,
        record.visitor_cookie,
        record.forwarded_for,
    ];
    assert!(
        ids.iter()
            .flatten()
            .all(|id| within(id.expose_for_hashing()))
    );
    let plain = [
        record.method,
        record.url_path,
        record.query,
        record.referer,
        record.user_agent,
        record.vhost,
    ];
    assert!(plain.iter().flatten().all(|p| within(p)));
    if let Some(req) = record.request {
        assert!(within(req.method) && within(req.target) && req.protocol.is_none_or(within));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, line)) = data.split_first() else {
        return;
    };
    let parsers = &*PARSERS;
    let parser = &parsers[usize::from(selector) % parsers.len()];
    if let Ok(record) = parser.parse(line) {
        check(line, &record);
    }
    // The custom layout too, whatever the selector: it reaches arrays and alternatives.
    if let Ok(record) = parsers[2].parse(line) {
        check(line, &record);
    }
});
