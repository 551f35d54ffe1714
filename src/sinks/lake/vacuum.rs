//! `auditlake lake vacuum` and `auditlake lake retention`: delete the files the lake no longer
//! needs, and drop the partitions older than a window.
//!
//! Invariants:
//! - a live file (one the Delta log names) is never deleted by vacuum;
//! - a file is deleted only once it has been out of the table for `min_age`: a file a
//!   compaction replaced, from its removal time in the log; a file the log never named (the
//!   orphan of an interrupted commit, or one whose commit is under way right now), from its
//!   modification time. A query that listed the table before the change keeps reading for
//!   that long; plain Parquet readers of `**/*.parquet` see the replaced files until then;
//! - retention is a Delta commit removing whole hour partitions (a data change), so every
//!   reader stops seeing them at once; vacuum later deletes their files.

use super::delta::{Change, LiveFile};
use super::{io, parquet_files, Lake, LakeError};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

/// What a vacuum did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Vacuumed {
    pub deleted: usize,
    pub bytes: u64,
    /// Out of the table, but younger than `min_age`: kept for now.
    pub kept_young: usize,
}

/// A commit under way (its files placed, its log entry not yet written) takes milliseconds;
/// a file a pending commit names is not deleted before it is this old, whatever `min_age`.
const IN_FLIGHT: Duration = Duration::from_secs(3600);

/// Delete the files of `lake` that have been out of its table for `min_age`.
pub fn vacuum(lake: &Lake, min_age: Duration, dry_run: bool) -> Result<Vacuumed, LakeError> {
    if let Some(remote) = lake.remote() {
        return vacuum_store(lake, remote, min_age, dry_run);
    }
    let root = lake.root();
    // The order matters for a commit under way in another process (pending saved, files
    // placed, log entry, pending cleared): files are listed first, then the pending commits,
    // then the log. A file listed was placed, so its pending was saved; if the pending was
    // cleared before it is read here, the log entry was written before that, and the log
    // read after it names the file. Either way it is kept, even with a `min_age` of zero.
    let files = parquet_files(root);
    let pending = super::verify::pending_files(root);
    let log = lake.log();
    let live: HashSet<String> = log.live()?.into_iter().map(|f| f.rel).collect();
    let removed: HashMap<String, Option<i64>> = log.tombstones()?.into_iter().collect();
    let now = SystemTime::now();
    let mut out = Vacuumed::default();
    for path in files {
        let Some(rel) = super::rel_path(root, &path) else {
            continue;
        };
        if live.contains(&rel) {
            continue;
        }
        let meta = std::fs::metadata(&path).map_err(io(&path))?;
        let out_since = match removed.get(&rel).copied().flatten() {
            Some(ms) => SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64),
            None => meta.modified().map_err(io(&path))?,
        };
        let wait = if pending.contains(&rel) {
            min_age.max(IN_FLIGHT)
        } else {
            min_age
        };
        if now.duration_since(out_since).unwrap_or_default() < wait {
            out.kept_young += 1;
            continue;
        }
        if !dry_run {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        out.deleted += 1;
        out.bytes += meta.len();
    }
    // The intent markers of compactions and reresolves (lake/verify.rs) are written just
    // before their files are placed; one older than the wait above names files that are by
    // now either committed or deleted.
    let states = root.join("_state");
    for entry in std::fs::read_dir(&states).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "intent") {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .map(|t| now.duration_since(t).unwrap_or_default() >= min_age.max(IN_FLIGHT))
            .unwrap_or(false);
        if old && !dry_run {
            super::verify::done(&path)?;
        }
    }
    Ok(out)
}

/// Vacuum of a lake on an object store. The same order as on a local disk (keys listed, then
/// the log), but another machine's pending commits cannot be seen from here, so a file the log
/// never named waits `max(min_age, IN_FLIGHT)` from its upload, whoever wrote it.
fn vacuum_store(
    lake: &Lake,
    remote: &super::store::Remote,
    min_age: Duration,
    dry_run: bool,
) -> Result<Vacuumed, LakeError> {
    let files = remote.list_meta(None)?;
    let log = lake.log();
    let live: HashSet<String> = log.live()?.into_iter().map(|f| f.rel).collect();
    let removed: HashMap<String, Option<i64>> = log.tombstones()?.into_iter().collect();
    let now = SystemTime::now();
    let mut out = Vacuumed::default();
    for (rel, size, modified) in files {
        if !rel.ends_with(".parquet") || rel.starts_with('_') || live.contains(&rel) {
            continue;
        }
        let (out_since, wait) = match removed.get(&rel).copied().flatten() {
            Some(ms) => (
                SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64),
                min_age,
            ),
            None => (modified, min_age.max(IN_FLIGHT)),
        };
        if now.duration_since(out_since).unwrap_or_default() < wait {
            out.kept_young += 1;
            continue;
        }
        if !dry_run {
            remote.delete(&rel)?;
        }
        out.deleted += 1;
        out.bytes += size;
    }
    Ok(out)
}

/// What a retention run removed from the table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Retained {
    pub partitions: usize,
    pub files: usize,
    pub rows: u64,
}

/// Remove from the table every hour partition that ends before `cutoff_us` (µs since the
/// epoch), in one commit. Hive's default partition (no timestamp) is kept.
pub fn retention(lake: &Lake, cutoff_us: i64, dry_run: bool) -> Result<Retained, LakeError> {
    let mut old: Vec<LiveFile> = Vec::new();
    let mut parts = HashSet::new();
    for f in lake.log().live()? {
        let Some(start) = crate::decode::parse_timestamp_us(&format!("{}T{}:00:00Z", f.dt, f.hour))
        else {
            continue;
        };
        if start + 3_600_000_000 <= cutoff_us {
            parts.insert((f.dt.clone(), f.hour.clone()));
            old.push(f);
        }
    }
    let out = Retained {
        partitions: parts.len(),
        files: old.len(),
        rows: old.iter().filter_map(|f| f.rows).sum(),
    };
    if !dry_run && !old.is_empty() {
        lake.log().commit(Change {
            removes: old,
            data_change: true,
            ..Default::default()
        })?;
    }
    Ok(out)
}
