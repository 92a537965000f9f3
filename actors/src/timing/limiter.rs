//! The per-tenant send limit: GCRA (governor) with a burst of one, so calls are spaced evenly and any
//! one-second window holds at most `rate` calls, which is how Meta counts. The clock is tokio's, so
//! tests with paused time drive it.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// Nanoseconds since a fixed tokio instant.
#[derive(Clone)]
pub struct TokioClock {
    start: tokio::time::Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        Self { start: tokio::time::Instant::now() }
    }
}

impl Clock for TokioClock {
    type Instant = Nanos;
    fn now(&self) -> Nanos {
        Nanos::from(tokio::time::Instant::now().duration_since(self.start))
    }
}

pub struct SendLimiter {
    limiter: RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>,
    clock: TokioClock,
    rate: u32,
}

impl SendLimiter {
    pub fn new(rate_per_second: u32) -> Self {
        let rate = rate_per_second.max(1);
        let quota = Quota::per_second(NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN)).allow_burst(NonZeroU32::MIN);
        let clock = TokioClock::default();
        Self { limiter: RateLimiter::direct_with_clock(quota, clock.clone()), clock, rate }
    }

    /// One call per `period` (a pace below Meta's limit, with room for the network's jitter).
    pub fn with_period(period: Duration) -> Self {
        let quota = Quota::with_period(period.max(Duration::from_millis(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN));
        let clock = TokioClock::default();
        let rate = u32::try_from(1000 / period.as_millis().max(1)).unwrap_or(1).max(1);
        Self { limiter: RateLimiter::direct_with_clock(quota, clock.clone()), clock, rate }
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// `Ok` if a call may go now (and counts it); otherwise how long to wait.
    pub fn check(&self) -> Result<(), Duration> {
        self.limiter.check().map_err(|not_until| {
            let now = self.clock.now();
            Duration::from(not_until.earliest_possible().duration_since(now))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn calls_are_spaced_at_the_rate_with_no_burst() {
        let limiter = SendLimiter::new(20);
        assert!(limiter.check().is_ok());
        let wait = limiter.check().unwrap_err();
        assert!(wait <= Duration::from_millis(50) && wait > Duration::from_millis(40), "{wait:?}");
        tokio::time::advance(Duration::from_millis(50)).await;
        assert!(limiter.check().is_ok());

        // Over one simulated second, at most 20 calls pass.
        let mut passed = 0;
        for _ in 0..1000 {
            if limiter.check().is_ok() {
                passed += 1;
            }
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        assert!((19..=21).contains(&passed), "{passed}");
    }
}
