//! Webhook source: the HTTPS endpoint kube-apiserver's audit webhook
//! backend posts `EventList` batches to.
//!
//! Invariant: a 2xx answer means the body is in the write-ahead log and
//! fsynced. Bodies are stored verbatim; decoding happens later in the flush
//! stage, so a body that turns out to be undecodable is dead-lettered, not
//! refused (refusing would only make the apiserver retry, then drop it).
//! Only authentication failures (401/403), wrong paths (404), oversized
//! bodies (413), bodies that arrive too slowly (408) and a log that cannot
//! take more (503 + Retry-After) are answered with errors.
//!
//! Memory: every byte a request holds (the body as read, and as inflated
//! from gzip, by capacity) is charged to one budget (`--max-inflight-bytes`)
//! *before* it is allocated, and one client (cluster) may hold at most a
//! quarter of it, so no client can starve the others. A body must keep
//! arriving at `--min-body-rate` after `--body-grace`; slower ones get 408.
//! Gzip is inflated on a blocking thread, never on the async runtime: a
//! review saw `/healthz` take 11 s while 32 gzip bombs inflated there.
//!
//! Credentials change without a restart: the server certificate and key, the
//! client CA and the token file are looked at every `tls_reload` (2 s) and
//! reloaded when one changed (cert-manager and Secret volumes replace them in
//! place). A file that changed but does not load keeps the old one in force,
//! with a warning, so a half-written file never locks every client out.

use crate::buffer::wal::{Spooled, Wal, WalError};
use crate::ops::metrics::Metrics;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use http_body_util::BodyExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Pem { path: PathBuf, problem: String },
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("token file {path} line {line}: {problem}")]
    TokenFile {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Refused(String),
}

/// Who may post, and which cluster each client's events belong to.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// (token, cluster) pairs from the token file.
    pub tokens: Vec<(Vec<u8>, String)>,
    /// Client certificates are verified against a CA.
    pub mtls: bool,
    /// Allowed certificate names (CN or SAN) with their cluster; empty =
    /// any certificate the CA signed, cluster = its CN.
    pub mtls_allow: Vec<(String, String)>,
    pub allow_unauthenticated: bool,
    pub default_cluster: String,
}

/// Read a token file: one `TOKEN CLUSTER` per line; `#` starts a comment.
pub fn load_tokens(path: &Path) -> Result<Vec<(Vec<u8>, String)>, WebhookError> {
    let text = std::fs::read_to_string(path).map_err(|source| WebhookError::Read {
        what: "token file",
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(token), Some(cluster), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(WebhookError::TokenFile {
                path: path.to_path_buf(),
                line: i + 1,
                problem: "expected `TOKEN CLUSTER`".into(),
            });
        };
        if token.len() < 16 {
            return Err(WebhookError::TokenFile {
                path: path.to_path_buf(),
                line: i + 1,
                problem: "token shorter than 16 characters".into(),
            });
        }
        out.push((token.as_bytes().to_vec(), cluster.to_string()));
    }
    Ok(out)
}

/// What the TLS handshake proved about a connection.
#[derive(Debug, Clone, Default)]
pub struct ConnIdentity {
    /// CN first, then DNS/URI/IP SANs of a verified client certificate.
    pub cert_names: Option<Vec<String>>,
    /// The client's address, for logs.
    pub peer: Option<std::net::SocketAddr>,
}

impl Auth {
    /// The cluster of an authenticated request, or the status to answer.
    pub fn authenticate(
        &self,
        conn: &ConnIdentity,
        authorization: Option<&HeaderValue>,
    ) -> Result<String, StatusCode> {
        if let Some(names) = &conn.cert_names {
            if self.mtls_allow.is_empty() {
                return Ok(names
                    .first()
                    .cloned()
                    .unwrap_or_else(|| self.default_cluster.clone()));
            }
            for (allowed, cluster) in &self.mtls_allow {
                if names.iter().any(|n| n == allowed) {
                    return Ok(cluster.clone());
                }
            }
            // A valid certificate that is not on the allow-list; a token
            // may still authenticate the request.
            if authorization.is_none() {
                return Err(StatusCode::FORBIDDEN);
            }
        }
        if let Some(value) = authorization {
            // The scheme is case-insensitive (RFC 7235 §2.1): `bearer`
            // and `BEARER` are the same scheme as `Bearer`.
            let presented = value
                .to_str()
                .ok()
                .and_then(|v| v.trim_start().split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim())
                .unwrap_or("");
            // Compare against every token, without an early exit.
            let mut found: Option<&str> = None;
            for (token, cluster) in &self.tokens {
                if bool::from(token.as_slice().ct_eq(presented.as_bytes())) {
                    found = Some(cluster);
                }
            }
            return match found {
                Some(c) => Ok(c.to_string()),
                None => Err(StatusCode::UNAUTHORIZED),
            };
        }
        if self.allow_unauthenticated {
            return Ok(self.default_cluster.clone());
        }
        Err(StatusCode::UNAUTHORIZED)
    }

