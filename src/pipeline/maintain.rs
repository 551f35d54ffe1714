//! Background maintenance of the lake by a long-running writer (`serve`, `consume`):
//! compaction every `--compact-every`, retention to `--retain`, and vacuum of what both
//! replaced, with metrics.
//!
//! Invariants:
//! - never on the acknowledgement path: it runs on a thread of its own (at a lower CPU
//!   priority), through a lake handle and a Delta log handle of its own, so the pipeline's
//!   commits never wait for it; the two only meet as concurrent commits to the log, where
//!   the loser rebuilds its commit on the winner's version (lake/delta.rs) and neither
//!   repeats its data work;
//! - one compactor per lake: each round takes the lake's `compact` lock without waiting and
//!   skips the round when another process (a second replica, a manual `auditlake compact`)
//!   holds it;
//! - only complete hours are compacted (partitions that ended an hour ago or more): the hour
//!   being written gets a new small file every flush, and merging it each round would
//!   rewrite its growing merged file again and again;
//! - shutdown: the thread stops between partitions when asked; a partition being sorted is
//!   abandoned at exit, which leaves only files no commit names (the same as a crash, which
//!   the next round and vacuum clean up).

use crate::ops::metrics::Metrics;
use crate::sinks::lake::compact::{compact, CompactOptions};
use crate::sinks::lake::reresolve::Hours;
use crate::sinks::lake::vacuum::{retention, vacuum};
use crate::sinks::lake::{Lake, LakeError, WriteOptions};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to maintain and how often.
#[derive(Debug, Clone)]
pub struct Maintenance {
    /// Compact this often (`None`: never).
    pub compact_every: Option<Duration>,
    /// Remove hour partitions older than this (`None`: keep everything).
    pub retain: Option<Duration>,
    /// Vacuum deletes a file once it has been out of the table this long.
    pub min_age: Duration,
    /// Target size of a merged file, in bytes.
    pub target_bytes: u64,
    /// Memory for sorting one partition before it spills.
    pub memory_limit: usize,
}

impl Maintenance {
    /// Whether there is anything to do.
    pub fn enabled(&self) -> bool {
        self.compact_every.is_some() || self.retain.is_some()
    }

    /// Time between rounds: the compaction period, else retention's hourly check.
    fn period(&self) -> Duration {
        self.compact_every.unwrap_or(Duration::from_secs(3600))
    }
}

/// The running maintenance thread.
pub struct Maintainer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Maintainer {
    /// Ask the thread to stop and wait up to `grace` for it: a partition being sorted may
    /// take longer, and is then left to the process exit (see the module docs).
    pub fn stop(mut self, grace: Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = Instant::now() + grace;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            tracing::warn!(
                "background compaction still sorting a partition at shutdown; abandoned (its files are not committed, vacuum deletes them)"
            );
        }
    }
}

/// Start maintaining the lake at `root`; `None` when `cfg` asks for nothing.
pub fn spawn(
    root: PathBuf,
    cfg: Maintenance,
    metrics: Arc<Metrics>,
) -> Result<Option<Maintainer>, LakeError> {
    if !cfg.enabled() {
        return Ok(None);
    }
    let lake = Lake::open(&root, WriteOptions::default())?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("auditlake-maintain".into())
        .spawn(move || {
            // Below the pipeline: on a machine with few cores the sorts take the idle time.
            // SAFETY: setpriority on this thread's own id changes only its scheduling.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, tid, 10);
            }
            run(lake, cfg, metrics, flag)
        })
        .map_err(|e| LakeError::Io {
            path: root,
            source: e,
        })?;
    Ok(Some(Maintainer {
        stop,
        thread: Some(thread),
    }))
}

fn run(lake: Lake, cfg: Maintenance, metrics: Arc<Metrics>, stop: Arc<AtomicBool>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "background maintenance cannot start its runtime; it is off");
            return;
        }
    };
    let mut next = Instant::now() + cfg.period();
    loop {
        while Instant::now() < next {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100).min(next - Instant::now()));
        }
        next = Instant::now() + cfg.period();
        round(&rt, &lake, &cfg, &metrics, &stop);
    }
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn outcome(metrics: &Metrics, task: &str, ok: bool) {
    let label = if ok { "ok" } else { "error" };
    metrics
        .maintenance_runs
        .with_label_values(&[task, label])
        .inc();
    if ok {
        metrics
            .maintenance_last_success
            .with_label_values(&[task])
            .set(chrono::Utc::now().timestamp());
    }
}

/// One round: compaction, retention, vacuum. A failure is logged and counted, and the next
/// round tries again: maintenance never stops the pipeline.
fn round(
    rt: &tokio::runtime::Runtime,
    lake: &Lake,
    cfg: &Maintenance,
    metrics: &Metrics,
    stop: &Arc<AtomicBool>,
) {
    let _lock = match lake.lock("compact", "background compaction") {
        Ok(l) => l,
        Err(e) => {
            tracing::info!(error = %e, "maintenance round skipped: another process maintains the lake");
            return;
        }
    };
    if cfg.compact_every.is_some() {
        let opts = CompactOptions {
            target_bytes: cfg.target_bytes,
            memory_limit: cfg.memory_limit,
            hours: Hours {
                since_us: None,
                until_us: Some(now_us() - 3_600_000_000),
            },
            stop: Some(stop.clone()),
            ..CompactOptions::default()
        };
        let started = Instant::now();
        match rt.block_on(compact(lake, &opts)) {
            Ok(c) => {
                metrics.compaction_files_in.inc_by(c.files_in as u64);
                metrics.compaction_files_out.inc_by(c.files_out as u64);
                metrics.compaction_bytes_in.inc_by(c.bytes_in);
                metrics
                    .compaction_duplicates
                    .inc_by(c.rows_in.saturating_sub(c.rows_out));
                if c.partitions > 0 {
                    tracing::info!(
                        partitions = c.partitions,
                        files_in = c.files_in,
                        files_out = c.files_out,
                        seconds = started.elapsed().as_secs_f64(),
                        "background compaction"
                    );
                }
                outcome(metrics, "compact", true);
            }
            Err(e) => {
                tracing::error!(error = %e, "background compaction failed; the next round tries again");
                outcome(metrics, "compact", false);
            }
        }
    }
    if let Some(keep) = cfg.retain {
        let cutoff = now_us() - keep.as_micros().min(i64::MAX as u128) as i64;
        match retention(lake, cutoff, false) {
            Ok(r) => {
                metrics.retention_partitions.inc_by(r.partitions as u64);
                if r.partitions > 0 {
                    tracing::info!(
                        partitions = r.partitions,
                        files = r.files,
                        rows = r.rows,
                        "background retention removed old hours"
                    );
                }
                outcome(metrics, "retention", true);
            }
            Err(e) => {
                tracing::error!(error = %e, "background retention failed; the next round tries again");
                outcome(metrics, "retention", false);
            }
        }
    }
    match vacuum(lake, cfg.min_age, false) {
        Ok(v) => {
            metrics.vacuum_files.inc_by(v.deleted as u64);
            metrics.vacuum_bytes.inc_by(v.bytes);
            outcome(metrics, "vacuum", true);
        }
        Err(e) => {
            tracing::error!(error = %e, "background vacuum failed; the next round tries again");
            outcome(metrics, "vacuum", false);
        }
    }
}
