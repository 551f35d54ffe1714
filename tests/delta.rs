//! The lake as a Delta table (issue 21): what the log says against what is on disk, read
//! with plain JSON (not delta-rs); conversion of the older layout; compaction, vacuum and
//! retention; several writers at once, one of them killed. Real binary, real files.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn count(lake: &Path, relation: &str) -> u64 {
    scalar(lake, &format!("SELECT count(*) FROM {relation}"))
        .parse()
        .expect("a count")
}

/// The log replayed by hand: live files (path -> numRecords) and each app's txn version.
fn replay(lake: &Path) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let mut entries: Vec<_> = std::fs::read_dir(lake.join("_delta_log"))
        .expect("a _delta_log")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    entries.sort();
    let (mut live, mut txn) = (BTreeMap::new(), BTreeMap::new());
    for entry in entries {
        for line in std::fs::read_to_string(&entry).expect("read").lines() {
            let action: serde_json::Value = serde_json::from_str(line).expect("a JSON action");
            if let Some(add) = action.get("add") {
                let stats: serde_json::Value =
                    serde_json::from_str(add["stats"].as_str().expect("stats")).expect("json");
                live.insert(
                    add["path"].as_str().expect("path").to_string(),
                    stats["numRecords"].as_u64().expect("numRecords"),
                );
            }
            if let Some(remove) = action.get("remove") {
                live.remove(remove["path"].as_str().expect("path"));
            }
            if let Some(t) = action.get("txn") {
                txn.insert(
                    t["appId"].as_str().expect("appId").to_string(),
                    t["version"].as_u64().expect("version"),
                );
            }
        }
    }
    (live, txn)
}

/// `hours` hours of events from 2026-11-20T08:00Z, `per_hour` in each, to `path`: for
/// retention, which needs hours to remove and hours to keep.
fn hourly_events(path: &Path, hours: u32, per_hour: u32) {
    let mut text = String::new();
    for h in 0..hours {
        for i in 0..per_hour {
            let ts = format!("2026-11-20T{:02}:{:02}:00.000000Z", 8 + h, i % 60);
            text += &format!(
                r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"r-{h}-{i}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/n{i}/pods?limit=500,x","verb":"list","user":{{"username":"bob"}},"impersonatedUser":{{"username":"carol"}},"responseStatus":{{"code":200}},"requestReceivedTimestamp":"{ts}","stageTimestamp":"{ts}"}}"#
            );
            text.push('\n');
        }
    }
    std::fs::write(path, text).expect("write");
}

fn rel(lake: &Path, p: &Path) -> String {
    p.strip_prefix(lake)
        .expect("under the lake")
        .to_string_lossy()
        .replace('\\', "/")
}

/// Every committed file is named by the log with its row count, the log's rows are the
/// query's, and each source's position is in the log.
#[test]
fn the_log_names_every_file_and_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let log = dir.path().join("audit.log");
    gen_file(&log, 5000, 3);
    ingest(&lake, &["--segment-rows", "1000"], &[&log]);
    let (live, txn) = replay(&lake);
    let on_disk: BTreeSet<String> = parquet_files(&lake).iter().map(|p| rel(&lake, p)).collect();
    assert_eq!(live.keys().cloned().collect::<BTreeSet<_>>(), on_disk);
    assert_eq!(live.values().sum::<u64>(), 5000);
    assert_eq!(count(&lake, "audit"), 5000);
    assert_eq!(txn.len(), 1, "{txn:?}");
    assert_eq!(txn.values().next(), Some(&5000), "the file's last line");
    // The table's schema names the partition columns.
    let first = std::fs::read_to_string(lake.join("_delta_log/00000000000000000000.json"))
        .expect("first entry");
    assert!(
        first.contains(r#""partitionColumns":["dt","hour"]"#),
        "{first}"
    );
}

