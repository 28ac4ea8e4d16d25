//! The first byte picks a format (a preset or one of the fixed custom formats), the rest is
//! one log line. The parser must return `Ok` or `Err` without panicking, and what it accepts
//! must borrow the line.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use logveil_parse::{LineParser, LogFormat, LogRecord, PRESETS};

/// Custom formats that reach `%v:%p`, `%D`, `%T`, `%U%q`, `%{..}C`, quoted `%t` and other headers.
const CUSTOM: &[&str] = &[
    r#"%v:%p %h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %D"#,
    r#"%h %t "%m %U%q %H" %>s %{jt_uid}C %T"#,
    r#"%a "%t" "%{Host}i" "%r" %s %B "%{Cookie}i" "%{X-Forwarded-For}i""#,
];

static PARSERS: LazyLock<Vec<LineParser>> = LazyLock::new(|| {
    PRESETS
        .iter()
        .map(|(name, _)| *name)
        .chain(CUSTOM.iter().copied())
        .map(|spec| {
            LineParser::new(
                LogFormat::from_name_or_format(spec).expect("fixed format compiles"),
                Some("jt_uid"),
            )
        })
        .collect()
});

fn check(line: &[u8], record: &LogRecord<'_>) {
    assert!(record.time.is_some(), "accepted without a time");
    let within = |part: &[u8]| {
        part.is_empty() || {
            let (start, p) = (line.as_ptr() as usize, part.as_ptr() as usize);
            p >= start && p + part.len() <= start + line.len()
        }
    };
    let ids = [record.client, record.remote_user, record.visitor_cookie];
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
    // The custom `%{jt_uid}C` format too, whatever the selector, so every input reaches it.
    if let Ok(record) = parsers[PRESETS.len() + 1].parse(line) {
        check(line, &record);
    }
});
