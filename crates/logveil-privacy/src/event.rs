//! [`Event`]: the record that leaves the parse/pseudonymize step. It cannot hold a raw identifier.

use logveil_parse::LogRecord;
use logveil_parse::time::MICROS_PER_DAY;

use crate::classify::{BrowserFamily, DeviceClass, classify};
use crate::client::{ClientPolicy, IpPrefix, canonical_client, parse_ip};
use crate::pseudonym::{Pseudonym, Pseudonymizer};
use crate::sanitize::{Page, PageGroup, QueryValues, ReferrerDomain, SanitizePolicy};

/// The request method, reduced to what reports distinguish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Other,
}

impl Method {
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
#[derive(Debug, Clone)]
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
            let mut buf = [0u8; 256];
            let client = client.map_or(&b""[..], |c| canonical_client(c, &mut buf));
            let ua = record.user_agent.unwrap_or_default();
            (self.visitor_from_client(client, ua, utc_day), false)
        };
        let target = record
            .target_path()
            .filter(|t| t.starts_with(b"/") || t.starts_with(b"http"))
            .map(strip_absolute_form);
        let page = target.map(Page::from_target);
        let ua = classify(record.user_agent);
        Some(Event {
            utc_micros,
            visitor,
            key_id: self.key_id_shared(),
            cookie_visitor,
            method: Method::from_bytes(record.method()),
            status: record.status,
            bytes: record.bytes.unwrap_or(0),
            page_group: page.as_ref().and_then(|p| sanitize.routes.group(p)),
            query: target.map_or_else(QueryValues::default, |t| {
                QueryValues::from_target(t, sanitize.query_allow)
            }),
            page,
            referrer: ReferrerDomain::from_referer(record.referer),
            ip_prefix,
            bot: ua.bot,
            device: ua.device,
            browser: ua.browser,
        })
    }
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
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(
            &path,
            format!(
                "demo = true\n[[key]]\nid = \"t\"\nnot_before = \"2000-01-01\"\nsecret = \"{}\"\n",
                "ab".repeat(32)
            ),
        )
        .unwrap();
        Pseudonymizer::new(crate::KeyRing::load(&path).unwrap().newest())
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
}
