//! The lake: Hive-partitioned Parquet files, a Delta Lake log that says which of them are
//! live and how far each source is, and the bookkeeping that makes writes atomic and replays
//! idempotent.
//!
//! Layout under the lake root:
//! - `dt=YYYY-MM-DD/hour=HH/<stem>.parquet` — the data;
//! - `_delta_log/` — the Delta table ([`delta`]): every commit adds the files of a segment and
//!   records its source's position (an application transaction) in one log entry;
//! - `_rejected/<stem>.jsonl` — dead letters (original text, reason, where);
//! - `_state/<source>.json` — per source: the segment being committed, if any (the files an
//!   interrupted commit may have put in place), and the last position, as a copy of the log's;
//! - `_tmp/` — files being written (never read by queries).
//!
//! Rows arrive in *segments*: a contiguous position range of one source
//! (lines of a file, offsets of a Kafka partition, records of a log). A
//! segment's files are all named `<source>-<first>-<last>` and appear
//! together. Commit protocol, which is what makes a crash at any instant
//! harmless:
//! 1. every file is written to `_tmp/`, flushed and fsynced;
//! 2. the state records the segment as *pending* (its final paths);
//! 3. each file is renamed into place and its directory fsynced;
//! 4. one Delta commit adds the files and moves the source's position (the commit point);
//! 5. the state clears *pending*.
//!
//! Recovery asks the log: if it holds the pending segment's position, the commit happened and
//! the files stay; otherwise they are deleted, so the segment is simply produced again: rows
//! are never duplicated and never lost (positions past the committed one are re-read). Files
//! on disk that the log does not name are never read by queries ([`live_files`]).
//!
//! A source is written by one process at a time: [`Lake::lock`] holds an OS lock on
//! `_state/<source>.lock`. Different sources may be written by different processes at once:
//! their commits are separate log versions, each written put-if-absent.
//!
//! A lake written before the log ([`is_legacy`]) is refused by writers until
//! `auditlake lake convert` ([`convert`]) names its files in a first commit; queries read it
//! as before meanwhile.

pub mod batch;
pub mod check;
pub mod compact;
pub mod convert;
pub mod delta;
pub mod reresolve;
pub mod store;
pub mod vacuum;
pub mod verify;
pub mod writer;

use crate::schema::{record_schema, SCHEMA_VERSION};
use arrow::record_batch::RecordBatch;
use batch::PartKey;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use writer::ParquetFile;

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("lake I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Parquet write of {path}: {source}")]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error("{path} cannot be read as a lake file: {problem}\nhint: `auditlake verify --lake L` lists damaged files")]
    Unreadable { path: PathBuf, problem: String },
    #[error("lake state {path} is unreadable: {problem}\nhint: if the lake was written by a newer auditlake, upgrade; otherwise move the file aside and re-ingest that source")]
    State { path: PathBuf, problem: String },
    #[error("Delta log {path}: {problem}\nhint: `auditlake verify --lake L` checks the lake; a log written by a newer auditlake or another Delta writer may use table features this one does not support")]
    Delta { path: PathBuf, problem: String },
    #[error("object store {url}: {problem}\nhint: check the URL, the credentials (AWS_*, GOOGLE_*, AZURE_* variables, instance metadata) and --lake-option (endpoint=…, region=…, allow_http=true for a plain-HTTP S3-compatible server)")]
    Store { url: String, problem: String },
    #[error("{what} is not yet supported on a lake on an object store ({url})\nhint: {advice}")]
    NotOnStore {
        what: String,
        url: String,
        advice: String,
    },
    #[error("{path} is a lake of the older layout (positions in _state/, no _delta_log/)\nhint: convert it in place once with `auditlake lake convert {path}`; nothing is re-ingested and queries keep working meanwhile")]
    NotConverted { path: PathBuf },
    #[error("{what}: another process ({holder}) is writing the same source into this lake (lock {path})\nhint: wait for it to finish or stop it; two writers of one source would undo each other's commits")]
    Busy {
        what: String,
        holder: String,
        path: PathBuf,
    },
}

/// What a source's `committed_through` counts: its last committed position
/// (files, the write-ahead log) or the next one to read (Kafka offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    Last,
    Next,
}

/// An OS lock on one source of a lake, released when dropped (or when the
/// process dies, so a crash never leaves it stale).
#[derive(Debug)]
pub struct SourceLock {
    _file: File,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LakeError + '_ {
    move |source| LakeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Tuning of the Parquet files.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub row_group_rows: usize,
    /// A segment is committed once it holds this many rows...
    pub segment_rows: usize,
    /// ...or has this many partitions open (bounds memory on unsorted input).
    pub max_open_partitions: usize,
    pub zstd_level: i32,
    /// Threads encoding the columns of a batch; 1 encodes on the writing
    /// thread. Shared by every writer of the lake.
    pub encode_threads: usize,
    /// Arrow bytes a segment holds to sort its row groups by [`ROW_ORDER`]
    /// (all its open files together); past it, the file holding most encodes
    /// what it holds as a sorted run. 0: rows are stored as they came.
    pub sort_bytes: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            row_group_rows: 128 * 1024,
            segment_rows: 1_000_000,
            max_open_partitions: 24,
            zstd_level: 1,
            encode_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            // A row group of 128Ki generated events is about 180 MB of
            // Arrow arrays: this lets one partition sort whole row groups,
            // and the one before it (an hour boundary) finish its last.
            sort_bytes: 256 << 20,
        }
    }
}

