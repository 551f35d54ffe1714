//! The webhook's pipeline after the log ("flush"): the background stage that turns the
//! write-ahead log into lake segments, then trims the log.
//!
//! It reads durable records in sequence order, decodes and resolves them,
//! and commits a segment named after the record range (`<source>-<first>-
//! <last>`) when it holds enough rows or has waited long enough. The lake's
//! source state records the last committed sequence number, so after a
//! crash the flusher resumes right after it: the log is the single source of
//! truth until the lake has committed a record, and only then is the record
//! eligible for trimming.

use super::assemble::{Assembler, Labels};
use super::commit::{Committer, Policy};
use crate::buffer::wal::{self, Reader, Wal, WalError};
use crate::decode::split::{Piece, Splitter};
use crate::ops::metrics::Metrics;
use crate::profiles::Profiles;
use crate::sinks::lake::batch::RowContext;
use crate::sinks::lake::{Lake, LakeError, RejectRecord, Resume, Segment};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("building Arrow batch for log records {first}..{last}: {source}")]
    Arrow {
        first: u64,
        last: u64,
        source: arrow::error::ArrowError,
    },
    #[error("the {stage} task stopped unexpectedly: {problem}\nhint: this is a bug; the log is intact and a restart replays it")]
    TaskPanicked {
        stage: &'static str,
        problem: String,
    },
}

/// Settings of the flush stage.
#[derive(Clone)]
pub struct FlushOptions {
    /// Lake source id of this log (stable across restarts).
    pub source: String,
    pub profiles: Arc<Profiles>,
    /// Commit at least this often while records arrive.
    pub max_age: Duration,
    /// Commit once a segment holds this many rows.
    pub segment_rows: u64,
}

