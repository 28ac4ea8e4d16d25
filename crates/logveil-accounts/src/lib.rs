//! Account stores: read registered accounts once per run into a join table keyed by
//! visitor pseudonym, keeping only what the policy may use.
//!
//! Sources: `csv:PATH` (one row per account–cookie link, the export schema in the README),
//! `parquet:PATH` (the same columns, see [`parquet`]), `sqlite:PATH` (tables `accounts` and
//! `account_cookies`, opened read-only) and `postgres://…` (the view `logveil_accounts`, see
//! [`postgres`]). Cookie IDs are hashed with the visitor subkey as they are read, so a visitor
//! pseudonym from the logs finds its account; account IDs become account pseudonyms. E-mail
//! and name are never read. The optional columns `zip_code`, `occupation`, `industry` and
//! `interests` are read only when [`Attributes`] asks for them (and when the source has
//! them: older exports without them load, every value `unknown`); each value is generalised
//! ([`logveil_privacy::generalize`], [`logveil_privacy::area`]) as its row is read and the
//! raw text dropped at once: every dimension has a closed list of values, and stored text
//! that is none of its spellings is counted per column ([`LoadStats::unrecognised`]), never
//! kept. All four sources go through the same mapping ([`Builder::add`]).
//! [`AccountStore::join`] applies a purpose's consent rules.

pub mod parquet;
pub mod postgres;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use logveil_privacy::generalize::{self, Interests, Mapped, UNKNOWN};
use logveil_privacy::keys::parse_date;
use logveil_privacy::{ConsentColumn, Dimension, Pseudonym, Pseudonymizer, Purpose};

/// An account source that cannot be read. Messages name the source and the column, never a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountsError {
    /// `spec` has any password redacted.
    #[error(
        "accounts source `{spec}`: unknown kind (allowed: csv:PATH, sqlite:PATH, parquet:PATH, postgres://USER@HOST/DB)"
    )]
    UnknownSource { spec: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Csv { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// A Parquet file that cannot be read, or a column of a type we do not accept.
    #[error("{path}: {message}")]
    Parquet { path: PathBuf, message: String },
    /// A `PostgreSQL` source that cannot be parsed, reached or read. `url` is the connection
    /// string with its password redacted; `message` never holds the password either.
    #[error("{url}: {message}")]
    Postgres { url: String, message: String },
    /// For `PostgreSQL` sources `path` is the redacted connection string.
    #[error("{path}: row {row}: column `{column}`: {message}")]
    BadValue {
        path: PathBuf,
        row: u64,
        column: &'static str,
        message: &'static str,
    },
}

/// Where accounts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountSource {
    Csv(PathBuf),
    Sqlite(PathBuf),
    Parquet(PathBuf),
    /// A `PostgreSQL` connection string; its `Debug` and `Display` redact the password.
    Postgres(postgres::PostgresSource),
}

impl AccountSource {
    /// Parses `csv:PATH`, `sqlite:PATH`, `parquet:PATH` (a relative PATH is taken from
    /// `base`) or a `postgres://…` / `postgresql://…` URL.
    pub fn parse(spec: &str, base: &Path) -> Result<Self, AccountsError> {
        if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
            return postgres::PostgresSource::parse(spec).map(Self::Postgres);
        }
        let unknown = || AccountsError::UnknownSource {
            spec: logveil_privacy::secrets::redact_credentials(&postgres::redact_url(spec)),
        };
        let (kind, path) = spec.split_once(':').ok_or_else(unknown)?;
        let path = base.join(path);
        match kind {
            "csv" => Ok(Self::Csv(path)),
            "sqlite" => Ok(Self::Sqlite(path)),
            "parquet" => Ok(Self::Parquet(path)),
            _ => Err(unknown()),
        }
    }

    /// The file read; for `PostgreSQL`, the connection string with its password redacted
    /// (prefer [`Display`](std::fmt::Display), which does not treat it as a path).
    pub fn path(&self) -> &Path {
        match self {
            Self::Csv(p) | Self::Sqlite(p) | Self::Parquet(p) => p,
            Self::Postgres(pg) => Path::new(pg.redacted()),
        }
    }
}

/// `csv:PATH`, `sqlite:PATH`, `parquet:PATH` or the redacted `PostgreSQL` URL.
impl std::fmt::Display for AccountSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Csv(p) => write!(f, "csv:{}", p.display()),
            Self::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            Self::Parquet(p) => write!(f, "parquet:{}", p.display()),
            Self::Postgres(pg) => f.write_str(pg.redacted()),
        }
    }
}

