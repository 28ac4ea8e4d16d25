//! The four account sources agree: CSV, `SQLite`, Parquet and `PostgreSQL` holding the same
//! accounts give the same join outcome for every cookie and the same load counts. Parquet's
//! accepted types, batching and error messages; `PostgreSQL`'s read-only role and password
//! redaction against a real server (a throwaway cluster, see `support/postgres_cluster.rs`).

#[path = "support/postgres_cluster.rs"]
mod postgres_cluster;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, Int8Array, Int64Array, LargeStringArray, RecordBatch,
    StringArray, UInt16Array,
};
use arrow_schema::{DataType, Field, Schema};
use logveil_accounts::{
    AccountSource, AccountStore, AccountsError, Attributes, JoinOutcome, LoadStats,
};
use logveil_privacy::{ConsentColumn, KeyRing, Pseudonymizer, Purpose};
use parquet::arrow::ArrowWriter;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn sample(name: &str) -> PathBuf {
    repo().join("sample-logs").join(name)
}

fn pseudonymizer() -> Pseudonymizer {
    Pseudonymizer::new(KeyRing::load(&sample("demo.key")).unwrap().newest())
}

/// The rows of `accounts.csv`, header first.
fn csv_records() -> Vec<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(sample("accounts.csv"))
        .unwrap();
    reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

/// The purposes of `pipelines/policy.toml` that join accounts.
fn purposes() -> [(&'static str, Purpose); 3] {
    let purpose = |consent, contact| Purpose {
        description: String::new(),
        join_accounts: true,
        consent: Some(consent),
        contact,
    };
    [
        ("research", purpose(ConsentColumn::ConsentResearch, false)),
        (
            "advertising",
            purpose(ConsentColumn::ConsentAdvertising, false),
        ),
        ("contact", purpose(ConsentColumn::ConsentAdvertising, true)),
    ]
}

/// For every cookie of `accounts.csv` (and one unknown cookie) and every purpose: the
/// outcome and, when joined, everything the pipeline keeps of the account.
fn outcomes(store: &AccountStore, p: &Pseudonymizer) -> Vec<String> {
    let mut cookies: Vec<String> = csv_records()[1..].iter().map(|r| r[1].clone()).collect();
    cookies.push("u-not-an-account".to_owned());
    let mut out = Vec::new();
    for cookie in &cookies {
        let visitor = p.visitor_from_cookie(cookie.as_bytes());
        for (name, purpose) in &purposes() {
            let outcome = store.join(&visitor, purpose);
            let kept = match outcome {
                JoinOutcome::Joined(a) => format!(
                    "{} {:?} {} {} {} {} {:?} {} {} {} {}",
                    a.key.to_hex(),
                    a.birth_day,
                    a.gender,
                    a.area,
                    a.occupation,
                    a.industry,
                    a.interests.iter().collect::<Vec<_>>(),
                    a.consent_research,
                    a.consent_advertising,
                    a.newsletter_opt_out,
                    a.deleted
                ),
                _ => String::new(),
            };
            out.push(format!("{cookie} {name}: {} {kept}", outcome.name()));
        }
    }
    out
}

fn load(source: &AccountSource) -> Result<AccountStore, AccountsError> {
    AccountStore::load(source, &pseudonymizer())
}

/// Loads `source` and asserts that it agrees with `accounts.csv` in every respect.
fn assert_same_as_csv(label: &str, source: &AccountSource) {
    let p = pseudonymizer();
    let csv = AccountStore::load(&AccountSource::Csv(sample("accounts.csv")), &p).unwrap();
    let other = AccountStore::load(source, &p).unwrap_or_else(|e| panic!("{label}: {e}"));
    assert_eq!(other.stats(), csv.stats(), "{label}: load counts");
    let (want, got) = (outcomes(&csv, &p), outcomes(&other, &p));
    assert_eq!(want.len(), got.len());
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(w, g, "{label}: join outcome differs");
    }
}

