//! Renders everything into the output directory.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use crate::accounts;
use crate::catalog::BROWSERS;
use crate::logs::{self, Event};
use crate::rng::Rng;
use crate::time::{self, DAY, START};
use crate::truth::{self, Truth};

/// Rejection reasons of the malformed lines; each file gets one of each.
pub const REJECT_KINDS: [&str; 6] = [
    "truncated",
    "bad_time",
    "bad_status",
    "bad_request",
    "blank_line",
    "too_long",
];

pub const LOG_FILES: [&str; 2] = ["access-2026-11-01.log", "access-2026-11-02.log"];

#[derive(Debug)]
pub struct Summary {
    pub files: Vec<(String, u64)>,
    pub truth: Truth,
    pub accounts: usize,
    pub cookie_links: usize,
    pub lines_per_file: [usize; 2],
}

fn malformed(kind: &str, rng: &mut Rng, t: i64) -> String {
    let net = *rng.pick(&["192.0.2", "198.51.100", "203.0.113"]);
    let ip = format!("{net}.{}", rng.range(1, 254));
    let ts = time::apache_jst(t);
    let ua = BROWSERS[0].0;
    match kind {
        "truncated" => format!("{ip} - - [{ts}]"),
        "bad_time" => format!(
            "{ip} - - [32/Nov/2026:25:61:00 +0900] \"GET / HTTP/1.1\" 200 5120 \"-\" \"{ua}\" \"-\""
        ),
        "bad_status" => {
            format!("{ip} - - [{ts}] \"GET /en/osaka/food HTTP/1.1\" abc 5120 \"-\" \"{ua}\" \"-\"")
        }
        "bad_request" => format!("{ip} - - [{ts}] \"GET /en/tokyo/hotels HTTP/1.1"),
        "blank_line" => String::new(),
        "too_long" => {
            let long = "abcdefghijklmnopqrstuvwxyz0123456789-".repeat(1_900);
            format!(
                "{ip} - - [{ts}] \"GET /en/tokyo/hotels/{long} HTTP/1.1\" 414 - \"-\" \"{ua}\" \"-\""
            )
        }
        _ => unreachable!("unknown kind {kind}"),
    }
}

/// The lines of one file: its events plus one malformed line of each kind at random
/// interior positions (timestamps taken from the neighbouring line).
fn file_lines(events: &[&Event], rng: &mut Rng) -> Vec<String> {
    let mut positions = BTreeSet::new();
    while positions.len() < REJECT_KINDS.len() {
        positions.insert(rng.range(1, events.len() as u64 - 1) as usize);
    }
    let mut kinds = REJECT_KINDS.to_vec();
    let mut inserts: BTreeMap<usize, &str> = BTreeMap::new();
    for pos in positions {
        inserts.insert(pos, kinds.swap_remove(rng.index(kinds.len())));
    }
    let mut lines = Vec::with_capacity(events.len() + inserts.len());
    for (i, e) in events.iter().enumerate() {
        if let Some(kind) = inserts.get(&i) {
            lines.push(malformed(kind, rng, e.t));
        }
        lines.push(e.line());
    }
    lines
}

pub fn demo_secret(seed: u64) -> String {
    let mut hasher = blake3::Hasher::new_derive_key("logveil samplegen v1 demo key");
    hasher.update(&seed.to_le_bytes());
    hasher.finalize().to_hex().to_string()
}

fn demo_key(seed: u64) -> String {
    format!(
        "# DEMO KEY: published with logveil's sample data. Pseudonyms made with it protect nothing.\n\
         # Never use it for real logs: create your own with `logveil keygen PATH`.\n\
         demo = true\n\
         \n\
         [[key]]\n\
         id = \"demo-2026\"\n\
         not_before = \"2000-01-01\"\n\
         secret = \"{}\"\n",
        demo_secret(seed)
    )
}

