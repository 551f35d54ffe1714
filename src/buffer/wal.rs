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
//!
//! A body too large to hold in memory is *spilled*: the receiver streams
//! it into `large/<n>.part` ([`Wal::spool`]), fsyncs it, and appends a
//! record that refers to it ([`Wal::append_spilled`]). The writer renames
//! the file to `large/<seq>.body` before it writes that record, so a spilled
//! body is durable, and named by its sequence number, before the record
//! that makes it visible; the record holds the body's length and CRC. On
//! open, `.part` files and bodies past the last durable record (a crash
//! between rename and record) are deleted: neither was acknowledged. A
//! spilled body is deleted with its record's commit ([`trim`]). The flag is
//! the top bit of the record's cluster length, so records written before
//! spilling existed read as they did (cluster names are far below 32 KiB).

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
    /// The body, or nothing when it is spilled.
    pub body: Vec<u8>,
    /// A spilled body: in [`Record::spilled_path`].
    pub spilled: Option<Spilled>,
}

/// What a record says of its spilled body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spilled {
    pub len: u64,
    pub crc: u32,
}

/// The top bit of a record's cluster length: its body is spilled.
const SPILLED_FLAG: u16 = 0x8000;
/// Bytes of a spilled record's body: the file's length and CRC.
const SPILLED_BODY: usize = 12;

impl Record {
    /// Size of the record in its segment.
    pub fn frame_len(&self) -> u64 {
        let body = match self.spilled {
            Some(_) => SPILLED_BODY,
            None => self.body.len(),
        };
        (HEADER + 10 + self.cluster.len() + body) as u64
    }

    /// Bytes the record holds on disk: its frame and its spilled body (what
    /// the log's back-pressure counts).
    pub fn stored_len(&self) -> u64 {
        self.frame_len() + self.spilled.map_or(0, |s| s.len)
    }

    /// Where the log `dir` keeps this record's spilled body.
    pub fn spilled_path(&self, dir: &Path) -> PathBuf {
        spilled_path(dir, self.seq)
    }

    /// Whether this record's spilled body is there, whole and unchanged:
    /// the problem otherwise, in words for a dead letter.
    pub fn check_spilled(&self, dir: &Path) -> Result<(), String> {
        let Some(spilled) = self.spilled else {
            return Ok(());
        };
        let path = self.spilled_path(dir);
        let mut f = File::open(&path).map_err(|e| format!("cannot be opened: {e}"))?;
        let mut crc = crc32fast::Hasher::new();
        let mut len = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    crc.update(&buf[..n]);
                    len += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("cannot be read: {e}")),
            }
        }
        if len != spilled.len {
            return Err(format!(
                "holds {len} bytes, its record says {}",
                spilled.len
            ));
        }
        if crc.finalize() != spilled.crc {
            return Err("does not match its record's CRC (damaged on disk)".into());
        }
        Ok(())
    }

    /// Move a damaged spilled body to `quarantine/`, where it is kept;
    /// where it went, if it could be moved.
    pub fn quarantine_spilled(&self, dir: &Path) -> Option<PathBuf> {
        let path = self.spilled_path(dir);
        let q = quarantine_dir(dir);
        fs::create_dir_all(&q).ok()?;
        let to = q.join(path.file_name()?);
        fs::rename(&path, &to).ok()?;
        Some(to)
    }
}

fn large_dir(dir: &Path) -> PathBuf {
    dir.join("large")
}

fn quarantine_dir(dir: &Path) -> PathBuf {
    dir.join("quarantine")
}

fn spilled_path(dir: &Path, seq: u64) -> PathBuf {
    large_dir(dir).join(format!("{seq:020}.body"))
}

/// The sequence number a file name of `large/` is a spilled body of.
fn spilled_seq(name: &str) -> Option<u64> {
    name.strip_suffix(".body")?.parse().ok()
}

struct Append {
    cluster: String,
    body: Vec<u8>,
    /// A spooled body to rename into place under the record's sequence
    /// number.
    spill: Option<(PathBuf, Spilled)>,
    done: oneshot::Sender<Result<u64, WalError>>,
}

/// A body being spilled: `large/<n>.part`, deleted unless [`finish`]ed.
///
/// Its writes are blocking: run it off the async runtime.
///
/// [`finish`]: Spool::finish
pub struct Spool {
    path: PathBuf,
    file: Option<io::BufWriter<File>>,
    len: u64,
    crc: crc32fast::Hasher,
    stats: Arc<WalStats>,
}

/// A spooled body, on disk and fsynced, ready for [`Wal::append_spilled`].
pub struct Spooled {
    path: PathBuf,
    spilled: Spilled,
}

impl Spooled {
    pub fn len(&self) -> u64 {
        self.spilled.len
    }

