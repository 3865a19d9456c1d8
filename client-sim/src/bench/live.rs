//! Live counters while a run goes on, and their display: an indicatif progress bar on a
//! terminal, a log line every few seconds otherwise (CI logs, pipes).
//!
//! Shards count into relaxed atomics (they only grow, except the registered gauge); the
//! display turns differences between two looks into rates. Child processes report their
//! counters as JSON lines, which the parent adds up per child.
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Counters every shard of a process adds to.
#[derive(Debug, Default)]
pub(crate) struct Live {
    registered_now: AtomicI64,
    registrations: AtomicU64,
    handshakes: AtomicU64,
    notifications: AtomicU64,
    sends: AtomicU64,
    errors: AtomicU64,
}

/// One look at the counters.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    pub registered_now: i64,
    pub registrations: u64,
    pub handshakes: u64,
    pub notifications: u64,
    pub sends: u64,
    pub errors: u64,
}

impl Snapshot {
    pub(crate) fn add(&mut self, o: &Snapshot) {
        self.registered_now += o.registered_now;
        self.registrations += o.registrations;
        self.handshakes += o.handshakes;
        self.notifications += o.notifications;
        self.sends += o.sends;
        self.errors += o.errors;
    }
}

impl Live {
    pub(crate) fn registered_now_add(&self) {
        self.registered_now.fetch_add(1, Relaxed);
        self.registrations.fetch_add(1, Relaxed);
    }

    pub(crate) fn registered_now_sub(&self) {
        self.registered_now.fetch_sub(1, Relaxed);
    }

    pub(crate) fn add_handshake(&self) {
        self.handshakes.fetch_add(1, Relaxed);
    }

    pub(crate) fn add_notifications(&self, n: u64) {
        if n > 0 {
            self.notifications.fetch_add(n, Relaxed);
        }
    }

    pub(crate) fn add_send(&self) {
        self.sends.fetch_add(1, Relaxed);
    }

    pub(crate) fn add_error(&self) {
        self.errors.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            registered_now: self.registered_now.load(Relaxed),
            registrations: self.registrations.load(Relaxed),
            handshakes: self.handshakes.load(Relaxed),
            notifications: self.notifications.load(Relaxed),
            sends: self.sends.load(Relaxed),
            errors: self.errors.load(Relaxed),
        }
    }
}

/// What the backend adds to the display.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BackendSnapshot {
    pub delivered: u64,
    pub commands_answered: u64,
}

/// The live display.
pub(crate) struct Display {
    bar: Option<ProgressBar>,
    last: Option<(Instant, Snapshot, BackendSnapshot)>,
    last_log: Instant,
}

/// Seconds between log lines when there is no terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

impl Display {
    pub(crate) fn new(devices: u64, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(devices), ProgressDrawTarget::stderr_with_hz(4));
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} registered  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        Self {
            bar,
            last: None,
            last_log: Instant::now(),
        }
    }

    /// Shows the counters now.
    pub(crate) fn update(&mut self, s: Snapshot, b: BackendSnapshot) {
        let now = Instant::now();
        let rate = |x: u64, y: u64, dt: f64| {
            if dt > 0.0 {
                x.saturating_sub(y) as f64 / dt
            } else {
                0.0
            }
        };
        let (hs, reg, notif, deliv, cmd) = match self.last {
            Some((t, l, lb)) => {
                let dt = now.duration_since(t).as_secs_f64();
                (
                    rate(s.handshakes, l.handshakes, dt),
                    rate(s.registrations, l.registrations, dt),
                    rate(s.notifications, l.notifications, dt),
                    rate(b.delivered, lb.delivered, dt),
                    rate(b.commands_answered, lb.commands_answered, dt),
                )
            }
            None => (0.0, 0.0, 0.0, 0.0, 0.0),
        };
        let msg = format!(
            "hs {hs:.0}/s  reg {reg:.0}/s  notif {notif:.0}/s  mqtt {deliv:.0}/s  cmd {cmd:.1}/s  sends {}  errors {}",
            s.sends, s.errors
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(u64::try_from(s.registered_now).unwrap_or(0));
                bar.set_message(msg);
            }
            None if now.duration_since(self.last_log) >= LOG_EVERY => {
                self.last_log = now;
                tracing::info!(registered = s.registered_now, "{msg}");
            }
            None => {}
        }
        self.last = Some((now, s, b));
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
