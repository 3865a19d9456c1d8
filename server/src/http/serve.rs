//! The accept loop of the HTTP API, bounded so that the port anyone may reach cannot take
//! the server's memory or descriptors: at most `[http] max_connections` connections at once
//! (more are closed at once), a request's headers must arrive within
//! [`HEADER_READ_TIMEOUT`] (which also closes a kept-alive connection left idle that long),
//! and with `[http] tls_cert` every connection is TLS (rustls).
//!
//! axum gives the routing; the loop is our own rather than `axum::serve` for those bounds
//! and for TLS. Connections are kept alive (HTTP/1.1): a backend polling many devices would
//! otherwise pay a TCP handshake per request. Event streams are long-lived connections and
//! count against the same bound.
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Time a client has to send a request's headers, and most a kept-alive connection may idle.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to serve.
pub struct Listener {
    /// The bound socket.
    pub tcp: TcpListener,
    /// HTTPS when set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Connections at once.
    pub max_connections: usize,
}

/// Serves `app` on `listener` until the task running it is aborted, which also ends the
/// connections in progress (they live in this task's [`JoinSet`]).
pub async fn serve(listener: Listener, app: Router) {
    let tls = listener.tls.map(tokio_rustls::TlsAcceptor::from);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.tcp.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "HTTP accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if connections.len() >= listener.max_connections {
                    tracing::debug!(%peer, "HTTP connection refused: too many at once");
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(app.clone());
                let tls = tls.clone();
                connections.spawn(async move {
                    let mut builder = hyper::server::conn::http1::Builder::new();
                    builder
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .keep_alive(true);
                    let result = match tls {
                        None => builder.serve_connection(TokioIo::new(stream), service).await,
                        Some(acceptor) => {
                            let handshake = tokio::time::timeout(
                                TLS_HANDSHAKE_TIMEOUT,
                                acceptor.accept(stream),
                            );
                            match handshake.await {
                                Ok(Ok(s)) => builder.serve_connection(TokioIo::new(s), service).await,
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "HTTPS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "HTTPS handshake timed out");
                                    return;
                                }
                            }
                        }
                    };
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "HTTP connection failed");
                    }
                });
            }
        }
    }
}
