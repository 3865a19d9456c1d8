//! A fleet split over child processes: one UDP socket per device means one file descriptor
//! per device, and a process may hold only so many (`ulimit -n`; 20,000 hard on our CI
//! machines), so 100,000 devices need several processes. The parent re-runs this binary
//! as `bench --child START..END` for each share, with the effective scenario in a
//! temporary file, and talks to each child over its standard streams in JSON lines:
//!
//! - child → parent: `{"ready":true}` once its sockets are bound, `{"progress":{..}}` twice
//!   a second, `{"done":{..}}` with its counts and histograms at the end;
//! - parent → child: `go EPOCH_US` (the run's start on the shared clock, so every share
//!   paces its ramp from the same instant), then `stop`; a closed pipe also stops it, so a
//!   dying parent takes its children with it.
use super::live::{Live, Snapshot};
use super::report::{epoch_us, DeviceCounts};
use super::scenario::Scenario;
use super::{build, drive, window_share};
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::ops::Range;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::{mpsc, watch};

/// How long a child may take to bind its sockets.
const READY_WITHIN: Duration = Duration::from_secs(120);
/// Messages from children not yet read by the parent.
const INBOX: usize = 1024;

/// A line from a child.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Message {
    Ready(bool),
    Progress(Snapshot),
    Done(Box<DeviceCounts>),
}

struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    last: Snapshot,
    done: Option<DeviceCounts>,
}

/// The children of a run.
pub(crate) struct Children {
    procs: Vec<Proc>,
    inbox: mpsc::Receiver<(usize, Message)>,
    _scenario_file: tempfile::NamedTempFile,
}

impl Children {
    /// Starts `processes` children for the scenario's devices and waits until every one has
    /// bound its sockets.
    pub(crate) async fn spawn(s: &Scenario, processes: u64) -> anyhow::Result<Self> {
        let mut child_s = s.clone();
        child_s.fleet.window = window_share(s, processes);
        child_s.backend = None;
        let mut file = tempfile::NamedTempFile::new()?;
        file.write_all(toml::to_string(&child_s)?.as_bytes())?;
        file.flush()?;
        let exe = std::env::current_exe().context("finding this program to run children")?;
        let (tx, inbox) = mpsc::channel(INBOX);
        let devices = s.fleet.devices;
        let per = devices.div_ceil(processes);
        let mut procs = Vec::new();
        for (k, start) in (0..devices).step_by(per as usize).enumerate() {
            let end = (start + per).min(devices);
            let mut child = tokio::process::Command::new(&exe)
                .arg("bench")
                .arg("--scenario")
                .arg(file.path())
                .arg("--quiet")
                .arg("--child")
                .arg(format!("{start}..{end}"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting child process {k}"))?;
            let stdout = child.stdout.take().context("child stdout")?;
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    match serde_json::from_str::<Message>(&line) {
                        Ok(m) => {
                            if tx.send((k, m)).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => tracing::warn!(child = k, error = %e, "unreadable line"),
                    }
                }
            });
            procs.push(Proc {
                stdin: child.stdin.take(),
                child,
                last: Snapshot::default(),
                done: None,
            });
        }
        // Only the readers hold senders now: the inbox closes when every child is gone.
        drop(tx);
        let mut c = Self {
            procs,
            inbox,
            _scenario_file: file,
        };
        let mut ready = 0;
        let until = tokio::time::Instant::now() + READY_WITHIN;
        while ready < c.procs.len() {
            // Look at the children at least once a second: one that failed (no sockets left,
            // say) has printed why on standard error and must end the run now.
            match tokio::time::timeout(Duration::from_secs(1), c.inbox.recv()).await {
                Ok(Some((_, Message::Ready(_)))) => ready += 1,
                Ok(Some((k, m))) => c.take(k, m),
                Ok(None) => bail!("the child processes ended before they were ready"),
                Err(_) if tokio::time::Instant::now() >= until => {
                    bail!("child processes not ready within {READY_WITHIN:?}")
                }
                Err(_) => {}
            }
            for p in &mut c.procs {
                if let Ok(Some(status)) = p.child.try_wait() {
                    bail!("a child process ended before it was ready: {status}");
                }
            }
        }
        tracing::info!(processes = c.procs.len(), "child processes ready");
        Ok(c)
    }

