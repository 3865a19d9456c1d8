//! Time as the engine sees it: deadline arithmetic that cannot panic, and the time of day
//! derived from the caller's clock.
//!
//! The engine reads no clock: the caller passes `now`, and deadlines are `now` plus a
//! configured duration (retransmission timers, RFC 6347 §4.2.4.1; the handshake timeout).
//! Certificate validity needs the time of day too; the caller gives a [`WallClock`], one
//! reading of both clocks, and the engine derives the time of day at `now` from it.
//! `Instant + Duration` panics when the sum is past what the platform's clock can represent,
//! so a configured duration such as `Duration::MAX` (meaning "never") would stop the process
//! on the first handshake. Every deadline is computed here instead.
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One simultaneous reading of the monotonic clock and the time of day, from which the
/// time of day at any later (or earlier) `Instant` follows: `wall + (now - at)`. Taking the
/// anchor once and deriving from the monotonic clock keeps the engine deterministic under a
/// virtual clock and immune to the time of day being stepped mid-handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    at: Instant,
    wall: SystemTime,
}

impl WallClock {
    /// The time of day was `wall` at `at`.
    pub fn new(at: Instant, wall: SystemTime) -> Self {
        Self { at, wall }
    }

    /// Seconds since the Unix epoch at `now`; 0 for a time before 1970 or one the platform
    /// cannot represent.
    pub fn unix_secs(&self, now: Instant) -> u64 {
        let wall = if now >= self.at {
            self.wall.checked_add(now.duration_since(self.at))
        } else {
            self.wall.checked_sub(self.at.duration_since(now))
        };
        wall.and_then(|w| w.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs())
    }
}

/// `now + after`, or, when that is past the last instant the platform can represent, the
/// latest representable instant found by halving `after` (within a factor of two of the
/// limit; the platform limit is hundreds of years ahead on every supported system).
///
/// Saturating keeps the meaning of a huge duration: the deadline is so far ahead that it
/// never comes. Falling back to `now` instead would turn "never" into "at once", making a
/// retransmission timer fire in a loop.
pub(crate) fn deadline(now: Instant, after: Duration) -> Instant {
    let mut step = after;
    // Each round halves `step`; a Duration has under 100 bits of nanoseconds, so this ends.
    loop {
        if let Some(t) = now.checked_add(step) {
            return t;
        }
        if step.is_zero() {
            return now;
        }
        step /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_time_follows_the_monotonic_clock_from_the_anchor() {
        let at = Instant::now();
        let clock = WallClock::new(at, UNIX_EPOCH + Duration::from_secs(1_000));
        assert_eq!(clock.unix_secs(at), 1_000);
        assert_eq!(clock.unix_secs(at + Duration::from_secs(60)), 1_060);
        if let Some(before) = at.checked_sub(Duration::from_secs(10)) {
            assert_eq!(clock.unix_secs(before), 990);
        }
        if let Some(long_before) = at.checked_sub(Duration::from_secs(2_000)) {
            assert_eq!(clock.unix_secs(long_before), 0);
        }
    }

    #[test]
    fn ordinary_deadlines_are_exact() {
        let now = Instant::now();
        assert_eq!(
            deadline(now, Duration::from_secs(3)),
            now + Duration::from_secs(3)
        );
        assert_eq!(deadline(now, Duration::ZERO), now);
    }

    #[test]
    fn a_deadline_past_the_clocks_range_saturates_far_ahead() {
        let now = Instant::now();
        let far = deadline(now, Duration::MAX);
        // Later than any timer this engine uses, and the arithmetic did not panic.
        assert!(far > now + Duration::from_secs(100 * 365 * 24 * 3600));
        assert!(deadline(far, Duration::MAX) >= far);
    }
}