    pub fn is_configured(&self) -> bool {
        self.mtls || !self.tokens.is_empty()
    }
}

/// Serves the certificate and key from disk, reloading them when the files
/// change (cert-manager rotates them in place).
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    /// The pair in force, and the stamps of the two files it was loaded from.
    current: RwLock<(Arc<CertifiedKey>, PairStamp)>,
}

/// What says a credential file changed: its modification time and size (a rewrite within one
/// tick of a coarse clock still changes the size, mostly).
type FileStamp = (SystemTime, u64);

/// The stamps of a certificate and its key.
type PairStamp = (Option<FileStamp>, Option<FileStamp>);

fn stamp(p: &Path) -> Option<FileStamp> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, WebhookError> {
    let certs = load_certs(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| WebhookError::Pem {
        path: key.to_path_buf(),
        problem: format!("no usable private key: {e}"),
    })?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| WebhookError::Pem {
            path: key.to_path_buf(),
            problem: e.to_string(),
        })?;
    Ok(Arc::new(CertifiedKey::new(certs, signing)))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, WebhookError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| WebhookError::Pem {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| WebhookError::Pem {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(WebhookError::Pem {
            path: path.to_path_buf(),
            problem: "no PEM certificate found".into(),
        });
    }
    Ok(certs)
}

impl ReloadingCert {
    pub fn new(cert: &Path, key: &Path) -> Result<Arc<ReloadingCert>, WebhookError> {
        let ck = load_certified_key(cert, key)?;
        Ok(Arc::new(ReloadingCert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new((ck, (stamp(cert), stamp(key)))),
        }))
    }

    /// Reload if either file changed; keeps the old pair on error.
    pub fn refresh(&self) {
        let now = (stamp(&self.cert), stamp(&self.key));
        let known = self.current.read().map(|c| c.1).unwrap_or((None, None));
        if now == known {
            return;
        }
        match load_certified_key(&self.cert, &self.key) {
            Ok(ck) => {
                if let Ok(mut cur) = self.current.write() {
                    *cur = (ck, now);
                }
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS certificate changed but could not be loaded; keeping the old one")
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.0.clone())
    }
}

/// TLS settings of the server.
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

fn server_config(
    tls: &TlsSettings,
    resolver: Arc<ReloadingCert>,
) -> Result<rustls::ServerConfig, WebhookError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| WebhookError::Tls(e.to_string()))?;
    let builder = match &tls.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in load_certs(ca)? {
                roots.add(c).map_err(|e| WebhookError::Pem {
                    path: ca.clone(),
                    problem: e.to_string(),
                })?;
            }
            // Certificates are optional at the TLS layer so that token
            // clients can connect; a presented certificate must verify.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| WebhookError::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Names of a verified client certificate: CN, then SANs.
fn cert_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return vec![];
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_string))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(s)
                | x509_parser::extensions::GeneralName::URI(s)
                | x509_parser::extensions::GeneralName::RFC822Name(s) => names.push(s.to_string()),
                _ => {}
            }
        }
    }
    names
}

/// Granularity of the in-flight byte budget.
pub const INFLIGHT_UNIT: u64 = 64 << 10;

/// Permits for an in-flight budget of `bytes`, never less than one body.
pub fn inflight_permits(bytes: u64, max_body: usize) -> usize {
    (bytes.max(max_body as u64).div_ceil(INFLIGHT_UNIT)) as usize
}

/// Where accepted batches go before the 2xx.
pub enum Sink {
    /// The local write-ahead log (2xx after its fsync).
    Wal(Wal),
    /// Kafka (2xx after every delivery report).
    Kafka(Arc<crate::sinks::kafka::Relay>),
}

/// The limits on request bodies.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    /// Largest body as sent (413 above).
    pub max_body: usize,
    /// Bodies larger than this are streamed into the write-ahead log as
    /// they arrive rather than held in memory (0: never). Only plain
    /// bodies to the log: a gzip body and a body relayed to Kafka are held
    /// in memory, within `max_inflated`.
    pub spill: usize,
    /// Largest body held in memory: a gzip body after decoding (and as
    /// sent), or any body relayed to Kafka (413 above).
    pub max_inflated: usize,
    /// Bytes of bodies held in memory at once, all clients together.
    pub max_inflight_bytes: u64,
    /// After `grace`, a body must have arrived at this many bytes per
    /// second on average, or the request gets 408.
    pub min_rate: u64,
    pub grace: Duration,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            max_body: 1 << 30,
            spill: 8 << 20,
            max_inflated: 64 << 20,
            max_inflight_bytes: 512 << 20,
            min_rate: 16 << 10,
            grace: Duration::from_secs(5),
        }
    }
}

