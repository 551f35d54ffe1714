//! The lake's commit log: a Delta Lake table (`_delta_log/`, through delta-rs) over the
//! Hive-partitioned files our own writer produces (lake/writer.rs keeps its tuned properties;
//! a commit only names the files).
//!
//! Invariants:
//! - a data file is part of the lake exactly when an `add` in the log names it and no later
//!   `remove` does; files on disk that the log does not name (a crashed commit's, or ones a
//!   compaction replaced and vacuum has not yet deleted) are invisible to auditlake's queries;
//! - a source's position moves only inside a commit that also adds the files holding it: an
//!   application transaction (`txn`, app id = source id, version = its `committed_through`)
//!   is one action of that same commit, so the files and the position are atomic together;
//! - several processes may commit at once: version N+1 is written with a conditional put
//!   (put-if-absent); a commit that lost the race is rebuilt on the new version here (not by
//!   delta-rs, whose retry would keep a link to the version it first read), after checking that
//!   no source it moves was moved meanwhile and every file it removes is still live;
//! - tamper evidence: every added file carries the SHA-256 of its bytes (tag
//!   `auditlake.sha256`), and every commit after the first carries the SHA-256 of the log entry
//!   before it (`auditlake.previous` in its commitInfo), so the entries form a hash chain that
//!   `lake verify` (lake/verify.rs) walks. New tables turn the log's expired-entry cleanup off:
//!   the chain and time travel need every entry.
//!
//! The pipeline is synchronous at its commit points (a commit waits for its fsyncs), so the
//! log's async calls run on one small runtime of their own and the caller waits on a channel:
//! that works from plain threads and from inside another runtime's worker alike.

use super::LakeError;
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, Add, Remove, StructType, Transaction};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::TryStreamExt;
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The directory of the log under the lake root.
pub const LOG_DIR: &str = "_delta_log";

/// The partition columns, in path order.
pub const PARTITIONS: [&str; 2] = ["dt", "hour"];

/// A file a commit adds.
#[derive(Debug, Clone)]
pub struct NewFile {
    /// Path relative to the lake root (`dt=…/hour=…/name.parquet`): the partition values
    /// are read from it.
    pub rel: String,
    pub size: u64,
    pub rows: u64,
    /// Lower-case hex SHA-256 of the file's bytes (`None` only where a file could not be
    /// hashed; `lake verify` reports such files as unverifiable).
    pub sha256: Option<String>,
}

/// The add-action tag that holds a file's SHA-256.
pub const SHA256_TAG: &str = "auditlake.sha256";
/// The commitInfo key that holds the SHA-256 of the previous log entry.
pub const PREVIOUS_KEY: &str = "auditlake.previous";
/// The commitInfo key that names the process that wrote a commit.
pub const WRITER_KEY: &str = "auditlake.writer";

/// How many times a commit is rebuilt on a newer version before it gives up; each loss means
/// another writer committed in between, so this bounds a storm, not a normal race.
const COMMIT_ATTEMPTS: usize = 64;

static WRITER: OnceLock<String> = OnceLock::new();

/// Name the process in the commits it writes (`lake history`'s writer column): the command,
/// the host and the process id. Set once, at start; later calls are ignored.
pub fn set_writer(command: &str) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown-host".into());
    let _ = WRITER.set(format!("{command}@{host}/{}", std::process::id()));
}

fn writer() -> String {
    WRITER
        .get()
        .cloned()
        .unwrap_or_else(|| format!("auditlake/{}", std::process::id()))
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A file the log says is live.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LiveFile {
    pub rel: String,
    pub dt: String,
    pub hour: String,
    pub size: u64,
    /// `numRecords` of its statistics, when the writer recorded them.
    pub rows: Option<u64>,
}

/// What one commit does to the table.
#[derive(Debug, Default)]
pub struct Change {
    pub adds: Vec<NewFile>,
    pub removes: Vec<LiveFile>,
    /// The sources whose positions this commit moves, and to what.
    pub positions: Vec<(String, u64)>,
    /// Where the writer believes those sources stand before this commit (0: nothing yet).
    /// A log that records another position lost or gained a commit behind the writer's back
    /// (a store whose put-if-absent is not atomic, a `lake reset` under a running writer):
    /// the commit is refused rather than build on it.
    pub believed: Vec<(String, u64)>,
    /// The rows change (retention's removes, rewritten values, dropped duplicates); `false`
    /// for a change that only moves rows between files (compaction), which streaming readers
    /// of the log skip.
    pub data_change: bool,
}

/// The lake's Delta table, shared by every writer of the process.
#[derive(Clone)]
pub struct Log {
    root: PathBuf,
    table: Arc<tokio::sync::Mutex<DeltaTable>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("root", &self.root).finish()
    }
}

