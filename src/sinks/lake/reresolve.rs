//! Re-resolution: recompute the resolution columns of stored rows with other proxy profiles,
//! so that a profile fix (a proxy installed under another name) applies to past data.
//!
//! Only the identities feed the resolver (`user` and `impersonatedUser`: name, uid, groups,
//! extra), and they are stored verbatim, so each row's event is rebuilt from those eight
//! columns and resolved again through the same [`BatchBuilder`] ingest uses; the resolution
//! columns of its output replace the stored ones and every other column is kept as read.
//! Invariant: a file is rewritten only when a value changes, as a whole, atomically: the new
//! rows go to a new file (written to `_tmp/`, fsynced, renamed into the partition), and one
//! Delta commit replaces the old file by it, so a reader sees the old file or the new one,
//! never a mix, and a crash leaves the old one live (the new one, unnamed by the log, is never
//! read and `lake vacuum` deletes it). Memory holds
//! one batch of 8,192 rows being read and one row group being written,
//! whatever the file's size: a file is read once to count changes and, only
//! if there are any, again to write. Re-resolving with the profiles
//! the lake was written with rewrites nothing (tested), which is what shows the rebuilt events
//! resolve exactly as the originals did.

use super::batch::{BatchBuilder, RowContext};
use super::delta::{Change, NewFile};
use super::writer::ParquetFile;
use super::{io, writer_properties, Lake, LakeError, WriteOptions};
use crate::decode::Decoded;
use crate::event::{Event, ExtraValues, Str, UserInfo};
use crate::profiles::Profiles;
use crate::resolve::resolve;
use crate::schema::{record_schema, IDENTITY_COLUMNS};
use arrow::array::{Array, ArrayRef, AsArray, ListArray, MapArray, RecordBatch, StringArray};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The columns the resolver writes, recomputed here: the identity columns
/// other than the stored identities themselves (`authn_*`, `impersonated_*`),
/// the constraint and the IAM extras, which come from the event as it is.
pub fn resolution_columns() -> impl Iterator<Item = &'static str> {
    IDENTITY_COLUMNS.iter().copied().filter(|c| {
        !c.starts_with("authn_")
            && !c.starts_with("impersonated_")
            && !c.starts_with("iam_")
            && *c != "impersonation_constraint"
    })
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Reresolved {
    pub files_read: usize,
    pub files_rewritten: usize,
    pub rows_read: u64,
    pub rows_changed: u64,
}

/// Which hour partitions to visit: `[since, until)` in µs since the epoch.
#[derive(Debug, Default, Clone, Copy)]
pub struct Hours {
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
}

impl Hours {
    /// Whether the hour partition of `path` (`dt=…/hour=…`) may hold rows of
    /// the window. Files outside hour partitions are visited without a window only.
    pub fn admits(&self, path: &Path) -> bool {
        if self.since_us.is_none() && self.until_us.is_none() {
            return true;
        }
        self.admits_hour_of(path) == Some(true)
    }

    /// Whether the hour partition `path` lies in (`dt=…/hour=…` among its components) may
    /// hold rows of the window; `None` when `path` names no hour partition.
    pub fn admits_hour_of(&self, path: &Path) -> Option<bool> {
        let part = |key: &str| {
            path.ancestors()
                .filter_map(|p| p.file_name()?.to_str()?.strip_prefix(key))
                .next()
                .map(str::to_string)
        };
        let (dt, hour) = (part("dt=")?, part("hour=")?);
        let start = crate::decode::parse_timestamp_us(&format!("{dt}T{hour}:00:00Z"))?;
        let end = start + 3_600_000_000;
        Some(self.since_us.is_none_or(|s| end > s) && self.until_us.is_none_or(|u| start < u))
    }
}

/// Re-resolve every committed file of the lake at `root` in `hours` with `profiles`;
/// `dry_run` counts what would change without writing.
pub fn reresolve(
    lake: &Lake,
    profiles: &Profiles,
    hours: Hours,
    dry_run: bool,
) -> Result<Reresolved, LakeError> {
    let root = lake.root();
    let mut out = Reresolved::default();
    let version = lake.log().version()?;
    for file in lake.log().live()? {
        let path = root.join(&file.rel);
        if !hours.admits(&path) {
            continue;
        }
        // A first pass counts what changes; only a file with a change is
        // read again and written. One batch is in memory at a time, however
        // large the file (a segment can hold a million rows).
        let (mut rows, mut changed) = (0u64, 0u64);
        let source = each_batch(&path, |b| {
            rows += b.num_rows() as u64;
            changed += recompute(&b, profiles).map_err(unreadable(&path))?.1;
            Ok(())
        })?;
        out.files_read += 1;
        out.rows_read += rows;
        if changed == 0 {
            continue;
        }
        out.rows_changed += changed;
        out.files_rewritten += 1;
        if !dry_run {
            let rel = rewritten_name(&file.rel, version);
            let marker = super::verify::intend(root, "reresolve", std::slice::from_ref(&rel))?;
            let (size, sha256) = rewrite(root, &path, &root.join(&rel), &source, profiles)?;
            lake.log().commit(Change {
                adds: vec![NewFile {
                    rel,
                    size,
                    rows,
                    sha256: Some(sha256),
                }],
                removes: vec![file],
                positions: Vec::new(),
                believed: Vec::new(),
                data_change: true,
            })?;
            super::verify::done(&marker)?;
        }
    }
    Ok(out)
}

