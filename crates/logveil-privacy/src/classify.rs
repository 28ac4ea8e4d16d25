//! What a user agent is reduced to: the bot flag of the view definition, a [`DeviceClass`]
//! and a [`BrowserFamily`]. The user agent itself never leaves the parse step.
//!
//! A small, table-driven classifier: the first 512 bytes of the user agent are lower-cased
//! (ASCII) into a stack buffer, then three ordered tables of `(needle, class)` are searched
//! with precompiled [`memchr::memmem::Finder`]s. No regular expressions, no allocation.
//! A missing user agent (`-`) is not a bot, device `other`, browser `other`.
//!
//! # Precedence
//!
//! 1. **Bot** ([`BOT_MARKERS`]): any marker makes the agent a bot, with device `bot`. The
//!    crawler words `bot`, `crawler`, `spider` are tried before the tool prefixes
//!    (`curl/`, `python-requests/`, …), so a crawler built on a library
//!    (`python-requests/2.31 (ExampleBot)`) is browser `bot`; an agent that only matches a
//!    tool prefix is browser `tool`. This is the documented view definition
//!    (README "Definitions": **Bot**); only the first 512 bytes are examined.
//! 2. **Device** ([`DEVICE_RULES`]), first match wins: consoles and TVs (`other`, their
//!    agents also name Windows, Linux or Android) → `ipad` (tablet; its agent also says
//!    `Mobile/`) → `windows phone` (mobile; it also names Android) → `windows nt`
//!    (desktop, before `tablet` so Windows "Tablet PC" agents stay desktops) → tablet
//!    tokens → the `mobi` token and phone names (mobile) → `android` without `mobi`
//!    (tablet) → desktop operating systems → `other`.
//! 3. **Browser** ([`BROWSER_RULES`]), first match wins. Most engines copy their
//!    ancestors' tokens, so the order is from derived to ancestor: Edge (`Edg/`, `Edge/`,
//!    `EdgA/`, `EdgiOS/`), Opera (`OPR/`, `Opera`, `OPiOS/`) and Samsung Internet
//!    (`SamsungBrowser/`) all contain `Chrome/`; Firefox (`Firefox/`, `FxiOS/`) and IE
//!    (`MSIE `, `Trident/`) come before Chrome (`Chrome/`, `CriOS/`); every Chromium agent
//!    contains `Safari/`, so Safari is last, after `android` (→ `other`: the old Android
//!    browser says `Safari/` without `Chrome/`). Chromium-based browsers not listed keep the
//!    `Chrome/` token and count as `chrome`; in-app browsers without a `Safari/` token
//!    (`Safari Line/14.16`) are `other`.
//!
//! # Sources
//!
//! - MDN, "Browser detection using the user agent": the token table (`Firefox/`, `Chrome/`
//!   but not `Edg/`, `Safari/` but not `Chrome/`, `OPR/`, `Opera/`, `MSIE`, `Trident/7.0`)
//!   and "look for `Mobi` anywhere in the user agent" for mobile devices.
//! - Microsoft, "Microsoft Edge user agent string" (`Edg/`, `EdgA/`, `EdgiOS/`) and the
//!   Internet Explorer 11 user-agent string (`Trident/7.0; rv:11.0`, no `MSIE`).
//! - Chrome for Developers, "User-Agent reduction" and Android's convention that phones send
//!   `Mobile` and tablets do not; Chrome on iOS (`CriOS/`), Firefox on iOS (`FxiOS/`).
//! - Samsung Internet developer documentation (`SamsungBrowser/`).
//! - Google Search Central, "Google crawlers" (Googlebot Smartphone is an Android Chrome
//!   agent with `Googlebot/2.1` appended: the bot rule must come first).
//! - The bot and tool markers are the view definition's own list (README, "Definitions").
//!
//! Known limits: iPadOS 13+ Safari sends a Macintosh agent by default (→ `desktop`);
//! agents longer than 512 bytes are classified on their first 512 bytes.

use std::fmt;
use std::sync::{Arc, LazyLock};

use memchr::memmem::Finder;

/// How many leading bytes of a user agent are examined (lower-cased on the stack).
pub const MAX_EXAMINED: usize = 512;

