//! [`Event`]: the record that leaves the parse/pseudonymize step. It cannot hold a raw identifier.

use logveil_parse::LogRecord;
use logveil_parse::time::MICROS_PER_DAY;

use crate::classify::{BrowserFamily, DeviceClass, UaClass, classify};
use crate::client::{ClientPolicy, IpPrefix, canonical_client, parse_ip};
use crate::pseudonym::{Pseudonym, Pseudonymizer};
use crate::sanitize::{
    LineIdentifiers, Page, PageGroup, QueryValues, ReferrerDomain, SanitizePolicy,
};

/// The request method, reduced to what reports distinguish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Other,
}

impl Method {
    /// The stable code of this method in event batches ([`crate::wire`]). Never reuse or
    /// renumber a code: a new method gets a new one.
    pub const fn wire_code(self) -> u8 {
        match self {
            Self::Get => 0,
            Self::Head => 1,
            Self::Post => 2,
            Self::Other => 3,
        }
    }

    /// The method of a [`Method::wire_code`]; `None` for an unknown code.
    pub const fn from_wire_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Get,
            1 => Self::Head,
            2 => Self::Post,
            3 => Self::Other,
            _ => return None,
        })
    }

    fn from_bytes(method: Option<&[u8]>) -> Self {
        match method {
            Some(b"GET") => Self::Get,
            Some(b"HEAD") => Self::Head,
            Some(b"POST") => Self::Post,
            _ => Self::Other,
        }
    }
}

/// One request after pseudonymization.
///
/// The invariant the whole pipeline rests on: **no field of `Event` can hold a raw IP,
/// cookie value, user name or e-mail.** It is enforced by types, not by convention:
/// [`Pseudonym`] is built only by keyed hashing, [`Page`] only by the sanitiser (path
/// without query, personal-looking segments redacted), [`QueryValues`] only from the
/// policy's allow-listed parameters (personal-looking values redacted), [`PageGroup`]
/// only from the pipeline's route templates, [`ReferrerDomain`] only by host
/// extraction; the user agent is reduced to a bot flag, a [`DeviceClass`] and a
/// [`BrowserFamily`] (closed enums). Raw values exist only as
/// `logveil_parse::RawIdentifier`s, which borrow the input buffer and cannot be stored.
///
/// An event can also be decoded from an event batch ([`crate::wire`]). Its values then
/// come through `pub(crate)` `from_wire` constructors that only the decoder calls, so the
/// invariant reads: every value was **built by the sanitiser (or keyed hashing), or
/// decoded from a batch that an edge built from such values**. The decoder checks what
/// it can without the raw input — the shape of each text (a page starts with `/` and has
/// no query, …), the /24 and /64 caps and zero host bits of [`IpPrefix`], the enum codes,
/// `bot` exactly when `device` is `Bot` — but it cannot re-run the sanitiser, so it trusts
/// the edge that built the batch as much as the code that builds events here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub utc_micros: i64,
    pub visitor: Pseudonym,
    /// The id of the key that made `visitor` (the key in force on the event's UTC day).
    pub key_id: std::sync::Arc<str>,
    /// Whether `visitor` came from the visitor cookie (`false`: from IP + user agent + day).
    pub cookie_visitor: bool,
    pub method: Method,
    pub status: Option<u16>,
    pub bytes: u64,
    /// `None` when the line had no usable request target (`"-"`, junk).
    pub page: Option<Page>,
    /// The route template `page` matches; `None` without a page or without templates.
    pub page_group: Option<PageGroup>,
    /// The allow-listed query values (`utm_source`, …); nothing else of the query.
    pub query: QueryValues,
    pub referrer: ReferrerDomain,
    /// The client's network (`None` for host names): truncated here, the address is gone.
    pub ip_prefix: Option<IpPrefix>,
    /// The user agent is a bot or tool ([`crate::classify`]); exactly when `device` is
    /// [`DeviceClass::Bot`].
    pub bot: bool,
    pub device: DeviceClass,
    pub browser: BrowserFamily,
}