    pub fn is_empty(&self) -> bool {
        self.spilled.len == 0
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        // Not appended (refused, or the log closed): nothing refers to it.
        // After an append the path is gone (renamed) and this is a no-op.
        let _ = fs::remove_file(&self.path);
    }
}

impl Spool {
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), WalError> {
        let Some(f) = self.file.as_mut() else {
            return Err(WalError::Closed);
        };
        f.write_all(bytes).map_err(io_err(&self.path))?;
        self.crc.update(bytes);
        self.len += bytes.len() as u64;
        self.stats
            .spooling
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Flush and fsync the body.
    pub fn finish(mut self) -> Result<Spooled, WalError> {
        let Some(f) = self.file.take() else {
            return Err(WalError::Closed);
        };
        let f = f
            .into_inner()
            .map_err(|e| io_err(&self.path)(e.into_error()))?;
        f.sync_all().map_err(io_err(&self.path))?;
        let spilled = Spilled {
            len: self.len,
            crc: self.crc.clone().finalize(),
        };
        Ok(Spooled {
            path: std::mem::take(&mut self.path),
            spilled,
        })
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // Finished or not, its bytes are no longer being spooled (once
        // appended they count as pending).
        take_from(&self.stats.spooling, self.len);
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
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
    /// Names of bodies being spooled.
    spools: AtomicU64,
    /// Bytes of bodies being spooled, not yet appended: counted against the
    /// limit with `pending`, so bodies that stream for a long time cannot
    /// fill the disk past it between them.
    spooling: AtomicU64,
}

/// Take `n` from a counter, stopping at zero.
fn take_from(counter: &AtomicU64, n: u64) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
        Some(p.saturating_sub(n))
    });
}

