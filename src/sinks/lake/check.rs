//! Damage checks of a lake's committed Parquet files, for `auditlake verify`
//! and for queries.
//!
//! The lake never writes a damaged file (temporaries are fsynced before
//! they are renamed into place), so damage comes from outside: a disk, a
//! copy cut short, a hand. A zero-length file once made 106,496 rows vanish
//! from every result without a message, and a truncated one failed every
//! query with "Corrupt footer" and no file name; both are found here by
//! name. Two depths:
//! - [`quick_problem`]: the frame (size, both magic numbers, the footer
//!   length); two small reads per file, cheap enough for every query;
//! - [`deep_problem`]: the footer's metadata and then every row group
//!   decoded, for `auditlake verify --deep`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// One damaged file and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub path: PathBuf,
    pub problem: String,
}

const MAGIC: &[u8; 4] = b"PAR1";

/// What is wrong with the frame of the Parquet file at `path`, if anything.
pub fn quick_problem(path: &Path) -> Option<String> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) => return Some(format!("cannot open: {e}")),
    };
    let len = match f.metadata() {
        Ok(m) => m.len(),
        Err(e) => return Some(format!("cannot stat: {e}")),
    };
    if len == 0 {
        return Some("empty file (0 bytes)".into());
    }
    if len < 12 {
        return Some(format!("{len} bytes, shorter than any Parquet file"));
    }
    let mut head = [0u8; 4];
    let mut tail = [0u8; 8];
    let read = f
        .read_exact(&mut head)
        .and_then(|_| f.seek(SeekFrom::End(-8)))
        .and_then(|_| f.read_exact(&mut tail));
    if let Err(e) = read {
        return Some(format!("read error: {e}"));
    }
    if &head != MAGIC {
        return Some("does not start with the Parquet magic number".into());
    }
    if &tail[4..] != MAGIC {
        return Some(format!(
            "does not end with the Parquet magic number: truncated ({len} bytes) or overwritten"
        ));
    }
    let footer = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as u64;
    if footer + 12 > len {
        return Some(format!(
            "footer of {footer} bytes does not fit in the file's {len} bytes"
        ));
    }
    None
}

/// As [`quick_problem`], then the metadata parsed and every row group read.
pub fn deep_problem(path: &Path) -> Option<String> {
    if let Some(p) = quick_problem(path) {
        return Some(p);
    }
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) => return Some(format!("cannot open: {e}")),
    };
    let reader = match parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .and_then(|b| b.with_batch_size(8192).build())
    {
        Ok(r) => r,
        Err(e) => return Some(format!("metadata: {e}")),
    };
    for batch in reader {
        if let Err(e) = batch {
            return Some(format!("data: {e}"));
        }
    }
    None
}

/// Every damaged file among `files` (a lake's live files; one the log names but that is
/// missing is damaged too).
pub fn damaged(files: &[PathBuf], deep: bool) -> Vec<Damage> {
    let check = if deep { deep_problem } else { quick_problem };
    files
        .iter()
        .filter_map(|path| {
            check(path).map(|problem| Damage {
                path: path.clone(),
                problem,
            })
        })
        .collect()
}
