//! Input sources: expand globs, open plain, gzip or zstd files (or standard input), and cut
//! the byte stream into line-aligned chunks that parsers can work on in parallel.
//!
//! Memory stays bounded whatever the input: a chunk is at most `chunk_bytes` plus one
//! line, and a line longer than `max_line_bytes` is skipped while it streams past (its
//! offset listed in [`Chunk::too_long`]), never buffered whole. Decompressed data is capped
//! at `max_decompressed_bytes` per input, so a decompression bomb ends the read with an
//! error instead of running for hours.
//!
//! Every chunk knows its byte offset in the decompressed stream ([`Chunk::offset`]), so a
//! rejected line can be reported by position ([`Chunk::lines`]).

pub mod tail;

use std::cmp::Reverse;
use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    #[error("input pattern `{pattern}`: {message}")]
    Pattern { pattern: String, message: String },
    #[error("input pattern `{pattern}` matches no file")]
    NoMatch { pattern: String },
    #[error("{input}: {source}")]
    Io {
        input: String,
        source: std::io::Error,
    },
}

/// Returned (inside an `io::Error` of kind `Other`) by the reader of a compressed input
/// whose decompressed data grows past the cap.
#[derive(Debug, thiserror::Error)]
#[error(
    "decompressed data exceeds max_decompressed_bytes = {cap}; stopped reading (a decompression bomb, or raise the cap)"
)]
pub struct DecompressedTooLarge {
    pub cap: u64,
}

/// The default cap on the decompressed size of one compressed input: 64 GiB.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: u64 = 64 << 30;

/// One input: a file, or standard input (written `-`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Input {
    Stdin,
    File(PathBuf),
}

impl fmt::Display for Input {
    /// The path as given (after `..` removal), or `<stdin>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Stdin => f.write_str("<stdin>"),
            Input::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Expands input patterns (relative ones from `base`) into the list of inputs to read, in
/// reading order. A pattern that matches nothing is an error: a cron job with a wrong path
/// must fail loudly.
///
/// - `-` is standard input (it may itself be gzip or zstd).
/// - Patterns are read in the order given; an input named by two patterns is read once,
///   where it first appears.
/// - The files of one glob are read in name order, except that rotations of one log are
///   read oldest first. After dropping a `.gz` or `.zst` extension, a name ending in `.N`
///   (1 to 6 digits) is rotation N of the name before it and a name ending in a date
///   (a separator `-`, `.` or `_`, then digits, `-` and `_` with at least 8 digits, as
///   logrotate's `dateext` writes) is a dated rotation. Rotations of one log come before
///   the log itself: numbered ones highest number first, then dated ones in name order.
///   So `access.log.2.gz`, `access.log.1`, `access.log` and `access.log-20261101.gz`,
///   `access.log-20261102`, `access.log` are each read in that order.
pub fn expand_inputs(patterns: &[String], base: &Path) -> Result<Vec<Input>, IngestError> {
    let mut inputs = Vec::new();
    let mut seen = HashSet::new();
    for pattern in patterns {
        if pattern == "-" {
            if seen.insert(Input::Stdin) {
                inputs.push(Input::Stdin);
            }
            continue;
        }
        let full = normalize_path(&base.join(pattern));
        let full_text = full.to_string_lossy();
        let matches = glob::glob(&full_text).map_err(|e| IngestError::Pattern {
            pattern: pattern.clone(),
            message: e.msg.to_owned(),
        })?;
        let mut files = Vec::new();
        for entry in matches {
            let path = entry.map_err(|e| IngestError::Io {
                input: e.path().display().to_string(),
                source: std::io::Error::new(e.error().kind(), e.error().to_string()),
            })?;
            if path.is_file() {
                files.push(path);
            }
        }
        if files.is_empty() {
            return Err(IngestError::NoMatch {
                pattern: pattern.clone(),
            });
        }
        files.sort_by_cached_key(|path| ReadingOrder::of(path));
        for file in files {
            let input = Input::File(file);
            if seen.insert(input.clone()) {
                inputs.push(input);
            }
        }
    }
    Ok(inputs)
}

/// Sort key of a file within one glob: directory, then the log's base name, then its age
/// (see [`expand_inputs`]); the full name breaks ties.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ReadingOrder {
    dir: PathBuf,
    base: String,
    age: Age,
    name: String,
}

