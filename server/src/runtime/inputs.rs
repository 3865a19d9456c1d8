//! Everything the server task waits on besides its sockets and its timer, merged into one
//! [`Inbox`]: the handle's requests, the admin socket's, the MQTT link's downlink messages,
//! and the store commits the stack asked for. Each source is polled where it is, with no
//! task copying one channel into another.
use crate::bridge::link::Downlink;
use crate::handle::Control;
use crate::provisioning::admin::AdminRequest;
use crate::store::StoreError;
use lwm2m::net::machine::Inbox;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
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
    /// An entry of the cluster's admin log.
    Replicated(super::replication::Replicated),
    /// What the devices' shared store answered.
    Owned(super::ownership::Owned),
}

/// The server task's command sources.
pub(crate) struct Inputs {
    /// Requests from the handles; when every handle is gone, the server stops.
    pub(crate) control: mpsc::Receiver<Control>,
    /// The admin socket's requests, if it is served.
    pub(crate) admin: Option<mpsc::Receiver<AdminRequest>>,
    /// The MQTT link's downlink messages, if the bridge runs.
    pub(crate) downlink: Option<mpsc::Receiver<Downlink>>,
    /// The cluster's admin log, in order, if the nodes share a store.
    pub(crate) replicated: Option<mpsc::Receiver<super::replication::Replicated>>,
    /// The devices' shared store's answers, if the nodes share one.
    pub(crate) owned: Option<mpsc::Receiver<super::ownership::Owned>>,
    /// Commits the server task started (see [`Commits`]).
    pub(crate) started: mpsc::UnboundedReceiver<(u64, CommitWait)>,
    /// Commits waited on, oldest first: the store commits in the order asked.
    pub(crate) waiting: VecDeque<(u64, CommitWait)>,
    /// Which channel is polled first next time.
    turn: u8,
}

/// Where the server task hands the commits it starts to [`Inputs`].
pub(crate) type Commits = mpsc::UnboundedSender<(u64, CommitWait)>;

impl Inputs {
    /// The sources, and the sender of started commits.
    pub(crate) fn new(
        control: mpsc::Receiver<Control>,
        admin: Option<mpsc::Receiver<AdminRequest>>,
        downlink: Option<mpsc::Receiver<Downlink>>,
        replicated: Option<mpsc::Receiver<super::replication::Replicated>>,
    ) -> (Self, Commits) {
        let (commits, started) = mpsc::unbounded_channel();
        let inputs = Self {
            control,
            admin,
            downlink,
            replicated,
            owned: None,
            started,
            waiting: VecDeque::new(),
            turn: 0,
        };
        (inputs, commits)
    }
}

/// The next message of an optional channel; a closed one is dropped (its source stopped,
/// which does not stop the server).
fn poll_optional<T>(rx: &mut Option<mpsc::Receiver<T>>, cx: &mut Context<'_>) -> Poll<Option<T>> {
    let Some(r) = rx else {
        return Poll::Pending;
    };
    match r.poll_recv(cx) {
        Poll::Ready(None) => {
            *rx = None;
            Poll::Pending
        }
        p => p,
    }
}

impl Inbox<Input> for Inputs {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Input>> {
        // Commits are started by the server task between two polls, so they are all here.
        while let Ok(c) = self.started.try_recv() {
            self.waiting.push_back(c);
        }
        // The oldest commit first: it releases held acknowledgements. A commit leaves the
        // queue only once it has ended.
        if let Some((generation, wait)) = self.waiting.front_mut() {
            if let Poll::Ready(result) = wait.as_mut().poll(cx) {
                let generation = *generation;
                self.waiting.pop_front();
                return Poll::Ready(Some(Input::Committed(generation, result)));
            }
        }
        // Then the channels, starting with a different one each time, so a busy one cannot
        // starve the others.
        self.turn = (self.turn + 1) % 5;
        for i in 0..5 {
            let polled = match (self.turn + i) % 5 {
                0 => self
                    .control
                    .poll_recv(cx)
                    .map(|c| Some(c.map(Input::Control))),
                1 => poll_optional(&mut self.admin, cx).map(|a| a.map(|a| Some(Input::Admin(a)))),
                2 => poll_optional(&mut self.downlink, cx)
                    .map(|d| d.map(|d| Some(Input::Downlink(d)))),
                3 => poll_optional(&mut self.replicated, cx)
                    .map(|r| r.map(|r| Some(Input::Replicated(r)))),
                _ => poll_optional(&mut self.owned, cx).map(|o| o.map(|o| Some(Input::Owned(o)))),
            };
            // `Ready(Some(None))`: every handle is gone; the server stops.
            if let Poll::Ready(Some(input)) = polled {
                return Poll::Ready(input);
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::link::DownlinkKind;
    use std::future::poll_fn;

    fn downlink() -> Downlink {
        Downlink {
            endpoint: "dev".into(),
            kind: DownlinkKind::Command,
            payload: Vec::new(),
            expiry: None,
        }
    }

    #[tokio::test]
    async fn every_source_is_taken_in_and_only_the_handles_going_stops_the_server() {
        let (control_tx, control) = mpsc::channel(4);
        let (admin_tx, admin) = mpsc::channel(4);
        let (downlink_tx, downlink_rx) = mpsc::channel(4);
        let (mut inputs, commits) = Inputs::new(control, Some(admin), Some(downlink_rx), None);

        downlink_tx.send(downlink()).await.unwrap();
        let got = poll_fn(|cx| inputs.poll_recv(cx)).await;
        assert!(matches!(got, Some(Input::Downlink(d)) if d == downlink()));

        // A commit started by the server task is awaited in place, and reported once.
        let (done, wait) = tokio::sync::oneshot::channel::<()>();
        let wait: CommitWait = Box::pin(async move {
            let _ = wait.await;
            Ok(())
        });
        commits.send((7, wait)).unwrap();
        let pending = poll_fn(|cx| Poll::Ready(inputs.poll_recv(cx).is_pending())).await;
        assert!(pending, "the commit has not ended");
        done.send(()).unwrap();
        let got = poll_fn(|cx| inputs.poll_recv(cx)).await;
        assert!(matches!(got, Some(Input::Committed(7, Ok(())))));

        // The admin socket and the MQTT link stopping does not stop the server.
        drop(admin_tx);
        drop(downlink_tx);
        let pending = poll_fn(|cx| Poll::Ready(inputs.poll_recv(cx).is_pending())).await;
        assert!(pending);

        drop(control_tx);
        assert!(poll_fn(|cx| inputs.poll_recv(cx)).await.is_none());
    }
}
