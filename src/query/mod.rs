//! SQL over the lake with DataFusion, and the named forensic queries.
//!
//! Four relations are registered, each restricted to the query's
//! [`Window`] (`--since`, `--until`, `--cluster`); `lake.audit`,
//! `lake.audit_events`, `lake.requests` and `lake.audit_id_reuse` are the
//! same without it:
//! - `audit`: every stored row; `dt` and `hour` are partition columns, so
//!   filters on them prune whole directories;
//! - `audit_events`: one row per event: the same event stored twice
//!   (webhook retries, replays) counts once;
//! - `requests`: one row per request: the last stage, with the identity
//!   columns of the stage that carried impersonation (`RequestReceived`
//!   never does);
//! - `audit_id_reuse`: the rows of `requests` whose audit ID another
//!   request carries too.
//!
//! `audit_events` and `requests` are computed per hour partition by
//! [`relations`] (the keys, and why a reused Audit-ID cannot hide a
//! request, are explained there); [`reference`] is their definition in
//! plain SQL. Memory is bounded by a DataFusion memory pool
//! ([`OpenOptions::memory_limit`]): sorts and aggregations spill to disk
//! past it, and a partition too large to deduplicate within it fails with
//! an error that says so instead of taking the machine's memory.

pub mod damaged;
pub mod explain;
pub mod named;
pub mod reference;
pub mod relations;
pub mod report;
pub mod stats;
pub mod window;

pub use named::{
    find_named, find_named_in, load_dir, named_queries, parse_params, sql_literal, NamedQuery,
    NAMED,
};
pub use window::{Window, WindowError};

use crate::schema::record_schema;
use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::catalog::MemorySchemaProvider;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use relations::{list_partitions, Kind, Relation};
use stats::{ScanStats, StatsReport};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("lake {0} does not exist; ingest something first (`auditlake ingest --lake {0} FILE`) or run `auditlake demo`")]
    NoLake(String),
    #[error("lake {0} is a file, not a directory; --lake names the directory that holds dt=…/hour=… partitions")]
    LakeIsFile(String),
    #[error("the query needs more memory than --memory-limit allows: {0}\nhint: narrow it with --since/--until or --cluster, or raise --memory-limit")]
    Memory(String),
    #[error("{0}")]
    DataFusion(datafusion::error::DataFusionError),
    #[error("output error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error(
        "unknown named query `{0}`; `auditlake queries` lists them (with --queries DIR, yours too)"
    )]
    UnknownQuery(String),
    #[error("named query {path}: {problem}")]
    UserQuery { path: String, problem: String },
    #[error("query `{query}` has no parameter `{param}`; it takes: {known}{}", if *.window { ". The time window is set with --since/--until, not --param" } else { "" })]
    UnknownParam {
        query: String,
        param: String,
        known: String,
        window: bool,
    },
    #[error("query `{query}` needs --param {param}=VALUE ({description}); it has no default, so that no question is answered about a subject nobody named")]
    MissingParam {
        query: String,
        param: String,
        description: String,
    },
    #[error(
        "query `{query}` uses {{{{{name}}}}}, which it does not declare (a bug in the query file)"
    )]
    UndeclaredPlaceholder { query: String, name: String },
    #[error("parameter `{0}` must look like key=value")]
    BadParam(String),
    #[error(transparent)]
    Window(#[from] WindowError),
    #[error("{} damaged Parquet file(s) in the lake; a query over them would silently miss their rows:\n{}\nhint: restore them from a backup or re-ingest their source; `auditlake verify --lake LAKE` lists them, `--damaged skip` queries without them", .0.len(), .0.iter().map(|d| format!("  {}: {}", d.path.display(), d.problem)).collect::<Vec<_>>().join("\n"))]
    Damaged(Vec<crate::sinks::lake::check::Damage>),
    #[error("this lake on an object store was fetched for {fetched} only, and {asked} reaches outside it, where rows were not fetched; open it with the wider --since/--until")]
    OutsideFetched { fetched: String, asked: String },
    #[error("explain: {0}")]
    Explain(String),
    #[error("report: {0}")]
    Report(String),
    #[error(transparent)]
    Lake(crate::sinks::lake::LakeError),
    #[error("--as-of: {0}")]
    AsOf(String),
    #[error("unknown table `{0}`; the lake's relations are {rels} (each also as lake.NAME, without --since/--until/--cluster); SHOW TABLES lists everything", rels = RELATIONS.join(", "))]
    UnknownTable(String),
    #[error("no column `{0}`; `auditlake schema` lists the record's columns with a description of each, and `DESCRIBE requests` shows a relation's")]
    UnknownColumn(String),
}