/// What the pipeline keeps of one account.
#[derive(Debug, Clone)]
pub struct Account {
    /// Keyed hash of the account ID: lets reports count distinct accounts.
    pub key: Pseudonym,
    /// Days since 1970-01-01; `None` when empty or invalid.
    pub birth_day: Option<i32>,
    /// `female`, `male`, `other` or `unknown` ([`generalize::gender`]); never the stored
    /// text.
    pub gender: Box<str>,
    /// Prefecture of the postal code ([`logveil_privacy::area`]), or `unknown`.
    pub area: &'static str,
    /// Top-level occupation ([`generalize::occupation`]), `other` or `unknown`.
    pub occupation: &'static str,
    /// JSIC division ([`generalize::industry`]), `other` or `unknown`.
    pub industry: &'static str,
    /// Interests ([`generalize::Interests`]); empty when unknown.
    pub interests: Interests,
    pub consent_research: bool,
    pub consent_advertising: bool,
    pub newsletter_opt_out: bool,
    pub deleted: bool,
}

/// The result of trying to join a visitor to an account for a purpose.
#[derive(Debug, Clone, Copy)]
pub enum JoinOutcome<'a> {
    Joined(&'a Account),
    /// The visitor has no linked account (or the purpose does not join).
    NoAccount,
    /// The account did not consent to the purpose (or opted out of contact).
    NoConsent,
    Deleted,
}

impl JoinOutcome<'_> {
    pub const NAMES: [&'static str; 4] = ["joined", "no_account", "no_consent", "deleted"];

    pub fn name(&self) -> &'static str {
        match self {
            Self::Joined(_) => "joined",
            Self::NoAccount => "no_account",
            Self::NoConsent => "no_consent",
            Self::Deleted => "deleted",
        }
    }
}

/// The optional source columns, in [`Attributes`] order: what each becomes is in the
/// matching field of [`Account`].
pub const OPTIONAL_COLUMNS: [&str; 4] = ["zip_code", "occupation", "industry", "interests"];

/// Which optional account attributes a load reads ([`OPTIONAL_COLUMNS`]); the others are
/// not selected (or not decoded) at all and stay `unknown`. Birth date and gender are
/// always read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attributes {
    /// `zip_code` → [`Account::area`].
    pub area: bool,
    /// `occupation` → [`Account::occupation`].
    pub occupation: bool,
    /// `industry` → [`Account::industry`].
    pub industry: bool,
    /// `interests` → [`Account::interests`].
    pub interests: bool,
}

impl Attributes {
    pub const NONE: Self = Self {
        area: false,
        occupation: false,
        industry: false,
        interests: false,
    };
    pub const ALL: Self = Self {
        area: true,
        occupation: true,
        industry: true,
        interests: true,
    };

    /// What reports with these dimensions need.
    pub fn for_dimensions<'d>(dimensions: impl IntoIterator<Item = &'d Dimension>) -> Self {
        let mut a = Self::NONE;
        for d in dimensions {
            match d {
                Dimension::Area => a.area = true,
                Dimension::Occupation => a.occupation = true,
                Dimension::Industry => a.industry = true,
                Dimension::Interests => a.interests = true,
                _ => {}
            }
        }
        a
    }

    /// Whether [`OPTIONAL_COLUMNS`]`[i]` is wanted.
    fn wants(self, i: usize) -> bool {
        [self.area, self.occupation, self.industry, self.interests][i]
    }
}

/// Counts from loading, for the run summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadStats {
    pub accounts: u64,
    pub cookie_links: u64,
    /// Cookies linked to more than one account: never joined (whose would it be?).
    pub ambiguous_cookies: u64,
    /// Birth dates that are not `YYYY-MM-DD`: treated as unknown.
    pub invalid_birth_dates: u64,
    /// Per source column (`birth_date`, `gender`, `zip_code`, `occupation`, `industry`,
    /// `interests`), the non-empty values that are none of the dimension's spellings (for
    /// `interests`, the items): they became `unknown` (`birth_date`, `gender`, `zip_code`)
    /// or `other`. One count per account (not per cookie row); only columns with a count
    /// appear.
    pub unrecognised: BTreeMap<&'static str, u64>,
}

/// Accounts indexed by the pseudonym of each linked cookie.
#[derive(Debug, Default)]
pub struct AccountStore {
    accounts: Vec<Account>,
    by_visitor: HashMap<Pseudonym, u32>,
    stats: LoadStats,
}

/// Sentinel for a cookie seen on two accounts.
const AMBIGUOUS: u32 = u32::MAX;

impl AccountStore {
    /// Loads every attribute ([`Attributes::ALL`]); prefer [`Self::load_attributes`] with
    /// what the pipeline's reports need.
    pub fn load(
        source: &AccountSource,
        pseudonymizer: &Pseudonymizer,
    ) -> Result<Self, AccountsError> {
        Self::load_attributes(source, pseudonymizer, Attributes::ALL)
    }

