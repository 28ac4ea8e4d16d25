//! The privacy budget ledger (issue #6): how much ε and δ each audience has been given in
//! each period, and the refusal of any release that would exceed its budget.
//!
//! Differential privacy composes: publishing k releases with (εᵢ, δᵢ) costs (Σεᵢ, Σδᵢ) in
//! total (basic composition; Dwork and Roth 2014, "The Algorithmic Foundations of
//! Differential Privacy", Theorem 3.16). A budget therefore only means something if every
//! release is written down. The ledger is one JSON file (path chosen by the caller) with
//! every [`Spend`]: audience, period (the caller's unit, e.g. `2026-11`), report,
//! partition, input digest, ε and δ as exact rationals (`"0.5"`, `"1/3"`).
//!
//! [`Ledger::check_and_spend`] takes a batch of spends, and either records all of them or
//! none: it refuses, naming audience, period, spent, requested and budget, when any
//! (audience, period) would go over its [`Budget`]. Sums are exact rational arithmetic.
//!
//! **Identical re-releases are free.** A spend equal in every field to one already
//! recorded is the same release again: the noise seed is derived from report, partition
//! and input digest ([`crate::dp::seed_for`]), so a re-run reproduces the same noisy
//! numbers bit for bit and reveals nothing new. That holds only for the *same* parameters
//! too, so ε and δ are part of the identity: re-running with a different ε draws
//! different noise from the same stream and is charged. A different input digest is a
//! different release and is charged again. The digest must cover everything the numbers
//! depend on (input data and report definition).
//!
//! Concurrency and crashes: an exclusive lock on `<ledger>.lock` (kept, never deleted:
//! deleting lock files races) serialises writers; under it the ledger is re-read, checked,
//! written to a temporary file in the same directory, fsynced and renamed over the
//! original, and the directory fsynced. A crash leaves either the old or the new ledger,
//! never a torn one. A ledger that does not parse is an error naming the file, never
//! silently replaced (that would reset every budget).

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dp::Rational;

/// The file format version this code reads and writes.
const VERSION: u32 = 1;

/// One release charged to an audience's budget.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spend {
    pub audience: String,
    /// The budget period, as the caller names it (`2026-11`).
    pub period: String,
    pub report: String,
    /// The partition released (`2026-11-29`).
    pub partition: String,
    /// Digest of everything the release depends on.
    pub input_digest: String,
    pub epsilon: Rational,
    pub delta: Rational,
}

/// What one audience may receive per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub epsilon_per_period: Rational,
    pub delta_per_period: Rational,
}

/// Why the ledger refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("privacy ledger {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "privacy ledger {} is unreadable ({detail}); it was left as it is: restore it from a backup (never delete it: that resets every budget)",
        path.display()
    )]
    Corrupt { path: PathBuf, detail: String },
    /// The spend would exceed the budget (boxed: errors stay small).
    #[error("{0}")]
    Exceeded(Box<Overspend>),
    #[error(
        "privacy ledger: the spends of audience `{audience}`, period {period} do not sum exactly in 64-bit fractions; use simpler ε and δ (decimals)"
    )]
    Overflow { audience: String, period: String },
    #[error("privacy ledger: invalid spend: {0}")]
    Invalid(String),
}

/// A refused request: what was spent, requested and allowed in one (audience, period).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overspend {
    pub audience: String,
    pub period: String,
    pub spent_epsilon: Rational,
    pub spent_delta: Rational,
    pub requested_epsilon: Rational,
    pub requested_delta: Rational,
    pub budget_epsilon: Rational,
    pub budget_delta: Rational,
}

impl fmt::Display for Overspend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "privacy budget exceeded for audience `{}`, period {}: spent ε {} δ {}, requested ε {} δ {}, budget ε {} δ {}",
            self.audience,
            self.period,
            self.spent_epsilon,
            self.spent_delta,
            self.requested_epsilon,
            self.requested_delta,
            self.budget_epsilon,
            self.budget_delta
        )
    }
}

/// The file's layout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerFile {
    version: u32,
    spends: Vec<Spend>,
}

/// A privacy budget ledger file and the spends it held when last read.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    spends: Vec<Spend>,
}

impl Ledger {
    /// Reads the ledger at `path`; a missing file is an empty ledger (created by the first
    /// spend).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, LedgerError> {
        let path = path.into();
        let spends = read(&path)?;
        Ok(Self { path, spends })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every recorded spend, in the order recorded.
    pub fn spends(&self) -> &[Spend] {
        &self.spends
    }

