//! The key ring: root keys from a key file, and the purpose-bound subkeys derived from them.
//!
//! File format (TOML, mode 0600):
//!
//! ```toml
//! [[key]]
//! id = "k-3f9a1c2e"          # printable, safe to log and to write into reports
//! not_before = "2026-01-01"  # first UTC day this key pseudonymizes
//! secret = "<64 hex chars>"  # 256-bit root key, never logged or printed
//! ```
//!
//! A file may set `demo = true`: such a key was published (the bundled samples use one)
//! and logveil warns on every run that its pseudonyms protect nothing.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretBox};
use serde::Deserialize;
use zeroize::Zeroizing;

/// A key file that could not be read or is not acceptable. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("{path}: cannot read key file: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: refusing to overwrite an existing key file")]
    Exists { path: PathBuf },
    #[error(
        "{path}: key file is readable by group or others (mode {mode:04o}); run `chmod 600 {path}` (as ssh refuses such private keys, so does logveil)"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{path}: cannot write key file: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no randomness available: {0}")]
    Random(String),
}

/// A printable key identifier. It names a key; it reveals nothing about it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One root key. Its material is zeroed on drop and never formatted.
pub struct RootKey {
    id: KeyId,
    not_before_day: i32,
    not_before: String,
    secret: SecretBox<[u8; 32]>,
}

#[allow(
    clippy::missing_fields_in_debug,
    reason = "the secret is deliberately not printed"
)]
impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootKey")
            .field("id", &self.id)
            .field("not_before", &self.not_before)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl RootKey {
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    pub fn not_before(&self) -> &str {
        &self.not_before
    }

    /// The first UTC day (days since 1970-01-01) this key pseudonymizes.
    pub fn not_before_day(&self) -> i32 {
        self.not_before_day
    }

    /// The secret that seeds differential-privacy noise for releases of days this key
    /// covers (`logveil_report::dp::seed_for`): with it the noise could be subtracted, so it
    /// never leaves the process.
    pub fn noise_secret(&self) -> Zeroizing<[u8; 32]> {
        self.derive("logveil 2026-11-29 dp noise secret v1")
    }

    /// A subkey for one use, bound to this root key by a fixed context string.
    /// The key an edge agent fingerprints log files with (`logveil edge` message ids): the
    /// fingerprint hashes the first bytes of a log, which hold addresses, so it is keyed.
    pub fn file_fingerprint_key(&self) -> Zeroizing<[u8; 32]> {
        self.derive("logveil 2026-11 edge file fingerprint v1")
    }

    pub(crate) fn derive(&self, context: &str) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(blake3::derive_key(context, self.secret.expose_secret()))
    }
}

/// All root keys of a key file, oldest first.
#[derive(Debug)]
pub struct KeyRing {
    keys: Vec<RootKey>,
    demo: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default)]
    demo: bool,
    #[serde(default)]
    key: Vec<KeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    id: String,
    not_before: String,
    secret: Zeroizing<String>,
}