impl WalStats {
    /// The flush stage committed (or found already committed) `n` bytes of
    /// records.
    pub fn settle(&self, n: u64) {
        take_from(&self.pending, n);
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
    let raw = u16::from_le_bytes([payload[8], payload[9]]);
    let clen = (raw & !SPILLED_FLAG) as usize;
    if 10 + clen > payload.len() {
        return None;
    }
    let cluster = String::from_utf8_lossy(&payload[10..10 + clen]).into_owned();
    let body = &payload[10 + clen..];
    if raw & SPILLED_FLAG != 0 {
        if body.len() != SPILLED_BODY {
            return None;
        }
        let spilled = Spilled {
            len: u64::from_le_bytes(body[0..8].try_into().ok()?),
            crc: u32::from_le_bytes(body[8..12].try_into().ok()?),
        };
        return Some(Record {
            seq,
            cluster,
            body: Vec::new(),
            spilled: Some(spilled),
        });
    }
    Some(Record {
        seq,
        cluster,
        body: body.to_vec(),
        spilled: None,
    })
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
/// and last sequence number of its intact records, and the bytes of their
/// spilled bodies.
fn scan_segment(
    dir: &Path,
    path: &Path,
    is_last: bool,
    mut last_seq: u64,
    stats: &WalStats,
) -> Result<(u64, u64, u64), WalError> {
    loop {
        let f = File::open(path).map_err(io_err(path))?;
        let mut r = BufReader::new(f);
        let mut valid = 0u64;
        let mut spilled = 0u64;
        let bad = loop {
            match read_record(&mut r).map_err(io_err(path))? {
                None => return Ok((valid, last_seq, spilled)),
                Some(Ok(rec)) => {
                    valid += rec.frame_len();
                    spilled += rec.spilled.map_or(0, |s| s.len);
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
            return Ok((valid, last_seq, spilled));
        }
        let end = resume.unwrap_or(bytes.len());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let qdir = quarantine_dir(dir);
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

/// Delete what no durable record refers to: bodies being spooled when the
/// process stopped, and bodies renamed into place for a record that never
/// became durable. Neither was acknowledged.
fn clean_large(dir: &Path, last_seq: u64) -> Result<(), WalError> {
    let large = large_dir(dir);
    let entries = match fs::read_dir(&large) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(&large)(e)),
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let orphan =
            name.ends_with(".part") || spilled_seq(&name).is_some_and(|seq| seq > last_seq);
        if orphan {
            tracing::info!(path = %e.path().display(), "deleting a spilled body no durable record refers to (never acknowledged)");
            fs::remove_file(e.path()).map_err(io_err(&e.path()))?;
        }
    }
    Ok(())
}

/// Make a directory's entries (created, renamed files) durable.
fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

fn encode(seq: u64, cluster: &str, body: &[u8], spilled: Option<Spilled>, out: &mut Vec<u8>) {
    let clen = cluster.len().min((SPILLED_FLAG - 1) as usize);
    let mut reference = [0u8; SPILLED_BODY];
    let (flag, body) = match spilled {
        Some(s) => {
            reference[..8].copy_from_slice(&s.len.to_le_bytes());
            reference[8..].copy_from_slice(&s.crc.to_le_bytes());
            (SPILLED_FLAG, &reference[..])
        }
        None => (0, body),
    };
    let len = 10 + clen + body.len();
    let start = out.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(clen as u16 | flag).to_le_bytes());
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
        let (valid, last, spilled) =
            scan_segment(dir, path, i + 1 == segs.len(), last_seq, &stats)?;
        last_seq = last;
        total += valid + spilled;
        tail = Some((path.clone(), valid));
    }
    clean_large(dir, last_seq)?;
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
        self.fits(
            self.stats.pending.load(Ordering::Relaxed),
            body.len() as u64,
        )?;
        self.send(cluster, body, None).await
    }

    /// Whether `bytes` more would fit under the log's limit now, beside the
    /// bodies being spooled.
    pub fn room_for(&self, bytes: u64) -> Result<(), WalError> {
        let pending = self.stats.pending.load(Ordering::Relaxed)
            + self.stats.spooling.load(Ordering::Relaxed);
        self.fits(pending, bytes)
    }

    /// `Full` unless `bytes` more fit beside `pending` under the limit.
    fn fits(&self, pending: u64, bytes: u64) -> Result<(), WalError> {
        if pending + bytes > self.max_bytes {
            return Err(WalError::Full {
                bytes: pending,
                limit: self.max_bytes,
            });
        }
        Ok(())
    }

    /// Start spilling a body too large for memory (blocking I/O: call off
    /// the async runtime, as [`Spool::write`]).
    pub fn spool(&self) -> Result<Spool, WalError> {
        let large = large_dir(&self.dir);
        fs::create_dir_all(&large).map_err(io_err(&large))?;
        let n = self.stats.spools.fetch_add(1, Ordering::Relaxed);
        let path = large.join(format!("{n}.part"));
        let file = File::create(&path).map_err(io_err(&path))?;
        Ok(Spool {
            path,
            file: Some(io::BufWriter::with_capacity(1 << 20, file)),
            len: 0,
            crc: crc32fast::Hasher::new(),
            stats: self.stats.clone(),
        })
    }

    /// Append a record for a spooled body; resolves once both are durable.
    pub async fn append_spilled(&self, cluster: &str, body: Spooled) -> Result<u64, WalError> {
        self.fits(self.stats.pending.load(Ordering::Relaxed), body.spilled.len)?;
        let spill = (body.path.clone(), body.spilled);
        // The file is the writer's to rename from here; `body` deletes it
        // only if it is still there when this ends (the append failed).
        let result = self.send(cluster, Vec::new(), Some(spill)).await;
        drop(body);
        result
    }

    async fn send(
        &self,
        cluster: &str,
        body: Vec<u8>,
        spill: Option<(PathBuf, Spilled)>,
    ) -> Result<u64, WalError> {
        let (done, wait) = oneshot::channel();
        let req = Append {
            cluster: cluster.to_string(),
            body,
            spill,
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
    let large = large_dir(dir);
    if let Ok(entries) = fs::read_dir(&large) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if spilled_seq(&name).is_none_or(|seq| seq > committed) {
                continue;
            }
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            match fs::remove_file(e.path()) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(io_err(&e.path())(err)),
            }
            removed += len;
            take_from(&stats.bytes, len);
        }
    }
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
            take_from(&stats.bytes, len);
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
        // Spilled bodies go into place under their sequence numbers before
        // the records that make them visible.
        let renamed = self.place_spilled(batch, first)?;
        for (i, a) in batch.iter().enumerate() {
            encode(
                first + i as u64,
                &a.cluster,
                &a.body,
                a.spill.as_ref().map(|s| s.1),
                buf,
            );
        }
        let result = match self.append(buf) {
            Ok(()) => Ok(()),
            // Out of space with everything committed: the active segment
            // is what fills the volume; let it go and try once more.
            Err(e) if self.active_committed() => {
                tracing::warn!(error = %e, "write-ahead log append failed; rolling the committed active segment and retrying");
                self.roll(true).and_then(|()| self.append(buf))
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            // The sequence numbers are used again: no body may stay under
            // them.
            for path in renamed {
                let _ = fs::remove_file(path);
            }
            return Err(e);
        }
        let spilled: u64 = batch
            .iter()
            .filter_map(|a| a.spill.as_ref().map(|s| s.1.len))
            .sum();
        self.stats.bytes.fetch_add(spilled, Ordering::Relaxed);
        self.stats.pending.fetch_add(spilled, Ordering::Relaxed);
        self.next_seq += batch.len() as u64;
        Ok(first)
    }