/// Oldest first: the variant order is the reading order.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Age {
    /// `name.N`: a higher N is older.
    Numbered(Reverse<u32>),
    /// `name-YYYYMMDD…`: the suffix sorts by name.
    Dated(String),
    /// The log being written.
    Live,
}

impl ReadingOrder {
    fn of(path: &Path) -> Self {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = [".gz", ".zst"]
            .iter()
            .find_map(|ext| name.strip_suffix(ext))
            .unwrap_or(&name);
        let (base, age) = rotation(stem);
        Self {
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            base: base.to_owned(),
            age,
            name,
        }
    }
}

/// Splits a file name (without compression extension) into the log's name and its age.
fn rotation(stem: &str) -> (&str, Age) {
    if let Some((base, n)) = stem.rsplit_once('.')
        && !base.is_empty()
        && (1..=6).contains(&n.len())
        && n.bytes().all(|b| b.is_ascii_digit())
        && let Ok(n) = n.parse()
    {
        return (base, Age::Numbered(Reverse(n)));
    }
    let is_date = |suffix: &str| {
        suffix.bytes().next().is_some_and(|b| b.is_ascii_digit())
            && suffix
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'-' || b == b'_')
            && suffix.bytes().filter(u8::is_ascii_digit).count() >= 8
    };
    for (i, b) in stem.bytes().enumerate() {
        if i > 0 && matches!(b, b'-' | b'.' | b'_') && is_date(&stem[i + 1..]) {
            return (&stem[..i], Age::Dated(stem[i + 1..].to_owned()));
        }
    }
    (stem, Age::Live)
}

/// Removes `dir/..` pairs lexically (no file-system access), so paths in messages read
/// `sample-logs/a.log` rather than `pipelines/../sample-logs/a.log`.
pub fn normalize_path(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            // `/..` is `/`.
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::RootDir)) => {}
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

/// Compression of an input, recognised by its first bytes (not its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Opens an input, decompressing gzip (all members, as logrotate and pigz write them) or
/// zstd. A compressed input whose decompressed data would exceed `max_decompressed_bytes`
/// fails, when it gets there, with [`DecompressedTooLarge`] (inside the `io::Error`).
pub fn open(
    input: &Input,
    max_decompressed_bytes: u64,
) -> Result<(Box<dyn Read + Send>, Compression), IngestError> {
    let io = |source| IngestError::Io {
        input: input.to_string(),
        source,
    };
    match input {
        Input::Stdin => decode(std::io::stdin(), max_decompressed_bytes).map_err(io),
        Input::File(path) => {
            decode(File::open(path).map_err(io)?, max_decompressed_bytes).map_err(io)
        }
    }
}

