//! `auditlake ingest`: log-backend files (or standard input) into the lake, resuming where
//! earlier runs committed.

use super::{now_us, runtime, InputArgs, ProfileArgs, WorkerArgs};
use anyhow::{bail, Context, Result};
use auditlake::decode::envelope::InputFormat;
use auditlake::pipeline::file::{ingest_file, FileSummary, IngestError, IngestOptions};
use auditlake::profiles::Profiles;
use auditlake::sinks::lake::{Lake, WriteOptions};
use auditlake::sources::file::FileError;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const EXAMPLES: &str = "Examples:\n  auditlake ingest --lake L --cluster prod /var/log/kubernetes/audit/audit.log*\n  auditlake ingest --lake L --cluster prod --follow /var/log/kubernetes/audit/audit.log\n  zcat old/*.gz | auditlake ingest --lake L --cluster prod -\n  auditlake ingest --lake L firehose/2026/11/20/*          # EKS via Firehose: cluster from the log group\n  auditlake ingest --lake L insights-logs-kube-audit/**/PT1H.json   # AKS storage export";

/// Ingest apiserver log-backend files into the lake.
///
/// Accepts one Event per line (JSON lines), EventList or JSON-array
/// documents, plain or gzip-compressed (detected from the content, so
/// rotated `.gz` backups work), and `-` for standard input. Ingest is
/// idempotent: a file already ingested (identified by cluster and first
/// line, so a rotated copy counts as the same file) is resumed where the
/// last run committed, never duplicated. Lines that cannot be decoded go
/// to LAKE/_rejected/ with the reason, file and line.
///
/// With --follow, each FILE is the live log the apiserver writes: it is read
/// as it grows and across its rotations (renamed, gzipped, or truncated),
/// its rotated copies beside it first, until SIGTERM/SIGINT. Segments are
/// committed every --flush-seconds, so events are queryable seconds after
/// they are written; a restart (or kill -9) resumes exactly where the lake
/// commit left each file. Serves /healthz, /readyz and /metrics on
/// --metrics-listen, and can compact and expire the lake in the background.
#[derive(clap::Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// Lake directory (created if missing).
    #[arg(long, env = "AUDITLAKE_LAKE")]
    lake: PathBuf,
    /// Value of the `cluster` column for these events. Without it, events
    /// from an envelope that names its cluster (an EKS log group, an AKS
    /// resource ID, a GKE resource label) get that name, others `default`.
    #[arg(long, env = "AUDITLAKE_CLUSTER")]
    cluster: Option<String>,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    profiles: ProfileArgs,
    #[command(flatten)]
    workers: WorkerArgs,
    #[command(flatten)]
    sort: super::SortArgs,
    /// Rows per Parquet row group.
    #[arg(long, env = "AUDITLAKE_ROW_GROUP_ROWS", default_value_t = 131_072,
          value_parser = clap::value_parser!(u64).range(1..))]
    row_group_rows: u64,
    /// Commit a segment (one file per partition) every this many rows.
    #[arg(long, env = "AUDITLAKE_SEGMENT_ROWS", default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    segment_rows: u64,
    /// Never draw a progress bar (one is drawn only when stderr is a terminal).
    #[arg(long, env = "AUDITLAKE_NO_PROGRESS")]
    no_progress: bool,
    /// Keep reading each FILE as it grows and across its rotations, until
    /// SIGTERM/SIGINT (a live audit.log; see above).
    #[arg(long, env = "AUDITLAKE_FOLLOW")]
    follow: bool,
    /// With --follow: commit what was read at the latest this many seconds
    /// after its first line (how far the lake trails the file). 0.05 to 86400.
    #[arg(long, env = "AUDITLAKE_FLUSH_SECONDS", default_value = "5",
          value_parser = super::seconds_in(0.05, 86_400.0))]
    flush_seconds: std::time::Duration,
    /// With --follow: how long to wait at the end of a file before looking
    /// again for more lines or a rotation. 0.01 to 60.
    #[arg(long, env = "AUDITLAKE_POLL_SECONDS", default_value = "0.25",
          value_parser = super::seconds_in(0.01, 60.0))]
    poll_seconds: std::time::Duration,
    /// With --follow: serve /metrics, /healthz and /readyz here (plain
    /// HTTP); port 0 picks one.
    #[arg(
        long,
        env = "AUDITLAKE_METRICS_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    metrics_listen: std::net::SocketAddr,
    #[command(flatten)]
    maintenance: super::MaintenanceArgs,
    /// Input files (`-` = standard input).
    #[arg(required = true, value_name = "FILE", env = "AUDITLAKE_FILES")]
    files: Vec<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    let write = WriteOptions {
        row_group_rows: a.row_group_rows as usize,
        segment_rows: a.segment_rows as usize,
        sort_bytes: a.sort.bytes(),
        ..WriteOptions::default()
    };
    if a.follow {
        return follow(a, write);
    }
    if a.maintenance.compact_every.is_some() || a.maintenance.retain.is_some() {
        bail!("--compact-every and --retain run in the background of --follow; for a one-off run use `auditlake compact` and `auditlake retention`");
    }
    let summaries = ingest_files(
        &a.lake,
        a.cluster.as_deref(),
        a.input.format,
        a.profiles.load()?,
        a.workers.get(),
        write,
        !a.no_progress,
        &a.files,
    )?;
    print_summary(&summaries.done);
    if !summaries.unreadable.is_empty() {
        bail!(
            "{} of {} input files could not be read (the others were ingested):\n  {}",
            summaries.unreadable.len(),
            a.files.len(),
            summaries.unreadable.join("\n  ")
        );
    }
    Ok(())
}

