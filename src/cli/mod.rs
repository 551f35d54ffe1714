//! The command line: one file per command, each with its `Args` (flags, with the environment
//! variable of each), the conversion into the library's runtime settings, and `run`.
//!
//! Flag groups that several commands share are defined once here and flattened into each
//! (`#[command(flatten)]`), so an option has one spelling, one environment variable and one range
//! everywhere. Values out of range are refused with the range in the message, never clamped.

pub mod compact;
pub mod completions;
pub mod consume;
pub mod demo;
pub mod explain;
pub mod gen;
pub mod ingest;
pub mod lake;
pub mod loadgen;
pub mod produce;
pub mod profiles;
pub mod queries;
pub mod query;
pub mod report;
pub mod retention;
pub mod schema;
pub mod serve;
pub mod shell;
pub mod verify;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax, e.g. `info`, `auditlake=debug`).
    #[arg(long, global = true, env = "AUDITLAKE_LOG", default_value = "warn")]
    pub log: String,

    /// An option of the object store a lake URL names (`--lake
    /// s3://bucket/prefix`, `gs://…`, `az://…`), as KEY=VALUE; repeat it, or
    /// separate several with commas in the variable. For an S3-compatible
    /// server: `endpoint=http://127.0.0.1:9000`, `allow_http=true`,
    /// `region=us-east-1`. Credentials come from the store's usual
    /// environment (AWS_ACCESS_KEY_ID, AWS_WEB_IDENTITY_TOKEN_FILE,
    /// GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_ACCOUNT_KEY, …) and
    /// instance metadata. An unknown key is refused, naming it.
    #[arg(
        long = "lake-option",
        global = true,
        env = "AUDITLAKE_LAKE_OPTIONS",
        value_name = "KEY=VALUE",
        value_delimiter = ',',
        value_parser = auditlake::sinks::lake::store::parse_option
    )]
    pub lake_options: Vec<(String, String)>,

    /// Where a lake on an object store keeps, on this machine, a writer's
    /// temporaries and a reader's copy of the live files it queries
    /// (default: ~/.cache/auditlake/lakes).
    #[arg(long, global = true, env = "AUDITLAKE_LAKE_CACHE", value_name = "DIR")]
    pub lake_cache: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    Demo(demo::Args),
    Gen(gen::Args),
    Ingest(ingest::Args),
    Query(query::Args),
    Shell(shell::Args),
    Explain(explain::Args),
    Serve(Box<serve::Args>),
    Consume(consume::Args),
    Produce(produce::Args),
    Loadgen(loadgen::Args),
    Queries(queries::Args),
    Profiles(profiles::Args),
    Lake(lake::Args),
    Compact(compact::Args),
    Report(report::Args),
    Retention(retention::Args),
    Schema(schema::Args),
    Verify(verify::Args),
    Completions(completions::Args),
    Man(completions::ManArgs),
}

impl Command {
    /// Commands that only write to standard output and hold no sockets: a closed pipe ends
    /// them quietly (see `main`).
    pub fn writes_to_a_pipe(&self) -> bool {
        matches!(
            self,
            Command::Gen(_)
                | Command::Query(_)
                | Command::Explain(_)
                | Command::Report(_)
                | Command::Queries(_)
                | Command::Profiles(_)
                | Command::Schema(_)
                | Command::Verify(_)
                | Command::Completions(_)
                | Command::Man(_)
        )
    }

