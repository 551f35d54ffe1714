//! `auditlake serve`: kube-apiserver's audit webhook, into the write-ahead log and the lake, or
//! relayed to Kafka. Flags become the library's `ServeConfig`; the wiring is
//! `auditlake::pipeline::serve`.

use super::{
    cancel_on_signal, runtime, seconds_in, CommitArgs, KafkaClientArgs, MaintenanceArgs,
    ProfileArgs,
};
use anyhow::{bail, Context, Result};
use auditlake::sinks::lake::{Lake, WriteOptions};
use auditlake::sources::webhook::{load_tokens, Auth, BodyLimits, ServerSettings, TlsSettings};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const EXAMPLES: &str = "Examples:\n  auditlake serve --lake /data/lake --tls-cert tls.crt --tls-key tls.key --client-ca ca.crt\n  auditlake serve --lake /data/lake --tls-cert tls.crt --tls-key tls.key --token-file tokens\n  auditlake serve --tls-cert tls.crt --tls-key tls.key --token-file tokens \\\n      --kafka-brokers kafka:9092 --kafka-topic audit";

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
#[derive(clap::Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
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
    /// CA bundle (PEM) that client certificates must chain to (mTLS);
    /// reloaded when it changes (a file that does not load keeps the CA
    /// before in force, with a warning).
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
    /// Bearer tokens: one `TOKEN CLUSTER` per line; reloaded when the file
    /// changes (one that does not load keeps the tokens before).
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
    /// Largest accepted request body in bytes, as sent (413 above); at
    /// least 1024. kube-apiserver drops a batch it cannot deliver, so this
    /// must exceed its largest batch: 400 events
    /// (--audit-webhook-batch-max-size) of RequestResponse objects pass
    /// 100 MiB unless it runs with --audit-webhook-truncate-enabled. Bodies
    /// over --spill-body are streamed into the write-ahead log as they
    /// arrive, so this bounds disk (within --wal-max-bytes), not memory.
    /// Every 413 is logged as an error and counted.
    #[arg(long, env = "AUDITLAKE_MAX_BODY", default_value_t = 1 << 30,
          value_parser = clap::value_parser!(u64).range(1024..))]
    max_body: u64,
    /// Bodies larger than this many bytes (declared, or as they arrive)
    /// are written to the write-ahead log as they arrive instead of held
    /// in memory; 0 holds every body in memory (then --max-inflated-body
    /// bounds them). Plain bodies to the log only: gzip bodies and bodies
    /// relayed to Kafka are held in memory.
    #[arg(long, env = "AUDITLAKE_SPILL_BODY", default_value_t = 8 << 20)]
    spill_body: u64,
    /// Largest body held in memory (413 above): a gzip body after
    /// decoding, and any body relayed to Kafka or not spilled. Its bytes
    /// are charged to --max-inflight-bytes as they are produced.
    #[arg(long, env = "AUDITLAKE_MAX_INFLATED_BODY", default_value_t = 64 << 20,
          value_parser = clap::value_parser!(u64).range(1024..))]
    max_inflated_body: u64,
    /// Request body bytes (as read and as inflated) held in memory at
    /// once, all clients together; one client (cluster) may hold a
    /// quarter of it. More waits briefly, then gets 503.
    #[arg(long, env = "AUDITLAKE_MAX_INFLIGHT_BYTES", default_value_t = 512 << 20,
          value_parser = clap::value_parser!(u64).range(1 << 20..))]
    max_inflight_bytes: u64,
    /// Minimum average rate of a request body, in bytes per second,
    /// after --body-grace seconds; slower bodies get 408 and the
    /// connection is closed (slow clients cannot hold the budget).
    #[arg(long, env = "AUDITLAKE_MIN_BODY_RATE", default_value_t = 16 << 10)]
    min_body_rate: u64,
    /// Seconds a request body may take before --min-body-rate applies (0 to 3600).
    #[arg(long, env = "AUDITLAKE_BODY_GRACE", default_value = "5",
          value_parser = seconds_in(0.0, 3600.0))]
    body_grace: Duration,
    /// Write-ahead log directory (default LAKE/_wal). Put it on a persistent volume.
    #[arg(long, env = "AUDITLAKE_WAL")]
    wal: Option<PathBuf>,
    /// Answer 503 while the log holds this many bytes not yet in Parquet (at least 4096).
    #[arg(long, env = "AUDITLAKE_WAL_MAX_BYTES", default_value_t = 8 << 30,
          value_parser = clap::value_parser!(u64).range(4096..))]
    wal_max_bytes: u64,
    #[command(flatten)]
    pub(super) commit: CommitArgs,
    #[command(flatten)]
    profiles: ProfileArgs,
    /// Relay batches to these Kafka brokers instead of the local log
    /// (needs --kafka-topic): each event becomes one message keyed by
    /// its auditID, and the answer is 2xx only after every delivery
    /// report; 503 when Kafka does not confirm in --kafka-timeout.
    #[arg(long, env = "AUDITLAKE_KAFKA_BROKERS", requires = "kafka_topic")]
    kafka_brokers: Option<String>,
    /// Topic the relay writes.
    #[arg(long, env = "AUDITLAKE_KAFKA_TOPIC", requires = "kafka_brokers")]
    kafka_topic: Option<String>,
    /// Seconds a batch may wait for Kafka's confirmation before 503 (0.1 to 600).
    #[arg(long, env = "AUDITLAKE_KAFKA_TIMEOUT", default_value = "10",
          value_parser = seconds_in(0.1, 600.0))]
    kafka_timeout: Duration,
    #[command(flatten)]
    pub(super) kafka: KafkaClientArgs,
    #[command(flatten)]
    maintenance: MaintenanceArgs,
    #[command(flatten)]
    sort: super::SortArgs,
}

