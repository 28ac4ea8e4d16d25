//! Synthetic traffic: cookie visitors, cookieless visitors and robots, as request events.

use std::collections::BTreeSet;
use std::net::Ipv6Addr;

use crate::accounts::{self, Account, PINNED};
use crate::catalog::{
    ASSETS, BOTS, BROWSERS, Kind, PAGES, PageDef, QUERY_NAMES, REFERERS, SEARCH_TERMS, SITE_HOST,
    is_bot,
};
use crate::rng::Rng;
use crate::time::{self, DAY, END, START};

/// One well-formed request, with everything the ground truth needs to know about it.
#[derive(Debug, Clone)]
pub struct Event {
    pub t: i64,
    pub ip: String,
    pub ua: &'static str,
    pub bot: bool,
    /// The Cookie header; `None` is logged as `-`.
    pub cookie: Option<String>,
    /// The non-empty `jt_uid` in `cookie`, if any.
    pub jt_uid: Option<String>,
    pub method: &'static str,
    pub path: &'static str,
    pub query: Option<String>,
    pub proto: &'static str,
    pub status: u16,
    pub bytes: Option<u64>,
    /// Referer as logged (`-` for none).
    pub referer: String,
    /// Lower-case host of `referer` without port, `(none)` for `-`.
    pub referer_domain: &'static str,
}

impl Event {
    /// GET, status 200-399, not a robot: counted in every report.
    pub fn is_view(&self) -> bool {
        self.method == "GET" && (200..=399).contains(&self.status) && !self.bot
    }

    pub fn target(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.to_owned(),
        }
    }

    /// Apache `%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" "%{Cookie}i"`.
    pub fn line(&self) -> String {
        let bytes = self.bytes.map_or_else(|| "-".to_owned(), |b| b.to_string());
        format!(
            "{} - - [{}] \"{} {} {}\" {} {bytes} \"{}\" \"{}\" \"{}\"",
            self.ip,
            time::apache_jst(self.t),
            self.method,
            self.target(),
            self.proto,
            self.status,
            self.referer,
            self.ua,
            self.cookie.as_deref().unwrap_or("-"),
        )
    }
}

/// Traffic shape by local (JST) hour.
const LOCAL_HOUR_WEIGHTS: [u32; 24] = [
    30, 18, 10, 6, 5, 6, 12, 25, 45, 60, 70, 75, 80, 78, 75, 72, 70, 75, 85, 95, 100, 90, 70, 45,
];
/// Sessions per ordinary cookie visitor: 1, 2, 3, ...
const SESSION_WEIGHTS: [u32; 8] = [45, 22, 12, 8, 5, 4, 2, 2];
/// Page requests per session: 1, 2, 3, ...
const HIT_WEIGHTS: [u32; 8] = [26, 24, 17, 11, 8, 6, 4, 4];
/// Per-mille of account cookies that show up in the two days of logs.
const LINKED_SEEN_PER_MILLE: u32 = 920;
/// Cookieless one-off visitors.
const ANON_PERSONS: usize = 360;
/// Robot requests as per-mille of all well-formed lines.
const BOT_PER_MILLE: usize = 80;

#[derive(Debug)]
struct Person {
    ip: String,
    alt_ip: Option<String>,
    ua: &'static str,
    proto: &'static str,
    cookie: Option<String>,
    jt_uid: Option<String>,
    seen_assets: BTreeSet<&'static str>,
}

#[derive(Debug)]
struct Gen {
    rng: Rng,
    events: Vec<Event>,
}

impl Gen {
    /// An instant in `[lo, hi)` (both whole hours), shaped by the local-hour curve.
    fn time_in(&mut self, lo: i64, hi: i64) -> i64 {
        let hours: Vec<i64> = (lo / 3600..hi / 3600).collect();
        let h = hours[self.rng.weighted(
            hours
                .iter()
                .map(|h| LOCAL_HOUR_WEIGHTS[((h + 9) % 24) as usize]),
        )];
        h * 3600 + self.rng.below(3600) as i64
    }