impl Event {
    /// A *view*: a well-formed GET request answered 200–399, from a non-bot user agent
    /// unless `include_bots`.
    pub fn is_view(&self, include_bots: bool) -> bool {
        self.method == Method::Get
            && self.page.is_some()
            && self.status.is_some_and(|s| (200..400).contains(&s))
            && (include_bots || !self.bot)
    }

    /// The UTC day (days since 1970-01-01).
    pub fn utc_day(&self) -> i32 {
        self.utc_micros.div_euclid(MICROS_PER_DAY) as i32
    }
}

/// Per-chunk memo of [`Pseudonymizer::event_cached`]: a cookie, address, user agent,
/// request target or Referer that repeats within one chunk is hashed, parsed, classified
/// or sanitised once.
///
/// Keys borrow the chunk (`'a`): the cache holds no copy of any raw identifier and dies
/// with the chunk, like the records it was filled from. Values are what the uncached path
/// computes from the same bytes, so events are identical with and without the cache. One
/// cache serves one [`Pseudonymizer`] (checked) and one client and sanitise policy.
pub struct EventCache<'a> {
    /// The pseudonymizer this cache was made for (its address: never dereferenced).
    owner: usize,
    /// The key id, allocated for this cache: cloning it per event touches no counter shared
    /// with other threads.
    key_id: std::sync::Arc<str>,
    /// Whether events get their `ip_prefix` ([`EventCache::without_ip_prefix`]).
    ip_prefix: bool,
    cookies: FastMap<&'a [u8], Pseudonym>,
    fallback: FastMap<(&'a [u8], &'a [u8], i32), Pseudonym>,
    prefixes: FastMap<&'a [u8], Option<IpPrefix>>,
    agents: FastMap<&'a [u8], UaClass>,
    targets: FastMap<&'a [u8], Target>,
    referers: FastMap<&'a [u8], ReferrerDomain>,
}

type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// What a request target becomes.
#[derive(Clone)]
struct Target {
    page: Option<Page>,
    page_group: Option<PageGroup>,
    query: QueryValues,
}

impl std::fmt::Debug for EventCache<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Sizes only: the keys are raw log bytes.
        f.debug_struct("EventCache")
            .field("cookies", &self.cookies.len())
            .field("fallback", &self.fallback.len())
            .field("prefixes", &self.prefixes.len())
            .field("agents", &self.agents.len())
            .field("targets", &self.targets.len())
            .field("referers", &self.referers.len())
            .finish_non_exhaustive()
    }
}

impl EventCache<'_> {
    /// An empty cache for `pseudonymizer`'s events.
    pub fn new(pseudonymizer: &Pseudonymizer) -> Self {
        Self {
            owner: std::ptr::from_ref(pseudonymizer) as usize,
            key_id: std::sync::Arc::from(pseudonymizer.key_id().as_str()),
            ip_prefix: true,
            cookies: FastMap::default(),
            fallback: FastMap::default(),
            prefixes: FastMap::default(),
            agents: FastMap::default(),
            targets: FastMap::default(),
            referers: FastMap::default(),
        }
    }
}

impl EventCache<'_> {
    /// Events made through this cache carry no `ip_prefix` (`None`): for runs in which no
    /// report has the `ip_prefix` dimension, which then need not parse every address.
    #[must_use]
    pub fn without_ip_prefix(mut self) -> Self {
        self.ip_prefix = false;
        self
    }
}

fn target_of(target: &[u8], sanitize: &SanitizePolicy) -> Target {
    let page = Page::from_target(target);
    Target {
        page_group: sanitize.routes.group(&page),
        query: QueryValues::from_target(target, sanitize.query_allow),
        page: Some(page),
    }
}

fn no_target() -> Target {
    Target {
        page: None,
        page_group: None,
        query: QueryValues::default(),
    }
}