fn runtime() -> Result<&'static tokio::runtime::Runtime, LakeError> {
    static RT: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("auditlake-delta")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| LakeError::Delta {
        path: PathBuf::new(),
        problem: format!("cannot start the Delta log's runtime: {e}"),
    })
}

/// Run `f` on the log's runtime and wait for it (also the object stores' runtime,
/// lake/store.rs).
pub(crate) fn block<F>(f: F) -> Result<F::Output, LakeError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime()?.spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv().map_err(|_| LakeError::Delta {
        path: PathBuf::new(),
        problem: "the Delta log's task ended without an answer".into(),
    })
}

fn table_url(root: &Path) -> Result<url::Url, LakeError> {
    let abs = std::path::absolute(root).map_err(|e| LakeError::Io {
        path: root.to_path_buf(),
        source: e,
    })?;
    url::Url::from_directory_path(&abs).map_err(|()| LakeError::Delta {
        path: abs.clone(),
        problem: "not an absolute directory path".into(),
    })
}

/// The table's columns: the stored record, then the partition columns.
fn table_schema() -> Result<StructType, DeltaTableError> {
    let mut fields: Vec<arrow::datatypes::Field> = crate::schema::record_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    for p in PARTITIONS {
        fields.push(arrow::datatypes::Field::new(
            p,
            arrow::datatypes::DataType::Utf8,
            true,
        ));
    }
    let schema = arrow::datatypes::Schema::new(fields);
    Ok((&schema).try_into_kernel()?)
}

/// Whether `root` holds a Delta table (its first log entry: a crash while creating the table
/// can leave an empty `_delta_log/`). `root` may name an object store (lake/store.rs).
pub fn exists(root: &Path) -> bool {
    let first = format!("{LOG_DIR}/{:020}.json", 0);
    match super::store::remote(root) {
        Ok(Some(r)) => r.exists(&first).unwrap_or(false),
        Ok(None) => root.join(first).is_file(),
        Err(_) => false,
    }
}

/// Where a table's log is read and written: a local directory (delta-rs's file store, by URL)
/// or an object store (put-if-absent log entries, lake/store.rs).
enum Place {
    Url(url::Url),
    Store(deltalake_core::logstore::LogStoreRef),
}

impl Place {
    fn of(root: &Path) -> Result<Place, LakeError> {
        match super::store::remote(root)? {
            Some(r) => Ok(Place::Store(r.log_store())),
            None => Ok(Place::Url(table_url(root)?)),
        }
    }

    fn table(&self) -> Result<DeltaTable, DeltaTableError> {
        match self {
            Place::Url(url) => DeltaTableBuilder::from_url(url.clone())?.build(),
            Place::Store(ls) => Ok(DeltaTable::new(ls.clone())),
        }
    }

    async fn load(&self) -> Result<DeltaTable, DeltaTableError> {
        let mut t = self.table()?;
        t.load().await?;
        Ok(t)
    }
}

impl Log {
    fn err(&self, e: DeltaTableError) -> LakeError {
        delta_error(&self.root, e)
    }

    /// Open the log of the lake at `root`, creating the table when `create` is set and it does
    /// not exist yet; `None` when there is none and `create` is not set.
    pub fn open(root: &Path, create: bool) -> Result<Option<Log>, LakeError> {
        Self::open_with(root, create, None)
    }

