//! The end-to-end benchmark script (`benches/ingest.sh`) on a small input:
//! it must run the real binary, check every run stored every event, and
//! report one row per run and round plus a range per binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;
use common::bin;
use std::process::Command;
use std::sync::Mutex;

/// One test at a time: a test writes an executable and runs it, and a
/// process forked meanwhile by another test could hold it open for
/// writing (ETXTBSY).
static SERIAL: Mutex<()> = Mutex::new(());

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
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().expect("tempdir");
    let exe = bin();
    let exe = exe.to_str().expect("utf-8 path");
    let w = work.path().to_str().expect("utf-8 path");
    let out = script(&[
        "-n",
        "3000",
        "-r",
        "2",
        "-w",
        w,
        "-f",
        "jsonl,eks",
        exe,
        exe,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("3,000 events"), "{stdout}");
    // Per-run rows: | binary | format | round | events/s | MB/s | wall | CPU | RSS | lake |
    let runs: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.starts_with(&format!("| {exe} |")))
        .map(|l| l.split('|').map(str::trim).collect())
        .filter(|c: &Vec<&str>| c.len() == 11)
        .collect();
    let rounds: Vec<(&str, &str)> = runs.iter().map(|c| (c[2], c[3])).collect();
    // Two binaries (the same path) × two formats, per round.
    assert_eq!(rounds.len(), 8, "{stdout}");
    for f in ["jsonl", "eks"] {
        assert_eq!(rounds.iter().filter(|r| r.0 == f).count(), 4, "{stdout}");
    }
    for c in &runs {
        let events_per_s: f64 = c[4].replace(',', "").parse().expect("events/s");
        assert!(events_per_s > 0.0, "{stdout}");
        assert!(c[8].ends_with("MiB"), "{stdout}");
        let lake_mb: f64 = c[9].trim_end_matches(" MB").parse().expect("lake MB");
        assert!(lake_mb > 0.0, "{stdout}");
    }
    // One range row per distinct binary path and format (the same path twice: one each).
    let ranges = stdout
        .lines()
        .filter(|l| l.starts_with(&format!("| {exe} |")) && l.contains('–'))
        .count();
    assert_eq!(ranges, 2, "{stdout}");
    // The input is kept in the given work directory, the lake is not.
    assert!(work.path().join("events-3000.jsonl").is_file());
    assert!(work.path().join("events-3000.eks").is_file());
    assert!(!work.path().join("lake").exists());
    assert!(!work.path().join("ingest.stderr").exists());
}