impl KeyRing {
    /// Reads a key file. A file readable by group or others is refused, unless it says
    /// `demo = true` (its secret is published anyway).
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::Read {
                    path: path.to_owned(),
                    source,
                })?,
            );
        let ring = Self::parse(&text, path)?;
        #[cfg(unix)]
        if !ring.demo {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|source| KeyError::Read {
                    path: path.to_owned(),
                    source,
                })?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(KeyError::Permissions {
                    path: path.to_owned(),
                    mode: mode & 0o7777,
                });
            }
        }
        Ok(ring)
    }

    /// Appends a new random key in force from `not_before` (later than every existing
    /// key's) to a key file, rewriting it atomically with mode 0600. Existing keys and
    /// comments are kept: they are still needed for older logs.
    pub fn rotate(path: &Path, not_before: &str) -> Result<KeyId, KeyError> {
        let invalid = |message: String| KeyError::Invalid {
            path: path.to_owned(),
            message,
        };
        let ring = Self::load(path)?;
        if ring.demo {
            return Err(invalid(
                "a demo key file cannot be rotated: create a real one with `logveil keygen`".into(),
            ));
        }
        let day = parse_date(not_before).ok_or_else(|| {
            invalid(format!(
                "not_before `{not_before}`: expected a date YYYY-MM-DD"
            ))
        })?;
        let newest = ring.newest();
        if day <= newest.not_before_day {
            return Err(invalid(format!(
                "not_before {not_before} must be after the newest key's ({}, key {})",
                newest.not_before, newest.id
            )));
        }
        let old =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::Read {
                    path: path.to_owned(),
                    source,
                })?,
            );
        let (id, block) = new_key_block(not_before)?;
        let mut body = Zeroizing::new(String::with_capacity(old.len() + block.len() + 1));
        body.push_str(&old);
        if !body.ends_with('\n') {
            body.push('\n');
        }
        body.push('\n');
        body.push_str(&block);
        let tmp = path.with_extension(format!("rotate-{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        write_private(&tmp, body.as_bytes())?;
        std::fs::rename(&tmp, path).map_err(|source| KeyError::Write {
            path: path.to_owned(),
            source,
        })?;
        Ok(id)
    }

    fn parse(text: &str, path: &Path) -> Result<Self, KeyError> {
        let invalid = |message: String| KeyError::Invalid {
            path: path.to_owned(),
            message,
        };
        // toml's messages quote the offending line, which could be a secret: report only the position.
        let file: KeyFile = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(String::new(), |s| format!(" at byte {}", s.start));
            invalid(format!("not a logveil key file{at} (expected `[[key]]` tables with `id`, `not_before`, `secret`)"))
        })?;
        if file.key.is_empty() {
            return Err(invalid("no `[[key]]` entries".into()));
        }
        let mut keys = Vec::with_capacity(file.key.len());
        for (i, entry) in file.key.into_iter().enumerate() {
            if entry.id.is_empty()
                || !entry
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(invalid(format!(
                    "key[{i}].id: must be non-empty ASCII letters, digits, `-` or `_`"
                )));
            }
            let not_before_day = parse_date(&entry.not_before).ok_or_else(|| {
                invalid(format!("key[{i}].not_before: expected a date YYYY-MM-DD"))
            })?;
            let secret = decode_hex_32(&entry.secret).ok_or_else(|| {
                invalid(format!(
                    "key[{i}].secret: expected 64 hexadecimal characters (256 bits)"
                ))
            })?;
            keys.push(RootKey {
                id: KeyId(entry.id),
                not_before_day,
                not_before: entry.not_before,
                secret,
            });
        }
        keys.sort_by_key(|k| k.not_before_day);
        if let Some(pair) = keys.windows(2).find(|w| w[0].id == w[1].id) {
            return Err(invalid(format!("key id `{}` appears twice", pair[0].id)));
        }
        Ok(Self {
            keys,
            demo: file.demo,
        })
    }

    /// Whether the file says its keys are published demo keys.
    pub fn is_demo(&self) -> bool {
        self.demo
    }

    pub fn keys(&self) -> &[RootKey] {
        &self.keys
    }

    /// The key in force on a UTC day (days since 1970-01-01): the newest whose
    /// `not_before` is on or before it. `None` when every key starts later.
    pub fn key_for_day(&self, day: i32) -> Option<&RootKey> {
        self.keys.iter().rev().find(|k| k.not_before_day <= day)
    }

    /// The newest key, used when a run must pick a single key.
    pub fn newest(&self) -> &RootKey {
        self.keys
            .last()
            .expect("a loaded key ring has at least one key")
    }

    /// Writes a new key file with one random key, readable by its owner only.
    pub fn generate(path: &Path, not_before: &str) -> Result<KeyId, KeyError> {
        if parse_date(not_before).is_none() {
            return Err(KeyError::Invalid {
                path: path.to_owned(),
                message: format!("not_before `{not_before}`: expected a date YYYY-MM-DD"),
            });
        }
        let (id, block) = new_key_block(not_before)?;
        let body = Zeroizing::new(format!(
            "# logveil key file. Keep it secret: anyone holding it can re-identify pseudonyms.\n\
             # Back it up; losing it makes past and future pseudonyms unlinkable.\n\n{}",
            &*block
        ));
        write_private(path, body.as_bytes())?;
        Ok(id)
    }
}

/// A `[[key]]` block with a fresh random secret and id.
fn new_key_block(not_before: &str) -> Result<(KeyId, Zeroizing<String>), KeyError> {
    let mut secret = Zeroizing::new([0u8; 32]);
    getrandom::fill(secret.as_mut()).map_err(|e| KeyError::Random(e.to_string()))?;
    let mut id_bytes = [0u8; 4];
    getrandom::fill(&mut id_bytes).map_err(|e| KeyError::Random(e.to_string()))?;
    let id = format!("k-{}", hex(&id_bytes));
    let block = Zeroizing::new(format!(
        "[[key]]\nid = \"{id}\"\nnot_before = \"{not_before}\"\nsecret = \"{}\"\n",
        &*Zeroizing::new(hex(secret.as_ref()))
    ));
    Ok((KeyId(id), block))
}

#[cfg(unix)]
fn write_private(path: &Path, body: &[u8]) -> Result<(), KeyError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => KeyError::Exists {
                path: path.to_owned(),
            },
            _ => KeyError::Write {
                path: path.to_owned(),
                source,
            },
        })?;
    file.write_all(body)
        .and_then(|()| file.sync_all())
        .map_err(|source| KeyError::Write {
            path: path.to_owned(),
            source,
        })
}

