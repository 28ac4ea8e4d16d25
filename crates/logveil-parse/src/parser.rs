//! [`Parser`]: one entry point over every supported log format.

use std::sync::Arc;

use crate::error::{FormatError, RejectReason};
use crate::format::{LogFormat, OTHER_PRESETS, PRESETS};
use crate::json::{JsonFields, JsonParser};
use crate::line::{DEFAULT_MAX_LINE_BYTES, LineParser};
use crate::record::LogRecord;
use crate::w3c::{W3cState, parse_w3c_line};

/// What one line turned out to be.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "returned by value per line; boxing would allocate per line"
)]
pub enum Parsed<'a> {
    Record(LogRecord<'a>),
    /// A W3C `#` directive or comment: not a request, not an error.
    Directive,
}

/// Per-file state some formats need from earlier lines (W3C `#Fields:`). Cheap to clone:
/// callers that parse chunks in parallel carry one per chunk (see [`Parser::scan`]).
#[derive(Debug, Clone, Default)]
pub struct ParserState {
    w3c: Arc<W3cState>,
}

#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant, reason = "built once per run")]
enum Kind {
    Template(LineParser),
    W3c,
    Json(JsonParser),
}

/// A parser for one configured format.
#[derive(Debug, Clone)]
pub struct Parser {
    kind: Kind,
    visitor_cookie: Option<Vec<u8>>,
    max_line_bytes: usize,
}

impl Parser {
    /// `spec`: a preset (`common`, `combined`, `combined_cookie`, `vhost_combined`,
    /// `nginx_combined`, `nginx_combined_cookie`, `w3c`, `json`), an Apache `LogFormat`
    /// string or an nginx `log_format` string. `json_fields` applies to `json`
    /// (default: Caddy's layout).
    pub fn new(
        spec: &str,
        visitor_cookie: Option<&str>,
        json_fields: Option<JsonFields>,
    ) -> Result<Self, FormatError> {
        let kind = match spec {
            "w3c" => Kind::W3c,
            "json" => Kind::Json(JsonParser::new(
                json_fields.unwrap_or_else(JsonFields::caddy),
                visitor_cookie,
            )),
            _ => Kind::Template(LineParser::new(
                LogFormat::from_name_or_format(spec)?,
                visitor_cookie,
            )),
        };
        Ok(Self {
            kind,
            visitor_cookie: visitor_cookie.map(|c| c.as_bytes().to_vec()),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        })
    }

    /// Every preset name.
    pub fn preset_names() -> Vec<&'static str> {
        PRESETS
            .iter()
            .map(|(n, _)| *n)
            .chain(OTHER_PRESETS.iter().copied())
            .collect()
    }

    #[must_use]
    pub fn with_max_line_bytes(mut self, max: usize) -> Self {
        self.max_line_bytes = max;
        if let Kind::Template(p) = self.kind {
            self.kind = Kind::Template(p.with_max_line_bytes(max));
        }
        self
    }

    pub fn max_line_bytes(&self) -> usize {
        self.max_line_bytes
    }

    /// Whether the format can carry the visitor cookie.
    pub fn has_cookie(&self) -> bool {
        match &self.kind {
            Kind::Template(p) => p.format().has_cookie(),
            Kind::W3c | Kind::Json(_) => true,
        }
    }

    /// Whether lines depend on earlier lines (so chunks need [`Parser::scan`]).
    pub fn is_stateful(&self) -> bool {
        matches!(self.kind, Kind::W3c)
    }

    /// Advances `state` over a chunk without parsing records: what a chunk's successor
    /// needs to start from. Cheap (looks only at `#` lines); a no-op for stateless formats.
    pub fn scan(&self, chunk: &[u8], state: &mut ParserState) {
        if !self.is_stateful() || memchr::memchr(b'#', chunk).is_none() {
            return;
        }
        let w3c = Arc::make_mut(&mut state.w3c);
        for line in chunk.split(|&b| b == b'\n') {
            // Exactly the directives `parse` would apply: the same prechecks first.
            if let Ok(line) = precheck(line, self.max_line_bytes)
                && line.first() == Some(&b'#')
            {
                w3c.apply_directive(line);
            }
        }
    }

    /// Parses one line (with or without its `\n`).
    pub fn parse<'a>(
        &self,
        line: &'a [u8],
        state: &mut ParserState,
    ) -> Result<Parsed<'a>, RejectReason> {
        match &self.kind {
            Kind::Template(p) => p.parse(line).map(Parsed::Record),
            Kind::W3c => {
                let line = precheck(line, self.max_line_bytes)?;
                if line.first() == Some(&b'#') {
                    Arc::make_mut(&mut state.w3c).apply_directive(line);
                    return Ok(Parsed::Directive);
                }
                parse_w3c_line(line, &state.w3c, self.visitor_cookie.as_deref()).map(Parsed::Record)
            }
            Kind::Json(p) => p
                .parse(precheck(line, self.max_line_bytes)?)
                .map(Parsed::Record),
        }
    }
}

