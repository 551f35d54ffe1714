//! `ingest --follow`: a live log file → lake, across its rotations, until shutdown.
//!
//! kube-apiserver's log backend (lumberjack) writes `audit.log` until it reaches its size, then
//! renames it to `audit-<timestamp>.log`, optionally gzips that copy (writing
//! `audit-<timestamp>.log.gz`, then deleting the plain copy), and opens a new `audit.log`.
//! logrotate names copies `audit.log.1`, `audit.log.2.gz`, `audit.log-20261201`.
//!
//! Invariant: every line written ends up in the lake exactly once, whatever happens between
//! two reads and whenever the process is killed. It rests on three facts:
//! - a file's source is its cluster and first line (see [`super::file::source_id`]), so its
//!   renamed or gzipped copy is the same source and resumes after the line the lake last
//!   committed of it: reading a copy again never stores a line twice;
//! - the followed file is read through the handle opened on it, so a rename loses nothing:
//!   once the path names another file, the old one is read to its end before the new one is
//!   opened (the writer is done with a file once it has renamed it);
//! - after a rotation, and at start-up, a *sweep* reads the rotated copies beside the path that
//!   were renamed or written since the last sweep began (all of them at start-up) and that this
//!   process has not read to their end. That covers a rotation the follower did not see (two in
//!   one wait, or while it was down): such a copy is resumed where the lake's commit left it.
//!   "Since" is the later of a file's modification and status-change times: lumberjack rotates
//!   before the write that would overflow, so a quiet file's last write can be an hour before
//!   its rename, and a rename changes only the status-change time.
//!
//! A copy `X.gz` is not swept while `X` is still there: lumberjack is still compressing it, and
//! `X` holds the same lines whole.

use super::file::{ingest_reader, source_id, FileSummary, IngestError, IngestOptions, Live};
use crate::sinks::lake::Lake;
use crate::sources::file::{FileReader, Follow, FollowEnd};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Rotated copies changed up to this long before the last sweep are swept again: a file's
/// modification time can trail the moment it was last seen growing (coarse clocks, a write
/// that landed between the stat and the sweep).
const SWEEP_SLACK: Duration = Duration::from_secs(5);

/// How a path is followed.
#[derive(Clone)]
pub struct FollowOptions {
    /// How long to wait at the end of what is written before looking again.
    pub poll: Duration,
    /// Set on shutdown: the reads stop at a chunk boundary and what was read is committed.
    pub stop: Arc<AtomicBool>,
    /// When segments are committed, and the metrics.
    pub live: Live,
}

/// What following one path did, until shutdown.
#[derive(Debug, Default)]
pub struct FollowSummary {
    /// Every file read: the followed ones and the swept copies.
    pub files: Vec<FileSummary>,
    /// Followed files whose writer was done with them (rotated, deleted, truncated).
    pub rotations: u64,
    /// Rotated copies read by a sweep.
    pub swept: u64,
}

