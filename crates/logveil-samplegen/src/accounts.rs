//! Synthetic accounts and their CSV / `SQLite` / Parquet renderings.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow_array::{ArrayRef, BooleanArray, Date32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rusqlite::{Connection, params};

use crate::catalog::{AGE_BANDS, GENDERS, INDUSTRIES, INTERESTS, OCCUPATIONS, ZIP_AREAS};
use crate::rng::Rng;

pub const ACCOUNTS: usize = 600;
/// The first accounts get hand-picked birthdays (band boundaries on the two report days,
/// a leap day) and are guaranteed to visit on both days.
pub const PINNED: usize = 6;

#[allow(
    clippy::struct_excessive_bools,
    reason = "mirrors the four 0/1 columns of the accounts table"
)]
#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub email: String,
    /// (year, month, day); `None` is an empty `birth_date`.
    pub birth_date: Option<(i64, u32, u32)>,
    pub gender: &'static str,
    pub zip_code: String,
    pub occupation: &'static str,
    pub industry: &'static str,
    pub interests: String,
    /// What logveil should make of `gender`, `zip_code`, `occupation`, `industry` and `interests`:
    /// the generator's own labels (catalog), for truth.json.
    pub labels: Labels,
    pub consent_research: bool,
    pub consent_advertising: bool,
    pub newsletter_opt_out: bool,
    pub deleted: bool,
    /// Linked `jt_uid` values, at least one.
    pub cookies: Vec<String>,
}

/// The generalised values an account should get (see [`Account::labels`]).
#[derive(Debug, Clone)]
pub struct Labels {
    pub gender: &'static str,
    pub area: &'static str,
    pub occupation: &'static str,
    pub industry: &'static str,
    /// Distinct, sorted; empty when the account has none.
    pub interests: Vec<&'static str>,
}

/// `template` with each `#` replaced by the next digit of `digits` (four, zero-padded).
fn fill_zip(template: &str, digits: u64) -> String {
    let digits = format!("{digits:04}");
    let mut digits = digits.chars();
    template
        .chars()
        .map(|c| {
            if c == '#' {
                digits.next().unwrap_or('0')
            } else {
                c
            }
        })
        .collect()
}

impl Account {
    pub fn birth_date_string(&self) -> String {
        self.birth_date
            .map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"))
            .unwrap_or_default()
    }

    /// Joinable for audience research.
    pub fn researchable(&self) -> bool {
        self.consent_research && !self.deleted
    }
}

/// A fresh `jt_uid` value (`u-` + 16 hex), unique within `used`.
pub fn new_cookie(rng: &mut Rng, used: &mut BTreeSet<String>) -> String {
    loop {
        let c = format!("u-{}", rng.hex(16));
        if used.insert(c.clone()) {
            return c;
        }
    }
}

