//! End-to-end checks of the generated directory: determinism, safety of the data, and
//! `truth.json` recomputed independently by re-parsing the files it was derived from.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::net::IpAddr;
use std::path::Path;

use rusqlite::Connection;
use serde_json::{Value, json};

use crate::catalog::is_bot;
use crate::output::{self, LOG_FILES};
use crate::time::{DAY, JST, START, date_string, days_from_civil, hour_string, utc_day};
use crate::truth::age_band;

fn generate(seed: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    output::generate(seed, dir.path()).expect("generate");
    dir
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).expect("read"),
            )
        })
        .collect()
}

#[test]
fn same_seed_gives_identical_bytes() {
    let (a, b, c) = (generate(42), generate(42), generate(7));
    let (fa, fb, fc) = (files(a.path()), files(b.path()), files(c.path()));
    assert_eq!(fa.len(), 8, "{:?}", fa.keys().collect::<Vec<_>>());
    for (name, bytes) in &fa {
        assert!(fb[name] == *bytes, "{name} differs between two runs");
    }
    for name in [LOG_FILES[0], "accounts.csv", "demo.key", "truth.json"] {
        assert!(fc[name] != fa[name], "{name} does not depend on the seed");
    }
}

/// A line of our own format, split independently of the generator's knowledge.
#[derive(Debug)]
struct Line<'a> {
    ip: &'a str,
    t: i64,
    method: &'a str,
    target: &'a str,
    status: u16,
    referer: &'a str,
    ua: &'a str,
    cookie: &'a str,
}

fn parse_time(ts: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (local, offset) = ts.split_once(' ')?;
    if offset != "+0900" {
        return None;
    }
    let fields: Vec<&str> = local.split(['/', ':']).collect();
    let [day, mon, year, hour, minute, second] = fields[..] else {
        return None;
    };
    let month = MONTHS.iter().position(|x| *x == mon)? as u32 + 1;
    let (day, year): (u32, i64) = (day.parse().ok()?, year.parse().ok()?);
    let (hour, minute, second): (i64, i64, i64) = (
        hour.parse().ok()?,
        minute.parse().ok()?,
        second.parse().ok()?,
    );
    let days = days_from_civil(year, month, day);
    if crate::time::civil_from_days(days) != (year, month, day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    Some(days * DAY + hour * 3600 + minute * 60 + second - JST)
}

fn parse(line: &str) -> Result<Line<'_>, &'static str> {
    if line.is_empty() {
        return Err("blank_line");
    }
    if line.len() > 65_536 {
        return Err("too_long");
    }
    let parts: Vec<&str> = line.split('"').collect();
    let head = parts[0];
    let ip = head.split(' ').next().ok_or("truncated")?;
    let ts = head
        .split_once('[')
        .and_then(|(_, r)| r.split_once(']'))
        .ok_or("truncated")?
        .0;
    match parts.len() {
        1 => return Err("truncated"),
        2 => return Err("bad_request"),
        9 => {}
        _ => return Err("other"),
    }
    let t = parse_time(ts).ok_or("bad_time")?;
    let req: Vec<&str> = parts[1].split(' ').collect();
    let [method, target, _proto] = req[..] else {
        return Err("bad_request");
    };
    let status = parts[2]
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("bad_status")?;
    Ok(Line {
        ip,
        t,
        method,
        target,
        status,
        referer: parts[3],
        ua: parts[5],
        cookie: parts[7],
    })
}

fn referrer_domain(referer: &str) -> String {
    if referer == "-" {
        return "(none)".to_owned();
    }
    let rest = referer.split_once("://").expect("absolute referer").1;
    let host = rest.split('/').next().expect("host");
    host.split(':').next().expect("host").to_ascii_lowercase()
}

fn jt_uid(cookie: &str) -> Option<&str> {
    cookie
        .split("; ")
        .find_map(|c| c.strip_prefix("jt_uid="))
        .filter(|v| !v.is_empty())
}

fn visitor(l: &Line<'_>) -> String {
    match jt_uid(l.cookie) {
        Some(uid) => format!("c {uid}"),
        None => format!("a {} {} {}", l.ip, l.ua, utc_day(l.t)),
    }
}

type Cells = BTreeMap<Vec<String>, (u64, BTreeSet<String>)>;

fn add(cells: &mut Cells, key: Vec<String>, v: &str) {
    let cell = cells.entry(key).or_default();
    cell.0 += 1;
    cell.1.insert(v.to_owned());
}

fn to_rows(cells: &Cells, names: &[&str], k_min: usize) -> (Vec<Value>, u64) {
    let mut rows = Vec::new();
    let mut suppressed = 0;
    for (key, (views, visitors)) in cells {
        if visitors.len() < k_min {
            suppressed += 1;
            continue;
        }
        let mut row = serde_json::Map::new();
        for (name, value) in names.iter().zip(key) {
            row.insert((*name).to_owned(), json!(value));
        }
        row.insert("views".to_owned(), json!(views));
        row.insert("visitors".to_owned(), json!(visitors.len()));
        rows.push(Value::Object(row));
    }
    (rows, suppressed)
}

/// The `gender` dimension's value for a stored gender, as the README defines it.
fn gender_label(stored: &str) -> &'static str {
    match stored.trim().to_lowercase().as_str() {
        "f" | "female" | "woman" => "female",
        "m" | "male" | "man" => "male",
        "other" | "x" | "non-binary" => "other",
        _ => "unknown",
    }
}

