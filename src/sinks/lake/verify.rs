//! Tamper evidence: `auditlake lake verify` re-reads the Delta log and the data files and
//! reports, by name, every file changed, removed or added outside auditlake and every broken
//! link of the log's hash chain. Also the reading of the log that `lake history` prints.
//!
//! What makes a change visible (written by lake/delta.rs):
//! - each `add` carries the SHA-256 of the file's bytes, so a file changed after its commit
//!   no longer matches, and one deleted is missing from a name the log keeps live;
//! - each commit after the first carries the SHA-256 of the entry before it, so an entry
//!   edited (a file's hash replaced, an `add` deleted, a `remove` slipped in) breaks the link
//!   of the entry that follows it;
//! - the newest entry has no successor: an anchor (`--anchor VERSION:SHA256`, the head a
//!   previous run printed, kept where the lake's writers cannot change it) covers it and
//!   every entry before it, including a history cut short.
//!
//! The log is replayed here from its JSON entries alone, not through delta-rs, so a
//! checkpoint (which readers trust instead of the entries it summarises) that disagrees
//! with the entries is reported too.
//!
//! Invariant: nothing here writes to the lake.

use super::{delta, hash_file, io, parquet_files, LakeError};
use rayon::prelude::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A file one entry adds.
#[derive(Debug, Clone)]
pub struct Added {
    pub rel: String,
    pub size: u64,
    pub rows: Option<u64>,
    pub sha256: Option<String>,
}

/// One entry (version) of the log, as `lake history` and `lake verify` read it.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub version: u64,
    /// SHA-256 of the entry's bytes.
    pub sha256: String,
    /// commitInfo's timestamp, ms since the epoch.
    pub timestamp: Option<i64>,
    pub operation: Option<String>,
    pub writer: Option<String>,
    /// The SHA-256 it records for the entry before it.
    pub previous: Option<String>,
    pub adds: Vec<Added>,
    pub removes: Vec<String>,
    /// Source positions it records (`txn`: app id, version).
    pub positions: Vec<(String, u64)>,
}

impl Entry {
    pub fn rows_added(&self) -> u64 {
        self.adds.iter().filter_map(|a| a.rows).sum()
    }
}

/// Parse one log entry (newline-delimited JSON actions).
pub fn parse_entry(version: u64, bytes: &[u8], path: &Path) -> Result<Entry, LakeError> {
    let mut e = Entry {
        version,
        sha256: delta::sha256_hex(bytes),
        ..Default::default()
    };
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let action: Value = serde_json::from_slice(line).map_err(|err| LakeError::Delta {
            path: path.to_path_buf(),
            problem: format!("line {}: not JSON ({err})", i + 1),
        })?;
        if let Some(info) = action.get("commitInfo") {
            e.timestamp = info.get("timestamp").and_then(Value::as_i64);
            e.operation = info
                .get("operation")
                .and_then(Value::as_str)
                .map(str::to_string);
            e.writer = info
                .get(delta::WRITER_KEY)
                .and_then(Value::as_str)
                .map(str::to_string);
            e.previous = info
                .get(delta::PREVIOUS_KEY)
                .and_then(Value::as_str)
                .map(str::to_string);
        } else if let Some(add) = action.get("add") {
            let rel = add.get("path").and_then(Value::as_str).unwrap_or_default();
            let rows = add
                .get("stats")
                .and_then(Value::as_str)
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
                .and_then(|s| s.get("numRecords").and_then(Value::as_u64));
            e.adds.push(Added {
                rel: unescape(rel),
                size: add.get("size").and_then(Value::as_u64).unwrap_or(0),
                rows,
                sha256: add
                    .get("tags")
                    .and_then(|t| t.get(delta::SHA256_TAG))
                    .and_then(Value::as_str)
                    .map(str::to_string),
            });
        } else if let Some(remove) = action.get("remove") {
            let rel = remove
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or_default();
            e.removes.push(unescape(rel));
        } else if let Some(txn) = action.get("txn") {
            if let (Some(app), Some(v)) = (
                txn.get("appId").and_then(Value::as_str),
                txn.get("version").and_then(Value::as_i64),
            ) {
                e.positions.push((app.to_string(), v.max(0) as u64));
            }
        }
    }
    Ok(e)
}