impl From<datafusion::error::DataFusionError> for QueryError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        match e.find_root() {
            datafusion::error::DataFusionError::ResourcesExhausted(m) => {
                QueryError::Memory(m.clone())
            }
            datafusion::error::DataFusionError::SchemaError(se, _)
                if matches!(
                    se.as_ref(),
                    datafusion::common::SchemaError::FieldNotFound { .. }
                ) =>
            {
                match se.as_ref() {
                    datafusion::common::SchemaError::FieldNotFound { field, .. } => {
                        QueryError::UnknownColumn(field.name().to_string())
                    }
                    _ => QueryError::DataFusion(e),
                }
            }
            datafusion::error::DataFusionError::Plan(m)
                if m.starts_with("table '") && m.ends_with("' not found") =>
            {
                let full = &m["table '".len()..m.len() - "' not found".len()];
                let name = full.rsplit('.').next().unwrap_or(full);
                QueryError::UnknownTable(name.to_string())
            }
            _ => QueryError::DataFusion(e),
        }
    }
}

/// The relations a query sees (each also as `lake.NAME`, without the window).
pub const RELATIONS: [&str; 4] = ["audit", "audit_events", "requests", "audit_id_reuse"];

/// What each of [`RELATIONS`] holds, in the same order (`auditlake shell`'s `.tables`): one
/// length for both, so a relation added to one cannot be missing from the other.
pub const RELATION_MEANINGS: [&str; RELATIONS.len()] = [
    "every stored row (retried deliveries included)",
    "one row per event: the same event delivered twice counts once",
    "one row per request: its last stage, with the identity of the stage that carried impersonation",
    "the requests whose audit ID another request also carried (a client may set it)",
];

/// How a lake is opened for queries.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Bytes the query engine's operators may hold at once (sorts and
    /// aggregations spill beyond it); the partitions being deduplicated
    /// may hold half as much again, and fail beyond it.
    pub memory_limit: usize,
    /// What to do about damaged Parquet files.
    pub damaged: damaged::Damaged,
    /// Hash buckets the `audit_id_reuse` pass starts with (1; it splits
    /// by itself when the audit IDs do not fit in memory).
    pub reuse_buckets: u64,
    /// Answer from the table as it stood at a version or a time (time travel).
    pub as_of: Option<AsOf>,
    /// On an object store: fetch only the hour partitions that can hold rows received in this
    /// window's `since`..`until` (its cluster plays no part), and answer only within it
    /// ([`LakeQuery::set_window`] refuses a window that reaches outside). `None`: every
    /// partition. A directory lake reads what a query needs anyway and ignores it.
    pub fetch_within: Option<Window>,
}

/// A past state of the lake's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// A version of the Delta log (`auditlake lake history` lists them).
    Version(u64),
    /// The newest version committed at or before this time (ms since the epoch).
    Time(i64),
}

/// The files of the lake at `root` as it stood at `as_of` that `keep` takes (by lake-relative
/// path), and the version that is.
pub fn files_as_of(
    root: &Path,
    as_of: AsOf,
    keep: &dyn Fn(&str) -> bool,
) -> Result<(u64, Vec<PathBuf>), QueryError> {
    use crate::sinks::lake::{delta, verify};
    if !delta::exists(root) {
        return Err(QueryError::AsOf(format!(
            "lake {} has no Delta log, so it has no history; `auditlake lake convert` it (its history starts then)",
            root.display()
        )));
    }
    let newest = verify::versions(root)
        .map_err(QueryError::Lake)?
        .last()
        .copied()
        .unwrap_or(0);
    let version = match as_of {
        AsOf::Version(v) if v > newest => {
            return Err(QueryError::AsOf(format!(
                "version {v} is newer than the lake's newest, {newest}; `auditlake lake history` lists its versions"
            )))
        }
        AsOf::Version(v) => v,
        AsOf::Time(ms) => verify::version_at(root, ms)
            .map_err(QueryError::Lake)?
            .ok_or_else(|| {
                QueryError::AsOf(format!(
                    "the lake's first commit is after {}; `auditlake lake history` lists its versions",
                    chrono::DateTime::from_timestamp_millis(ms)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_else(|| ms.to_string())
                ))
            })?,
    };
    let files = delta::Log::live_at(root, version).map_err(QueryError::Lake)?;
    let mut out = Vec::with_capacity(files.len());
    for f in files.into_iter().filter(|f| keep(&f.rel)) {
        let path = root.join(&f.rel);
        if !path.exists() {
            return Err(QueryError::AsOf(format!(
                "version {version} reads {}, which `lake vacuum` has deleted since it was replaced: time travel reaches back as far as vacuum's --min-age keeps replaced files; restore the file from a backup to read that version",
                f.rel
            )));
        }
        out.push(path);
    }
    Ok((version, out))
}