    /// Total (ε, δ) recorded for `audience` in `period`.
    pub fn spent(&self, audience: &str, period: &str) -> Result<(Rational, Rational), LedgerError> {
        sum(self
            .spends
            .iter()
            .filter(|s| s.audience == audience && s.period == period))
        .ok_or_else(|| LedgerError::Overflow {
            audience: audience.to_owned(),
            period: period.to_owned(),
        })
    }

    /// Records `spends` if, for every (audience, period) they touch, what is recorded plus
    /// what is new stays within `budget`; otherwise records nothing and returns
    /// [`LedgerError::Exceeded`] for the first (audience, period), in sorted order, that
    /// would go over. Spends identical to recorded ones (or repeated within `spends`) are
    /// free. On `Ok` the new ledger is durable on disk.
    pub fn check_and_spend(
        &mut self,
        spends: &[Spend],
        budget: &Budget,
    ) -> Result<(), LedgerError> {
        self.check_and_spend_with(spends, |_| *budget)
    }

    /// [`Ledger::check_and_spend`] with a budget per audience: all spends of all audiences
    /// are recorded, or none.
    pub fn check_and_spend_with(
        &mut self,
        spends: &[Spend],
        budget_of: impl Fn(&str) -> Budget,
    ) -> Result<(), LedgerError> {
        for spend in spends {
            validate(spend)?;
        }
        let io = |source| LedgerError::Io {
            path: self.path.clone(),
            source,
        };
        // Held until dropped at the end of this function.
        let lock = lock_file(&self.path).map_err(io)?;
        lock.lock().map_err(io)?;
        let mut current = read(&self.path)?;

        let mut new: Vec<&Spend> = Vec::new();
        for spend in spends {
            if !current.contains(spend) && !new.contains(&spend) {
                new.push(spend);
            }
        }
        let groups: BTreeSet<(&str, &str)> = new
            .iter()
            .map(|s| (s.audience.as_str(), s.period.as_str()))
            .collect();
        for (audience, period) in groups {
            let budget = budget_of(audience);
            let in_group = |s: &&Spend| s.audience == audience && s.period == period;
            let overflow = || LedgerError::Overflow {
                audience: audience.to_owned(),
                period: period.to_owned(),
            };
            let (spent_epsilon, spent_delta) =
                sum(current.iter().filter(in_group)).ok_or_else(overflow)?;
            let (requested_epsilon, requested_delta) =
                sum(new.iter().copied().filter(in_group)).ok_or_else(overflow)?;
            let total_epsilon = spent_epsilon
                .checked_add(requested_epsilon)
                .ok_or_else(overflow)?;
            let total_delta = spent_delta
                .checked_add(requested_delta)
                .ok_or_else(overflow)?;
            if total_epsilon > budget.epsilon_per_period || total_delta > budget.delta_per_period {
                return Err(LedgerError::Exceeded(Box::new(Overspend {
                    audience: audience.to_owned(),
                    period: period.to_owned(),
                    spent_epsilon,
                    spent_delta,
                    requested_epsilon,
                    requested_delta,
                    budget_epsilon: budget.epsilon_per_period,
                    budget_delta: budget.delta_per_period,
                })));
            }
        }
        if !new.is_empty() {
            current.extend(new.into_iter().cloned());
            write(&self.path, &current)?;
        }
        self.spends = current;
        drop(lock);
        Ok(())
    }
}

fn validate(spend: &Spend) -> Result<(), LedgerError> {
    for (name, value) in [
        ("audience", &spend.audience),
        ("period", &spend.period),
        ("report", &spend.report),
        ("partition", &spend.partition),
        ("input_digest", &spend.input_digest),
    ] {
        if value.trim().is_empty() {
            return Err(LedgerError::Invalid(format!("`{name}` is empty")));
        }
    }
    Ok(())
}

fn sum<'a>(spends: impl Iterator<Item = &'a Spend>) -> Option<(Rational, Rational)> {
    let mut total = (Rational::ZERO, Rational::ZERO);
    for spend in spends {
        total = (
            total.0.checked_add(spend.epsilon)?,
            total.1.checked_add(spend.delta)?,
        );
    }
    Some(total)
}

/// The ledger's spends; none when the file does not exist.
fn read(path: &Path) -> Result<Vec<Spend>, LedgerError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(LedgerError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let corrupt = |detail: String| LedgerError::Corrupt {
        path: path.to_owned(),
        detail,
    };
    let file: LedgerFile = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
    if file.version != VERSION {
        return Err(corrupt(format!(
            "version {} (this logveil reads version {VERSION})",
            file.version
        )));
    }
    for spend in &file.spends {
        validate(spend).map_err(|e| corrupt(e.to_string()))?;
    }
    Ok(file.spends)
}