/// What `ingest` did with its inputs.
#[derive(Default)]
pub struct Ingested {
    pub done: Vec<FileSummary>,
    /// One message per input that could not be opened.
    pub unreadable: Vec<String>,
}

/// `cluster`: `None` takes an envelope's cluster, else `default`.
#[allow(clippy::too_many_arguments)]
pub fn ingest_files(
    lake: &Path,
    cluster: Option<&str>,
    format: InputFormat,
    profiles: Profiles,
    workers: usize,
    write: WriteOptions,
    progress: bool,
    files: &[PathBuf],
) -> Result<Ingested> {
    let lake =
        Lake::open(lake, write).with_context(|| format!("cannot open lake {}", lake.display()))?;
    let opts = IngestOptions {
        cluster: cluster.unwrap_or("default").to_string(),
        envelope_cluster: cluster.is_none(),
        format,
        profiles: Arc::new(profiles),
        workers,
        progress: progress && std::io::stderr().is_terminal(),
        ingested_at_us: now_us(),
    };
    let mut out = Ingested::default();
    for f in files {
        // An input that cannot be opened does not stop the others: it is
        // reported, and the run exits non-zero at the end. Any other error
        // (the lake, a read that failed midway) ends the run at once.
        if f.is_dir() {
            let msg = format!(
                "{}: is a directory; pass the files in it (e.g. {}/audit*.log)",
                f.display(),
                f.display()
            );
            eprintln!("error: {msg}");
            out.unreadable.push(msg);
            continue;
        }
        match ingest_file(&lake, f, &opts) {
            Ok(s) => out.done.push(s),
            Err(e @ IngestError::File(FileError::Open { .. })) => {
                eprintln!("error: {e}");
                out.unreadable.push(e.to_string());
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "ingest of {} stopped; what was committed before stays in the lake and a re-run resumes after it",
                    f.display()
                )))
            }
        }
    }
    Ok(out)
}

pub fn print_summary(summaries: &[FileSummary]) {
    let mut total = FileSummary::default();
    for s in summaries {
        let secs = s.elapsed.as_secs_f64().max(1e-9);
        eprintln!(
            "{}: {} events, {} rows, {} rejected,{} {} files, {:.1} MB read{} in {:.2}s ({:.0} events/s)",
            s.path.display(),
            s.events,
            s.rows,
            s.rejected,
            if s.skipped > 0 {
                format!(" {} envelope messages without events skipped,", s.skipped)
            } else {
                String::new()
            },
            s.files,
            s.raw_bytes as f64 / 1e6,
            if s.resumed_after > 0 {
                format!(", resumed after line {}", s.resumed_after)
            } else {
                String::new()
            },
            secs,
            s.events as f64 / secs
        );
        if let Some(line) = s.unterminated {
            eprintln!(
                "{}: line {line} has no newline yet (still being written?); it was left for the next run",
                s.path.display()
            );
        }
        for (k, n) in &s.untrusted {
            *total.untrusted.entry(k.clone()).or_default() += n;
        }
        total.events += s.events;
        total.rows += s.rows;
        total.rejected += s.rejected;
        total.files += s.files;
        total.raw_bytes += s.raw_bytes;
        total.parquet_bytes += s.parquet_bytes;
        total.elapsed += s.elapsed;
    }
    let secs = total.elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "total: {} input files, {} events, {} rows written, {} rejected, {} lake files ({:.1} MB), {:.1} MB read in {:.2}s: {:.0} events/s, {:.1} MB/s",
        summaries.len(),
        total.events,
        total.rows,
        total.rejected,
        total.files,
        total.parquet_bytes as f64 / 1e6,
        total.raw_bytes as f64 / 1e6,
        secs,
        total.events as f64 / secs,
        total.raw_bytes as f64 / 1e6 / secs
    );
    if total.rejected > 0 {
        eprintln!("rejected lines are kept with their reason under LAKE/_rejected/");
    }
    for ((user, profile), n) in &total.untrusted {
        let advice = auditlake::pipeline::untrusted_advice(user, profile);
        eprintln!("warning: {n} {advice}");
    }
}