/// Columns that are unique-ish per row: dictionaries would only be built to
/// be thrown away. (`request_uri` is not one of them: controllers, kubelets
/// and lease renewals request the same URIs over and over, 4,420 distinct in
/// 200,000 generated events, and a dictionary halves its encoding time. Where
/// URIs are unique, parquet falls back to plain encoding once the column
/// chunk's dictionary reaches its 1 MiB limit.)
const NO_DICTIONARY: &[&str] = &[
    "audit_id",
    "object_uid",
    "request_received_at",
    "stage_at",
    "response_message",
    "original_claim_raw",
    "request_object",
    "response_object",
    "event_extra_fields",
    "source",
];

/// Columns that get page statistics (min/max/null count per page and per
/// column chunk), which is what lets a query skip pages and row groups.
/// Every other column, random tokens (audit ids, uids, credential ids), URIs,
/// free text, JSON blobs and the values inside lists and maps, gets none:
/// their min/max would span nearly the whole range in every page, so they
/// would prune nothing, while computing them costs about a sixth of the
/// encoding time. `audit_id` lookups use its bloom filter instead.
const STATISTICS: &[&str] = &[
    "cluster",
    "stage",
    "level",
    "verb",
    "request_received_at",
    "stage_at",
    "resource",
    "subresource",
    "namespace",
    "name",
    "api_group",
    "api_version",
    "response_code",
    "response_status",
    "response_reason",
    "decision",
    "decision_reason",
    "authn_username",
    "impersonated_username",
    "original_username",
    "actor_username",
    "actor_kind",
    "actor_sa_namespace",
    "actor_sa_name",
    "acted_as_username",
    "proxy_profile",
    "proxy_username",
    "resolution",
    "claim_status",
    "pod_name",
    "node_name",
    "ingested_at",
];

/// The order of rows within each row group that ingest writes: by resource,
/// then receive time. Every stage of one request shares both, so a request's
/// rows stay together, and a question about one resource (most named queries
/// filter on it: secrets, tokens, RBAC objects, pods/exec, events) reads a
/// few contiguous pages per column instead of a few rows in every page. On
/// 10M generated events every named query took 0.44-0.99 of its time on
/// rows in arrival order (tokens-minted and events-deleted 0.44-0.47), for
/// 1.3x the ingest CPU (`benches/README.md`, "Row order").
pub const ROW_ORDER: [&str; 2] = ["resource", "request_received_at"];

/// Columns investigators look up by exact value.
const BLOOM: &[&str] = &["actor_username", "audit_id", "name"];

/// Microsecond timestamps that nearly always differ from row to row (so no
/// dictionary) but only by a little: DELTA_BINARY_PACKED stores the small
/// differences instead of 8 plain bytes each, which hands ZSTD a fraction
/// of the bytes. On generated traffic both columns encode in about a third
/// of the time and come out 12% smaller. Every Parquet reader the lake
/// promises (DuckDB, pyarrow, Spark, Trino, DataFusion) decodes it.
const DELTA: &[&str] = &["request_received_at", "stage_at"];

pub fn writer_properties(opts: &WriteOptions, source: &str) -> WriterProperties {
    let level = ZstdLevel::try_new(opts.zstd_level).unwrap_or_default();
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(opts.row_group_rows))
        .set_statistics_enabled(EnabledStatistics::None)
        .set_created_by(format!("auditlake {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![
            KeyValue::new(
                "auditlake.schema_version".into(),
                SCHEMA_VERSION.to_string(),
            ),
            KeyValue::new(
                "auditlake.writer_version".into(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
            KeyValue::new("auditlake.source".into(), source.to_string()),
        ]));
    for c in STATISTICS {
        b = b.set_column_statistics_enabled(ColumnPath::from(*c), EnabledStatistics::Page);
    }
    for c in NO_DICTIONARY {
        b = b.set_column_dictionary_enabled(ColumnPath::from(*c), false);
    }
    for c in DELTA {
        b = b.set_column_encoding(ColumnPath::from(*c), Encoding::DELTA_BINARY_PACKED);
    }
    for c in BLOOM {
        let path = ColumnPath::from(*c);
        b = b
            .set_column_bloom_filter_enabled(path.clone(), true)
            .set_column_bloom_filter_fpp(path.clone(), 0.01)
            .set_column_bloom_filter_max_ndv(path, opts.row_group_rows as u64);
    }
    b.build()
}

