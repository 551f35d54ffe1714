//! `auditlake verify`: name the lake's damaged Parquet files; exit 1 when there is one.

use anyhow::{bail, Result};
use std::path::PathBuf;

const EXAMPLES: &str = "Examples:\n  auditlake verify --lake L\n  auditlake verify --lake L --deep";

/// Check the lake's Parquet files and list the damaged ones.
///
/// Checks each file's frame (size, magic numbers, footer length); with
/// --deep also reads its metadata and decodes every row group. Exits 1
/// when a file is damaged. Queries check frames too and, by default,
/// refuse to answer over a damaged file (see `query --damaged`).
#[derive(clap::Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// Lake directory.
    #[arg(long, env = "AUDITLAKE_LAKE")]
    lake: PathBuf,
    /// Decode every row group, not only the file frames.
    #[arg(long, env = "AUDITLAKE_DEEP")]
    deep: bool,
}

pub fn run(a: Args) -> Result<()> {
    let (lake, deep) = (a.lake, a.deep);
    if auditlake::sinks::lake::store::is_remote(&lake) {
        bail!(
            "{}: `verify` checks Parquet frames on a local disk; on an object store use `auditlake lake verify {}` (every file's SHA-256 against its commit)",
            lake.display(),
            lake.display()
        );
    }
    if !lake.is_dir() {
        bail!(
            "lake {} does not exist or is not a directory",
            lake.display()
        );
    }
    let live = auditlake::sinks::lake::live_files(&lake)?;
    let files = live.len();
    let damage = auditlake::sinks::lake::check::damaged(&live, deep);
    for d in &damage {
        println!("{}\t{}", d.path.display(), d.problem);
    }
    let depth = if deep { "decoded" } else { "frames checked" };
    if damage.is_empty() {
        eprintln!("{files} Parquet files, {depth}: none damaged");
        Ok(())
    } else {
        bail!(
            "{} of {files} Parquet files damaged ({depth}); restore them from a backup or re-ingest their source, or query with --damaged skip",
            damage.len()
        )
    }
}
