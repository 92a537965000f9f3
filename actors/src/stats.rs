//! Per-tenant figures for people (the portal): when the last event arrived and how many replies went out
//! in the last hour. Kept by the router, so they survive a tenant's actor stopping when idle.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

/// A tenant's live figures.
pub struct TenantStats {
    last_event_ms: AtomicI64,
    /// Replies per minute over the last hour, as (minute number, count) in a ring.
    replies: Mutex<[(i64, u32); 60]>,
}

/// A copy of a tenant's figures at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Unix milliseconds of the last webhook event, if one arrived since start.
    pub last_event_ms: Option<i64>,
    pub replies_last_hour: u32,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Default for TenantStats {
    fn default() -> Self {
        Self { last_event_ms: AtomicI64::new(0), replies: Mutex::new([(i64::MIN, 0); 60]) }
    }
}

impl TenantStats {
    pub fn event(&self, at_ms: i64) {
        self.last_event_ms.fetch_max(at_ms, Ordering::Relaxed);
    }

    pub fn replied(&self) {
        let minute = now_ms() / 60_000;
        let mut ring = self.replies.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = &mut ring[(minute % 60) as usize];
        if slot.0 == minute {
            slot.1 += 1;
        } else {
            *slot = (minute, 1);
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let minute = now_ms() / 60_000;
        let ring = self.replies.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let replies_last_hour = ring.iter().filter(|(m, _)| minute.saturating_sub(*m) < 60).map(|(_, n)| n).sum();
        let last = self.last_event_ms.load(Ordering::Relaxed);
        StatsSnapshot { last_event_ms: (last > 0).then_some(last), replies_last_hour }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_counted_and_the_latest_event_kept() {
        let stats = TenantStats::default();
        assert_eq!(stats.snapshot(), StatsSnapshot::default());
        stats.event(2000);
        stats.event(1000);
        stats.replied();
        stats.replied();
        assert_eq!(stats.snapshot(), StatsSnapshot { last_event_ms: Some(2000), replies_last_hour: 2 });
    }
}
