//! The `PostgreSQL` source: `postgres://USER@HOST[:PORT]/DB` (or `postgresql://…`), read with
//! the synchronous `postgres` client from the view `logveil_accounts` that a DBA grants to a
//! read-only role (README, "Accounts").
//!
//! The statement is fixed ([`QUERY`], plus those of the optional columns `zip_code`,
//! `occupation`, `industry`, `interests` that the load wants and the view has, see
//! [`query`]; the view's columns are learnt from a statement that is prepared, never run):
//! it names only the columns the pipeline uses, so a name or e-mail column is never
//! selected even where the view has one. It runs in a
//! read-only transaction with `DateStyle` set to ISO so `birth_date::text` is `YYYY-MM-DD`
//! whether the column is a `date` or text. Flags may be `boolean` or integer 0/1 (`::int`).
//!
//! Passwords: a password in the URL (or, when the URL has none, in `PGPASSWORD`) is redacted
//! from everything this module shows: the source's `Debug` and `Display`, and every error.
//! Prefer peer authentication over a Unix socket or `PGPASSWORD` to a password in a
//! pipeline file. TLS is not supported yet (`NoTls`): connect over a Unix socket
//! (`postgres://logveil_reader@%2Fvar%2Frun%2Fpostgresql/crm`) or to localhost.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use ::postgres::fallible_iterator::FallibleIterator;
use ::postgres::types::ToSql;

use crate::{AccountsError, BirthDate, Builder, FLAG_COLUMNS, OPTIONAL_COLUMNS, Row};

/// The statement the `PostgreSQL` source runs without optional columns: only the
/// pipeline's columns, cast so that `date` or text birth dates and `boolean` or integer
/// flags all read the same way. [`query`] adds the wanted optional columns the view has.
pub const QUERY: &str = "SELECT account_id::text, cookie_id::text, birth_date::text, gender::text, \
     consent_research::int, consent_advertising::int, newsletter_opt_out::int, deleted::int \
     FROM logveil_accounts";

/// [`QUERY`] with, after the flags, one column per [`OPTIONAL_COLUMNS`] entry: the column
/// (as text) where `read[i]`, else `NULL`.
pub fn query(read: [bool; 4]) -> String {
    let (select, from) = QUERY.split_once(" FROM ").unwrap_or((QUERY, ""));
    let mut q = select.to_owned();
    for (name, read) in OPTIONAL_COLUMNS.iter().zip(read) {
        if read {
            q.push_str(", ");
            q.push_str(name);
            q.push_str("::text");
        } else {
            q.push_str(", NULL::text");
        }
    }
    q.push_str(" FROM ");
    q.push_str(from);
    q
}

/// Without `connect_timeout` in the URL, give up connecting after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A `postgres://` or `postgresql://` connection string. `Debug` and `Display` show it with
/// its password redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresSource {
    url: String,
    redacted: String,
}

impl fmt::Debug for PostgresSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PostgresSource")
            .field(&self.redacted)
            .finish()
    }
}

impl fmt::Display for PostgresSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl PostgresSource {
    /// Checks the URL's syntax (no connection is made).
    pub fn parse(url: &str) -> Result<Self, AccountsError> {
        let source = Self {
            url: url.to_owned(),
            redacted: redact_url(url),
        };
        source.config()?;
        Ok(source)
    }