fn decode<R: Read + Send + 'static>(
    mut source: R,
    cap: u64,
) -> std::io::Result<(Box<dyn Read + Send>, Compression)> {
    let mut magic = [0u8; 4];
    let mut n = 0;
    while n < magic.len() {
        match source.read(&mut magic[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let head = std::io::Cursor::new(magic[..n].to_vec());
    let stream = BufReader::with_capacity(256 * 1024, head.chain(source));
    Ok(match magic[..n] {
        [0x1f, 0x8b, ..] => (
            Box::new(Capped::new(
                flate2::bufread::MultiGzDecoder::new(stream),
                cap,
            )),
            Compression::Gzip,
        ),
        [0x28, 0xb5, 0x2f, 0xfd] => (
            Box::new(Capped::new(
                zstd::stream::read::Decoder::with_buffer(stream)?,
                cap,
            )),
            Compression::Zstd,
        ),
        _ => (Box::new(stream), Compression::None),
    })
}

/// Passes at most `cap` bytes through; one byte more is an error, not a silent truncation.
struct Capped<R> {
    inner: R,
    cap: u64,
    remaining: u64,
}

impl<R> Capped<R> {
    fn new(inner: R, cap: u64) -> Self {
        Self {
            inner,
            cap,
            remaining: cap,
        }
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            // At the cap: only the end of the stream is fine.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(std::io::Error::other(DecompressedTooLarge {
                    cap: self.cap,
                })),
            };
        }
        let max = usize::try_from(self.remaining).map_or(buf.len(), |r| r.min(buf.len()));
        let n = self.inner.read(&mut buf[..max])?;
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Complete lines (each ending in `\n`, except perhaps the stream's last), starting at byte
/// `offset` of the (decompressed) stream, plus the over-long lines skipped just before them.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Offset of `data[0]` in the decompressed stream.
    pub offset: u64,
    pub data: Vec<u8>,
    /// Stream offsets of the lines longer than `max_line_bytes` that were skipped; all lie
    /// before `offset` and after the previous chunk's data.
    pub too_long: Vec<u64>,
}

impl Chunk {
    /// The lines of `data`, each without its `\n`, with the stream offset of its first byte.
    pub fn lines(&self) -> impl Iterator<Item = (u64, &[u8])> {
        let mut at = self.offset;
        lines(&self.data).map(move |line| {
            let start = at;
            at += line.len() as u64 + 1;
            (start, line)
        })
    }
}

/// Reads a stream into line-aligned chunks of about `chunk_bytes`.
#[derive(Debug)]
pub struct ChunkReader<R> {
    reader: R,
    chunk_bytes: usize,
    max_line_bytes: usize,
    buf: Vec<u8>,
    /// The start of a line whose end has not been read yet.
    carry: Vec<u8>,
    /// Stream offset of the next line's first byte (`carry[0]` when `carry` is not empty).
    line_start: u64,
    /// Stream offset of the next byte to read.
    pos: u64,
    /// Inside an over-long line: drop bytes until its newline.
    discarding: bool,
    /// Over-long lines met after this chunk's data began: they open the next chunk.
    pending_too_long: Vec<u64>,
    eof: bool,
}

pub const DEFAULT_CHUNK_BYTES: usize = 4 * 1024 * 1024;

impl<R: Read> ChunkReader<R> {
    pub fn new(reader: R, chunk_bytes: usize, max_line_bytes: usize) -> Self {
        let chunk_bytes = chunk_bytes.max(1);
        Self {
            reader,
            chunk_bytes,
            max_line_bytes,
            buf: vec![0u8; chunk_bytes.min(1 << 20)],
            carry: Vec::new(),
            line_start: 0,
            pos: 0,
            discarding: false,
            pending_too_long: Vec::new(),
            eof: false,
        }
    }