pub fn run(a: Args) -> Result<()> {
    let relay = match (&a.kafka_brokers, &a.kafka_topic) {
        (Some(brokers), Some(topic)) => Some(auditlake::sinks::kafka::Relay::new(
            brokers,
            topic,
            &a.kafka.parse()?,
            a.kafka_timeout,
        )?),
        _ => None,
    };
    if !a.mtls_allow.is_empty() && a.client_ca.is_none() {
        // Without a CA no client certificate is asked for, so the
        // allow-list would silently allow nothing and check nothing.
        bail!("--mtls-allow names client certificates, which are only checked with --client-ca: add --client-ca CA.pem, or drop --mtls-allow");
    }
    let tls = match (a.tls_cert, a.tls_key) {
        (Some(cert), Some(key)) => Some(TlsSettings {
            cert,
            key,
            client_ca: a.client_ca.clone(),
        }),
        _ if a.insecure_http => None,
        _ => bail!(
            "give --tls-cert and --tls-key (or --insecure-http for plain HTTP on a trusted link)"
        ),
    };
    if tls.is_none() && a.client_ca.is_some() {
        bail!("--client-ca needs TLS (--tls-cert/--tls-key)");
    }
    let listen = a.listen;
    let auth = Auth {
        tokens: match &a.token_file {
            Some(p) => load_tokens(p)?,
            None => vec![],
        },
        mtls: a.client_ca.is_some(),
        mtls_allow: a
            .mtls_allow
            .iter()
            .map(|m| match m.split_once('=') {
                Some((n, c)) => (n.to_string(), c.to_string()),
                None => (m.clone(), m.clone()),
            })
            .collect(),
        allow_unauthenticated: a.allow_unauthenticated
            || (a.client_ca.is_none() && a.token_file.is_none() && listen.ip().is_loopback()),
        default_cluster: a.cluster,
    };
    if !auth.is_configured() && !auth.allow_unauthenticated {
        bail!(
            "refusing to accept unauthenticated audit events on {listen}: configure --client-ca and/or --token-file, or pass --allow-unauthenticated"
        );
    }
    // The relay keeps no state: no lake, no log.
    let (lake, wal_dir, source) = match (&relay, a.lake) {
        (None, Some(dir)) => {
            let write = WriteOptions {
                sort_bytes: a.sort.bytes(),
                ..WriteOptions::default()
            };
            let lake = Lake::open(&dir, write)
                .with_context(|| format!("cannot open lake {}", dir.display()))?;
            // LAKE/_wal; for a lake on an object store, the working directory on this machine
            // (lake/store.rs), which should then be a persistent volume.
            let wal_dir = a.wal.unwrap_or_else(|| lake.root().join("_wal"));
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
            paths: a.paths,
            tls_reload: Duration::from_secs(2),
            token_file: a.token_file.clone(),
        },
        auth,
        wal_dir,
        wal: auditlake::buffer::wal::WalOptions {
            max_bytes: a.wal_max_bytes,
            ..Default::default()
        },
        flush: auditlake::pipeline::webhook::FlushOptions {
            source,
            profiles: Arc::new(a.profiles.load()?),
            max_age: a.commit.flush_seconds,
            segment_rows: a.commit.segment_rows,
        },
        limits: BodyLimits {
            max_body: usize::try_from(a.max_body).unwrap_or(usize::MAX),
            spill: usize::try_from(a.spill_body).unwrap_or(usize::MAX),
            max_inflated: usize::try_from(a.max_inflated_body).unwrap_or(usize::MAX),
            max_inflight_bytes: a.max_inflight_bytes,
            min_rate: a.min_body_rate,
            grace: a.body_grace,
        },
        relay,
        maintenance: a.maintenance.parse()?,
    };
    runtime()?.block_on(async {
        let shutdown = cancel_on_signal()?;
        auditlake::pipeline::serve::run(lake, cfg, shutdown).await?;
        anyhow::Ok(())
    })
}
