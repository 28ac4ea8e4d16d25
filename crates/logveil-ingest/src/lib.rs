//! Input sources: expand globs, open plain, gzip or zstd files, and cut the byte stream
//! into line-aligned chunks that parsers can work on in parallel.
//!
//! Memory stays bounded whatever the input: a chunk is at most `chunk_bytes` plus one
//! line, and a line longer than `max_line_bytes` is skipped while it streams past (counted
//! in [`Chunk::too_long_lines`]), never buffered whole.

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
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Expands input patterns (relative ones from `base`) into a sorted, de-duplicated file list.
/// A pattern that matches nothing is an error: a cron job with a wrong path must fail loudly.
pub fn expand_inputs(patterns: &[String], base: &Path) -> Result<Vec<PathBuf>, IngestError> {
    let mut files = Vec::new();
    for pattern in patterns {
        let full = normalize_path(&base.join(pattern));
        let full_text = full.to_string_lossy();
        let matches = glob::glob(&full_text).map_err(|e| IngestError::Pattern {
            pattern: pattern.clone(),
            message: e.msg.to_owned(),
        })?;
        let before = files.len();
        for entry in matches {
            let path = entry.map_err(|e| IngestError::Io {
                path: e.path().to_owned(),
                source: std::io::Error::new(e.error().kind(), e.error().to_string()),
            })?;
            if path.is_file() {
                files.push(path);
            }
        }
        if files.len() == before {
            return Err(IngestError::NoMatch {
                pattern: pattern.clone(),
            });
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
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

/// Opens a file, decompressing gzip (all members, as logrotate and pigz write them) or zstd.
pub fn open(path: &Path) -> Result<(Box<dyn Read + Send>, Compression), IngestError> {
    let io = |source| IngestError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let mut magic = [0u8; 4];
    let mut n = 0;
    while n < magic.len() {
        match file.read(&mut magic[n..]).map_err(io)? {
            0 => break,
            k => n += k,
        }
    }
    let head = std::io::Cursor::new(magic[..n].to_vec());
    let stream = BufReader::with_capacity(256 * 1024, head.chain(file));
    Ok(match magic[..n] {
        [0x1f, 0x8b, ..] => (
            Box::new(flate2::bufread::MultiGzDecoder::new(stream)),
            Compression::Gzip,
        ),
        [0x28, 0xb5, 0x2f, 0xfd] => (
            Box::new(zstd::stream::read::Decoder::with_buffer(stream).map_err(io)?),
            Compression::Zstd,
        ),
        _ => (Box::new(stream), Compression::None),
    })
}

/// Complete lines (each ending in `\n`, except perhaps the file's last) plus the number
/// of over-long lines skipped just before them.
#[derive(Debug, Default)]
pub struct Chunk {
    pub data: Vec<u8>,
    pub too_long_lines: u64,
}

/// Reads a stream into line-aligned chunks of about `chunk_bytes`.
#[derive(Debug)]
pub struct ChunkReader<R> {
    reader: R,
    chunk_bytes: usize,
    max_line_bytes: usize,
    /// The start of a line whose end has not been read yet.
    carry: Vec<u8>,
    /// Inside an over-long line: drop bytes until its newline.
    discarding: bool,
    eof: bool,
}

pub const DEFAULT_CHUNK_BYTES: usize = 4 * 1024 * 1024;

impl<R: Read> ChunkReader<R> {
    pub fn new(reader: R, chunk_bytes: usize, max_line_bytes: usize) -> Self {
        Self {
            reader,
            chunk_bytes: chunk_bytes.max(1),
            max_line_bytes,
            carry: Vec::new(),
            discarding: false,
            eof: false,
        }
    }

    /// The next chunk, or `None` at the end of the stream.
    pub fn next_chunk(&mut self) -> std::io::Result<Option<Chunk>> {
        let mut chunk = Chunk::default();
        let mut buf = vec![0u8; self.chunk_bytes.min(1 << 20)];
        while !self.eof && chunk.data.len() < self.chunk_bytes {
            let n = match self.reader.read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut bytes = &buf[..n];
            if self.discarding {
                match memchr::memchr(b'\n', bytes) {
                    None => continue,
                    Some(i) => {
                        self.discarding = false;
                        bytes = &bytes[i + 1..];
                    }
                }
            }
            match memchr::memrchr(b'\n', bytes) {
                Some(last) => {
                    chunk.data.append(&mut self.carry);
                    chunk.data.extend_from_slice(&bytes[..=last]);
                    self.carry.extend_from_slice(&bytes[last + 1..]);
                }
                None => self.carry.extend_from_slice(bytes),
            }
            if self.carry.len() > self.max_line_bytes + 2 {
                // Over-long even before its end arrives: skip the rest of it.
                self.carry.clear();
                self.discarding = true;
                chunk.too_long_lines += 1;
            }
        }
        if self.eof && !self.carry.is_empty() {
            // A last line without a newline is still a line.
            chunk.data.append(&mut self.carry);
        }
        if self.eof && self.discarding {
            self.discarding = false;
        }
        if chunk.data.is_empty() && chunk.too_long_lines == 0 {
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

    fn all_lines(input: &[u8], chunk: usize, max: usize) -> (Vec<Vec<u8>>, u64) {
        let mut reader = ChunkReader::new(input, chunk, max);
        let mut out = Vec::new();
        let mut too_long = 0;
        while let Some(c) = reader.next_chunk().unwrap() {
            too_long += c.too_long_lines;
            out.extend(lines(&c.data).map(<[u8]>::to_vec));
        }
        (out, too_long)
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
        assert_eq!(l, vec![b"a".to_vec(), b"bb".to_vec(), b"ccc".to_vec()]);
        assert_eq!(t, 0);
    }

    #[test]
    fn over_long_line_is_counted_and_skipped() {
        let mut input = b"short\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 10_000));
        input.extend_from_slice(b"\nafter\n");
        let (l, t) = all_lines(&input, 64, 100);
        assert_eq!(l, vec![b"short".to_vec(), b"after".to_vec()]);
        assert_eq!(t, 1);
    }

    proptest! {
        /// Whatever the chunk size, every line comes out once, in order, or is counted as
        /// too long; no line within the limit is ever dropped.
        #[test]
        fn chunking_preserves_every_line(lines_in in proptest::collection::vec("[a-z]{0,40}", 0..50), chunk in 1usize..64) {
            let max = 20;
            let mut input = lines_in.join("\n").into_bytes();
            if !lines_in.is_empty() { input.push(b'\n'); }
            let (out, too_long) = all_lines(&input, chunk, max);
            prop_assert_eq!(out.len() as u64 + too_long, lines_in.len() as u64);
            let short_in: Vec<&[u8]> = lines_in.iter().map(String::as_bytes).filter(|l| l.len() <= max).collect();
            let short_out: Vec<&[u8]> = out.iter().map(Vec::as_slice).filter(|l| l.len() <= max).collect();
            prop_assert_eq!(short_out, short_in);
        }
    }

    #[test]
    fn opens_gzip_multi_member_and_zstd() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("a.log.gz");
        let mut bytes = Vec::new();
        for part in [&b"one\n"[..], b"two\n"] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(part).unwrap();
            bytes.extend(e.finish().unwrap());
        }
        std::fs::write(&gz, bytes).unwrap();
        let zst = dir.path().join("b.log.zst");
        std::fs::write(&zst, zstd::encode_all(&b"three\n"[..], 3).unwrap()).unwrap();
        let read = |p: &Path| {
            let (mut r, c) = open(p).unwrap();
            let mut s = String::new();
            r.read_to_string(&mut s).unwrap();
            (s, c)
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
}
