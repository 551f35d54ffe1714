//! The failure paths of `auditlake ingest` (issue 19): lines still being
//! written, over-long lines, impossible dates, lost state, writer errors
//! and concurrent writers. Real binary, real files, bounded in time.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;
use common::*;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One audit event as a JSON line, received at `ts`.
fn line(id: &str, ts: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list","user":{{"username":"alice"}},"sourceIPs":["10.0.0.1"],"responseStatus":{{"code":200}},"requestReceivedTimestamp":"{ts}","stageTimestamp":"{ts}"}}"#
    )
}

fn count(lake: &Path) -> u64 {
    scalar(lake, "SELECT count(*) FROM audit")
        .parse()
        .expect("a count")
}

/// Run a command with a deadline; a hang is a failure, not a stuck suite.
fn run_bounded(cmd: &mut Command, limit: Duration) -> std::process::Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "hung for {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// §2: the live `audit.log`'s last line is half written. It must not be
/// consumed (nor dead-lettered); once complete, the next run reads it.
#[test]
fn a_half_written_last_line_is_read_once_complete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let log = dir.path().join("audit.log");
    let whole = line("half-3", "2026-11-20T08:00:03.000000Z");
    let (head, tail) = whole.split_at(whole.len() / 2);
    let mut f = std::fs::File::create(&log).expect("create");
    for i in 1..=2 {
        writeln!(
            f,
            "{}",
            line(&format!("half-{i}"), "2026-11-20T08:00:00.000000Z")
        )
        .expect("w");
    }
    write!(f, "{head}").expect("w");
    f.flush().expect("flush");
    let out = ingest(&lake, &[], &[&log]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 3 has no newline yet"), "{stderr}");
    assert_eq!(count(&lake), 2);
    assert!(!lake
        .join("_rejected")
        .read_dir()
        .expect("dir")
        .any(|_| true));
    writeln!(f, "{tail}").expect("w");
    writeln!(f, "{}", line("half-4", "2026-11-20T08:00:04.000000Z")).expect("w");
    drop(f);
    ingest(&lake, &[], &[&log]);
    assert_eq!(
        sql(&lake, "SELECT audit_id FROM audit ORDER BY audit_id")[1..].concat(),
        ["half-1", "half-2", "half-3", "half-4"]
    );
    assert!(dead_letters(&lake).is_empty());
}

/// §3: a first line over the 64 MiB limit is dead-lettered (its head,
/// flagged, with its real length) and the ten events after it are stored.
#[test]
fn an_over_long_first_line_is_dead_lettered_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let log = dir.path().join("audit.log");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&log).expect("create"));
    let long = (64usize << 20) + 1000;
    f.write_all(b"{\"auditID\":\"").expect("w");
    f.write_all(&vec![b'x'; long]).expect("w");
    f.write_all(b"\"}\n").expect("w");
    for i in 0..10 {
        writeln!(
            f,
            "{}",
            line(&format!("after-{i}"), "2026-11-20T08:00:00.000000Z")
        )
        .expect("w");
    }
    drop(f);
    let out = ingest(&lake, &[], &[&log]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("10 events") && stderr.contains("1 rejected"),
        "{stderr}"
    );
    assert_eq!(count(&lake), 10);
    let dl = dead_letters(&lake);
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["position"], 1);
    assert_eq!(dl[0]["truncated"], true);
    assert_eq!(dl[0]["length"], (long + 14) as u64);
    assert_eq!(dl[0]["text"].as_str().map(str::len), Some(64 << 10));
    assert!(dl[0]["reason"]
        .as_str()
        .unwrap_or("")
        .contains("over the 64 MiB line limit"));
}

/// §5: impossible calendar dates are rejected with the reason, never
/// rolled into the next month.
#[test]
fn impossible_dates_are_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let log = dir.path().join("audit.log");
    let days = ["2026-02-30", "2026-11-31", "2027-02-29", "2028-02-29"];
    let text: String = days
        .iter()
        .map(|d| line(&format!("day-{d}"), &format!("{d}T10:00:00.000000Z")) + "\n")
        .collect();
    std::fs::write(&log, text).expect("write");
    ingest(&lake, &[], &[&log]);
    assert_eq!(
        sql(
            &lake,
            "SELECT audit_id, CAST(request_received_at AS VARCHAR) FROM audit"
        )[1..],
        [vec![
            "day-2028-02-29".to_string(),
            "2028-02-29T10:00:00Z".to_string()
        ]]
    );
    let dl = dead_letters(&lake);
    assert_eq!(dl.len(), 3);
    for d in &dl {
        let reason = d["reason"].as_str().unwrap_or("");
        assert!(reason.contains("requestReceivedTimestamp"), "{reason}");
    }
}

/// §6: with `_state` deleted, or a different `--segment-rows` after it was
/// lost, re-ingesting stores nothing twice: the lake's Delta log records
/// each source's position in the commit that added its files.
#[test]
fn lost_state_does_not_store_anything_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let log = dir.path().join("audit.log");
    gen_file(&log, 6000, 5);
    ingest(&lake, &["--segment-rows", "1000"], &[&log]);
    assert_eq!(count(&lake), 6000);
    for rows in ["1000", "1700"] {
        std::fs::remove_dir_all(lake.join("_state")).expect("rm state");
        let out = ingest(&lake, &["--segment-rows", rows], &[&log]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("resumed after line 6000"), "{stderr}");
        assert_eq!(count(&lake), 6000, "--segment-rows {rows}");
    }
    // Appended lines after a lost state are still read.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("open");
    writeln!(f, "{}", line("appended", "2026-11-20T08:00:00.000000Z")).expect("w");
    drop(f);
    std::fs::remove_dir_all(lake.join("_state")).expect("rm state");
    ingest(&lake, &[], &[&log]);
    assert_eq!(count(&lake), 6001);
}

