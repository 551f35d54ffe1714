//! `auditlake compact`: merge each hour partition's small files into large sorted ones.

use super::now_us;
use anyhow::{bail, Context, Result};
use auditlake::sinks::lake::compact::{compact, CompactOptions};
use auditlake::sinks::lake::reresolve::Hours;
use auditlake::sinks::lake::{Lake, WriteOptions};
use std::path::PathBuf;

const EXAMPLES: &str = "Examples:\n  auditlake compact L\n  auditlake compact L --since 2d --target-size-mib 128\n  auditlake lake vacuum L   # later: delete the files compaction replaced";

/// Merge the small files of each hour partition into large sorted ones.
///
/// A webhook receiver that commits every 10 s writes about 360 files an
/// hour, and every query opens each one. This rewrites each hour
/// partition that has at least --min-files files smaller than half the
/// target into files of about --target-size-mib, rows sorted by actor and
/// time (so a question about one person skips most of each file), and
/// drops exact duplicate events (the same event delivered twice). Each
/// partition is one atomic commit of the lake's Delta log: readers see
/// the old files or the new ones, never both; writers may keep writing.
/// The replaced files stay on disk, invisible to auditlake, until
/// `auditlake lake vacuum` deletes them. A run that stops half-way is
/// resumed by running it again.
#[derive(clap::Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// Lake directory.
    #[arg(value_name = "LAKE", env = "AUDITLAKE_LAKE")]
    lake: PathBuf,
    /// Only hour partitions at or after this time (RFC 3339, a date, or a
    /// span back from now: `24h`, `7d`).
    #[arg(long, env = "AUDITLAKE_COMPACT_SINCE")]
    since: Option<String>,
    /// Only hour partitions before this time.
    #[arg(long, env = "AUDITLAKE_COMPACT_UNTIL")]
    until: Option<String>,
    /// Size of a merged file, in MiB.
    #[arg(long, env = "AUDITLAKE_COMPACT_TARGET_SIZE_MIB", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    target_size_mib: u64,
    /// Merge a partition once it has this many small files.
    #[arg(long, env = "AUDITLAKE_COMPACT_MIN_FILES", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(2..=100_000))]
    min_files: u64,
    /// Memory for sorting one partition before it spills to disk, in MiB.
    #[arg(long, env = "AUDITLAKE_COMPACT_MEMORY_LIMIT_MIB", default_value_t = 512,
          value_parser = clap::value_parser!(u64).range(64..=1_048_576))]
    memory_limit_mib: u64,
}

pub fn run(a: Args) -> Result<()> {
    if !super::is_lake(&a.lake) {
        bail!("{} is not a lake directory", a.lake.display());
    }
    let w = auditlake::query::Window::new(None, a.since.as_deref(), a.until.as_deref(), now_us())?;
    let lake = Lake::open(&a.lake, WriteOptions::default())
        .with_context(|| format!("cannot open lake {}", a.lake.display()))?;
    // Two runs at once would merge the same files (the second commit would fail).
    let _lock = lake.lock("compact", "compact")?;
    let opts = CompactOptions {
        target_bytes: a.target_size_mib << 20,
        min_files: a.min_files as usize,
        hours: Hours {
            since_us: w.since,
            until_us: w.until,
        },
        memory_limit: (a.memory_limit_mib as usize) << 20,
        write: WriteOptions::default(),
        stop: None,
    };
    let started = std::time::Instant::now();
    let c = super::runtime()?.block_on(compact(&lake, &opts))?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{}: {} partitions compacted: {} files ({} MiB, {} rows) into {} ({} MiB, {} rows; {} duplicate events dropped) in {secs:.1} s",
        a.lake.display(),
        c.partitions,
        c.files_in,
        c.bytes_in >> 20,
        c.rows_in,
        c.files_out,
        c.bytes_out >> 20,
        c.rows_out,
        c.rows_in - c.rows_out,
    );
    Ok(())
}