    /// The command's name, as `lake history` shows the writer of a commit.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Demo(_) => "demo",
            Command::Gen(_) => "gen",
            Command::Ingest(_) => "ingest",
            Command::Query(_) => "query",
            Command::Shell(_) => "shell",
            Command::Explain(_) => "explain",
            Command::Serve(_) => "serve",
            Command::Consume(_) => "consume",
            Command::Produce(_) => "produce",
            Command::Loadgen(_) => "loadgen",
            Command::Queries(_) => "queries",
            Command::Profiles(_) => "profiles",
            Command::Lake(_) => "lake",
            Command::Compact(_) => "compact",
            Command::Report(_) => "report",
            Command::Retention(_) => "retention",
            Command::Schema(_) => "schema",
            Command::Verify(_) => "verify",
            Command::Completions(_) => "completions",
            Command::Man(_) => "man",
        }
    }

    pub fn run(self) -> Result<()> {
        auditlake::sinks::lake::delta::set_writer(self.name());
        match self {
            Command::Demo(a) => demo::run(a),
            Command::Gen(a) => gen::run(a),
            Command::Ingest(a) => ingest::run(a),
            Command::Query(a) => query::run(a),
            Command::Shell(a) => shell::run(a),
            Command::Explain(a) => explain::run(a),
            Command::Serve(a) => serve::run(*a),
            Command::Consume(a) => consume::run(a),
            Command::Produce(a) => produce::run(a),
            Command::Loadgen(a) => loadgen::run(a),
            Command::Queries(a) => queries::run(a),
            Command::Profiles(a) => profiles::run(a),
            Command::Lake(a) => lake::run(a),
            Command::Compact(a) => compact::run(a),
            Command::Report(a) => report::run(a),
            Command::Retention(a) => retention::run(a),
            Command::Schema(a) => schema::run(a),
            Command::Verify(a) => verify::run(a),
            Command::Completions(a) => completions::run(a),
            Command::Man(a) => completions::run_man(a),
        }
    }
}

/// Whether `lake` can name a lake: a directory, or an object store URL (checked when opened).
pub fn is_lake(lake: &std::path::Path) -> bool {
    auditlake::sinks::lake::store::is_remote(lake) || lake.is_dir()
}

/// `--profiles`, for every command that resolves identities.
#[derive(clap::Args, Debug, Clone)]
pub struct ProfileArgs {
    /// Proxy profiles TOML (default: the built-in schemas/proxies.toml).
    #[arg(long, env = "AUDITLAKE_PROFILES")]
    pub profiles: Option<PathBuf>,
}

impl ProfileArgs {
    pub fn load(&self) -> Result<auditlake::profiles::Profiles> {
        Ok(auditlake::profiles::Profiles::load(
            self.profiles.as_deref(),
        )?)
    }
}

/// `--format`: which managed-cluster envelopes the input may hold.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct InputArgs {
    /// What the input holds. `auto` recognises each line's or message's
    /// shape: Kubernetes audit events, EKS CloudWatch Logs payloads
    /// (plain, base64 gzip, export lines), AKS resource-log records and
    /// GKE Cloud Audit Logs entries. A cloud's name admits only its
    /// envelopes beside plain events; `kubernetes` opens none.
    #[arg(
        long = "format",
        env = "AUDITLAKE_INPUT_FORMAT",
        value_enum,
        default_value_t
    )]
    pub format: auditlake::decode::envelope::InputFormat,
}

/// When a long-running writer (serve, consume) commits a lake segment.
#[derive(clap::Args, Debug, Clone)]
pub struct CommitArgs {
    /// Commit a lake segment once it holds this many rows.
    #[arg(long, env = "AUDITLAKE_SEGMENT_ROWS", default_value_t = 500_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub segment_rows: u64,
    /// ...or this many seconds after its first row, at the latest (bounds how far the lake, and
    /// Kafka's committed offsets, trail behind). 0.05 to 86400.
    #[arg(long, env = "AUDITLAKE_FLUSH_SECONDS", default_value = "10",
          value_parser = seconds_in(0.05, 86_400.0))]
    pub flush_seconds: Duration,
}

