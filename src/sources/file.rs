//! Log-file source: files written by kube-apiserver's log backend.
//!
//! Reads plain or gzip files (detected by magic bytes, so rotated `.gz`
//! backups and renamed files work alike) or standard input, and cuts them
//! into [`Chunk`]s of whole units for the decode workers. Two modes, chosen
//! from the first line:
//! - *lines*: one JSON value per line (the log backend's format);
//! - *document*: the input is one or more multi-line JSON documents (a saved
//!   EventList, a pretty-printed array). Such documents are held in memory,
//!   so their size is capped.
//!
//! A unit's position is its 1-based line number; positions are what lake
//! file names and resume points are made of.
//!
//! A plain file's last line without a newline is, in a live `audit.log`,
//! a line still being written: unless it already parses as JSON it is not
//! consumed, and the next run reads it whole. Standard input and gzip files
//! are finished streams, so their last line is taken as it is.
//!
//! *Following* ([`FileReader::follow`], `ingest --follow`): at the end of
//! what is written, the reader waits for more instead of ending. A line
//! still being written is kept aside and completed when the rest arrives.
//! The file ends when the writer is done with it: its path names another
//! file (lumberjack renamed it and opened a new one), is gone, or the file
//! shrank below what was read (copytruncate). The reader then reads on to
//! the end, since what was written before the rename is final, and only
//! then ends. Positions stay line numbers, so a restart resumes exactly.

use flate2::read::MultiGzDecoder;
use serde_json::value::RawValue;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Lines longer than this are dead-lettered with their first bytes only.
pub const MAX_LINE_BYTES: usize = 64 << 20;
/// How much of an over-long line is kept in the dead letter.
pub const KEEP_OF_LONG_LINE: usize = 64 << 10;
/// Cap on a multi-line JSON document.
pub const MAX_DOCUMENT_BYTES: usize = 512 << 20;

const CHUNK_UNITS: usize = 8192;
const CHUNK_BYTES: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path}: read error after line {line}: {source}\nhint: a truncated .gz backup reads up to the damage; re-run to ingest what is readable, the error marks where it ends")]
    Read {
        path: PathBuf,
        line: u64,
        source: io::Error,
    },
    #[error("{path}: multi-line JSON document over {max} bytes; convert it to JSON lines first (e.g. `jq -c '.items[]'`)", max = MAX_DOCUMENT_BYTES)]
    DocumentTooLarge { path: PathBuf },
    #[error("{path}: gzip, or a multi-line JSON document, is a finished file and not a live log; --follow takes the file the apiserver appends JSON lines to (ingest this one without --follow)")]
    NotFollowable { path: PathBuf },
}

/// Why a unit was rejected before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitFlaw {
    None,
    /// Not valid UTF-8; the text is a lossy conversion.
    InvalidUtf8,
    /// Over [`MAX_LINE_BYTES`]; the text is the first bytes only, `length`
    /// the line's real length.
    TooLong {
        length: u64,
    },
}

/// A span of units handed to a worker.
#[derive(Debug, Default)]
pub struct Chunk {
    pub seq: u64,
    /// Position of the last line this chunk covers (blank lines included).
    pub last_pos: u64,
    pub text: String,
    /// (position, start, end, flaw) of each non-blank unit within `text`.
    pub units: Vec<(u64, usize, usize, UnitFlaw)>,
    /// Original bytes of the units that are not valid UTF-8, by unit index
    /// (rare: their dead letters keep these exactly).
    pub originals: Vec<(usize, Vec<u8>)>,
}

impl Chunk {
    pub fn unit(&self, i: usize) -> (u64, &str, UnitFlaw) {
        let (pos, a, b, flaw) = self.units[i];
        (pos, &self.text[a..b], flaw)
    }

    /// The original bytes of unit `i`, when its text is a repair.
    pub fn original(&self, i: usize) -> Option<&[u8]> {
        self.originals
            .iter()
            .find(|(j, _)| *j == i)
            .map(|(_, b)| b.as_slice())
    }
}

/// One line as read: its kept bytes (newline excluded) and how it ended.
#[derive(Debug, Default)]
struct Line {
    bytes: Vec<u8>,
    read: LineRead,
}

/// How [`read_line_capped`] ended a line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct LineRead {
    /// Bytes consumed from the input, newline included.
    consumed: usize,
    /// Longer than the cap: only the first bytes were kept.
    truncated: bool,
    /// Ended by a newline (not by the end of the input).
    terminated: bool,
}

/// Counts bytes read from the underlying (possibly compressed) file, for
/// progress reporting.
pub struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

enum Mode {
    Lines,
    Document(Vec<(u64, String)>),
}

/// How a live file is followed (`ingest --follow`).
#[derive(Clone, Debug)]
pub struct Follow {
    /// How long to wait at the end of what is written before looking again.
    pub poll: Duration,
    /// Set to end the read at the next chunk boundary (shutdown); what was
    /// not committed is read again after the restart.
    pub stop: Arc<AtomicBool>,
}

