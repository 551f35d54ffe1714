//! `auditlake report`: what one actor did and how they got in, gathered from the lake into one
//! [`Report`], then rendered as a self-contained HTML page (inline CSS and SVG, no script, no
//! font, no network: it opens on an air-gapped laptop), as Markdown for a ticket, or as JSON.
//!
//! Invariants:
//! - every section is a query over `requests` (one row per request, the identity of the stage
//!   that carried impersonation), restricted to the actor and the window the caller set on the
//!   lake, so the report says exactly what the named queries would;
//! - `requests` is computed once: the actor's requests (and the forged claims naming them) are
//!   spooled to a temporary Parquet file, in the columns the sections use, and every section
//!   reads that. Nine passes over `requests` took 24–25 s for alice@example.com on the
//!   10M-event lake (592,552 requests); the spool keeps memory at one query's, whatever the
//!   actor's share of the lake;
//! - a table holds at most [`ROWS`] rows and says how many it left out; each row of a table of
//!   requests carries its `audit_id`, which `auditlake explain` takes;
//! - everything the lake holds is escaped for its format: a username or a URI is attacker-set
//!   text and must not become markup.

use super::{LakeQuery, QueryError};
use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;
use serde::Serialize;
use std::fmt::Write;
use std::sync::Arc;

/// Rows kept per table.
pub const ROWS: usize = 200;

/// One table of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Table {
    pub title: String,
    /// What the table answers, in a sentence.
    pub about: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Rows the query returned, kept or not.
    pub total: usize,
}

impl Table {
    /// The first [`ROWS`] rows of `sql`'s answer, and how many it had.
    async fn of(
        ctx: &SessionContext,
        title: &str,
        about: &str,
        sql: &str,
    ) -> Result<Table, QueryError> {
        let (kept, total) = super::head(ctx, sql, ROWS).await?;
        let (columns, rows) = strings(&kept)?;
        Ok(Table {
            title: title.into(),
            about: about.into(),
            columns,
            rows,
            total: usize::try_from(total).unwrap_or(usize::MAX),
        })
    }
}

/// One hop chain by which the actor acted: who authenticated, through which proxy, as whom.
#[derive(Debug, Clone, Serialize)]
pub struct Chain {
    pub authenticated_as: String,
    pub proxy: String,
    pub resolution: String,
    pub claim_status: String,
    pub acted_as: String,
    pub requests: u64,
    pub first_seen: String,
    pub last_seen: String,
}

/// Requests per minute or hour and verb class, for the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    /// The bucket's start.
    pub at: String,
    pub class: String,
    pub requests: u64,
}

/// Everything the report shows.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub actor: String,
    pub lake: String,
    pub since: Option<String>,
    pub until: Option<String>,
    pub generated_at: String,
    pub query_seconds: f64,
    pub requests: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub chains: Vec<Chain>,
    /// `minute` when the actor's requests span six hours or less, else `hour`.
    pub bucket: String,
    pub timeline: Vec<Bucket>,
    pub tables: Vec<Table>,
}

/// The verb classes of the timeline, in drawing order, with their colours.
pub const CLASSES: [(&str, &str); 5] = [
    ("read", "#8fb8de"),
    ("write", "#f2b134"),
    ("delete", "#d9534f"),
    ("exec/attach/port-forward", "#7b4fa0"),
    ("denied", "#333333"),
];

const CLASS_SQL: &str =
    "CASE WHEN response_code IN (401, 403) OR decision = 'forbid' THEN 'denied' \
     WHEN subresource IN ('exec', 'attach', 'portforward') THEN 'exec/attach/port-forward' \
     WHEN verb IN ('delete', 'deletecollection') THEN 'delete' \
     WHEN verb IN ('create', 'update', 'patch') THEN 'write' ELSE 'read' END";

const SENSITIVE_SQL: &str = "(resource IN ('secrets', 'roles', 'rolebindings', 'clusterroles', \
     'clusterrolebindings', 'certificatesigningrequests', 'tokenreviews', 'serviceaccounts') \
     OR subresource IN ('exec', 'attach', 'portforward', 'token', 'approval') \
     OR verb IN ('delete', 'deletecollection', 'impersonate', 'escalate', 'bind'))";

