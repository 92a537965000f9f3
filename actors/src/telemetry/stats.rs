//! Per-tenant figures for people (the portal): when the last event arrived, replies in the last hour, and
//! the running totals the metrics count too (events, replies, send errors, throttled pauses, queue depth).
//! Kept per page by the engine, so they survive a tenant's actor stopping when idle; the portal reads them
//! here rather than from the rendered metrics.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// A tenant's live figures.
pub struct TenantStats {
    last_event_ms: AtomicI64,
    /// Replies per minute over the last hour, as (minute number, count) in a ring.
    replies: Mutex<[(i64, u32); 60]>,
    events_total: AtomicU64,
    replies_total: AtomicU64,
    send_errors: AtomicU64,
    throttled: AtomicU64,
    queue_depth: AtomicU64,
    /// Send API calls started and not yet stored (they outlive the actor that started them).
    sends_in_flight: AtomicU64,
    /// The tenant may not send: its token is gone, or Meta refused a permission.
    blocked: AtomicBool,
    /// Unix milliseconds until which Meta's throttling pauses the tenant (0: not paused).
    paused_until_ms: AtomicI64,
    /// Webhook → reply latencies since they were last taken ([`TenantStats::take_reply_latencies`]), counted in
    /// the buckets of [`LATENCY_BOUNDS_MS`].
    reply_latencies: Mutex<[u32; LATENCY_BUCKETS]>,
}

/// Upper bounds (milliseconds) of the webhook → reply latency buckets kept for the portal's history; the last
/// bucket holds everything slower.
pub const LATENCY_BOUNDS_MS: [u64; LATENCY_BUCKETS - 1] =
    [10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000];
const LATENCY_BUCKETS: usize = 14;

/// Webhook → reply latencies counted in the buckets of [`LATENCY_BOUNDS_MS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latencies(pub [u32; LATENCY_BUCKETS]);

impl Latencies {
    /// The 95th percentile, as the upper bound of its bucket in milliseconds (`None` without samples; the
    /// slowest bucket reads as its lower bound).
    pub fn p95_ms(&self) -> Option<u64> {
        let total: u64 = self.0.iter().map(|n| u64::from(*n)).sum();
        if total == 0 {
            return None;
        }
        let rank = total.saturating_mul(95).div_ceil(100);
        let mut seen = 0u64;
        for (i, n) in self.0.iter().enumerate() {
            seen += u64::from(*n);
            if seen >= rank {
                return Some(
                    LATENCY_BOUNDS_MS.get(i).copied().unwrap_or(LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1]),
                );
            }
        }
        None
    }
}

/// A copy of a tenant's figures at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Unix milliseconds of the last webhook event, if one arrived since start.
    pub last_event_ms: Option<i64>,
    pub replies_last_hour: u32,
    /// Since the process started.
    pub events: u64,
    pub replies: u64,
    pub send_errors: u64,
    pub throttled: u64,
    /// Replies waiting or in flight now.
    pub queue_depth: u64,
    /// The tenant may not send (its token is gone, or Meta refused a permission) as it last reported.
    pub blocked: bool,
    /// Unix milliseconds until which Meta's throttling pauses the tenant, as it last reported.
    pub paused_until_ms: Option<i64>,
}

/// Now, in unix milliseconds (Meta's timestamps).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Default for TenantStats {
    fn default() -> Self {
        Self {
            last_event_ms: AtomicI64::new(0),
            replies: Mutex::new([(i64::MIN, 0); 60]),
            events_total: AtomicU64::new(0),
            replies_total: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            sends_in_flight: AtomicU64::new(0),
            blocked: AtomicBool::new(false),
            paused_until_ms: AtomicI64::new(0),
            reply_latencies: Mutex::new([0; LATENCY_BUCKETS]),
        }
    }
}

impl TenantStats {
    /// An event reached the tenant at `at_ms` (unix milliseconds).
    pub fn event(&self, at_ms: i64) {
        self.last_event_ms.fetch_max(at_ms, Ordering::Relaxed);
        self.events_total.fetch_add(1, Ordering::Relaxed);
    }

