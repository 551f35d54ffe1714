//! `auditlake produce`: JSON lines into a Kafka topic, for backfills, tests and benchmarks.

use super::KafkaClientArgs;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

const EXAMPLES: &str = "Examples:\n  auditlake produce --brokers localhost:9092 --topic audit events.jsonl\n  auditlake gen --events 10000 | auditlake produce --brokers localhost:9092 --topic audit";

/// Produce JSON lines into a Kafka topic.
///
/// Reads a log-backend file or `auditlake gen` output and writes one event per
/// message keyed by its auditID (as the webhook's relay does), or several
/// lines per message. For backfills, tests and benchmarks.
#[derive(clap::Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// Bootstrap brokers, host:port[,host:port...].
    #[arg(long, env = "AUDITLAKE_BROKERS")]
    brokers: String,
    /// Topic to write.
    #[arg(long, env = "AUDITLAKE_TOPIC")]
    topic: String,
    /// Lines per message (1 = one Event per message).
    #[arg(long, env = "AUDITLAKE_LINES_PER_MESSAGE", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    lines_per_message: u64,
    #[command(flatten)]
    pub(super) kafka: KafkaClientArgs,
    /// Input file (`-` = stdin).
    #[arg(env = "AUDITLAKE_FILE", default_value = "-")]
    file: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let options = a.kafka.parse()?;
    let input: Box<dyn std::io::BufRead> = if a.file.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin().lock()))
    } else {
        Box::new(std::io::BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(&a.file)
                .with_context(|| format!("cannot open {}", a.file.display()))?,
        ))
    };
    let report = auditlake::tools::produce::produce_lines(
        &a.brokers,
        &a.topic,
        &options,
        input,
        a.lines_per_message as usize,
    )?;
    println!("{report}");
    if report.failed > 0 {
        bail!("{} messages were not delivered", report.failed);
    }
    Ok(())
}
