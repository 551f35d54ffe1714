//! `auditlake compact`: merge the small files of each hour partition into few large ones,
//! rows sorted for pruning and exact duplicate events dropped, committed while writers write.
//!
//! Why: a webhook receiver that commits every 10 s writes about 360 files per hour; every
//! query then opens each of them, and the per-file costs (footer, statistics, one scan each)
//! dominate. Sorting by `actor_username`, then `request_received_at`, gives each row group a
//! narrow actor range, so the Parquet statistics skip most of a file for a question about one
//! person.
//!
//! Invariants:
//! - one partition is one Delta commit that removes its input files and adds the merged ones:
//!   a reader sees the old files or the new, never both and never neither; writers keep
//!   adding files meanwhile (their appends do not conflict with this commit);
//! - nothing but exact duplicates is dropped: two rows are one event when they agree on the
//!   event key of `query::relations` (cluster, audit ID, receive time, user, verb, URI, stage,
//!   stage time) and on the actor; the copy with the smallest `source` is kept, as the
//!   relations keep it. Rows without an audit ID are never merged;
//! - output names carry the table version compaction read and its process id
//!   (`compacted-v<N>-<pid>-<i>.parquet`), so two compactions at once never write one name
//!   (an overwrite would make the winner's recorded SHA-256 wrong). A run that crashed before
//!   its commit leaves files that nothing reads, named by its intent marker in `_state/` so
//!   `lake verify` knows them for leftovers; `lake vacuum` deletes both. The replaced inputs
//!   stay on disk, invisible to auditlake, until `lake vacuum` too;
//! - memory: the sort spills to disk past `memory_limit`; the writer holds one row group.

use super::delta::{Change, LiveFile, NewFile};
use super::reresolve::Hours;
use super::writer::ParquetFile;
use super::{writer_properties, Lake, LakeError, WriteOptions};
use crate::schema::record_schema;
use arrow::array::Array;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{col, SessionConfig, SessionContext};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The sort of a compacted file: the actor first (pruning), then time, then the event key
/// and `source` (so that copies of one event are adjacent, smallest `source` first).
pub const SORT: [&str; 10] = [
    "actor_username",
    "request_received_at",
    "cluster",
    "audit_id",
    "authn_username",
    "verb",
    "request_uri",
    "stage",
    "stage_at",
    "source",
];

/// What makes two rows one event (with the actor): every sort column but `source`.
const EVENT: &[&str] = (&SORT as &[&str]).split_at(9).0;

#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Target size of a merged file, in bytes (estimated from the inputs' bytes per row).
    pub target_bytes: u64,
    /// A partition is merged when it has at least this many live files smaller than half
    /// the target; only those are merged.
    pub min_files: usize,
    pub hours: Hours,
    /// Memory for the sort before it spills.
    pub memory_limit: usize,
    pub write: WriteOptions,
    /// Set to stop between partitions (the background maintenance of a writer that is
    /// shutting down); what was committed stays, the rest waits for the next run.
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            target_bytes: 256 << 20,
            min_files: 2,
            hours: Hours::default(),
            memory_limit: 512 << 20,
            write: WriteOptions::default(),
            stop: None,
        }
    }
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Compacted {
    pub partitions: usize,
    pub files_in: usize,
    pub files_out: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rows_in: u64,
    pub rows_out: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("compacting {partition}: {source}\nhint: the lake is unchanged for this partition; `auditlake verify --lake L` checks its files")]
    Query {
        partition: String,
        source: datafusion::error::DataFusionError,
    },
}

/// Compact the partitions of `lake` that `opts` selects.
pub async fn compact(lake: &Lake, opts: &CompactOptions) -> Result<Compacted, CompactError> {
    let log = lake.log();
    let version = log.version()?;
    let mut parts: BTreeMap<(String, String), Vec<LiveFile>> = BTreeMap::new();
    // Only small files are merged: a file already near the target (an earlier run's output)
    // is left as it is, so a partition is not rewritten whole every time a few files arrive.
    for f in log.live()? {
        if opts.hours.admits(Path::new(&f.rel)) && f.size < opts.target_bytes / 2 {
            parts
                .entry((f.dt.clone(), f.hour.clone()))
                .or_default()
                .push(f);
        }
    }
    let mut out = Compacted::default();
    for ((dt, hour), files) in parts {
        if files.len() < opts.min_files.max(2) {
            continue;
        }
        if opts
            .stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
        {
            break;
        }
        let name = format!("dt={dt}/hour={hour}");
        let done = compact_partition(lake, opts, version, &files)
            .await
            .map_err(|e| match e {
                PartError::Lake(e) => CompactError::Lake(e),
                PartError::Query(source) => CompactError::Query {
                    partition: name.clone(),
                    source,
                },
            })?;
        tracing::info!(
            partition = name,
            files_in = files.len(),
            files_out = done.adds.len(),
            rows_in = done.rows_in,
            rows_out = done.rows_out,
            "partition compacted"
        );
        out.partitions += 1;
        out.files_in += files.len();
        out.bytes_in += files.iter().map(|f| f.size).sum::<u64>();
        out.files_out += done.adds.len();
        out.bytes_out += done.adds.iter().map(|f| f.size).sum::<u64>();
        out.rows_in += done.rows_in;
        out.rows_out += done.rows_out;
        log.commit(Change {
            adds: done.adds,
            removes: files,
            positions: Vec::new(),
            believed: Vec::new(),
            data_change: done.rows_out < done.rows_in,
        })?;
        if let Some(marker) = &done.marker {
            super::verify::done(marker)?;
        }
    }
    Ok(out)
}

enum PartError {
    Lake(LakeError),
    Query(datafusion::error::DataFusionError),
}

