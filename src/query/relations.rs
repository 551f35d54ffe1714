//! `audit_events`, `requests` and `audit_id_reuse`, computed one hour
//! partition at a time.
//!
//! Both relations remove rows that the raw `audit` table holds more than
//! once. The invariant that makes it cheap: every stage of a request has the
//! same `requestReceivedTimestamp`, and the lake's partition
//! (`dt=…/hour=…`) is a pure function of it (`lake::batch::PartKey`). So
//! every row that could be a duplicate of a row, or another stage of its
//! request, lies in the same hour partition, and each partition is
//! deduplicated on its own: memory grows with one hour of data, not with
//! the lake, and a query touches only the partitions its filters leave.
//!
//! Keys (an attacker controls `auditID`, so it is never a key on its own):
//! - a **request** is `(cluster, audit_id, request_received_at,
//!   authn_username, verb, request_uri)`: what every stage of one request
//!   shares. A different request that reuses an Audit-ID differs in its
//!   receive time (microseconds, set by the apiserver) and usually in user,
//!   verb and URI, so it stays a request of its own;
//! - an **event** is a request plus `(stage, stage_at)`: the same event
//!   delivered twice (webhook retries, replays) has the same key, and then
//!   every event column is equal; only `source` and `ingested_at` tell the
//!   copies apart. The kept copy is the one with the smallest `source`.
//! - A row without `audit_id` is a request (and an event) of its own.
//!
//! `requests` takes the last stage (`Panic` > `ResponseComplete` >
//! `ResponseStarted` > `RequestReceived`, then the latest `stage_at`) for
//! its request columns, and the identity columns (`schema::IDENTITY_COLUMNS`)
//! from the stage that carried `impersonatedUser` (kube-apiserver writes
//! `RequestReceived` before its impersonation filter runs). Ties go to the
//! smallest `source`. `query::reference` defines both relations in plain
//! SQL; a differential test holds this module to it.
//!
//! `audit_id_reuse` holds the requests whose `(cluster, audit_id)` another
//! request carries too. Reuse may span partitions (an ID copied from last
//! week's log), so it first reads the key columns of every partition the
//! scan covers and keeps, per hashed `(cluster, audit_id)`, the hash of the
//! first request key seen with it (16 bytes per audit ID); then only the
//! requests of the IDs seen with two keys are computed. Hashes are seeded
//! per scan, so a collision cannot be crafted; one by chance (about 10^-6
//! for ten million IDs) adds a request that is not reused, never hides one
//! that is.
//!
//! Filters pushed into a scan are used three ways, and DataFusion still
//! applies every one of them above the scan (they are `Inexact`):
//! - filters on `dt`/`hour` alone choose partitions;
//! - filters on key columns alone (equal on every row of a request) are
//!   applied to the rows read: exact, since a group keeps or loses all its
//!   rows together. For `audit_events` the same holds for every event column;
//! - (`requests` only) a filter on identity columns alone must hold on the
//!   identity row, and one on the other columns alone on the last row; both
//!   are rows of the request, so a pass per kind that reads only
//!   `request_received_at` and the filter's columns finds the receive
//!   times of the requests that *may* match (each later pass reads only
//!   rows at the times the earlier found). A partition with none is not
//!   read further; otherwise the main pass reads only rows whose receive
//!   time is a candidate's (tested by the Parquet reader before it decodes
//!   the other columns). Another request at the same microsecond is
//!   computed too and dropped above the scan.
//!
//! Filters that operators derive while the query runs (DataFusion's
//! dynamic filters, such as a hash join's on its probe side's keys) are one
//! more candidate pass of `requests`, under the same rule: see
//! [`RelationExec`] and [`JoinFilters`].
//!
//! Partitions are read with string columns as string views
//! ([`read_schema`]): no string is copied until a row is emitted, and then
//! into the record schema's types, so every relation keeps `audit`'s schema.

use super::stats::ScanStats;
use crate::schema::{record_schema, IDENTITY_COLUMNS, PARTITION_COLUMNS};
use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, StringViewArray};
use arrow::compute::{cast, interleave};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{Column, DFSchema};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::SessionState;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TableProviderFilterPushDown, TableType, Volatility,
};
use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_expr::utils::{collect_columns, reassign_expr_columns};
use datafusion::physical_expr::DynamicFilterTracking;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr_common::physical_expr::snapshot_physical_expr;
use datafusion::physical_optimizer::filter_pushdown::FilterPushdown;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterPushdownPhase, FilterPushdownPropagation,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use datafusion::scalar::ScalarValue;
use futures::{StreamExt, TryStreamExt};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Columns shared by every stage of one request.
pub const REQUEST_KEY: &[&str] = &[
    "cluster",
    "audit_id",
    "request_received_at",
    "authn_username",
    "verb",
    "request_uri",
];

/// What, beyond the request key, makes two rows the same event.
pub const EVENT_KEY_EXTRA: &[&str] = &["stage", "stage_at"];

/// Columns that tell copies of one event apart (and that a filter pushed
/// into `audit_events` therefore must not be applied below the dedupe).
const PROVENANCE: &[&str] = &["source", "ingested_at"];

/// Rows per output batch.
const OUT_BATCH: usize = 8192;

/// Which relation a [`Relation`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Events,
    Requests,
    /// The requests whose audit ID another request also carries.
    Reused,
}

/// One hour partition of the lake.
#[derive(Debug, Clone)]
pub struct Partition {
    pub dt: String,
    pub hour: String,
    pub dir: PathBuf,
    pub files: usize,
}

/// The subdirectories of `dir` named `PREFIX…`, with what follows the prefix.
fn subdirs(dir: &Path, prefix: &str) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(value) = name.strip_prefix(prefix) {
            if e.file_type()?.is_dir() {
                out.push((value.to_string(), e.path()));
            }
        }
    }
    Ok(out)
}

/// The hour partitions under `root`, sorted.
pub fn list_partitions(root: &Path) -> std::io::Result<Vec<Partition>> {
    let mut out = Vec::new();
    for (dt, day) in subdirs(root, "dt=")? {
        for (hour, dir) in subdirs(&day, "hour=")? {
            let files = std::fs::read_dir(&dir)?
                .filter_map(|f| f.ok())
                .filter(|f| f.file_name().to_string_lossy().ends_with(".parquet"))
                .count();
            out.push(Partition {
                dt: dt.clone(),
                hour,
                dir,
                files,
            });
        }
    }
    out.sort_by(|a, b| (&a.dt, &a.hour).cmp(&(&b.dt, &b.hour)));
    Ok(out)
}

/// The schema of every relation: stored columns, then `dt` and `hour`.
pub fn relation_schema() -> SchemaRef {
    let mut fields: Vec<Field> = record_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    for p in PARTITION_COLUMNS {
        fields.push(Field::new(p, DataType::Utf8, false));
    }
    Arc::new(Schema::new(fields))
}

/// `audit_events` or `requests` over the lake at `root`.
#[derive(Debug)]
pub struct Relation {
    kind: Kind,
    root: PathBuf,
    schema: SchemaRef,
    format: Arc<ParquetFormat>,
    stats: Arc<ScanStats>,
    /// Hash buckets the `audit_id_reuse` pre-pass starts with.
    reuse_buckets: u64,
    /// Where partitions and the audit-ID table take their memory (see
    /// [`Relation::with_pool`]); `None`: the query's own pool.
    pool: Option<Arc<dyn MemoryPool>>,
}

impl Relation {
    pub fn new(kind: Kind, root: &Path, stats: Arc<ScanStats>) -> Relation {
        // Filters evaluated while decoding (late materialisation): a pass
        // that looks for `actor_username = 'x'` decodes the wide columns
        // only for the rows that match.
        let mut format = ParquetFormat::default();
        let mut opts = format.options().clone();
        opts.global.pushdown_filters = true;
        opts.global.reorder_filters = true;
        format = format.with_options(opts);
        Relation {
            kind,
            root: root.to_path_buf(),
            schema: relation_schema(),
            format: Arc::new(format),
            stats,
            reuse_buckets: 1,
            pool: None,
        }
    }

    /// Take the memory of partitions being deduplicated from `pool`
    /// rather than from the query's. In the query's fair pool a partition
    /// (which cannot spill) competed with sorts and joins: as a spillable
    /// consumer its fair share fell below one hour of data once a plan had
    /// a dozen consumers (tokens-minted on 100M events: 155 MB refused with
    /// most of the pool free), and as an unspillable one it got only what
    /// a sort left (actor-timeline on 100M events).
    pub fn with_pool(mut self, pool: Arc<dyn MemoryPool>) -> Relation {
        self.pool = Some(pool);
        self
    }

