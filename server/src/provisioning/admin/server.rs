//! The admin socket's server side: a Unix domain socket at `{data_dir}/admin.sock`, mode 0600
//! (the file system is the access control: only the server's user, and root, may connect).
//! It only parses requests and forwards them to the runtime, which owns the store and the
//! sessions. At most [`MAX_CONNECTIONS`] connections are served at once (others get a "busy"
//! reply), an idle connection is closed after [`IDLE_TIMEOUT`], and a request the runtime
//! does not answer within [`REPLY_TIMEOUT`] gets an error reply.
use super::protocol::{read_line, AdminOp, AdminReply, AdminRequest, MAX_REQUEST_LEN};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 4;
/// A connection that sends nothing for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a request waits for the runtime to answer it.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A bound admin socket, not yet serving. Removes its socket file when dropped.
#[derive(Debug)]
pub struct AdminListener {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for AdminListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the admin socket at `path` with mode 0600, replacing a stale socket file left by a
/// server that died. Fails if another server answers there, or if `path` is not a socket.
/// Must run inside a tokio runtime.
pub fn bind(path: &Path) -> io::Result<AdminListener> {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("another server answers on {}", path.display()),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    tracing::info!(path = %path.display(), "removing stale admin socket");
                    std::fs::remove_file(path)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Bind inside a private (0700) directory, restrict the socket to 0600, then move it into
    // place: the socket is never reachable by others, whatever the process umask is.
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = parent.join(format!(".admin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::DirBuilder::new().mode(0o700).create(&tmp)?;
    let result = (|| -> io::Result<UnixListener> {
        let tmp_sock = tmp.join("s");
        let listener = UnixListener::bind(&tmp_sock)?;
        std::fs::set_permissions(&tmp_sock, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp_sock, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(AdminListener {
        listener: result?,
        path: path.to_path_buf(),
    })
}

impl AdminListener {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves connections, forwarding each request to `requests`, until that channel closes.
    pub async fn run(self, requests: mpsc::Sender<AdminRequest>) -> io::Result<()> {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let accepted = tokio::select! {
                _ = requests.closed() => return Ok(()),
                a = self.listener.accept() => a,
            };
            let stream = match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "admin socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    let requests = requests.clone();
                    tokio::spawn(async move {
                        if let Err(e) = connection(stream, requests).await {
                            tracing::debug!(error = %e, "admin connection ended");
                        }
                        drop(permit);
                    });
                }
                Err(_) => {
                    tokio::spawn(async move {
                        let mut stream = stream;
                        let busy = AdminReply::error("admin channel busy: too many connections");
                        let _ = tokio::time::timeout(
                            Duration::from_secs(1),
                            write_reply(&mut stream, &busy),
                        )
                        .await;
                    });
                }
            }
        }
    }
}

/// Binds `path` (see [`bind`]) and serves it until `requests` closes.
pub async fn serve(path: PathBuf, requests: mpsc::Sender<AdminRequest>) -> io::Result<()> {
    bind(&path)?.run(requests).await
}

/// Writes one reply line; a client that stops reading is dropped after [`IDLE_TIMEOUT`].
async fn write_reply<W: AsyncWrite + Unpin>(w: &mut W, reply: &AdminReply) -> io::Result<()> {
    let mut text = serde_json::to_vec(reply).map_err(io::Error::other)?;
    text.push(b'\n');
    let write = async {
        w.write_all(&text).await?;
        w.flush().await
    };
    tokio::time::timeout(IDLE_TIMEOUT, write)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "admin client stopped reading"))?
}

async fn connection(stream: UnixStream, requests: mpsc::Sender<AdminRequest>) -> io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    loop {
        let line =
            match tokio::time::timeout(IDLE_TIMEOUT, read_line(&mut rd, MAX_REQUEST_LEN)).await {
                Err(_) => return Ok(()),
                Ok(Ok(None)) => return Ok(()),
                Ok(Ok(Some(line))) => line,
                Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
                    let reply =
                        AdminReply::error(format!("request longer than {MAX_REQUEST_LEN} bytes"));
                    return write_reply(&mut wr, &reply).await;
                }
                Ok(Err(e)) => return Err(e),
            };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let reply = match serde_json::from_slice::<AdminOp>(&line) {
            Err(e) => AdminReply::error(format!("bad request: {e}")),
            Ok(op) => forward(&requests, op).await,
        };
        write_reply(&mut wr, &reply).await?;
    }
}

async fn forward(requests: &mpsc::Sender<AdminRequest>, op: AdminOp) -> AdminReply {
    let (reply, answer) = oneshot::channel();
    // One deadline for queueing and answering: a stalled runtime must not hold a connection
    // slot forever.
    let exchange = async {
        if requests.send(AdminRequest { op, reply }).await.is_err() {
            return AdminReply::error("the server is shutting down");
        }
        match answer.await {
            Ok(reply) => reply,
            Err(_) => AdminReply::error("the server dropped the request"),
        }
    };
    match tokio::time::timeout(REPLY_TIMEOUT, exchange).await {
        Ok(reply) => reply,
        Err(_) => AdminReply::error(format!(
            "the server did not answer within {} s",
            REPLY_TIMEOUT.as_secs()
        )),
    }
}