    pub fn send_error(&self) {
        self.send_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }

    pub fn queue_depth(&self, depth: usize) {
        self.queue_depth.store(depth as u64, Ordering::Relaxed);
    }

    /// What keeps the tenant from sending now, as it reports after each message it handles: blocked (its
    /// token or a permission), or paused by Meta's throttling until `paused_until_ms`.
    pub fn condition(&self, blocked: bool, paused_until_ms: Option<i64>) {
        self.blocked.store(blocked, Ordering::Relaxed);
        self.paused_until_ms.store(paused_until_ms.unwrap_or(0), Ordering::Relaxed);
    }

    pub fn replied(&self) {
        self.replies_total.fetch_add(1, Ordering::Relaxed);
        let minute = now_ms() / 60_000;
        let mut ring = self.replies.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = &mut ring[(minute % 60) as usize];
        if slot.0 == minute {
            slot.1 += 1;
        } else {
            *slot = (minute, 1);
        }
    }

    /// A reply was accepted this long after its event's webhook arrived.
    pub fn reply_latency(&self, since_webhook: std::time::Duration) {
        let ms = u64::try_from(since_webhook.as_millis()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_MS.iter().position(|bound| ms <= *bound).unwrap_or(LATENCY_BUCKETS - 1);
        self.reply_latencies.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[bucket] += 1;
    }

    /// The webhook → reply latencies counted since the last call, and a fresh start.
    pub fn take_reply_latencies(&self) -> Latencies {
        let mut counts = self.reply_latencies.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Latencies(std::mem::take(&mut *counts))
    }

    /// A Send API call started; [`TenantStats::send_stored`] when Meta's answer is stored.
    pub fn send_started(&self) {
        self.sends_in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn send_stored(&self) {
        self.sends_in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn sends_in_flight(&self) -> u64 {
        self.sends_in_flight.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let minute = now_ms() / 60_000;
        let ring = self.replies.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let replies_last_hour = ring.iter().filter(|(m, _)| minute.saturating_sub(*m) < 60).map(|(_, n)| n).sum();
        let last = self.last_event_ms.load(Ordering::Relaxed);
        StatsSnapshot {
            last_event_ms: (last > 0).then_some(last),
            replies_last_hour,
            events: self.events_total.load(Ordering::Relaxed),
            replies: self.replies_total.load(Ordering::Relaxed),
            send_errors: self.send_errors.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            queue_depth: self.queue_depth.load(Ordering::Relaxed),
            blocked: self.blocked.load(Ordering::Relaxed),
            paused_until_ms: Some(self.paused_until_ms.load(Ordering::Relaxed)).filter(|ms| *ms > 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_to_reply_latencies_are_taken_with_their_95th_percentile() {
        let stats = TenantStats::default();
        assert_eq!(stats.take_reply_latencies().p95_ms(), None);
        for ms in 0..100 {
            stats.reply_latency(std::time::Duration::from_millis(ms * 2));
        }
        let taken = stats.take_reply_latencies();
        assert_eq!(taken.p95_ms(), Some(250), "the 95th of 0..198 ms falls in the bucket up to 250 ms");
        assert_eq!(stats.take_reply_latencies(), Latencies::default(), "taken once");
        stats.reply_latency(std::time::Duration::from_secs(3600));
        assert_eq!(stats.take_reply_latencies().p95_ms(), Some(300_000), "the slowest bucket");
    }

    #[test]
    fn replies_are_counted_and_the_latest_event_kept() {
        let stats = TenantStats::default();
        assert_eq!(stats.snapshot(), StatsSnapshot::default());
        stats.event(2000);
        stats.event(1000);
        stats.replied();
        stats.replied();
        stats.send_error();
        stats.queue_depth(3);
        let snapshot = stats.snapshot();
        assert_eq!((snapshot.last_event_ms, snapshot.replies_last_hour), (Some(2000), 2));
        assert_eq!((snapshot.events, snapshot.replies, snapshot.send_errors, snapshot.queue_depth), (2, 2, 1, 3));
    }
}