fn unreadable(path: &Path) -> impl Fn(arrow::error::ArrowError) -> LakeError + '_ {
    move |e| LakeError::Unreadable {
        path: path.to_path_buf(),
        problem: e.to_string(),
    }
}

/// Call `f` with each batch of a file, in the record schema (a file of an
/// older schema version gets NULL for the columns it lacks); returns the
/// file's `auditlake.source`.
fn each_batch(
    path: &Path,
    mut f: impl FnMut(RecordBatch) -> Result<(), LakeError>,
) -> Result<String, LakeError> {
    let perr = |source| LakeError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io(path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(perr)?;
    let source = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == "auditlake.source"))
        .and_then(|k| k.value.clone())
        .unwrap_or_default();
    let reader = builder.with_batch_size(8192).build().map_err(perr)?;
    let schema = record_schema();
    for b in reader {
        let b = b.map_err(unreadable(path))?;
        // A column the file lacks (written before it existed) is NULL; one of
        // another type is cast, never dropped.
        let columns = schema
            .fields()
            .iter()
            .map(|f| match b.column_by_name(f.name()) {
                Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
                Some(c) => arrow::compute::cast(c, f.data_type()),
                None => Ok(arrow::array::new_null_array(f.data_type(), b.num_rows())),
            })
            .collect::<Result<Vec<ArrayRef>, _>>()
            .map_err(unreadable(path))?;
        f(RecordBatch::try_new(schema.clone(), columns).map_err(unreadable(path))?)?;
    }
    Ok(source)
}

fn strings<'a>(
    b: &'a RecordBatch,
    name: &str,
) -> Result<&'a StringArray, arrow::error::ArrowError> {
    b.column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| {
            arrow::error::ArrowError::SchemaError(format!("column {name} is not a string column"))
        })
}

fn lists<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a ListArray, arrow::error::ArrowError> {
    b.column_by_name(name)
        .and_then(|c| c.as_list_opt::<i32>())
        .ok_or_else(|| {
            arrow::error::ArrowError::SchemaError(format!("column {name} is not a list column"))
        })
}

fn maps<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a MapArray, arrow::error::ArrowError> {
    b.column_by_name(name)
        .and_then(|c| c.as_map_opt())
        .ok_or_else(|| {
            arrow::error::ArrowError::SchemaError(format!("column {name} is not a map column"))
        })
}

fn opt(a: &StringArray, i: usize) -> Option<Str<'_>> {
    a.is_valid(i).then(|| Cow::Borrowed(a.value(i)))
}

fn list_values(a: &ListArray, i: usize) -> Vec<Str<'_>> {
    if a.is_null(i) {
        return Vec::new();
    }
    let (start, end) = (
        a.value_offsets()[i] as usize,
        a.value_offsets()[i + 1] as usize,
    );
    match a.values().as_string_opt::<i32>() {
        Some(v) => (start..end)
            .filter(|&j| v.is_valid(j))
            .map(|j| Cow::Borrowed(v.value(j)))
            .collect(),
        None => Vec::new(),
    }
}

fn map_values(a: &MapArray, i: usize) -> Vec<(Str<'_>, ExtraValues<'_>)> {
    if a.is_null(i) {
        return Vec::new();
    }
    let (start, end) = (
        a.value_offsets()[i] as usize,
        a.value_offsets()[i + 1] as usize,
    );
    let (Some(keys), Some(values)) = (
        a.keys().as_string_opt::<i32>(),
        a.values().as_list_opt::<i32>(),
    ) else {
        return Vec::new();
    };
    (start..end)
        .map(|j| {
            (
                Cow::Borrowed(keys.value(j)),
                list_values(values, j).into_iter().collect(),
            )
        })
        .collect()
}