/// A followed file: the file it is, to tell when its path names another.
struct Followed {
    how: Follow,
    /// Device and inode of the open file.
    id: (u64, u64),
    /// The writer is done with the file: read on to the end, then end.
    ended: bool,
}

/// What the end of what is written means for the read.
enum AtEnd {
    /// The input's real end (not followed, or its writer is done with it).
    Real,
    /// Read again (after a wait, unless there were lines to hand out).
    Again,
    /// Stop reading (shutdown).
    Stop,
}

/// Why a followed file is over, once [`FileReader::next_chunk`] returned `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowEnd {
    /// Still being written: the read was stopped (shutdown).
    Stopped,
    /// The path names another file now, or nothing (rotation, deletion).
    Replaced,
    /// The file is shorter than what was read (copytruncate).
    Truncated,
}

/// Reads one file or standard input as chunks.
pub struct FileReader {
    path: PathBuf,
    reader: Box<dyn BufRead + Send>,
    /// Raw bytes consumed so far (compressed size for .gz).
    pub raw_bytes: Arc<AtomicU64>,
    /// Size of the raw input when known (for progress).
    pub raw_len: Option<u64>,
    line: u64,
    seq: u64,
    first_line: Option<Vec<u8>>,
    mode: Mode,
    eof: bool,
    skip_through: u64,
    pub compressed: bool,
    /// Lines read while detecting the mode, handed out first.
    pushed: std::collections::VecDeque<Line>,
    /// A finished stream (standard input, gzip): its unterminated last line
    /// is final, not still being written.
    finished: bool,
    /// Position of an unterminated last line left for the next run.
    unterminated: Option<u64>,
    /// Set when the file is followed.
    followed: Option<Followed>,
    /// A followed file's line still being written: what was read of it.
    partial: Option<Line>,
    /// How a followed file's read ended.
    end: Option<FollowEnd>,
}

impl FileReader {
    /// Open `path` (`-` = standard input).
    pub fn open(path: &Path) -> Result<FileReader, FileError> {
        if path == Path::new("-") {
            return FileReader::from_input(path, Box::new(io::stdin()), None);
        }
        let f = File::open(path).map_err(|source| FileError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let len = f.metadata().ok().map(|m| m.len());
        FileReader::from_input(path, Box::new(f), len)
    }

    /// A reader of `raw`, named `path`, of `raw_len` bytes when known.
    fn from_input(
        path: &Path,
        raw: Box<dyn Read + Send>,
        raw_len: Option<u64>,
    ) -> Result<FileReader, FileError> {
        let count = Arc::new(AtomicU64::new(0));
        let mut raw = BufReader::with_capacity(
            256 << 10,
            Counting {
                inner: raw,
                count: count.clone(),
            },
        );
        let magic = raw.fill_buf().map_err(|source| FileError::Read {
            path: path.to_path_buf(),
            line: 0,
            source,
        })?;
        let compressed = magic.len() >= 2 && magic[0] == 0x1f && magic[1] == 0x8b;
        let reader: Box<dyn BufRead + Send> = if compressed {
            Box::new(BufReader::with_capacity(1 << 20, MultiGzDecoder::new(raw)))
        } else {
            Box::new(raw)
        };
        let mut r = FileReader {
            path: path.to_path_buf(),
            reader,
            raw_bytes: count,
            raw_len,
            line: 0,
            seq: 0,
            first_line: None,
            mode: Mode::Lines,
            eof: false,
            skip_through: 0,
            compressed,
            pushed: Default::default(),
            finished: compressed || path == Path::new("-"),
            unterminated: None,
            followed: None,
            partial: None,
            end: None,
        };
        r.detect_mode()?;
        Ok(r)
    }

    /// Open a live plain file to follow as it grows, until its writer is
    /// done with it (see the module's comment). `Ok(None)`: not ready to be
    /// followed yet, because it has no complete first line (just created,
    /// or missing: `NotFound` is not an error here), so it has no source
    /// identity yet; look again later.
    pub fn follow(path: &Path, how: Follow) -> Result<Option<FileReader>, FileError> {
        use std::os::unix::fs::MetadataExt;
        let open_err = |source| FileError::Open {
            path: path.to_path_buf(),
            source,
        };
        // One handle for every look: the path may name another file at any moment.
        let f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(open_err(e)),
        };
        let meta = f.metadata().map_err(open_err)?;
        // A first line still being written is no identity, and one that
        // opens with `{` would pass for the start of a multi-line document.
        if !has_whole_first_line(&f).map_err(open_err)? {
            return Ok(None);
        }
        let mut r = FileReader::from_input(path, Box::new(f), Some(meta.len()))?;
        if r.compressed || matches!(r.mode, Mode::Document(_)) {
            return Err(FileError::NotFollowable {
                path: path.to_path_buf(),
            });
        }
        r.followed = Some(Followed {
            how,
            id: (meta.dev(), meta.ino()),
            ended: false,
        });
        Ok(Some(r))
    }

