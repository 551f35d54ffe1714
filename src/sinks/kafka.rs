//! The Kafka sink: the webhook's relay ([`Relay`]) and consume's dead-letter topic
//! ([`DeadLetterTopic`]).
//!
//! Relay: the webhook's Kafka sink. Each accepted batch is split into its
//! events, and each event is produced as one message keyed by its
//! `auditID` (so all stages of a request land in one partition, in order),
//! with the client's cluster in the `auditlake-cluster` header. The HTTP
//! answer waits for every delivery report: 2xx means every event is in
//! Kafka with `acks=all` from an idempotent producer, so webhook receivers
//! keep no state of their own and can scale behind a Service.
//!
//! A body that is not an Event, EventList or array is produced whole and
//! without a key: the consumer dead-letters it with its offset, so nothing
//! the webhook acknowledged is dropped.

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::time::Duration;

/// The header that carries the cluster of a relayed event.
pub const CLUSTER_HEADER: &str = "auditlake-cluster";

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("Kafka producer configuration: {0}\nhint: check --kafka-brokers and the --kafka-option key=value options")]
    Config(KafkaError),
    #[error("Kafka did not confirm {failed} of {total} events: {source}")]
    Delivery {
        failed: usize,
        total: usize,
        source: KafkaError,
    },
}

/// A producer configuration: `defaults`, then the user's options, then
/// the settings every acknowledgement here rests on (idempotence,
/// `acks=all`), which options therefore cannot weaken.
pub(crate) fn producer_config(
    brokers: &str,
    defaults: &[(&str, &str)],
    options: &[(String, String)],
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in defaults {
        c.set(*k, *v);
    }
    for (k, v) in options {
        c.set(k, v);
    }
    c.set("enable.idempotence", "true").set("acks", "all");
    c
}

/// A producer bound to one topic.
pub struct Relay {
    producer: FutureProducer,
    topic: String,
}

impl Relay {
    /// `timeout` bounds how long a batch waits for Kafka before the
    /// webhook answers 503 (librdkafka's `message.timeout.ms`).
    pub fn new(
        brokers: &str,
        topic: &str,
        options: &[(String, String)],
        timeout: Duration,
    ) -> Result<Relay, RelayError> {
        let timeout_ms = timeout.as_millis().max(1).to_string();
        let c = producer_config(
            brokers,
            &[
                ("client.id", "auditlake-serve"),
                ("linger.ms", "5"),
                ("compression.type", "lz4"),
                ("queue.buffering.max.kbytes", "262144"),
                ("message.timeout.ms", &timeout_ms),
            ],
            options,
        );
        let producer: FutureProducer = c.create().map_err(RelayError::Config)?;
        Ok(Relay {
            producer,
            topic: topic.to_string(),
        })
    }

    /// Produce every event of `body` and wait for all delivery reports.
    /// Returns the number of messages produced.
    pub async fn send(&self, cluster: &str, body: &[u8]) -> Result<usize, RelayError> {
        let items = split_batch(body);
        let total = items.len();
        let mut pending = Vec::with_capacity(total);
        let mut first_error = None;
        for (key, payload) in &items {
            let headers = OwnedHeaders::new().insert(Header {
                key: CLUSTER_HEADER,
                value: Some(cluster),
            });
            let mut record = FutureRecord::<str, [u8]>::to(&self.topic)
                .payload(payload)
                .headers(headers);
            if let Some(k) = key.as_deref() {
                record = record.key(k);
            }
            match self.producer.send_result(record) {
                Ok(f) => pending.push(f),
                Err((e, _)) => {
                    first_error = Some(e);
                    break;
                }
            }
        }
        let mut failed = total - pending.len();
        for f in pending {
            match f.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    failed += 1;
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    failed += 1;
                    first_error.get_or_insert(KafkaError::Canceled);
                }
            }
        }
        match first_error {
            None => Ok(total),
            Some(source) => Err(RelayError::Delivery {
                failed: failed.max(1),
                total,
                source,
            }),
        }
    }
}

/// The consumer's dead-letter topic: rejected messages as JSON records
/// (the lake's `RejectRecord`: source topic/partition, offset, reason,
/// text), keyed by `<source>@<offset>`.
pub struct DeadLetterTopic {
    producer: FutureProducer,
    topic: String,
}

