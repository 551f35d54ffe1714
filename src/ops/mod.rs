//! Operating the long-running commands: Prometheus metrics and the endpoints that serve them.
//!
//! `/healthz` (the process answers), `/readyz` (it is doing its job: the webhook's log is
//! replayed, the consumer has joined its group) and `/metrics` are the same routes wherever they
//! are served: on the webhook's own listener, or on `--metrics-listen` for `consume`.

pub mod metrics;

use axum::http::{header, StatusCode};
use axum::routing::get;
use metrics::Metrics;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The three operations routes, for any router state. `not_ready` is `/readyz`'s body while
/// `ready` is false (say what is awaited).
pub fn routes<S: Clone + Send + Sync + 'static>(
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    not_ready: &'static str,
) -> axum::Router<S> {
    axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || async move {
                if ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, not_ready)
                }
            }),
        )
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    metrics.render(),
                )
            }),
        )
}

/// Serve [`routes`] over plain HTTP on `listen` until `cancel` fires (for commands without a
/// server of their own). Returns the bound address (port 0 picks one).
pub async fn serve(
    listen: std::net::SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    cancel: CancellationToken,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let router: axum::Router = routes(metrics, ready, "starting");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
    });
    Ok(addr)
}