    /// The connection string with its password redacted.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    fn config(&self) -> Result<::postgres::Config, AccountsError> {
        self.url
            .parse::<::postgres::Config>()
            .map_err(|e| self.error(&e, &self.secrets(None)))
    }

    /// Every spelling of a password that an error text must not show.
    fn secrets(&self, env_password: Option<&[u8]>) -> Vec<String> {
        let mut secrets = Vec::new();
        if let Some(raw) = url_password(&self.url) {
            secrets.push(raw.to_owned());
            secrets.push(percent_decode(raw));
        }
        for param in url_params(&self.url) {
            if let Some(("password", raw)) = param.split_once('=') {
                secrets.push(raw.to_owned());
                secrets.push(percent_decode(raw));
            }
        }
        if let Some(pw) = env_password {
            secrets.push(String::from_utf8_lossy(pw).into_owned());
        }
        secrets.retain(|s| !s.is_empty());
        // Longest first, so a password containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets
    }

    fn error(&self, e: &::postgres::Error, secrets: &[String]) -> AccountsError {
        AccountsError::Postgres {
            url: self.redacted.clone(),
            message: scrub(describe(e), secrets),
        }
    }

    pub(crate) fn load(&self, builder: &mut Builder<'_>) -> Result<(), AccountsError> {
        let mut config = self.config()?;
        let env_password = if config.get_password().is_none() {
            std::env::var_os("PGPASSWORD").map(std::ffi::OsString::into_encoded_bytes)
        } else {
            None
        };
        if let Some(pw) = &env_password {
            config.password(pw);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("logveil");
        }
        let secrets = self.secrets(env_password.as_deref());
        let pg_error = |e: ::postgres::Error| self.error(&e, &secrets);

        let mut client = config.connect(::postgres::NoTls).map_err(pg_error)?;
        let mut tx = client
            .build_transaction()
            .read_only(true)
            .start()
            .map_err(pg_error)?;
        tx.batch_execute("SET LOCAL datestyle = 'ISO, YMD'")
            .map_err(pg_error)?;
        // The view's column names, from a statement that is prepared, never run.
        let columns = tx
            .prepare("SELECT * FROM logveil_accounts WHERE false")
            .map_err(pg_error)?;
        let read: [bool; 4] = std::array::from_fn(|k| {
            builder.wants(k)
                && columns
                    .columns()
                    .iter()
                    .any(|c| c.name() == OPTIONAL_COLUMNS[k])
        });
        let mut rows = tx
            .query_raw(&query(read), std::iter::empty::<&dyn ToSql>())
            .map_err(pg_error)?;
        let mut row_number = 0u64;
        while let Some(row) = rows.next().map_err(pg_error)? {
            row_number += 1;
            let bad = |column: &'static str, message: &'static str| AccountsError::BadValue {
                path: PathBuf::from(&self.redacted),
                row: row_number,
                column,
                message,
            };
            let text = |i: usize, name: &'static str| -> Result<Option<&str>, AccountsError> {
                row.try_get::<_, Option<&str>>(i)
                    .map_err(|_| bad(name, "expected text"))
            };
            let account_id = text(0, "account_id")?
                .ok_or_else(|| bad("account_id", "NULL"))?
                .trim_ascii();
            if account_id.is_empty() {
                return Err(bad("account_id", "empty"));
            }
            let mut flags = [false; 4];
            for (k, name) in FLAG_COLUMNS.iter().enumerate() {
                flags[k] = match row.try_get::<_, Option<i32>>(4 + k) {
                    Ok(Some(0)) => false,
                    Ok(Some(1)) => true,
                    _ => return Err(bad(name, "expected 0 or 1")),
                };
            }
            let mut optional = [None; 4];
            for (k, name) in OPTIONAL_COLUMNS.iter().enumerate() {
                if read[k] {
                    optional[k] = Some(text(8 + k, name)?.unwrap_or_default().as_bytes());
                }
            }
            builder.add(&Row {
                account_id: account_id.as_bytes(),
                cookie_id: text(1, "cookie_id")?.map(|c| c.trim_ascii().as_bytes()),
                birth_date: text(2, "birth_date")?
                    .map_or(BirthDate::Unknown, |t| BirthDate::Text(t.as_bytes())),
                gender: text(3, "gender")?.unwrap_or_default().as_bytes(),
                flags,
                optional,
            });
        }
        drop(rows);
        // Read-only: nothing to commit.
        tx.rollback().map_err(pg_error)?;
        client.close().map_err(pg_error)
    }
}

