//! Finding one cookie in a `Cookie` request header without allocating.

/// The value of cookie `name` in a `Cookie:` header (`a=b; c=d`).
///
/// Rules: pairs are separated by `;` with optional spaces; names match exactly (cookie
/// names are case-sensitive); when a name repeats, the **first** occurrence wins (browsers
/// send the most specific path first); surrounding double quotes are removed
/// (`a="b"` → `b`, and Apache's escaped form `a=\"b\"` → `b`); a pair without `=` is a cookie with no value and never matches.
/// Returns `None` when the cookie is absent or empty.
pub fn find_cookie<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    find_cookie_with(header, name, false)
}

/// Like [`find_cookie`] for W3C extended logs, where IIS writes spaces as `+`
/// (`lang=ja;+jt_uid=abc`).
pub fn find_cookie_plus_spaces<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    find_cookie_with(header, name, true)
}

fn find_cookie_with<'a>(header: &'a [u8], name: &[u8], plus_is_space: bool) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let mut pair = trim(pair);
        while plus_is_space && pair.first() == Some(&b'+') {
            pair = trim(&pair[1..]);
        }
        let eq = memchr::memchr(b'=', pair)?;
        if trim(&pair[..eq]) != name {
            return None;
        }
        let mut value = trim(&pair[eq + 1..]);
        if value.len() >= 4 && value.starts_with(b"\\\"") && value.ends_with(b"\\\"") {
            // Apache logs a quoted cookie value with escaped quotes: `a=\"b\"`.
            value = &value[2..value.len() - 2];
        } else if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
            value = &value[1..value.len() - 1];
        }
        (!value.is_empty()).then_some(value)
    })
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::find_cookie;

    #[test]
    fn finds_cookie_anywhere_in_header() {
        assert_eq!(find_cookie(b"jt_uid=abc", b"jt_uid"), Some(&b"abc"[..]));
        assert_eq!(
            find_cookie(b"lang=ja; jt_uid=abc", b"jt_uid"),
            Some(&b"abc"[..])
        );
        assert_eq!(
            find_cookie(b"lang=ja;jt_uid=abc ;x=1", b"jt_uid"),
            Some(&b"abc"[..])
        );
        assert_eq!(find_cookie(b"jt_uid=\"q v\"", b"jt_uid"), Some(&b"q v"[..]));
        assert_eq!(
            find_cookie(br#"jt_uid=\"q v\""#, b"jt_uid"),
            Some(&b"q v"[..])
        );
    }

    #[test]
    fn first_of_repeated_names_wins_and_empty_is_absent() {
        assert_eq!(
            find_cookie(b"jt_uid=one; jt_uid=two", b"jt_uid"),
            Some(&b"one"[..])
        );
        assert_eq!(find_cookie(b"jt_uid=; a=b", b"jt_uid"), None);
        assert_eq!(find_cookie(b"jt_uid; a=b", b"jt_uid"), None);
        assert_eq!(find_cookie(b"xjt_uid=1", b"jt_uid"), None);
        assert_eq!(find_cookie(b"", b"jt_uid"), None);
    }
}
