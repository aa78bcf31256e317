//! When a deferred recipient is tried again, and when it is given up on.

use std::time::Duration;

/// The retry schedule from `outbound.retry_seconds` and
/// `outbound.max_age_seconds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    intervals: Vec<Duration>,
    max_age: Duration,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Try again at this Unix time.
    RetryAt(u64),
    /// The message is too old: return it to the sender.
    GiveUp,
}

impl RetrySchedule {
    /// A schedule; an empty interval list means one minute between
    /// attempts (the config refuses it, so this is only a safe floor).
    pub fn new(intervals: Vec<Duration>, max_age: Duration) -> Self {
        let intervals = if intervals.is_empty() {
            vec![Duration::from_secs(60)]
        } else {
            intervals
        };
        RetrySchedule { intervals, max_age }
    }

    /// The wait after the `attempts`-th failed attempt (1-based): the
    /// intervals in order, the last one repeating.
    pub fn delay(&self, attempts: u32) -> Duration {
        let i = usize::try_from(attempts.saturating_sub(1)).unwrap_or(usize::MAX);
        self.intervals
            .get(i)
            .or(self.intervals.last())
            .copied()
            .unwrap_or(Duration::from_secs(60))
    }

    /// What follows a failed attempt at `now` for a message queued at
    /// `created`, after `attempts` attempts: give up once the message is
    /// older than the maximum age, or would be by the next attempt.
    pub fn after_failure(&self, created: u64, now: u64, attempts: u32) -> NextStep {
        let deadline = created.saturating_add(self.max_age.as_secs());
        let next = now.saturating_add(self.delay(attempts).as_secs());
        if now >= deadline || next > deadline {
            NextStep::GiveUp
        } else {
            NextStep::RetryAt(next)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_then_the_last_repeats_until_the_maximum_age() {
        let s = RetrySchedule::new(
            vec![Duration::from_secs(60), Duration::from_secs(300)],
            Duration::from_secs(1000),
        );
        assert_eq!(s.delay(1), Duration::from_secs(60));
        assert_eq!(s.delay(2), Duration::from_secs(300));
        assert_eq!(s.delay(7), Duration::from_secs(300));
        assert_eq!(s.delay(0), Duration::from_secs(60));
        assert_eq!(s.after_failure(0, 10, 1), NextStep::RetryAt(70));
        assert_eq!(s.after_failure(0, 70, 2), NextStep::RetryAt(370));
        assert_eq!(s.after_failure(0, 670, 4), NextStep::RetryAt(970));
        // The next attempt would come after the deadline: give up now.
        assert_eq!(s.after_failure(0, 970, 5), NextStep::GiveUp);
        assert_eq!(s.after_failure(0, 1000, 1), NextStep::GiveUp);
        let floor = RetrySchedule::new(Vec::new(), Duration::from_secs(10_000));
        assert_eq!(floor.delay(3), Duration::from_secs(60));
    }
}
