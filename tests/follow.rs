//! `ingest --follow` against a writer that appends and rotates as kube-apiserver's log backend
//! (lumberjack) does: lines written in two parts, renames to `audit-<time>.log`, some copies
//! gzipped after the new file is opened, rotations while the follower is down. The follower is
//! killed with -9 and restarted while the writer writes. Every line written must be stored
//! exactly once: the lake equals a one-off `ingest` of all the lines.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bin, fails_with, free_port, http_get, scalar, signal, sql};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// xorshift64*: the writer's and the kills' timing, reproducible per seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// The log backend's writer: `lines` into `dir/audit.log`, rotated every 150–650 lines
/// (rename, new file, then for about half the copies gzip and delete the plain copy, in that
/// order, as lumberjack's mill does). Returns the number of rotations.
fn write_and_rotate(dir: &Path, lines: &[String], seed: u64) -> usize {
    let live = dir.join("audit.log");
    let mut rng = Rng(seed);
    let mut f = std::fs::File::create(&live).expect("create audit.log");
    let mut until = 150 + rng.below(500);
    let mut rotations = 0;
    for (i, l) in lines.iter().enumerate() {
        let b = l.as_bytes();
        if rng.below(8) == 0 && b.len() > 2 {
            // A line written in two parts, the reader likely to look in between.
            let cut = 1 + rng.below(b.len() as u64 - 1) as usize;
            f.write_all(&b[..cut]).expect("write");
            std::thread::sleep(Duration::from_millis(3));
            f.write_all(&b[cut..]).expect("write");
            f.write_all(b"\n").expect("write");
        } else {
            f.write_all(b).expect("write");
            f.write_all(b"\n").expect("write");
        }
        if i % 20 == 19 {
            std::thread::sleep(Duration::from_millis(15));
        }
        until -= 1;
        // Not after the last line: the file left behind holds lines, so the follower follows it.
        if until == 0 && i + 1 < lines.len() {
            until = 150 + rng.below(500);
            rotations += 1;
            f = rotate(dir, rotations, rng.below(2) == 0);
        }
    }
    rotations
}

/// One lumberjack rotation: rename, open the new file, then (if `gzip`) the copy's `.gz` is
/// written and the plain copy removed. Returns the new file.
fn rotate(dir: &Path, n: usize, gzip: bool) -> std::fs::File {
    let live = dir.join("audit.log");
    let copy = dir.join(format!("audit-2026-12-02T10-{n:02}-00.000.log"));
    std::fs::rename(&live, &copy).expect("rename");
    let f = std::fs::File::create(&live).expect("new audit.log");
    if gzip {
        let plain = std::fs::read(&copy).expect("read copy");
        let gz = std::fs::File::create(copy.with_extension("log.gz")).expect("create gz");
        let mut enc = flate2::write::GzEncoder::new(gz, flate2::Compression::fast());
        // Written in two halves: a sweep may see the .gz half-written (beside its plain copy).
        let half = plain.len() / 2;
        enc.write_all(&plain[..half]).expect("gz");
        enc.flush().expect("gz flush");
        std::thread::sleep(Duration::from_millis(5));
        enc.write_all(&plain[half..]).expect("gz");
        enc.finish().expect("gz finish");
        std::fs::remove_file(&copy).expect("remove plain copy");
    }
    f
}

/// A follower process, killed if the test fails first (it would hold the test's output open).
struct Follower(Child);

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn follower(lake: &Path, live: &Path, listen: &str) -> Follower {
    let child = Command::new(bin())
        .args(["ingest", "--lake"])
        .arg(lake)
        .args([
            "--cluster",
            "prod",
            "--follow",
            "--flush-seconds",
            "0.2",
            "--poll-seconds",
            "0.02",
            "--metrics-listen",
            listen,
            "--no-progress",
        ])
        .arg(live)
        .env("AUDITLAKE_LOG", "warn")
        .spawn()
        .expect("spawn ingest --follow");
    Follower(child)
}

fn count(lake: &Path) -> u64 {
    if !lake.join("_delta_log").is_dir() {
        return 0;
    }
    scalar(lake, "SELECT count(*) FROM audit")
        .parse()
        .expect("count")
}

