//! The daemon's checkpoint: per-file offsets and marks, the open windows' report states
//! and the line counters, in one JSON file committed atomically (temporary file, fsync,
//! rename, fsync of the directory) after the windows it closed were written. On restart
//! everything resumes from it, so a crash redoes at most the work since the last
//! checkpoint, with the same result.
//!
//! The file holds visitor pseudonyms (in the open report states) but no log bytes: it is
//! written with mode 0600 in a 0700 directory, like the key file it depends on.

use std::collections::BTreeMap;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use logveil_ingest::tail::FileCheckpoint;
use logveil_parse::RejectReason;
use logveil_report::{ReportSpec, ReportState};
use serde::{Deserialize, Serialize};

use crate::engine::LineCounts;

pub const FILE_NAME: &str = "checkpoint.json";
pub const VERSION: u32 = 1;

/// Line counters over every line the state has seen, across restarts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LineTotals {
    pub read: u64,
    pub parsed: u64,
    pub directives: u64,
    /// Reason → count, every reason listed.
    pub rejected: BTreeMap<String, u64>,
    /// Parsed lines left out of at least one report because its window had closed.
    pub late: u64,
}

impl LineTotals {
    pub fn add(&mut self, lines: &LineCounts, late: u64) {
        self.read += lines.read;
        self.parsed += lines.parsed;
        self.directives += lines.directives;
        for (reason, n) in RejectReason::ALL.iter().zip(lines.rejected) {
            *self.rejected.entry(reason.as_str().to_owned()).or_default() += n;
        }
        self.late += late;
    }

    pub fn with_every_reason(mut self) -> Self {
        for reason in RejectReason::ALL {
            self.rejected.entry(reason.as_str().to_owned()).or_default();
        }
        self
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReportCheckpoint {
    pub name: String,
    /// What the state depends on (see [`fingerprint`]): a state is only resumed by a
    /// report with the same one.
    pub fingerprint: String,
    pub state: ReportState,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    /// Keys the file marks (hex); random, made with the state directory.
    pub salt: String,
    /// Unix seconds when written.
    pub written_at: u64,
    pub pipeline: String,
    /// The latest event time seen (UTC microseconds); the watermark is this − `allowed_lateness`.
    pub max_event_micros: Option<i64>,
    pub lines: LineTotals,
    pub windows_written: u64,
    pub files: Vec<FileCheckpoint>,
    pub reports: Vec<ReportCheckpoint>,
}

/// A hash of everything in a report definition and the pipeline's calendar: a report
/// whose definition changed does not resume the old state.
pub fn fingerprint(spec: &ReportSpec, calendar: &logveil_report::Calendar) -> String {
    let text = format!("{spec:?}\n{calendar:?}");
    blake3::hash(text.as_bytes()).to_hex()[..32].to_owned()
}

/// Creates the state directory (0700) if needed.
pub fn create_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating state directory {}", dir.display()))
}

/// Holds the state directory's lock for as long as it lives: two daemons on one state
/// would each redo and overwrite the other's work.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

/// The state directory of a long-running command (`--state`, else `[daemon] state_dir`),
/// created 0700 and locked against a second process. `who` names the command in errors.
pub fn open_state_dir(
    arg: Option<&PathBuf>,
    pipeline: &crate::config::Pipeline,
    who: &str,
) -> Result<(PathBuf, StateLock)> {
    let Some(dir) = arg.cloned().or_else(|| pipeline.daemon.state_dir.clone()) else {
        bail!(
            "{}: the {who} needs a state directory: set [daemon] state_dir or pass --state DIR",
            pipeline.path.display()
        );
    };
    create_dir(&dir)?;
    let lock = StateLock::acquire(&dir)?;
    Ok((dir, lock))
}

impl StateLock {
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "state directory {} is in use by another logveil daemon (lock {})",
                dir.display(),
                path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
    }
}

impl Checkpoint {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(FILE_NAME)
    }

    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let path = Self::path(dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let checkpoint: Self = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not a logveil checkpoint", path.display()))?;
        if checkpoint.version != VERSION {
            bail!(
                "{}: checkpoint version {} (this logveil reads version {VERSION})",
                path.display(),
                checkpoint.version
            );
        }
        Ok(Some(checkpoint))
    }

    /// Writes the checkpoint atomically: readers (and a restart after a crash) see the
    /// previous one or this one, never a mix.
    pub fn commit(&self, dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec(self).context("serialising the checkpoint")?;
        write_atomic(dir, FILE_NAME, &bytes)
    }
}

/// Writes `dir/name` atomically and durably (temp file, fsync, rename, fsync of the
/// directory): readers and a restart after a crash see the previous content or this one.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let context = || format!("writing checkpoint {}", tmp.display());
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(context)?;
    file.write_all(bytes).with_context(context)?;
    file.sync_all().with_context(context)?;
    drop(file);
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))?;
    Ok(())
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub fn unhex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