#[test]
fn same_results_from_csv_sqlite_parquet_and_postgres() {
    let csv = load(&AccountSource::Csv(sample("accounts.csv"))).unwrap();
    assert_eq!(
        csv.stats(),
        &LoadStats {
            accounts: 600,
            cookie_links: 879,
            ambiguous_cookies: 0,
            invalid_birth_dates: 0,
            // "Prefer not to say"; "Consultant, independent" and "Artist (\"freelance\")";
            // "Tourism"; "karaoke"; `209-…`, `000-…`, `12-…`, `SW1A 1AA`, `90210`: the
            // sample's values outside the vocabularies, counted alike from every source.
            unrecognised: [
                ("gender", 9),
                ("occupation", 39),
                ("industry", 46),
                ("interests", 196),
                ("zip_code", 47)
            ]
            .into(),
        }
    );
    let names: Vec<String> = outcomes(&csv, &pseudonymizer())
        .iter()
        .map(|o| o.split(' ').nth(2).unwrap().to_owned())
        .collect();
    for outcome in JoinOutcome::NAMES {
        assert!(
            names.iter().any(|n| n == outcome),
            "the sample exercises `{outcome}`"
        );
    }
    assert_same_as_csv("sqlite", &AccountSource::Sqlite(sample("accounts.db")));
    assert_same_as_csv(
        "parquet",
        &AccountSource::Parquet(sample("accounts.parquet")),
    );

    let Some(cluster) =
        postgres_cluster::start_or_skip("same_results_from_csv_sqlite_parquet_and_postgres")
    else {
        return;
    };
    for database in postgres_cluster::DATABASES {
        let url = cluster.url(
            postgres_cluster::READER,
            Some(postgres_cluster::READER_PASSWORD),
            database,
        );
        let source = AccountSource::parse(&url, Path::new("/")).unwrap();
        assert_same_as_csv(&format!("postgres {database}"), &source);
    }

    // The reader role sees the view's columns and nothing else.
    let denied = cluster.psql(
        postgres_cluster::READER,
        postgres_cluster::READER_PASSWORD,
        "crm_typed",
        "SELECT email FROM accounts",
    );
    assert!(
        !denied.status.success()
            && String::from_utf8_lossy(&denied.stderr).contains("permission denied"),
        "{denied:?}"
    );

    // A wrong password: the server's refusal is reported, the password is not.
    let wrong = "Wr0ng-Pa55word-31337";
    let url = cluster.url(postgres_cluster::READER, Some(wrong), "crm_typed");
    let e = load(&AccountSource::parse(&url, Path::new("/")).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("password authentication failed")
            && e.contains("logveil_reader:***@")
            && !e.contains(wrong),
        "{e}"
    );

    // A missing view names itself; a missing database too.
    for (database, expect) in [
        ("postgres", "logveil_accounts"),
        ("no_such_db", "no_such_db"),
    ] {
        let url = cluster.url(
            postgres_cluster::READER,
            Some(postgres_cluster::READER_PASSWORD),
            database,
        );
        let e = load(&AccountSource::parse(&url, Path::new("/")).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(expect) && !e.contains(postgres_cluster::READER_PASSWORD),
            "{e}"
        );
    }
}

/// Writes `columns` as a Parquet file in `dir`.
fn write_parquet(dir: &Path, name: &str, columns: Vec<(&str, ArrayRef)>) -> PathBuf {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap();
    let path = dir.join(name);
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    path
}

fn column(records: &[Vec<String>], name: &str) -> Vec<String> {
    let i = records[0].iter().position(|h| h == name).unwrap();
    records[1..].iter().map(|r| r[i].clone()).collect()
}

#[test]
fn parquet_accepts_other_string_date_and_flag_types() {
    let dir = tempfile::tempdir().unwrap();
    let records = csv_records();
    let text = |name: &str| -> ArrayRef {
        Arc::new(StringArray::from(
            column(&records, name)
                .into_iter()
                .map(|v| Some(v).filter(|v| !v.is_empty()))
                .collect::<Vec<_>>(),
        ))
    };
    let large = |name: &str| -> ArrayRef {
        Arc::new(LargeStringArray::from(
            column(&records, name)
                .into_iter()
                .map(Some)
                .collect::<Vec<_>>(),
        ))
    };
    let ints = |name: &str| column(&records, name).into_iter().map(|v| v == "1");
    let path = write_parquet(
        dir.path(),
        "mixed.parquet",
        vec![
            // Columns in another order, strings as LargeUtf8, birth dates as text (empty
            // string for unknown), flags as four different types, extra columns around.
            (
                "deleted",
                Arc::new(BooleanArray::from(ints("deleted").collect::<Vec<_>>())),
            ),
            ("email", text("email")),
            ("gender", large("gender")),
            ("birth_date", large("birth_date")),
            ("account_id", large("account_id")),
            (
                "consent_research",
                Arc::new(Int8Array::from(
                    ints("consent_research").map(i8::from).collect::<Vec<_>>(),
                )),
            ),
            (
                "consent_advertising",
                Arc::new(Int64Array::from(
                    ints("consent_advertising")
                        .map(i64::from)
                        .collect::<Vec<_>>(),
                )),
            ),
            (
                "newsletter_opt_out",
                Arc::new(UInt16Array::from(
                    ints("newsletter_opt_out")
                        .map(u16::from)
                        .collect::<Vec<_>>(),
                )),
            ),
            ("cookie_id", text("cookie_id")),
            ("zip_code", text("zip_code")),
            ("occupation", large("occupation")),
            ("industry", text("industry")),
            ("interests", large("interests")),
        ],
    );
    assert_same_as_csv("parquet with other types", &AccountSource::Parquet(path));
}