/// Everything the request handlers share.
pub struct App {
    /// Bytes of request bodies being read, inflated or appended right now,
    /// in 64 KiB units: bounds memory however many clients post at once.
    pub inflight: Arc<tokio::sync::Semaphore>,
    /// Each client's share of `inflight` (a quarter of it, at least one
    /// body), by cluster.
    shares: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>,
    share_permits: usize,
    /// Permits of `inflight` in all.
    permits: usize,
    /// Permits a spilling body holds: its queued frames and the writer's
    /// buffer ([`SPILL_BYTES`], or one in-memory body if that is less).
    spill_units: u32,
    pub sink: Sink,
    /// Replaced as a whole when the token file changes.
    pub auth: RwLock<Auth>,
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
    pub limits: BodyLimits,
}

impl App {
    pub fn new(
        sink: Sink,
        auth: Auth,
        metrics: Arc<Metrics>,
        ready: Arc<AtomicBool>,
        limits: BodyLimits,
    ) -> App {
        let mut limits = limits;
        // Spilling needs the log, and a limit above it.
        if !matches!(sink, Sink::Wal(_)) || limits.spill >= limits.max_body {
            limits.spill = 0;
        }
        // The largest body read into memory as sent: a plain body to the
        // log up to where it spills, else (gzip, Kafka) one within
        // `max_inflated`.
        let in_memory = limits.max_body.min(limits.max_inflated).max(limits.spill);
        let total = inflight_permits(limits.max_inflight_bytes, in_memory);
        let one_body = (in_memory as u64).div_ceil(INFLIGHT_UNIT) as usize;
        let share_permits = (total / 4).max(one_body * 2).min(total);
        // An inflated body must fit in a client's share beside its gzip
        // input, or it could never be taken.
        let raw = limits.max_body.min(limits.max_inflated) as u64;
        let room = (share_permits as u64 * INFLIGHT_UNIT).saturating_sub(raw);
        if (limits.max_inflated as u64) > room {
            tracing::info!(
                max_inflated = limits.max_inflated,
                room,
                "--max-inflated-body lowered to what a client's share of --max-inflight-bytes holds"
            );
            limits.max_inflated = room.max(raw) as usize;
        }
        App {
            inflight: Arc::new(tokio::sync::Semaphore::new(total)),
            shares: Default::default(),
            share_permits,
            permits: total,
            spill_units: u32::try_from(
                one_body
                    .min(SPILL_BYTES.div_ceil(INFLIGHT_UNIT) as usize)
                    .max(1),
            )
            .unwrap_or(u32::MAX),
            sink,
            auth: RwLock::new(auth),
            metrics,
            ready,
            limits,
        }
    }

    /// Take the tokens of `file` if it changed since `known` (its modification time and size);
    /// returns what is known now. A file that does not load keeps the tokens in force.
    fn reload_tokens(&self, file: &Path, known: Option<FileStamp>) -> Option<FileStamp> {
        let now = stamp(file);
        if now == known {
            return known;
        }
        match load_tokens(file) {
            Ok(tokens) => {
                let n = tokens.len();
                if let Ok(mut auth) = self.auth.write() {
                    auth.tokens = tokens;
                }
                tracing::info!(file = %file.display(), tokens = n, "token file reloaded");
                now
            }
            Err(e) => {
                tracing::warn!(error = %e, "token file changed but could not be loaded; the tokens before stay in force");
                self.metrics.credential_reload_errors.inc();
                // Looked at again when it changes again.
                now
            }
        }
    }

    fn share(&self, client: &str) -> Arc<tokio::sync::Semaphore> {
        let mut shares = self.shares.lock().unwrap_or_else(|e| e.into_inner());
        shares
            .entry(client.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.share_permits)))
            .clone()
    }

    /// Take `units` of the budget for `client`: its share first, then the
    /// whole. `None` if they are not free within `wait`.
    async fn reserve(&self, client: &str, units: u32, wait: Duration) -> Option<Budget> {
        let share = self.share(client);
        let got = tokio::time::timeout(wait, async {
            let own = share.clone().acquire_many_owned(units).await.ok()?;
            let all = self.inflight.clone().acquire_many_owned(units).await.ok()?;
            Some(Budget {
                own,
                all,
                share,
                inflight: self.inflight.clone(),
            })
        })
        .await
        .ok()
        .flatten();
        self.note_inflight();
        got
    }

    fn note_inflight(&self) {
        let used = self
            .permits
            .saturating_sub(self.inflight.available_permits());
        self.metrics
            .inflight_bytes
            .set((used as u64 * INFLIGHT_UNIT) as i64);
    }
}

/// Units of the in-flight budget held by one request (released on drop).
struct Budget {
    own: tokio::sync::OwnedSemaphorePermit,
    all: tokio::sync::OwnedSemaphorePermit,
    share: Arc<tokio::sync::Semaphore>,
    inflight: Arc<tokio::sync::Semaphore>,
}