/// The batch with its resolution columns recomputed, and how many rows changed.
fn recompute(
    b: &RecordBatch,
    profiles: &Profiles,
) -> Result<(RecordBatch, u64), arrow::error::ArrowError> {
    let (au, auid, ag, ae) = (
        strings(b, "authn_username")?,
        strings(b, "authn_uid")?,
        lists(b, "authn_groups")?,
        maps(b, "authn_extra")?,
    );
    let (iu, iuid, ig, ie) = (
        strings(b, "impersonated_username")?,
        strings(b, "impersonated_uid")?,
        lists(b, "impersonated_groups")?,
        maps(b, "impersonated_extra")?,
    );
    let ctx = RowContext {
        cluster: "",
        ingested_at_us: 0,
        envelope_cluster: false,
    };
    let mut builder = BatchBuilder::new();
    for i in 0..b.num_rows() {
        let event = Event {
            user: UserInfo {
                username: opt(au, i).filter(|u| !u.is_empty()),
                uid: opt(auid, i),
                groups: list_values(ag, i),
                extra: map_values(ae, i),
            },
            // The groups list is NULL exactly when there was no impersonatedUser.
            impersonated_user: ig.is_valid(i).then(|| UserInfo {
                username: opt(iu, i),
                uid: opt(iuid, i),
                groups: list_values(ig, i),
                extra: map_values(ie, i),
            }),
            ..Default::default()
        };
        let d = Decoded {
            event,
            ..Default::default()
        };
        let r = resolve(&d.event, profiles);
        builder.append(&d, &r, &ctx, "");
    }
    let fresh = builder.finish()?;
    let schema = b.schema();
    let mut changed = vec![false; b.num_rows()];
    let mut columns: Vec<ArrayRef> = b.columns().to_vec();
    for name in resolution_columns() {
        let (Ok(at), Some(new)) = (schema.index_of(name), fresh.column_by_name(name)) else {
            continue;
        };
        let old = &columns[at];
        if old.data_type() != new.data_type() && !matches!(old.data_type(), DataType::Null) {
            return Err(arrow::error::ArrowError::SchemaError(format!(
                "column {name} has another type"
            )));
        }
        let same = arrow::compute::kernels::cmp::not_distinct(old, new);
        match same {
            Ok(same) => {
                for (i, s) in same.iter().enumerate() {
                    if s != Some(true) {
                        changed[i] = true;
                    }
                }
            }
            // Lists and maps have no comparison kernel: compare row by row.
            Err(_) => {
                for (i, c) in changed.iter_mut().enumerate() {
                    if old.slice(i, 1).to_data() != new.slice(i, 1).to_data() {
                        *c = true;
                    }
                }
            }
        }
        columns[at] = new.clone();
    }
    let n = changed.iter().filter(|c| **c).count() as u64;
    Ok((RecordBatch::try_new(schema, columns)?, n))
}

/// The name of the rewrite of the file at `rel` made at table version `version`: `-rN`
/// replaces an earlier rewrite's suffix, and the version keeps the name new (a file the log
/// once removed is never added again under its old name).
fn rewritten_name(rel: &str, version: u64) -> String {
    let stem = rel.strip_suffix(".parquet").unwrap_or(rel);
    let stem = match stem.rsplit_once("-r") {
        Some((before, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => before,
        _ => stem,
    };
    format!("{stem}-r{version}.parquet")
}

/// Write the rows of `path` re-resolved with `profiles` to `dest`, durably; returns its size.
fn rewrite(
    root: &Path,
    path: &Path,
    dest: &Path,
    source: &str,
    profiles: &Profiles,
) -> Result<(u64, String), LakeError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("file.parquet");
    let tmp: PathBuf = root
        .join("_tmp")
        .join(format!("reresolve~{}-{name}.tmp", std::process::id()));
    std::fs::create_dir_all(root.join("_tmp")).map_err(io(&tmp))?;
    let perr = |source| LakeError::Parquet {
        path: tmp.clone(),
        source,
    };
    let f = super::Hashed::create(&tmp)?;
    let props = writer_properties(&WriteOptions::default(), source);
    let mut w = ParquetFile::try_new(f, record_schema(), props, None).map_err(perr)?;
    each_batch(path, |b| {
        let (new, _) = recompute(&b, profiles).map_err(unreadable(path))?;
        w.write(&new).map_err(perr)
    })?;
    let done = super::finish(w, &tmp)?;
    super::place(&tmp, dest)?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the resolver writes, and nothing the event carries itself.
    #[test]
    fn rewrites_get_new_names() {
        for (rel, version, want) in [
            (
                "dt=x/hour=01/f1-000000000001-000000000009.parquet",
                4,
                "dt=x/hour=01/f1-000000000001-000000000009-r4.parquet",
            ),
            ("dt=x/hour=01/a-r4.parquet", 9, "dt=x/hour=01/a-r9.parquet"),
            (
                "dt=x/hour=01/compacted-v3-000.parquet",
                5,
                "dt=x/hour=01/compacted-v3-000-r5.parquet",
            ),
        ] {
            assert_eq!(rewritten_name(rel, version), want);
        }
    }

    #[test]
    fn the_resolution_columns() {
        let got: Vec<&str> = resolution_columns().collect();
        assert_eq!(got.len(), 22, "{got:?}");
        for c in [
            "actor_username",
            "original_claim_raw",
            "resolution",
            "claim_status",
            "credential_id",
            "node_uid",
            "proxy_profile",
        ] {
            assert!(got.contains(&c), "{c}");
        }
        for c in [
            "authn_username",
            "authn_credential_id",
            "impersonated_extra",
            "iam_arn",
            "impersonation_constraint",
        ] {
            assert!(!got.contains(&c), "{c}");
        }
    }
}
