//! `auditlake schema`: the record schema, with a description per column.

use anyhow::Result;

const EXAMPLES: &str = "Examples:\n  auditlake schema\n  auditlake schema | grep actor_";

/// Print the record schema (Arrow types and a description per column).
///
/// The same schema is committed as schemas/audit_record.schema.json.
#[derive(clap::Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {}

pub fn run(_: Args) -> Result<()> {
    print!("{}", auditlake::schema::schema_document_text());
    Ok(())
}
