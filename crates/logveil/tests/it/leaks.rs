//! Issue #15: a leak corpus generated here (not hand-picked), run through `logveil run`
//! (dead letters, debug logs) and `logveil daemon` (debug logs, checkpoint), and every
//! byte either wrote scanned for each planted value in its case, percent and base64
//! variants. The sanitiser's keep list goes through the same runs and must pass unchanged.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::{
    EditedPipeline, batch_rows, bin, files_under, key_value_metadata, read_batches, repo,
};

/// Lines with planted values (the keep-list lines come on top).
const LINES: usize = 3000;

/// A report over the query parameters the policy keeps, so `utm_*` cells are scanned too.
const CAMPAIGNS: &str = r#"
[[report]]
name = "campaigns_daily"
audience = "internal"
purpose = "improve_services"
bucket = "day"
dimensions = ["utm_source", "utm_medium", "utm_campaign"]
metrics = ["views", "visitors"]
"#;

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chars(&mut self, n: usize, alphabet: &[u8]) -> String {
        (0..n).map(|_| char::from(*self.pick(alphabet))).collect()
    }
    fn alnum(&mut self, n: usize) -> String {
        self.chars(
            n,
            b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
        )
    }
    fn digits(&mut self, n: usize) -> String {
        self.chars(n, b"0123456789")
    }
    /// A 4-digit hex group without a leading zero (so its expanded form differs only in
    /// the zero groups).
    fn group(&mut self) -> String {
        format!("{:x}", 0x1000 + self.below(0xf000))
    }
}

/// The free-text fields of a line.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Field {
    Path,
    Query,
    Referrer,
    Agent,
}

const FIELDS: [Field; 4] = [Field::Path, Field::Query, Field::Referrer, Field::Agent];

/// One planted value: what it is, where it went, and the strings that must not appear.
struct Plant {
    kind: String,
    field: Field,
    needles: Vec<String>,
}

/// A client: its address (as logged, and the other strings that identify it) and cookie.
struct Client {
    ip: String,
    v6: bool,
    cookie: Option<String>,
}

fn client(rng: &mut Rng) -> Client {
    let v6 = rng.chance(40);
    let ip = if v6 {
        // Compressed, with a run of zero groups.
        format!(
            "2001:db8:{}:{}::{}:{}",
            rng.group(),
            rng.group(),
            rng.group(),
            rng.group()
        )
    } else {
        format!(
            "{}.{}",
            rng.pick(&["198.51.100", "203.0.113", "192.0.2", "100.64.17"]),
            10 + rng.below(245)
        )
    };
    let cookie = (!rng.chance(5)).then(|| {
        if rng.chance(50) {
            format!("u-{}", rng.chars(16, b"0123456789abcdef"))
        } else {
            format!("v{}", rng.alnum(15))
        }
    });
    Client { ip, v6, cookie }
}

/// Every byte not unreserved in a URL as `%XX`.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `s` with ASCII digits full-width.
fn full_width_digits(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '0'..='9' => char::from_u32(0xff10 + (c as u32 - '0' as u32)).unwrap(),
            '-' => '－',
            c => c,
        })
        .collect()
}

