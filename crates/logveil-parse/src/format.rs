//! Log formats: presets, the Apache `LogFormat` compiler and the nginx `log_format` compiler.
//!
//! A format compiles to a list of [`Token`]s: literal bytes and fields. The line parser
//! walks that list; there is no regex and no per-line allocation.

use nom::{
    IResult, Parser,
    branch::alt,
    bytes::complete::{tag, take_till1, take_while1},
    character::complete::{anychar, char, none_of},
    combinator::{map, opt},
    multi::many0,
    sequence::delimited,
};

use crate::error::FormatError;
use crate::time::TimePattern;

/// What a field of the log line holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// `%h`, `%a`, `$remote_addr`: the client address or host name.
    Client,
    /// `%l`: remote logname (identd); never used.
    Ident,
    /// `%u`, `$remote_user`: authenticated user.
    RemoteUser,
    /// `%t`: `[dd/Mon/yyyy:HH:MM:SS +zzzz]`, brackets included.
    Time,
    /// nginx `$time_local`: `dd/Mon/yyyy:HH:MM:SS +zzzz` without brackets.
    TimeClf,
    /// nginx `$time_iso8601`: `2026-11-01T09:15:02+09:00`.
    TimeIso8601,
    /// Seconds since the epoch, with optional fraction (`%{sec}t`, nginx `$msec`).
    TimeEpochSeconds,
    /// Integer milli- or microseconds since the epoch (`%{msec}t`, `%{usec}t`): the unit in µs.
    TimeEpochUnits(i64),
    /// `%{strftime pattern}t`.
    TimePattern(TimePattern),
    /// `%r`, `$request`: the request line.
    Request,
    /// `%m`, `$request_method`
    Method,
    /// `%U`, `$uri`
    UrlPath,
    /// `%q` (with its leading `?`, or empty)
    Query,
    /// nginx `$request_uri`: path and query as requested.
    Target,
    /// `%H`, `$server_protocol`
    Protocol,
    /// `%s`, `%>s`, `$status`
    Status,
    /// `%b` (`-` for zero), `%B`, `%O`, `$body_bytes_sent`
    Bytes,
    /// `%D`: microseconds.
    DurationMicros,
    /// `%T`, `$request_time`: seconds (a fraction is allowed).
    DurationSeconds,
    /// `%{X-Forwarded-For}i`, `$http_x_forwarded_for`.
    ForwardedFor,
    /// `%{Name}i`, `$http_name`: a request header, name lower-cased.
    Header(String),
    /// `%{Name}C`, `$cookie_name`: one cookie's value.
    Cookie(String),
    /// `%v`, `%V`, `$host`
    VirtualHost,
    /// Anything logged that logveil does not use (`%p`, `%X`, `%I`, `%^`, `%{..}n`, `$upstream_*`…).
    Skip,
}

impl Field {
    /// Whether the field carries the request time.
    pub fn is_time(&self) -> bool {
        matches!(
            self,
            Self::Time
                | Self::TimeClf
                | Self::TimeIso8601
                | Self::TimeEpochSeconds
                | Self::TimeEpochUnits(_)
                | Self::TimePattern(_)
        )
    }
}

/// One element of a compiled format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Literal(Vec<u8>),
    Field(Field),
}

/// A compiled log format, ready to parse lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFormat {
    pub(crate) tokens: Vec<Token>,
    pub(crate) source: String,
}