/// An error's text without anything the server echoes from the data: for a server error,
/// its severity, message and SQLSTATE (no DETAIL, which can quote rows); for a failed
/// conversion (SQLSTATE class 22, whose messages quote the value), no message at all.
fn describe(e: &::postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        if code.starts_with("22") {
            return format!(
                "the server could not convert a value (SQLSTATE {code}): check the column types of the view `logveil_accounts` (README, \"Accounts\")"
            );
        }
        return format!("{}: {} (SQLSTATE {code})", db.severity(), db.message());
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn scrub(mut text: String, secrets: &[String]) -> String {
    for secret in secrets {
        text = text.replace(secret.as_str(), "***");
    }
    text
}

/// The part of a URL after `scheme://` (the whole string when there is no scheme).
fn after_scheme(url: &str) -> (usize, &str) {
    url.find("://").map_or((0, url), |i| (i + 3, &url[i + 3..]))
}

/// The raw (still percent-encoded) password of `scheme://user:password@…`, parsed as the
/// `postgres` crate does: credentials run to the first `@`.
fn url_password(url: &str) -> Option<&str> {
    let (_, rest) = after_scheme(url);
    let creds = &rest[..rest.find('@')?];
    creds.split_once(':').map(|(_, pw)| pw)
}

/// The `key=value` query parameters after the host part.
fn url_params(url: &str) -> impl Iterator<Item = &str> {
    let (_, rest) = after_scheme(url);
    let rest = rest.find('@').map_or(rest, |at| &rest[at + 1..]);
    rest.split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default()
        .split('&')
}

/// `url` with the password of its user-info part and any `password=` parameter replaced by
/// `***`. Anything else (host, user, database) is shown as given.
pub fn redact_url(url: &str) -> String {
    let (start, rest) = after_scheme(url);
    let mut out = url[..start].to_owned();
    let mut rest = rest;
    if let Some(at) = rest.find('@') {
        let creds = &rest[..at];
        match creds.split_once(':') {
            Some((user, _)) => {
                out.push_str(user);
                out.push_str(":***");
            }
            None => out.push_str(creds),
        }
        out.push('@');
        rest = &rest[at + 1..];
    }
    match rest.split_once('?') {
        None => out.push_str(rest),
        Some((head, query)) => {
            out.push_str(head);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((key, _)) if percent_decode(key) == "password" => format!("{key}=***"),
                    _ => p.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_user_info_and_parameter_passwords() {
        assert_eq!(
            redact_url("postgresql://reader:s%40cret@db:5433/crm?password=x&application_name=a"),
            "postgresql://reader:***@db:5433/crm?password=***&application_name=a"
        );
        assert_eq!(
            redact_url("postgres://reader@%2Frun%2Fpg/crm"),
            "postgres://reader@%2Frun%2Fpg/crm"
        );
        assert_eq!(
            redact_url("postgres://h/db?pass%77ord=x"),
            "postgres://h/db?pass%77ord=***"
        );
        assert_eq!(redact_url("csv:a.csv"), "csv:a.csv");
    }

    #[test]
    fn secrets_cover_raw_and_decoded_passwords() {
        let s = PostgresSource::parse("postgres://u:p%40ss@h/db?password=zz%21").unwrap();
        let secrets = s.secrets(Some(b"fromenv"));
        for want in ["p%40ss", "p@ss", "zz%21", "zz!", "fromenv"] {
            assert!(secrets.iter().any(|x| x == want), "{want}: {secrets:?}");
        }
        assert_eq!(
            scrub("a p@ss b p%40ss c".to_owned(), &secrets),
            "a *** b *** c"
        );
    }

    #[test]
    fn connection_errors_do_not_show_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let socket_dir = dir.path().display().to_string().replace('/', "%2F");
        let url = format!("postgres://reader:hunter22secret@{socket_dir}:5432/crm");
        let source = PostgresSource::parse(&url).unwrap();
        let p = {
            let key = dir.path().join("k");
            std::fs::write(
                &key,
                format!(
                    "demo = true\n[[key]]\nid = \"t\"\nnot_before = \"2000-01-01\"\nsecret = \"{}\"\n",
                    "cd".repeat(32)
                ),
            )
            .unwrap();
            logveil_privacy::Pseudonymizer::new(
                logveil_privacy::KeyRing::load(&key).unwrap().newest(),
            )
        };
        let e = crate::AccountStore::load(&crate::AccountSource::Postgres(source), &p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("reader:***@") && e.contains("connecting") && !e.contains("hunter22"),
            "{e}"
        );
        let e = PostgresSource::parse("postgres://u:hunter22@h:notaport/db")
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid") && !e.contains("hunter22"), "{e}");
    }
}
