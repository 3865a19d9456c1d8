//! Readiness for many sockets in one task: which device of a shard has something to read.
//!
//! Each device's socket is polled with a [`Waker`] of its own. When tokio's I/O driver wakes
//! it, the device's index goes on the shard's ready list (once, however often it is woken)
//! and the shard's task is woken. The task then reads exactly the sockets on the list, so a
//! datagram costs the same whatever the shard's size: no scan over idle sockets. This is what
//! `futures::stream::FuturesUnordered` does for futures, in 60 lines of safe code and
//! without the dependency.
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

/// The ready list of one shard, shared with its devices' wakers.
#[derive(Default)]
pub(super) struct ShardWake {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Devices whose socket was woken since the shard last looked.
    ready: Vec<u32>,
    /// The shard task, while it waits.
    task: Option<Waker>,
}

impl ShardWake {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; a poisoned list is still a valid list.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the ready list, leaving `spare` (emptied) in its place so that buffers are
    /// reused instead of allocated on every turn.
    pub(super) fn take(&self, spare: &mut Vec<u32>) {
        spare.clear();
        std::mem::swap(&mut self.lock().ready, spare);
    }

    /// Whether a device is ready.
    pub(super) fn any_ready(&self) -> bool {
        !self.lock().ready.is_empty()
    }

    /// Resolves once a device is ready.
    pub(super) fn ready(&self) -> Ready<'_> {
        Ready(self)
    }
}

/// The future of [`ShardWake::ready`].
pub(super) struct Ready<'a>(&'a ShardWake);

impl Future for Ready<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.0.lock();
        if !inner.ready.is_empty() {
            return Poll::Ready(());
        }
        match &inner.task {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => inner.task = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// The waker of one device's socket.
pub(super) struct DeviceWake {
    index: u32,
    /// Set while the index is on the ready list, so that it is there at most once.
    queued: AtomicBool,
    shard: Arc<ShardWake>,
}

impl DeviceWake {
    /// The waker of device `index` of `shard`.
    pub(super) fn waker(index: u32, shard: Arc<ShardWake>) -> (Arc<Self>, Waker) {
        let wake = Arc::new(Self {
            index,
            queued: AtomicBool::new(false),
            shard,
        });
        let waker = Waker::from(wake.clone());
        (wake, waker)
    }

    /// Called before the device's socket is read: a wake-up from then on queues it again.
    pub(super) fn clear(&self) {
        self.queued.store(false, Ordering::Release);
    }
}

impl Wake for DeviceWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let task = {
            let mut inner = self.shard.lock();
            inner.ready.push(self.index);
            inner.task.take()
        };
        if let Some(t) = task {
            t.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_is_listed_once_until_cleared() {
        let shard = Arc::new(ShardWake::default());
        let (a, wa) = DeviceWake::waker(3, shard.clone());
        let (_b, wb) = DeviceWake::waker(7, shard.clone());
        wa.wake_by_ref();
        wa.wake_by_ref();
        wb.wake_by_ref();
        let mut list = Vec::new();
        shard.take(&mut list);
        assert_eq!(list, [3, 7]);
        assert!(!shard.any_ready());
        wa.wake_by_ref();
        shard.take(&mut list);
        assert!(list.is_empty(), "not cleared yet, so not listed again");
        a.clear();
        wa.wake_by_ref();
        shard.take(&mut list);
        assert_eq!(list, [3]);
    }
}
