//! `auditlake schema`: the record schema, with a description per column.

use anyhow::Result;

/// Print the record schema (Arrow types and a description per column).
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_: Args) -> Result<()> {
    print!("{}", auditlake::schema::schema_document_text());
    Ok(())
}
