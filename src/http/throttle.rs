//! Throttles every node shares: hits per key over a sliding window, counted in the database
//! (`store::throttle`), so a cluster's nodes count together and a restart forgets nothing. The window slides
//! the way Cloudflare's and NGINX's limiters estimate it: this fixed window's hits plus the previous window's,
//! weighted by how much of it the sliding window still covers, so a burst across a window's edge is no
//! loophole. Keys (e-mails, addresses, links) are stored only as a keyed hash. Sign-in attempts and "Connect
//! with Facebook" starts are counted here.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::DefaultClock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::store::{Store, StoreError};

/// How many hits a key may make in each window of `window_secs`.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// What is counted (a fixed name: part of the stored key).
    pub scope: &'static str,
    pub hits: i64,
    pub window_secs: i64,
}

/// Sign-in attempts by a browser that signed in to the account before.
pub const SIGN_IN_KNOWN_BROWSER: Limit = Limit { scope: "sign_in_device", hits: 5, window_secs: 60 };
/// Sign-in attempts at one account from browsers it does not know.
pub const SIGN_IN_ACCOUNT: Limit = Limit { scope: "sign_in_account", hits: 5, window_secs: 60 };
/// Sign-in attempts from one client address.
pub const SIGN_IN_ADDRESS: Limit = Limit { scope: "sign_in_address", hits: 20, window_secs: 60 };
/// "Connect with Facebook" started (an OAuth state made) from one client address.
pub const START_ADDRESS: Limit = Limit { scope: "oauth_start_address", hits: 10, window_secs: 60 };
/// "Connect with Facebook" started from one onboarding link.
pub const START_LINK: Limit = Limit { scope: "oauth_start_link", hits: 20, window_secs: 3600 };

pub struct Throttle {
    store: Store,
    key: Hmac<Sha256>,
    /// The same limits counted in this process alone, asked first: once a key is over its limit here, it is
    /// over it everywhere, and refusing it costs no database write.
    local: std::collections::HashMap<&'static str, DefaultKeyedRateLimiter<String>>,
}

/// Every limit counted here.
const LIMITS: [Limit; 5] = [SIGN_IN_KNOWN_BROWSER, SIGN_IN_ACCOUNT, SIGN_IN_ADDRESS, START_ADDRESS, START_LINK];

impl Throttle {
    /// `app_secret` only derives the key counters' keys are hashed with.
    pub fn new(store: Store, app_secret: &SecretString) -> Arc<Self> {
        let mut derive = Hmac::<Sha256>::new_from_slice(app_secret.expose_secret().as_bytes()).expect("any key length");
        derive.update(b"switchboard/throttle-key/v1");
        let key = Hmac::<Sha256>::new_from_slice(&derive.finalize().into_bytes()).expect("any key length");
        let local = LIMITS
            .iter()
            .map(|l| {
                let hits = NonZeroU32::new(u32::try_from(l.hits).unwrap_or(1)).unwrap_or(NonZeroU32::MIN);
                let every = std::time::Duration::from_secs(u64::try_from(l.window_secs).unwrap_or(60)) / hits.get();
                let quota = Quota::with_period(every).unwrap_or_else(|| Quota::per_second(hits)).allow_burst(hits);
                (l.scope, RateLimiter::keyed(quota))
            })
            .collect();
        Arc::new(Self { store, key, local })
    }

    /// Counts one hit of `key` against `limit`: `Ok(Err(seconds))` when it is over the limit and must wait that
    /// long (every hit counts, refused or not).
    pub async fn hit(&self, limit: Limit, key: &str) -> Result<Result<(), u64>, StoreError> {
        let now = crate::clock::now().timestamp_millis() as f64 / 1000.0;
        let window = limit.window_secs as f64;
        let window_end = ((now / window).floor() as i64 + 1) * limit.window_secs;
        let mut mac = self.key.clone();
        mac.update(limit.scope.as_bytes());
        mac.update(&[0]);
        mac.update(key.as_bytes());
        let hashed = hex::encode(&mac.finalize().into_bytes()[..16]);
        if let Some(local) = self.local.get(limit.scope) {
            if local.len() > 100_000 {
                local.retain_recent();
            }
            if let Err(not_until) = local.check_key(&hashed) {
                let wait = not_until.wait_time_from(governor::clock::Clock::now(&DefaultClock::default()));
                return Ok(Err(wait.as_secs().max(1)));
            }
        }
        let (current, previous) =
            self.store.throttle_hit(limit.scope, &hashed, window_end, window_end - limit.window_secs).await?;
        Ok(over(limit, current, previous, window_end as f64 - now))
    }

    /// Forgets counters of windows that can no longer count (older than the longest window before the current
    /// one).
    pub async fn prune(&self) -> Result<u64, StoreError> {
        let longest = LIMITS.iter().map(|l| l.window_secs).max().unwrap_or(3600);
        self.store.throttle_prune(crate::clock::now().timestamp() - longest).await
    }
}

/// Whether `current` hits in this window and `previous` in the one before are over `limit` with `left` seconds
/// of this window to go: `Err(seconds)` to wait until the estimate is under it again.
fn over(limit: Limit, current: i64, previous: i64, left: f64) -> Result<(), u64> {
    let window = limit.window_secs as f64;
    let weight = (left / window).clamp(0.0, 1.0);
    let estimate = current as f64 + previous as f64 * weight;
    if estimate <= limit.hits as f64 {
        return Ok(());
    }
    // The previous window's weight falls as this one goes on; past this window, what it counted weighs in.
    let room = (limit.hits - current) as f64;
    let wait = if room > 0.0 && previous > 0 { left - window * room / previous as f64 } else { left };
    Err((wait.ceil() as u64).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE: Limit = Limit { scope: "t", hits: 5, window_secs: 60 };

    #[test]
    fn a_burst_across_a_windows_edge_is_still_counted() {
        assert_eq!(over(FIVE, 5, 0, 30.0), Ok(()));
        assert!(over(FIVE, 6, 0, 30.0).is_err());
        // Five at the end of the last window, one a second into this one: over.
        assert_eq!(over(FIVE, 1, 5, 59.0), Err(11), "until the last window weighs four");
        // Late in this window the previous one hardly weighs.
        assert_eq!(over(FIVE, 1, 5, 2.0), Ok(()));
        assert_eq!(over(FIVE, 7, 0, 10.0), Err(10), "this window alone is over: until it ends");
    }
}
