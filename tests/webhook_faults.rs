//! The failure paths of `auditlake serve` (issue 19): a corrupt or full
//! write-ahead log, hostile bodies (bytes that are not UTF-8, NULs, gzip
//! bombs) and slow clients. Real server processes, real files, loopback
//! only, bounded in time and count.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;
use common::serve::*;
use common::*;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Byte ranges of the record frames of one log segment (`len u32 | crc
/// u32 | payload`, see src/buffer/wal.rs).
fn frames(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = vec![];
    let mut o = 0;
    while o + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes")) as usize;
        out.push(o..o + 8 + len);
        o += 8 + len;
    }
    out
}

fn segments(wal: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(wal)
        .expect("wal dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

/// §1: flip one bit in one acknowledged record of a stopped server's log
/// (in a single segment, and in the first of several): only that record
/// is lost, it is quarantined, and a second start has nothing to repair.
/// Before, every later record (and every later segment) was discarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_log_record_costs_only_itself() {
    for (case, extra) in [
        ("one", vec![]),
        ("several", vec!["--wal-max-bytes", "400000"]),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = pki(dir.path());
        let lake = dir.path().join("lake");
        // Commits fail, so every batch stays in the log.
        let blocker = block_partition(&lake);
        let server = Server::start(&lake, &pki, &extra);
        let c = client(&pki, Some(&pki.client));
        let ids: Vec<String> = (0..200).map(|i| format!("{case}-{i:03}")).collect();
        for id in &ids {
            let r = post(&c, &server.url, event_list(std::slice::from_ref(id)))
                .await
                .expect("post");
            assert_eq!(r.status(), 200, "{case}");
        }
        server.kill9();
        let segs = segments(&lake.join("_wal"));
        assert_eq!(segs.len() > 1, case == "several", "{segs:?}");
        // The victim: record 100 of one segment, or one in the first of
        // several.
        let mut bytes = std::fs::read(&segs[0]).expect("read");
        let fr = frames(&bytes);
        let victim = if case == "one" { 99 } else { fr.len() / 2 };
        bytes[fr[victim].start + 40] ^= 0x04;
        std::fs::write(&segs[0], &bytes).expect("write");
        std::fs::remove_file(&blocker).expect("unblock");
        for _ in 0..2 {
            let server = Server::start(&lake, &pki, &extra);
            server.sigterm();
        }
        let stored = stored_ids(&lake);
        let unique: HashSet<&String> = stored.iter().collect();
        assert_eq!(unique.len(), stored.len(), "{case}: duplicates");
        let want: HashSet<&String> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != victim)
            .map(|(_, id)| id)
            .collect();
        assert_eq!(unique, want, "{case}");
        let quarantined = std::fs::read_dir(lake.join("_wal/quarantine"))
            .expect("quarantine")
            .count();
        assert_eq!(quarantined, 1, "{case}");
    }
}

/// A small filesystem of its own (tmpfs), unmounted on drop.
struct Volume {
    dir: tempfile::TempDir,
}

