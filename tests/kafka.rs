//! `auditlake consume` against a real Apache Kafka broker (KRaft, loopback):
//! consumer groups with kill -9 and rebalances, a crash between the lake
//! commit and the offset commit, poison messages, wrapper formats, metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::kafka::{flush, send, Broker};
use common::{bin, dead_letters, gen_file, http_get, scalar, sql};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `gen` output as JSON lines.
fn generated(dir: &Path, events: u64, seed: u64) -> Vec<String> {
    let path = dir.join(format!("gen-{seed}.jsonl"));
    gen_file(&path, events, seed);
    std::fs::read_to_string(&path)
        .expect("read gen output")
        .lines()
        .map(str::to_string)
        .collect()
}

/// The (auditID, stage) pairs of events, sorted (`gen` repeats an event
/// now and then, as webhook retries do, so this is a multiset).
fn keys(lines: &[String]) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("event");
            (
                v["auditID"].as_str().unwrap_or_default().to_string(),
                v["stage"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    keys.sort();
    keys
}

/// Messages in the four formats, round robin: one Event, an EventList of 10,
/// a JSON array of 5, JSON lines of 3.
fn mixed_messages(lines: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut kind = 0;
    while i < lines.len() {
        let n = [1, 10, 5, 3][kind % 4];
        let group = &lines[i..(i + n).min(lines.len())];
        out.push(match kind % 4 {
            0 => group[0].clone(),
            1 => format!(
                r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#,
                group.join(",")
            ),
            2 => format!("[{}]", group.join(",\n")),
            _ => group.join("\n") + "\n",
        });
        i += group.len();
        kind += 1;
    }
    out
}

struct Consumer {
    child: Child,
    log: std::path::PathBuf,
}

/// Every consumer log of a test (they sit beside the lake), for failure messages.
fn logs(lake: &Path) -> String {
    let dir = lake.parent().expect("parent");
    let mut out = String::new();
    for e in std::fs::read_dir(dir).expect("dir").flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "log") {
            out += &format!(
                "==> {} <==\n{}\n",
                p.display(),
                std::fs::read_to_string(&p).unwrap_or_default()
            );
        }
    }
    out
}

