//! `auditlake loadgen`: an apiserver-like webhook client for load tests.

use super::runtime;
use anyhow::Result;
use std::path::PathBuf;

const EXAMPLES: &str = "Examples:\n  auditlake loadgen --url https://localhost:8443/audit --ca ca.crt --token TOKEN\n  auditlake loadgen --url https://localhost:8443/audit --ca ca.crt --cert c.crt --key c.key --rate 20000";

/// Post EventList batches like kube-apiserver does, and report
/// acknowledged events/s and acknowledgement latency.
#[derive(clap::Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// Webhook URL, e.g. https://localhost:8443/audit.
    #[arg(long, env = "AUDITLAKE_LOADGEN_URL")]
    url: String,
    /// CA bundle that signed the server certificate.
    #[arg(long, env = "AUDITLAKE_LOADGEN_CA")]
    ca: PathBuf,
    /// Client certificate (mTLS).
    #[arg(long, env = "AUDITLAKE_LOADGEN_CERT", requires = "key")]
    cert: Option<PathBuf>,
    /// Client key (mTLS).
    #[arg(long, env = "AUDITLAKE_LOADGEN_KEY", requires = "cert")]
    key: Option<PathBuf>,
    /// Bearer token.
    #[arg(long, env = "AUDITLAKE_LOADGEN_TOKEN")]
    token: Option<String>,
    /// Events to send in total.
    #[arg(long, env = "AUDITLAKE_LOADGEN_EVENTS", default_value_t = 1_000_000)]
    events: u64,
    /// Events per EventList (the apiserver's default is 400).
    #[arg(long, env = "AUDITLAKE_LOADGEN_BATCH", default_value_t = 400,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch: u64,
    /// Batches in flight at once.
    #[arg(long, env = "AUDITLAKE_LOADGEN_CONCURRENCY", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    concurrency: u64,
    /// Target events/s (0 = as fast as acknowledgements come back).
    #[arg(long, env = "AUDITLAKE_LOADGEN_RATE", default_value_t = 0)]
    rate: u64,
}

pub fn run(a: Args) -> Result<()> {
    let identity = a.cert.as_deref().zip(a.key.as_deref());
    let client = auditlake::tools::loadgen::https_client(&a.ca, identity)?;
    let spec = auditlake::tools::loadgen::LoadSpec {
        url: a.url,
        token: a.token,
        events: a.events,
        batch: a.batch as usize,
        concurrency: a.concurrency as usize,
        rate: a.rate,
    };
    let report = runtime()?.block_on(auditlake::tools::loadgen::run(client, spec))?;
    println!("{report}");
    Ok(())
}
