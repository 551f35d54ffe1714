//! Write-ahead log: where webhook batches become durable before they are
//! acknowledged.
//!
//! Records are appended to segment files `<first seq>.wal`, each record
//! framed as `len u32 | crc32 u32 | payload` (little endian) with payload
//! `seq u64 | cluster_len u16 | cluster | body`. A single writer thread
//! batches every append waiting in its queue, writes them, and fsyncs once
//! for all of them (group commit); each append is answered only after that
//! fsync. Sequence numbers are dense and start at 1; they are the positions
//! lake file names are made of.
//!
//! On open the log is scanned and repaired:
//! - a record cut short at the end of the last segment is a torn write (the
//!   only damage a crash can do, and only to records never acknowledged):
//!   it is cut off;
//! - any other bad record (a flipped bit, a damaged sector) is *corruption*:
//!   its bytes are moved to `quarantine/<segment>@<offset>.bin`, logged with
//!   their position and counted, and every intact record after it, in its
//!   segment and in later ones, is kept. The next intact record is found
//!   by its frame (a length in range, a matching CRC, a later sequence
//!   number). The segment is rewritten without the bad bytes (temporary,
//!   fsync, rename), so a crash during repair leaves the original and the
//!   next start repairs it again; nothing that could be read is deleted.
//!
//! The active segment is rolled once everything in it is committed, so the
//! flusher's trim can free it: with the log alone on a small volume, a full
//! disk otherwise stayed full for good.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

const HEADER: usize = 8;
/// Upper bound of one record's payload (bodies are limited far below).
pub const MAX_RECORD: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("write-ahead log is full ({bytes} bytes pending, limit {limit}); the Parquet stage is behind or stalled")]
    Full { bytes: u64, limit: u64 },
    #[error("write-ahead log queue is full")]
    Busy,
    #[error("write-ahead log is closed")]
    Closed,
    #[error("write-ahead log {path}: record at byte {offset} is corrupt (it was intact when the log was opened)\nhint: restart the server: start-up moves corrupt records to quarantine/ and keeps every intact one")]
    Corrupt { path: PathBuf, offset: u64 },
    #[error("write-ahead log {path} is in use by another process ({holder})\nhint: each server needs its own --wal directory")]
    Locked { path: PathBuf, holder: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One stored record.
#[derive(Debug, Clone)]
pub struct Record {
    pub seq: u64,
    pub cluster: String,
    pub body: Vec<u8>,
}

impl Record {
    /// Size of the record on disk.
    pub fn frame_len(&self) -> u64 {
        (HEADER + 10 + self.cluster.len() + self.body.len()) as u64
    }
}

struct Append {
    cluster: String,
    body: Vec<u8>,
    done: oneshot::Sender<Result<u64, WalError>>,
}

/// Shared counters, read by metrics and the flusher.
#[derive(Debug, Default)]
pub struct WalStats {
    /// Bytes in segment files on disk.
    pub bytes: AtomicU64,
    pub segments: AtomicU64,
    /// Bytes of records not yet committed to the lake (the back-pressure
    /// measure: the flush stage subtracts what it commits).
    pub pending: AtomicU64,
    /// Highest sequence number committed to the lake (set by [`trim`]).
    pub committed: AtomicU64,
    /// Bytes moved to `quarantine/` as corrupt when the log was opened.
    pub quarantined: AtomicU64,
}

impl WalStats {
    /// The flush stage committed (or found already committed) `n` bytes of
    /// records.
    pub fn settle(&self, n: u64) {
        let _ = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(n))
            });
    }
}

/// Handle to append to the log. Cloneable.
#[derive(Clone)]
pub struct Wal {
    tx: mpsc::Sender<Append>,
    durable: watch::Receiver<u64>,
    stats: Arc<WalStats>,
    max_bytes: u64,
    dir: PathBuf,
}

/// What `open` found on disk.
pub struct Opened {
    pub wal: Wal,
    /// The writer thread; joins when every `Wal` handle is dropped.
    pub writer: std::thread::JoinHandle<()>,
    /// Last durable sequence number at open.
    pub last_seq: u64,
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.wal")
}

