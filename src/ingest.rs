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

use crate::decode::{decode_unit_in, Decoded};
use crate::event::Spare;
use crate::lake::batch::{BatchBuilder, PartKey, Row, RowContext};
use crate::lake::{Lake, LakeError, RejectRecord, Segment, SourceState};
use crate::profiles::Profiles;
use crate::resolve::{resolve, Resolved};
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
    /// An unterminated last line left for the next run (still being
    /// written), by position.
    pub unterminated: Option<u64>,
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
    // Held until this file is done: a second writer of the same source
    // would delete this one's temporaries in `recover`.
    let _lock = lake.lock(&source, &display)?;
    let mut state = lake.recover(
        &source,
        &format!("file {display} cluster {}", opts.cluster),
        crate::lake::Resume::Last,
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
    summary.unterminated = reader.unterminated();
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
                        crate::source::file::MAX_LINE_BYTES >> 20
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
    let events = asm.add_units(
        units,
        prefix,
        &ctx.path,
        &row_ctx,
        &ctx.profiles,
        &mut rejects,
    );
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
    })
}

/// How many decoded events wait before they are resolved and appended
/// together (see [`BatchBuilder::append_rows`]): enough for runs of appends
/// per column, few enough that the events stay in the core's cache.
const RUN: usize = 64;

/// A decoded event waiting for [`flush_run`], with the range of its
/// `source` value in the assembler's `src`.
struct Staged<'a> {
    decoded: Decoded<'a>,
    src: std::ops::Range<usize>,
}

