//! Regression tests for parser bugs found by the corpus, property and fuzz tests:
//! state leaking between backtracking attempts, and `LogFormat` escapes.

use logveil_parse::{Field, LineParser, LogFormat, Token};

fn parser(spec: &str) -> LineParser {
    LineParser::new(
        LogFormat::from_name_or_format(spec).expect("format compiles"),
        Some("jt_uid"),
    )
}

/// `line.rs`, the quoted-field loop in `LineParser::parse_from`: a candidate closing quote
/// that fails later leaves the fields it set in the record, and `apply_field` only writes
/// status, bytes, `%D`/`%T`, referer, user agent and the visitor cookie when the value is not
/// `-`. A later candidate that succeeds with `-` there keeps the failed attempt's value.
///
/// Here the first candidate (`"GET /a"`) sets status 200, then fails on bytes (`5 x" - -`);
/// the second (`"GET /a" 200 5 x"`) succeeds with status `-`, yet the record says 200.
#[test]
fn backtracking_leaves_no_stale_status() {
    let r = parser("common")
        .parse(br#"192.0.2.1 - - [01/Jul/1995:00:00:01 -0400] "GET /a" 200 5 x" - -"#)
        .unwrap();
    assert_eq!(r.request.unwrap().target, br#"/a" 200 5 x"#);
    assert_eq!(r.bytes, None);
    assert_eq!(r.status, None, "the status logged is `-`");
}

/// Same bug, with the visitor cookie: the failed attempt read `u-1` (text inside the request)
/// as the `%{jt_uid}C` field; the successful parse has `-` there, yet the record carries the
/// visitor id `u-1`.
#[test]
fn backtracking_leaves_no_stale_visitor_cookie() {
    let p = parser(r#"%h %t "%r" %>s %{jt_uid}C %b"#);
    let r = p
        .parse(br#"192.0.2.1 [01/Nov/2026:09:15:02 +0900] "GET /a" 200 u-1 x" 200 - 5"#)
        .unwrap();
    assert_eq!(r.request.unwrap().target, br#"/a" 200 u-1 x"#);
    assert_eq!(r.bytes, Some(5));
    assert!(r.visitor_cookie.is_none(), "the cookie logged is `-`");
}

/// Same bug with the `combined_cookie` preset: the first attempt reads referer `r1`, user
/// agent `ua1` and visitor `stale` from text that is really inside the request, fails on the
/// trailing text, and the successful attempt (request up to `x"`) finds `-` in all three, so
/// the stale values stay: this line's visitor id would be `stale`.
#[test]
fn backtracking_leaves_no_stale_headers() {
    let line = br#"192.0.2.1 - - [01/Nov/2026:09:15:02 +0900] "GET /a" 200 5 "r1" "ua1" "jt_uid=stale" x" 200 5 "-" "-" "-""#;
    let r = parser("combined_cookie").parse(line).unwrap();
    assert_eq!(
        r.request.unwrap().target,
        br#"/a" 200 5 "r1" "ua1" "jt_uid=stale" x"#
    );
    assert_eq!((r.status, r.bytes), (Some(200), Some(5)));
    assert_eq!(
        (r.referer, r.user_agent),
        (None, None),
        "referer and user agent logged as `-`"
    );
    assert!(
        r.visitor_cookie.is_none(),
        "the cookie header logged is `-`"
    );
}

fn literals(format: &str) -> Vec<Vec<u8>> {
    LogFormat::apache(format)
        .unwrap()
        .tokens()
        .iter()
        .filter_map(|t| match t {
            Token::Literal(l) => Some(l.clone()),
            Token::Field(_) => None,
        })
        .collect()
}

/// `format.rs`, `apache_pieces`: the escape arm maps every `\c` other than `\t`, `\n`, `\"`
/// to a lone `\`, dropping `c`. Apache's `parse_log_misc_string` (`mod_log_config.c`) writes
/// `\r` as CR and copies any other `\c` verbatim (the backslash *and* `c`).
#[test]
fn format_escapes_follow_apache() {
    assert_eq!(
        literals(r"%h \x %t"),
        [b" \\x ".to_vec()],
        "Apache keeps `\\x`"
    );
    assert_eq!(
        literals(r"%h\r%t"),
        [b"\r".to_vec()],
        "Apache writes `\\r` as CR"
    );
}

/// Same arm: `\%` consumes the `%`, so the directive after it becomes literal text. Apache
/// writes the `\` and then reads `%h` as a directive.
#[test]
fn backslash_before_directive_keeps_the_directive() {
    let f = LogFormat::apache(r"\%h %t").unwrap();
    assert_eq!(
        f.tokens(),
        [
            Token::Literal(b"\\".to_vec()),
            Token::Field(Field::Client),
            Token::Literal(b" ".to_vec()),
            Token::Field(Field::Time),
        ]
    );
}
