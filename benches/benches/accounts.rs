//! Loading the account table (#5: "1M accounts load in under 5 s"): 1,000,000 synthetic
//! accounts with 1,500,000 linked cookies, from CSV and from `SQLite`, every cookie hashed
//! with the join subkey as it is read. Generating the files is set-up, not measured.
//!
//! The `SQLite` file has the index the README's schema recommends on
//! `account_cookies(account_id)`; without it `SQLite` builds one on every load.
//!
//! `cargo bench -p logveil-benches --bench accounts`

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use logveil_accounts::{AccountSource, AccountStore};

const ACCOUNTS: u32 = 1_000_000;

/// Row `i`'s fields: deterministic and varied (every other account has a second cookie).
fn rows() -> impl Iterator<Item = (String, String, String, &'static str, String, u8, u8)> {
    (0..ACCOUNTS).flat_map(|i| {
        let cookies = if i % 2 == 0 { 2 } else { 1 };
        (0..cookies).map(move |c| {
            (
                format!("A{i:07}"),
                format!("u-{:016x}", u64::from(i) * 2 + c),
                format!("{}-{:02}-{:02}", 1940 + i % 60, 1 + i % 12, 1 + i % 28),
                ["female", "male", "", "other"][(i % 4) as usize],
                format!("{:03}-{:04}", 100 + i % 800, i % 10_000),
                u8::from(i % 3 != 0),
                u8::from(i % 5 == 0),
            )
        })
    })
}

fn write_csv(path: &Path) {
    let mut text = String::with_capacity(150 * 1_500_000);
    text.push_str("account_id,cookie_id,email,birth_date,gender,zip_code,occupation,industry,interests,consent_research,consent_advertising,newsletter_opt_out,deleted\n");
    for (id, cookie, birth, gender, zip, research, ads) in rows() {
        let _ = writeln!(
            text,
            "{id},{cookie},,{birth},{gender},{zip},office_worker,retail,food|onsen,{research},{ads},0,0"
        );
    }
    std::fs::write(path, text).unwrap();
}

fn write_sqlite(path: &Path) {
    let mut db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(
        "CREATE TABLE accounts (account_id TEXT PRIMARY KEY, email TEXT, birth_date TEXT, gender TEXT, zip_code TEXT, occupation TEXT, industry TEXT, interests TEXT, consent_research INTEGER NOT NULL, consent_advertising INTEGER NOT NULL, newsletter_opt_out INTEGER NOT NULL, deleted INTEGER NOT NULL);
         CREATE TABLE account_cookies (cookie_id TEXT PRIMARY KEY, account_id TEXT NOT NULL);
         CREATE INDEX account_cookies_by_account ON account_cookies (account_id);",
    )
    .unwrap();
    let tx = db.transaction().unwrap();
    {
        let mut account = tx
            .prepare("INSERT OR IGNORE INTO accounts VALUES (?1, NULL, ?2, ?3, ?4, 'office_worker', 'retail', 'food|onsen', ?5, ?6, 0, 0)")
            .unwrap();
        let mut cookie = tx
            .prepare("INSERT INTO account_cookies VALUES (?1, ?2)")
            .unwrap();
        for (id, c, birth, gender, zip, research, ads) in rows() {
            account
                .execute(rusqlite::params![id, birth, gender, zip, research, ads])
                .unwrap();
            cookie.execute(rusqlite::params![c, id]).unwrap();
        }
    }
    tx.commit().unwrap();
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("accounts.csv");
    let sqlite = dir.path().join("accounts.db");
    write_csv(&csv);
    write_sqlite(&sqlite);
    let p = common::pseudonymizer();

    let mut group = c.benchmark_group("accounts_load_1M");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(u64::from(ACCOUNTS)));
    for (name, spec) in [
        ("csv", format!("csv:{}", csv.display())),
        ("sqlite", format!("sqlite:{}", sqlite.display())),
    ] {
        let source = AccountSource::parse(&spec, dir.path()).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                let store = AccountStore::load(&source, &p).unwrap();
                assert_eq!(store.stats().accounts, u64::from(ACCOUNTS));
                store
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