fn strings(batches: &[RecordBatch]) -> Result<(Vec<String>, Vec<Vec<String>>), QueryError> {
    let mut columns = Vec::new();
    let mut rows = Vec::new();
    let opts = FormatOptions::default().with_null("");
    for b in batches {
        if columns.is_empty() {
            columns = b
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
        }
        let formatters = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<Vec<_>, _>>()?;
        for i in 0..b.num_rows() {
            rows.push(formatters.iter().map(|f| f.value(i).to_string()).collect());
        }
    }
    Ok((columns, rows))
}

/// Gather the report on `actor` from `lq` (its window already set).
pub async fn gather(
    lq: &LakeQuery,
    actor: &str,
    lake: &str,
    since: Option<String>,
    until: Option<String>,
) -> Result<Report, QueryError> {
    let started = std::time::Instant::now();
    let who = super::sql_literal(actor);
    let spool = Spool::new()?;
    let ctx = lq.context();
    let written = spool
        .fill(
            ctx.sql(&format!(
                "SELECT {SPOOLED}, coalesce(actor_username = {who}, false) AS mine FROM requests \
                 WHERE actor_username = {who} OR (claim_status IN ('spoofed', 'malformed') \
                 AND (original_username = {who} OR strpos(original_claim_raw, {who}) > 0))"
            ))
            .await?,
        )
        .await?;
    // Nothing matched: no file was written (so none can be registered), and every section is
    // empty.
    let gathered = if !written {
        Ok(Sections::default())
    } else {
        ctx.register_parquet(
            SPOOL_TABLE,
            &spool.url,
            datafusion::prelude::ParquetReadOptions::default(),
        )
        .await?;
        let gathered = sections(lq, &who).await;
        let _ = ctx.deregister_table(SPOOL_TABLE);
        gathered
    };
    drop(spool);
    let (summary, chains, bucket, timeline, tables) = gathered?;
    let cell = |i: usize| summary.get(i).cloned().unwrap_or_default();
    Ok(Report {
        actor: actor.to_string(),
        lake: lake.to_string(),
        since,
        until,
        generated_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        query_seconds: started.elapsed().as_secs_f64(),
        requests: cell(0).parse().unwrap_or(0),
        first_seen: cell(1),
        last_seen: cell(2),
        chains,
        bucket,
        timeline,
        tables,
    })
}

/// The name the spooled rows are registered under while the report is gathered.
const SPOOL_TABLE: &str = "auditlake_report_rows";

/// The columns of `requests` the sections read.
const SPOOLED: &str = "request_received_at, audit_id, cluster, verb, resource, subresource, \
     namespace, name, response_code, decision, decision_reason, authn_username, proxy_profile, \
     resolution, claim_status, acted_as_username, actor_username, original_username, \
     original_claim_raw, source_ips, user_agent, credential_id, authn_credential_id";

/// A temporary directory for the spooled rows, removed when dropped (an error included).
struct Spool {
    dir: std::path::PathBuf,
    url: String,
}

