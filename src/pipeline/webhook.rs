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
use crate::ops::metrics::Metrics;
use crate::profiles::Profiles;
use crate::sinks::lake::batch::RowContext;
use crate::sinks::lake::{Lake, LakeError, RejectRecord, Resume};
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
                segment_bytes += rec.frame_len();
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
                // A body that is not UTF-8 is decoded with each bad byte
                // replaced by NUL, which keeps every offset and is invalid
                // anywhere in JSON: items holding one are rejected alone
                // (the decoder salvages the rest of a list) and their
                // dead letters are re-cut from the original bytes.
                let repaired;
                let (text, original) = match std::str::from_utf8(&rec.body) {
                    Ok(text) => (text, None),
                    Err(_) => {
                        repaired = crate::decode::nul_for_invalid_utf8(&rec.body);
                        (repaired.as_str(), Some(&rec.body[..]))
                    }
                };
                let from = rejects.len();
                let events = asm.add(text, rec.seq, &labels, &mut rejects);
                if let Some(original) = original {
                    for r in &mut rejects[from..] {
                        let at = r.offset.unwrap_or(0) as usize;
                        let len = r.length.unwrap_or(0) as usize;
                        if let Some(bytes) = original.get(at..at + len) {
                            r.keep(bytes, crate::sinks::lake::KEEP_PER_ITEM);
                        }
                    }
                }
                metrics.events_received.inc_by(events);
                metrics.untrusted_claims.inc_by(super::warn_untrusted(
                    &mut warned,
                    asm.take_untrusted(),
                    256,
                ));
                for (part, batch) in asm.finish().map_err(|source| FlushError::Arrow {
                    first: rec.seq,
                    last: rec.seq,
                    source,
                })? {
                    seg.write(part, &batch)?;
                }
                for r in rejects.drain(..) {
                    metrics.dead_letters.inc();
                    let bytes = seg.reject(&r)?;
                    metrics.dead_letter_bytes.inc_by(bytes);
                }
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
}