/// The kind of device a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceClass {
    Desktop,
    Mobile,
    Tablet,
    /// Every bot or tool agent, and only those.
    Bot,
    /// Missing, unrecognised, consoles and TVs.
    Other,
}

impl DeviceClass {
    pub const ALL: [DeviceClass; 5] = [
        Self::Desktop,
        Self::Mobile,
        Self::Tablet,
        Self::Bot,
        Self::Other,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Desktop => "desktop",
            Self::Mobile => "mobile",
            Self::Tablet => "tablet",
            Self::Bot => "bot",
            Self::Other => "other",
        }
    }

    /// The stable code of this class in event batches ([`crate::wire`]). Never reuse or
    /// renumber a code: a new class gets a new one.
    pub const fn wire_code(self) -> u8 {
        match self {
            Self::Desktop => 0,
            Self::Mobile => 1,
            Self::Tablet => 2,
            Self::Bot => 3,
            Self::Other => 4,
        }
    }

    /// The class of a [`DeviceClass::wire_code`]; `None` for an unknown code.
    pub const fn from_wire_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Desktop,
            1 => Self::Mobile,
            2 => Self::Tablet,
            3 => Self::Bot,
            4 => Self::Other,
            _ => return None,
        })
    }

    /// The name, shared (one allocation per variant for the whole process).
    pub fn shared(self) -> Arc<str> {
        static NAMES: LazyLock<[Arc<str>; 5]> =
            LazyLock::new(|| DeviceClass::ALL.map(|d| Arc::from(d.as_str())));
        Arc::clone(&NAMES[self as usize])
    }
}

impl fmt::Display for DeviceClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The browser family of a request's user agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BrowserFamily {
    Chrome,
    Edge,
    Firefox,
    Safari,
    Opera,
    /// Samsung Internet.
    Samsung,
    /// Internet Explorer.
    Ie,
    /// A crawler (`bot`, `crawler`, `spider`).
    Bot,
    /// An HTTP library or command-line tool (`curl/`, `python-requests/`, …).
    Tool,
    Other,
}

impl BrowserFamily {
    pub const ALL: [BrowserFamily; 10] = [
        Self::Chrome,
        Self::Edge,
        Self::Firefox,
        Self::Safari,
        Self::Opera,
        Self::Samsung,
        Self::Ie,
        Self::Bot,
        Self::Tool,
        Self::Other,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Chrome => "chrome",
            Self::Edge => "edge",
            Self::Firefox => "firefox",
            Self::Safari => "safari",
            Self::Opera => "opera",
            Self::Samsung => "samsung",
            Self::Ie => "ie",
            Self::Bot => "bot",
            Self::Tool => "tool",
            Self::Other => "other",
        }
    }

    /// The stable code of this family in event batches ([`crate::wire`]). Never reuse or
    /// renumber a code: a new family gets a new one.
    pub const fn wire_code(self) -> u8 {
        match self {
            Self::Chrome => 0,
            Self::Edge => 1,
            Self::Firefox => 2,
            Self::Safari => 3,
            Self::Opera => 4,
            Self::Samsung => 5,
            Self::Ie => 6,
            Self::Bot => 7,
            Self::Tool => 8,
            Self::Other => 9,
        }
    }

    /// The family of a [`BrowserFamily::wire_code`]; `None` for an unknown code.
    pub const fn from_wire_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Chrome,
            1 => Self::Edge,
            2 => Self::Firefox,
            3 => Self::Safari,
            4 => Self::Opera,
            5 => Self::Samsung,
            6 => Self::Ie,
            7 => Self::Bot,
            8 => Self::Tool,
            9 => Self::Other,
            _ => return None,
        })
    }

    /// The name, shared (one allocation per variant for the whole process).
    pub fn shared(self) -> Arc<str> {
        static NAMES: LazyLock<[Arc<str>; 10]> =
            LazyLock::new(|| BrowserFamily::ALL.map(|b| Arc::from(b.as_str())));
        Arc::clone(&NAMES[self as usize])
    }
}

impl fmt::Display for BrowserFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The classification of one user agent. `bot` is true exactly when `device` is
/// [`DeviceClass::Bot`], and then `browser` is [`BrowserFamily::Bot`] or [`BrowserFamily::Tool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UaClass {
    pub bot: bool,
    pub device: DeviceClass,
    pub browser: BrowserFamily,
}