    /// How a followed file's read ended (`None` before its end, or when the
    /// file is not followed).
    pub fn follow_end(&self) -> Option<FollowEnd> {
        self.end
    }

    /// Whether the writer is done with this followed file (it was rotated,
    /// deleted or truncated), looking at its path now.
    fn writer_is_done(&self) -> Result<Option<FollowEnd>, FileError> {
        use std::os::unix::fs::MetadataExt;
        let Some(f) = &self.followed else {
            return Ok(None);
        };
        match std::fs::metadata(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Some(FollowEnd::Replaced)),
            Err(e) => Err(self.read_err(e)),
            Ok(m) if (m.dev(), m.ino()) != f.id => Ok(Some(FollowEnd::Replaced)),
            Ok(m) if m.len() < self.raw_bytes.load(Ordering::Relaxed) => {
                Ok(Some(FollowEnd::Truncated))
            }
            Ok(_) => Ok(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read as a finished stream: its writer is done with it (a rotated
    /// copy), so an unterminated last line is taken as it is.
    pub fn finished(mut self) -> Self {
        self.finished = true;
        self
    }

    /// The first non-blank line (identifies the source), if any.
    pub fn first_line(&self) -> Option<&[u8]> {
        self.first_line.as_deref()
    }

    /// The position of an unterminated last line that was left unread
    /// (still being written), once the end is reached.
    pub fn unterminated(&self) -> Option<u64> {
        self.unterminated
    }

    /// Skip units at positions `..=pos` (already committed).
    pub fn skip_through(&mut self, pos: u64) {
        self.skip_through = pos;
    }

    fn read_err(&self, source: io::Error) -> FileError {
        FileError::Read {
            path: self.path.clone(),
            line: self.line,
            source,
        }
    }

    /// Read the first non-blank line; if it does not stand alone as JSON but
    /// opens a document, switch to document mode.
    fn detect_mode(&mut self) -> Result<(), FileError> {
        loop {
            let mut line = Line::default();
            line.read = read_line_capped(&mut *self.reader, &mut line.bytes, MAX_LINE_BYTES)
                .map_err(|e| self.read_err(e))?;
            if line.read.consumed == 0 {
                break;
            }
            let text = trim_ascii(&line.bytes);
            if text.is_empty() {
                self.pushed.push_back(line);
                continue;
            }
            self.first_line = Some(text.to_vec());
            // An over-long first line is a line, never the start of a
            // multi-line document (whose first line is `{` or `[`): it is
            // dead-lettered and the lines after it are read.
            let opens_doc = !line.read.truncated && matches!(text.first(), Some(b'{' | b'['));
            if opens_doc && serde_json::from_slice::<serde::de::IgnoredAny>(text).is_err() {
                // Multi-line document: read it all (bounded).
                let mut all = Vec::new();
                for l in self.pushed.drain(..).chain(std::iter::once(line)) {
                    all.extend_from_slice(&l.bytes);
                    all.push(b'\n');
                }
                let limit = MAX_DOCUMENT_BYTES as u64;
                (&mut self.reader)
                    .take(limit + 1 - all.len() as u64)
                    .read_to_end(&mut all)
                    .map_err(|e| self.read_err(e))?;
                if all.len() as u64 > limit {
                    return Err(FileError::DocumentTooLarge {
                        path: self.path.clone(),
                    });
                }
                self.mode = Mode::Document(split_documents(&all));
                self.eof = true;
                return Ok(());
            }
            self.pushed.push_back(line);
            break;
        }
        Ok(())
    }

    /// The next line into `bytes`: a pushed-back one first, then the input.
    fn next_line(&mut self, bytes: &mut Vec<u8>) -> Result<LineRead, FileError> {
        if let Some(line) = self.pushed.pop_front() {
            bytes.extend_from_slice(&line.bytes);
            return Ok(line.read);
        }
        if let Some(part) = self.partial.take() {
            // The rest of a followed line that was still being written.
            bytes.extend_from_slice(&part.bytes);
            let cap = MAX_LINE_BYTES.saturating_sub(part.bytes.len());
            let rest =
                read_line_capped(&mut *self.reader, bytes, cap).map_err(|e| self.read_err(e))?;
            return Ok(LineRead {
                consumed: part.read.consumed + rest.consumed,
                truncated: part.read.truncated || rest.truncated,
                terminated: rest.terminated,
            });
        }
        read_line_capped(&mut *self.reader, bytes, MAX_LINE_BYTES).map_err(|e| self.read_err(e))
    }

    /// At the end of what is written of a followed file (`read` stopped
    /// there, its bytes at `bytes[a..]`): the line still being written is
    /// kept aside, to be completed by the next read, and the reader waits
    /// unless it has lines to hand out (`has_lines`).
    fn at_written_end(
        &mut self,
        bytes: &mut Vec<u8>,
        a: usize,
        read: LineRead,
        has_lines: bool,
    ) -> Result<AtEnd, FileError> {
        let Some(f) = &self.followed else {
            return Ok(AtEnd::Real);
        };
        if f.ended {
            return Ok(AtEnd::Real);
        }
        let (stop, poll) = (f.how.stop.load(Ordering::Relaxed), f.how.poll);
        if stop {
            // Shutdown: the lines not committed are read again after the
            // restart, the one being written too.
            self.end = Some(FollowEnd::Stopped);
            bytes.truncate(a);
            return Ok(AtEnd::Stop);
        }
        if read.consumed > 0 {
            self.partial = Some(Line {
                bytes: bytes[a..].to_vec(),
                read,
            });
            bytes.truncate(a);
        }
        if let Some(end) = self.writer_is_done()? {
            // What was written before the rename (or the truncation) is all
            // there will be: read on to the end, which is final, and take a
            // last line without its newline as it is.
            self.end = Some(end);
            self.finished = true;
            if let Some(f) = &mut self.followed {
                f.ended = true;
            }
            return Ok(AtEnd::Again);
        }
        if !has_lines {
            std::thread::sleep(poll);
        }
        Ok(AtEnd::Again)
    }

    /// The next chunk, or `None` at the end of input.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, FileError> {
        if let Mode::Document(docs) = &mut self.mode {
            let mut chunk = Chunk {
                seq: self.seq,
                ..Default::default()
            };
            let take = docs.len().min(CHUNK_UNITS);
            if take == 0 {
                return Ok(None);
            }
            for (pos, text) in docs.drain(..take) {
                chunk.last_pos = pos;
                if pos <= self.skip_through {
                    continue;
                }
                let a = chunk.text.len();
                chunk.text.push_str(&text);
                chunk.units.push((pos, a, chunk.text.len(), UnitFlaw::None));
            }
            self.seq += 1;
            return Ok(Some(chunk));
        }
        if self.eof {
            return Ok(None);
        }
        if let Some(f) = &self.followed {
            if f.how.stop.load(Ordering::Relaxed) {
                self.end = Some(FollowEnd::Stopped);
                self.eof = true;
                return Ok(None);
            }
        }
        let mut chunk = Chunk {
            seq: self.seq,
            ..Default::default()
        };
        // Lines are read straight into the chunk buffer (one copy).
        let mut bytes = Vec::with_capacity(CHUNK_BYTES + (64 << 10));
        let mut spans: Vec<(u64, usize, usize, UnitFlaw)> = Vec::new();
        while spans.len() < CHUNK_UNITS && bytes.len() < CHUNK_BYTES {
            let a = bytes.len();
            let read = self.next_line(&mut bytes)?;
            if read.consumed == 0 || !read.terminated {
                let has_lines = chunk.last_pos > 0;
                match self.at_written_end(&mut bytes, a, read, has_lines)? {
                    AtEnd::Real => {}
                    AtEnd::Again if has_lines => break, // hand out what was read first
                    AtEnd::Again => continue,
                    AtEnd::Stop => {
                        self.eof = true;
                        break;
                    }
                }
            }
            if read.consumed == 0 {
                self.eof = true;
                break;
            }
            if !read.terminated
                && !read.truncated
                && !self.finished
                && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes[a..]).is_err()
            {
                // Still being written: leave it for the next run.
                let (s, e) = trim_range(&bytes[a..]);
                if s < e {
                    self.unterminated = Some(self.line + 1);
                }
                bytes.truncate(a);
                self.eof = true;
                break;
            }
            self.line += 1;
            let pos = self.line;
            chunk.last_pos = pos;
            let (s, e) = trim_range(&bytes[a..]);
            if pos <= self.skip_through || s == e {
                bytes.truncate(a);
                continue;
            }
            let (s, mut e) = (a + s, a + e);
            let flaw = if read.truncated {
                e = e.min(s + KEEP_OF_LONG_LINE);
                UnitFlaw::TooLong {
                    length: (read.consumed - usize::from(read.terminated)) as u64,
                }
            } else {
                UnitFlaw::None
            };
            bytes.truncate(e);
            spans.push((pos, s, e, flaw));
        }
        if chunk.last_pos == 0 && self.eof {
            return Ok(None);
        }
        chunk.text = match String::from_utf8(bytes) {
            Ok(s) => {
                chunk.units = spans;
                s
            }
            Err(e) => {
                // Rare: repair per unit so that valid lines stay valid.
                let bytes = e.into_bytes();
                let mut text = String::with_capacity(bytes.len());
                for (pos, a, b, flaw) in spans {
                    let start = text.len();
                    match std::str::from_utf8(&bytes[a..b]) {
                        Ok(s) => {
                            text.push_str(s);
                            chunk.units.push((pos, start, text.len(), flaw));
                        }
                        Err(_) => {
                            text.push_str(&String::from_utf8_lossy(&bytes[a..b]));
                            chunk
                                .originals
                                .push((chunk.units.len(), bytes[a..b].to_vec()));
                            chunk
                                .units
                                .push((pos, start, text.len(), UnitFlaw::InvalidUtf8));
                        }
                    }
                }
                text
            }
        };
        self.seq += 1;
        Ok(Some(chunk))
    }
}

/// Whether the file starts with a whole non-blank line (or is gzip, which
/// the caller refuses to follow), reading at most [`MAX_LINE_BYTES`] at
/// offsets, so the handle's position stays at the start.
fn has_whole_first_line(f: &File) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 64 << 10];
    let mut seen_text = false;
    let mut read = 0usize;
    loop {
        if read > MAX_LINE_BYTES {
            // A first line over the cap is dead-lettered, as in any file.
            return Ok(true);
        }
        let n = match f.read_at(&mut buf, read as u64) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(false);
        }
        if read == 0 && buf[..n].starts_with(&[0x1f, 0x8b]) {
            return Ok(true);
        }
        for &b in &buf[..n] {
            if b == b'\n' && seen_text {
                return Ok(true);
            }
            seen_text |= !b.is_ascii_whitespace();
        }
        read += n;
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let (s, e) = trim_range(b);
    &b[s..e]
}