/// Background maintenance of the lake, for the long-running writers (serve, consume).
#[derive(clap::Args, Debug, Clone)]
pub struct MaintenanceArgs {
    /// Compact the lake in the background this often (`1h`, `30m`): each
    /// round merges the small files of every complete hour (ended an hour
    /// ago or more), as `auditlake compact` does, on a thread of its own at
    /// a lower CPU priority; acknowledgements never wait for it. One
    /// replica compacts at a time (the others skip the round). Off when
    /// not given.
    #[arg(long, env = "AUDITLAKE_COMPACT_EVERY", value_name = "SPAN")]
    pub compact_every: Option<String>,
    /// Remove hour partitions older than this in the background (`90d`,
    /// `12w`), checked every --compact-every (hourly without it), as
    /// `auditlake retention` does. Keeps everything when not given.
    #[arg(long, env = "AUDITLAKE_RETAIN", value_name = "SPAN")]
    pub retain: Option<String>,
    /// Background vacuum deletes a file once it has been out of the table
    /// this long, so queries that started before keep reading it.
    #[arg(
        long,
        env = "AUDITLAKE_MAINTENANCE_MIN_AGE",
        default_value = "1h",
        value_name = "SPAN"
    )]
    pub maintenance_min_age: String,
}

impl MaintenanceArgs {
    pub fn parse(&self) -> Result<auditlake::pipeline::maintain::Maintenance> {
        let now = now_us();
        let span = |flag: &'static str, v: &Option<String>| -> Result<Option<Duration>> {
            match v {
                None => Ok(None),
                Some(v) => {
                    let d = lake::age(flag, v, now)?;
                    if d.is_zero() {
                        anyhow::bail!(
                            "{flag} {v}: must be a span back from now, such as `1h` or `90d`"
                        );
                    }
                    Ok(Some(d))
                }
            }
        };
        Ok(auditlake::pipeline::maintain::Maintenance {
            compact_every: span("--compact-every", &self.compact_every)?,
            retain: span("--retain", &self.retain)?,
            min_age: lake::age("--maintenance-min-age", &self.maintenance_min_age, now)?,
            target_bytes: 256 << 20,
            memory_limit: 512 << 20,
        })
    }
}

/// librdkafka properties, spelled the same on every command that talks to Kafka.
#[derive(clap::Args, Debug, Clone)]
pub struct KafkaClientArgs {
    /// librdkafka property passed through, as kcat does (TLS, SASL, tuning), e.g.
    /// -X security.protocol=ssl (repeatable; comma-separated in the environment variable).
    #[arg(
        short = 'X',
        long = "kafka-option",
        value_name = "KEY=VALUE",
        env = "AUDITLAKE_KAFKA_OPTIONS",
        value_delimiter = ','
    )]
    pub options: Vec<String>,
}

impl KafkaClientArgs {
    pub fn parse(&self) -> Result<Vec<(String, String)>> {
        Ok(auditlake::sources::kafka::parse_options(&self.options)?)
    }
}

/// `--sort-memory-mb`: how the lake writer orders the rows of a row group.
#[derive(clap::Args, Debug, Clone)]
pub struct SortArgs {
    /// Memory (MiB) for sorting each Parquet row group's rows by resource, then receive time,
    /// before they are encoded: all open partitions together, and past it the rows held are
    /// encoded as a shorter sorted run. A question about one resource (most named queries) then
    /// reads a few pages of each column instead of every page. 0 stores rows in the order they
    /// came: less memory while writing, slower queries.
    #[arg(long, env = "AUDITLAKE_SORT_MEMORY_MB", default_value_t = 256, value_name = "MIB",
          value_parser = clap::value_parser!(u64).range(0..=65_536))]
    pub sort_memory_mb: u64,
}

impl SortArgs {
    pub fn bytes(&self) -> usize {
        (self.sort_memory_mb as usize) << 20
    }
}

/// `--workers`: decode/resolve threads.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct WorkerArgs {
    /// Decode/resolve threads (default: the number of cores).
    #[arg(long, env = "AUDITLAKE_WORKERS", value_parser = clap::value_parser!(u64).range(1..=256))]
    pub workers: Option<u64>,
}

impl WorkerArgs {
    pub fn get(&self) -> usize {
        match self.workers {
            Some(n) => n as usize,
            None => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        }
    }
}

/// A value parser for seconds (`10`, `0.5`) within `min..=max`.
pub fn seconds_in(min: f64, max: f64) -> impl Fn(&str) -> Result<Duration, String> + Clone {
    move |s: &str| {
        let v: f64 = s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a number of seconds"))?;
        if !(min..=max).contains(&v) {
            return Err(format!("{v} s is out of range: {min} to {max} seconds"));
        }
        Ok(Duration::from_secs_f64(v))
    }
}

