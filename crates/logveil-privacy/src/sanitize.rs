//! What may leave the parse step of the free-text fields: page, referrer domain, bot flag
//! (the user agent's classification is in [`crate::classify`]).

use std::fmt;
use std::sync::Arc;

/// Replaces a path segment that looks like personal data.
pub const REDACTED: &str = ":redacted";

/// The requested page: the URL path only, with personal-looking segments redacted.
///
/// It can only be built by [`Page::from_target`], so holding a `Page` means the
/// query string is gone and e-mail-like segments are redacted.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Page(Arc<str>);

impl Page {
    /// From a request target as logged (`/a/b?x=1`).
    ///
    /// Keeps the path up to the first `?` or `#`; drops `;params` (`;jsessionid=…`) from
    /// each segment; replaces a segment holding `@` or `%40` (an e-mail address) by
    /// [`REDACTED`]. Percent-encoding is kept as logged; non-UTF-8 bytes become U+FFFD.
    pub fn from_target(target: &[u8]) -> Self {
        let end = memchr::memchr2(b'?', b'#', target).unwrap_or(target.len());
        let path = &target[..end];
        if path.is_empty() {
            return Self(Arc::from("/"));
        }
        let needs_work = memchr::memchr2(b';', b'@', path).is_some()
            || memchr::memmem::find(path, b"%40").is_some();
        if !needs_work {
            return Self(Arc::from(String::from_utf8_lossy(path)));
        }
        let mut out = Vec::with_capacity(path.len());
        for (i, segment) in path.split(|&b| b == b'/').enumerate() {
            if i > 0 {
                out.push(b'/');
            }
            let segment = memchr::memchr(b';', segment).map_or(segment, |p| &segment[..p]);
            if memchr::memchr(b'@', segment).is_some()
                || memchr::memmem::find(segment, b"%40").is_some()
            {
                out.extend_from_slice(REDACTED.as_bytes());
            } else {
                out.extend_from_slice(segment);
            }
        }
        Self(Arc::from(String::from_utf8_lossy(&out)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, shared (cheap to clone into many report cells).
    pub fn shared(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }
}

impl fmt::Debug for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Page({:?})", &*self.0)
    }
}

/// Label for a request without a Referer.
pub const NO_REFERRER: &str = "(none)";
/// Label for a Referer that has no recognisable host.
pub const INVALID_REFERRER: &str = "(invalid)";

/// The host of the Referer, lower-cased, without scheme, user info, port, path or query.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReferrerDomain(Arc<str>);

impl ReferrerDomain {
    pub fn from_referer(referer: Option<&[u8]>) -> Self {
        let Some(referer) = referer.filter(|r| !r.is_empty()) else {
            return Self(Arc::from(NO_REFERRER));
        };
        let after_scheme =
            memchr::memmem::find(referer, b"://").map_or(referer, |i| &referer[i + 3..]);
        let authority_end =
            memchr::memchr3(b'/', b'?', b'#', after_scheme).unwrap_or(after_scheme.len());
        let authority = &after_scheme[..authority_end];
        // User info (`user:pass@host`) is personal data: skip to the host.
        let host_port = memchr::memrchr(b'@', authority).map_or(authority, |i| &authority[i + 1..]);
        let host = if host_port.starts_with(b"[") {
            memchr::memchr(b']', host_port).map_or(host_port, |i| &host_port[..=i])
        } else {
            memchr::memchr(b':', host_port).map_or(host_port, |i| &host_port[..i])
        };
        let valid = !host.is_empty()
            && host.len() <= 253
            && host.iter().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')
            });
        if !valid {
            return Self(Arc::from(INVALID_REFERRER));
        }
        Self(Arc::from(
            String::from_utf8_lossy(host).to_ascii_lowercase(),
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, shared (cheap to clone into many report cells).
    pub fn shared(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }
}

impl fmt::Debug for ReferrerDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReferrerDomain({:?})", &*self.0)
    }
}

/// The bot definition now lives with the device and browser tables in [`crate::classify`].
pub use crate::classify::{BOT_MARKERS, is_bot};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_keeps_path_only() {
        assert_eq!(
            Page::from_target(b"/en/tokyo?email=a%40b.com").as_str(),
            "/en/tokyo"
        );
        assert_eq!(Page::from_target(b"/a#frag").as_str(), "/a");
        assert_eq!(Page::from_target(b"").as_str(), "/");
        assert_eq!(
            Page::from_target(b"/cart;jsessionid=ABC123/x").as_str(),
            "/cart/x"
        );
        assert_eq!(
            Page::from_target(b"/u/alice@example.com/profile").as_str(),
            "/u/:redacted/profile"
        );
        assert_eq!(
            Page::from_target(b"/u/alice%40example.com").as_str(),
            "/u/:redacted"
        );
    }

    #[test]
    fn referrer_domain_is_host_only() {
        let d = |s: &str| {
            ReferrerDomain::from_referer(Some(s.as_bytes()))
                .as_str()
                .to_owned()
        };
        assert_eq!(d("https://www.google.com/search?q=x"), "www.google.com");
        assert_eq!(d("http://Example.COM:8080/x"), "example.com");
        assert_eq!(d("https://user:secret@host.example/"), "host.example");
        assert_eq!(d("http://[2001:db8::1]:80/"), "[2001:db8::1]");
        assert_eq!(
            d("android-app://com.google.android.gm"),
            "com.google.android.gm"
        );
        assert_eq!(d("\u{7f}junk"), INVALID_REFERRER);
        assert_eq!(ReferrerDomain::from_referer(None).as_str(), NO_REFERRER);
    }

    #[test]
    fn bots_and_tools_are_recognised() {
        for ua in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "AhrefsBot",
            "SomeCrawler/1.0",
            "Baiduspider",
            "curl/8.5.0",
            "Wget/1.21",
            "python-requests/2.31",
        ] {
            assert!(is_bot(Some(ua.as_bytes())), "{ua}");
        }
        assert!(!is_bot(Some(
            b"Mozilla/5.0 (Windows NT 10.0) Firefox/120.0"
        )));
        assert!(!is_bot(None));
    }
}
