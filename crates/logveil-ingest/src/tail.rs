//! Following live log files (`logveil daemon`): new files, rotation by rename and by
//! copytruncate, truncation, deletion, restarts.
//!
//! **Identity.** A followed file is its device and inode, checked against two *marks*: a
//! keyed hash of its first bytes (up to [`MARK_BYTES`], fewer while the file is shorter)
//! and a keyed hash of the [`MARK_BYTES`] just before the read offset. The marks are
//! re-checked whenever the file changes and after every read, and on restart before
//! resuming, so a file that was truncated, rewritten or replaced (also by a new file that
//! got the old inode) is recognised instead of being read from a wrong offset. Marks are
//! keyed with a random salt kept in the checkpoint: the checkpoint holds no log bytes.
//!
//! **Rotation.** A file is followed by inode, not by path: after `rename` the old file is
//! read to its end under its new name (also when the name leaves the globs, or the file
//! is deleted while open), and the new file at the old path is read from 0. With
//! `copytruncate` the copy is a new inode whose content starts like a followed file: it
//! is held back ("looks like a copy") until the original shrinks, then verified with both
//! marks at the original's offset and read from there, while the original is read from 0.
//!
//! **Lines.** Only complete lines are returned: the offset never moves past a partial
//! last line until its newline arrives, or — for a file that left the globs and stayed
//! quiet for the drain grace — the file is finished and its last line taken as it is
//! (as `logveil run` would read it). A line longer than `max_line_bytes` (+2 for `\r\n`)
//! is reported by offset in [`Chunk::too_long`] and skipped as it streams past, like
//! [`crate::ChunkReader`] does.
//!
//! Compressed files matched by the globs are skipped: a rotation compressed later
//! (`access.log.2.gz`) was read while it was plain.

use std::collections::{HashMap, HashSet};
use std::fs::{File, Metadata};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::Chunk;

/// How many bytes the head and tail marks cover.
pub const MARK_BYTES: usize = 256;

/// Scans for which content not found again (a renamed or copied file) is looked for.
const RESTORE_SCANS: u32 = 5;

/// What the checkpoint keeps of one followed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCheckpoint {
    /// The last path the file was seen under.
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    /// Bytes consumed: the start of the next unread line.
    pub offset: u64,
    /// The size last seen (for messages about what was lost when the file is gone).
    pub size: u64,
    /// Keyed hash of the first `head_len` bytes (`head_len = min(MARK_BYTES, offset)`).
    pub head_len: u32,
    pub head_hash: String,
    /// Keyed hash of the `tail_len` bytes before `offset`.
    pub tail_len: u32,
    pub tail_hash: String,
    /// Inside an over-long line: skip up to its newline.
    pub discarding: bool,
}

/// Complete lines read from one file.
#[derive(Debug)]
pub struct TailRead {
    /// The followed stream (stable across rename, and from an original to its copytruncate copy).
    pub stream: u64,
    pub path: PathBuf,
    pub chunk: Chunk,
}

/// A followed file, for metrics.
#[derive(Debug, Clone)]
pub struct FileStatus {
    pub path: PathBuf,
    pub offset: u64,
    pub size: u64,
    /// Bytes consumed since this process started following it.
    pub bytes_read: u64,
    /// Still matched by the globs (otherwise it is being drained).
    pub in_glob: bool,
}

#[derive(Debug)]
struct Tracked {
    stream: u64,
    path: PathBuf,
    dev: u64,
    ino: u64,
    file: File,
    offset: u64,
    /// The first `min(MARK_BYTES, offset)` bytes (memory only; never written out).
    head: Vec<u8>,
    /// The `min(MARK_BYTES, offset)` bytes before `offset`.
    tail: Vec<u8>,
    discarding: bool,
    size: u64,
    mtime_ns: i128,
    in_glob: bool,
    /// Content changed under the offset (shrunk, truncated and rewritten, replaced).
    suspect: Option<&'static str>,
    last_growth: Instant,
    bytes_read: u64,
}

/// Why a file failed the check of its marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Same,
    Shrunk,
    HeadChanged,
    TailChanged,
}

impl Verdict {
    fn describe(self) -> &'static str {
        match self {
            Verdict::Same => "unchanged",
            Verdict::Shrunk => "truncated (smaller than the offset read)",
            Verdict::HeadChanged => {
                "replaced (its first bytes changed: rewritten, or a new file got the inode)"
            }
            Verdict::TailChanged => "truncated and rewritten (the bytes before the offset changed)",
        }
    }
}

/// Marks to check a file against: hashes only (what a checkpoint has).
#[derive(Debug, Clone)]
struct Marks {
    offset: u64,
    head_len: usize,
    head_hash: [u8; 32],
    tail_len: usize,
    tail_hash: [u8; 32],
}