/// A dead-lettered item.
///
/// Bounded whatever the input: at most [`KEEP_PER_ITEM`] bytes of the
/// original are kept (with its full length and a hash to recognise it), and
/// a segment keeps at most [`KEEP_PER_SEGMENT`] bytes of text in all; past
/// that only the position, reason, length and hash are recorded. A review
/// found one 91 KB gzip body of NULs written as a 566 MB dead letter before
/// these bounds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct RejectRecord {
    /// Where it came from (file path, webhook client, topic/partition).
    pub source: String,
    /// 1-based line (files), record (logs) or offset (Kafka).
    pub position: u64,
    /// Index within an EventList or array, when only one item was bad.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub item: Option<usize>,
    /// Byte offset of the item within the unit (line, body, message).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub offset: Option<u64>,
    pub reason: String,
    /// The original text, verbatim (or its first bytes, see `truncated`).
    /// When the original is not valid UTF-8 this is a lossy rendering and
    /// `base64` holds the kept bytes exactly.
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub base64: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub truncated: bool,
    /// Length in bytes of the whole original item.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub length: Option<u64>,
    /// xxh3-64 of the whole original item, when not all of it is kept.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub xxh3: Option<String>,
}

/// Bytes of one dead-lettered item that are kept.
pub const KEEP_PER_ITEM: usize = 64 << 10;
/// Bytes of dead-letter text one segment keeps in all.
pub const KEEP_PER_SEGMENT: u64 = 16 << 20;

impl RejectRecord {
    /// A dead letter of `original`, keeping at most [`KEEP_PER_ITEM`] of it.
    pub fn of(source: &str, position: u64, reason: String, original: &[u8]) -> RejectRecord {
        let mut r = RejectRecord {
            source: source.to_string(),
            position,
            reason,
            ..Default::default()
        };
        r.keep(original, KEEP_PER_ITEM);
        r
    }

    pub fn item(mut self, item: Option<usize>, offset: Option<u64>) -> RejectRecord {
        self.item = item;
        self.offset = offset;
        self
    }

    /// Replace the kept copy with at most `cap` bytes of `original`.
    pub fn keep(&mut self, original: &[u8], cap: usize) {
        let mut kept = &original[..original.len().min(cap)];
        match std::str::from_utf8(kept) {
            Ok(t) => {
                self.text = t.to_string();
                self.base64 = None;
            }
            // Cut inside a character: keep whole characters only.
            Err(e) if e.error_len().is_none() && std::str::from_utf8(original).is_ok() => {
                kept = &kept[..e.valid_up_to()];
                self.text = String::from_utf8_lossy(kept).into_owned();
                self.base64 = None;
            }
            Err(_) => {
                use base64::Engine as _;
                self.text = String::from_utf8_lossy(kept).into_owned();
                self.base64 = Some(base64::engine::general_purpose::STANDARD.encode(kept));
            }
        }
        self.truncated = kept.len() < original.len();
        self.length = Some(original.len() as u64);
        self.xxh3 = self
            .truncated
            .then(|| format!("{:016x}", xxhash_rust::xxh3::xxh3_64(original)));
    }

    /// Keep no text, only the length and hash of the original.
    fn drop_text(&mut self) {
        if !self.truncated && self.xxh3.is_none() {
            // All of the original is kept: exactly in `base64` when it is
            // not UTF-8, else in `text`. (A truncated record has no hash of
            // its original unless one was taken when it was cut.)
            use base64::Engine as _;
            let decoded = self
                .base64
                .as_ref()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
            let original = decoded.as_deref().unwrap_or(self.text.as_bytes());
            self.length.get_or_insert(original.len() as u64);
            self.xxh3 = Some(format!("{:016x}", xxhash_rust::xxh3::xxh3_64(original)));
        }
        self.text.clear();
        self.base64 = None;
        self.truncated = true;
    }

    /// Bytes of kept text (what the segment budget counts).
    fn kept_bytes(&self) -> u64 {
        (self.text.len() + self.base64.as_ref().map_or(0, String::len)) as u64
    }
}

/// Committed progress of one source.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct SourceState {
    pub source: String,
    /// Human description (file path, cluster) for operators.
    #[serde(default)]
    pub origin: String,
    /// Last committed position (0 = nothing yet).
    pub committed_through: u64,
    #[serde(default)]
    pub pending: Option<Pending>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pending {
    pub last: u64,
    /// Final paths relative to the lake root.
    pub files: Vec<String>,
}

/// What one segment commit stored.
#[derive(Debug, Clone, Default)]
pub struct CommitInfo {
    pub files: usize,
    pub rows: u64,
    pub rejected: u64,
    pub bytes: u64,
}