/// `ingest --follow`: one follower per path, the metrics endpoints and background maintenance,
/// until SIGTERM/SIGINT. Shutdown: the reads stop, what was read is committed, maintenance
/// stops, the endpoints go last.
fn follow(a: Args, write: WriteOptions) -> Result<()> {
    use auditlake::pipeline::commit::Policy;
    use auditlake::pipeline::file::Live;
    use auditlake::pipeline::follow::{follow, FollowOptions};
    use std::sync::atomic::{AtomicBool, Ordering};
    for f in &a.files {
        if f == Path::new("-") {
            bail!("--follow reads files, not standard input: pass the live log's path (e.g. /var/log/kubernetes/audit/audit.log)");
        }
        if f.is_dir() {
            bail!(
                "{}: is a directory; --follow takes the live log file in it (e.g. {}/audit.log)",
                f.display(),
                f.display()
            );
        }
    }
    let lake = Lake::open(&a.lake, write)
        .with_context(|| format!("cannot open lake {}", a.lake.display()))?;
    let ingest = IngestOptions {
        cluster: a.cluster.clone().unwrap_or_else(|| "default".into()),
        envelope_cluster: a.cluster.is_none(),
        format: a.input.format,
        profiles: Arc::new(a.profiles.load()?),
        workers: a.workers.get(),
        progress: false,
        ingested_at_us: now_us(),
    };
    let maintenance = a.maintenance.parse()?;
    let metrics = Arc::new(auditlake::ops::metrics::Metrics::new());
    let opts = FollowOptions {
        poll: a.poll_seconds,
        stop: Arc::new(AtomicBool::new(false)),
        live: Live {
            policy: Policy {
                rows: a.segment_rows,
                age: a.flush_seconds,
            },
            metrics: Some(metrics.clone()),
            watch: None,
        },
    };
    let metrics_listen = a.metrics_listen;
    let files = a.files.clone();
    let summaries = runtime()?.block_on(async {
        let shutdown = super::cancel_on_signal()?;
        let ready = Arc::new(AtomicBool::new(false));
        let http_stop = tokio_util::sync::CancellationToken::new();
        super::serve_ops(
            metrics_listen,
            metrics.clone(),
            ready.clone(),
            http_stop.clone(),
        )
        .await?;
        let maintainer = auditlake::pipeline::maintain::spawn(
            lake.location().to_path_buf(),
            maintenance,
            metrics.clone(),
        )?;
        // Ready once every path's first sweep is done and its file is followed (or awaited).
        let flags: Vec<Arc<AtomicBool>> = files
            .iter()
            .map(|_| Arc::new(AtomicBool::new(false)))
            .collect();
        let mut tasks = Vec::new();
        for (f, flag) in files.iter().zip(&flags) {
            let (lake, f, ingest, opts, flag) = (
                lake.clone(),
                f.clone(),
                ingest.clone(),
                opts.clone(),
                flag.clone(),
            );
            tasks.push(tokio::task::spawn_blocking(move || {
                let r = follow(&lake, &f, &ingest, &opts, &flag);
                if r.is_err() {
                    // One follower's failure stops the others, so the process exits (and is
                    // restarted) rather than running half-blind.
                    opts.stop.store(true, Ordering::Relaxed);
                }
                (f, r)
            }));
        }
        let stop = opts.stop.clone();
        let watch_ready = tokio::spawn(async move {
            loop {
                if flags.iter().all(|f| f.load(Ordering::Relaxed)) {
                    ready.store(true, Ordering::Relaxed);
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.context("a follower thread stopped unexpectedly")?);
        }
        watch_ready.abort();
        if let Some(m) = maintainer {
            let _ = tokio::task::spawn_blocking(move || m.stop(std::time::Duration::from_secs(5)))
                .await;
        }
        http_stop.cancel();
        anyhow::Ok(results)
    })?;
    let mut failed = None;
    let mut done = Vec::new();
    for (f, r) in summaries {
        match r {
            Ok(s) => {
                eprintln!(
                    "{}: followed {} files ({} rotations, {} rotated copies read)",
                    f.display(),
                    s.files.len(),
                    s.rotations,
                    s.swept
                );
                done.extend(s.files.into_iter().filter(|s| s.events + s.rejected > 0));
            }
            Err(e) => {
                eprintln!("error: following {}: {e}", f.display());
                failed = Some(f);
            }
        }
    }
    print_summary(&done);
    if let Some(f) = failed {
        bail!(
            "following {} stopped; what was committed stays in the lake and a restart resumes after it",
            f.display()
        );
    }
    Ok(())
}
