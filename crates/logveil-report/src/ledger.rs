//! The privacy budget ledger (issue #6): how much ε and δ each audience has been given in
//! each period, the refusal of any release that would exceed its budget, and a
//! tamper-evident record of every release made to an audience.
//!
//! Differential privacy composes: publishing k releases with (εᵢ, δᵢ) costs (Σεᵢ, Σδᵢ) in
//! total (basic composition; Dwork and Roth 2014, "The Algorithmic Foundations of
//! Differential Privacy", Theorem 3.16). A budget therefore only means something if every
//! release is written down, and if nothing routine can make the ledger forget.
//!
//! # Where: per audience, in the state directory
//!
//! The budget belongs to the audience, not to a run: whoever receives two releases can
//! combine them, whichever output directory, key file or configuration produced them. So the
//! ledger lives in the state directory, one file per audience:
//!
//! ```text
//! STATE_DIR/ledger/            mode 0700 (created so; a wider existing mode is refused)
//!   <audience>.jsonl           the audience's records, mode 0600 (ditto)
//!   <audience>.lock            exclusive lock of writers (kept, never deleted)
//! ```
//!
//! Audience names are `[a-z0-9_]{1,64}`; anything else (`../x`, `Public`) is refused before
//! a path is built. A new `--out` directory or a new key file starts no new ledger.
//!
//! # File format
//!
//! One JSON object per line (`\n`-terminated, UTF-8), keys always in this order:
//!
//! ```json
//! {"seq":1,"time":"2026-12-07T10:00:00Z","kind":"spend","audience":"public","period":"2026-11","report":"pages_daily_dp","partition":"2026-11-01","release_id":"lvr1-…","key_id":"demo-2026","mechanism":"dp","protection":"{\"method\":\"differential_privacy\",…}","epsilon":"1","delta":"0.0000002","prev":"…64 hex…","hash":"…64 hex…"}
//! ```
//!
//! | key | meaning |
//! |---|---|
//! | `seq` | 1 for the first record, then +1 per record |
//! | `time` | when the record was written, UTC, whole seconds |
//! | `kind` | `spend`: a DP release, charged; `release`: a release without DP (cell-key perturbation), ε = δ = 0, recorded so re-releases of a partition can be checked; `migrated`: a spend imported from a legacy (v1) ledger, charged |
//! | `audience` | the audience; always the file's name |
//! | `period` | the budget period, as the caller names it (`2026-11`) |
//! | `report`, `partition` | what was released (`pages_daily_dp`, `2026-11-01`) |
//! | `release_id` | digest of everything the release depends on; for `migrated`, the legacy `input_digest` |
//! | `key_id` | the key the release was made with; empty for `migrated` |
//! | `mechanism` | `dp` (kind `spend`), `cell_key` (kind `release`), `legacy` (kind `migrated`) |
//! | `protection` | how the release was protected: the perturbation's JSON as in the file's `logveil.perturbation` (`legacy` for migrated records) |
//! | `epsilon`, `delta` | exact rationals as strings: `"0.5"`, `"1/3"`, `"0.0000002"` |
//! | `legacy_sha256` | `migrated` only: SHA-256 (hex) of the legacy ledger file it came from (`sha256sum <file>.migrated`) |
//! | `prev` | BLAKE3 (hex) of the previous line's bytes without its `\n`; 64 zeros in the first record |
//! | `hash` | BLAKE3 (hex) of this line without its `"hash"` member |
//!
//! Canonical form, `hash`, `prev` and what the chain proves are the rules of the
//! re-identification audit log: see [`logveil_privacy::chain`]. `legacy_sha256` is written
//! only when present, rationals in the form above (`1e-7` for `0.0000001` is not canonical).
//! Besides those rules, [`verify`] refuses a `kind` that does not match its `mechanism`, a
//! record of another audience and other contradictory members
//! ([`Problem::Inconsistent`]). Dropping records from the end *lowers* what the audience
//! seems to have received: keep the head hash that [`verify`] returns somewhere else and pass
//! it back as the anchor (`--anchor`) to prove the file still contains that record unchanged.
//!
//! # Spending
//!
//! [`Ledger::check_and_spend_with`] takes a batch of [`Spend`]s, possibly for several
//! audiences, and records all of them or none: it locks the audiences' lock files in sorted
//! order (no deadlock between batches), reads and verifies each audience's whole chain,
//! checks every (audience, period) against its [`Budget`] in exact rational arithmetic, and
//! only then appends to each file (`O_APPEND`, one write per line, fsync). A refusal names
//! audience, period, spent, requested and budget and writes nothing. Files of different
//! audiences cannot be written atomically together: a crash between two of them leaves the
//! earlier audiences charged and the later not — too much charged, never too little, and a
//! re-run of the same batch is free where it was recorded and charged where it was not.
//!
//! **Identical re-releases are free.** A spend equal to a recorded one in audience, report,
//! partition, release id, key id, mechanism, ε and δ is the same release again: the noise
//! seed is derived from the key and release ([`crate::dp::seed_for`]), so a re-run
//! reproduces the same noisy numbers bit for bit and reveals nothing new. That holds only
//! for the *same* parameters, so ε and δ are part of the identity: re-running with a
//! different ε draws different noise and is charged. A different release id (other input
//! data or report definition) is a different release and is charged again; the release id
//! must cover everything the numbers depend on.
//!
//! # Legacy ledgers
//!
//! [`Ledger::migrate_legacy`] imports a v1 ledger (one JSON file
//! `{"version":1,"spends":[…]}`, kept in an output directory) as `migrated` records, which
//! count toward the budget like spends, then renames the file to `<name>.migrated`.
//! Importing is idempotent per spend: a legacy spend identical to a `migrated` record
//! already in the audience's file is not imported again (also after a crash half-way), and
//! each record names the legacy file by its SHA-256 (`legacy_sha256`, what `sha256sum` prints).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::OsString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use logveil_privacy::chain::{self, Link, Names, sync_parent};
pub use logveil_privacy::chain::{Broken, GENESIS, Problem};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::dp::Rational;

