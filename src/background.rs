//! The server's background jobs (token health, directory reconcile, pruning, the inbox sweeper, metrics
//! upkeep): each runs on the one timer idiom, and all are tracked, so shutdown stops them and waits for them.

use std::future::Future;
use std::time::Duration;

pub use switchboard_actors::timing::timer::First;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Default)]
pub struct Background {
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Background {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `job` every `period` (the first time as `first` says) until [`Background::stop`].
    pub fn every<F, Fut>(&self, period: Duration, first: First, job: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(switchboard_actors::timing::timer::every(period, first, self.stop.clone(), job));
    }

    /// Stops every job (one running is dropped where it waits) and waits until all have ended.
    pub async fn stop(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}
