//! `auditlake consume`: a Kafka consumer-group member writing the lake; offsets are committed
//! only after the lake commit that holds them. The pipeline is `auditlake::pipeline::kafka`.

use super::{
    cancel_on_signal, runtime, CommitArgs, InputArgs, KafkaClientArgs, ProfileArgs, WorkerArgs,
};
use anyhow::{Context, Result};
use auditlake::sinks::lake::{Lake, WriteOptions};
use auditlake::sources::kafka::ConsumerSettings;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

const EXAMPLES: &str = "Examples:\n  auditlake consume --brokers kafka:9092 --topic audit --group auditlake --lake /data/lake\n  auditlake consume --brokers b:9093 --topic audit --lake L -X security.protocol=ssl \\\n      -X ssl.ca.location=ca.pem --payload-field log";

/// Consume audit events from Kafka (as a consumer-group member) into the lake.
///
/// Each message may hold one Event, an EventList, a JSON array of events
/// or JSON lines (detected per message), optionally inside a wrapper
/// field (--payload-field). Every partition's offset is committed only
/// after the Parquet file holding its records is committed, and files
/// are named after topic, partition and offset range, so crashes,
/// restarts and rebalances never lose or duplicate a row. Undecodable,
/// empty or oversized messages are dead-lettered (to LAKE/_rejected, or
/// to --dead-letter-topic) with topic, partition, offset and reason, and
/// the partition moves on.
/// Run several with the same --group to share the partitions.
/// Metrics, /healthz and /readyz are served on --metrics-listen.
#[derive(clap::Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// Bootstrap brokers, host:port[,host:port...].
    #[arg(long, env = "AUDITLAKE_BROKERS")]
    brokers: String,
    /// Topic to read (repeatable; comma-separated in the environment
    /// variable). A name starting with ^ is a regular expression.
    #[arg(
        long = "topic",
        env = "AUDITLAKE_TOPICS",
        value_delimiter = ',',
        required = true
    )]
    topics: Vec<String>,
    /// Consumer group; members of one group share the partitions.
    #[arg(long, env = "AUDITLAKE_GROUP", default_value = "auditlake")]
    group: String,
    /// Lake directory (shared by every member of the group).
    #[arg(long, env = "AUDITLAKE_LAKE")]
    lake: PathBuf,
    /// Cluster of messages that do not name one (see --cluster-header,
    /// --cluster-field). Without it, an envelope's cluster (EKS log group,
    /// AKS resource ID, GKE resource label) is used, else `default`.
    #[arg(long, env = "AUDITLAKE_CLUSTER")]
    cluster: Option<String>,
    #[command(flatten)]
    input: InputArgs,
    /// Message header whose value names the cluster (the webhook's Kafka
    /// relay sets it).
    #[arg(
        long,
        env = "AUDITLAKE_CLUSTER_HEADER",
        default_value = "auditlake-cluster"
    )]
    cluster_header: String,
    /// The event is in this field of a JSON wrapper object, as text
    /// (Fluent Bit's `log`) or as an object (Vector's `message`).
    #[arg(long, env = "AUDITLAKE_PAYLOAD_FIELD")]
    payload_field: Option<String>,
    /// With --payload-field: the wrapper field that names the cluster.
    #[arg(long, env = "AUDITLAKE_CLUSTER_FIELD", requires = "payload_field")]
    cluster_field: Option<String>,
    #[command(flatten)]
    pub(super) kafka: KafkaClientArgs,
    #[command(flatten)]
    commit: CommitArgs,
    /// Messages larger than this are dead-lettered.
    #[arg(long, env = "AUDITLAKE_MAX_MESSAGE_BYTES", default_value_t = 16 << 20,
          value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    max_message_bytes: u64,
    /// Rows per Parquet row group. Every open file buffers one row
    /// group, and each partition has one file per hour it holds.
    #[arg(long, env = "AUDITLAKE_ROW_GROUP_ROWS", default_value_t = 131_072,
          value_parser = clap::value_parser!(u64).range(1..))]
    row_group_rows: u64,
    /// Parquet files open at once (each buffers a row group); past it the
    /// partition holding the most files commits early. Bounds memory
    /// however many partitions this member is assigned.
    #[arg(long, env = "AUDITLAKE_MAX_OPEN_FILES", default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    max_open_files: u64,
    /// Send dead letters (JSON: source topic/partition, offset, reason,
    /// text) to this topic instead of LAKE/_rejected. A record Kafka
    /// does not confirm is kept in the lake instead.
    #[arg(long, env = "AUDITLAKE_DEAD_LETTER_TOPIC")]
    dead_letter_topic: Option<String>,
    #[command(flatten)]
    workers: WorkerArgs,
    /// Stop (after committing) once every assigned partition is read to
    /// its end: for backfills and benchmarks.
    #[arg(long, env = "AUDITLAKE_EXIT_AT_END")]
    exit_at_end: bool,
    /// Serve /metrics, /healthz and /readyz here (plain HTTP); port 0 picks one.
    #[arg(
        long,
        env = "AUDITLAKE_METRICS_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    metrics_listen: std::net::SocketAddr,
    #[command(flatten)]
    profiles: ProfileArgs,
    #[command(flatten)]
    maintenance: super::MaintenanceArgs,
    #[command(flatten)]
    sort: super::SortArgs,
}

