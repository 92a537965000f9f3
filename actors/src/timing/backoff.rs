//! Exponential backoff with jitter: the one way Switchboard waits before trying again (a Send API call, a
//! tenant's restart, loading an integration, recording replies, storing progress).

use std::time::Duration;

use rand::Rng as _;

/// `base · 2^(attempt-1)`, capped at `max`, plus up to a quarter more at random (so retries of many callers
/// do not arrive together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self { base, max }
    }

    /// The wait before attempt `attempt + 1` (the first retry is `attempt` 1).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(self.max);
        exp + jitter(exp / 4)
    }
}

/// A random duration from zero to `max`.
pub fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::rng().random_range(0..=max.as_nanos().min(u128::from(u64::MAX)) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_at_most_a_quarter_of_jitter() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for (attempt, base) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (30, 1000)] {
            let d = b.delay(attempt);
            let base = Duration::from_millis(base);
            assert!(d >= base && d <= base + base / 4, "attempt {attempt}: {d:?}");
        }
    }
}
