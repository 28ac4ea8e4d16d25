//! Hash-chained JSON-lines files: the format rules shared by the re-identification audit log
//! ([`crate::audit`]) and the privacy ledgers (`logveil_report::ledger`), and the routines
//! that write and verify them. Each user documents its own record members; the rules below
//! are the same for both.
//!
//! # Format
//!
//! - One JSON object per line, UTF-8, every line `\n`-terminated (the last one too).
//! - **Canonical form.** A record is written exactly as `serde_json` serialises it
//!   compactly: no whitespace, members in the order of the record's struct (optional members
//!   only when present), strings in UTF-8 with only `"`, `\` and control characters escaped.
//!   Verification re-serialises each parsed record and refuses a line that is not
//!   byte-identical to that form, so even an edit that does not change the parsed values (a
//!   space, an escape) is found.
//! - `seq`: 1 for the first record, then +1 per record, no gaps.
//! - `prev`: BLAKE3 (hex) of the previous line's bytes without its `\n`; [`GENESIS`] (64
//!   zeros) in the first record.
//! - `hash`, always the last member: BLAKE3 (hex) of the canonical serialisation of every
//!   other member — byte for byte the line with its trailing `,"hash":"…"` removed
//!   (`line.rsplit_once(",\"hash\":")` + `}` in any language).
//!
//! **What the chain proves.** An edit of any byte breaks that record's `hash`; deleting,
//! inserting or reordering records breaks the next record's `prev` (or its `seq`); a cut-off
//! last line has no `\n`. Whoever can write the file can still rewrite it from the edit to
//! the end with fresh hashes, or drop records from its end: keep the head hash somewhere else
//! (a ticket, another machine) and check later that the file still contains that record.
//!
//! **Files** are private: created with mode 0600 ([`open_for_append`]), and an existing file
//! readable or writable by group or others is refused ([`group_or_other_mode`]). Appends go
//! through `O_APPEND` under an exclusive lock, after checking the chain (or at least its last
//! record) is intact, and are fsynced ([`sync_appended`]) before the caller relies on them.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};

/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How messages name a chain's records and its file (`audit record` / `log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Names {
    /// `not a JSON {record} (…)`.
    pub record: &'static str,
    /// `incomplete record at the end of the {file} (…)`.
    pub file: &'static str,
}

impl Names {
    pub const fn new(record: &'static str, file: &'static str) -> Self {
        Self { record, file }
    }
}

/// One record type of a hash-chained file.
pub trait Link: DeserializeOwned {
    /// How messages about this file name it.
    const NAMES: Names;
    /// Serialises every member but `hash`, in canonical order: what `hash` covers.
    fn serialize_body<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error>;
    /// The record's `seq`, `prev` and `hash`.
    fn link(&self) -> (u64, &str, &str);

    fn seq(&self) -> u64 {
        self.link().0
    }

    fn prev(&self) -> &str {
        self.link().1
    }

    fn hash(&self) -> &str {
        self.link().2
    }
}

/// The canonical serialisation of `body` and its BLAKE3 hash (hex).
pub fn canonical<B: Serialize>(body: &B) -> (String, String) {
    let json = serde_json::to_string(body).expect("a chained record always serialises");
    let hash = blake3::hash(json.as_bytes()).to_hex().to_string();
    (json, hash)
}

/// The full line (without `\n`) for a body serialisation and its hash.
pub fn line_with_hash(body_json: &str, hash: &str) -> String {
    let open = body_json
        .strip_suffix('}')
        .expect("a JSON object ends in `}`");
    format!("{open},\"hash\":\"{hash}\"}}")
}

/// The canonical line (without `\n`) of `body` and its `hash`.
pub fn seal<B: Serialize>(body: &B) -> (String, String) {
    let (body_json, hash) = canonical(body);
    (line_with_hash(&body_json, &hash), hash)
}