    /// Loads the accounts, reading only the optional columns `attributes` asks for.
    pub fn load_attributes(
        source: &AccountSource,
        pseudonymizer: &Pseudonymizer,
        attributes: Attributes,
    ) -> Result<Self, AccountsError> {
        let mut builder = Builder::new(pseudonymizer, attributes);
        match source {
            AccountSource::Csv(path) => load_csv(path, &mut builder)?,
            AccountSource::Sqlite(path) => load_sqlite(path, &mut builder)?,
            AccountSource::Parquet(path) => parquet::load(path, &mut builder)?,
            AccountSource::Postgres(pg) => pg.load(&mut builder)?,
        }
        Ok(builder.finish())
    }

    pub fn stats(&self) -> &LoadStats {
        &self.stats
    }

    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// Joins a visitor to an account if the purpose and the account's consent allow it.
    ///
    /// Rules: the purpose must have `join_accounts`; a deleted account never joins; the
    /// purpose's consent flag must be set; a `contact` purpose also requires that the
    /// account has not opted out of the newsletter.
    pub fn join(&self, visitor: &Pseudonym, purpose: &Purpose) -> JoinOutcome<'_> {
        if !purpose.join_accounts {
            return JoinOutcome::NoAccount;
        }
        let Some(&index) = self.by_visitor.get(visitor) else {
            return JoinOutcome::NoAccount;
        };
        let account = &self.accounts[index as usize];
        if account.deleted {
            return JoinOutcome::Deleted;
        }
        let consented = match purpose.consent {
            Some(ConsentColumn::ConsentResearch) => account.consent_research,
            Some(ConsentColumn::ConsentAdvertising) => account.consent_advertising,
            None => false,
        };
        if !consented || (purpose.contact && account.newsletter_opt_out) {
            return JoinOutcome::NoConsent;
        }
        JoinOutcome::Joined(account)
    }
}

/// One row as read from a source; the raw strings live only until [`Builder::add`] returns.
struct Row<'r> {
    account_id: &'r [u8],
    cookie_id: Option<&'r [u8]>,
    birth_date: BirthDate<'r>,
    gender: &'r [u8],
    flags: [bool; 4],
    /// [`OPTIONAL_COLUMNS`] as stored; `None` when not read (not wanted, or absent).
    optional: [Option<&'r [u8]>; 4],
}

/// A birth date as the source stores it.
#[derive(Clone, Copy)]
enum BirthDate<'r> {
    /// `YYYY-MM-DD`; empty means unknown.
    Text(&'r [u8]),
    /// Days since 1970-01-01 (a typed date column).
    Day(i32),
    Unknown,
}

impl BirthDate<'_> {
    /// `Err` for a value that is not a valid date: counted, then treated as unknown. A typed
    /// date is held to the same range as text (years 0000 to 9999), so every source agrees.
    fn day(self) -> Result<Option<i32>, ()> {
        match self {
            Self::Unknown => Ok(None),
            Self::Text(t) => match std::str::from_utf8(t).map(str::trim) {
                Ok("") => Ok(None),
                Ok(t) => parse_date(t).map(Some).ok_or(()),
                Err(_) => Err(()),
            },
            Self::Day(d) => {
                let range = parse_date("0000-01-01").unwrap_or(i32::MIN)
                    ..=parse_date("9999-12-31").unwrap_or(i32::MAX);
                if range.contains(&d) {
                    Ok(Some(d))
                } else {
                    Err(())
                }
            }
        }
    }
}

struct Builder<'p> {
    pseudonymizer: &'p Pseudonymizer,
    /// What the loaders should read.
    attributes: Attributes,
    store: AccountStore,
    by_account: HashMap<Pseudonym, u32>,
}

impl<'p> Builder<'p> {
    fn new(pseudonymizer: &'p Pseudonymizer, attributes: Attributes) -> Self {
        Self {
            pseudonymizer,
            attributes,
            store: AccountStore::default(),
            by_account: HashMap::new(),
        }
    }

    /// Whether a loader should read [`OPTIONAL_COLUMNS`]`[i]`.
    fn wants(&self, i: usize) -> bool {
        self.attributes.wants(i)
    }