/// Bring the mirror of the lake on an object store up to date for a query (as of `as_of`),
/// and return its directory.
pub fn mirror(
    remote: &crate::sinks::lake::store::Remote,
    as_of: Option<AsOf>,
    within: Option<&Window>,
) -> Result<PathBuf, QueryError> {
    let dir = remote.sync_log().map_err(QueryError::Lake)?;
    // No log under that prefix: a wrong URL or nothing written yet, not an empty answer.
    if !crate::sinks::lake::delta::exists(&dir) {
        return Err(QueryError::NoLake(remote.url.clone()));
    }
    let version = match as_of {
        None => None,
        Some(AsOf::Version(v)) => Some(v),
        // A time before the first commit is refused by `files_as_of`, with its message.
        Some(AsOf::Time(ms)) => {
            crate::sinks::lake::verify::version_at(&dir, ms).map_err(QueryError::Lake)?
        }
    };
    let newest = crate::sinks::lake::verify::versions(&dir)
        .map_err(QueryError::Lake)?
        .last()
        .copied();
    let version = version.filter(|v| newest.is_some_and(|n| *v <= n));
    let keep = |rel: &str| within.is_none_or(|w| partition_may_hold(rel, w));
    let got = remote
        .sync_files(version, &keep)
        .map_err(QueryError::Lake)?;
    if got.downloaded > 0 || got.removed > 0 {
        tracing::info!(
            lake = %remote.url,
            mirror = %dir.display(),
            downloaded = got.downloaded,
            bytes = got.bytes,
            removed = got.removed,
            "mirror of the lake brought up to date"
        );
    }
    Ok(dir)
}

/// Whether every time `inner` admits, `outer` admits too.
fn window_inside(inner: &Window, outer: &Window) -> bool {
    outer
        .since
        .is_none_or(|s| inner.since.is_some_and(|t| t >= s))
        && outer
            .until
            .is_none_or(|u| inner.until.is_some_and(|t| t <= u))
}

/// Whether the hour partition that `rel` (`dt=YYYY-MM-DD/hour=HH/…`, lake-relative) names can
/// hold a row received in `w`'s `since`..`until` (the rule `reresolve` and `compact` visit hours
/// by). A path that names no partition is kept.
pub fn partition_may_hold(rel: &str, w: &Window) -> bool {
    let hours = crate::sinks::lake::reresolve::Hours {
        since_us: w.since,
        until_us: w.until,
    };
    hours.admits_hour_of(Path::new(rel)).unwrap_or(true)
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            memory_limit: 1 << 30,
            damaged: damaged::Damaged::Fail,
            reuse_buckets: 1,
            as_of: None,
            fetch_within: None,
        }
    }
}

/// An opened lake: one DataFusion session, reused by every statement.
pub struct LakeQuery {
    ctx: SessionContext,
    root: PathBuf,
    stats: Arc<ScanStats>,
    window: Window,
    /// The window whose partitions were fetched from the object store (see
    /// [`OpenOptions::fetch_within`]).
    within: Option<Window>,
}

