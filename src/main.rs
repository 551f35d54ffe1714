//! The `auditlake` command line.

use anyhow::{bail, Context, Result};
use auditlake::pipeline::file::{ingest_file, FileSummary, IngestOptions};
use auditlake::profiles::Profiles;
use auditlake::query::{self, OutputFormat};
use auditlake::sinks::lake::{Lake, WriteOptions};
use auditlake::tools::gen::{Format, Generator, OIDC_PROXY_SA};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Kubernetes audit logs in, a Parquet lake that answers "who actually did
/// this?" out.
///
/// auditlake decodes kube-apiserver audit events, resolves the real actor
/// behind impersonating proxies (Pinniped, kube-oidc-proxy, Rancher, Azure
/// Arc, kubectl --as), flags forged identity claims, and writes a
/// Hive-partitioned Parquet lake (dt=YYYY-MM-DD/hour=HH) that the built-in
/// SQL engine, DuckDB, Spark, Trino and pyarrow can read.
///
/// Every option can also be set with an AUDITLAKE_* environment variable,
/// named in each option's help.
#[derive(Parser, Debug)]
#[command(name = "auditlake", version, max_term_width = 100)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax, e.g. `info`, `auditlake=debug`).
    #[arg(long, global = true, env = "AUDITLAKE_LOG", default_value = "warn")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate demo traffic, ingest it and show what the lake answers.
    ///
    /// Writes a synthetic audit stream covering every identity scenario
    /// (direct users, service accounts, nodes, kubectl --as, Pinniped plain
    /// and nested, kube-oidc-proxy, Rancher, Azure Arc, spoofed and
    /// malformed claims) into a lake, then runs three named queries.
    /// Running it again reuses what is already committed.
    Demo {
        /// Lake directory to create or reuse.
        #[arg(long, env = "AUDITLAKE_LAKE", default_value = "./auditlake-demo")]
        lake: PathBuf,
        /// Number of demo events.
        #[arg(long, env = "AUDITLAKE_EVENTS", default_value_t = 20_000)]
        events: u64,
    },
    /// Write deterministic synthetic audit events.
    ///
    /// The same seed always produces the same bytes. `jsonl` is the
    /// apiserver log-backend format (one Event per line); `eventlist` is
    /// one webhook batch (EventList) per line.
    Gen {
        /// Number of events.
        #[arg(long, env = "AUDITLAKE_EVENTS", default_value_t = 10_000)]
        events: u64,
        /// Random seed.
        #[arg(long, env = "AUDITLAKE_SEED", default_value_t = 42)]
        seed: u64,
        /// Output format.
        #[arg(long, env = "AUDITLAKE_FORMAT", value_enum, default_value_t = GenFormat::Jsonl)]
        format: GenFormat,
        /// Events per EventList (with --format eventlist).
        #[arg(long, env = "AUDITLAKE_BATCH", default_value_t = 400)]
        batch: usize,
        /// Output file; `-` or no file is standard output (as `ingest`
        /// reads `-` as standard input).
        #[arg(short, long, env = "AUDITLAKE_OUTPUT")]
        output: Option<PathBuf>,
    },
    /// Ingest apiserver log-backend files into the lake.
    ///
    /// Accepts one Event per line (JSON lines), EventList or JSON-array
    /// documents, plain or gzip-compressed (detected from the content, so
    /// rotated `.gz` backups work), and `-` for standard input. Ingest is
    /// idempotent: a file already ingested (identified by cluster and first
    /// line, so a rotated copy counts as the same file) is resumed where the
    /// last run committed, never duplicated. Lines that cannot be decoded go
    /// to LAKE/_rejected/ with the reason, file and line.
    Ingest {
        /// Lake directory (created if missing).
        #[arg(long, env = "AUDITLAKE_LAKE")]
        lake: PathBuf,
        /// Value of the `cluster` column for these events.
        #[arg(long, env = "AUDITLAKE_CLUSTER", default_value = "default")]
        cluster: String,
        /// Proxy profiles TOML (default: the built-in schemas/proxies.toml).
        #[arg(long, env = "AUDITLAKE_PROFILES")]
        profiles: Option<PathBuf>,
        /// Decode/resolve threads (default: number of CPUs).
        #[arg(long, env = "AUDITLAKE_WORKERS")]
        workers: Option<usize>,
        /// Rows per Parquet row group.
        #[arg(long, env = "AUDITLAKE_ROW_GROUP_ROWS", default_value_t = 131_072)]
        row_group_rows: usize,
        /// Commit a segment (one file per partition) every this many rows.
        #[arg(long, env = "AUDITLAKE_SEGMENT_ROWS", default_value_t = 1_000_000)]
        segment_rows: usize,
        /// Never draw a progress bar.
        #[arg(long, env = "AUDITLAKE_NO_PROGRESS")]
        no_progress: bool,
        /// Input files (`-` = standard input).
        #[arg(required = true, value_name = "FILE", env = "AUDITLAKE_FILES")]
        files: Vec<PathBuf>,
    },
    /// Run SQL (or a named query) against the lake.
    ///
    /// Relations: `audit` (every stored row), `audit_events` (one row per
    /// event: the same event delivered twice counts once), `requests` (one
    /// row per request: its last stage, with the identity of the stage that
    /// carried impersonation). A request is keyed by cluster, audit_id,
    /// receive time, user, verb and URI, so a client that reuses another
    /// request's Audit-ID cannot hide its own request (`--named
    /// audit-id-reuse` lists such IDs).
    ///
    /// --since, --until and --cluster restrict all three relations, for SQL
    /// and named queries alike; partitions outside the window are not read.
    /// Filters on `dt`/`hour` (strings, `dt >= '2026-11-20'`) and on
    /// `request_received_at` prune the same way. `-v` prints what was read
    /// and skipped. `lake.audit`, `lake.audit_events` and `lake.requests`
    /// are the relations without the window.
    ///
    /// Examples:
    ///   auditlake query --lake L --since 24h --named actor-via-proxy --param actor=alice@example.com
    ///   auditlake query --lake L --since 2026-11-20T09:00:00Z --until 2026-11-20T10:00:00Z \
    ///       "SELECT actor_username, count(*) FROM requests GROUP BY 1 ORDER BY 2 DESC"
    Query {
        /// Lake directory.
        #[arg(long, env = "AUDITLAKE_LAKE")]
        lake: PathBuf,
        /// Output format.
        #[arg(long, env = "AUDITLAKE_OUTPUT_FORMAT", value_enum, default_value_t = OutFormat::Table)]
        format: OutFormat,
        /// Run a named query (see `auditlake queries`) instead of SQL.
        #[arg(long, env = "AUDITLAKE_NAMED", conflicts_with = "sql")]
        named: Option<String>,
        /// Named-query parameter `key=value` (repeatable).
        #[arg(
            long = "param",
            value_name = "KEY=VALUE",
            requires = "named",
            env = "AUDITLAKE_PARAMS"
        )]
        params: Vec<String>,
        /// SQL statement.
        #[arg(required_unless_present = "named", env = "AUDITLAKE_SQL")]
        sql: Option<String>,
        #[command(flatten)]
        window: WindowArgs,
        /// Print to stderr what the statement read and skipped (partitions,
        /// files, row groups, bytes) and how long it took.
        #[arg(short, long, env = "AUDITLAKE_VERBOSE")]
        verbose: bool,
        /// Memory the query engine may hold (e.g. `512MiB`, `2GiB`); sorts
        /// and aggregations spill to disk beyond it. The partitions being
        /// deduplicated take up to half as much again.
        #[arg(long, env = "AUDITLAKE_MEMORY_LIMIT", default_value = "1GiB", value_parser = parse_bytes)]
        memory_limit: u64,
        /// What to do about damaged Parquet files (zero length, truncated):
        /// `fail` names them and answers nothing; `skip` answers without
        /// them and names them in a warning.
        #[arg(long, env = "AUDITLAKE_DAMAGED", value_enum, default_value_t = query::damaged::Damaged::Fail)]
        damaged: query::damaged::Damaged,
    },
    /// Receive kube-apiserver's audit webhook (HTTPS) into the lake.
    ///
    /// Point kube-apiserver's --audit-webhook-config-file kubeconfig at this
    /// server (see docker/). A batch is answered 2xx only after it is
    /// fsynced to the write-ahead log; a background stage turns the log into
    /// Parquet and trims it. Clients authenticate with a client certificate
    /// (--client-ca, optionally --mtls-allow) and/or a bearer token
    /// (--token-file); each maps to the `cluster` column. Serves /healthz,
    /// /readyz (after the log is replayed) and /metrics (Prometheus).
    /// SIGTERM/SIGINT: stop accepting, finish requests, flush, exit 0.
    Serve {
        /// Lake directory (not needed with --kafka-brokers).
        #[arg(
            long,
            env = "AUDITLAKE_LAKE",
            required_unless_present = "kafka_brokers"
        )]
        lake: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long, env = "AUDITLAKE_LISTEN", default_value = "0.0.0.0:8443")]
        listen: std::net::SocketAddr,
        /// Server certificate chain (PEM); reloaded when it changes.
        #[arg(long, env = "AUDITLAKE_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// Server private key (PEM).
        #[arg(long, env = "AUDITLAKE_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// CA bundle (PEM) that client certificates must chain to (mTLS).
        #[arg(long, env = "AUDITLAKE_CLIENT_CA")]
        client_ca: Option<PathBuf>,
        /// Allowed client certificate name (CN or SAN), optionally mapped to
        /// a cluster: NAME or NAME=CLUSTER (repeatable; comma-separated in
        /// the environment variable). Default: any certificate the CA
        /// signed, cluster = its CN.
        #[arg(
            long = "mtls-allow",
            env = "AUDITLAKE_MTLS_ALLOW",
            value_delimiter = ',',
            value_name = "NAME[=CLUSTER]"
        )]
        mtls_allow: Vec<String>,
        /// Bearer tokens: one `TOKEN CLUSTER` per line.
        #[arg(long, env = "AUDITLAKE_TOKEN_FILE")]
        token_file: Option<PathBuf>,
        /// Serve plain HTTP (no TLS). For tests and sidecars only.
        #[arg(long, env = "AUDITLAKE_INSECURE_HTTP")]
        insecure_http: bool,
        /// Accept requests without credentials (cluster = --cluster). Needed
        /// to run without authentication on a non-loopback address.
        #[arg(long, env = "AUDITLAKE_ALLOW_UNAUTHENTICATED")]
        allow_unauthenticated: bool,
        /// Cluster name for unauthenticated requests.
        #[arg(long, env = "AUDITLAKE_CLUSTER", default_value = "default")]
        cluster: String,
        /// Request paths that accept batches (repeatable).
        #[arg(long = "path", env = "AUDITLAKE_PATHS", value_delimiter = ',', default_values_t = ["/audit".to_string(), "/".to_string()])]
        paths: Vec<String>,
        /// Largest accepted request body in bytes (413 above).
        #[arg(long, env = "AUDITLAKE_MAX_BODY", default_value_t = 12 << 20)]
        max_body: usize,
        /// Largest body after gzip decoding (413 above). Inflated bytes are
        /// charged to --max-inflight-bytes as they are produced.
        #[arg(long, env = "AUDITLAKE_MAX_INFLATED_BODY", default_value_t = 48 << 20)]
        max_inflated_body: usize,
        /// Request body bytes (as read and as inflated) held in memory at
        /// once, all clients together; one client (cluster) may hold a
        /// quarter of it. More waits briefly, then gets 503.
        #[arg(long, env = "AUDITLAKE_MAX_INFLIGHT_BYTES", default_value_t = 256 << 20)]
        max_inflight_bytes: u64,
        /// Minimum average rate of a request body, in bytes per second,
        /// after --body-grace seconds; slower bodies get 408 and the
        /// connection is closed (slow clients cannot hold the budget).
        #[arg(long, env = "AUDITLAKE_MIN_BODY_RATE", default_value_t = 16 << 10)]
        min_body_rate: u64,
        /// Seconds a request body may take before --min-body-rate applies.
        #[arg(long, env = "AUDITLAKE_BODY_GRACE", default_value_t = 5.0)]
        body_grace: f64,
        /// Write-ahead log directory (default LAKE/_wal). Put it on a persistent volume.
        #[arg(long, env = "AUDITLAKE_WAL")]
        wal: Option<PathBuf>,
        /// Answer 503 while the log holds this many bytes not yet in Parquet.
        #[arg(long, env = "AUDITLAKE_WAL_MAX_BYTES", default_value_t = 8 << 30)]
        wal_max_bytes: u64,
        /// Commit a lake segment at least this often (seconds) while batches arrive.
        #[arg(long, env = "AUDITLAKE_FLUSH_SECONDS", default_value_t = 10.0)]
        flush_seconds: f64,
        /// Commit a lake segment once it holds this many rows.
        #[arg(long, env = "AUDITLAKE_SEGMENT_ROWS", default_value_t = 500_000)]
        segment_rows: u64,
        /// Proxy profiles TOML (default: the built-in schemas/proxies.toml).
        #[arg(long, env = "AUDITLAKE_PROFILES")]
        profiles: Option<PathBuf>,
        /// Relay batches to these Kafka brokers instead of the local log
        /// (needs --kafka-topic): each event becomes one message keyed by
        /// its auditID, and the answer is 2xx only after every delivery
        /// report; 503 when Kafka does not confirm in --kafka-timeout.
        #[arg(long, env = "AUDITLAKE_KAFKA_BROKERS", requires = "kafka_topic")]
        kafka_brokers: Option<String>,
        /// Topic the relay writes.
        #[arg(long, env = "AUDITLAKE_KAFKA_TOPIC", requires = "kafka_brokers")]
        kafka_topic: Option<String>,
        /// Seconds a batch may wait for Kafka's confirmation before 503.
        #[arg(long, env = "AUDITLAKE_KAFKA_TIMEOUT", default_value_t = 10.0)]
        kafka_timeout: f64,
        /// librdkafka producer property (TLS, SASL, tuning), repeatable.
        #[arg(
            long = "kafka-option",
            value_name = "KEY=VALUE",
            env = "AUDITLAKE_KAFKA_OPTIONS",
            value_delimiter = ','
        )]
        kafka_options: Vec<String>,
    },
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
    Consume {
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
        /// Cluster of messages that do not name one (see --cluster-header, --cluster-field).
        #[arg(long, env = "AUDITLAKE_CLUSTER", default_value = "default")]
        cluster: String,
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
        /// librdkafka property passed through, as kcat does (TLS, SASL,
        /// tuning), e.g. -X security.protocol=ssl (repeatable;
        /// comma-separated in the environment variable).
        #[arg(
            short = 'X',
            value_name = "KEY=VALUE",
            env = "AUDITLAKE_KAFKA_OPTIONS",
            value_delimiter = ','
        )]
        options: Vec<String>,
        /// Commit a partition's lake segment once it holds this many rows.
        #[arg(long, env = "AUDITLAKE_SEGMENT_ROWS", default_value_t = 500_000)]
        segment_rows: u64,
        /// ...or this many seconds after its first row (bounds how far
        /// committed offsets trail behind).
        #[arg(long, env = "AUDITLAKE_FLUSH_SECONDS", default_value_t = 10.0)]
        flush_seconds: f64,
        /// Messages larger than this are dead-lettered.
        #[arg(long, env = "AUDITLAKE_MAX_MESSAGE_BYTES", default_value_t = 16 << 20)]
        max_message_bytes: usize,
        /// Rows per Parquet row group. Every open file buffers one row
        /// group, and each partition has one file per hour it holds.
        #[arg(long, env = "AUDITLAKE_ROW_GROUP_ROWS", default_value_t = 131_072)]
        row_group_rows: usize,
        /// Parquet files open at once (each buffers a row group); past it the
        /// partition holding the most files commits early. Bounds memory
        /// however many partitions this member is assigned.
        #[arg(long, env = "AUDITLAKE_MAX_OPEN_FILES", default_value_t = 32)]
        max_open_files: usize,
        /// Send dead letters (JSON: source topic/partition, offset, reason,
        /// text) to this topic instead of LAKE/_rejected. A record Kafka
        /// does not confirm is kept in the lake instead.
        #[arg(long, env = "AUDITLAKE_DEAD_LETTER_TOPIC")]
        dead_letter_topic: Option<String>,
        /// Decode/resolve threads (default: number of cores).
        #[arg(long, env = "AUDITLAKE_WORKERS")]
        workers: Option<usize>,
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
        /// Proxy profiles TOML (default: the built-in schemas/proxies.toml).
        #[arg(long, env = "AUDITLAKE_PROFILES")]
        profiles: Option<PathBuf>,
    },
    /// Produce JSON lines (a log-backend file, `auditlake gen` output) to a
    /// Kafka topic: one event per message keyed by its auditID, or several
    /// lines per message. For backfills, tests and benchmarks.
    Produce {
        /// Bootstrap brokers, host:port[,host:port...].
        #[arg(long, env = "AUDITLAKE_BROKERS")]
        brokers: String,
        /// Topic to write.
        #[arg(long, env = "AUDITLAKE_TOPIC")]
        topic: String,
        /// Lines per message (1 = one Event per message).
        #[arg(long, env = "AUDITLAKE_LINES_PER_MESSAGE", default_value_t = 1)]
        lines_per_message: usize,
        /// librdkafka property passed through (repeatable).
        #[arg(
            short = 'X',
            value_name = "KEY=VALUE",
            env = "AUDITLAKE_KAFKA_OPTIONS",
            value_delimiter = ','
        )]
        options: Vec<String>,
        /// Input file (`-` = stdin).
        #[arg(env = "AUDITLAKE_FILE", default_value = "-")]
        file: PathBuf,
    },
    /// Post EventList batches like kube-apiserver does, and report
    /// acknowledged events/s and acknowledgement latency.
    Loadgen {
        /// Webhook URL, e.g. https://localhost:8443/audit.
        #[arg(long, env = "AUDITLAKE_LOADGEN_URL")]
        url: String,
        /// CA bundle that signed the server certificate.
        #[arg(long, env = "AUDITLAKE_LOADGEN_CA")]
        ca: PathBuf,
        /// Client certificate (mTLS).
        #[arg(long, env = "AUDITLAKE_LOADGEN_CERT", requires = "key")]
        cert: Option<PathBuf>,
        /// Client key (mTLS).
        #[arg(long, env = "AUDITLAKE_LOADGEN_KEY", requires = "cert")]
        key: Option<PathBuf>,
        /// Bearer token.
        #[arg(long, env = "AUDITLAKE_LOADGEN_TOKEN")]
        token: Option<String>,
        /// Events to send in total.
        #[arg(long, env = "AUDITLAKE_EVENTS", default_value_t = 1_000_000)]
        events: u64,
        /// Events per EventList (the apiserver's default is 400).
        #[arg(long, env = "AUDITLAKE_BATCH", default_value_t = 400)]
        batch: usize,
        /// Batches in flight at once.
        #[arg(long, env = "AUDITLAKE_CONCURRENCY", default_value_t = 16)]
        concurrency: usize,
        /// Target events/s (0 = as fast as acknowledgements come back).
        #[arg(long, env = "AUDITLAKE_RATE", default_value_t = 0)]
        rate: u64,
    },
    /// List the named forensic queries.
    ///
    /// `--reference-views` prints `audit_events` and `requests` as plain SQL
    /// views over a relation named `audit`, for other engines: in DuckDB,
    /// `CREATE VIEW audit AS SELECT * FROM read_parquet('L/**/*.parquet',
    /// hive_partitioning = true, hive_types = {'dt': VARCHAR, 'hour':
    /// VARCHAR})`, then the printed statements, and the named queries run
    /// there as well.
    Queries {
        /// Also print each query's SQL.
        #[arg(long, env = "AUDITLAKE_SHOW_SQL")]
        sql: bool,
        /// Print the relations as SQL views for other engines instead.
        #[arg(long, env = "AUDITLAKE_REFERENCE_VIEWS")]
        reference_views: bool,
    },
    /// Print the record schema (Arrow types and a description per column).
    Schema,
    /// Check the lake's Parquet files and list the damaged ones.
    ///
    /// Checks each file's frame (size, magic numbers, footer length); with
    /// --deep also reads its metadata and decodes every row group. Exits 1
    /// when a file is damaged. Queries check frames too and, by default,
    /// refuse to answer over a damaged file (see `query --damaged`).
    Verify {
        /// Lake directory.
        #[arg(long, env = "AUDITLAKE_LAKE")]
        lake: PathBuf,
        /// Decode every row group, not only the file frames.
        #[arg(long, env = "AUDITLAKE_DEEP")]
        deep: bool,
    },
}

