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
    /// The key file belongs to another user, who could change it (ssh's `StrictModes`).
    #[error(
        "key file {path} is owned by uid {owner}, not by you (uid {euid}) or root; chown it (`sudo chown {euid} {path}`) or run logveil as its owner"
    )]
    Owner {
        path: PathBuf,
        owner: u32,
        euid: u32,
    },
    /// The directory holding the key file lets someone else replace it: it is writable by
    /// group or others (sticky `/tmp`-style directories too) or owned by another user.
    #[error(
        "the directory {dir} holding key file {path} is {problem}, so someone else could replace the key; move the key to a directory only you can write, e.g. ~/.config/logveil/"
    )]
    Directory {
        path: PathBuf,
        dir: PathBuf,
        problem: String,
    },
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
    /// Reads a key file. Unless it says `demo = true` (its secret is published anyway), it
    /// is refused, as ssh refuses such private keys, when it is readable by group or others,
    /// owned by another user than you or root, or in a directory someone else could replace
    /// it in: writable by group or others (sticky `/tmp`-style directories included) or
    /// owned by another user.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        use std::io::Read;
        let read_error = |source| KeyError::Read {
            path: path.to_owned(),
            source,
        };
        // One handle for the checks and the read: the file checked is the file read.
        let mut file = std::fs::File::open(path).map_err(read_error)?;
        let meta = file.metadata().map_err(read_error)?;
        // Sized up front so the buffer holding the secret is not reallocated (and copied).
        let mut text = Zeroizing::new(String::with_capacity(
            usize::try_from(meta.len()).unwrap_or(0).saturating_add(64),
        ));
        file.read_to_string(&mut text).map_err(read_error)?;
        let ring = Self::parse(&text, path)?;
        #[cfg(unix)]
        if !ring.demo {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let euid = effective_uid();
            if let Some(euid) = euid
                && meta.uid() != euid
                && meta.uid() != 0
            {
                return Err(KeyError::Owner {
                    path: path.to_owned(),
                    owner: meta.uid(),
                    euid,
                });
            }
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(KeyError::Permissions {
                    path: path.to_owned(),
                    mode: mode & 0o7777,
                });
            }
            check_key_dirs(path, euid, read_error)?;
        }
        #[cfg(not(unix))]
        let _ = meta;
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

    /// Writes a new key file with one random key, readable by its owner only. Refused in a
    /// directory someone else could replace it in, as [`KeyRing::load`] would refuse it.
    pub fn generate(path: &Path, not_before: &str) -> Result<KeyId, KeyError> {
        if parse_date(not_before).is_none() {
            return Err(KeyError::Invalid {
                path: path.to_owned(),
                message: format!("not_before `{not_before}`: expected a date YYYY-MM-DD"),
            });
        }
        #[cfg(unix)]
        check_key_dirs(path, effective_uid(), |source| KeyError::Write {
            path: path.to_owned(),
            source,
        })?;
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

/// The effective uid of this process, or `None` where it cannot be told.
///
/// std has no `geteuid`, the workspace denies `unsafe` (so no FFI call) and adds no `libc`
/// or `nix` for one number. It is read from `/proc/self/status` (`Uid:` real, effective,
/// saved, filesystem): reading it writes nothing (unlike creating a probe file and reading
/// its owner) and it is always right (unlike the owner of `/proc/self`, which Linux sets
/// to root for a non-dumpable process). Only Linux has that file in that format: elsewhere
/// the owner checks are skipped, while the mode checks still apply.
#[cfg(unix)]
fn effective_uid() -> Option<u32> {
    if !cfg!(any(target_os = "linux", target_os = "android")) {
        return None;
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Refuses a key file, existing or about to be written, whose directory someone else could
/// replace it in, as ssh's `StrictModes` does: a directory writable by group or others
/// (sticky `/tmp`-style directories included: others may still plant a file or link under
/// the key's name while it is absent), or owned by another user than `euid` or root (when
/// `euid` is known). Both the directory named in `path` and, if `path` is a symbolic link,
/// the directory of the file it leads to are checked. `io_error` wraps an I/O failure as a
/// read or write error.
#[cfg(unix)]
fn check_key_dirs(
    path: &Path,
    euid: Option<u32>,
    io_error: impl Fn(std::io::Error) -> KeyError,
) -> Result<(), KeyError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let named = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut dirs = vec![std::fs::canonicalize(named).map_err(&io_error)?];
    if let Ok(real) = std::fs::canonicalize(path)
        && let Some(dir) = real.parent()
        && !dirs.iter().any(|d| d == dir)
    {
        dirs.push(dir.to_owned());
    }
    for dir in dirs {
        let meta = std::fs::metadata(&dir).map_err(&io_error)?;
        let mode = meta.permissions().mode();
        let problem = if let Some(euid) = euid
            && meta.uid() != euid
            && meta.uid() != 0
        {
            format!(
                "owned by uid {}, not by you (uid {euid}) or root",
                meta.uid()
            )
        } else if mode & 0o022 != 0 {
            let who = match mode & 0o022 {
                0o020 => "group",
                0o002 => "others",
                _ => "group and others",
            };
            format!("writable by {who} (mode {:04o})", mode & 0o7777)
        } else {
            continue;
        };
        return Err(KeyError::Directory {
            path: path.to_owned(),
            dir,
            problem,
        });
    }
    Ok(())
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

    /// A key written by `generate` into `dir/name`, with `dir` then set to `mode`.
    fn key_in_dir_with_mode(dir: &Path, name: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir(dir).unwrap();
        let path = dir.join(name);
        KeyRing::generate(&path, "2026-01-01").unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn secret_of(path: &Path) -> String {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("secret = "))
            .unwrap()
            .trim_matches('"')
            .to_owned()
    }

    /// The refusal's message names the key, the directory and the fix, and no key material.
    fn assert_directory_refusal(e: &KeyError, path: &Path, problem: &str, secret: Option<&str>) {
        let msg = e.to_string();
        let dir = std::fs::canonicalize(path.parent().unwrap()).unwrap();
        assert!(matches!(e, KeyError::Directory { .. }), "{e:?}");
        assert!(
            msg.contains(&format!(
                "the directory {} holding key file {}",
                dir.display(),
                path.display()
            )) && msg.contains(problem)
                && msg.contains("move the key to a directory only you can write"),
            "{msg}"
        );
        if let Some(secret) = secret {
            assert!(
                !msg.contains(secret) && !format!("{e:?}").contains(secret),
                "{msg}"
            );
        }
    }

    #[test]
    fn key_in_a_directory_others_can_write_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for (name, mode, problem) in [
            ("open", 0o777, "writable by group and others (mode 0777)"),
            ("sticky", 0o1777, "writable by group and others (mode 1777)"),
            ("others", 0o703, "writable by others (mode 0703)"),
            ("group", 0o770, "writable by group (mode 0770)"),
        ] {
            let path = key_in_dir_with_mode(&tmp.path().join(name), "site.key", mode);
            let secret = secret_of(&path);
            let e = KeyRing::load(&path).unwrap_err();
            assert_directory_refusal(&e, &path, problem, Some(&secret));
            // Rotation loads the file first: refused the same way, the file untouched.
            let e = KeyRing::rotate(&path, "2026-07-01").unwrap_err();
            assert_directory_refusal(&e, &path, problem, Some(&secret));
            assert_eq!(secret_of(&path), secret);
        }
    }

    #[test]
    fn key_in_a_directory_only_its_owner_can_write_is_accepted() {
        let tmp = tempfile::tempdir().unwrap();
        let path = key_in_dir_with_mode(&tmp.path().join("d"), "site.key", 0o755);
        assert!(!KeyRing::load(&path).unwrap().is_demo());
        KeyRing::rotate(&path, "2026-07-01").unwrap();
        assert_eq!(KeyRing::load(&path).unwrap().keys().len(), 2);
    }

    #[test]
    fn generate_refuses_a_directory_others_can_write() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        for (name, mode) in [("open", 0o777), ("sticky", 0o1777)] {
            let dir = tmp.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
            let path = dir.join("new.key");
            let e = KeyRing::generate(&path, "2026-01-01").unwrap_err();
            assert_directory_refusal(&e, &path, &format!("(mode {mode:04o})"), None);
            assert!(!path.exists(), "nothing written");
        }
        // A directory that does not exist is a write error, not a panic.
        let e = KeyRing::generate(&tmp.path().join("missing/new.key"), "2026-01-01").unwrap_err();
        assert!(matches!(e, KeyError::Write { .. }), "{e:?}");
    }

    #[test]
    fn a_link_to_a_key_in_an_open_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let target = key_in_dir_with_mode(&tmp.path().join("open"), "site.key", 0o777);
        let link = tmp.path().join("site.key");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = KeyRing::load(&link).unwrap_err().to_string();
        let open = std::fs::canonicalize(tmp.path().join("open")).unwrap();
        assert!(
            e.contains(&format!("the directory {} holding", open.display()))
                && e.contains("(mode 0777)"),
            "{e}"
        );
    }

    #[test]
    fn demo_key_in_an_open_directory_is_accepted() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("open");
        std::fs::create_dir(&dir).unwrap();
        let demo = dir.join("demo.key");
        std::fs::write(&demo, format!("demo = true\n[[key]]\nid = \"d\"\nnot_before = \"2000-01-01\"\nsecret = \"{SECRET}\"\n")).unwrap();
        std::fs::set_permissions(&demo, std::fs::Permissions::from_mode(0o666)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(KeyRing::load(&demo).unwrap().is_demo());
    }

    #[test]
    fn effective_uid_is_the_owner_of_a_file_this_process_creates() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let probe = tmp.path().join("probe");
        std::fs::write(&probe, "").unwrap();
        let owner = std::fs::metadata(&probe).unwrap().uid();
        if cfg!(target_os = "linux") {
            assert_eq!(effective_uid(), Some(owner));
        } else {
            assert_eq!(effective_uid(), None);
        }
    }

    /// Only root can give a file away; other users skip these with a notice.
    fn running_as_root(test: &str) -> bool {
        let root = effective_uid() == Some(0);
        if !root {
            eprintln!("{test}: skipped, only root can chown a file to another user");
        }
        root
    }

    #[test]
    fn key_owned_by_another_user_is_refused() {
        if !running_as_root("key_owned_by_another_user_is_refused") {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let path = key_in_dir_with_mode(&tmp.path().join("d"), "site.key", 0o700);
        let secret = secret_of(&path);
        std::os::unix::fs::chown(&path, Some(12345), None).unwrap();
        let e = KeyRing::load(&path).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(
                e,
                KeyError::Owner {
                    owner: 12345,
                    euid: 0,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            msg.contains(&format!(
                "key file {} is owned by uid 12345, not by you (uid 0) or root",
                path.display()
            )) && msg.contains("chown"),
            "{msg}"
        );
        assert!(!msg.contains(&secret) && !format!("{e:?}").contains(&secret));
        assert!(KeyRing::rotate(&path, "2026-07-01").is_err());
        // Owned by root: accepted for any user, as ssh does.
        std::os::unix::fs::chown(&path, Some(0), None).unwrap();
        KeyRing::load(&path).unwrap();
    }

    #[test]
    fn key_in_a_directory_owned_by_another_user_is_refused() {
        if !running_as_root("key_in_a_directory_owned_by_another_user_is_refused") {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let path = key_in_dir_with_mode(&tmp.path().join("d"), "site.key", 0o755);
        std::os::unix::fs::chown(path.parent().unwrap(), Some(12345), None).unwrap();
        let e = KeyRing::load(&path).unwrap_err();
        assert_directory_refusal(
            &e,
            &path,
            "owned by uid 12345, not by you (uid 0) or root",
            Some(&secret_of(&path)),
        );
        let e = KeyRing::generate(&path.with_file_name("new.key"), "2026-01-01").unwrap_err();
        assert!(matches!(e, KeyError::Directory { .. }), "{e:?}");
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