impl LakeQuery {
    /// Register the lake at `root` (unrestricted: see [`LakeQuery::set_window`]).
    pub async fn open(root: &Path, opts: &OpenOptions) -> Result<LakeQuery, QueryError> {
        // A lake on an object store is queried through its mirror (lake/store.rs): the log and
        // the live files, fetched and checked first.
        let mirrored;
        let remote = crate::sinks::lake::store::remote(root).map_err(QueryError::Lake)?;
        // Only a mirror holds part of the table: a directory lake answers every window.
        let within = remote.as_ref().and(opts.fetch_within.clone());
        let root = match remote {
            Some(r) => {
                mirrored = mirror(&r, opts.as_of, within.as_ref())?;
                mirrored.as_path()
            }
            None => root,
        };
        if root.is_file() {
            return Err(QueryError::LakeIsFile(root.display().to_string()));
        }
        if !root.is_dir() {
            return Err(QueryError::NoLake(root.display().to_string()));
        }
        let abs = std::fs::canonicalize(root)
            .map_err(|_| QueryError::NoLake(root.display().to_string()))?;
        // The generic dialect accepts trailing commas in a projection, which makes
        // `SELECT verb, cluster` stop at the (reserved) word CLUSTER; PostgreSQL's
        // dialect reads `cluster` as the column it is.
        // information_schema: SHOW TABLES and SHOW COLUMNS work as users expect.
        let config = SessionConfig::new()
            .set_str("datafusion.sql_parser.dialect", "PostgreSQL")
            .with_information_schema(true);
        // The limit for the query engine's operators (sorts and
        // aggregations spill within it), and half as much again for the
        // partitions the relations deduplicate, which cannot spill (see
        // `Relation::with_pool`). Splitting one limit in halves starved
        // the sorts instead: actor-timeline over 100M events failed in a
        // sort's merge with 512 MB.
        let readers: Arc<dyn datafusion::execution::memory_pool::MemoryPool> = Arc::new(
            datafusion::execution::memory_pool::GreedyMemoryPool::new(opts.memory_limit / 2),
        );
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(opts.memory_limit)))
            .build_arc()?;
        // `JoinFilters` runs last: it reads the dynamic filters that the
        // filter pushdown rules have just placed.
        let state = datafusion::execution::SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(relations::JoinFilters))
            .build();
        let ctx = SessionContext::new_with_state(state);
        let mut live = match opts.as_of {
            None => crate::sinks::lake::live_files(&abs).map_err(QueryError::Lake)?,
            // Of a mirror, only the files of the window were fetched.
            Some(at) => {
                files_as_of(&abs, at, &|rel| {
                    within.as_ref().is_none_or(|w| partition_may_hold(rel, w))
                })?
                .1
            }
        };
        if let Some(w) = &within {
            // The files outside the window were not fetched: they are not missing, and the
            // tables must not list a copy an earlier query left in the mirror either.
            live.retain(|p| {
                crate::sinks::lake::rel_path(&abs, p).is_none_or(|r| partition_may_hold(&r, w))
            });
        }
        let damage = crate::sinks::lake::check::damaged(&live, false);
        let store_path = |p: &std::path::Path| {
            datafusion::object_store::path::Path::from_filesystem_path(p)
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
        };
        // With a Delta log, the files on disk that it does not name (an interrupted commit's,
        // a compacted one's before vacuum, one being committed right now) are never listed.
        let only = if crate::sinks::lake::delta::exists(&abs) {
            let mut set = std::collections::HashSet::new();
            for p in &live {
                set.insert(store_path(p)?);
            }
            Some((store_path(&abs)?, set))
        } else {
            None
        };
        let mut hidden = std::collections::HashSet::new();
        if !damage.is_empty() {
            if opts.damaged == damaged::Damaged::Fail {
                return Err(QueryError::Damaged(damage));
            }
            for d in &damage {
                eprintln!(
                    "warning: skipping damaged {}: {} (its rows are missing from this answer)",
                    d.path.display(),
                    d.problem
                );
                hidden.insert(store_path(&d.path)?);
            }
        }
        if only.is_some() || !hidden.is_empty() {
            let local = ctx.runtime_env().object_store(
                datafusion::execution::object_store::ObjectStoreUrl::local_filesystem(),
            )?;
            ctx.runtime_env().register_object_store(
                datafusion::execution::object_store::ObjectStoreUrl::local_filesystem().as_ref(),
                Arc::new(damaged::Hiding::new(local, hidden, only)),
            );
        }
        let mut url = abs.display().to_string();
        if !url.ends_with('/') {
            url.push('/');
        }
        let table_url = ListingTableUrl::parse(&url)?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![
                ("dt".to_string(), DataType::Utf8),
                ("hour".to_string(), DataType::Utf8),
            ]);
        let config = ListingTableConfig::new(table_url)
            .with_listing_options(options)
            .with_schema(record_schema());
        let table = ListingTable::try_new(config)?;
        let catalog = ctx
            .catalog("datafusion")
            .ok_or_else(|| datafusion::error::DataFusionError::Internal("no catalog".into()))?;
        catalog.register_schema("lake", Arc::new(MemorySchemaProvider::new()))?;
        let stats = Arc::new(ScanStats::default());
        ctx.register_table("lake.audit", Arc::new(table))?;
        ctx.register_table(
            "lake.audit_events",
            Arc::new(Relation::new(Kind::Events, &abs, stats.clone()).with_pool(readers.clone())),
        )?;
        ctx.register_table(
            "lake.requests",
            Arc::new(Relation::new(Kind::Requests, &abs, stats.clone()).with_pool(readers.clone())),
        )?;
        ctx.register_table(
            "lake.audit_id_reuse",
            Arc::new(
                Relation::new(Kind::Reused, &abs, stats.clone())
                    .with_reuse_buckets(opts.reuse_buckets)
                    .with_pool(readers.clone()),
            ),
        )?;
        let lake = LakeQuery {
            ctx,
            root: abs,
            stats,
            window: Window::default(),
            within,
        };
        lake.create_views(&lake.window).await?;
        Ok(lake)
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// A session of its own (no tables yet) under this one's settings and
    /// memory pool: for SQL over rows spooled from the lake, under the
    /// names a named query expects, without touching the lake's views.
    pub fn scratch(&self) -> SessionContext {
        let state = datafusion::execution::SessionStateBuilder::new()
            .with_config(self.ctx.copied_config())
            .with_runtime_env(self.ctx.runtime_env())
            .with_default_features()
            .build();
        SessionContext::new_with_state(state)
    }

    pub fn window(&self) -> &Window {
        &self.window
    }

    /// Restrict `audit`, `audit_events` and `requests` to `window`.
    pub async fn set_window(&mut self, window: &Window) -> Result<(), QueryError> {
        if let Some(w) = &self.within {
            if !window_inside(window, w) {
                return Err(QueryError::OutsideFetched {
                    fetched: window::describe(w),
                    asked: window::describe(window),
                });
            }
        }
        if *window != self.window {
            self.create_views(window).await?;
            self.window = window.clone();
        }
        Ok(())
    }

    /// (Re)create the public views over `lake.*`, restricted to `window`.
    async fn create_views(&self, window: &Window) -> Result<(), QueryError> {
        let filter = window
            .predicate()
            .map(|p| format!(" WHERE {p}"))
            .unwrap_or_default();
        for t in RELATIONS {
            self.ctx
                .sql(&format!(
                    "CREATE OR REPLACE VIEW {t} AS SELECT * FROM lake.{t}{filter}"
                ))
                .await?
                .collect()
                .await?;
        }
        Ok(())
    }

    /// Run one statement and collect the result.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
        let df = self.ctx.sql(sql).await?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        Ok(with_schema(df.collect().await?, schema))
    }

    /// What the executed `plan` read and skipped.
    fn report(&self, plan: &dyn datafusion::physical_plan::ExecutionPlan) -> LakeReport {
        self.stats.absorb(plan);
        let parts = list_partitions(&self.root).unwrap_or_default();
        LakeReport {
            lake_partitions: parts.len() as u64,
            lake_files: parts.iter().map(|p| p.files as u64).sum(),
            scan: self.stats.snapshot(),
        }
    }

    /// Run one statement and write its rows to `out` in `format`. CSV and
    /// JSON are written batch by batch as they are produced, so a result
    /// of any size needs no more memory than the query itself (rendering a
    /// 600,000-row timeline into one string took 3.1 GB at 100M events);
    /// a table needs every row for its column widths and collects them.
    /// Returns the row count, and with `stats` what the statement read.
    pub async fn write_sql(
        &self,
        sql: &str,
        format: OutputFormat,
        limits: TableLimits,
        out: &mut dyn std::io::Write,
        stats: bool,
    ) -> Result<(u64, Option<LakeReport>), QueryError> {
        use futures::StreamExt;
        self.stats.reset();
        let plan = self.ctx.sql(sql).await?.create_physical_plan().await?;
        let schema = plan.schema();
        let mut rows = 0u64;
        match format {
            OutputFormat::Table => {
                // Only the rows that will be shown are kept; the rest are counted as they
                // stream past, so a table of a huge answer costs what it shows.
                let mut stream =
                    datafusion::physical_plan::execute_stream(plan.clone(), self.ctx.task_ctx())?;
                let mut kept: Vec<RecordBatch> = Vec::new();
                let mut kept_rows = 0usize;
                while let Some(batch) = stream.next().await {
                    let batch = batch?;
                    rows += batch.num_rows() as u64;
                    let room = limits
                        .rows
                        .map_or(usize::MAX, |n| n.saturating_sub(kept_rows));
                    if room > 0 && batch.num_rows() > 0 {
                        let take = batch.num_rows().min(room);
                        kept.push(batch.slice(0, take));
                        kept_rows += take;
                    }
                }
                let kept = with_schema(kept, schema);
                let shown = match limits.width {
                    Some(w) => truncate_cells(&kept, w)?,
                    None => kept,
                };
                let omitted = rows - kept_rows as u64;
                writeln!(out, "{}", render(&shown, OutputFormat::Table)?)
                    .and_then(|_| match (rows, omitted) {
                        (0, _) => writeln!(out, "0 rows"),
                        (_, 0) => Ok(()),
                        (r, o) => writeln!(
                            out,
                            "{r} rows, {kept_rows} shown; {o} more not shown ({})",
                            limits.show_all.unwrap_or(
                                "--max-rows 0 shows all; --format csv or json is never capped"
                            )
                        ),
                    })
                    .map_err(arrow::error::ArrowError::from)?;
            }
            OutputFormat::Csv | OutputFormat::Json => {
                // Each batch is formatted on a blocking thread while the
                // next one is computed: the last operator of a sorted
                // answer (the merge) runs on this thread, and formatting
                // here too left one of two cores idle at the end of every
                // large answer.
                let mut stream =
                    datafusion::physical_plan::execute_stream(plan.clone(), self.ctx.task_ctx())?;
                let mut pending: Option<tokio::task::JoinHandle<Result<Vec<u8>, QueryError>>> =
                    None;
                let mut next = Some(schema.clone());
                while let Some(batch) = stream.next().await {
                    let batch = batch?;
                    rows += batch.num_rows() as u64;
                    let header = next.take().is_some();
                    let job =
                        tokio::task::spawn_blocking(move || encode_batch(format, header, &batch));
                    if let Some(done) = pending.replace(job) {
                        write_encoded(out, done.await)?;
                    }
                }
                if let Some(done) = pending {
                    write_encoded(out, done.await)?;
                }
                if let Some(schema) = next {
                    // A header, even for no rows.
                    let empty = RecordBatch::new_empty(schema);
                    out.write_all(&encode_batch(format, true, &empty)?)
                        .map_err(arrow::error::ArrowError::from)?;
                }
            }
            OutputFormat::Line => {
                let mut stream =
                    datafusion::physical_plan::execute_stream(plan.clone(), self.ctx.task_ctx())?;
                let mut sink = LineSink { out, rows: 0 };
                while let Some(batch) = stream.next().await {
                    let batch = batch?;
                    rows += batch.num_rows() as u64;
                    sink.write(&batch)?;
                }
            }
        }
        Ok((rows, stats.then(|| self.report(plan.as_ref()))))
    }

    /// Run a named query under `window` (a query that needs history sees
    /// everything before `--until`).
    pub async fn named(
        &mut self,
        q: &NamedQuery,
        params: &BTreeMap<String, String>,
        window: &Window,
    ) -> Result<String, QueryError> {
        let sql = q.render(params, window)?;
        self.set_window(&q.relations_window(window)).await?;
        Ok(sql)
    }
}