impl Budget {
    fn units(&self) -> usize {
        self.all.num_permits()
    }

    /// Grow to `units` without waiting (from a blocking thread).
    fn try_grow(&mut self, units: usize) -> bool {
        let more = units.saturating_sub(self.units());
        if more == 0 {
            return true;
        }
        let Ok(n) = u32::try_from(more) else {
            return false;
        };
        let Ok(own) = self.share.clone().try_acquire_many_owned(n) else {
            return false;
        };
        let Ok(all) = self.inflight.clone().try_acquire_many_owned(n) else {
            return false;
        };
        self.own.merge(own);
        self.all.merge(all);
        true
    }
}

/// The TLS acceptor, rebuilt when the client CA changes (the server certificate reloads
/// through its [`ReloadingCert`]). A connection takes the acceptor in force when it arrives.
struct ReloadingTls {
    settings: TlsSettings,
    resolver: Arc<ReloadingCert>,
    acceptor: RwLock<(tokio_rustls::TlsAcceptor, Option<FileStamp>)>,
}

impl ReloadingTls {
    fn new(settings: TlsSettings) -> Result<ReloadingTls, WebhookError> {
        let resolver = ReloadingCert::new(&settings.cert, &settings.key)?;
        let ca = settings.client_ca.as_deref().and_then(stamp);
        let config = server_config(&settings, resolver.clone())?;
        Ok(ReloadingTls {
            acceptor: RwLock::new((tokio_rustls::TlsAcceptor::from(Arc::new(config)), ca)),
            settings,
            resolver,
        })
    }

    fn current(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.acceptor.read().ok().map(|a| a.0.clone())
    }

    fn refresh(&self, metrics: &Metrics) {
        self.resolver.refresh();
        let Some(ca) = &self.settings.client_ca else {
            return;
        };
        let now = stamp(ca);
        let known = self.acceptor.read().ok().and_then(|a| a.1);
        if now == known {
            return;
        }
        match server_config(&self.settings, self.resolver.clone()) {
            Ok(config) => {
                if let Ok(mut a) = self.acceptor.write() {
                    *a = (tokio_rustls::TlsAcceptor::from(Arc::new(config)), now);
                }
                tracing::info!(ca = %ca.display(), "client CA reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "client CA changed but could not be loaded; the CA before stays in force");
                metrics.credential_reload_errors.inc();
                if let Ok(mut a) = self.acceptor.write() {
                    a.1 = now;
                }
            }
        }
    }
}

/// Server settings.
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub tls: Option<TlsSettings>,
    pub paths: Vec<String>,
    /// How often the credential files are looked at (certificate, key, client CA, tokens).
    pub tls_reload: Duration,
    /// The token file, reloaded when it changes.
    pub token_file: Option<PathBuf>,
}

/// Accept connections until `cancel` fires, then finish in-flight requests.
pub async fn serve(
    settings: ServerSettings,
    app: Arc<App>,
    cancel: CancellationToken,
) -> Result<(), WebhookError> {
    let tls = match settings.tls {
        Some(t) => Some(Arc::new(ReloadingTls::new(t)?)),
        None => None,
    };
    {
        let (tls, app, token_file) = (tls.clone(), app.clone(), settings.token_file.clone());
        let mut tokens = token_file.as_deref().and_then(stamp);
        let every = settings.tls_reload;
        let stop = cancel.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.cancelled() => return,
                }
                if let Some(t) = &tls {
                    t.refresh(&app.metrics);
                }
                if let Some(f) = &token_file {
                    tokens = app.reload_tokens(f, tokens);
                }
            }
        });
    }
    let mut router = Router::new().merge(crate::ops::routes(
        app.metrics.clone(),
        app.ready.clone(),
        "replaying write-ahead log",
    ));
    for p in &settings.paths {
        router = router.route(p, post(ingest));
    }
    let router = router.with_state(app.clone());
    let listener =
        TcpListener::bind(settings.listen)
            .await
            .map_err(|source| WebhookError::Bind {
                addr: settings.listen,
                source,
            })?;
    let local = listener.local_addr().map_err(|source| WebhookError::Bind {
        addr: settings.listen,
        source,
    })?;
    // Tests and scripts read this line to learn the port.
    println!(
        "listening on {}://{local}",
        if tls.is_some() { "https" } else { "http" }
    );
    tracing::info!(%local, tls = tls.is_some(), "webhook listening");
    let tracker = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = tls.as_ref().map(|t| t.current());
        let router = router.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            match acceptor {
                // The acceptor's lock was poisoned (a panic while it was replaced): refuse
                // rather than fall back to plain HTTP.
                Some(None) => {}
                Some(Some(acceptor)) => {
                    let tls =
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                    let names = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| cert_names(c.as_ref()));
                    let id = ConnIdentity {
                        cert_names: names,
                        peer: Some(peer),
                    };
                    serve_conn(tls, id, router, cancel).await;
                }
                None => {
                    let id = ConnIdentity {
                        peer: Some(peer),
                        ..Default::default()
                    };
                    serve_conn(tcp, id, router, cancel).await
                }
            }
        });
    }
    drop(listener);
    tracker.close();
    // In-flight requests finish (their appends complete); bounded wait.
    if tokio::time::timeout(Duration::from_secs(40), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 40 s; closing them");
    }
    Ok(())
}

