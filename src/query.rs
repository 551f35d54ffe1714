//! SQL over the lake with DataFusion, and the named forensic queries.
//!
//! Three relations are registered:
//! - `audit`: every stored row; `dt` and `hour` are partition columns, so
//!   filters on them prune whole directories;
//! - `audit_events`: one row per (`cluster`, `audit_id`, `stage`), removing
//!   the duplicates that webhook retries and replays produce upstream;
//! - `requests`: one row per (`cluster`, `audit_id`): the last stage, with
//!   the identity columns of the stage that carried impersonation
//!   (`RequestReceived` never does).
//!
//! Named queries live in `queries/*.sql`, embedded at build time. A header
//! of `--` comments states the question and declares parameters as
//! `-- param: NAME = DEFAULT -- description`; the body refers to them as
//! `{{NAME}}`, replaced by a quoted SQL string literal.

use crate::schema::{column_names, record_schema, IDENTITY_COLUMNS};
use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::{SessionConfig, SessionContext};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("lake {0} does not exist; ingest something first (`auditlake ingest --lake {0} FILE`) or run `auditlake demo`")]
    NoLake(String),
    #[error("SQL error: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("output error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("unknown named query `{0}`; `auditlake queries` lists them")]
    UnknownQuery(String),
    #[error("query `{query}` has no parameter `{param}`; it takes: {known}")]
    UnknownParam {
        query: String,
        param: String,
        known: String,
    },
    #[error("parameter `{0}` must look like key=value")]
    BadParam(String),
}

/// The named queries shipped in `queries/`.
pub const NAMED: &[(&str, &str)] = &[
    (
        "actor-via-proxy",
        include_str!("../queries/actor-via-proxy.sql"),
    ),
    (
        "who-acted-as-whom",
        include_str!("../queries/who-acted-as-whom.sql"),
    ),
    (
        "privileged-impersonation",
        include_str!("../queries/privileged-impersonation.sql"),
    ),
    (
        "secrets-by-humans",
        include_str!("../queries/secrets-by-humans.sql"),
    ),
    (
        "exec-attach-portforward",
        include_str!("../queries/exec-attach-portforward.sql"),
    ),
    (
        "spoofed-malformed-claims",
        include_str!("../queries/spoofed-malformed-claims.sql"),
    ),
    ("rbac-changes", include_str!("../queries/rbac-changes.sql")),
    (
        "tokens-minted",
        include_str!("../queries/tokens-minted.sql"),
    ),
    (
        "credential-usage",
        include_str!("../queries/credential-usage.sql"),
    ),
    (
        "denied-per-actor",
        include_str!("../queries/denied-per-actor.sql"),
    ),
    (
        "anonymous-allowed",
        include_str!("../queries/anonymous-allowed.sql"),
    ),
    (
        "token-unexpected-pod",
        include_str!("../queries/token-unexpected-pod.sql"),
    ),
    (
        "events-deleted",
        include_str!("../queries/events-deleted.sql"),
    ),
    (
        "first-seen-actors",
        include_str!("../queries/first-seen-actors.sql"),
    ),
    (
        "actor-timeline",
        include_str!("../queries/actor-timeline.sql"),
    ),
    (
        "proxy-summary",
        include_str!("../queries/proxy-summary.sql"),
    ),
];

/// A parsed named query.
#[derive(Debug, Clone)]
pub struct NamedQuery {
    pub name: &'static str,
    pub question: String,
    /// (name, default, description)
    pub params: Vec<(String, String, String)>,
    pub body: &'static str,
}

impl NamedQuery {
    pub fn parse(name: &'static str, text: &'static str) -> NamedQuery {
        let mut question = String::new();
        let mut params = Vec::new();
        for line in text.lines() {
            let Some(c) = line.strip_prefix("--") else {
                break;
            };
            let c = c.trim();
            if let Some(q) = c.strip_prefix("question:") {
                question = q.trim().to_string();
            } else if let Some(p) = c.strip_prefix("param:") {
                let (decl, desc) = p.split_once("--").unwrap_or((p, ""));
                let (pname, default) = decl.split_once('=').unwrap_or((decl, ""));
                params.push((
                    pname.trim().to_string(),
                    default.trim().to_string(),
                    desc.trim().to_string(),
                ));
            }
        }
        NamedQuery {
            name,
            question,
            params,
            body: text,
        }
    }

