//! `auditlake retention`: drop the hour partitions older than a window, then vacuum.

use super::now_us;
use anyhow::{bail, Context, Result};
use auditlake::sinks::lake::vacuum::{retention, vacuum};
use auditlake::sinks::lake::{Lake, WriteOptions};
use std::path::PathBuf;

const EXAMPLES: &str =
    "Examples:\n  auditlake retention L --keep 90d --dry-run\n  auditlake retention L --keep 90d";

/// Remove the hour partitions older than --keep, and vacuum.
///
/// One commit of the lake's Delta log removes every hour partition that
/// ends before now minus --keep, so every reader stops seeing them at
/// once. Then the files out of the table for longer than --min-age are
/// deleted (those of partitions removed by earlier runs, and the files
/// compaction replaced): a query that started before a change keeps
/// reading its files for that long.
#[derive(clap::Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// Lake directory.
    #[arg(value_name = "LAKE", env = "AUDITLAKE_LAKE")]
    lake: PathBuf,
    /// How much to keep, back from now: `90d`, `12w`, `48h`.
    #[arg(long, env = "AUDITLAKE_RETENTION_KEEP")]
    keep: String,
    /// Delete a file only once it has been out of the table this long.
    #[arg(long, env = "AUDITLAKE_RETENTION_MIN_AGE", default_value = "1h")]
    min_age: String,
    /// Say what would be removed; change nothing.
    #[arg(long, env = "AUDITLAKE_RETENTION_DRY_RUN")]
    dry_run: bool,
}

pub fn run(a: Args) -> Result<()> {
    if !super::is_lake(&a.lake) {
        bail!("{} is not a lake directory", a.lake.display());
    }
    let now = now_us();
    let cutoff = auditlake::query::window::parse_time("--keep", &a.keep, now)?;
    let min_age = super::lake::age("--min-age", &a.min_age, now)?;
    let lake = Lake::open(&a.lake, WriteOptions::default())
        .with_context(|| format!("cannot open lake {}", a.lake.display()))?;
    let r = retention(&lake, cutoff, a.dry_run)?;
    let v = vacuum(&lake, min_age, a.dry_run)?;
    eprintln!(
        "{}: {} hour partitions before {} {}removed ({} files, {} rows); {} files {}deleted ({} MiB), {} kept until --min-age {}",
        a.lake.display(),
        r.partitions,
        auditlake::query::window::format_us(cutoff),
        if a.dry_run { "would be " } else { "" },
        r.files,
        r.rows,
        v.deleted,
        if a.dry_run { "would be " } else { "" },
        v.bytes >> 20,
        v.kept_young,
        a.min_age,
    );
    Ok(())
}
