//! The engine's tunables, filled from the root crate's configuration.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// A tenant with nothing to do for this long stops and drops its token; the next event restarts it.
    pub idle_timeout: Duration,
    /// Replies waiting to be sent, per tenant; beyond it new replies are dropped and counted.
    pub send_queue_capacity: usize,
    /// Events buffered for a tenant that is starting or restarting.
    pub start_buffer_capacity: usize,
    /// Events waiting for the responder, per tenant; beyond it new events are set aside (an inbox event stays
    /// pending and is handed over again by the sweeper; without an inbox it is dropped) and counted.
    pub pending_capacity: usize,
    /// Send API calls in flight per tenant (never two to the same person at once).
    pub max_in_flight: usize,
    /// Attempts for a reply that fails transiently (1, 2, 5xx, timeouts), the first included.
    pub max_send_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Pause after a throttling error that names no regain time.
    pub throttle_fallback: Duration,
    /// Usage (percent of Meta's budget) at which the tenant pauses for the advertised regain time.
    pub usage_pause_pct: u32,
    /// Event keys remembered per tenant for deduplication.
    pub dedup_capacity: usize,
    /// Restart budget: at most `restart_max` restarts within `restart_window`, else quarantine.
    pub restart_max: usize,
    pub restart_window: Duration,
    /// First restart delay; doubles with each recent restart.
    pub restart_backoff: Duration,
    /// How long a tenant that spent its restart budget stays stopped.
    pub quarantine: Duration,
    /// At shutdown, how long to wait for Send API calls in flight (the longest a call can take), so Meta's
    /// answers are stored and those replies are not sent again at the next start.
    pub send_drain: Duration,
    /// This app's Meta app id: an echo that names another app (or none) is a person at the business
    /// answering, and the bot stays silent in that conversation.
    pub own_app_id: String,
    /// How long the bot stays silent in a conversation after a person's last answer, unless the client
    /// chose its own ([`crate::ports::TenantProfile::human_pause`]).
    pub human_pause: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(300),
            send_queue_capacity: 1000,
            start_buffer_capacity: 10_000,
            pending_capacity: 10_000,
            max_in_flight: 4,
            max_send_attempts: 5,
            retry_base: Duration::from_millis(200),
            retry_max: Duration::from_secs(30),
            throttle_fallback: Duration::from_secs(60),
            usage_pause_pct: 95,
            own_app_id: String::new(),
            human_pause: Duration::from_secs(1800),
            dedup_capacity: 4096,
            restart_max: 5,
            restart_window: Duration::from_secs(60),
            restart_backoff: Duration::from_millis(100),
            quarantine: Duration::from_secs(300),
            send_drain: Duration::from_secs(10),
        }
    }
}
