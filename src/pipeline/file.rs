//! The file-ingest pipeline: file source → decode + resolve → lake.
//!
//! Threads and bounded channels, so memory stays flat whatever the input
//! size and both cores work:
//!
//! ```text
//! reader ──chunks──▶ worker × N ──batches──▶ writer (this thread)
//!        (bounded)   decode, resolve,        reorder by chunk, write
//!                    build Arrow             segments, commit
//! ```
//!
//! The writer restores input order (chunks carry a sequence number), so
//! segment boundaries, and therefore file names, depend on the input only.
//!
//! A worker does not build rows one event at a time: its [`Assembler`]
//! decodes a run of events, resolves them, and appends the run column by
//! column. Every source (the webhook and Kafka too) assembles rows this way.

use super::assemble::{Assembler, Labels};
use super::commit::{Committed, Committer, Policy};
use super::recv_shared;
use super::reorder::Reorder;
use crate::decode::envelope::InputFormat;
use crate::profiles::Profiles;
use crate::sinks::lake::batch::{PartKey, RowContext};
use crate::sinks::lake::{Lake, LakeError, RejectRecord, Resume, SourceState};
use crate::sources::file::{Chunk, FileError, FileReader, UnitFlaw};
use arrow::record_batch::RecordBatch;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("{path}: building Arrow batch: {source}")]
    Arrow {
        path: PathBuf,
        source: arrow::error::ArrowError,
    },
    #[error("{path}: a pipeline thread stopped unexpectedly\nhint: this is a bug (please report it with the log); what was committed stays in the lake, and a re-run resumes after it")]
    Pipeline { path: PathBuf },
}

/// Settings shared by every file of one ingest run.
#[derive(Clone)]
pub struct IngestOptions {
    pub cluster: String,
    /// Take the cluster an envelope names over `cluster` (no `--cluster`).
    pub envelope_cluster: bool,
    /// Which envelopes are opened.
    pub format: InputFormat,
    pub profiles: Arc<Profiles>,
    /// Decode/resolve threads.
    pub workers: usize,
    /// Show a progress bar (only drawn on a terminal).
    pub progress: bool,
    /// `ingested_at` of every row of this run.
    pub ingested_at_us: i64,
}

/// What ingesting one file did.
#[derive(Debug, Clone, Default)]
pub struct FileSummary {
    pub path: PathBuf,
    pub source: String,
    pub events: u64,
    pub rows: u64,
    pub rejected: u64,
    /// Envelope messages that held no audit event (CloudWatch
    /// `CONTROL_MESSAGE`, other log categories or services).
    pub skipped: u64,
    /// Requests with a proxy's claim from an identity no profile trusts.
    pub untrusted: super::assemble::Untrusted,
    pub files: usize,
    pub raw_bytes: u64,
    pub parquet_bytes: u64,
    /// Positions skipped because an earlier run committed them.
    pub resumed_after: u64,
    /// An unterminated last line left for the next run (still being
    /// written), by position.
    pub unterminated: Option<u64>,
    /// How a followed file's read ended.
    pub follow_end: Option<crate::sources::file::FollowEnd>,
    pub elapsed: Duration,
}

/// A worker's output for one chunk.
struct Processed {
    seq: u64,
    last_pos: u64,
    parts: Vec<(PartKey, RecordBatch)>,
    rejects: Vec<RejectRecord>,
    events: u64,
    skipped: u64,
    untrusted: super::assemble::Untrusted,
}

/// Stable identity of an input: the cluster and its first line, so a
/// rotated/renamed/compressed copy of the same log is the same source.
pub fn source_id(cluster: &str, first_line: &[u8]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(cluster.as_bytes());
    h.update(&[0]);
    h.update(first_line);
    format!("f{:016x}", h.digest())
}

/// Ingest one file (or `-`) into the lake, resuming after what earlier
/// runs committed.
pub fn ingest_file(
    lake: &Lake,
    path: &Path,
    opts: &IngestOptions,
) -> Result<FileSummary, IngestError> {
    ingest_reader(lake, FileReader::open(path)?, opts, &Live::default())
}

/// How a long-running read commits and reports (`ingest --follow`); the
/// default is a one-off run's: commit when a segment is full and at the end.
#[derive(Clone)]
pub struct Live {
    pub policy: Policy,
    pub metrics: Option<Arc<crate::ops::metrics::Metrics>>,
    /// The path followed, whose unread bytes are reported in `metrics`.
    pub watch: Option<PathBuf>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            policy: Policy::WHEN_FULL,
            metrics: None,
            watch: None,
        }
    }
}

