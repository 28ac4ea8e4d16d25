//! Static vocabularies: the site map, user agents, referers and account attributes.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An HTML page.
    Page,
    /// A page that also accepts POST.
    Form,
    /// Old URL answered with 301.
    Redirect,
    /// Never existed: 404.
    Missing,
    /// Only robots fetch these.
    RobotFile,
}

#[derive(Debug)]
pub struct PageDef {
    pub path: &'static str,
    pub kind: Kind,
    /// Zipf-ish popularity with human visitors.
    pub weight: u32,
    /// Per-mille chance that a human GET becomes POST instead (forms only).
    pub post_per_mille: u32,
}

const fn page(path: &'static str, weight: u32) -> PageDef {
    PageDef {
        path,
        kind: Kind::Page,
        weight,
        post_per_mille: 0,
    }
}

const fn form(path: &'static str, weight: u32, post_per_mille: u32) -> PageDef {
    PageDef {
        path,
        kind: Kind::Form,
        weight,
        post_per_mille,
    }
}

const fn other(path: &'static str, kind: Kind, weight: u32) -> PageDef {
    PageDef {
        path,
        kind,
        weight,
        post_per_mille: 0,
    }
}

pub const PAGES: &[PageDef] = &[
    page("/", 1000),
    page("/en/tokyo/hotels", 520),
    page("/en/", 400),
    page("/ja/", 300),
    page("/en/kyoto/temples", 260),
    form("/search", 220, 150),
    page("/en/osaka/food", 190),
    page("/ja/kyoto/temples", 160),
    page("/en/tokyo/food", 140),
    page("/en/tokyo/sightseeing", 120),
    page("/ja/tokyo/hotels", 110),
    page("/en/guides/jr-pass", 100),
    form("/account/login", 90, 500),
    page("/en/hakone/onsen", 80),
    page("/account/settings", 70),
    page("/en/kyoto/hotels", 65),
    page("/ja/osaka/food", 60),
    page("/en/osaka/hotels", 55),
    page("/en/nara/deer-park", 50),
    page("/en/hiroshima/peace-memorial", 45),
    page("/ja/hakone/onsen", 40),
    page("/en/guides/etiquette", 38),
    page("/account/bookings", 35),
    page("/en/hokkaido/skiing", 32),
    page("/en/okinawa/beaches", 30),
    page("/en/fuji/hiking", 28),
    page("/en/nikko/shrines", 25),
    page("/en/guides/visa", 22),
    form("/api/v1/availability", 20, 500),
    page("/about", 18),
    form("/contact", 15, 400),
    page("/privacy", 12),
    other("/en", Kind::Redirect, 20),
    other("/en/tokyo/hotels/", Kind::Redirect, 10),
    other("/ja", Kind::Redirect, 10),
    other("/old/tokyo.html", Kind::Missing, 6),
    other("/wp-login.php", Kind::Missing, 4),
    other("/en/tokyo/hotel", Kind::Missing, 4),
    other("/robots.txt", Kind::RobotFile, 0),
    other("/sitemap.xml", Kind::RobotFile, 0),
];

/// Sub-resources a browser fetches after a page: path and (min, max) size in bytes.
pub const ASSETS: &[(&str, u64, u64)] = &[
    ("/css/site.css", 18_000, 26_000),
    ("/js/app.js", 60_000, 140_000),
    ("/img/logo.png", 4_000, 9_000),
    ("/img/hero-tokyo.jpg", 120_000, 320_000),
    ("/img/kyoto-temple.jpg", 90_000, 260_000),
    ("/favicon.ico", 1_150, 1_150),
];

/// Browser user agents with their share of visitors.
pub const BROWSERS: &[(&str, u32)] = &[
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
        25,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        22,
    ),
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36",
        15,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
        10,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
        8,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0",
        6,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0",
        6,
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
        4,
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
        3,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Safari Line/14.16.0",
        3,
    ),
    (
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
        2,
    ),
];

#[derive(Debug)]
pub struct BotDef {
    pub ua: &'static str,
    /// Canonical textual addresses, all in documentation ranges.
    pub ips: &'static [&'static str],
    pub weight: u32,
    /// Per-mille of its requests sent as HEAD.
    pub head_per_mille: u32,
}

