//! The dead-letter redactor (`logveil_privacy::redact::redact_line`) on arbitrary bytes.
//!
//! First byte even: the rest is the line, as is. It must redact without panicking, and its
//! output must survive a JSON round trip on one line (what the dead-letter file writes).
//!
//! First byte odd: the rest shapes a combined+cookie line that plants identifiers where
//! they must not survive: bytes 1–4 are an IPv4 address (the client, in the referrer as
//! its host, dotted and with dashes, and in the user agent, with bytes 5–6 as a port), the
//! next up to 17 bytes the visitor cookie (`u-7…`, also planted in the path and, upper-
//! cased, in the referrer), and what follows is filler around them (without `"`, `\`,
//! `@`, `.` or digits, so it cannot change the fields or forge the planted values). The
//! client and the cookie become tokens, the address is nowhere in any form, the cookie
//! nowhere else, and the e-mail addresses in the path (`@`, `%2540`, `(at)`) are gone.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use logveil_privacy::redact::redact_line;
use logveil_privacy::{KeyRing, Pseudonymizer};

/// The published demo key (its secret protects nothing: fine for fuzzing).
static PSEUDONYMIZER: LazyLock<Pseudonymizer> = LazyLock::new(|| {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../sample-logs/demo.key");
    Pseudonymizer::new(KeyRing::load(path.as_ref()).expect("demo key").newest())
});

const TOKEN_HEX: usize = 16;
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const EMAIL: &str = "pat.doe@example.org";
const EMAIL_2540: &str = "pat.doe%2540example.org";
const EMAIL_AT: &str = "pat.doe(at)example.org";

fn json_safe(out: &str) {
    let json = serde_json::to_string(out).expect("a string serializes");
    assert!(!json.contains('\n'), "one JSON line");
    let back: String = serde_json::from_str(&json).expect("round trip");
    assert_eq!(back, out);
}

/// `text` starts with `prefix` followed by a 16-hex-digit token; the rest after it.
fn after_token<'a>(text: &'a str, prefix: &str) -> &'a str {
    let rest = text
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("no `{prefix}` token"));
    assert!(
        rest.len() >= TOKEN_HEX
            && rest.as_bytes()[..TOKEN_HEX]
                .iter()
                .all(u8::is_ascii_hexdigit),
        "not a token after `{prefix}`"
    );
    &rest[TOKEN_HEX..]
}

fn planted(data: &[u8]) {
    let mut bytes = data.iter().copied();
    let mut next = || bytes.next().unwrap_or(0);
    let v4 = std::net::Ipv4Addr::new(next(), next(), next(), next()).to_string();
    let port = u16::from_be_bytes([next(), next()]).max(1);
    let rest = data.get(7..).unwrap_or_default();
    let cookie_len = rest.len().min(17);
    // `u-7`: a `-` no token has and a digit no filler has, so only planting can show it.
    let mut cookie: Vec<u8> = b"u-7".to_vec();
    cookie.extend(
        rest[..cookie_len]
            .iter()
            .map(|b| ALNUM[usize::from(*b) % ALNUM.len()]),
    );
    cookie.resize(cookie.len().max(8), b'x');
    let cookie_text = String::from_utf8(cookie.clone()).expect("ASCII");
    let filler: Vec<u8> = rest[cookie_len..]
        .iter()
        .map(|&b| match b {
            b'"' | b'\\' | b'@' | b'.' | b'0'..=b'9' => b'_',
            _ => b,
        })
        .collect();
    let dashed = v4.replace('.', "-");
    let (a, b) = filler.split_at(filler.len() / 2);
    let mut line = Vec::new();
    line.extend_from_slice(format!("{v4} - - [01/Nov/2026:10:00:00 +0000] \"GET /").as_bytes());
    line.extend_from_slice(a);
    line.extend_from_slice(format!("/{EMAIL}/{EMAIL_2540}/{EMAIL_AT}/{cookie_text}/").as_bytes());
    line.extend_from_slice(b);
    line.extend_from_slice(format!(" HTTP/1.1\" 200 1 \"http://{v4}:{port}/").as_bytes());
    line.extend_from_slice(a);
    line.extend_from_slice(
        format!(" http://{dashed}-x/{}/", cookie_text.to_ascii_uppercase()).as_bytes(),
    );
    line.extend_from_slice(b"\" \"Mozilla/5.0 (");
    line.extend_from_slice(b);
    line.extend_from_slice(format!(" {v4}:{port})\" \"jt_uid=").as_bytes());
    line.extend_from_slice(&cookie);
    line.push(b'"');

    let out = redact_line(&line, &PSEUDONYMIZER);
    json_safe(&out);
    let rest = after_token(&out, "ip:");
    assert!(
        rest.starts_with(" - - [01/Nov/2026:10:00:00 +0000] \"GET /"),
        "the head keeps its shape"
    );
    let tail = out
        .rfind("\"jt_uid=")
        .map(|i| &out[i + 1..])
        .expect("the cookie field");
    assert_eq!(
        after_token(tail, "jt_uid="),
        "\"",
        "the cookie value is a token"
    );
    let lower = out.to_ascii_lowercase();
    assert!(
        !lower.contains("pat.doe") && !lower.contains("example.org") && !lower.contains("%2540"),
        "an e-mail survived"
    );
    assert!(
        !lower.contains(&cookie_text.to_ascii_lowercase()),
        "the cookie survived"
    );
    // Digits and dashes together come only from the planted forms.
    assert!(
        !out.contains(&dashed),
        "the planted address survived with dashes"
    );
    // The filler has no digits: a dotted quad in the output can only be the planted one.
    let v4_alone = out
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .any(|t| t == v4);
    assert!(!v4_alone, "the planted address survived");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        json_safe(&redact_line(rest, &PSEUDONYMIZER));
    } else {
        planted(rest);
    }
});
