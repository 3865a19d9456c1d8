//! The HTTP API: for now only `GET /metrics`, the
//! Prometheus text of [`crate::metrics`]; anything else is 404 (405 for another method on
//! `/metrics`). The REST resources and the event stream are to join [`router`] later.
//!
//! axum gives the routing; the accept loop is our own rather than `axum::serve`, so that the
//! port anyone may reach has bounds: at most [`MAX_CONNECTIONS`] connections at once (more
//! are closed at once), a request's headers must arrive within [`HEADER_READ_TIMEOUT`], and a
//! connection lives at most [`CONNECTION_TIMEOUT`] and serves one request (no keep-alive: a
//! scrape every few seconds gains nothing from it, and an idle connection would hold a slot).
use crate::metrics::{Metrics, CONTENT_TYPE};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a connection is kept, whatever it does.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// The routes: `GET /metrics`.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(metrics)
}

async fn metrics_text(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        metrics.snapshot().render(),
    )
}

/// Serves `app` on `listener` until the task running it is aborted, which also ends the
/// connections in progress (they live in this task's [`JoinSet`]).
pub async fn serve(listener: TcpListener, app: Router) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "HTTP accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if connections.len() >= MAX_CONNECTIONS {
                    tracing::debug!(%peer, "HTTP connection refused: too many at once");
                    continue;
                }
                let service = TowerToHyperService::new(app.clone());
                connections.spawn(async move {
                    let mut builder = hyper::server::conn::http1::Builder::new();
                    builder
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .keep_alive(false);
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "HTTP connection failed"),
                        Err(_) => tracing::debug!(%peer, "HTTP connection timed out"),
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::{DeregisterReason, DeviceEvent};
    use crate::store::StoreStats;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One raw HTTP/1.0 exchange: the status code and the whole response.
    async fn request(addr: SocketAddr, line: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("{line} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, text)
    }

    #[tokio::test]
    async fn metrics_are_served_and_other_paths_are_not_found() {
        let metrics = Arc::new(Metrics::new(Arc::new(StoreStats::default()), None));
        metrics.on_event(&DeviceEvent::Deregistered {
            endpoint: "e".into(),
            reason: DeregisterReason::Expired,
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(serve(listener, router(metrics.clone())));

        let (status, text) = request(addr, "GET /metrics").await;
        assert_eq!(status, 200, "{text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{text}"
        );
        assert!(
            text.contains("\nlwm2m_deregistrations_total{reason=\"expired\"} 1\n"),
            "{text}"
        );
        // The numbers are read at each scrape.
        metrics.set_registered_clients(12);
        let (_, text) = request(addr, "GET /metrics").await;
        assert!(text.contains("\nlwm2m_registered_clients 12\n"), "{text}");

        assert_eq!(request(addr, "GET /").await.0, 404);
        assert_eq!(request(addr, "GET /api/clients").await.0, 404);
        assert_eq!(request(addr, "POST /metrics").await.0, 405);
        task.abort();
    }
}