/// A lake root.
#[derive(Debug, Clone)]
pub struct Lake {
    /// The local directory: the lake itself, or for a lake on an object store the writer's
    /// working directory (temporaries and per-source state; lake/store.rs).
    root: PathBuf,
    /// The lake on an object store that commits go to, if it is one.
    remote: Option<Arc<store::Remote>>,
    /// The lake as named (a path or a URL).
    location: PathBuf,
    opts: WriteOptions,
    encoders: Option<Arc<rayon::ThreadPool>>,
    /// The commit log: what is live, and how far each source is.
    log: delta::Log,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Lake {
    /// Open (creating if needed) a lake at `root`.
    pub fn open(root: impl Into<PathBuf>, opts: WriteOptions) -> Result<Lake, LakeError> {
        let location = root.into();
        let remote = store::remote(&location)?;
        let (root, log) = match &remote {
            Some(r) => {
                let log = delta::Log::open(&location, true)?.ok_or_else(|| LakeError::Delta {
                    path: location.join(delta::LOG_DIR),
                    problem: "the table could not be created".into(),
                })?;
                (r.work_dir(), log)
            }
            None => {
                if is_legacy(&location) {
                    return Err(LakeError::NotConverted { path: location });
                }
                (location.clone(), Self::open_log(&location)?)
            }
        };
        for d in ["_state", "_tmp", "_rejected"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io(&p))?;
        }
        let encoders = writer::encoding_pool(opts.encode_threads);
        Ok(Lake {
            root,
            remote,
            location,
            opts,
            encoders,
            log,
        })
    }

    /// The lake as named: its directory, or its object store URL.
    pub fn location(&self) -> &Path {
        &self.location
    }

    /// The object store the lake lives on, if it is not a local directory.
    pub fn remote(&self) -> Option<&Arc<store::Remote>> {
        self.remote.as_ref()
    }

    /// Refuse `what` on a lake on an object store (a tool that reads or rewrites the files
    /// in place).
    pub fn local_only(&self, what: &str, advice: &str) -> Result<(), LakeError> {
        match &self.remote {
            Some(r) => Err(LakeError::NotOnStore {
                what: what.to_string(),
                url: r.url.clone(),
                advice: advice.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// Put the finished temporary `tmp` at `rel`: a rename into place on a local lake, an
    /// upload (then the temporary is deleted) on an object store.
    fn put(&self, tmp: &Path, rel: &str) -> Result<(), LakeError> {
        match &self.remote {
            None => place(tmp, &self.root.join(rel)),
            Some(r) => {
                r.upload(tmp, rel)?;
                fs::remove_file(tmp).map_err(io(tmp))
            }
        }
    }

    /// Delete the lake file `rel` (an interrupted commit's); one already gone is no error.
    fn unplace(&self, rel: &str) -> Result<(), LakeError> {
        if let Some(r) = &self.remote {
            return r.delete(rel);
        }
        let p = self.root.join(rel);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&p)(e)),
        }
        // The directory may never have been created (the commit failed making it); then
        // there is nothing to sync.
        if let Some(dir) = p.parent().filter(|d| d.is_dir()) {
            sync_dir(dir)?;
        }
        Ok(())
    }

    fn open_log(root: &Path) -> Result<delta::Log, LakeError> {
        fs::create_dir_all(root).map_err(io(root))?;
        delta::Log::open(root, true)?.ok_or_else(|| LakeError::Delta {
            path: root.join(delta::LOG_DIR),
            problem: "the table could not be created".into(),
        })
    }

    /// The lake's commit log.
    pub fn log(&self) -> &delta::Log {
        &self.log
    }

    /// Take the write lock of `source`, or say who holds it. `what` names
    /// the input for the message.
    pub fn lock(&self, source: &str, what: &str) -> Result<SourceLock, LakeError> {
        let path = self.root.join("_state").join(format!("{source}.lock"));
        match crate::lock::try_lock(&path).map_err(io(&path))? {
            Ok(file) => Ok(SourceLock { _file: file }),
            Err(holder) => Err(LakeError::Busy {
                what: what.to_string(),
                holder,
                path,
            }),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn state_path(&self, source: &str) -> PathBuf {
        self.root.join("_state").join(format!("{source}.json"))
    }

    /// Read a source's state, finishing the recovery of an interrupted commit first; its
    /// position is the log's. (`_resume`, what the positions count, is the caller's: the log
    /// records them as committed, so recovery no longer converts them.)
    pub fn recover(
        &self,
        source: &str,
        origin: &str,
        _resume: Resume,
    ) -> Result<SourceState, LakeError> {
        let path = self.state_path(source);
        let mut state = match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<SourceState>(&bytes).map_err(|e| LakeError::State {
                    path: path.clone(),
                    problem: e.to_string(),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SourceState {
                source: source.to_string(),
                origin: origin.to_string(),
                ..Default::default()
            },
            Err(e) => return Err(io(&path)(e)),
        };
        let as_read = state.clone();
        // Temporaries of this source are leftovers of a crashed writer.
        let tmp = self.root.join("_tmp");
        // `~` cannot occur in a source id (file, webhook or Kafka topic), so
        // this prefix matches this source's temporaries only.
        let prefix = format!("{source}~");
        for entry in fs::read_dir(&tmp).map_err(io(&tmp))?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let p = entry.path();
                fs::remove_file(&p).map_err(io(&p))?;
            }
        }
        // The log is the record of what is committed; the state file only says which files an
        // interrupted commit may have put in place.
        let logged = self.log.position(source)?.unwrap_or(0);
        if let Some(pending) = state.pending.take() {
            if logged >= pending.last {
                // The commit reached the log before the crash: its files are live.
                tracing::info!(
                    source,
                    last = pending.last,
                    "the interrupted commit had reached the lake's log; its files stay"
                );
            } else {
                tracing::warn!(
                    source,
                    last = pending.last,
                    files = pending.files.len(),
                    "removing files of a segment whose commit was interrupted; it will be written again"
                );
                for rel in &pending.files {
                    self.unplace(rel)?;
                }
            }
        }
        state.committed_through = logged;
        // Written only when recovery changed it: a Kafka member recovers every partition it
        // is assigned, and each write is an fsync.
        if state != as_read {
            self.save_state(&state)?;
        }
        Ok(state)
    }

    pub fn save_state(&self, state: &SourceState) -> Result<(), LakeError> {
        let path = self.state_path(&state.source);
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| LakeError::State {
            path: path.clone(),
            problem: e.to_string(),
        })?;
        write_atomic(&path, &bytes)
    }

    /// Start a segment for `source`.
    pub fn segment(&self, source: &str) -> Segment {
        Segment {
            lake: self.clone(),
            source: source.to_string(),
            open: BTreeMap::new(),
            rejects: None,
            rows: 0,
            rejected: 0,
            reject_bytes: 0,
        }
    }

    fn tmp_path(&self, source: &str, ext: &str) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("_tmp")
            .join(format!("{source}~{}-{n}.{ext}.tmp", std::process::id()))
    }
}

