//! `auditlake query`: SQL or a named query over the lake, in a window, streamed to stdout.

use super::{bytes_in, now_us, runtime};
use anyhow::Result;
use auditlake::query::{self, OutputFormat};
use clap::ValueEnum;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

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
#[derive(clap::Args, Debug)]
pub struct Args {
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
    /// Memory the query engine may hold (e.g. `512MiB`, `2GiB`; 1MiB to 1024TiB); sorts
    /// and aggregations spill to disk beyond it. The partitions being
    /// deduplicated take up to half as much again.
    #[arg(long, env = "AUDITLAKE_MEMORY_LIMIT", default_value = "1GiB",
          value_parser = bytes_in(1 << 20, 1 << 50))]
    memory_limit: u64,
    /// What to do about damaged Parquet files (zero length, truncated):
    /// `fail` names them and answers nothing; `skip` answers without
    /// them and names them in a warning.
    #[arg(long, env = "AUDITLAKE_DAMAGED", value_enum, default_value_t = query::damaged::Damaged::Fail)]
    damaged: query::damaged::Damaged,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OutFormat {
    Table,
    Csv,
    Json,
}

/// The time window and cluster a query sees.
#[derive(clap::Args, Debug)]
pub struct WindowArgs {
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

impl Args {
    /// The rules clap cannot state: `--param` with SQL would be silently ignored (clap drops
    /// `requires = "named"` because `--named` conflicts with the SQL given).
    pub fn validate(&self) -> Result<()> {
        if self.named.is_none() && !self.params.is_empty() {
            anyhow::bail!(
                "--param only fills a named query's parameters (--named NAME); in SQL, write the value in the statement"
            );
        }
        Ok(())
    }
}

pub fn run(a: Args) -> Result<()> {
    a.validate()?;
    let window = a.window.window()?;
    let named = a.named.map(|n| query::find_named(&n)).transpose()?;
    let params = query::parse_params(&a.params)?;
    if let Some(q) = &named {
        // Missing or unknown parameters are reported before the lake
        // is opened.
        q.render(&params, &window)?;
    }
    let format = match a.format {
        OutFormat::Table => OutputFormat::Table,
        OutFormat::Csv => OutputFormat::Csv,
        OutFormat::Json => OutputFormat::Json,
    };
    let opts = query::OpenOptions {
        memory_limit: usize::try_from(a.memory_limit).unwrap_or(usize::MAX),
        damaged: a.damaged,
        ..Default::default()
    };
    let (lake, sql, verbose) = (a.lake, a.sql, a.verbose);
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
    })
}