/// Sizes: `512MiB`, `2GiB`, `1G`, `1500000`, within `min..=max` bytes.
pub fn bytes_in(min: u64, max: u64) -> impl Fn(&str) -> Result<u64, String> + Clone {
    move |s: &str| {
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
        if !(min as f64..=max as f64).contains(&v) {
            return Err(format!(
                "{s:?} is out of range: {} to {}",
                human(min),
                human(max)
            ));
        }
        Ok(v as u64)
    }
}

fn human(b: u64) -> String {
    match b {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{}GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// The one cancellation helper of the long-running commands: a token cancelled on SIGTERM or
/// SIGINT. The handlers are installed when this is called (not when first polled), so a signal
/// that arrives during start-up is not lost to the default action. Must be called inside the
/// runtime. What each command does on cancellation is its shutdown order: stop accepting,
/// drain, commit the lake, commit offsets, exit.
pub fn cancel_on_signal() -> Result<CancellationToken> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("signal received; shutting down");
        cancel.cancel();
    });
    Ok(token)
}

/// `/metrics`, `/healthz` and `/readyz` on `listen` (`--metrics-listen`) until `stop`, for the
/// long-running commands without a server of their own (`consume`, `ingest --follow`).
pub async fn serve_ops(
    listen: std::net::SocketAddr,
    metrics: std::sync::Arc<auditlake::ops::metrics::Metrics>,
    ready: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: CancellationToken,
) -> Result<std::net::SocketAddr> {
    let addr = auditlake::ops::serve(listen, metrics, ready, stop)
        .await
        .with_context(|| format!("cannot listen on --metrics-listen {listen}"))?;
    tracing::info!(%addr, "metrics listening");
    Ok(addr)
}

pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every option can be set from the environment, and a variable means one thing on every
    /// command that reads it.
    #[test]
    fn every_flag_has_one_environment_variable() {
        let mut seen: std::collections::HashMap<String, (String, String)> = Default::default();
        let cli = Cli::command();
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments() {
                let id = arg.get_id().to_string();
                if id == "help" || id == "version" {
                    continue;
                }
                let Some(env) = arg.get_env() else {
                    panic!("`{} --{id}` has no AUDITLAKE_* variable", sub.get_name());
                };
                let env = env.to_string_lossy().into_owned();
                assert!(env.starts_with("AUDITLAKE_"), "{env}");
                let here = (id.clone(), sub.get_name().to_string());
                if let Some((other, on)) = seen.insert(env.clone(), here) {
                    assert_eq!(
                        other,
                        id,
                        "{env} is --{other} on `{on}` but --{id} on `{}`",
                        sub.get_name()
                    );
                    // Shared only where the meaning is the same everywhere (the flag groups,
                    // the lake, the cluster of the events written).
                    const SHARED: &[&str] = &[
                        "AUDITLAKE_LOG",
                        "AUDITLAKE_LAKE_OPTIONS",
                        "AUDITLAKE_LAKE_CACHE",
                        "AUDITLAKE_LAKE",
                        "AUDITLAKE_CLUSTER",
                        "AUDITLAKE_PROFILES",
                        "AUDITLAKE_WORKERS",
                        "AUDITLAKE_SEGMENT_ROWS",
                        "AUDITLAKE_FLUSH_SECONDS",
                        "AUDITLAKE_ROW_GROUP_ROWS",
                        "AUDITLAKE_SORT_MEMORY_MB",
                        "AUDITLAKE_KAFKA_OPTIONS",
                        "AUDITLAKE_BROKERS",
                        "AUDITLAKE_INPUT_FORMAT",
                        "AUDITLAKE_COMPACT_EVERY",
                        "AUDITLAKE_RETAIN",
                        "AUDITLAKE_MAINTENANCE_MIN_AGE",
                        "AUDITLAKE_QUERIES",
                        "AUDITLAKE_SINCE",
                        "AUDITLAKE_UNTIL",
                        "AUDITLAKE_QUERY_CLUSTER",
                        "AUDITLAKE_METRICS_LISTEN",
                        "AUDITLAKE_MEMORY_LIMIT",
                    ];
                    assert!(
                        SHARED.contains(&env.as_str()),
                        "{env} is read by `{on}` and `{}`: give each its own",
                        sub.get_name()
                    );
                }
            }
        }
        assert!(seen.len() > 60, "{} variables", seen.len());
    }

    /// `--help` of every command ends with examples of it, laid out as written.
    #[test]
    fn every_command_has_examples() {
        let mut cli = Cli::command();
        cli.build();
        for sub in cli.get_subcommands_mut() {
            let name = sub.get_name().to_string();
            if name == "help" {
                continue;
            }
            let help = sub.render_long_help().to_string();
            assert!(
                help.contains(&format!("Examples:\n  auditlake {name}")),
                "`auditlake {name} --help` has no examples:\n{help}"
            );
        }
    }

    fn parse(args: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("auditlake").chain(args.split_whitespace()))
    }

    fn refused(args: &str, says: &str) {
        match parse(args) {
            Ok(c) => panic!("`{args}` was accepted: {c:?}"),
            Err(e) => {
                let text = e.to_string();
                assert!(text.contains(says), "`{args}`: {text}");
            }
        }
    }

    /// The rules between flags, and ranges instead of clamps.
    #[test]
    fn flag_rules() {
        refused("serve --flush-seconds 0 --lake l", "0.05 to 86400");
        refused(
            "consume --brokers b --topic t --lake l --flush-seconds 1e9",
            "out of range",
        );
        refused("serve --lake l --segment-rows 0", "0");
        refused("ingest --lake l --workers 0 f", "0");
        refused("serve --tls-cert c --lake l", "--tls-key");
        refused("serve", "--lake");
        refused("serve --kafka-brokers b --lake l", "--kafka-topic");
        refused("query --lake l --named x SELECT", "cannot be used with");
        refused("query --lake l --memory-limit 1KiB SELECT", "out of range");
        refused("loadgen --url u --ca c --cert x", "--key");
        refused("consume --brokers b --lake l", "--topic");
        // One spelling for Kafka client options on every command, short and long.
        for cmd in [
            "serve --kafka-brokers b --kafka-topic t",
            "consume --brokers b --topic t --lake l",
            "produce --brokers b --topic t",
        ] {
            for flag in ["-X", "--kafka-option"] {
                let c = parse(&format!("{cmd} {flag} acks=all")).expect(cmd);
                let options = match c.command {
                    Command::Serve(a) => a.kafka.options,
                    Command::Consume(a) => a.kafka.options,
                    Command::Produce(a) => a.kafka.options,
                    other => panic!("{other:?}"),
                };
                assert_eq!(options, vec!["acks=all".to_string()], "{cmd} {flag}");
            }
        }
        // What clap lets through, the command refuses before it starts.
        let Command::Query(q) = parse("query --lake l --param a=b SELECT")
            .expect("parses")
            .command
        else {
            panic!("query")
        };
        let e = q.validate().expect_err("--param without --named");
        assert!(e.to_string().contains("--named"), "{e}");
        let c = parse("serve --lake l --flush-seconds 0.5").expect("valid");
        let Command::Serve(a) = c.command else {
            panic!("serve")
        };
        assert_eq!(a.commit.flush_seconds, Duration::from_millis(500));
    }

    #[test]
    fn sizes() {
        let p = bytes_in(1 << 20, 1 << 40);
        for (s, want) in [
            ("512MiB", Some(512u64 << 20)),
            ("2GiB", Some(2 << 30)),
            ("1G", Some(1_000_000_000)),
            ("1500000", Some(1_500_000)),
            ("1KiB", None),
            ("lots", None),
            ("3XB", None),
        ] {
            assert_eq!(p(s).ok(), want, "{s}");
        }
    }
}