pub const BOTS: &[BotDef] = &[
    BotDef {
        ua: "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        ips: &["192.0.2.66", "192.0.2.67", "2001:db8:4860::1"],
        weight: 34,
        head_per_mille: 0,
    },
    BotDef {
        ua: "Mozilla/5.0 (compatible; bingbot/2.0)",
        ips: &["198.51.100.157", "198.51.100.158"],
        weight: 15,
        head_per_mille: 0,
    },
    BotDef {
        ua: "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        ips: &["203.0.113.201"],
        weight: 10,
        head_per_mille: 0,
    },
    BotDef {
        ua: "SomeCrawler/1.0",
        ips: &["203.0.113.202", "2001:db8:bad::c"],
        weight: 8,
        head_per_mille: 50,
    },
    BotDef {
        ua: "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
        ips: &["192.0.2.180"],
        weight: 8,
        head_per_mille: 0,
    },
    BotDef {
        ua: "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
        ips: &["198.51.100.77"],
        weight: 4,
        head_per_mille: 0,
    },
    BotDef {
        ua: "curl/8.5.0",
        ips: &["192.0.2.250", "2001:db8:1::25"],
        weight: 6,
        head_per_mille: 400,
    },
    BotDef {
        ua: "Wget/1.21",
        ips: &["198.51.100.250"],
        weight: 4,
        head_per_mille: 100,
    },
    BotDef {
        ua: "python-requests/2.31.0",
        ips: &["203.0.113.250", "203.0.113.251"],
        weight: 6,
        head_per_mille: 100,
    },
    BotDef {
        ua: "Go-http-client/1.1",
        ips: &["192.0.2.251"],
        weight: 3,
        head_per_mille: 200,
    },
    BotDef {
        ua: "Java/17.0.2",
        ips: &["198.51.100.251"],
        weight: 2,
        head_per_mille: 0,
    },
];

/// The logveil definition of a bot user agent (see the brief / pipeline).
pub fn is_bot(ua: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "curl/",
        "wget/",
        "python-requests/",
        "python-urllib/",
        "go-http-client/",
        "libwww-perl/",
        "okhttp/",
        "java/",
        "scrapy/",
        "httpie/",
        "apache-httpclient/",
    ];
    let ua = ua.to_ascii_lowercase();
    ["bot", "crawler", "spider"]
        .iter()
        .chain(PREFIXES)
        .any(|needle| ua.contains(needle))
}

/// The site's own host, used for internal referers.
pub const SITE_HOST: &str = "en.japantourist.jp";

/// External referers of a session's first request: (URL or template, domain as reported, weight).
/// `{t}` is replaced by a random short code, `{q}` by a search term.
pub const REFERERS: &[(&str, &str, u32)] = &[
    ("-", "(none)", 40),
    ("https://www.google.com/", "www.google.com", 14),
    ("https://www.google.com/search?q={q}", "www.google.com", 6),
    ("https://www.google.co.jp/", "www.google.co.jp", 6),
    ("https://www.bing.com/search?q={q}", "www.bing.com", 5),
    ("https://t.co/{t}", "t.co", 4),
    ("https://m.facebook.com/", "m.facebook.com", 3),
    (
        "https://www.tripadvisor.com/Tourism-g298184-Tokyo",
        "www.tripadvisor.com",
        3,
    ),
    ("https://duckduckgo.com/", "duckduckgo.com", 2),
    ("http://Example.COM:8080/x", "example.com", 2),
];

pub const SEARCH_TERMS: &[&str] = &[
    "tokyo+hotels",
    "kyoto+temples",
    "osaka+street+food",
    "hakone+onsen",
    "jr+pass+price",
    "tokyo",
    "nara+deer",
];

pub const QUERY_NAMES: &[&str] = &["alice", "bob.smith", "kenji.t", "yuki88", "someone"];

/// Genders as entered, with their share, and the value logveil's `gender` dimension should
/// give: free text it does not recognise (a phrase, an e-mail address) is `unknown`.
pub const GENDERS: &[(&str, u32, &str)] = &[
    ("Female", 29, "female"),
    ("female", 8, "female"),
    ("FEMALE", 2, "female"),
    ("Woman", 1, "female"),
    ("Male", 30, "male"),
    ("male", 10, "male"),
    ("M", 5, "male"),
    ("F", 3, "female"),
    ("", 8, "unknown"),
    ("Prefer not to say", 1, "unknown"),
    ("Other", 2, "other"),
    ("non-binary", 1, "other"),
];

/// Occupations as entered, with their share, and the value logveil's `occupation`
/// dimension should give (the generator's own labels, written independently of logveil's
/// tables, so truth.json checks them).
pub const OCCUPATIONS: &[(&str, u32, &str)] = &[
    ("Company employee", 35, "office_worker"),
    ("Self-employed", 10, "self_employed"),
    ("Student", 10, "student"),
    ("Retired", 8, "retired"),
    ("Homemaker", 6, "homemaker"),
    ("Public servant", 6, "public_servant"),
    ("Part-time", 8, "part_time"),
    ("Consultant, independent", 3, "other"),
    ("Artist (\"freelance\")", 2, "other"),
    ("Other", 4, "other"),
    ("", 8, "unknown"),
];

