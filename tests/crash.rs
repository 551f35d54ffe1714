//! Crash safety of file ingest: `kill -9` the real process at arbitrary
//! moments, re-run, and require every line stored exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn kill_9_during_ingest_never_loses_or_duplicates_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let log = dir.path().join("audit.log");
    let n = 120_000u64;
    run(&[
        "gen",
        "--events",
        &n.to_string(),
        "--seed",
        "11",
        "-o",
        &log.display().to_string(),
    ]);
    let mut killed = 0;
    // Kill points spread over the run; small segments make commits (and so
    // interrupted commits) frequent. Bounded: 6 kills at most.
    for delay_ms in [150u64, 400, 250, 700, 300, 550] {
        let mut child = Command::new(bin())
            .args(ingest_args(
                &lake,
                &["--segment-rows", "3000", "--row-group-rows", "1000"],
                &[&log],
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().expect("try_wait").is_none() {
            child.kill().expect("SIGKILL");
            killed += 1;
        }
        child.wait().expect("reap");
    }
    assert!(
        killed > 0,
        "the ingest always finished before the kill; nothing was tested"
    );
    // Finish the job.
    ingest(&lake, &["--segment-rows", "3000"], &[&log]);
    assert_eq!(scalar(&lake, "SELECT COUNT(*) FROM audit"), n.to_string());
    assert_eq!(
        scalar(&lake, "SELECT COUNT(DISTINCT source) FROM audit"),
        n.to_string()
    );
    // No half-written file is visible and no temporaries remain.
    let leftovers: Vec<_> = std::fs::read_dir(lake.join("_tmp"))
        .expect("tmp dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    for f in auditlake::sinks::lake::parquet_files(&lake) {
        let file = std::fs::File::open(&f).expect("open");
        parquet::file::reader::SerializedFileReader::new(file)
            .unwrap_or_else(|e| panic!("{} is not a complete Parquet file: {e}", f.display()));
    }
}