impl Volume {
    fn mount(bytes: u64) -> Volume {
        let dir = tempfile::tempdir().expect("tempdir");
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}")])
            .arg("tmpfs")
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(
            st.success(),
            "mounting a tmpfs needs root (CI runs as root)"
        );
        Volume { dir }
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// §9: the log alone on a 4 MB volume. Once the disk is full of committed
/// records the active segment is let go, so posting goes on; before, the
/// server stayed at 503 for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_on_a_small_volume_frees_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki(dir.path());
    let lake = dir.path().join("lake");
    let vol = Volume::mount(4 << 20);
    let wal = vol.dir.path().join("wal");
    let wal_s = wal.display().to_string();
    let server = Server::start(&lake, &pki, &["--wal", &wal_s, "--flush-seconds", "0.1"]);
    let c = client(&pki, Some(&pki.client));
    let mut acked = vec![];
    let mut saw_503 = 0;
    // 12 MB through a 4 MB volume: 400 batches of ~30 KB.
    for b in 0..400 {
        let ids: Vec<String> = (0..40).map(|i| format!("vol-b{b}-i{i}")).collect();
        let mut ok = false;
        for _ in 0..50 {
            let r = post(&c, &server.url, event_list(&ids)).await.expect("post");
            match r.status().as_u16() {
                200 => {
                    ok = true;
                    break;
                }
                503 => {
                    saw_503 += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => panic!("unexpected {other}"),
            }
        }
        assert!(ok, "batch {b}: still 503 after 5 s ({saw_503} 503s so far)");
        acked.extend(ids);
    }
    server.sigterm();
    let stored: HashSet<String> = stored_ids(&lake).into_iter().collect();
    assert_eq!(stored, acked.into_iter().collect::<HashSet<_>>());
    drop(vol);
}

/// §7 and §11: a batch with one item holding a byte that is not UTF-8 and
/// one holding a raw NUL keeps its good items; each bad item's dead letter
/// has its index, offset and exact original bytes. A gzip body of NULs
/// leaves a small dead letter (before: 91 KB became 566 MB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_items_cost_only_themselves_and_dead_letters_stay_small() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki(dir.path());
    let lake = dir.path().join("lake");
    let server = Server::start(&lake, &pki, &[]);
    let c = client(&pki, Some(&pki.client));
    let ids: Vec<String> = ["u-0", "u-1", "u-2", "u-3"].map(String::from).to_vec();
    let mut body = event_list(&ids).into_bytes();
    // Item 1's username gets an invalid byte, item 3's a raw NUL.
    let find = |b: &[u8], pat: &str, nth: usize| {
        b.windows(pat.len())
            .enumerate()
            .filter(|(_, w)| *w == pat.as_bytes())
            .nth(nth)
            .map(|(i, _)| i)
            .expect("pattern")
    };
    let (a, n) = (
        find(&body, "alice@example.com", 1),
        find(&body, "alice@example.com", 3),
    );
    body[a] = 0xff;
    body[n] = 0;
    let r = c
        .post(format!("{}/audit", server.url))
        .header("Content-Type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    // 12 MiB of NULs, gzipped to a few KB.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![0u8; 12 << 20]).expect("gz");
    let bomb = enc.finish().expect("gz");
    let r = c
        .post(format!("{}/audit", server.url))
        .header("Content-Encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    server.sigterm();
    let mut stored = stored_ids(&lake);
    stored.sort();
    assert_eq!(stored, ["u-0", "u-2"]);
    let dl = dead_letters(&lake);
    assert_eq!(dl.len(), 3, "{dl:?}");
    for (item, at) in [(1u64, a), (3, n)] {
        let d = dl
            .iter()
            .find(|d| d["item"] == item)
            .unwrap_or_else(|| panic!("no dead letter for item {item}: {dl:?}"));
        let offset = d["offset"].as_u64().expect("offset") as usize;
        let length = d["length"].as_u64().expect("length") as usize;
        let original = match d["base64"].as_str() {
            Some(b) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .expect("base64"),
            None => d["text"].as_str().expect("text").as_bytes().to_vec(),
        };
        assert_eq!(original, body[offset..offset + length], "item {item}");
        assert!((offset..offset + length).contains(&at));
    }
    let big = dl
        .iter()
        .find(|d| d["item"].is_null())
        .expect("the NUL body");
    assert_eq!(big["length"], 12 << 20);
    assert_eq!(big["truncated"], true);
    assert!(big["xxh3"].is_string());
    let on_disk: u64 = std::fs::read_dir(lake.join("_rejected"))
        .expect("dir")
        .flatten()
        .map(|e| e.metadata().expect("meta").len())
        .sum();
    assert!(on_disk < 1 << 20, "dead letters take {on_disk} bytes");
}

/// §10: gzip bodies that inflate past --max-inflated-body get 413, many at
/// once do not stall the server (its health check answers meanwhile), and
/// a body within the limit is still stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gzip_bombs_get_413_and_do_not_stall_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki(dir.path());
    let lake = dir.path().join("lake");
    let server = Server::start(
        &lake,
        &pki,
        &[
            "--max-body",
            "12582912",
            "--max-inflated-body",
            "8000000",
            "--max-inflight-bytes",
            "64000000",
        ],
    );
    let c = client(&pki, Some(&pki.client));
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![b' '; 90 << 20]).expect("gz");
    let bomb = enc.finish().expect("gz");
    let mut tasks = vec![];
    for _ in 0..32 {
        let (c, url, bomb) = (c.clone(), server.url.clone(), bomb.clone());
        tasks.push(tokio::spawn(async move {
            c.post(format!("{url}/audit"))
                .header("Content-Encoding", "gzip")
                .body(bomb)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    let health = c
        .get(format!("{}/healthz", server.url))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("healthz while bombs inflate");
    assert_eq!(health.status(), 200);
    for t in tasks {
        let code = t.await.expect("join").expect("post");
        assert!(code == 413 || code == 503, "a bomb got {code}");
    }
    let ids = vec!["after-bombs".to_string()];
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(event_list(&ids).as_bytes()).expect("gz");
    let r = c
        .post(format!("{}/audit", server.url))
        .header("Content-Encoding", "gzip")
        .body(enc.finish().expect("gz"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let metrics = metrics_text(&c, &server.url).await;
    assert!(
        metrics.contains("auditlake_http_requests_total{code=\"413\"}"),
        "{metrics}"
    );
    server.sigterm();
    assert_eq!(stored_ids(&lake), ids);
}

/// Open a raw HTTP request declaring `len` body bytes, with a token.
fn slow_request(addr: &str, token: &str, len: usize) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "POST /audit HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n["
    )
    .expect("headers");
    s
}

/// §12: a body that trickles in gets 408 after the grace period (before,
/// a connection that never sent its body stayed open indefinitely), and
/// slow connections of one client cannot take the budget from another:
/// 21 of them at 1 byte/s, and every batch of the other client is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_time_out_and_cannot_starve_other_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A 1 MiB body limit in an 8 MiB budget: a client's share is 2 MiB.
    let start = |lake: &Path, extra: &[&str]| {
        let mut args = vec!["--max-body", "1048576", "--max-inflight-bytes", "8388608"];
        args.extend(extra);
        let server = Server::start_plain(lake, &args);
        let addr = server
            .url
            .trim_start_matches("http://")
            .replace("localhost", "127.0.0.1");
        (server, addr)
    };
    let lake = dir.path().join("lake");
    let (server, addr) = start(&lake, &["--body-grace", "1", "--min-body-rate", "1000"]);
    // One byte a second: 408 within a few seconds, and the socket closes.
    let mut s = slow_request(&addr, TOKEN_A, 5000);
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let started = Instant::now();
    let mut answer = String::new();
    let mut byte = [0u8; 1];
    loop {
        if s.write_all(b" ").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    let _ = s.read(&mut byte);
    assert!(started.elapsed() < Duration::from_secs(25));
    server.sigterm();

    // Fairness: a long grace, so only the budget protects client B.
    let lake = dir.path().join("lake2");
    let (server, addr) = start(&lake, &["--body-grace", "60"]);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let c = reqwest::Client::new();
    let acked = starved_or_not(&c, &server.url, &addr, "fair").await;
    server.sigterm();
    let stored: HashSet<String> = stored_ids(&lake).into_iter().collect();
    assert_eq!(stored, acked.into_iter().collect::<HashSet<_>>());

    // The same with bodies that stream to disk (over --spill-body): each slow one holds a
    // file and its buffers' share of the budget, so they still cannot starve client B, and
    // what they left unfinished is gone from the log.
    let lake = dir.path().join("lake3");
    let (server, addr) = start(&lake, &["--body-grace", "60", "--spill-body", "65536"]);
    let acked = starved_or_not(&c, &server.url, &addr, "spill").await;
    server.sigterm();
    let stored: HashSet<String> = stored_ids(&lake).into_iter().collect();
    assert_eq!(stored, acked.into_iter().collect::<HashSet<_>>());
    let left = spilled_left(&lake);
    assert!(left.is_empty(), "{left:?} left in the log");
}

/// 21 slow connections of client A declaring 1 MiB bodies while client B posts 24 batches,
/// each of which must be answered 200; returns B's audit ids. The slow ones are closed after.
async fn starved_or_not(c: &reqwest::Client, url: &str, addr: &str, name: &str) -> Vec<String> {
    let slow: Vec<_> = (0..21)
        .map(|_| slow_request(addr, TOKEN_A, 1 << 20))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut acked = vec![];
    for b in 0..24 {
        let ids: Vec<String> = (0..20).map(|i| format!("{name}-b{b}-i{i}")).collect();
        let r = c
            .post(format!("{url}/audit"))
            .bearer_auth(TOKEN)
            .body(event_list(&ids))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200, "batch {b} of the other client");
        acked.extend(ids);
    }
    drop(slow);
    // The server sees the slow connections close before it is stopped.
    tokio::time::sleep(Duration::from_millis(300)).await;
    acked
}