struct OpenFile {
    tmp: PathBuf,
    writer: ParquetFile<BufWriter<Hashed>>,
    rows: u64,
}

/// A temporary file that hashes what is written to it, so the SHA-256 the Delta log records
/// for a data file costs no second read of it.
pub(crate) struct Hashed {
    file: File,
    digest: ring::digest::Context,
}

impl Hashed {
    /// Create the temporary `tmp`, buffered as the Parquet writer wants it (1 MiB).
    pub(crate) fn create(tmp: &Path) -> Result<BufWriter<Hashed>, LakeError> {
        let file = File::create(tmp).map_err(io(tmp))?;
        Ok(BufWriter::with_capacity(
            1 << 20,
            Hashed {
                file,
                digest: ring::digest::Context::new(&ring::digest::SHA256),
            },
        ))
    }
}

impl Write for Hashed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// The SHA-256 of the file at `path`, read in 1 MiB pieces (for files written before the log
/// recorded hashes, and for `lake verify`).
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf)?;
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
    }
    Ok(delta::hex(digest.finish().as_ref()))
}

/// Files of one segment being written. Dropping a segment without
/// committing leaves only temporaries, which recovery deletes.
pub struct Segment {
    lake: Lake,
    source: String,
    open: BTreeMap<PartKey, OpenFile>,
    rejects: Option<(PathBuf, BufWriter<File>)>,
    rows: u64,
    rejected: u64,
    /// Kept dead-letter text so far (bounded by [`KEEP_PER_SEGMENT`]).
    reject_bytes: u64,
}

impl Segment {
    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    pub fn open_partitions(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0 && self.rejected == 0
    }

    /// Whether the segment should be committed before taking more input.
    pub fn is_full(&self) -> bool {
        self.rows as usize >= self.lake.opts.segment_rows
            || self.open.len() >= self.lake.opts.max_open_partitions
    }

