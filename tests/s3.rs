//! The lake on an S3-compatible object store: a real server (SeaweedFS on loopback,
//! tests/s3.sh), the real binary. The server's refusal of conditional overwrites, one at a time
//! and under a race, is asserted first, since concurrent commits depend on it; then ingest and query against a local lake
//! of the same input, tamper evidence, `kill -9` during ingest, three writers on three
//! "machines" (one lake cache each) with one killed, and compaction, time travel, retention
//! and vacuum on the store.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;
use common::s3::S3;
use common::*;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, UpdateVersion};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The stored Parquet objects of `bucket` under `prefix`, as lake-relative keys.
fn stored_parquet(s3: &S3, bucket: &str, prefix: &str) -> Vec<String> {
    s3.keys(bucket, prefix)
        .into_iter()
        .filter(|k| k.ends_with(".parquet"))
        .map(|k| k[prefix.len() + 1..].to_string())
        .collect()
}

fn csv(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The server refuses `If-None-Match: *` on an existing key and a wrong `If-Match` (412), and
/// keeps the first object: the lake's put-if-absent commits are only safe on such a server.
/// Also: a file larger than one upload part goes up in parts and comes back byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_conditional_overwrites_and_takes_multipart_uploads() {
    let s3 = S3::start();
    s3.bucket("cond");
    let store = s3.store("cond");
    let key = Key::from("_delta_log/00000000000000000000.json");
    store
        .put_opts(&key, "first".into(), PutMode::Create.into())
        .await
        .expect("first put");
    let again = store
        .put_opts(&key, "second".into(), PutMode::Create.into())
        .await;
    assert!(
        matches!(again, Err(object_store::Error::AlreadyExists { .. })),
        "If-None-Match: * on an existing key must be refused: {again:?}"
    );
    let wrong = store
        .put_opts(
            &key,
            "third".into(),
            PutMode::Update(UpdateVersion {
                e_tag: Some("\"0123456789abcdef0123456789abcdef\"".into()),
                version: None,
            })
            .into(),
        )
        .await;
    assert!(
        matches!(wrong, Err(object_store::Error::Precondition { .. })),
        "a wrong If-Match must be refused: {wrong:?}"
    );
    let kept = store
        .get(&key)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(&kept[..], b"first");
    // And under a race: of many writers putting one new key at once, exactly one wins.
    for round in 0..5 {
        let key = Key::from(format!("_delta_log/race-{round}.json"));
        let puts = (0..8).map(|i| {
            let (store, key) = (store.clone(), key.clone());
            tokio::spawn(async move {
                store
                    .put_opts(&key, format!("writer {i}").into(), PutMode::Create.into())
                    .await
                    .is_ok()
            })
        });
        let mut wins = 0;
        for p in puts.collect::<Vec<_>>() {
            wins += p.await.expect("join") as usize;
        }
        assert_eq!(
            wins, 1,
            "round {round}: {wins} writers created the same key"
        );
    }

    // Multipart, through auditlake's own upload and download.
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = vec![
        ("endpoint".to_string(), s3.endpoint()),
        ("allow_http".to_string(), "true".to_string()),
        ("region".to_string(), "us-east-1".to_string()),
        ("access_key_id".to_string(), "auditlake".to_string()),
        (
            "secret_access_key".to_string(),
            "auditlake-secret".to_string(),
        ),
    ];
    auditlake::sinks::lake::store::configure(opts, Some(dir.path().join("cache")));
    let big = dir.path().join("big.bin");
    let bytes: Vec<u8> = (0..(auditlake::sinks::lake::store::PART * 2 + 12345))
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    std::fs::write(&big, &bytes).expect("write");
    let want = auditlake::sinks::lake::hash_file(&big).expect("hash");
    let (back, got) = tokio::task::spawn_blocking(move || {
        let remote = auditlake::sinks::lake::store::remote(Path::new("s3://cond/lake"))
            .expect("remote")
            .expect("is remote");
        remote
            .upload(&big, "dt=2026-01-01/hour=00/big.parquet")
            .expect("upload");
        let back = big.with_extension("back");
        let got = remote
            .download("dt=2026-01-01/hour=00/big.parquet", &back)
            .expect("download")
            .expect("exists");
        (back, got)
    })
    .await
    .expect("join");
    assert_eq!(got.0, bytes.len() as u64);
    assert_eq!(got.1, want);
    assert_eq!(std::fs::read(back).expect("read"), bytes);
}