    fn add(&mut self, row: &Row<'_>) {
        let key = self.pseudonymizer.account(row.account_id);
        let index = match self.by_account.entry(key) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                let stats = &mut self.store.stats;
                let birth_day = row.birth_date.day().unwrap_or_else(|()| {
                    stats.invalid_birth_dates += 1;
                    *stats.unrecognised.entry("birth_date").or_default() += 1;
                    None
                });
                // The one place where stored text becomes a dimension value.
                let mut map = |column: &'static str, m: Mapped| {
                    if !m.recognised {
                        *stats.unrecognised.entry(column).or_default() += 1;
                    }
                    m.value
                };
                let gender = map("gender", generalize::gender(row.gender));
                let [area, occupation, industry] = [
                    (0, generalize::area as fn(&[u8]) -> Mapped),
                    (1, generalize::occupation),
                    (2, generalize::industry),
                ]
                .map(|(k, f)| row.optional[k].map_or(UNKNOWN, |v| map(OPTIONAL_COLUMNS[k], f(v))));
                let interests = row.optional[3].map_or_else(Interests::default, |v| {
                    let (interests, unrecognised) = Interests::parse(v);
                    if unrecognised > 0 {
                        *stats.unrecognised.entry(OPTIONAL_COLUMNS[3]).or_default() += unrecognised;
                    }
                    interests
                });
                let [
                    consent_research,
                    consent_advertising,
                    newsletter_opt_out,
                    deleted,
                ] = row.flags;
                self.store.accounts.push(Account {
                    key,
                    birth_day,
                    gender: gender.into(),
                    area,
                    occupation,
                    industry,
                    interests,
                    consent_research,
                    consent_advertising,
                    newsletter_opt_out,
                    deleted,
                });
                self.store.stats.accounts += 1;
                *e.insert((self.store.accounts.len() - 1) as u32)
            }
        };
        let Some(cookie) = row.cookie_id.filter(|c| !c.is_empty()) else {
            return;
        };
        self.store.stats.cookie_links += 1;
        match self
            .store
            .by_visitor
            .entry(self.pseudonymizer.visitor_from_cookie(cookie))
        {
            Entry::Vacant(e) => {
                e.insert(index);
            }
            Entry::Occupied(mut e) => {
                if *e.get() != index && *e.get() != AMBIGUOUS {
                    e.insert(AMBIGUOUS);
                    self.store.stats.ambiguous_cookies += 1;
                }
            }
        }
    }

    fn finish(mut self) -> AccountStore {
        self.store.by_visitor.retain(|_, index| *index != AMBIGUOUS);
        self.store
    }
}

const FLAG_COLUMNS: [&str; 4] = [
    "consent_research",
    "consent_advertising",
    "newsletter_opt_out",
    "deleted",
];

fn parse_flag(value: &[u8]) -> Option<bool> {
    match value.trim_ascii() {
        b"1" | b"true" => Some(true),
        b"0" | b"false" => Some(false),
        _ => None,
    }
}

fn load_csv(path: &Path, builder: &mut Builder<'_>) -> Result<(), AccountsError> {
    let csv_error = |e: &csv::Error| AccountsError::Csv {
        path: path.to_owned(),
        // csv's messages can quote field contents; keep only the position and kind.
        message: match e.position() {
            Some(p) => format!("malformed CSV at line {}", p.line()),
            None => "malformed CSV".to_owned(),
        },
    };
    let file = std::fs::File::open(path).map_err(|source| AccountsError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(std::io::BufReader::new(file));
    let headers = reader.byte_headers().map_err(|e| csv_error(&e))?.clone();
    let column = |name: &'static str| -> Result<usize, AccountsError> {
        headers.iter().position(|h| h.trim_ascii() == name.as_bytes()).ok_or_else(|| AccountsError::Csv {
            path: path.to_owned(),
            message: format!("missing column `{name}` (required: account_id, cookie_id, birth_date, gender, {})", FLAG_COLUMNS.join(", ")),
        })
    };
    let (c_account, c_cookie, c_birth, c_gender) = (
        column("account_id")?,
        column("cookie_id")?,
        column("birth_date")?,
        column("gender")?,
    );
    let c_flags = [
        column(FLAG_COLUMNS[0])?,
        column(FLAG_COLUMNS[1])?,
        column(FLAG_COLUMNS[2])?,
        column(FLAG_COLUMNS[3])?,
    ];
    // Optional columns: read only when wanted and present.
    let c_optional: [Option<usize>; 4] = std::array::from_fn(|k| {
        let name = OPTIONAL_COLUMNS[k];
        builder
            .wants(k)
            .then(|| {
                headers
                    .iter()
                    .position(|h| h.trim_ascii() == name.as_bytes())
            })
            .flatten()
    });
    let mut record = csv::ByteRecord::new();
    let mut row_number = 1u64;
    while reader
        .read_byte_record(&mut record)
        .map_err(|e| csv_error(&e))?
    {
        row_number += 1;
        let bad = |column: &'static str, message: &'static str| AccountsError::BadValue {
            path: path.to_owned(),
            row: row_number,
            column,
            message,
        };
        let field = |i: usize| record.get(i).unwrap_or_default();
        let account_id = field(c_account).trim_ascii();
        if account_id.is_empty() {
            return Err(bad("account_id", "empty"));
        }
        let mut flags = [false; 4];
        for (k, &c) in c_flags.iter().enumerate() {
            flags[k] =
                parse_flag(field(c)).ok_or_else(|| bad(FLAG_COLUMNS[k], "expected 0 or 1"))?;
        }
        let mut optional = [None; 4];
        for (k, c) in c_optional.iter().enumerate() {
            if let Some(c) = *c {
                optional[k] = Some(field(c));
            }
        }
        builder.add(&Row {
            account_id,
            cookie_id: Some(field(c_cookie).trim_ascii()),
            birth_date: BirthDate::Text(field(c_birth)),
            gender: field(c_gender),
            flags,
            optional,
        });
    }
    Ok(())
}