    /// Append rows of one partition.
    pub fn write(&mut self, part: PartKey, batch: &RecordBatch) -> Result<(), LakeError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let file = match self.open.get_mut(&part) {
            Some(f) => f,
            None => {
                let tmp = self.lake.tmp_path(&self.source, "parquet");
                let f = Hashed::create(&tmp)?;
                let props = writer_properties(&self.lake.opts, &self.source);
                let writer =
                    ParquetFile::try_new(f, record_schema(), props, self.lake.encoders.clone())
                        .and_then(|w| match self.lake.opts.sort_bytes {
                            0 => Ok(w),
                            _ => w.sorted_by(&ROW_ORDER),
                        })
                        .map_err(|source| LakeError::Parquet {
                            path: tmp.clone(),
                            source,
                        })?;
                self.open.entry(part).or_insert(OpenFile {
                    tmp,
                    writer,
                    rows: 0,
                })
            }
        };
        file.writer
            .write(batch)
            .map_err(|source| LakeError::Parquet {
                path: file.tmp.clone(),
                source,
            })?;
        file.rows += batch.num_rows() as u64;
        self.rows += batch.num_rows() as u64;
        self.bound_sort_memory()
    }

    /// Keep the rows held for sorting within `sort_bytes`: the file holding
    /// most encodes them as a sorted run.
    fn bound_sort_memory(&mut self) -> Result<(), LakeError> {
        let budget = self.lake.opts.sort_bytes;
        while self
            .open
            .values()
            .map(|f| f.writer.pending_bytes())
            .sum::<usize>()
            > budget
        {
            let Some(file) = self
                .open
                .values_mut()
                .max_by_key(|f| f.writer.pending_bytes())
            else {
                break;
            };
            file.writer
                .encode_pending()
                .map_err(|source| LakeError::Parquet {
                    path: file.tmp.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Dead-letter one item. Past the segment's budget of kept text the
    /// record keeps its position, reason, length and hash only. Returns the
    /// bytes written.
    pub fn reject(&mut self, record: &RejectRecord) -> Result<u64, LakeError> {
        let over;
        let record = if self.reject_bytes + record.kept_bytes() > KEEP_PER_SEGMENT {
            let mut r = record.clone();
            r.drop_text();
            r.reason
                .push_str(" (text not kept: the segment's dead-letter budget is used up)");
            over = r;
            &over
        } else {
            record
        };
        if self.rejects.is_none() {
            let tmp = self.lake.tmp_path(&self.source, "jsonl");
            let f = File::create(&tmp).map_err(io(&tmp))?;
            self.rejects = Some((tmp, BufWriter::new(f)));
        }
        if let Some((tmp, w)) = self.rejects.as_mut() {
            let line = serde_json::to_vec(record).map_err(|e| io(tmp)(e.into()))?;
            w.write_all(&line)
                .and_then(|_| w.write_all(b"\n"))
                .map_err(io(tmp))?;
            self.reject_bytes += record.kept_bytes();
            self.rejected += 1;
            return Ok(line.len() as u64 + 1);
        }
        self.rejected += 1;
        Ok(0)
    }

    /// Commit the segment as positions `..=last` of its source, with files
    /// named after `stem`, and advance `state`. See the module docs for the
    /// protocol.
    pub fn commit(
        self,
        stem: &str,
        last: u64,
        state: &mut SourceState,
    ) -> Result<CommitInfo, LakeError> {
        let lake = self.lake;
        let mut info = CommitInfo {
            rows: self.rows,
            rejected: self.rejected,
            ..Default::default()
        };
        // 1. Finish and fsync every temporary.
        let mut moves: Vec<(PathBuf, String)> = Vec::new();
        let mut adds = Vec::new();
        for (part, file) in self.open {
            let OpenFile { tmp, writer, rows } = file;
            let (size, sha256) = finish(writer, &tmp)?;
            info.bytes += size;
            let rel = format!("{}/{stem}.parquet", part.dir());
            adds.push(delta::NewFile {
                rel: rel.clone(),
                size,
                rows,
                sha256: Some(sha256),
            });
            moves.push((tmp, rel));
        }
        if let Some((tmp, w)) = self.rejects {
            let f = w.into_inner().map_err(|e| io(&tmp)(e.into_error()))?;
            f.sync_all().map_err(io(&tmp))?;
            moves.push((tmp, format!("_rejected/{stem}.jsonl")));
        }
        info.files = moves.len();
        // 2. Record the intent.
        state.pending = Some(Pending {
            last,
            files: moves.iter().map(|(_, rel)| rel.clone()).collect(),
        });
        lake.save_state(state)?;
        // 3. Move into place (or upload, on an object store).
        for (tmp, rel) in &moves {
            lake.put(tmp, rel)?;
        }
        // 4. The commit: the files and the source's position, in one log entry.
        lake.log.commit(delta::Change {
            adds,
            positions: vec![(state.source.clone(), last)],
            believed: vec![(state.source.clone(), state.committed_through)],
            ..Default::default()
        })?;
        // 5. The intent is done.
        state.pending = None;
        state.committed_through = last;
        lake.save_state(state)?;
        Ok(info)
    }
}

/// `(source, first, last)` of a lake file named after its segment's stem.
pub fn parse_stem(name: &str) -> Option<(&str, u64, u64)> {
    let stem = name
        .strip_suffix(".parquet")
        .or_else(|| name.strip_suffix(".jsonl"))?;
    let mut it = stem.rsplitn(3, '-');
    let last = it.next()?;
    let first = it.next()?;
    let source = it.next()?;
    if last.len() != 12 || first.len() != 12 || source.is_empty() {
        return None;
    }
    Some((source, first.parse().ok()?, last.parse().ok()?))
}

/// Close the Parquet temporary `tmp` that `writer` wrote (footer, flush, fsync); its size and
/// SHA-256.
fn finish(writer: ParquetFile<BufWriter<Hashed>>, tmp: &Path) -> Result<(u64, String), LakeError> {
    let buf = writer.into_inner().map_err(|source| LakeError::Parquet {
        path: tmp.to_path_buf(),
        source,
    })?;
    let Hashed { file, digest } = buf.into_inner().map_err(|e| io(tmp)(e.into_error()))?;
    file.sync_all().map_err(io(tmp))?;
    let size = file.metadata().map_err(io(tmp))?.len();
    Ok((size, delta::hex(digest.finish().as_ref())))
}

/// Move a finished temporary to `dest`, making its directory if needed, and fsync the
/// directory, so the name survives a power cut.
fn place(tmp: &Path, dest: &Path) -> Result<(), LakeError> {
    if let Some(dir) = dest.parent() {
        fs::create_dir_all(dir).map_err(io(dir))?;
    }
    fs::rename(tmp, dest).map_err(io(dest))?;
    if let Some(dir) = dest.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// `path` relative to the lake root `root`, `/`-separated: how the Delta log names a file.
pub fn rel_path(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    Some(
        rel.components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/"),
    )
}

/// Write `bytes` to `path` atomically: temporary, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LakeError> {
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// A lake of the layout before the Delta log: data or source states, and no log.
pub fn is_legacy(root: &Path) -> bool {
    if delta::exists(root) {
        return false;
    }
    let states = fs::read_dir(root.join("_state"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with(".json"));
    states || !parquet_files(root).is_empty()
}

fn sync_dir(dir: &Path) -> Result<(), LakeError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// The Parquet files a query of the lake at `root` reads: the log's live files when the lake
/// has a Delta log (the orphans of an interrupted commit, and files a compaction replaced
/// that are not yet vacuumed, are not among them), else every Parquet file under it.
pub fn live_files(root: &Path) -> Result<Vec<PathBuf>, LakeError> {
    match delta::Log::open(root, false)? {
        Some(log) => Ok(log.live()?.into_iter().map(|f| root.join(f.rel)).collect()),
        None => Ok(parquet_files(root)),
    }
}

/// Every Parquet file under the lake's partitions, live or not (for tests and tools).
pub fn parquet_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if p.is_dir() {
                if !name.starts_with('_') {
                    stack.push(p);
                }
            } else if name.ends_with(".parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    /// The audit IDs of `b`'s rows, in order.
    fn audit_ids(b: &RecordBatch) -> Vec<String> {
        use arrow::array::AsArray;
        let id = b.column_by_name("audit_id").expect("audit_id");
        let id = arrow::compute::cast(id, &arrow::datatypes::DataType::Utf8).expect("cast");
        id.as_string::<i32>()
            .iter()
            .map(|v| v.unwrap_or("").to_string())
            .collect()
    }

    /// Whether every row group of the Parquet file at `path` is sorted by
    /// [`ROW_ORDER`], and the audit IDs of its rows in stored order.
    fn stored_order(path: &Path) -> (bool, Vec<String>) {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let groups = SerializedFileReader::new(File::open(path).expect("open"))
            .expect("readable")
            .metadata()
            .num_row_groups();
        let mut sorted = true;
        let mut ids = Vec::new();
        for g in 0..groups {
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).expect("open"))
                .expect("reader")
                .with_row_groups(vec![g])
                .with_batch_size(1 << 20)
                .build()
                .expect("reader");
            for b in reader {
                let b = b.expect("batch");
                let keys: Vec<arrow::array::ArrayRef> = ROW_ORDER
                    .iter()
                    .map(|c| b.column_by_name(c).expect("column").clone())
                    .collect();
                let conv = arrow::row::RowConverter::new(
                    keys.iter()
                        .map(|k| arrow::row::SortField::new(k.data_type().clone()))
                        .collect(),
                )
                .expect("converter");
                let rows = conv.convert_columns(&keys).expect("rows");
                sorted &= (1..rows.num_rows()).all(|i| rows.row(i - 1) <= rows.row(i));
                ids.extend(audit_ids(&b));
            }
        }
        (sorted, ids)
    }

    /// A segment sorts each row group's rows by `ROW_ORDER` and holds no
    /// more than `sort_bytes` for it across its open partitions; with 0 it
    /// stores rows as they came. Every row is stored once either way.
    #[test]
    fn segments_sort_row_groups_within_their_memory() {
        let batch = writer::tests::generated_batch(3000);
        let written = audit_ids(&batch);
        let parts = [
            batch::PartKey::At {
                days: 20000,
                hour: 1,
            },
            batch::PartKey::At {
                days: 20000,
                hour: 2,
            },
        ];
        // (budget, every row group sorted, rows in written order)
        for (budget, sorted, as_written) in [
            (usize::MAX / 4, true, false),
            // Any write is over budget: each is encoded as a run of its own.
            (1, false, false),
            (0, false, true),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let opts = WriteOptions {
                row_group_rows: 1000,
                sort_bytes: budget,
                encode_threads: 1,
                ..WriteOptions::default()
            };
            let lake = Lake::open(dir.path(), opts).expect("lake");
            let mut seg = lake.segment("src-1");
            for (i, at) in (0..3000).step_by(300).enumerate() {
                seg.write(parts[i % 2], &batch.slice(at, 300))
                    .expect("write");
                let held: usize = seg.open.values().map(|f| f.writer.pending_bytes()).sum();
                assert!(held <= budget, "budget {budget}: {held} bytes held");
                if budget == usize::MAX / 4 {
                    assert!(held > 0, "rows are held to be sorted");
                }
            }
            let mut stored = Vec::new();
            let mut all_sorted = true;
            let mut by_part = Vec::new();
            for (_, file) in std::mem::take(&mut seg.open) {
                let OpenFile { tmp, writer, .. } = file;
                finish(writer, &tmp).expect("finish");
                let (s, ids) = stored_order(&tmp);
                all_sorted &= s;
                by_part.push(ids.clone());
                stored.extend(ids);
            }
            assert_eq!(all_sorted, sorted, "budget {budget}: sorted");
            let mut expected_parts: Vec<Vec<String>> = vec![Vec::new(), Vec::new()];
            for (i, at) in (0..3000).step_by(300).enumerate() {
                expected_parts[i % 2].extend_from_slice(&written[at..at + 300]);
            }
            assert_eq!(
                by_part == expected_parts,
                as_written,
                "budget {budget}: order"
            );
            let mut a = stored.clone();
            let mut b = written.clone();
            a.sort();
            b.sort();
            assert_eq!(a, b, "budget {budget}: every row stored once");
        }
    }

    #[test]
    fn tuned_columns_exist() {
        for c in NO_DICTIONARY
            .iter()
            .chain(STATISTICS)
            .chain(BLOOM)
            .chain(DELTA)
        {
            assert!(
                crate::schema::column_index(c).is_some(),
                "{c} is not a column"
            );
        }
    }

    /// The layout promised to readers: ZSTD everywhere, dictionaries except
    /// on unique columns, page statistics on the columns queries filter by,
    /// bloom filters on the lookup columns, and the key-value metadata.
    #[test]
    fn files_carry_the_promised_layout() {
        let batch = writer::tests::generated_batch(3000);
        let mut f = ParquetFile::try_new(
            Vec::new(),
            record_schema(),
            writer_properties(&WriteOptions::default(), "src-1"),
            None,
        )
        .expect("file");
        f.write(&batch).expect("write");
        let bytes = f.into_inner().expect("close");
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).expect("readable");
        let md = reader.metadata();

        let kv: BTreeMap<String, Option<String>> = md
            .file_metadata()
            .key_value_metadata()
            .into_iter()
            .flatten()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect();
        assert_eq!(
            kv.get("auditlake.schema_version"),
            Some(&Some(SCHEMA_VERSION.to_string()))
        );
        assert_eq!(kv.get("auditlake.source"), Some(&Some("src-1".to_string())));
        assert!(kv.contains_key("auditlake.writer_version"));

        let rg = md.row_group(0);
        let chunk = |path: &str| {
            rg.columns()
                .iter()
                .find(|c| c.column_path().string() == path)
                .unwrap_or_else(|| panic!("no column {path}"))
        };
        for c in rg.columns() {
            assert!(
                matches!(c.compression(), Compression::ZSTD(_)),
                "{} is not ZSTD",
                c.column_path()
            );
        }
        let dictionary = |path: &str| {
            chunk(path)
                .encodings()
                .any(|e| e == Encoding::RLE_DICTIONARY)
        };
        assert!(dictionary("verb"));
        assert!(dictionary("actor_username"));
        assert!(dictionary("authn_extra.entries.value.list.item"));
        assert!(!dictionary("audit_id"));
        assert!(dictionary("request_uri"));
        for c in DELTA {
            assert!(!dictionary(c), "{c} has a dictionary");
            assert!(
                chunk(c)
                    .encodings()
                    .any(|e| e == Encoding::DELTA_BINARY_PACKED),
                "{c} is not delta-encoded"
            );
        }

        for c in STATISTICS {
            let chunk = chunk(c);
            assert!(chunk.statistics().is_some(), "{c} has no statistics");
            assert!(
                chunk.column_index_offset().is_some(),
                "{c} has no page index"
            );
        }
        for c in ["audit_id", "authn_uid", "annotations.entries.value"] {
            assert!(chunk(c).statistics().is_none(), "{c} has statistics");
        }
        let ts = chunk("request_received_at")
            .statistics()
            .and_then(|s| s.min_bytes_opt().map(|b| b.len()));
        assert_eq!(ts, Some(8), "timestamp min is an i64");

        for c in BLOOM {
            assert!(
                chunk(c).bloom_filter_offset().is_some(),
                "{c} has no bloom filter"
            );
        }
        assert!(chunk("verb").bloom_filter_offset().is_none());
    }
}