/// Ingest what `reader` reads into the lake, resuming after what earlier
/// runs committed of its source.
pub fn ingest_reader(
    lake: &Lake,
    mut reader: FileReader,
    opts: &IngestOptions,
    live: &Live,
) -> Result<FileSummary, IngestError> {
    let started = Instant::now();
    let path = reader.path().to_path_buf();
    let path = path.as_path();
    let display = path.display().to_string();
    let Some(first) = reader.first_line() else {
        return Ok(FileSummary {
            path: path.to_path_buf(),
            elapsed: started.elapsed(),
            ..Default::default()
        });
    };
    let source = source_id(&opts.cluster, first);
    // Held until this file is done: a second writer of the same source
    // would delete this one's temporaries in `recover`.
    let _lock = lake.lock(&source, &display)?;
    let state = lake.recover(
        &source,
        &format!("file {display} cluster {}", opts.cluster),
        crate::sinks::lake::Resume::Last,
    )?;
    reader.skip_through(state.committed_through);
    let mut summary = FileSummary {
        path: path.to_path_buf(),
        source: source.clone(),
        resumed_after: state.committed_through,
        ..Default::default()
    };
    let raw_count = reader.raw_bytes.clone();
    let bar = progress_bar(opts.progress, reader.raw_len, &display);

    let workers = opts.workers.max(1);
    let (chunk_tx, chunk_rx) = sync_channel::<Chunk>(workers * 2);
    let (out_tx, out_rx) = sync_channel::<Result<Processed, IngestError>>(workers * 2);
    let chunk_rx = Arc::new(Mutex::new(chunk_rx));
    let reading = &mut reader;

    let result = std::thread::scope(|scope| -> Result<(), IngestError> {
        // Only the workers may hold the chunk receiver: when they stop
        // after a writer error, the reader's blocked send fails and it
        // stops too. (A copy kept here once left the reader blocked
        // forever and `ingest` hung on any writer error.)
        let chunk_rx = chunk_rx;
        let reader_out = out_tx.clone();
        scope.spawn(move || {
            loop {
                match reading.next_chunk() {
                    Ok(Some(chunk)) => {
                        if chunk_tx.send(chunk).is_err() {
                            return; // writer gave up
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = reader_out.send(Err(e.into()));
                        return;
                    }
                }
            }
        });
        for _ in 0..workers {
            let rx = chunk_rx.clone();
            let tx = out_tx.clone();
            let ctx = WorkerCtx {
                profiles: opts.profiles.clone(),
                cluster: opts.cluster.clone(),
                envelope_cluster: opts.envelope_cluster,
                format: opts.format,
                ingested_at_us: opts.ingested_at_us,
                path: display.clone(),
            };
            scope.spawn(move || worker(rx, tx, ctx));
        }
        drop(chunk_rx);
        drop(out_tx);
        let r = write_loop(
            lake,
            &out_rx,
            &source,
            state,
            live,
            &mut summary,
            &bar,
            &raw_count,
        );
        // Unblock the producers if the writer failed early.
        drop(out_rx);
        r
    });
    bar.finish_and_clear();
    result.map_err(|e| match e {
        IngestError::Pipeline { .. } => IngestError::Pipeline {
            path: path.to_path_buf(),
        },
        other => other,
    })?;
    summary.raw_bytes = raw_count.load(Ordering::Relaxed);
    summary.unterminated = reader.unterminated();
    summary.follow_end = reader.follow_end();
    summary.elapsed = started.elapsed();
    Ok(summary)
}

fn progress_bar(enabled: bool, len: Option<u64>, name: &str) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
    // At most 80 columns whatever the path (the name is cut to fit), in the summary's units
    // (MB, events, rejected).
    let style = ProgressStyle::with_template(&format!(
        "{{prefix}} {{bar:{BAR_COLUMNS}}} {{decimal_bytes:>9}}/{{decimal_total_bytes:<9}} {{msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(short_name(name, NAME_COLUMNS));
    bar.set_message(progress_counts(0, 0));
    bar
}

/// Columns of the bar's parts: name, bar, bytes (`999.99 MB/999.99 MB`), counts; with the three
/// spaces between them, 77.
const NAME_COLUMNS: usize = 16;
const BAR_COLUMNS: usize = 12;
const BYTES_COLUMNS: usize = 19;
const COUNT_COLUMNS: usize = 27;
const _: () = assert!(NAME_COLUMNS + BAR_COLUMNS + BYTES_COLUMNS + COUNT_COLUMNS + 3 <= 80);

/// `name` in at most `max` characters: its end, which names the file, after `…`.
fn short_name(name: &str, max: usize) -> String {
    let n = name.chars().count();
    if n <= max {
        return format!("{name:<max$}");
    }
    let tail: String = name.chars().skip(n - (max - 1)).collect();
    format!("…{tail}")
}

/// The progress bar's counts, in a fixed width.
fn progress_counts(events: u64, rejected: u64) -> String {
    let short = |n: u64| match n {
        n if n >= 10_000_000 => format!("{}M", n / 1_000_000),
        n if n >= 10_000 => format!("{}k", n / 1_000),
        n => n.to_string(),
    };
    format!(
        "{:>5} events {:>5} rejected",
        short(events),
        short(rejected)
    )
}

#[allow(clippy::too_many_arguments)]
fn write_loop(
    lake: &Lake,
    rx: &Receiver<Result<Processed, IngestError>>,
    source: &str,
    state: SourceState,
    live: &Live,
    summary: &mut FileSummary,
    bar: &indicatif::ProgressBar,
    raw_count: &Arc<std::sync::atomic::AtomicU64>,
) -> Result<(), IngestError> {
    let mut order = Reorder::default();
    let mut next_pos = state.committed_through + 1;
    let mut c = Committer::new(lake, source, state, Resume::Last, live.policy);
    let mut seen_rejects = 0u64;
    // A followed file's unread bytes: its gauge, and a second handle on it for its size (the
    // file's, not the path's: a rotated file is read on after its path names the next one).
    let unread = match (&live.metrics, &live.watch) {
        (Some(m), Some(watch)) => Some((
            m.follow_unread_bytes
                .with_label_values(&[&watch.display().to_string()]),
            std::fs::File::open(&summary.path).ok(),
        )),
        _ => None,
    };
    loop {
        // A followed file can go quiet with a segment open: it is committed
        // when due by age, whether or not more arrives.
        let wait = c
            .age_left()
            .unwrap_or(Duration::MAX)
            .clamp(Duration::from_millis(5), Duration::from_secs(1));
        let got = rx.recv_timeout(wait);
        if let Some((gauge, file)) = &unread {
            let read = raw_count.load(Ordering::Relaxed);
            let written = file
                .as_ref()
                .map_or(read, |f| f.metadata().map_or(read, |m| m.len()));
            gauge.set(written.saturating_sub(read) as i64);
        }
        let p = match got {
            Ok(msg) => msg?,
            Err(RecvTimeoutError::Timeout) => {
                if c.due() {
                    add(summary, live, c.commit()?);
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        order.push(p.seq, p);
        while let Some(p) = order.pop() {
            if let Some(m) = &live.metrics {
                m.events_received.inc_by(p.events);
            }
            summary.events += p.events;
            summary.skipped += p.skipped;
            for (k, n) in p.untrusted {
                *summary.untrusted.entry(k).or_default() += n;
            }
            seen_rejects += p.rejects.len() as u64;
            let last = p.last_pos.max(next_pos.saturating_sub(1));
            let seg = c.segment(next_pos, last);
            for (part, batch) in &p.parts {
                seg.write(*part, batch)?;
            }
            for r in &p.rejects {
                seg.reject(r)?;
            }
            next_pos = last + 1;
            if c.due() {
                add(summary, live, c.commit()?);
            }
            bar.set_position(raw_count.load(Ordering::Relaxed));
            bar.set_message(progress_counts(summary.events, seen_rejects));
        }
    }
    if order.held() > 0 {
        return Err(IngestError::Pipeline {
            path: PathBuf::new(),
        });
    }
    add(summary, live, c.commit()?);
    Ok(())
}

fn add(summary: &mut FileSummary, live: &Live, done: Option<Committed>) {
    if let Some(done) = done {
        if let Some(m) = &live.metrics {
            m.rows_committed.inc_by(done.info.rows);
            m.files_committed.inc_by(done.info.files as u64);
            m.dead_letters.inc_by(done.info.rejected);
            m.flush_latency.observe(done.took.as_secs_f64());
        }
        summary.rows += done.info.rows;
        summary.rejected += done.info.rejected;
        summary.files += done.info.files;
        summary.parquet_bytes += done.info.bytes;
    }
}

struct WorkerCtx {
    profiles: Arc<Profiles>,
    cluster: String,
    envelope_cluster: bool,
    format: InputFormat,
    ingested_at_us: i64,
    path: String,
}

fn worker(
    rx: Arc<Mutex<Receiver<Chunk>>>,
    tx: std::sync::mpsc::SyncSender<Result<Processed, IngestError>>,
    ctx: WorkerCtx,
) {
    let mut asm = Assembler::default();
    let prefix = format!("file:{}:", ctx.path);
    loop {
        let Some(chunk) = recv_shared(&rx) else {
            return;
        };
        let out = process_chunk(&chunk, &ctx, &prefix, &mut asm);
        if tx.send(out).is_err() {
            return;
        }
    }
}

fn process_chunk(
    chunk: &Chunk,
    ctx: &WorkerCtx,
    prefix: &str,
    asm: &mut Assembler,
) -> Result<Processed, IngestError> {
    let row_ctx = RowContext {
        cluster: &ctx.cluster,
        ingested_at_us: ctx.ingested_at_us,
        envelope_cluster: ctx.envelope_cluster,
    };
    let mut rejects = Vec::new();
    let mut flawed = Vec::new();
    let units = (0..chunk.units.len()).filter_map(|i| {
        let (pos, text, flaw) = chunk.unit(i);
        let record = match flaw {
            UnitFlaw::None => return Some((pos, text)),
            UnitFlaw::InvalidUtf8 => RejectRecord::of(
                &ctx.path,
                pos,
                "line is not valid UTF-8 (the original bytes are in `base64`)".into(),
                chunk.original(i).unwrap_or(text.as_bytes()),
            ),
            UnitFlaw::TooLong { length } => {
                let mut r = RejectRecord::of(
                    &ctx.path,
                    pos,
                    format!(
                        "line of {length} bytes is over the {} MiB line limit (first 64 KiB kept)",
                        crate::sources::file::MAX_LINE_BYTES >> 20
                    ),
                    text.as_bytes(),
                );
                r.truncated = true;
                r.length = Some(length);
                r
            }
        };
        flawed.push(record);
        None
    });
    let labels = Labels {
        prefix,
        origin: &ctx.path,
        row: row_ctx,
        profiles: &ctx.profiles,
        format: ctx.format,
    };
    let events = asm.add_units(units, &labels, &mut rejects);
    if !flawed.is_empty() {
        // Back into line order (the sort is stable: items of one line keep
        // theirs).
        rejects.append(&mut flawed);
        rejects.sort_by_key(|r| r.position);
    }
    let parts = asm.finish().map_err(|source| IngestError::Arrow {
        path: PathBuf::from(&ctx.path),
        source,
    })?;
    Ok(Processed {
        seq: chunk.seq,
        last_pos: chunk.last_pos,
        parts,
        rejects,
        events,
        skipped: asm.take_skipped(),
        untrusted: asm.take_untrusted(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bar's parts have fixed widths, so the whole line stays within 80 columns.
    #[test]
    fn the_progress_line_fits_80_columns() {
        for (name, want) in [
            ("a.log", "a.log           "),
            (
                "/var/log/kubernetes/audit/kube-apiserver-audit-2026-11-20T08-00-00.log.gz",
                "…-00-00.log.gz",
            ),
        ] {
            let got = short_name(name, NAME_COLUMNS);
            assert_eq!(got.chars().count(), NAME_COLUMNS, "{got:?}");
            assert!(got.ends_with(want.trim_start_matches('…')), "{got:?}");
        }
        for (events, rejected, want) in [
            (0, 0, "    0 events     0 rejected"),
            (9_999, 12, " 9999 events    12 rejected"),
            (123_456, 10_000, " 123k events   10k rejected"),
            (98_765_432, 3, "  98M events     3 rejected"),
        ] {
            let got = progress_counts(events, rejected);
            assert_eq!(got, want);
            assert_eq!(got.chars().count(), COUNT_COLUMNS);
        }
    }
}