/// Run one statement in `ctx`, keeping its first `n` rows and counting the others as they
/// stream past: a report shows a few hundred rows of answers that may hold hundreds of
/// thousands (the overview's privileged-impersonation: 336,000 on 10M events, each turned into
/// strings before this).
pub async fn head(
    ctx: &SessionContext,
    sql: &str,
    n: usize,
) -> Result<(Vec<RecordBatch>, u64), QueryError> {
    use futures::StreamExt;
    let df = ctx.sql(sql).await?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let mut stream = df.execute_stream().await?;
    let (mut kept, mut kept_rows, mut total) = (Vec::new(), 0usize, 0u64);
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        total += batch.num_rows() as u64;
        let take = batch.num_rows().min(n.saturating_sub(kept_rows));
        if take > 0 {
            kept.push(batch.slice(0, take));
            kept_rows += take;
        }
    }
    Ok((with_schema(kept, schema), total))
}

/// How much of an answer a table shows (a terminal's worth by default; CSV and JSON are never
/// capped).
#[derive(Debug, Clone, Copy, Default)]
pub struct TableLimits {
    /// At most this many rows (`None`: all).
    pub rows: Option<usize>,
    /// Cells cut to this many characters, with `…` (`None`: whole).
    pub width: Option<usize>,
    /// How to see every row, said under a capped table (`None`: `auditlake query`'s flags).
    pub show_all: Option<&'static str>,
}