impl Pseudonymizer {
    /// Hashes and sanitises one parsed record. The record (and with it every raw
    /// identifier) can be dropped as soon as this returns.
    ///
    /// The client is the connecting address, or the `X-Forwarded-For` client when the
    /// peer is one of `trusted_proxies`; it is hashed in canonical form (see [`crate::client`]).
    /// The request target becomes a [`Page`], its [`PageGroup`] and the query values
    /// `sanitize` allows (see [`crate::sanitize`]).
    ///
    /// Returns `None` only when the record has no time, which the parser never yields.
    pub fn event(
        &self,
        record: &LogRecord<'_>,
        client_policy: &ClientPolicy,
        sanitize: &SanitizePolicy,
    ) -> Option<Event> {
        let utc_micros = record.time?.utc_micros;
        let utc_day = utc_micros.div_euclid(MICROS_PER_DAY) as i32;
        let client = client_policy.trusted_proxies.client(
            record.client.map(|c| c.expose_for_hashing()),
            record.forwarded_for.map(|f| f.expose_for_hashing()),
        );
        let ip_prefix = client
            .and_then(parse_ip)
            .map(|ip| IpPrefix::of(ip, client_policy));
        let (visitor, cookie_visitor) = if let Some(cookie) = record.visitor_cookie {
            (self.visitor_from_cookie(cookie.expose_for_hashing()), true)
        } else {
            (
                self.fallback_visitor(client, record.user_agent, utc_day),
                false,
            )
        };
        let own = own_identifiers(record, client);
        let target = request_target(record).map_or_else(no_target, |t| match own.redact(t) {
            Some(redacted) => target_of(&redacted, sanitize),
            None => target_of(t, sanitize),
        });
        let referrer = match record.referer.and_then(|r| own.redact(r)) {
            Some(redacted) => ReferrerDomain::from_referer(Some(&redacted)),
            None => ReferrerDomain::from_referer(record.referer),
        };
        let ua = classify(record.user_agent);
        Some(self.assemble(
            record,
            utc_micros,
            (visitor, cookie_visitor),
            self.key_id_shared(),
            target,
            referrer,
            ip_prefix,
            ua,
        ))
    }