const DAYS_IN_MONTH: [u64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

pub fn generate(seed: u64, used_cookies: &mut BTreeSet<String>) -> Vec<Account> {
    let mut rng = Rng::new(seed, "accounts");
    let mut number = 100u64;
    let mut out = Vec::with_capacity(ACCOUNTS);
    for i in 0..ACCOUNTS {
        number += rng.range(1, 3);
        let pinned: Option<(i64, u32, u32)> = match i {
            0 => Some((1996, 11, 2)), // 29 on 11-01, 30 on 11-02
            1 => Some((2006, 11, 2)), // <20 -> 20-29
            2 => Some((1936, 11, 2)), // 80-89 -> 90+
            3 => Some((1988, 2, 29)), // leap day
            4 => Some((1996, 11, 1)), // 30 on both days
            5 => Some((1986, 11, 3)), // 39 on both days
            _ => None,
        };
        let birth_date = if i < PINNED {
            pinned
        } else if rng.chance(50) {
            None
        } else {
            let band = AGE_BANDS[rng.weighted(AGE_BANDS.iter().map(|b| b.2))];
            let age = rng.range(band.0, band.1) as i64;
            let month = rng.range(1, 12) as u32;
            let day = rng.range(1, DAYS_IN_MONTH[month as usize - 1]) as u32;
            // Age `age` on 2026-11-01.
            let later = (month, day) > (11, 1);
            Some((2026 - age - i64::from(later), month, day))
        };
        let (gender, _, gender_label) = GENDERS[rng.weighted(GENDERS.iter().map(|g| g.1))];
        // One draw each, as before the templates, so the other streams stay the same.
        let (zip_template, area) = ZIP_AREAS[rng.index(ZIP_AREAS.len())];
        let zip_code = fill_zip(zip_template, rng.below(10_000));
        let (occupation, _, occupation_label) =
            OCCUPATIONS[rng.weighted(OCCUPATIONS.iter().map(|o| o.1))];
        let (industry, _, industry_label) =
            INDUSTRIES[rng.weighted(INDUSTRIES.iter().map(|o| o.1))];
        let interests: Vec<(&str, &'static str)> = INTERESTS
            .iter()
            .copied()
            .filter(|_| rng.chance(300))
            .collect();
        let mut interest_labels: Vec<&'static str> = interests.iter().map(|i| i.1).collect();
        interest_labels.sort_unstable();
        interest_labels.dedup();
        let labels = Labels {
            gender: gender_label,
            area,
            occupation: occupation_label,
            industry: industry_label,
            interests: interest_labels,
        };
        let interests: Vec<&str> = interests.iter().map(|i| i.0).collect();
        let consent_research = i < PINNED || rng.chance(700);
        let consent_advertising = rng.chance(400);
        let newsletter_opt_out = rng.chance(200);
        let deleted = i >= PINNED && rng.chance(50);
        let n_cookies = 1 + rng.weighted([65, 25, 10]);
        let cookies = (0..n_cookies)
            .map(|_| new_cookie(&mut rng, used_cookies))
            .collect();
        out.push(Account {
            id: format!("A{number:06}"),
            email: format!("user{number}@example.com"),
            birth_date,
            gender,
            zip_code,
            occupation,
            industry,
            interests: interests.join("|"),
            labels,
            consent_research,
            consent_advertising,
            newsletter_opt_out,
            deleted,
            cookies,
        });
    }
    out
}

fn csv_field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// One row per (account, cookie) link, accounts in id order.
pub fn to_csv(accounts: &[Account]) -> String {
    let mut out = String::from(
        "account_id,cookie_id,email,birth_date,gender,zip_code,occupation,industry,interests,\
         consent_research,consent_advertising,newsletter_opt_out,deleted\n",
    );
    for a in accounts {
        for cookie in &a.cookies {
            let birth = a.birth_date_string();
            let text: [&str; 9] = [
                &a.id,
                cookie,
                &a.email,
                &birth,
                a.gender,
                &a.zip_code,
                a.occupation,
                a.industry,
                &a.interests,
            ];
            for (i, field) in text.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                csv_field(&mut out, field);
            }
            let flags = [
                a.consent_research,
                a.consent_advertising,
                a.newsletter_opt_out,
                a.deleted,
            ];
            for flag in flags {
                let _ = write!(out, ",{}", u8::from(flag));
            }
            out.push('\n');
        }
    }
    out
}

pub const SCHEMA: &str = "CREATE TABLE accounts (account_id TEXT PRIMARY KEY, email TEXT, birth_date TEXT, gender TEXT, zip_code TEXT,
  occupation TEXT, industry TEXT, interests TEXT, consent_research INTEGER NOT NULL, consent_advertising INTEGER NOT NULL,
  newsletter_opt_out INTEGER NOT NULL, deleted INTEGER NOT NULL);