/// The time window and cluster a query sees.
#[derive(clap::Args, Debug)]
struct WindowArgs {
    /// Only rows with request_received_at at or after this time: RFC 3339
    /// (`2026-11-20T09:00:00Z`), a date (`2026-11-20`) or a span back from
    /// now (`15m`, `24h`, `7d`).
    #[arg(long, env = "AUDITLAKE_SINCE")]
    since: Option<String>,
    /// Only rows received before this time (same forms as --since).
    #[arg(long, env = "AUDITLAKE_UNTIL")]
    until: Option<String>,
    /// Only rows of this cluster.
    #[arg(long = "cluster", env = "AUDITLAKE_QUERY_CLUSTER")]
    cluster: Option<String>,
}

impl WindowArgs {
    fn window(&self) -> Result<query::Window> {
        Ok(query::Window::new(
            self.cluster.clone(),
            self.since.as_deref(),
            self.until.as_deref(),
            now_us(),
        )?)
    }
}

/// `512MiB`, `2GiB`, `1G`, `1500000`.
fn parse_bytes(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: f64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a size: use bytes or a unit (512MiB, 2GiB, 1G)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit; use B, KiB, MiB, GiB (or K, M, G)"
            ))
        }
    };
    let v = n * mult;
    if !(1024.0 * 1024.0..=1e15).contains(&v) {
        return Err(format!("{s:?} is out of range: at least 1MiB"));
    }
    Ok(v as u64)
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum GenFormat {
    Jsonl,
    Eventlist,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OutFormat {
    Table,
    Csv,
    Json,
}

/// Keep freed memory in the process instead of handing it back to the
/// kernel after every batch.
///
/// The pipeline allocates and frees buffers of megabytes many times a second
/// (16 MiB input chunks, Arrow column buffers, Parquet pages). With glibc's
/// defaults each of them is a fresh `mmap`, so every page is faulted in and
/// zeroed by the kernel again, and a trimmed heap is regrown: measured on a
/// 1,000,000-event ingest, system time fell from 0.9–1.2 s to 0.4–0.5 s with
/// these settings. Memory stays bounded: what is kept is the pipeline's own
/// high-water mark, which the bounded channels already cap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; it is called before
    // any other thread exists. 32 MiB is the largest mmap threshold glibc
    // accepts (a larger value is refused and the default kept); the input
    // chunks (16 MiB) and column buffers are below it.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

/// Let a closed output pipe end the process quietly (the default action of
/// SIGPIPE, which Rust's runtime sets to "ignore": every `println!` would
/// then panic on `| head`). Only for commands that write to standard output
/// and hold no sockets: a server must see a client's closed connection as
/// an error, not die of it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn default_sigpipe() {
    // SAFETY: restoring a signal's default disposition, before any other
    // thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn default_sigpipe() {}

/// Errors are printed once, as a chain of causes, and never with a stack
/// trace (`RUST_BACKTRACE` is for developers; a user's error is not a
/// bug). A closed output pipe (`auditlake query … | head -1`) ends the
/// command quietly, as Unix tools do.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                // Wrapping errors often repeat their source's text.
                if !msg.contains(&c) {
                    msg.push_str(&format!("\n  caused by: {c}"));
                }
            }
            eprintln!("error: {msg}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Whether `e` comes from writing to a pipe whose reader has gone.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.to_string().contains("Broken pipe")
    })
}

