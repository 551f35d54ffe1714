//! The lake is readable by other engines: DuckDB and pyarrow (from PyPI,
//! installed by tests/run.sh) read it and agree with DataFusion.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;
use common::*;
use std::process::Command;

fn python() -> String {
    std::env::var("AUDITLAKE_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[test]
fn duckdb_and_pyarrow_read_the_lake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let log = dir.path().join("audit.log");
    run(&[
        "gen",
        "--events",
        "20000",
        "--seed",
        "5",
        "-o",
        &log.display().to_string(),
    ]);
    ingest(&lake, &[], &[&log]);
    let ours = sql(
        &lake,
        "SELECT resolution, claim_status, COUNT(*) AS n FROM audit GROUP BY 1, 2 ORDER BY 1, 2",
    );
    let script = r#"
import sys, duckdb, pyarrow.dataset as ds
lake = sys.argv[1]
con = duckdb.connect()
rows = con.execute(f"""
  SELECT resolution, claim_status, COUNT(*) FROM read_parquet('{lake}/**/*.parquet', hive_partitioning=true)
  GROUP BY 1, 2 ORDER BY 1, 2""").fetchall()
for r in rows:
    print(",".join(str(x) for x in r))
hours = con.execute(f"SELECT COUNT(*) FROM (SELECT DISTINCT dt, hour FROM read_parquet('{lake}/**/*.parquet', hive_partitioning=true))").fetchone()[0]
print("partitions", hours)
# A bloom-filtered, typed lookup through DuckDB.
n = con.execute(f"SELECT COUNT(*) FROM read_parquet('{lake}/**/*.parquet', hive_partitioning=true) WHERE actor_username = 'alice@example.com' AND request_received_at IS NOT NULL").fetchone()[0]
print("alice", n)
t = ds.dataset(lake, format="parquet", partitioning="hive", exclude_invalid_files=True).to_table()
print("pyarrow", t.num_rows, t.schema.field("authn_extra").type)
"#;
    let out = Command::new(python())
        .args(["-c", script, &lake.display().to_string()])
        .output()
        .expect("run python (set AUDITLAKE_TEST_PYTHON or install python3)");
    assert!(
        out.status.success(),
        "python cross-check failed (tests/run.sh installs duckdb and pyarrow): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let theirs: Vec<Vec<String>> = lines
        .iter()
        .take_while(|l| !l.starts_with("partitions"))
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    assert_eq!(
        theirs,
        ours[1..].to_vec(),
        "DuckDB disagrees with DataFusion"
    );
    let parts = scalar(&lake, "SELECT COUNT(DISTINCT dt || hour) FROM audit");
    assert!(
        lines.contains(&format!("partitions {parts}").as_str()),
        "{text}"
    );
    let alice = scalar(
        &lake,
        "SELECT COUNT(*) FROM audit WHERE actor_username = 'alice@example.com'",
    );
    assert!(lines.contains(&format!("alice {alice}").as_str()), "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("pyarrow 20000 map<string, list<item: string>")),
        "{text}"
    );
}