/// Segment files in order, with their first sequence number.
pub fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(io_err(dir))?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(n) = name
            .strip_suffix(".wal")
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push((n, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Why a frame could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bad {
    /// The input ends inside the frame (a torn write, at a log's end).
    Short,
    /// The frame is complete but wrong (length out of range, CRC mismatch).
    Corrupt,
}

/// Read one framed record; `Ok(None)` at a clean end.
fn read_record(r: &mut impl Read) -> io::Result<Option<Result<Record, Bad>>> {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        let n = r.read(&mut header[got..])?;
        if n == 0 {
            return Ok(if got == 0 {
                None
            } else {
                Some(Err(Bad::Short))
            });
        }
        got += n;
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if !(10..=MAX_RECORD).contains(&len) {
        return Ok(Some(Err(Bad::Corrupt)));
    }
    let mut payload = Vec::new();
    let n = r.take(len as u64).read_to_end(&mut payload)?;
    if n < len {
        return Ok(Some(Err(Bad::Short)));
    }
    Ok(Some(decode(&payload, crc).ok_or(Bad::Corrupt)))
}

/// A record from its payload, if the CRC and the layout hold.
fn decode(payload: &[u8], crc: u32) -> Option<Record> {
    if crc32fast::hash(payload) != crc || payload.len() < 10 {
        return None;
    }
    let seq = u64::from_le_bytes(payload[0..8].try_into().ok()?);
    let clen = u16::from_le_bytes([payload[8], payload[9]]) as usize;
    if 10 + clen > payload.len() {
        return None;
    }
    let cluster = String::from_utf8_lossy(&payload[10..10 + clen]).into_owned();
    let body = payload[10 + clen..].to_vec();
    Some(Record { seq, cluster, body })
}

/// The offset in `bytes` of the first intact frame at or after `from` whose
/// sequence number is above `after`.
fn next_intact(bytes: &[u8], from: usize, after: u64) -> Option<usize> {
    (from..bytes.len().saturating_sub(HEADER + 10)).find(|&o| {
        let len = u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize;
        let crc = u32::from_le_bytes([bytes[o + 4], bytes[o + 5], bytes[o + 6], bytes[o + 7]]);
        (10..=MAX_RECORD).contains(&len)
            && o + HEADER + len <= bytes.len()
            && decode(&bytes[o + HEADER..o + HEADER + len], crc).is_some_and(|r| r.seq > after)
    })
}

/// Scan one segment; repair it if it holds a bad record. Returns the bytes
/// and last sequence number of its intact records.
fn scan_segment(
    dir: &Path,
    path: &Path,
    is_last: bool,
    mut last_seq: u64,
    stats: &WalStats,
) -> Result<(u64, u64), WalError> {
    loop {
        let f = File::open(path).map_err(io_err(path))?;
        let mut r = BufReader::new(f);
        let mut valid = 0u64;
        let bad = loop {
            match read_record(&mut r).map_err(io_err(path))? {
                None => return Ok((valid, last_seq)),
                Some(Ok(rec)) => {
                    valid += rec.frame_len();
                    last_seq = rec.seq;
                }
                Some(Err(bad)) => break bad,
            }
        };
        drop(r);
        let bytes = fs::read(path).map_err(io_err(path))?;
        let at = valid as usize;
        let resume = next_intact(&bytes, at + 1, last_seq);
        if resume.is_none() && is_last && bad == Bad::Short {
            // A torn write: the crash came before the fsync, so nothing
            // here was acknowledged.
            tracing::warn!(path = %path.display(), offset = at, bytes = bytes.len() - at, "cutting a torn write at the end of the write-ahead log (never acknowledged)");
            cut(path, &bytes[..at])?;
            return Ok((valid, last_seq));
        }
        let end = resume.unwrap_or(bytes.len());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let qdir = dir.join("quarantine");
        fs::create_dir_all(&qdir).map_err(io_err(&qdir))?;
        let qpath = qdir.join(format!("{name}@{at}.bin"));
        write_synced(&qpath, &bytes[at..end])?;
        tracing::error!(
            path = %path.display(),
            offset = at,
            bytes = end - at,
            after_seq = last_seq,
            kept_after = resume.is_some(),
            quarantine = %qpath.display(),
            "corrupt write-ahead log record moved to quarantine; the intact records after it are kept"
        );
        stats
            .quarantined
            .fetch_add((end - at) as u64, Ordering::Relaxed);
        let mut repaired = Vec::with_capacity(bytes.len() - (end - at));
        repaired.extend_from_slice(&bytes[..at]);
        repaired.extend_from_slice(&bytes[end..]);
        cut(path, &repaired)?;
        // Scan the repaired segment again: it may hold more damage.
    }
}

/// Write `bytes` to `path` and fsync it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), WalError> {
    let mut f = File::create(path).map_err(io_err(path))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(io_err(path))
}

/// Replace a segment's contents atomically (temporary, fsync, rename).
fn cut(path: &Path, keep: &[u8]) -> Result<(), WalError> {
    let tmp = path.with_extension("repair");
    write_synced(&tmp, keep)?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Make a directory's entries (created, renamed files) durable.
fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

fn encode(seq: u64, cluster: &str, body: &[u8], out: &mut Vec<u8>) {
    let clen = cluster.len().min(u16::MAX as usize);
    let len = 10 + clen + body.len();
    let start = out.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(clen as u16).to_le_bytes());
    out.extend_from_slice(&cluster.as_bytes()[..clen]);
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out[start + HEADER..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Options of the log.
#[derive(Debug, Clone)]
pub struct WalOptions {
    pub segment_bytes: u64,
    /// Refuse appends (503) while this many bytes are on disk.
    pub max_bytes: u64,
    /// Appends waiting for the writer before new ones are refused.
    pub queue: usize,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 << 20,
            max_bytes: 8 << 30,
            queue: 256,
        }
    }
}

/// Open (or create) the log in `dir`, repair a torn tail, and start the
/// writer thread.
pub fn open(dir: &Path, opts: WalOptions) -> Result<Opened, WalError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let lock = lock_dir(dir)?;
    // A repair interrupted before its rename: the original is intact.
    for e in fs::read_dir(dir).map_err(io_err(dir))?.flatten() {
        if e.file_name().to_string_lossy().ends_with(".repair") {
            fs::remove_file(e.path()).map_err(io_err(&e.path()))?;
        }
    }
    let segs = segments(dir)?;
    let stats = Arc::new(WalStats::default());
    let mut last_seq = 0u64;
    let mut total = 0u64;
    let mut tail: Option<(PathBuf, u64)> = None; // (path, valid len)
    for (i, (_, path)) in segs.iter().enumerate() {
        let (valid, last) = scan_segment(dir, path, i + 1 == segs.len(), last_seq, &stats)?;
        last_seq = last;
        total += valid;
        tail = Some((path.clone(), valid));
    }
    // Segments are sized to the budget, so that trimming frees space in
    // steps the budget can use.
    let mut opts = opts;
    opts.segment_bytes = opts.segment_bytes.min((opts.max_bytes / 8).max(1 << 16));
    stats.bytes.store(total, Ordering::Relaxed);
    stats.pending.store(total, Ordering::Relaxed);
    stats.segments.store(segs.len() as u64, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel::<Append>(opts.queue.max(1));
    let (durable_tx, durable_rx) = watch::channel(last_seq);
    let mut writer = Writer {
        dir: dir.to_path_buf(),
        file: None,
        file_len: 0,
        next_seq: last_seq + 1,
        opts: opts.clone(),
        stats: stats.clone(),
        durable: durable_tx,
        _lock: lock,
    };
    if let Some((path, len)) = tail {
        let f = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        writer.file = Some((path, f));
        writer.file_len = len;
    }
    let handle = std::thread::Builder::new()
        .name("wal-writer".into())
        .spawn(move || writer.run(rx))
        .map_err(io_err(dir))?;
    Ok(Opened {
        wal: Wal {
            tx,
            durable: durable_rx,
            stats,
            max_bytes: opts.max_bytes,
            dir: dir.to_path_buf(),
        },
        writer: handle,
        last_seq,
    })
}

impl Wal {
    /// Append one body; resolves once it is on disk (fsynced). Fails fast
    /// with `Full` or `Busy` instead of queueing without bound.
    pub async fn append(&self, cluster: &str, body: Vec<u8>) -> Result<u64, WalError> {
        let bytes = self.stats.pending.load(Ordering::Relaxed);
        if bytes + body.len() as u64 > self.max_bytes {
            return Err(WalError::Full {
                bytes,
                limit: self.max_bytes,
            });
        }
        let (done, wait) = oneshot::channel();
        let req = Append {
            cluster: cluster.to_string(),
            body,
            done,
        };
        match self.tx.try_send(req) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => return Err(WalError::Busy),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(WalError::Closed),
        }
        wait.await.map_err(|_| WalError::Closed)?
    }

    /// The highest durable sequence number, and a way to wait for more.
    pub fn durable(&self) -> watch::Receiver<u64> {
        self.durable.clone()
    }

    pub fn stats(&self) -> &Arc<WalStats> {
        &self.stats
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Take the log directory's lock, or say who holds it.
fn lock_dir(dir: &Path) -> Result<File, WalError> {
    let path = dir.join("lock");
    match crate::lock::try_lock(&path).map_err(io_err(&path))? {
        Ok(file) => Ok(file),
        Err(holder) => Err(WalError::Locked { path, holder }),
    }
}

/// Delete segments whose records are all `<= committed` (the next segment
/// starts at or below `committed + 1`). The active segment is not deleted
/// here; the writer rolls it once it is wholly committed.
pub fn trim(dir: &Path, committed: u64, stats: &WalStats) -> Result<u64, WalError> {
    stats.committed.fetch_max(committed, Ordering::Relaxed);
    let segs = segments(dir)?;
    let mut removed = 0;
    for w in segs.windows(2) {
        let (_, path) = &w[0];
        let (next_first, _) = w[1];
        if next_first <= committed + 1 {
            let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            match fs::remove_file(path) {
                Ok(()) => {}
                // The flusher and the writer (which lets a committed active
                // segment go) both trim: the other one was first.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(path)(e)),
            }
            removed += len;
            stats.bytes.fetch_sub(
                len.min(stats.bytes.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
            stats.segments.fetch_sub(1, Ordering::Relaxed);
        }
    }
    Ok(removed)
}

/// Sequential reader over records from a position on (used by the flusher
/// and by replay).
///
/// It holds its segment open only while it reads: at the end of the log it
/// closes the file and remembers the offset. A deleted file still open
/// keeps its blocks, and the writer deletes a committed active segment to
/// free a full volume.
pub struct Reader {
    dir: PathBuf,
    /// The segment being read: its first sequence number, path, and the
    /// offset of the next frame.
    at: Option<(u64, PathBuf, u64)>,
    file: Option<BufReader<File>>,
    next: u64,
    /// Bytes of records passed over because they precede `from`.
    pub skipped_bytes: u64,
}

impl Reader {
    /// Read records with `seq >= from`.
    pub fn new(dir: &Path, from: u64) -> Reader {
        Reader {
            dir: dir.to_path_buf(),
            at: None,
            file: None,
            next: from,
            skipped_bytes: 0,
        }
    }

    /// Open the segment to read, at its offset: the remembered one, else
    /// the one after it, else the one holding `next`. `false` if none.
    fn open_current(&mut self) -> Result<bool, WalError> {
        use std::io::{Seek, SeekFrom};
        let segs = segments(&self.dir)?;
        let (first, path, offset) = match self.at.take() {
            Some((first, path, offset)) if segs.iter().any(|(_, p)| *p == path) => {
                (first, path, offset)
            }
            // Deleted since (wholly committed): go on with the next one.
            Some((first, _, _)) => match segment_after(&segs, first) {
                Some(next) => next,
                None => return Ok(false),
            },
            // The segment holding `next`: the last one starting at or
            // before it.
            None => match segs.iter().rev().find(|(f, _)| *f <= self.next) {
                Some((f, p)) => (*f, p.clone(), 0),
                None => return Ok(false),
            },
        };
        let mut f = File::open(&path).map_err(io_err(&path))?;
        f.seek(SeekFrom::Start(offset)).map_err(io_err(&path))?;
        self.file = Some(BufReader::with_capacity(1 << 20, f));
        self.at = Some((first, path, offset));
        Ok(true)
    }

    /// The next record, if it is durable (`seq <= durable`). Sequence
    /// numbers may have gaps where start-up quarantined a corrupt record.
    pub fn next(&mut self, durable: u64) -> Result<Option<Record>, WalError> {
        while self.next <= durable {
            if self.file.is_none() && !self.open_current()? {
                return Ok(None);
            }
            let (Some(r), Some((first, path, offset))) = (self.file.as_mut(), self.at.as_mut())
            else {
                return Ok(None);
            };
            match read_record(r).map_err(io_err(path))? {
                Some(Ok(rec)) if rec.seq < self.next => {
                    *offset += rec.frame_len();
                    self.skipped_bytes += rec.frame_len();
                }
                Some(Ok(rec)) => {
                    *offset += rec.frame_len();
                    self.next = rec.seq + 1;
                    return Ok(Some(rec));
                }
                // Records up to `durable` are complete (only the active
                // segment grows, and only past `durable`), so a bad frame
                // here is damage done since the log was opened.
                Some(Err(_)) => {
                    return Err(WalError::Corrupt {
                        path: path.clone(),
                        offset: *offset,
                    })
                }
                // End of this segment: go on with the next one if the
                // writer has moved on (sequence numbers may skip a gap),
                // else close it until there is more.
                None => {
                    let first = *first;
                    self.file = None;
                    match segment_after(&segments(&self.dir)?, first) {
                        Some(next) => self.at = Some(next),
                        None => return Ok(None),
                    }
                }
            }
        }
        // Caught up: do not hold the file open while waiting.
        self.file = None;
        Ok(None)
    }
}

/// The segment after the one starting at `first`, to be read from its start.
fn segment_after(segs: &[(u64, PathBuf)], first: u64) -> Option<(u64, PathBuf, u64)> {
    segs.iter()
        .find(|(f, _)| *f > first)
        .map(|(f, p)| (*f, p.clone(), 0))
}

struct Writer {
    dir: PathBuf,
    file: Option<(PathBuf, File)>,
    file_len: u64,
    next_seq: u64,
    opts: WalOptions,
    stats: Arc<WalStats>,
    durable: watch::Sender<u64>,
    /// The directory lock, held as long as the writer runs.
    _lock: File,
}

impl Writer {
    fn run(&mut self, mut rx: mpsc::Receiver<Append>) {
        let mut buf = Vec::with_capacity(4 << 20);
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            let mut bytes = batch[0].body.len();
            while bytes < (32 << 20) {
                match rx.try_recv() {
                    Ok(a) => {
                        bytes += a.body.len();
                        batch.push(a);
                    }
                    Err(_) => break,
                }
            }
            let result = self.write_batch(&batch, &mut buf);
            match result {
                Ok(first_seq) => {
                    let _ = self.durable.send(first_seq + batch.len() as u64 - 1);
                    for (i, a) in batch.into_iter().enumerate() {
                        let _ = a.done.send(Ok(first_seq + i as u64));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "write-ahead log append failed; answering 503");
                    let msg = e.to_string();
                    for a in batch {
                        let _ = a.done.send(Err(WalError::Io {
                            path: self.dir.clone(),
                            source: io::Error::other(msg.clone()),
                        }));
                    }
                }
            }
        }
    }

    /// Start a new segment. With `let_go` the previous one, wholly
    /// committed, is then deleted by [`trim`] (the same path the flusher
    /// takes, so the two never both count it).
    fn roll(&mut self, let_go: bool) -> Result<(), WalError> {
        let path = self.dir.join(segment_name(self.next_seq));
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        sync_dir(&self.dir)?;
        self.file = Some((path, f));
        self.file_len = 0;
        self.stats.segments.fetch_add(1, Ordering::Relaxed);
        if let_go {
            let committed = self.stats.committed.load(Ordering::Relaxed);
            trim(&self.dir, committed, &self.stats)?;
        }
        Ok(())
    }

    /// Every record of the active segment is committed to the lake.
    fn active_committed(&self) -> bool {
        self.file_len > 0 && self.stats.committed.load(Ordering::Relaxed) + 1 >= self.next_seq
    }

    /// Write and fsync a batch; on failure the segment is cut back so no
    /// partial record stays behind and sequence numbers are not consumed.
    fn write_batch(&mut self, batch: &[Append], buf: &mut Vec<u8>) -> Result<u64, WalError> {
        let seg = self.opts.segment_bytes;
        let full = self.file.is_none() || self.file_len >= seg;
        // Everything here is in the lake: a fresh segment lets this one go
        // now rather than when it is full.
        let committed = self.active_committed();
        if full || (committed && self.file_len >= seg / 8) {
            self.roll(committed)?;
        }
        buf.clear();
        let first = self.next_seq;
        for (i, a) in batch.iter().enumerate() {
            encode(first + i as u64, &a.cluster, &a.body, buf);
        }
        match self.append(buf) {
            Ok(()) => {}
            // Out of space with everything committed: the active segment
            // is what fills the volume; let it go and try once more.
            Err(e) if self.active_committed() => {
                tracing::warn!(error = %e, "write-ahead log append failed; rolling the committed active segment and retrying");
                self.roll(true)?;
                self.append(buf)?;
            }
            Err(e) => return Err(e),
        }
        self.next_seq += batch.len() as u64;
        Ok(first)
    }

    fn append(&mut self, buf: &[u8]) -> Result<(), WalError> {
        let Some((path, f)) = self.file.as_mut() else {
            return Err(WalError::Closed);
        };
        let res = f.write_all(buf).and_then(|_| f.sync_data());
        if let Err(e) = res {
            let _ = f.set_len(self.file_len);
            return Err(io_err(path)(e));
        }
        self.file_len += buf.len() as u64;
        self.stats
            .bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.stats
            .pending
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn append_read_reopen_and_torn_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = WalOptions {
            segment_bytes: 200,
            ..Default::default()
        };
        let opened = open(dir.path(), opts.clone()).expect("open");
        let mut seqs = Vec::new();
        for i in 0..10 {
            seqs.push(
                opened
                    .wal
                    .append("c1", format!("body-{i}").into_bytes())
                    .await
                    .expect("append"),
            );
        }
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
        assert!(segments(dir.path()).expect("segs").len() > 1);
        let mut r = Reader::new(dir.path(), 4);
        let mut got = Vec::new();
        while let Some(rec) = r.next(10).expect("read") {
            got.push((rec.seq, String::from_utf8(rec.body).expect("utf8")));
        }
        assert_eq!(got.len(), 7);
        assert_eq!(got[0], (4, "body-3".to_string()));
        drop(opened.wal);
        opened.writer.join().expect("join");

        // Tear the tail: append garbage to the last segment.
        let (_, last) = segments(dir.path())
            .expect("segs")
            .pop()
            .expect("a segment");
        let mut f = OpenOptions::new().append(true).open(&last).expect("open");
        f.write_all(&[50, 0, 0, 0, 1, 2]).expect("garbage");
        drop(f);
        let opened = open(dir.path(), opts).expect("reopen");
        assert_eq!(opened.last_seq, 10);
        assert_eq!(
            opened
                .wal
                .append("c1", b"after".to_vec())
                .await
                .expect("append"),
            11
        );
        let stats = opened.wal.stats().clone();
        trim(dir.path(), 8, &stats).expect("trim");
        let first_left = segments(dir.path()).expect("segs")[0].0;
        assert!(first_left <= 9, "trim removed records not yet committed");
        let mut r = Reader::new(dir.path(), 9);
        let mut n = 0;
        while r.next(11).expect("read").is_some() {
            n += 1;
        }
        assert_eq!(n, 3);
    }

    /// Byte ranges of the frames of one segment file.
    fn frames(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
        let mut out = vec![];
        let mut o = 0;
        while o + HEADER <= bytes.len() {
            let len = u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4")) as usize;
            out.push(o..o + HEADER + len);
            o += HEADER + len;
        }
        out
    }

    async fn filled(dir: &Path, opts: &WalOptions, n: usize) {
        let opened = open(dir, opts.clone()).expect("open");
        for i in 0..n {
            opened
                .wal
                .append("c1", format!("body-{i:04}").into_bytes())
                .await
                .expect("append");
        }
        drop(opened.wal);
        opened.writer.join().expect("join");
    }

    fn read_all(dir: &Path, durable: u64) -> Vec<u64> {
        let mut r = Reader::new(dir, 1);
        let mut got = vec![];
        while let Some(rec) = r.next(durable).expect("read") {
            assert_eq!(rec.body, format!("body-{:04}", rec.seq - 1).into_bytes());
            got.push(rec.seq);
        }
        got
    }

    /// A flipped bit costs its own record only: every later record, in its
    /// segment and in later ones, is kept; the bad bytes are quarantined;
    /// a second open finds nothing more to repair. Before, everything
    /// after the damage was cut and later segments deleted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn corruption_costs_only_the_bad_record() {
        // (segment size, record to damage (0-based), how)
        let cases: [(u64, usize, &str); 4] = [
            (64 << 20, 99, "bit flip in the payload"),
            (64 << 20, 99, "bit flip in the length"),
            (1000, 10, "bit flip in the first of several segments"),
            (64 << 20, 199, "bit flip in the last record"),
        ];
        for (segment_bytes, victim, how) in cases {
            let dir = tempfile::tempdir().expect("tempdir");
            let opts = WalOptions {
                segment_bytes,
                max_bytes: 8 << 30,
                ..Default::default()
            };
            filled(dir.path(), &opts, 200).await;
            let segs = segments(dir.path()).expect("segs");
            assert_eq!(segs.len() > 1, segment_bytes < (1 << 20), "{how}");
            // Find the victim's frame across segments.
            let mut seen = 0;
            let mut hit = None;
            for (_, path) in &segs {
                let bytes = fs::read(path).expect("read");
                let fr = frames(&bytes);
                if victim < seen + fr.len() {
                    hit = Some((path.clone(), bytes, fr[victim - seen].clone()));
                    break;
                }
                seen += fr.len();
            }
            let (path, mut bytes, frame) = hit.expect("victim frame");
            let at = if how.contains("length") {
                frame.start + 1
            } else {
                frame.start + HEADER + 12
            };
            bytes[at] ^= 0x10;
            fs::write(&path, &bytes).expect("write");
            for round in 0..2 {
                let opened = open(dir.path(), opts.clone()).expect("reopen");
                assert_eq!(
                    opened.last_seq,
                    if victim == 199 { 199 } else { 200 },
                    "{how}"
                );
                let q = opened.wal.stats().quarantined.load(Ordering::Relaxed);
                if round == 0 {
                    assert!(q > 0, "{how}: nothing quarantined");
                } else {
                    assert_eq!(q, 0, "{how}: the second open repaired again");
                }
                let last = opened.last_seq;
                drop(opened.wal);
                opened.writer.join().expect("join");
                let want: Vec<u64> = (1..=200).filter(|&s| s != victim as u64 + 1).collect();
                assert_eq!(read_all(dir.path(), last), want, "{how}");
            }
            assert_eq!(
                segments(dir.path()).expect("segs").len(),
                segs.len(),
                "{how}"
            );
            let quarantined: Vec<_> = fs::read_dir(dir.path().join("quarantine"))
                .expect("quarantine dir")
                .flatten()
                .collect();
            assert_eq!(quarantined.len(), 1, "{how}");
        }
    }

    /// A torn write (the end of the last segment cut short) is still cut,
    /// without quarantine: it was never acknowledged.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = WalOptions::default();
        filled(dir.path(), &opts, 50).await;
        let (_, last) = segments(dir.path()).expect("segs").pop().expect("seg");
        let len = fs::metadata(&last).expect("meta").len();
        OpenOptions::new()
            .write(true)
            .open(&last)
            .expect("open")
            .set_len(len - 5)
            .expect("cut");
        let opened = open(dir.path(), opts).expect("reopen");
        assert_eq!(opened.last_seq, 49);
        assert_eq!(opened.wal.stats().quarantined.load(Ordering::Relaxed), 0);
        assert!(!dir.path().join("quarantine").exists());
    }

    /// Once everything in the active segment is committed, the next write
    /// starts a new segment and the old one is deleted, so a log on a full
    /// volume frees itself.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_committed_active_segment_is_let_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = WalOptions::default();
        let opened = open(dir.path(), opts).expect("open");
        for i in 0..20 {
            opened
                .wal
                .append("c1", vec![b'x'; 450_000 + i])
                .await
                .expect("append");
        }
        let before = segments(dir.path()).expect("segs");
        assert_eq!(before.len(), 1);
        trim(dir.path(), 20, opened.wal.stats()).expect("trim");
        assert_eq!(
            segments(dir.path()).expect("segs"),
            before,
            "trim never deletes the active one"
        );
        let seq = opened
            .wal
            .append("c1", b"next".to_vec())
            .await
            .expect("append");
        assert_eq!(seq, 21);
        let after = segments(dir.path()).expect("segs");
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].0, 21, "the committed segment is gone");
        assert!(opened.wal.stats().bytes.load(Ordering::Relaxed) < 1000);
        let mut r = Reader::new(dir.path(), 21);
        assert_eq!(r.next(21).expect("read").map(|r| r.seq), Some(21));
    }

    /// Two processes cannot share one log directory.
    #[test]
    fn a_second_open_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = open(dir.path(), WalOptions::default()).expect("open");
        match open(dir.path(), WalOptions::default()) {
            Err(WalError::Locked { .. }) => {}
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a second writer was allowed"),
        }
        drop(first);
    }
}
