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

use crate::decode::decode_unit;
use crate::lake::batch::{BatchBuilder, PartKey, RowContext};
use crate::lake::{Lake, LakeError, RejectRecord, Segment, SourceState};
use crate::profiles::Profiles;
use crate::resolve::resolve;
use crate::source::file::{Chunk, FileError, FileReader, UnitFlaw};
use arrow::record_batch::RecordBatch;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver};
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
    #[error("{path}: a pipeline thread stopped unexpectedly")]
    Pipeline { path: PathBuf },
}

/// Settings shared by every file of one ingest run.
#[derive(Clone)]
pub struct IngestOptions {
    pub cluster: String,
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
    pub files: usize,
    pub raw_bytes: u64,
    pub parquet_bytes: u64,
    /// Positions skipped because an earlier run committed them.
    pub resumed_after: u64,
    pub elapsed: Duration,
}

/// A worker's output for one chunk.
struct Processed {
    seq: u64,
    last_pos: u64,
    parts: Vec<(PartKey, RecordBatch)>,
    rejects: Vec<RejectRecord>,
    events: u64,
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

/// Segment file stem from a source and position range.
pub fn stem(source: &str, first: u64, last: u64) -> String {
    format!("{source}-{first:012}-{last:012}")
}

/// Ingest one file (or `-`) into the lake, resuming after what earlier
/// runs committed.
pub fn ingest_file(
    lake: &Lake,
    path: &Path,
    opts: &IngestOptions,
) -> Result<FileSummary, IngestError> {
    let started = Instant::now();
    let mut reader = FileReader::open(path)?;
    let display = path.display().to_string();
    let Some(first) = reader.first_line() else {
        return Ok(FileSummary {
            path: path.to_path_buf(),
            elapsed: started.elapsed(),
            ..Default::default()
        });
    };
    let source = source_id(&opts.cluster, first);
    let mut state = lake.recover(&source, &format!("file {display} cluster {}", opts.cluster))?;
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

    let result = std::thread::scope(|scope| -> Result<(), IngestError> {
        let reader_out = out_tx.clone();
        scope.spawn(move || {
            loop {
                match reader.next_chunk() {
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
                ingested_at_us: opts.ingested_at_us,
                path: display.clone(),
            };
            scope.spawn(move || worker(rx, tx, ctx));
        }
        drop(out_tx);
        let r = write_loop(
            lake,
            &out_rx,
            &source,
            &mut state,
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
    summary.elapsed = started.elapsed();
    Ok(summary)
}

fn progress_bar(enabled: bool, len: Option<u64>, name: &str) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    let style = ProgressStyle::with_template(
        "{msg} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, eta {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(name.to_string());
    bar
}

fn write_loop(
    lake: &Lake,
    rx: &Receiver<Result<Processed, IngestError>>,
    source: &str,
    state: &mut SourceState,
    summary: &mut FileSummary,
    bar: &indicatif::ProgressBar,
    raw_count: &Arc<std::sync::atomic::AtomicU64>,
) -> Result<(), IngestError> {
    let mut next_seq = 0u64;
    let mut waiting: BTreeMap<u64, Processed> = BTreeMap::new();
    let mut segment: Segment = lake.segment(source);
    let mut seg_first = state.committed_through + 1;
    let mut last_pos = state.committed_through;
    for msg in rx.iter() {
        let p = msg?;
        waiting.insert(p.seq, p);
        while let Some(p) = waiting.remove(&next_seq) {
            next_seq += 1;
            summary.events += p.events;
            for (part, batch) in &p.parts {
                segment.write(*part, batch)?;
            }
            for r in &p.rejects {
                segment.reject(r)?;
            }
            last_pos = last_pos.max(p.last_pos);
            if segment.is_full() {
                let done = std::mem::replace(&mut segment, lake.segment(source));
                commit(done, source, seg_first, last_pos, state, summary)?;
                seg_first = last_pos + 1;
            }
            bar.set_position(raw_count.load(Ordering::Relaxed));
        }
    }
    if !waiting.is_empty() {
        return Err(IngestError::Pipeline {
            path: PathBuf::new(),
        });
    }
    if last_pos > state.committed_through {
        commit(segment, source, seg_first, last_pos, state, summary)?;
    }
    Ok(())
}

fn commit(
    segment: Segment,
    source: &str,
    first: u64,
    last: u64,
    state: &mut SourceState,
    summary: &mut FileSummary,
) -> Result<(), IngestError> {
    let info = segment.commit(&stem(source, first, last), last, state)?;
    summary.rows += info.rows;
    summary.rejected += info.rejected;
    summary.files += info.files;
    summary.parquet_bytes += info.bytes;
    tracing::debug!(
        source,
        first,
        last,
        rows = info.rows,
        files = info.files,
        "segment committed"
    );
    Ok(())
}

struct WorkerCtx {
    profiles: Arc<Profiles>,
    cluster: String,
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

/// Take the next item from a receiver shared by a pool of workers; `None`
/// once the sender is gone (or a worker panicked holding the lock).
pub(crate) fn recv_shared<T>(rx: &Mutex<Receiver<T>>) -> Option<T> {
    rx.lock().ok()?.recv().ok()
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
    };
    let mut rejects = Vec::new();
    let mut events = 0u64;
    for i in 0..chunk.units.len() {
        let (pos, text, flaw) = chunk.unit(i);
        let pre = match flaw {
            UnitFlaw::None => None,
            UnitFlaw::InvalidUtf8 => {
                Some("line is not valid UTF-8 (kept with U+FFFD replacements)")
            }
            UnitFlaw::TooLong => Some("line longer than 64 MiB (first 64 KiB kept)"),
        };
        if let Some(reason) = pre {
            rejects.push(RejectRecord {
                source: ctx.path.clone(),
                position: pos,
                item: None,
                reason: reason.to_string(),
                text: text.to_string(),
                truncated: flaw == UnitFlaw::TooLong,
            });
            continue;
        }
        events += asm.add(
            text,
            pos,
            prefix,
            &ctx.path,
            &row_ctx,
            &ctx.profiles,
            &mut rejects,
        );
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
    })
}

/// Decode, resolve and assemble units of text into per-partition Arrow
/// batches. Shared by every source; keeps its builders between calls.
#[derive(Default)]
pub struct Assembler {
    builders: HashMap<PartKey, BatchBuilder>,
    src: String,
}

impl Assembler {
    /// Add one unit found at `pos`. Rows get `source` = `prefix` + `pos`;
    /// rejections name `origin`. Returns the number of events decoded.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        text: &str,
        pos: u64,
        prefix: &str,
        origin: &str,
        row_ctx: &RowContext,
        profiles: &Profiles,
        rejects: &mut Vec<RejectRecord>,
    ) -> u64 {
        let mut events = 0u64;
        self.src.clear();
        let _ = write!(self.src, "{prefix}{pos}");
        let (builders, src) = (&mut self.builders, &self.src);
        decode_unit(
            text,
            |d| {
                events += 1;
                let r = resolve(&d.event, profiles);
                let part = PartKey::from_micros(d.received_us.or(d.stage_us));
                builders
                    .entry(part)
                    .or_default()
                    .append(&d, &r, row_ctx, src);
            },
            |rej| {
                rejects.push(RejectRecord {
                    source: origin.to_string(),
                    position: pos,
                    item: rej.item,
                    reason: rej.error.to_string(),
                    text: rej.text.to_string(),
                    truncated: false,
                });
            },
        );
        events
    }

    /// Rows added since the last call, as batches sorted by partition.
    pub fn finish(&mut self) -> Result<Vec<(PartKey, RecordBatch)>, arrow::error::ArrowError> {
        let mut parts = Vec::new();
        for (part, b) in self.builders.iter_mut() {
            if !b.is_empty() {
                parts.push((*part, b.finish()?));
            }
        }
        // Idle partitions would keep their (empty) builders forever.
        if self.builders.len() > 8 {
            self.builders.clear();
        }
        parts.sort_by_key(|(p, _)| *p);
        Ok(parts)
    }
}
