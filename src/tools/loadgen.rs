//! A load generator that speaks like kube-apiserver's webhook backend:
//! HTTPS (optionally mTLS or a bearer token), `EventList` batches,
//! several in flight. Reports acknowledged events/s and latency
//! percentiles.

use crate::tools::gen::{Format, Generator};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("{path}: {problem}")]
    Pem { path: String, problem: String },
    #[error("HTTP client: {0}")]
    Client(String),
    #[error("no batch was acknowledged; first error: {0}")]
    NothingAcked(String),
}

fn pem_err(path: &Path, e: impl std::fmt::Display) -> LoadgenError {
    LoadgenError::Pem {
        path: path.display().to_string(),
        problem: e.to_string(),
    }
}

/// An HTTPS client trusting `ca`, presenting `identity` (cert, key) if given.
pub fn https_client(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<reqwest::Client, LoadgenError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| pem_err(ca, e))? {
        roots
            .add(c.map_err(|e| pem_err(ca, e))?)
            .map_err(|e| pem_err(ca, e))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LoadgenError::Client(e.to_string()))?
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => {
            let certs: Vec<_> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| pem_err(cert, e))?
                .collect::<Result<_, _>>()
                .map_err(|e| pem_err(cert, e))?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e))?;
            builder
                .with_client_auth_cert(certs, key_der)
                .map_err(|e| LoadgenError::Client(e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .build()
        .map_err(|e| LoadgenError::Client(e.to_string()))
}

/// What to send.
pub struct LoadSpec {
    pub url: String,
    pub token: Option<String>,
    pub events: u64,
    pub batch: usize,
    pub concurrency: usize,
    /// Target events/s over all connections (0 = as fast as acknowledged).
    pub rate: u64,
}

/// What happened.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub batches_ok: u64,
    pub batches_failed: u64,
    pub events_acked: u64,
    pub bytes_sent: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        write!(
            f,
            "{} events acknowledged in {} batches ({} failed) in {:.2}s: {:.0} events/s, {:.1} MB/s; ack latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.events_acked,
            self.batches_ok,
            self.batches_failed,
            secs,
            self.events_acked as f64 / secs,
            self.bytes_sent as f64 / 1e6 / secs,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.max.as_secs_f64() * 1e3
        )
    }
}

/// Run the load; batches are generated up front (a bounded pool, cycled).
pub async fn run(client: reqwest::Client, spec: LoadSpec) -> Result<LoadReport, LoadgenError> {
    let batch = spec.batch.max(1);
    let pool_events = (batch as u64 * 64).min(spec.events.max(batch as u64));
    let mut text = Vec::new();
    let _ = Generator::new(7).write(pool_events, Format::EventList, batch, &mut text);
    let pool: Arc<Vec<bytes::Bytes>> = Arc::new(
        text.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(bytes::Bytes::copy_from_slice)
            .collect(),
    );
    let total_batches = spec.events.div_ceil(batch as u64);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let per_batch_interval = if spec.rate > 0 {
        Some(Duration::from_secs_f64(batch as f64 / spec.rate as f64))
    } else {
        None
    };
    let mut tasks = Vec::new();
    for _ in 0..spec.concurrency.max(1) {
        let (client, pool, next) = (client.clone(), pool.clone(), next.clone());
        let url = spec.url.clone();
        let token = spec.token.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let (mut ok, mut failed, mut events, mut bytes) = (0u64, 0u64, 0u64, 0u64);
            let mut first_err = None;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total_batches {
                    break;
                }
                if let Some(iv) = per_batch_interval {
                    // Open-loop schedule: batch i is due at i × interval.
                    let due = started + iv.mul_f64(i as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let body = pool[(i as usize) % pool.len()].clone();
                let n = body.len() as u64;
                let t = Instant::now();
                let mut req = client
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(body);
                if let Some(tok) = &token {
                    req = req.bearer_auth(tok);
                }
                match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        lat.push(t.elapsed());
                        ok += 1;
                        events += batch as u64;
                        bytes += n;
                    }
                    Ok(r) => {
                        failed += 1;
                        first_err.get_or_insert(format!("HTTP {}", r.status()));
                    }
                    Err(e) => {
                        failed += 1;
                        first_err.get_or_insert(e.to_string());
                    }
                }
            }
            (lat, ok, failed, events, bytes, first_err)
        }));
    }
    let mut lat = Vec::new();
    let mut report = LoadReport {
        batches_ok: 0,
        batches_failed: 0,
        events_acked: 0,
        bytes_sent: 0,
        elapsed: Duration::ZERO,
        p50: Duration::ZERO,
        p99: Duration::ZERO,
        max: Duration::ZERO,
    };
    let mut first_err = None;
    for t in tasks {
        let (l, ok, failed, events, bytes, err) =
            t.await.map_err(|e| LoadgenError::Client(e.to_string()))?;
        lat.extend(l);
        report.batches_ok += ok;
        report.batches_failed += failed;
        report.events_acked += events;
        report.bytes_sent += bytes;
        if first_err.is_none() {
            first_err = err;
        }
    }
    report.elapsed = started.elapsed();
    if report.batches_ok == 0 {
        return Err(LoadgenError::NothingAcked(first_err.unwrap_or_default()));
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    report.p50 = pct(0.50);
    report.p99 = pct(0.99);
    report.max = *lat.last().unwrap_or(&Duration::ZERO);
    Ok(report)
}
