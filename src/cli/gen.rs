//! `auditlake gen`: deterministic synthetic audit events (the same seed, the same bytes).

use anyhow::{Context, Result};
use auditlake::tools::gen::{Format, Generator};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

const EXAMPLES: &str = "Examples:\n  auditlake gen --events 1000000 --seed 7 -o events.jsonl\n  auditlake gen --events 100000 | auditlake ingest --lake L -\n  auditlake gen --format eventlist --batch 400 -o batches.jsonl\n  auditlake gen --format eks | auditlake ingest --lake L -   # cluster demo-eks, from the log group";

/// Write deterministic synthetic audit events.
///
/// The same seed always produces the same bytes. `jsonl` is the
/// apiserver log-backend format (one Event per line); `eventlist` is
/// one webhook batch (EventList) per line; `eks`, `aks` and `gke` wrap
/// the same events as each managed cluster's log pipeline delivers them
/// (see docs/sources.md), for trying `ingest` and `consume` on them.
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
    #[arg(long, env = "AUDITLAKE_GEN_FORMAT", value_enum, default_value_t = Format::JsonLines)]
    format: Format,
    /// Events per EventList or envelope (with --format eventlist, eks, aks).
    #[arg(long, env = "AUDITLAKE_GEN_BATCH", default_value_t = 400,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch: u64,
    /// Output file; `-` or no file is standard output (as `ingest`
    /// reads `-` as standard input).
    #[arg(short, long, env = "AUDITLAKE_GEN_OUTPUT")]
    output: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    let out: Box<dyn Write> = match a.output.as_deref().filter(|p| *p != Path::new("-")) {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    // Progress on a terminal only: lines written, against the lines expected.
    // (For gke, an upper bound: only each request's last stage is a line.)
    let lines = if a.format.batched() {
        a.events.div_ceil(a.batch)
    } else {
        a.events
    };
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(lines),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "gen [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} lines (eta {eta})",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut counted = Counting {
        inner: out,
        bar: &bar,
        pending: 0,
    };
    Generator::new(a.seed).write(a.events, a.format, a.batch as usize, &mut counted)?;
    counted.flush()?;
    bar.finish_and_clear();
    Ok(())
}

/// Counts the lines going through, for the progress bar (updated every 4096 lines: a bar
/// update per line would cost more than generating it).
struct Counting<'a, W: Write> {
    inner: W,
    bar: &'a indicatif::ProgressBar,
    pending: u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.pending += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
        if self.pending >= 4096 {
            self.bar.inc(self.pending);
            self.pending = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.bar.inc(std::mem::take(&mut self.pending));
        self.inner.flush()
    }
}