fn readme(seed: u64, s: &Summary) -> String {
    let t = &s.truth;
    let mut published = String::new();
    for (date, suppressed) in &t.suppressed_by_date {
        let n = t
            .demographics_daily
            .iter()
            .filter(|r| &r.date == date)
            .count();
        let _ = write!(
            published,
            "{date}: {n} published / {suppressed} suppressed; "
        );
    }
    let published = published.trim_end_matches("; ");
    format!(
        "# logveil sample data\n\
\n\
Synthetic, deterministic test data for logveil, written by `crates/logveil-samplegen`\n\
(seed {seed}). Regenerate it byte for byte with:\n\
\n\
```sh\n\
cargo run -p logveil-samplegen --release -- --seed {seed} --out sample-logs\n\
```\n\
\n\
Nothing here is real. All client addresses are documentation ranges (192.0.2.0/24,\n\
198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32); all account e-mails are `@example.com`\n\
(query strings also use `example.org`); phone numbers and ZIP codes are random.\n\
\n\
| File | What it is |\n\
|---|---|\n\
| `access-2026-11-01.log`, `access-2026-11-02.log` | Apache `%h %l %u %t \"%r\" %>s %b \"%{{Referer}}i\" \"%{{User-Agent}}i\" \"%{{Cookie}}i\"` ({} and {} lines). Timestamps are written in +0900 but each file holds exactly one **UTC** day, so local dates run 09:00 to 08:59 the next day. The visitor cookie is `jt_uid`. About 8% robot lines, ~15% without a Cookie header, ~5% with query strings (some carrying e-mail addresses or phone numbers, as real logs do). Each file holds 6 malformed lines: one each of `truncated`, `bad_time`, `bad_status`, `bad_request`, `blank_line`, `too_long` (>70,000 bytes). |\n\
| `accounts.csv` | {} accounts, one row per (account, `jt_uid` cookie) link ({} rows); RFC 4180 quoting; `gender` is kept as entered (mixed case, abbreviations, sometimes empty or free text); empty `birth_date` means unknown. |\n\
| `accounts.db` | The same data as SQLite (tables `accounts`, `account_cookies`); empty CSV fields are NULL. |\n\
| `accounts.parquet` | The same rows and columns as `accounts.csv`, typed: `birth_date` is `Date32`, the four flags are `Boolean`, empty fields are NULL (zstd-compressed, one row group). |\n\
| `demo.key` | A **demo-only** pseudonymisation key derived from the seed. It is public, so pseudonyms made with it protect nothing: never use it for real logs (`logveil keygen PATH`). |\n\
| `truth.json` | The expected results, computed by the generator from what it generated (not by parsing the files): line counts, rejections, and the reports. |\n\
\n\
## Definitions used by `truth.json`\n\
\n\
- A *view* is a well-formed line with method GET, status 200-399 and a non-robot user agent\n  \
  (lower-cased UA containing `bot`, `crawler`, `spider`, or a tool prefix such as `curl/`,\n  \
  `wget/`, `python-requests/`, `go-http-client/`, `java/`; UA `-` is not a robot).\n\
- A *visitor* is the non-empty `jt_uid` cookie value, otherwise (client IP, full UA, UTC date).\n\
- `page` is the request target before the first `?`; `hour` and `date` are UTC.\n\
- `referrer_domain` is the lower-cased Referer host without port, `(none)` for `-`.\n\
- `demographics_daily` joins a cookie visitor to its account only if `consent_research = 1`\n  \
  and `deleted = 0`; age band on the event's UTC date; gender `female` (`f`, `woman`),\n  \
  `male` (`m`, `man`) or `other` (`x`, `non-binary`) in any case, `unknown` when empty, any\n  \
  other text, or not joined. Cells with fewer than {} visitors are withheld and only counted\n  \
  (`demographics_daily_suppressed`).\n\
- `area_daily`, `occupation_daily`, `industry_daily`, `interests_daily` join like\n  \
  `demographics_daily` and give, per UTC date, every cell (nothing withheld) of the value\n  \
  logveil should make of `zip_code` (prefecture), `occupation`, `industry` (JSIC division)\n  \
  or `interests` (one row per interest; `other` outside the list, `unknown` when empty or\n  \
  not joined): the generator's own labels for what it wrote (`catalog.rs`).\n\
- Rows are sorted by bucket, then by the other columns as byte strings.\n\
\n\
Deliberate edge cases: visitors active on both sides of UTC midnight (one whose age band\n\
changes on 2026-11-02), lines at 00:00:00 and 23:59:59 UTC, cookie headers with `jt_uid`\n\
not first, with an empty `jt_uid=` or without `jt_uid`, user agent `-`, robots on IPv6,\n\
a mixed-case Referer host with a port, CSV fields that need quoting.\n\
\n\
Totals for seed {seed}: {} lines, {} rejected, {} distinct visitors with views;\n\
demographic cells: {published}.\n",
        s.lines_per_file[0],
        s.lines_per_file[1],
        s.accounts,
        s.cookie_links,
        truth::K_MIN,
        t.lines_total,
        t.lines_total - t.lines_parsed(),
        t.distinct_visitors,
    )
}

fn write(out: &Path, name: &str, bytes: &[u8], files: &mut Vec<(String, u64)>) -> Result<()> {
    let path = out.join(name);
    fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    files.push((name.to_owned(), bytes.len() as u64));
    Ok(())
}

pub fn generate(seed: u64, out: &Path) -> Result<Summary> {
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut used_cookies = BTreeSet::new();
    let accounts = accounts::generate(seed, &mut used_cookies);
    let events = logs::generate(seed, &accounts, &mut used_cookies);

    let mut rng = Rng::new(seed, "malformed");
    let mut files = Vec::new();
    let mut lines_per_file = [0; 2];
    for (day, name) in LOG_FILES.iter().enumerate() {
        let lo = START + DAY * day as i64;
        let day_events: Vec<&Event> = events
            .iter()
            .filter(|e| (lo..lo + DAY).contains(&e.t))
            .collect();
        let lines = file_lines(&day_events, &mut rng);
        lines_per_file[day] = lines.len();
        let mut text = lines.join("\n");
        text.push('\n');
        write(out, name, text.as_bytes(), &mut files)?;
    }
    let rejected: BTreeMap<&'static str, u64> = REJECT_KINDS
        .iter()
        .map(|k| (*k, LOG_FILES.len() as u64))
        .collect();

    write(
        out,
        "accounts.csv",
        accounts::to_csv(&accounts).as_bytes(),
        &mut files,
    )?;
    write(
        out,
        "accounts.parquet",
        &accounts::to_parquet(&accounts)?,
        &mut files,
    )?;
    accounts::write_db(&out.join("accounts.db"), &accounts)?;
    let db_len = fs::metadata(out.join("accounts.db"))?.len();
    files.push(("accounts.db".to_owned(), db_len));
    write(out, "demo.key", demo_key(seed).as_bytes(), &mut files)?;

    let truth = truth::compute(seed, &events, &rejected, &accounts);
    write(out, "truth.json", truth.to_json().as_bytes(), &mut files)?;
    let mut summary = Summary {
        files,
        truth,
        accounts: accounts.len(),
        cookie_links: accounts.iter().map(|a| a.cookies.len()).sum(),
        lines_per_file,
    };
    let text = readme(seed, &summary);
    write(out, "README.md", text.as_bytes(), &mut summary.files)?;
    Ok(summary)
}
