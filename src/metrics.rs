//! Prometheus metrics of the long-running commands, rendered at `/metrics`
//! in the text exposition format.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub events_received: IntCounter,
    pub bytes_received: IntCounter,
    pub dead_letters: IntCounter,
    pub wal_bytes: IntGauge,
    pub wal_segments: IntGauge,
    pub files_committed: IntCounter,
    pub rows_committed: IntCounter,
    pub committed_position: IntGauge,
    pub ack_latency: Histogram,
    pub flush_latency: Histogram,
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
            registry,
        };
        for col in [
            Box::new(m.requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.events_received.clone()),
            Box::new(m.bytes_received.clone()),
            Box::new(m.dead_letters.clone()),
            Box::new(m.wal_bytes.clone()),
            Box::new(m.wal_segments.clone()),
            Box::new(m.files_committed.clone()),
            Box::new(m.rows_committed.clone()),
            Box::new(m.committed_position.clone()),
            Box::new(m.ack_latency.clone()),
            Box::new(m.flush_latency.clone()),
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
