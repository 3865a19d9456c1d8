//! The admin channel's client, used by the CLI: one request, one reply, with a deadline.
use super::protocol::{read_line, AdminOp, AdminReply, MAX_REPLY_LEN};
use std::io;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// How long the client waits for a reply.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Sends `op` to the server listening on `path` and returns its reply. A missing socket
/// (`NotFound`) or one nobody listens on (`ConnectionRefused`) means no server is running.
pub async fn call(path: &Path, op: &AdminOp) -> io::Result<AdminReply> {
    let mut stream = UnixStream::connect(path).await?;
    let mut text = serde_json::to_vec(op).map_err(io::Error::other)?;
    text.push(b'\n');
    let exchange = async {
        stream.write_all(&text).await?;
        stream.flush().await?;
        let mut rd = BufReader::new(&mut stream);
        let line = read_line(&mut rd, MAX_REPLY_LEN).await?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the admin connection without a reply",
            )
        })?;
        serde_json::from_slice::<AdminReply>(&line).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unreadable reply from the server: {e}"),
            )
        })
    };
    tokio::time::timeout(CLIENT_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the server did not answer within {} s",
                    CLIENT_TIMEOUT.as_secs()
                ),
            )
        })?
}
