//! The re-identification audit log: every `logveil lookup` appends one record *before* it
//! shows its result, and `logveil audit verify` proves that no record was edited, removed or
//! reordered since.
//!
//! # File format
//!
//! One JSON object per line (`\n`-terminated, UTF-8), keys always in this order:
//!
//! ```json
//! {"seq":1,"time":"2026-11-29T10:00:00Z","user":"alice","reason":"court order 2026-17","audience":["security"],"kind":"cookie","results":[{"key_id":"k-3f9a1c2e","audience":"security","visitor_id":"…32 hex…"}],"prev":"000…000","hash":"…64 hex…"}
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `seq` | 1 for the first record, then +1 per record |
//! | `time` | when the lookup ran, UTC, whole seconds |
//! | `user` | `$USER` of the process (`unknown` without one): what the environment says, not an authentication |
//! | `reason` | the `--reason` text, trimmed |
//! | `audience` | the audiences whose visitor ids were looked up |
//! | `kind` | `cookie` or `ip`: which identifier was looked up (never its value) |
//! | `results` | `{key_id, audience, visitor_id}` per result, plus `lines` (matching log lines) for `ip` |
//! | `prev` | BLAKE3 (hex) of the previous line's bytes without its `\n`; 64 zeros in the first record |
//! | `hash` | BLAKE3 (hex) of this line without its `"hash"` member |
//!
//! Canonical form, `hash`, `prev` and what the chain proves: see [`crate::chain`]. `lines`
//! is written only when present. [`verify`] checks every line; keep the head hash that
//! `audit verify` prints somewhere else and pass it back with `--anchor` to prove the log
//! still contains that record unchanged.
//!
//! **Appending** ([`append`]) opens the file with `O_APPEND` (created with mode 0600; an
//! existing file readable or writable by group or others is refused), takes an exclusive
//! lock so concurrent lookups do not interleave, checks that the last record is whole and
//! intact, writes the new line in one write and fsyncs it.

use std::fmt;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use logveil_parse::LogRecord;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::chain::{self, Link, Names};
pub use crate::chain::{Broken, GENESIS, Problem};
use crate::client::{ClientPolicy, canonical_client};

/// Which identifier a lookup started from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LookupKind {
    Cookie,
    Ip,
}

/// One pseudonym a lookup found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditResult {
    pub key_id: String,
    pub audience: String,
    /// What the audience sees: `Pseudonymizer::for_audience(visitor, audience)` in hex.
    pub visitor_id: String,
    /// How many log lines carried it (`ip` lookups only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<u64>,
}

