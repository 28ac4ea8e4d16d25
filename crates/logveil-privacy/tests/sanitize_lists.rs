//! The checked-in keep and redact lists (`tests/data/sanitize_keep.txt`,
//! `tests/data/sanitize_redact.txt`), and the sanitiser's idempotence and length bound.

use logveil_privacy::sanitize::{
    IP_REFERRER, Page, QueryAllow, QueryParam, QueryValues, REDACTED, ReferrerDomain,
};

/// The values of a list file: one a line, `#` comment lines and blank lines skipped.
fn values(name: &str) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let values: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    assert!(values.len() > 20, "{name}: {} values", values.len());
    values
}

/// The sanitised form of a list value, and whether it came out unchanged.
enum Kind {
    Path(String),
    Referrer(String),
    Query(Option<String>),
}

fn sanitise(value: &str) -> Kind {
    if value.starts_with('/') {
        Kind::Path(Page::from_target(value.as_bytes()).as_str().to_owned())
    } else if let Some(url) = value.strip_prefix("ref ") {
        Kind::Referrer(
            ReferrerDomain::from_referer(Some(url.as_bytes()))
                .as_str()
                .to_owned(),
        )
    } else {
        let allow = QueryAllow::default().with(QueryParam::UtmSource);
        let target = format!("/?utm_source={value}");
        let values = QueryValues::from_target(target.as_bytes(), allow);
        Kind::Query(
            values
                .get(QueryParam::UtmSource)
                .map(|v| v.as_str().to_owned()),
        )
    }
}

#[test]
fn keep_list_passes_unchanged() {
    let mut bad = Vec::new();
    for value in values("sanitize_keep.txt") {
        let ok = match sanitise(&value) {
            Kind::Path(page) => page == value,
            Kind::Referrer(domain) => {
                let url = value.strip_prefix("ref ").unwrap();
                let host = url.split("://").nth(1).unwrap_or(url);
                let host = host.split(['/', ':', '?']).next().unwrap();
                domain == host.to_ascii_lowercase()
            }
            Kind::Query(v) => v.is_some_and(|v| v != REDACTED),
        };
        if !ok {
            bad.push(value);
        }
    }
    assert!(bad.is_empty(), "changed by the sanitiser: {bad:#?}");
}

#[test]
fn redact_list_is_redacted() {
    let mut bad = Vec::new();
    for value in values("sanitize_redact.txt") {
        let ok = match sanitise(&value) {
            Kind::Path(page) => {
                // Redacted, or (`;jsessionid=…`) its path parameters dropped.
                page != value && (page.contains(REDACTED) || value.contains(';'))
            }
            Kind::Referrer(domain) => domain == IP_REFERRER,
            Kind::Query(v) => v.as_deref() == Some(REDACTED),
        };
        if !ok {
            bad.push(value);
        }
    }
    assert!(bad.is_empty(), "not redacted: {bad:#?}");
}

/// Pieces that random values are made of: ordinary text and parts of personal data.
const PIECES: &[&str] = &[
    "a",
    "Z",
    "hotel",
    "tokyo",
    "-",
    "_",
    ".",
    "/",
    "0",
    "7",
    "12",
    "255",
    "2026",
    "1234",
    "@",
    "%40",
    "%2540",
    "%25",
    "%2B",
    "+",
    "%20",
    " ",
    "at",
    "(at)",
    "[AT]",
    "--at--",
    "＠",
    ":",
    "::",
    "203.0.113.7",
    "2001:db8::1",
    "%2E",
    "090",
    "-1234-",
    "5678",
    ";x=1",
    "k3i9v0d9o5e4b8p3g2c1",
    "%zz",
    "%",
    "?",
    "&",
    "=",
    "#",
];

/// `text` percent-encoded where a query value needs it.
fn encode_query(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '%' | '+' | '&' | '#' | '=' | '?' | ' ' => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    write!(out, "%{b:02X}").unwrap();
                }
            }
            c => out.push(c),
        }
    }
    out
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

    /// Sanitising a page or a query value again changes nothing, and no segment or value
    /// comes out longer than it went in, or than the marker that replaces it.
    #[test]
    fn sanitising_is_idempotent_and_never_lengthens(
        pieces in proptest::collection::vec(proptest::sample::select(PIECES), 0..12),
        value_pieces in proptest::collection::vec(proptest::sample::select(PIECES), 0..8),
    ) {
        let path = format!("/{}", pieces.concat());
        let page = Page::from_target(path.as_bytes());
        let again = Page::from_target(page.as_str().as_bytes());
        proptest::prop_assert_eq!(&again, &page);
        let end = path.find(['?', '#']).unwrap_or(path.len());
        let segments_in: Vec<&str> = path[..end].split('/').collect();
        let segments_out: Vec<&str> = page.as_str().split('/').collect();
        proptest::prop_assert_eq!(segments_in.len(), segments_out.len());
        for (i, o) in segments_in.iter().zip(&segments_out) {
            proptest::prop_assert!(o.len() <= i.len().max(REDACTED.len()), "{i} → {o}");
        }
        let allow: QueryAllow = QueryParam::ALL.into_iter().collect();
        let value = value_pieces.concat().replace(['&', '#'], "");
        let target = format!("/?utm_source={value}");
        if let Some(v) = QueryValues::from_target(target.as_bytes(), allow).get(QueryParam::UtmSource) {
            proptest::prop_assert!(
                v.as_str().chars().count() <= value.chars().count().max(REDACTED.len()),
                "{value} → {}", v.as_str()
            );
            let target = format!("/?utm_source={}", encode_query(v.as_str()));
            let again = QueryValues::from_target(target.as_bytes(), allow);
            proptest::prop_assert_eq!(again.get(QueryParam::UtmSource), Some(v), "{}", value);
        }
    }
}
