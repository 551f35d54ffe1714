//! `auditlake query`: SQL or a named query over the lake, in a window, streamed to stdout.

use super::{bytes_in, now_us, runtime};
use anyhow::{Context, Result};
use auditlake::query::{self, OutputFormat};
use std::io::Write;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::time::Instant;

const EXAMPLES: &str = "Examples:\n  auditlake query --lake L --since 24h --named actor-via-proxy --param actor=alice@example.com\n  auditlake query --lake L --since 2026-11-20T09:00:00Z --until 2026-11-20T10:00:00Z \\\n      \"SELECT actor_username, count(*) FROM requests GROUP BY 1 ORDER BY 2 DESC\"";

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
#[derive(clap::Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// Lake directory.
    #[arg(long, env = "AUDITLAKE_LAKE")]
    lake: PathBuf,
    /// Output format.
    #[arg(long, env = "AUDITLAKE_OUTPUT_FORMAT", value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    /// Run a named query (see `auditlake queries`) instead of SQL.
    #[arg(long, env = "AUDITLAKE_NAMED", conflicts_with_all = ["sql", "file"])]
    named: Option<String>,
    /// Your own named queries: every `NAME.sql` in this directory, in the
    /// format of the shipped ones (`auditlake queries --sql` shows them: a
    /// `-- question:` line, `-- param:` lines, `{{param}}` placeholders),
    /// beside the shipped ones. A file may not take a shipped query's name.
    #[arg(long, env = "AUDITLAKE_QUERIES", value_name = "DIR")]
    queries: Option<PathBuf>,
    /// Read the SQL from this file (`-`: standard input); several statements, each ending
    /// with `;`, run in order.
    #[arg(short, long, env = "AUDITLAKE_SQL_FILE", conflicts_with = "sql")]
    file: Option<PathBuf>,
    /// Named-query parameter `key=value` (repeatable).
    #[arg(
        long = "param",
        value_name = "KEY=VALUE",
        requires = "named",
        env = "AUDITLAKE_PARAMS"
    )]
    params: Vec<String>,
    /// SQL statement(s); `-` reads them from standard input.
    #[arg(required_unless_present_any = ["named", "file"], env = "AUDITLAKE_SQL")]
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
    /// Answer from the lake as it stood at a version of its log (`auditlake
    /// lake history` lists them) or at a time (RFC 3339, a date, or a span
    /// back from now: `2026-11-30T14:00:00Z`, `2h`): what an investigator
    /// saw then, before later compactions, retention or rewrites. Reaches
    /// back as far as `lake vacuum --min-age` keeps replaced files.
    #[arg(long, env = "AUDITLAKE_AS_OF", value_name = "VERSION|TIME")]
    as_of: Option<String>,
    /// Rows a table shows (0: all). Default: 40 on a terminal, all otherwise; CSV and JSON
    /// are never capped.
    #[arg(long, env = "AUDITLAKE_MAX_ROWS")]
    max_rows: Option<usize>,
    /// Characters a table cell shows (0: all). Default: 60 on a terminal, all otherwise.
    #[arg(long, env = "AUDITLAKE_MAX_WIDTH")]
    max_width: Option<usize>,
}

/// The time window and cluster a query sees.
#[derive(clap::Args, Debug)]
pub struct WindowArgs {
    /// Only rows with request_received_at at or after this time: RFC 3339
    /// (`2026-11-20T09:00:00Z`), a date (`2026-11-20`) or a span back from
    /// now (`15m`, `24h`, `7d`).
    #[arg(long, env = "AUDITLAKE_SINCE")]
    pub(super) since: Option<String>,
    /// Only rows received before this time (same forms as --since).
    #[arg(long, env = "AUDITLAKE_UNTIL")]
    pub(super) until: Option<String>,
    /// Only rows of this cluster.
    #[arg(long = "cluster", env = "AUDITLAKE_QUERY_CLUSTER")]
    pub(super) cluster: Option<String>,
}

