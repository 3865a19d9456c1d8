//! Everything the server task waits on besides its sockets and its timer, merged into one
//! [`Inbox`]: the handle's requests, the admin socket's, the MQTT link's downlink messages,
//! and the store commits the stack asked for. Each source is awaited where it is, with no
//! task copying one channel into another.
use crate::admin::AdminRequest;
use crate::bridge::link::Downlink;
use crate::handle::Control;
use crate::store::StoreError;
use lwm2m::net::machine::Inbox;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use tokio::sync::mpsc;

/// A store commit in progress: done when every write queued before it is committed.
pub(crate) type CommitWait = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

/// One input of the server task.
pub(crate) enum Input {
    /// From a [`ServerHandle`](crate::ServerHandle).
    Control(Control),
    /// From the admin socket.
    Admin(AdminRequest),
    /// From the MQTT broker.
    Downlink(Downlink),
    /// The commit of this hold generation ended (an error releases the held datagrams too).
    Committed(u64, Result<(), StoreError>),
}

/// The server task's command sources.
pub(crate) struct Inputs {
    /// Requests from the handles; when every handle is gone, the server stops.
    pub(crate) control: mpsc::Receiver<Control>,
    /// The admin socket's requests, if it is served.
    pub(crate) admin: Option<mpsc::Receiver<AdminRequest>>,
    /// The MQTT link's downlink messages, if the bridge runs.
    pub(crate) downlink: Option<mpsc::Receiver<Downlink>>,
    /// Commits the server task started (see [`Commits`]).
    pub(crate) started: mpsc::UnboundedReceiver<(u64, CommitWait)>,
    /// Commits waited on, oldest first: the store commits in the order asked.
    pub(crate) waiting: VecDeque<(u64, CommitWait)>,
}

/// Where the server task hands the commits it starts to [`Inputs`].
pub(crate) type Commits = mpsc::UnboundedSender<(u64, CommitWait)>;

impl Inputs {
    /// The sources, and the sender of started commits.
    pub(crate) fn new(
        control: mpsc::Receiver<Control>,
        admin: Option<mpsc::Receiver<AdminRequest>>,
        downlink: Option<mpsc::Receiver<Downlink>>,
    ) -> (Self, Commits) {
        let (commits, started) = mpsc::unbounded_channel();
        let inputs = Self {
            control,
            admin,
            downlink,
            started,
            waiting: VecDeque::new(),
        };
        (inputs, commits)
    }
}

/// The next message of an optional channel; never, if there is none.
async fn next<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The oldest commit's end. The commit leaves the queue only when it has ended, so a
/// dropped wait loses nothing.
async fn oldest(waiting: &mut VecDeque<(u64, CommitWait)>) -> (u64, Result<(), StoreError>) {
    let Some((generation, wait)) = waiting.front_mut() else {
        return std::future::pending().await;
    };
    let generation = *generation;
    let result = wait.await;
    waiting.pop_front();
    (generation, result)
}

impl Inbox<Input> for Inputs {
    fn recv(&mut self) -> impl Future<Output = Option<Input>> + Send {
        let Self {
            control,
            admin,
            downlink,
            started,
            waiting,
        } = self;
        // Commits are started by the server task between two calls, so they are all here.
        while let Ok(c) = started.try_recv() {
            waiting.push_back(c);
        }
        async move {
            tokio::select! {
                c = control.recv() => c.map(Input::Control),
                Some(a) = next(admin) => Some(Input::Admin(a)),
                Some(d) = next(downlink) => Some(Input::Downlink(d)),
                (g, r) = oldest(waiting) => Some(Input::Committed(g, r)),
            }
        }
    }
}