    /// The next chunk, or `None` at the end of the stream.
    pub fn next_chunk(&mut self) -> std::io::Result<Option<Chunk>> {
        let mut chunk = Chunk {
            offset: self.line_start,
            data: Vec::new(),
            too_long: std::mem::take(&mut self.pending_too_long),
        };
        while !self.eof && chunk.data.len() < self.chunk_bytes {
            let n = match self.reader.read(&mut self.buf) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut at = self.pos;
            self.pos += n as u64;
            let mut bytes = &self.buf[..n];
            if self.discarding {
                match memchr::memchr(b'\n', bytes) {
                    None => continue,
                    Some(i) => {
                        self.discarding = false;
                        bytes = &bytes[i + 1..];
                        at += i as u64 + 1;
                        self.line_start = at;
                    }
                }
            }
            match memchr::memrchr(b'\n', bytes) {
                Some(last) => {
                    if chunk.data.is_empty() {
                        chunk.offset = self.line_start;
                    }
                    chunk.data.append(&mut self.carry);
                    chunk.data.extend_from_slice(&bytes[..=last]);
                    self.carry.extend_from_slice(&bytes[last + 1..]);
                    self.line_start = at + last as u64 + 1;
                }
                None => self.carry.extend_from_slice(bytes),
            }
            if self.carry.len() > self.max_line_bytes + 2 {
                // Over-long even before its end arrives: skip the rest of it.
                self.carry.clear();
                self.discarding = true;
                if chunk.data.is_empty() {
                    chunk.too_long.push(self.line_start);
                } else {
                    // It comes after this chunk's data: it opens the next chunk.
                    self.pending_too_long.push(self.line_start);
                    break;
                }
            }
        }
        if self.eof && !self.carry.is_empty() {
            // A last line without a newline is still a line.
            if chunk.data.is_empty() {
                chunk.offset = self.line_start;
            }
            self.line_start += self.carry.len() as u64;
            chunk.data.append(&mut self.carry);
        }
        if self.eof && self.discarding {
            self.discarding = false;
        }
        if chunk.data.is_empty() && chunk.too_long.is_empty() {
            return Ok(None);
        }
        Ok(Some(chunk))
    }
}