/// What a lookup records; [`append`] adds `seq`, `prev` and `hash`.
#[derive(Debug, Clone)]
pub struct Entry {
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ` ([`utc_now`]).
    pub time: String,
    pub user: String,
    pub reason: String,
    pub audience: Vec<String>,
    pub kind: LookupKind,
    pub results: Vec<AuditResult>,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub seq: u64,
    pub time: String,
    pub user: String,
    pub reason: String,
    pub audience: Vec<String>,
    pub kind: LookupKind,
    pub results: Vec<AuditResult>,
    pub prev: String,
    pub hash: String,
}

/// Every member but `hash`, in canonical order: what `hash` covers.
#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    time: &'a str,
    user: &'a str,
    reason: &'a str,
    audience: &'a [String],
    kind: LookupKind,
    results: &'a [AuditResult],
    prev: &'a str,
}

impl Link for Record {
    const NAMES: Names = Names::new("audit record", "log");

    fn serialize_body<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.body().serialize(serializer)
    }

    fn link(&self) -> (u64, &str, &str) {
        (self.seq, &self.prev, &self.hash)
    }
}

impl Record {
    fn body(&self) -> Body<'_> {
        Body {
            seq: self.seq,
            time: &self.time,
            user: &self.user,
            reason: &self.reason,
            audience: &self.audience,
            kind: self.kind,
            results: &self.results,
            prev: &self.prev,
        }
    }
}

/// The audit log could not be read, written or verified. Messages never hold raw identifiers
/// (the log has none to quote).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {broken}")]
    Broken { path: PathBuf, broken: Broken },
    #[error(
        "{path}: audit log is readable or writable by group or others (mode {mode:04o}); run `chmod 600 {path}`"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{0}")]
    Invalid(String),
}

/// A log that verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    /// Every record's `hash`, in file order.
    pub hashes: Vec<String>,
}

impl Verified {
    /// The last record's `hash`: what to keep elsewhere as an anchor.
    pub fn head(&self) -> Option<&str> {
        self.hashes.last().map(String::as_str)
    }

    /// The 1-based record position whose `hash` is `anchor`.
    pub fn position_of(&self, anchor: &str) -> Option<u64> {
        let anchor = anchor.trim().to_ascii_lowercase();
        self.hashes
            .iter()
            .position(|h| *h == anchor)
            .map(|i| i as u64 + 1)
    }
}

/// Verifies the contents of an audit log: every record's hash, canonical form, `prev` link
/// and `seq` ([`chain::verify_lines`]). The first problem is returned.
pub fn verify_bytes(data: &[u8]) -> Result<Verified, Broken> {
    let records = chain::verify_lines::<Record>(data, |_| Ok(()))?.records;
    Ok(Verified {
        records: records.len() as u64,
        hashes: records.into_iter().map(|r| r.hash).collect(),
    })
}

/// Reads and verifies an audit log (see [`verify_bytes`]).
pub fn verify(path: &Path) -> Result<Verified, AuditError> {
    let data = std::fs::read(path).map_err(|source| AuditError::Io {
        path: path.to_owned(),
        source,
    })?;
    verify_bytes(&data).map_err(|broken| AuditError::Broken {
        path: path.to_owned(),
        broken,
    })
}

/// Appends one record for `entry` and returns it. The record is on disk (fsynced) when this
/// returns `Ok`; callers show a lookup's result only then.
pub fn append(path: &Path, entry: &Entry) -> Result<Record, AuditError> {
    let reason = entry.reason.trim();
    if reason.is_empty() {
        return Err(AuditError::Invalid(
            "the reason is empty: say why (the legal request, the fraud case)".into(),
        ));
    }
    let io = |source| AuditError::Io {
        path: path.to_owned(),
        source,
    };
    let (mut file, created) = chain::open_for_append(path).map_err(io)?;
    if !created && let Some(mode) = chain::group_or_other_mode(&file.metadata().map_err(io)?) {
        return Err(AuditError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    // Held until `file` is dropped: a concurrent lookup waits here, then sees this record.
    file.lock().map_err(io)?;
    let mut data = Vec::new();
    file.read_to_end(&mut data).map_err(io)?;
    let (seq, prev) = chain::next_link::<Record>(&data).map_err(|broken| AuditError::Broken {
        path: path.to_owned(),
        broken,
    })?;
    let mut record = Record {
        seq,
        time: entry.time.clone(),
        user: entry.user.clone(),
        reason: reason.to_owned(),
        audience: entry.audience.clone(),
        kind: entry.kind,
        results: entry.results.clone(),
        prev,
        hash: String::new(),
    };
    let (mut line, hash) = chain::seal_record(&record);
    line.push('\n');
    record.hash = hash;
    file.write_all(line.as_bytes()).map_err(io)?;
    chain::sync_appended(&file, path, created).map_err(io)?;
    Ok(record)
}

/// Now, UTC, as the `time` member writes it: `2026-11-29T10:00:00Z`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(secs as i64)
}

fn format_utc(secs: i64) -> String {
    let day = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = logveil_parse::time::civil_from_days(day as i32);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Finds the log lines of one client for `logveil lookup --ip`: the client as
/// [`Pseudonymizer::event`](crate::Pseudonymizer::event) chooses it (trusted proxies), in
/// canonical form. It lives here so that raw identifiers are still read only inside this
/// crate; the address it holds is zeroed on drop and never formatted.
pub struct ClientMatcher {
    canonical: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for ClientMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientMatcher(<redacted>)")
    }
}

impl ClientMatcher {
    /// `client`: an address (`192.0.2.1`, `[2001:db8::1]:443`) or host name, in any
    /// form the canonicaliser accepts.
    pub fn new(client: &[u8]) -> Self {
        let mut buf = Zeroizing::new([0u8; 256]);
        let canonical = Zeroizing::new(canonical_client(client, &mut buf).to_vec());
        Self { canonical }
    }

    /// Whether the record's client (after trusted-proxy selection, canonical) is this one.
    pub fn matches(&self, record: &LogRecord<'_>, policy: &ClientPolicy) -> bool {
        let Some(client) = policy.trusted_proxies.client(
            record.client.map(|c| c.expose_for_hashing()),
            record.forwarded_for.map(|f| f.expose_for_hashing()),
        ) else {
            return false;
        };
        let mut buf = Zeroizing::new([0u8; 256]);
        canonical_client(client, &mut buf) == self.canonical.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{canonical, line_with_hash};

    fn entry(reason: &str, kind: LookupKind) -> Entry {
        Entry {
            time: "2026-11-29T10:00:00Z".into(),
            user: "alice".into(),
            reason: reason.into(),
            audience: vec!["security".into()],
            kind,
            results: vec![AuditResult {
                key_id: "k-1".into(),
                audience: "security".into(),
                visitor_id: "00112233445566778899aabbccddeeff".into(),
                lines: (kind == LookupKind::Ip).then_some(3),
            }],
        }
    }

    /// A log of three records in a temporary directory.
    fn chain_of_3() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        for (i, kind) in [LookupKind::Cookie, LookupKind::Ip, LookupKind::Cookie]
            .into_iter()
            .enumerate()
        {
            let r = append(&path, &entry(&format!("case {}", i + 1), kind)).unwrap();
            assert_eq!(r.seq, i as u64 + 1);
        }
        (dir, path)
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn join(lines: &[String]) -> Vec<u8> {
        lines
            .iter()
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect()
    }

    fn fails_at(data: &[u8]) -> Broken {
        verify_bytes(data).expect_err("tampering must be found")
    }

    #[test]
    fn chain_of_three_verifies_and_has_the_documented_form() {
        let (_dir, path) = chain_of_3();
        let v = verify(&path).unwrap();
        assert_eq!(v.records, 3);
        assert_eq!(v.position_of(v.head().unwrap()), Some(3));
        let l = lines(&path);
        assert!(l[0].starts_with(r#"{"seq":1,"time":"2026-11-29T10:00:00Z","user":"alice","reason":"case 1","audience":["security"],"kind":"cookie","results":[{"key_id":"k-1","audience":"security","visitor_id":"00112233445566778899aabbccddeeff"}],"prev":"0000000000000000000000000000000000000000000000000000000000000000","hash":""#), "{}", l[0]);
        assert!(l[1].contains(r#""kind":"ip","results":[{"key_id":"k-1","audience":"security","visitor_id":"00112233445566778899aabbccddeeff","lines":3}]"#));
        // The documented recipe, independent of the serde types: hash = BLAKE3 of the line
        // without its `,"hash":"…"` member; prev = BLAKE3 of the previous line.
        for (i, line) in l.iter().enumerate() {
            let (rest, hash) = line.rsplit_once(",\"hash\":\"").unwrap();
            let hash = hash.strip_suffix("\"}").unwrap();
            assert_eq!(
                blake3::hash(format!("{rest}}}").as_bytes())
                    .to_hex()
                    .as_str(),
                hash
            );
            let prev = if i == 0 {
                GENESIS.to_owned()
            } else {
                blake3::hash(l[i - 1].as_bytes()).to_hex().to_string()
            };
            assert!(line.contains(&format!("\"prev\":\"{prev}\"")), "{line}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn one_flipped_byte_in_record_2_fails_at_record_2() {
        let (_dir, path) = chain_of_3();
        let mut l = lines(&path);
        l[1] = l[1].replace("case 2", "case 3");
        let b = fails_at(&join(&l));
        assert_eq!(
            (b.line, b.record, &b.problem),
            (2, Some(2), &Problem::HashMismatch)
        );
        assert_eq!(b.to_string(), "record 2 (line 2): hash mismatch (edited)");
        // A flipped byte in the hash itself, and one in a hex result.
        let mut l = lines(&path);
        let at = l[1].len() - 5;
        let flipped = if &l[1][at..=at] == "0" { "1" } else { "0" };
        l[1].replace_range(at..=at, flipped);
        assert_eq!(fails_at(&join(&l)).problem, Problem::HashMismatch);
        let mut l = lines(&path);
        l[1] = l[1].replacen("00112233", "00112234", 1);
        assert_eq!(fails_at(&join(&l)).record, Some(2));
    }

    #[test]
    fn deleting_record_2_fails_at_record_3_prev() {
        let (_dir, path) = chain_of_3();
        let mut l = lines(&path);
        l.remove(1);
        let b = fails_at(&join(&l));
        assert_eq!(
            (b.line, b.record, &b.problem),
            (2, Some(3), &Problem::PrevMismatch { previous: 1 })
        );
        assert_eq!(
            b.to_string(),
            "record 3 (line 2): prev does not match record 1 (a record was deleted or reordered)"
        );
        // Deleting the first record: the chain no longer starts at the beginning.
        let mut l = lines(&path);
        l.remove(0);
        let b = fails_at(&join(&l));
        assert_eq!((b.line, b.problem), (1, Problem::NotChainStart));
    }

    #[test]
    fn truncating_the_last_line_fails() {
        let (_dir, path) = chain_of_3();
        let data = std::fs::read(&path).unwrap();
        for cut in [1, 2, 40] {
            let b = fails_at(&data[..data.len() - cut]);
            assert_eq!((b.line, &b.problem), (3, &Problem::Incomplete), "cut {cut}");
            assert!(b.to_string().starts_with("line 3: incomplete record"));
        }
        // …and a cut-off log refuses further appends until someone looks at it.
        std::fs::write(&path, &data[..data.len() - 10]).unwrap();
        let e = append(&path, &entry("case 4", LookupKind::Cookie)).unwrap_err();
        assert!(e.to_string().contains("line 3: incomplete record"), "{e}");
    }

    #[test]
    fn reordering_fails() {
        let (_dir, path) = chain_of_3();
        let mut l = lines(&path);
        l.swap(1, 2);
        let b = fails_at(&join(&l));
        assert_eq!(
            (b.line, b.record, &b.problem),
            (2, Some(3), &Problem::PrevMismatch { previous: 1 })
        );
    }

    #[test]
    fn rehashed_edit_is_caught_by_the_next_prev_and_whitespace_by_canonical_form() {
        let (_dir, path) = chain_of_3();
        // The forger edits record 2 and recomputes its hash: record 3's prev gives it away.
        let mut l = lines(&path);
        let mut r: Record = serde_json::from_str(&l[1]).unwrap();
        r.reason = "nothing to see".into();
        let (body, hash) = canonical(&r.body());
        l[1] = line_with_hash(&body, &hash);
        assert_eq!(verify_bytes(&join(&l[..2])).unwrap().records, 2);
        let b = fails_at(&join(&l));
        assert_eq!(
            (b.line, b.problem),
            (3, Problem::PrevMismatch { previous: 2 })
        );
        // Same values, other bytes.
        let mut l = lines(&path);
        l[0] = l[0].replacen(",\"time\"", ", \"time\"", 1);
        assert_eq!(fails_at(&join(&l)).problem, Problem::NotCanonical);
        // Renumbered but consistently hashed and linked: seq.
        let mut l = lines(&path);
        let mut r: Record = serde_json::from_str(&l[0]).unwrap();
        r.seq = 7;
        let (body, hash) = canonical(&r.body());
        l[0] = line_with_hash(&body, &hash);
        let b = fails_at(&join(&l[..1]));
        assert_eq!(b.problem, Problem::SeqMismatch { expected: 1 });
    }

    #[test]
    fn garbage_lines_are_named() {
        let (_dir, path) = chain_of_3();
        let mut l = lines(&path);
        l.insert(1, "hello".into());
        let b = fails_at(&join(&l));
        assert_eq!(
            b.to_string(),
            "line 2: not a JSON audit record (malformed JSON)"
        );
        let mut l = lines(&path);
        l[1] = l[1].replacen("{\"seq\"", "{\"extra\":1,\"seq\"", 1);
        assert_eq!(fails_at(&join(&l)).line, 2);
        assert_eq!(verify_bytes(b"").unwrap().records, 0);
    }

    #[test]
    fn empty_reason_is_refused_and_nothing_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let e = append(&path, &entry("  ", LookupKind::Cookie)).unwrap_err();
        assert!(e.to_string().contains("reason is empty"), "{e}");
        assert!(!path.exists());
    }

    #[cfg(unix)]
    #[test]
    fn group_readable_log_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, path) = chain_of_3();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = append(&path, &entry("case 4", LookupKind::Cookie)).unwrap_err();
        assert!(e.to_string().contains("mode 0640"), "{e}");
    }

    #[test]
    fn concurrent_appends_do_not_interleave() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::thread::scope(|s| {
            for t in 0..8 {
                let path = &path;
                s.spawn(move || {
                    for i in 0..10 {
                        append(path, &entry(&format!("t{t} i{i}"), LookupKind::Ip)).unwrap();
                    }
                });
            }
        });
        assert_eq!(verify(&path).unwrap().records, 80);
    }

    #[test]
    fn times_are_utc_seconds() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(1_795_946_400), "2026-11-29T10:00:00Z");
        assert_eq!(utc_now().len(), 20);
    }

    #[test]
    fn client_matcher_uses_the_canonical_client() {
        use logveil_parse::{LineParser, LogFormat};
        let parser = LineParser::new(LogFormat::from_name_or_format("combined").unwrap(), None);
        let line = |client: &str| {
            format!(r#"{client} - - [01/Nov/2026:12:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "UA""#)
        };
        let m = ClientMatcher::new(b"2001:DB8::1");
        let policy = ClientPolicy::default();
        let l = line("[2001:db8:0::1]:443");
        assert!(m.matches(&parser.parse(l.as_bytes()).unwrap(), &policy));
        let l = line("2001:db8::2");
        assert!(!m.matches(&parser.parse(l.as_bytes()).unwrap(), &policy));
        assert_eq!(format!("{m:?}"), "ClientMatcher(<redacted>)");
    }
}