/// `batches` with every cell as text of at most `width` characters.
fn truncate_cells(batches: &[RecordBatch], width: usize) -> Result<Vec<RecordBatch>, QueryError> {
    use arrow::array::{Array, ArrayRef, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let schema = Arc::new(Schema::new(
        first
            .schema()
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let opts = arrow::util::display::FormatOptions::default().with_null("");
    let mut out = Vec::new();
    for b in batches {
        let mut cols: Vec<ArrayRef> = Vec::new();
        for c in b.columns() {
            let f = arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &opts)?;
            let cells: StringArray = (0..c.len())
                .map(|i| {
                    if c.is_null(i) {
                        return None;
                    }
                    let text = f.value(i).to_string();
                    Some(if text.chars().count() > width {
                        let mut t: String = text.chars().take(width.saturating_sub(1)).collect();
                        t.push('…');
                        t
                    } else {
                        text
                    })
                })
                .collect();
            cols.push(Arc::new(cells));
        }
        out.push(RecordBatch::try_new(schema.clone(), cols)?);
    }
    Ok(out)
}

/// An empty result as one empty batch, so that it still has columns to
/// print (a header in CSV, column names in a table).
fn with_schema(batches: Vec<RecordBatch>, schema: arrow::datatypes::SchemaRef) -> Vec<RecordBatch> {
    if batches.is_empty() {
        vec![RecordBatch::new_empty(schema)]
    } else {
        batches
    }
}

/// What a statement read, for `query -v`.
#[derive(Debug, Clone, Copy)]
pub struct LakeReport {
    pub lake_partitions: u64,
    pub lake_files: u64,
    pub scan: StatsReport,
}

impl std::fmt::Display for LakeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "lake: {} files in {} hour partitions",
            self.lake_files, self.lake_partitions
        )?;
        write!(f, "{}", self.scan)
    }
}