/// Follow `path` until `opts.stop` is set: the rotated copies beside it first, then the file
/// itself, then the next one after each rotation. Returns after the last commit.
pub fn follow(
    lake: &Lake,
    path: &Path,
    ingest: &IngestOptions,
    opts: &FollowOptions,
    ready: &AtomicBool,
) -> Result<FollowSummary, IngestError> {
    let mut out = FollowSummary::default();
    // Sources read to their end by this process: a sweep need not read their copies again.
    let mut done: HashSet<String> = HashSet::new();
    let mut since: Option<SystemTime> = None;
    let how = Follow {
        poll: opts.poll,
        stop: opts.stop.clone(),
    };
    let live = Live {
        watch: Some(path.to_path_buf()),
        ..opts.live.clone()
    };
    let mut waiting_logged = false;
    while !opts.stop.load(Ordering::Relaxed) {
        let sweep_started = SystemTime::now();
        // Opened before the sweep: a file renamed before this open is a copy the sweep lists;
        // after it, the path can only be renamed away from the file opened, which the follower
        // sees.
        let reader = FileReader::follow(path, how.clone())?;
        sweep(lake, path, ingest, opts, since, &mut done, &mut out)?;
        since = Some(sweep_started);
        ready.store(true, Ordering::Relaxed);
        if opts.stop.load(Ordering::Relaxed) {
            break;
        }
        let Some(reader) = reader else {
            if !waiting_logged {
                tracing::info!(path = %path.display(), "waiting for the file to have a whole first line");
                waiting_logged = true;
            }
            std::thread::sleep(opts.poll);
            continue;
        };
        waiting_logged = false;
        tracing::info!(path = %path.display(), "following");
        let s = ingest_reader(lake, reader, ingest, &live)?;
        let end = s.follow_end;
        tracing::info!(
            path = %path.display(),
            source = %s.source,
            events = s.events,
            resumed_after = s.resumed_after,
            end = ?end,
            "followed file read"
        );
        if matches!(end, Some(FollowEnd::Replaced | FollowEnd::Truncated)) {
            out.rotations += 1;
            if let Some(m) = &opts.live.metrics {
                m.follow_rotations.inc();
            }
        }
        // A truncated file's copy (copytruncate) holds the lines past the truncation point
        // too: it is not done, the sweep resumes it. A stopped one is not done either.
        if end == Some(FollowEnd::Replaced) {
            done.insert(s.source.clone());
        }
        out.files.push(s);
    }
    Ok(out)
}

