//! The end-to-end benchmark script (`benches/ingest.sh`) on a small input:
//! it must run the real binary, check every run stored every event, and
//! report one row per run and round plus a range per binary.

mod common;
use common::bin;
use std::process::Command;

fn script(args: &[&str]) -> std::process::Output {
    let root = env!("CARGO_MANIFEST_DIR");
    Command::new("bash")
        .arg(format!("{root}/benches/ingest.sh"))
        .args(args)
        .output()
        .expect("bash benches/ingest.sh")
}

#[test]
fn ingest_bench_reports_every_run() {
    let work = tempfile::tempdir().expect("tempdir");
    let exe = bin();
    let exe = exe.to_str().expect("utf-8 path");
    let w = work.path().to_str().expect("utf-8 path");
    let out = script(&["-n", "3000", "-r", "2", "-w", w, exe, exe]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("3,000 events"), "{stdout}");
    // Per-run rows: | binary | round | events/s | MB/s | wall | CPU | RSS | lake |
    let runs: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.starts_with(&format!("| {exe} |")))
        .map(|l| l.split('|').map(str::trim).collect())
        .filter(|c: &Vec<&str>| c.len() == 10)
        .collect();
    let rounds: Vec<&str> = runs.iter().map(|c| c[2]).collect();
    assert_eq!(rounds, ["1", "1", "2", "2"], "{stdout}");
    for c in &runs {
        let events_per_s: f64 = c[3].replace(',', "").parse().expect("events/s");
        assert!(events_per_s > 0.0, "{stdout}");
        assert!(c[7].ends_with("MiB"), "{stdout}");
        let lake_mb: f64 = c[8].trim_end_matches(" MB").parse().expect("lake MB");
        assert!(lake_mb > 0.0, "{stdout}");
    }
    // One range row per distinct binary path (the same path twice: one).
    let ranges = stdout
        .lines()
        .filter(|l| l.starts_with(&format!("| {exe} |")) && l.contains('–'))
        .count();
    assert_eq!(ranges, 1, "{stdout}");
    // The input is kept in the given work directory, the lake is not.
    assert!(work.path().join("events-3000.jsonl").is_file());
    assert!(!work.path().join("lake").exists());
}

#[test]
fn ingest_bench_refuses_a_missing_binary() {
    let out = script(&["-n", "10", "-r", "1", "/nonexistent/auditlake"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an executable"));
}
