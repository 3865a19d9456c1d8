//! Deadline arithmetic that cannot panic.
//!
//! The engine reads no clock: the caller passes `now`, and deadlines are `now` plus a
//! configured duration (retransmission timers, RFC 6347 §4.2.4.1; the handshake timeout).
//! `Instant + Duration` panics when the sum is past what the platform's clock can represent,
//! so a configured duration such as `Duration::MAX` (meaning "never") would stop the process
//! on the first handshake. Every deadline is computed here instead.
use std::time::{Duration, Instant};

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
