//! `--server-pid`: the server's CPU time and resident memory, sampled once a second from
//! `/proc/PID/stat` (utime + stime, fields 14 and 15, in clock ticks) and
//! `/proc/PID/status` (`VmRSS`).
//!
//! Two numbers from two files do not warrant the `procfs` crate. Clock ticks are USER_HZ,
//! which Linux fixes at 100 for user space on every architecture (`sysconf(_SC_CLK_TCK)`
//! reports the same constant), so no libc call is needed.
use super::report::ServerUsage;
use anyhow::Context;
use std::time::{Duration, Instant};

const USER_HZ: f64 = 100.0;

/// One look at the process.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    cpu_seconds: f64,
    rss_bytes: u64,
}

fn sample(pid: u32) -> anyhow::Result<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat (is the server running?)"))?;
    // The command name (field 2) may hold spaces and parentheses: fields count from the
    // last ')'.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): utime is field 14, stime field 15.
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .context("short /proc stat")?
            .parse::<u64>()
            .context("bad /proc stat")? as f64)
    };
    let cpu_seconds = (ticks(11)? + ticks(12)?) / USER_HZ;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .context("no VmRSS in /proc status")?;
    Ok(Sample {
        at: Instant::now(),
        cpu_seconds,
        rss_bytes: rss_kb * 1024,
    })
}

/// Samples a process over a run.
#[derive(Debug)]
pub(crate) struct Sampler {
    pid: u32,
    first: Sample,
    last: Sample,
    max_percent: f64,
    max_rss: u64,
    /// The sample when the stop began, with the devices registered then.
    at_stop: Option<(Sample, u64)>,
}

impl Sampler {
    /// Takes the first sample; fails if the process cannot be read.
    pub(crate) fn start(pid: u32) -> anyhow::Result<Self> {
        let s = sample(pid)?;
        Ok(Self {
            pid,
            first: s,
            last: s,
            max_percent: 0.0,
            max_rss: s.rss_bytes,
            at_stop: None,
        })
    }

    /// How often [`tick`](Self::tick) should run.
    pub(crate) const EVERY: Duration = Duration::from_secs(1);

    /// Takes a sample; a process that went away keeps its last figures.
    pub(crate) fn tick(&mut self) {
        let Ok(s) = sample(self.pid) else {
            return;
        };
        let dt = s.at.duration_since(self.last.at).as_secs_f64();
        if dt > 0.0 {
            let pct = (s.cpu_seconds - self.last.cpu_seconds) / dt * 100.0;
            self.max_percent = self.max_percent.max(pct);
        }
        self.max_rss = self.max_rss.max(s.rss_bytes);
        self.last = s;
    }

    /// The stop begins with `registered` devices registered: the memory now is theirs.
    pub(crate) fn mark_stop(&mut self, registered: u64) {
        self.tick();
        self.at_stop = Some((self.last, registered));
    }

    /// The figures; `registered` counts for a run stopped before [`mark_stop`](Self::mark_stop).
    pub(crate) fn finish(mut self, registered: u64) -> ServerUsage {
        self.tick();
        let (stop, registered_at_stop) = self.at_stop.unwrap_or((self.last, registered));
        let cpu = self.last.cpu_seconds - self.first.cpu_seconds;
        let secs = self.last.at.duration_since(self.first.at).as_secs_f64();
        ServerUsage {
            pid: self.pid,
            cpu_seconds: cpu,
            cpu_percent_avg: if secs > 0.0 { cpu / secs * 100.0 } else { 0.0 },
            cpu_percent_max: self.max_percent,
            rss_start_bytes: self.first.rss_bytes,
            rss_max_bytes: self.max_rss,
            rss_at_stop_bytes: stop.rss_bytes,
            rss_per_registered_device_bytes: stop
                .rss_bytes
                .saturating_sub(self.first.rss_bytes)
                .checked_div(registered_at_stop)
                .unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Burns CPU in chunks until this process's CPU time, as `/proc` reports it, has grown;
    /// gives up after a bounded amount of work. Returns the figure it grew to.
    fn burn_until_cpu_exceeds(pid: u32, seconds: f64) -> f64 {
        let mut x = 0u64;
        for _ in 0..400 {
            for i in 0..5_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            let now = sample(pid).unwrap().cpu_seconds;
            if now > seconds {
                return now;
            }
        }
        panic!("CPU time stayed at {seconds} s after 2·10^9 multiply-adds");
    }

    #[test]
    fn samples_this_process() {
        let pid = std::process::id();
        let mut s = Sampler::start(pid).unwrap();
        let before = s.first.cpu_seconds;
        let grown = burn_until_cpu_exceeds(pid, before);
        s.mark_stop(1);
        let u = s.finish(0);
        assert_eq!(u.pid, pid);
        // The work shows as CPU time, and the report counts from the first sample.
        assert!(
            u.cpu_seconds >= grown - before && u.cpu_seconds > 0.0,
            "{u:?}"
        );
        // A test process is resident, and nowhere near gigabytes.
        const SANE: u64 = 4 << 30;
        for rss in [u.rss_start_bytes, u.rss_at_stop_bytes] {
            assert!(rss > 0 && rss < SANE, "{u:?}");
        }
        assert!(u.rss_max_bytes >= u.rss_start_bytes.max(u.rss_at_stop_bytes));
        assert!(Sampler::start(u32::MAX).is_err());
    }
}
