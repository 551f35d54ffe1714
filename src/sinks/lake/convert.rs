//! `auditlake lake convert`: a lake of the layout before the Delta log (positions in
//! `_state/<source>.json`, every Parquet file under the partitions live) becomes a Delta table
//! in place, keeping every source's position, so nothing is re-ingested.
//!
//! Invariant: the conversion is one log commit. Before it the lake is the old layout and
//! every old reader and writer still works on it; after it every file that was live is named
//! by the log and every source resumes where it stood. A crash in between leaves the old
//! layout, and running the command again finishes the job.
//!
//! Finishing the old layout's recovery comes first: the files of a segment whose commit was
//! interrupted (a `pending` state) are deleted, as the old writer would have on its restart,
//! since their positions were never committed and will be read again.

use super::{delta, io, parquet_files, parse_stem, LakeError, SourceState};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// What a conversion did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Converted {
    /// `false`: the lake already had a Delta log; nothing was done.
    pub converted: bool,
    pub files: usize,
    pub rows: u64,
    pub bytes: u64,
    /// Each source's position, as recorded in the log.
    pub positions: BTreeMap<String, u64>,
    /// Files of interrupted commits, deleted.
    pub abandoned: usize,
}

/// Whether a source's position counts the next position to read (Kafka offsets, ids `k.…`)
/// rather than the last one stored (files and the webhook's log).
fn counts_next(source: &str) -> bool {
    source.starts_with("k.")
}

/// Convert the lake at `root`. Stop its writers first: a segment committed by an old writer
/// during the conversion would not be in the log.
pub fn convert(root: &Path) -> Result<Converted, LakeError> {
    if delta::exists(root) {
        return Ok(Converted::default());
    }
    let mut out = Converted {
        converted: true,
        ..Default::default()
    };
    let states = root.join("_state");
    let mut positions: BTreeMap<String, u64> = BTreeMap::new();
    for entry in fs::read_dir(&states).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let bytes = fs::read(&path).map_err(io(&path))?;
        let mut state: SourceState =
            serde_json::from_slice(&bytes).map_err(|e| LakeError::State {
                path: path.clone(),
                problem: e.to_string(),
            })?;
        if let Some(pending) = state.pending.take() {
            for rel in &pending.files {
                let p = root.join(rel);
                match fs::remove_file(&p) {
                    Ok(()) => out.abandoned += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(&p)(e)),
                }
            }
            super::write_atomic(
                &path,
                &serde_json::to_vec_pretty(&state).map_err(|e| LakeError::State {
                    path: path.clone(),
                    problem: e.to_string(),
                })?,
            )?;
        }
        positions.insert(state.source.clone(), state.committed_through);
    }
    // Temporaries are a crashed writer's.
    let tmp = root.join("_tmp");
    for entry in fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let p = entry.path();
        fs::remove_file(&p).map_err(io(&p))?;
    }
    let mut adds = Vec::new();
    let mut covered: BTreeMap<String, u64> = BTreeMap::new();
    let rejected = fs::read_dir(root.join("_rejected"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path());
    for path in parquet_files(root).into_iter().chain(rejected) {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some((source, _, last)) = parse_stem(&name) {
            let through = if counts_next(source) { last + 1 } else { last };
            let c = covered.entry(source.to_string()).or_default();
            *c = (*c).max(through);
        }
        if !name.ends_with(".parquet") {
            continue;
        }
        let file = fs::File::open(&path).map_err(io(&path))?;
        let size = file.metadata().map_err(io(&path))?.len();
        let rows = parquet::file::reader::SerializedFileReader::new(file)
            .map(|r| {
                use parquet::file::reader::FileReader;
                r.metadata().file_metadata().num_rows().max(0) as u64
            })
            .map_err(|e| LakeError::Unreadable {
                path: path.clone(),
                problem: e.to_string(),
            })?;
        let rel = super::rel_path(root, &path).ok_or_else(|| LakeError::Unreadable {
            path: path.clone(),
            problem: "not under the lake root".into(),
        })?;
        out.files += 1;
        out.rows += rows;
        out.bytes += size;
        // Hashed now, so `lake verify` covers the files from the conversion on (what they
        // were before it, nothing records).
        let sha256 = super::hash_file(&path).map_err(io(&path))?;
        adds.push(delta::NewFile {
            rel,
            size,
            rows,
            sha256: Some(sha256),
        });
    }
    // A state that was deleted or restored from an older copy is behind its files' names:
    // the names win, as the old writer's recovery would have decided.
    for (source, through) in covered {
        let p = positions.entry(source).or_default();
        *p = (*p).max(through);
    }
    delta::Log::create_with(
        root,
        delta::Change {
            adds,
            positions: positions.iter().map(|(s, p)| (s.clone(), *p)).collect(),
            ..Default::default()
        },
    )?;
    out.positions = positions;
    Ok(out)
}