    fn take(&mut self, k: usize, m: Message) {
        let Some(p) = self.procs.get_mut(k) else {
            return;
        };
        match m {
            Message::Ready(_) => {}
            Message::Progress(s) => p.last = s,
            Message::Done(c) => p.done = Some(*c),
        }
    }

    async fn say(&mut self, line: &str) {
        for p in &mut self.procs {
            if let Some(stdin) = &mut p.stdin {
                let _ = stdin.write_all(line.as_bytes()).await;
                let _ = stdin.flush().await;
            }
        }
    }

    /// Starts the run in every child at `t0_epoch` (µs since the epoch).
    pub(crate) async fn go(&mut self, t0_epoch: u64) {
        self.say(&format!("go {t0_epoch}\n")).await;
    }

    pub(crate) async fn stop(&mut self) {
        self.say("stop\n").await;
    }

    /// Reads what the children said since last time.
    pub(crate) fn poll_progress(&mut self) {
        while let Ok((k, m)) = self.inbox.try_recv() {
            self.take(k, m);
        }
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        for p in &self.procs {
            s.add(&p.last);
        }
        s
    }

    pub(crate) fn all_done(&mut self) -> bool {
        self.procs
            .iter_mut()
            .all(|p| p.done.is_some() || matches!(p.child.try_wait(), Ok(Some(_))))
    }

    /// Waits for every child's counts and merges them.
    pub(crate) async fn finish(mut self) -> anyhow::Result<DeviceCounts> {
        for p in &mut self.procs {
            p.stdin = None;
        }
        while self.procs.iter().any(|p| p.done.is_none()) {
            match tokio::time::timeout(Duration::from_secs(30), self.inbox.recv()).await {
                Ok(Some((k, m))) => self.take(k, m),
                Ok(None) | Err(_) => break,
            }
        }
        let mut total = DeviceCounts::default();
        for (k, p) in self.procs.iter_mut().enumerate() {
            let _ = p.child.wait().await;
            match &p.done {
                Some(c) => total.merge(c),
                None => total.errors.add(format!("child {k}: no report")),
            }
        }
        Ok(total)
    }
}

fn emit(m: &Message) {
    if let Ok(line) = serde_json::to_string(m) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// The child's side: devices `range` of the run.
pub(crate) fn child(s: &Scenario, range: Range<u64>) -> anyhow::Result<()> {
    let rt = super::runtime(s.fleet.threads)?;
    rt.block_on(async {
        let live = Arc::new(Live::default());
        let shards = build(s, range, &live)?;
        emit(&Message::Ready(true));
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        let t0_epoch = loop {
            match lines.next_line().await? {
                Some(l) => {
                    if let Some(e) = l.strip_prefix("go ") {
                        break e.trim().parse::<u64>().context("go EPOCH_US")?;
                    }
                }
                None => return Ok(()),
            }
        };
        let now = epoch_us();
        let t0 = if t0_epoch >= now {
            Instant::now() + Duration::from_micros(t0_epoch - now)
        } else {
            Instant::now()
                .checked_sub(Duration::from_micros(now - t0_epoch))
                .unwrap_or_else(Instant::now)
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            // `stop`, or the parent's end of the pipe closing.
            loop {
                match lines.next_line().await {
                    Ok(Some(l)) if l.trim() != "stop" => continue,
                    _ => break,
                }
            }
            let _ = stop_tx.send(true);
        });
        let progress = tokio::spawn({
            let live = live.clone();
            async move {
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                loop {
                    tick.tick().await;
                    emit(&Message::Progress(live.snapshot()));
                }
            }
        });
        let counts = drive(s, shards, s.fleet.window, t0, stop_rx).await?;
        progress.abort();
        emit(&Message::Done(Box::new(counts)));
        anyhow::Ok(())
    })
}
