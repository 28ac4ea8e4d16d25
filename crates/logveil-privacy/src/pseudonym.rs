//! Keyed BLAKE3 pseudonyms and the canonical byte encoding of what they hash.
//!
//! Encoding, version 1 (changing any byte here changes every pseudonym, so it is versioned
//! in the subkey context string and must never change silently):
//!
//! | input | bytes hashed with the subkey |
//! |---|---|
//! | visitor cookie | `0x01 ‖ cookie value as logged` |
//! | cookieless visitor | `0x02 ‖ u32be(len ip) ‖ ip as logged ‖ u32be(len ua) ‖ ua as logged ‖ i32be(UTC day number)` |
//! | account id | `0x03 ‖ account_id` |
//! | redacted identifier (dead-letter lines, [`crate::redact`]) | `0x04 ‖ identifier as logged` (visitor subkey) |
//!
//! The leading tag byte keeps the domains apart; length prefixes make the
//! concatenation unambiguous. A pseudonym is the first 16 bytes of the keyed hash.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keys::{KeyId, RootKey};

/// Subkey context for visitor pseudonyms (logs and the accounts' cookie links share it: that is the join).
pub const VISITOR_CONTEXT: &str = "logveil 2026-11-29 visitor pseudonym v1";
/// Subkey context for account pseudonyms (distinct-account counting).
pub const ACCOUNT_CONTEXT: &str = "logveil 2026-11-29 account pseudonym v1";

const TAG_COOKIE: u8 = 0x01;
const TAG_FALLBACK: u8 = 0x02;
const TAG_ACCOUNT: u8 = 0x03;
const TAG_REDACTION: u8 = 0x04;

/// 128 bits of a keyed hash. Without the key it cannot be linked back to its input.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pseudonym([u8; 16]);

impl Pseudonym {
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Debug for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Pseudonym({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

fn finish(hasher: &blake3::Hasher) -> Pseudonym {
    let mut out = [0u8; 16];
    out.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    Pseudonym(out)
}

/// Turns raw identifiers into pseudonyms with subkeys of one root key.
pub struct Pseudonymizer {
    key_id: KeyId,
    visitor_key: Zeroizing<[u8; 32]>,
    account_key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pseudonymizer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Pseudonymizer {
    pub fn new(root: &RootKey) -> Self {
        Self {
            key_id: root.id().clone(),
            visitor_key: root.derive(VISITOR_CONTEXT),
            account_key: root.derive(ACCOUNT_CONTEXT),
        }
    }

    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    pub fn visitor_from_cookie(&self, cookie: &[u8]) -> Pseudonym {
        let mut h = blake3::Hasher::new_keyed(&self.visitor_key);
        h.update(&[TAG_COOKIE]).update(cookie);
        finish(&h)
    }

    pub fn visitor_from_client(&self, client: &[u8], user_agent: &[u8], utc_day: i32) -> Pseudonym {
        let mut h = blake3::Hasher::new_keyed(&self.visitor_key);
        h.update(&[TAG_FALLBACK])
            .update(&(client.len() as u32).to_be_bytes())
            .update(client)
            .update(&(user_agent.len() as u32).to_be_bytes())
            .update(user_agent)
            .update(&utc_day.to_be_bytes());
        finish(&h)
    }

    pub fn account(&self, account_id: &[u8]) -> Pseudonym {
        let mut h = blake3::Hasher::new_keyed(&self.account_key);
        h.update(&[TAG_ACCOUNT]).update(account_id);
        finish(&h)
    }

    /// The token that stands for an identifier (address, cookie value, …) in a redacted
    /// line. Its own tag keeps it from ever equalling a visitor pseudonym.
    pub fn redaction_token(&self, identifier: &[u8]) -> Pseudonym {
        let mut h = blake3::Hasher::new_keyed(&self.visitor_key);
        h.update(&[TAG_REDACTION]).update(identifier);
        finish(&h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyRing;

    pub(crate) fn test_ring(secret_byte: char) -> KeyRing {
        let secret: String = std::iter::repeat_n(secret_byte, 64).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(
            &path,
            format!("[[key]]\nid = \"t\"\nnot_before = \"2000-01-01\"\nsecret = \"{secret}\"\n"),
        )
        .unwrap();
        KeyRing::load(&path).unwrap()
    }

    #[test]
    fn golden_values_pin_the_encoding() {
        // If this fails, the canonical encoding changed: bump the context version instead.
        let p = Pseudonymizer::new(test_ring('a').newest());
        let hex = |x: Pseudonym| crate::keys::hex(x.as_bytes());
        let cookie = hex(p.visitor_from_cookie(b"u-1"));
        let fallback = hex(p.visitor_from_client(b"192.0.2.1", b"Mozilla", 20_758));
        assert_eq!(cookie.len(), 32);
        assert_ne!(cookie, fallback);
        golden_check("cookie", &cookie);
        golden_check("fallback", &fallback);
        golden_check("redaction", &hex(p.redaction_token(b"192.0.2.1")));
    }

    /// Compares with the committed value in `tests/golden/pseudonyms.txt`.
    fn golden_check(name: &str, value: &str) {
        let golden = include_str!("../tests/golden/pseudonyms.txt");
        let line = golden
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing in golden"));
        assert_eq!(line.split_once(' ').unwrap().1, value, "{name}");
    }

    #[test]
    fn domains_and_keys_separate() {
        let a = Pseudonymizer::new(test_ring('a').newest());
        let b = Pseudonymizer::new(test_ring('b').newest());
        assert_ne!(a.visitor_from_cookie(b"x"), b.visitor_from_cookie(b"x"));
        assert_ne!(a.visitor_from_cookie(b"x"), a.account(b"x"));
        assert_ne!(a.visitor_from_cookie(b"x"), a.redaction_token(b"x"));
        assert_eq!(a.visitor_from_cookie(b"x"), a.visitor_from_cookie(b"x"));
        // Length prefixes: moving a byte between ip and ua changes the pseudonym.
        assert_ne!(
            a.visitor_from_client(b"ab", b"c", 1),
            a.visitor_from_client(b"a", b"bc", 1)
        );
        assert_ne!(
            a.visitor_from_client(b"a", b"b", 1),
            a.visitor_from_client(b"a", b"b", 2)
        );
    }
}