/// Run until `cancel` fires and everything durable at that moment is
/// committed. `ready` turns true once the records found at start-up (the
/// replay) are committed.
pub async fn run(
    lake: Lake,
    wal: Wal,
    opts: FlushOptions,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    cancel: CancellationToken,
) -> Result<(), FlushError> {
    let lake2 = lake.clone();
    let source = opts.source.clone();
    // Held while this runs: one writer per source.
    let (_lock, state) = tokio::task::spawn_blocking(move || {
        let what = "webhook write-ahead log";
        let lock = lake2.lock(&source, what)?;
        let state = lake2.recover(&source, what, crate::sinks::lake::Resume::Last)?;
        Ok::<_, LakeError>((lock, state))
    })
    .await
    .map_err(|e| FlushError::TaskPanicked {
        stage: "lake recovery",
        problem: e.to_string(),
    })??;
    // Segments wholly committed before a restart go first; their bytes no
    // longer count as pending.
    let removed = wal::trim(wal.dir(), state.committed_through, wal.stats())?;
    wal.stats().settle(removed);
    metrics
        .wal_quarantined_bytes
        .inc_by(wal.stats().quarantined.load(Ordering::Relaxed));
    let mut durable = wal.durable();
    let replay_until = *durable.borrow();
    let mut reader = Reader::new(wal.dir(), state.committed_through + 1);
    let mut asm = Assembler::default();
    let mut warned = std::collections::HashSet::new();
    let policy = Policy {
        rows: opts.segment_rows,
        age: opts.max_age,
    };
    let mut c = Committer::new(&lake, &opts.source, state, Resume::Last, policy);
    // Bytes of the records in `segment`, settled against the log's
    // back-pressure measure once committed.
    let mut segment_bytes = 0u64;
    let mut settled_skipped = false;
    let mut last_read = c.state().committed_through;
    let prefix = format!("webhook:{}:", opts.source);
    let origin = format!("webhook {}", opts.source);
    let mut closed = false;
    if replay_until <= c.state().committed_through {
        ready.store(true, Ordering::Relaxed);
    }
    loop {
        let end = *durable.borrow_and_update();
        // Read what is durable, in bounded steps so that a long replay
        // still commits segments as it goes.
        let step = tokio::task::block_in_place(|| -> Result<(), FlushError> {
            let mut rejects: Vec<RejectRecord> = Vec::new();
            let mut n = 0;
            while n < 4096 {
                let Some(rec) = reader.next(end)? else { break };
                n += 1;
                segment_bytes += rec.stored_len();
                let seg = c.segment(rec.seq, rec.seq);
                let labels = Labels {
                    prefix: &prefix,
                    origin: &origin,
                    row: RowContext {
                        cluster: &rec.cluster,
                        ingested_at_us: chrono::Utc::now().timestamp_micros(),
                        envelope_cluster: false,
                    },
                    profiles: &opts.profiles,
                    // The apiserver posts its own EventLists, nothing else.
                    format: crate::decode::envelope::InputFormat::Kubernetes,
                };
                let events = if rec.spilled.is_some() {
                    add_spilled(
                        &rec,
                        wal.dir(),
                        &mut asm,
                        &labels,
                        &mut rejects,
                        seg,
                        &metrics,
                    )?
                } else {
                    let events = add_bytes(&rec.body, &mut rejects, |text, rejects| {
                        asm.add(text, rec.seq, &labels, rejects)
                    });
                    drain(&mut asm, &mut rejects, seg, &metrics, rec.seq)?;
                    events
                };
                metrics.events_received.inc_by(events);
                metrics.untrusted_claims.inc_by(super::warn_untrusted(
                    &mut warned,
                    asm.take_untrusted(),
                    256,
                ));
                last_read = rec.seq;
            }
            Ok(())
        });
        step?;
        if !settled_skipped {
            // Records already in the lake from before a restart.
            wal.stats().settle(reader.skipped_bytes);
            settled_skipped = true;
        }
        let caught_up = last_read >= end;
        let stopping = cancel.is_cancelled() || closed;
        // Besides the policy: at shutdown once caught up, and when the replay is read (so that
        // readiness does not wait for the age).
        let due = c.is_open()
            && (c.due()
                || stopping && caught_up
                || (!ready.load(Ordering::Relaxed) && caught_up && last_read >= replay_until));
        if due {
            if let Some(done) = tokio::task::block_in_place(|| c.commit())? {
                metrics.flush_latency.observe(done.took.as_secs_f64());
                metrics.files_committed.inc_by(done.info.files as u64);
                metrics.rows_committed.inc_by(done.info.rows);
                metrics.committed_position.set(done.last as i64);
                tracing::info!(
                    first = done.first,
                    last = done.last,
                    rows = done.info.rows,
                    files = done.info.files,
                    "lake segment committed"
                );
                let stats = wal.stats().clone();
                let dir = wal.dir().to_path_buf();
                stats.settle(std::mem::take(&mut segment_bytes));
                tokio::task::block_in_place(|| wal::trim(&dir, done.through, &stats))?;
            }
        }
        if !ready.load(Ordering::Relaxed) && c.state().committed_through >= replay_until {
            ready.store(true, Ordering::Relaxed);
            tracing::info!(replayed_through = replay_until, "replay complete; ready");
        }
        metrics
            .wal_bytes
            .set(wal.stats().bytes.load(Ordering::Relaxed) as i64);
        metrics
            .wal_segments
            .set(wal.stats().segments.load(Ordering::Relaxed) as i64);
        if !caught_up {
            continue;
        }
        if stopping && !c.is_open() && last_read >= *durable.borrow() {
            return Ok(());
        }
        // Wait for new records, the age deadline, or shutdown.
        let wait = c.age_left().unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            res = durable.changed() => {
                // The writer is gone: nothing more can become durable.
                if res.is_err() {
                    closed = true;
                }
            }
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled(), if !stopping => {}
        }
    }
}

/// Decode `bytes` with `add`, returning what it returns.
///
/// A body that is not UTF-8 is decoded with each bad byte replaced by NUL,
/// which keeps every offset and is invalid anywhere in JSON: items holding
/// one are rejected alone (the decoder salvages the rest of a list) and
/// their dead letters are re-cut from the original bytes.
fn add_bytes(
    bytes: &[u8],
    rejects: &mut Vec<RejectRecord>,
    add: impl FnOnce(&str, &mut Vec<RejectRecord>) -> u64,
) -> u64 {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return add(text, rejects);
    }
    let repaired = crate::decode::nul_for_invalid_utf8(bytes);
    let from = rejects.len();
    let events = add(&repaired, rejects);
    for r in &mut rejects[from..] {
        let at = r.offset.unwrap_or(0) as usize;
        let len = r.length.unwrap_or(0) as usize;
        if let Some(original) = bytes.get(at..at + len) {
            r.keep(original, crate::sinks::lake::KEEP_PER_ITEM);
        }
    }
    events
}

/// Write what the assembler holds, and the dead letters, into `seg`.
fn drain(
    asm: &mut Assembler,
    rejects: &mut Vec<RejectRecord>,
    seg: &mut Segment,
    metrics: &Metrics,
    seq: u64,
) -> Result<(), FlushError> {
    for (part, batch) in asm.finish().map_err(|source| FlushError::Arrow {
        first: seq,
        last: seq,
        source,
    })? {
        seg.write(part, &batch)?;
    }
    for r in rejects.drain(..) {
        metrics.dead_letters.inc();
        let bytes = seg.reject(&r)?;
        metrics.dead_letter_bytes.inc_by(bytes);
    }
    Ok(())
}