pub fn run(a: Args) -> Result<()> {
    let options = a.kafka.parse()?;
    let opts = auditlake::pipeline::kafka::ConsumeOptions {
        consumer: ConsumerSettings {
            brokers: a.brokers.clone(),
            topics: a.topics,
            group: a.group,
            options: options.clone(),
            cluster_header: Some(a.cluster_header).filter(|h| !h.is_empty()),
            chunk_messages: 8192,
            chunk_bytes: 16 << 20,
            chunk_wait: std::time::Duration::from_millis(100),
            exit_at_end: a.exit_at_end,
        },
        envelope_cluster: a.cluster.is_none(),
        cluster: a.cluster.unwrap_or_else(|| "default".into()),
        format: a.input.format,
        payload_field: a.payload_field,
        cluster_field: a.cluster_field,
        profiles: Arc::new(a.profiles.load()?),
        workers: a.workers.get(),
        segment_rows: a.commit.segment_rows,
        max_age: a.commit.flush_seconds,
        max_message_bytes: a.max_message_bytes as usize,
        max_open_files: a.max_open_files as usize,
        // A test hook, deliberately not a flag: the crash tests set it to kill the process in the
        // one window exactly-once must survive.
        abort_after_lake_commit: std::env::var("AUDITLAKE_FAILPOINT").as_deref()
            == Ok("abort-after-lake-commit"),
        dead_letter: match &a.dead_letter_topic {
            Some(t) => Some(Arc::new(auditlake::sinks::kafka::DeadLetterTopic::new(
                &a.brokers, t, &options,
            )?)),
            None => None,
        },
    };
    let write = WriteOptions {
        row_group_rows: a.row_group_rows as usize,
        sort_bytes: a.sort.bytes(),
        ..WriteOptions::default()
    };
    let lake = Lake::open(&a.lake, write)
        .with_context(|| format!("cannot open lake {}", a.lake.display()))?;
    let metrics_listen = a.metrics_listen;
    let maintenance = a.maintenance.parse()?;
    let root = a.lake.clone();
    let started = Instant::now();
    let summary = runtime()?.block_on(async {
        let shutdown = cancel_on_signal()?;
        let metrics = Arc::new(auditlake::ops::metrics::Metrics::new());
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let http_stop = tokio_util::sync::CancellationToken::new();
        super::serve_ops(
            metrics_listen,
            metrics.clone(),
            ready.clone(),
            http_stop.clone(),
        )
        .await?;
        let maintainer = auditlake::pipeline::maintain::spawn(root, maintenance, metrics.clone())?;
        let r = auditlake::pipeline::kafka::run(lake, opts, metrics, ready, shutdown).await;
        // Maintenance is not on the offsets' path: it stops once the pipeline has drained.
        if let Some(m) = maintainer {
            let _ = tokio::task::spawn_blocking(move || m.stop(std::time::Duration::from_secs(5)))
                .await;
        }
        // The endpoints go last: /readyz and /metrics stay up while the pipeline drains.
        http_stop.cancel();
        anyhow::Ok(r?)
    })?;
    let secs = started.elapsed().as_secs_f64();
    let active = summary.active.as_secs_f64();
    eprintln!(
        "consumed {} messages, {} events in {secs:.1} s ({active:.2} s from first message to last commit: {:.0} events/s): {} rows in {} files, {} rejected",
        summary.messages,
        summary.events,
        summary.events as f64 / active.max(1e-9),
        summary.rows,
        summary.files,
        summary.rejected
    );
    Ok(())
}