    fn random_ip(&mut self) -> String {
        if self.rng.chance(100) {
            let r = &mut self.rng;
            let mut seg = || r.below(0x1_0000) as u16;
            let addr = if seg() % 3 == 0 {
                // Statically numbered host: short form like 2001:db8:12::7.
                Ipv6Addr::new(0x2001, 0x0db8, seg(), 0, 0, 0, 0, seg() % 256 + 1)
            } else {
                Ipv6Addr::new(0x2001, 0x0db8, seg(), seg(), seg(), seg(), seg(), seg())
            };
            addr.to_string()
        } else {
            let net = *self.rng.pick(&["192.0.2", "198.51.100", "203.0.113"]);
            format!("{net}.{}", self.rng.range(1, 254))
        }
    }

    fn browser(&mut self) -> &'static str {
        BROWSERS[self.rng.weighted(BROWSERS.iter().map(|b| b.1))].0
    }

    fn person(
        &mut self,
        ua: &'static str,
        cookie: Option<String>,
        jt_uid: Option<String>,
    ) -> Person {
        let ip = self.random_ip();
        let alt_ip = self.rng.chance(250).then(|| self.random_ip());
        let proto = if self.rng.chance(300) {
            "HTTP/2.0"
        } else {
            "HTTP/1.1"
        };
        Person {
            ip,
            alt_ip,
            ua,
            proto,
            cookie,
            jt_uid,
            seen_assets: BTreeSet::new(),
        }
    }

    fn external_referer(&mut self) -> (String, &'static str) {
        let (template, domain, _) = REFERERS[self.rng.weighted(REFERERS.iter().map(|r| r.2))];
        let mut url = template.to_owned();
        if url.contains("{q}") {
            let term = *self.rng.pick(SEARCH_TERMS);
            url = url.replace("{q}", term);
        }
        if url.contains("{t}") {
            url = url.replace("{t}", &self.rng.hex(10));
        }
        (url, domain)
    }

    /// A query string (never PII in the path; sometimes PII here, as real sites get).
    fn query(&mut self, page: &PageDef) -> String {
        if page.path == "/search" {
            return format!("q={}", self.rng.pick(SEARCH_TERMS));
        }
        match self.rng.weighted([35, 15, 10, 15, 10, 15]) {
            0 => "utm_source=newsletter&utm_medium=email&utm_campaign=autumn2026".to_owned(),
            1 => {
                let domain = self.rng.pick(&["example.com", "example.org"]);
                format!("email={}%40{domain}", self.rng.pick(QUERY_NAMES))
            }
            2 => format!("tel=03{:08}", self.rng.below(100_000_000)),
            3 => "lang=ja".to_owned(),
            4 => "utm_source=twitter".to_owned(),
            _ => format!("page={}", self.rng.range(2, 5)),
        }
    }

    #[allow(clippy::too_many_arguments, reason = "plain data for one event")]
    fn push(
        &mut self,
        p: &Person,
        ip: &str,
        t: i64,
        with_cookie: bool,
        method: &'static str,
        path: &'static str,
        query: Option<String>,
        status: u16,
        bytes: Option<u64>,
        referer: (String, &'static str),
    ) {
        self.events.push(Event {
            t,
            ip: ip.to_owned(),
            ua: p.ua,
            bot: is_bot(p.ua),
            cookie: if with_cookie { p.cookie.clone() } else { None },
            jt_uid: if with_cookie { p.jt_uid.clone() } else { None },
            method,
            path,
            query,
            proto: p.proto,
            status,
            bytes,
            referer: referer.0,
            referer_domain: referer.1,
        });
    }

    /// A browsing session: `hits` page requests (plus some sub-resources) from `start`.
    fn session(&mut self, p: &mut Person, start: i64, hits: usize, first_without_cookie: bool) {
        let ip = match &p.alt_ip {
            Some(alt) if self.rng.chance(300) => alt.clone(),
            _ => p.ip.clone(),
        };
        let mut t = start;
        let mut prev: Option<&'static str> = None;
        for i in 0..hits {
            if t >= END {
                break;
            }
            let with_cookie = !(i == 0 && first_without_cookie);
            let page = &PAGES[self.rng.weighted(PAGES.iter().map(|p| p.weight))];
            let method = if page.kind == Kind::Form && self.rng.chance(page.post_per_mille) {
                "POST"
            } else if self.rng.chance(8) {
                "HEAD"
            } else {
                "GET"
            };
            let (status, bytes) = self.status_and_bytes(page.kind, method);
            let query = (method != "HEAD"
                && matches!(page.kind, Kind::Page | Kind::Form)
                && self.rng.chance(80))
            .then(|| self.query(page));
            let referer = match prev {
                None => self.external_referer(),
                Some(prev) => (format!("https://{SITE_HOST}{prev}"), SITE_HOST),
            };
            self.push(
                p,
                &ip,
                t,
                with_cookie,
                method,
                page.path,
                query,
                status,
                bytes,
                referer,
            );
            if matches!(page.kind, Kind::Page | Kind::Form) {
                // The next page was reached from this one.
                prev = Some(page.path);
            }
            if page.kind == Kind::Page && method == "GET" && status == 200 && self.rng.chance(300) {
                for _ in 0..self.rng.range(1, 3) {
                    let (asset, lo, hi) = *self.rng.pick(ASSETS);
                    let cached = !p.seen_assets.insert(asset) && self.rng.chance(850);
                    let (status, bytes) = if cached {
                        (304, None)
                    } else {
                        (200, Some(self.rng.range(lo, hi)))
                    };
                    let referer = (format!("https://{SITE_HOST}{}", page.path), SITE_HOST);
                    self.push(
                        p,
                        &ip,
                        t,
                        with_cookie,
                        "GET",
                        asset,
                        None,
                        status,
                        bytes,
                        referer,
                    );
                }
            }
            t += self.rng.range(4, 200) as i64;
        }
    }

    fn status_and_bytes(&mut self, kind: Kind, method: &str) -> (u16, Option<u64>) {
        match kind {
            Kind::Missing => (
                404,
                (method != "HEAD" && self.rng.chance(700)).then(|| self.rng.range(196, 1250)),
            ),
            Kind::Redirect => (301, (method != "HEAD").then(|| self.rng.range(228, 262))),
            Kind::Page | Kind::Form | Kind::RobotFile => {
                let error_rate = if kind == Kind::Form { 20 } else { 4 };
                let r = self.rng.below(1000);
                if r < error_rate {
                    (500, self.rng.chance(500).then_some(530))
                } else if method == "GET" && r < error_rate + 25 {
                    (304, None)
                } else if method == "HEAD" {
                    (200, None)
                } else if method == "POST" {
                    (200, Some(self.rng.range(120, 4_000)))
                } else {
                    (200, Some(self.rng.range(2_800, 64_000)))
                }
            }
        }
    }

    fn bot_hits(&mut self, n: usize) {
        for _ in 0..n {
            let bot = &BOTS[self.rng.weighted(BOTS.iter().map(|b| b.weight))];
            let ip = *self.rng.pick(bot.ips);
            let t = START + self.rng.below((END - START) as u64) as i64;
            let page = match self.rng.below(100) {
                0..6 => &PAGES[PAGES.len() - 2],
                6..9 => &PAGES[PAGES.len() - 1],
                _ => self.rng.pick(&PAGES[..PAGES.len() - 2]),
            };
            let method = if self.rng.chance(bot.head_per_mille) {
                "HEAD"
            } else {
                "GET"
            };
            let (status, bytes) = self.status_and_bytes(page.kind, method);
            let p = Person {
                ip: ip.to_owned(),
                alt_ip: None,
                ua: bot.ua,
                proto: "HTTP/1.1",
                cookie: None,
                jt_uid: None,
                seen_assets: BTreeSet::new(),
            };
            self.push(
                &p,
                ip,
                t,
                false,
                method,
                page.path,
                None,
                status,
                bytes,
                ("-".to_owned(), "(none)"),
            );
        }
    }

    fn hits(&mut self) -> usize {
        1 + self.rng.weighted(HIT_WEIGHTS)
    }
}

