//! `auditlake queries`: the named forensic queries, and the relations as SQL for other engines.

use anyhow::Result;
use auditlake::query;

const EXAMPLES: &str = "Examples:\n  auditlake queries\n  auditlake queries --sql\n  auditlake queries --queries ~/auditlake-queries   # yours, checked, beside the shipped ones\n  auditlake queries --reference-views > views.sql";

/// List the named forensic queries.
///
/// `--reference-views` prints `audit_events` and `requests` as plain SQL
/// views over a relation named `audit`, for other engines: in DuckDB,
/// `CREATE VIEW audit AS SELECT * FROM read_parquet('L/**/*.parquet',
/// hive_partitioning = true, hive_types = {'dt': VARCHAR, 'hour':
/// VARCHAR})` (with `union_by_name = true` on a lake that also holds
/// files of schema version 1), then the printed statements, and the
/// named queries run there as well.
#[derive(clap::Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct Args {
    /// Also print each query's SQL.
    #[arg(long, env = "AUDITLAKE_SHOW_SQL")]
    sql: bool,
    /// Print the relations as SQL views for other engines instead.
    #[arg(long, env = "AUDITLAKE_REFERENCE_VIEWS")]
    reference_views: bool,
    /// Also list (and check) your own named queries: every `NAME.sql` in
    /// this directory, as `auditlake query --queries DIR` runs them.
    #[arg(long, env = "AUDITLAKE_QUERIES", value_name = "DIR")]
    queries: Option<std::path::PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    if a.reference_views {
        println!(
            "CREATE OR REPLACE VIEW audit_events AS {};\nCREATE OR REPLACE VIEW requests AS {};\nCREATE OR REPLACE VIEW audit_id_reuse AS {};",
            query::reference::audit_events_sql("audit"),
            query::reference::requests_sql("audit"),
            query::reference::audit_id_reuse_sql("requests")
        );
        return Ok(());
    }
    let mine = match &a.queries {
        Some(dir) => query::load_dir(dir)?,
        None => Vec::new(),
    };
    let shipped = query::named_queries().len();
    for (i, q) in query::named_queries().into_iter().chain(mine).enumerate() {
        if i == shipped {
            if let Some(dir) = &a.queries {
                println!("\nfrom {}:", dir.display());
            }
        }
        println!("{:<26} {}", q.name, q.question);
        for p in &q.params {
            match &p.default {
                Some(d) => println!(
                    "{:<26}   --param {}=… ({}; default {d})",
                    "", p.name, p.description
                ),
                None => println!(
                    "{:<26}   --param {}=… ({}; required)",
                    "", p.name, p.description
                ),
            }
        }
        if a.sql {
            println!("{}\n", q.body);
        }
    }
    Ok(())
}