/// Lower-case substrings that make a user agent a bot, in precedence order: crawler words
/// (browser `bot`), then tool prefixes (browser `tool`). The view definition.
pub const BOT_MARKERS: &[(&[u8], BrowserFamily)] = &[
    (b"bot", BrowserFamily::Bot),
    (b"crawler", BrowserFamily::Bot),
    (b"spider", BrowserFamily::Bot),
    (b"curl/", BrowserFamily::Tool),
    (b"wget/", BrowserFamily::Tool),
    (b"python-requests/", BrowserFamily::Tool),
    (b"python-urllib/", BrowserFamily::Tool),
    (b"go-http-client/", BrowserFamily::Tool),
    (b"libwww-perl/", BrowserFamily::Tool),
    (b"okhttp/", BrowserFamily::Tool),
    (b"java/", BrowserFamily::Tool),
    (b"scrapy/", BrowserFamily::Tool),
    (b"httpie/", BrowserFamily::Tool),
    (b"apache-httpclient/", BrowserFamily::Tool),
];

/// Device rules for non-bot agents, first match wins (see the module doc).
pub const DEVICE_RULES: &[(&[u8], DeviceClass)] = &[
    // Consoles and TVs also name Windows NT, Linux or Android.
    (b"xbox", DeviceClass::Other),
    (b"playstation", DeviceClass::Other),
    (b"nintendo", DeviceClass::Other),
    (b"smart-tv", DeviceClass::Other),
    (b"smarttv", DeviceClass::Other),
    // iPads say `Mobile/15E148`.
    (b"ipad", DeviceClass::Tablet),
    // Windows 10 Mobile also says `Android`.
    (b"windows phone", DeviceClass::Mobile),
    // Before `tablet`: "Tablet PC" Windows agents are PCs.
    (b"windows nt", DeviceClass::Desktop),
    (b"tablet", DeviceClass::Tablet),
    (b"kindle", DeviceClass::Tablet),
    (b"silk/", DeviceClass::Tablet),
    (b"playbook", DeviceClass::Tablet),
    // MDN: `Mobi` anywhere means a mobile device (`Mobile`, `Opera Mobi`, `IEMobile`).
    (b"mobi", DeviceClass::Mobile),
    (b"iphone", DeviceClass::Mobile),
    (b"ipod", DeviceClass::Mobile),
    (b"blackberry", DeviceClass::Mobile),
    (b"bb10", DeviceClass::Mobile),
    (b"opera mini", DeviceClass::Mobile),
    // Android without a `Mobile` token: a tablet.
    (b"android", DeviceClass::Tablet),
    (b"macintosh", DeviceClass::Desktop),
    (b"x11", DeviceClass::Desktop),
    (b"windows", DeviceClass::Desktop),
    (b"linux", DeviceClass::Desktop),
];

/// Browser rules for non-bot agents, first match wins: derived browsers before the
/// browsers whose tokens they copy (see the module doc).
pub const BROWSER_RULES: &[(&[u8], BrowserFamily)] = &[
    (b"edg/", BrowserFamily::Edge),
    (b"edge/", BrowserFamily::Edge),
    (b"edga/", BrowserFamily::Edge),
    (b"edgios/", BrowserFamily::Edge),
    (b"opr/", BrowserFamily::Opera),
    (b"opera", BrowserFamily::Opera),
    (b"opios/", BrowserFamily::Opera),
    (b"samsungbrowser/", BrowserFamily::Samsung),
    (b"firefox/", BrowserFamily::Firefox),
    (b"fxios/", BrowserFamily::Firefox),
    (b"msie ", BrowserFamily::Ie),
    (b"trident/", BrowserFamily::Ie),
    (b"chrome/", BrowserFamily::Chrome),
    (b"crios/", BrowserFamily::Chrome),
    // The old Android browser says `Safari/` but is not Safari.
    (b"android", BrowserFamily::Other),
    (b"safari/", BrowserFamily::Safari),
];

/// A rule table with its searchers built once.
type Compiled<T> = Box<[(Finder<'static>, T)]>;

fn compile<T: Copy>(rules: &'static [(&'static [u8], T)]) -> Compiled<T> {
    rules
        .iter()
        .map(|&(needle, class)| (Finder::new(needle), class))
        .collect()
}