    /// Create the table at `root` with `initial` in its first commit (a conversion: the table
    /// and the files it already holds appear together). Fails if the table exists.
    pub fn create_with(root: &Path, initial: Change) -> Result<Log, LakeError> {
        Self::open_with(root, true, Some(initial))?.ok_or_else(|| LakeError::Delta {
            path: root.join(LOG_DIR),
            problem: "the table could not be created".into(),
        })
    }

    fn open_with(
        root: &Path,
        create: bool,
        initial: Option<Change>,
    ) -> Result<Option<Log>, LakeError> {
        let place = Place::of(root)?;
        let path = root.to_path_buf();
        let present = exists(root);
        if !present && !create {
            return Ok(None);
        }
        let converting = initial.is_some();
        let (initial, _, txns) = actions(initial.unwrap_or_default());
        let table = block(async move {
            if present {
                if converting {
                    return Err(DeltaTableError::Generic(
                        "the lake already has a Delta log".into(),
                    ));
                }
                return place.load().await;
            }
            // No table yet (and `create` is set): made here, not after a load that fails.
            let schema = table_schema()?;
            let builder = match &place {
                Place::Url(url) => CreateBuilder::new().with_location(url.as_str()),
                Place::Store(ls) => CreateBuilder::new().with_log_store(ls.clone()),
            };
            let made = builder
                .with_actions(initial.into_iter().chain(txns.into_iter().map(Action::Txn)))
                .with_table_name("audit")
                .with_comment("Kubernetes audit events written by auditlake")
                .with_columns(schema.fields().cloned())
                .with_partition_columns(PARTITIONS)
                // The hash chain and time travel need every entry; a checkpoint would let
                // delta-rs delete entries older than the log retention (30 days).
                .with_configuration_property(
                    deltalake_core::TableProperty::EnableExpiredLogCleanup,
                    Some("false"),
                )
                // No retry: a writer that lost the race to create the table must not
                // append a second CREATE TABLE after the winner's (unlinked, with the
                // metadata again); it loads the winner's table below.
                .with_commit_properties(
                    CommitProperties::default()
                        .with_max_retries(0)
                        .with_metadata([(
                            WRITER_KEY.to_string(),
                            serde_json::Value::String(writer()),
                        )]),
                )
                .with_save_mode(SaveMode::ErrorIfExists)
                .await;
            match made {
                Ok(t) => Ok(t),
                // Another writer created it first: use theirs.
                Err(_) if !converting => place.load().await,
                Err(e) => Err(e),
            }
        })?
        .map_err(|e| delta_error(&path, e))?;
        Ok(Some(Log {
            root: path,
            table: Arc::new(tokio::sync::Mutex::new(table)),
        }))
    }

    /// The last position the log records for `source` (its `txn` version).
    pub fn position(&self, source: &str) -> Result<Option<u64>, LakeError> {
        let table = self.table.clone();
        let source = source.to_string();
        let got = block(async move {
            let mut t = table.lock().await;
            t.update_incremental(None).await?;
            let v = t
                .snapshot()?
                .transaction_version(t.log_store().as_ref(), source)
                .await?;
            Ok::<_, DeltaTableError>(v)
        })?
        .map_err(|e| self.err(e))?;
        Ok(got.map(|v| v.max(0) as u64))
    }

    /// Every live file, sorted by path.
    pub fn live(&self) -> Result<Vec<LiveFile>, LakeError> {
        let table = self.table.clone();
        let mut files = block(async move {
            let mut t = table.lock().await;
            t.update_incremental(None).await?;
            let store = t.log_store();
            let views: Vec<_> = t
                .snapshot()?
                .snapshot()
                .file_views(store.as_ref(), None)
                .try_collect()
                .await?;
            let files: Vec<LiveFile> = views.iter().map(live_file).collect();
            Ok::<_, DeltaTableError>(files)
        })?
        .map_err(|e| self.err(e))?;
        files.sort();
        Ok(files)
    }