impl Spool {
    fn new() -> Result<Spool, QueryError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("auditlake-report-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| {
            QueryError::Report(format!(
                "cannot create a temporary directory {}: {e}; set TMPDIR to a writable one",
                dir.display()
            ))
        })?;
        let url = format!("{}/", dir.display());
        Ok(Spool { dir, url })
    }

    /// Write `df`'s rows into the spool; whether any file was written (none is for no rows).
    async fn fill(&self, df: datafusion::dataframe::DataFrame) -> Result<bool, QueryError> {
        df.write_parquet(
            &self.url,
            datafusion::dataframe::DataFrameWriteOptions::new(),
            None,
        )
        .await?;
        Ok(std::fs::read_dir(&self.dir).is_ok_and(|mut d| d.any(|e| e.is_ok())))
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

type Sections = (Vec<String>, Vec<Chain>, String, Vec<Bucket>, Vec<Table>);

/// Every section, from the spooled rows.
async fn sections(lq: &LakeQuery, who: &str) -> Result<Sections, QueryError> {
    let (_, summary) = strings(
        &lq.sql(&format!(
            "SELECT count(*), min(request_received_at), max(request_received_at) FROM {SPOOL_TABLE} WHERE mine"
        ))
        .await?,
    )?;
    let summary = summary.into_iter().next().unwrap_or_default();
    let cell = |i: usize| summary.get(i).cloned().unwrap_or_default();
    let (_, chain_rows) = strings(
        &lq.sql(&format!(
            "SELECT coalesce(authn_username, ''), coalesce(proxy_profile, ''), coalesce(resolution, ''), \
             coalesce(claim_status, ''), coalesce(acted_as_username, ''), count(*), \
             min(request_received_at), max(request_received_at) \
             FROM {SPOOL_TABLE} WHERE mine GROUP BY 1, 2, 3, 4, 5 ORDER BY 6 DESC, 1, 2, 5"
        ))
        .await?,
    )?;
    let chains = chain_rows
        .into_iter()
        .map(|r| Chain {
            authenticated_as: r[0].clone(),
            proxy: r[1].clone(),
            resolution: r[2].clone(),
            claim_status: r[3].clone(),
            acted_as: r[4].clone(),
            requests: r[5].parse().unwrap_or(0),
            first_seen: r[6].clone(),
            last_seen: r[7].clone(),
        })
        .collect();
    let span = |a: &str, b: &str| -> Option<i64> {
        let a = chrono::DateTime::parse_from_rfc3339(a).ok()?;
        let b = chrono::DateTime::parse_from_rfc3339(b).ok()?;
        Some((b - a).num_hours())
    };
    // An incident of minutes drawn by hour is one bar; by minute it has a shape.
    let bucket = if span(&cell(1), &cell(2)).is_some_and(|h| h <= 6) {
        "minute"
    } else {
        "hour"
    };
    let (_, buckets) = strings(
        &lq.sql(&format!(
            "SELECT date_trunc('{bucket}', request_received_at) AS h, {CLASS_SQL} AS class, count(*) \
             FROM {SPOOL_TABLE} WHERE mine GROUP BY 1, 2 ORDER BY 1, 2"
        ))
        .await?,
    )?;
    let timeline = buckets
        .into_iter()
        .map(|r| Bucket {
            at: r[0].clone(),
            class: r[1].clone(),
            requests: r[2].parse().unwrap_or(0),
        })
        .collect();
    let request_columns = "request_received_at AS time, audit_id, cluster, verb, resource, \
         subresource, namespace, name, response_code, acted_as_username AS acted_as";
    let specs: Vec<(&str, &str, String)> = vec![
        (
            "Sensitive actions",
            "Secrets, RBAC, tokens and certificate requests, exec/attach/port-forward, deletions, impersonation.",
            format!("SELECT {request_columns} FROM {SPOOL_TABLE} WHERE mine AND {SENSITIVE_SQL} ORDER BY 1, 2"),
        ),
        (
            "Denied attempts",
            "Requests answered 401 or 403, or forbidden by the authorizer.",
            format!("SELECT {request_columns}, decision_reason FROM {SPOOL_TABLE} WHERE mine AND (response_code IN (401, 403) OR decision = 'forbid') ORDER BY 1, 2"),
        ),
        (
            "Clusters and namespaces",
            "Where the actor's requests went.",
            format!("SELECT cluster, coalesce(namespace, '(cluster-scoped)') AS namespace, count(*) AS requests, min(request_received_at) AS first_seen, max(request_received_at) AS last_seen FROM {SPOOL_TABLE} WHERE mine GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2"),
        ),
        (
            "Source IPs and user agents",
            "Where the requests came from, as the apiserver saw them (behind a proxy: the proxy's view).",
            format!("SELECT array_to_string(source_ips, ', ') AS source_ips, user_agent, count(*) AS requests FROM {SPOOL_TABLE} WHERE mine GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2"),
        ),
        (
            "Credentials",
            "Credential ids the requests carried (token JTI, certificate hash), the human's and the proxy's.",
            format!("SELECT coalesce(credential_id, '') AS credential_id, coalesce(authn_credential_id, '') AS authn_credential_id, count(*) AS requests, min(request_received_at) AS first_seen, max(request_received_at) AS last_seen FROM {SPOOL_TABLE} WHERE mine GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2"),
        ),
        (
            "Spoofed or malformed claims naming this actor",
            "Requests whose proxy claim names this actor but was not believed: someone else using the name, or a broken proxy.",
            format!("SELECT request_received_at AS time, audit_id, cluster, authn_username, claim_status, verb, resource, namespace, name, original_claim_raw FROM {SPOOL_TABLE} WHERE claim_status IN ('spoofed', 'malformed') AND (original_username = {who} OR actor_username = {who} OR strpos(original_claim_raw, {who}) > 0) ORDER BY 1, 2"),
        ),
    ];
    let mut tables = Vec::new();
    for (title, about, sql) in specs {
        tables.push(Table::of(lq.context(), title, about, &sql).await?);
    }
    Ok((summary, chains, bucket.to_string(), timeline, tables))
}

/// A cluster's (or the whole lake's) overview: the named queries an incident starts from.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub cluster: Option<String>,
    pub lake: String,
    pub since: Option<String>,
    pub until: Option<String>,
    pub generated_at: String,
    pub query_seconds: f64,
    /// Rows stored in the window (0: nothing to report on).
    pub stored_rows: u64,
    /// Requests through a proxy or impersonation, or carrying a proxy's claim.
    pub requests: u64,
    /// Their distinct actors.
    pub actors: u64,
    pub tables: Vec<Table>,
}