/// The canonical line (without `\n`) of `record` and its `hash` (its own `hash` member is
/// not read).
pub fn seal_record<R: Link>(record: &R) -> (String, String) {
    seal(&BodyOf(record))
}

/// A record's members but `hash`.
struct BodyOf<'a, R>(&'a R);

impl<R: Link> Serialize for BodyOf<'_, R> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_body(serializer)
    }
}

/// What the next record's `prev` is after `line` (without its `\n`).
pub fn line_hash(line: &[u8]) -> String {
    blake3::hash(line).to_hex().to_string()
}

/// What is wrong with a chained file, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// 1-based line number in the file.
    pub line: usize,
    /// The line's `seq`, when the line is a record.
    pub record: Option<u64>,
    pub problem: Problem,
    names: Names,
}

impl Broken {
    pub fn new(names: Names, line: usize, record: Option<u64>, problem: Problem) -> Self {
        Self {
            line,
            record,
            problem,
            names,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// Not JSON, or not an object with exactly the record's members.
    NotARecord(String),
    /// The last line has no `\n`: the file was cut, or a write was interrupted.
    Incomplete,
    /// The `hash` member does not match the rest of the line.
    HashMismatch,
    /// The values hash correctly but the bytes are not their canonical serialisation.
    NotCanonical,
    /// `prev` is not the hash of the line before (record `previous`).
    PrevMismatch { previous: u64 },
    /// The first line's `prev` is not [`GENESIS`]: records before it are gone.
    NotChainStart,
    /// The chain links but `seq` is not the previous record's plus one.
    SeqMismatch { expected: u64 },
    /// The record hashes and links but breaks the caller's own consistency rules (members
    /// that contradict each other or the file; the ledger's kind vs mechanism, audience).
    Inconsistent(String),
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.record {
            Some(seq) => write!(f, "record {seq} (line {}): ", self.line)?,
            None => write!(f, "line {}: ", self.line)?,
        }
        match &self.problem {
            Problem::NotARecord(why) => write!(f, "not a JSON {} ({why})", self.names.record),
            Problem::Incomplete => write!(
                f,
                "incomplete record at the end of the {} (no newline: the file was cut, or a write was interrupted)",
                self.names.file
            ),
            Problem::HashMismatch => f.write_str("hash mismatch (edited)"),
            Problem::NotCanonical => f.write_str("not in canonical form (edited)"),
            Problem::PrevMismatch { previous } => write!(
                f,
                "prev does not match record {previous} (a record was deleted or reordered)"
            ),
            Problem::NotChainStart => {
                f.write_str("prev is not the start of a chain (the records before it were deleted)")
            }
            Problem::SeqMismatch { expected } => write!(
                f,
                "seq should be {expected} (a record was deleted, inserted or renumbered)"
            ),
            Problem::Inconsistent(why) => write!(f, "inconsistent record ({why})"),
        }
    }
}

impl std::error::Error for Broken {}

/// Parses line `number` (1-based, without `\n`) and checks it against its own hash, its
/// canonical form and then `consistent` (the caller's rules; its `Err` is
/// [`Problem::Inconsistent`]).
pub fn check_line<R: Link>(
    line: &[u8],
    number: usize,
    consistent: impl FnOnce(&R) -> Result<(), String>,
) -> Result<R, Broken> {
    let record: R = serde_json::from_slice(line).map_err(|e| {
        Broken::new(
            R::NAMES,
            number,
            None,
            Problem::NotARecord(
                if e.is_syntax() || e.is_eof() {
                    "malformed JSON"
                } else {
                    "unexpected, missing or mistyped members"
                }
                .to_owned(),
            ),
        )
    })?;
    let broken = |problem| Broken::new(R::NAMES, number, Some(record.seq()), problem);
    let (line_again, hash) = seal_record(&record);
    if hash != record.hash() {
        return Err(broken(Problem::HashMismatch));
    }
    if line_again.as_bytes() != line {
        return Err(broken(Problem::NotCanonical));
    }
    consistent(&record).map_err(|why| broken(Problem::Inconsistent(why)))?;
    Ok(record)
}

/// A verified chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<R> {
    /// In file order.
    pub records: Vec<R>,
    /// The `prev` of the record that would follow ([`GENESIS`] when empty).
    pub next_prev: String,
}