/// Follows the files matched by a set of globs.
#[derive(Debug)]
pub struct Tailer {
    patterns: Vec<String>,
    base: PathBuf,
    salt: [u8; 32],
    max_line_bytes: usize,
    /// A file that left the globs is dropped once read to its end and quiet this long.
    drain_grace: Duration,
    files: Vec<Tracked>,
    /// Content not found again yet, with the scans tried: checkpointed files (found by
    /// inode, or in a copy) and truncated files whose copy has not shown up. Kept for a
    /// few scans (renames may be in flight) and in the checkpoint meanwhile.
    restore: Vec<(FileCheckpoint, u32)>,
    /// Compressed files (skipped), by inode, with the size when looked at.
    skipped: HashMap<(u64, u64), u64>,
    /// Files already logged as held back (copies) or unreadable.
    logged_once: HashSet<(u64, u64)>,
    next_stream: u64,
    last_activity: Instant,
    /// While set, each file is read only up to its end offset here, keyed by
    /// `(dev, ino)`; files not listed are not read ([`Tailer::set_read_limits`]).
    limits: Option<HashMap<(u64, u64), u64>>,
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn mtime_ns(meta: &Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

/// Reads up to `len` bytes at `at` (fewer only at the end of the file).
fn read_at(file: &File, at: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut buf[got..], at + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// Opens `path` if it is still the file `meta` describes (a rename between the listing
/// and the open would hand over another file), with the open file's metadata.
fn open_same(path: &Path, meta: &Metadata) -> std::io::Result<Option<(File, Metadata)>> {
    let file = File::open(path)?;
    let now = file.metadata()?;
    Ok(((now.dev(), now.ino()) == (meta.dev(), meta.ino())).then_some((file, now)))
}

fn is_compressed(file: &File) -> bool {
    let magic = read_at(file, 0, 4).unwrap_or_default();
    matches!(magic[..], [0x1f, 0x8b, ..] | [0x28, 0xb5, 0x2f, 0xfd])
}

impl Tailer {
    /// `patterns` are globs relative to `base`; `salt` keys the marks (keep it with the checkpoint).
    pub fn new(
        patterns: Vec<String>,
        base: PathBuf,
        salt: [u8; 32],
        max_line_bytes: usize,
        drain_grace: Duration,
    ) -> Self {
        Self {
            patterns,
            base,
            salt,
            max_line_bytes,
            drain_grace,
            files: Vec::new(),
            restore: Vec::new(),
            skipped: HashMap::new(),
            logged_once: HashSet::new(),
            next_stream: 0,
            last_activity: Instant::now(),
            limits: None,
        }
    }

    /// Reads only up to these end offsets (keyed by `(dev, ino)`), nothing from other
    /// files, until cleared with `None`. An edge agent replays a batch it published but
    /// did not checkpoint with exactly the same byte range, so the range-based message
    /// id matches and the server drops the duplicate.
    pub fn set_read_limits(&mut self, limits: Option<HashMap<(u64, u64), u64>>) {
        self.limits = limits;
    }

    /// Bytes consumed of a followed stream: the start of its next unread line.
    pub fn offset(&self, stream: u64) -> Option<u64> {
        self.files
            .iter()
            .find(|t| t.stream == stream)
            .map(|t| t.offset)
    }

    /// `(dev, ino)` of a followed stream's current file.
    pub fn file_id(&self, stream: u64) -> Option<(u64, u64)> {
        self.files
            .iter()
            .find(|t| t.stream == stream)
            .map(|t| (t.dev, t.ino))
    }

    /// The first `min(MARK_BYTES, offset)` bytes of a followed stream (for a content
    /// fingerprint; the caller hashes them with a key, they are raw log bytes).
    pub fn head(&self, stream: u64) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|t| t.stream == stream)
            .map(|t| t.head.as_slice())
    }

    /// Changes the globs (pipeline reload); files no longer matched are drained.
    pub fn set_patterns(&mut self, patterns: Vec<String>, base: PathBuf) {
        self.patterns = patterns;
        self.base = base;
    }

    pub fn set_max_line_bytes(&mut self, max_line_bytes: usize) {
        self.max_line_bytes = max_line_bytes;
    }

    /// Files to find again on the next [`Tailer::scan`] (from a checkpoint).
    pub fn restore(&mut self, files: Vec<FileCheckpoint>) {
        self.restore = files.into_iter().map(|f| (f, 0)).collect();
    }

    /// How long since a file last grew or appeared.
    pub fn idle_for(&self) -> Duration {
        self.last_activity.elapsed()
    }

    fn hash(&self, bytes: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.salt, bytes).as_bytes()
    }

    fn marks_of(&self, t: &Tracked) -> Marks {
        Marks {
            offset: t.offset,
            head_len: t.head.len(),
            head_hash: self.hash(&t.head),
            tail_len: t.tail.len(),
            tail_hash: self.hash(&t.tail),
        }
    }

    fn entry(&self, t: &Tracked) -> FileCheckpoint {
        FileCheckpoint {
            path: t.path.clone(),
            dev: t.dev,
            ino: t.ino,
            offset: t.offset,
            size: t.size,
            head_len: t.head.len() as u32,
            head_hash: hex(&self.hash(&t.head)),
            tail_len: t.tail.len() as u32,
            tail_hash: hex(&self.hash(&t.tail)),
            discarding: t.discarding,
        }
    }