    /// Start the `audit_id_reuse` pre-pass split into `n` hash buckets
    /// (it splits by itself when memory runs out; tests use this to take
    /// that path on a small lake).
    pub fn with_reuse_buckets(mut self, n: u64) -> Relation {
        self.reuse_buckets = n.max(1);
        self
    }
}

fn strip_qualifiers(e: &Expr) -> Result<Expr> {
    e.clone()
        .transform(|e| match e {
            Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(Expr::Column(
                Column::new_unqualified(c.name),
            ))),
            e => Ok(Transformed::no(e)),
        })
        .data()
}

fn names(e: &Expr) -> HashSet<String> {
    e.column_refs()
        .into_iter()
        .map(|c| c.name.clone())
        .collect()
}

/// Which row of a request a filter on a relation row of `requests` must
/// hold on, by its columns: every row (key columns only), the identity row
/// (besides keys, identity columns only) or the last row (besides keys,
/// other columns only). `None` when it mixes identity and other columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowOf {
    Every,
    Identity,
    Last,
}

fn row_of<S: AsRef<str>>(cols: impl IntoIterator<Item = S>) -> Option<RowOf> {
    let (mut identity, mut other) = (false, false);
    for c in cols {
        let c = c.as_ref();
        if REQUEST_KEY.contains(&c) {
            continue;
        }
        if IDENTITY_COLUMNS.contains(&c) {
            identity = true;
        } else {
            other = true;
        }
    }
    match (identity, other) {
        (false, false) => Some(RowOf::Every),
        (true, false) => Some(RowOf::Identity),
        (false, true) => Some(RowOf::Last),
        (true, true) => None,
    }
}

/// How the conjuncts of a scan's filters are used (see the module doc).
#[derive(Debug, Default)]
struct Pushed {
    /// On `dt`/`hour` alone: choose partitions.
    partition: Vec<Expr>,
    /// Exact on the rows read.
    rows: Vec<Expr>,
    /// Each finds the requests that may match (`requests` only).
    candidates: Vec<Expr>,
}

fn classify(kind: Kind, filters: &[Expr]) -> Result<Pushed> {
    let mut p = Pushed::default();
    let (mut identity, mut request, mut mixed) = (Vec::new(), Vec::new(), Vec::new());
    for f in filters {
        for c in split_conjunction(f) {
            if c.is_volatile() {
                continue;
            }
            let c = strip_qualifiers(c)?;
            let cols = names(&c);
            if cols.is_empty() {
                continue;
            }
            let on_partition = cols
                .iter()
                .filter(|n| PARTITION_COLUMNS.contains(&n.as_str()))
                .count();
            if on_partition == cols.len() {
                p.partition.push(c);
                continue;
            }
            if on_partition > 0 {
                // Mixed with partition columns, which the files do not hold.
                continue;
            }
            match kind {
                Kind::Events => {
                    if !cols.iter().any(|n| PROVENANCE.contains(&n.as_str())) {
                        p.rows.push(c);
                    }
                }
                Kind::Requests | Kind::Reused => match row_of(&cols) {
                    Some(RowOf::Every) => p.rows.push(c),
                    Some(RowOf::Identity) => identity.push(c),
                    Some(RowOf::Last) => request.push(c),
                    None if row_testable(&c) => mixed.push(c),
                    None => {}
                },
            }
        }
    }
    // One pass per kind of row, whatever the number of conjuncts; a mixed
    // disjunction is a pass of its own: two of them may hold on different
    // rows of one request, so their conjunction tested on one row could
    // lose it.
    p.candidates = [conjunction(identity), conjunction(request)]
        .into_iter()
        .flatten()
        .chain(mixed)
        .collect();
    Ok(p)
}

/// Whether a filter that mixes identity and other columns can still find
/// the requests that may match by testing each row on its own: it is a
/// disjunction whose every branch holds on one kind of row (or is such a
/// disjunction itself). When the request's relation row passes, one branch
/// is true there, so it is true on the row its columns come from, and so
/// is the whole disjunction. A conjunction across kinds is not: its parts
/// may each hold on a different row and on no row together.
/// (privileged-impersonation's `acted_as_… OR decision_reason LIKE …` read
/// 4.3M rows on 10M events without this, for 0.34M that pass.)
fn row_testable(e: &Expr) -> bool {
    if row_of(names(e)).is_some() {
        return true;
    }
    match e {
        Expr::BinaryExpr(b) if b.op == datafusion::logical_expr::Operator::Or => {
            row_testable(&b.left) && row_testable(&b.right)
        }
        _ => false,
    }
}

#[async_trait]
impl TableProvider for Relation {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let state = state
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| DataFusionError::Internal("not a SessionState".into()))?
            .clone();
        let projected = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let pushed = classify(self.kind, filters)?;
        let all = list_partitions(&self.root).map_err(|e| {
            DataFusionError::External(format!("listing {}: {e}", self.root.display()).into())
        })?;
        let parts = prune_partitions(&state, all, &pushed.partition, &self.stats)?;
        let mut plan = ScanPlan::new(
            self.kind,
            state,
            projected.clone(),
            pushed,
            parts.clone(),
            self.format.clone(),
            self.stats.clone(),
        )?;
        plan.reuse_buckets = self.reuse_buckets;
        plan.pool = self.pool.clone();
        let plan = Arc::new(plan);
        let n = plan
            .state
            .config()
            .target_partitions()
            .clamp(1, parts.len().max(1));
        let mut lanes: Vec<Vec<Partition>> = vec![Vec::new(); n];
        for (i, p) in parts.into_iter().enumerate() {
            lanes[i % n].push(p);
        }
        let streams: Vec<Arc<dyn PartitionStream>> = lanes
            .into_iter()
            .map(|parts| {
                Arc::new(Lane {
                    plan: plan.clone(),
                    parts,
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        let inner = Arc::new(StreamingTableExec::try_new(
            projected,
            streams,
            None,
            Vec::new(),
            false,
            None,
        )?);
        Ok(Arc::new(RelationExec { inner, plan }))
    }
}

/// The scan of a relation: its lanes (a `StreamingTableExec`), and a
/// receiver for the filters that operators above derive while the query
/// runs. A hash join's build side becomes a filter on the probe side's join
/// keys (`DataFusion`'s dynamic filters); `requests` uses such a filter as
/// one more candidate pass (`ScanPlan::candidates`), so a join against a
/// few keys reads the few requests that carry them. Without it, tokens-minted
/// computed every request of the lake to count the uses of a few hundred
/// credentials. The filters stay with the operators that made them too
/// (reported as not pushed down): they only let the scan skip work.
#[derive(Debug)]
struct RelationExec {
    inner: Arc<StreamingTableExec>,
    plan: Arc<ScanPlan>,
}

impl DisplayAs for RelationExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "RelationExec: relation={:?}, ", self.plan.kind)?;
        self.inner.fmt_as(t, f)
    }
}

impl ExecutionPlan for RelationExec {
    fn name(&self) -> &str {
        "RelationExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    /// The dynamic filters held: a hash join computes its filter only when
    /// it finds the filter among its probe side's expressions.
    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let held = match self.plan.dynamic.lock() {
            Ok(h) => h.clone(),
            Err(_) => Vec::new(),
        };
        for e in &held {
            if f(e)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "a relation scan has no children".into(),
            ))
        }
    }

    fn handle_child_pushdown_result(
        &self,
        _phase: FilterPushdownPhase,
        result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        let dynamic: Vec<Arc<dyn PhysicalExpr>> = result
            .parent_filters
            .iter()
            .map(|f| f.filter.clone())
            .filter(|f| DynamicFilterTracking::classify(f).contains_dynamic_filter())
            .collect();
        if !dynamic.is_empty() {
            if let Ok(mut held) = self.plan.dynamic.lock() {
                *held = dynamic;
            }
        }
        Ok(FilterPushdownPropagation::all_unsupported(result))
    }

    fn execute(
        &self,
        partition: usize,
        ctx: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.inner.execute(partition, ctx)
    }
}

/// Tells each relation scan which hash joins' dynamic filters it may wait
/// for. A hash join fills its filter once its build side is complete and
/// polls its probe side only after that; the wait makes that order certain
/// for the scan rather than left to the operators between (whether any of
/// them starts the probe side early was not measured: the filter was seen
/// `true` at every partition only while `RelationExec` did not show it to
/// the join, which then never computed it). Waiting is safe only for a
/// filter whose producer does not need this scan's rows to complete it: a
/// join's filter on a scan of its probe side (the build side is another
/// subtree), reached only through operators that pass rows on as they
/// are. A TopK's filter, for one, completes only after this scan's rows, so
/// it is used as it stands and never waited for.
#[derive(Debug, Default)]
pub struct JoinFilters;

