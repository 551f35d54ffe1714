//! `auditlake serve`: the webhook receiver, wired together.
//!
//! ```text
//! apiserver ──HTTPS──▶ webhook ──append, fsync──▶ write-ahead log ──▶ flush ──▶ lake
//!                      (2xx after the fsync)                         (then trim the log)
//! ```
//!
//! With `--kafka-brokers`, the log and flush stage are replaced by the
//! [`relay`](crate::sinks::kafka): batches go to a Kafka topic and the 2xx waits
//! for the delivery reports; `auditlake consume` writes the lake.
//!
//! ```text
//! apiserver ──HTTPS──▶ webhook ──produce, acks=all──▶ Kafka ──▶ consume ──▶ lake
//! ```
//!
//! Shutdown order on SIGTERM/SIGINT: stop accepting, finish in-flight
//! requests (their appends or deliveries complete), let the flush stage
//! commit everything durable to Parquet, close the log, exit.

use crate::buffer::wal::{self, WalError, WalOptions};
use crate::ops::metrics::Metrics;
use crate::pipeline::webhook::{FlushError, FlushOptions};
use crate::sinks::lake::Lake;
use crate::sources::webhook::{self, App, Auth, ServerSettings, Sink, WebhookError};
use rand::Rng;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Flush(#[from] FlushError),
    #[error("serve needs a lake directory unless it relays to Kafka")]
    NoLake,
    #[error("background maintenance: {0}")]
    Maintenance(#[from] crate::sinks::lake::LakeError),
    #[error("instance id in {path}: {source}")]
    Instance {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Everything `serve` needs.
pub struct ServeConfig {
    pub server: ServerSettings,
    pub auth: Auth,
    pub wal_dir: PathBuf,
    pub wal: WalOptions,
    pub flush: FlushOptions,
    pub limits: webhook::BodyLimits,
    /// Relay batches to Kafka instead of the local log.
    pub relay: Option<crate::sinks::kafka::Relay>,
    /// Background compaction, retention and vacuum of the lake.
    pub maintenance: super::maintain::Maintenance,
}

/// The lake source id of a log directory: a random id created with the log,
/// so it survives restarts and moves of the volume.
pub fn instance_source(wal_dir: &Path) -> Result<String, ServeError> {
    std::fs::create_dir_all(wal_dir).map_err(|source| ServeError::Instance {
        path: wal_dir.to_path_buf(),
        source,
    })?;
    let path = wal_dir.join("instance-id");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(format!("w{}", s.trim())),
        _ => {
            let id: u64 = rand::rng().random();
            let id = format!("{id:016x}");
            crate::sinks::lake::write_atomic(&path, id.as_bytes()).map_err(|e| {
                ServeError::Instance {
                    path: path.clone(),
                    source: std::io::Error::other(e.to_string()),
                }
            })?;
            Ok(format!("w{id}"))
        }
    }
}

/// Run until `shutdown` fires; then drain and return.
pub async fn run(
    lake: Option<Lake>,
    cfg: ServeConfig,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    if let Some(relay) = cfg.relay {
        // Stateless: nothing to replay, ready at once.
        let app = Arc::new(App::new(
            Sink::Kafka(Arc::new(relay)),
            cfg.auth,
            Arc::new(Metrics::new()),
            Arc::new(AtomicBool::new(true)),
            cfg.limits,
        ));
        webhook::serve(cfg.server, app, shutdown).await?;
        tracing::info!("shut down cleanly");
        return Ok(());
    }
    let Some(lake) = lake else {
        return Err(ServeError::NoLake);
    };
    let opened = wal::open(&cfg.wal_dir, cfg.wal.clone())?;
    tracing::info!(last_seq = opened.last_seq, dir = %cfg.wal_dir.display(), "write-ahead log open");
    let metrics = Arc::new(Metrics::new());
    let maintainer = super::maintain::spawn(
        lake.location().to_path_buf(),
        cfg.maintenance.clone(),
        metrics.clone(),
    )?;
    let ready = Arc::new(AtomicBool::new(false));
    let flush_stop = CancellationToken::new();
    let flusher = {
        let (wal, opts, metrics, ready, stop) = (
            opened.wal.clone(),
            cfg.flush.clone(),
            metrics.clone(),
            ready.clone(),
            flush_stop.clone(),
        );
        // A failing Parquet stage (full disk, I/O error) must not stop the
        // receiver: batches stay in the log (503 once it is full) and the
        // stage starts over from the lake's commit point after a pause.
        tokio::spawn(async move {
            loop {
                let r = super::webhook::run(
                    lake.clone(),
                    wal.clone(),
                    opts.clone(),
                    metrics.clone(),
                    ready.clone(),
                    stop.clone(),
                )
                .await;
                match r {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        tracing::error!(error = %e, "flush stage failed; retrying in 5 s (batches stay in the write-ahead log)");
                        tokio::select! {
                            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                            _ = stop.cancelled() => {
                                // One last attempt to drain before exiting.
                                return super::webhook::run(lake, wal, opts, metrics, ready, stop).await;
                            }
                        }
                    }
                }
            }
        })
    };
    let app = Arc::new(App::new(
        Sink::Wal(opened.wal.clone()),
        cfg.auth,
        metrics,
        ready,
        cfg.limits,
    ));
    let served = webhook::serve(cfg.server, app.clone(), shutdown.clone()).await;
    // 1. Accepting stopped and in-flight requests finished (or the server
    //    failed to start); background maintenance stops between partitions.
    //    2. Flush everything durable.
    shutdown.cancel();
    if let Some(m) = maintainer {
        let _ =
            tokio::task::spawn_blocking(move || m.stop(std::time::Duration::from_secs(5))).await;
    }
    drop(app);
    flush_stop.cancel();
    let flushed = flusher.await.map_err(|e| FlushError::TaskPanicked {
        stage: "log-to-lake",
        problem: e.to_string(),
    })?;
    // 3. Close the log.
    drop(opened.wal);
    let _ = tokio::task::spawn_blocking(move || opened.writer.join()).await;
    served?;
    flushed?;
    tracing::info!("shut down cleanly");
    Ok(())
}