/// Read the rotated copies of `path` modified since `since` (all when `None`), except those of
/// sources in `done` and plain copies being compressed.
fn sweep(
    lake: &Lake,
    path: &Path,
    ingest: &IngestOptions,
    opts: &FollowOptions,
    since: Option<SystemTime>,
    done: &mut HashSet<String>,
    out: &mut FollowSummary,
) -> Result<(), IngestError> {
    let since = since.map(|t| t.checked_sub(SWEEP_SLACK).unwrap_or(SystemTime::UNIX_EPOCH));
    for copy in rotated_copies(path, since) {
        if opts.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let reader = match FileReader::open(&copy) {
            Ok(r) => r.finished(),
            Err(e) => {
                // Deleted by the writer's retention since the listing, or unreadable: the
                // followed file must not wait for it.
                if !matches!(&e, crate::sources::file::FileError::Open { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
                {
                    swept_error(opts, &copy, &e);
                }
                continue;
            }
        };
        let Some(first) = reader.first_line() else {
            continue;
        };
        let source = source_id(&ingest.cluster, first);
        if done.contains(&source) {
            continue;
        }
        match ingest_reader(
            lake,
            reader,
            ingest,
            &Live {
                watch: None,
                ..opts.live.clone()
            },
        ) {
            Ok(s) => {
                if s.events > 0 || s.rejected > 0 {
                    tracing::info!(
                        copy = %copy.display(),
                        events = s.events,
                        resumed_after = s.resumed_after,
                        "rotated copy read"
                    );
                }
                out.swept += 1;
                if let Some(m) = &opts.live.metrics {
                    m.follow_backups.inc();
                }
                done.insert(source);
                out.files.push(s);
            }
            // A damaged copy (a truncated .gz) keeps what was readable; the others go on.
            Err(e @ IngestError::File(_)) => swept_error(opts, &copy, &e),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn swept_error(opts: &FollowOptions, copy: &Path, e: &dyn std::fmt::Display) {
    tracing::warn!(
        copy = %copy.display(),
        "rotated copy not read: {e}; once fixed, `auditlake ingest --lake L {}` reads what is missing of it",
        copy.display()
    );
    if let Some(m) = &opts.live.metrics {
        m.follow_errors.inc();
    }
}

/// The rotated copies of `path` in its directory, oldest first: `audit.log.1`,
/// `audit.log.2.gz`, `audit.log-20261201` (logrotate) and `audit-<timestamp>.log[.gz]`
/// (lumberjack), modified or renamed at or after `since`. A plain copy's `.gz` is left out while
/// the plain copy is there (it is being written).
pub fn rotated_copies(path: &Path, since: Option<SystemTime>) -> Vec<PathBuf> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return vec![];
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, Some(e)),
        _ => (name, None),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return vec![];
    };
    let names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    let present: HashSet<&str> = names.iter().map(String::as_str).collect();
    let mut copies: Vec<(SystemTime, PathBuf)> = names
        .iter()
        .filter(|n| n.as_str() != name && is_copy_name(n, name, stem, ext))
        .filter(|n| {
            n.strip_suffix(".gz")
                .is_none_or(|plain| !present.contains(plain))
        })
        .filter_map(|n| {
            let p = dir.join(n);
            let meta = std::fs::metadata(&p).ok()?;
            let modified = meta.modified().ok()?;
            since
                .is_none_or(|t| modified.max(changed(&meta)) >= t)
                .then_some((modified, p))
        })
        .collect();
    copies.sort();
    copies.into_iter().map(|(_, p)| p).collect()
}

/// When the file's inode last changed (a rename, a write).
fn changed(meta: &std::fs::Metadata) -> SystemTime {
    use std::os::unix::fs::MetadataExt;
    let (secs, nanos) = (meta.ctime(), meta.ctime_nsec());
    if secs < 0 {
        return SystemTime::UNIX_EPOCH;
    }
    SystemTime::UNIX_EPOCH + Duration::new(secs as u64, nanos.clamp(0, 999_999_999) as u32)
}

/// Whether `n` names a rotated copy of `name` (`stem`.`ext`).
fn is_copy_name(n: &str, name: &str, stem: &str, ext: Option<&str>) -> bool {
    if let Some(rest) = n.strip_prefix(name) {
        // logrotate: audit.log.1, audit.log.2.gz, audit.log-20261201
        return rest.starts_with('.') || rest.starts_with('-');
    }
    // lumberjack: audit-2026-12-02T10-00-00.000.log, and .log.gz
    let Some(rest) = n.strip_prefix(stem).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    let rest = rest.strip_suffix(".gz").unwrap_or(rest);
    match ext {
        Some(ext) => rest
            .strip_suffix(ext)
            .is_some_and(|r| r.ends_with('.') && r.len() > 1),
        None => !rest.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_copies_are_named_as_lumberjack_and_logrotate_name_them() {
        for (n, want) in [
            ("audit-2026-12-02T10-00-00.000.log", true),
            ("audit-2026-12-02T10-00-00.000.log.gz", true),
            ("audit.log.1", true),
            ("audit.log.2.gz", true),
            ("audit.log-20261201", true),
            ("audit.log", false),
            ("audit.json", false),
            ("audit-.log", false),
            ("auditor-1.log", false),
            ("other-2026.log", false),
            ("audit-2026.txt", false),
        ] {
            assert_eq!(
                is_copy_name(n, "audit.log", "audit", Some("log")),
                want,
                "{n}"
            );
        }
    }

    /// Oldest first (by modification time); a `.gz` being written beside its plain copy is left
    /// out; `since` keeps the files renamed or written since, even a quiet one renamed late.
    #[test]
    fn copies_are_listed_oldest_first_and_half_compressed_ones_wait() {
        let dir = tempfile::tempdir().expect("tempdir");
        let at = |name: &str, secs: u64| {
            let p = dir.path().join(name);
            std::fs::write(&p, "{}\n").expect("write");
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .and_then(|f| f.set_modified(t))
                .expect("mtime");
        };
        at("audit.log", 50);
        at("audit-b.log", 20);
        at("audit-b.log.gz", 30);
        at("audit-a.log.gz", 10);
        at("audit.log.1", 40);
        at("unrelated.log", 5);
        at("quiet", 1);
        let names = |since| {
            rotated_copies(&dir.path().join("audit.log"), since)
                .iter()
                .map(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or("")
                        .to_string()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(None),
            vec!["audit-a.log.gz", "audit-b.log", "audit.log.1"]
        );
        // Coarse kernel clocks: step past a tick before and after taking `since`.
        std::thread::sleep(Duration::from_millis(50));
        let since = SystemTime::now();
        std::thread::sleep(Duration::from_millis(50));
        assert!(names(Some(since)).is_empty());
        // Renamed now, last written long ago: its status-change time says it is new.
        std::fs::rename(dir.path().join("quiet"), dir.path().join("audit.log.2")).expect("mv");
        assert_eq!(names(Some(since)), vec!["audit.log.2"]);
    }
}