impl DeadLetterTopic {
    pub fn new(
        brokers: &str,
        topic: &str,
        options: &[(String, String)],
    ) -> Result<DeadLetterTopic, RelayError> {
        let c = producer_config(
            brokers,
            &[
                ("client.id", "auditlake-dead-letters"),
                ("message.timeout.ms", "30000"),
            ],
            options,
        );
        Ok(DeadLetterTopic {
            producer: c.create().map_err(RelayError::Config)?,
            topic: topic.to_string(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Produce every record and wait for the delivery reports; returns the
    /// records Kafka did not confirm (the caller keeps them elsewhere).
    pub fn deliver(
        &self,
        records: Vec<crate::sinks::lake::RejectRecord>,
    ) -> Vec<crate::sinks::lake::RejectRecord> {
        let mut pending = Vec::with_capacity(records.len());
        let mut failed = Vec::new();
        for r in records {
            let payload = serde_json::to_vec(&r).unwrap_or_default();
            let key = format!("{}@{}", r.source, r.position);
            let record = FutureRecord::<str, [u8]>::to(&self.topic)
                .key(&key)
                .payload(&payload);
            match self.producer.send_result(record) {
                Ok(f) => pending.push((r, f)),
                Err((e, _)) => {
                    tracing::warn!(error = %e, "dead-letter topic refused a record");
                    failed.push(r);
                }
            }
        }
        for (r, f) in pending {
            match futures::executor::block_on(f) {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    tracing::warn!(error = %e, "dead-letter record not delivered");
                    failed.push(r);
                }
                Err(_) => failed.push(r),
            }
        }
        failed
    }
}

#[derive(Deserialize)]
struct Doc<'a> {
    #[serde(borrow, default)]
    items: Option<Vec<&'a RawValue>>,
}

#[derive(Deserialize)]
struct Id<'a> {
    #[serde(rename = "auditID", borrow, default)]
    audit_id: Option<std::borrow::Cow<'a, str>>,
}

/// A batch body as messages: `(key, payload)` per event of an EventList or
/// array, the body itself for a single Event, and the whole body without a
/// key for anything else (the consumer dead-letters it).
pub fn split_batch(body: &[u8]) -> Vec<(Option<String>, &[u8])> {
    let whole = || vec![(None, body)];
    let Ok(text) = std::str::from_utf8(body) else {
        return whole();
    };
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    let items: Vec<&RawValue> = match trimmed.as_bytes().first() {
        Some(b'[') => match serde_json::from_str(trimmed) {
            Ok(v) => v,
            Err(_) => return whole(),
        },
        Some(b'{') => match serde_json::from_str::<Doc>(trimmed) {
            Ok(Doc { items: Some(v) }) => v,
            Ok(Doc { items: None }) => return vec![(audit_id(trimmed), trimmed.as_bytes())],
            Err(_) => return whole(),
        },
        _ => return whole(),
    };
    items
        .into_iter()
        .map(|raw| (audit_id(raw.get()), raw.get().as_bytes()))
        .collect()
}

pub(crate) fn audit_id(item: &str) -> Option<String> {
    serde_json::from_str::<Id>(item)
        .ok()
        .and_then(|id| id.audit_id)
        .map(|c| c.into_owned())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::split_batch;

    #[test]
    fn batches_split_into_keyed_events() {
        let list = br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"auditID":"a","stage":"ResponseComplete"},{"auditID":"b"},{"stage":"x"}]}"#;
        let got = split_batch(list);
        let keys: Vec<_> = got.iter().map(|(k, _)| k.as_deref()).collect();
        assert_eq!(keys, vec![Some("a"), Some("b"), None]);
        assert_eq!(got[1].1, br#"{"auditID":"b"}"#);

        let array = br#"[{"auditID":"c"}, {"auditID":"d"}]"#;
        assert_eq!(split_batch(array).len(), 2);

        let single = br#" {"auditID":"e","verb":"get"} "#;
        let got = split_batch(single);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.as_deref(), Some("e"));

        // Not JSON, not UTF-8: produced whole, unkeyed.
        for bad in [&b"garbage"[..], &b"{\"items\": [1,"[..], &[0xff, 0xfe][..]] {
            let got = split_batch(bad);
            assert_eq!(got, vec![(None, bad)]);
        }
    }
}