static BOTS: LazyLock<Compiled<BrowserFamily>> = LazyLock::new(|| compile(BOT_MARKERS));
static DEVICES: LazyLock<Compiled<DeviceClass>> = LazyLock::new(|| compile(DEVICE_RULES));
static BROWSERS: LazyLock<Compiled<BrowserFamily>> = LazyLock::new(|| compile(BROWSER_RULES));

fn first_match<T: Copy>(rules: &[(Finder<'static>, T)], lowered: &[u8]) -> Option<T> {
    rules
        .iter()
        .find(|(finder, _)| finder.find(lowered).is_some())
        .map(|&(_, class)| class)
}

/// The first [`MAX_EXAMINED`] bytes of `ua`, ASCII-lower-cased into `buf`.
fn lowered<'b>(ua: &[u8], buf: &'b mut [u8; MAX_EXAMINED]) -> &'b [u8] {
    let n = ua.len().min(MAX_EXAMINED);
    for (dst, src) in buf[..n].iter_mut().zip(ua) {
        *dst = src.to_ascii_lowercase();
    }
    &buf[..n]
}

/// Classifies a user agent (`None`: the log had `-`). Never allocates after the first call.
pub fn classify(user_agent: Option<&[u8]>) -> UaClass {
    const UNKNOWN: UaClass = UaClass {
        bot: false,
        device: DeviceClass::Other,
        browser: BrowserFamily::Other,
    };
    let Some(ua) = user_agent else {
        return UNKNOWN;
    };
    let mut buf = [0u8; MAX_EXAMINED];
    let ua = lowered(ua, &mut buf);
    if let Some(browser) = first_match(&BOTS, ua) {
        return UaClass {
            bot: true,
            device: DeviceClass::Bot,
            browser,
        };
    }
    UaClass {
        bot: false,
        device: first_match(&DEVICES, ua).unwrap_or(DeviceClass::Other),
        browser: first_match(&BROWSERS, ua).unwrap_or(BrowserFamily::Other),
    }
}