/// Verifies the contents of a chained file: every line `\n`-terminated, every record's
/// hash, canonical form, `consistent` (see [`check_line`]), `prev` link and `seq`, in that
/// order per line. The first problem is returned.
pub fn verify_lines<R: Link>(
    data: &[u8],
    mut consistent: impl FnMut(&R) -> Result<(), String>,
) -> Result<Verified<R>, Broken> {
    let mut verified = Verified {
        records: Vec::new(),
        next_prev: GENESIS.to_owned(),
    };
    if data.is_empty() {
        return Ok(verified);
    }
    let complete = data.ends_with(b"\n");
    let body = if complete {
        &data[..data.len() - 1]
    } else {
        data
    };
    let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    let mut prev_seq: Option<u64> = None;
    for (i, line) in lines.iter().enumerate() {
        let number = i + 1;
        if !complete && number == lines.len() {
            return Err(Broken::new(R::NAMES, number, None, Problem::Incomplete));
        }
        let record = check_line(line, number, &mut consistent)?;
        let broken = |problem| Broken::new(R::NAMES, number, Some(record.seq()), problem);
        if record.prev() != verified.next_prev {
            return Err(broken(match prev_seq {
                Some(previous) => Problem::PrevMismatch { previous },
                None => Problem::NotChainStart,
            }));
        }
        let expected = prev_seq.map_or(1, |s| s + 1);
        if record.seq() != expected {
            return Err(broken(Problem::SeqMismatch { expected }));
        }
        verified.next_prev = line_hash(line);
        prev_seq = Some(record.seq());
        verified.records.push(record);
    }
    Ok(verified)
}

/// The `seq` and `prev` of the record that follows `data`, after checking only that its last
/// record is whole and intact (the whole chain is [`verify_lines`]'s job).
pub fn next_link<R: Link>(data: &[u8]) -> Result<(u64, String), Broken> {
    if data.is_empty() {
        return Ok((1, GENESIS.to_owned()));
    }
    let lines = memchr::memchr_iter(b'\n', data).count();
    if !data.ends_with(b"\n") {
        return Err(Broken::new(R::NAMES, lines + 1, None, Problem::Incomplete));
    }
    let body = &data[..data.len() - 1];
    let last = body
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(body, |i| &body[i + 1..]);
    let record: R = check_line(last, lines, |_| Ok(()))?;
    Ok((record.seq() + 1, line_hash(last)))
}

/// Makes `options` create files with mode 0600 (Unix).
pub fn private_mode(options: &mut OpenOptions) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = options;
}

/// Opens a chained file for reading and appending (`O_APPEND`), creating it with mode 0600
/// if needed; `true` when it was created.
pub fn open_for_append(path: &Path) -> std::io::Result<(File, bool)> {
    let mut options = OpenOptions::new();
    options.read(true).append(true);
    private_mode(&mut options);
    match options.clone().create_new(true).open(path) {
        Ok(file) => Ok((file, true)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            options.open(path).map(|f| (f, false))
        }
        Err(e) => Err(e),
    }
}

/// The permission bits (`mode & 0o7777`) of a file or directory readable, writable or
/// searchable by group or others, which callers refuse; `None` when private (and off Unix).
pub fn group_or_other_mode(meta: &std::fs::Metadata) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Some(mode & 0o7777);
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    None
}

/// Makes appended lines durable: fsyncs `file` and, when it was just `created`, the
/// directory entry at `path`.
pub fn sync_appended(file: &File, path: &Path, created: bool) -> std::io::Result<()> {
    file.sync_all()?;
    if created {
        sync_parent(path)?;
    }
    Ok(())
}

/// Makes a new directory entry (file or directory at `path`) durable.
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