/// The longest audience name accepted.
pub const MAX_AUDIENCE_LEN: usize = 64;

/// How a release was protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// Differential privacy: charged to the budget (kind `spend`).
    Dp,
    /// Cell-key perturbation, no DP: ε = δ = 0, recorded (kind `release`).
    CellKey,
    /// Imported from a legacy ledger (kind `migrated`); only [`Ledger::migrate_legacy`]
    /// writes it.
    Legacy,
}

impl Mechanism {
    /// The record kind this mechanism is written as.
    pub const fn kind(self) -> Kind {
        match self {
            Self::Dp => Kind::Spend,
            Self::CellKey => Kind::Release,
            Self::Legacy => Kind::Migrated,
        }
    }
}

/// What a record is (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Spend,
    Release,
    Migrated,
}

/// One release to an audience.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Spend {
    /// `[a-z0-9_]{1,64}`.
    pub audience: String,
    /// The budget period, as the caller names it (`2026-11`).
    pub period: String,
    pub report: String,
    /// The partition released (`2026-11-29`).
    pub partition: String,
    /// Digest of everything the release depends on.
    pub release_id: String,
    /// The key the release was made with (required for `Dp` and `CellKey`).
    pub key_id: String,
    pub mechanism: Mechanism,
    /// How the release was protected, as the release protocol describes it (the
    /// perturbation table's JSON for cell-key releases): a re-release must use the same.
    pub protection: String,
    pub epsilon: Rational,
    pub delta: Rational,
}

/// What one audience may receive per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub epsilon_per_period: Rational,
    pub delta_per_period: Rational,
}

/// One line of an audience's ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub seq: u64,
    pub time: String,
    pub kind: Kind,
    pub audience: String,
    pub period: String,
    pub report: String,
    pub partition: String,
    pub release_id: String,
    pub key_id: String,
    pub mechanism: Mechanism,
    /// How the release was protected, as the release protocol describes it (the
    /// perturbation table's JSON for cell-key releases): a re-release must use the same.
    pub protection: String,
    pub epsilon: Rational,
    pub delta: Rational,
    /// `migrated` only: SHA-256 (hex) of the legacy ledger file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_sha256: Option<String>,
    pub prev: String,
    pub hash: String,
}

impl Record {
    /// The release this record describes.
    pub fn spend(&self) -> Spend {
        Spend {
            audience: self.audience.clone(),
            period: self.period.clone(),
            report: self.report.clone(),
            partition: self.partition.clone(),
            release_id: self.release_id.clone(),
            key_id: self.key_id.clone(),
            mechanism: self.mechanism,
            protection: self.protection.clone(),
            epsilon: self.epsilon,
            delta: self.delta,
        }
    }

    fn body(&self) -> Body<'_> {
        Body {
            seq: self.seq,
            time: &self.time,
            kind: self.kind,
            audience: &self.audience,
            period: &self.period,
            report: &self.report,
            partition: &self.partition,
            release_id: &self.release_id,
            key_id: &self.key_id,
            mechanism: self.mechanism,
            protection: &self.protection,
            epsilon: self.epsilon,
            delta: self.delta,
            legacy_sha256: self.legacy_sha256.as_deref(),
            prev: &self.prev,
        }
    }

    fn identity(&self) -> Identity<'_> {
        Identity {
            audience: &self.audience,
            report: &self.report,
            partition: &self.partition,
            release_id: &self.release_id,
            key_id: &self.key_id,
            mechanism: self.mechanism,
            protection: &self.protection,
            epsilon: self.epsilon,
            delta: self.delta,
        }
    }
}

