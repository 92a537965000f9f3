//! Portal sessions and their protections: the session cookie (HttpOnly, SameSite=Lax, Secure on https),
//! only the SHA-256 of the session id stored, a CSRF token per session checked on every form POST, and
//! sign-in attempts slowed per account and per address.

use std::num::NonZeroU32;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

pub const SESSION_COOKIE: &str = "sb_session";
pub const LOGIN_COOKIE: &str = "sb_login";

/// 256 random bits, URL-safe.
pub fn random_token() -> String {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).expect("the OS random source is available");
    URL_SAFE_NO_PAD.encode(raw)
}

pub fn hash(id: &str) -> Vec<u8> {
    Sha256::digest(id.as_bytes()).to_vec()
}

/// Constant-time equality of two tokens.
pub fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// `Set-Cookie` for `name=value` with the portal's attributes; `max_age` 0 deletes it.
pub fn cookie(name: &str, value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

/// Sign-in attempts: at most 5 a minute per account and 20 a minute per address (bursts allowed), then
/// "wait". Kept in memory per process.
pub struct LoginThrottle {
    accounts: DefaultKeyedRateLimiter<String>,
    addresses: DefaultKeyedRateLimiter<String>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        Self { accounts: RateLimiter::keyed(per_minute(5)), addresses: RateLimiter::keyed(per_minute(20)) }
    }
}

impl LoginThrottle {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Counts one attempt; `Err(seconds)` when the account or the address must wait.
    pub fn attempt(&self, account: &str, address: &str) -> Result<(), u64> {
        if self.accounts.len() > 100_000 {
            self.accounts.retain_recent();
            self.addresses.retain_recent();
        }
        let wait = |r: Result<(), governor::NotUntil<governor::clock::QuantaInstant>>| {
            r.map_err(|n| {
                n.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()))
                    .as_secs()
                    .max(1)
            })
        };
        wait(self.addresses.check_key(&address.to_owned()))?;
        wait(self.accounts.check_key(&account.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_attempts_are_slowed_per_account_and_per_address() {
        let t = LoginThrottle::default();
        for _ in 0..5 {
            assert!(t.attempt("a@x.example", "10.0.0.1").is_ok());
        }
        assert!(t.attempt("a@x.example", "10.0.0.2").is_err(), "the account waits, from any address");
        assert!(t.attempt("b@x.example", "10.0.0.1").is_ok(), "another account from the same address may try");
        for i in 0..20 {
            let _ = t.attempt(&format!("u{i}@x.example"), "10.0.0.9");
        }
        assert!(t.attempt("fresh@x.example", "10.0.0.9").is_err(), "the address waits after many accounts");
    }

    #[test]
    fn cookies_are_http_only_lax_and_secure_on_https() {
        assert_eq!(cookie("sb_session", "v", 60, false), "sb_session=v; Path=/; HttpOnly; SameSite=Lax; Max-Age=60");
        assert!(cookie("sb_session", "v", 60, true).ends_with("; Secure"));
    }
}