async fn serve_conn<S>(stream: S, id: ConnIdentity, router: Router, cancel: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let router = router.layer(axum::Extension(id));
    let svc = hyper_util::service::TowerToHyperService::new(router);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

fn answer(app: &App, code: StatusCode, msg: &str) -> Response {
    app.metrics
        .requests
        .with_label_values(&[code.as_str()])
        .inc();
    let body = serde_json::json!({"status": if code.is_success() {"Success"} else {"Failure"}, "message": msg, "code": code.as_u16()});
    let mut r = (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    // These are answered without reading the body: the connection cannot
    // be reused, so say so instead of letting the client find out.
    if matches!(
        code,
        StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::BAD_REQUEST
            | StatusCode::REQUEST_TIMEOUT
    ) {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if code == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    r
}

/// Past this many bytes an oversized body is not drained: the connection
/// is closed instead.
const DRAIN_CAP: u64 = 64 << 20;

/// Log and count a refused oversized body loudly: kube-apiserver retries a
/// batch a few times and then drops every event in it.
fn report_too_large(
    app: &App,
    cluster: &str,
    conn: &ConnIdentity,
    size: u64,
    limit: usize,
    what: &str,
    flag: &str,
) {
    app.metrics.too_large.inc();
    app.metrics.too_large_bytes.inc_by(size);
    tracing::error!(
        cluster,
        client = %conn.peer.map_or_else(|| "unknown".to_string(), |p| p.to_string()),
        size,
        limit,
        "refused a {what} of at least {size} bytes with 413 (limit {limit}, {flag}); kube-apiserver retries, \
         then DROPS EVERY EVENT of the batch. Raise {flag}, or start \
         kube-apiserver with --audit-webhook-truncate-enabled (batches split at \
         --audit-webhook-truncate-max-batch-size, 10 MiB by default)"
    );
}

/// Answer 413 for an oversized body. The rest of the body is read and
/// discarded (bounded), so the client sees the answer instead of a broken
/// pipe and the connection stays usable; nothing is kept in memory.
async fn too_large(app: &App, mut body: Body, already: u64) -> Response {
    let mut seen = already;
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while seen <= DRAIN_CAP {
            match body.frame().await {
                Some(Ok(f)) => seen += f.data_ref().map(|d| d.len() as u64).unwrap_or(0),
                Some(Err(_)) => return false,
                None => return true,
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    let mut r = answer(
        app,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body over the size limit",
    );
    if drained {
        r.headers_mut().remove(header::CONNECTION);
    }
    r
}

/// Why a gzip body was not inflated.
enum Inflate {
    /// Over the inflated cap.
    TooLarge,
    /// The budget had no room for the output in time.
    Busy,
}

/// Gunzip on the calling (blocking) thread, charging the output to
/// `budget` as it grows. A body that is not valid gzip is returned as
/// received: the flush stage dead-letters it with the reason.
fn gunzip(data: Vec<u8>, cap: usize, budget: &mut Budget) -> Result<Vec<u8>, Inflate> {
    let mut dec = flate2::read::MultiGzDecoder::new(&data[..]);
    let mut out: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; INFLIGHT_UNIT as usize];
    loop {
        let n = match dec.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) => return Ok(data),
        };
        if out.len() + n > cap {
            return Err(Inflate::TooLarge);
        }
        if out.len() + n > out.capacity() {
            // Grow by doubling, charged before the allocation: the input's
            // units plus the new capacity.
            let want = (out.capacity() * 2).max(out.len() + n).min(cap);
            let units = (data.len() as u64 + want as u64).div_ceil(INFLIGHT_UNIT) as usize;
            let deadline = Instant::now() + Duration::from_secs(2);
            while !budget.try_grow(units) {
                if Instant::now() >= deadline {
                    return Err(Inflate::Busy);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            out.reserve_exact(want - out.len());
        }
        out.extend_from_slice(&buf[..n]);
    }
    Ok(out)
}

/// Read a body of at most `max` bytes, at `min_rate` after `grace`.
enum BodyRead {
    Done(Vec<u8>),
    /// Over `max`: everything read (`kept`, the frame that passed `max`
    /// included) and its length.
    TooLarge {
        kept: Vec<u8>,
        seen: u64,
    },
    TooSlow {
        seen: u64,
    },
    Broken,
}

/// How fast a body must arrive: by `grace`, then at `min_rate` on average.
struct Pace {
    started: tokio::time::Instant,
    grace: Duration,
    min_rate: u64,
}

impl Pace {
    fn new(limits: &BodyLimits) -> Pace {
        Pace {
            started: tokio::time::Instant::now(),
            grace: limits.grace,
            min_rate: limits.min_rate,
        }
    }

    /// The latest moment the next bytes may arrive after `seen` bytes: by
    /// then the body must average `min_rate` since `grace`.
    fn due(&self, seen: u64) -> tokio::time::Instant {
        self.started
            + self.grace
            + Duration::from_secs_f64(seen as f64 / self.min_rate.max(1) as f64)
    }

    /// The next frame's data (`Ok(None)` at the end).
    async fn next(&self, body: &mut Body, seen: u64) -> Result<Option<bytes::Bytes>, BodyRead> {
        loop {
            match tokio::time::timeout_at(self.due(seen), body.frame()).await {
                Err(_) => return Err(BodyRead::TooSlow { seen }),
                Ok(None) => return Ok(None),
                Ok(Some(Err(_))) => return Err(BodyRead::Broken),
                Ok(Some(Ok(f))) => {
                    if let Ok(data) = f.into_data() {
                        return Ok(Some(data));
                    }
                    // Trailers: nothing to keep.
                }
            }
        }
    }
}

async fn read_body(body: &mut Body, max: usize, capacity: usize, pace: &Pace) -> BodyRead {
    let mut buf: Vec<u8> = Vec::with_capacity(capacity.min(max));
    loop {
        let data = match pace.next(body, buf.len() as u64).await {
            Ok(Some(d)) => d,
            Ok(None) => return BodyRead::Done(buf),
            Err(e) => return e,
        };
        if buf.len() + data.len() > max {
            let seen = (buf.len() + data.len()) as u64;
            buf.extend_from_slice(&data);
            return BodyRead::TooLarge { kept: buf, seen };
        }
        buf.extend_from_slice(&data);
    }
}

/// Bytes of the in-flight budget a spilling body holds: the frames queued
/// for the writer and its buffer.
const SPILL_BYTES: u64 = 4 << 20;
/// Frames queued between the connection and the blocking writer.
const SPILL_QUEUE: usize = 8;

/// Answer 503 when the in-flight budget has no room for a body in time.
fn no_room(app: &App) -> Response {
    answer(
        app,
        StatusCode::SERVICE_UNAVAILABLE,
        "too many request bytes in flight",
    )
}

/// Answer 408 for a body that arrives too slowly.
fn too_slow(app: &App, cluster: &str, seen: u64) -> Response {
    app.metrics.body_timeouts.inc();
    tracing::warn!(
        cluster,
        seen,
        "request body arriving too slowly; answering 408"
    );
    let mut r = answer(
        app,
        StatusCode::REQUEST_TIMEOUT,
        "request body arrived too slowly",
    );
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Stream a large body into the write-ahead log as it arrives, after the
/// `first` bytes already read, then append its record: 2xx once both are
/// fsynced. Memory held: the queue of frames and the writer's buffer,
/// whatever the body's size.
#[allow(clippy::too_many_arguments)]
async fn spill_body(
    app: &App,
    cluster: &str,
    conn: &ConnIdentity,
    first: Vec<u8>,
    mut body: Body,
    pace: &Pace,
    declared: Option<u64>,
    budget: Budget,
    started: Instant,
) -> Response {
    let Sink::Wal(wal) = &app.sink else {
        return answer(app, StatusCode::INTERNAL_SERVER_ERROR, "no log to spill to");
    };
    let max = app.limits.max_body;
    if let Err(e) = wal.room_for(declared.unwrap_or(first.len() as u64)) {
        tracing::warn!(error = %e, "refusing batch");
        return answer(app, StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
    }
    enum Msg {
        Data(bytes::Bytes),
        End,
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Msg>(SPILL_QUEUE);
    let log = wal.clone();
    let mut seen = first.len() as u64;
    // The writer: blocking file I/O off the runtime. Without `End` (the
    // body failed) the spool is dropped, which deletes its file.
    let writer = tokio::task::spawn_blocking(move || -> Result<Option<Spooled>, WalError> {
        let mut spool = log.spool()?;
        spool.write(&first)?;
        drop(first);
        while let Some(msg) = rx.blocking_recv() {
            match msg {
                Msg::Data(d) => spool.write(&d)?,
                Msg::End => return spool.finish().map(Some),
            }
        }
        Ok(None)
    });
    // The log filled up while this body streamed (others were appended,
    // or bodies stream side by side).
    let mut full = None;
    let read = loop {
        match pace.next(&mut body, seen).await {
            Ok(Some(d)) => {
                seen += d.len() as u64;
                if let Err(e) = wal.room_for(d.len() as u64) {
                    full = Some(e);
                    break Ok(());
                }
                if seen > max as u64 {
                    break Err(BodyRead::TooLarge {
                        kept: Vec::new(),
                        seen,
                    });
                }
                if tx.send(Msg::Data(d)).await.is_err() {
                    // The writer stopped: its error is below.
                    break Ok(());
                }
            }
            Ok(None) => {
                let _ = tx.send(Msg::End).await;
                break Ok(());
            }
            Err(e) => break Err(e),
        }
    };
    drop(tx);
    let written = writer.await;
    drop(budget);
    app.note_inflight();
    match read {
        Err(BodyRead::TooLarge { seen, .. }) => {
            report_too_large(app, cluster, conn, seen, max, "body", "--max-body");
            return too_large(app, body, seen).await;
        }
        Err(BodyRead::TooSlow { seen }) => return too_slow(app, cluster, seen),
        Err(_) => return answer(app, StatusCode::BAD_REQUEST, "body could not be read"),
        Ok(()) => {}
    }
    if let Some(e) = full {
        tracing::warn!(error = %e, "refusing batch while it streams: the write-ahead log is full");
        let mut r = answer(app, StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
        // The rest of the body is not read.
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    let spooled = match written {
        Ok(Ok(Some(s))) => s,
        Ok(Ok(None)) => return answer(app, StatusCode::BAD_REQUEST, "body could not be read"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "refusing batch: cannot spill it to the write-ahead log");
            return answer(app, StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
        }
        Err(e) => {
            tracing::error!(error = %e, "the spill writer stopped; refusing batch");
            return answer(
                app,
                StatusCode::SERVICE_UNAVAILABLE,
                "write-ahead log unavailable",
            );
        }
    };
    let n = spooled.len();
    match wal.append_spilled(cluster, spooled).await {
        Ok(seq) => {
            app.metrics.spilled.inc();
            app.metrics.spilled_bytes.inc_by(n);
            app.metrics.bytes_received.inc_by(n);
            app.metrics
                .ack_latency
                .observe(started.elapsed().as_secs_f64());
            tracing::info!(
                cluster,
                bytes = n,
                seq,
                "large batch streamed into the write-ahead log"
            );
            answer(app, StatusCode::OK, "stored")
        }
        Err(e) => {
            tracing::warn!(error = %e, "refusing batch");
            answer(app, StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
    }
}

async fn ingest(
    State(app): State<Arc<App>>,
    Extension(conn): Extension<ConnIdentity>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let authenticated = match app.auth.read() {
        Ok(auth) => auth.authenticate(&conn, headers.get(header::AUTHORIZATION)),
        Err(_) => Err(StatusCode::INTERNAL_SERVER_ERROR),
    };
    let cluster = match authenticated {
        Ok(c) => c,
        Err(code) => return answer(&app, code, "authentication required"),
    };
    let limits = &app.limits;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let gzipped = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    // Plain bodies to the log past `spill` go to disk as they arrive; the
    // rest are held in memory, within `max_inflated`.
    let spill = if gzipped { 0 } else { limits.spill };
    // `in_memory`: the most read into memory; `hard`: the most taken at all
    // (413 above, naming `limit_flag`).
    let (in_memory, hard, limit_flag) = if spill > 0 {
        (spill, limits.max_body, "--max-body")
    } else {
        let held = limits.max_body.min(limits.max_inflated);
        let flag = if held < limits.max_body {
            "--max-inflated-body"
        } else {
            "--max-body"
        };
        (held, held, flag)
    };
    if declared.is_some_and(|n| n > hard as u64) {
        let size = declared.unwrap_or(0);
        report_too_large(&app, &cluster, &conn, size, hard, "body", limit_flag);
        return too_large(&app, body, size).await;
    }
    let pace = Pace::new(limits);
    let mut body = body;
    if spill > 0 && declared.is_some_and(|n| n > spill as u64) {
        // Known to be large: straight to disk, with only a stream's
        // buffers charged to memory.
        let Some(budget) = app
            .reserve(&cluster, app.spill_units, Duration::from_secs(2))
            .await
        else {
            return no_room(&app);
        };
        return spill_body(
            &app,
            &cluster,
            &conn,
            Vec::new(),
            body,
            &pace,
            declared,
            budget,
            started,
        )
        .await;
    }
    // Reserve memory for the body before reading it (the declared size, or
    // the in-memory limit when the client streams without a length).
    let size = declared.unwrap_or(in_memory as u64);
    let reserve = u32::try_from(size.div_ceil(INFLIGHT_UNIT).max(1)).unwrap_or(u32::MAX);
    let Some(mut budget) = app.reserve(&cluster, reserve, Duration::from_secs(2)).await else {
        return no_room(&app);
    };
    let bytes = match read_body(&mut body, in_memory, size as usize, &pace).await {
        BodyRead::Done(b) => b,
        BodyRead::TooLarge { kept, .. } if spill > 0 => {
            // Longer than it said, or it said nothing: the rest streams to
            // disk after what was read (and --max-body applies there).
            return spill_body(
                &app, &cluster, &conn, kept, body, &pace, declared, budget, started,
            )
            .await;
        }
        BodyRead::TooLarge { seen, .. } => {
            report_too_large(&app, &cluster, &conn, seen, in_memory, "body", limit_flag);
            return too_large(&app, body, seen).await;
        }
        BodyRead::Broken => return answer(&app, StatusCode::BAD_REQUEST, "body could not be read"),
        BodyRead::TooSlow { seen } => return too_slow(&app, &cluster, seen),
    };
    let body = if gzipped {
        let cap = limits.max_inflated;
        let inflated = tokio::task::spawn_blocking(move || {
            let r = gunzip(bytes, cap, &mut budget);
            (r, budget)
        })
        .await;
        match inflated {
            Ok((Ok(b), kept)) => {
                budget = kept;
                b
            }
            Ok((Err(Inflate::TooLarge), _)) => {
                app.note_inflight();
                report_too_large(
                    &app,
                    &cluster,
                    &conn,
                    cap as u64 + 1,
                    cap,
                    "gzip body inflating",
                    "--max-inflated-body",
                );
                return answer(
                    &app,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "decompressed body over the size limit (--max-inflated-body)",
                );
            }
            Ok((Err(Inflate::Busy), _)) | Err(_) => {
                app.note_inflight();
                return no_room(&app);
            }
        }
    } else {
        bytes
    };
    app.note_inflight();
    let n = body.len() as u64;
    let result = match &app.sink {
        // Every log error (full, busy, I/O, closed) is temporary from the
        // client's point of view: 503 and retry.
        Sink::Wal(wal) => wal
            .append(&cluster, body)
            .await
            .map(|_| ())
            .map_err(|e: WalError| e.to_string()),
        Sink::Kafka(relay) => match relay.send(&cluster, &body).await {
            Ok(events) => {
                app.metrics.kafka_produced.inc_by(events as u64);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        },
    };
    drop(budget);
    app.note_inflight();
    match result {
        Ok(()) => {
            app.metrics.bytes_received.inc_by(n);
            app.metrics
                .ack_latency
                .observe(started.elapsed().as_secs_f64());
            answer(&app, StatusCode::OK, "stored")
        }
        Err(e) => {
            tracing::warn!(error = %e, "refusing batch");
            answer(&app, StatusCode::SERVICE_UNAVAILABLE, &e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_rules() {
        let auth = Auth {
            tokens: vec![(b"0123456789abcdef-token".to_vec(), "tok-cluster".into())],
            mtls: true,
            mtls_allow: vec![("apiserver-a".into(), "cluster-a".into())],
            allow_unauthenticated: false,
            default_cluster: "default".into(),
        };
        let cert = |n: &str| ConnIdentity {
            cert_names: Some(vec![n.to_string()]),
            peer: None,
        };
        let bearer = HeaderValue::from_static("Bearer 0123456789abcdef-token");
        let wrong = HeaderValue::from_static("Bearer nope-nope-nope-nope");
        let none = ConnIdentity::default();
        assert_eq!(
            auth.authenticate(&cert("apiserver-a"), None),
            Ok("cluster-a".into())
        );
        assert_eq!(
            auth.authenticate(&cert("other"), None),
            Err(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            auth.authenticate(&cert("other"), Some(&bearer)),
            Ok("tok-cluster".into())
        );
        assert_eq!(
            auth.authenticate(&none, Some(&bearer)),
            Ok("tok-cluster".into())
        );
        assert_eq!(
            auth.authenticate(&none, Some(&wrong)),
            Err(StatusCode::UNAUTHORIZED)
        );
        for scheme in ["bearer", "BEARER", "BeArEr"] {
            let h =
                HeaderValue::from_str(&format!("{scheme} 0123456789abcdef-token")).expect("header");
            assert_eq!(
                auth.authenticate(&none, Some(&h)),
                Ok("tok-cluster".into()),
                "{scheme}"
            );
        }
        for other in ["Basic 0123456789abcdef-token", "0123456789abcdef-token"] {
            let h = HeaderValue::from_static(other);
            assert_eq!(
                auth.authenticate(&none, Some(&h)),
                Err(StatusCode::UNAUTHORIZED),
                "{other}"
            );
        }
        assert_eq!(
            auth.authenticate(&none, None),
            Err(StatusCode::UNAUTHORIZED)
        );
        let open = Auth {
            allow_unauthenticated: true,
            ..auth.clone()
        };
        assert_eq!(open.authenticate(&none, None), Ok("default".into()));
    }

    #[test]
    fn token_file_errors_name_the_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("tokens");
        std::fs::write(&p, "# comment\n0123456789abcdef-token cluster-a\nshort c\n")
            .expect("write");
        let err = load_tokens(&p).expect_err("short token").to_string();
        assert!(err.contains("line 3"), "{err}");
    }
}