/// Item bytes a spilled body adds to the assembler before they are written
/// to the segment: bounds the rows held in memory, whatever the body's size.
const SPILLED_STEP: usize = 8 << 20;
/// The largest event of a spilled body (the largest body held in memory
/// before spilling existed); a larger one is dead-lettered by its first bytes.
const SPILLED_MAX_EVENT: usize = 64 << 20;

/// Decode a spilled body piece by piece ([`Splitter`]), never holding more
/// than one event's text: its CRC is checked first, since a damaged body
/// found only at its end would have left rows behind. A missing or damaged
/// body is dead-lettered with the reason (and moved to `quarantine/`), so the
/// log moves on. Returns the events decoded.
fn add_spilled(
    rec: &wal::Record,
    dir: &std::path::Path,
    asm: &mut Assembler,
    labels: &Labels,
    rejects: &mut Vec<RejectRecord>,
    seg: &mut Segment,
    metrics: &Metrics,
) -> Result<u64, FlushError> {
    use std::io::Read;
    let path = rec.spilled_path(dir);
    if let Err(problem) = rec.check_spilled(dir) {
        let kept = rec.quarantine_spilled(dir);
        tracing::error!(path = %path.display(), seq = rec.seq, %problem, quarantine = ?kept, "spilled body cannot be read; dead-lettered");
        let reason = format!(
            "spilled body {} of record {} {problem}{}",
            path.display(),
            rec.seq,
            kept.map(|q| format!("; moved to {}", q.display()))
                .unwrap_or_default()
        );
        rejects.push(RejectRecord::of(labels.origin, rec.seq, reason, b""));
        drain(asm, rejects, seg, metrics, rec.seq)?;
        return Ok(0);
    }
    let io = |source| WalError::Io {
        path: path.clone(),
        source,
    };
    // Reads of a whole chunk: a buffered reader would only copy.
    let mut file = std::fs::File::open(&path).map_err(io)?;
    let mut splitter = Splitter::new(SPILLED_MAX_EVENT);
    let mut chunk = vec![0u8; 1 << 20];
    let mut events = 0u64;
    let mut pending = 0usize;
    let mut failed: Option<FlushError> = None;
    loop {
        let n = match file.read(&mut chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => other.map_err(io)?,
        };
        let mut on_piece = |piece: Piece| {
            if failed.is_some() {
                return;
            }
            pending += add_piece(piece, rec.seq, asm, labels, rejects, &mut events);
            if pending >= SPILLED_STEP {
                pending = 0;
                if let Err(e) = drain(asm, rejects, seg, metrics, rec.seq) {
                    failed = Some(e);
                }
            }
        };
        if n == 0 {
            splitter.finish(&mut on_piece);
        } else {
            splitter.push(&chunk[..n], &mut on_piece);
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if n == 0 {
            break;
        }
    }
    drain(asm, rejects, seg, metrics, rec.seq)?;
    Ok(events)
}

/// Add one piece of a spilled body; returns the bytes it added.
fn add_piece(
    piece: Piece,
    seq: u64,
    asm: &mut Assembler,
    labels: &Labels,
    rejects: &mut Vec<RejectRecord>,
    events: &mut u64,
) -> usize {
    match piece {
        Piece::Item {
            text,
            offset,
            index,
        } => {
            let from = rejects.len();
            *events += add_bytes(text, rejects, |text, rejects| match index {
                Some(i) => asm.add_item(text, seq, i, labels, rejects),
                None => asm.add(text, seq, labels, rejects),
            });
            for r in &mut rejects[from..] {
                // Offsets are the body's, not the piece's.
                r.offset = Some(offset + r.offset.unwrap_or(0));
            }
            text.len()
        }
        Piece::Bad {
            kept,
            offset,
            length,
            xxh3,
            index,
            reason,
        } => {
            let mut r =
                RejectRecord::of(labels.origin, seq, reason, kept).item(index, Some(offset));
            if length > kept.len() as u64 {
                r.truncated = true;
                r.length = Some(length);
                r.xxh3 = Some(format!("{xxh3:016x}"));
            }
            rejects.push(r);
            kept.len()
        }
    }
}

#[cfg(test)]
mod tests {
    //! The log → lake stage in-process: a real write-ahead log and lake in a temporary
    //! directory, no server.
    use super::*;
    use crate::buffer::wal::{open, WalOptions};
    use crate::sinks::lake::WriteOptions;
    use crate::tools::gen::{Format, Generator};

    fn batches(n: usize, per: u64, seed: u64) -> Vec<Vec<u8>> {
        let mut text = Vec::new();
        Generator::new(seed)
            .write(n as u64 * per, Format::EventList, per as usize, &mut text)
            .expect("generate");
        text.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| l.to_vec())
            .collect()
    }

    async fn rows(lake: &std::path::Path) -> (i64, usize) {
        let q = crate::query::LakeQuery::open(lake, &Default::default())
            .await
            .expect("open lake");
        let b = q
            .sql("SELECT count(*) AS n FROM audit")
            .await
            .expect("count");
        let rows = b[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .expect("int64")
            .value(0);
        let rejected = std::fs::read_dir(lake.join("_rejected")).map_or(0, |d| d.count());
        (rows, rejected)
    }

    /// Run the stage over what the log holds until it is ready (the replay is committed),
    /// then cancel it, as `serve` does at shutdown.
    async fn drain(lake: &Lake, wal: Wal, metrics: Arc<Metrics>) {
        let ready = Arc::new(AtomicBool::new(false));
        let cancel = CancellationToken::new();
        let opts = FlushOptions {
            source: "wtest".into(),
            profiles: Arc::new(Profiles::builtin()),
            max_age: Duration::from_secs(3600),
            segment_rows: 250,
        };
        let task = tokio::spawn(run(
            lake.clone(),
            wal,
            opts,
            metrics,
            ready.clone(),
            cancel.clone(),
        ));
        for _ in 0..500 {
            if ready.load(Ordering::Relaxed) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            ready.load(Ordering::Relaxed),
            "the replay never became ready"
        );
        cancel.cancel();
        task.await
            .expect("no panic")
            .expect("the stage ends cleanly");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_reaches_the_lake_once_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake_dir = dir.path().join("lake");
        let lake = Lake::open(&lake_dir, WriteOptions::default()).expect("lake");
        let wal_dir = dir.path().join("wal");

        // 4 batches of 100 events and one body that is not JSON.
        let opened = open(&wal_dir, WalOptions::default()).expect("log");
        for b in batches(4, 100, 3) {
            opened.wal.append("c1", b).await.expect("append");
        }
        opened
            .wal
            .append("c1", b"not json".to_vec())
            .await
            .expect("append");
        let metrics = Arc::new(Metrics::new());
        drain(&lake, opened.wal, metrics.clone()).await;
        opened.writer.join().expect("log writer");
        assert_eq!(rows(&lake_dir).await, (400, 1));
        assert_eq!(metrics.rows_committed.get(), 400);
        assert!(
            metrics.files_committed.get() >= 2,
            "segment_rows 250 splits the 400 rows"
        );
        // The log keeps nothing the lake holds.
        assert_eq!(
            crate::buffer::wal::segments(&wal_dir).expect("segs").len(),
            1
        );

        // A restart replays nothing twice, and a new batch goes in once.
        let opened = open(&wal_dir, WalOptions::default()).expect("reopen");
        for b in batches(1, 50, 4) {
            opened.wal.append("c2", b).await.expect("append");
        }
        drain(&lake, opened.wal, Arc::new(Metrics::new())).await;
        opened.writer.join().expect("log writer");
        assert_eq!(rows(&lake_dir).await, (450, 1));
        let again = Lake::open(&lake_dir, WriteOptions::default())
            .expect("lake")
            .recover("wtest", "test", crate::sinks::lake::Resume::Last)
            .expect("state");
        assert_eq!(again.committed_through, 6, "five records, then one more");
    }

    /// The lake's audit ids (sorted) and dead letters as (item, offset, reason, text).
    async fn contents(
        lake: &std::path::Path,
    ) -> (
        Vec<String>,
        Vec<(Option<usize>, Option<u64>, String, String)>,
    ) {
        let q = crate::query::LakeQuery::open(lake, &Default::default())
            .await
            .expect("open lake");
        let b = q
            .sql("SELECT audit_id FROM audit ORDER BY audit_id")
            .await
            .expect("ids");
        let mut ids = Vec::new();
        for batch in &b {
            let col = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)
                .expect("utf8");
            let col = col
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .expect("strings");
            ids.extend(col.iter().map(|v| v.unwrap_or_default().to_string()));
        }
        let mut rejects = Vec::new();
        for e in std::fs::read_dir(lake.join("_rejected"))
            .into_iter()
            .flatten()
            .flatten()
        {
            for line in std::fs::read_to_string(e.path()).expect("read").lines() {
                let r: RejectRecord = serde_json::from_str(line).expect("dead letter");
                rejects.push((r.item, r.offset, r.reason, r.text));
            }
        }
        rejects.sort();
        (ids, rejects)
    }

    /// Spill `body` into the log as the receiver does.
    async fn spill(wal: &Wal, cluster: &str, body: &[u8]) {
        let (w, b) = (wal.clone(), body.to_vec());
        let spooled = tokio::task::spawn_blocking(move || {
            let mut s = w.spool().expect("spool");
            for part in b.chunks(4093) {
                s.write(part).expect("write");
            }
            s.finish().expect("finish")
        })
        .await
        .expect("task");
        wal.append_spilled(cluster, spooled).await.expect("append");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_spilled_body_is_stored_as_the_same_body_in_memory_would_be() {
        // Generated lists with damage: a bad item, a nested list, a byte that is not UTF-8,
        // and a body cut short.
        let mut bodies = batches(3, 120, 11);
        let nested = r#"{"kind":"EventList","items":[]}"#;
        let b0 = String::from_utf8(bodies[0].clone()).expect("utf8");
        let b0 = b0.replacen(
            r#""items":["#,
            &format!(r#""items":[{{"kind":0}},{nested},"#),
            1,
        );
        bodies[0] = b0.into_bytes();
        if let Some(at) = bodies[1].windows(7).position(|w| w == b"auditID") {
            bodies[1][at + 20] = 0xFF;
        }
        let cut = bodies[2].len() * 2 / 3;
        bodies[2].truncate(cut);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut got = Vec::new();
        for spilled in [false, true] {
            let lake_dir = dir.path().join(format!("lake-{spilled}"));
            let lake = Lake::open(&lake_dir, WriteOptions::default()).expect("lake");
            let opened = open(
                &dir.path().join(format!("wal-{spilled}")),
                WalOptions::default(),
            )
            .expect("log");
            for b in &bodies {
                if spilled {
                    spill(&opened.wal, "c1", b).await;
                } else {
                    opened.wal.append("c1", b.clone()).await.expect("append");
                }
            }
            drain(&lake, opened.wal, Arc::new(Metrics::new())).await;
            opened.writer.join().expect("log writer");
            got.push(contents(&lake_dir).await);
        }
        let (ids, rejects) = &got[0];
        assert!(ids.len() > 300, "{}", ids.len());
        assert!(rejects.len() >= 4, "{rejects:?}");
        assert_eq!(got[1].0, got[0].0, "the same events");
        // The same dead letters, item for item, at the same offsets; a body cut short also
        // says so when it is read in pieces.
        let (with_note, notes): (Vec<_>, Vec<_>) = got[1]
            .1
            .iter()
            .cloned()
            .partition(|r| !r.2.contains("cut short"));
        assert_eq!(notes.len(), 1, "{notes:?}");
        let items = |v: &[(Option<usize>, Option<u64>, String, String)]| {
            v.iter()
                .map(|r| (r.0, r.1, r.3.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(items(&with_note), items(rejects));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_damaged_spilled_body_is_dead_lettered_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake_dir = dir.path().join("lake");
        let lake = Lake::open(&lake_dir, WriteOptions::default()).expect("lake");
        let wal_dir = dir.path().join("wal");
        let opened = open(&wal_dir, WalOptions::default()).expect("log");
        let bodies = batches(2, 50, 12);
        spill(&opened.wal, "c1", &bodies[0]).await;
        opened
            .wal
            .append("c1", bodies[1].clone())
            .await
            .expect("append");
        // A bit flips on disk after the acknowledgement.
        let path = wal_dir.join("large").join(format!("{:020}.body", 1));
        let mut bytes = std::fs::read(&path).expect("body");
        bytes[100] ^= 1;
        std::fs::write(&path, &bytes).expect("damage");
        drain(&lake, opened.wal, Arc::new(Metrics::new())).await;
        opened.writer.join().expect("log writer");
        let (ids, rejects) = contents(&lake_dir).await;
        assert_eq!(ids.len(), 50, "the next record is stored");
        assert_eq!(rejects.len(), 1, "{rejects:?}");
        assert!(rejects[0].2.contains("CRC"), "{rejects:?}");
        assert_eq!(
            std::fs::read(wal_dir.join("quarantine").join(format!("{:020}.body", 1)))
                .expect("kept in quarantine"),
            bytes
        );
    }
}