/// Output formats of `auditlake query` (also its `--format` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// A table (capped on a terminal: see --max-rows).
    Table,
    Csv,
    /// JSON lines: one object per row.
    Json,
    /// One `column = value` line per column, a blank line between rows: for wide rows.
    Line,
}

/// Render nested columns (lists, maps) as text so CSV can carry them.
fn flatten_nested(batch: &RecordBatch) -> Result<RecordBatch, QueryError> {
    let opts = FormatOptions::default();
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if f.data_type().is_nested() {
            let fmt = ArrayFormatter::try_new(c.as_ref(), &opts)?;
            let values: StringArray = (0..c.len())
                .map(|i| (!c.is_null(i)).then(|| fmt.value(i).to_string()))
                .collect();
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            cols.push(Arc::new(values));
        } else {
            fields.push(f.as_ref().clone());
            cols.push(c.clone());
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

/// Format query results.
pub fn render(batches: &[RecordBatch], format: OutputFormat) -> Result<String, QueryError> {
    if format == OutputFormat::Table {
        return Ok(arrow::util::pretty::pretty_format_batches(batches)?.to_string());
    }
    let mut buf = Vec::new();
    if format == OutputFormat::Line {
        let mut sink = LineSink {
            out: &mut buf,
            rows: 0,
        };
        for b in batches {
            sink.write(b)?;
        }
    } else {
        for (i, b) in batches.iter().enumerate() {
            buf.extend(encode_batch(format, i == 0, b)?);
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// One batch as CSV (with the header if `header`) or JSON lines.
fn encode_batch(
    format: OutputFormat,
    header: bool,
    batch: &RecordBatch,
) -> Result<Vec<u8>, QueryError> {
    let mut buf = Vec::new();
    match format {
        OutputFormat::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
            w.write(batch)?;
            w.finish()?;
        }
        _ => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(header)
                .build(&mut buf);
            w.write(&flatten_nested(batch)?)?;
        }
    }
    Ok(buf)
}

fn write_encoded(
    out: &mut dyn std::io::Write,
    done: Result<Result<Vec<u8>, QueryError>, tokio::task::JoinError>,
) -> Result<(), QueryError> {
    let bytes =
        done.map_err(|e| QueryError::Arrow(arrow::error::ArrowError::ExternalError(Box::new(e))))??;
    out.write_all(&bytes)
        .map_err(arrow::error::ArrowError::from)?;
    Ok(())
}

/// `--format line`: one `column = value` line per column, a blank line between rows.
struct LineSink<W: std::io::Write> {
    out: W,
    /// Rows written so far.
    rows: u64,
}

impl<W: std::io::Write> LineSink<W> {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), QueryError> {
        let schema = batch.schema();
        let width = schema
            .fields()
            .iter()
            .map(|f| f.name().chars().count())
            .max()
            .unwrap_or(0);
        let opts = arrow::util::display::FormatOptions::default().with_null("NULL");
        let cols = batch
            .columns()
            .iter()
            .map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<Vec<_>, _>>()?;
        for r in 0..batch.num_rows() {
            if self.rows > 0 {
                writeln!(self.out).map_err(arrow::error::ArrowError::from)?;
            }
            self.rows += 1;
            for (f, c) in schema.fields().iter().zip(&cols) {
                writeln!(self.out, "{:>width$} = {}", f.name(), c.value(r))
                    .map_err(arrow::error::ArrowError::from)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{partition_may_hold, window_inside, Window};

    const H: i64 = 3_600_000_000;
    /// 2026-11-20T08:00:00Z in microseconds.
    const T8: i64 = 1_795_161_600_000_000;

    fn w(since: Option<i64>, until: Option<i64>) -> Window {
        Window {
            cluster: None,
            since,
            until,
        }
    }

    #[test]
    fn a_partition_is_fetched_when_its_hour_meets_the_window() {
        let p = "dt=2026-11-20/hour=08/f.parquet";
        for (window, want) in [
            (w(None, None), true),
            (w(Some(T8), Some(T8 + H)), true),
            (w(Some(T8 + H - 1), None), true),
            (w(Some(T8 + H), None), false),
            (w(None, Some(T8)), false),
            (w(None, Some(T8 + 1)), true),
            (w(Some(T8 - 5 * H), Some(T8 - H)), false),
        ] {
            assert_eq!(partition_may_hold(p, &window), want, "{window:?}");
        }
        // Not a partition path: kept.
        for odd in [
            "f.parquet",
            "dt=x/hour=08/f.parquet",
            "dt=2026-11-20/hour=zz/f",
        ] {
            assert!(partition_may_hold(odd, &w(Some(T8 + H), None)), "{odd}");
        }
    }

    #[test]
    fn a_window_is_inside_another_only_if_both_bounds_are() {
        for (inner, outer, want) in [
            (w(None, None), w(None, None), true),
            (w(Some(T8), Some(T8 + H)), w(None, None), true),
            (w(Some(T8), Some(T8 + H)), w(Some(T8), Some(T8 + H)), true),
            (w(None, Some(T8 + H)), w(Some(T8), Some(T8 + H)), false),
            (w(Some(T8 - 1), Some(T8 + H)), w(Some(T8), None), false),
            (w(Some(T8), None), w(Some(T8), Some(T8 + H)), false),
            (
                w(Some(T8), Some(T8 + 2 * H)),
                w(Some(T8), Some(T8 + H)),
                false,
            ),
        ] {
            assert_eq!(
                window_inside(&inner, &outer),
                want,
                "{inner:?} in {outer:?}"
            );
        }
    }
}