    /// The SQL with parameters substituted (`given` overrides defaults).
    pub fn render(&self, given: &BTreeMap<String, String>) -> Result<String, QueryError> {
        for k in given.keys() {
            if !self.params.iter().any(|(p, ..)| p == k) {
                return Err(QueryError::UnknownParam {
                    query: self.name.to_string(),
                    param: k.clone(),
                    known: self
                        .params
                        .iter()
                        .map(|p| p.0.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        let mut sql = self.body.to_string();
        for (p, default, _) in &self.params {
            let v = given.get(p).unwrap_or(default);
            sql = sql.replace(&format!("{{{{{p}}}}}"), &sql_literal(v));
        }
        Ok(sql)
    }
}

/// A SQL string literal.
pub fn sql_literal(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

pub fn named_queries() -> Vec<NamedQuery> {
    NAMED.iter().map(|(n, t)| NamedQuery::parse(n, t)).collect()
}

pub fn find_named(name: &str) -> Result<NamedQuery, QueryError> {
    named_queries()
        .into_iter()
        .find(|q| q.name == name)
        .ok_or_else(|| QueryError::UnknownQuery(name.to_string()))
}

/// Parse `key=value` parameters.
pub fn parse_params(raw: &[String]) -> Result<BTreeMap<String, String>, QueryError> {
    raw.iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| QueryError::BadParam(p.clone()))
        })
        .collect()
}

const STAGE_RANK: &str = "CASE stage WHEN 'RequestReceived' THEN 0 WHEN 'ResponseStarted' THEN 1 WHEN 'ResponseComplete' THEN 2 WHEN 'Panic' THEN 3 ELSE -1 END";

fn all_columns() -> Vec<&'static str> {
    column_names().chain(["dt", "hour"]).collect()
}

/// `CREATE VIEW audit_events`.
pub fn audit_events_sql() -> String {
    let cols = all_columns().join(", ");
    format!(
        "CREATE VIEW audit_events AS SELECT {cols} FROM (\
           SELECT *, ROW_NUMBER() OVER (PARTITION BY cluster, COALESCE(audit_id, source), stage \
                                        ORDER BY stage_at, source) AS rn__ FROM audit) \
         WHERE rn__ = 1"
    )
}

/// `CREATE VIEW requests`.
pub fn requests_sql() -> String {
    let cols: Vec<String> = all_columns()
        .into_iter()
        .map(|c| {
            if IDENTITY_COLUMNS.contains(&c) {
                format!("i.{c} AS {c}")
            } else {
                format!("l.{c} AS {c}")
            }
        })
        .collect();
    format!(
        "CREATE VIEW requests AS \
         WITH l AS (SELECT *, COALESCE(audit_id, source) AS k__, ROW_NUMBER() OVER (\
                      PARTITION BY cluster, COALESCE(audit_id, source) \
                      ORDER BY {STAGE_RANK} DESC, stage_at DESC) AS rn__ FROM audit_events), \
              i AS (SELECT *, COALESCE(audit_id, source) AS k__, ROW_NUMBER() OVER (\
                      PARTITION BY cluster, COALESCE(audit_id, source) \
                      ORDER BY CASE WHEN impersonated_username IS NULL THEN 1 ELSE 0 END, {STAGE_RANK} DESC, stage_at DESC) AS rn__ \
                    FROM audit_events) \
         SELECT {} FROM l JOIN i ON l.cluster = i.cluster AND l.k__ = i.k__ \
         WHERE l.rn__ = 1 AND i.rn__ = 1",
        cols.join(", ")
    )
}

/// A DataFusion session with the lake at `root` registered.
pub async fn open_lake(root: &Path) -> Result<SessionContext, QueryError> {
    if !root.is_dir() {
        return Err(QueryError::NoLake(root.display().to_string()));
    }
    let abs =
        std::fs::canonicalize(root).map_err(|_| QueryError::NoLake(root.display().to_string()))?;
    // The generic dialect accepts trailing commas in a projection, which makes
    // `SELECT verb, cluster` stop at the (reserved) word CLUSTER; PostgreSQL's
    // dialect reads `cluster` as the column it is.
    let config = SessionConfig::new().set_str("datafusion.sql_parser.dialect", "PostgreSQL");
    let ctx = SessionContext::new_with_config(config);
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
    ctx.register_table("audit", Arc::new(table))?;
    ctx.sql(&audit_events_sql()).await?.collect().await?;
    ctx.sql(&requests_sql()).await?.collect().await?;
    Ok(ctx)
}

/// Run one statement and collect the result.
pub async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    Ok(ctx.sql(sql).await?.collect().await?)
}

/// Output formats of `auditlake query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
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
    match format {
        OutputFormat::Table => Ok(arrow::util::pretty::pretty_format_batches(batches)?.to_string()),
        OutputFormat::Csv => {
            let mut buf = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut buf);
                for b in batches {
                    w.write(&flatten_nested(b)?)?;
                }
            }
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        OutputFormat::Json => {
            let mut buf = Vec::new();
            {
                let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
                for b in batches {
                    w.write(b)?;
                }
                w.finish()?;
            }
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_query_file_is_registered_and_documented() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("queries");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .expect("queries dir")
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".sql"))
                    .map(str::to_string)
            })
            .collect();
        files.sort();
        let mut names: Vec<String> = NAMED.iter().map(|n| n.0.to_string()).collect();
        names.sort();
        assert_eq!(files, names, "queries/ and query::NAMED differ");
        assert!(names.len() >= 15);
        for q in named_queries() {
            assert!(!q.question.is_empty(), "{} has no question header", q.name);
            for (p, ..) in &q.params {
                assert!(
                    q.body.contains(&format!("{{{{{p}}}}}")),
                    "{}: {p} unused",
                    q.name
                );
            }
            let rendered = q.render(&BTreeMap::new()).expect("renders");
            assert!(!rendered.contains("{{"), "{}: unreplaced parameter", q.name);
        }
    }

    #[test]
    fn params_are_quoted() {
        let q = NamedQuery::parse(
            "t",
            "-- question: q\n-- param: actor = a -- who\nSELECT {{actor}}",
        );
        let mut given = BTreeMap::new();
        given.insert("actor".to_string(), "o'brien".to_string());
        assert_eq!(
            q.render(&given).expect("render"),
            "-- question: q\n-- param: actor = a -- who\nSELECT 'o''brien'"
        );
        given.insert("nope".to_string(), "x".to_string());
        assert!(q.render(&given).is_err());
    }
}
