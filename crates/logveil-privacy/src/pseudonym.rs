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
//! | audience pseudonym (`visitor_id` exports, `logveil lookup`) | `0x05 ‖ u32be(len audience) ‖ audience name ‖ visitor pseudonym (16 bytes)` (audience subkey) |
//!
//! The client in a cookieless visitor is written in canonical form first (see
//! [`crate::client`]: no port or brackets, RFC 5952 IPv6, lower-case host names).
//! The leading tag byte keeps the domains apart; length prefixes make the
//! concatenation unambiguous. A pseudonym is the first 16 bytes of the keyed hash.
//!
//! Subkeys come from the root key in force for the event's UTC day (see
//! [`crate::KeyRing::key_for_day`]), so a key rotation starts new pseudonyms. The visitor
//! pseudonym never leaves a run; what an audience may see is its audience pseudonym, a
//! second keyed hash that differs per audience, so two audiences' exports share no value.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keys::{KeyId, RootKey};

pub use crate::event::EventCache;

/// Subkey context for visitor pseudonyms (logs and the accounts' cookie links share it: that is the join).
pub const VISITOR_CONTEXT: &str = "logveil 2026-11-29 visitor pseudonym v1";
/// Subkey context for audience pseudonyms (what a pseudonymous export shows).
pub const AUDIENCE_CONTEXT: &str = "logveil 2026-11-29 audience pseudonym v1";
/// Subkey context for account pseudonyms (distinct-account counting).
pub const ACCOUNT_CONTEXT: &str = "logveil 2026-11-29 account pseudonym v1";

const TAG_COOKIE: u8 = 0x01;
const TAG_FALLBACK: u8 = 0x02;
const TAG_ACCOUNT: u8 = 0x03;
const TAG_REDACTION: u8 = 0x04;
const TAG_AUDIENCE: u8 = 0x05;

/// 128 bits of a keyed hash. Without the key it cannot be linked back to its input.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pseudonym([u8; 16]);

/// A pseudonym is already uniformly distributed (a keyed hash): its first 8 bytes are fed
/// to the hasher as one word, which makes sets of visitors cheap to probe.
impl std::hash::Hash for Pseudonym {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(word));
    }
}

impl Pseudonym {
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Lower-case hex, as exports and `logveil lookup` print it.
    pub fn to_hex(&self) -> String {
        crate::keys::hex(&self.0)
    }

    /// The partition (`0..partitions`) this visitor's events go to: the first 8 bytes as
    /// a little-endian `u64`, modulo `partitions` (which must be at least 1; 0 is taken
    /// as 1).
    ///
    /// A function of the pseudonym alone, so a visitor always lands in one partition:
    /// the partitions' visitor sets are disjoint, and per-partition distinct counts (of
    /// visitors, or of anything keyed by the visitor) add up exactly to the whole.
    pub fn partition(&self, partitions: u32) -> u32 {
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.0[..8]);
        (u64::from_le_bytes(word) % u64::from(partitions.max(1))) as u32
    }

    /// A pseudonym read back from an event batch ([`crate::wire`]): 16 bytes an edge's
    /// [`Pseudonymizer`] made. Only the decoder calls this.
    pub(crate) fn from_wire(bytes: [u8; 16]) -> Self {
        Self(bytes)
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
    /// The same id, shared into every event (cheap to clone per line).
    key_id_shared: std::sync::Arc<str>,
    visitor_key: Zeroizing<[u8; 32]>,
    account_key: Zeroizing<[u8; 32]>,
    audience_key: Zeroizing<[u8; 32]>,
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
            key_id_shared: std::sync::Arc::from(root.id().as_str()),
            visitor_key: root.derive(VISITOR_CONTEXT),
            account_key: root.derive(ACCOUNT_CONTEXT),
            audience_key: root.derive(AUDIENCE_CONTEXT),
        }
    }

    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    pub(crate) fn key_id_shared(&self) -> std::sync::Arc<str> {
        std::sync::Arc::clone(&self.key_id_shared)
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

    /// What `audience` may see of a visitor: unlinkable to the same visitor's pseudonym
    /// for any other audience without the key.
    pub fn for_audience(&self, visitor: &Pseudonym, audience: &str) -> Pseudonym {
        let mut h = blake3::Hasher::new_keyed(&self.audience_key);
        h.update(&[TAG_AUDIENCE])
            .update(&(audience.len() as u32).to_be_bytes())
            .update(audience.as_bytes())
            .update(visitor.as_bytes());
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
            format!("demo = true\n[[key]]\nid = \"t\"\nnot_before = \"2000-01-01\"\nsecret = \"{secret}\"\n"),
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
    fn partition_is_the_first_word_modulo_partitions() {
        let mut bytes = [0xffu8; 16];
        bytes[..8].copy_from_slice(&1_000_003u64.to_le_bytes());
        let p = Pseudonym(bytes);
        assert_eq!(p.partition(1), 0);
        assert_eq!(p.partition(0), 0, "0 partitions is taken as 1");
        assert_eq!(p.partition(2), 1);
        assert_eq!(p.partition(10), 3);
        assert_eq!(p.partition(u32::MAX), 1_000_003);
        // Every visitor lands in exactly one partition, spread over all of them.
        let a = Pseudonymizer::new(test_ring('a').newest());
        let mut seen = [0u32; 4];
        for i in 0..400u32 {
            let v = a.visitor_from_cookie(&i.to_le_bytes());
            let part = v.partition(4);
            assert_eq!(part, v.partition(4));
            seen[part as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }

    #[test]
    fn domains_and_keys_separate() {
        let a = Pseudonymizer::new(test_ring('a').newest());
        let b = Pseudonymizer::new(test_ring('b').newest());
        assert_ne!(a.visitor_from_cookie(b"x"), b.visitor_from_cookie(b"x"));
        assert_ne!(a.visitor_from_cookie(b"x"), a.account(b"x"));
        // Same cookie, two audiences: nothing shared; same audience: stable.
        let v = a.visitor_from_cookie(b"x");
        let (sec, res) = (
            a.for_audience(&v, "security"),
            a.for_audience(&v, "research"),
        );
        assert_ne!(sec, res);
        assert!(
            sec.as_bytes()
                .iter()
                .zip(res.as_bytes())
                .filter(|(x, y)| x == y)
                .count()
                < 6
        );
        assert_eq!(sec, a.for_audience(&v, "security"));
        assert_ne!(
            sec,
            b.for_audience(&b.visitor_from_cookie(b"x"), "security"),
            "another key, another pseudonym"
        );
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