/// Delta paths are percent-encoded (`dt=2026-01-01` stays as it is; a space is `%20`).
fn unescape(rel: &str) -> String {
    let bytes = rel.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn entry_path(root: &Path, version: u64) -> PathBuf {
    root.join(delta::LOG_DIR)
        .join(format!("{version:020}.json"))
}

/// The versions whose entries are in the log directory, in order.
pub fn versions(root: &Path) -> Result<Vec<u64>, LakeError> {
    let dir = root.join(delta::LOG_DIR);
    let mut out = Vec::new();
    for entry in fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".json") {
            if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(v) = stem.parse() {
                    out.push(v);
                }
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Read and parse the entry of `version`; `None` when it is not there.
pub fn read_entry(root: &Path, version: u64) -> Result<Option<Entry>, LakeError> {
    let path = entry_path(root, version);
    match fs::read(&path) {
        Ok(bytes) => parse_entry(version, &bytes, &path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

/// The newest version committed at or before `ms` (ms since the epoch), by commitInfo
/// timestamps (which the hash chain covers; file modification times it does not).
pub fn version_at(root: &Path, ms: i64) -> Result<Option<u64>, LakeError> {
    let versions = versions(root)?;
    // Timestamps follow versions (each writer stamps its commit after reading the one
    // before), so a binary search reads about log2(n) entries, not all of them.
    let (mut lo, mut hi) = (0usize, versions.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        let t = read_entry(root, versions[mid])?
            .and_then(|e| e.timestamp)
            .unwrap_or(i64::MIN);
        if t <= ms {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo.checked_sub(1).map(|i| versions[i]))
}

/// What `lake verify` found wrong, by name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Finding {
    /// A live file whose bytes are not what its commit recorded.
    Changed { rel: String, detail: String },
    /// A live file that is not there.
    Missing { rel: String },
    /// A Parquet file among the partitions that no commit ever added.
    Stray { rel: String },
    /// An entry whose link does not match the entry before it, or that has none.
    BrokenLink { version: u64, detail: String },
    /// A version between the first and the newest with no entry.
    MissingEntry { version: u64 },
    /// The anchor given does not match.
    Anchor { detail: String },
    /// The checkpoint's idea of the live files differs from the entries'.
    Checkpoint { detail: String },
    /// Delta readers (delta-rs here; Spark and others alike) cannot load the table at all.
    Unloadable { detail: String },
}

impl Finding {
    /// `KIND<TAB>NAME<TAB>DETAIL`, as `lake verify` prints it.
    pub fn line(&self) -> String {
        match self {
            Finding::Changed { rel, detail } => format!("changed\t{rel}\t{detail}"),
            Finding::Missing { rel } => format!(
                "missing\t{rel}\tthe log keeps it live, but it is not there: deleted outside auditlake"
            ),
            Finding::Stray { rel } => format!(
                "stray\t{rel}\tno commit added it: put there outside auditlake (auditlake never reads it; plain Parquet readers do)"
            ),
            Finding::BrokenLink { version, detail } => {
                format!("broken-link\t{}\t{detail}", entry_name(*version))
            }
            Finding::MissingEntry { version } => format!(
                "missing-entry\t{}\tthe log has entries after it: deleted outside auditlake",
                entry_name(*version)
            ),
            Finding::Anchor { detail } => format!("anchor\t-\t{detail}"),
            Finding::Checkpoint { detail } => format!("checkpoint\t{}\t{detail}", delta::LOG_DIR),
            Finding::Unloadable { detail } => format!(
                "unloadable\t{}\tDelta readers cannot load the table: {detail}",
                delta::LOG_DIR
            ),
        }
    }
}

fn entry_name(version: u64) -> String {
    format!("{}/{version:020}.json", delta::LOG_DIR)
}

/// What `lake verify` checked and found.
#[derive(Debug, Default)]
pub struct Report {
    pub entries: u64,
    pub files_checked: u64,
    pub bytes_hashed: u64,
    /// Versions before the first one with a link (written before the log had a hash chain).
    pub unlinked: u64,
    /// Live files whose commit recorded no hash: their size is checked, their bytes are not.
    pub unhashed: u64,
    /// Files among the partitions that an interrupted commit left (its source or tool will
    /// delete them, or `lake vacuum` will): not findings.
    pub leftovers: Vec<String>,
    pub findings: Vec<Finding>,
    /// The newest version and the SHA-256 of its entry: the anchor to keep.
    pub head: Option<(u64, String)>,
}

/// Check the lake at `root` (see the module docs). `anchor`: a version and the SHA-256 its
/// entry had when recorded.
pub fn verify(lake: &Path, anchor: Option<(u64, String)>) -> Result<Report, LakeError> {
    let mut report = Report::default();
    // A lake on an object store: its log is copied afresh and replayed here, and its files
    // are hashed as the store serves them (streamed, not kept).
    let remote = super::store::remote(lake)?;
    let copied;
    let root: &Path = match &remote {
        Some(r) => {
            copied = r.sync_log_fresh()?;
            &copied
        }
        None => lake,
    };
    if !delta::exists(root) {
        return Err(LakeError::Delta {
            path: root.join(delta::LOG_DIR),
            problem: "the lake has no Delta log, so nothing records what its files were; convert it first with `auditlake lake convert`".into(),
        });
    }
    let versions = versions(root)?;
    let newest = versions.last().copied().unwrap_or(0);
    let present: HashSet<u64> = versions.iter().copied().collect();
    let mut live: BTreeMap<String, Added> = BTreeMap::new();
    let mut named: HashSet<String> = HashSet::new();
    let mut previous: Option<Entry> = None;
    let mut chained = false;
    for v in 0..=newest {
        let Some(e) = (if present.contains(&v) {
            read_entry(root, v)?
        } else {
            None
        }) else {
            report.findings.push(Finding::MissingEntry { version: v });
            previous = None;
            continue;
        };
        report.entries += 1;
        match (&e.previous, &previous) {
            (Some(link), Some(before)) => {
                chained = true;
                if *link != before.sha256 {
                    report.findings.push(Finding::BrokenLink {
                        version: v,
                        detail: format!(
                            "records {link} for version {}, whose entry now hashes to {}: version {} was changed after this one was written",
                            v - 1,
                            before.sha256,
                            v - 1
                        ),
                    });
                }
            }
            (Some(_), None) if v > 0 => chained = true,
            (None, _) if chained => report.findings.push(Finding::BrokenLink {
                version: v,
                detail: "carries no link to the entry before it, though earlier ones do: written or rewritten outside auditlake".into(),
            }),
            (None, _) if v > 0 => report.unlinked += 1,
            _ => {}
        }
        if let Some((at, want)) = &anchor {
            if *at == v && *want != e.sha256 {
                report.findings.push(Finding::Anchor {
                    detail: format!(
                        "version {v} hashes to {}, not the {want} recorded: the log was rewritten since",
                        e.sha256
                    ),
                });
            }
        }
        for r in &e.removes {
            live.remove(r);
        }
        for a in &e.adds {
            named.insert(a.rel.clone());
            live.insert(a.rel.clone(), a.clone());
        }
        if v == newest {
            report.head = Some((v, e.sha256.clone()));
        }
        previous = Some(e);
    }
    if let Some((at, _)) = &anchor {
        if *at > newest || !present.contains(at) {
            report.findings.push(Finding::Anchor {
                detail: format!(
                    "version {at} is not in the log (newest: {newest}): the log was cut short"
                ),
            });
        }
    }
    // What delta-rs reads (checkpoint and entries) must agree with the entries alone.
    let loaded = delta::Log::open(root, false).and_then(|log| match log {
        Some(log) => log.live().map(Some),
        None => Ok(None),
    });
    let theirs = match loaded {
        Ok(files) => files,
        Err(e) => {
            report.findings.push(Finding::Unloadable {
                detail: e.to_string().replace('\n', " "),
            });
            None
        }
    };
    if let Some(theirs) = theirs {
        let theirs: BTreeSet<String> = theirs.into_iter().map(|f| f.rel).collect();
        let ours: BTreeSet<String> = live.keys().cloned().collect();
        if theirs != ours {
            let extra: Vec<_> = theirs.difference(&ours).take(3).cloned().collect();
            let lost: Vec<_> = ours.difference(&theirs).take(3).cloned().collect();
            report.findings.push(Finding::Checkpoint {
                detail: format!(
                    "the table as readers load it differs from its entries replayed: live only for readers {extra:?}, only in the entries {lost:?}"
                ),
            });
        }
    }
    // Every live file, against what its commit recorded; two threads keep two disks reads in
    // flight (a hash runs at about 1.5 GB/s with the CPU's SHA extensions, faster than the disk).
    let checked: Vec<(u64, Option<Finding>, bool)> = live
        .values()
        .collect::<Vec<_>>()
        .par_iter()
        .map(|a| match &remote {
            Some(r) => check_stored(r, a),
            None => check_file(root, a),
        })
        .collect();
    for (bytes, finding, unhashed) in checked {
        report.files_checked += 1;
        report.bytes_hashed += bytes;
        report.unhashed += unhashed as u64;
        report.findings.extend(finding);
    }
    let (pending, present) = match &remote {
        Some(r) => (
            pending_files(&r.work_dir()),
            r.list(None)?
                .into_iter()
                .map(|(k, _)| k)
                .filter(|k| k.ends_with(".parquet") && !k.starts_with('_'))
                .collect::<Vec<_>>(),
        ),
        None => (
            pending_files(root),
            parquet_files(root)
                .iter()
                .filter_map(|p| super::rel_path(root, p))
                .collect(),
        ),
    };
    for rel in present {
        if named.contains(&rel) {
            continue;
        }
        if pending.contains(&rel) {
            report.leftovers.push(rel);
        } else {
            report.findings.push(Finding::Stray { rel });
        }
    }
    report.findings.sort();
    Ok(report)
}

/// Bytes hashed, what is wrong, and whether the commit recorded no hash.
fn check_file(root: &Path, a: &Added) -> (u64, Option<Finding>, bool) {
    let path = root.join(&a.rel);
    let size = match fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (0, Some(Finding::Missing { rel: a.rel.clone() }), false)
        }
        Err(e) => {
            return (
                0,
                Some(Finding::Changed {
                    rel: a.rel.clone(),
                    detail: format!("cannot be read: {e}"),
                }),
                false,
            )
        }
    };
    judge(a, size, || hash_file(&path).map_err(|e| e.to_string()))
}

/// What [`check_file`] and [`check_stored`] conclude of a file of `size` bytes whose SHA-256
/// `hash` gives (called only when the size is right and the commit recorded a hash).
fn judge(
    a: &Added,
    size: u64,
    hash: impl FnOnce() -> Result<String, String>,
) -> (u64, Option<Finding>, bool) {
    if size != a.size {
        return (
            0,
            Some(Finding::Changed {
                rel: a.rel.clone(),
                detail: format!("{size} bytes, the commit recorded {}", a.size),
            }),
            a.sha256.is_none(),
        );
    }
    let Some(want) = &a.sha256 else {
        return (0, None, true);
    };
    match hash() {
        Ok(got) if got == *want => (size, None, false),
        Ok(got) => (
            size,
            Some(Finding::Changed {
                rel: a.rel.clone(),
                detail: format!("SHA-256 {got}, the commit recorded {want}"),
            }),
            false,
        ),
        Err(e) => (
            0,
            Some(Finding::Changed {
                rel: a.rel.clone(),
                detail: format!("cannot be read: {e}"),
            }),
            false,
        ),
    }
}

/// [`check_file`] of a file on an object store.
fn check_stored(remote: &super::store::Remote, a: &Added) -> (u64, Option<Finding>, bool) {
    match remote.hash(&a.rel) {
        Ok(None) => (0, Some(Finding::Missing { rel: a.rel.clone() }), false),
        Err(e) => (
            0,
            Some(Finding::Changed {
                rel: a.rel.clone(),
                detail: format!("cannot be read: {e}").replace('\n', " "),
            }),
            false,
        ),
        Ok(Some((size, got))) => judge(a, size, || Ok(got)),
    }
}

/// The files an interrupted commit may have left in place: a source's pending segment
/// (`_state/<source>.json`) and a compaction's or reresolve's outputs
/// (`_state/*.intent`).
pub(crate) fn pending_files(root: &Path) -> HashSet<String> {
    let mut out = HashSet::new();
    let dir = root.join("_state");
    for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let Ok(bytes) = fs::read(&path) else { continue };
        let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        let files = v
            .get("pending")
            .and_then(|p| p.get("files"))
            .or_else(|| v.get("files"));
        for f in files.and_then(Value::as_array).into_iter().flatten() {
            if let Some(rel) = f.as_str() {
                out.insert(rel.to_string());
            }
        }
    }
    out
}

/// Record that `files` are about to be placed by `tool` before the commit that adds them, so
/// that `lake verify` tells their leftovers from files put there by hand if the commit never
/// happens. Returns the marker to pass to [`done`].
pub fn intend(root: &Path, tool: &str, files: &[String]) -> Result<PathBuf, LakeError> {
    let path = root.join("_state").join(format!(
        "{tool}-{}-{}.intent",
        std::process::id(),
        super::TMP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let body = serde_json::json!({ "files": files });
    super::write_atomic(&path, body.to_string().as_bytes())?;
    Ok(path)
}

/// The commit named by `marker` happened (or its files are gone): forget it.
pub fn done(marker: &Path) -> Result<(), LakeError> {
    match fs::remove_file(marker) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(marker)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_adds_removes_and_links() {
        let text = concat!(
            r#"{"commitInfo":{"timestamp":5,"operation":"WRITE","auditlake.previous":"ab","auditlake.writer":"serve@h/1"}}"#,
            "\n",
            r#"{"add":{"path":"dt=2026-01-01/hour=00/a%20b.parquet","size":7,"stats":"{\"numRecords\":3}","tags":{"auditlake.sha256":"cd"}}}"#,
            "\n",
            r#"{"remove":{"path":"dt=2026-01-01/hour=00/old.parquet"}}"#,
            "\n",
            r#"{"txn":{"appId":"k.t.0","version":41}}"#,
            "\n"
        );
        let e = parse_entry(3, text.as_bytes(), Path::new("x")).expect("parse");
        assert_eq!(e.previous.as_deref(), Some("ab"));
        assert_eq!(e.writer.as_deref(), Some("serve@h/1"));
        assert_eq!(e.timestamp, Some(5));
        assert_eq!(e.adds[0].rel, "dt=2026-01-01/hour=00/a b.parquet");
        assert_eq!(e.adds[0].rows, Some(3));
        assert_eq!(e.adds[0].sha256.as_deref(), Some("cd"));
        assert_eq!(e.removes, vec!["dt=2026-01-01/hour=00/old.parquet"]);
        assert_eq!(e.positions, vec![("k.t.0".to_string(), 41)]);
        assert_eq!(e.sha256, delta::sha256_hex(text.as_bytes()));
        assert!(parse_entry(3, b"{not json", Path::new("x")).is_err());
    }
}
