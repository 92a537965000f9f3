//! The one timer idiom: a job run every period until it is stopped. Missed ticks are delayed, never bunched
//! (a slow job is not followed by a burst of catch-up runs).

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// When a periodic job runs the first time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum First {
    /// Right away.
    Now,
    /// One period from now.
    AfterPeriod,
}

/// Runs `job` every `period` (the first time as `first` says) until `stop` is cancelled; a job running then
/// is dropped where it waits.
pub async fn every<F, Fut>(period: Duration, first: First, stop: CancellationToken, mut job: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(period.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if first == First::AfterPeriod {
        ticker.tick().await;
    }
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = job() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    async fn runs_within(first: First, within: Duration) -> usize {
        let runs = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let counted = runs.clone();
        let task = tokio::spawn(every(Duration::from_secs(10), first, stop.clone(), move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        }));
        tokio::time::sleep(within).await;
        stop.cancel();
        task.await.unwrap();
        runs.load(Ordering::SeqCst)
    }

    #[tokio::test(start_paused = true)]
    async fn runs_every_period_from_now_or_after_one_period_and_stops_when_told() {
        assert_eq!(runs_within(First::Now, Duration::from_secs(25)).await, 3, "at 0, 10 and 20 s");
        assert_eq!(runs_within(First::AfterPeriod, Duration::from_secs(25)).await, 2, "at 10 and 20 s");
        assert_eq!(runs_within(First::AfterPeriod, Duration::from_secs(5)).await, 0);
    }
}