/// The IPv6 address `2001:db8:a:b::c:d` written out in full.
fn expand_v6(ip: &str) -> String {
    let (head, tail) = ip.split_once("::").unwrap();
    let head: Vec<&str> = head.split(':').collect();
    let tail: Vec<&str> = tail.split(':').collect();
    let zeros = vec!["0"; 8 - head.len() - tail.len()];
    head.iter()
        .chain(&zeros)
        .chain(&tail)
        .map(|g| format!("{g:0>4}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The forms of a client's own address to plant: (form name, text).
fn own_ip_forms(c: &Client) -> Vec<(&'static str, String)> {
    if c.v6 {
        vec![
            ("compressed", c.ip.clone()),
            ("expanded", expand_v6(&c.ip)),
            ("bracketed", format!("[{}]", c.ip)),
            ("percent", c.ip.replace(':', "%3A")),
            ("upper", c.ip.to_ascii_uppercase()),
        ]
    } else {
        vec![
            ("dotted", c.ip.clone()),
            ("dashed", c.ip.replace('.', "-")),
            ("underscored", c.ip.replace('.', "_")),
            ("percent", c.ip.replace('.', "%2E")),
            ("mapped", format!("::ffff:{}", c.ip)),
            ("bracketed", format!("[{}]", c.ip)),
        ]
    }
}

/// An e-mail address in one of the encodings of issue #15: (form, planted text, needles).
fn email(rng: &mut Rng) -> (&'static str, String, Vec<String>) {
    let local = format!("m{}", rng.alnum(9).to_ascii_lowercase());
    let host = format!("mx{}", rng.alnum(5).to_ascii_lowercase());
    let tld = *rng.pick(&["com", "org", "net", "co.jp"]);
    let domain = format!("{host}.{tld}");
    let plain = format!("{local}@{domain}");
    let (form, text) = match rng.below(9) {
        0 => ("plain", plain.clone()),
        1 => ("pct40", format!("{local}%40{domain}")),
        2 => ("pct2540", format!("{local}%2540{domain}")),
        3 => ("paren_at", format!("{local}(at){domain}")),
        4 => ("bracket_at", format!("{local}[at]{domain}")),
        5 => ("space_at_dot", format!("{local} at {host} dot {tld}")),
        6 => ("dash_at", format!("{local}--AT--{domain}")),
        7 => ("fullwidth_at", format!("{local}＠{domain}")),
        _ => ("upper_plain", plain.to_ascii_uppercase()),
    };
    let needles = vec![plain, text.clone(), local];
    (form, text, needles)
}

/// A phone number: (form, planted text, needles).
fn phone(rng: &mut Rng) -> (&'static str, String, Vec<String>) {
    let prefix = *rng.pick(&["90", "80", "70"]);
    let (a, b) = (rng.digits(4), rng.digits(4));
    let national = format!("0{prefix}{a}{b}");
    let (form, text) = match rng.below(6) {
        0 => ("dashed", format!("0{prefix}-{a}-{b}")),
        1 => ("e164_spaced", format!("+81 {prefix} {a} {b}")),
        2 => ("dotted", format!("0{prefix}.{a}.{b}")),
        3 => (
            "fullwidth",
            full_width_digits(&format!("0{prefix}-{a}-{b}")),
        ),
        4 => ("e164_plain", format!("+81{prefix}{a}{b}")),
        _ => ("bare", national.clone()),
    };
    let needles = vec![
        text.clone(),
        national,
        format!("81{prefix}{a}{b}"),
        format!("{a}-{b}"),
    ];
    (form, text, needles)
}

/// `text` made fit for a field: no quotes anywhere; no spaces in the request line.
fn fit(field: Field, text: &str, rng: &mut Rng) -> String {
    match field {
        Field::Path | Field::Query => {
            if rng.chance(50) {
                // Non-ASCII percent-encoded half the time.
                text.chars()
                    .map(|c| {
                        if c == ' ' {
                            "%20".to_owned()
                        } else if c.is_ascii() {
                            c.to_string()
                        } else {
                            percent(&c.to_string())
                        }
                    })
                    .collect()
            } else {
                text.replace(' ', "%20")
            }
        }
        Field::Referrer | Field::Agent => text.to_owned(),
    }
}

/// The parts of one line's free text, filled in by [`place`].
#[derive(Default)]
struct Parts {
    path: Vec<String>,
    query: Vec<String>,
    referrer: Option<String>,
    referrer_path: Vec<String>,
    agent: Vec<String>,
}

const SEGMENTS: &[&str] = &["u", "geo", "s", "reset", "m", "p", "profile", "share"];
const PARAMS: &[&str] = &[
    "q",
    "email",
    "ip",
    "session",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "ref",
    "tel",
];

/// Puts `text` into `field`; `host` says it may stand as the referrer's host.
/// Returns the text as written.
fn place(parts: &mut Parts, field: Field, text: &str, host: bool, rng: &mut Rng) -> String {
    let text = fit(field, text, rng);
    let written = text.clone();
    match field {
        Field::Path => parts.path.push(format!("{}/{text}", rng.pick(SEGMENTS))),
        Field::Query => parts.query.push(format!("{}={text}", rng.pick(PARAMS))),
        Field::Referrer => {
            if host && parts.referrer.is_none() && rng.chance(50) {
                parts.referrer = Some(text);
            } else {
                parts
                    .referrer_path
                    .push(format!("{}/{text}", rng.pick(SEGMENTS)));
            }
        }
        Field::Agent => parts.agent.push(text),
    }
    written
}

/// One line of the corpus (without the newline) and what it planted.
fn line(rng: &mut Rng, c: &Client, micros: &mut i64, malformed: bool) -> (String, Vec<Plant>) {
    let mut plants = Vec::new();
    let mut parts = Parts::default();

    // The line's own address, in one or two fields, in one of its forms.
    for _ in 0..=rng.below(2) {
        let forms = own_ip_forms(c);
        let (form, text) = rng.pick(&forms).clone();
        let field = *rng.pick(&FIELDS);
        let host_text = if c.v6 && field == Field::Referrer && !text.starts_with('[') {
            format!("[{text}]")
        } else {
            text.clone()
        };
        let written = place(&mut parts, field, &host_text, true, rng);
        let mut needles = vec![c.ip.clone(), text, written];
        if c.v6 {
            needles.push(expand_v6(&c.ip));
        } else {
            needles.extend([c.ip.replace('.', "-"), c.ip.replace('.', "_")]);
        }
        plants.push(Plant {
            kind: format!("own_ip/{form}"),
            field,
            needles,
        });
    }
    // The line's own cookie value, in the path, query, referrer (host or path) or agent.
    if let Some(cookie) = &c.cookie {
        let field = *rng.pick(&FIELDS);
        let text = if field == Field::Referrer && rng.chance(50) {
            format!("{cookie}.example.net")
        } else if rng.chance(20) {
            cookie.to_ascii_uppercase()
        } else {
            cookie.clone()
        };
        let written = place(&mut parts, field, &text, true, rng);
        let mut needles = vec![cookie.clone(), written];
        if let Some(hex) = cookie.strip_prefix("u-") {
            needles.push(hex.to_owned());
        }
        plants.push(Plant {
            kind: "own_cookie".to_owned(),
            field,
            needles,
        });
    }
    // Other addresses, e-mails, phones and tokens: two to five of them.
    for _ in 0..2 + rng.below(4) {
        let field = *rng.pick(&FIELDS);
        let (kind, text, mut needles, host) = match rng.below(4) {
            0 => {
                let other = client(rng);
                let text = if other.v6 {
                    if field == Field::Referrer {
                        format!("[{}]", other.ip)
                    } else {
                        other.ip.clone()
                    }
                } else {
                    other.ip.clone()
                };
                let kind = if other.v6 {
                    "other_ip/v6"
                } else {
                    "other_ip/v4"
                };
                (kind.to_owned(), text, vec![other.ip], true)
            }
            1 => {
                let (form, text, needles) = email(rng);
                (format!("email/{form}"), text, needles, false)
            }
            2 => {
                let (form, text, needles) = phone(rng);
                (format!("phone/{form}"), text, needles, false)
            }
            _ => {
                let random = rng.alnum(24);
                let token = format!("sess_{random}");
                (
                    "token".to_owned(),
                    token.clone(),
                    vec![token, random],
                    false,
                )
            }
        };
        needles.push(place(&mut parts, field, &text, host, rng));
        plants.push(Plant {
            kind,
            field,
            needles,
        });
    }

    *micros += rng.below(55_000_000) as i64 + 1;
    let broken_time = malformed && rng.chance(50);
    let time = time_field(*micros, broken_time);
    let status = if malformed && !broken_time {
        "2OO"
    } else {
        *rng.pick(&["200", "200", "200", "304", "404"])
    };
    let mut target = format!("/{}", parts.path.join("/"));
    if !parts.query.is_empty() {
        target.push('?');
        target.push_str(&parts.query.join("&"));
    }
    let referrer = if parts.referrer.is_none() && parts.referrer_path.is_empty() {
        "-".to_owned()
    } else {
        format!(
            "https://{}/{}",
            parts.referrer.as_deref().unwrap_or("www.example.com"),
            parts.referrer_path.join("/")
        )
    };
    let agent = format!(
        "Mozilla/5.0 (X11; Linux x86_64; {}) Gecko/20100101 Firefox/133.0",
        parts.agent.join("; ")
    );
    let cookie = match &c.cookie {
        Some(v) if rng.chance(50) => format!("jt_uid={v}; lang=en"),
        Some(v) => format!("lang=ja; jt_uid={v}; _ga=GA1.2.1.2"),
        None => "-".to_owned(),
    };
    let line = format!(
        "{} - - [{time}] \"GET {target} HTTP/1.1\" {status} {} \"{referrer}\" \"{agent}\" \"{cookie}\"",
        c.ip,
        100 + rng.below(60_000),
    );
    (line, plants)
}

/// `[01/Nov/2026:09:00:00 +0900]` for `micros` after 2026-11-01 09:00 JST (the demo key's
/// days); `broken` gives an hour of 25.
fn time_field(micros: i64, broken: bool) -> String {
    let secs = micros / 1_000_000 + 9 * 3600;
    let day = 1 + secs / 86_400;
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    let h = if broken { 25 } else { h };
    format!("{day:02}/Nov/2026:{h:02}:{m:02}:{s:02} +0900")
}

/// The corpus: its text, the plants, and how many lines are malformed.
fn corpus(seed: u64, keep: &[String]) -> (String, Vec<Plant>, usize) {
    let mut rng = Rng(seed);
    let clients: Vec<Client> = (0..400).map(|_| client(&mut rng)).collect();
    let (mut text, mut plants, mut malformed) = (String::new(), Vec::new(), 0);
    let mut micros = 0;
    let mut keep_next = 0;
    for i in 0..LINES {
        let c = rng.pick(&clients);
        // A keep-list value every few lines, on an otherwise clean line.
        if i % 20 == 0 && keep_next < keep.len() {
            let value = &keep[keep_next];
            keep_next += 1;
            micros += 1_000_000;
            let (target, referrer) = match value.strip_prefix("ref ") {
                Some(url) => ("/".to_owned(), url.to_owned()),
                None => (value.clone(), "-".to_owned()),
            };
            let cookie = c
                .cookie
                .as_ref()
                .map_or("-".to_owned(), |v| format!("jt_uid={v}"));
            writeln!(
                text,
                "{} - - [{}] \"GET {target} HTTP/1.1\" 200 512 \"{referrer}\" \"Mozilla/5.0\" \"{cookie}\"",
                c.ip,
                time_field(micros, false)
            )
            .unwrap();
        }
        let bad = rng.chance(5);
        malformed += usize::from(bad);
        let (line, planted) = line(&mut rng, c, &mut micros, bad);
        text.push_str(&line);
        text.push('\n');
        plants.extend(planted);
    }
    assert_eq!(keep_next, keep.len(), "every keep-list value planted");
    (text, plants, malformed)
}

/// The keep list's path and referrer values (query values are the sanitiser unit test's).
fn keep_list() -> Vec<String> {
    std::fs::read_to_string(repo().join("tests/data/sanitize_keep.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter(|l| l.starts_with('/') || l.starts_with("ref "))
        .map(str::to_owned)
        .collect()
}

/// Needle → plants, for a scan that looks each position up by its first 8 bytes.
struct Scanner {
    needles: Vec<(Vec<u8>, usize)>,
    by_prefix: HashMap<[u8; 8], Vec<usize>>,
}

impl Scanner {
    fn new(plants: &[Plant]) -> Self {
        let mut seen = BTreeSet::new();
        let mut needles = Vec::new();
        for (p, plant) in plants.iter().enumerate() {
            for n in &plant.needles {
                for v in [
                    n.clone(),
                    n.to_lowercase(),
                    n.to_uppercase(),
                    percent(n),
                    percent(n).to_lowercase(),
                    base64(n.as_bytes()),
                ] {
                    if v.len() >= 8 && seen.insert((v.clone(), p)) {
                        needles.push((v.into_bytes(), p));
                    }
                }
            }
        }
        let mut by_prefix: HashMap<[u8; 8], Vec<usize>> = HashMap::new();
        for (i, (n, _)) in needles.iter().enumerate() {
            by_prefix
                .entry(n[..8].try_into().unwrap())
                .or_default()
                .push(i);
        }
        Self { needles, by_prefix }
    }

    /// The plants found in `bytes`, each with the needle that matched.
    fn scan(&self, bytes: &[u8]) -> BTreeMap<usize, String> {
        let mut hits = BTreeMap::new();
        for at in 0..bytes.len().saturating_sub(7) {
            let Some(candidates) = self.by_prefix.get(&bytes[at..at + 8]) else {
                continue;
            };
            for &i in candidates {
                let (n, p) = &self.needles[i];
                if bytes[at..].starts_with(n) {
                    hits.entry(*p)
                        .or_insert_with(|| String::from_utf8_lossy(n).into_owned());
                }
            }
        }
        hits
    }
}

/// What to scan under `dir`: Parquet files as their decoded rows and key-value metadata,
/// every other file as it is.
fn texts_under(dir: &Path, label: &str, out: &mut Vec<(String, Vec<u8>)>) {
    for file in files_under(dir) {
        let path = dir.join(&file);
        let name = format!("{label}/{file}");
        if file.ends_with(".parquet") {
            let mut text = String::new();
            for batch in read_batches(&path) {
                for row in batch_rows(&batch) {
                    text.push_str(&row.to_string());
                    text.push('\n');
                }
            }
            for (k, v) in key_value_metadata(&path) {
                writeln!(text, "{k}={v}").unwrap();
            }
            out.push((name, text.into_bytes()));
        } else {
            out.push((name, std::fs::read(&path).unwrap()));
        }
    }
}

/// Every page and referrer domain printed.
fn printed_values(out: &Path, report: &str, column: &str) -> BTreeSet<String> {
    let mut values = BTreeSet::new();
    for file in files_under(&out.join(report)) {
        if !file.ends_with(".parquet") {
            continue;
        }
        for batch in read_batches(&out.join(report).join(&file)) {
            for row in batch_rows(&batch) {
                if let Some(v) = row[column].as_str() {
                    values.insert(v.to_owned());
                }
            }
        }
    }
    values
}

/// Every planted value, in every form, in every field: zero hits in anything `run` and the
/// daemon write or print. (It first found `sess_` + 24 random alphanumerics passing in
/// about 9 % of path segments and some `utm_*` values: the sanitiser's rule 7.)
#[test]
fn a_generated_corpus_leaks_nothing_anywhere() {
    let keep = keep_list();
    let (text, plants, malformed) = corpus(0x15_1eaf_c0de, &keep);
    let lines = text.lines().count();
    assert!(lines >= LINES && plants.len() > 4 * LINES, "{lines} lines");

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let logs = root.join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::write(logs.join("access.log"), &text).unwrap();
    let pipeline = EditedPipeline::new("leaks", |p| p + CAMPAIGNS);

    let scanner = Scanner::new(&plants);
    // The scanner finds every plant in the input (else a needle is wrong).
    let found = scanner.scan(text.as_bytes());
    assert_eq!(found.len(), plants.len(), "every plant found in the corpus");

    let mut written: Vec<(String, Vec<u8>)> = Vec::new();

    // `run`, with dead letters and debug logs.
    let run_out = root.join("run-out");
    let dead = root.join("rejected.jsonl");
    let summary = root.join("run-summary.json");
    let privacy = root.join("run-privacy");
    let output = bin()
        .current_dir(repo())
        .arg("run")
        .arg(&pipeline.0)
        .arg("--input")
        .arg(logs.join("access.log"))
        .arg("--out")
        .arg(&run_out)
        .arg("--summary")
        .arg(&summary)
        .arg("--dead-letter")
        .arg(&dead)
        .arg("--privacy-state")
        .arg(&privacy)
        .env("LOGVEIL_LOG", "debug")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "run: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let run_summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(run_summary["lines_read"], lines as u64);
    let rejected = crate::util::dead_letters(&dead).len();
    assert!(
        rejected >= malformed && rejected > 50,
        "{rejected} dead letters for {malformed} malformed lines"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("DEBUG"),
        "debug logs"
    );
    written.push(("run stdout".to_owned(), output.stdout));
    written.push(("run stderr".to_owned(), output.stderr));
    written.push(("run summary".to_owned(), std::fs::read(&summary).unwrap()));
    written.push(("run dead letters".to_owned(), std::fs::read(&dead).unwrap()));
    texts_under(&run_out, "run out", &mut written);
    texts_under(&privacy, "run privacy-state", &mut written);

    // `daemon`, with debug logs, until idle; its checkpoint keeps the open windows.
    let (d_out, d_state, d_privacy) = (
        root.join("d-out"),
        root.join("d-state"),
        root.join("d-privacy"),
    );
    let (d_summary, d_log) = (root.join("d-summary.json"), root.join("d.log"));
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&d_log)
        .unwrap();
    let mut child = bin()
        .current_dir(repo())
        .arg("daemon")
        .arg(&pipeline.0)
        .arg("--input")
        .arg(logs.join("access.log*"))
        .arg("--out")
        .arg(&d_out)
        .arg("--state")
        .arg(&d_state)
        .arg("--privacy-state")
        .arg(&d_privacy)
        .arg("--summary")
        .arg(&d_summary)
        .args(["--idle-exit", "1"])
        .env("LOGVEIL_LOG", "debug")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > Duration::from_mins(2) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let d_logs = std::fs::read(&d_log).unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "daemon: {status:?}\n{}",
        String::from_utf8_lossy(&d_logs)
    );
    assert!(
        d_state.join("checkpoint.json").exists(),
        "{:?}",
        files_under(&d_state)
    );
    written.push(("daemon logs".to_owned(), d_logs));
    written.push((
        "daemon summary".to_owned(),
        std::fs::read(&d_summary).unwrap(),
    ));
    texts_under(&d_out, "daemon out", &mut written);
    texts_under(&d_state, "daemon state", &mut written);
    texts_under(&d_privacy, "daemon privacy-state", &mut written);

    // The keep list passes unchanged: every path a page, every referrer its host.
    let pages = printed_values(&run_out, "page_views_hourly", "page");
    let domains = printed_values(&run_out, "referrers_daily", "referrer_domain");
    let changed: Vec<&String> = keep
        .iter()
        .filter(|v| match v.strip_prefix("ref ") {
            Some(url) => {
                let host = url.split("://").nth(1).unwrap_or(url);
                let host = host.split(['/', ':', '?']).next().unwrap();
                !domains.contains(&host.to_ascii_lowercase())
            }
            None => !pages.contains(*v),
        })
        .collect();

    // Every planted value, in every file: (kind, field) → files, with an example.
    let mut leaks: BTreeMap<(String, Field), (BTreeSet<String>, String, usize)> = BTreeMap::new();
    for (file, bytes) in &written {
        for (p, needle) in scanner.scan(bytes) {
            let plant = &plants[p];
            let entry = leaks
                .entry((plant.kind.clone(), plant.field))
                .or_insert_with(|| (BTreeSet::new(), needle.clone(), 0));
            entry.0.insert(file.clone());
            entry.2 += 1;
        }
    }
    let mut report = String::new();
    for ((kind, field), (files, example, n)) in &leaks {
        let total = plants
            .iter()
            .filter(|p| &p.kind == kind && p.field == *field)
            .count();
        // Files cut to their report or state directory (`run out/page_views_hourly`).
        let files: BTreeSet<String> = files
            .iter()
            .map(|f| f.split('/').take(2).collect::<Vec<_>>().join("/"))
            .collect();
        writeln!(
            report,
            "{kind} in {field:?}: {n} hits ({total} planted), e.g. `{example}`, in {files:?}"
        )
        .unwrap();
    }
    assert!(
        leaks.is_empty() && changed.is_empty(),
        "{} (kind, field) pairs leaked:\n{report}keep-list values changed: {changed:#?}",
        leaks.len()
    );
}