    /// Rename the batch's spooled bodies to `large/<seq>.body` and make the
    /// names durable. Returns the new paths.
    fn place_spilled(&self, batch: &[Append], first: u64) -> Result<Vec<PathBuf>, WalError> {
        let mut renamed = Vec::new();
        let mut placed = || -> Result<(), WalError> {
            for (i, a) in batch.iter().enumerate() {
                let Some((part, _)) = &a.spill else { continue };
                let to = spilled_path(&self.dir, first + i as u64);
                fs::rename(part, &to).map_err(io_err(part))?;
                renamed.push(to);
            }
            if renamed.is_empty() {
                return Ok(());
            }
            sync_dir(&large_dir(&self.dir))
        };
        match placed() {
            Ok(()) => Ok(renamed),
            Err(e) => {
                for path in &renamed {
                    let _ = fs::remove_file(path);
                }
                Err(e)
            }
        }
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

    /// Spool a body on a blocking thread, as the receiver does.
    async fn spooled(wal: &Wal, body: &[u8]) -> Spooled {
        let (wal, body) = (wal.clone(), body.to_vec());
        tokio::task::spawn_blocking(move || {
            let mut s = wal.spool().expect("spool");
            for part in body.chunks(7) {
                s.write(part).expect("write");
            }
            s.finish().expect("finish")
        })
        .await
        .expect("spool task")
    }

    fn large_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir.join("large"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spilled_bodies_are_durable_with_their_record_and_go_with_its_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opened = open(dir.path(), WalOptions::default()).expect("open");
        let wal = opened.wal.clone();
        assert_eq!(
            wal.append("c1", b"small".to_vec()).await.expect("append"),
            1
        );
        let big = b"a spilled body, read back byte for byte".repeat(100);
        let s = spooled(&wal, &big).await;
        assert_eq!(s.len(), big.len() as u64);
        assert_eq!(wal.append_spilled("c2", s).await.expect("append"), 2);
        assert_eq!(
            wal.append("c1", b"after".to_vec()).await.expect("append"),
            3
        );
        assert_eq!(large_files(dir.path()), vec![format!("{:020}.body", 2)]);
        // Back-pressure counts the spilled bytes.
        let pending = wal.stats().pending.load(Ordering::Relaxed);
        assert!(pending > big.len() as u64, "{pending}");

        // A body spooled but never appended, and one renamed for a record that never became
        // durable (a crash between the two), are not kept past a restart.
        let orphan = spooled(&wal, b"never acknowledged").await;
        std::mem::forget(orphan);
        fs::write(spilled_path(dir.path(), 9), b"no record").expect("orphan body");
        drop((wal, opened.wal));
        opened.writer.join().expect("join");
        let opened = open(dir.path(), WalOptions::default()).expect("reopen");
        assert_eq!(opened.last_seq, 3);
        assert_eq!(large_files(dir.path()), vec![format!("{:020}.body", 2)]);
        let mut r = Reader::new(dir.path(), 1);
        let mut got = Vec::new();
        while let Some(rec) = r.next(3).expect("read") {
            got.push(rec);
        }
        assert_eq!(got.len(), 3);
        assert_eq!((got[1].cluster.as_str(), got[1].body.len()), ("c2", 0));
        let spilled = got[1].spilled.expect("spilled");
        assert_eq!(spilled.len, big.len() as u64);
        assert_eq!(spilled.crc, crc32fast::hash(&big));
        assert_eq!(
            fs::read(got[1].spilled_path(dir.path())).expect("body"),
            big
        );
        assert_eq!(got[2].body, b"after");
        assert_eq!(
            opened.wal.stats().pending.load(Ordering::Relaxed),
            got.iter().map(Record::stored_len).sum::<u64>(),
            "reopen counts the spilled bytes as pending"
        );

        // Committing the record lets its body go.
        trim(dir.path(), 1, opened.wal.stats()).expect("trim");
        assert_eq!(large_files(dir.path()).len(), 1);
        let before = opened.wal.stats().bytes.load(Ordering::Relaxed);
        trim(dir.path(), 2, opened.wal.stats()).expect("trim");
        assert!(large_files(dir.path()).is_empty());
        assert_eq!(
            before - opened.wal.stats().bytes.load(Ordering::Relaxed),
            big.len() as u64
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_spilled_body_the_log_cannot_take_is_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = WalOptions {
            max_bytes: 4096,
            ..Default::default()
        };
        let opened = open(dir.path(), opts).expect("open");
        let s = spooled(&opened.wal, &[b'x'; 5000]).await;
        match opened.wal.append_spilled("c", s).await {
            Err(WalError::Full { .. }) => {}
            other => panic!("expected Full, got {other:?}"),
        }
        assert!(large_files(dir.path()).is_empty());
        // Dropped unfinished (the body failed): nothing is left either.
        let (wal, _) = (opened.wal.clone(), ());
        tokio::task::spawn_blocking(move || {
            let mut s = wal.spool().expect("spool");
            s.write(b"half a body").expect("write");
        })
        .await
        .expect("task");
        assert!(large_files(dir.path()).is_empty());
    }
}
