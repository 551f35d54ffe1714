//! `auditlake produce`: JSON lines into a Kafka topic, for loading files into Kafka in tests
//! and benchmarks. One event per message is keyed by its `auditID`, as the relay keys them, so
//! the consumer sees what a relaying webhook would have written.

use crate::sinks::kafka::{audit_id, producer_config, RelayError};
use rdkafka::error::KafkaError;
use std::time::Duration;

/// What [`produce_lines`] did.
#[derive(Debug, Default)]
pub struct ProduceReport {
    pub lines: u64,
    pub messages: u64,
    pub bytes: u64,
    pub failed: u64,
    pub elapsed: Duration,
}

impl std::fmt::Display for ProduceReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        write!(
            f,
            "produced {} messages ({} lines, {:.1} MB) in {secs:.2} s: {:.0} lines/s, {:.1} MB/s; {} failed",
            self.messages,
            self.lines,
            self.bytes as f64 / 1e6,
            self.lines as f64 / secs,
            self.bytes as f64 / 1e6 / secs,
            self.failed
        )
    }
}

struct Counting {
    failed: std::sync::atomic::AtomicU64,
}

impl rdkafka::ClientContext for Counting {}

impl rdkafka::producer::ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = r {
            tracing::warn!(error = %e, "delivery failed");
            self.failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Produce JSON lines from `input` to `topic`, `per_message` lines per
/// message (1: one event per message, keyed by its `auditID`; more: JSON
/// lines messages). For loading files into Kafka, tests and benchmarks.
pub fn produce_lines(
    brokers: &str,
    topic: &str,
    options: &[(String, String)],
    input: impl std::io::BufRead,
    per_message: usize,
) -> Result<ProduceReport, RelayError> {
    use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
    let started = std::time::Instant::now();
    let c = producer_config(
        brokers,
        &[
            ("client.id", "auditlake-produce"),
            ("linger.ms", "20"),
            ("compression.type", "lz4"),
            ("batch.size", "1000000"),
        ],
        options,
    );
    let producer: ThreadedProducer<Counting> = c
        .create_with_context(Counting {
            failed: Default::default(),
        })
        .map_err(RelayError::Config)?;
    let mut report = ProduceReport::default();
    let mut buf = String::new();
    let mut in_buf = 0usize;
    let send = |payload: &str, key: Option<String>, report: &mut ProduceReport| {
        let mut record = BaseRecord::<str, str>::to(topic).payload(payload);
        if let Some(k) = key.as_deref() {
            record = record.key(k);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => {
                    tracing::warn!(error = %e, "produce failed");
                    report.failed += 1;
                    return;
                }
            }
        }
        report.messages += 1;
        report.bytes += payload.len() as u64;
    };
    let per_message = per_message.max(1);
    for line in input.lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        report.lines += 1;
        if per_message == 1 {
            let key = audit_id(&line);
            send(&line, key, &mut report);
            continue;
        }
        buf.push_str(&line);
        buf.push('\n');
        in_buf += 1;
        if in_buf == per_message {
            send(&buf, None, &mut report);
            buf.clear();
            in_buf = 0;
        }
    }
    if in_buf > 0 {
        send(&buf, None, &mut report);
    }
    let _ = producer.flush(Duration::from_secs(60));
    report.failed += producer
        .context()
        .failed
        .load(std::sync::atomic::Ordering::Relaxed);
    report.elapsed = started.elapsed();
    Ok(report)
}