/// Industries as entered, with their share, and the JSIC division logveil's `industry`
/// dimension should give.
pub const INDUSTRIES: &[(&str, u32, &str)] = &[
    ("IT", 18, "information_communications"),
    ("Manufacturing", 14, "manufacturing"),
    ("Finance", 10, "finance_insurance"),
    ("Retail", 10, "wholesale_retail"),
    ("Healthcare", 8, "healthcare_welfare"),
    ("Education", 8, "education"),
    ("Tourism", 8, "other"),
    ("Hotels, restaurants & leisure", 5, "accommodation_food"),
    ("Public sector", 6, "government"),
    ("", 13, "unknown"),
];

/// Interests as entered (each chosen independently) and the `interests` value they give.
pub const INTERESTS: &[(&str, &str)] = &[
    ("travel", "travel"),
    ("food", "food"),
    ("Onsen", "onsen"),
    ("hiking", "hiking"),
    ("history", "history"),
    ("shopping", "shopping"),
    ("karaoke", "other"),
];

/// Postal codes: a template (`#` is a random digit) and the prefecture logveil's `area`
/// dimension should give; picked uniformly, so Tokyo and Osaka, with several entries, are
/// the most common. Some are written without the hyphen, with a `〒` or in full-width
/// digits, as people type them; some are not Japanese codes at all (`unknown`).
pub const ZIP_AREAS: &[(&str, &str)] = &[
    ("001-####", "hokkaido"),
    ("040-####", "hokkaido"),
    ("060-####", "hokkaido"),
    ("010-####", "akita"),
    ("020-####", "iwate"),
    ("030-####", "aomori"),
    ("100-####", "tokyo"),
    ("104-####", "tokyo"),
    ("150-####", "tokyo"),
    ("160-####", "tokyo"),
    ("169####", "tokyo"),
    ("〒192-####", "tokyo"),
    ("220-####", "kanagawa"),
    ("251####", "kanagawa"),
    ("260-####", "chiba"),
    ("310-####", "ibaraki"),
    ("320-####", "tochigi"),
    ("330-####", "saitama"),
    ("370-####", "gunma"),
    ("380-####", "nagano"),
    ("400-####", "yamanashi"),
    ("420-####", "shizuoka"),
    ("460-####", "aichi"),
    ("498-####", "aichi"),
    ("500-####", "gifu"),
    ("514-####", "mie"),
    ("520-####", "shiga"),
    ("530-####", "osaka"),
    ("542-####", "osaka"),
    ("５６０－####", "osaka"),
    ("599-####", "osaka"),
    ("600-####", "kyoto"),
    ("605####", "kyoto"),
    ("630-####", "nara"),
    ("640-####", "wakayama"),
    ("650-####", "hyogo"),
    ("680-####", "tottori"),
    ("690-####", "shimane"),
    ("700-####", "okayama"),
    ("730-####", "hiroshima"),
    ("753-####", "yamaguchi"),
    ("760-####", "kagawa"),
    ("770-####", "tokushima"),
    ("780-####", "kochi"),
    ("790-####", "ehime"),
    ("810-####", "fukuoka"),
    ("840-####", "saga"),
    ("850-####", "nagasaki"),
    ("860-####", "kumamoto"),
    ("870-####", "oita"),
    ("880-####", "miyazaki"),
    ("890-####", "kagoshima"),
    ("900-####", "okinawa"),
    ("910-####", "fukui"),
    ("920-####", "ishikawa"),
    ("930-####", "toyama"),
    ("950-####", "niigata"),
    ("960-####", "fukushima"),
    ("980-####", "miyagi"),
    ("990-####", "yamagata"),
    ("209-####", "unknown"),
    ("000-####", "unknown"),
    ("12-####", "unknown"),
    ("SW1A 1AA", "unknown"),
    ("90210", "unknown"),
];

/// Age bands with their share of accounts: (youngest, oldest, weight).
pub const AGE_BANDS: &[(u64, u64, u32)] = &[
    (13, 19, 3),
    (20, 29, 18),
    (30, 39, 22),
    (40, 49, 20),
    (50, 59, 16),
    (60, 69, 10),
    (70, 79, 5),
    (80, 89, 2),
    (90, 97, 1),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_consistent_with_bot_definition() {
        for (ua, _) in BROWSERS {
            assert!(!is_bot(ua), "{ua}");
        }
        for bot in BOTS {
            assert!(is_bot(bot.ua), "{}", bot.ua);
        }
        assert!(!is_bot("-"));
        for p in PAGES {
            assert!(!p.path.contains('?') && !p.path.contains('@'));
        }
    }
}