impl JoinFilters {
    fn tag(plan: &Arc<dyn ExecutionPlan>, waits: &[Arc<dyn PhysicalExpr>]) {
        if let Some(r) = plan.downcast_ref::<RelationExec>() {
            if let Ok(mut held) = r.plan.join_waits.lock() {
                held.extend(waits.iter().cloned());
            }
            return;
        }
        let children = plan.children();
        if plan.name() == "HashJoinExec" && children.len() == 2 {
            Self::tag(children[0], &[]);
            Self::tag(children[1], &plan.dynamic_expressions_produced());
            return;
        }
        let through = matches!(
            plan.name(),
            "RepartitionExec"
                | "ProjectionExec"
                | "CoalesceBatchesExec"
                | "CooperativeExec"
                | "FilterExec"
        );
        for c in children {
            Self::tag(c, if through { waits } else { &[] });
        }
    }
}

impl PhysicalOptimizerRule for JoinFilters {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Self::tag(&plan, &[]);
        Ok(plan)
    }

    fn name(&self) -> &str {
        "auditlake_join_filters"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The partitions whose `dt`/`hour` pass `filters`.
fn prune_partitions(
    state: &SessionState,
    all: Vec<Partition>,
    filters: &[Expr],
    stats: &ScanStats,
) -> Result<Vec<Partition>> {
    stats.add_partitions(all.len() as u64, all.iter().map(|p| p.files as u64).sum());
    let Some(filter) = conjunction(filters.iter().cloned()) else {
        return Ok(all);
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("dt", DataType::Utf8, false),
        Field::new("hour", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(all.iter().map(|p| &p.dt))),
            Arc::new(StringArray::from_iter_values(all.iter().map(|p| &p.hour))),
        ],
    )?;
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let expr = state.create_physical_expr(filter, &df_schema)?;
    let mask = expr.evaluate(&batch)?.into_array(batch.num_rows())?;
    let mask = mask
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| DataFusionError::Internal("partition filter is not boolean".into()))?;
    let mut out = Vec::new();
    for (i, p) in all.into_iter().enumerate() {
        if mask.is_valid(i) && mask.value(i) {
            out.push(p);
        } else {
            stats.partition_pruned(p.files as u64);
        }
    }
    Ok(out)
}

/// Where an output column comes from.
#[derive(Debug, Clone, Copy)]
enum Out {
    /// A stored column: its index in the work batches, and whether it is an
    /// identity column (taken from the identity row of a request).
    Stored {
        work: usize,
        identity: bool,
    },
    Dt,
    Hour,
}

/// What one scan reads and computes; shared by its lanes.
#[derive(Debug)]
struct ScanPlan {
    kind: Kind,
    state: SessionState,
    out_schema: SchemaRef,
    out: Vec<Out>,
    /// Stored columns read in the main pass (record-schema indices, sorted).
    work: Vec<usize>,
    key: Vec<usize>,
    stage: usize,
    stage_at: usize,
    impersonated: usize,
    source: usize,
    rows: Option<Expr>,
    candidates: Vec<Expr>,
    /// One per candidate filter, set once its pass matched most of a
    /// partition.
    candidates_off: Vec<AtomicBool>,
    /// Filters the operators above derive at run time (see
    /// [`RelationExec`]), and whether they stopped paying.
    dynamic: std::sync::Mutex<Vec<Arc<dyn PhysicalExpr>>>,
    dynamic_off: AtomicBool,
    /// The dynamic filters of the hash joins whose probe side this scan
    /// feeds (see [`JoinFilters`]): each partition waits until they are
    /// complete before it is read.
    join_waits: std::sync::Mutex<Vec<Arc<dyn PhysicalExpr>>>,
    /// `Reused`: every partition of the scan, and (once the first lane
    /// asks) the hashes of `(cluster, audit_id)` that more than one request
    /// carries.
    parts: Vec<Partition>,
    reused: tokio::sync::OnceCell<KeySet>,
    /// Hash buckets the `reused` pass starts with.
    reuse_buckets: u64,
    /// See [`Relation::with_pool`].
    pool: Option<Arc<dyn MemoryPool>>,
    /// Keys are attacker-controlled (audit IDs, URIs): a per-scan random
    /// seed keeps crafted keys from colliding in the hash tables on purpose.
    seed: u64,
    format: Arc<ParquetFormat>,
    /// The record schema as the passes read it: see [`read_schema`].
    read_schema: SchemaRef,
    stats: Arc<ScanStats>,
}

