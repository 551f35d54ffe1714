//! Prometheus metrics of the long-running commands, rendered at `/metrics`
//! in the text exposition format.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub events_received: IntCounter,
    pub bytes_received: IntCounter,
    pub dead_letters: IntCounter,
    /// Bytes written to dead-letter files (bounded per item and segment).
    pub dead_letter_bytes: IntCounter,
    /// Write-ahead log bytes found corrupt and moved to `quarantine/`.
    pub wal_quarantined_bytes: IntCounter,
    /// Request bodies abandoned for arriving too slowly.
    pub body_timeouts: IntCounter,
    /// Bytes of request bodies (inflated) held in memory right now.
    pub inflight_bytes: IntGauge,
    pub wal_bytes: IntGauge,
    pub wal_segments: IntGauge,
    pub files_committed: IntCounter,
    pub rows_committed: IntCounter,
    pub committed_position: IntGauge,
    pub ack_latency: Histogram,
    pub flush_latency: Histogram,
    /// Kafka consumer: messages read, per topic and partition.
    pub kafka_messages: IntCounterVec,
    /// Kafka consumer: events decoded, per topic and partition.
    pub kafka_events: IntCounterVec,
    /// Kafka consumer: last committed (next) offset, per topic and partition.
    pub kafka_committed_offset: IntGaugeVec,
    /// Kafka consumer: messages behind the high watermark (librdkafka stats).
    pub kafka_lag: IntGaugeVec,
    pub kafka_rebalances: IntCounter,
    /// Webhook relay: events produced to Kafka with a confirmed delivery.
    pub kafka_produced: IntCounter,
    /// Requests carrying a proxy's claim from an identity no profile trusts.
    pub untrusted_claims: IntCounter,
    /// Webhook bodies refused with 413 (the apiserver drops such batches).
    pub too_large: IntCounter,
    /// Bytes those bodies declared or had sent when refused.
    pub too_large_bytes: IntCounter,
    /// Webhook bodies streamed to the write-ahead log instead of memory,
    /// and their bytes.
    pub spilled: IntCounter,
    pub spilled_bytes: IntCounter,
    /// Background maintenance (pipeline/maintain.rs): runs per task and outcome.
    pub maintenance_runs: IntCounterVec,
    /// Unix time of each task's last successful run.
    pub maintenance_last_success: IntGaugeVec,
    pub compaction_files_in: IntCounter,
    pub compaction_files_out: IntCounter,
    pub compaction_bytes_in: IntCounter,
    pub compaction_duplicates: IntCounter,
    pub retention_partitions: IntCounter,
    pub vacuum_files: IntCounter,
    pub vacuum_bytes: IntCounter,
    /// `ingest --follow`: followed files whose writer was done with them (rotated, deleted or
    /// truncated), each read to its end.
    pub follow_rotations: IntCounter,
    /// `ingest --follow`: rotated copies read by a sweep (at start-up, and after a rotation).
    pub follow_backups: IntCounter,
    /// `ingest --follow`: bytes of the followed files not read yet.
    pub follow_unread_bytes: IntGaugeVec,
    /// `ingest --follow`: rotated copies a sweep could not read.
    pub follow_errors: IntCounter,
    /// `serve`: credential files (client CA, token file) that changed but did not load.
    pub credential_reload_errors: IntCounter,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Metric definitions are static; an error here is a programming error
    // caught by the unit test below.
    match r {
        Ok(v) => v,
        Err(e) => panic!("invalid metric definition: {e}"),
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = must(IntCounterVec::new(
            Opts::new(
                "auditlake_http_requests_total",
                "HTTP requests by status code and path kind",
            ),
            &["code"],
        ));
        let tp = ["topic", "partition"];
        let cv = |name: &str, help: &str| must(IntCounterVec::new(Opts::new(name, help), &tp));
        let gv = |name: &str, help: &str| must(IntGaugeVec::new(Opts::new(name, help), &tp));
        let c = |name: &str, help: &str| must(IntCounter::new(name, help));
        let g = |name: &str, help: &str| must(IntGauge::new(name, help));
        let h = |name: &str, help: &str, buckets: Vec<f64>| {
            must(Histogram::with_opts(
                HistogramOpts::new(name, help).buckets(buckets),
            ))
        };
        let m = Metrics {
            requests,
            events_received: c(
                "auditlake_events_received_total",
                "Audit events decoded from accepted batches",
            ),
            bytes_received: c(
                "auditlake_bytes_received_total",
                "Request body bytes accepted (after gzip decoding)",
            ),
            dead_letters: c(
                "auditlake_dead_letters_total",
                "Items kept in the dead-letter store",
            ),
            dead_letter_bytes: c(
                "auditlake_dead_letter_bytes_total",
                "Bytes written to dead-letter files",
            ),
            wal_quarantined_bytes: c(
                "auditlake_wal_quarantined_bytes_total",
                "Write-ahead log bytes found corrupt on start-up and moved to quarantine/",
            ),
            body_timeouts: c(
                "auditlake_body_read_timeouts_total",
                "Request bodies abandoned because they arrived too slowly",
            ),
            inflight_bytes: g(
                "auditlake_inflight_bytes",
                "Request body bytes (after gzip decoding) held in memory",
            ),
            wal_bytes: g("auditlake_wal_bytes", "Bytes in write-ahead log segments"),
            wal_segments: g("auditlake_wal_segments", "Write-ahead log segment files"),
            files_committed: c(
                "auditlake_parquet_files_committed_total",
                "Lake files committed",
            ),
            rows_committed: c(
                "auditlake_parquet_rows_committed_total",
                "Rows committed to the lake",
            ),
            committed_position: g(
                "auditlake_committed_position",
                "Last write-ahead log sequence number committed to the lake",
            ),
            ack_latency: h(
                "auditlake_ack_latency_seconds",
                "Time from request start to durable acknowledgement",
                prometheus::exponential_buckets(0.0005, 2.0, 16).unwrap_or_default(),
            ),
            flush_latency: h(
                "auditlake_flush_latency_seconds",
                "Time to commit one lake segment",
                prometheus::exponential_buckets(0.005, 2.0, 14).unwrap_or_default(),
            ),
            kafka_messages: cv(
                "auditlake_kafka_messages_total",
                "Kafka messages consumed, per topic and partition",
            ),
            kafka_events: cv(
                "auditlake_kafka_events_total",
                "Audit events decoded from Kafka messages, per topic and partition",
            ),
            kafka_committed_offset: gv(
                "auditlake_kafka_committed_offset",
                "Next offset committed to the consumer group after a lake commit",
            ),
            kafka_lag: gv(
                "auditlake_kafka_lag",
                "Messages between the consumer position and the high watermark",
            ),
            kafka_rebalances: c(
                "auditlake_kafka_rebalances_total",
                "Consumer-group rebalances (assignments and revocations)",
            ),
            kafka_produced: c(
                "auditlake_kafka_produced_events_total",
                "Events the webhook produced to Kafka with a confirmed delivery",
            ),
            untrusted_claims: c(
                "auditlake_untrusted_claims_total",
                "Requests carrying a proxy's claim from an identity no profile trusts (claim_status spoofed): an attack, or a profile naming the wrong proxy identity",
            ),
            too_large: c(
                "auditlake_webhook_too_large_total",
                "Webhook bodies refused with 413: kube-apiserver drops every event of such a batch after its retries",
            ),
            too_large_bytes: c(
                "auditlake_webhook_too_large_bytes_total",
                "Bytes of the webhook bodies refused with 413 (as declared or read when refused)",
            ),
            spilled: c(
                "auditlake_webhook_spilled_total",
                "Webhook bodies over --spill-body, streamed into the write-ahead log as they arrived instead of held in memory",
            ),
            spilled_bytes: c(
                "auditlake_webhook_spilled_bytes_total",
                "Bytes of the webhook bodies streamed into the write-ahead log",
            ),
            maintenance_runs: must(IntCounterVec::new(
                Opts::new(
                    "auditlake_maintenance_runs_total",
                    "Background maintenance runs (compact, retention, vacuum) by outcome",
                ),
                &["task", "outcome"],
            )),
            maintenance_last_success: must(IntGaugeVec::new(
                Opts::new(
                    "auditlake_maintenance_last_success_timestamp_seconds",
                    "Unix time of each background maintenance task's last successful run",
                ),
                &["task"],
            )),
            compaction_files_in: c(
                "auditlake_compaction_files_in_total",
                "Small files background compaction merged",
            ),
            compaction_files_out: c(
                "auditlake_compaction_files_out_total",
                "Files background compaction wrote",
            ),
            compaction_bytes_in: c(
                "auditlake_compaction_bytes_in_total",
                "Bytes of the files background compaction merged",
            ),
            compaction_duplicates: c(
                "auditlake_compaction_duplicates_dropped_total",
                "Exact duplicate events background compaction dropped",
            ),
            retention_partitions: c(
                "auditlake_retention_partitions_removed_total",
                "Hour partitions background retention removed from the table",
            ),
            vacuum_files: c(
                "auditlake_vacuum_files_deleted_total",
                "Files out of the table that background vacuum deleted",
            ),
            vacuum_bytes: c(
                "auditlake_vacuum_bytes_deleted_total",
                "Bytes background vacuum deleted",
            ),
            follow_rotations: c(
                "auditlake_follow_rotations_total",
                "Followed files found rotated, deleted or truncated, then read to their end",
            ),
            follow_backups: c(
                "auditlake_follow_backups_read_total",
                "Rotated copies of a followed file read by a sweep (start-up, after rotations)",
            ),
            follow_unread_bytes: must(IntGaugeVec::new(
                Opts::new(
                    "auditlake_follow_unread_bytes",
                    "Bytes of a followed file written but not read yet, by the path followed",
                ),
                &["path"],
            )),
            follow_errors: c(
                "auditlake_follow_errors_total",
                "Rotated copies of a followed file that could not be read (see the log)",
            ),
            credential_reload_errors: c(
                "auditlake_credential_reload_errors_total",
                "Client CA or token files that changed but did not load (the ones before stay in force)",
            ),
            registry,
        };
        for col in [
            Box::new(m.requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.events_received.clone()),
            Box::new(m.bytes_received.clone()),
            Box::new(m.dead_letters.clone()),
            Box::new(m.dead_letter_bytes.clone()),
            Box::new(m.wal_quarantined_bytes.clone()),
            Box::new(m.body_timeouts.clone()),
            Box::new(m.inflight_bytes.clone()),
            Box::new(m.wal_bytes.clone()),
            Box::new(m.wal_segments.clone()),
            Box::new(m.files_committed.clone()),
            Box::new(m.rows_committed.clone()),
            Box::new(m.committed_position.clone()),
            Box::new(m.ack_latency.clone()),
            Box::new(m.flush_latency.clone()),
            Box::new(m.kafka_messages.clone()),
            Box::new(m.kafka_events.clone()),
            Box::new(m.kafka_committed_offset.clone()),
            Box::new(m.kafka_lag.clone()),
            Box::new(m.kafka_rebalances.clone()),
            Box::new(m.kafka_produced.clone()),
            Box::new(m.untrusted_claims.clone()),
            Box::new(m.too_large.clone()),
            Box::new(m.too_large_bytes.clone()),
            Box::new(m.spilled.clone()),
            Box::new(m.spilled_bytes.clone()),
            Box::new(m.maintenance_runs.clone()),
            Box::new(m.maintenance_last_success.clone()),
            Box::new(m.compaction_files_in.clone()),
            Box::new(m.compaction_files_out.clone()),
            Box::new(m.compaction_bytes_in.clone()),
            Box::new(m.compaction_duplicates.clone()),
            Box::new(m.retention_partitions.clone()),
            Box::new(m.vacuum_files.clone()),
            Box::new(m.vacuum_bytes.clone()),
            Box::new(m.follow_rotations.clone()),
            Box::new(m.follow_backups.clone()),
            Box::new(m.follow_unread_bytes.clone()),
            Box::new(m.follow_errors.clone()),
            Box::new(m.credential_reload_errors.clone()),
        ] {
            must(m.registry.register(col));
        }
        m
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_every_family() {
        let m = super::Metrics::new();
        m.requests.with_label_values(&["200"]).inc();
        m.ack_latency.observe(0.002);
        let text = m.render();
        for name in [
            "auditlake_http_requests_total{code=\"200\"} 1",
            "auditlake_wal_bytes",
            "auditlake_ack_latency_seconds_bucket",
            "auditlake_parquet_files_committed_total",
        ] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
    }
}