impl From<datafusion::error::DataFusionError> for PartError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        PartError::Query(e)
    }
}

impl From<arrow::error::ArrowError> for PartError {
    fn from(e: arrow::error::ArrowError) -> Self {
        PartError::Query(e.into())
    }
}

impl From<LakeError> for PartError {
    fn from(e: LakeError) -> Self {
        PartError::Lake(e)
    }
}

struct PartDone {
    adds: Vec<NewFile>,
    /// The intent marker naming `adds` until they are committed (lake/verify.rs).
    marker: Option<PathBuf>,
    rows_in: u64,
    rows_out: u64,
}

/// One output file being written.
struct Output {
    tmp: PathBuf,
    rel: String,
    writer: ParquetFile<BufWriter<super::Hashed>>,
    rows: u64,
}

async fn compact_partition(
    lake: &Lake,
    opts: &CompactOptions,
    version: u64,
    files: &[LiveFile],
) -> Result<PartDone, PartError> {
    let root = lake.root();
    // On an object store the inputs are read from the mirror, fetched and checked first.
    let source = match lake.remote() {
        Some(r) => {
            r.sync_log()?;
            r.fetch(files)?;
            r.mirror_dir()
        }
        None => root.to_path_buf(),
    };
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(opts.memory_limit)))
        .build_arc()?;
    // One partition at a time, so that the sort's memory is the whole budget.
    let config = SessionConfig::new().with_target_partitions(1);
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    let urls = files
        .iter()
        .map(|f| ListingTableUrl::parse(source.join(&f.rel).display().to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let table = ListingTable::try_new(
        ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(ListingOptions::new(Arc::new(ParquetFormat::default())))
            .with_schema(record_schema()),
    )?;
    let df = ctx
        .read_table(Arc::new(table))?
        .sort(SORT.iter().map(|c| col(*c).sort(true, true)).collect())?;
    let mut stream = df.execute_stream().await?;

    let rows_known: u64 = files.iter().filter_map(|f| f.rows).sum();
    let bytes: u64 = files.iter().map(|f| f.size).sum();
    let per_file = if rows_known > 0 {
        (opts.target_bytes as f64 / (bytes as f64 / rows_known as f64)).max(1.0) as u64
    } else {
        u64::MAX
    };
    let schema = record_schema();
    let keys: Vec<usize> = EVENT
        .iter()
        .map(|c| schema.index_of(c))
        .collect::<Result<_, _>>()?;
    let audit_id = schema.index_of("audit_id")?;
    let converter = RowConverter::new(
        keys.iter()
            .map(|i| SortField::new(schema.field(*i).data_type().clone()))
            .collect(),
    )?;
    let dir = files
        .first()
        .and_then(|f| f.rel.rsplit_once('/'))
        .map(|(d, _)| d.to_string())
        .unwrap_or_default();
    let mut previous: Option<arrow::row::OwnedRow> = None;
    let mut done = PartDone {
        adds: Vec::new(),
        marker: None,
        rows_in: 0,
        rows_out: 0,
    };
    let mut open: Option<Output> = None;
    let mut outputs: Vec<Output> = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        done.rows_in += batch.num_rows() as u64;
        let rows = converter.convert_columns(
            &keys
                .iter()
                .map(|i| batch.column(*i).clone())
                .collect::<Vec<_>>(),
        )?;
        let ids = batch.column(audit_id);
        let mut keep = Vec::with_capacity(batch.num_rows());
        for (i, row) in rows.iter().enumerate() {
            let duplicate = ids.is_valid(i) && previous.as_ref().is_some_and(|p| p.row() == row);
            keep.push(!duplicate);
            previous = Some(row.owned());
        }
        let batch =
            arrow::compute::filter_record_batch(&batch, &arrow::array::BooleanArray::from(keep))?;
        let mut at = 0;
        while at < batch.num_rows() {
            if open.as_ref().is_none_or(|o| o.rows >= per_file) {
                if let Some(o) = open.take() {
                    outputs.push(o);
                }
                let tmp = root.join("_tmp").join(format!(
                    "compact~{}-{}.parquet.tmp",
                    std::process::id(),
                    outputs.len()
                ));
                let f = super::Hashed::create(&tmp)?;
                let writer = ParquetFile::try_new(
                    f,
                    schema.clone(),
                    writer_properties(&opts.write, "compact"),
                    None,
                )
                .map_err(|source| LakeError::Parquet {
                    path: tmp.clone(),
                    source,
                })?;
                open = Some(Output {
                    // The process id keeps two compactions of one version apart.
                    rel: format!(
                        "{dir}/compacted-v{version}-{}-{:03}.parquet",
                        std::process::id(),
                        outputs.len()
                    ),
                    tmp,
                    writer,
                    rows: 0,
                });
            }
            let Some(o) = open.as_mut() else { break };
            let take = ((per_file - o.rows) as usize).min(batch.num_rows() - at);
            let part: RecordBatch = batch.slice(at, take);
            o.writer.write(&part).map_err(|source| LakeError::Parquet {
                path: o.tmp.clone(),
                source,
            })?;
            o.rows += take as u64;
            done.rows_out += take as u64;
            at += take;
        }
    }
    outputs.extend(open);
    let rels: Vec<String> = outputs.iter().map(|o| o.rel.clone()).collect();
    done.marker = Some(super::verify::intend(root, "compact", &rels)?);
    for o in outputs {
        let Output {
            tmp,
            rel,
            writer,
            rows,
        } = o;
        let (size, sha256) = super::finish(writer, &tmp)?;
        lake.put(&tmp, &rel)?;
        done.adds.push(NewFile {
            rel,
            size,
            rows,
            sha256: Some(sha256),
        });
    }
    Ok(done)
}
