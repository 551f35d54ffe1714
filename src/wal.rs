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
//! On open the log is scanned; a torn or corrupt tail (a crash mid-write) is
//! cut off, which only ever drops records that were never acknowledged.

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

/// Read one framed record; `Ok(None)` at a clean end, `Err` data on a torn
/// or corrupt record.
fn read_record(r: &mut impl Read) -> io::Result<Option<Result<Record, ()>>> {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        let n = r.read(&mut header[got..])?;
        if n == 0 {
            return Ok(if got == 0 { None } else { Some(Err(())) });
        }
        got += n;
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if !(10..=MAX_RECORD).contains(&len) {
        return Ok(Some(Err(())));
    }
    let mut payload = vec![0u8; len];
    if let Err(e) = r.read_exact(&mut payload) {
        return if e.kind() == io::ErrorKind::UnexpectedEof {
            Ok(Some(Err(())))
        } else {
            Err(e)
        };
    }
    if crc32fast::hash(&payload) != crc {
        return Ok(Some(Err(())));
    }
    let seq = u64::from_le_bytes(payload[0..8].try_into().unwrap_or_default());
    let clen = u16::from_le_bytes([payload[8], payload[9]]) as usize;
    if 10 + clen > payload.len() {
        return Ok(Some(Err(())));
    }
    let cluster = String::from_utf8_lossy(&payload[10..10 + clen]).into_owned();
    let body = payload[10 + clen..].to_vec();
    Ok(Some(Ok(Record { seq, cluster, body })))
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
    let segs = segments(dir)?;
    let mut last_seq = 0u64;
    let mut total = 0u64;
    let mut tail: Option<(PathBuf, u64)> = None; // (path, valid len)
    for (i, (_, path)) in segs.iter().enumerate() {
        let f = File::open(path).map_err(io_err(path))?;
        let mut r = BufReader::new(f);
        let mut valid = 0u64;
        loop {
            match read_record(&mut r).map_err(io_err(path))? {
                None => break,
                Some(Ok(rec)) => {
                    valid += rec.frame_len();
                    last_seq = rec.seq;
                }
                Some(Err(())) => {
                    tracing::warn!(path = %path.display(), valid, "cutting torn write-ahead log tail (unacknowledged data)");
                    let f = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(io_err(path))?;
                    f.set_len(valid).map_err(io_err(path))?;
                    f.sync_all().map_err(io_err(path))?;
                    // Anything after a corrupt record cannot be trusted.
                    for (_, later) in &segs[i + 1..] {
                        fs::remove_file(later).map_err(io_err(later))?;
                    }
                    break;
                }
            }
        }
        total += valid;
        tail = Some((path.clone(), valid));
    }
    let stats = Arc::new(WalStats::default());
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

/// Delete segments whose records are all `<= committed` (the next segment
/// starts at or below `committed + 1`). The active segment is never deleted.
pub fn trim(dir: &Path, committed: u64, stats: &WalStats) -> Result<u64, WalError> {
    let segs = segments(dir)?;
    let mut removed = 0;
    for w in segs.windows(2) {
        let (_, path) = &w[0];
        let (next_first, _) = w[1];
        if next_first <= committed + 1 {
            let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(path).map_err(io_err(path))?;
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
pub struct Reader {
    dir: PathBuf,
    current: Option<BufReader<File>>,
    next: u64,
    /// Bytes of records passed over because they precede `from`.
    pub skipped_bytes: u64,
}

impl Reader {
    /// Read records with `seq >= from`.
    pub fn new(dir: &Path, from: u64) -> Reader {
        Reader {
            dir: dir.to_path_buf(),
            current: None,
            next: from,
            skipped_bytes: 0,
        }
    }

    /// The next record, if it is durable (`seq <= durable`).
    pub fn next(&mut self, durable: u64) -> Result<Option<Record>, WalError> {
        while self.next <= durable {
            if self.current.is_none() {
                let segs = segments(&self.dir)?;
                // The segment holding `next`: the last one starting at or
                // before it.
                let Some((_, path)) = segs.iter().rev().find(|(f, _)| *f <= self.next).cloned()
                else {
                    return Ok(None);
                };
                let f = File::open(&path).map_err(io_err(&path))?;
                self.current = Some(BufReader::with_capacity(1 << 20, f));
            }
            let Some(r) = self.current.as_mut() else {
                return Ok(None);
            };
            match read_record(r).map_err(io_err(&self.dir))? {
                Some(Ok(rec)) if rec.seq < self.next => {
                    self.skipped_bytes += rec.frame_len();
                    continue;
                }
                Some(Ok(rec)) => {
                    self.next = rec.seq + 1;
                    return Ok(Some(rec));
                }
                // End of this segment: move to the next one if it starts
                // here. Records up to `durable` are complete (only the
                // active segment grows, and only past `durable`), so a short
                // read here means corruption; it is not skipped over.
                None | Some(Err(())) => {
                    let segs = segments(&self.dir)?;
                    if segs.iter().any(|(f, _)| *f == self.next) {
                        self.current = None;
                        continue;
                    }
                    return Ok(None);
                }
            }
        }
        Ok(None)
    }
}

struct Writer {
    dir: PathBuf,
    file: Option<(PathBuf, File)>,
    file_len: u64,
    next_seq: u64,
    opts: WalOptions,
    stats: Arc<WalStats>,
    durable: watch::Sender<u64>,
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

    fn roll(&mut self) -> Result<(), WalError> {
        let path = self.dir.join(segment_name(self.next_seq));
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))?;
        self.file = Some((path, f));
        self.file_len = 0;
        self.stats.segments.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Write and fsync a batch; on failure the segment is cut back so no
    /// partial record stays behind and sequence numbers are not consumed.
    fn write_batch(&mut self, batch: &[Append], buf: &mut Vec<u8>) -> Result<u64, WalError> {
        if self.file.is_none() || self.file_len >= self.opts.segment_bytes {
            self.roll()?;
        }
        buf.clear();
        let first = self.next_seq;
        for (i, a) in batch.iter().enumerate() {
            encode(first + i as u64, &a.cluster, &a.body, buf);
        }
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
        self.next_seq += batch.len() as u64;
        Ok(first)
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
}