/// The record schema with its string columns read as string views.
///
/// A view is 16 bytes that point into the Parquet page's own buffer (the
/// dictionary, for dictionary-encoded pages), so neither decoding nor the
/// pushed filter copies string bytes; only the rows a relation emits are
/// copied, once, into the record schema's strings (`ScanPlan::assemble`).
/// Decoding into plain strings and filtering them were about 20% of
/// secrets-by-humans on 10M events (`extend_from_dictionary`,
/// `filter_record_batch`).
fn read_schema() -> SchemaRef {
    let fields: Vec<Field> = record_schema()
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => f.as_ref().clone().with_data_type(DataType::Utf8View),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

fn stored_index(name: &str) -> Result<usize> {
    record_schema()
        .index_of(name)
        .map_err(|e| DataFusionError::Internal(format!("column {name}: {e}")))
}

impl ScanPlan {
    fn new(
        kind: Kind,
        state: SessionState,
        out_schema: SchemaRef,
        pushed: Pushed,
        parts: Vec<Partition>,
        format: Arc<ParquetFormat>,
        stats: Arc<ScanStats>,
    ) -> Result<ScanPlan> {
        let mut need: Vec<usize> = Vec::new();
        let key_names: Vec<&str> = match kind {
            Kind::Requests | Kind::Reused => REQUEST_KEY.to_vec(),
            Kind::Events => REQUEST_KEY.iter().chain(EVENT_KEY_EXTRA).copied().collect(),
        };
        for n in key_names.iter().copied().chain([
            "stage",
            "stage_at",
            "impersonated_username",
            "source",
        ]) {
            need.push(stored_index(n)?);
        }
        for f in out_schema.fields() {
            if !PARTITION_COLUMNS.contains(&f.name().as_str()) {
                need.push(stored_index(f.name())?);
            }
        }
        for e in &pushed.rows {
            for n in names(e) {
                need.push(stored_index(&n)?);
            }
        }
        need.sort_unstable();
        need.dedup();
        let work_of = |name: &str| -> Result<usize> {
            let i = stored_index(name)?;
            need.iter()
                .position(|&w| w == i)
                .ok_or_else(|| DataFusionError::Internal(format!("{name} not read")))
        };
        let out = out_schema
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "dt" => Ok(Out::Dt),
                "hour" => Ok(Out::Hour),
                n => Ok(Out::Stored {
                    work: work_of(n)?,
                    identity: kind != Kind::Events && IDENTITY_COLUMNS.contains(&n),
                }),
            })
            .collect::<Result<Vec<_>>>()?;
        let key = key_names
            .iter()
            .map(|n| work_of(n))
            .collect::<Result<Vec<_>>>()?;
        Ok(ScanPlan {
            kind,
            out,
            key,
            stage: work_of("stage")?,
            stage_at: work_of("stage_at")?,
            impersonated: work_of("impersonated_username")?,
            source: work_of("source")?,
            work: need,
            rows: conjunction(pushed.rows),
            candidates_off: pushed
                .candidates
                .iter()
                .map(|_| AtomicBool::new(false))
                .collect(),
            candidates: pushed.candidates,
            dynamic: std::sync::Mutex::new(Vec::new()),
            dynamic_off: AtomicBool::new(false),
            join_waits: std::sync::Mutex::new(Vec::new()),
            parts,
            reused: tokio::sync::OnceCell::new(),
            reuse_buckets: 1,
            pool: None,
            seed: rand::random(),
            state,
            out_schema,
            format,
            read_schema: read_schema(),
            stats,
        })
    }

    /// The pool partitions and the audit-ID table take memory from.
    fn pool_of<'a>(&'a self, ctx: &'a Arc<TaskContext>) -> &'a Arc<dyn MemoryPool> {
        self.pool.as_ref().unwrap_or(ctx.memory_pool())
    }

    /// Read `cols` (record-schema indices) of one partition's rows that pass
    /// `filter`, exactly.
    async fn read(
        &self,
        part: &Partition,
        cols: &[usize],
        filter: Option<&Expr>,
        ctx: &Arc<TaskContext>,
    ) -> Result<(Vec<RecordBatch>, u64)> {
        let mut url = part.dir.display().to_string();
        if !url.ends_with('/') {
            url.push('/');
        }
        let options = ListingOptions::new(self.format.clone()).with_file_extension(".parquet");
        let config = ListingTableConfig::new(ListingTableUrl::parse(&url)?)
            .with_listing_options(options)
            .with_schema(self.read_schema.clone());
        let table = ListingTable::try_new(config)?;
        let filters: Vec<Expr> = filter.into_iter().cloned().collect();
        let plan = table
            .scan(&self.state, Some(&cols.to_vec()), &filters, None)
            .await?;
        // ListingTable leaves predicates to the physical optimizer: a
        // FilterExec above the scan, pushed into it, makes the Parquet
        // reader prune row groups and pages and decode the other columns
        // only for matching rows. Only that rule runs: the others would
        // repartition, and the partitions are read one after the other.
        let plan = match filter {
            Some(f) => {
                let df_schema = DFSchema::try_from(plan.schema().as_ref().clone())?;
                let predicate = self.state.create_physical_expr(f.clone(), &df_schema)?;
                FilterPushdown::new().optimize(
                    Arc::new(FilterExec::try_new(predicate, plan)?),
                    self.state.config_options(),
                )?
            }
            None => plan,
        };
        let mut out = Vec::new();
        for i in 0..plan.properties().partitioning.partition_count() {
            let mut s = plan.execute(i, ctx.clone())?;
            while let Some(b) = s.next().await {
                let b = b?;
                if b.num_rows() > 0 {
                    out.push(b);
                }
            }
        }
        self.stats.absorb(plan.as_ref());
        let tested = rows_tested(plan.as_ref())
            .unwrap_or_else(|| out.iter().map(|b| b.num_rows() as u64).sum());
        Ok((out, tested))
    }

    /// The receive times of the requests of `part` that may pass every
    /// candidate filter (and, for `audit_id_reuse`, the hashes of the
    /// reused requests' keys); `None` when there is no candidate filter (or
    /// it stopped paying: see `candidates_off`), so every request may.
    ///
    /// A filter pass reads only `request_received_at` and the filter's
    /// columns, never the key: all rows of a request share its receive
    /// time, so the times of the rows that pass stand for their requests,
    /// and each later pass reads only rows at the times the earlier ones
    /// found. Another request that shares a time is read too and dropped by
    /// the filters above the scan (they are `Inexact`): a time can add a
    /// request, never lose one. (Reading and hashing the six key columns of
    /// every passing row was 40% of secrets-by-humans on 10M events, and
    /// its `actor_kind = 'user'` pass alone hashed 4.5M rows.)
    async fn candidates(
        self: &Arc<Self>,
        part: &Partition,
        ctx: &Arc<TaskContext>,
    ) -> Result<Option<Candidates>> {
        let filters: Vec<(usize, &Expr)> = self
            .candidates
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.candidates_off[*i].load(Ordering::Relaxed))
            .collect();
        let filters_on = !filters.is_empty();
        let waits = match self.join_waits.lock() {
            Ok(w) => w.clone(),
            Err(_) => Vec::new(),
        };
        // Only for a filter this scan holds: a join computes (and
        // completes) its filter only when a scan of its probe side holds it.
        let held: HashSet<u64> = match self.dynamic.lock() {
            Ok(h) => h.iter().filter_map(|e| e.expression_id()).collect(),
            Err(_) => HashSet::new(),
        };
        for w in &waits {
            if let Some(d) = w.downcast_ref::<DynamicFilterPhysicalExpr>() {
                if d.expression_id().is_some_and(|id| held.contains(&id)) {
                    d.wait_complete().await;
                }
            }
        }
        let dynamic = self.dynamic_filters()?;
        if self.kind != Kind::Reused && !filters_on && dynamic.is_empty() {
            return Ok(None);
        }
        let received = self.work[self.key[2]];
        let mut keys = None;
        let mut times: Option<Arc<Times>> = None;
        if self.kind == Kind::Reused {
            let reused = self.reused.get_or_try_init(|| self.reused_ids(ctx)).await?;
            let (k, t) = self.rows_of_reused(part, reused, ctx).await?;
            let done = k.is_empty() || (!filters_on && dynamic.is_empty());
            keys = Some(k);
            times = Some(Arc::new(t));
            if done {
                return Ok(Some(Candidates {
                    keys,
                    times: times.unwrap_or_default(),
                }));
            }
        }
        let passes = filters
            .into_iter()
            .map(|(i, c)| (Some((i, c)), None))
            .chain(dynamic.iter().map(|d| (None, Some(d))));
        for (c, d) in passes {
            let mut filter = match (&self.rows, c) {
                (Some(r), Some((_, c))) => Some(r.clone().and(c.clone())),
                (r, c) => r.clone().or_else(|| c.map(|(_, c)| c.clone())),
            };
            if let Some(t) = &times {
                let pre = received_in(t.clone());
                filter = Some(match filter {
                    Some(f) => pre.and(f),
                    None => pre,
                });
            }
            let mut cols = vec![received];
            for n in filter.iter().flat_map(names) {
                cols.push(stored_index(&n)?);
            }
            if let Some((_, on)) = d {
                for n in on {
                    cols.push(stored_index(n)?);
                }
            }
            cols.sort_unstable();
            cols.dedup();
            let (batches, tested) = self.read(part, &cols, filter.as_ref(), ctx).await?;
            let at = cols.iter().position(|&c| c == received).unwrap_or(0);
            let mut found = Times::default();
            let mut matched = 0usize;
            for b in &batches {
                let ts =
                    typed::<arrow::array::TimestampMicrosecondArray>(b, at, "request_received_at")?;
                let pass = match d {
                    Some((expr, on)) => Some(self.evaluate(expr, on, &cols, b)?),
                    None => None,
                };
                for i in 0..b.num_rows() {
                    if pass.as_ref().is_none_or(|p| p.is_valid(i) && p.value(i)) {
                        matched += 1;
                        found.insert(ts.is_valid(i).then(|| ts.value(i)));
                    }
                }
            }
            // A filter that most rows pass saves nothing and costs a pass:
            // the rest of the scan goes without.
            if matched as u64 * 2 > tested {
                match c {
                    Some((i, _)) => self.candidates_off[i].store(true, Ordering::Relaxed),
                    None => self.dynamic_off.store(true, Ordering::Relaxed),
                }
            }
            let none = found.is_empty();
            times = Some(Arc::new(found));
            if none {
                break;
            }
        }
        Ok(Some(Candidates {
            keys,
            times: times.unwrap_or_default(),
        }))
    }

    /// The run-time filters (see [`RelationExec`]) that a candidate pass
    /// can use now, each with the columns it reads. `requests` only; a
    /// filter is used when it holds on one row of every request it keeps
    /// ([`row_of`]). A filter that is still `true` (a hash join's before
    /// its build side is complete) is skipped.
    fn dynamic_filters(&self) -> Result<Vec<RunTimeFilter>> {
        if self.kind != Kind::Requests || self.dynamic_off.load(Ordering::Relaxed) {
            return Ok(Vec::new());
        }
        let held = match self.dynamic.lock() {
            Ok(h) => h.clone(),
            Err(_) => return Ok(Vec::new()),
        };
        let mut out = Vec::new();
        for f in held {
            let now = snapshot_physical_expr(f)?;
            if now
                .downcast_ref::<Literal>()
                .is_some_and(|l| l.value() == &ScalarValue::Boolean(Some(true)))
            {
                continue;
            }
            let mut on: Vec<String> = collect_columns(&now)
                .into_iter()
                .map(|c| c.name().to_string())
                .collect();
            on.sort_unstable();
            on.dedup();
            let stored = |n: &String| {
                !PARTITION_COLUMNS.contains(&n.as_str())
                    && self.out_schema.field_with_name(n).is_ok()
                    && record_schema().field_with_name(n).is_ok()
            };
            if !on.is_empty() && on.iter().all(stored) && row_of(&on).is_some() {
                out.push((now, on));
            }
        }
        Ok(out)
    }

    /// `expr` (a filter on the relation's columns `on`) on the rows of `b`,
    /// whose columns are the stored columns `cols`: they are given the
    /// relation's types first (`b` holds string views).
    fn evaluate(
        &self,
        expr: &Arc<dyn PhysicalExpr>,
        on: &[String],
        cols: &[usize],
        b: &RecordBatch,
    ) -> Result<BooleanArray> {
        let mut fields = Vec::with_capacity(on.len());
        let mut arrays = Vec::with_capacity(on.len());
        for n in on {
            let field = self.out_schema.field_with_name(n)?;
            let i = stored_index(n)?;
            let at = cols
                .iter()
                .position(|&c| c == i)
                .ok_or_else(|| DataFusionError::Internal(format!("{n} not read")))?;
            let col = b.column(at);
            arrays.push(if col.data_type() == field.data_type() {
                col.clone()
            } else {
                cast(col, field.data_type())?
            });
            fields.push(field.clone());
        }
        let schema = Schema::new(fields);
        let batch = RecordBatch::try_new_with_options(
            Arc::new(schema.clone()),
            arrays,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(b.num_rows())),
        )?;
        let expr = reassign_expr_columns(expr.clone(), &schema)?;
        let mask = expr.evaluate(&batch)?.into_array(b.num_rows())?;
        mask.as_any()
            .downcast_ref::<BooleanArray>()
            .cloned()
            .ok_or_else(|| DataFusionError::Internal("a run-time filter is not boolean".into()))
    }

    /// Hashes of the `(cluster, audit_id)` pairs that more than one request
    /// carries, over every partition of the scan: one pass that keeps, per
    /// pair, the hash of the first request key seen with it. The partitions
    /// are read by one task per core (the pass over 10M events took 2.0 s
    /// of CPU in 2.1 s on one), and their tables merged.
    ///
    /// The table holds every audit ID of the scan. When it does not fit in
    /// the memory pool (100M events: over 1 GiB), the IDs are split by hash
    /// into buckets, 4× more at each retry, and each bucket is a pass of its
    /// own: the key columns are read once more per bucket, and memory is
    /// bounded by one bucket's share.
    async fn reused_ids(self: &Arc<Self>, ctx: &Arc<TaskContext>) -> Result<KeySet> {
        let mut buckets = self.reuse_buckets;
        loop {
            match self.reused_ids_in(buckets, ctx).await {
                Err(e)
                    if buckets < 1024
                        && matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)) =>
                {
                    buckets *= 4;
                    tracing::info!(
                        buckets,
                        "audit_id_reuse: the audit IDs do not fit in the memory pool; splitting them by hash"
                    );
                }
                other => return other,
            }
        }
    }

    /// [`Self::reused_ids`] with the IDs split into `buckets` passes.
    async fn reused_ids_in(
        self: &Arc<Self>,
        buckets: u64,
        ctx: &Arc<TaskContext>,
    ) -> Result<KeySet> {
        let lanes = self
            .state
            .config()
            .target_partitions()
            .clamp(1, self.parts.len().max(1));
        let mut multi = KeySet::default();
        for bucket in 0..buckets {
            let mut tasks: Vec<_> = (0..lanes)
                .map(|lane| {
                    let (plan, ctx) = (self.clone(), ctx.clone());
                    tokio::spawn(
                        async move { plan.ids_of(lane, lanes, (bucket, buckets), &ctx).await },
                    )
                })
                .collect();
            let mut first: Option<HashMap<u64, u64, BuildIdentity>> = None;
            // Held until the tables are merged and dropped.
            let mut reservations = Vec::new();
            let mut failed = None;
            let mut awaited = 0;
            for t in tasks.iter_mut() {
                awaited += 1;
                let result = t
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))
                    .and_then(|r| r);
                let (f, m, r) = match result {
                    Ok(x) => x,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                };
                multi.extend(m);
                reservations.push(r);
                match &mut first {
                    None => first = Some(f),
                    Some(acc) => {
                        for (id, key) in f {
                            note_key(acc, &mut multi, id, key);
                        }
                    }
                }
            }
            if let Some(e) = failed {
                // The other lanes stop too, and release their memory
                // before a retry asks for it.
                for t in tasks.into_iter().skip(awaited) {
                    t.abort();
                    let _ = t.await;
                }
                return Err(e);
            }
        }
        Ok(multi)
    }

    /// `reused_ids` over every `lanes`-th partition from `lane`, for the IDs
    /// of one hash bucket: per ID hash the first key hash, and the IDs
    /// already seen with two.
    async fn ids_of(
        &self,
        lane: usize,
        lanes: usize,
        (bucket, buckets): (u64, u64),
        ctx: &Arc<TaskContext>,
    ) -> Result<(HashMap<u64, u64, BuildIdentity>, KeySet, MemoryReservation)> {
        let KeyLayout {
            cols,
            id_pos,
            key_pos,
            ..
        } = self.key_layout()?;
        let not_null = Expr::Column(Column::new_unqualified("audit_id")).is_not_null();
        let filter = match &self.rows {
            Some(r) => r.clone().and(not_null),
            None => not_null,
        };
        let reservation = MemoryConsumer::new("audit_id_reuse ids").register(self.pool_of(ctx));
        let mut first: HashMap<u64, u64, BuildIdentity> = HashMap::with_hasher(BuildIdentity);
        let mut multi = KeySet::default();
        for part in self.parts.iter().skip(lane).step_by(lanes) {
            let (batches, _) = self.read(part, &cols, Some(&filter), ctx).await?;
            for b in &batches {
                // Reserve before the table grows: it may double its buckets
                // (16 bytes an entry, at hashbrown's 7/8 load factor).
                let rows = b.num_rows().div_ceil(buckets as usize);
                let want = ((first.len() + rows) * 8 / 7).next_power_of_two() * 17;
                if want > reservation.size() {
                    reservation.try_grow(want - reservation.size())?;
                }
                let ids = Keys::new(b, &id_pos)?.hashes(b.num_rows(), self.seed);
                let keys = Keys::new(b, &key_pos)?.hashes(b.num_rows(), self.seed);
                for (id, key) in ids.into_iter().zip(keys) {
                    // Bits the table's hashing does not use (it takes the
                    // low bits for the slot and the top seven as a tag), so
                    // a bucket's IDs still spread over the table.
                    if (id >> 32) % buckets == bucket {
                        note_key(&mut first, &mut multi, id, key);
                    }
                }
            }
        }
        Ok((first, multi, reservation))
    }

    /// Where the key columns, read alone and in schema order, stand in
    /// the batches (the `audit_id_reuse` passes read only them).
    fn key_layout(&self) -> Result<KeyLayout> {
        let mut cols: Vec<usize> = self.key.iter().map(|&k| self.work[k]).collect();
        cols.sort_unstable();
        let pos = |c: usize| cols.iter().position(|&x| x == c).unwrap_or(0);
        let id_pos = vec![
            pos(stored_index("cluster")?),
            pos(stored_index("audit_id")?),
        ];
        let key_pos = self.key.iter().map(|&k| pos(self.work[k])).collect();
        let received = pos(self.work[self.key[2]]);
        Ok(KeyLayout {
            cols,
            id_pos,
            key_pos,
            received,
        })
    }

    /// Key hashes and receive times of the rows of `part` whose
    /// `(cluster, audit_id)` is in `reused`.
    async fn rows_of_reused(
        &self,
        part: &Partition,
        reused: &KeySet,
        ctx: &Arc<TaskContext>,
    ) -> Result<(KeySet, Times)> {
        let (mut keys, mut times) = (KeySet::default(), Times::default());
        if reused.is_empty() {
            return Ok((keys, times));
        }
        let KeyLayout {
            cols,
            id_pos,
            key_pos,
            received: at,
        } = self.key_layout()?;
        let (batches, _) = self.read(part, &cols, self.rows.as_ref(), ctx).await?;
        for b in &batches {
            let ids = Keys::new(b, &id_pos)?.hashes(b.num_rows(), self.seed);
            let hashes = Keys::new(b, &key_pos)?.hashes(b.num_rows(), self.seed);
            let ts =
                typed::<arrow::array::TimestampMicrosecondArray>(b, at, "request_received_at")?;
            for (i, (id, key)) in ids.into_iter().zip(hashes).enumerate() {
                if reused.contains(&id) && !b.column(id_pos[1]).is_null(i) {
                    keys.insert(key);
                    times.insert(ts.is_valid(i).then(|| ts.value(i)));
                }
            }
        }
        Ok((keys, times))
    }

    /// The main pass's filter: the exact row filters, and with candidates
    /// their receive times, which the Parquet reader tests before it
    /// decodes any other column (all rows of a request share it).
    fn main_filter(&self, candidates: Option<&Candidates>) -> Option<Expr> {
        let pre = received_in(candidates?.times.clone());
        Some(match &self.rows {
            Some(r) => pre.and(r.clone()),
            None => pre,
        })
    }

    /// The relation's rows of one partition.
    async fn partition(
        self: &Arc<Self>,
        part: &Partition,
        ctx: Arc<TaskContext>,
    ) -> Result<Vec<RecordBatch>> {
        let candidates = self.candidates(part, &ctx).await?;
        if candidates.as_ref().is_some_and(Candidates::is_empty) {
            self.stats.partition_without_candidates();
            return Ok(Vec::new());
        }
        let filter = self
            .main_filter(candidates.as_ref())
            .or_else(|| self.rows.clone());
        let (batches, _) = self.read(part, &self.work, filter.as_ref(), &ctx).await?;
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        // From the relations' own pool (see `Relation::with_pool`): a
        // partition cannot spill, and a partition larger than the pool's
        // room is an error that says so.
        let reservation = MemoryConsumer::new(match self.kind {
            Kind::Events => "audit_events partition",
            Kind::Requests => "requests partition",
            Kind::Reused => "audit_id_reuse partition",
        })
        .register(self.pool_of(&ctx));
        reservation.try_grow(held_bytes(&batches))?;
        let groups = self.group(&batches, candidates.as_ref().and_then(|c| c.keys.as_ref()))?;
        let out = self.assemble(part, &batches, &groups)?;
        reservation.free();
        Ok(out)
    }

    /// One entry per request (or event): which rows represent it.
    fn group(&self, batches: &[RecordBatch], candidates: Option<&KeySet>) -> Result<Vec<Group>> {
        let cols = Cols::new(self, batches)?;
        let keys: Vec<Keys> = batches
            .iter()
            .map(|b| Keys::new(b, &self.key))
            .collect::<Result<_>>()?;
        // Keys are hashed once each, column by column; the table maps a
        // hash to its first group, and groups whose keys share a hash are
        // chained and compared value by value. (Encoding keys as rows and
        // hashing the bytes in a map spent over half of `SELECT count(*)
        // FROM requests` on 10M events in encoding, hashing and rehashing.)
        let total: usize = batches.iter().map(|b| b.num_rows()).sum();
        let mut index: HashMap<u64, u32, BuildIdentity> =
            HashMap::with_capacity_and_hasher(total, BuildIdentity);
        let mut groups: Vec<Group> = Vec::new();
        let mut chain: Vec<u32> = Vec::new();
        let audit_id = self.key[1];
        for (b, batch) in batches.iter().enumerate() {
            let ids = batch.column(audit_id);
            let hashes = keys[b].hashes(batch.num_rows(), self.seed);
            for (r, &h) in hashes.iter().enumerate() {
                if let Some(c) = candidates {
                    if !c.contains(&h) {
                        continue;
                    }
                }
                let at = (b, r);
                let rank = cols.rank(b, r);
                let mut slot = None;
                if !ids.is_null(r) {
                    match index.get(&h) {
                        Some(&first) => {
                            let mut g = first as usize;
                            loop {
                                let (gb, gr) = groups[g].first;
                                if keys[b].eq(r, &keys[gb], gr) {
                                    slot = Some(g);
                                    break;
                                }
                                if chain[g] == NO_GROUP {
                                    chain[g] = groups.len() as u32;
                                    break;
                                }
                                g = chain[g] as usize;
                            }
                        }
                        None => {
                            index.insert(h, groups.len() as u32);
                        }
                    }
                }
                match slot {
                    None => {
                        groups.push(Group {
                            first: at,
                            last: at,
                            last_rank: rank,
                            ident: at,
                            ident_rank: rank,
                        });
                        chain.push(NO_GROUP);
                    }
                    Some(g) => {
                        let g = &mut groups[g];
                        if cols.better(rank, at, g.last_rank, g.last, false) {
                            g.last = at;
                            g.last_rank = rank;
                        }
                        if cols.better(rank, at, g.ident_rank, g.ident, true) {
                            g.ident = at;
                            g.ident_rank = rank;
                        }
                    }
                }
            }
        }
        Ok(groups)
    }

    fn assemble(
        &self,
        part: &Partition,
        batches: &[RecordBatch],
        groups: &[Group],
    ) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for chunk in groups.chunks(OUT_BATCH) {
            let last: Vec<(usize, usize)> = chunk.iter().map(|g| g.last).collect();
            let ident: Vec<(usize, usize)> = chunk.iter().map(|g| g.ident).collect();
            let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.out.len());
            for (i, o) in self.out.iter().enumerate() {
                columns.push(match *o {
                    Out::Dt => Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                        &part.dt,
                        chunk.len(),
                    ))),
                    Out::Hour => Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                        &part.hour,
                        chunk.len(),
                    ))),
                    Out::Stored { work, identity } => {
                        let arrays: Vec<&dyn Array> =
                            batches.iter().map(|b| b.column(work).as_ref()).collect();
                        let pick = if identity { &ident } else { &last };
                        let picked = interleave(&arrays, pick)?;
                        // Views (see `read_schema`) become the record
                        // schema's strings: a copy of just these rows, and
                        // the pages they pointed into can go.
                        let want = self.out_schema.field(i).data_type();
                        if picked.data_type() == want {
                            picked
                        } else {
                            cast(&picked, want)?
                        }
                    }
                });
            }
            let batch = if columns.is_empty() {
                RecordBatch::try_new_with_options(
                    self.out_schema.clone(),
                    columns,
                    &arrow::array::RecordBatchOptions::new().with_row_count(Some(chunk.len())),
                )?
            } else {
                RecordBatch::try_new(self.out_schema.clone(), columns)?
            };
            out.push(batch);
        }
        Ok(out)
    }
}