/// The named queries of the overview, in order.
pub const OVERVIEW: [&str; 4] = [
    "proxy-summary",
    "who-acted-as-whom",
    "spoofed-malformed-claims",
    "privileged-impersonation",
];

/// The requests any of [`OVERVIEW`] can answer with: each query's `WHERE` implies this (a query
/// added to the overview must keep it so; `tests/report.rs` compares each table's row count with
/// the named query's over the lake).
const OVERVIEW_REQUESTS: &str =
    "proxy_profile IS NOT NULL OR resolution <> 'direct' OR claim_status IN ('spoofed', 'malformed')";

/// The columns of `requests` that [`OVERVIEW`] reads.
const OVERVIEW_COLUMNS: &str = "request_received_at, audit_id, cluster, verb, resource, namespace, \
     name, decision, decision_reason, source_ips, user_agent, authn_username, impersonated_username, \
     proxy_profile, resolution, claim_status, impersonation_constraint, original_claim_raw, \
     actor_username, acted_as_username, acted_as_groups";

/// Gather the overview of what `window` admits (its cluster, its time): each of [`OVERVIEW`],
/// answered as `auditlake query --named` answers it.
///
/// `requests` is deduplicated once, not once per query: the requests of [`OVERVIEW_REQUESTS`]
/// are spooled to a temporary Parquet file, and each named query runs on that file under the
/// name `requests`. (With each query deduplicating the lake on its own, the overview of the
/// 10M-event lake took 7.1–7.4 s; now 3.5–3.6 s.)
pub async fn overview(
    lq: &mut LakeQuery,
    window: &super::Window,
    lake: &str,
    since: Option<String>,
    until: Option<String>,
) -> Result<Overview, QueryError> {
    let started = std::time::Instant::now();
    lq.set_window(window).await?;
    let (_, stored) = strings(&lq.sql("SELECT count(*) FROM audit").await?)?;
    let stored_rows = stored
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let spool = Spool::new()?;
    let df = lq
        .context()
        .sql(&format!(
            "SELECT {OVERVIEW_COLUMNS} FROM requests WHERE {OVERVIEW_REQUESTS}"
        ))
        .await?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let written = spool.fill(df).await?;
    let ctx = lq.scratch();
    if !written {
        // Nothing matched and no file was written: the queries answer on no rows.
        let empty = datafusion::datasource::MemTable::try_new(schema, vec![Vec::new()])?;
        ctx.register_table("requests", Arc::new(empty))?;
    } else {
        ctx.register_parquet(
            "requests",
            &spool.url,
            datafusion::prelude::ParquetReadOptions::default(),
        )
        .await?;
    }
    let (_, summary) = strings(
        &ctx.sql("SELECT count(*), count(DISTINCT actor_username) FROM requests")
            .await?
            .collect()
            .await?,
    )?;
    let summary = summary.into_iter().next().unwrap_or_default();
    let cell = |i: usize| -> u64 { summary.get(i).and_then(|v| v.parse().ok()).unwrap_or(0) };
    let mut tables = Vec::new();
    for name in OVERVIEW {
        let q = super::find_named(name)?;
        let sql = q.render(&Default::default(), window)?;
        tables.push(Table::of(&ctx, name, &q.question, &sql).await?);
    }
    drop(ctx);
    drop(spool);
    Ok(Overview {
        cluster: window.cluster.clone(),
        lake: lake.to_string(),
        since,
        until,
        generated_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        query_seconds: started.elapsed().as_secs_f64(),
        stored_rows,
        requests: cell(0),
        actors: cell(1),
        tables,
    })
}

