//! Portal sessions and their protections: the session cookie (HttpOnly, SameSite=Lax, Secure and `__Host-`
//! prefixed on https), only the SHA-256 of the session id stored, a CSRF token per session checked on every
//! form POST, and sign-in attempts slowed so that guessing is slow but the owner is never locked out.
//!
//! Sign-in throttling follows OWASP's device cookies: a browser that signed in to an account before holds a
//! cookie proving it (an HMAC of the account and a random value, under a key derived from the app secret), and
//! its attempts are counted on their own (5 a minute for that account and browser). Every other attempt is
//! counted per client address (an IPv4 address or IPv6 /64, from `X-Forwarded-For` only behind a trusted
//! proxy: 20 a minute) and per account (5 a minute). So an attacker without the password who keeps tripping
//! an account's limit, from however many addresses, never locks out a browser its owner signed in with.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::secrets::tokens::random_token;

pub const SESSION_COOKIE: &str = "sb_session";
pub const LOGIN_COOKIE: &str = "sb_login";
pub const DEVICE_COOKIE: &str = "sb_device";

/// How long a browser stays known to an account after it signed in.
pub const DEVICE_TTL_SECS: u64 = 180 * 86_400;

/// Sign-in attempts, kept in memory per process: per known browser of an account, per client address, and
/// per account for browsers it does not know (see the module's doc).
pub struct LoginThrottle {
    devices: DefaultKeyedRateLimiter<String>,
    accounts: DefaultKeyedRateLimiter<String>,
    addresses: DefaultKeyedRateLimiter<String>,
    device_key: Hmac<Sha256>,
}

impl LoginThrottle {
    /// `app_secret` only derives the key device cookies are signed with (rotating it forgets known browsers).
    pub fn new(app_secret: &SecretString) -> Arc<Self> {
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        let mut derive = Hmac::<Sha256>::new_from_slice(app_secret.expose_secret().as_bytes()).expect("any key length");
        derive.update(b"switchboard/device-cookie/v1");
        let device_key = Hmac::<Sha256>::new_from_slice(&derive.finalize().into_bytes()).expect("any key length");
        Arc::new(Self {
            devices: RateLimiter::keyed(per_minute(5)),
            accounts: RateLimiter::keyed(per_minute(5)),
            addresses: RateLimiter::keyed(per_minute(20)),
            device_key,
        })
    }

    fn device_mac(&self, account: &str, nonce: &str) -> Hmac<Sha256> {
        let mut mac = self.device_key.clone();
        mac.update(account.as_bytes());
        mac.update(&[0]);
        mac.update(nonce.as_bytes());
        mac
    }

    /// A device cookie value for `account` (lower-cased e-mail): proof that this browser signed in to it.
    pub fn device_cookie(&self, account: &str) -> String {
        let nonce = random_token();
        let mac = hex::encode(self.device_mac(account, &nonce).finalize().into_bytes());
        format!("{nonce}.{mac}")
    }

    /// The browser's nonce if `cookie` proves it signed in to `account` before (checked in constant time).
    fn known_device<'a>(&self, account: &str, cookie: Option<&'a str>) -> Option<&'a str> {
        let (nonce, mac) = cookie?.split_once('.')?;
        let mac = hex::decode(mac).ok()?;
        self.device_mac(account, nonce).verify_slice(&mac).ok().map(|()| nonce)
    }

    /// Counts one attempt at `account` from `address`, by a browser holding `device` (its device cookie, if
    /// any); `Err(seconds)` when it must wait.
    pub fn attempt(&self, account: &str, address: &str, device: Option<&str>) -> Result<(), u64> {
        if self.accounts.len() + self.devices.len() + self.addresses.len() > 100_000 {
            self.devices.retain_recent();
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
        if let Some(nonce) = self.known_device(account, device) {
            return wait(self.devices.check_key(&format!("{account}\0{nonce}")));
        }
        wait(self.addresses.check_key(&address.to_owned()))?;
        wait(self.accounts.check_key(&account.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Arc<LoginThrottle> {
        LoginThrottle::new(&SecretString::from("app-secret-for-tests".to_owned()))
    }

    #[test]
    fn repeated_attempts_are_slowed_per_account_and_per_address() {
        let t = throttle();
        for _ in 0..5 {
            assert!(t.attempt("a@x.example", "10.0.0.1", None).is_ok());
        }
        assert!(t.attempt("a@x.example", "10.0.0.2", None).is_err(), "the account waits, from any address");
        assert!(t.attempt("b@x.example", "10.0.0.1", None).is_ok(), "another account from the same address may try");
        for i in 0..20 {
            let _ = t.attempt(&format!("u{i}@x.example"), "10.0.0.9", None);
        }
        assert!(t.attempt("fresh@x.example", "10.0.0.9", None).is_err(), "the address waits after many accounts");
    }

    #[test]
    fn an_attacker_tripping_the_account_limit_does_not_lock_out_a_browser_that_signed_in_before() {
        let t = throttle();
        let owners = t.device_cookie("owner@x.example");
        for i in 0..50 {
            let _ = t.attempt("owner@x.example", &format!("203.0.113.{i}"), None);
        }
        assert!(t.attempt("owner@x.example", "198.51.100.7", None).is_err(), "strangers wait");
        assert!(t.attempt("owner@x.example", "198.51.100.7", Some(&owners)).is_ok(), "the owner's browser does not");
        let forged = format!("{}.{}", random_token(), "00".repeat(32));
        assert!(t.attempt("owner@x.example", "198.51.100.7", Some(&forged)).is_err(), "a forged cookie is a stranger");
        let others = t.device_cookie("other@x.example");
        assert!(t.attempt("owner@x.example", "198.51.100.7", Some(&others)).is_err(), "one account's cookie only");
        for _ in 0..4 {
            let _ = t.attempt("owner@x.example", "198.51.100.7", Some(&owners));
        }
        assert!(t.attempt("owner@x.example", "198.51.100.7", Some(&owners)).is_err(), "a known browser is slowed too");
    }
}