/// A lake on the store answers exactly as a local lake of the same input; its history names
/// the writer; `lake verify` passes, then names a changed, a deleted and a stray object, and a
/// reader with a fresh cache refuses the changed file.
#[test]
fn ingest_to_s3_answers_like_a_local_lake_and_tampering_is_named() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let log = dir.path().join("audit.log");
    gen_file(&log, 20_000, 5);
    let local = dir.path().join("local");
    ingest(&local, &["--segment-rows", "4000"], &[&log]);
    let lake = format!("{}/audit", s3.bucket("lake"));
    let logs = log.display().to_string();
    s3.run(
        &cache,
        &[
            "ingest",
            "--lake",
            &lake,
            "--no-progress",
            "--segment-rows",
            "4000",
            &logs,
        ],
    );
    assert!(
        !stored_parquet(&s3, "lake", "audit").is_empty(),
        "data files are objects of the bucket"
    );
    assert!(s3
        .keys("lake", "audit/_delta_log")
        .contains(&"audit/_delta_log/00000000000000000000.json".to_string()));
    for q in [
        "SELECT count(*) AS n FROM audit",
        "SELECT actor_username, verb, count(*) AS n FROM requests GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT count(*) AS n, count(DISTINCT audit_id) AS ids FROM audit_events",
    ] {
        let here = query_text(&local, &[q]);
        let there = csv(&s3.run(&cache, &["query", "--lake", &lake, "--format", "csv", q]));
        assert_eq!(here, there, "{q}");
    }
    let named = |l: &str| {
        csv(&s3.run(
            &cache,
            &[
                "query",
                "--lake",
                l,
                "--format",
                "csv",
                "--named",
                "who-acted-as-whom",
            ],
        ))
    };
    assert_eq!(named(&local.display().to_string()), named(&lake));
    assert_eq!(
        s3.scalar(&cache, &lake, "SELECT count(*) FROM audit"),
        "20000"
    );
    // A prefix nothing was written to is an error, not an empty answer; a misspelt store
    // option is refused, naming it.
    for (args, needle) in [
        (
            vec![
                "query",
                "--lake",
                "s3://lake/nothing-here",
                "SELECT count(*) FROM audit",
            ],
            "does not exist",
        ),
        (
            vec![
                "query",
                "--lake",
                &lake,
                "--lake-option",
                "endpont=http://x",
                "SELECT 1",
            ],
            "unknown S3 option `endpont`",
        ),
    ] {
        let out = s3.command(&cache, &args).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(needle),
            "{args:?}: {err}"
        );
    }

    let history = csv(&s3.run(&cache, &["lake", "history", &lake]));
    assert!(history.lines().count() >= 3, "{history}");
    assert!(history.contains("ingest@"), "{history}");
    let verified = csv(&s3.run(&cache, &["lake", "verify", &lake]));
    assert!(verified.starts_with("head\t"), "{verified}");

    // Someone with write access to the bucket changes one object, deletes another and adds one.
    let files = stored_parquet(&s3, "lake", "audit");
    assert!(files.len() >= 3, "{files:?}");
    let changed = &files[0];
    let deleted = &files[1];
    let mut bytes = s3.get("lake", &format!("audit/{changed}"));
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    s3.put("lake", &format!("audit/{changed}"), bytes);
    s3.delete("lake", &format!("audit/{deleted}"));
    let stray = "dt=2026-01-01/hour=00/planted.parquet";
    s3.put(
        "lake",
        &format!("audit/{stray}"),
        b"PAR1 not really".to_vec(),
    );

    let out = s3
        .command(&cache, &["lake", "verify", &lake])
        .output()
        .expect("verify");
    assert!(!out.status.success(), "verify must fail");
    let report = csv(&out);
    for (what, name) in [
        ("changed", changed),
        ("missing", deleted),
        ("stray", &stray.to_string()),
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.contains(what) && l.contains(name.as_str())),
            "`{what}` {name} not reported:\n{report}"
        );
    }
    // A reader that has not cached the changed file refuses it, naming it.
    let fresh = dir.path().join("fresh-cache");
    let out = s3
        .command(
            &fresh,
            &["query", "--lake", &lake, "SELECT count(*) FROM audit"],
        )
        .output()
        .expect("query");
    assert!(
        !out.status.success(),
        "a query over a changed file must fail"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        (err.contains(changed.as_str()) && err.contains("changed after it was written"))
            || (err.contains(deleted.as_str()) && err.contains("does not have it")),
        "{err}"
    );
}