fn overview_intro(o: &Overview) -> (String, String) {
    let scope = match &o.cluster {
        Some(c) => format!("cluster {c}"),
        None => "every cluster".to_string(),
    };
    (scope, window_words(&o.since, &o.until))
}

/// The overview as Markdown.
pub fn overview_markdown(o: &Overview) -> String {
    let (scope, window) = overview_intro(o);
    let mut out = format!(
        "# Who acted in {}\n\nLake `{}`, {window}; {} rows stored; {} requests through a proxy or impersonation, or with a proxy's claim, by {} actors. Generated {} in {:.2} s by auditlake.\n",
        md_escape(&scope),
        o.lake,
        o.stored_rows,
        o.requests,
        o.actors,
        o.generated_at,
        o.query_seconds
    );
    for t in &o.tables {
        table_md(&mut out, t);
    }
    out
}

/// The overview as one self-contained HTML page.
pub fn overview_html(o: &Overview) -> String {
    let (scope, window) = overview_intro(o);
    let mut out = String::new();
    page_head(&mut out, &format!("auditlake: who acted in {scope}"));
    let _ = write!(
        out,
        r#"<h1>Who acted in {}</h1><p class="meta">Lake <code>{}</code>, {}. {} rows stored; {} requests through a proxy or impersonation, or with a proxy's claim, by {} actors. Generated {} in {:.2} s by auditlake. <code>auditlake report --lake LAKE --actor NAME</code> reports on one of them.</p>"#,
        html_escape(&scope),
        html_escape(&o.lake),
        html_escape(&window),
        o.stored_rows,
        o.requests,
        o.actors,
        html_escape(&o.generated_at),
        o.query_seconds
    );
    for t in &o.tables {
        table_html(&mut out, t, &o.lake);
    }
    out.push_str("</body></html>\n");
    out
}

fn window_text(r: &Report) -> String {
    window_words(&r.since, &r.until)
}

/// A window in words, as both reports state it.
fn window_words(since: &Option<String>, until: &Option<String>) -> String {
    match (since, until) {
        (None, None) => "the whole lake".into(),
        (Some(s), None) => format!("from {s}"),
        (None, Some(u)) => format!("until {u}"),
        (Some(s), Some(u)) => format!("{s} to {u}"),
    }
}

fn chain_text(c: &Chain, actor: &str) -> String {
    let mut hops = vec![actor.to_string()];
    if c.authenticated_as != actor && !c.authenticated_as.is_empty() {
        hops.push(if c.proxy.is_empty() {
            c.authenticated_as.clone()
        } else {
            format!("{} ({})", c.authenticated_as, c.proxy)
        });
    }
    if !c.acted_as.is_empty() && c.acted_as != actor {
        hops.push(format!("as {}", c.acted_as));
    }
    hops.join(" → ")
}

