//! The borrowed record a parser yields, and the wrapper that keeps raw identifiers quiet.

use std::fmt;

/// Bytes from the log that identify a person (client address, cookie header, login name).
///
/// It borrows the input buffer, so it cannot outlive the chunk being parsed; it has no
/// `Display`, its `Debug` prints only the length, and it offers no owned copy. The only
/// way to read the bytes is [`RawIdentifier::expose_for_hashing`], whose name makes every
/// use greppable: the privacy crate hashes them, nothing else should touch them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RawIdentifier<'a>(&'a [u8]);

impl<'a> RawIdentifier<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }

    /// The raw bytes, for keyed hashing only.
    pub fn expose_for_hashing(&self) -> &'a [u8] {
        self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for RawIdentifier<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawIdentifier(<{} bytes redacted>)", self.0.len())
    }
}

/// An instant in UTC, microseconds since the Unix epoch, with the offset the log wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    pub utc_micros: i64,
    /// Offset from UTC in seconds as written in the log (for diagnostics and local-day partitions).
    pub offset_seconds: i32,
}

/// The parts of an HTTP request line. `protocol` is `None` for HTTP/0.9 lines (`GET /x`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a [u8],
    /// Request target as written (path and query, still percent-encoded).
    pub target: &'a [u8],
    pub protocol: Option<&'a [u8]>,
}

/// One parsed log line. Every field borrows the line; a `-` in the log is `None`.
///
/// Fields that identify a person are [`RawIdentifier`]s. Everything else (request, referer,
/// user agent) is plain bytes: these are not identifiers by themselves but may still carry
/// personal data (an e-mail in a query string), so they are sanitised before leaving the
/// pseudonymize step.
#[derive(Debug, Clone, Default)]
pub struct LogRecord<'a> {
    /// `%h`/`%a`/`$remote_addr`: IP address, `IP:port` or host name.
    pub client: Option<RawIdentifier<'a>>,
    /// `%u`: authenticated user name.
    pub remote_user: Option<RawIdentifier<'a>>,
    pub time: Option<Timestamp>,
    /// `%r`; `None` when the log wrote `-`.
    pub request: Option<Request<'a>>,
    /// `%m`, `%U`, `%q`, `%H` when the format logs them separately instead of `%r`.
    pub method: Option<&'a [u8]>,
    pub url_path: Option<&'a [u8]>,
    pub query: Option<&'a [u8]>,
    pub status: Option<u16>,
    /// `%b`/`%B`/`%O`: response size; `-` (no body) is `None`.
    pub bytes: Option<u64>,
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    /// The value of the visitor cookie (named by the parser's configuration), taken from the
    /// `Cookie` header (`%{Cookie}i`) or a `%{NAME}C` field. Other cookies are never kept.
    pub visitor_cookie: Option<RawIdentifier<'a>>,
    /// `X-Forwarded-For` as logged (a comma-separated list); the privacy layer picks the
    /// client from it only behind configured trusted proxies.
    pub forwarded_for: Option<RawIdentifier<'a>>,
    /// `%v`/`%V`: server or virtual host name.
    pub vhost: Option<&'a [u8]>,
    /// `%D` (microseconds) or `%T` (seconds) converted to microseconds.
    pub duration_micros: Option<u64>,
}

impl LogRecord<'_> {
    /// The request method, whether logged inside `%r` or on its own.
    pub fn method(&self) -> Option<&[u8]> {
        self.request.map(|r| r.method).or(self.method)
    }

    /// The request target (path + query) as logged, from `%r` or from `%U%q`.
    pub fn target_path(&self) -> Option<&[u8]> {
        self.request.map(|r| r.target).or(self.url_path)
    }
}