CREATE TABLE account_cookies (cookie_id TEXT PRIMARY KEY, account_id TEXT NOT NULL REFERENCES accounts(account_id));
";

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Write the `SQLite` copy. Empty CSV fields are stored as NULL.
pub fn write_db(path: &Path, accounts: &[Account]) -> Result<()> {
    for stale in [path.to_path_buf(), path.with_extension("db-journal")] {
        if stale.exists() {
            fs::remove_file(&stale).with_context(|| format!("removing {}", stale.display()))?;
        }
    }
    let mut conn =
        Connection::open(path).with_context(|| format!("creating {}", path.display()))?;
    conn.execute_batch("PRAGMA journal_mode=DELETE; PRAGMA foreign_keys=ON;")?;
    conn.execute_batch(SCHEMA)?;
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO accounts (account_id, email, birth_date, gender, zip_code, occupation, industry, \
             interests, consent_research, consent_advertising, newsletter_opt_out, deleted) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        for a in accounts {
            let birth = a.birth_date_string();
            insert.execute(params![
                a.id,
                a.email,
                non_empty(&birth),
                non_empty(a.gender),
                a.zip_code,
                non_empty(a.occupation),
                non_empty(a.industry),
                non_empty(&a.interests),
                a.consent_research,
                a.consent_advertising,
                a.newsletter_opt_out,
                a.deleted,
            ])?;
        }
        let mut link =
            tx.prepare("INSERT INTO account_cookies (cookie_id, account_id) VALUES (?1, ?2)")?;
        for a in accounts {
            for cookie in &a.cookies {
                link.execute(params![cookie, a.id])?;
            }
        }
    }
    tx.commit()?;
    conn.execute_batch("VACUUM;")?;
    conn.close().map_err(|(_, e)| e)?;
    Ok(())
}

/// Column names of the CSV export, in order (also the Parquet columns).
pub const COLUMNS: [&str; 13] = [
    "account_id",
    "cookie_id",
    "email",
    "birth_date",
    "gender",
    "zip_code",
    "occupation",
    "industry",
    "interests",
    "consent_research",
    "consent_advertising",
    "newsletter_opt_out",
    "deleted",
];

/// The Parquet copy: the CSV's rows and columns, typed as an analyst's export would be:
/// `birth_date` is `Date32`, flags are `Boolean`, empty strings are NULL (as in `SQLite`).
/// `created_by` is fixed so the bytes do not change with the writer's version string.
pub fn to_parquet(accounts: &[Account]) -> Result<Vec<u8>> {
    let links: Vec<(&Account, &String)> = accounts
        .iter()
        .flat_map(|a| a.cookies.iter().map(move |c| (a, c)))
        .collect();
    let text = |f: &dyn Fn(&Account, &str) -> String| -> ArrayRef {
        let array: StringArray = links
            .iter()
            .map(|(a, c)| Some(f(a, c)).filter(|v| !v.is_empty()))
            .collect();
        Arc::new(array)
    };
    let flag = |f: fn(&Account) -> bool| -> ArrayRef {
        let array: BooleanArray = links.iter().map(|(a, _)| Some(f(a))).collect();
        Arc::new(array)
    };
    let birth: Date32Array = links
        .iter()
        .map(|(a, _)| {
            a.birth_date
                .map(|(y, m, d)| crate::time::days_from_civil(y, m, d) as i32)
        })
        .collect();
    let birth: ArrayRef = Arc::new(birth);
    let columns: [ArrayRef; 13] = [
        text(&|a, _| a.id.clone()),
        text(&|_, c| c.to_owned()),
        text(&|a, _| a.email.clone()),
        birth,
        text(&|a, _| a.gender.to_owned()),
        text(&|a, _| a.zip_code.clone()),
        text(&|a, _| a.occupation.to_owned()),
        text(&|a, _| a.industry.to_owned()),
        text(&|a, _| a.interests.clone()),
        flag(|a| a.consent_research),
        flag(|a| a.consent_advertising),
        flag(|a| a.newsletter_opt_out),
        flag(|a| a.deleted),
    ];
    let fields: Vec<Field> = COLUMNS
        .iter()
        .zip(&columns)
        .map(|(name, col)| {
            let required = matches!(*name, "account_id" | "cookie_id" | "email" | "zip_code")
                || col.data_type() == &DataType::Boolean;
            Field::new(*name, col.data_type().clone(), !required)
        })
        .collect();
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns.to_vec())?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_created_by("logveil-samplegen".to_owned())
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props))?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(out)
}