/// The Parquet files under `dir` (a reader's lake cache) whose path names day `dt`.
fn cached_files_of_day(dir: &Path, dt: &str) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet")
                && p.to_string_lossy().contains(&format!("dt={dt}/"))
            {
                n += 1;
            }
        }
    }
    n
}

/// With --since/--until, a query of a lake on the store fetches only the hour partitions the
/// window can hold and answers as a local lake does; a named query that reads the history
/// before the window fetches the history too; copies an earlier query left in the cache are not
/// read by a query whose window excludes them.
#[test]
fn a_window_fetches_only_the_partitions_it_can_read() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.log");
    gen_file(&log, 3000, 9);
    // The fixture holds requests of 2025-01-01; the generator's start on 2026-11-20.
    let old = fixture("identities.jsonl");
    let local = dir.path().join("local");
    ingest(&local, &[], &[&old, &log]);
    let lake = format!("{}/audit", s3.bucket("window"));
    let (olds, logs) = (old.display().to_string(), log.display().to_string());
    s3.run(
        &dir.path().join("writer"),
        &["ingest", "--lake", &lake, "--no-progress", &olds, &logs],
    );
    let cache = dir.path().join("reader");
    let window = [
        "--since",
        "2026-11-20T00:00:00Z",
        "--until",
        "2026-11-21T00:00:00Z",
    ];
    let on_store = |args: &[&str]| {
        let mut all = vec!["query", "--lake", lake.as_str(), "--format", "csv"];
        all.extend_from_slice(args);
        csv(&s3.run(&cache, &all))
    };
    for q in [
        "SELECT count(*) AS n FROM audit",
        "SELECT actor_username, count(*) AS n FROM requests GROUP BY 1 ORDER BY 1",
    ] {
        let args: Vec<&str> = window.iter().copied().chain([q]).collect();
        assert_eq!(query_text(&local, &args), on_store(&args), "{q}");
    }
    assert!(cached_files_of_day(&cache, "2026-11-20") > 0);
    assert_eq!(
        cached_files_of_day(&cache, "2025-01-01"),
        0,
        "a partition outside the window was fetched"
    );
    // first-seen-actors reads everything before --until.
    let args: Vec<&str> = window
        .iter()
        .copied()
        .chain(["--named", "first-seen-actors"])
        .collect();
    assert_eq!(query_text(&local, &args), on_store(&args));
    assert!(cached_files_of_day(&cache, "2025-01-01") > 0);
    // The 2025 copies are in the cache now; a query of the window does not read them.
    let q = "SELECT count(*) AS n FROM lake.audit";
    let fetched: Vec<&str> = window.iter().copied().chain([q]).collect();
    assert_eq!(
        on_store(&fetched),
        query_text(
            &local,
            &[
                window[0],
                window[1],
                window[2],
                window[3],
                "SELECT count(*) AS n FROM audit"
            ]
        ),
        "lake.audit holds the fetched partitions only"
    );
    // Time travel with a window fetches the window of that version, and finds nothing missing.
    let past = dir.path().join("past-reader");
    let mut args = vec!["query", "--lake", lake.as_str(), "--as-of", "0"];
    args.extend_from_slice(&window);
    args.push("SELECT count(*) FROM audit");
    s3.run(&past, &args);
    assert_eq!(cached_files_of_day(&past, "2025-01-01"), 0);
    // Without a window, everything is fetched and answered.
    assert_eq!(
        on_store(&["SELECT count(*) AS n FROM audit"]),
        query_text(&local, &["SELECT count(*) AS n FROM audit"])
    );
}