    /// The files removed from the table that it still remembers (removed within the log's
    /// retention), with when each was removed (ms since the epoch).
    pub fn tombstones(&self) -> Result<Vec<(String, Option<i64>)>, LakeError> {
        let table = self.table.clone();
        block(async move {
            let mut t = table.lock().await;
            t.update_incremental(None).await?;
            let store = t.log_store();
            let views: Vec<_> = t
                .snapshot()?
                .all_tombstones(store.as_ref())
                .try_collect()
                .await?;
            Ok::<_, DeltaTableError>(
                views
                    .iter()
                    .map(|v| (v.path().into_owned(), v.deletion_timestamp()))
                    .collect(),
            )
        })?
        .map_err(|e| self.err(e))
    }

    /// The table's current version.
    pub fn version(&self) -> Result<u64, LakeError> {
        let table = self.table.clone();
        block(async move {
            let mut t = table.lock().await;
            t.update_incremental(None).await?;
            Ok::<_, DeltaTableError>(t.version().unwrap_or(0) as u64)
        })?
        .map_err(|e| self.err(e))
    }

    /// Commit `change` as one new version of the table, and return it. On the local
    /// filesystem the new log entry and its directory are fsynced before this returns, so an
    /// acknowledgement that follows survives a power cut, not only a crash.
    pub fn commit(&self, change: Change) -> Result<u64, LakeError> {
        let removes: Vec<String> = change.removes.iter().map(|f| f.rel.clone()).collect();
        let rows: u64 = change.adds.iter().map(|f| f.rows).sum();
        let believed = change.believed.clone();
        let (actions, operation, txns) = actions(change);
        let table = self.table.clone();
        let version = block(async move {
            let mut t = table.lock().await;
            t.update_incremental(None).await?;
            // What this commit assumes of the table: the positions of the sources it moves.
            let mut assumed = Vec::new();
            for txn in &txns {
                let v = t
                    .snapshot()?
                    .transaction_version(t.log_store().as_ref(), txn.app_id.clone())
                    .await?;
                assumed.push((txn.app_id.clone(), v));
            }
            for (source, believed) in &believed {
                let logged = assumed
                    .iter()
                    .find(|(s, _)| s == source)
                    .and_then(|(_, v)| *v)
                    .map_or(0, |v| v.max(0) as u64);
                if logged != *believed {
                    return Err(DeltaTableError::Generic(format!(
                        "the log records source {source} at position {logged}, but this writer committed it through {believed}: a commit was lost or made behind its back (a store whose conditional put is not atomic, or a `lake reset` while it ran); this commit is abandoned and a restart reads again from position {logged}"
                    )));
                }
            }
            for _ in 0..COMMIT_ATTEMPTS {
                let store = t.log_store();
                let base = t.version().unwrap_or(0);
                let previous = match store.read_commit_entry(base).await? {
                    Some(bytes) => sha256_hex(&bytes),
                    None => {
                        return Err(DeltaTableError::Generic(format!(
                            "log entry {base} is missing: the table cannot be extended"
                        )))
                    }
                };
                let props = CommitProperties::default()
                    .with_application_transactions(txns.clone())
                    .with_max_retries(0)
                    .with_metadata([
                        (PREVIOUS_KEY.to_string(), serde_json::Value::String(previous)),
                        (WRITER_KEY.to_string(), serde_json::Value::String(writer())),
                        ("auditlake.rows".to_string(), serde_json::Value::from(rows)),
                    ]);
                let attempt = CommitBuilder::from(props)
                    .with_actions(actions.clone())
                    .build(Some(t.snapshot()?), store.clone(), operation.clone())
                    .await;
                match attempt {
                    Ok(done) => {
                        let version = done.version;
                        t.update_incremental(None).await?;
                        return Ok(version);
                    }
                    Err(e) if lost_race(&e) => {
                        t.update_incremental(None).await?;
                        let snap = t.snapshot()?;
                        for (source, was) in &assumed {
                            let now = snap
                                .transaction_version(t.log_store().as_ref(), source.clone())
                                .await?;
                            if now != *was {
                                return Err(DeltaTableError::Generic(format!(
                                    "another writer moved source {source} (from {was:?} to {now:?}) while this commit was being made: two writers of one source; this commit is abandoned and its rows will be read again"
                                )));
                            }
                        }
                        if !removes.is_empty() {
                            let live: std::collections::HashSet<String> = snap
                                .snapshot()
                                .file_views(t.log_store().as_ref(), None)
                                .map_ok(|v| v.path().into_owned())
                                .try_collect()
                                .await?;
                            if let Some(gone) = removes.iter().find(|r| !live.contains(*r)) {
                                return Err(DeltaTableError::Generic(format!(
                                    "{gone} was removed by another writer (a concurrent compaction, retention or reresolve) while this commit was being made; run it again"
                                )));
                            }
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(DeltaTableError::Generic(format!(
                "lost the race for a new version {COMMIT_ATTEMPTS} times in a row: too many writers commit at once"
            )))
        })?
        .map_err(|e| self.err(e))?;
        let entry = self
            .root
            .join(LOG_DIR)
            .join(format!("{:020}.json", version));
        // (On an object store the put itself is durable when it returns.)
        if super::store::is_remote(&self.root) {
            return Ok(version);
        }
        if let Ok(f) = std::fs::File::open(&entry) {
            f.sync_all().map_err(|source| LakeError::Io {
                path: entry.clone(),
                source,
            })?;
            super::sync_dir(&self.root.join(LOG_DIR))?;
        }
        Ok(version)
    }

    /// The files live at `version` of the table (time travel), sorted by path.
    pub fn live_at(root: &Path, version: u64) -> Result<Vec<LiveFile>, LakeError> {
        let place = Place::of(root)?;
        let files = block(async move {
            let mut t = place.table()?;
            t.load_version(version).await?;
            let views: Vec<_> = t
                .snapshot()?
                .snapshot()
                .file_views(t.log_store().as_ref(), None)
                .try_collect()
                .await?;
            Ok::<_, DeltaTableError>(views.iter().map(live_file).collect::<Vec<_>>())
        })?
        .map_err(|e| delta_error(root, e))?;
        let mut files = files;
        files.sort();
        Ok(files)
    }
}

/// Whether a commit failed only because another writer took the version it aimed at.
fn lost_race(e: &DeltaTableError) -> bool {
    use deltalake_core::kernel::transaction::TransactionError;
    matches!(
        e,
        DeltaTableError::VersionAlreadyExists(_)
            | DeltaTableError::Transaction {
                source: TransactionError::MaxCommitAttempts(_)
                    | TransactionError::VersionAlreadyExists(_)
            }
    )
}

fn live_file(v: &deltalake_core::kernel::LogicalFileView) -> LiveFile {
    let parts = v.partition_values_map();
    let part = |k: &str| {
        parts
            .get(k)
            .cloned()
            .flatten()
            .unwrap_or_else(|| super::batch::DEFAULT_PARTITION.to_string())
    };
    LiveFile {
        rel: v.path().into_owned(),
        dt: part("dt"),
        hour: part("hour"),
        size: v.size().max(0) as u64,
        rows: v.num_records().map(|n| n as u64),
    }
}

/// The log actions of `change`, the operation they record, and its application transactions.
fn actions(change: Change) -> (Vec<Action>, DeltaOperation, Vec<Transaction>) {
    let now = chrono::Utc::now().timestamp_millis();
    let mut actions: Vec<Action> = Vec::new();
    let data_change = change.data_change || change.removes.is_empty();
    for f in &change.adds {
        actions.push(Action::Add(Add {
            path: f.rel.clone(),
            partition_values: partition_values(&f.rel),
            size: f.size as i64,
            modification_time: now,
            data_change,
            stats: Some(format!("{{\"numRecords\":{}}}", f.rows)),
            tags: f
                .sha256
                .as_ref()
                .map(|h| HashMap::from([(SHA256_TAG.to_string(), Some(h.clone()))])),
            ..Default::default()
        }));
    }
    for f in &change.removes {
        actions.push(Action::Remove(Remove {
            path: f.rel.clone(),
            data_change: change.data_change,
            deletion_timestamp: Some(now),
            extended_file_metadata: Some(true),
            partition_values: Some(partition_values(&f.rel)),
            size: Some(f.size as i64),
            ..Default::default()
        }));
    }
    let operation = if change.removes.is_empty() {
        DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: Some(PARTITIONS.iter().map(|p| p.to_string()).collect()),
            predicate: None,
        }
    } else if change.adds.is_empty() {
        DeltaOperation::Delete { predicate: None }
    } else {
        // Compaction; its files carry dataChange=true when it dropped duplicate rows.
        DeltaOperation::Optimize {
            predicate: None,
            target_size: 0,
        }
    };
    let txns = change
        .positions
        .iter()
        .map(|(source, through)| {
            Transaction::new_with_last_update(source, *through as i64, Some(now))
        })
        .collect();
    (actions, operation, txns)
}

/// The partition values of a file at `rel` (`dt=…/hour=…/name`): Hive's default partition
/// is Delta's NULL.
fn partition_values(rel: &str) -> HashMap<String, Option<String>> {
    let mut out = HashMap::new();
    for segment in rel.split('/') {
        if let Some((key, value)) = segment.split_once('=') {
            if PARTITIONS.contains(&key) {
                let value = (value != super::batch::DEFAULT_PARTITION).then(|| value.to_string());
                out.insert(key.to_string(), value);
            }
        }
    }
    out
}

fn delta_error(root: &Path, e: DeltaTableError) -> LakeError {
    LakeError::Delta {
        path: root.join(LOG_DIR),
        problem: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(rel: &str, rows: u64) -> NewFile {
        NewFile {
            rel: rel.into(),
            size: 10,
            rows,
            sha256: None,
        }
    }

    /// Files and positions move together, and a removed file is no longer live.
    #[test]
    fn positions_and_files_commit_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(Log::open(dir.path(), false).expect("open").is_none());
        let log = Log::open(dir.path(), true).expect("create").expect("log");
        assert_eq!(log.position("s").expect("position"), None);
        log.commit(Change {
            adds: vec![file("dt=2026-01-01/hour=00/a.parquet", 5)],
            positions: vec![("s".into(), 7)],
            ..Default::default()
        })
        .expect("commit");
        // A second process sees it.
        let other = Log::open(dir.path(), false).expect("open").expect("log");
        assert_eq!(other.position("s").expect("position"), Some(7));
        assert_eq!(other.position("t").expect("position"), None);
        let live = other.live().expect("live");
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].rows, Some(5));
        other
            .commit(Change {
                adds: vec![file("dt=2026-01-01/hour=00/b.parquet", 5)],
                removes: live,
                ..Default::default()
            })
            .expect("replace");
        let names: Vec<String> = log
            .live()
            .expect("live")
            .into_iter()
            .map(|f| f.rel)
            .collect();
        assert_eq!(names, vec!["dt=2026-01-01/hour=00/b.parquet".to_string()]);
        assert_eq!(log.position("s").expect("position"), Some(7), "kept");
    }

    /// A writer whose belief about its source's position is not the log's (a commit lost by a
    /// store, or made behind its back) is refused instead of building on it.
    #[test]
    fn a_commit_made_behind_a_writers_back_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path(), true).expect("create").expect("log");
        let commit = |log: &Log, rel: &str, from: u64, to: u64| {
            log.commit(Change {
                adds: vec![file(rel, 1)],
                positions: vec![("s".into(), to)],
                believed: vec![("s".into(), from)],
                ..Default::default()
            })
        };
        commit(&log, "dt=2026-01-01/hour=00/a.parquet", 0, 7).expect("first");
        let other = Log::open(dir.path(), false).expect("open").expect("log");
        commit(&other, "dt=2026-01-01/hour=00/b.parquet", 7, 9).expect("behind the back");
        let refused = commit(&log, "dt=2026-01-01/hour=00/c.parquet", 7, 12)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            refused
                .contains("records source s at position 9, but this writer committed it through 7"),
            "{refused}"
        );
        assert_eq!(log.position("s").expect("position"), Some(9));
        commit(&log, "dt=2026-01-01/hour=00/c.parquet", 9, 12).expect("from the log's position");
    }
}
