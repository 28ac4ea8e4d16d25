//! Credentials in configuration text: redacted before any error quotes that text.
//!
//! A TOML error quotes the offending line, and the offending line can be the one that
//! holds a password (`source = "postgres://user:password@db/site`, missing its closing
//! quote). Every configuration error that quotes a file goes through [`toml_error`], which
//! quotes the line with [`redact_credentials`] applied:
//!
//! | written | shown |
//! |---|---|
//! | `postgres://alice:s3cret@db/x` | `postgres://alice:***@db/x` |
//! | `nats://t0ken@host:4222` (a token as user info) | `nats://***@host:4222` |
//! | `host=db password=s3cret user=alice` (libpq key/value) | `host=db password=*** user=alice` |
//! | `password = "s3cret"`, `token = …`, `secret = …`, `seed = …`, `nkey = …` (a secret-named TOML key) | `password = ***` |
//!
//! Key files never get this far: their parse errors name a byte position only
//! ([`crate::keys`]).

/// TOML keys whose values are secrets, whatever their text.
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "token",
    "secret",
    "seed",
    "nkey",
    "credentials",
    "creds",
];

/// `text` with every credential it can recognise replaced by `***` (see the module docs).
pub fn redact_credentials(text: &str) -> String {
    let text = redact_password_params(text);
    let text = redact_userinfo(&text);
    redact_secret_keys(&text)
}

/// `KEY = value` whose key names a secret — at the start of a line or inside an inline
/// table (`db = { password = "…" }`): the rest of the line goes.
fn redact_secret_keys(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        match secret_value_start(body) {
            Some(at) => {
                out.push_str(&body[..at]);
                out.push_str(" ***");
                out.push_str(end);
            }
            None => out.push_str(line),
        }
    }
    out
}

/// Where the value of the first secret-named key of `line` starts (just after its `=`).
fn secret_value_start(line: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(eq) = line[from..].find('=').map(|i| from + i) {
        // The key: the word before `=`, after the gutter (`9 | …`), `{`, `,` or a space.
        let key = line[..eq]
            .trim_end()
            .rsplit(['|', '{', ',', ' ', '\t'])
            .next()
            .unwrap_or("")
            .trim_matches('"');
        let name = key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase();
        let already = line[eq + 1..].trim_start().starts_with("***");
        if !already
            && SECRET_KEYS
                .iter()
                .any(|s| name == *s || name.ends_with(&format!("_{s}")))
        {
            return Some(eq + 1);
        }
        from = eq + 1;
    }
    None
}

/// `scheme://user:password@host` → `scheme://user:***@host`; `scheme://token@host` →
/// `scheme://***@host`.
fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let authority_end = after
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'' | '`') || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        let Some(sign) = authority.rfind('@') else {
            // No user info here; another `://` may start inside what follows.
            rest = after;
            continue;
        };
        let userinfo = &authority[..sign];
        match userinfo.split_once(':') {
            Some((user, _)) => {
                out.push_str(user);
                out.push_str(":***");
            }
            None => out.push_str("***"),
        }
        out.push_str(&authority[sign..]);
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    out
}

/// `password=VALUE` (libpq key/value, query parameters), any case.
fn redact_password_params(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = lower[from..].find("password=") {
        let value_start = from + found + "password=".len();
        let value_end = text[value_start..]
            .find(|c: char| matches!(c, '&' | ';' | '"' | '\'' | '`') || c.is_whitespace())
            .map_or(text.len(), |e| value_start + e);
        out.push_str(&text[copied..value_start]);
        if value_end > value_start {
            out.push_str("***");
        }
        copied = value_end;
        from = value_end.max(value_start);
    }
    out.push_str(&text[copied..]);
    out
}

/// A TOML error as one message that names line and column and quotes the line with its
/// credentials redacted (toml's own message quotes it as written).
pub fn toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    let Some(span) = error.span() else {
        return redact_credentials(message);
    };
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line_number = text[..start].matches('\n').count() + 1;
    let column = text[line_start..start].chars().count() + 1;
    let raw_line = text[line_start..line_end].trim_end_matches('\r');
    // toml's message can quote the value (``invalid type: integer `12345` ``): on a line
    // that holds a secret-named key, it is not shown.
    let message = if secret_value_start(raw_line).is_some() {
        "invalid value (not shown: the line holds a secret)"
    } else {
        message
    };
    let line = redact_credentials(raw_line);
    redact_credentials(&format!(
        "TOML parse error at line {line_number}, column {column}: {message}\n  | {line}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_examples() {
        assert_eq!(
            redact_credentials("postgres://alice:s3cret@db/x"),
            "postgres://alice:***@db/x"
        );
        assert_eq!(
            redact_credentials("nats://t0ken@host:4222"),
            "nats://***@host:4222"
        );
        assert_eq!(
            redact_credentials("host=db password=s3cret user=alice"),
            "host=db password=*** user=alice"
        );
        assert_eq!(
            redact_credentials("password = \"s3cret\""),
            "password = ***"
        );
        assert_eq!(
            redact_credentials("9 | nats_token = \"s3cret\""),
            "9 | nats_token = ***"
        );
        assert_eq!(
            redact_credentials("db = { user = \"a\", password = \"s3cret\" }"),
            "db = { user = \"a\", password = ***"
        );
    }

    #[test]
    fn a_type_error_on_a_secret_line_does_not_quote_the_value() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct T {
            token: String,
        }
        let text = "token = 12345678\n";
        let err = toml::from_str::<T>(text).unwrap_err();
        let shown = toml_error(text, &err);
        assert!(!shown.contains("12345678"), "{shown}");
    }

    #[test]
    fn ordinary_text_is_unchanged() {
        for text in [
            "source = \"sqlite:../sample-logs/accounts.db\"",
            "paths = [\"https://example.com/x\"]",
            "dir = \"../out\"",
            "file = \"../sample-logs/demo.key\"",
            "postgres:///site?host=/run/postgresql",
        ] {
            assert_eq!(redact_credentials(text), text);
        }
    }

    #[test]
    fn a_syntax_error_on_a_credential_line_does_not_quote_the_password() {
        let text = "[accounts]\nsource = \"postgres://user:s3cretpass@db/x\n[output]\n";
        let err = toml::from_str::<toml::Table>(text).unwrap_err();
        assert!(
            err.to_string().contains("s3cretpass"),
            "toml itself quotes it"
        );
        let shown = toml_error(text, &err);
        assert!(!shown.contains("s3cretpass"), "{shown}");
        assert!(shown.contains("line 2"), "{shown}");
        assert!(shown.contains("postgres://user:***@db/x"), "{shown}");
    }

    proptest::proptest! {
        /// Whatever surrounds it, a password written after `user:` in a URL, or as a
        /// `password=` parameter, never survives.
        #[test]
        fn planted_passwords_never_survive(
            before in "[ -~]{0,20}",
            after in "[ -~&&[^@]]{0,20}",
            password in "[A-Za-z0-9!%^*()_+-]{6,20}",
        ) {
            let url = format!("{before}postgres://user:{password}@db/x{after}");
            let planted = format!(":{password}@");
            proptest::prop_assert!(!redact_credentials(&url).contains(&planted));
            let kv = format!("{before} password={password} {after}");
            let planted = format!("password={password}");
            proptest::prop_assert!(!redact_credentials(&kv).contains(&planted));
        }
    }
}