/// `kill -9` of an ingest into the store at several moments, then a full run: every line is
/// stored exactly once, no object outside the table is left, and `lake verify` passes.
#[test]
fn kill_9_during_ingest_to_s3_never_loses_or_duplicates_rows() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let log = dir.path().join("audit.log");
    let n = 40_000u64;
    gen_file(&log, n, 12);
    let lake = format!("{}/crash", s3.bucket("lake"));
    let logs = log.display().to_string();
    let args = [
        "ingest",
        "--lake",
        &lake,
        "--no-progress",
        "--segment-rows",
        "2000",
        "--row-group-rows",
        "1000",
        &logs,
    ];
    let mut killed = 0;
    for delay_ms in [900u64, 1500, 1200, 2000] {
        let mut child = s3
            .command(&cache, &args)
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
    assert!(killed > 0, "the ingest always finished before the kill");
    s3.run(&cache, &args);
    assert_eq!(
        s3.scalar(&cache, &lake, "SELECT count(*) FROM audit"),
        n.to_string()
    );
    assert_eq!(
        s3.scalar(&cache, &lake, "SELECT count(DISTINCT source) FROM audit"),
        n.to_string()
    );
    // The restart deleted the uploads of the interrupted commits: an object the log does not
    // name would be a `stray` finding, and fail the verify.
    let out = s3.run(&cache, &["lake", "verify", &lake]);
    assert!(csv(&out).starts_with("head\t"), "{}", csv(&out));
}