/// Iterates over the lines of a chunk, each without its `\n`.
pub fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let empty = data.is_empty();
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    data.split(|&b| b == b'\n').filter(move |_| !empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    /// Every line with its offset, and the offsets of the over-long lines.
    fn all_lines(input: &[u8], chunk: usize, max: usize) -> (Vec<(u64, Vec<u8>)>, Vec<u64>) {
        let mut reader = ChunkReader::new(input, chunk, max);
        let mut out = Vec::new();
        let mut too_long = Vec::new();
        while let Some(c) = reader.next_chunk().unwrap() {
            if let Some((last, _)) = out.last() {
                assert!(
                    c.too_long.iter().all(|t| t > last),
                    "too_long after the previous chunk"
                );
            }
            assert!(
                c.too_long
                    .iter()
                    .all(|t| *t < c.offset || c.data.is_empty())
            );
            too_long.extend(&c.too_long);
            out.extend(c.lines().map(|(at, l)| (at, l.to_vec())));
        }
        (out, too_long)
    }

    fn texts(lines: &[(u64, Vec<u8>)]) -> Vec<&[u8]> {
        lines.iter().map(|(_, l)| l.as_slice()).collect()
    }

    #[test]
    fn normalize_removes_parent_pairs_only_lexically() {
        assert_eq!(
            normalize_path(Path::new("pipelines/../out")),
            PathBuf::from("out")
        );
        assert_eq!(
            normalize_path(Path::new("./a/./b/../c")),
            PathBuf::from("a/c")
        );
        assert_eq!(normalize_path(Path::new("../x")), PathBuf::from("../x"));
        assert_eq!(normalize_path(Path::new("/a/../../b")), PathBuf::from("/b"));
        assert_eq!(normalize_path(Path::new("a/..")), PathBuf::from("."));
    }

    #[test]
    fn last_line_without_newline_is_kept() {
        let (l, t) = all_lines(b"a\nbb\nccc", 2, 100);
        assert_eq!(
            l,
            vec![
                (0, b"a".to_vec()),
                (2, b"bb".to_vec()),
                (5, b"ccc".to_vec())
            ]
        );
        assert!(t.is_empty());
    }

    #[test]
    fn over_long_line_is_skipped_and_its_offset_reported() {
        let mut input = b"short\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 10_000));
        input.extend_from_slice(b"\nafter\n");
        for chunk in [1, 7, 64, 4096] {
            let (l, t) = all_lines(&input, chunk, 100);
            assert_eq!(l, vec![(0, b"short".to_vec()), (10_007, b"after".to_vec())]);
            assert_eq!(t, vec![6], "chunk {chunk}");
        }
    }

    proptest! {
        /// Whatever the chunk size, every line comes out once, in order, at its offset, or
        /// is listed as too long at its offset; no line within the limit is ever dropped.
        #[test]
        fn chunking_preserves_every_line_and_offset(lines_in in proptest::collection::vec("[a-z]{0,40}", 0..50), chunk in 1usize..64) {
            let max = 20;
            let mut input = lines_in.join("\n").into_bytes();
            if !lines_in.is_empty() { input.push(b'\n'); }
            let (out, too_long) = all_lines(&input, chunk, max);
            prop_assert_eq!(out.len() + too_long.len(), lines_in.len());
            let mut starts = Vec::new();
            let mut at = 0u64;
            for l in &lines_in {
                starts.push(at);
                at += l.len() as u64 + 1;
            }
            for (offset, line) in &out {
                let i = starts.iter().position(|s| s == offset).expect("offset is a line start");
                prop_assert_eq!(line.as_slice(), lines_in[i].as_bytes());
            }
            for offset in &too_long {
                let i = starts.iter().position(|s| s == offset).expect("offset is a line start");
                prop_assert!(lines_in[i].len() > max);
            }
            let short_in: Vec<&[u8]> = lines_in.iter().map(String::as_bytes).filter(|l| l.len() <= max).collect();
            let short_out: Vec<&[u8]> = texts(&out).into_iter().filter(|l| l.len() <= max).collect();
            prop_assert_eq!(short_out, short_in);
        }
    }

    fn gzip(parts: &[&[u8]]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for part in parts {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(part).unwrap();
            bytes.extend(e.finish().unwrap());
        }
        bytes
    }

    fn read_all(input: &Input, cap: u64) -> (std::io::Result<String>, Compression) {
        let (mut r, c) = open(input, cap).unwrap();
        let mut s = String::new();
        (r.read_to_string(&mut s).map(|_| s), c)
    }

    #[test]
    fn opens_gzip_multi_member_and_zstd() {
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("a.log.gz");
        std::fs::write(&gz, gzip(&[b"one\n", b"two\n"])).unwrap();
        let zst = dir.path().join("b.log.zst");
        std::fs::write(&zst, zstd::encode_all(&b"three\n"[..], 3).unwrap()).unwrap();
        let read = |p: &Path| {
            let (text, c) = read_all(&Input::File(p.to_owned()), DEFAULT_MAX_DECOMPRESSED_BYTES);
            (text.unwrap(), c)
        };
        assert_eq!(read(&gz), ("one\ntwo\n".to_owned(), Compression::Gzip));
        assert_eq!(read(&zst), ("three\n".to_owned(), Compression::Zstd));
        let files = expand_inputs(&["*.log.*".to_owned()], dir.path()).unwrap();
        assert_eq!(files.len(), 2);
        assert!(matches!(
            expand_inputs(&["nope-*.log".to_owned()], dir.path()),
            Err(IngestError::NoMatch { .. })
        ));
    }

    #[test]
    fn decompressed_size_is_capped_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let zeros = vec![b'0'; 1 << 20];
        let gz = dir.path().join("bomb.gz");
        std::fs::write(&gz, gzip(&[&zeros, &zeros])).unwrap();
        let zst = dir.path().join("bomb.zst");
        std::fs::write(&zst, zstd::encode_all(&zeros[..], 19).unwrap()).unwrap();
        let plain = dir.path().join("plain.log");
        std::fs::write(&plain, &zeros).unwrap();
        for (path, size) in [(&gz, 2 << 20), (&zst, 1 << 20)] {
            let input = Input::File(path.clone());
            assert_eq!(
                read_all(&input, size).0.unwrap().len() as u64,
                size,
                "at the cap"
            );
            let error = read_all(&input, size - 1).0.unwrap_err();
            let cap = error
                .get_ref()
                .and_then(|e| e.downcast_ref::<DecompressedTooLarge>())
                .expect("the cap error");
            assert_eq!(cap.cap, size - 1);
            assert!(
                error.to_string().contains("max_decompressed_bytes"),
                "{error}"
            );
        }
        // Through a ChunkReader the error surfaces from next_chunk.
        let (r, _) = open(&Input::File(gz.clone()), 1000).unwrap();
        let mut chunks = ChunkReader::new(r, 4096, 65536);
        let error = loop {
            match chunks.next_chunk() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the cap was not enforced"),
                Err(e) => break e,
            }
        };
        assert!(error.to_string().contains("1000"), "{error}");
        // Plain files are read as they are.
        assert_eq!(read_all(&Input::File(plain), 10).0.unwrap().len(), 1 << 20);
    }

    #[test]
    fn rotated_files_are_read_oldest_first() {
        // Each case: file names in the expected reading order.
        let cases: &[&[&str]] = &[
            &["access.log.2.gz", "access.log.1", "access.log"],
            &[
                "access.log.10.gz",
                "access.log.9.gz",
                "access.log.2",
                "access.log.1",
                "access.log",
            ],
            &[
                "access.log.3.zst",
                "access.log.2.gz",
                "access.log.1",
                "access.log",
                "access.log.gz",
            ],
            &[
                "access.log-20261030.gz",
                "access.log-20261031",
                "access.log-20261101",
                "access.log",
            ],
            &[
                "access.log-2026-10-31.gz",
                "access.log-2026-11-01",
                "access.log",
            ],
            &[
                "access.log.20261031.gz",
                "access.log.20261101",
                "access.log",
            ],
            &[
                "access.log-20261101-1761955200",
                "access.log-20261102-1762041600",
                "access.log",
            ],
            // Different logs: by name; each with its own rotations first.
            &["access-2026-11-01.log", "access-2026-11-02.log"],
            &["access.log.1", "access.log", "error.log.2", "error.log"],
            &["site_v2-20261101", "site_v2"],
            // Not rotations: plain name order.
            &["a.log", "b.log", "c.log.bak"],
            &["app-2026.log", "app-2027.log"],
        ];
        for case in cases {
            let mut paths: Vec<PathBuf> = case
                .iter()
                .rev()
                .map(|n| PathBuf::from("/logs").join(n))
                .collect();
            paths.sort_by_cached_key(|p| ReadingOrder::of(p));
            let names: Vec<String> = paths
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            assert_eq!(names, *case);
        }
        assert_eq!(
            rotation("access.log.1234567"),
            ("access.log.1234567", Age::Live)
        );
        assert_eq!(rotation("x.3"), ("x", Age::Numbered(Reverse(3))));
        assert_eq!(rotation(".3"), (".3", Age::Live));
    }

    #[test]
    fn patterns_keep_their_order_stdin_included_and_duplicates_read_once() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["access.log", "access.log.1", "access.log.2.gz", "other.log"] {
            std::fs::write(dir.path().join(name), b"x\n").unwrap();
        }
        let names = |patterns: &[&str]| -> Vec<String> {
            let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
            expand_inputs(&patterns, dir.path())
                .unwrap()
                .iter()
                .map(|i| match i {
                    Input::Stdin => "-".to_owned(),
                    Input::File(p) => p.file_name().unwrap().to_string_lossy().into_owned(),
                })
                .collect()
        };
        assert_eq!(
            names(&["access.log*"]),
            ["access.log.2.gz", "access.log.1", "access.log"]
        );
        assert_eq!(
            names(&["other.log", "-", "*.log*", "-"]),
            [
                "other.log",
                "-",
                "access.log.2.gz",
                "access.log.1",
                "access.log"
            ]
        );
        assert_eq!(Input::Stdin.to_string(), "<stdin>");
    }
}