/// Whether a user agent is a bot: its first [`MAX_EXAMINED`] bytes contain (ignoring ASCII
/// case) one of [`BOT_MARKERS`]. A missing user agent is not a bot.
pub fn is_bot(user_agent: Option<&[u8]>) -> bool {
    let Some(ua) = user_agent else { return false };
    let mut buf = [0u8; MAX_EXAMINED];
    first_match(&BOTS, lowered(ua, &mut buf)).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use BrowserFamily as B;
    use DeviceClass as D;

    /// (user agent, bot, device, browser). Real agents as sent by the named browsers.
    const CASES: &[(&str, bool, DeviceClass, BrowserFamily)] = &[
        // Chrome, Windows desktop
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
            false,
            D::Desktop,
            B::Chrome,
        ),
        // Chrome, macOS
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
            false,
            D::Desktop,
            B::Chrome,
        ),
        // Safari, macOS
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
            false,
            D::Desktop,
            B::Safari,
        ),
        // Safari, iPhone
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
            false,
            D::Mobile,
            B::Safari,
        ),
        // Safari, iPad (says Mobile/15E148)
        (
            "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
            false,
            D::Tablet,
            B::Safari,
        ),
        // Chrome, Android phone
        (
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36",
            false,
            D::Mobile,
            B::Chrome,
        ),
        // Chrome, Android tablet: no Mobile token
        (
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
            false,
            D::Tablet,
            B::Chrome,
        ),
        // Chrome, iOS
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/126.0.6478.153 Mobile/15E148 Safari/604.1",
            false,
            D::Mobile,
            B::Chrome,
        ),
        // Edge, Windows (contains Chrome/ and Safari/)
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0",
            false,
            D::Desktop,
            B::Edge,
        ),
        // Edge, Android
        (
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36 EdgA/130.0.0.0",
            false,
            D::Mobile,
            B::Edge,
        ),
        // Legacy Edge (EdgeHTML)
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edge/18.19582",
            false,
            D::Desktop,
            B::Edge,
        ),
        // Firefox, Windows
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0",
            false,
            D::Desktop,
            B::Firefox,
        ),
        // Firefox, Linux
        (
            "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
            false,
            D::Desktop,
            B::Firefox,
        ),
        // Firefox, Android phone and tablet
        (
            "Mozilla/5.0 (Android 14; Mobile; rv:132.0) Gecko/132.0 Firefox/132.0",
            false,
            D::Mobile,
            B::Firefox,
        ),
        (
            "Mozilla/5.0 (Android 14; Tablet; rv:132.0) Gecko/132.0 Firefox/132.0",
            false,
            D::Tablet,
            B::Firefox,
        ),
        // Samsung Internet, phone (contains Chrome/ and Safari/)
        (
            "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
            false,
            D::Mobile,
            B::Samsung,
        ),
        // Samsung Internet, tablet
        (
            "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Safari/537.36",
            false,
            D::Tablet,
            B::Samsung,
        ),
        // Opera, Windows (contains Chrome/)
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36 OPR/114.0.0.0",
            false,
            D::Desktop,
            B::Opera,
        ),
        // Opera Mini (Presto)
        (
            "Opera/9.80 (J2ME/MIDP; Opera Mini/9.80 (S60; SymbOS; Opera Mobi/23.348; U; en) Presto/2.5.25 Version/10.54",
            false,
            D::Mobile,
            B::Opera,
        ),
        // Internet Explorer 11: Trident, no MSIE
        (
            "Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko",
            false,
            D::Desktop,
            B::Ie,
        ),
        // Internet Explorer 9 on a "Tablet PC": still a desktop
        (
            "Mozilla/5.0 (compatible; MSIE 9.0; Windows NT 6.1; Trident/5.0; Tablet PC 2.0)",
            false,
            D::Desktop,
            B::Ie,
        ),
        // Windows Phone 10 (names Android, Edge)
        (
            "Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/52.0.2743.116 Mobile Safari/537.36 Edge/15.15063",
            false,
            D::Mobile,
            B::Edge,
        ),
        // Old Android browser: Safari/ without Chrome/
        (
            "Mozilla/5.0 (Linux; U; Android 4.0.3; ko-kr; LG-L160L Build/IML74K) AppleWebKit/534.30 (KHTML, like Gecko) Version/4.0 Mobile Safari/534.30",
            false,
            D::Mobile,
            B::Other,
        ),
        // LINE in-app browser: no Safari/ token
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Safari Line/14.16.0",
            false,
            D::Mobile,
            B::Other,
        ),
        // Chrome OS
        (
            "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
            false,
            D::Desktop,
            B::Chrome,
        ),
        // Xbox (names Windows NT and Edge)
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; Xbox; Xbox One) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edge/18.19041",
            false,
            D::Other,
            B::Edge,
        ),
        // Kindle Fire (Silk)
        (
            "Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/126.3.1 like Chrome/126.0.6478.153 Safari/537.36",
            false,
            D::Tablet,
            B::Chrome,
        ),
        // Googlebot smartphone: an Android Chrome agent, but a bot
        (
            "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.6723.69 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            true,
            D::Bot,
            B::Bot,
        ),
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            true,
            D::Bot,
            B::Bot,
        ),
        (
            "Mozilla/5.0 (compatible; bingbot/2.0)",
            true,
            D::Bot,
            B::Bot,
        ),
        ("SomeCrawler/1.0", true, D::Bot, B::Bot),
        (
            "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
            true,
            D::Bot,
            B::Bot,
        ),
        // Tools
        ("curl/8.5.0", true, D::Bot, B::Tool),
        ("Wget/1.21", true, D::Bot, B::Tool),
        ("python-requests/2.31.0", true, D::Bot, B::Tool),
        ("Go-http-client/1.1", true, D::Bot, B::Tool),
        ("Java/17.0.2", true, D::Bot, B::Tool),
        ("okhttp/4.12.0", true, D::Bot, B::Tool),
        // A crawler built on a tool library: crawler words win
        ("python-requests/2.31 (ExampleBot)", true, D::Bot, B::Bot),
        // Empty and unrecognised
        ("", false, D::Other, B::Other),
        ("Mozilla/5.0", false, D::Other, B::Other),
    ];

    #[test]
    fn real_user_agents() {
        for &(ua, bot, device, browser) in CASES {
            let expected = UaClass {
                bot,
                device,
                browser,
            };
            assert_eq!(classify(Some(ua.as_bytes())), expected, "{ua}");
            // Case does not matter.
            assert_eq!(
                classify(Some(ua.to_ascii_uppercase().as_bytes())),
                expected,
                "{ua}"
            );
            assert_eq!(is_bot(Some(ua.as_bytes())), bot, "{ua}");
        }
    }

    #[test]
    fn missing_user_agent() {
        assert_eq!(
            classify(None),
            UaClass {
                bot: false,
                device: D::Other,
                browser: B::Other
            }
        );
        assert!(!is_bot(None));
    }

    #[test]
    fn names_are_the_documented_sets_and_shared() {
        let devices: Vec<&str> = D::ALL.iter().map(|d| d.as_str()).collect();
        assert_eq!(devices, ["desktop", "mobile", "tablet", "bot", "other"]);
        let browsers: Vec<&str> = B::ALL.iter().map(|b| b.as_str()).collect();
        assert_eq!(
            browsers,
            [
                "chrome", "edge", "firefox", "safari", "opera", "samsung", "ie", "bot", "tool",
                "other"
            ]
        );
        for d in D::ALL {
            assert_eq!(&*d.shared(), d.as_str());
            assert!(Arc::ptr_eq(&d.shared(), &d.shared()));
        }
        for b in B::ALL {
            assert_eq!(&*b.shared(), b.as_str());
            assert!(Arc::ptr_eq(&b.shared(), &b.shared()));
        }
    }

    #[test]
    fn only_the_first_512_bytes_are_examined() {
        let mut ua = vec![b'x'; MAX_EXAMINED - 3];
        ua.extend_from_slice(b"Bot");
        assert!(is_bot(Some(&ua)));
        ua.insert(0, b'x');
        assert!(!is_bot(Some(&ua)));
    }

    #[test]
    fn readme_definitions_list_every_needle() {
        let readme = include_str!("../../../README.md").to_ascii_lowercase();
        let start = readme.find("## definitions").unwrap();
        let end = start + readme[start..].find("\n## ").unwrap();
        let definitions = &readme[start..end];
        let needles = BOT_MARKERS
            .iter()
            .map(|r| r.0)
            .chain(DEVICE_RULES.iter().map(|r| r.0))
            .chain(BROWSER_RULES.iter().map(|r| r.0));
        for needle in needles {
            let quoted = format!("`{}`", std::str::from_utf8(needle).unwrap());
            assert!(definitions.contains(&quoted), "README lacks {quoted}");
        }
    }

    /// The bot definition as it was before the classifier: any marker in the lower-cased
    /// first 512 bytes.
    fn reference_is_bot(ua: &[u8]) -> bool {
        let lowered = ua[..ua.len().min(512)].to_ascii_lowercase();
        BOT_MARKERS
            .iter()
            .any(|(m, _)| lowered.windows(m.len()).any(|w| w == *m))
    }

    /// Arbitrary bytes mixed with tokens the tables look for, so that rules fire.
    fn user_agent() -> impl Strategy<Value = Vec<u8>> {
        let tokens: Vec<&'static [u8]> = BOT_MARKERS
            .iter()
            .map(|r| r.0)
            .chain(DEVICE_RULES.iter().map(|r| r.0))
            .chain(BROWSER_RULES.iter().map(|r| r.0))
            .chain([
                &b"Mozilla/5.0 ("[..],
                &b"BOT"[..],
                &b"Mobile"[..],
                &b"; "[..],
                &b"\xff\xfe"[..],
            ])
            .collect();
        prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..12),
                prop::sample::select(tokens).prop_map(<[u8]>::to_vec),
            ],
            0..40,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn never_panics_and_bot_is_device_bot(ua in user_agent()) {
            let c = classify(Some(&ua));
            prop_assert_eq!(c.bot, c.device == D::Bot);
            prop_assert_eq!(c.bot, matches!(c.browser, B::Bot | B::Tool));
            prop_assert_eq!(c.bot, is_bot(Some(&ua)));
            prop_assert_eq!(c.bot, reference_is_bot(&ua));
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(ua in prop::collection::vec(any::<u8>(), 0..1200)) {
            let c = classify(Some(&ua));
            prop_assert_eq!(c.bot, c.device == D::Bot);
            prop_assert_eq!(c.bot, reference_is_bot(&ua));
        }
    }
}
