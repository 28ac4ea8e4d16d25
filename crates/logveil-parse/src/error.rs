//! Why a format failed to compile, and why a line was rejected.

use std::fmt;

/// A format string that cannot be compiled. Messages quote the format, never log data.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    #[error("unknown log format directive `{directive}`")]
    UnknownDirective { directive: String },
    #[error("unknown format preset `{name}` (allowed: {allowed}, or an Apache LogFormat string)")]
    UnknownPreset { name: String, allowed: String },
    #[error("cannot parse log format `{format}` at byte {at}")]
    Syntax { format: String, at: usize },
    #[error(
        "log format `{format}` has two fields with nothing between them; their boundary is ambiguous"
    )]
    AdjacentFields { format: String },
    #[error("log format `{format}` has no time field (%t); reports need one")]
    NoTime { format: String },
}

/// Why a line was not parsed. Every rejected line is counted under one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RejectReason {
    /// Empty or whitespace-only line.
    BlankLine,
    /// Longer than `max_line_bytes`.
    TooLong,
    /// Raw control bytes (NUL, …): servers escape these, so the file is corrupt or binary.
    Binary,
    /// The line ended before the format's last field.
    Truncated,
    /// Text between fields does not match the format (e.g. a missing quote or bracket).
    UnexpectedText,
    /// Bytes left after the format's last field: more fields than the format has.
    FieldCount,
    /// Empty client address.
    BadClient,
    /// Not a valid timestamp, an impossible date, or an offset outside -1200..+1400.
    BadTime,
    /// A quoted request with no closing quote.
    BadRequest,
    /// Another quoted field (referer, user agent…) with no closing quote.
    UnterminatedQuote,
    BadStatus,
    BadBytes,
    /// A numeric field (`%D`, `%T`) that is not a number.
    BadNumber,
    /// A W3C data line before any `#Fields:` directive: its layout is unknown.
    NoFields,
    /// (Pipeline) no key of the key ring is in force on the line's UTC day.
    NoKey,
}

impl RejectReason {
    pub const ALL: [RejectReason; 15] = [
        Self::BlankLine,
        Self::TooLong,
        Self::Binary,
        Self::Truncated,
        Self::UnexpectedText,
        Self::FieldCount,
        Self::BadClient,
        Self::BadTime,
        Self::BadRequest,
        Self::UnterminatedQuote,
        Self::BadStatus,
        Self::BadBytes,
        Self::BadNumber,
        Self::NoFields,
        Self::NoKey,
    ];

    /// The stable `snake_case` name used in summaries and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BlankLine => "blank_line",
            Self::TooLong => "too_long",
            Self::Binary => "binary",
            Self::Truncated => "truncated",
            Self::UnexpectedText => "unexpected_text",
            Self::FieldCount => "field_count",
            Self::BadClient => "bad_client",
            Self::BadTime => "bad_time",
            Self::BadRequest => "bad_request",
            Self::UnterminatedQuote => "unterminated_quote",
            Self::BadStatus => "bad_status",
            Self::BadBytes => "bad_bytes",
            Self::BadNumber => "bad_number",
            Self::NoFields => "no_fields",
            Self::NoKey => "no_key",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