#[test]
fn parquet_reads_in_batches_and_numbers_rows_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let n = 20_000usize;
    let ids: Vec<String> = (0..n).map(|i| format!("A{i:06}")).collect();
    let cookies: Vec<String> = (0..n).map(|i| format!("u-{i:016x}")).collect();
    let flags = |bad_at: Option<usize>| -> ArrayRef {
        Arc::new(Int8Array::from(
            (0..n)
                .map(|i| if Some(i) == bad_at { 2 } else { 1 })
                .collect::<Vec<i8>>(),
        ))
    };
    let file = |name: &str, bad_at| {
        write_parquet(
            dir.path(),
            name,
            vec![
                (
                    "account_id",
                    Arc::new(StringArray::from(ids.clone())) as ArrayRef,
                ),
                ("cookie_id", Arc::new(StringArray::from(cookies.clone()))),
                (
                    "birth_date",
                    Arc::new(StringArray::from(vec!["1990-01-01"; n])),
                ),
                ("gender", Arc::new(StringArray::from(vec!["F"; n]))),
                ("consent_research", flags(None)),
                ("consent_advertising", flags(None)),
                ("newsletter_opt_out", flags(bad_at)),
                ("deleted", Arc::new(BooleanArray::from(vec![false; n]))),
            ],
        )
    };
    assert!(n > 2 * logveil_accounts::parquet::BATCH_ROWS);
    let store = load(&AccountSource::Parquet(file("ok.parquet", None))).unwrap();
    assert_eq!(
        (store.stats().accounts, store.stats().cookie_links),
        (n as u64, n as u64)
    );
    // No zip_code, occupation, industry or interests columns (an older export): unknown.
    let research = &purposes()[0].1;
    let JoinOutcome::Joined(a) = store.join(
        &pseudonymizer().visitor_from_cookie(cookies[n - 1].as_bytes()),
        research,
    ) else {
        panic!("the last cookie joins")
    };
    assert_eq!(
        (a.area, a.occupation, a.industry, a.interests.is_empty()),
        ("unknown", "unknown", "unknown", true)
    );

    let e = load(&AccountSource::Parquet(file("bad.parquet", Some(17_000))))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bad.parquet: row 17001: column `newsletter_opt_out`: expected 0 or 1"),
        "{e}"
    );
}

