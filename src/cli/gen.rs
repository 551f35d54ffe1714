//! `auditlake gen`: deterministic synthetic audit events (the same seed, the same bytes).

use anyhow::{Context, Result};
use auditlake::tools::gen::{Format, Generator};
use clap::ValueEnum;
use std::io::Write;
use std::path::{Path, PathBuf};

const EXAMPLES: &str = "Examples:\n  auditlake gen --events 1000000 --seed 7 -o events.jsonl\n  auditlake gen --events 100000 | auditlake ingest --lake L -\n  auditlake gen --format eventlist --batch 400 -o batches.jsonl";

/// Write deterministic synthetic audit events.
///
/// The same seed always produces the same bytes. `jsonl` is the
/// apiserver log-backend format (one Event per line); `eventlist` is
/// one webhook batch (EventList) per line.
#[derive(clap::Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// Number of events.
    #[arg(long, env = "AUDITLAKE_GEN_EVENTS", default_value_t = 10_000)]
    events: u64,
    /// Random seed.
    #[arg(long, env = "AUDITLAKE_GEN_SEED", default_value_t = 42)]
    seed: u64,
    /// Output format.
    #[arg(long, env = "AUDITLAKE_GEN_FORMAT", value_enum, default_value_t = GenFormat::Jsonl)]
    format: GenFormat,
    /// Events per EventList (with --format eventlist).
    #[arg(long, env = "AUDITLAKE_GEN_BATCH", default_value_t = 400,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch: u64,
    /// Output file; `-` or no file is standard output (as `ingest`
    /// reads `-` as standard input).
    #[arg(short, long, env = "AUDITLAKE_GEN_OUTPUT")]
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum GenFormat {
    Jsonl,
    Eventlist,
}

pub fn run(a: Args) -> Result<()> {
    let format = match a.format {
        GenFormat::Jsonl => Format::JsonLines,
        GenFormat::Eventlist => Format::EventList,
    };
    let mut out: Box<dyn Write> = match a.output.as_deref().filter(|p| *p != Path::new("-")) {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    Generator::new(a.seed).write(a.events, format, a.batch as usize, &mut out)?;
    out.flush()?;
    Ok(())
}