/// Markdown for a ticket.
pub fn markdown(r: &Report) -> String {
    let esc = md_escape;
    let mut out = String::new();
    let _ = writeln!(out, "# What {} did\n", esc(&r.actor));
    let _ = writeln!(
        out,
        "Lake `{}`, {}; {} requests, first {}, last {}. Generated {} in {:.2} s by auditlake.\n",
        r.lake,
        window_text(r),
        r.requests,
        r.first_seen,
        r.last_seen,
        r.generated_at,
        r.query_seconds
    );
    let _ = writeln!(out, "## How they got in\n");
    let _ = writeln!(
        out,
        "| chain | resolution | claim | requests | first seen | last seen |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for c in &r.chains {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            esc(&chain_text(c, &r.actor)),
            esc(&c.resolution),
            esc(&c.claim_status),
            c.requests,
            c.first_seen,
            c.last_seen
        );
    }
    let _ = writeln!(out, "\n## Requests per {}\n", r.bucket);
    let _ = writeln!(out, "| {} | class | requests |", r.bucket);
    let _ = writeln!(out, "|---|---|---|");
    for b in &r.timeline {
        let _ = writeln!(out, "| {} | {} | {} |", b.at, b.class, b.requests);
    }
    for t in &r.tables {
        table_md(&mut out, t);
    }
    out
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn table_md(out: &mut String, t: &Table) {
    let _ = writeln!(
        out,
        "\n## {}\n\n{}\n",
        md_escape(&t.title),
        md_escape(&t.about)
    );
    if t.rows.is_empty() {
        let _ = writeln!(out, "None.");
        return;
    }
    let _ = writeln!(out, "| {} |", t.columns.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(t.columns.len()));
    for row in &t.rows {
        let cells: Vec<String> = row.iter().map(|c| md_escape(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    if t.total > t.rows.len() {
        let _ = writeln!(
            out,
            "\n{} more rows not shown; `auditlake query` gives them all.",
            t.total - t.rows.len()
        );
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The identity chains as an SVG diagram: one row per chain, a box per hop, arrows between.
fn chains_svg(r: &Report) -> String {
    let (box_w, box_h, gap, row_h) = (230.0, 46.0, 50.0, 70.0);
    let rows = r.chains.len().max(1);
    let width = 3.0 * box_w + 2.0 * gap + 20.0;
    let height = rows as f64 * row_h + 10.0;
    let mut svg = format!(
        r##"<svg width="{width}" height="{height}" role="img" aria-label="identity chains"><defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>"##
    );
    for (i, c) in r.chains.iter().enumerate() {
        let y = 10.0 + i as f64 * row_h;
        let proxy = if c.authenticated_as == r.actor || c.authenticated_as.is_empty() {
            "(directly)".to_string()
        } else if c.proxy.is_empty() {
            c.authenticated_as.clone()
        } else {
            format!("{} · {}", c.proxy, c.authenticated_as)
        };
        let acted = if c.acted_as.is_empty() {
            r.actor.clone()
        } else {
            c.acted_as.clone()
        };
        let hops = [
            (r.actor.clone(), "#e8f1fb".to_string()),
            (
                proxy,
                if c.claim_status == "spoofed" || c.claim_status == "malformed" {
                    "#fbe3e3".to_string()
                } else {
                    "#f4f4f4".to_string()
                },
            ),
            (format!("as {acted}"), "#fdf3df".to_string()),
        ];
        for (k, (label, fill)) in hops.iter().enumerate() {
            let x = 10.0 + k as f64 * (box_w + gap);
            let shown: String = if label.chars().count() > 34 {
                let mut s: String = label.chars().take(33).collect();
                s.push('…');
                s
            } else {
                label.clone()
            };
            let _ = write!(
                svg,
                r##"<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="6" fill="{fill}" stroke="#888"><title>{}</title></rect><text x="{}" y="{}" font-size="12" text-anchor="middle">{}</text>"##,
                html_escape(label),
                x + box_w / 2.0,
                y + 28.0,
                html_escape(&shown)
            );
            if k < 2 {
                let x1 = x + box_w;
                let _ = write!(
                    svg,
                    r##"<line x1="{x1}" y1="{}" x2="{}" y2="{}" stroke="#555" marker-end="url(#arrow)"/>"##,
                    y + box_h / 2.0,
                    x1 + gap - 2.0,
                    y + box_h / 2.0
                );
            }
        }
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" font-size="11" fill="#444">{} requests · {} · {} to {}</text>"##,
            10.0,
            y + box_h + 14.0,
            c.requests,
            html_escape(&c.resolution),
            html_escape(&c.first_seen),
            html_escape(&c.last_seen)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The timeline as stacked bars per bucket, coloured by verb class.
fn timeline_svg(r: &Report) -> String {
    let mut hours: Vec<&str> = r.timeline.iter().map(|b| b.at.as_str()).collect();
    hours.dedup();
    let per_hour = |h: &str| -> u64 {
        r.timeline
            .iter()
            .filter(|b| b.at == h)
            .map(|b| b.requests)
            .sum()
    };
    let max = hours.iter().map(|h| per_hour(h)).max().unwrap_or(1).max(1) as f64;
    // A fixed width, so the axis labels and the legend always fit; bars share it.
    let width = 900.0;
    let bar = ((width - 60.0) / hours.len().max(1) as f64).clamp(3.0, 60.0);
    let (height, top) = (180.0, 10.0);
    let mut svg = format!(
        r#"<svg width="{width}" height="{}" role="img" aria-label="requests per hour">"#,
        height + 60.0
    );
    for (i, h) in hours.iter().enumerate() {
        let x = 50.0 + i as f64 * bar;
        let mut y = top + height;
        for (class, colour) in CLASSES {
            let n: u64 = r
                .timeline
                .iter()
                .filter(|b| b.at == *h && b.class == class)
                .map(|b| b.requests)
                .sum();
            if n == 0 {
                continue;
            }
            let bh = n as f64 / max * height;
            y -= bh;
            let _ = write!(
                svg,
                r#"<rect x="{x}" y="{y}" width="{}" height="{bh}" fill="{colour}"><title>{} {class}: {n}</title></rect>"#,
                (bar - 1.0).max(1.0),
                html_escape(h)
            );
        }
    }
    let _ = write!(
        svg,
        r##"<text x="0" y="{}" font-size="11">{}</text><text x="0" y="{}" font-size="11">0</text>"##,
        top + 10.0,
        max as u64,
        top + height
    );
    // The first and the last hour, under the first and the last bar (the last a line lower,
    // so that two labels of a narrow chart do not overlap).
    if let (Some(first), Some(last)) = (hours.first(), hours.last()) {
        let _ = write!(
            svg,
            r##"<text x="50" y="{}" font-size="11">{}</text>"##,
            top + height + 14.0,
            html_escape(first)
        );
        if hours.len() > 1 {
            let _ = write!(
                svg,
                r##"<text x="{}" y="{}" font-size="11" text-anchor="end">{}</text>"##,
                (50.0 + bar * hours.len() as f64).max(300.0),
                top + height + 27.0,
                html_escape(last)
            );
        }
    }
    let mut lx = 50.0;
    for (class, colour) in CLASSES {
        let _ = write!(
            svg,
            r#"<rect x="{lx}" y="{}" width="10" height="10" fill="{colour}"/><text x="{}" y="{}" font-size="11">{class}</text>"#,
            top + height + 34.0,
            lx + 14.0,
            top + height + 43.0
        );
        lx += 14.0 + 8.0 * class.len() as f64 + 16.0;
    }
    svg.push_str("</svg>");
    svg
}

fn table_html(out: &mut String, t: &Table, lake: &str) {
    let _ = write!(
        out,
        "<h2>{}</h2><p class=\"meta\">{}</p>",
        html_escape(&t.title),
        html_escape(&t.about)
    );
    if t.rows.is_empty() {
        out.push_str("<p>None.</p>");
        return;
    }
    out.push_str("<table><thead><tr>");
    for c in &t.columns {
        let _ = write!(out, "<th>{}</th>", html_escape(c));
    }
    out.push_str("</tr></thead><tbody>");
    let id_col = t.columns.iter().position(|c| c == "audit_id");
    for row in &t.rows {
        out.push_str("<tr>");
        for (i, v) in row.iter().enumerate() {
            if Some(i) == id_col {
                let _ = write!(
                    out,
                    "<td><code title=\"auditlake explain --lake {} {}\">{}</code></td>",
                    html_escape(lake),
                    html_escape(v),
                    html_escape(v)
                );
            } else {
                let _ = write!(out, "<td>{}</td>", html_escape(v));
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    if t.total > t.rows.len() {
        let _ = write!(
            out,
            "<p class=\"more\">{} more rows not shown; <code>auditlake query</code> gives them all.</p>",
            t.total - t.rows.len()
        );
    }
}

/// The page's head: title, the policy that forbids loading anything, the style.
fn page_head(out: &mut String, title: &str) {
    let _ = write!(
        out,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:"><title>{}</title><style>
body{{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em;color:#222;max-width:1200px}}
h1{{font-size:1.5em}} h2{{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}}
table{{border-collapse:collapse;font-size:12px;margin:.5em 0}} th,td{{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}}
th{{background:#f4f4f4}} code{{font-size:11px}} .meta{{color:#555}} .more{{color:#a00}}
td{{max-width:420px;overflow-wrap:anywhere}}
</style></head><body>"#,
        html_escape(title)
    );
}

/// One self-contained HTML page.
pub fn html(r: &Report) -> String {
    let mut out = String::new();
    page_head(&mut out, &format!("auditlake: what {} did", r.actor));
    let _ = write!(
        out,
        r#"<h1>What <code>{}</code> did</h1><p class="meta">Lake <code>{}</code>, {}. {} requests, first {}, last {}. Generated {} in {:.2} s by auditlake. Each request is named by its <code>audit_id</code>: <code>auditlake explain --lake LAKE AUDIT_ID</code> says why it resolved as it did.</p>"#,
        html_escape(&r.actor),
        html_escape(&r.lake),
        html_escape(&window_text(r)),
        r.requests,
        html_escape(&r.first_seen),
        html_escape(&r.last_seen),
        html_escape(&r.generated_at),
        r.query_seconds
    );
    let _ = write!(out, "<h2>How they got in</h2>{}", chains_svg(r));
    let _ = write!(
        out,
        "<h2>Requests per {}</h2>{}",
        html_escape(&r.bucket),
        timeline_svg(r)
    );
    for t in &r.tables {
        table_html(&mut out, t, &r.lake);
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            actor: "<script>alert(1)</script>".into(),
            lake: "L".into(),
            since: None,
            until: None,
            generated_at: "now".into(),
            query_seconds: 0.1,
            requests: 1,
            first_seen: "a".into(),
            last_seen: "b".into(),
            bucket: "hour".into(),
            chains: vec![Chain {
                authenticated_as: "proxy\"x".into(),
                proxy: "pinniped".into(),
                resolution: "proxy".into(),
                claim_status: "trusted".into(),
                acted_as: "as|<b>".into(),
                requests: 1,
                first_seen: "a".into(),
                last_seen: "b".into(),
            }],
            timeline: vec![],
            tables: vec![Table {
                title: "T".into(),
                about: "x".into(),
                columns: vec!["audit_id".into(), "name".into()],
                rows: vec![vec!["id&1".into(), "</td><img src=x>".into()]],
                total: 3,
            }],
        }
    }

    /// Attacker-set text never becomes markup, in either format.
    #[test]
    fn lake_text_is_escaped() {
        let r = report();
        let h = html(&r);
        for bad in ["<script>", "<b>", "<img src=x>", "proxy\"x"] {
            assert!(!h.contains(bad), "{bad} unescaped in the HTML");
        }
        assert!(h.contains("&lt;script&gt;"));
        assert!(h.contains("2 more rows not shown"));
        let m = markdown(&r);
        assert!(m.contains("as\\|<b>"), "a | in a cell is escaped: {m}");
        assert!(!m.contains("| as|"), "{m}");
    }
}