/// Writes the ledger atomically: temporary file, fsync, rename, fsync of the directory.
fn write(path: &Path, spends: &[Spend]) -> Result<(), LedgerError> {
    let file = LedgerFile {
        version: VERSION,
        spends: spends.to_vec(),
    };
    let mut body = serde_json::to_vec_pretty(&file).expect("a ledger always serialises");
    body.push(b'\n');
    let tmp = sibling(path, &format!("{}.tmp", std::process::id()));
    let io = |p: &Path| {
        let p = p.to_owned();
        move |source| LedgerError::Io { path: p, source }
    };
    let result = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut out = options.open(&tmp).map_err(io(&tmp))?;
        out.write_all(&body).map_err(io(&tmp))?;
        out.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))?;
        sync_dir(path).map_err(io(path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `<ledger>.<suffix>` in the ledger's directory.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

fn lock_file(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(sibling(path, "lock"))
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;

    fn r(text: &str) -> Rational {
        Rational::parse(text).unwrap()
    }

    fn spend(report: &str, partition: &str, digest: &str, epsilon: &str) -> Spend {
        Spend {
            audience: "partner".into(),
            period: "2026-11".into(),
            report: report.into(),
            partition: partition.into(),
            input_digest: digest.into(),
            epsilon: r(epsilon),
            delta: r("1e-7"),
        }
    }

    fn budget() -> Budget {
        Budget {
            epsilon_per_period: r("1"),
            delta_per_period: r("1e-6"),
        }
    }

    #[test]
    fn spends_up_to_the_budget_then_refuses_and_leaves_the_file_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        let mut ledger = Ledger::open(&path).unwrap();
        assert!(ledger.spends().is_empty());
        ledger
            .check_and_spend(
                &[spend("visitors_daily", "2026-11-01", "d1", "0.3")],
                &budget(),
            )
            .unwrap();
        ledger
            .check_and_spend(
                &[
                    spend("visitors_daily", "2026-11-02", "d2", "0.3"),
                    spend("demographics_daily", "2026-11-02", "d2", "0.4"),
                ],
                &budget(),
            )
            .unwrap();
        // Exactly at the budget: 0.3 + 0.3 + 0.4 = 1, in exact arithmetic.
        assert_eq!(ledger.spent("partner", "2026-11").unwrap().0, Rational::ONE);
        let before = std::fs::read(&path).unwrap();

        let err = ledger
            .check_and_spend(
                &[spend("visitors_daily", "2026-11-03", "d3", "0.01")],
                &budget(),
            )
            .unwrap_err();
        let message = err.to_string();
        for part in [
            "audience `partner`",
            "period 2026-11",
            "spent ε 1 δ 0.0000003",
            "requested ε 0.01 δ 0.0000001",
            "budget ε 1 δ 0.000001",
        ] {
            assert!(message.contains(part), "{message} lacks {part}");
        }
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(ledger.spends().len(), 3);
        // Another process opening the file sees the same three spends.
        assert_eq!(Ledger::open(&path).unwrap().spends(), ledger.spends());
        // Another period has its own budget.
        let mut next = spend("visitors_daily", "2026-12-01", "d4", "1");
        next.period = "2026-12".into();
        ledger.check_and_spend(&[next], &budget()).unwrap();
    }

    #[test]
    fn a_batch_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        let mut ledger = Ledger::open(&path).unwrap();
        let mut other = spend("visitors_daily", "2026-11-01", "d1", "0.1");
        other.audience = "internal".into();
        let err = ledger
            .check_and_spend(
                &[other, spend("visitors_daily", "2026-11-01", "d1", "1.5")],
                &budget(),
            )
            .unwrap_err();
        assert!(matches!(err, LedgerError::Exceeded(ref o) if o.audience == "partner"));
        assert!(!path.exists());
        assert!(ledger.spends().is_empty());
    }

    #[test]
    fn delta_is_budgeted_too() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(dir.path().join("ledger.json")).unwrap();
        let mut big_delta = spend("visitors_daily", "2026-11-01", "d1", "0.1");
        big_delta.delta = r("2e-6");
        let err = ledger.check_and_spend(&[big_delta], &budget()).unwrap_err();
        assert!(
            err.to_string().contains("requested ε 0.1 δ 0.000002"),
            "{err}"
        );
    }

    #[test]
    fn identical_respend_is_free_and_a_new_digest_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        let mut ledger = Ledger::open(&path).unwrap();
        let first = spend("visitors_daily", "2026-11-01", "d1", "0.6");
        ledger
            .check_and_spend(std::slice::from_ref(&first), &budget())
            .unwrap();
        let before = std::fs::read(&path).unwrap();
        // The same release again, twice in one batch: free, file untouched.
        ledger
            .check_and_spend(&[first.clone(), first.clone()], &budget())
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(ledger.spends().len(), 1);
        // The same report and partition over changed input: a new release, charged.
        let changed = spend("visitors_daily", "2026-11-01", "d2", "0.6");
        assert!(matches!(
            ledger.check_and_spend(std::slice::from_ref(&changed), &budget()),
            Err(LedgerError::Exceeded(_))
        ));
        let changed = spend("visitors_daily", "2026-11-01", "d2", "0.4");
        ledger.check_and_spend(&[changed], &budget()).unwrap();
        assert_eq!(ledger.spent("partner", "2026-11").unwrap().0, Rational::ONE);
        // Same input with another ε draws other noise: charged, so refused now.
        let other_epsilon = spend("visitors_daily", "2026-11-01", "d1", "0.5");
        assert!(ledger.check_and_spend(&[other_epsilon], &budget()).is_err());
    }

    #[test]
    fn corrupt_ledgers_are_clear_errors_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        for (body, detail) in [
            ("{\"version\": 1, \"spends\": [", "EOF"),
            ("not json", "expected"),
            ("{\"version\": 2, \"spends\": []}", "version 2"),
            (
                "{\"version\": 1, \"spends\": [{\"audience\": \"a\", \"period\": \"p\", \"report\": \"r\", \"partition\": \"x\", \"input_digest\": \"d\", \"epsilon\": \"-1\", \"delta\": \"0\"}]}",
                "invalid number `-1`",
            ),
            (
                "{\"version\": 1, \"spends\": [{\"audience\": \"\", \"period\": \"p\", \"report\": \"r\", \"partition\": \"x\", \"input_digest\": \"d\", \"epsilon\": \"1\", \"delta\": \"0\"}]}",
                "`audience` is empty",
            ),
        ] {
            std::fs::write(&path, body).unwrap();
            let err = Ledger::open(&path).unwrap_err();
            let message = err.to_string();
            assert!(matches!(err, LedgerError::Corrupt { .. }), "{message}");
            assert!(message.contains("ledger.json"), "{message}");
            assert!(message.contains(detail), "{message} lacks {detail}");
            // A ledger opened before the file went bad refuses to spend over it too.
            let mut stale = Ledger {
                path: path.clone(),
                spends: Vec::new(),
            };
            let err = stale
                .check_and_spend(&[spend("r", "2026-11-01", "d", "0.1")], &budget())
                .unwrap_err();
            assert!(matches!(err, LedgerError::Corrupt { .. }), "{err}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), body);
        }
    }

    #[test]
    fn the_file_is_readable_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        let mut ledger = Ledger::open(&path).unwrap();
        ledger
            .check_and_spend(
                &[spend("visitors_daily", "2026-11-01", "abc", "1/3")],
                &budget(),
            )
            .unwrap();
        let value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(value["version"], 1);
        assert_eq!(value["spends"][0]["epsilon"], "1/3");
        assert_eq!(value["spends"][0]["delta"], "0.0000001");
        assert_eq!(value["spends"][0]["input_digest"], "abc");
        // Only the ledger and its lock file remain (no temporary files).
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["ledger.json", "ledger.json.lock"]);
    }

    #[test]
    fn empty_fields_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(dir.path().join("ledger.json")).unwrap();
        let mut bad = spend("visitors_daily", "2026-11-01", "d", "0.1");
        bad.input_digest = " ".into();
        let err = ledger.check_and_spend(&[bad], &budget()).unwrap_err();
        assert!(err.to_string().contains("`input_digest` is empty"), "{err}");
    }

    #[test]
    fn concurrent_writers_never_overspend() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        let threads = 8;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let path = path.clone();
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    let mut ledger = Ledger::open(&path).unwrap();
                    barrier.wait();
                    let s = spend("visitors_daily", "2026-11-01", &format!("d{i}"), "0.25");
                    ledger.check_and_spend(&[s], &budget()).is_ok()
                })
            })
            .collect();
        let granted = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert_eq!(granted, 4);
        let ledger = Ledger::open(&path).unwrap();
        assert_eq!(ledger.spends().len(), 4);
        assert_eq!(ledger.spent("partner", "2026-11").unwrap().0, Rational::ONE);
    }
}
