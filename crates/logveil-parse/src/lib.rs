//! Access-log parsing: bytes in, borrowed [`LogRecord`]s out. No I/O, no allocation per line.
//!
//! A [`LogFormat`] (a preset such as `combined_cookie` or an Apache `LogFormat` string)
//! compiles once; a [`LineParser`] then turns each line into a [`LogRecord`] that borrows
//! the line, or into a [`RejectReason`] that the caller counts. Identifying fields (client
//! address, user, visitor cookie) are [`RawIdentifier`]s: they cannot outlive the input
//! buffer, cannot be printed, and are read only by `logveil-privacy` to hash them.
//!
//! ```
//! use logveil_parse::{LineParser, LogFormat};
//! let parser = LineParser::new(LogFormat::from_name_or_format("combined_cookie")?, Some("jt_uid"));
//! let line = br#"192.0.2.1 - - [01/Nov/2026:09:15:02 +0900] "GET /a HTTP/1.1" 200 12 "-" "Mozilla/5.0" "jt_uid=u-1""#;
//! let record = parser.parse(line).expect("valid line");
//! assert_eq!(record.status, Some(200));
//! assert_eq!(record.time.unwrap().utc_micros, 1_793_492_102_000_000);
//! # Ok::<(), logveil_parse::FormatError>(())
//! ```
//!
//! A record cannot escape the buffer it was parsed from:
//!
//! ```compile_fail
//! use logveil_parse::{LineParser, LogFormat, LogRecord};
//! fn keep(parser: &LineParser) -> LogRecord<'static> {
//!     let line = b"192.0.2.1 - - [01/Nov/2026:09:15:02 +0900] \"GET / HTTP/1.1\" 200 1".to_vec();
//!     parser.parse(&line).unwrap() // error: `line` does not live long enough
//! }
//! ```

mod cookie;
mod error;
mod format;
pub mod json;
mod line;
mod parser;
mod record;
pub mod time;
pub mod w3c;

pub use cookie::{find_cookie, find_cookie_plus_spaces};
pub use error::{FormatError, RejectReason};
pub use format::{Field, LogFormat, OTHER_PRESETS, PRESETS, Token};
pub use line::{DEFAULT_MAX_LINE_BYTES, LineParser};
pub use parser::{Parsed, Parser, ParserState};
pub use record::{LogRecord, RawIdentifier, Request, Timestamp};