/// A file on disk that the log does not name (an interrupted commit's, a hand's) is not part
/// of any answer.
#[test]
fn files_the_log_does_not_name_are_not_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let log = dir.path().join("audit.log");
    gen_file(&log, 2000, 4);
    ingest(&lake, &[], &[&log]);
    let before: Vec<String> = ["audit", "audit_events", "requests"]
        .iter()
        .map(|r| count(&lake, r).to_string())
        .collect();
    let file = parquet_files(&lake)[0].clone();
    let stray = file.with_file_name("stray-copy.parquet");
    std::fs::copy(&file, &stray).expect("copy");
    let after: Vec<String> = ["audit", "audit_events", "requests"]
        .iter()
        .map(|r| count(&lake, r).to_string())
        .collect();
    assert_eq!(before, after);
    // It is the vacuum's, once old enough.
    let out = run(&["lake", "vacuum", lake.to_str().unwrap(), "--min-age", "0s"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!stray.exists());
    assert!(file.exists(), "a live file is never vacuumed");
}

/// A lake of the layout before the log: writers refuse it, `lake convert` names its files
/// and keeps its positions, and nothing is stored twice afterwards.
#[test]
fn an_old_lake_converts_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let log = dir.path().join("audit.log");
    gen_file(&log, 3000, 5);
    ingest(&lake, &["--segment-rows", "1000"], &[&log]);
    // The older layout: files and `_state/`, no log; plus an interrupted commit's file.
    std::fs::remove_dir_all(lake.join("_delta_log")).expect("rm log");
    let state_path = std::fs::read_dir(lake.join("_state"))
        .expect("state")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a state file");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).expect("read")).expect("json");
    let source = state["source"].as_str().expect("source").to_string();
    let some = parquet_files(&lake)[0].clone();
    let partial = some.with_file_name(format!("{source}-000000003001-000000003500.parquet"));
    std::fs::copy(&some, &partial).expect("copy");
    state["pending"] = serde_json::json!({"last": 3500, "files": [rel(&lake, &partial)]});
    std::fs::write(&state_path, serde_json::to_vec(&state).expect("json")).expect("write");
    assert!(
        count(&lake, "audit") > 3000,
        "queries still read it as before: every file under the partitions"
    );

    let refused = Command::new(bin())
        .args(ingest_args(&lake, &[], &[&log]))
        .output()
        .expect("run");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("auditlake lake convert"), "{err}");

    let out = run(&["lake", "convert", lake.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("1 sources keep their positions"), "{said}");
    assert!(
        said.contains("1 files of interrupted commits removed"),
        "{said}"
    );
    assert!(!partial.exists());
    let (live, txn) = replay(&lake);
    assert_eq!(live.values().sum::<u64>(), 3000);
    assert_eq!(txn.get(&source), Some(&3000));
    assert_eq!(count(&lake, "audit"), 3000);
    // Again: nothing to do.
    let again = run(&["lake", "convert", lake.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already a Delta table"));
    // The source resumes where it stood.
    let out = ingest(&lake, &[], &[&log]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(count(&lake, "audit"), 3000);
    // A reset position reads from the start; the same lines make the same files again
    // (names follow positions), so nothing is stored twice.
    let out = run(&["lake", "reset", lake.to_str().unwrap(), "--source", &source]);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("position 3000 -> 0"), "{said}");
    let again = ingest(&lake, &[], &[&log]);
    assert!(!String::from_utf8_lossy(&again.stderr).contains("resumed after"));
    assert_eq!(count(&lake, "audit"), 3000);
    let unknown = Command::new(bin())
        .args([
            "lake",
            "reset",
            lake.to_str().unwrap(),
            "--source",
            "k.nope.0",
        ])
        .output()
        .expect("run");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("has no source"));
}

/// Compaction: one sorted file per hour, duplicates delivered twice stored once, every
/// relation and named query answering as before; idempotent; vacuum then deletes exactly
/// the replaced files, and a plain Parquet reader sees the live rows.
#[test]
fn compaction_merges_sorts_and_drops_only_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let log = dir.path().join("audit.log");
    gen_file(&log, 6000, 6);
    // The same events again under another file identity (another cluster label would change
    // them; a replayed copy must not): the first line differs, so the source differs.
    let text = std::fs::read_to_string(&log).expect("read");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.swap(0, 1);
    let replay_log = dir.path().join("replayed.log");
    std::fs::write(&replay_log, lines.join("\n") + "\n").expect("write");
    ingest(&lake, &["--segment-rows", "500"], &[&log, &replay_log]);
    assert_eq!(count(&lake, "audit"), 12_000);
    let relations = |lake: &Path| -> Vec<u64> {
        ["audit_events", "requests", "audit_id_reuse"]
            .iter()
            .map(|r| count(lake, r))
            .collect()
    };
    let before = relations(&lake);
    let timeline = query_text(&lake, &["--named", "who-acted-as-whom"]);
    let files_before = replay(&lake).0.len();

    let out = run(&["compact", lake.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let (live, _) = replay(&lake);
    let hours: BTreeSet<String> = live
        .keys()
        .map(|p| p.rsplit_once('/').expect("dir").0.to_string())
        .collect();
    assert_eq!(live.len(), hours.len(), "one file per hour: {live:?}");
    assert!(live.len() < files_before);
    assert_eq!(
        count(&lake, "audit"),
        before[0],
        "each event stored once (the generator's own retries included)"
    );
    assert_eq!(relations(&lake), before);
    assert_eq!(
        query_text(&lake, &["--named", "who-acted-as-whom"]),
        timeline
    );
    // Sorted by actor within each file.
    let sorted = sql(
        &lake,
        "SELECT count(*) FROM (SELECT actor_username, lag(actor_username) OVER (PARTITION BY dt, hour ORDER BY actor_username) AS prev FROM audit) WHERE prev > actor_username",
    );
    assert_eq!(sorted[1][0], "0");
    // Idempotent.
    let again = run(&["compact", lake.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&again.stderr).contains(": 0 partitions compacted"));

    // The replaced files are still on disk, young; vacuum with no minimum age deletes them.
    assert!(parquet_count(&lake) > live.len());
    let kept = run(&["lake", "vacuum", lake.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&kept.stderr).contains("0 files deleted"));
    let out = run(&["lake", "vacuum", lake.to_str().unwrap(), "--min-age", "0s"]);
    assert!(out.status.success(), "{out:?}");
    let on_disk: BTreeSet<String> = parquet_files(&lake).iter().map(|p| rel(&lake, p)).collect();
    assert_eq!(on_disk, live.keys().cloned().collect::<BTreeSet<_>>());
}

/// Retention removes whole old hours in one commit; the rest stays.
#[test]
fn retention_drops_old_hours() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let log = dir.path().join("audit.log");
    // Five hours of events, 100 in each.
    hourly_events(&log, 5, 100);
    ingest(&lake, &[], &[&log]);
    let hours = sql(
        &lake,
        "SELECT dt, hour, count(*) FROM audit GROUP BY dt, hour ORDER BY dt, hour",
    );
    assert!(hours.len() > 2, "several hours: {hours:?}");
    let (dt, hour) = (&hours[2][0], &hours[2][1]);
    let cutoff = format!("{dt}T{hour}:00:00Z");
    let kept: u64 = hours[2..]
        .iter()
        .map(|r| r[2].parse::<u64>().unwrap())
        .sum();
    let out = run(&[
        "retention",
        lake.to_str().unwrap(),
        "--keep",
        &cutoff,
        "--min-age",
        "0s",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(count(&lake, "audit"), kept);
    assert_eq!(replay(&lake).0.values().sum::<u64>(), kept);
    let on_disk: u64 = parquet_files(&lake).len() as u64;
    assert_eq!(on_disk, replay(&lake).0.len() as u64, "vacuumed");
}

/// Three writers of different sources commit to one lake at once; one is killed with
/// SIGKILL mid-run and run again: every line is stored exactly once.
#[test]
fn three_writers_at_once_one_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let logs: Vec<_> = (0..3)
        .map(|i| {
            let p = dir.path().join(format!("audit-{i}.log"));
            gen_file(&p, 60_000, 10 + i);
            p
        })
        .collect();
    // The writers also race to create the table.
    let spawn = |p: &Path| {
        Command::new(bin())
            .args(ingest_args(&lake, &["--segment-rows", "2000"], &[p]))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let mut writers: Vec<_> = logs.iter().map(|p| spawn(p)).collect();
    std::thread::sleep(Duration::from_millis(700));
    signal(&writers[0], "-KILL");
    for w in writers.iter_mut() {
        let _ = w.wait();
    }
    for w in writers.iter_mut().skip(1) {
        assert!(w.try_wait().expect("wait").is_some_and(|s| s.success()));
    }
    let again = ingest(&lake, &["--segment-rows", "2000"], &[&logs[0]]);
    assert!(again.status.success(), "{again:?}");
    assert_eq!(count(&lake, "audit"), 180_000);
    let (live, txn) = replay(&lake);
    assert_eq!(live.values().sum::<u64>(), 180_000);
    assert_eq!(txn.len(), 3);
    assert!(txn.values().all(|v| *v == 60_000), "{txn:?}");
    // Commits that lost a race were rebuilt on the new version: the hash chain is whole.
    let verified = Command::new(bin())
        .args(["lake", "verify", lake.to_str().unwrap()])
        .output()
        .expect("spawn");
    assert!(verified.status.success(), "{verified:?}");
}

/// A file already near the target is not merged again: a partition whose only small file is
/// the new one is left alone.
#[test]
fn compaction_leaves_large_files_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let (big, small) = (dir.path().join("big.log"), dir.path().join("small.log"));
    gen_file(&big, 20_000, 8);
    gen_file(&small, 200, 9);
    ingest(&lake, &[], &[&big, &small]);
    let sizes: Vec<u64> = parquet_files(&lake)
        .iter()
        .map(|p| std::fs::metadata(p).expect("stat").len())
        .collect();
    assert_eq!(sizes.len(), 2, "{sizes:?}");
    let dirs: BTreeSet<_> = parquet_files(&lake)
        .iter()
        .map(|p| p.parent().expect("dir").to_path_buf())
        .collect();
    assert_eq!(dirs.len(), 1, "both in one hour partition");
    assert!(
        sizes.iter().any(|s| *s >= 512 << 10),
        "one file of at least half a MiB: {sizes:?}"
    );
    let out = run(&["compact", lake.to_str().unwrap(), "--target-size-mib", "1"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(": 0 partitions compacted"),
        "{out:?}"
    );
    assert_eq!(replay(&lake).0.len(), 2);
}

/// An independent Delta reader, Apache Spark with Delta Lake (tests/delta_spark.py; installed
/// by tests/run.sh), returns the same rows as auditlake, by count and per-column checksum,
/// after ingest, after compaction and after retention.
#[test]
fn spark_reads_the_same_rows_after_ingest_compaction_and_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let generated = dir.path().join("generated.log");
    gen_file(&generated, 4000, 41);
    // Five hours of hand-made events, so retention has hours to remove and hours to keep.
    let hours = dir.path().join("hours.log");
    hourly_events(&hours, 5, 200);
    ingest(&lake, &["--segment-rows", "700"], &[&generated, &hours]);
    let snapshot = |name: &str| {
        let to = dir.path().join(name);
        let out = Command::new("cp")
            .args(["-r", lake.to_str().unwrap(), to.to_str().unwrap()])
            .output()
            .expect("cp");
        assert!(out.status.success());
        to
    };
    let ingested = snapshot("ingested");
    run(&["compact", lake.to_str().unwrap()]);
    let compacted = snapshot("compacted");
    run(&[
        "retention",
        lake.to_str().unwrap(),
        "--keep",
        "2026-11-20T10:00:00Z",
        "--min-age",
        "0s",
    ]);
    let retained = snapshot("retained");
    assert_eq!(count(&retained, "audit"), 600, "hours 10, 11 and 12 kept");

    let python = std::env::var("AUDITLAKE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/delta_spark.py");
    let out = Command::new(python)
        .arg(&script)
        .arg(bin())
        .args([&ingested, &compacted, &retained])
        .output()
        .expect("run the Spark cross-check (tests/run.sh installs pyspark and delta-spark)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(lines[0]["spark"], lines[0]["auditlake"]);
    assert_eq!(lines[2]["spark"].as_u64(), Some(600), "{stdout}");
}