    /// [`Pseudonymizer::event`] through a per-chunk [`EventCache`]: the same event, with
    /// repeated cookies, addresses, user agents, targets and referers looked up instead of
    /// recomputed. `client_policy` and `sanitize` must be the same for every call with
    /// one cache.
    ///
    /// # Panics
    /// When `cache` was made for another pseudonymizer.
    pub fn event_cached<'a>(
        &self,
        record: &LogRecord<'a>,
        client_policy: &ClientPolicy,
        sanitize: &SanitizePolicy,
        cache: &mut EventCache<'a>,
    ) -> Option<Event> {
        assert_eq!(
            cache.owner,
            std::ptr::from_ref(self) as usize,
            "an EventCache serves one pseudonymizer"
        );
        let utc_micros = record.time?.utc_micros;
        let utc_day = utc_micros.div_euclid(MICROS_PER_DAY) as i32;
        let client = client_policy.trusted_proxies.client(
            record.client.map(|c| c.expose_for_hashing()),
            record.forwarded_for.map(|f| f.expose_for_hashing()),
        );
        let ip_prefix = client.filter(|_| cache.ip_prefix).and_then(|c| {
            *cache
                .prefixes
                .entry(c)
                .or_insert_with(|| parse_ip(c).map(|ip| IpPrefix::of(ip, client_policy)))
        });
        let visitor = if let Some(cookie) = record.visitor_cookie {
            let cookie = cookie.expose_for_hashing();
            let v = *cache
                .cookies
                .entry(cookie)
                .or_insert_with(|| self.visitor_from_cookie(cookie));
            (v, true)
        } else {
            let key = (
                client.unwrap_or_default(),
                record.user_agent.unwrap_or_default(),
                utc_day,
            );
            // `None` and an empty client or agent hash alike (the uncached path uses `""`).
            let v = *cache
                .fallback
                .entry(key)
                .or_insert_with(|| self.fallback_visitor(client, record.user_agent, utc_day));
            (v, false)
        };
        // A target or Referer holding the line's own identifiers is sanitised uncached:
        // its result depends on the line, not only on its bytes.
        let own = own_identifiers(record, client);
        let target = match request_target(record) {
            Some(t) => match own.redact(t) {
                Some(redacted) => target_of(&redacted, sanitize),
                None => cache
                    .targets
                    .entry(t)
                    .or_insert_with(|| target_of(t, sanitize))
                    .clone(),
            },
            None => no_target(),
        };
        let referrer = match record.referer {
            Some(r) if let Some(redacted) = own.redact(r) => {
                ReferrerDomain::from_referer(Some(&redacted))
            }
            Some(r) => cache
                .referers
                .entry(r)
                .or_insert_with(|| ReferrerDomain::from_referer(Some(r)))
                .clone(),
            None => ReferrerDomain::from_referer(None),
        };
        let ua = match record.user_agent {
            Some(agent) => *cache
                .agents
                .entry(agent)
                .or_insert_with(|| classify(Some(agent))),
            None => classify(None),
        };
        Some(self.assemble(
            record,
            utc_micros,
            visitor,
            std::sync::Arc::clone(&cache.key_id),
            target,
            referrer,
            ip_prefix,
            ua,
        ))
    }

    /// The cookieless visitor: client (canonical form) + user agent + UTC day.
    fn fallback_visitor(
        &self,
        client: Option<&[u8]>,
        ua: Option<&[u8]>,
        utc_day: i32,
    ) -> Pseudonym {
        let mut buf = [0u8; 256];
        let client = client.map_or(&b""[..], |c| canonical_client(c, &mut buf));
        self.visitor_from_client(client, ua.unwrap_or_default(), utc_day)
    }

    #[allow(clippy::too_many_arguments, reason = "the parts of one event")]
    #[allow(clippy::unused_self, reason = "an event is made by its pseudonymizer")]
    fn assemble(
        &self,
        record: &LogRecord<'_>,
        utc_micros: i64,
        (visitor, cookie_visitor): (Pseudonym, bool),
        key_id: std::sync::Arc<str>,
        target: Target,
        referrer: ReferrerDomain,
        ip_prefix: Option<IpPrefix>,
        ua: UaClass,
    ) -> Event {
        Event {
            utc_micros,
            visitor,
            key_id,
            cookie_visitor,
            method: Method::from_bytes(record.method()),
            status: record.status,
            bytes: record.bytes.unwrap_or(0),
            page: target.page,
            page_group: target.page_group,
            query: target.query,
            referrer,
            ip_prefix,
            bot: ua.bot,
            device: ua.device,
            browser: ua.browser,
        }
    }
}

/// The line's own identifiers, to be redacted from its path, query and Referer: the peer
/// address, the client chosen behind trusted proxies, and the visitor cookie.
fn own_identifiers<'a>(record: &LogRecord<'a>, client: Option<&'a [u8]>) -> LineIdentifiers<'a> {
    let peer = record.client.map(|c| c.expose_for_hashing());
    LineIdentifiers::new(
        [peer, client.filter(|c| Some(*c) != peer)],
        record.visitor_cookie.map(|c| c.expose_for_hashing()),
    )
}

/// The request target a page is made from: origin-form or absolute-form only.
fn request_target<'a>(record: &LogRecord<'a>) -> Option<&'a [u8]> {
    // `LogRecord::target_path`, with the record's lifetime (cache keys borrow the chunk).
    record
        .request
        .map(|r| r.target)
        .or(record.url_path)
        .filter(|t| t.starts_with(b"/") || t.starts_with(b"http"))
        .map(strip_absolute_form)
}

