//! `audit_events` and `requests` written as plain SQL: the definition
//! `relations` must agree with, row for row.
//!
//! These views cost as much as the whole lake whatever the question (two
//! window functions and a join over every row), so they are not what
//! queries run on. They are the specification: the differential test
//! (`tests/relations.rs`) compares them with `relations` on generated
//! lakes, and `benches/query.sh` gives them to DuckDB, which runs them on
//! the same files. They use only SQL that DataFusion and DuckDB share.

use crate::schema::{column_names, IDENTITY_COLUMNS, PARTITION_COLUMNS};

/// The order of stages, latest last (`relations::stage_rank`).
pub const STAGE_RANK: &str = "CASE stage WHEN 'RequestReceived' THEN 0 WHEN 'ResponseStarted' THEN 1 WHEN 'ResponseComplete' THEN 2 WHEN 'Panic' THEN 3 ELSE -1 END";

fn all_columns() -> Vec<&'static str> {
    column_names().chain(PARTITION_COLUMNS).collect()
}

/// A row without an audit ID is a request of its own: its `source`.
const SOLO: &str = "CASE WHEN audit_id IS NULL THEN source END";

const REQUEST_PARTITION: &str =
    "cluster, audit_id, solo__, request_received_at, authn_username, verb, request_uri";

/// `SELECT` of `audit_events` over the relation `from`.
pub fn audit_events_sql(from: &str) -> String {
    let cols = all_columns().join(", ");
    format!(
        "SELECT {cols} FROM (\
           SELECT *, ROW_NUMBER() OVER (\
             PARTITION BY cluster, audit_id, {SOLO}, request_received_at, authn_username, verb, request_uri, stage, stage_at \
             ORDER BY source) AS rn__ FROM {from}) t__ \
         WHERE rn__ = 1"
    )
}

/// `SELECT` of `requests` over the relation `from`.
pub fn requests_sql(from: &str) -> String {
    let cols: Vec<String> = all_columns()
        .into_iter()
        .map(|c| {
            if IDENTITY_COLUMNS.contains(&c) {
                format!("i__.{c} AS {c}")
            } else {
                format!("l__.{c} AS {c}")
            }
        })
        .collect();
    let on: Vec<String> = REQUEST_PARTITION
        .split(", ")
        .map(|c| format!("(l__.{c} IS NOT DISTINCT FROM i__.{c})"))
        .collect();
    format!(
        "WITH e__ AS (SELECT *, {SOLO} AS solo__ FROM {from}), \
              l__ AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY {REQUEST_PARTITION} \
                        ORDER BY {STAGE_RANK} DESC, stage_at DESC NULLS LAST, source) AS rn__ FROM e__), \
              i__ AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY {REQUEST_PARTITION} \
                        ORDER BY CASE WHEN impersonated_username IS NULL THEN 0 ELSE 1 END DESC, \
                                 {STAGE_RANK} DESC, stage_at DESC NULLS LAST, source) AS rn__ FROM e__) \
         SELECT {} FROM l__ JOIN i__ ON {} \
         WHERE l__.rn__ = 1 AND i__.rn__ = 1",
        cols.join(", "),
        on.join(" AND ")
    )
}

/// `SELECT` of `audit_id_reuse` over the `requests` relation named
/// `requests`.
pub fn audit_id_reuse_sql(requests: &str) -> String {
    format!(
        "SELECT r__.* FROM {requests} r__ JOIN (\
           SELECT cluster, audit_id FROM {requests} WHERE audit_id IS NOT NULL \
           GROUP BY cluster, audit_id HAVING COUNT(*) > 1) m__ \
         ON r__.cluster = m__.cluster AND r__.audit_id = m__.audit_id"
    )
}