fn cookie_header(rng: &mut Rng, uid: &str) -> String {
    match rng.weighted([50, 25, 25]) {
        0 => format!("jt_uid={uid}"),
        1 => format!("lang=ja; jt_uid={uid}"),
        _ => format!(
            "jt_uid={uid}; lang=en; _ga=GA1.2.{}.{}",
            rng.range(100_000_000, 999_999_999),
            rng.range(1_700_000_000, 1_790_000_000)
        ),
    }
}

/// All well-formed requests of the two UTC days, sorted by time.
pub fn generate(
    seed: u64,
    accounts: &[Account],
    used_cookies: &mut BTreeSet<String>,
) -> Vec<Event> {
    let mut g = Gen {
        rng: Rng::new(seed, "traffic"),
        events: Vec::new(),
    };

    // Cookie visitors: most account cookies, plus unlinked ones so that ~60% are linked.
    let mut visitors: Vec<(String, bool, bool)> = Vec::new(); // (jt_uid, pinned, first visit now)
    for (i, a) in accounts.iter().enumerate() {
        for cookie in &a.cookies {
            if i < PINNED || g.rng.chance(LINKED_SEEN_PER_MILLE) {
                visitors.push((cookie.clone(), i < PINNED, false));
            }
        }
    }
    let unlinked = visitors.len() * 2 / 3;
    for _ in 0..unlinked {
        let uid = accounts::new_cookie(&mut g.rng, used_cookies);
        let new = g.rng.chance(350);
        visitors.push((uid, false, new));
    }
    let mut first_linked: Option<Person> = None;
    for (uid, pinned, new) in visitors {
        let header = cookie_header(&mut g.rng, &uid);
        let ua = g.browser();
        let mut p = g.person(ua, Some(header), Some(uid));
        let n_sessions = if g.rng.chance(20) {
            g.rng.range(8, 20) as usize
        } else {
            1 + g.rng.weighted(SESSION_WEIGHTS)
        };
        let mut starts: Vec<i64> = (0..n_sessions).map(|_| g.time_in(START, END)).collect();
        if pinned {
            starts[0] = g.time_in(START, START + DAY);
            starts.push(g.time_in(START + DAY, END));
        }
        starts.sort_unstable();
        for (k, start) in starts.into_iter().enumerate() {
            let first_without_cookie = new && k == 0;
            let mut hits = g.hits();
            if first_without_cookie {
                hits = hits.max(2);
            }
            g.session(&mut p, start, hits, first_without_cookie);
        }
        if first_linked.is_none() {
            first_linked = Some(p);
        }
    }

    // Cookieless visitors (some with other cookies, a few with an empty jt_uid, four without UA).
    let mut anon_people = Vec::with_capacity(ANON_PERSONS);
    for i in 0..ANON_PERSONS {
        let ua = if i < 4 { "-" } else { g.browser() };
        let cookie = match g.rng.below(100) {
            0..85 => None,
            85..93 => Some("lang=ja".to_owned()),
            93..97 => Some(format!(
                "_ga=GA1.2.{}.1761000000",
                g.rng.range(1_000, 9_999)
            )),
            _ => Some("jt_uid=; lang=en".to_owned()),
        };
        let mut p = g.person(ua, cookie, None);
        let sessions = if g.rng.chance(120) { 2 } else { 1 };
        for _ in 0..sessions {
            let start = g.time_in(START, END);
            let hits = g.rng.range(1, 4) as usize;
            g.session(&mut p, start, hits, false);
        }
        anon_people.push(p);
    }

    // Fixed edge cases around UTC midnight and the window's ends.
    let mut edge = anon_people.swap_remove(4);
    g.session(&mut edge, START, 1, false);
    g.session(&mut edge, START + DAY - 30, 1, false);
    g.session(&mut edge, START + DAY + 20, 1, false);
    let mut linked = first_linked.expect("at least one account cookie");
    g.session(&mut linked, START + DAY - 10, 1, false);
    g.session(&mut linked, START + DAY, 1, false);
    g.session(&mut linked, END - 1, 1, false);

    let human = g.events.len();
    let bots = human * BOT_PER_MILLE / (1000 - BOT_PER_MILLE);
    g.bot_hits(bots);

    let mut events = g.events;
    events.sort_by_key(|e| e.t);
    events
}

