//! Line-aligned chunks read straight into recycled buffers: the batch run's reader.
//!
//! Same chunks as [`logveil_ingest::ChunkReader`] (complete lines with their stream
//! offsets; lines longer than `max_line_bytes` whose end is not in sight are skipped and
//! reported in `too_long`), but each chunk's bytes are read directly into a buffer handed
//! back by a worker, so a run copies every byte once (kernel to buffer) and touches no fresh
//! pages after the first few chunks. Profiles showed the fresh 4 MiB allocation per chunk
//! (page faults, zeroing) and the copy through an intermediate buffer at ~10 % of a run.

use std::io::Read;

use logveil_ingest::Chunk;

/// Bytes asked of the reader per call.
const READ_BYTES: usize = 1 << 20;

/// Reads a stream into line-aligned chunks of about `chunk_bytes`.
#[derive(Debug)]
pub struct Chunker<R> {
    reader: R,
    chunk_bytes: usize,
    max_line_bytes: usize,
    /// Bytes asked of the reader per call ([`READ_BYTES`]; small in tests).
    read_bytes: usize,
    /// The start of a line whose end has not been read yet.
    carry: Vec<u8>,
    /// Stream offset of the next line's first byte (`carry[0]` when `carry` is not empty).
    line_start: u64,
    /// Stream offset of the next byte to read.
    pos: u64,
    /// Inside an over-long line: drop bytes until its newline.
    discarding: bool,
    /// Over-long lines met after a chunk's data began: they open the next chunk.
    pending_too_long: Vec<u64>,
    eof: bool,
    /// Lines starting at or after this stream offset belong to the next range.
    end: u64,
    /// The range's last line has been read: nothing more.
    stopped: bool,
}

impl<R: Read> Chunker<R> {
    pub fn new(reader: R, chunk_bytes: usize, max_line_bytes: usize) -> Self {
        Self {
            reader,
            chunk_bytes: chunk_bytes.max(1),
            max_line_bytes,
            read_bytes: READ_BYTES,
            carry: Vec::new(),
            line_start: 0,
            pos: 0,
            discarding: false,
            pending_too_long: Vec::new(),
            eof: false,
            end: u64::MAX,
            stopped: false,
        }
    }

    /// A chunker for the lines that start in `[start, end)` of a stream whose `reader` is
    /// positioned at `start`, a line start (see [`line_start_at_or_after`]). Reading goes
    /// past `end` to finish the range's last line; the lines after it are left to the
    /// chunker of the next range.
    pub fn with_range(
        reader: R,
        start: u64,
        end: u64,
        chunk_bytes: usize,
        max_line_bytes: usize,
    ) -> Self {
        let mut chunker = Self::new(reader, chunk_bytes, max_line_bytes);
        chunker.line_start = start;
        chunker.pos = start;
        chunker.end = end;
        chunker
    }

    /// The next chunk, its data in `buf` (cleared first: pass a finished chunk's buffer
    /// back), or `None` at the end of the stream.
    pub fn next_chunk(&mut self, mut buf: Vec<u8>) -> std::io::Result<Option<Chunk>> {
        buf.clear();
        let mut too_long = std::mem::take(&mut self.pending_too_long);
        // `buf` always starts at a line start; `offset` is its stream offset.
        let mut offset = self.line_start;
        buf.extend_from_slice(&self.carry);
        self.carry.clear();
        // `buf[..complete]` are complete lines; the rest is the start of one more.
        let mut complete = 0usize;
        if offset >= self.end {
            self.stopped = true;
        }
        while !self.eof && !self.stopped && complete < self.chunk_bytes {
            let before = buf.len();
            buf.reserve(self.read_bytes);
            let n = match (&mut self.reader)
                .take(self.read_bytes as u64)
                .read_to_end(&mut buf)
            {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => n,
                Err(e) => {
                    buf.truncate(before);
                    return Err(e);
                }
            };
            let at = self.pos;
            self.pos += n as u64;
            let mut fresh = before;
            if self.discarding {
                // Only while `buf` holds no line (see below), so `before` is 0.
                match memchr::memchr(b'\n', &buf[before..]) {
                    None => {
                        buf.truncate(before);
                        continue;
                    }
                    Some(i) => {
                        self.discarding = false;
                        buf.drain(before..=before + i);
                        offset = at + i as u64 + 1;
                        fresh = before;
                        if offset >= self.end {
                            buf.truncate(before);
                            self.stopped = true;
                            break;
                        }
                    }
                }
            }
            if let Some(last) = memchr::memrchr(b'\n', &buf[fresh..]) {
                complete = fresh + last + 1;
            }
            if offset + complete as u64 >= self.end {
                // The range ends with the line holding byte `end - 1`.
                let from = (self.end - 1 - offset) as usize;
                let newline = memchr::memchr(b'\n', &buf[from..complete])
                    .expect("buf[complete - 1] is a newline");
                complete = from + newline + 1;
                self.stopped = true;
                break;
            }
            if buf.len() - complete > self.max_line_bytes + 2 {
                // Over-long even before its end arrives: skip the rest of it.
                let start = offset + complete as u64;
                if start >= self.end {
                    // Not this range's line.
                    self.stopped = true;
                    break;
                }
                buf.truncate(complete);
                self.discarding = true;
                if complete == 0 {
                    too_long.push(start);
                } else {
                    // It comes after this chunk's data: it opens the next chunk.
                    self.pending_too_long.push(start);
                    self.line_start = start;
                    break;
                }
            }
        }
        if self.stopped {
            self.discarding = false;
            buf.truncate(complete);
        } else if self.eof {
            // A last line without a newline is still a line.
            complete = buf.len();
            self.discarding = false;
        }
        self.carry.extend_from_slice(&buf[complete..]);
        buf.truncate(complete);
        if !self.discarding {
            self.line_start = offset + complete as u64;
        }
        if buf.is_empty() && too_long.is_empty() {
            return Ok(None);
        }
        Ok(Some(Chunk {
            offset,
            data: buf,
            too_long,
        }))
    }
}