/// §8: a writer error ends the run promptly, naming the file and the
/// cause, with a non-zero exit. Here the lake needs a directory where a
/// file stands, so the first commit fails while the reader is far ahead
/// (before, the reader blocked forever in a channel send).
#[test]
fn a_writer_error_ends_the_run_instead_of_hanging() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let log = dir.path().join("audit.log");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&log).expect("create"));
    for i in 0..200_000 {
        writeln!(
            f,
            "{}",
            line(&format!("w-{i}"), "2026-11-20T08:00:00.000000Z")
        )
        .expect("w");
    }
    drop(f);
    std::fs::create_dir_all(&lake).expect("lake");
    std::fs::write(lake.join("dt=2026-11-20"), "in the way").expect("blocker");
    let out = run_bounded(
        Command::new(bin()).args(ingest_args(&lake, &["--segment-rows", "1000"], &[&log])),
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("audit.log"),
        "the input is not named: {stderr}"
    );
    assert!(
        stderr.contains("dt=2026-11-20"),
        "the cause is not named: {stderr}"
    );
    // The lake is consistent: remove the fault and the re-run stores all.
    std::fs::remove_file(lake.join("dt=2026-11-20")).expect("unblock");
    ingest(&lake, &[], &[&log]);
    assert_eq!(count(&lake), 200_000);
    assert_eq!(
        scalar(&lake, "SELECT count(DISTINCT audit_id) FROM audit"),
        "200000"
    );
}

/// §8: two concurrent ingests of one file into one lake: one is refused
/// with a clear message (or they run one after the other), none hangs,
/// nothing is stored twice.
#[test]
fn concurrent_writers_of_one_source_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let log = dir.path().join("audit.log");
    gen_file(&log, 300_000, 9);
    let spawn = || {
        Command::new(bin())
            .args(ingest_args(&lake, &["--segment-rows", "5000"], &[&log]))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (a, b) = (spawn(), spawn());
    let started = Instant::now();
    let mut outs = vec![];
    for mut child in [a, b] {
        while child.try_wait().expect("try_wait").is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "an ingest hung"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        outs.push(child.wait_with_output().expect("output"));
    }
    let refused: Vec<String> = outs
        .iter()
        .filter(|o| !o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .collect();
    assert!(refused.len() <= 1, "both failed: {refused:?}");
    for r in &refused {
        assert!(r.contains("another process"), "{r}");
    }
    ingest(&lake, &[], &[&log]);
    assert_eq!(count(&lake), 300_000);
    assert_eq!(
        scalar(&lake, "SELECT count(DISTINCT source) FROM audit"),
        "300000"
    );
}

/// §4: a zero-length and a truncated Parquet file. Queries fail naming
/// both (before: rows vanished silently, or "Corrupt footer" with no
/// file); `verify` lists them; `--damaged skip` answers without them, for
/// `audit` and the deduplicated relations alike, and says so.
#[test]
fn damaged_parquet_files_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let log = dir.path().join("audit.log");
    gen_file(&log, 30_000, 3);
    ingest(
        &lake,
        &["--segment-rows", "3000", "--row-group-rows", "1000"],
        &[&log],
    );
    let files = parquet_files(&lake);
    assert!(files.len() >= 3, "{files:?}");
    let rows_in = |f: &Path| {
        parquet::file::reader::SerializedFileReader::new(std::fs::File::open(f).expect("open"))
            .map(|r| {
                use parquet::file::reader::FileReader;
                r.metadata().file_metadata().num_rows() as u64
            })
            .expect("parquet")
    };
    let (empty, cut) = (&files[0], &files[1]);
    let lost = rows_in(empty) + rows_in(cut);
    std::fs::write(empty, b"").expect("empty");
    let len = std::fs::metadata(cut).expect("meta").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(cut)
        .expect("open")
        .set_len(len / 2)
        .expect("truncate");
    let lake_s = lake.display().to_string();
    let out = Command::new(bin())
        .args(["query", "--lake", &lake_s, "SELECT count(*) FROM audit"])
        .output()
        .expect("query");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for f in [empty, cut] {
        assert!(stderr.contains(&f.display().to_string()), "{stderr}");
    }
    assert!(
        stderr.contains("empty file") && stderr.contains("truncated"),
        "{stderr}"
    );
    let out = Command::new(bin())
        .args(["verify", "--lake", &lake_s])
        .output()
        .expect("verify");
    assert_eq!(out.status.code(), Some(1));
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    for table in ["audit", "audit_events", "requests"] {
        let out = Command::new(bin())
            .args([
                "query",
                "--lake",
                &lake_s,
                "--damaged",
                "skip",
                "--format",
                "csv",
                &format!("SELECT count(*) FROM {table}"),
            ])
            .output()
            .expect("query");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{table}: {stderr}");
        assert_eq!(
            stderr.matches("warning: skipping damaged").count(),
            2,
            "{stderr}"
        );
        let n: u64 = parse_csv(&String::from_utf8_lossy(&out.stdout))[1][0]
            .parse()
            .expect("count");
        if table == "audit" {
            assert_eq!(n, 30_000 - lost, "{table}");
        } else {
            assert!(n > 0 && n < 30_000 - lost + 1, "{table}: {n}");
        }
    }
}
