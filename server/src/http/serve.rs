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
/// Longest pause while a client sends a request's body: a client that starts a body and
/// stops would otherwise hold its connection slot for as long as it likes.
pub(super) const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
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
    /// Time to send a request's headers, and the longest idle time between requests
    /// ([`HEADER_READ_TIMEOUT`]).
    pub header_timeout: Duration,
}

/// Middleware: a request body that pauses longer than `idle` fails (the handler answers
/// with an error and the connection is closed) instead of holding the connection.
pub(super) async fn body_idle_timeout(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    next.run(with_idle_timeout(request, BODY_IDLE_TIMEOUT))
        .await
}

fn with_idle_timeout(request: axum::extract::Request, idle: Duration) -> axum::extract::Request {
    use axum::body::HttpBody;
    use futures_util::StreamExt;
    if request.body().is_end_stream() {
        return request;
    }
    let (parts, body) = request.into_parts();
    let chunks =
        futures_util::stream::unfold(Some(body.into_data_stream()), move |state| async move {
            let mut stream = state?;
            match tokio::time::timeout(idle, stream.next()).await {
                Ok(Some(chunk)) => Some((chunk, Some(stream))),
                Ok(None) => None,
                Err(_) => {
                    let e = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("the request body paused for more than {idle:?}"),
                    );
                    Some((Err(axum::Error::new(e)), None))
                }
            }
        });
    axum::extract::Request::from_parts(parts, axum::body::Body::from_stream(chunks))
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
                let header_timeout = listener.header_timeout;
                connections.spawn(async move {
                    let mut builder = hyper::server::conn::http1::Builder::new();
                    builder
                        .timer(TokioTimer::new())
                        .header_read_timeout(header_timeout)
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(max_connections: usize, header_timeout: Duration) -> std::net::SocketAddr {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let app = Router::new().route("/", get(|| async { "hi" }));
        let listener = Listener {
            tcp,
            tls: None,
            max_connections,
            header_timeout,
        };
        tokio::spawn(serve(listener, app));
        addr
    }

    /// Reads until the end of one response's headers and body ("hi").
    async fn response(s: &mut tokio::net::TcpStream) -> String {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        while !buf.ends_with(b"hi") {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8(buf).unwrap()
    }

    #[tokio::test]
    async fn connections_are_kept_alive_and_closed_when_idle() {
        let addr = start(4, Duration::from_millis(300)).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        for _ in 0..3 {
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            assert!(response(&mut s).await.starts_with("HTTP/1.1 200"));
        }
        // Idle past the header timeout: the server closes the connection.
        let mut rest = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut rest))
            .await
            .expect("closed within the header timeout")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }

    #[tokio::test]
    async fn a_body_that_stops_coming_fails_instead_of_holding_the_request() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let app = Router::new()
            .route(
                "/",
                axum::routing::post(
                    |body: axum::body::Bytes| async move { format!("{}", body.len()) },
                ),
            )
            .layer(axum::middleware::from_fn(
                |r, n: axum::middleware::Next| async move {
                    n.run(with_idle_timeout(r, Duration::from_millis(300)))
                        .await
                },
            ));
        let listener = Listener {
            tcp,
            tls: None,
            max_connections: 4,
            header_timeout: Duration::from_secs(60),
        };
        tokio::spawn(serve(listener, app));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-part")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        let text = String::from_utf8_lossy(&buf);
        assert!(read.is_ok(), "still waiting for the body");
        assert!(text.starts_with("HTTP/1.1 4"), "{text}");
    }

    #[tokio::test]
    async fn connections_past_the_bound_are_closed_at_once() {
        // Held connections stay open: their idle time is far from the header timeout.
        let addr = start(4, Duration::from_secs(60)).await;
        let mut held = Vec::new();
        for _ in 0..4 {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            response(&mut s).await;
            held.push(s);
        }
        let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = extra.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf))
            .await
            .expect("closed at once")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
}
