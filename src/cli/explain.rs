//! `auditlake explain`: why a request resolved as it did, in words, stage by stage.

use super::runtime;
use anyhow::{bail, Result};
use auditlake::query::{self, explain};
use std::path::PathBuf;

const EXAMPLES: &str = "Examples:\n  auditlake explain --lake ./auditlake-demo 6584944e-3740-483d-a053-5c8d84a9dcd6\n  auditlake query --lake L --named spoofed-malformed-claims --format csv   # find IDs to explain";

/// Explain why a request resolved as it did.
///
/// Says in words who acted, through which proxy or impersonation, why a
/// claim was believed or not (quoting a spoofed or malformed claim as
/// sent), which credentials were used, and lists every stage of the
/// request. An Audit-ID can be set by the client, so when several
/// requests carry one, each is explained and the reuse is pointed out.
#[derive(clap::Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// Lake directory.
    #[arg(long, env = "AUDITLAKE_LAKE")]
    lake: PathBuf,
    /// The request's auditID (the `audit_id` column).
    #[arg(value_name = "AUDIT_ID", env = "AUDITLAKE_AUDIT_ID")]
    audit_id: String,
}

pub fn run(a: Args) -> Result<()> {
    runtime()?.block_on(async {
        let lq = query::LakeQuery::open(&a.lake, &query::OpenOptions::default()).await?;
        let stages = explain::stages(&lq, &a.audit_id).await?;
        match explain::explain(&a.audit_id, &stages) {
            Some(text) => {
                print!("{text}");
                Ok(())
            }
            None => bail!(
                "no request with Audit-ID {:?} in {} (IDs are compared exactly); list some with: auditlake query --lake {} \"SELECT audit_id, actor_username, verb, resource FROM requests LIMIT 10\"",
                a.audit_id,
                a.lake.display(),
                a.lake.display()
            ),
        }
    })
}
