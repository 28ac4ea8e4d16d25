//! Log formats: presets and the Apache `LogFormat` compiler.
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

/// What a field of the log line holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// `%h`, `%a`: the client address or host name.
    Client,
    /// `%l`: remote logname (identd); never used.
    Ident,
    /// `%u`: authenticated user.
    RemoteUser,
    /// `%t`: `[dd/Mon/yyyy:HH:MM:SS +zzzz]`, brackets included.
    Time,
    /// `%r`: the request line.
    Request,
    /// `%m`
    Method,
    /// `%U`
    UrlPath,
    /// `%q` (with its leading `?`, or empty)
    Query,
    /// `%H`
    Protocol,
    /// `%s`, `%>s`
    Status,
    /// `%b` (`-` for zero), `%B`, `%O`
    Bytes,
    /// `%D`: microseconds.
    DurationMicros,
    /// `%T`: seconds.
    DurationSeconds,
    /// `%{Name}i`: a request header, name lower-cased.
    Header(String),
    /// `%{Name}C`: one cookie's value.
    Cookie(String),
    /// `%v`, `%V`
    VirtualHost,
    /// Anything logged that logveil does not use (`%p`, `%X`, `%I`, `%^`, `%{..}n`, `%{..}o`…).
    Skip,
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

/// Named formats users can write instead of a `LogFormat` string.
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
];

impl LogFormat {
    /// A preset name (see [`PRESETS`]) or an Apache `LogFormat` string.
    pub fn from_name_or_format(spec: &str) -> Result<Self, FormatError> {
        if let Some((_, fmt)) = PRESETS.iter().find(|(name, _)| *name == spec) {
            return Self::apache(fmt);
        }
        if !spec.contains('%') {
            return Err(FormatError::UnknownPreset {
                name: spec.to_owned(),
                allowed: PRESETS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Self::apache(spec)
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
                    let field = directive_field(arg, name).ok_or_else(|| {
                        FormatError::UnknownDirective {
                            directive: match arg {
                                Some(a) => format!("%{{{a}}}{name}"),
                                None => format!("%{name}"),
                            },
                        }
                    })?;
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
                }
            }
        }
        if !tokens
            .iter()
            .any(|t| matches!(t, Token::Field(Field::Time)))
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

fn directive_field(arg: Option<&str>, name: char) -> Option<Field> {
    Some(match (name, arg) {
        ('h' | 'a', _) => Field::Client,
        ('l', None) => Field::Ident,
        ('u', None) => Field::RemoteUser,
        ('t', None) => Field::Time,
        ('r', None) => Field::Request,
        ('m', None) => Field::Method,
        ('U', None) => Field::UrlPath,
        ('q', None) => Field::Query,
        ('H', None) => Field::Protocol,
        ('s', None) => Field::Status,
        ('b' | 'B' | 'O', None) => Field::Bytes,
        ('D', None) => Field::DurationMicros,
        ('T', None) => Field::DurationSeconds,
        ('i', Some(h)) => Field::Header(h.to_ascii_lowercase()),
        ('C', Some(c)) => Field::Cookie(c.to_owned()),
        ('v' | 'V', None) => Field::VirtualHost,
        ('p' | 'X' | 'I' | 'S' | 'k' | 'P' | 'L' | 'R' | '^', _) | ('n' | 'o' | 'e', Some(_)) => {
            Field::Skip
        }
        _ => return None,
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
    fn adjacent_fields_are_refused_except_path_and_query() {
        assert!(LogFormat::apache("%h%u %t").is_err());
        LogFormat::apache(r#"%h %t "%m %U%q %H" %>s"#).unwrap();
    }
}
