//! `auditlake serve` as kube-apiserver sees it: a real server process, real
//! TLS (mTLS and bearer tokens) from a real HTTP client, real kills.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;
use common::serve::*;
use common::*;
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mtls_and_token_clients_store_every_acknowledged_event_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki(dir.path());
    let lake = dir.path().join("lake");
    let server = Server::start(&lake, &pki, &[]);
    let mtls = client(&pki, Some(&pki.client));
    let token = client(&pki, None);
    let mut tasks = Vec::new();
    for t in 0..8 {
        let c = if t % 2 == 0 {
            mtls.clone()
        } else {
            token.clone()
        };
        let url = server.url.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..10 {
                let ids: Vec<String> = (0..40).map(|i| format!("t{t}-b{b}-i{i}")).collect();
                let mut req = c.post(format!("{url}/audit")).body(event_list(&ids));
                if t % 2 == 1 {
                    req = req.bearer_auth(TOKEN);
                }
                let r = req.send().await.expect("post");
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let health = mtls
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    server.sigterm();
    assert_eq!(scalar(&lake, "SELECT COUNT(*) FROM audit"), "3200");
    assert_eq!(
        scalar(&lake, "SELECT COUNT(DISTINCT audit_id) FROM audit"),
        "3200"
    );
    let per_cluster = sql(
        &lake,
        "SELECT cluster, COUNT(*) FROM audit GROUP BY 1 ORDER BY 1",
    );
    assert_eq!(per_cluster[1], vec!["cluster-a", "1600"]);
    assert_eq!(per_cluster[2], vec!["cluster-b", "1600"]);
    // Resolution ran on webhook input too.
    assert_eq!(
        scalar(&lake, "SELECT COUNT(*) FROM audit WHERE resolution = 'proxy' AND actor_username = 'alice@example.com'"),
        "3200"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_what_it_must_and_keeps_what_it_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki(dir.path());
    let lake = dir.path().join("lake");
    let server = Server::start(&lake, &pki, &["--max-body", "20000"]);
    let url = server.url.clone();
    let anon = client(&pki, None);
    let good = client(&pki, Some(&pki.client));
    let body = event_list(&["ok-1".to_string()]);

    let r = post(&anon, &url, body.clone()).await.expect("post");
    assert_eq!(r.status(), 401, "no credentials");
    let r = anon
        .post(format!("{url}/audit"))
        .bearer_auth("wrong-token-wrong-token")
        .body(body.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 401, "wrong token");
    let r = post(&client(&pki, Some(&pki.intruder)), &url, body.clone())
        .await
        .expect("post");
    assert_eq!(r.status(), 403, "certificate not on the allow-list");
    assert!(
        post(&client(&pki, Some(&pki.stranger)), &url, body.clone())
            .await
            .is_err(),
        "wrong CA must fail the handshake"
    );
    let r = good
        .post(format!("{url}/elsewhere"))
        .body(body.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 404, "wrong path");
    let big: Vec<String> = (0..200).map(|i| format!("big-{i}")).collect();
    let r = post(&good, &url, event_list(&big)).await.expect("post");
    assert_eq!(r.status(), 413, "oversize");

    // Accepted: plain, gzip, on "/", malformed JSON, a partially bad list.
    assert_eq!(
        post(&good, &url, body.clone())
            .await
            .expect("post")
            .status(),
        200
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(
        &mut gz,
        event_list(&["gz-1".into(), "gz-2".into()]).as_bytes(),
    )
    .expect("gz");
    let r = good
        .post(format!("{url}/audit"))
        .header("Content-Encoding", "gzip")
        .body(gz.finish().expect("gz"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200, "gzip");
    let r = good
        .post(format!("{url}/"))
        .body(event_list(&["root-1".into()]))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200, "root path");
    assert_eq!(
        post(&good, &url, "{\"kind\":\"EventList\",\"items\":[".into())
            .await
            .expect("post")
            .status(),
        200
    );
    let mixed = format!(
        "{{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"items\":[{},{{\"kind\":0}}]}}",
        event("mixed-good")
    );
    assert_eq!(post(&good, &url, mixed).await.expect("post").status(), 200);

    let ready = good
        .get(format!("{url}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    let metrics = metrics_text(&good, &url).await;
    for want in [
        "auditlake_http_requests_total{code=\"401\"} 2",
        "auditlake_http_requests_total{code=\"413\"} 1",
        "auditlake_webhook_too_large_total 1",
        "auditlake_ack_latency_seconds_count",
    ] {
        assert!(metrics.contains(want), "{want} missing from\n{metrics}");
    }
    server.sigterm();

    let mut ids = stored_ids(&lake);
    ids.sort();
    assert_eq!(ids, vec!["gz-1", "gz-2", "mixed-good", "ok-1", "root-1"]);
    let rejected = dead_letters(&lake);
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert!(
        rejected
            .iter()
            .any(|r| r["reason"].as_str().unwrap_or("").contains("not JSON")),
        "{rejected:?}"
    );
    assert!(
        rejected
            .iter()
            .any(|r| r["item"] == 1 && r["text"] == "{\"kind\":0}"),
        "{rejected:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_log_answers_503_then_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki(dir.path());
    let lake = dir.path().join("lake");
    // A small log budget and a slow flush: the log fills up.
    let server = Server::start(
        &lake,
        &pki,
        &["--wal-max-bytes", "60000", "--flush-seconds", "2"],
    );
    let good = client(&pki, Some(&pki.client));
    let mut acked = Vec::new();
    let mut saw_503 = false;
    for b in 0..40 {
        let ids: Vec<String> = (0..20).map(|i| format!("full-b{b}-i{i}")).collect();
        let r = post(&good, &server.url, event_list(&ids))
            .await
            .expect("post");
        match r.status().as_u16() {
            200 => acked.extend(ids),
            503 => {
                assert_eq!(
                    r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
                    Some("5")
                );
                saw_503 = true;
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(saw_503, "the log never filled up");
    // Once the flush stage commits, space returns by itself.
    let mut recovered = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let ids = vec!["after-full".to_string()];
        if post(&good, &server.url, event_list(&ids))
            .await
            .expect("post")
            .status()
            == 200
        {
            acked.extend(ids);
            recovered = true;
            break;
        }
    }
    assert!(recovered, "still 503 after the flush stage caught up");
    server.sigterm();
    let stored: HashSet<String> = stored_ids(&lake).into_iter().collect();
    let acked: HashSet<String> = acked.into_iter().collect();
    assert_eq!(stored, acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_never_loses_or_duplicates_acknowledged_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki(dir.path());
    let lake = dir.path().join("lake");
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let sent: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut killed = 0;
    // Bounded: 6 rounds, 4 posters each, kill at 150..900 ms.
    for (round, delay_ms) in [300u64, 150, 700, 450, 900, 250].into_iter().enumerate() {
        let server = Server::start(&lake, &pki, &["--flush-seconds", "0.05"]);
        let c = client(&pki, Some(&pki.client));
        let mut tasks = Vec::new();
        for t in 0..4 {
            let (c, url, acked, sent) =
                (c.clone(), server.url.clone(), acked.clone(), sent.clone());
            tasks.push(tokio::spawn(async move {
                for b in 0..10_000 {
                    let ids: Vec<String> = (0..25)
                        .map(|i| format!("r{round}-t{t}-b{b}-i{i}"))
                        .collect();
                    sent.lock().expect("lock").extend(ids.iter().cloned());
                    match post(&c, &url, event_list(&ids)).await {
                        Ok(r) if r.status() == 200 => acked.lock().expect("lock").extend(ids),
                        _ => return,
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        server.kill9();
        killed += 1;
        for t in tasks {
            let _ = t.await;
        }
    }
    // Restart once more and shut down cleanly: replay flushes everything.
    let server = Server::start(&lake, &pki, &[]);
    server.sigterm();
    let acked: HashSet<String> = acked.lock().expect("lock").iter().cloned().collect();
    let sent: HashSet<String> = sent.lock().expect("lock").iter().cloned().collect();
    assert!(
        killed == 6 && acked.len() > 1000,
        "too little traffic to mean anything: {}",
        acked.len()
    );
    let stored = stored_ids(&lake);
    let unique: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), unique.len(), "duplicates stored");
    let lost: Vec<_> = acked.difference(&unique).take(5).collect();
    assert!(lost.is_empty(), "acknowledged events lost, e.g. {lost:?}");
    let invented: Vec<_> = unique.difference(&sent).take(5).collect();
    assert!(invented.is_empty(), "events never sent: {invented:?}");
}

/// Settings `serve` must refuse to start with, and what it says.
#[test]
fn refuses_unsafe_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake").display().to_string();
    for (extra, needle) in [
        (
            &["--listen", "0.0.0.0:0"][..],
            "refusing to accept unauthenticated",
        ),
        (
            &["--listen", "127.0.0.1:0", "--mtls-allow", "apiserver"][..],
            "--mtls-allow names client certificates, which are only checked with --client-ca",
        ),
    ] {
        let mut args = vec!["serve", "--lake", &lake, "--insecure-http"];
        args.extend_from_slice(extra);
        fails_with(&args, needle);
    }
}

#[test]
fn loadgen_speaks_like_the_apiserver() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki(dir.path());
    let lake = dir.path().join("lake");
    let server = Server::start(&lake, &pki, &[]);
    let out = run(&[
        "loadgen",
        "--url",
        &format!("{}/audit", server.url),
        "--ca",
        &pki.ca.display().to_string(),
        "--token",
        TOKEN,
        "--events",
        "4000",
        "--batch",
        "400",
        "--concurrency",
        "4",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("4000 events acknowledged in 10 batches (0 failed)"),
        "{text}"
    );
    server.sigterm();
    assert_eq!(
        scalar(
            &lake,
            "SELECT COUNT(*) FROM audit WHERE cluster = 'cluster-b'"
        ),
        "4000"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn make_certs_script_works_and_certificates_reload_when_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/make-certs.sh");
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    for d in [&one, &two] {
        let st = Command::new("bash")
            .arg(&script)
            .arg(d)
            .stdout(Stdio::null())
            .status()
            .expect("run make-certs.sh");
        assert!(st.success(), "docker/make-certs.sh failed");
    }
    let lake = dir.path().join("lake");
    let mut child = Command::new(bin())
        .args([
            "serve",
            "--lake",
            &lake.display().to_string(),
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--tls-cert")
        .arg(one.join("server.crt"))
        .arg("--tls-key")
        .arg(one.join("server.key"))
        .arg("--client-ca")
        .arg(one.join("ca.crt"))
        .arg("--mtls-allow")
        .arg("apiserver-a=cluster-a")
        .arg("--token-file")
        .arg(one.join("tokens"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("line");
    let url = line
        .trim()
        .trim_start_matches("listening on ")
        .replace("127.0.0.1", "localhost");
    let server = Server { child, url };
    let cert_client = |d: &Path| {
        auditlake::tools::loadgen::https_client(
            &d.join("ca.crt"),
            Some((&d.join("apiserver-a.crt"), &d.join("apiserver-a.key"))),
        )
        .expect("client")
    };
    let body = event_list(&["reload-1".to_string()]);
    assert_eq!(
        post(&cert_client(&one), &server.url, body.clone())
            .await
            .expect("post")
            .status(),
        200
    );
    // Rotate the server certificate in place (as cert-manager does).
    std::fs::copy(two.join("server.crt"), one.join("server.crt")).expect("copy");
    std::fs::copy(two.join("server.key"), one.join("server.key")).expect("copy");
    // A client trusting only the new CA (and the old client CA is still
    // the one verifying clients) gets through once the file is reloaded.
    let token = std::fs::read_to_string(one.join("token")).expect("token");
    let new_trust =
        auditlake::tools::loadgen::https_client(&two.join("ca.crt"), None).expect("client");
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = new_trust
            .post(format!("{}/audit", server.url))
            .bearer_auth(token.trim())
            .body(event_list(&["reload-2".to_string()]))
            .send()
            .await;
        if matches!(r, Ok(ref r) if r.status() == 200) {
            ok = true;
            break;
        }
    }
    assert!(ok, "the replaced certificate was never served");
    server.sigterm();
    let mut ids = stored_ids(&lake);
    ids.sort();
    assert_eq!(ids, vec!["reload-1", "reload-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_parquet_stage_keeps_acknowledged_batches_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki(dir.path());
    let lake = dir.path().join("lake");
    let blocker = block_partition(&lake);
    let server = Server::start(&lake, &pki, &[]);
    let c = client(&pki, Some(&pki.client));
    let ids: Vec<String> = (0..30).map(|i| format!("stuck-{i}")).collect();
    assert_eq!(
        post(&c, &server.url, event_list(&ids))
            .await
            .expect("post")
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        scalar(&lake, "SELECT COUNT(*) FROM audit"),
        "0",
        "commit should be failing"
    );
    // Remove the fault: the stage retries by itself and the batch lands.
    std::fs::remove_file(&blocker).expect("unblock");
    let mut landed = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if scalar(&lake, "SELECT COUNT(*) FROM audit") == "30" {
            landed = true;
            break;
        }
    }
    assert!(landed, "the flush stage never recovered");
    server.sigterm();
    assert_eq!(
        scalar(&lake, "SELECT COUNT(DISTINCT audit_id) FROM audit"),
        "30"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relays_to_kafka_answers_503_while_it_is_down_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki(dir.path());
    let lake = dir.path().join("lake");
    let broker = common::kafka::Broker::start();
    broker.create_topic("relayed", 3);
    let addr = broker.addr();
    let server = Server::start(
        &lake,
        &pki,
        &[
            "--kafka-brokers",
            &addr,
            "--kafka-topic",
            "relayed",
            "--kafka-timeout",
            "3",
        ],
    );
    let c = client(&pki, Some(&pki.client));
    let mut want: Vec<String> = Vec::new();
    for b in 0..20 {
        let ids: Vec<String> = (0..50).map(|i| format!("up-b{b}-i{i}")).collect();
        let r = post(&c, &server.url, event_list(&ids)).await.expect("post");
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        want.extend(ids);
    }
    // Kafka goes away: the webhook must not acknowledge.
    broker.stop();
    let ids: Vec<String> = (0..50).map(|i| format!("down-i{i}")).collect();
    let body = event_list(&ids);
    let r = post(&c, &server.url, body.clone()).await.expect("post");
    assert_eq!(r.status(), 503, "{}", r.text().await.unwrap_or_default());
    // It comes back; the apiserver retries the batch until it is accepted.
    broker.restart();
    let started = std::time::Instant::now();
    loop {
        let r = post(&c, &server.url, body.clone()).await.expect("post");
        if r.status() == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "still {} after the broker returned",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    want.extend(ids);
    server.sigterm();
    // A consumer group member writes the lake.
    let lake_s = lake.display().to_string();
    run(&[
        "consume",
        "--brokers",
        &addr,
        "--topic",
        "relayed",
        "--lake",
        &lake_s,
        "--exit-at-end",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let mut got = stored_ids(&lake);
    got.sort();
    want.sort();
    assert_eq!(got, want, "every acknowledged event exactly once");
    // The client's identity travelled in the message header.
    assert_eq!(
        scalar(
            &lake,
            "SELECT min(cluster) || '/' || max(cluster) FROM audit"
        ),
        "cluster-a/cluster-a"
    );
}

/// `serve --compact-every` merges the small files its flushes wrote while it keeps
/// acknowledging batches, every acknowledged event stays stored once, and the hash chain
/// holds across the concurrent commits; `--retain` then removes the old hours, and the
/// metrics say what each did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_compaction_and_retention_run_beside_the_webhook() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki(dir.path());
    let lake = dir.path().join("lake");
    let c = client(&pki, Some(&pki.client));
    let metric = |text: &str, name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let server = Server::start(
        &lake,
        &pki,
        &[
            "--flush-seconds",
            "0.05",
            "--compact-every",
            "1s",
            "--maintenance-min-age",
            "0s",
        ],
    );
    // Batches keep arriving while compaction rounds run: each flush a small file in the one
    // (old, complete) hour of the test events.
    let mut compacted = 0.0;
    for b in 0..200 {
        let ids: Vec<String> = (0..20).map(|i| format!("b{b}-i{i}")).collect();
        let r = post(&c, &server.url, event_list(&ids)).await.expect("post");
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let m = metrics_text(&c, &server.url).await;
        compacted = metric(&m, "auditlake_compaction_files_out_total");
        if b >= 100 && compacted >= 1.0 {
            break;
        }
    }
    assert!(compacted >= 1.0, "no background compaction in 200 batches");
    let m = metrics_text(&c, &server.url).await;
    assert!(
        metric(&m, "auditlake_compaction_files_in_total") >= 2.0,
        "{m}"
    );
    assert!(
        m.contains("auditlake_maintenance_runs_total{outcome=\"ok\",task=\"compact\"}"),
        "{m}"
    );
    assert!(!m.contains("outcome=\"error\""), "{m}");
    server.sigterm();
    let stored = scalar(&lake, "SELECT COUNT(*) FROM audit");
    assert_eq!(
        stored,
        scalar(&lake, "SELECT COUNT(DISTINCT audit_id) FROM audit")
    );
    assert!(stored.parse::<u64>().unwrap() >= 2000, "{stored}");
    let verified = Command::new(bin())
        .args(["lake", "verify", lake.to_str().unwrap()])
        .output()
        .expect("verify");
    assert!(verified.status.success(), "{verified:?}");
    let history =
        String::from_utf8_lossy(&run(&["lake", "history", lake.to_str().unwrap()]).stdout)
            .to_string();
    assert!(history.contains("\tOPTIMIZE\tserve@"), "{history}");

    // Retention: the test events' hour (2026-11-20) is older than a day.
    let server = Server::start(
        &lake,
        &pki,
        &[
            "--compact-every",
            "1s",
            "--retain",
            "1d",
            "--maintenance-min-age",
            "0s",
        ],
    );
    let mut removed = 0.0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        removed = metric(
            &metrics_text(&c, &server.url).await,
            "auditlake_retention_partitions_removed_total",
        );
        if removed >= 1.0 {
            break;
        }
    }
    assert_eq!(removed, 1.0, "one hour partition removed");
    server.sigterm();
    assert_eq!(scalar(&lake, "SELECT COUNT(*) FROM audit"), "0");
    assert!(
        parquet_files(&lake).is_empty(),
        "vacuumed: {:?}",
        parquet_files(&lake)
    );
}

/// The client CA and the token file are reloaded when they change, without a restart: a client
/// of a new CA gets in once the bundle names it, and out of the old one once it is gone; a new
/// token works and the replaced one is refused. A file that changed but does not load keeps
/// what was in force (and counts in `auditlake_credential_reload_errors_total`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ca_and_token_file_reload_when_they_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki(dir.path());
    let lake = dir.path().join("lake");
    // The clients verify the server against the CA as it is now (the file itself changes).
    let trust = dir.path().join("server-trust.crt");
    std::fs::copy(&pki.ca, &trust).expect("copy CA");
    let old_ca = std::fs::read_to_string(&pki.ca).expect("CA");
    let other = dir.path().join("other");
    std::fs::create_dir(&other).expect("dir");
    let (new_ca, new_issuer) = ca("auditlake-test-ca-2");
    let new_client = leaf(&other, "apiserver-a", &[], &new_issuer);
    let server = Server::start(&lake, &pki, &[]);
    let tokens = dir.path().join("tokens");

    // A new client each time: a pooled connection keeps the handshake it made.
    let with_cert = |id: &(std::path::PathBuf, std::path::PathBuf)| {
        auditlake::tools::loadgen::https_client(&trust, Some((id.0.as_path(), id.1.as_path())))
            .expect("client")
    };
    let with_token = |token: &str| {
        let c = auditlake::tools::loadgen::https_client(&trust, None).expect("client");
        c.post(format!("{}/audit", server.url))
            .bearer_auth(token)
            .body(event_list(&[format!("t-{token}")]))
    };
    let status = |r: reqwest::Result<reqwest::Response>| r.map_or(0, |r| r.status().as_u16());
    let url = server.url.clone();
    let by_cert = |id: &(std::path::PathBuf, std::path::PathBuf), n: usize| {
        let c = with_cert(id);
        let url = url.clone();
        async move { status(post(&c, &url, event_list(&[format!("c-{n}")])).await) }
    };
    // Polls `check` until it holds (the files are looked at every 2 s).
    macro_rules! eventually {
        ($what:expr, $check:expr) => {{
            let mut ok = false;
            for _ in 0..60 {
                if $check {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            assert!(ok, "{} never happened", $what);
        }};
    }

    assert_eq!(by_cert(&pki.client, 1).await, 200);
    assert_ne!(
        by_cert(&new_client, 2).await,
        200,
        "a client of an unknown CA got in"
    );
    std::fs::write(&pki.ca, format!("{old_ca}{new_ca}")).expect("CA bundle");
    eventually!(
        "the new CA's client getting in",
        by_cert(&new_client, 3).await == 200
    );
    std::fs::write(&pki.ca, &new_ca).expect("new CA only");
    eventually!(
        "the old CA's client being refused",
        by_cert(&pki.client, 4).await != 200
    );

    let fresh = "rotated-token-for-cluster-c-0123456789";
    assert_eq!(status(with_token(fresh).send().await), 401);
    std::fs::write(&tokens, format!("{fresh} cluster-c\n")).expect("tokens");
    eventually!(
        "the new token working",
        status(with_token(fresh).send().await) == 200
    );
    assert_eq!(
        status(with_token(TOKEN).send().await),
        401,
        "a replaced token still works"
    );

    // Broken files: what was in force stays.
    let errors = || async {
        let c = auditlake::tools::loadgen::https_client(&trust, None).expect("client");
        let text = c
            .get(format!("{}/metrics", server.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|l| l.strip_prefix("auditlake_credential_reload_errors_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = errors().await;
    std::fs::write(&tokens, "short cluster-c\n").expect("broken tokens");
    eventually!("the broken token file counted", errors().await > before);
    assert_eq!(status(with_token(fresh).send().await), 200);
    let before = errors().await;
    std::fs::write(&pki.ca, "not a certificate\n").expect("broken CA");
    eventually!("the broken CA counted", errors().await > before);
    assert_eq!(by_cert(&new_client, 5).await, 200);
    server.sigterm();
}

/// An EventList of `n` events named `{prefix}-{i}`, each carrying a request object of `pad`
/// bytes (RequestResponse-level events of large objects), with `bad` items replaced by
/// `{"kind":0}`.
fn large_list(prefix: &str, n: usize, pad: usize, bad: &[usize]) -> String {
    let data = "x".repeat(pad);
    let items: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            if bad.contains(&i) {
                return serde_json::json!({"kind": 0});
            }
            let mut e = event(&format!("{prefix}-{i}"));
            e["level"] = "RequestResponse".into();
            e["requestObject"] = serde_json::json!({"kind": "ConfigMap", "data": {"blob": data}});
            e
        })
        .collect();
    serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items})
        .to_string()
}

/// POST `body` over plain HTTP/1.1 in chunks of `chunk` bytes with no Content-Length, as a
/// client that streams does; returns the status code.
fn post_chunked(url: &str, body: &[u8], chunk: usize) -> u16 {
    use std::io::{Read, Write};
    let addr = url
        .trim_start_matches("http://")
        .replace("localhost", "127.0.0.1");
    let mut s = std::net::TcpStream::connect(addr.trim_end_matches('/')).expect("connect");
    write!(
        s,
        "POST /audit HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .expect("head");
    for part in body.chunks(chunk) {
        write!(s, "{:x}\r\n", part.len()).expect("chunk size");
        s.write_all(part).expect("chunk");
        s.write_all(b"\r\n").expect("chunk end");
    }
    s.write_all(b"0\r\n\r\n").expect("last chunk");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
}

/// Batches larger than `--spill-body` are streamed into the write-ahead log as they arrive,
/// never held whole in memory, and every event of them is stored once: kube-apiserver drops
/// a batch it cannot deliver, and 400 RequestResponse events of large objects pass 100 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_larger_than_memory_are_streamed_into_the_log_and_stored_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let server = Server::start_plain(&lake, &["--spill-body", "1048576"]);
    let url = server.url.clone();
    let c = reqwest::Client::new();
    // Declared longer than --spill-body: straight to disk. One item in the middle is bad.
    let declared = large_list("declared", 400, 25_000, &[200]);
    assert!(declared.len() > 8 << 20, "{}", declared.len());
    let post_token = |body: String| {
        c.post(format!("{url}/audit"))
            .bearer_auth(TOKEN)
            .body(body)
            .send()
    };
    let r = post_token(declared.clone()).await.expect("post");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    // No length: read into memory up to --spill-body, then the rest to disk.
    let chunked = large_list("chunked", 300, 20_000, &[]);
    let u = url.clone();
    let status = tokio::task::spawn_blocking(move || post_chunked(&u, chunked.as_bytes(), 300_000))
        .await
        .expect("chunked client");
    assert_eq!(status, 200);
    // A small batch still goes the in-memory way, and one cut short is kept as far as it goes.
    let small = post_token(event_list(&["small".into()]))
        .await
        .expect("post");
    assert_eq!(small.status(), 200);
    let cut = large_list("cut", 100, 20_000, &[]);
    let cut = &cut[..cut.len() * 3 / 4];
    let r = post_token(cut.to_string()).await.expect("post");
    assert_eq!(r.status(), 200);
    let metrics = metrics_text(&c, &url).await;
    assert!(
        metrics.contains("auditlake_webhook_spilled_total 3"),
        "{metrics}"
    );
    server.sigterm();

    let ids = stored_ids(&lake);
    let count = |p: &str| ids.iter().filter(|i| i.starts_with(p)).count();
    assert_eq!(count("declared-"), 399);
    assert_eq!(count("chunked-"), 300);
    assert_eq!(count("small"), 1);
    let cut_kept = count("cut-");
    assert!((70..=75).contains(&cut_kept), "{cut_kept} of the cut batch");
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "no event stored twice"
    );
    // The bad item is dead-lettered with its index and where it lies in the body; the cut
    // batch leaves its broken last item and a note that the list never closed.
    let rejected = dead_letters(&lake);
    let bad = rejected
        .iter()
        .find(|r| r["item"] == 200)
        .unwrap_or_else(|| panic!("{rejected:?}"));
    let at = declared.find(r#"{"kind":0}"#).expect("bad item") as u64;
    assert_eq!(bad["offset"], at, "{bad}");
    assert_eq!(bad["text"], r#"{"kind":0}"#);
    assert!(
        rejected
            .iter()
            .any(|r| r["reason"].as_str().unwrap_or("").contains("cut short")),
        "{rejected:?}"
    );
    // What the lake holds is gone from the log.
    let left = spilled_left(&lake);
    assert!(left.is_empty(), "{left:?} left in the log");
}