/// Bytes `batches` hold, each buffer counted once. String views of many
/// batches share the buffers of the pages they were decoded from (the
/// dictionary of a column chunk), which `get_array_memory_size` counts once
/// for every batch that points into them. Keyed by the allocation, not the
/// slice, so slices of one buffer count it once too.
fn held_bytes(batches: &[RecordBatch]) -> usize {
    fn walk(d: &arrow::array::ArrayData, seen: &mut HashSet<usize>, total: &mut usize) {
        let buffers = d.buffers().iter().chain(d.nulls().map(|n| n.buffer()));
        for b in buffers {
            if seen.insert(b.data_ptr().as_ptr() as usize) {
                *total += b.capacity();
            }
        }
        for c in d.child_data() {
            walk(c, seen, total);
        }
    }
    let (mut seen, mut total) = (HashSet::new(), 0usize);
    for b in batches {
        for c in b.columns() {
            walk(&c.to_data(), &mut seen, &mut total);
        }
    }
    total
}

/// Rows a scan's pushed filter was evaluated on (`None` without one).
fn rows_tested(plan: &dyn ExecutionPlan) -> Option<u64> {
    if plan.name() == "DataSourceExec" {
        let m = plan.metrics()?;
        let pruned = m.sum_by_name("pushdown_rows_pruned")?.as_usize();
        let matched = m.sum_by_name("pushdown_rows_matched")?.as_usize();
        // Rows of pages the page index skipped failed the filter too. Left
        // out, a filter that matched 5% of a partition whose rows are sorted
        // by resource (the rows of other resources skipped by page) looked
        // like one most rows pass, the candidate passes were turned off, and
        // secrets-by-humans read every row: 1.5-1.8x slower, 2x the memory.
        return Some((pruned + matched + page_rows_skipped(&m)) as u64);
    }
    plan.children()
        .into_iter()
        .find_map(|c| rows_tested(c.as_ref()))
}