/// The checks every format shares: end-of-line bytes, length, blank, raw control bytes.
pub(crate) fn precheck(line: &[u8], max_line_bytes: usize) -> Result<&[u8], RejectReason> {
    let mut line = line;
    if let [rest @ .., b'\n'] = line {
        line = rest;
    }
    if let [rest @ .., b'\r'] = line {
        line = rest;
    }
    if line.len() > max_line_bytes {
        return Err(RejectReason::TooLong);
    }
    if line.iter().all(|b| matches!(b, b' ' | b'\t')) {
        return Err(RejectReason::BlankLine);
    }
    // Servers escape control characters; raw ones mean a corrupt or binary file. A
    // branch-free fold (not `any`) so the compiler vectorises this pass over every byte.
    let control = line.iter().fold(0u8, |acc, &b| {
        acc | (u8::from(b < 0x20) & u8::from(b != b'\t')) | u8::from(b == 0x7f)
    });
    if control != 0 {
        return Err(RejectReason::Binary);
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w3c_state_carries_across_chunks_via_scan() {
        let p = Parser::new("w3c", Some("jt_uid"), None).unwrap();
        let chunk1 = b"#Software: IIS\n#Fields: date time c-ip cs-method cs-uri-stem sc-status\n2026-11-01 00:00:00 192.0.2.1 GET / 200\n";
        let chunk2 = b"2026-11-01 00:00:01 192.0.2.1 GET /b 200\n";
        let mut state = ParserState::default();
        p.scan(chunk1, &mut state);
        let mut chunk2_state = state.clone();
        let Parsed::Record(r) = p
            .parse(chunk2.strip_suffix(b"\n").unwrap(), &mut chunk2_state)
            .unwrap()
        else {
            panic!("a record")
        };
        assert_eq!(r.url_path, Some(&b"/b"[..]));
        let mut fresh = ParserState::default();
        assert_eq!(
            p.parse(b"#Version: 1.0", &mut fresh)
                .unwrap_err_or_directive(),
            None
        );
        assert_eq!(
            p.parse(b"2026-11-01 00:00:01 192.0.2.1 GET /b 200", &mut fresh)
                .unwrap_err(),
            RejectReason::NoFields
        );
    }

    trait DirectiveCheck {
        fn unwrap_err_or_directive(self) -> Option<RejectReason>;
    }
    impl DirectiveCheck for Result<Parsed<'_>, RejectReason> {
        fn unwrap_err_or_directive(self) -> Option<RejectReason> {
            match self {
                Ok(Parsed::Directive) => None,
                Ok(Parsed::Record(_)) => panic!("expected a directive"),
                Err(e) => Some(e),
            }
        }
    }

    #[test]
    fn scan_ignores_directives_that_parse_would_reject() {
        // Found by the parse_w3c fuzz target: a `#Fields:` line with a NUL byte.
        let p = Parser::new("w3c", None, None).unwrap();
        let chunk = b"#Fields: date time c-ip\n#Fields: date\x00 time\n";
        let (mut scanned, mut sequential) = (ParserState::default(), ParserState::default());
        p.scan(chunk, &mut scanned);
        for line in chunk.split(|&b| b == b'\n') {
            let _ = p.parse(line, &mut sequential);
        }
        assert_eq!(scanned.w3c, sequential.w3c);
    }

    #[test]
    fn shared_prechecks_apply_to_every_format() {
        for spec in ["combined", "w3c", "json"] {
            let p = Parser::new(spec, None, None)
                .unwrap()
                .with_max_line_bytes(300);
            let mut s = ParserState::default();
            assert_eq!(
                p.parse(b"  \r\n", &mut s).unwrap_err(),
                RejectReason::BlankLine,
                "{spec}"
            );
            assert_eq!(
                p.parse(&[b'a'; 301], &mut s).unwrap_err(),
                RejectReason::TooLong,
                "{spec}"
            );
            assert_eq!(
                p.parse(b"x\x00y", &mut s).unwrap_err(),
                RejectReason::Binary,
                "{spec}"
            );
        }
        let e = Parser::new("jsn", None, None).unwrap_err().to_string();
        assert!(e.contains("w3c, json"), "{e}");
    }
}