impl WindowArgs {
    pub(super) fn window(&self) -> Result<query::Window> {
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
    let mine = match &a.queries {
        Some(dir) => query::load_dir(dir)?,
        None => Vec::new(),
    };
    let named = a
        .named
        .map(|n| query::find_named_in(&n, &mine))
        .transpose()?;
    let params = query::parse_params(&a.params)?;
    if let Some(q) = &named {
        // Missing or unknown parameters are reported before the lake
        // is opened.
        q.render(&params, &window)?;
    }
    let as_of = match a.as_of.as_deref() {
        None => None,
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            Some(query::AsOf::Version(v.parse().with_context(|| {
                format!("--as-of {v}: not a version number")
            })?))
        }
        Some(v) => Some(query::AsOf::Time(
            query::window::parse_time("--as-of", v, now_us())? / 1000,
        )),
    };
    // On an object store only the window's partitions are fetched (a named query that reads
    // the history before the window fetches that too).
    let fetch_within = match &named {
        Some(q) => q.relations_window(&window),
        None => window.clone(),
    };
    let opts = query::OpenOptions {
        memory_limit: usize::try_from(a.memory_limit).unwrap_or(usize::MAX),
        damaged: a.damaged,
        as_of,
        fetch_within: Some(fetch_within),
        ..Default::default()
    };
    let terminal = std::io::stdout().is_terminal();
    let cap = |given: Option<usize>, on_terminal: usize| match given {
        Some(0) => None,
        Some(n) => Some(n),
        None => terminal.then_some(on_terminal),
    };
    let limits = query::TableLimits {
        rows: cap(a.max_rows, 40),
        width: cap(a.max_width, 60),
        show_all: None,
    };
    let text = match (&a.file, a.sql.as_deref()) {
        (Some(f), _) if f.as_os_str() == "-" => Some(read_stdin()?),
        (Some(f), _) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read SQL from {}", f.display()))?,
        ),
        (None, Some("-")) => Some(read_stdin()?),
        (None, sql) => sql.map(str::to_string),
    };
    let statements = match &text {
        Some(t) if named.is_none() => split_statements(t)?,
        _ => Vec::new(),
    };
    let (lake, verbose, format) = (a.lake, a.verbose, a.format);
    runtime()?.block_on(async {
        let started = Instant::now();
        let mut lq = query::LakeQuery::open(&lake, &opts).await?;
        let statements = match &named {
            Some(q) => vec![lq.named(q, &params, &window).await?],
            None => {
                lq.set_window(&window).await?;
                statements
            }
        };
        // Rows go out as they are produced (a locked, buffered
        // stdout: one write per few KiB, not per line).
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
        for (i, sql) in statements.iter().enumerate() {
            if i > 0 && format == OutputFormat::Table {
                writeln!(out)?;
            }
            let (rows, report) = lq.write_sql(sql, format, limits, &mut out, verbose).await?;
            out.flush()?;
            if let Some(report) = report {
                eprintln!(
                    "{report}\n{rows} result rows in {:.3}s",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        anyhow::Ok(())
    })
}

fn read_stdin() -> Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read SQL from standard input")?;
    Ok(text)
}

/// The statements of a script, in order: a single statement runs as written; several are split
/// by the SQL parser (so a `;` inside a string literal does not split).
fn split_statements(text: &str) -> Result<Vec<String>> {
    use datafusion::sql::parser::DFParser;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    let parsed = DFParser::parse_sql_with_dialect(text, &PostgreSqlDialect {})
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(match parsed.len() {
        0 => anyhow::bail!("no SQL statement given"),
        1 => vec![text.to_string()],
        _ => parsed.iter().map(|s| s.to_string()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::split_statements;

    #[test]
    fn scripts_split_into_statements() {
        let one = "SELECT 'a;b' AS x";
        assert_eq!(split_statements(one).expect("one"), vec![one.to_string()]);
        let two = split_statements("SELECT 1;\nSELECT 'x;y' AS s;\n").expect("two");
        assert_eq!(two.len(), 2, "{two:?}");
        assert!(two[1].contains("'x;y'"), "{two:?}");
        assert!(split_statements("  ;  ").is_err());
        assert!(split_statements("SELEC 1").is_err());
    }
}