/// Research-joinable cookies from accounts.db: cookie -> (birth date, gender).
fn joinable(db: &Path) -> HashMap<String, (Option<String>, Option<String>)> {
    let conn = Connection::open(db).expect("open db");
    let mut stmt = conn
        .prepare(
            "SELECT c.cookie_id, a.birth_date, a.gender FROM account_cookies c \
             JOIN accounts a USING (account_id) WHERE a.consent_research = 1 AND a.deleted = 0",
        )
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

#[test]
fn truth_matches_an_independent_reading_of_the_files() {
    let dir = generate(42);
    let truth: Value =
        serde_json::from_slice(&fs::read(dir.path().join("truth.json")).unwrap()).unwrap();
    let join = joinable(&dir.path().join("accounts.db"));

    let mut total = 0u64;
    let mut rejected: BTreeMap<String, u64> = BTreeMap::new();
    let (mut hourly, mut daily, mut referrers, mut demo) =
        (Cells::new(), Cells::new(), Cells::new(), Cells::new());
    for (day, name) in LOG_FILES.iter().enumerate() {
        let text = fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(text.ends_with('\n') && !text.ends_with("\n\n"));
        let mut last = i64::MIN;
        for raw in text.split_terminator('\n') {
            total += 1;
            let l = match parse(raw) {
                Ok(l) => l,
                Err(kind) => {
                    *rejected.entry(kind.to_owned()).or_default() += 1;
                    continue;
                }
            };
            assert!(l.t >= last, "time goes backwards in {name}");
            last = l.t;
            assert_eq!(utc_day(l.t), utc_day(START) + day as i64, "{raw}");
            let is_view = l.method == "GET" && (200..=399).contains(&l.status) && !is_bot(l.ua);
            if !is_view {
                continue;
            }
            let v = visitor(&l);
            let date = date_string(utc_day(l.t));
            let page = l.target.split('?').next().unwrap().to_owned();
            add(&mut hourly, vec![hour_string(l.t), page], &v);
            add(&mut daily, vec![date.clone()], &v);
            add(
                &mut referrers,
                vec![date.clone(), referrer_domain(l.referer)],
                &v,
            );
            let (band, gender) = match jt_uid(l.cookie).and_then(|c| join.get(c)) {
                Some((birth, gender)) => (
                    birth.as_deref().map_or("unknown".to_owned(), |b| {
                        let p: Vec<i64> = b.split('-').map(|x| x.parse().unwrap()).collect();
                        let on = crate::time::civil_from_days(utc_day(l.t));
                        age_band((p[0], p[1] as u32, p[2] as u32), on)
                    }),
                    gender_label(gender.as_deref().unwrap_or_default()).to_owned(),
                ),
                None => ("unknown".to_owned(), "unknown".to_owned()),
            };
            add(&mut demo, vec![date, band, gender], &v);
        }
    }
    assert_eq!(truth["lines_total"], json!(total));
    assert_eq!(truth["lines_rejected"], json!(rejected));
    assert!(rejected.values().all(|n| *n == 2) && rejected.len() == 6);
    assert_eq!(truth["lines_parsed"], json!(total - 12));
    let r = &truth["reports"];
    assert_eq!(
        r["page_views_hourly"],
        json!(to_rows(&hourly, &["hour", "page"], 0).0)
    );
    assert_eq!(r["visitors_daily"], json!(to_rows(&daily, &["date"], 0).0));
    assert_eq!(
        r["referrers_daily"],
        json!(to_rows(&referrers, &["date", "referrer_domain"], 0).0)
    );
    let (rows, suppressed) = to_rows(&demo, &["date", "age_band", "gender"], 10);
    assert_eq!(r["demographics_daily"], json!(rows));
    assert_eq!(r["demographics_daily_suppressed"], json!(suppressed));
}

#[test]
fn data_has_the_intended_shape() {
    let dir = generate(42);
    let join = joinable(&dir.path().join("accounts.db"));
    let conn = Connection::open(dir.path().join("accounts.db")).unwrap();
    let linked: BTreeSet<String> = conn
        .prepare("SELECT cookie_id FROM account_cookies")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();

    let (mut lines, mut bots, mut no_cookie, mut query, mut v6) = (0, 0, 0, 0, 0);
    let mut uids = BTreeSet::new();
    let mut pages = BTreeSet::new();
    for name in LOG_FILES {
        let text = fs::read_to_string(dir.path().join(name)).unwrap();
        for raw in text.lines() {
            if let Some(ip) = raw.split(' ').next().filter(|s| !s.is_empty()) {
                let addr: IpAddr = ip.parse().expect("an IP address");
                assert_eq!(addr.to_string(), ip, "not canonical");
                let doc = match addr {
                    IpAddr::V4(a) => {
                        let o = a.octets();
                        matches!(
                            (o[0], o[1], o[2]),
                            (192, 0, 2) | (198, 51, 100) | (203, 0, 113)
                        )
                    }
                    IpAddr::V6(a) => a.segments()[..2] == [0x2001, 0x0db8],
                };
                assert!(doc, "{ip} is not in a documentation range");
            }
            assert!(!raw.contains('@'), "raw @ in {raw}");
            let Ok(l) = parse(raw) else { continue };
            lines += 1;
            bots += u32::from(is_bot(l.ua));
            no_cookie += u32::from(l.cookie == "-");
            query += u32::from(l.target.contains('?'));
            v6 += u32::from(l.ip.contains(':'));
            pages.insert(l.target.split('?').next().unwrap().to_owned());
            if !is_bot(l.ua) {
                uids.extend(jt_uid(l.cookie).map(str::to_owned));
            }
        }
    }
    let pct = |n: u32| f64::from(n) * 100.0 / f64::from(lines);
    assert!((18_000..22_000).contains(&lines), "{lines}");
    assert!((7.0..9.0).contains(&pct(bots)), "bots {}", pct(bots));
    assert!((13.0..17.0).contains(&pct(no_cookie)), "{}", pct(no_cookie));
    assert!((3.5..6.5).contains(&pct(query)), "{}", pct(query));
    assert!((7.0..14.0).contains(&pct(v6)), "{}", pct(v6));
    assert!((38..=50).contains(&pages.len()), "{}", pages.len());
    let share = uids.intersection(&linked).count() as f64 / uids.len() as f64;
    assert!((0.55..0.65).contains(&share), "linked share {share}");

    // Every age band is represented among the accounts.
    let bands: BTreeSet<String> = join
        .values()
        .filter_map(|(b, _)| b.as_deref())
        .map(|b| {
            let p: Vec<i64> = b.split('-').map(|x| x.parse().unwrap()).collect();
            age_band((p[0], p[1] as u32, p[2] as u32), (2026, 11, 1))
        })
        .collect();
    assert_eq!(bands.len(), 9, "{bands:?}");

    // Demographics: enough published and some suppressed cells per day.
    let truth: Value =
        serde_json::from_slice(&fs::read(dir.path().join("truth.json")).unwrap()).unwrap();
    for date in ["2026-11-01", "2026-11-02"] {
        let n = truth["reports"]["demographics_daily"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["date"] == date)
            .count();
        assert!(n >= 8, "{date}: {n} published cells");
    }
    assert!(truth["reports"]["demographics_daily_suppressed"].as_u64() >= Some(4));

    // Lines close to UTC midnight on both sides.
    let day1 = fs::read_to_string(dir.path().join(LOG_FILES[0])).unwrap();
    let day2 = fs::read_to_string(dir.path().join(LOG_FILES[1])).unwrap();
    assert!(day1.contains("[01/Nov/2026:09:00:00 +0900]"));
    assert!(day1.contains("[02/Nov/2026:08:59:5"));
    assert!(day2.contains("[02/Nov/2026:09:00:0"));
    assert!(day2.contains("[03/Nov/2026:08:59:59 +0900]"));
}

fn csv_records(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (_, '"') => quoted = !quoted,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (_, c) => field.push(c),
        }
    }
    records
}