/// Rows of the pages the page index skipped, in one scan's metrics.
fn page_rows_skipped(m: &datafusion::physical_plan::metrics::MetricsSet) -> usize {
    m.iter()
        .filter_map(|metric| match metric.value() {
            datafusion::physical_plan::metrics::MetricValue::PruningMetrics {
                name,
                pruning_metrics,
            } if name.as_ref() == "page_index_rows_pruned" => Some(pruning_metrics.pruned()),
            _ => None,
        })
        .sum()
}

/// The key columns of one batch.
struct Keys<'a>(Vec<KeyCol<'a>>);

enum KeyCol<'a> {
    Str(&'a StringViewArray),
    Ts(&'a arrow::array::TimestampMicrosecondArray),
}

/// What a NULL key value hashes to.
const NULL_HASH: u64 = 0x5bd1_e995_27d4_eb2f;

impl<'a> Keys<'a> {
    /// `cols`: the key columns' positions in `b`, in key order.
    fn new(b: &'a RecordBatch, cols: &[usize]) -> Result<Keys<'a>> {
        cols.iter()
            .map(|&c| {
                let a = b.column(c).as_any();
                if let Some(s) = a.downcast_ref::<StringViewArray>() {
                    Ok(KeyCol::Str(s))
                } else if let Some(t) = a.downcast_ref() {
                    Ok(KeyCol::Ts(t))
                } else {
                    Err(DataFusionError::Internal(format!(
                        "key column {c} is neither a string nor a timestamp"
                    )))
                }
            })
            .collect::<Result<_>>()
            .map(Keys)
    }

    /// One hash per row, of all key columns in order.
    fn hashes(&self, rows: usize, seed: u64) -> Vec<u64> {
        use xxhash_rust::xxh3::xxh3_64_with_seed;
        let mut h = vec![seed; rows];
        let mix = |h: u64, v: u64| (h ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(31);
        for c in &self.0 {
            match c {
                KeyCol::Str(a) => {
                    for (i, h) in h.iter_mut().enumerate() {
                        let v = if a.is_null(i) {
                            NULL_HASH
                        } else {
                            xxh3_64_with_seed(a.value(i).as_bytes(), seed)
                        };
                        *h = mix(*h, v);
                    }
                }
                KeyCol::Ts(a) => {
                    for (i, h) in h.iter_mut().enumerate() {
                        let v = if a.is_null(i) {
                            NULL_HASH
                        } else {
                            xxh3_64_with_seed(&a.value(i).to_le_bytes(), seed)
                        };
                        *h = mix(*h, v);
                    }
                }
            }
        }
        h
    }

    /// Whether row `i` here and row `j` of `other` have equal keys (NULL
    /// equal to NULL).
    fn eq(&self, i: usize, other: &Keys, j: usize) -> bool {
        self.0.iter().zip(&other.0).all(|(a, b)| match (a, b) {
            (KeyCol::Str(x), KeyCol::Str(y)) => match (x.is_null(i), y.is_null(j)) {
                (true, true) => true,
                (false, false) => x.value(i) == y.value(j),
                _ => false,
            },
            (KeyCol::Ts(x), KeyCol::Ts(y)) => match (x.is_null(i), y.is_null(j)) {
                (true, true) => true,
                (false, false) => x.value(i) == y.value(j),
                _ => false,
            },
            _ => false,
        })
    }
}

/// Record-schema indices of the key columns (`cols`), and the positions
/// in batches of them of `(cluster, audit_id)`, of the whole key in key
/// order, and of `request_received_at`.
struct KeyLayout {
    cols: Vec<usize>,
    id_pos: Vec<usize>,
    key_pos: Vec<usize>,
    received: usize,
}

/// Record that `(cluster, audit_id)` hash `id` was seen with request key
/// hash `key`: the first key is kept, a second one marks the ID reused.
fn note_key(first: &mut HashMap<u64, u64, BuildIdentity>, multi: &mut KeySet, id: u64, key: u64) {
    match first.get(&id) {
        Some(&k) if k != key => {
            multi.insert(id);
        }
        Some(_) => {}
        None => {
            first.insert(id, key);
        }
    }
}

/// A run-time filter as a candidate pass uses it: its snapshot, and the
/// relation columns it reads.
type RunTimeFilter = (Arc<dyn PhysicalExpr>, Vec<String>);

/// What the candidate passes found in one partition.
#[derive(Debug, Default)]
struct Candidates {
    /// `audit_id_reuse`: hashes of the keys of the reused requests (the
    /// only requests it may emit). `None` for the other relations, whose
    /// filters above the scan drop what the times let through.
    keys: Option<KeySet>,
    /// The receive times of the requests that may match.
    times: Arc<Times>,
}

impl Candidates {
    fn is_empty(&self) -> bool {
        self.times.is_empty() || self.keys.as_ref().is_some_and(|k| k.is_empty())
    }
}

/// `received_in(request_received_at)` over `times`.
fn received_in(times: Arc<Times>) -> Expr {
    ScalarUDF::new_from_impl(ReceivedIn::new(times)).call(vec![Expr::Column(
        Column::new_unqualified("request_received_at"),
    )])
}

/// `received_in(request_received_at)`: whether a row's receive time is one
/// of a candidate set. A function rather than `IN (list)`: with tens of
/// thousands of candidates per partition, the list made DataFusion build
/// (and the reader evaluate) an expression as large as the list, and the
/// pass cost more than decoding everything (proxy-summary on 10M events:
/// 4.7 s with the list).
#[derive(Debug)]
struct ReceivedIn {
    /// Tells instances apart (the trait wants equality and a hash).
    id: u64,
    times: Arc<Times>,
    signature: Signature,
}

impl ReceivedIn {
    fn new(times: Arc<Times>) -> ReceivedIn {
        ReceivedIn {
            id: rand::random(),
            times,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl PartialEq for ReceivedIn {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for ReceivedIn {}

impl std::hash::Hash for ReceivedIn {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl ScalarUDFImpl for ReceivedIn {
    fn name(&self) -> &str {
        "received_in"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arg = args
            .args
            .first()
            .ok_or_else(|| DataFusionError::Internal("received_in takes one argument".into()))?
            .to_array(args.number_rows)?;
        let ts = arg
            .as_any()
            .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
            .ok_or_else(|| DataFusionError::Internal("received_in takes a timestamp".into()))?;
        let out: BooleanArray = (0..ts.len())
            .map(|i| Some(self.times.contains(ts.is_valid(i).then(|| ts.value(i)))))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// End of a chain of groups whose keys share a hash.
const NO_GROUP: u32 = u32::MAX;

/// The keys of `ScanPlan::group`'s table are already seeded hashes.
#[derive(Debug, Clone, Copy, Default)]
struct BuildIdentity;

#[derive(Debug, Default)]
struct Identity(u64);

impl std::hash::Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

impl std::hash::BuildHasher for BuildIdentity {
    type Hasher = Identity;
    fn build_hasher(&self) -> Identity {
        Identity(0)
    }
}

/// A set of key hashes. They are seeded per scan already (`Keys::hashes`),
/// so the set hashes them no further: with the standard library's SipHash,
/// hashing the hashes again took 7% of secrets-by-humans on 10M events.
type KeySet = HashSet<u64, BuildIdentity>;

/// The receive times of a partition's candidate requests, which
/// `received_in` tests for every row the Parquet reader reads.
#[derive(Debug, Default)]
struct Times {
    set: HashSet<i64, BuildMix>,
    null: bool,
}

impl Times {
    fn insert(&mut self, t: Option<i64>) {
        match t {
            Some(t) => {
                self.set.insert(t);
            }
            None => self.null = true,
        }
    }

    fn contains(&self, t: Option<i64>) -> bool {
        match t {
            Some(t) => self.set.contains(&t),
            None => self.null,
        }
    }

    fn is_empty(&self) -> bool {
        self.set.is_empty() && !self.null
    }
}

/// Hashes a receive time with a per-set random seed, by the same xxh3 that
/// `Keys::hashes` uses for timestamps. The seed keeps chosen timestamps from
/// colliding on purpose.
#[derive(Debug, Clone, Copy)]
struct BuildMix(u64);

impl Default for BuildMix {
    fn default() -> BuildMix {
        BuildMix(rand::random())
    }
}

#[derive(Debug)]
struct Mix {
    seed: u64,
    h: u64,
}

impl std::hash::Hasher for Mix {
    fn finish(&self) -> u64 {
        self.h
    }
    /// Only `write_i64` is reached from `Times`; bytes written otherwise are
    /// chained through the same hash so that the hasher stays correct.
    fn write(&mut self, bytes: &[u8]) {
        self.h = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.seed ^ self.h);
    }
    fn write_i64(&mut self, v: i64) {
        self.write(&v.to_le_bytes());
    }
}

impl std::hash::BuildHasher for BuildMix {
    type Hasher = Mix;
    fn build_hasher(&self) -> Mix {
        Mix { seed: self.0, h: 0 }
    }
}

/// The rows chosen for one request or event.
#[derive(Debug, Clone, Copy)]
struct Group {
    /// The row whose key the group has.
    first: (usize, usize),
    last: (usize, usize),
    last_rank: Rank,
    ident: (usize, usize),
    ident_rank: Rank,
}

/// What orders the stages of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rank {
    impersonated: bool,
    stage: i8,
    /// `stage_at`; an unknown time sorts first (least preferred).
    at: i64,
}

/// `Panic` > `ResponseComplete` > `ResponseStarted` > `RequestReceived` >
/// anything else; the same order as `query::reference::STAGE_RANK`.
pub fn stage_rank(stage: Option<&str>) -> i8 {
    match stage {
        Some("RequestReceived") => 0,
        Some("ResponseStarted") => 1,
        Some("ResponseComplete") => 2,
        Some("Panic") => 3,
        _ => -1,
    }
}

/// Typed views of the columns that rank rows.
struct Cols<'a> {
    stage: Vec<&'a StringViewArray>,
    stage_at: Vec<&'a arrow::array::TimestampMicrosecondArray>,
    impersonated: Vec<&'a ArrayRef>,
    source: Vec<&'a StringViewArray>,
}

fn typed<'a, T: 'static>(b: &'a RecordBatch, i: usize, what: &str) -> Result<&'a T> {
    b.column(i)
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| DataFusionError::Internal(format!("{what} has an unexpected type")))
}

impl<'a> Cols<'a> {
    fn new(plan: &ScanPlan, batches: &'a [RecordBatch]) -> Result<Cols<'a>> {
        Ok(Cols {
            stage: batches
                .iter()
                .map(|b| typed::<StringViewArray>(b, plan.stage, "stage"))
                .collect::<Result<_>>()?,
            stage_at: batches
                .iter()
                .map(|b| typed(b, plan.stage_at, "stage_at"))
                .collect::<Result<_>>()?,
            impersonated: batches
                .iter()
                .map(|b| b.column(plan.impersonated))
                .collect(),
            source: batches
                .iter()
                .map(|b| typed::<StringViewArray>(b, plan.source, "source"))
                .collect::<Result<_>>()?,
        })
    }

    fn rank(&self, b: usize, r: usize) -> Rank {
        let stage = self.stage[b];
        let at = self.stage_at[b];
        Rank {
            impersonated: self.impersonated[b].is_valid(r),
            stage: stage_rank(stage.is_valid(r).then(|| stage.value(r))),
            at: if at.is_valid(r) {
                at.value(r)
            } else {
                i64::MIN
            },
        }
    }

    fn source(&self, (b, r): (usize, usize)) -> &str {
        let s = self.source[b];
        if s.is_valid(r) {
            s.value(r)
        } else {
            ""
        }
    }

    /// Whether the row at `a` (ranked `ra`) beats the one at `b`: for the
    /// identity row, carrying impersonation first; then the later stage,
    /// the later `stage_at`, and the smaller `source`.
    fn better(
        &self,
        ra: Rank,
        a: (usize, usize),
        rb: Rank,
        b: (usize, usize),
        ident: bool,
    ) -> bool {
        let ka = (ident && ra.impersonated, ra.stage, ra.at);
        let kb = (ident && rb.impersonated, rb.stage, rb.at);
        match ka.cmp(&kb) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => self.source(a) < self.source(b),
        }
    }
}

/// The partitions one output stream of a scan computes, in order.
#[derive(Debug)]
struct Lane {
    plan: Arc<ScanPlan>,
    parts: Vec<Partition>,
}

impl PartitionStream for Lane {
    fn schema(&self) -> &SchemaRef {
        &self.plan.out_schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let plan = self.plan.clone();
        let stream = futures::stream::iter(self.parts.clone())
            .then(move |part| {
                let plan = plan.clone();
                let ctx = ctx.clone();
                async move { plan.partition(&part, ctx).await }
            })
            .map_ok(|batches| futures::stream::iter(batches.into_iter().map(Ok)))
            .try_flatten();
        Box::pin(RecordBatchStreamAdapter::new(
            self.plan.out_schema.clone(),
            stream,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::{held_bytes, row_of, row_testable, RowOf, Times};
    use arrow::array::{ArrayRef, RecordBatch, StringViewArray};
    use std::sync::Arc;

    fn views(n: usize, tag: &str) -> RecordBatch {
        // Longer than 12 bytes: kept in a data buffer, not inline in the view.
        let a: ArrayRef = Arc::new(StringViewArray::from_iter_values(
            (0..n).map(|i| format!("{tag}-a-string-longer-than-twelve-bytes-{i}")),
        ));
        RecordBatch::try_from_iter([("s", a)]).expect("batch")
    }

    /// The rows a scan's filter was tested on include those of the pages
    /// the page index skipped: on rows sorted by resource, a filter on one
    /// resource skips most pages, and counting only the rows decoded made
    /// it look like one most rows pass (so the candidate passes were turned
    /// off).
    #[tokio::test]
    async fn rows_tested_include_the_pages_the_index_skipped() {
        use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
        let batch = crate::sinks::lake::writer::tests::generated_batch(3000);
        let order = arrow::compute::sort_to_indices(
            batch.column_by_name("resource").expect("resource"),
            None,
            None,
        )
        .expect("sort");
        let batch = arrow::compute::take_record_batch(&batch, &order).expect("take");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sorted.parquet");
        // Pages of 50 rows, so that one resource's rows fill few of them.
        let props = parquet::file::properties::WriterProperties::builder()
            .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Page)
            .set_data_page_row_count_limit(50)
            .set_write_batch_size(50)
            .build();
        let mut w = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&path).expect("create"),
            batch.schema(),
            Some(props),
        )
        .expect("writer");
        w.write(&batch).expect("write");
        w.close().expect("close");

        let mut config = SessionConfig::new();
        config.options_mut().execution.parquet.pushdown_filters = true;
        config.options_mut().execution.parquet.enable_page_index = true;
        let ctx = SessionContext::new_with_config(config);
        ctx.register_parquet(
            "t",
            path.to_str().expect("utf-8"),
            ParquetReadOptions::default(),
        )
        .await
        .expect("register");
        let plan = ctx
            .sql("SELECT request_received_at FROM t WHERE resource = 'secrets'")
            .await
            .expect("sql")
            .create_physical_plan()
            .await
            .expect("plan");
        let rows: usize = datafusion::physical_plan::collect(plan.clone(), ctx.task_ctx())
            .await
            .expect("run")
            .iter()
            .map(|b| b.num_rows())
            .sum();
        assert!(rows > 0 && rows < 3000 / 4, "{rows} rows of secrets");
        let mut skipped = 0;
        let mut find = vec![plan.clone()];
        while let Some(p) = find.pop() {
            if let Some(m) = p.metrics() {
                skipped += super::page_rows_skipped(&m);
            }
            find.extend(p.children().into_iter().cloned());
        }
        assert!(skipped > 1000, "the page index skipped {skipped} rows");
        assert_eq!(super::rows_tested(plan.as_ref()), Some(3000));
    }

    #[test]
    fn held_bytes_counts_shared_buffers_once() {
        let whole = views(1000, "x");
        let one = held_bytes(std::slice::from_ref(&whole));
        assert!(one > 1000 * 40, "{one} bytes for 1000 strings of 40+ bytes");
        // Two halves point into the same buffers: no more than the whole.
        let halves = [whole.slice(0, 500), whole.slice(500, 500)];
        assert_eq!(held_bytes(&halves), one);
        assert_eq!(held_bytes(&[whole.clone(), whole.clone()]), one);
        // Another array's buffers are its own.
        let other = views(1000, "y");
        let both = held_bytes(&[whole, other.clone()]);
        assert_eq!(both, one + held_bytes(&[other]));
    }

    #[test]
    fn row_of_names_the_row_a_filter_holds_on() {
        for (cols, want) in [
            (&["cluster", "verb"][..], Some(RowOf::Every)),
            (&[][..], Some(RowOf::Every)),
            (&["cluster", "credential_id"][..], Some(RowOf::Identity)),
            (
                &["actor_kind", "impersonated_username"][..],
                Some(RowOf::Identity),
            ),
            (&["verb", "resource"][..], Some(RowOf::Last)),
            (&["resource", "actor_kind"][..], None),
        ] {
            assert_eq!(row_of(cols), want, "{cols:?}");
        }
    }

    #[test]
    fn row_testable_takes_disjunctions_of_one_kind_per_branch() {
        use datafusion::prelude::{col, lit};
        let user = || col("actor_kind").eq(lit("user"));
        let pods = || col("resource").eq(lit("pods"));
        let get = || col("verb").eq(lit("get"));
        for (e, want) in [
            (user(), true),
            (user().or(pods()), true),
            (user().or(pods().and(get())).or(get()), true),
            (user().and(pods()), false),
            (user().and(pods()).or(get()), false),
            (get().or(user().and(pods())), false),
            (datafusion::logical_expr::not(user().or(pods())), false),
        ] {
            assert_eq!(row_testable(&e), want, "{e}");
        }
    }

    #[test]
    fn times_hold_what_was_inserted_and_nothing_else() {
        let mut t = Times::default();
        assert!(t.is_empty());
        for v in [0_i64, 1, -1, i64::MAX, i64::MIN, 1_764_000_000_000_000] {
            t.insert(Some(v));
        }
        for (v, want) in [
            (Some(0), true),
            (Some(-1), true),
            (Some(i64::MIN), true),
            (Some(1_764_000_000_000_000), true),
            (Some(2), false),
            (Some(1_764_000_000_000_001), false),
            (None, false),
        ] {
            assert_eq!(t.contains(v), want, "{v:?}");
        }
        assert!(!t.is_empty());
        t.insert(None);
        assert!(t.contains(None));
        let mut only_null = Times::default();
        only_null.insert(None);
        assert!(!only_null.is_empty() && !only_null.contains(Some(0)));
    }
}