/// A large log for benchmarks (`--lines N --log PATH`): exactly `lines` well-formed
/// `combined_cookie` lines over the same two UTC days, sorted by time, written to `out`.
///
/// The traffic is the sample model run again and again ("rounds", each from its own
/// seed, the first being the samples' own traffic): the same accounts' cookies return
/// every round, the other visitors are new. Memory stays bounded by one hour of output:
/// each round's lines are spilled into one file per UTC hour beside `out`, and each hour
/// is sorted and appended in turn. Returns the bytes written.
pub fn write_big_log(seed: u64, lines: u64, out: &std::path::Path) -> anyhow::Result<u64> {
    use anyhow::Context as _;
    use std::io::{BufRead as _, BufWriter, Write as _};

    const HOURS: usize = ((END - START) / 3600) as usize;
    let spill_dir = out.with_extension("parts");
    std::fs::create_dir_all(&spill_dir)
        .with_context(|| format!("creating {}", spill_dir.display()))?;
    let mut spills = (0..HOURS)
        .map(|h| {
            let path = spill_dir.join(format!("{h:02}"));
            std::fs::File::create(&path)
                .map(BufWriter::new)
                .with_context(|| format!("creating {}", path.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut used_base = BTreeSet::new();
    let accounts = accounts::generate(seed, &mut used_base);
    let mut written = 0u64;
    let mut round = 0u64;
    while written < lines {
        let round_seed = seed.wrapping_add(round.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut events = generate(round_seed, &accounts, &mut used_base.clone());
        let need = lines - written;
        if (events.len() as u64) > need {
            // The last round: a random subset, so the day's shape is kept.
            let mut rng = Rng::new(round_seed, "big log subset");
            for i in (1..events.len()).rev() {
                events.swap(i, rng.index(i + 1));
            }
            events.truncate(need as usize);
        }
        for e in &events {
            let hour = ((e.t - START) / 3600) as usize;
            writeln!(spills[hour], "{} {}", e.t, e.line())?;
        }
        written += events.len() as u64;
        round += 1;
    }
    for spill in spills {
        spill
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
    }

    let mut output = BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?,
    );
    let mut bytes = 0u64;
    for h in 0..HOURS {
        let path = spill_dir.join(format!("{h:02}"));
        let reader = std::io::BufReader::new(std::fs::File::open(&path)?);
        let mut hour: Vec<(i64, String)> = reader
            .lines()
            .map(|l| {
                let l = l?;
                let (t, line) = l.split_once(' ').context("spill line")?;
                Ok((t.parse()?, line.to_owned()))
            })
            .collect::<anyhow::Result<_>>()?;
        hour.sort_by_key(|(t, _)| *t);
        for (_, line) in hour {
            output.write_all(line.as_bytes())?;
            output.write_all(b"\n")?;
            bytes += line.len() as u64 + 1;
        }
        std::fs::remove_file(&path)?;
    }
    output
        .into_inner()
        .map_err(std::io::IntoInnerError::into_error)?
        .sync_all()?;
    std::fs::remove_dir(&spill_dir)?;
    Ok(bytes)
}
