//! Time arithmetic that cannot panic or wrap: the one place where deadlines are computed from
//! durations that may come from outside (a peer's lifetime, an MQTT command's `timeout`, a
//! record read back from the store).
//!
//! `Instant + Duration` panics on overflow and `as_millis() as u64` wraps silently; both have
//! stopped servers. Every input is range-checked where it is parsed (see each parser's
//! documented range), so these functions are a second line of defence: they saturate at
//! [`FAR_FUTURE`] instead of panicking, and convert with `try_from` instead of `as`.
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The longest delay any deadline is set to: 100 years. Anything later is "never" for a
/// running process, and adding it to any `Instant` or `SystemTime` a real clock gives is
/// representable on every platform Rust supports.
pub const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + d`, with `d` capped at [`FAR_FUTURE`].
#[must_use]
pub fn deadline(now: Instant, d: Duration) -> Instant {
    let d = d.min(FAR_FUTURE);
    // A 100-year offset from a real monotonic clock always fits (it is an i64 of seconds
    // on Unix, u64 nanoseconds elsewhere); `now` is the fallback only for a clock that is
    // itself near the end of its range.
    now.checked_add(d).unwrap_or(now)
}

/// `t + d` in wall-clock time, with `d` capped at [`FAR_FUTURE`].
#[must_use]
pub fn wall_deadline(t: SystemTime, d: Duration) -> SystemTime {
    t.checked_add(d.min(FAR_FUTURE)).unwrap_or(t)
}

/// `t - d` in wall-clock time, saturating at the Unix epoch.
#[must_use]
pub fn wall_before(t: SystemTime, d: Duration) -> SystemTime {
    t.checked_sub(d).unwrap_or(UNIX_EPOCH).max(UNIX_EPOCH)
}

/// Whole milliseconds of `d`, saturating at `u64::MAX` (585 million years).
#[must_use]
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whole microseconds of `d`, saturating at `u64::MAX`.
#[must_use]
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Milliseconds since the Unix epoch of `t` (0 before it), for what is persisted.
#[must_use]
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(millis).unwrap_or(0)
}

/// The wall-clock time `ms` milliseconds after the Unix epoch, capped at [`FAR_FUTURE`]
/// after it: a stored record cannot name a time the platform cannot represent.
#[must_use]
pub fn from_unix_millis(ms: u64) -> SystemTime {
    wall_deadline(UNIX_EPOCH, Duration::from_millis(ms))
}

/// A duration of `secs` seconds from a JSON-style number, if it lies within `range`:
/// rejects NaN, infinities, negatives and anything outside the range, never panics.
#[must_use]
pub fn secs_f64_in(secs: f64, range: std::ops::RangeInclusive<Duration>) -> Option<Duration> {
    let d = Duration::try_from_secs_f64(secs).ok()?;
    range.contains(&d).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_delays_saturate_instead_of_panicking() {
        let now = Instant::now();
        assert_eq!(deadline(now, Duration::MAX), deadline(now, FAR_FUTURE));
        assert!(deadline(now, Duration::MAX) > now);
        let t = SystemTime::now();
        assert!(wall_deadline(t, Duration::MAX) > t);
        assert_eq!(wall_before(UNIX_EPOCH, Duration::MAX), UNIX_EPOCH);
    }

    #[test]
    fn conversions_saturate_instead_of_wrapping() {
        assert_eq!(millis(Duration::MAX), u64::MAX);
        assert_eq!(micros(Duration::MAX), u64::MAX);
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
        assert_eq!(unix_millis(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert_eq!(from_unix_millis(u64::MAX), UNIX_EPOCH + FAR_FUTURE);
        assert_eq!(
            unix_millis(from_unix_millis(1_700_000_000_123)),
            1_700_000_000_123
        );
    }

    #[test]
    fn seconds_outside_the_range_are_refused() {
        let r = Duration::ZERO..=Duration::from_secs(10);
        assert_eq!(
            secs_f64_in(1.5, r.clone()),
            Some(Duration::from_millis(1500))
        );
        for bad in [1e19, -1.0, f64::NAN, f64::INFINITY, 10.001] {
            assert_eq!(secs_f64_in(bad, r.clone()), None, "{bad}");
        }
    }
}