impl Link for Record {
    const NAMES: Names = Names::new("ledger record", "ledger");

    fn serialize_body<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.body().serialize(serializer)
    }

    fn link(&self) -> (u64, &str, &str) {
        (self.seq, &self.prev, &self.hash)
    }
}

impl Spend {
    fn identity(&self) -> Identity<'_> {
        Identity {
            audience: &self.audience,
            report: &self.report,
            partition: &self.partition,
            release_id: &self.release_id,
            key_id: &self.key_id,
            mechanism: self.mechanism,
            protection: &self.protection,
            epsilon: self.epsilon,
            delta: self.delta,
        }
    }
}

/// What makes two releases the same release (the period is not part of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Identity<'a> {
    audience: &'a str,
    report: &'a str,
    partition: &'a str,
    release_id: &'a str,
    key_id: &'a str,
    mechanism: Mechanism,
    protection: &'a str,
    epsilon: Rational,
    delta: Rational,
}

/// Every member but `hash`, in canonical order: what `hash` covers.
#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    time: &'a str,
    kind: Kind,
    audience: &'a str,
    period: &'a str,
    report: &'a str,
    partition: &'a str,
    release_id: &'a str,
    key_id: &'a str,
    mechanism: Mechanism,
    protection: &'a str,
    epsilon: Rational,
    delta: Rational,
    #[serde(skip_serializing_if = "Option::is_none")]
    legacy_sha256: Option<&'a str>,
    prev: &'a str,
}

/// Why the ledger refused or failed. Every I/O error names its path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    #[error("privacy ledger {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "privacy ledger {}: {broken}; it was left as it is: restore it from a backup (never delete it: that resets the audience's budget)",
        path.display()
    )]
    Broken { path: PathBuf, broken: Broken },
    #[error(
        "privacy ledger {}: readable or writable by group or others (mode {mode:04o}); run `chmod {wanted} {}`",
        path.display(),
        path.display()
    )]
    Permissions {
        path: PathBuf,
        mode: u32,
        /// The mode to set: `600` for files, `700` for the directory.
        wanted: &'static str,
    },
    /// The spend would exceed the budget (boxed: errors stay small).
    #[error("{0}")]
    Exceeded(Box<Overspend>),
    #[error(
        "privacy ledger: the spends of audience `{audience}`, period {period} do not sum exactly in 64-bit fractions; use simpler ε and δ (decimals)"
    )]
    Overflow { audience: String, period: String },
    #[error("privacy ledger: invalid spend: {0}")]
    Invalid(String),
    #[error(
        "legacy privacy ledger {} cannot be migrated ({detail}); nothing was imported and the file was left as it is: repair it or restore it from a backup and migrate again (never delete it while it records releases: that resets those budgets)",
        path.display()
    )]
    Legacy { path: PathBuf, detail: String },
    #[error(
        "privacy ledger {}: the anchor {anchor} is not the hash of any record (records were rewritten or removed since it was taken)",
        path.display()
    )]
    AnchorNotFound { path: PathBuf, anchor: String },
}

/// A refused request: what was spent, requested and allowed in one (audience, period).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overspend {
    pub audience: String,
    pub period: String,
    pub spent_epsilon: Rational,
    pub spent_delta: Rational,
    pub requested_epsilon: Rational,
    pub requested_delta: Rational,
    pub budget_epsilon: Rational,
    pub budget_delta: Rational,
}

impl fmt::Display for Overspend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "privacy budget exceeded for audience `{}`, period {}: spent ε {} δ {}, requested ε {} δ {}, budget ε {} δ {}",
            self.audience,
            self.period,
            self.spent_epsilon,
            self.spent_delta,
            self.requested_epsilon,
            self.requested_delta,
            self.budget_epsilon,
            self.budget_delta
        )
    }
}

/// A ledger file that verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub records: u64,
    /// The last record's `hash`: what to keep elsewhere as an anchor. `None` when empty.
    pub head_hash: Option<String>,
    /// The `seq` of the record whose `hash` is the anchor, when one was given.
    pub anchor_seq: Option<u64>,
}

/// Refuses audience names other than `[a-z0-9_]{1,64}` (they become file names).
pub fn check_audience(name: &str) -> Result<(), LedgerError> {
    if name.is_empty()
        || name.len() > MAX_AUDIENCE_LEN
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(LedgerError::Invalid(format!(
            "audience {name:?} is not a valid name (lower-case letters, digits and `_`, 1 to {MAX_AUDIENCE_LEN} characters)"
        )));
    }
    Ok(())
}