/// The query the `SQLite` source runs without optional columns: only the columns the
/// pipeline uses. [`sqlite_query`] adds the wanted optional columns that the table has.
pub const SQLITE_QUERY: &str = "SELECT a.account_id, c.cookie_id, a.birth_date, a.gender, \
     a.consent_research, a.consent_advertising, a.newsletter_opt_out, a.deleted \
     FROM accounts a LEFT JOIN account_cookies c ON c.account_id = a.account_id";

/// [`SQLITE_QUERY`] with, after the flags, one column per [`OPTIONAL_COLUMNS`] entry: the
/// column itself where `read[i]`, else `NULL`.
pub fn sqlite_query(read: [bool; 4]) -> String {
    let (select, from) = SQLITE_QUERY
        .split_once(" FROM ")
        .unwrap_or((SQLITE_QUERY, ""));
    let mut q = select.to_owned();
    for (name, read) in OPTIONAL_COLUMNS.iter().zip(read) {
        if read {
            q.push_str(", a.");
            q.push_str(name);
        } else {
            q.push_str(", NULL");
        }
    }
    q.push_str(" FROM ");
    q.push_str(from);
    q
}

fn load_sqlite(path: &Path, builder: &mut Builder<'_>) -> Result<(), AccountsError> {
    use rusqlite::{OpenFlags, types::ValueRef};
    let sql_error = |source| AccountsError::Sqlite {
        path: path.to_owned(),
        source,
    };
    if !path.exists() {
        return Err(AccountsError::Io {
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql_error)?;
    let mut present = Vec::new();
    {
        let mut info = conn
            .prepare("SELECT name FROM pragma_table_info('accounts')")
            .map_err(sql_error)?;
        let mut names = info.query([]).map_err(sql_error)?;
        while let Some(row) = names.next().map_err(sql_error)? {
            present.push(row.get::<_, String>(0).map_err(sql_error)?);
        }
    }
    let read: [bool; 4] = std::array::from_fn(|k| {
        builder.wants(k)
            && present
                .iter()
                .any(|n| n.eq_ignore_ascii_case(OPTIONAL_COLUMNS[k]))
    });
    let mut stmt = conn.prepare(&sqlite_query(read)).map_err(sql_error)?;
    let mut rows = stmt.query([]).map_err(sql_error)?;
    let mut row_number = 0u64;
    while let Some(row) = rows.next().map_err(sql_error)? {
        row_number += 1;
        let bad = |column: &'static str, message: &'static str| AccountsError::BadValue {
            path: path.to_owned(),
            row: row_number,
            column,
            message,
        };
        let bytes = |i: usize, name: &'static str| -> Result<Option<&[u8]>, AccountsError> {
            match row.get_ref(i).map_err(sql_error)? {
                ValueRef::Null => Ok(None),
                ValueRef::Text(t) | ValueRef::Blob(t) => Ok(Some(t)),
                ValueRef::Integer(_) | ValueRef::Real(_) => Err(bad(name, "expected text")),
            }
        };
        let text = |i: usize, name: &'static str| -> Result<&[u8], AccountsError> {
            Ok(bytes(i, name)?.unwrap_or_default())
        };
        let account_id = bytes(0, "account_id")?.ok_or_else(|| bad("account_id", "NULL"))?;
        let mut flags = [false; 4];
        for (k, name) in FLAG_COLUMNS.iter().enumerate() {
            flags[k] = match row.get_ref(4 + k).map_err(sql_error)? {
                ValueRef::Integer(0) => false,
                ValueRef::Integer(1) => true,
                _ => return Err(bad(name, "expected 0 or 1")),
            };
        }
        let mut optional = [None; 4];
        for (k, name) in OPTIONAL_COLUMNS.iter().enumerate() {
            if read[k] {
                optional[k] = Some(text(8 + k, name)?);
            }
        }
        builder.add(&Row {
            account_id,
            cookie_id: bytes(1, "cookie_id")?,
            birth_date: BirthDate::Text(text(2, "birth_date")?),
            gender: text(3, "gender")?,
            flags,
            optional,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use logveil_privacy::KeyRing;

    fn pseudonymizer() -> Pseudonymizer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(
            &path,
            format!(
                "demo = true\n[[key]]\nid = \"t\"\nnot_before = \"2000-01-01\"\nsecret = \"{}\"\n",
                "cd".repeat(32)
            ),
        )
        .unwrap();
        Pseudonymizer::new(KeyRing::load(&path).unwrap().newest())
    }

    const CSV: &str = "account_id,cookie_id,email,birth_date,gender,zip_code,occupation,industry,interests,consent_research,consent_advertising,newsletter_opt_out,deleted\n\
A1,c-1,a1@example.com,1990-05-01,Female,100-0001,engineer,it,travel|food,1,0,0,0\n\
A1,c-2,a1@example.com,1990-05-01,Female,100-0001,engineer,it,travel|food,1,0,0,0\n\
A2,c-3,a2@example.com,,M,100-0002,,,,0,1,1,0\n\
A3,c-4,a3@example.com,not-a-date,,100-0003,,,,1,1,0,1\n\
A4,c-5,a4@example.com,1950-01-01,male,,,,,1,0,0,0\n\
A5,c-5,a5@example.com,1960-01-01,male,,,,,1,0,0,0\n";

    fn purpose(consent: Option<ConsentColumn>, contact: bool) -> Purpose {
        Purpose {
            description: String::new(),
            join_accounts: consent.is_some(),
            consent,
            contact,
        }
    }

    #[test]
    fn csv_joins_follow_consent_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        std::fs::write(&path, CSV).unwrap();
        let p = pseudonymizer();
        let store = AccountStore::load(&AccountSource::Csv(path), &p).unwrap();
        assert_eq!(
            store.stats(),
            &LoadStats {
                accounts: 5,
                cookie_links: 6,
                ambiguous_cookies: 1,
                invalid_birth_dates: 1,
                unrecognised: [("birth_date", 1), ("occupation", 1)].into(),
            }
        );
        let research = purpose(Some(ConsentColumn::ConsentResearch), false);
        let ads_contact = purpose(Some(ConsentColumn::ConsentAdvertising), true);
        let v = |c: &str| p.visitor_from_cookie(c.as_bytes());
        let JoinOutcome::Joined(a) = store.join(&v("c-2"), &research) else {
            panic!("c-2 should join")
        };
        assert_eq!(&*a.gender, "female");
        assert_eq!(store.join(&v("c-3"), &research).name(), "no_consent");
        assert_eq!(
            store.join(&v("c-3"), &ads_contact).name(),
            "no_consent",
            "newsletter opt-out blocks contact purposes"
        );
        assert_eq!(store.join(&v("c-4"), &research).name(), "deleted");
        assert_eq!(
            store.join(&v("c-5"), &research).name(),
            "no_account",
            "ambiguous cookie never joins"
        );
        assert_eq!(store.join(&v("nope"), &research).name(), "no_account");
        assert_eq!(
            store.join(&v("c-1"), &purpose(None, false)).name(),
            "no_account"
        );
    }

    /// Free text in `gender` (an e-mail, a phone number, bytes that are not UTF-8, a
    /// megabyte) becomes `unknown` and is counted, from CSV and `SQLite` alike.
    #[test]
    fn unrecognised_values_are_unknown_and_counted_in_every_source() {
        let long = "f".repeat(1 << 20);
        let genders: [&[u8]; 8] = [
            b"Alice@example.com",
            b"+81 90-1234-5678",
            b" Woman ",
            b"M",
            b"non-binary",
            b"",
            b"\xffF",
            long.as_bytes(),
        ];
        let want = [
            "unknown", "unknown", "female", "male", "other", "unknown", "unknown", "unknown",
        ];
        let zips: [&[u8]; 8] = [
            b"100-0001",
            b"bob@example.com",
            b"",
            b"\xff",
            b"",
            b"",
            b"",
            b"",
        ];
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("a.csv");
        let mut text = b"account_id,cookie_id,birth_date,gender,zip_code,consent_research,consent_advertising,newsletter_opt_out,deleted\n".to_vec();
        for (i, (g, z)) in genders.iter().zip(zips).enumerate() {
            text.extend_from_slice(format!("A{i},c-{i},,").as_bytes());
            text.extend_from_slice(g);
            text.push(b',');
            text.extend_from_slice(z);
            text.extend_from_slice(b",1,0,0,0\n");
        }
        std::fs::write(&csv, text).unwrap();
        let db = dir.path().join("a.db");
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE accounts (account_id TEXT PRIMARY KEY, birth_date TEXT, gender TEXT, zip_code TEXT, consent_research INTEGER NOT NULL, consent_advertising INTEGER NOT NULL, newsletter_opt_out INTEGER NOT NULL, deleted INTEGER NOT NULL);
             CREATE TABLE account_cookies (cookie_id TEXT PRIMARY KEY, account_id TEXT NOT NULL);",
        )
        .unwrap();
        for (i, (g, z)) in genders.iter().zip(zips).enumerate() {
            // As stored by a careless import: text that is not UTF-8 is a blob.
            conn.execute(
                "INSERT INTO accounts VALUES (?1, NULL, ?2, ?3, 1, 0, 0, 0)",
                rusqlite::params![
                    format!("A{i}"),
                    std::str::from_utf8(g).map_or_else(
                        |_| rusqlite::types::Value::Blob(g.to_vec()),
                        |t| rusqlite::types::Value::Text(t.to_owned())
                    ),
                    std::str::from_utf8(z).map_or_else(
                        |_| rusqlite::types::Value::Blob(z.to_vec()),
                        |t| rusqlite::types::Value::Text(t.to_owned())
                    ),
                ],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO account_cookies VALUES (?1, ?2)",
                [format!("c-{i}"), format!("A{i}")],
            )
            .unwrap();
        }
        drop(conn);
        let p = pseudonymizer();
        let research = purpose(Some(ConsentColumn::ConsentResearch), false);
        for source in [AccountSource::Csv(csv), AccountSource::Sqlite(db)] {
            let store = AccountStore::load(&source, &p).unwrap();
            assert_eq!(
                store.stats().unrecognised,
                [("gender", 4), ("zip_code", 2)].into(),
                "{source}"
            );
            for (i, want) in want.iter().enumerate() {
                let v = p.visitor_from_cookie(format!("c-{i}").as_bytes());
                let JoinOutcome::Joined(a) = store.join(&v, &research) else {
                    panic!("{source}: c-{i} should join")
                };
                assert_eq!(&*a.gender, *want, "{source}: row {i}");
                assert!(generalize::GENDERS.contains(&&*a.gender) || &*a.gender == UNKNOWN);
            }
        }
    }

    #[test]
    fn bad_flag_names_row_and_column_without_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        std::fs::write(
            &path,
            CSV.replace(
                "A2,c-3,a2@example.com,,M,100-0002,,,,0,1,1,0",
                "A2,c-3,a2@example.com,,M,100-0002,,,,yes,1,1,0",
            ),
        )
        .unwrap();
        let e = AccountStore::load(&AccountSource::Csv(path), &pseudonymizer())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("row 4")
                && e.contains("consent_research")
                && !e.contains("a2@example.com")
                && !e.contains("c-3"),
            "{e}"
        );
    }

    #[test]
    fn sqlite_matches_csv() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE accounts (account_id TEXT PRIMARY KEY, email TEXT, birth_date TEXT, gender TEXT, zip_code TEXT, occupation TEXT, industry TEXT, interests TEXT, consent_research INTEGER NOT NULL, consent_advertising INTEGER NOT NULL, newsletter_opt_out INTEGER NOT NULL, deleted INTEGER NOT NULL);
             CREATE TABLE account_cookies (cookie_id TEXT PRIMARY KEY, account_id TEXT NOT NULL);
             INSERT INTO accounts VALUES ('A1','a1@example.com','1990-05-01','Female','','','','',1,0,0,0), ('A2','a2@example.com',NULL,'M','','','','',0,1,1,0), ('A9','a9@example.com','1980-01-01','f','','','','',1,1,0,0);
             INSERT INTO account_cookies VALUES ('c-1','A1'), ('c-2','A1'), ('c-3','A2');",
        )
        .unwrap();
        drop(conn);
        let p = pseudonymizer();
        let store = AccountStore::load(&AccountSource::Sqlite(db), &p).unwrap();
        assert_eq!(
            store.stats().accounts,
            3,
            "an account without cookies still loads"
        );
        assert_eq!(store.stats().cookie_links, 3);
        let research = purpose(Some(ConsentColumn::ConsentResearch), false);
        assert_eq!(
            store.join(&p.visitor_from_cookie(b"c-2"), &research).name(),
            "joined"
        );
        assert_eq!(
            store.join(&p.visitor_from_cookie(b"c-3"), &research).name(),
            "no_consent"
        );
    }

    #[test]
    fn optional_columns_are_generalised_as_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        std::fs::write(&path, CSV).unwrap();
        let p = pseudonymizer();
        let store = AccountStore::load(&AccountSource::Csv(path.clone()), &p).unwrap();
        let research = purpose(Some(ConsentColumn::ConsentResearch), false);
        let JoinOutcome::Joined(a) = store.join(&p.visitor_from_cookie(b"c-1"), &research) else {
            panic!("c-1 should join")
        };
        assert_eq!(
            (a.area, a.occupation, a.industry),
            ("tokyo", "other", "information_communications")
        );
        assert_eq!(a.interests.iter().collect::<Vec<_>>(), ["travel", "food"]);
        let ads = purpose(Some(ConsentColumn::ConsentAdvertising), false);
        let JoinOutcome::Joined(b) = store.join(&p.visitor_from_cookie(b"c-3"), &ads) else {
            panic!("c-3 should join for advertising")
        };
        assert_eq!(
            (b.area, b.occupation, b.industry, b.interests.is_empty()),
            ("tokyo", "unknown", "unknown", true)
        );
        // Not asked for: not read, so unknown.
        let store = AccountStore::load_attributes(
            &AccountSource::Csv(path),
            &p,
            Attributes {
                industry: true,
                ..Attributes::NONE
            },
        )
        .unwrap();
        let JoinOutcome::Joined(a) = store.join(&p.visitor_from_cookie(b"c-1"), &research) else {
            panic!("c-1 should join")
        };
        assert_eq!(
            (a.area, a.occupation, a.industry, a.interests.is_empty()),
            ("unknown", "unknown", "information_communications", true)
        );
    }

    /// An export from before `zip_code`, `occupation`, `industry` and `interests` existed.
    #[test]
    fn older_exports_without_optional_columns_load_as_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let p = pseudonymizer();
        let research = purpose(Some(ConsentColumn::ConsentResearch), false);
        let check = |store: &AccountStore, label: &str| {
            assert_eq!(store.stats().accounts, 2, "{label}");
            let JoinOutcome::Joined(a) = store.join(&p.visitor_from_cookie(b"c-1"), &research)
            else {
                panic!("{label}: c-1 should join")
            };
            assert_eq!(
                (
                    &*a.gender,
                    a.area,
                    a.occupation,
                    a.industry,
                    a.interests.is_empty()
                ),
                ("female", "unknown", "unknown", "unknown", true),
                "{label}"
            );
        };
        let csv = dir.path().join("old.csv");
        std::fs::write(
            &csv,
            "account_id,cookie_id,birth_date,gender,consent_research,consent_advertising,newsletter_opt_out,deleted\n\
             A1,c-1,1990-05-01,Female,1,0,0,0\nA2,c-2,,M,0,1,1,0\n",
        )
        .unwrap();
        check(
            &AccountStore::load(&AccountSource::Csv(csv), &p).unwrap(),
            "csv",
        );

        let db = dir.path().join("old.db");
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE accounts (account_id TEXT PRIMARY KEY, birth_date TEXT, gender TEXT, consent_research INTEGER NOT NULL, consent_advertising INTEGER NOT NULL, newsletter_opt_out INTEGER NOT NULL, deleted INTEGER NOT NULL);
             CREATE TABLE account_cookies (cookie_id TEXT PRIMARY KEY, account_id TEXT NOT NULL);
             INSERT INTO accounts VALUES ('A1','1990-05-01','Female',1,0,0,0), ('A2',NULL,'M',0,1,1,0);
             INSERT INTO account_cookies VALUES ('c-1','A1'), ('c-2','A2');",
        )
        .unwrap();
        drop(conn);
        check(
            &AccountStore::load(&AccountSource::Sqlite(db), &p).unwrap(),
            "sqlite",
        );
    }

    #[test]
    fn queries_select_only_wanted_optional_columns() {
        let none = sqlite_query([false; 4]);
        assert!(
            none.contains("a.deleted, NULL, NULL, NULL, NULL FROM accounts a"),
            "{none}"
        );
        let some = sqlite_query([true, false, false, true]);
        assert!(
            some.contains(
                "a.deleted, a.zip_code, NULL, NULL, a.interests FROM accounts a LEFT JOIN"
            ),
            "{some}"
        );
        let pg = postgres::query([false, true, true, false]);
        assert!(
            pg.contains("deleted::int, NULL::text, occupation::text, industry::text, NULL::text FROM logveil_accounts"),
            "{pg}"
        );
        for q in [none, some, pg] {
            assert!(!q.contains("email") && !q.contains("name"), "{q}");
        }
        assert_eq!(
            Attributes::for_dimensions(&[Dimension::Page, Dimension::Interests, Dimension::Area]),
            Attributes {
                area: true,
                interests: true,
                ..Attributes::NONE
            }
        );
    }

    #[test]
    fn source_spec_parsing() {
        let base = Path::new("/p");
        assert_eq!(
            AccountSource::parse("csv:a.csv", base).unwrap(),
            AccountSource::Csv("/p/a.csv".into())
        );
        assert_eq!(
            AccountSource::parse("sqlite:/abs.db", base).unwrap(),
            AccountSource::Sqlite("/abs.db".into())
        );
        assert_eq!(
            AccountSource::parse("parquet:a.parquet", base).unwrap(),
            AccountSource::Parquet("/p/a.parquet".into())
        );
        let pg =
            AccountSource::parse("postgresql://reader:hunter22@db.internal/crm", base).unwrap();
        assert!(matches!(pg, AccountSource::Postgres(_)));
        for shown in [
            pg.to_string(),
            format!("{pg:?}"),
            pg.path().display().to_string(),
        ] {
            assert!(
                shown.contains("reader:***@db.internal/crm") && !shown.contains("hunter22"),
                "{shown}"
            );
        }
        let e = AccountSource::parse("mysql://u:hunter22@h/db", base)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mysql://u:***@h/db") && !e.contains("hunter22"),
            "{e}"
        );
        assert!(
            AccountSource::parse("mysql:x", base)
                .unwrap_err()
                .to_string()
                .contains("csv:PATH, sqlite:PATH, parquet:PATH, postgres://")
        );
    }
}