/// Three writers on three machines (a lake cache each, so no lock is shared) commit to one
/// lake on the store at once; one is killed mid-run and run again: every line is stored
/// exactly once and the log is a clean chain.
#[test]
fn three_writers_on_three_machines_one_killed() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = format!("{}/shared", s3.bucket("lake"));
    let inputs: Vec<PathBuf> = (0..3)
        .map(|i| {
            let p = dir.path().join(format!("audit-{i}.log"));
            gen_file(&p, 15_000, 20 + i);
            p
        })
        .collect();
    let caches: Vec<PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("machine-{i}")))
        .collect();
    let spawn = |i: usize| {
        let f = inputs[i].display().to_string();
        s3.command(
            &caches[i],
            &[
                "ingest",
                "--lake",
                &lake,
                "--no-progress",
                "--segment-rows",
                "1500",
                &f,
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
    };
    let mut children: Vec<_> = (0..3).map(spawn).collect();
    std::thread::sleep(Duration::from_millis(1500));
    let was_running = children[1].try_wait().expect("try_wait").is_none();
    if was_running {
        children[1].kill().expect("SIGKILL");
    }
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().expect("wait");
        if i != 1 {
            assert!(
                out.status.success(),
                "writer {i}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // The killed one, again, on its machine.
    let f = inputs[1].display().to_string();
    s3.run(
        &caches[1],
        &[
            "ingest",
            "--lake",
            &lake,
            "--no-progress",
            "--segment-rows",
            "1500",
            &f,
        ],
    );
    let reader = dir.path().join("reader");
    assert_eq!(
        s3.scalar(&reader, &lake, "SELECT count(*) FROM audit"),
        "45000"
    );
    assert_eq!(
        s3.scalar(&reader, &lake, "SELECT count(DISTINCT source) FROM audit"),
        "45000"
    );
    let out = s3.run(&reader, &["lake", "verify", &lake]);
    assert!(csv(&out).starts_with("head\t"), "{}", csv(&out));
    let history = csv(&s3.run(&reader, &["lake", "history", &lake]));
    let writers: std::collections::HashSet<&str> = history
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').nth(3))
        .filter(|w| w.starts_with("ingest@"))
        .collect();
    // The two that ran through and the re-run; the killed one appears too only if it
    // committed before the kill, which depends on timing.
    assert!(writers.len() >= 3, "one writer per process: {writers:?}");
}

/// Compaction, time travel, retention and vacuum on the store: answers unchanged by
/// compaction, the version before retention still answers, vacuum deletes exactly the objects
/// out of the table, and the lake verifies after each step.
#[test]
fn compaction_time_travel_retention_and_vacuum_on_s3() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let log = dir.path().join("audit.log");
    gen_file(&log, 12_000, 8);
    let lake = format!("{}/maint", s3.bucket("lake"));
    let logs = log.display().to_string();
    s3.run(
        &cache,
        &[
            "ingest",
            "--lake",
            &lake,
            "--no-progress",
            "--segment-rows",
            "1000",
            &logs,
        ],
    );
    let q = "SELECT actor_username, verb, count(*) AS n FROM requests GROUP BY 1, 2 ORDER BY 1, 2";
    let before = csv(&s3.run(&cache, &["query", "--lake", &lake, "--format", "csv", q]));
    let files_before = stored_parquet(&s3, "lake", "maint").len();
    s3.run(&cache, &["compact", &lake]);
    let after = csv(&s3.run(&cache, &["query", "--lake", &lake, "--format", "csv", q]));
    assert_eq!(before, after, "compaction changes no answer");
    let hours = s3.scalar(
        &cache,
        &lake,
        "SELECT count(*) FROM (SELECT DISTINCT dt, hour FROM audit)",
    );
    let out = s3.run(&cache, &["lake", "verify", &lake]);
    assert!(csv(&out).starts_with("head\t"), "{}", csv(&out));

    // Vacuum now: the replaced objects go, the live ones (one per hour) stay.
    s3.run(&cache, &["lake", "vacuum", &lake, "--min-age", "0s"]);
    let left = stored_parquet(&s3, "lake", "maint");
    assert!(
        left.len() < files_before,
        "{} of {files_before}",
        left.len()
    );
    assert_eq!(
        left.len().to_string(),
        hours,
        "one file per hour after vacuum: {left:?}"
    );

    // Retention of everything (the generated events are in the past): the table empties,
    // the version before it still answers until vacuum deletes its files.
    let version: u64 = csv(&s3.run(&cache, &["lake", "history", &lake]))
        .lines()
        .last()
        .and_then(|l| l.split('\t').next())
        .and_then(|v| v.parse().ok())
        .expect("a version");
    s3.run(
        &cache,
        &["retention", &lake, "--keep", "1h", "--min-age", "1h"],
    );
    assert_eq!(s3.scalar(&cache, &lake, "SELECT count(*) FROM audit"), "0");
    let then = csv(&s3.run(
        &cache,
        &[
            "query",
            "--lake",
            &lake,
            "--format",
            "csv",
            "--as-of",
            &version.to_string(),
            q,
        ],
    ));
    assert_eq!(then, before, "time travel to the version before retention");
    s3.run(&cache, &["lake", "vacuum", &lake, "--min-age", "0s"]);
    assert!(stored_parquet(&s3, "lake", "maint").is_empty());
    let out = s3.run(&cache, &["lake", "verify", &lake]);
    assert!(csv(&out).starts_with("head\t"), "{}", csv(&out));
}

/// POST `body` to the webhook at `addr` with bearer `token`; the status code.
fn post(addr: &str, token: &str, body: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST /audit HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The webhook receiver writes its lake to the store: every acknowledged event is in the
/// table after a `kill -9` and a restart (the write-ahead log is local; the lake is not).
#[test]
fn serve_writes_to_s3_and_a_kill_loses_no_acknowledged_event() {
    use common::serve::{event_list, TOKEN};
    use std::io::BufRead;
    let s3 = S3::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let lake = format!("{}/hook", s3.bucket("lake"));
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{TOKEN} cluster-b\n")).unwrap();
    let wal = dir.path().join("wal");
    let start = || {
        let mut child = s3
            .command(
                &cache,
                &[
                    "serve",
                    "--lake",
                    &lake,
                    "--wal",
                    wal.to_str().unwrap(),
                    "--listen",
                    "127.0.0.1:0",
                    "--insecure-http",
                    "--token-file",
                    tokens.to_str().unwrap(),
                    "--flush-seconds",
                    "0.2",
                ],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        (child, addr)
    };
    let (mut child, addr) = start();
    let mut sent = 0;
    for b in 0..10 {
        let ids: Vec<String> = (0..50).map(|i| format!("hook-{b}-{i}")).collect();
        assert_eq!(post(&addr, TOKEN, &event_list(&ids)), 200, "batch {b}");
        sent += ids.len();
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    let (mut child, _addr) = start();
    // The restart replays the write-ahead log into the lake; give it a few flushes.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let reader = dir.path().join("reader");
    loop {
        let n = s3.scalar(&reader, &lake, "SELECT count(DISTINCT audit_id) FROM audit");
        if n == sent.to_string() || std::time::Instant::now() > deadline {
            assert_eq!(
                n,
                sent.to_string(),
                "every acknowledged event is in the lake"
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    common::signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
    assert_eq!(
        s3.scalar(&reader, &lake, "SELECT count(*) FROM audit"),
        sent.to_string(),
        "nothing stored twice"
    );
}