#[test]
fn parquet_errors_name_file_row_and_column_never_values() {
    let dir = tempfile::tempdir().unwrap();
    let id: ArrayRef = Arc::new(StringArray::from(vec!["A-secret-1", "A-secret-2"]));
    let cookie: ArrayRef = Arc::new(StringArray::from(vec!["u-secret-cookie", "u-other"]));
    let text2: ArrayRef = Arc::new(StringArray::from(vec![Some("1980-02-02"), None]));
    let flag: ArrayRef = Arc::new(BooleanArray::from(vec![true, false]));
    let null_flag: ArrayRef = Arc::new(BooleanArray::from(vec![Some(true), None]));
    let base = |deleted: ArrayRef, birth: ArrayRef| {
        vec![
            ("account_id", id.clone()),
            ("cookie_id", cookie.clone()),
            ("birth_date", birth),
            ("gender", text2.clone()),
            ("consent_research", flag.clone()),
            ("consent_advertising", flag.clone()),
            ("newsletter_opt_out", flag.clone()),
            ("deleted", deleted),
        ]
    };
    let mut errors = Vec::new();
    let mut error = |name: &str, columns| {
        let path = write_parquet(dir.path(), name, columns);
        let e = load(&AccountSource::Parquet(path)).unwrap_err().to_string();
        errors.push(e.clone());
        e
    };

    let e = error("null-flag.parquet", base(null_flag, text2.clone()));
    assert!(
        e.ends_with("null-flag.parquet: row 2: column `deleted`: expected 0 or 1"),
        "{e}"
    );

    let floats: ArrayRef = Arc::new(arrow_array::Float64Array::from(vec![1.0, 2.0]));
    let e = error("float-date.parquet", base(flag.clone(), floats));
    assert!(
        e.contains("float-date.parquet: column `birth_date`: type Float64 is not supported"),
        "{e}"
    );

    let mut missing = base(flag.clone(), text2.clone());
    missing.retain(|(n, _)| *n != "gender");
    let e = error("missing.parquet", missing);
    assert!(e.contains("missing column `gender`"), "{e}");

    // A birth date that is not a date is counted, like in the CSV.
    let bad_date: ArrayRef = Arc::new(StringArray::from(vec![Some("02/02/1980"), Some("")]));
    let path = write_parquet(dir.path(), "bad-date.parquet", base(flag.clone(), bad_date));
    let store = load(&AccountSource::Parquet(path)).unwrap();
    assert_eq!(store.stats().invalid_birth_dates, 1);

    let path = dir.path().join("not.parquet");
    std::fs::write(&path, "account_id,cookie_id\nA-secret-1,u-secret-cookie\n").unwrap();
    let e = load(&AccountSource::Parquet(path)).unwrap_err().to_string();
    assert!(e.contains("not a readable Parquet file"), "{e}");
    errors.push(e);

    for e in errors {
        assert!(
            !e.contains("secret") && !e.contains("1980"),
            "quotes a value: {e}"
        );
    }
}

#[test]
fn parquet_never_decodes_unused_columns() {
    // An e-mail column of a type the reader could not even turn into text: it is not in the
    // projection, so the file loads.
    let dir = tempfile::tempdir().unwrap();
    let list =
        arrow_array::ListArray::from_iter_primitive::<arrow_array::types::Int32Type, _, _>(vec![
            Some(vec![Some(1)]),
            None,
        ]);
    assert!(matches!(Array::data_type(&list), DataType::List(_)));
    let path = write_parquet(
        dir.path(),
        "extra.parquet",
        two_accounts_with(("email", Arc::new(list))),
    );
    let store = load(&AccountSource::Parquet(path)).unwrap();
    assert_eq!(
        store.stats(),
        &LoadStats {
            accounts: 2,
            cookie_links: 1,
            ..LoadStats::default()
        }
    );

    // A zip_code column the reader could not read either: decoded only when a report
    // needs `area`.
    let zip =
        arrow_array::ListArray::from_iter_primitive::<arrow_array::types::Int32Type, _, _>(vec![
            Some(vec![Some(1)]),
            None,
        ]);
    let path = write_parquet(
        dir.path(),
        "zip.parquet",
        two_accounts_with(("zip_code", Arc::new(zip))),
    );
    let source = AccountSource::Parquet(path);
    let without_area = Attributes {
        area: false,
        ..Attributes::ALL
    };
    let store = AccountStore::load_attributes(&source, &pseudonymizer(), without_area).unwrap();
    assert_eq!(store.stats().accounts, 2);
    let e = load(&source).unwrap_err().to_string();
    assert!(e.contains("column `zip_code`: type List"), "{e}");
}

/// Columns of two accounts (A1 with cookie c1, A2 without), with one extra column second.
fn two_accounts_with(extra: (&'static str, ArrayRef)) -> Vec<(&'static str, ArrayRef)> {
    vec![
        (
            "account_id",
            Arc::new(StringArray::from(vec!["A1", "A2"])) as ArrayRef,
        ),
        extra,
        (
            "cookie_id",
            Arc::new(StringArray::from(vec![Some("c1"), None])),
        ),
        (
            "birth_date",
            Arc::new(arrow_array::Date32Array::from(vec![Some(7000), None])),
        ),
        ("gender", Arc::new(StringArray::from(vec![Some("F"), None]))),
        (
            "consent_research",
            Arc::new(BooleanArray::from(vec![true, false])),
        ),
        (
            "consent_advertising",
            Arc::new(BooleanArray::from(vec![true, false])),
        ),
        (
            "newsletter_opt_out",
            Arc::new(BooleanArray::from(vec![true, false])),
        ),
        ("deleted", Arc::new(BooleanArray::from(vec![false, false]))),
    ]
}