/// Checks the members of a spend or record; the error says which member and why.
fn check_fields(s: &Spend) -> Result<(), String> {
    check_audience(&s.audience).map_err(|e| match e {
        LedgerError::Invalid(why) => why,
        other => other.to_string(),
    })?;
    for (name, value) in [
        ("period", &s.period),
        ("report", &s.report),
        ("partition", &s.partition),
        ("release_id", &s.release_id),
        ("key_id", &s.key_id),
    ] {
        if value.chars().any(char::is_control) {
            return Err(format!("`{name}` contains a control character"));
        }
        let may_be_empty = name == "key_id" && s.mechanism == Mechanism::Legacy;
        if !may_be_empty && value.trim().is_empty() {
            return Err(format!("`{name}` is empty"));
        }
    }
    match s.mechanism {
        Mechanism::CellKey if !s.epsilon.is_zero() || !s.delta.is_zero() => Err(format!(
            "a cell_key release has ε = δ = 0 (got ε {} δ {})",
            s.epsilon, s.delta
        )),
        Mechanism::Legacy if !s.key_id.is_empty() => {
            Err("a legacy spend has an empty `key_id`".to_owned())
        }
        _ => Ok(()),
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The ledger's own consistency rules for a record that hashes and is canonical.
fn check_record(record: &Record, audience: Option<&str>) -> Result<(), String> {
    if record.kind != record.mechanism.kind() {
        return Err(format!(
            "kind {:?} with mechanism {:?}",
            record.kind, record.mechanism
        ));
    }
    if let Some(audience) = audience
        && record.audience != audience
    {
        return Err(format!(
            "audience `{}` in the ledger of `{audience}`",
            record.audience
        ));
    }
    match (&record.legacy_sha256, record.kind) {
        (Some(digest), Kind::Migrated) if is_hex64(digest) => {}
        (None, Kind::Spend | Kind::Release) => {}
        _ => {
            return Err(
                "`legacy_sha256` must be 64 hex digits in `migrated` records and absent elsewhere"
                    .to_owned(),
            );
        }
    }
    check_fields(&record.spend())
}

/// A verified chain: its records and the `prev` of the record that would follow.
#[derive(Debug, Default)]
struct Chain {
    records: Vec<Record>,
    next_prev: String,
    bytes: u64,
}

impl Chain {
    fn next_seq(&self) -> u64 {
        self.records.last().map_or(1, |r| r.seq + 1)
    }
}

/// Verifies the contents of a ledger file: every record's hash, canonical form,
/// consistency, `prev` link and `seq` ([`chain::verify_lines`]). The first problem is
/// returned.
fn parse_chain(data: &[u8], audience: Option<&str>) -> Result<Chain, Broken> {
    let verified = chain::verify_lines(data, |r| check_record(r, audience))?;
    Ok(Chain {
        records: verified.records,
        next_prev: verified.next_prev,
        bytes: data.len() as u64,
    })
}

/// The audience a file is the ledger of: its name when that is `<audience>.jsonl`.
fn audience_of_path(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let audience = name.strip_suffix(".jsonl")?;
    check_audience(audience).ok()?;
    Some(audience.to_owned())
}

/// Reads and verifies one audience's ledger file (see the module documentation for what is
/// checked). When the file is named `<audience>.jsonl`, every record must be of that
/// audience. `anchor`: a record `hash` kept elsewhere that must still be in the file.
pub fn verify(path: &Path, anchor: Option<&str>) -> Result<VerifyReport, LedgerError> {
    let anchor = anchor
        .map(|a| {
            let a = a.trim().to_ascii_lowercase();
            if is_hex64(&a) {
                Ok(a)
            } else {
                Err(LedgerError::Invalid(format!(
                    "the anchor {a:?} is not a record hash (64 hex digits)"
                )))
            }
        })
        .transpose()?;
    let data = std::fs::read(path).map_err(io(path))?;
    let chain = parse_chain(&data, audience_of_path(path).as_deref()).map_err(|broken| {
        LedgerError::Broken {
            path: path.to_owned(),
            broken,
        }
    })?;
    let anchor_seq = match anchor {
        None => None,
        Some(anchor) => Some(
            chain
                .records
                .iter()
                .find(|r| r.hash == anchor)
                .map(|r| r.seq)
                .ok_or_else(|| LedgerError::AnchorNotFound {
                    path: path.to_owned(),
                    anchor,
                })?,
        ),
    };
    Ok(VerifyReport {
        records: chain.records.len() as u64,
        head_hash: chain.records.last().map(|r| r.hash.clone()),
        anchor_seq,
    })
}

/// The per-audience privacy budget ledger in a state directory.
#[derive(Debug)]
pub struct Ledger {
    state_dir: PathBuf,
    dir: PathBuf,
    clock: fn() -> jiff::Timestamp,
}

impl Ledger {
    /// Whether `state_dir` holds a ledger file for `audience` (without creating anything).
    pub fn has_audience(state_dir: &Path, audience: &str) -> bool {
        check_audience(audience).is_ok()
            && state_dir
                .join("ledger")
                .join(format!("{audience}.jsonl"))
                .exists()
    }

    /// Opens the ledger of `state_dir`, creating `state_dir/ledger` (mode 0700) if missing;
    /// an existing one accessible to group or others is refused. Reads nothing yet.
    pub fn open(state_dir: &Path) -> Result<Self, LedgerError> {
        let dir = state_dir.join("ledger");
        let created = !dir.exists();
        if created {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                builder.mode(0o700);
            }
            builder.create(&dir).map_err(io(&dir))?;
            sync_parent(&dir).map_err(io(&dir))?;
        }
        let meta = std::fs::metadata(&dir).map_err(io(&dir))?;
        if !meta.is_dir() {
            return Err(LedgerError::Io {
                path: dir,
                source: std::io::Error::other("not a directory"),
            });
        }
        check_mode(&meta, &dir, "700")?;
        Ok(Self {
            state_dir: state_dir.to_owned(),
            dir,
            clock: jiff::Timestamp::now,
        })
    }

    /// Replaces the clock records are stamped with (tests).
    #[must_use]
    pub fn with_clock(mut self, clock: fn() -> jiff::Timestamp) -> Self {
        self.clock = clock;
        self
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// `STATE_DIR/ledger`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The ledger file of `audience` (`STATE_DIR/ledger/<audience>.jsonl`).
    pub fn path_of(&self, audience: &str) -> Result<PathBuf, LedgerError> {
        check_audience(audience)?;
        Ok(self.dir.join(format!("{audience}.jsonl")))
    }

    fn lock_path(&self, audience: &str) -> PathBuf {
        self.dir.join(format!("{audience}.lock"))
    }

    /// Locks `audience` (exclusive for writers, shared for readers); held until the file is
    /// dropped.
    fn lock(&self, audience: &str, exclusive: bool) -> Result<File, LedgerError> {
        let path = self.lock_path(audience);
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        chain::private_mode(&mut options);
        let file = options.open(&path).map_err(io(&path))?;
        if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        }
        .map_err(io(&path))?;
        Ok(file)
    }

    /// Reads and verifies the chain of `audience` (its lock held by the caller).
    fn read_chain(&self, audience: &str) -> Result<Chain, LedgerError> {
        let path = self.path_of(audience)?;
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(parse_chain(b"", None).expect("empty chain"));
            }
            Err(e) => return Err(io(&path)(e)),
        };
        check_mode(&file.metadata().map_err(io(&path))?, &path, "600")?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(io(&path))?;
        parse_chain(&data, Some(audience)).map_err(|broken| LedgerError::Broken { path, broken })
    }

    /// Reads `audience` under a shared lock; an audience without a file has no records.
    fn read_locked(&self, audience: &str) -> Result<Chain, LedgerError> {
        let path = self.path_of(audience)?;
        if !path.exists() {
            return Ok(Chain {
                next_prev: GENESIS.to_owned(),
                ..Chain::default()
            });
        }
        let _lock = self.lock(audience, false)?;
        self.read_chain(audience)
    }

    /// Every record of `audience`, oldest first, after verifying the whole chain.
    pub fn records(&self, audience: &str) -> Result<Vec<Record>, LedgerError> {
        Ok(self.read_locked(audience)?.records)
    }

    /// The audiences with a ledger file, sorted.
    pub fn audiences(&self) -> Result<Vec<String>, LedgerError> {
        let mut audiences = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let entry = entry.map_err(io(&self.dir))?;
            if let Some(audience) = audience_of_path(&entry.path()) {
                audiences.push(audience);
            }
        }
        audiences.sort();
        Ok(audiences)
    }

    /// Total (ε, δ) recorded for `audience` in `period` (`spend` and `migrated` records).
    pub fn spent(&self, audience: &str, period: &str) -> Result<(Rational, Rational), LedgerError> {
        let chain = self.read_locked(audience)?;
        sum(chain.records.iter().filter(|r| r.period == period)).ok_or_else(|| {
            LedgerError::Overflow {
                audience: audience.to_owned(),
                period: period.to_owned(),
            }
        })
    }

    /// Every earlier record (any kind) of one (audience, report, partition), oldest first.
    pub fn releases_of(
        &self,
        audience: &str,
        report: &str,
        partition: &str,
    ) -> Result<Vec<Record>, LedgerError> {
        let mut records = self.read_locked(audience)?.records;
        records.retain(|r| r.report == report && r.partition == partition);
        Ok(records)
    }

    /// [`Ledger::check_and_spend_with`] with one budget for every audience.
    pub fn check_and_spend(
        &mut self,
        spends: &[Spend],
        budget: &Budget,
    ) -> Result<Vec<Spend>, LedgerError> {
        self.check_and_spend_with(spends, |_| *budget)
    }

    /// Records `spends` (mechanism `Dp` as kind `spend`, `CellKey` as `release`) if, for
    /// every (audience, period) with a non-zero request, what is recorded plus what is new
    /// stays within `budget_of(audience)` (only called for those audiences); otherwise
    /// records nothing and returns [`LedgerError::Exceeded`] for the first (audience,
    /// period), in sorted order, that would go over. Spends identical to recorded ones (or
    /// repeated within `spends`) are free and not recorded again. Returns the spends newly
    /// recorded, in input order; on `Ok` they are durable on disk.
    pub fn check_and_spend_with(
        &mut self,
        spends: &[Spend],
        budget_of: impl Fn(&str) -> Budget,
    ) -> Result<Vec<Spend>, LedgerError> {
        for spend in spends {
            if spend.mechanism == Mechanism::Legacy {
                return Err(LedgerError::Invalid(
                    "legacy spends are only written by the migration of a legacy ledger".into(),
                ));
            }
            check_fields(spend).map_err(LedgerError::Invalid)?;
        }
        let audiences: BTreeSet<&str> = spends.iter().map(|s| s.audience.as_str()).collect();
        let (_locks, chains) = self.lock_and_read(&audiences)?;

        let mut seen: HashSet<Identity<'_>> = chains
            .values()
            .flat_map(|c| c.records.iter().map(Record::identity))
            .collect();
        let new: Vec<&Spend> = spends
            .iter()
            .filter(|s| seen.insert(s.identity()))
            .collect();

        let groups: BTreeSet<(&str, &str)> = new
            .iter()
            .map(|s| (s.audience.as_str(), s.period.as_str()))
            .collect();
        for (audience, period) in groups {
            let overflow = || LedgerError::Overflow {
                audience: audience.to_owned(),
                period: period.to_owned(),
            };
            let (requested_epsilon, requested_delta) = sum_pairs(
                new.iter()
                    .filter(|s| s.audience == audience && s.period == period)
                    .map(|s| (s.epsilon, s.delta)),
            )
            .ok_or_else(overflow)?;
            if requested_epsilon.is_zero() && requested_delta.is_zero() {
                continue;
            }
            let (spent_epsilon, spent_delta) = sum(chains[audience]
                .records
                .iter()
                .filter(|r| r.period == period))
            .ok_or_else(overflow)?;
            let total_epsilon = spent_epsilon
                .checked_add(requested_epsilon)
                .ok_or_else(overflow)?;
            let total_delta = spent_delta
                .checked_add(requested_delta)
                .ok_or_else(overflow)?;
            let budget = budget_of(audience);
            if total_epsilon > budget.epsilon_per_period || total_delta > budget.delta_per_period {
                return Err(LedgerError::Exceeded(Box::new(Overspend {
                    audience: audience.to_owned(),
                    period: period.to_owned(),
                    spent_epsilon,
                    spent_delta,
                    requested_epsilon,
                    requested_delta,
                    budget_epsilon: budget.epsilon_per_period,
                    budget_delta: budget.delta_per_period,
                })));
            }
        }

        let time = format_time((self.clock)());
        for (audience, chain) in &chains {
            let lines: Vec<(&Spend, Option<&str>)> = new
                .iter()
                .filter(|s| s.audience == *audience)
                .map(|s| (*s, None))
                .collect();
            self.append(audience, chain, &time, &lines)?;
        }
        Ok(new.into_iter().cloned().collect())
    }

    /// Locks `audiences` exclusively in sorted order and reads their verified chains.
    fn lock_and_read<'a>(
        &self,
        audiences: &BTreeSet<&'a str>,
    ) -> Result<(Vec<File>, BTreeMap<&'a str, Chain>), LedgerError> {
        let mut locks = Vec::with_capacity(audiences.len());
        for audience in audiences {
            check_audience(audience)?;
            locks.push(self.lock(audience, true)?);
        }
        let mut chains = BTreeMap::new();
        for audience in audiences {
            chains.insert(*audience, self.read_chain(audience)?);
        }
        Ok((locks, chains))
    }

    /// Appends one record per entry to `audience`'s file (its exclusive lock held, `chain`
    /// read under it): one write per line, then fsync.
    fn append(
        &self,
        audience: &str,
        chain: &Chain,
        time: &str,
        entries: &[(&Spend, Option<&str>)],
    ) -> Result<(), LedgerError> {
        if entries.is_empty() {
            return Ok(());
        }
        let path = self.path_of(audience)?;
        let (mut file, created) = chain::open_for_append(&path).map_err(io(&path))?;
        let meta = file.metadata().map_err(io(&path))?;
        check_mode(&meta, &path, "600")?;
        if meta.len() != chain.bytes {
            // Only possible if something ignores the lock: refuse rather than fork the chain.
            return Err(LedgerError::Io {
                path,
                source: std::io::Error::other(
                    "the file changed while its lock was held (a writer ignoring the lock?); nothing was appended",
                ),
            });
        }
        let mut prev = chain.next_prev.clone();
        for (seq, (spend, legacy)) in (chain.next_seq()..).zip(entries) {
            let mut record = Record {
                seq,
                time: time.to_owned(),
                kind: spend.mechanism.kind(),
                audience: spend.audience.clone(),
                period: spend.period.clone(),
                report: spend.report.clone(),
                partition: spend.partition.clone(),
                release_id: spend.release_id.clone(),
                key_id: spend.key_id.clone(),
                mechanism: spend.mechanism,
                protection: spend.protection.clone(),
                epsilon: spend.epsilon,
                delta: spend.delta,
                legacy_sha256: legacy.map(str::to_owned),
                prev,
                hash: String::new(),
            };
            let (line, hash) = chain::seal_record(&record);
            record.hash = hash;
            prev = chain::line_hash(line.as_bytes());
            let mut bytes = line.into_bytes();
            bytes.push(b'\n');
            file.write_all(&bytes).map_err(io(&path))?;
        }
        chain::sync_appended(&file, &path, created).map_err(io(&path))?;
        Ok(())
    }

    /// Imports a legacy v1 ledger (`{"version":1,"spends":[{audience, period, report,
    /// partition, input_digest, epsilon, delta}]}`) as `migrated` records (mechanism
    /// `legacy`, `release_id` = `input_digest`, empty `key_id`, `legacy_sha256` = SHA-256 of
    /// the file), then renames it to `<name>.migrated` (or `<name>.migrated.2`, … when
    /// that exists) and fsyncs its directory. A legacy spend identical to a `migrated`
    /// record already present is not imported again, so migrating twice (or after a crash
    /// half-way) imports nothing twice. When `legacy` is gone but `<name>.migrated` exists,
    /// it was migrated already: `Ok(0)`. Returns how many spends were imported. Budgets are
    /// not checked: these releases were made already.
    pub fn migrate_legacy(&mut self, legacy: &Path) -> Result<usize, LedgerError> {
        let data = match std::fs::read(legacy) {
            Ok(data) => data,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && with_suffix(legacy, ".migrated").exists() =>
            {
                return Ok(0);
            }
            Err(e) => return Err(io(legacy)(e)),
        };
        let fail = |detail: String| LedgerError::Legacy {
            path: legacy.to_owned(),
            detail,
        };
        let file: LegacyFile = serde_json::from_slice(&data).map_err(|e| fail(e.to_string()))?;
        if file.version != 1 {
            return Err(fail(format!(
                "version {} (only version 1 is migrated)",
                file.version
            )));
        }
        let digest = format!("{:x}", Sha256::digest(&data));
        let spends: Vec<Spend> = file
            .spends
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let spend = Spend {
                    audience: s.audience,
                    period: s.period,
                    report: s.report,
                    partition: s.partition,
                    release_id: s.input_digest,
                    key_id: String::new(),
                    mechanism: Mechanism::Legacy,
                    protection: "legacy".to_owned(),
                    epsilon: s.epsilon,
                    delta: s.delta,
                };
                check_fields(&spend)
                    .map(|()| spend)
                    .map_err(|why| fail(format!("spend {}: {why}", i + 1)))
            })
            .collect::<Result<_, _>>()?;

        let audiences: BTreeSet<&str> = spends.iter().map(|s| s.audience.as_str()).collect();
        let (_locks, chains) = self.lock_and_read(&audiences)?;
        let mut seen: HashSet<Identity<'_>> = chains
            .values()
            .flat_map(|c| c.records.iter().map(Record::identity))
            .collect();
        let new: Vec<&Spend> = spends
            .iter()
            .filter(|s| seen.insert(s.identity()))
            .collect();
        let time = format_time((self.clock)());
        for (audience, chain) in &chains {
            let lines: Vec<(&Spend, Option<&str>)> = new
                .iter()
                .filter(|s| s.audience == *audience)
                .map(|s| (*s, Some(digest.as_str())))
                .collect();
            self.append(audience, chain, &time, &lines)?;
        }

        let mut target = with_suffix(legacy, ".migrated");
        let mut n = 2;
        while target.exists() {
            target = with_suffix(legacy, &format!(".migrated.{n}"));
            n += 1;
        }
        std::fs::rename(legacy, &target).map_err(io(legacy))?;
        sync_parent(legacy).map_err(io(legacy))?;
        Ok(new.len())
    }
}