    /// The checkpoint of every followed file (and of content not found again yet).
    pub fn checkpoint(&self) -> Vec<FileCheckpoint> {
        let mut out: Vec<FileCheckpoint> = self.files.iter().map(|t| self.entry(t)).collect();
        out.extend(self.restore.iter().map(|(f, _)| f.clone()));
        out
    }

    pub fn status(&self) -> Vec<FileStatus> {
        self.files
            .iter()
            .map(|t| FileStatus {
                path: t.path.clone(),
                offset: t.offset,
                size: t.size,
                bytes_read: t.bytes_read,
                in_glob: t.in_glob,
            })
            .collect()
    }

    /// Streams currently followed (to forget per-stream state of the others).
    pub fn streams(&self) -> impl Iterator<Item = u64> + '_ {
        self.files.iter().map(|t| t.stream)
    }

    /// Calls `f` with the bytes of `stream` before its offset, in pieces (to rebuild
    /// parser state, such as W3C `#Fields:`, after a restart).
    pub fn replay_prefix(&self, stream: u64, mut f: impl FnMut(&[u8])) -> std::io::Result<()> {
        let Some(t) = self.files.iter().find(|t| t.stream == stream) else {
            return Ok(());
        };
        let mut at = 0;
        while at < t.offset {
            let len = ((t.offset - at) as usize).min(1 << 20);
            let buf = read_at(&t.file, at, len)?;
            if buf.is_empty() {
                break;
            }
            at += buf.len() as u64;
            f(&buf);
        }
        Ok(())
    }

    fn glob_paths(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for pattern in &self.patterns {
            let full = crate::normalize_path(&self.base.join(pattern));
            let Ok(paths) = glob::glob(&full.to_string_lossy()) else {
                continue;
            };
            for path in paths.flatten() {
                if seen.insert(path.clone()) {
                    out.push(path);
                }
            }
        }
        out
    }

    /// Checks `file` (of `size` bytes) against `marks`.
    fn verify(&self, file: &File, size: u64, marks: &Marks) -> std::io::Result<Verdict> {
        if marks.offset == 0 {
            return Ok(Verdict::Same);
        }
        if size < marks.offset {
            return Ok(Verdict::Shrunk);
        }
        let head = read_at(file, 0, marks.head_len)?;
        if head.len() < marks.head_len || self.hash(&head) != marks.head_hash {
            return Ok(Verdict::HeadChanged);
        }
        let tail = read_at(file, marks.offset - marks.tail_len as u64, marks.tail_len)?;
        if tail.len() < marks.tail_len || self.hash(&tail) != marks.tail_hash {
            return Ok(Verdict::TailChanged);
        }
        Ok(Verdict::Same)
    }

    fn new_stream(&mut self) -> u64 {
        self.next_stream += 1;
        self.next_stream
    }

    /// Starts following `file` from `offset`, with head and tail bytes read from it.
    fn track(
        &mut self,
        stream: u64,
        path: PathBuf,
        file: File,
        meta: &Metadata,
        offset: u64,
        discarding: bool,
    ) -> std::io::Result<()> {
        let mark = (offset as usize).min(MARK_BYTES);
        let head = read_at(&file, 0, mark)?;
        let tail = read_at(&file, offset - mark as u64, mark)?;
        self.files.push(Tracked {
            stream,
            path,
            dev: meta.dev(),
            ino: meta.ino(),
            file,
            offset,
            head,
            tail,
            discarding,
            size: meta.len(),
            mtime_ns: mtime_ns(meta),
            in_glob: true,
            suspect: None,
            last_growth: Instant::now(),
            bytes_read: 0,
        });
        self.last_activity = Instant::now();
        Ok(())
    }

    /// Regular files in `dir` that no followed file is (for finding copies and renamed files).
    fn dir_files(&self, dir: &Path) -> Vec<(PathBuf, Metadata)> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let path = e.path();
                let meta = std::fs::metadata(&path).ok()?;
                (meta.is_file()
                    && !self
                        .files
                        .iter()
                        .any(|t| t.dev == meta.dev() && t.ino == meta.ino()))
                .then_some((path, meta))
            })
            .collect()
    }

    /// A file among `fresh` (or beside `near`), other than inode `not`, that holds the
    /// content `marks` describe: the copy made by copytruncate. With the offset to go on
    /// from: `marks.offset` when both marks verify, or the copy's size when the copy is
    /// shorter and starts the same (lines appended after the copy was made were read from
    /// the original already).
    fn find_copy(
        &self,
        marks: &Marks,
        fresh: &[(PathBuf, Metadata)],
        near: &Path,
        not: (u64, u64),
    ) -> Option<(PathBuf, Metadata, File, u64)> {
        if marks.offset == 0 {
            return None;
        }
        let dir = near.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut candidates: Vec<(PathBuf, Metadata)> = fresh.to_vec();
        for (path, meta) in self.dir_files(&dir) {
            if !candidates.iter().any(|(p, _)| *p == path) {
                candidates.push((path, meta));
            }
        }
        candidates.into_iter().find_map(|(path, meta)| {
            if (meta.dev(), meta.ino()) == not || meta.len() < marks.head_len as u64 {
                return None;
            }
            let (file, meta) = open_same(&path, &meta).ok()??;
            if meta.len() < marks.head_len as u64 {
                return None;
            }
            if meta.len() >= marks.offset {
                return matches!(self.verify(&file, meta.len(), marks), Ok(Verdict::Same))
                    .then_some((path, meta, file, marks.offset));
            }
            let head = read_at(&file, 0, marks.head_len).ok()?;
            let size = meta.len();
            (marks.head_len > 0 && self.hash(&head) == marks.head_hash)
                .then_some((path, meta, file, size))
        })
    }

    /// Looks at the globs: picks up new files, notices rename, truncation, replacement
    /// and deletion, and (first call after [`Tailer::restore`]) finds checkpointed files again.
    pub fn scan(&mut self) {
        let mut fresh: Vec<(PathBuf, Metadata)> = Vec::new();
        let mut seen = HashSet::new();
        for t in &mut self.files {
            t.in_glob = false;
        }
        for path in self.glob_paths() {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() || !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            match self
                .files
                .iter_mut()
                .find(|t| t.dev == meta.dev() && t.ino == meta.ino())
            {
                Some(t) => {
                    if t.path != path {
                        tracing::info!(from = %t.path.display(), to = %path.display(), offset = t.offset, "file renamed (rotation): still following it");
                        t.path = path;
                    }
                    t.in_glob = true;
                }
                None => fresh.push((path, meta)),
            }
        }
        self.resume_checkpointed(&mut fresh);
        self.check_followed();
        self.resolve_suspects(&mut fresh);
        self.drop_finished(&mut fresh);
        self.adopt_new(fresh);
    }

    /// Finds the files of the checkpoint again and checks them before resuming: first
    /// every file by its inode, then, for those that changed or are gone, a copy that
    /// holds their content (copytruncate while stopped).
    fn resume_checkpointed(&mut self, fresh: &mut Vec<(PathBuf, Metadata)>) {
        let mut unresolved = Vec::new();
        for (cp, tries) in std::mem::take(&mut self.restore) {
            let (Some(head_hash), Some(tail_hash)) = (unhex(&cp.head_hash), unhex(&cp.tail_hash))
            else {
                tracing::warn!(file = %cp.path.display(), "checkpoint entry unreadable; ignored");
                continue;
            };
            let marks = Marks {
                offset: cp.offset,
                head_len: cp.head_len as usize,
                head_hash,
                tail_len: cp.tail_len as usize,
                tail_hash,
            };
            let key = (cp.dev, cp.ino);
            // The same inode: under the globs, or renamed beside its old path.
            let same_inode = fresh
                .iter()
                .find(|(_, m)| (m.dev(), m.ino()) == key)
                .cloned()
                .or_else(|| {
                    let dir = cp.path.parent().map(Path::to_path_buf).unwrap_or_default();
                    self.dir_files(&dir)
                        .into_iter()
                        .find(|(_, m)| (m.dev(), m.ino()) == key)
                });
            let Some((path, meta)) = same_inode else {
                unresolved.push((cp, marks, None, tries));
                continue;
            };
            let opened = open_same(&path, &meta).and_then(|same| {
                let Some((f, meta)) = same else {
                    return Err(std::io::Error::other("replaced since listed"));
                };
                let v = self.verify(&f, meta.len(), &marks)?;
                Ok((f, meta, v))
            });
            match opened {
                Ok((file, meta, Verdict::Same)) => {
                    let in_glob = fresh.iter().any(|(p, _)| *p == path);
                    fresh.retain(|(p, _)| *p != path);
                    if path != cp.path {
                        tracing::info!(from = %cp.path.display(), to = %path.display(), "file renamed while stopped (rotation)");
                    }
                    tracing::info!(file = %path.display(), offset = cp.offset, "resuming");
                    let stream = self.new_stream();
                    match self.track(stream, path.clone(), file, &meta, cp.offset, cp.discarding) {
                        Ok(()) => {
                            if let Some(t) = self.files.last_mut() {
                                t.in_glob = in_glob;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(file = %path.display(), error = %e, "cannot follow file");
                        }
                    }
                }
                Ok((_, _, verdict)) => {
                    tracing::warn!(
                        file = %path.display(),
                        offset = cp.offset,
                        "file {} while stopped",
                        verdict.describe()
                    );
                    unresolved.push((cp, marks, Some(verdict), tries));
                }
                Err(e) => {
                    // Renamed between the listing and the open, most likely: look again.
                    tracing::debug!(file = %path.display(), error = %e, "cannot open checkpointed file");
                    unresolved.push((cp, marks, None, tries));
                }
            }
        }
        for (cp, marks, changed, tries) in unresolved {
            // Its content may live on in a copy (copytruncate while stopped).
            match self.find_copy(&marks, fresh, &cp.path, (cp.dev, cp.ino)) {
                Some((path, meta, file, offset)) => {
                    tracing::warn!(file = %cp.path.display(), copy = %path.display(), offset, "continuing in the copy made by copytruncate while stopped");
                    let in_glob = fresh.iter().any(|(p, _)| *p == path);
                    fresh.retain(|(p, _)| *p != path);
                    let stream = self.new_stream();
                    let discarding = cp.discarding && offset == cp.offset;
                    match self.track(stream, path.clone(), file, &meta, offset, discarding) {
                        Ok(()) => {
                            if let Some(t) = self.files.last_mut() {
                                t.in_glob = in_glob;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(file = %path.display(), error = %e, "cannot follow file");
                        }
                    }
                }
                // Not found (yet): renames may be in flight; look again on the next scans.
                None if tries < RESTORE_SCANS => self.restore.push((cp, tries + 1)),
                None if changed.is_some() => tracing::warn!(
                    file = %cp.path.display(),
                    "no copy of its earlier content found: its new content is read from the start"
                ),
                None if cp.offset < cp.size => tracing::warn!(
                    file = %cp.path.display(),
                    unread_bytes = cp.size - cp.offset,
                    "checkpointed file is gone (deleted or moved away while stopped) before it was read to its end"
                ),
                None => {
                    tracing::info!(file = %cp.path.display(), "checkpointed file is gone (it had been read to its end)");
                }
            }
        }
    }

    /// Checks the marks of every followed file that changed since the last look.
    fn check_followed(&mut self) {
        for i in 0..self.files.len() {
            let t = &self.files[i];
            if t.suspect.is_some() {
                continue;
            }
            let Ok(meta) = t.file.metadata() else {
                continue;
            };
            if meta.len() == t.size && mtime_ns(&meta) == t.mtime_ns {
                continue;
            }
            let marks = self.marks_of(t);
            let verdict = self
                .verify(&t.file, meta.len(), &marks)
                .unwrap_or(Verdict::Same);
            let t = &mut self.files[i];
            t.size = meta.len();
            t.mtime_ns = mtime_ns(&meta);
            if verdict != Verdict::Same {
                t.suspect = Some(verdict.describe());
            }
        }
    }

    /// A followed file whose content changed under its offset: find the copy that holds
    /// the rest (copytruncate) and continue there; read the file itself from 0.
    fn resolve_suspects(&mut self, fresh: &mut Vec<(PathBuf, Metadata)>) {
        for i in 0..self.files.len() {
            let Some(what) = self.files[i].suspect else {
                continue;
            };
            let t = &self.files[i];
            let marks = self.marks_of(t);
            let copy = self.find_copy(&marks, fresh, &t.path, (t.dev, t.ino));
            let (stream, discarding, from) = (t.stream, t.discarding, t.path.clone());
            if let Some((path, meta, file, offset)) = copy {
                tracing::info!(file = %from.display(), copy = %path.display(), offset, "file {what}: continuing in its copy (copytruncate)");
                fresh.retain(|(p, _)| *p != path);
                self.logged_once.remove(&(meta.dev(), meta.ino()));
                let in_glob = self.glob_paths().contains(&path);
                let discarding = discarding && offset == marks.offset;
                match self.track(stream, path.clone(), file, &meta, offset, discarding) {
                    Ok(()) => {
                        if let Some(t) = self.files.last_mut() {
                            t.in_glob = in_glob;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "cannot follow the copy");
                    }
                }
            } else {
                tracing::warn!(
                    file = %from.display(),
                    offset = marks.offset,
                    "file {what}; no copy of it found (yet): reading it again from the start (lines between the offset and the truncation, if any, are lost unless a copy shows up)"
                );
                // A copy being renamed right now shows up on a later scan.
                let mut old = self.entry(&self.files[i]);
                (old.dev, old.ino) = (0, 0);
                self.restore.push((old, 1));
            }
            // The file itself is a new stream from 0.
            let new_stream = self.new_stream();
            let t = &mut self.files[i];
            t.stream = new_stream;
            t.offset = 0;
            t.head.clear();
            t.tail.clear();
            t.discarding = false;
            t.suspect = None;
            if let Ok(meta) = t.file.metadata() {
                t.size = meta.len();
                t.mtime_ns = mtime_ns(&meta);
            }
            t.last_growth = Instant::now();
            self.last_activity = Instant::now();
        }
    }

    /// Forgets files that left the globs once read to their end and quiet for the grace
    /// (their last line taken as it is, without a newline, as `logveil run` reads it).
    /// A file that holds the same content (moved by copy and delete, as across file
    /// systems) takes over where it ended instead of being read again from 0.
    fn drop_finished(&mut self, fresh: &mut Vec<(PathBuf, Metadata)>) {
        let grace = self.drain_grace;
        let mut i = 0;
        while i < self.files.len() {
            let t = &self.files[i];
            let done = !t.in_glob
                && t.suspect.is_none()
                && t.offset >= t.size
                && t.last_growth.elapsed() >= grace;
            if !done {
                i += 1;
                continue;
            }
            let t = self.files.remove(i);
            tracing::info!(file = %t.path.display(), offset = t.offset, "rotated file read to its end; no longer followed");
            let marks = self.marks_of(&t);
            if let Some((path, meta, file, offset)) =
                self.find_copy(&marks, fresh, &t.path, (t.dev, t.ino))
            {
                tracing::info!(file = %t.path.display(), copy = %path.display(), offset, "its content lives on in another file: continuing there");
                fresh.retain(|(p, _)| *p != path);
                self.logged_once.remove(&(meta.dev(), meta.ino()));
                let discarding = t.discarding && offset == t.offset;
                if let Err(e) = self.track(t.stream, path.clone(), file, &meta, offset, discarding)
                {
                    tracing::warn!(file = %path.display(), error = %e, "cannot follow the copy");
                }
            }
        }
    }

    /// Starts following new files from 0, except compressed ones and copies of followed files.
    fn adopt_new(&mut self, fresh: Vec<(PathBuf, Metadata)>) {
        for (path, meta) in fresh {
            let key = (meta.dev(), meta.ino());
            // An empty file has nothing to read; look again when it has (it may be a copy
            // being written).
            if meta.len() == 0 {
                continue;
            }
            if self.skipped.get(&key) == Some(&meta.len()) {
                continue;
            }
            let (file, meta) = match open_same(&path, &meta) {
                Ok(Some(opened)) => opened,
                // Renamed or replaced since listed: the next scan sees it as it is.
                Ok(None) => continue,
                Err(e) => {
                    if self.logged_once.insert(key) {
                        tracing::warn!(file = %path.display(), error = %e, "cannot open file; will retry");
                    }
                    continue;
                }
            };
            if is_compressed(&file) {
                if self.skipped.insert(key, meta.len()).is_none() {
                    tracing::info!(file = %path.display(), "compressed file skipped (rotations are read while plain; `logveil run` reads archives)");
                }
                continue;
            }
            if let Some(original) = self.copy_of(&file, meta.len()) {
                if self.logged_once.insert(key) {
                    tracing::info!(file = %path.display(), original = %original.display(), "file starts like a followed file: held back as its copy until that file is truncated");
                }
                continue;
            }
            self.logged_once.remove(&key);
            tracing::info!(file = %path.display(), "following new file");
            let stream = self.new_stream();
            if let Err(e) = self.track(stream, path.clone(), file, &meta, 0, false) {
                tracing::warn!(file = %path.display(), error = %e, "cannot follow file");
            }
        }
    }

    /// The followed file that `file` looks like a copy of: its first bytes equal that
    /// file's first bytes (as far as either goes).
    fn copy_of(&self, file: &File, size: u64) -> Option<PathBuf> {
        let head = read_at(file, 0, (size as usize).min(MARK_BYTES)).ok()?;
        self.files.iter().find_map(|t| {
            if t.suspect.is_some() {
                return None;
            }
            // What we consumed, or (not yet read) what is on disk now.
            let theirs = if t.head.len() >= MARK_BYTES {
                t.head.clone()
            } else {
                read_at(&t.file, 0, MARK_BYTES).ok()?
            };
            let n = head.len().min(theirs.len());
            (n > 0 && head[..n] == theirs[..n]).then(|| t.path.clone())
        })
    }

    /// Reads complete lines, at most about `budget` bytes in all (more only to get past
    /// one line), oldest file first. Also returns the bytes consumed (over-long lines
    /// skipped included).
    pub fn read(&mut self, budget: usize) -> (Vec<TailRead>, usize) {
        let mut order: Vec<usize> = (0..self.files.len()).collect();
        order.sort_by_key(|&i| (self.files[i].mtime_ns, self.files[i].stream));
        let mut left = budget;
        let mut consumed = 0;
        let mut out = Vec::new();
        for i in order {
            if left == 0 {
                break;
            }
            match self.read_one(i, left) {
                Ok(Some((read, used))) => {
                    left = left.saturating_sub(used);
                    consumed += used;
                    if let Some(read) = read {
                        out.push(read);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(file = %self.files[i].path.display(), error = %e, "read failed; will retry");
                }
            }
        }
        (out, consumed)
    }

    /// Reads from file `i`: `None` when there was nothing; else the lines (if any) and
    /// the bytes consumed.
    fn read_one(
        &mut self,
        i: usize,
        left: usize,
    ) -> std::io::Result<Option<(Option<TailRead>, usize)>> {
        let max_line = self.max_line_bytes;
        let t = &self.files[i];
        if t.suspect.is_some() {
            return Ok(None);
        }
        let meta = t.file.metadata()?;
        let size = meta.len();
        if size < t.offset {
            self.files[i].suspect = Some(Verdict::Shrunk.describe());
            return Ok(None);
        }
        let mut available = size - t.offset;
        if let Some(limits) = &self.limits {
            let end = limits.get(&(t.dev, t.ino)).copied().unwrap_or(0);
            available = available.min(end.saturating_sub(t.offset));
        }
        if available == 0 {
            return Ok(None);
        }
        let want = (available as usize).min(left.max(max_line + 3));
        let start = t.offset;
        let buf = read_at(&t.file, start, want)?;
        // Re-check the marks after reading: a truncation during the read shows here.
        let marks = self.marks_of(t);
        let verdict = self.verify(&t.file, start + buf.len() as u64, &marks)?;
        if verdict != Verdict::Same {
            self.files[i].suspect = Some(verdict.describe());
            return Ok(None);
        }
        let at_eof = buf.len() as u64 == available;
        let finishing = !t.in_glob && at_eof && t.last_growth.elapsed() >= self.drain_grace;
        let mut discarding = t.discarding;
        let mut pos = 0;
        if discarding {
            match memchr::memchr(b'\n', &buf) {
                Some(i) => {
                    pos = i + 1;
                    discarding = false;
                }
                None => pos = buf.len(),
            }
        }
        let data_start = pos;
        let mut end = memchr::memrchr(b'\n', &buf[pos..]).map_or(pos, |i| pos + i + 1);
        let mut too_long = Vec::new();
        let rest = buf.len() - end;
        if !discarding && rest > max_line + 2 {
            // Over-long even before its end arrives: skip the rest of it.
            too_long.push(start + end as u64);
            discarding = true;
            end = buf.len();
        } else if finishing && rest > 0 && !discarding {
            // The last line of a rotated file, without its newline.
            end = buf.len();
        }
        let consumed = if discarding { buf.len() } else { end };
        let lines_end = if too_long.is_empty() { end } else { end - rest };
        if consumed == 0 {
            return Ok(None);
        }
        let t = &mut self.files[i];
        // Marks follow the consumed bytes.
        if t.head.len() < MARK_BYTES {
            let n = (MARK_BYTES - t.head.len()).min(consumed);
            t.head.extend_from_slice(&buf[..n]);
        }
        if consumed >= MARK_BYTES {
            t.tail.clear();
            t.tail
                .extend_from_slice(&buf[consumed - MARK_BYTES..consumed]);
        } else {
            t.tail.extend_from_slice(&buf[..consumed]);
            let excess = t.tail.len().saturating_sub(MARK_BYTES);
            t.tail.drain(..excess);
        }
        t.offset = start + consumed as u64;
        t.discarding = discarding;
        t.size = size;
        t.mtime_ns = mtime_ns(&meta);
        t.bytes_read += consumed as u64;
        t.last_growth = Instant::now();
        self.last_activity = Instant::now();
        let data = if lines_end > data_start {
            buf[data_start..lines_end].to_vec()
        } else {
            Vec::new()
        };
        if data.is_empty() && too_long.is_empty() {
            return Ok(Some((None, consumed)));
        }
        Ok(Some((
            Some(TailRead {
                stream: t.stream,
                path: t.path.clone(),
                chunk: Chunk {
                    offset: start + data_start as u64,
                    data,
                    too_long,
                },
            }),
            consumed,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn tailer(dir: &Path) -> Tailer {
        Tailer::new(
            vec!["access.log*".to_owned()],
            dir.to_owned(),
            [7u8; 32],
            1000,
            Duration::ZERO,
        )
    }

    fn append(path: &Path, bytes: &[u8]) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }

    /// Scans and reads everything there is: the lines and the too-long offsets.
    fn drain(t: &mut Tailer) -> (Vec<String>, Vec<u64>) {
        t.scan();
        let mut lines = Vec::new();
        let mut too_long = Vec::new();
        loop {
            let (reads, consumed) = t.read(1 << 20);
            for r in &reads {
                lines.extend(
                    r.chunk
                        .lines()
                        .map(|(_, l)| String::from_utf8_lossy(l).into_owned()),
                );
                too_long.extend(&r.chunk.too_long);
            }
            if consumed == 0 {
                return (lines, too_long);
            }
        }
    }

    fn line(i: usize) -> String {
        format!("line {i:04} {}\n", "x".repeat(40))
    }

    fn lines(range: std::ops::Range<usize>) -> String {
        range.map(line).collect()
    }

    fn expect(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| line(i).trim_end().to_owned()).collect()
    }

    #[test]
    fn read_limits_replay_exactly_a_range_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let mut t = tailer(dir.path());
        append(&log, b"zero\n");
        assert_eq!(drain(&mut t).0, ["zero"]);
        append(&log, b"one\ntwo\n");
        let saved = t.checkpoint();
        let (first, _) = drain(&mut t);
        assert_eq!(first, ["one", "two"]);
        let end = t.checkpoint()[0].offset;
        // The file grows, the process dies before committing: a restart from `saved` reads
        // exactly the same range again with the limit, then the rest without.
        append(&log, b"three\n");
        let mut again = tailer(dir.path());
        again.restore(saved);
        again.scan();
        let id = (t.checkpoint()[0].dev, t.checkpoint()[0].ino);
        again.set_read_limits(Some(HashMap::from([(id, end)])));
        let (reads, _) = again.read(1 << 20);
        assert_eq!(reads.len(), 1);
        assert_eq!(reads[0].chunk.data, b"one\ntwo\n");
        assert_eq!(again.file_id(reads[0].stream), Some(id));
        assert_eq!(again.offset(reads[0].stream), Some(end));
        assert_eq!(again.head(reads[0].stream), Some(&b"zero\none\ntwo\n"[..]));
        again.set_read_limits(None);
        assert_eq!(drain(&mut again).0, ["three"]);
    }

    #[test]
    fn a_partial_line_waits_for_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let mut t = tailer(dir.path());
        append(&log, b"one\ntw");
        assert_eq!(drain(&mut t).0, ["one"]);
        append(&log, b"o\nthree");
        assert_eq!(drain(&mut t).0, ["two"]);
        append(&log, b"\n");
        assert_eq!(drain(&mut t).0, ["three"]);
    }

    #[test]
    fn an_over_long_line_is_reported_and_skipped_as_it_streams() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let mut t = tailer(dir.path());
        append(&log, b"short\n");
        append(&log, &[b'y'; 1500]);
        let (got, too_long) = drain(&mut t);
        assert_eq!((got, too_long), (vec!["short".to_owned()], vec![6]));
        append(&log, &[b'y'; 3000]);
        append(&log, b"\nafter\n");
        assert_eq!(drain(&mut t), (vec!["after".to_owned()], vec![]));
    }

    #[test]
    fn rename_rotation_reads_the_old_file_to_its_end_then_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let mut t = tailer(dir.path());
        append(&log, lines(0..10).as_bytes());
        assert_eq!(drain(&mut t).0, expect(0..10));
        append(&log, lines(10..20).as_bytes());
        std::fs::rename(&log, dir.path().join("access.log.1")).unwrap();
        append(&log, lines(20..30).as_bytes());
        assert_eq!(drain(&mut t).0, expect(10..30));
    }

    #[test]
    fn copytruncate_continues_in_the_copy_and_never_rereads_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let copy = dir.path().join("access.log.1");
        let mut t = tailer(dir.path());
        append(&log, lines(0..10).as_bytes());
        assert_eq!(drain(&mut t).0, expect(0..10));
        append(&log, lines(10..15).as_bytes());
        std::fs::copy(&log, &copy).unwrap();
        // A look between the copy and the truncation: the copy is held back.
        assert_eq!(drain(&mut t).0, expect(10..15));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&log, lines(15..40).as_bytes());
        assert_eq!(drain(&mut t).0, expect(15..40));
        assert_eq!(drain(&mut t).0, Vec::<String>::new());
    }

    #[test]
    fn restart_detects_truncation_replacement_and_copies() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let mut t = tailer(dir.path());
        append(&log, lines(0..10).as_bytes());
        assert_eq!(drain(&mut t).0, expect(0..10));
        let saved = t.checkpoint();

        // Unchanged plus growth: resumes at the offset.
        append(&log, lines(10..12).as_bytes());
        let mut t = tailer(dir.path());
        t.restore(saved);
        assert_eq!(drain(&mut t).0, expect(10..12));
        let saved = t.checkpoint();

        // Copytruncate while stopped, with lines before and after it.
        append(&log, lines(12..14).as_bytes());
        std::fs::copy(&log, dir.path().join("access.log.1")).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&log, lines(14..30).as_bytes());
        let mut t = tailer(dir.path());
        t.restore(saved);
        assert_eq!(drain(&mut t).0, expect(12..30));
        let saved = t.checkpoint();

        // Truncated in place and rewritten longer than the offset: read from 0.
        std::fs::write(&log, lines(30..60)).unwrap();
        let mut t = tailer(dir.path());
        t.restore(saved);
        assert_eq!(drain(&mut t).0, expect(30..60));
        let saved = t.checkpoint();

        // Replaced by a new file: read from 0, the old copy not again.
        std::fs::remove_file(&log).unwrap();
        append(&log, lines(60..65).as_bytes());
        let mut t = tailer(dir.path());
        t.restore(saved);
        assert_eq!(drain(&mut t).0, expect(60..65));
    }

    #[test]
    fn a_file_moved_by_copy_and_delete_is_not_read_twice() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let mut t = tailer(dir.path());
        append(&log, lines(0..10).as_bytes());
        assert_eq!(drain(&mut t).0, expect(0..10));
        append(&log, lines(10..12).as_bytes());
        std::fs::copy(&log, dir.path().join("access.log.1")).unwrap();
        std::fs::remove_file(&log).unwrap();
        append(&log, lines(12..20).as_bytes());
        assert_eq!(drain(&mut t).0, expect(10..20));
        // The deleted original is dropped; its copy goes on from the same offset.
        assert_eq!(drain(&mut t).0, Vec::<String>::new());
        assert_eq!(t.status().len(), 2);
    }

    #[test]
    fn compressed_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("access.log.2.gz"), [0x1f, 0x8b, 8, 0, 1, 2]).unwrap();
        append(&dir.path().join("access.log"), b"plain\n");
        let mut t = tailer(dir.path());
        assert_eq!(drain(&mut t).0, ["plain"]);
        assert_eq!(t.status().len(), 1);
    }
}