/// Bounds of `b` without surrounding ASCII white space and a leading BOM.
fn trim_range(b: &[u8]) -> (usize, usize) {
    let mut s = if b.starts_with(b"\xef\xbb\xbf") { 3 } else { 0 };
    let mut e = b.len();
    while s < e && b[s].is_ascii_whitespace() {
        s += 1;
    }
    while e > s && b[e - 1].is_ascii_whitespace() {
        e -= 1;
    }
    (s, e)
}

/// Append one line to `out` (newline excluded), keeping at most `cap` bytes
/// of it and discarding the rest of the line.
fn read_line_capped(r: &mut dyn BufRead, out: &mut Vec<u8>, cap: usize) -> io::Result<LineRead> {
    let mut line = LineRead::default();
    let base = out.len();
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(line);
        }
        let (take, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let data = if done { &buf[..take - 1] } else { &buf[..take] };
        let room = cap.saturating_sub(out.len() - base);
        if data.len() > room {
            line.truncated = true;
        }
        out.extend_from_slice(&data[..data.len().min(room)]);
        r.consume(take);
        line.consumed += take;
        if done {
            line.terminated = true;
            return Ok(line);
        }
    }
}

/// Split a buffer holding one or more JSON documents into (start line,
/// text) units. Text after a syntax error becomes one final unit, so the
/// decoder rejects it with the parser's message.
fn split_documents(all: &[u8]) -> Vec<(u64, String)> {
    let text = String::from_utf8_lossy(all);
    let mut out = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(&text).into_iter::<&RawValue>();
    let mut last_end = 0usize;
    loop {
        let start = stream.byte_offset();
        match stream.next() {
            None => break,
            Some(Ok(raw)) => {
                let value_start = text[start..]
                    .find(|c: char| !c.is_whitespace())
                    .map(|i| start + i)
                    .unwrap_or(start);
                let line = 1 + text[..value_start].bytes().filter(|&b| b == b'\n').count() as u64;
                out.push((line, raw.get().to_string()));
                last_end = stream.byte_offset();
            }
            Some(Err(_)) => {
                let rest = &text[last_end..];
                let skip = rest.len() - rest.trim_start().len();
                let line = 1 + text[..last_end + skip]
                    .bytes()
                    .filter(|&b| b == b'\n')
                    .count() as u64;
                out.push((line, rest.trim().to_string()));
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(path: &Path) -> Vec<(u64, String, UnitFlaw)> {
        let mut r = FileReader::open(path).expect("open");
        let mut out = vec![];
        while let Some(c) = r.next_chunk().expect("read") {
            for i in 0..c.units.len() {
                let (p, t, f) = c.unit(i);
                out.push((p, t.to_string(), f));
            }
        }
        out
    }

    #[test]
    fn lines_gzip_and_documents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = dir.path().join("a.log");
        std::fs::write(&plain, b"{\"a\":1}\n\n  {\"b\":2}\r\n\xff\xfe\n").expect("write");
        let got = chunks(&plain);
        assert_eq!(got.len(), 3);
        assert_eq!((got[0].0, got[0].1.as_str()), (1, "{\"a\":1}"));
        assert_eq!((got[1].0, got[1].1.as_str()), (3, "{\"b\":2}"));
        assert_eq!(got[2].0, 4);
        assert_eq!(got[2].2, UnitFlaw::InvalidUtf8);

        let gz = dir.path().join("b.log.1");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, b"{\"a\":1}\n{\"b\":2}").expect("gz");
        std::fs::write(&gz, enc.finish().expect("gz")).expect("write");
        let got = chunks(&gz);
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![1, 2]);

        let doc = dir.path().join("c.json");
        std::fs::write(
            &doc,
            "{\n \"kind\": \"EventList\",\n \"items\": []\n}\n[\n 1\n]\n{ broken",
        )
        .expect("write");
        let got = chunks(&doc);
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![1, 5, 8]);
        assert_eq!(got[2].1, "{ broken");
    }

    #[test]
    fn long_lines_are_cut_and_flagged() {
        let mut r: &[u8] = b"abcdefgh\nxy\n";
        let mut out = vec![];
        let read = |consumed, truncated, terminated| LineRead {
            consumed,
            truncated,
            terminated,
        };
        assert_eq!(
            read_line_capped(&mut r, &mut out, 4).expect("read"),
            read(9, true, true)
        );
        assert_eq!(out, b"abcd");
        out.clear();
        assert_eq!(
            read_line_capped(&mut r, &mut out, 4).expect("read"),
            read(3, false, true)
        );
        assert_eq!(out, b"xy");
        out.clear();
        let mut r: &[u8] = b"abcdef";
        assert_eq!(
            read_line_capped(&mut r, &mut out, 4).expect("read"),
            read(6, true, false)
        );
    }

    /// Lines cross buffer and chunk boundaries; every line must come
    /// out once, whole, with its number, whatever the cuts.
    #[test]
    fn lines_survive_buffer_and_chunk_cuts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("many.log");
        let mut text = String::new();
        let mut want = vec![];
        // Enough lines for several chunks (CHUNK_UNITS each) and lengths
        // that put line ends at every offset of a buffer.
        let lines = (2 * CHUNK_UNITS + 777) as u64;
        for i in 0..lines {
            if i % 1000 == 3 {
                text.push_str("  \r\n"); // blank: counted, not a unit
                continue;
            }
            let line = format!(
                "{{\"n\":{i},\"pad\":\"{}\"}}",
                "x".repeat((i * 7919 % 3001) as usize)
            );
            text.push_str(&line);
            text.push('\n');
            want.push((i + 1, line));
        }
        // The last line has no newline.
        text.push_str("{\"last\":true}");
        want.push((lines + 1, "{\"last\":true}".into()));
        std::fs::write(&p, &text).expect("write");
        let got = chunks(&p);
        assert_eq!(got.len(), want.len());
        for ((pos, t, flaw), (wpos, wt)) in got.iter().zip(&want) {
            assert_eq!(
                (pos, t.as_str(), *flaw),
                (wpos, wt.as_str(), UnitFlaw::None)
            );
        }
        let mut r = FileReader::open(&p).expect("open");
        let mut seen = 0;
        while let Some(c) = r.next_chunk().expect("read") {
            assert!(c.units.len() <= CHUNK_UNITS);
            seen += 1;
        }
        assert!(seen >= 3, "expected several chunks, got {seen}");
    }

    #[test]
    fn an_over_long_line_keeps_its_head_and_the_next_line_its_number() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("long.log");
        let mut text = b"{\"a\":1}\n".to_vec();
        text.extend(std::iter::repeat_n(b'z', MAX_LINE_BYTES + (3 << 20) + 5));
        text.extend_from_slice(b"\n{\"b\":2}\n");
        std::fs::write(&p, &text).expect("write");
        let got = chunks(&p);
        assert_eq!(got.len(), 3);
        assert_eq!((got[0].0, got[0].1.as_str()), (1, "{\"a\":1}"));
        assert_eq!(
            (got[1].0, got[1].1.len(), got[1].2),
            (
                2,
                KEEP_OF_LONG_LINE,
                UnitFlaw::TooLong {
                    length: (MAX_LINE_BYTES + (3 << 20) + 5) as u64
                }
            )
        );
        assert_eq!(
            (got[2].0, got[2].1.as_str(), got[2].2),
            (3, "{\"b\":2}", UnitFlaw::None)
        );
    }

    /// What reading line by line gives: every `\n`-separated line
    /// numbered, trimmed, blank ones left out, invalid UTF-8 made lossy.
    fn line_by_line(text: &[u8]) -> Vec<(u64, String, UnitFlaw)> {
        let mut out = vec![];
        let mut lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
        if lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        for (i, line) in lines.into_iter().enumerate() {
            let t = trim_ascii(line);
            if t.is_empty() {
                continue;
            }
            out.push(match std::str::from_utf8(t) {
                Ok(s) => (i as u64 + 1, s.to_string(), UnitFlaw::None),
                Err(_) => (
                    i as u64 + 1,
                    String::from_utf8_lossy(t).into_owned(),
                    UnitFlaw::InvalidUtf8,
                ),
            });
        }
        out
    }

    /// Buffers and chunks cut lines anywhere: generated inputs with lines
    /// from empty to several buffers long, blank and CRLF lines, a BOM,
    /// invalid UTF-8 and multi-byte characters, with and without a final
    /// newline, plain and gzip, must read exactly as line by line.
    #[test]
    fn buffers_read_as_lines_do() {
        // The gzip decoder's buffer; the plain file's is 256 KiB.
        const LARGEST_BUFFER: usize = 1 << 20;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for case in 0..12 {
            let mut text: Vec<u8> = Vec::new();
            let lines = if case % 3 == 0 { 20_000 } else { 300 };
            for _ in 0..lines {
                match next(20) {
                    0 => text.extend_from_slice(b"   \r"),
                    1 => text.extend_from_slice(b"\xef\xbb\xbf{\"bom\":1}"),
                    2 => text.extend_from_slice(b"{\"bad\":\"\xff\xfe\"}"),
                    // Long lines only where there are few, to keep the
                    // input small; the many-line cases cross chunks.
                    3 if lines < 1000 => {
                        let n = next(3 * LARGEST_BUFFER as u64) as usize;
                        text.extend(std::iter::repeat_n(b'x', n));
                    }
                    4 => text.extend_from_slice("{\"ü\":\"漢字\"}\r".as_bytes()),
                    _ => {
                        let n = next(40) as usize;
                        text.extend(std::iter::repeat_n(b'y', n));
                    }
                }
                text.push(b'\n');
            }
            if case % 2 == 1 {
                text.extend_from_slice(b"{\"last\":1}");
            }
            let want = line_by_line(&text);
            let plain = dir.path().join(format!("{case}.log"));
            std::fs::write(&plain, &text).expect("write");
            assert_eq!(chunks(&plain), want, "case {case}, plain");
            let gz = dir.path().join(format!("{case}.log.gz"));
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut enc, &text).expect("gz");
            std::fs::write(&gz, enc.finish().expect("gz")).expect("write");
            assert_eq!(chunks(&gz), want, "case {case}, gzip");
        }
    }

    #[test]
    fn an_over_long_last_line_without_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("long-last.log");
        let mut text = b"{\"a\":1}\n\n".to_vec();
        text.extend(std::iter::repeat_n(b'z', MAX_LINE_BYTES + 1));
        std::fs::write(&p, &text).expect("write");
        let mut r = FileReader::open(&p).expect("open");
        let mut got = vec![];
        let mut last = 0;
        while let Some(c) = r.next_chunk().expect("read") {
            last = c.last_pos;
            for i in 0..c.units.len() {
                let (pos, t, flaw) = c.unit(i);
                got.push((pos, t.len(), flaw));
            }
        }
        assert_eq!(
            got,
            vec![
                (1, 7, UnitFlaw::None),
                (
                    3,
                    KEEP_OF_LONG_LINE,
                    UnitFlaw::TooLong {
                        length: (MAX_LINE_BYTES + 1) as u64
                    }
                )
            ]
        );
        assert_eq!(last, 3);
    }

    /// An over-long *first* line is a line like any other: it used to be
    /// taken for the start of a multi-line document, and the ten events
    /// after it went into its dead letter.
    #[test]
    fn an_over_long_first_line_does_not_swallow_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("long-first.log");
        let mut text = b"{\"a\":\"".to_vec();
        text.extend(std::iter::repeat_n(b'z', MAX_LINE_BYTES + 10));
        text.extend_from_slice(b"\"}\n");
        for i in 0..10 {
            text.extend_from_slice(format!("{{\"n\":{i}}}\n").as_bytes());
        }
        std::fs::write(&p, &text).expect("write");
        let got = chunks(&p);
        assert_eq!(got.len(), 11);
        assert_eq!(
            got[0].2,
            UnitFlaw::TooLong {
                length: (MAX_LINE_BYTES + 10 + 8) as u64
            }
        );
        assert_eq!(got[0].1.len(), KEEP_OF_LONG_LINE);
        for (i, g) in got[1..].iter().enumerate() {
            assert_eq!(
                (g.0, g.1.clone(), g.2),
                (i as u64 + 2, format!("{{\"n\":{i}}}"), UnitFlaw::None)
            );
        }
    }

    /// A plain file's unterminated last line is left for the next run
    /// unless it is already whole JSON; gzip input takes it as it is.
    #[test]
    fn an_unterminated_last_line_waits_for_its_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("live.log");
        std::fs::write(&p, "{\"n\":1}\n{\"n\":2}\n{\"n\":3, \"half").expect("write");
        let mut r = FileReader::open(&p).expect("open");
        let mut got = vec![];
        let mut last = 0;
        while let Some(c) = r.next_chunk().expect("read") {
            last = c.last_pos;
            got.extend((0..c.units.len()).map(|i| c.unit(i).0));
        }
        assert_eq!((got, last, r.unterminated()), (vec![1, 2], 2, Some(3)));

        // Whole JSON without its newline is an event, not a fragment.
        std::fs::write(&p, "{\"n\":1}\n{\"n\":2}").expect("write");
        assert_eq!(chunks(&p).len(), 2);

        // A finished stream keeps its (broken) tail, to be dead-lettered.
        let gz = dir.path().join("live.log.1.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, b"{\"n\":1}\n{\"n\":3, \"half").expect("gz");
        std::fs::write(&gz, enc.finish().expect("gz")).expect("write");
        assert_eq!(chunks(&gz).len(), 2);
    }

    #[test]
    fn skip_through_resumes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a.log");
        std::fs::write(&p, "1\n2\n3\n4\n").expect("write");
        let mut r = FileReader::open(&p).expect("open");
        r.skip_through(2);
        let c = r.next_chunk().expect("read").expect("chunk");
        assert_eq!(c.units.iter().map(|u| u.0).collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(c.last_pos, 4);
    }

    fn follow_how(stop: &Arc<AtomicBool>) -> Follow {
        Follow {
            poll: Duration::from_millis(5),
            stop: stop.clone(),
        }
    }

    /// The units' (position, text) of a followed read, and how it ended.
    type Followed = (Vec<(u64, String)>, Option<FollowEnd>);

    /// Follows `p` (which must be ready) on a thread until `stop` or its end.
    fn follow_on_thread(p: &Path, stop: &Arc<AtomicBool>) -> std::thread::JoinHandle<Followed> {
        let mut r = FileReader::follow(p, follow_how(stop))
            .expect("follow")
            .expect("ready");
        std::thread::spawn(move || {
            let mut got = vec![];
            while let Some(c) = r.next_chunk().expect("read") {
                got.extend((0..c.units.len()).map(|i| {
                    let (p, t, _) = c.unit(i);
                    (p, t.to_string())
                }));
            }
            (got, r.follow_end())
        })
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .expect("open for append");
        std::io::Write::write_all(&mut f, text.as_bytes()).expect("append");
    }

    fn pause() {
        std::thread::sleep(Duration::from_millis(60));
    }

    /// A line written in two parts is read whole; what is written before the
    /// rename is read (even the unterminated last line: the writer is done),
    /// and the read ends only then. Nothing of the new file is read.
    #[test]
    fn a_followed_file_is_read_whole_until_its_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("audit.log");
        std::fs::write(&p, "{\"n\":1}\n{\"n\":").expect("write");
        let stop = Arc::new(AtomicBool::new(false));
        let t = follow_on_thread(&p, &stop);
        pause();
        append(&p, "2}\n");
        pause();
        append(&p, "{\"n\":3}\n{\"n\":4}");
        std::fs::rename(&p, dir.path().join("audit-1.log")).expect("rotate");
        std::fs::write(&p, "{\"n\":5}\n").expect("new file");
        let (got, end) = t.join().expect("reader");
        let texts: Vec<_> = got.iter().map(|(p, t)| (*p, t.as_str())).collect();
        assert_eq!(
            texts,
            vec![
                (1, "{\"n\":1}"),
                (2, "{\"n\":2}"),
                (3, "{\"n\":3}"),
                (4, "{\"n\":4}")
            ]
        );
        assert_eq!(end, Some(FollowEnd::Replaced));
    }

    /// Shutdown ends the read at once; a line still being written is not
    /// handed out (the restart reads it whole). A file that shrank below what
    /// was read (copytruncate) ends too.
    #[test]
    fn a_followed_read_ends_on_stop_and_on_truncation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("audit.log");
        std::fs::write(&p, "{\"n\":1}\n{\"n\":2, \"half").expect("write");
        let stop = Arc::new(AtomicBool::new(false));
        let t = follow_on_thread(&p, &stop);
        pause();
        stop.store(true, Ordering::Relaxed);
        let (got, end) = t.join().expect("reader");
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![1]);
        assert_eq!(end, Some(FollowEnd::Stopped));

        let stop = Arc::new(AtomicBool::new(false));
        std::fs::write(&p, "{\"n\":1}\n{\"n\":2}\n").expect("write");
        let t = follow_on_thread(&p, &stop);
        pause();
        std::fs::write(&p, "").expect("truncate");
        let (got, end) = t.join().expect("reader");
        assert_eq!(got.len(), 2);
        assert_eq!(end, Some(FollowEnd::Truncated));
    }

    /// A file without a whole first line has no identity yet: not followed.
    #[test]
    fn a_file_is_followed_once_its_first_line_is_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("audit.log");
        let stop = Arc::new(AtomicBool::new(false));
        let ready = |p: &Path| {
            FileReader::follow(p, follow_how(&stop))
                .expect("follow")
                .is_some()
        };
        assert!(!ready(&p), "missing");
        std::fs::write(&p, "").expect("write");
        assert!(!ready(&p), "empty");
        std::fs::write(&p, "\n{\"n\":1").expect("write");
        assert!(!ready(&p), "first line still being written");
        append(&p, "}\n");
        assert!(ready(&p));
    }
}