/// Decode, resolve and assemble units of text into per-partition Arrow
/// batches. Shared by every source; keeps its builders between calls.
#[derive(Default)]
pub struct Assembler {
    builders: HashMap<PartKey, BatchBuilder>,
    src: String,
    /// List buffers the decoder fills...
    spare: Spare,
    /// ...and those of events already appended, given back to `spare`
    /// before the next unit is decoded (the decoder holds `spare` while it
    /// calls back, and appending happens inside that callback).
    returned: Spare,
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
        let units = std::iter::once((pos, text));
        self.add_units(units, prefix, origin, row_ctx, profiles, rejects)
    }

    /// Add units of text, each with its position, in order; as [`add`]
    /// for each, but events of consecutive units are appended together.
    ///
    /// [`add`]: Assembler::add
    pub fn add_units<'a>(
        &mut self,
        units: impl IntoIterator<Item = (u64, &'a str)>,
        prefix: &str,
        origin: &str,
        row_ctx: &RowContext,
        profiles: &Profiles,
        rejects: &mut Vec<RejectRecord>,
    ) -> u64 {
        let mut events = 0u64;
        let mut staged: Vec<Staged<'a>> = Vec::with_capacity(RUN);
        let (builders, src) = (&mut self.builders, &mut self.src);
        let (spare, returned) = (&mut self.spare, &mut self.returned);
        for (pos, text) in units {
            spare.absorb(returned);
            // Between runs no staged event refers to `src`.
            if staged.is_empty() {
                src.clear();
            }
            let a = src.len();
            let _ = write!(src, "{prefix}{pos}");
            let range = a..src.len();
            decode_unit_in(
                text,
                spare,
                |decoded| {
                    events += 1;
                    staged.push(Staged {
                        decoded,
                        src: range.clone(),
                    });
                    if staged.len() >= RUN {
                        flush_run(builders, &mut staged, src, row_ctx, profiles, returned);
                    }
                },
                |rej| {
                    // The rejected text lies inside the unit: its offset
                    // lets a caller map it back to original bytes.
                    let offset = (rej.text.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
                    let offset = (offset <= text.len()).then_some(offset as u64);
                    rejects.push(
                        RejectRecord::of(origin, pos, rej.error.to_string(), rej.text.as_bytes())
                            .item(rej.item, offset),
                    );
                },
            );
        }
        flush_run(builders, &mut staged, src, row_ctx, profiles, returned);
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

/// Resolve the staged events and append them, then empty `staged` (its
/// events' list buffers go to `returned`).
fn flush_run(
    builders: &mut HashMap<PartKey, BatchBuilder>,
    staged: &mut Vec<Staged>,
    src: &str,
    row_ctx: &RowContext,
    profiles: &Profiles,
    returned: &mut Spare,
) {
    let resolved: Vec<Resolved> = staged
        .iter()
        .map(|s| resolve(&s.decoded.event, profiles))
        .collect();
    let rows: Vec<Row> = staged
        .iter()
        .zip(&resolved)
        .map(|(s, r)| Row {
            decoded: &s.decoded,
            resolved: r,
            source: src.get(s.src.clone()).unwrap_or_default(),
        })
        .collect();
    let part = |r: &Row| PartKey::from_micros(r.decoded.received_us.or(r.decoded.stage_us));
    // Consecutive rows of one partition (usually the whole run) go to its
    // builder together, which keeps each partition's rows in order.
    let mut rest = &rows[..];
    while let Some(first) = rest.first() {
        let p = part(first);
        let n = rest.iter().take_while(|r| part(r) == p).count();
        builders
            .entry(p)
            .or_default()
            .append_rows(&rest[..n], row_ctx);
        rest = &rest[n..];
    }
    // Both borrow `staged`.
    drop(rows);
    drop(resolved);
    for s in staged.drain(..) {
        returned.keep(s.decoded.event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode_unit;

    /// `add_units` appends in runs, column by column; the batches and
    /// rejections must be exactly what appending each event on its own
    /// gives. The units switch partitions inside runs, include EventLists
    /// (several rows per unit, split across runs) and bad lines.
    #[test]
    fn runs_assemble_what_single_rows_do() {
        let text = crate::gen::jsonl(500, 11);
        let text = std::str::from_utf8(&text).expect("generator writes UTF-8");
        let mut units: Vec<String> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = match i % 7 {
                // Every third line an hour later; every seventh with no
                // timestamps (the default partition).
                _ if i % 3 == 0 => line.replace("2026-11-20T08", "2026-11-20T09"),
                0 => line
                    .replace("\"requestReceivedTimestamp\"", "\"x1\"")
                    .replace("\"stageTimestamp\"", "\"x2\""),
                _ => line.to_string(),
            };
            units.push(line);
        }
        // EventLists of 1..=100 items, one longer than a run.
        for n in [1, 5, 100] {
            let items: Vec<&str> = text.lines().take(n).collect();
            units.insert(
                40 + n,
                format!(
                    r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{}]}}"#,
                    items.join(",")
                ),
            );
        }
        units.insert(10, "not json".to_string());
        units.insert(200, r#"{"kind":"Event","level":"Nope"}"#.to_string());

        let profiles = Profiles::builtin();
        let ctx = RowContext {
            cluster: "c1",
            ingested_at_us: 7,
        };
        let mut asm = Assembler::default();
        let mut rejects = Vec::new();
        let positioned = units
            .iter()
            .enumerate()
            .map(|(i, u)| (i as u64 + 1, u.as_str()));
        let events = asm.add_units(positioned, "t:", "o", &ctx, &profiles, &mut rejects);
        let runs = asm.finish().expect("batches build");

        let mut builders: BTreeMap<PartKey, BatchBuilder> = BTreeMap::new();
        let mut single_rejects = Vec::new();
        let mut single_events = 0u64;
        for (i, u) in units.iter().enumerate() {
            let pos = i as u64 + 1;
            decode_unit(
                u,
                |d| {
                    single_events += 1;
                    let r = resolve(&d.event, &profiles);
                    let part = PartKey::from_micros(d.received_us.or(d.stage_us));
                    builders
                        .entry(part)
                        .or_default()
                        .append(&d, &r, &ctx, &format!("t:{pos}"));
                },
                |rej| single_rejects.push((pos, rej.item, rej.error.to_string())),
            );
        }
        let singles: Vec<(PartKey, RecordBatch)> = builders
            .iter_mut()
            .map(|(p, b)| (*p, b.finish().expect("batch builds")))
            .collect();

        assert_eq!(events, single_events);
        assert_eq!(events, 500 + 1 + 5 + 100);
        assert_eq!(runs.len(), 3, "08:00, 09:00 and the default partition");
        assert_eq!(runs, singles);
        let got: Vec<_> = rejects
            .iter()
            .map(|r| (r.position, r.item, r.reason.clone()))
            .collect();
        assert_eq!(got, single_rejects);
        assert_eq!(got.len(), 2);
    }
}