fn run() -> Result<()> {
    tune_allocator();
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Gen { .. }
            | Command::Query { .. }
            | Command::Queries { .. }
            | Command::Schema
            | Command::Verify { .. }
    ) {
        default_sigpipe();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .with_context(|| format!("invalid --log filter `{}`", cli.log))?,
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal (and never with NO_COLOR set): escape
        // codes in a log file or a collector are noise.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    match cli.command {
        Command::Demo { lake, events } => demo(&lake, events),
        Command::Gen {
            events,
            seed,
            format,
            batch,
            output,
        } => {
            let format = match format {
                GenFormat::Jsonl => Format::JsonLines,
                GenFormat::Eventlist => Format::EventList,
            };
            let mut out: Box<dyn Write> = match output.as_deref().filter(|p| *p != Path::new("-")) {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("cannot create {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            Generator::new(seed).write(events, format, batch, &mut out)?;
            out.flush()?;
            Ok(())
        }
        Command::Ingest {
            lake,
            cluster,
            profiles,
            workers,
            row_group_rows,
            segment_rows,
            no_progress,
            files,
        } => {
            let profiles = Profiles::load(profiles.as_deref())?;
            let write = WriteOptions {
                row_group_rows: row_group_rows.max(1),
                segment_rows: segment_rows.max(1),
                ..WriteOptions::default()
            };
            let summaries = ingest(
                &lake,
                &cluster,
                profiles,
                workers,
                write,
                !no_progress,
                &files,
            )?;
            print_summary(&summaries.done);
            if !summaries.unreadable.is_empty() {
                bail!(
                    "{} of {} input files could not be read (the others were ingested):\n  {}",
                    summaries.unreadable.len(),
                    files.len(),
                    summaries.unreadable.join("\n  ")
                );
            }
            Ok(())
        }
        Command::Query {
            lake,
            format,
            named,
            params,
            sql,
            window,
            verbose,
            memory_limit,
            damaged,
        } => {
            let window = window.window()?;
            let named = named.map(|n| query::find_named(&n)).transpose()?;
            let params = query::parse_params(&params)?;
            if let Some(q) = &named {
                // Missing or unknown parameters are reported before the lake
                // is opened.
                q.render(&params, &window)?;
            }
            let format = match format {
                OutFormat::Table => OutputFormat::Table,
                OutFormat::Csv => OutputFormat::Csv,
                OutFormat::Json => OutputFormat::Json,
            };
            let opts = query::OpenOptions {
                memory_limit: usize::try_from(memory_limit).unwrap_or(usize::MAX),
                damaged,
                ..Default::default()
            };
            runtime()?.block_on(async {
                let started = Instant::now();
                let mut lq = query::LakeQuery::open(&lake, &opts).await?;
                let sql = match &named {
                    Some(q) => lq.named(q, &params, &window).await?,
                    None => {
                        lq.set_window(&window).await?;
                        sql.unwrap_or_default()
                    }
                };
                // Rows go out as they are produced (a locked, buffered
                // stdout: one write per few KiB, not per line).
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
                let (rows, report) = lq.write_sql(&sql, format, &mut out, verbose).await?;
                out.flush()?;
                if let Some(report) = report {
                    eprintln!(
                        "{report}\n{rows} result rows in {:.3}s",
                        started.elapsed().as_secs_f64()
                    );
                }
                anyhow::Ok(())
            })?;
            Ok(())
        }
        Command::Serve {
            lake,
            listen,
            tls_cert,
            tls_key,
            client_ca,
            mtls_allow,
            token_file,
            insecure_http,
            allow_unauthenticated,
            cluster,
            paths,
            max_body,
            max_inflated_body,
            max_inflight_bytes,
            min_body_rate,
            body_grace,
            wal,
            wal_max_bytes,
            flush_seconds,
            segment_rows,
            profiles,
            kafka_brokers,
            kafka_topic,
            kafka_timeout,
            kafka_options,
        } => {
            let relay = match (kafka_brokers, kafka_topic) {
                (Some(brokers), Some(topic)) => {
                    let options = auditlake::sources::kafka::parse_options(&kafka_options)?;
                    Some(auditlake::sinks::kafka::Relay::new(
                        &brokers,
                        &topic,
                        &options,
                        std::time::Duration::from_secs_f64(kafka_timeout.max(0.1)),
                    )?)
                }
                _ => None,
            };
            use auditlake::sources::webhook::{load_tokens, Auth, ServerSettings, TlsSettings};
            if !mtls_allow.is_empty() && client_ca.is_none() {
                // Without a CA no client certificate is asked for, so the
                // allow-list would silently allow nothing and check nothing.
                bail!("--mtls-allow names client certificates, which are only checked with --client-ca: add --client-ca CA.pem, or drop --mtls-allow");
            }
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(TlsSettings { cert, key, client_ca: client_ca.clone() }),
                _ if insecure_http => None,
                _ => bail!("give --tls-cert and --tls-key (or --insecure-http for plain HTTP on a trusted link)"),
            };
            if tls.is_none() && client_ca.is_some() {
                bail!("--client-ca needs TLS (--tls-cert/--tls-key)");
            }
            let auth = Auth {
                tokens: match &token_file {
                    Some(p) => load_tokens(p)?,
                    None => vec![],
                },
                mtls: client_ca.is_some(),
                mtls_allow: mtls_allow
                    .iter()
                    .map(|m| match m.split_once('=') {
                        Some((n, c)) => (n.to_string(), c.to_string()),
                        None => (m.clone(), m.clone()),
                    })
                    .collect(),
                allow_unauthenticated: allow_unauthenticated
                    || (client_ca.is_none() && token_file.is_none() && listen.ip().is_loopback()),
                default_cluster: cluster,
            };
            if !auth.is_configured() && !auth.allow_unauthenticated {
                bail!(
                    "refusing to accept unauthenticated audit events on {listen}: configure --client-ca and/or --token-file, or pass --allow-unauthenticated"
                );
            }
            // The relay keeps no state: no lake, no log.
            let (lake, wal_dir, source) = match (&relay, lake) {
                (None, Some(dir)) => {
                    let wal_dir = wal.unwrap_or_else(|| dir.join("_wal"));
                    let lake = Lake::open(&dir, WriteOptions::default())
                        .with_context(|| format!("cannot open lake {}", dir.display()))?;
                    let source = auditlake::pipeline::serve::instance_source(&wal_dir)?;
                    (Some(lake), wal_dir, source)
                }
                (None, None) => bail!("give --lake (or --kafka-brokers and --kafka-topic)"),
                (Some(_), _) => (None, PathBuf::new(), String::new()),
            };
            let cfg = auditlake::pipeline::serve::ServeConfig {
                server: ServerSettings {
                    listen,
                    tls,
                    paths,
                    tls_reload: std::time::Duration::from_secs(2),
                },
                auth,
                wal_dir,
                wal: auditlake::buffer::wal::WalOptions {
                    max_bytes: wal_max_bytes,
                    ..Default::default()
                },
                flush: auditlake::pipeline::webhook::FlushOptions {
                    source,
                    profiles: Arc::new(Profiles::load(profiles.as_deref())?),
                    max_age: std::time::Duration::from_secs_f64(flush_seconds.max(0.05)),
                    segment_rows: segment_rows.max(1),
                },
                limits: auditlake::sources::webhook::BodyLimits {
                    max_body,
                    max_inflated: max_inflated_body,
                    max_inflight_bytes,
                    min_rate: min_body_rate,
                    grace: std::time::Duration::from_secs_f64(body_grace.max(0.0)),
                },
                relay,
            };
            runtime()?.block_on(async {
                let shutdown = tokio_util::sync::CancellationToken::new();
                let s = shutdown.clone();
                let signal = shutdown_signal()?;
                tokio::spawn(async move {
                    signal.await;
                    tracing::info!("signal received; shutting down");
                    s.cancel();
                });
                auditlake::pipeline::serve::run(lake, cfg, shutdown).await?;
                anyhow::Ok(())
            })?;
            Ok(())
        }
        Command::Consume {
            brokers,
            topics,
            group,
            lake,
            cluster,
            cluster_header,
            payload_field,
            cluster_field,
            options,
            segment_rows,
            flush_seconds,
            max_message_bytes,
            row_group_rows,
            max_open_files,
            dead_letter_topic,
            workers,
            exit_at_end,
            metrics_listen,
            profiles,
        } => {
            use auditlake::sources::kafka::ConsumerSettings;
            let options = auditlake::sources::kafka::parse_options(&options)?;
            let opts = auditlake::pipeline::kafka::ConsumeOptions {
                consumer: ConsumerSettings {
                    brokers: brokers.clone(),
                    topics,
                    group,
                    options: options.clone(),
                    cluster_header: Some(cluster_header).filter(|h| !h.is_empty()),
                    chunk_messages: 8192,
                    chunk_bytes: 16 << 20,
                    chunk_wait: std::time::Duration::from_millis(100),
                    exit_at_end,
                },
                cluster,
                payload_field,
                cluster_field,
                profiles: Arc::new(Profiles::load(profiles.as_deref())?),
                workers: workers.unwrap_or_else(default_workers).max(1),
                segment_rows: segment_rows.max(1),
                max_age: std::time::Duration::from_secs_f64(flush_seconds.max(0.05)),
                max_message_bytes,
                max_open_files: max_open_files.max(1),
                dead_letter: match &dead_letter_topic {
                    Some(t) => Some(Arc::new(auditlake::sinks::kafka::DeadLetterTopic::new(
                        &brokers, t, &options,
                    )?)),
                    None => None,
                },
            };
            let write = WriteOptions {
                row_group_rows: row_group_rows.max(1),
                ..WriteOptions::default()
            };
            let lake = Lake::open(&lake, write)
                .with_context(|| format!("cannot open lake {}", lake.display()))?;
            let started = Instant::now();
            let summary = runtime()?.block_on(async {
                let shutdown = tokio_util::sync::CancellationToken::new();
                let s = shutdown.clone();
                let signal = shutdown_signal()?;
                tokio::spawn(async move {
                    signal.await;
                    tracing::info!("signal received; shutting down");
                    s.cancel();
                });
                let metrics = Arc::new(auditlake::ops::metrics::Metrics::new());
                let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let http_stop = tokio_util::sync::CancellationToken::new();
                let addr = auditlake::ops::metrics::serve_http(
                    metrics_listen,
                    metrics.clone(),
                    ready.clone(),
                    http_stop.clone(),
                )
                .await
                .with_context(|| format!("cannot listen on --metrics-listen {metrics_listen}"))?;
                tracing::info!(%addr, "metrics listening");
                let r = auditlake::pipeline::kafka::run(lake, opts, metrics, ready, shutdown).await;
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
        Command::Produce {
            brokers,
            topic,
            lines_per_message,
            options,
            file,
        } => {
            let options = auditlake::sources::kafka::parse_options(&options)?;
            let input: Box<dyn std::io::BufRead> = if file.as_os_str() == "-" {
                Box::new(std::io::BufReader::new(std::io::stdin().lock()))
            } else {
                Box::new(std::io::BufReader::with_capacity(
                    1 << 20,
                    std::fs::File::open(&file)
                        .with_context(|| format!("cannot open {}", file.display()))?,
                ))
            };
            let report = auditlake::tools::produce::produce_lines(
                &brokers,
                &topic,
                &options,
                input,
                lines_per_message,
            )?;
            println!("{report}");
            if report.failed > 0 {
                bail!("{} messages were not delivered", report.failed);
            }
            Ok(())
        }
        Command::Loadgen {
            url,
            ca,
            cert,
            key,
            token,
            events,
            batch,
            concurrency,
            rate,
        } => {
            let identity = cert.as_deref().zip(key.as_deref());
            let client = auditlake::tools::loadgen::https_client(&ca, identity)?;
            let spec = auditlake::tools::loadgen::LoadSpec {
                url,
                token,
                events,
                batch,
                concurrency,
                rate,
            };
            let report = runtime()?.block_on(auditlake::tools::loadgen::run(client, spec))?;
            println!("{report}");
            Ok(())
        }
        Command::Queries {
            sql,
            reference_views,
        } => {
            if reference_views {
                println!(
                    "CREATE OR REPLACE VIEW audit_events AS {};\nCREATE OR REPLACE VIEW requests AS {};\nCREATE OR REPLACE VIEW audit_id_reuse AS {};",
                    query::reference::audit_events_sql("audit"),
                    query::reference::requests_sql("audit"),
                    query::reference::audit_id_reuse_sql("requests")
                );
                return Ok(());
            }
            for q in query::named_queries() {
                println!("{:<26} {}", q.name, q.question);
                for p in &q.params {
                    match &p.default {
                        Some(d) => println!(
                            "{:<26}   --param {}=… ({}; default {d})",
                            "", p.name, p.description
                        ),
                        None => println!(
                            "{:<26}   --param {}=… ({}; required)",
                            "", p.name, p.description
                        ),
                    }
                }
                if sql {
                    println!("{}\n", q.body);
                }
            }
            Ok(())
        }
        Command::Schema => {
            print!("{}", auditlake::schema::schema_document_text());
            Ok(())
        }
        Command::Verify { lake, deep } => {
            if !lake.is_dir() {
                bail!(
                    "lake {} does not exist or is not a directory",
                    lake.display()
                );
            }
            let files = auditlake::sinks::lake::parquet_files(&lake).len();
            let damage = auditlake::sinks::lake::check::damaged(&lake, deep);
            for d in &damage {
                println!("{}\t{}", d.path.display(), d.problem);
            }
            let depth = if deep { "decoded" } else { "frames checked" };
            if damage.is_empty() {
                eprintln!("{files} Parquet files, {depth}: none damaged");
                Ok(())
            } else {
                bail!(
                    "{} of {files} Parquet files damaged ({depth}); restore them from a backup or re-ingest their source, or query with --damaged skip",
                    damage.len()
                )
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is
/// called (not when first polled), so a signal that arrives during start-up
/// is not lost to the default action.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn ingest(
    lake: &Path,
    cluster: &str,
    profiles: Profiles,
    workers: Option<usize>,
    write: WriteOptions,
    progress: bool,
    files: &[PathBuf],
) -> Result<Ingested> {
    let lake =
        Lake::open(lake, write).with_context(|| format!("cannot open lake {}", lake.display()))?;
    let opts = IngestOptions {
        cluster: cluster.to_string(),
        profiles: Arc::new(profiles),
        workers: workers.unwrap_or_else(default_workers),
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
            Err(
                e @ auditlake::pipeline::file::IngestError::File(auditlake::sources::file::FileError::Open {
                    ..
                }),
            ) => {
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

/// What `ingest` did with its inputs.
#[derive(Default)]
struct Ingested {
    done: Vec<FileSummary>,
    /// One message per input that could not be opened.
    unreadable: Vec<String>,
}

fn print_summary(summaries: &[FileSummary]) {
    let mut total = FileSummary::default();
    for s in summaries {
        let secs = s.elapsed.as_secs_f64().max(1e-9);
        eprintln!(
            "{}: {} events, {} rows, {} rejected, {} files, {:.1} MB read{} in {:.2}s ({:.0} events/s)",
            s.path.display(),
            s.events,
            s.rows,
            s.rejected,
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
}

/// At most `n` rows of `batches`.
fn first_rows(
    batches: Vec<arrow::record_batch::RecordBatch>,
    n: usize,
) -> Vec<arrow::record_batch::RecordBatch> {
    let mut left = n;
    let mut out = Vec::new();
    for b in batches {
        if left == 0 {
            break;
        }
        let take = b.num_rows().min(left);
        left -= take;
        out.push(b.slice(0, take));
    }
    out
}

fn demo(lake: &Path, events: u64) -> Result<()> {
    let started = Instant::now();
    std::fs::create_dir_all(lake).with_context(|| format!("cannot create {}", lake.display()))?;
    let input = lake.join("_demo-input.jsonl");
    if !input.exists() {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&input)?);
        Generator::new(42).write(events, Format::JsonLines, 400, &mut out)?;
        out.flush()?;
    }
    // The demo traffic includes kube-oidc-proxy, whose identity has no
    // default: name it, as a user would in their profiles file.
    let mut profiles = Profiles::builtin();
    if !profiles.add_proxy_username("kube-oidc-proxy", OIDC_PROXY_SA) {
        bail!("built-in profiles lack kube-oidc-proxy");
    }
    let summaries = ingest(
        lake,
        "demo",
        profiles,
        None,
        WriteOptions::default(),
        true,
        &[input],
    )?;
    print_summary(&summaries.done);
    if let Some(e) = summaries.unreadable.first() {
        bail!("{e}");
    }
    let rt = runtime()?;
    rt.block_on(async {
        let mut lq = query::LakeQuery::open(lake, &query::OpenOptions::default()).await?;
        for (name, params) in [
            ("who-acted-as-whom", vec![]),
            (
                "actor-via-proxy",
                vec!["actor=alice@example.com".to_string()],
            ),
            ("spoofed-malformed-claims", vec![]),
        ] {
            let q = query::find_named(name)?;
            let sql = lq
                .named(
                    &q,
                    &query::parse_params(&params)?,
                    &query::Window::default(),
                )
                .await?;
            let batches = first_rows(lq.sql(&sql).await?, 12);
            println!("\n## {name}: {}", q.question);
            println!("{}", query::render(&batches, OutputFormat::Table)?);
        }
        anyhow::Ok(())
    })?;
    println!(
        "\nDemo lake at {} ({:.1}s). Try:\n  auditlake queries\n  auditlake query --lake {} --named privileged-impersonation\n  auditlake query --lake {} --named actor-timeline --param actor=carol@example.com\n  auditlake query --lake {} \"SELECT resolution, claim_status, COUNT(*) FROM requests GROUP BY 1, 2 ORDER BY 3 DESC\"",
        lake.display(),
        started.elapsed().as_secs_f64(),
        lake.display(),
        lake.display(),
        lake.display()
    );
    Ok(())
}