impl Consumer {
    fn start(
        broker: &Broker,
        lake: &Path,
        topic: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Consumer {
        let addr = broker.addr();
        let lake = lake.display().to_string();
        let mut args = vec![
            "consume",
            "--brokers",
            &addr,
            "--topic",
            topic,
            "--group",
            "lake-writers",
            "--lake",
            &lake,
            "--cluster",
            "kafka-default",
        ];
        if !extra.contains(&"--metrics-listen") {
            args.extend(["--metrics-listen", "127.0.0.1:0"]);
        }
        args.extend_from_slice(extra);
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = Path::new(&lake)
            .parent()
            .expect("parent")
            .join(format!("consume-{n}.log"));
        let mut cmd = Command::new(bin());
        cmd.args(&args)
            .env("AUDITLAKE_LOG", "auditlake=info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        Consumer {
            child: cmd.spawn().expect("spawn consume"),
            log,
        }
    }

    fn sigterm(mut self) -> String {
        common::signal(&self.child, "-TERM");
        self.wait_success()
    }

    /// Wait for exit; require success; return stderr.
    fn wait_success(&mut self) -> String {
        let out = self.wait();
        assert!(out.0.success(), "consume exited with {}:\n{}", out.0, out.1);
        out.1
    }

    fn wait(&mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().expect("wait");
        (
            status,
            std::fs::read_to_string(&self.log).unwrap_or_default(),
        )
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn row_count(lake: &Path) -> u64 {
    if common::parquet_count(lake) == 0 {
        return 0;
    }
    scalar(lake, "SELECT count(*) FROM audit")
        .parse()
        .expect("count")
}

/// Wait until the lake holds `n` rows (or fail after `limit`).
fn wait_rows(lake: &Path, n: u64, limit: Duration) {
    let t = Instant::now();
    loop {
        let got = row_count(lake);
        if got >= n {
            return;
        }
        assert!(
            t.elapsed() < limit,
            "lake holds {got} of {n} rows after {limit:?}\n{}",
            logs(lake)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Every produced event stored exactly as often as it was produced.
fn assert_exactly_once(lake: &Path, want: &[(String, String)]) {
    let rows = sql(lake, "SELECT audit_id, stage FROM audit");
    let mut got: Vec<(String, String)> = rows[1..]
        .iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    got.sort();
    assert_eq!(
        got.len(),
        want.len(),
        "row count differs from events produced"
    );
    assert!(got == want, "lake rows differ from the produced events");
}

#[test]
fn group_members_killed_and_rebalanced_store_every_event_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let broker = Broker::start();
    broker.create_topic("audit", 4);
    let lines = generated(dir.path(), 12_000, 7);
    let want = keys(&lines);
    let messages = mixed_messages(&lines);
    let producer = broker.producer();
    let slices: Vec<&[String]> = messages.chunks(messages.len().div_ceil(8)).collect();
    let produce = |slice: &[String], base: usize| {
        for (i, m) in slice.iter().enumerate() {
            send(
                &producer,
                "audit",
                ((base + i) % 4) as i32,
                None,
                m.as_bytes(),
                None,
            );
        }
        flush(&producer);
    };
    let mut sent = 0;
    produce(slices[0], sent);
    sent += slices[0].len();
    let small = [
        "--segment-rows",
        "400",
        "--flush-seconds",
        "0.3",
        "--workers",
        "1",
    ];
    let a = Consumer::start(&broker, &lake, "audit", &small, &[]);
    let b = Consumer::start(&broker, &lake, "audit", &small, &[]);
    for (k, slice) in slices.iter().enumerate().skip(1) {
        produce(slice, sent);
        sent += slice.len();
        std::thread::sleep(Duration::from_millis(400));
        if k == 3 {
            // Mid-stream, after the group has settled and written files.
            wait_rows(&lake, 1, Duration::from_secs(60));
            common::signal(&a.child, "-KILL");
        }
    }
    // Member A is gone: B takes its partitions over after the session
    // timeout. Then A comes back and the group rebalances again.
    std::thread::sleep(Duration::from_secs(3));
    let a2 = Consumer::start(&broker, &lake, "audit", &small, &[]);
    wait_rows(&lake, want.len() as u64, Duration::from_secs(120));
    // Let any last commit land, then stop both gracefully.
    std::thread::sleep(Duration::from_secs(1));
    b.sigterm();
    a2.sigterm();
    drop(a);
    assert_exactly_once(&lake, &want);
    // Files are named after topic, partition and offset range.
    let files = common::parquet_files(&lake);
    assert!(files.iter().all(|f| {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        name.starts_with("k.audit.") && name.ends_with(".parquet")
    }));
}

#[test]
fn crash_between_lake_commit_and_offset_commit_duplicates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let broker = Broker::start();
    broker.create_topic("crash", 2);
    // Several chunks (8192 messages) per partition, so the crash comes
    // mid-stream.
    let lines = generated(dir.path(), 30_000, 11);
    let want = keys(&lines);
    let producer = broker.producer();
    for (i, l) in lines.iter().enumerate() {
        send(&producer, "crash", (i % 2) as i32, None, l.as_bytes(), None);
    }
    flush(&producer);
    // The failpoint aborts the process right after its first lake commit,
    // before the offset commit that commit allows.
    let mut c = Consumer::start(
        &broker,
        &lake,
        "crash",
        &["--segment-rows", "1000", "--exit-at-end", "--workers", "1"],
        &[("AUDITLAKE_FAILPOINT", "abort-after-lake-commit")],
    );
    let (status, log) = c.wait();
    assert!(!status.success(), "the failpoint did not fire:\n{log}");
    let stored = row_count(&lake);
    assert!(
        stored > 0 && stored < want.len() as u64,
        "{stored} rows after the crash"
    );
    // Restarted: Kafka hands out the old offsets again; the lake's own
    // record of the next offset makes the member skip what it already has.
    let mut c = Consumer::start(
        &broker,
        &lake,
        "crash",
        &["--segment-rows", "1000", "--exit-at-end"],
        &[],
    );
    let log = c.wait_success();
    assert!(
        log.lines()
            .any(|l| l.contains("partition opened") && !l.contains("lake_next_offset=0")),
        "no partition resumed from the lake's offset:\n{log}"
    );
    assert_exactly_once(&lake, &want);
}

#[test]
fn poison_messages_are_dead_lettered_and_the_partition_moves_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let broker = Broker::start();
    broker.create_topic("poison", 1);
    let lines = generated(dir.path(), 200, 3);
    let producer = broker.producer();
    let mut offset = 0u64;
    let mut poison = Vec::new();
    let mut put = |payload: Option<&[u8]>, bad: Option<&str>| {
        match payload {
            Some(p) => send(&producer, "poison", 0, None, p, Some("cluster-p")),
            None => {
                let rec = rdkafka::producer::BaseRecord::<str, [u8]>::to("poison").partition(0);
                producer
                    .send(rec)
                    .map_err(|(e, _)| e)
                    .expect("send tombstone");
            }
        }
        if let Some(reason) = bad {
            poison.push((offset, reason.to_string()));
        }
        offset += 1;
    };
    for l in &lines[..100] {
        put(Some(l.as_bytes()), None);
    }
    put(Some(b"this is not JSON"), Some("not JSON"));
    put(Some(&[0xff, 0xfe, b'{']), Some("not valid UTF-8"));
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(40_000));
    put(Some(big.as_bytes()), Some("over --max-message-bytes"));
    put(None, Some("no payload"));
    put(Some(br#"{"kind":"Pod","apiVersion":"v1"}"#), Some(""));
    for l in &lines[100..] {
        put(Some(l.as_bytes()), None);
    }
    flush(&producer);
    let listen = format!("127.0.0.1:{}", common::free_port());
    let c = Consumer::start(
        &broker,
        &lake,
        "poison",
        &[
            "--max-message-bytes",
            "20000",
            "--flush-seconds",
            "0.2",
            "--metrics-listen",
            &listen,
        ],
        &[],
    );
    wait_rows(&lake, 200, Duration::from_secs(60));
    // Metrics: messages per partition, committed offset, dead letters.
    let url = format!("http://{listen}/metrics");
    let t = Instant::now();
    let text = loop {
        let text = http_get(&url);
        if text.contains(&format!(
            "auditlake_kafka_committed_offset{{partition=\"0\",topic=\"poison\"}} {offset}"
        )) {
            break text;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "offset never committed:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        text.contains(&format!(
            "auditlake_kafka_messages_total{{partition=\"0\",topic=\"poison\"}} {offset}"
        )),
        "{text}"
    );
    assert!(text.contains("auditlake_dead_letters_total 5"), "{text}");
    // Lag comes from librdkafka's statistics (every 5 s): caught up = 0.
    let t = Instant::now();
    while !http_get(&url).contains("auditlake_kafka_lag{partition=\"0\",topic=\"poison\"} 0") {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no lag gauge:\n{}",
            http_get(&url)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(http_get(&format!("http://{listen}/readyz")).contains("ready"));
    c.sigterm();
    assert_eq!(row_count(&lake), 200);
    assert_eq!(
        scalar(
            &lake,
            "SELECT count(DISTINCT cluster) || ':' || min(cluster) FROM audit"
        ),
        "1:cluster-p"
    );
    let mut letters: Vec<(u64, String, String)> = dead_letters(&lake)
        .iter()
        .map(|v| {
            (
                v["position"].as_u64().expect("position"),
                v["reason"].as_str().unwrap_or_default().to_string(),
                v["source"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    letters.sort();
    assert_eq!(letters.len(), poison.len(), "{letters:?}");
    for ((pos, reason, source), (want_pos, want_reason)) in letters.iter().zip(&poison) {
        assert_eq!(pos, want_pos);
        assert_eq!(source, "kafka poison/0");
        assert!(
            reason.contains(want_reason.as_str()),
            "offset {pos}: {reason}"
        );
    }
}

#[test]
fn wrapped_events_from_log_shippers_are_unwrapped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let broker = Broker::start();
    broker.create_topic("shipped", 1);
    let lines = generated(dir.path(), 300, 5);
    let producer = broker.producer();
    for (i, l) in lines.iter().enumerate() {
        let cluster = format!("c{}", i % 3);
        let wrapped = if i % 2 == 0 {
            // Fluent Bit: the log line as a string.
            serde_json::json!({"log": l, "cluster": cluster, "time": 1.5}).to_string()
        } else {
            // Vector: the parsed event as an object.
            let event: serde_json::Value = serde_json::from_str(l).expect("event");
            serde_json::json!({"log": event, "cluster": cluster}).to_string()
        };
        send(&producer, "shipped", 0, None, wrapped.as_bytes(), None);
    }
    send(
        &producer,
        "shipped",
        0,
        None,
        br#"{"message":"wrong field"}"#,
        None,
    );
    flush(&producer);
    // Subscribed by regular expression (librdkafka's `^` convention).
    let mut c = Consumer::start(
        &broker,
        &lake,
        "^ship+ed$",
        &[
            "--payload-field",
            "log",
            "--cluster-field",
            "cluster",
            "--exit-at-end",
        ],
        &[],
    );
    c.wait_success();
    assert_exactly_once(&lake, &keys(&lines));
    let per_cluster = sql(
        &lake,
        "SELECT cluster, count(*) FROM audit GROUP BY cluster ORDER BY cluster",
    );
    assert_eq!(
        per_cluster[1..],
        [
            vec!["c0".to_string(), "100".to_string()],
            vec!["c1".to_string(), "100".to_string()],
            vec!["c2".to_string(), "100".to_string()],
        ]
    );
    let letters = dead_letters(&lake);
    assert_eq!(letters.len(), 1);
    assert!(letters[0]["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("no field `log`"));
}

#[test]
fn dead_letter_topic_receives_poison_with_its_offset() {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    use rdkafka::message::Message as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let broker = Broker::start();
    broker.create_topic("dl-source", 1);
    broker.create_topic("dl-letters", 1);
    let lines = generated(dir.path(), 20, 9);
    let producer = broker.producer();
    for l in &lines[..10] {
        send(&producer, "dl-source", 0, None, l.as_bytes(), None);
    }
    send(&producer, "dl-source", 0, None, b"{broken", None);
    send(&producer, "dl-source", 0, None, b"[1, 2]", None);
    for l in &lines[10..] {
        send(&producer, "dl-source", 0, None, l.as_bytes(), None);
    }
    flush(&producer);
    let mut c = Consumer::start(
        &broker,
        &lake,
        "dl-source",
        &["--dead-letter-topic", "dl-letters", "--exit-at-end"],
        &[],
    );
    c.wait_success();
    assert_exactly_once(&lake, &keys(&lines));
    assert!(
        dead_letters(&lake).is_empty(),
        "dead letters went to the lake, not the topic"
    );
    // Read the dead-letter topic back.
    let reader: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .set("group.id", "dl-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    reader.subscribe(&["dl-letters"]).expect("subscribe");
    let mut got = Vec::new();
    let t = Instant::now();
    while got.len() < 3 && t.elapsed() < Duration::from_secs(30) {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(200)) {
            let v: serde_json::Value =
                serde_json::from_slice(m.payload().expect("payload")).expect("JSON dead letter");
            got.push(v);
        }
    }
    assert_eq!(got.len(), 3, "{got:?}");
    let mut positions: Vec<u64> = got
        .iter()
        .map(|v| v["position"].as_u64().expect("pos"))
        .collect();
    positions.sort();
    // `[1, 2]` is one message with two bad items.
    assert_eq!(positions, vec![10, 11, 11]);
    assert!(got.iter().all(|v| v["source"] == "kafka dl-source/0"));
    assert!(got.iter().any(|v| v["text"] == "{broken"));
}

/// Managed clusters' envelopes as Kafka messages, read through a SASL PLAIN listener with the
/// options Azure Event Hubs' Kafka endpoint takes (user `$ConnectionString`, the connection
/// string as password; Event Hubs adds TLS, which the local broker's listener does not): AKS
/// diagnostic records (`{"records":[…]}`) and EKS subscription data as Kinesis hands it on
/// (gzip bytes). Without --cluster, each event takes its envelope's cluster.
#[test]
fn managed_cluster_envelopes_through_an_event_hubs_style_sasl_listener() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let broker = Broker::start();
    broker.create_topic("insights-logs-kube-audit", 1);
    let lines = generated(dir.path(), 400, 13);
    let producer = broker.producer();
    let (aks, eks) = lines.split_at(250);
    for group in aks.chunks(50) {
        let records: Vec<serde_json::Value> = group
            .iter()
            .map(|l| serde_json::json!({
                "time": "2026-11-20T08:00:00.0000000Z",
                "resourceId": "/SUBSCRIPTIONS/0000/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD-AKS",
                "category": "kube-audit-admin",
                "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
                "properties": {"log": l, "stream": "stdout", "pod": "kube-apiserver-1"},
            }))
            .collect();
        let body = serde_json::json!({ "records": records }).to_string();
        send(
            &producer,
            "insights-logs-kube-audit",
            0,
            None,
            body.as_bytes(),
            None,
        );
    }
    for group in eks.chunks(50) {
        let events: Vec<serde_json::Value> = group
            .iter()
            .enumerate()
            .map(|(i, l)| serde_json::json!({"id": i.to_string(), "timestamp": 0, "message": l}))
            .collect();
        let payload = serde_json::json!({
            "messageType": "DATA_MESSAGE", "owner": "123456789012",
            "logGroup": "/aws/eks/prod-eks/cluster", "logStream": "kube-apiserver-audit-1",
            "subscriptionFilters": ["to-kinesis"], "logEvents": events,
        });
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(payload.to_string().as_bytes()).unwrap();
        send(
            &producer,
            "insights-logs-kube-audit",
            0,
            None,
            &gz.finish().unwrap(),
            None,
        );
    }
    flush(&producer);

    let (addr, lake_arg) = (broker.sasl_addr(), lake.display().to_string());
    let log = dir.path().join("consume.log");
    let status = Command::new(bin())
        .args([
            "consume", "--brokers", &addr, "--topic", "insights-logs-kube-audit", "--group",
            "auditlake", "--lake", &lake_arg, "--exit-at-end", "--metrics-listen", "127.0.0.1:0",
            "-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanism=PLAIN",
            "-X", "sasl.username=$ConnectionString",
            "-X", "sasl.password=Endpoint=sb://auditlake-test.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=secret",
        ])
        .env_remove("AUDITLAKE_CLUSTER")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .status()
        .expect("run consume");
    assert!(
        status.success(),
        "consume failed: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_exactly_once(&lake, &keys(&lines));
    let per_cluster = sql(
        &lake,
        "SELECT cluster, envelope, count(*) FROM audit GROUP BY 1, 2 ORDER BY 1",
    );
    assert_eq!(
        per_cluster[1..],
        [
            vec!["prod-aks".to_string(), "aks".into(), "250".into()],
            vec!["prod-eks".to_string(), "eks".into(), "150".into()],
        ]
    );
}