/// Named formats users can write instead of a format string.
pub const PRESETS: &[(&str, &str)] = &[
    ("common", r#"%h %l %u %t "%r" %>s %b"#),
    (
        "combined",
        r#"%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i""#,
    ),
    (
        "combined_cookie",
        r#"%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" "%{Cookie}i""#,
    ),
    (
        "vhost_combined",
        r#"%v:%p %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i""#,
    ),
    (
        "nginx_combined",
        r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#,
    ),
    (
        "nginx_combined_cookie",
        r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_cookie""#,
    ),
];

/// Presets that are not template formats (handled by their own parsers).
pub const OTHER_PRESETS: &[&str] = &["w3c", "json"];

impl LogFormat {
    /// A preset name (see [`PRESETS`]), an Apache `LogFormat` string (it has `%`
    /// directives) or an nginx `log_format` string (it has `$variables`).
    pub fn from_name_or_format(spec: &str) -> Result<Self, FormatError> {
        let format = PRESETS
            .iter()
            .find(|(name, _)| *name == spec)
            .map_or(spec, |(_, fmt)| *fmt);
        if format.contains('%') {
            Self::apache(format)
        } else if format.contains('$') {
            Self::nginx(format)
        } else {
            Err(FormatError::UnknownPreset {
                name: spec.to_owned(),
                allowed: PRESETS
                    .iter()
                    .map(|(n, _)| *n)
                    .chain(OTHER_PRESETS.iter().copied())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }

    /// Compiles an Apache `LogFormat` string.
    pub fn apache(format: &str) -> Result<Self, FormatError> {
        let (rest, pieces) = apache_pieces(format).map_err(|_| FormatError::Syntax {
            format: format.to_owned(),
            at: 0,
        })?;
        if !rest.is_empty() {
            return Err(FormatError::Syntax {
                format: format.to_owned(),
                at: format.len() - rest.len(),
            });
        }
        let mut tokens: Vec<Token> = Vec::new();
        for piece in pieces {
            match piece {
                Piece::Literal(text) => push_literal(&mut tokens, text.as_bytes()),
                Piece::Escape(c) => {
                    let mut buf = [0u8; 4];
                    let bytes: &[u8] = match c {
                        Some('n') => b"\n",
                        Some('r') => b"\r",
                        Some('t') => b"\t",
                        Some('\\') | None => b"\\",
                        Some('"') => b"\"",
                        Some(other) => {
                            push_literal(&mut tokens, b"\\");
                            other.encode_utf8(&mut buf).as_bytes()
                        }
                    };
                    push_literal(&mut tokens, bytes);
                }
                Piece::Directive { arg, name } => {
                    push_field(&mut tokens, directive_field(arg, name)?, format)?;
                }
            }
        }
        Self::finish(tokens, format)
    }

    /// Compiles an nginx `log_format` string (`$var` and `${var}`).
    pub fn nginx(format: &str) -> Result<Self, FormatError> {
        let syntax = |at| FormatError::Syntax {
            format: format.to_owned(),
            at,
        };
        let mut tokens: Vec<Token> = Vec::new();
        let bytes = format.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'$' {
                let next = memchr::memchr(b'$', &bytes[i..]).map_or(bytes.len(), |k| i + k);
                push_literal(&mut tokens, &bytes[i..next]);
                i = next;
                continue;
            }
            let (name, after) = if bytes.get(i + 1) == Some(&b'{') {
                let close = memchr::memchr(b'}', &bytes[i..]).ok_or_else(|| syntax(i))? + i;
                (&format[i + 2..close], close + 1)
            } else {
                let len = bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                    .count();
                (&format[i + 1..i + 1 + len], i + 1 + len)
            };
            if name.is_empty() {
                return Err(syntax(i));
            }
            let field = nginx_field(name).ok_or_else(|| FormatError::UnknownDirective {
                directive: format!("${name}"),
            })?;
            push_field(&mut tokens, field, format)?;
            i = after;
        }
        Self::finish(tokens, format)
    }

    fn finish(tokens: Vec<Token>, format: &str) -> Result<Self, FormatError> {
        if !tokens
            .iter()
            .any(|t| matches!(t, Token::Field(f) if f.is_time()))
        {
            return Err(FormatError::NoTime {
                format: format.to_owned(),
            });
        }
        Ok(Self {
            tokens,
            source: format.to_owned(),
        })
    }

    /// The format string this was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// Whether the format logs a field the visitor cookie can be read from.
    pub fn has_cookie(&self) -> bool {
        self.tokens.iter().any(|t| {
            matches!(t, Token::Field(Field::Cookie(_)))
                || matches!(t, Token::Field(Field::Header(h)) if h == "cookie")
        })
    }
}

fn push_field(tokens: &mut Vec<Token>, field: Field, format: &str) -> Result<(), FormatError> {
    if let Some(Token::Field(prev)) = tokens.last() {
        // Two fields with nothing between them can only be split when the first
        // one's end is implied by the second (`%U%q`: the query starts at `?`).
        if !(*prev == Field::UrlPath && field == Field::Query) {
            return Err(FormatError::AdjacentFields {
                format: format.to_owned(),
            });
        }
    }
    tokens.push(Token::Field(field));
    Ok(())
}

fn push_literal(tokens: &mut Vec<Token>, bytes: &[u8]) {
    match tokens.last_mut() {
        Some(Token::Literal(prev)) => prev.extend_from_slice(bytes),
        _ => tokens.push(Token::Literal(bytes.to_vec())),
    }
}

enum Piece<'a> {
    Literal(&'a str),
    Escape(Option<char>),
    Directive { arg: Option<&'a str>, name: char },
}

fn apache_pieces(input: &str) -> IResult<&str, Vec<Piece<'_>>> {
    let literal = map(take_till1(|c| c == '%' || c == '\\'), Piece::Literal);
    // LogFormat strings in httpd.conf are C-escaped. Like Apache's parse_log_misc_string:
    // `\n`, `\r`, `\t` are control characters, `\\` and `\"` the character itself, any other
    // `\c` stays as written, and a backslash before `%` leaves the directive intact.
    let escape = map((char('\\'), opt(none_of("%"))), |(_, c)| Piece::Escape(c));
    let percent = map(tag("%%"), |_| Piece::Literal("%"));
    let directive = map(
        (
            char('%'),
            // Status conditions (`%400,501{User-agent}i`) and `<`/`>` modifiers do not change layout.
            opt(take_while1(|c: char| {
                c == '<' || c == '>' || c == '!' || c == ',' || c.is_ascii_digit()
            })),
            opt(delimited(char('{'), take_till1(|c| c == '}'), char('}'))),
            anychar,
        ),
        |(_, _, arg, name)| Piece::Directive { arg, name },
    );
    many0(alt((percent, escape, directive, literal))).parse(input)
}

fn directive_field(arg: Option<&str>, name: char) -> Result<Field, FormatError> {
    let unknown = |why: Option<String>| FormatError::UnknownDirective {
        directive: match (arg, why) {
            (Some(a), None) => format!("%{{{a}}}{name}"),
            (Some(a), Some(why)) => format!("%{{{a}}}{name} ({why})"),
            (None, _) => format!("%{name}"),
        },
    };
    Ok(match (name, arg) {
        ('h' | 'a', _) => Field::Client,
        ('l', None) => Field::Ident,
        ('u', None) => Field::RemoteUser,
        ('t', None) => Field::Time,
        ('t', Some(pattern)) => {
            // `begin:`/`end:` choose the instant, which does not change the layout.
            let pattern = pattern
                .strip_prefix("begin:")
                .or_else(|| pattern.strip_prefix("end:"))
                .unwrap_or(pattern);
            match pattern {
                "sec" => Field::TimeEpochSeconds,
                "msec" => Field::TimeEpochUnits(1_000),
                "usec" => Field::TimeEpochUnits(1),
                "msec_frac" | "usec_frac" => Field::Skip,
                _ => {
                    Field::TimePattern(TimePattern::compile(pattern).map_err(|bad| {
                        unknown(Some(format!("unsupported time conversion {bad}")))
                    })?)
                }
            }
        }
        ('r', None) => Field::Request,
        ('m', None) => Field::Method,
        ('U', None) => Field::UrlPath,
        ('q', None) => Field::Query,
        ('H', None) => Field::Protocol,
        ('s', None) => Field::Status,
        ('b' | 'B' | 'O', None) => Field::Bytes,
        ('D', None) => Field::DurationMicros,
        ('T', None) => Field::DurationSeconds,
        ('i', Some(h)) if h.eq_ignore_ascii_case("x-forwarded-for") => Field::ForwardedFor,
        ('i', Some(h)) => Field::Header(h.to_ascii_lowercase()),
        ('C', Some(c)) => Field::Cookie(c.to_owned()),
        ('v' | 'V', None) => Field::VirtualHost,
        ('p' | 'X' | 'I' | 'S' | 'k' | 'P' | 'L' | 'R' | '^', _) | ('n' | 'o' | 'e', Some(_)) => {
            Field::Skip
        }
        _ => return Err(unknown(None)),
    })
}

/// nginx variables logveil understands; any other is a config error naming it.
fn nginx_field(name: &str) -> Option<Field> {
    Some(match name {
        "remote_addr" | "realip_remote_addr" => Field::Client,
        "remote_user" => Field::RemoteUser,
        "time_local" => Field::TimeClf,
        "time_iso8601" => Field::TimeIso8601,
        "msec" => Field::TimeEpochSeconds,
        "request" => Field::Request,
        "request_method" => Field::Method,
        "uri" | "document_uri" => Field::UrlPath,
        "request_uri" => Field::Target,
        "server_protocol" => Field::Protocol,
        "status" => Field::Status,
        "body_bytes_sent" | "bytes_sent" => Field::Bytes,
        "request_time" => Field::DurationSeconds,
        "http_referer" => Field::Header("referer".into()),
        "http_user_agent" => Field::Header("user-agent".into()),
        "http_cookie" => Field::Header("cookie".into()),
        "http_x_forwarded_for" => Field::ForwardedFor,
        "host" | "server_name" | "http_host" => Field::VirtualHost,
        "args"
        | "query_string"
        | "remote_port"
        | "server_addr"
        | "server_port"
        | "request_length"
        | "connection"
        | "connection_requests"
        | "pipe"
        | "upstream_addr"
        | "upstream_status"
        | "upstream_response_time"
        | "upstream_connect_time"
        | "upstream_header_time"
        | "upstream_cache_status"
        | "ssl_protocol"
        | "ssl_cipher"
        | "scheme"
        | "gzip_ratio"
        | "request_id"
        | "hostname"
        | "pid"
        | "content_length"
        | "content_type" => Field::Skip,
        other => {
            if let Some(cookie) = other.strip_prefix("cookie_") {
                Field::Cookie(cookie.to_owned())
            } else if let Some(header) = other.strip_prefix("http_") {
                Field::Header(header.replace('_', "-"))
            } else if ["sent_http_", "upstream_http_", "arg_"]
                .iter()
                .any(|p| other.starts_with(p))
            {
                Field::Skip
            } else {
                return None;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_compile() {
        for (name, _) in PRESETS {
            LogFormat::from_name_or_format(name).unwrap();
        }
        assert!(
            LogFormat::from_name_or_format("combined_cookie")
                .unwrap()
                .has_cookie()
        );
        assert!(
            !LogFormat::from_name_or_format("combined")
                .unwrap()
                .has_cookie()
        );
    }

    #[test]
    fn compiles_combined_into_expected_tokens() {
        let f = LogFormat::apache(r#"%h %l %u %t "%r" %>s %b"#).unwrap();
        assert_eq!(
            f.tokens,
            vec![
                Token::Field(Field::Client),
                Token::Literal(b" ".to_vec()),
                Token::Field(Field::Ident),
                Token::Literal(b" ".to_vec()),
                Token::Field(Field::RemoteUser),
                Token::Literal(b" ".to_vec()),
                Token::Field(Field::Time),
                Token::Literal(b" \"".to_vec()),
                Token::Field(Field::Request),
                Token::Literal(b"\" ".to_vec()),
                Token::Field(Field::Status),
                Token::Literal(b" ".to_vec()),
                Token::Field(Field::Bytes),
            ]
        );
    }

    #[test]
    fn unknown_directive_is_named() {
        let err = LogFormat::apache("%h %t %Y").unwrap_err();
        assert!(err.to_string().contains("%Y"), "{err}");
        let err = LogFormat::from_name_or_format("combind").unwrap_err();
        assert!(err.to_string().contains("combined_cookie"), "{err}");
    }

    #[test]
    fn nginx_formats_compile_and_unknown_variables_are_named() {
        let f = LogFormat::from_name_or_format("nginx_combined_cookie").unwrap();
        assert!(f.has_cookie());
        assert!(f.tokens().contains(&Token::Field(Field::TimeClf)));
        let f = LogFormat::nginx(r#"$remote_addr [$time_iso8601] "$request" $status ${request_time}s $cookie_jt_uid "$http_x_forwarded_for""#).unwrap();
        assert!(
            f.tokens()
                .contains(&Token::Field(Field::Cookie("jt_uid".into())))
        );
        assert!(f.tokens().contains(&Token::Field(Field::ForwardedFor)));
        let err = LogFormat::nginx("$remote_addr [$time_local] $bogus_var").unwrap_err();
        assert!(err.to_string().contains("$bogus_var"), "{err}");
    }

    #[test]
    fn apache_time_variants() {
        let f = LogFormat::apache("%h [%{%d/%b/%Y:%H:%M:%S %z}t] %{msec}t").unwrap();
        assert!(matches!(f.tokens()[2], Token::Field(Field::TimePattern(_))));
        assert!(
            f.tokens()
                .contains(&Token::Field(Field::TimeEpochUnits(1_000)))
        );
        let err = LogFormat::apache("%h %{%Y %Q}t").unwrap_err().to_string();
        assert!(err.contains("%Q"), "{err}");
    }

    #[test]
    fn adjacent_fields_are_refused_except_path_and_query() {
        assert!(LogFormat::apache("%h%u %t").is_err());
        LogFormat::apache(r#"%h %t "%m %U%q %H" %>s"#).unwrap();
    }
}