#[cfg(not(unix))]
fn write_private(path: &Path, body: &[u8]) -> Result<(), KeyError> {
    if path.exists() {
        return Err(KeyError::Exists {
            path: path.to_owned(),
        });
    }
    std::fs::write(path, body).map_err(|source| KeyError::Write {
        path: path.to_owned(),
        source,
    })
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn decode_hex_32(text: &str) -> Option<SecretBox<[u8; 32]>> {
    let text = text.as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut out = SecretBox::new(Box::new([0u8; 32]));
    for (i, pair) in text.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        secrecy::ExposeSecretMut::expose_secret_mut(&mut out)[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// `YYYY-MM-DD` → days since 1970-01-01.
pub fn parse_date(text: &str) -> Option<i32> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |s: &[u8]| -> Option<u32> {
        s.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let (y, m, d) = (num(&b[0..4])? as i32, num(&b[5..7])?, num(&b[8..10])?);
    if !(1..=12).contains(&m) || d == 0 || d > logveil_parse::time::days_in_month(y, m) {
        return None;
    }
    Some(logveil_parse::time::days_from_civil(y, m, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn ring(text: &str) -> Result<KeyRing, KeyError> {
        KeyRing::parse(text, Path::new("test.key"))
    }

    #[test]
    fn picks_newest_key_in_force() {
        let r = ring(&format!(
            "[[key]]\nid = \"b\"\nnot_before = \"2026-06-01\"\nsecret = \"{SECRET}\"\n\
             [[key]]\nid = \"a\"\nnot_before = \"2026-01-01\"\nsecret = \"{}\"\n",
            SECRET.replace('0', "1")
        ))
        .unwrap();
        let day = |s| parse_date(s).unwrap();
        assert_eq!(r.key_for_day(day("2026-03-01")).unwrap().id().as_str(), "a");
        assert_eq!(r.key_for_day(day("2026-06-01")).unwrap().id().as_str(), "b");
        assert!(r.key_for_day(day("2025-12-31")).is_none());
        assert_eq!(r.newest().id().as_str(), "b");
    }

    #[test]
    fn errors_never_echo_the_secret() {
        let bad = format!(
            "[[key]]\nid = \"a\"\nnot_before = \"2026-01-01\"\nsecret = \"{}zz\"\n",
            &SECRET[..62]
        );
        let msg = ring(&bad).unwrap_err().to_string();
        assert!(
            msg.contains("key[0].secret") && !msg.contains(&SECRET[..62]),
            "{msg}"
        );
        let broken = format!("[[key]\nsecret = \"{SECRET}\"");
        let msg = ring(&broken).unwrap_err().to_string();
        assert!(!msg.contains(SECRET), "{msg}");
        let dbg = format!(
            "{:?}",
            ring(&format!(
                "[[key]]\nid = \"a\"\nnot_before = \"2026-01-01\"\nsecret = \"{SECRET}\"\n"
            ))
            .unwrap()
        );
        assert!(
            !dbg.contains(SECRET) && !dbg.to_lowercase().contains("00112233"),
            "{dbg}"
        );
    }

    #[test]
    fn group_readable_key_file_is_refused_unless_demo() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        KeyRing::generate(&path, "2026-01-01").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = KeyRing::load(&path).unwrap_err().to_string();
        assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
        let demo = dir.path().join("demo.key");
        std::fs::write(&demo, format!("demo = true\n[[key]]\nid = \"d\"\nnot_before = \"2000-01-01\"\nsecret = \"{SECRET}\"\n")).unwrap();
        std::fs::set_permissions(&demo, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(KeyRing::load(&demo).unwrap().is_demo());
    }

    #[test]
    fn rotate_appends_a_later_key_and_keeps_the_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let first = KeyRing::generate(&path, "2026-01-01").unwrap();
        let old_text = std::fs::read_to_string(&path).unwrap();
        let e = KeyRing::rotate(&path, "2026-01-01")
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be after"), "{e}");
        let second = KeyRing::rotate(&path, "2026-07-01").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(&old_text), "old keys and comments kept");
        let ring = KeyRing::load(&path).unwrap();
        let day = |s| parse_date(s).unwrap();
        assert_eq!(ring.key_for_day(day("2026-06-30")).unwrap().id(), &first);
        assert_eq!(ring.key_for_day(day("2026-07-01")).unwrap().id(), &second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn generate_writes_owner_only_file_and_refuses_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.key");
        let id = KeyRing::generate(&path, "2026-11-01").unwrap();
        let r = KeyRing::load(&path).unwrap();
        assert_eq!(r.newest().id(), &id);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert!(matches!(
            KeyRing::generate(&path, "2026-11-01"),
            Err(KeyError::Exists { .. })
        ));
    }
}