/// Each round starts with a different binary, so the first run of a round
/// (which pays for whatever the round before left behind) is not always
/// the same build's.
#[test]
fn ingest_bench_rotates_the_order_every_round() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().expect("tempdir");
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    for link in [&a, &b] {
        std::os::unix::fs::symlink(bin(), link).expect("symlink");
    }
    let (a, b) = (a.to_str().expect("utf-8"), b.to_str().expect("utf-8"));
    let w = work.path().join("w");
    let out = script(&[
        "-n",
        "500",
        "-r",
        "3",
        "-w",
        w.to_str().expect("utf-8"),
        a,
        b,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let order: Vec<(String, String)> = stdout
        .lines()
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
        .filter(|c| c.len() == 11 && (c[1] == a || c[1] == b))
        .map(|c| (c[1].to_string(), c[3].to_string()))
        .collect();
    let want: Vec<(String, String)> = [(a, "1"), (b, "1"), (b, "2"), (a, "2"), (a, "3"), (b, "3")]
        .iter()
        .map(|(x, r)| (x.to_string(), r.to_string()))
        .collect();
    assert_eq!(order, want, "{stdout}");
}

/// A stand-in for auditlake that generates with the real binary but whose
/// `ingest` reports `summary` and exits with `code`.
fn fake_binary(dir: &std::path::Path, summary: &str, code: i32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("fake-auditlake");
    let real = bin();
    let text = format!(
        "#!/usr/bin/env bash\nif [ \"$1\" = gen ]; then exec '{}' \"$@\"; fi\necho '{summary}' >&2\nexit {code}\n",
        real.display()
    );
    std::fs::write(&path, text).expect("write fake binary");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[test]
fn ingest_bench_fails_when_a_run_loses_events_or_fails() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path().to_str().expect("utf-8 path");
    let short = "total: 1 input files, 5 events, 4 rows written, 0 rejected, 1 lake files (0.1 MB)";
    let fake = fake_binary(work.path(), short, 0);
    let out = script(&["-n", "5", "-r", "1", "-w", w, fake.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("wrote 4 rows of jsonl, expected 5"),
        "{stderr}"
    );

    let fake = fake_binary(work.path(), "error: disk full", 1);
    let out = script(&["-n", "5", "-r", "1", "-w", w, fake.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("failed in round 1") && stderr.contains("error: disk full"),
        "{stderr}"
    );
}

#[test]
fn ingest_bench_refuses_a_missing_binary() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = script(&["-n", "10", "-r", "1", "/nonexistent/auditlake"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an executable"));
}

#[test]
fn query_bench_compares_engines_on_the_same_answers() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().expect("tempdir");
    let exe = bin();
    let root = env!("CARGO_MANIFEST_DIR");
    let python = std::env::var("AUDITLAKE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new("bash")
        .arg(format!("{root}/benches/query.sh"))
        .args([
            "-n",
            "4000",
            "-r",
            "2",
            "-d",
            "120",
            "-q",
            "actor-via-proxy,who-acted-as-whom",
        ])
        .arg("-w")
        .arg(work.path())
        .arg(&exe)
        .env("AUDITLAKE_BENCH_PYTHON", python)
        .output()
        .expect("bash benches/query.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Summary rows: | query | window | ours s | RSS | DuckDB s | RSS | ratio | rows |
    let summary: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
        .filter(|c| c.len() == 10 && ["actor-via-proxy", "who-acted-as-whom"].contains(&c[1]))
        .collect();
    assert_eq!(summary.len(), 4, "two queries, two windows: {stdout}");
    for c in &summary {
        assert!(c[8].ends_with("same"), "engines disagree: {stdout}");
        let ours: f64 = c[3]
            .split('–')
            .next()
            .unwrap_or("")
            .parse()
            .expect("seconds");
        assert!(ours > 0.0, "{stdout}");
    }
    // Two rounds, each engine once per query and window.
    let runs = stdout
        .lines()
        .filter(|l| l.starts_with("| actor-via-proxy | all |") && l.split('|').count() == 9)
        .count();
    assert_eq!(runs, 4, "{stdout}");
}

/// The small-file benchmark on a small lake: it must build both lakes (one through a real
/// `serve`), compact a copy of the serve lake, hold every event in each, and report the same
/// answers on all three.
#[test]
fn small_files_bench_compares_the_two_lakes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().expect("tempdir");
    let exe = bin();
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/benches/small_files.sh"))
        .args([
            "-n",
            "8000",
            "-s",
            "800",
            "-r",
            "1",
            "-q",
            "who-acted-as-whom",
            "-c",
        ])
        .arg("-w")
        .arg(work.path())
        .arg(&exe)
        .output()
        .expect("bash benches/small_files.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 8,000 events in batches of 400, a commit from 800 rows on (more when several batches are
    // durable by the time the flusher reads): several files in the one hour, against one.
    let files = |lake: &str| -> u64 {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{lake}: ")))
            .unwrap_or_else(|| panic!("no {lake} line:\n{stdout}"));
        let before = line.split(" Parquet files").next().unwrap_or_default();
        before
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("a file count")
    };
    assert_eq!(files("ingest"), 1, "{stdout}");
    assert!(files("serve") >= 2, "{stdout}");
    assert_eq!(
        files("compacted"),
        1,
        "one hour, one file after compaction: {stdout}"
    );
    assert!(stdout.contains("compact: "), "{stdout}");
    for probe in ["plan", "count", "who-acted-as-whom"] {
        let row = stdout
            .lines()
            .rfind(|l| l.starts_with(&format!("| {probe} |")))
            .unwrap_or_else(|| panic!("no summary row for {probe}:\n{stdout}"));
        assert!(row.ends_with("| yes |"), "{row}");
    }
}

/// `benches/verify.sh` converts a copy of a lake (hashing every file) and verifies it, one row
/// per run; `benches/lakes.sh` runs named queries on two lakes and checks the answers agree.
#[test]
fn verify_and_lakes_benches_report_every_run() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().expect("tempdir");
    let exe = bin();
    let root = env!("CARGO_MANIFEST_DIR");
    let log = work.path().join("audit.log");
    common::gen_file(&log, 3000, 9);
    let lake = work.path().join("lake");
    let other = work.path().join("other");
    for l in [&lake, &other] {
        common::ingest(l, &[], &[&log]);
    }
    let out = Command::new("bash")
        .arg(format!("{root}/benches/verify.sh"))
        .args(["-r", "2", "-l"])
        .arg(&lake)
        .arg(&exe)
        .output()
        .expect("bash benches/verify.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "| lake convert (hashes every file) |",
        "| lake verify 1 |",
        "| lake verify 2 |",
    ] {
        assert!(stdout.contains(row), "{row} missing from\n{stdout}");
    }
    // The lake it was given is left as it was (the copy was converted and verified).
    assert!(lake.join("_delta_log").is_dir());

    let out = Command::new("bash")
        .arg(format!("{root}/benches/lakes.sh"))
        .args(["-r", "1", "-q", "actor-via-proxy,events-deleted", "-b"])
        .arg(&exe)
        .arg(&lake)
        .arg(&other)
        .output()
        .expect("bash benches/lakes.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("| a") || l.starts_with("| e"))
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert!(rows.iter().all(|r| r.ends_with("| yes |")), "{stdout}");
    assert!(
        stdout.contains("queries at or under 2 s in every round"),
        "{stdout}"
    );
}

/// `benches/follow.sh` on a small input rotated every MiB: one row per run and round, each
/// run's lake checked to hold every line, and the ratio line.
#[test]
fn follow_bench_compares_follow_with_ingest() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().expect("tempdir");
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/benches/follow.sh"))
        .args(["-n", "4000", "-r", "2", "-m", "1", "-w"])
        .arg(work.path())
        .arg(bin())
        .output()
        .expect("bash benches/follow.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("| 1 |") || l.starts_with("| 2 |"))
        .collect();
    assert_eq!(runs.len(), 4, "{stdout}");
    assert_eq!(runs.iter().filter(|r| r.contains("| follow |")).count(), 2);
    assert!(stdout.contains("follow / ingest wall: "), "{stdout}");
}

/// `benches/shell.sh` on a small lake: one row per round with both timings, and the shell's
/// answers equal to the separate processes' (the script fails otherwise) and not just headers.
#[test]
fn shell_bench_compares_the_shell_with_processes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().expect("tempdir");
    let lake = work.path().join("lake");
    let root = env!("CARGO_MANIFEST_DIR");
    let built = Command::new("bash")
        .arg("-c")
        .arg(r#""$0" gen --events 4000 --seed 7 -o - | "$0" ingest --lake "$1" --cluster bench -"#)
        .arg(bin())
        .arg(&lake)
        .output()
        .expect("gen | ingest");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let out = Command::new("bash")
        .arg(format!("{root}/benches/shell.sh"))
        .args(["-r", "2", "-q", "events-deleted,denied-per-actor", "-l"])
        .arg(&lake)
        .args(["-s", "2000-01-01T00:00:00Z", "-u", "2100-01-01T00:00:00Z"])
        .arg(bin())
        .output()
        .expect("bash benches/shell.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rounds: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.starts_with("| 1 |") || l.starts_with("| 2 |"))
        .map(|l| l.split('|').map(str::trim).collect())
        .collect();
    assert_eq!(rounds.len(), 2, "{stdout}");
    for r in &rounds {
        for col in [3, 4] {
            let s: f64 = r[col].parse().expect("seconds");
            assert!(s > 0.0, "{stdout}");
        }
    }
    let lines: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("answers: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("answers line");
    assert!(lines > 2, "only headers: {stdout}");
}