/// The layout of a legacy (v1) ledger file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyFile {
    version: u32,
    spends: Vec<LegacySpend>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacySpend {
    audience: String,
    period: String,
    report: String,
    partition: String,
    input_digest: String,
    epsilon: Rational,
    delta: Rational,
}

fn sum<'a>(records: impl Iterator<Item = &'a Record>) -> Option<(Rational, Rational)> {
    sum_pairs(records.map(|r| (r.epsilon, r.delta)))
}

fn sum_pairs(pairs: impl Iterator<Item = (Rational, Rational)>) -> Option<(Rational, Rational)> {
    let mut total = (Rational::ZERO, Rational::ZERO);
    for (epsilon, delta) in pairs {
        total = (total.0.checked_add(epsilon)?, total.1.checked_add(delta)?);
    }
    Some(total)
}

/// UTC, whole seconds: `2026-12-07T10:00:00Z`.
fn format_time(now: jiff::Timestamp) -> String {
    now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LedgerError + use<> {
    let path = path.to_owned();
    move |source| LedgerError::Io { path, source }
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name: OsString = path.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    path.with_file_name(name)
}

/// Refuses a file or directory accessible to group or others.
fn check_mode(
    meta: &std::fs::Metadata,
    path: &Path,
    wanted: &'static str,
) -> Result<(), LedgerError> {
    match chain::group_or_other_mode(meta) {
        Some(mode) => Err(LedgerError::Permissions {
            path: path.to_owned(),
            mode,
            wanted,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use logveil_privacy::chain::{canonical, line_hash, line_with_hash};

    fn record(seq: u64, prev: &str) -> Record {
        let mut r = Record {
            seq,
            time: "2026-12-07T10:00:00Z".into(),
            kind: Kind::Spend,
            audience: "public".into(),
            period: "2026-11".into(),
            report: "pages_daily_dp".into(),
            partition: "2026-11-01".into(),
            release_id: format!("lvr1-{seq}"),
            key_id: "demo-2026".into(),
            mechanism: Mechanism::Dp,
            protection: r#"{"method":"differential_privacy"}"#.into(),
            epsilon: Rational::ONE,
            delta: Rational::parse("2e-7").unwrap(),
            legacy_sha256: None,
            prev: prev.into(),
            hash: String::new(),
        };
        r.hash = canonical(&r.body()).1;
        r
    }

    fn line(r: &Record) -> String {
        line_with_hash(&canonical(&r.body()).0, &r.hash)
    }

    #[test]
    fn documented_form_and_recipe() {
        let r = record(1, GENESIS);
        let l = line(&r);
        assert!(l.starts_with(r#"{"seq":1,"time":"2026-12-07T10:00:00Z","kind":"spend","audience":"public","period":"2026-11","report":"pages_daily_dp","partition":"2026-11-01","release_id":"lvr1-1","key_id":"demo-2026","mechanism":"dp","protection":"{\"method\":\"differential_privacy\"}","epsilon":"1","delta":"0.0000002","prev":"0000000000000000000000000000000000000000000000000000000000000000","hash":""#), "{l}");
        let (rest, hash) = l.rsplit_once(",\"hash\":\"").unwrap();
        assert_eq!(
            blake3::hash(format!("{rest}}}").as_bytes())
                .to_hex()
                .as_str(),
            hash.strip_suffix("\"}").unwrap()
        );
        let chain = parse_chain(format!("{l}\n").as_bytes(), Some("public")).unwrap();
        assert_eq!(chain.records, [r]);
        assert_eq!(chain.next_prev, line_hash(l.as_bytes()));
    }

    #[test]
    fn inconsistent_records_are_refused_even_when_hashed() {
        let mut r = record(1, GENESIS);
        r.kind = Kind::Release;
        r.hash = canonical(&r.body()).1;
        let b = parse_chain(format!("{}\n", line(&r)).as_bytes(), None).unwrap_err();
        assert!(matches!(b.problem, Problem::Inconsistent(_)), "{b}");
        let r = record(1, GENESIS);
        let b = parse_chain(format!("{}\n", line(&r)).as_bytes(), Some("partner")).unwrap_err();
        assert!(b.to_string().contains("ledger of `partner`"), "{b}");
        // A member with a non-canonical rational: same value, other bytes.
        let l = line(&r).replace("\"0.0000002\"", "\"2e-7\"");
        let b = parse_chain(format!("{l}\n").as_bytes(), None).unwrap_err();
        assert_eq!(b.problem, Problem::NotCanonical);
    }

    #[test]
    fn audience_names() {
        for ok in ["public", "a", "team_2", &"x".repeat(64)] {
            check_audience(ok).unwrap();
        }
        for bad in [
            "",
            "../x",
            "Public",
            "a-b",
            "a.b",
            "a b",
            &"x".repeat(65),
            "é",
        ] {
            assert!(check_audience(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_are_utc_seconds() {
        let t: jiff::Timestamp = "2026-12-07T10:00:00.75Z".parse().unwrap();
        assert_eq!(format_time(t), "2026-12-07T10:00:00Z");
        assert_eq!(format_time(jiff::Timestamp::now()).len(), 20);
    }
}