/// The offset of the first line that starts at or after `pos` (a line starts at 0 or after a
/// `\n`), leaving `reader` positioned there; the end of the stream when none does.
pub fn line_start_at_or_after<R: Read + std::io::Seek>(
    reader: &mut R,
    pos: u64,
) -> std::io::Result<u64> {
    use std::io::SeekFrom;
    if pos == 0 {
        reader.seek(SeekFrom::Start(0))?;
        return Ok(0);
    }
    let mut at = reader.seek(SeekFrom::Start(pos - 1))?;
    let mut block = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut block) {
            Ok(0) => return Ok(at),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if let Some(i) = memchr::memchr(b'\n', &block[..n]) {
            let start = at + i as u64 + 1;
            reader.seek(SeekFrom::Start(start))?;
            return Ok(start);
        }
        at += n as u64;
    }
}

/// The lines of a chunk, each without its `\n`, with the stream offset of its first byte:
/// [`Chunk::lines`], with the newlines found by `memchr` (a run iterates every line of the
/// input through here).
pub fn lines(chunk: &Chunk) -> impl Iterator<Item = (u64, &[u8])> {
    let data = &chunk.data[..];
    let mut rest = (!data.is_empty()).then(|| data.strip_suffix(b"\n").unwrap_or(data));
    let mut at = chunk.offset;
    std::iter::from_fn(move || {
        let r = rest?;
        let (line, next) = match memchr::memchr(b'\n', r) {
            Some(i) => (&r[..i], Some(&r[i + 1..])),
            None => (r, None),
        };
        rest = next;
        let start = at;
        at += line.len() as u64 + 1;
        Some((start, line))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use logveil_ingest::ChunkReader;
    use proptest::prelude::*;

    /// A reader that returns at most `step` bytes per call.
    struct Dribble<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.data.len().min(self.step).min(buf.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        Line(u64, Vec<u8>),
        TooLong(u64),
    }

    /// What the engine makes of a chunk stream: each line, or `too_long` for a line the
    /// parser would reject as too long anyway (however the reader split it).
    fn seen(chunks: impl Iterator<Item = Chunk>, max: usize) -> Vec<Seen> {
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(chunk.too_long.iter().map(|&o| Seen::TooLong(o)));
            for (offset, line) in chunk.lines() {
                let body = line.strip_suffix(b"\r").unwrap_or(line);
                out.push(if body.len() > max {
                    Seen::TooLong(offset)
                } else {
                    Seen::Line(offset, line.to_vec())
                });
            }
        }
        out
    }

    fn ours(data: &[u8], step: usize, chunk: usize, max: usize) -> Vec<Chunk> {
        let mut chunker = Chunker::new(Dribble { data, step }, chunk, max);
        chunker.read_bytes = step;
        let mut out = Vec::new();
        let mut spare = Vec::new();
        while let Some(c) = chunker.next_chunk(std::mem::take(&mut spare)).unwrap() {
            out.push(Chunk {
                offset: c.offset,
                data: c.data.clone(),
                too_long: c.too_long,
            });
            spare = c.data;
        }
        out
    }

    fn theirs(data: &[u8], step: usize, chunk: usize, max: usize) -> Vec<Chunk> {
        let mut reader = ChunkReader::new(Dribble { data, step }, chunk, max);
        std::iter::from_fn(|| reader.next_chunk().unwrap()).collect()
    }

    #[test]
    fn plain_lines_and_a_last_line_without_newline() {
        let data = b"a\nbb\n\nccc";
        let chunks = ours(data, 3, 4, 100);
        assert_eq!(
            seen(chunks.into_iter(), 100),
            vec![
                Seen::Line(0, b"a".to_vec()),
                Seen::Line(2, b"bb".to_vec()),
                Seen::Line(5, b"".to_vec()),
                Seen::Line(6, b"ccc".to_vec()),
            ]
        );
    }

    /// The chunks of `data` read as `cuts.len() + 1` ranges, as a split run reads a file.
    fn ranges(data: &[u8], cuts: &[usize], step: usize, chunk: usize, max: usize) -> Vec<Chunk> {
        let mut bounds: Vec<u64> = cuts
            .iter()
            .map(|&c| (c % (data.len() + 1)) as u64)
            .collect();
        bounds.push(0);
        bounds.push(data.len() as u64);
        bounds.sort_unstable();
        let mut out = Vec::new();
        for pair in bounds.windows(2) {
            let mut file = std::io::Cursor::new(data);
            let start = line_start_at_or_after(&mut file, pair[0]).unwrap();
            let rest = &data[start as usize..];
            let mut chunker =
                Chunker::with_range(Dribble { data: rest, step }, start, pair[1], chunk, max);
            chunker.read_bytes = step;
            let mut spare = Vec::new();
            while let Some(c) = chunker.next_chunk(std::mem::take(&mut spare)).unwrap() {
                out.push(Chunk {
                    offset: c.offset,
                    data: c.data.clone(),
                    too_long: c.too_long,
                });
                spare = c.data;
            }
        }
        out
    }

    proptest! {
        /// Split into ranges, every line is read exactly once, by the range it starts in.
        #[test]
        fn ranges_read_every_line_once(
            lines in proptest::collection::vec((0usize..60, any::<bool>(), any::<bool>()), 0..40),
            last_newline in any::<bool>(),
            cuts in proptest::collection::vec(0usize..4000, 0..5),
            step in 1usize..70,
            chunk in 1usize..120,
            max in 0usize..40,
        ) {
            let mut data = Vec::new();
            for (i, (len, cr, big)) in lines.iter().enumerate() {
                let len = if *big { len * 7 } else { *len };
                data.extend((0..len).map(|j| b'a' + ((i + j) % 26) as u8));
                if *cr {
                    data.push(b'\r');
                }
                data.push(b'\n');
            }
            if !last_newline {
                data.pop();
            }
            let a = seen(ranges(&data, &cuts, step, chunk, max).into_iter(), max);
            let b = seen(theirs(&data, step, chunk, max).into_iter(), max);
            prop_assert_eq!(a, b);
        }

        #[test]
        fn lines_are_chunk_lines(data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'a'), Just(b'\r')], 0..40), offset in 0u64..1000) {
            let chunk = Chunk { offset, data, too_long: Vec::new() };
            let a: Vec<(u64, &[u8])> = lines(&chunk).collect();
            let b: Vec<(u64, &[u8])> = chunk.lines().collect();
            prop_assert_eq!(a, b);
        }

        /// Same lines, offsets and over-long lines as `logveil_ingest::ChunkReader`, for
        /// any line lengths, read sizes, chunk sizes and limits.
        #[test]
        fn same_lines_as_the_ingest_chunk_reader(
            lines in proptest::collection::vec((0usize..60, any::<bool>(), any::<bool>()), 0..40),
            last_newline in any::<bool>(),
            step in 1usize..70,
            chunk in 1usize..120,
            max in 0usize..40,
        ) {
            let mut data = Vec::new();
            for (i, (len, cr, big)) in lines.iter().enumerate() {
                let len = if *big { len * 7 } else { *len };
                data.extend((0..len).map(|j| b'a' + ((i + j) % 26) as u8));
                if *cr {
                    data.push(b'\r');
                }
                data.push(b'\n');
            }
            if !last_newline {
                data.pop();
            }
            let a = seen(ours(&data, step, chunk, max).into_iter(), max);
            let b = seen(theirs(&data, step, chunk, max).into_iter(), max);
            prop_assert_eq!(a, b);
        }
    }
}