/// `GET http://host/path` (absolute-form, sent to proxies) → `/path`.
fn strip_absolute_form(target: &[u8]) -> &[u8] {
    if target.starts_with(b"/") {
        return target;
    }
    let after = memchr::memmem::find(target, b"://").map_or(0, |i| i + 3);
    memchr::memchr(b'/', &target[after..]).map_or(b"/", |i| &target[after + i..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use logveil_parse::{LineParser, LogFormat};

    fn pseudonymizer() -> Pseudonymizer {
        crate::test_keys::pseudonymizer("t", "ab")
    }

    #[test]
    fn cookie_visitor_ignores_ip_and_fallback_uses_day() {
        let p = pseudonymizer();
        let parser = LineParser::new(
            LogFormat::from_name_or_format("combined_cookie").unwrap(),
            Some("jt_uid"),
        );
        let line = |ip: &str, day: &str, cookie: &str| {
            format!(
                r#"{ip} - - [{day}/Nov/2026:12:00:00 +0000] "GET /a?email=x%40example.com HTTP/1.1" 200 10 "-" "UA" "{cookie}""#
            )
        };
        let ev = |l: String| {
            p.event(
                &parser.parse(l.as_bytes()).unwrap(),
                &ClientPolicy::default(),
                &SanitizePolicy::default(),
            )
            .unwrap()
        };
        let a = ev(line("192.0.2.1", "01", "jt_uid=u-1"));
        let b = ev(line("192.0.2.2", "02", "jt_uid=u-1"));
        assert!(a.cookie_visitor && a.visitor == b.visitor);
        assert_eq!(a.page.as_ref().unwrap().as_str(), "/a");
        assert!(a.is_view(false));
        let c = ev(line("192.0.2.1", "01", "-"));
        let d = ev(line("192.0.2.1", "02", "-"));
        let e = ev(line("192.0.2.1", "01", "other=1"));
        assert!(!c.cookie_visitor);
        assert_ne!(
            c.visitor, d.visitor,
            "fallback visitor changes with the UTC day"
        );
        assert_eq!(c.visitor, e.visitor);
        assert_ne!(a.visitor, c.visitor);
    }

    #[test]
    fn view_definition() {
        let p = pseudonymizer();
        let parser = LineParser::new(LogFormat::from_name_or_format("combined").unwrap(), None);
        let ev = |req: &str, status: &str, ua: &str| {
            let l = format!(
                r#"192.0.2.1 - - [01/Nov/2026:12:00:00 +0000] "{req}" {status} 10 "-" "{ua}""#
            );
            p.event(
                &parser.parse(l.as_bytes()).unwrap(),
                &ClientPolicy::default(),
                &SanitizePolicy::default(),
            )
            .unwrap()
        };
        assert!(ev("GET / HTTP/1.1", "200", "Mozilla").is_view(false));
        assert!(ev("GET / HTTP/1.1", "399", "Mozilla").is_view(false));
        assert!(!ev("GET / HTTP/1.1", "404", "Mozilla").is_view(false));
        assert!(!ev("POST / HTTP/1.1", "200", "Mozilla").is_view(false));
        assert!(!ev("GET / HTTP/1.1", "200", "Googlebot").is_view(false));
        assert!(ev("GET / HTTP/1.1", "200", "Googlebot").is_view(true));
        let bot = ev("GET / HTTP/1.1", "200", "Googlebot");
        assert!(bot.bot && bot.device == DeviceClass::Bot && bot.browser == BrowserFamily::Bot);
        let phone = ev(
            "GET / HTTP/1.1",
            "200",
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36",
        );
        assert!(!phone.bot);
        assert_eq!(
            (phone.device, phone.browser),
            (DeviceClass::Mobile, BrowserFamily::Chrome)
        );
        let missing = ev("GET / HTTP/1.1", "200", "-");
        assert!(!missing.bot && missing.is_view(false));
        assert_eq!(
            (missing.device, missing.browser),
            (DeviceClass::Other, BrowserFamily::Other)
        );
        assert!(!ev("-", "400", "Mozilla").is_view(true));
        assert_eq!(
            ev("GET http://h.example/x?q HTTP/1.1", "200", "M")
                .page
                .unwrap()
                .as_str(),
            "/x"
        );
    }

    #[test]
    fn query_values_and_page_group_follow_the_sanitize_policy() {
        use crate::sanitize::{QueryAllow, QueryParam, RouteTemplates};
        let p = pseudonymizer();
        let parser = LineParser::new(LogFormat::from_name_or_format("combined").unwrap(), None);
        let record = |target: &str| {
            format!(
                r#"192.0.2.1 - - [01/Nov/2026:12:00:00 +0000] "GET {target} HTTP/1.1" 200 10 "-" "M""#
            )
        };
        let sanitize = SanitizePolicy {
            query_allow: QueryAllow::default().with(QueryParam::UtmSource),
            routes: RouteTemplates::parse(&["/en/{city}/hotels/{id}".to_owned()]).unwrap(),
        };
        let ev = |target: &str, sanitize: &SanitizePolicy| {
            let l = record(target);
            p.event(
                &parser.parse(l.as_bytes()).unwrap(),
                &ClientPolicy::default(),
                sanitize,
            )
            .unwrap()
        };
        let e = ev(
            "/en/tokyo/hotels/0a1b2c3d4e5f60718293a4b5c6d7e8f9?utm_source=News&utm_medium=email&email=a%40b.example",
            &sanitize,
        );
        assert_eq!(
            e.page.as_ref().unwrap().as_str(),
            "/en/tokyo/hotels/:redacted"
        );
        assert_eq!(
            e.page_group.as_ref().unwrap().as_str(),
            "/en/{city}/hotels/{id}"
        );
        assert_eq!(e.query.get(QueryParam::UtmSource).unwrap().as_str(), "news");
        assert!(
            e.query.get(QueryParam::UtmMedium).is_none(),
            "not allow-listed"
        );
        let e = ev("http://h.example/en/x?utm_source=y", &sanitize);
        assert_eq!(e.page_group.as_ref().unwrap().as_str(), "(other)");
        assert_eq!(e.query.get(QueryParam::UtmSource).unwrap().as_str(), "y");
        let e = ev("/en/x?utm_source=y", &SanitizePolicy::default());
        assert!(e.page_group.is_none() && e.query == QueryValues::default());
        let e = ev("*", &sanitize);
        assert!(e.page.is_none() && e.page_group.is_none());
    }

    fn own_line(client: &str, target: &str, referer: &str, cookie: &str) -> String {
        format!(
            r#"{client} - - [01/Nov/2026:12:00:00 +0000] "GET {target} HTTP/1.1" 200 10 "{referer}" "Mozilla/5.0" "jt_uid={cookie}""#
        )
    }

    /// The event of `line` through both paths (uncached, and cached twice), which agree.
    fn own_event(line: &str) -> Event {
        use crate::sanitize::{QueryAllow, QueryParam};
        let p = pseudonymizer();
        let parser = LineParser::new(
            LogFormat::from_name_or_format("combined_cookie").unwrap(),
            Some("jt_uid"),
        );
        let sanitize = SanitizePolicy {
            query_allow: QueryParam::ALL.into_iter().collect::<QueryAllow>(),
            ..SanitizePolicy::default()
        };
        let record = parser.parse(line.as_bytes()).unwrap();
        let a = p
            .event(&record, &ClientPolicy::default(), &sanitize)
            .unwrap();
        let mut cache = EventCache::new(&p);
        for _ in 0..2 {
            let b = p
                .event_cached(&record, &ClientPolicy::default(), &sanitize, &mut cache)
                .unwrap();
            assert_eq!(
                (&a.page, &a.query, &a.referrer),
                (&b.page, &b.query, &b.referrer)
            );
        }
        a
    }

    #[test]
    fn the_lines_own_identifiers_are_redacted_before_aggregation() {
        use crate::sanitize::QueryParam;
        let e = own_event(&own_line(
            "203.0.113.77",
            "/geo/203.0.113.77/tanaka-hanako-77?utm_source=203-0-113-77&utm_medium=TANAKA-HANAKO-77",
            "https://tanaka-hanako-77/",
            "tanaka-hanako-77",
        ));
        assert_eq!(e.page.unwrap().as_str(), "/geo/:redacted/:redacted");
        assert_eq!(
            e.query.get(QueryParam::UtmSource).unwrap().as_str(),
            ":redacted"
        );
        assert_eq!(
            e.query.get(QueryParam::UtmMedium).unwrap().as_str(),
            ":redacted"
        );
        assert_eq!(e.referrer.as_str(), ":redacted");
        // The same target from another client and cookie keeps the cookie (the address
        // is an IP literal, redacted whoever sent it); the cache filled by that line
        // does not leak into this one, or back.
        let e = own_event(&own_line(
            "2001:db8::1",
            "/geo/203.0.113.77/tanaka-hanako-77",
            "http://[2001:DB8::1]:8080/x",
            "other-cookie",
        ));
        assert_eq!(e.page.unwrap().as_str(), "/geo/:redacted/tanaka-hanako-77");
        assert_eq!(e.referrer.as_str(), crate::sanitize::IP_REFERRER);
    }

    /// Every textual form of an address, as the sanitiser must never let through.
    fn address_forms(ip: std::net::IpAddr) -> Vec<String> {
        use std::net::IpAddr;
        match ip {
            IpAddr::V4(v4) => {
                let [a, b, c, d] = v4.octets();
                vec![
                    format!("{a}.{b}.{c}.{d}"),
                    format!("{a}-{b}-{c}-{d}"),
                    format!("{a}_{b}_{c}_{d}"),
                    format!("::ffff:{v4}"),
                    format!("{a}%2e{b}%2e{c}%2e{d}"),
                ]
            }
            IpAddr::V6(v6) => {
                let g = v6.segments();
                vec![
                    v6.to_string(),
                    format!("[{v6}]"),
                    g.map(|g| format!("{g:04x}")).join(":"),
                    g.map(|g| format!("{g:x}")).join(":"),
                    v6.to_string().replace(':', "%3a"),
                ]
            }
        }
    }

    /// Percent-decoded twice and lower-cased.
    fn decoded_lower(text: &str) -> String {
        let once = crate::sanitize::tests_support::decode(text.as_bytes());
        let twice = crate::sanitize::tests_support::decode(&once);
        String::from_utf8_lossy(&twice).to_lowercase()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// The line's own address and cookie, planted in its path, query and Referer in
        /// any form and case, never come out in its page, query values or referrer domain.
        #[test]
        fn planted_own_identifiers_never_come_out(
            v4 in proptest::prelude::any::<[u8; 4]>(),
            v6 in proptest::prelude::any::<[u16; 8]>(),
            zeros in 0usize..5,
            use_v6 in proptest::prelude::any::<bool>(),
            cookie in "[A-Za-z0-9][A-Za-z0-9_-]{6,30}[A-Za-z0-9]",
            words in proptest::collection::vec("[a-z]{1,8}", 1..5),
            seps in proptest::collection::vec(proptest::sample::select(vec!["/", "-", "_", ".", "~", "/x-"]), 4),
            picks in proptest::collection::vec(0usize..6, 4),
            upper in proptest::prelude::any::<bool>(),
        ) {
            use crate::sanitize::QueryParam;
            use std::net::IpAddr;
            let ip = if use_v6 {
                let mut g = v6;
                // Runs of zero groups, which the compressed form drops.
                for x in g.iter_mut().skip(2).take(zeros) {
                    *x = 0;
                }
                IpAddr::from(g)
            } else {
                IpAddr::from(v4)
            };
            let forms = address_forms(ip);
            let mut planted: Vec<String> = forms.clone();
            planted.push(cookie.clone());
            planted.push(cookie.replace('-', "%2D"));
            let pick = |i: usize| {
                let p = planted[picks[i] % planted.len()].clone();
                if upper { p.to_uppercase() } else { p }
            };
            let w = |i: usize| words[i % words.len()].clone();
            let target = format!(
                "/{}{}{}{}{}/{}?utm_source={}&utm_campaign={}{}{}",
                w(0), seps[0], pick(0), seps[1], w(1), pick(1), pick(2), w(2), seps[2], pick(3),
            );
            let host = if upper { cookie.to_uppercase() } else { cookie.clone() };
            let referer = format!("https://{host}/{}{}{}", w(3), seps[3], pick(0));
            let client = match ip {
                IpAddr::V6(v6) => v6.to_string(),
                IpAddr::V4(v4) => v4.to_string(),
            };
            let e = own_event(&own_line(&client, &target, &referer, &cookie));
            let mut outputs = vec![
                e.page.unwrap().as_str().to_owned(),
                e.referrer.as_str().to_owned(),
            ];
            outputs.extend(QueryParam::ALL.iter().filter_map(|p| e.query.get(*p)).map(|v| v.as_str().to_owned()));
            let mut needles: Vec<String> = forms.iter().map(|f| decoded_lower(f)).collect();
            needles.push(cookie.to_lowercase());
            for out in &outputs {
                let out = decoded_lower(out);
                for needle in &needles {
                    proptest::prop_assert!(
                        !out.contains(needle.as_str()),
                        "{needle} in {out} (target {target}, referer {referer})"
                    );
                }
            }
        }
    }

    #[test]
    fn cached_events_equal_uncached_ones() {
        use crate::sanitize::{QueryAllow, QueryParam, RouteTemplates};
        let p = pseudonymizer();
        let parser = LineParser::new(
            LogFormat::from_name_or_format("combined_cookie").unwrap(),
            Some("jt_uid"),
        );
        let sanitize = SanitizePolicy {
            query_allow: QueryAllow::default().with(QueryParam::UtmSource),
            routes: RouteTemplates::parse(&["/en/{city}/hotels".to_owned()]).unwrap(),
        };
        let clients = ClientPolicy::default();
        let lines = [
            r#"192.0.2.1 - - [01/Nov/2026:12:00:00 +0000] "GET /en/tokyo/hotels?utm_source=X HTTP/1.1" 200 10 "https://www.Example.com/a" "Mozilla/5.0 (iPhone) Mobile" "jt_uid=u-1""#,
            r#"192.0.2.1 - - [01/Nov/2026:12:00:01 +0000] "GET /en/tokyo/hotels?utm_source=X HTTP/1.1" 200 10 "https://www.Example.com/a" "Mozilla/5.0 (iPhone) Mobile" "jt_uid=u-1""#,
            r#"192.0.2.1 - - [01/Nov/2026:12:00:02 +0000] "GET /a HTTP/1.1" 200 10 "-" "Mozilla/5.0 (iPhone) Mobile" "-""#,
            r#"192.0.2.1:443 - - [02/Nov/2026:12:00:02 +0000] "GET /a HTTP/1.1" 200 10 "-" "Mozilla/5.0 (iPhone) Mobile" "-""#,
            r#"2001:db8::1 - - [02/Nov/2026:12:00:03 +0000] "POST http://h.example/x?q HTTP/1.1" 302 - "-" "Googlebot/2.1" "lang=ja""#,
            r#"host.example - - [02/Nov/2026:12:00:04 +0000] "GET /u/a@b.example HTTP/1.1" 404 5 "bad referer" "-" "jt_uid=""#,
            r#"192.0.2.1 - - [02/Nov/2026:12:00:05 +0000] "-" 400 - "-" "-" "-""#,
        ];
        let records: Vec<_> = lines
            .iter()
            .map(|l| parser.parse(l.as_bytes()).unwrap())
            .collect();
        let mut cache = EventCache::new(&p);
        let mut no_prefix = EventCache::new(&p).without_ip_prefix();
        // Twice over: the second pass hits the cache for every part.
        for record in records.iter().chain(&records) {
            let a = p.event(record, &clients, &sanitize).unwrap();
            let b = p
                .event_cached(record, &clients, &sanitize, &mut cache)
                .unwrap();
            let c = p
                .event_cached(record, &clients, &sanitize, &mut no_prefix)
                .unwrap();
            for e in [&b, &c] {
                assert_eq!(a.utc_micros, e.utc_micros);
                assert_eq!(a.visitor, e.visitor);
                assert_eq!(a.key_id, e.key_id);
                assert_eq!(a.cookie_visitor, e.cookie_visitor);
                assert_eq!(a.method, e.method);
                assert_eq!((a.status, a.bytes), (e.status, e.bytes));
                assert_eq!(a.page, e.page);
                assert_eq!(a.page_group, e.page_group);
                assert_eq!(a.query, e.query);
                assert_eq!(a.referrer, e.referrer);
                assert_eq!((a.bot, a.device, a.browser), (e.bot, e.device, e.browser));
            }
            assert_eq!(a.ip_prefix, b.ip_prefix);
            assert_eq!(c.ip_prefix, None);
        }
    }
}