fn wait_for_rows(lake: &Path, want: u64, within: Duration) {
    let t = Instant::now();
    loop {
        let n = count(lake);
        if n == want {
            return;
        }
        assert!(n < want, "{n} rows stored of {want} written: some twice");
        assert!(
            t.elapsed() < within,
            "{n} of {want} rows stored after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What the lake holds, as a multiset of events.
fn contents(lake: &Path) -> Vec<Vec<String>> {
    sql(
        lake,
        "SELECT audit_id, stage, verb, request_uri, count(*) AS n FROM audit \
         GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
    )
}

/// The generated lines without repeats. A file's identity is its first line, and the
/// generator repeats some events exactly (retries); the apiserver never writes one line twice,
/// so a rotated file never starts as another did.
fn unique_lines(pool: &Path) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    std::fs::read_to_string(pool)
        .expect("pool")
        .lines()
        .filter(|l| !l.trim().is_empty() && seen.insert(l.to_string()))
        .map(String::from)
        .collect()
}

#[test]
fn every_line_written_is_stored_once_across_rotations_and_kills() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = dir.path().join("pool.log");
    common::gen_file(&pool, 4000, 21);
    let mut lines = unique_lines(&pool);
    let tail = lines.split_off(lines.len() - 100);
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("logs dir");
    let live = logs.join("audit.log");
    let lake = dir.path().join("lake");
    let listen = format!("127.0.0.1:{}", free_port());

    let writer = {
        let (logs, lines) = (logs.clone(), lines.clone());
        std::thread::spawn(move || write_and_rotate(&logs, &lines, 7))
    };
    // The follower starts late: its first sweep reads the copies rotated before it.
    std::thread::sleep(Duration::from_millis(700));
    let mut rng = Rng(99);
    let mut child = follower(&lake, &live, &listen);
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(400 + rng.below(600)));
        child.0.kill().expect("kill -9");
        child.0.wait().expect("wait");
        // Down for a while: rotations may happen meanwhile.
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        child = follower(&lake, &live, &listen);
    }
    let rotations = writer.join().expect("writer");
    assert!(
        rotations >= 4,
        "only {rotations} rotations: the test must rotate"
    );

    // Caught up, so following the file: a last rotation it sees, then lines in the new file.
    wait_for_rows(&lake, lines.len() as u64, Duration::from_secs(90));
    let mut f = rotate(&logs, 99, false);
    for l in &tail {
        writeln!(f, "{l}").expect("write");
    }
    drop(f);
    lines.extend(tail);
    wait_for_rows(&lake, lines.len() as u64, Duration::from_secs(90));

    let metrics = http_get(&format!("http://{listen}/metrics"));
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} not in {metrics}"))
    };
    assert!(
        value("auditlake_follow_rotations_total") >= 1.0,
        "{metrics}"
    );
    assert!(
        value("auditlake_parquet_rows_committed_total") >= 100.0,
        "{metrics}"
    );
    assert!(
        metrics.contains("auditlake_follow_unread_bytes{path="),
        "{metrics}"
    );
    assert!(http_get(&format!("http://{listen}/readyz")).contains("200 OK"));

    signal(&child.0, "-TERM");
    let status = child.0.wait().expect("wait");
    assert!(
        status.success(),
        "ingest --follow exited with {status} after SIGTERM"
    );

    // The same lines ingested once, from one file.
    let all = dir.path().join("all.log");
    std::fs::write(&all, lines.join("\n") + "\n").expect("all.log");
    let reference = dir.path().join("reference");
    common::ingest(&reference, &["--cluster", "prod"], &[all.as_path()]);
    assert_eq!(count(&lake), count(&reference));
    assert_eq!(contents(&lake), contents(&reference));
    let rejected = |l: &PathBuf| std::fs::read_dir(l.join("_rejected")).map_or(0, |d| d.count());
    assert_eq!(rejected(&lake), 0, "a whole line was dead-lettered");
}

/// A restart after SIGTERM reads nothing twice, and a file truncated in place (copytruncate)
/// starts a new source from its new first line.
#[test]
fn a_restart_and_a_copytruncate_store_nothing_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = dir.path().join("pool.log");
    common::gen_file(&pool, 400, 5);
    let lines = unique_lines(&pool);
    assert!(lines.len() >= 300);
    let lines = &lines[..300];
    let live = dir.path().join("audit.log");
    let lake = dir.path().join("lake");
    let listen = format!("127.0.0.1:{}", free_port());
    std::fs::write(&live, lines[..100].join("\n") + "\n").expect("write");
    let mut child = follower(&lake, &live, &listen);
    wait_for_rows(&lake, 100, Duration::from_secs(60));
    signal(&child.0, "-TERM");
    assert!(child.0.wait().expect("wait").success());

    // Written while it was down, then read after the restart (once).
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&live)
        .expect("append");
    writeln!(f, "{}", lines[100..200].join("\n")).expect("write");
    drop(f);
    let mut child = follower(&lake, &live, &listen);
    wait_for_rows(&lake, 200, Duration::from_secs(60));

    // copytruncate: the copy is taken, the file emptied in place and written again.
    std::fs::copy(&live, dir.path().join("audit.log.1")).expect("copy");
    std::fs::write(&live, lines[200..].join("\n") + "\n").expect("truncate and write");
    wait_for_rows(&lake, 300, Duration::from_secs(60));
    signal(&child.0, "-TERM");
    assert!(child.0.wait().expect("wait").success());
    let all = dir.path().join("all.log");
    std::fs::write(&all, lines.join("\n") + "\n").expect("all.log");
    let reference = dir.path().join("reference");
    common::ingest(&reference, &["--cluster", "prod"], &[all.as_path()]);
    assert_eq!(contents(&lake), contents(&reference));
}

#[test]
fn follow_refuses_what_it_cannot_follow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake").display().to_string();
    fails_with(
        &["ingest", "--lake", &lake, "--follow", "-"],
        "--follow reads files, not standard input",
    );
    let d = dir.path().display().to_string();
    fails_with(
        &["ingest", "--lake", &lake, "--follow", &d],
        "--follow takes the live log file in it",
    );
    let f = dir.path().join("a.log");
    std::fs::write(&f, "{}\n").expect("write");
    let gz = dir.path().join("a.log.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(b"{}\n").expect("gz");
    std::fs::write(&gz, enc.finish().expect("gz")).expect("write gz");
    fails_with(
        &[
            "ingest",
            "--lake",
            &lake,
            "--follow",
            "--metrics-listen",
            "127.0.0.1:0",
            &gz.display().to_string(),
        ],
        "is a finished file and not a live log",
    );
    fails_with(
        &[
            "ingest",
            "--lake",
            &lake,
            "--compact-every",
            "1h",
            &f.display().to_string(),
        ],
        "--compact-every and --retain run in the background of --follow",
    );
}