#[test]
fn csv_and_sqlite_hold_the_same_accounts() {
    let dir = generate(42);
    let text = fs::read_to_string(dir.path().join("accounts.csv")).unwrap();
    let records = csv_records(&text);
    assert_eq!(records[0].len(), 13);
    let conn = Connection::open(dir.path().join("accounts.db")).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT a.account_id, c.cookie_id, email, ifnull(birth_date, ''), ifnull(gender, ''), \
             zip_code, ifnull(occupation, ''), ifnull(industry, ''), ifnull(interests, ''), \
             consent_research, consent_advertising, newsletter_opt_out, deleted \
             FROM account_cookies c JOIN accounts a USING (account_id) ORDER BY c.rowid",
        )
        .unwrap();
    let db: Vec<Vec<String>> = stmt
        .query_map([], |r| {
            (0..13)
                .map(|i| {
                    r.get::<_, String>(i)
                        .or_else(|_| r.get::<_, i64>(i).map(|n| n.to_string()))
                })
                .collect()
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(records[1..], db[..]);
    let accounts: BTreeSet<&str> = records[1..].iter().map(|r| r[0].as_str()).collect();
    assert!((550..=650).contains(&accounts.len()));
    assert!(records[1..].iter().all(|r| r[2].ends_with("@example.com")));
    assert!(text.contains("\"Artist (\"\"freelance\"\")\""));
}

#[test]
fn csv_and_parquet_hold_the_same_accounts() {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Date32Type;
    use arrow_array::{Array, RecordBatch};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let dir = generate(42);
    let records = csv_records(&fs::read_to_string(dir.path().join("accounts.csv")).unwrap());
    let file = fs::File::open(dir.path().join("accounts.parquet")).unwrap();
    let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let names: Vec<String> = batches[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, records[0]);
    let mut rows = Vec::new();
    for batch in &batches {
        for i in 0..batch.num_rows() {
            let row: Vec<String> = batch
                .columns()
                .iter()
                .map(|col| {
                    if col.is_null(i) {
                        return String::new();
                    }
                    match col.data_type() {
                        arrow_schema::DataType::Utf8 => col.as_string::<i32>().value(i).to_owned(),
                        arrow_schema::DataType::Date32 => {
                            date_string(i64::from(col.as_primitive::<Date32Type>().value(i)))
                        }
                        arrow_schema::DataType::Boolean => {
                            u8::from(col.as_boolean().value(i)).to_string()
                        }
                        other => panic!("unexpected type {other}"),
                    }
                })
                .collect();
            rows.push(row);
        }
    }
    assert_eq!(records[1..], rows[..]);
}
