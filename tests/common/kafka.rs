//! A real Apache Kafka broker (single KRaft node on loopback) per test,
//! started from the jars tests/kafka.sh fetches from Maven Central.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub struct Broker {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka.sh")
}

/// Three consecutive free loopback ports (client, controller, SASL client).
fn free_ports() -> u16 {
    for _ in 0..50 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        if port < 65000
            && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", port + 2)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port pair");
}

impl Broker {
    pub fn start() -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_ports();
        let b = Broker { dir, port };
        b.launch();
        b
    }

    fn launch(&self) {
        let out = Command::new("bash")
            .arg(script())
            .args([
                "start",
                &self.dir.path().display().to_string(),
                &self.port.to_string(),
            ])
            .output()
            .expect("run tests/kafka.sh");
        assert!(
            out.status.success(),
            "Kafka broker did not start: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The listener that takes SASL PLAIN as Azure Event Hubs does.
    pub fn sasl_addr(&self) -> String {
        format!("127.0.0.1:{}", self.port + 2)
    }

    /// Stop the broker (SIGTERM, then SIGKILL); its data stays.
    pub fn stop(&self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["stop", &self.dir.path().display().to_string()])
            .status();
    }

    /// Start it again on the same port and data.
    pub fn restart(&self) {
        self.launch();
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.addr())
            .create()
            .expect("admin client");
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let res = futures::executor::block_on(admin.create_topics([&topic], &opts))
            .expect("create_topics");
        for r in res {
            r.expect("topic created");
        }
    }

    pub fn producer(&self) -> ThreadedProducer<DefaultProducerContext> {
        ClientConfig::new()
            .set("bootstrap.servers", self.addr())
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .expect("producer")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Produce `payload` to `topic`/`partition` with an optional key and
/// cluster header, retrying while the local queue is full.
pub fn send(
    p: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    partition: i32,
    key: Option<&str>,
    payload: &[u8],
    cluster: Option<&str>,
) {
    let mut rec = BaseRecord::<str, [u8]>::to(topic)
        .partition(partition)
        .payload(payload);
    if let Some(k) = key {
        rec = rec.key(k);
    }
    if let Some(c) = cluster {
        rec = rec.headers(OwnedHeaders::new().insert(Header {
            key: "auditlake-cluster",
            value: Some(c),
        }));
    }
    loop {
        match p.send(rec) {
            Ok(()) => return,
            Err((_, r)) => {
                rec = r;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Wait for every produced message to be acknowledged by the broker.
pub fn flush(p: &ThreadedProducer<DefaultProducerContext>) {
    p.flush(Duration::from_secs(60)).expect("producer flush");
    assert_eq!(p.in_flight_count(), 0, "undelivered messages");
}
