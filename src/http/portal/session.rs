//! Portal sessions and their protections: the session cookie (HttpOnly, SameSite=Lax, Secure and `__Host-`
//! prefixed on https), only the SHA-256 of the session id stored, a CSRF token per session checked on every
//! form POST, and sign-in attempts slowed so that guessing is slow but the owner is never locked out.
//!
//! Sign-in throttling follows OWASP's device cookies: a browser that signed in to an account before holds a
//! cookie proving it (an HMAC of the account and a random value, under a key derived from the app secret), and
//! its attempts are counted on their own (5 a minute for that account and browser). Every other attempt is
//! counted per client address (an IPv4 address or IPv6 /64, from `X-Forwarded-For` only behind a trusted
//! proxy: 20 a minute) and per account (5 a minute). So an attacker without the password who keeps tripping
//! an account's limit, from however many addresses, never locks out a browser its owner signed in with. The
//! counts live in the database (`http::throttle`): every node of a cluster counts together, and a restart
//! forgets nothing.
//!
//! Checking a password (argon2id, 19 MiB and tens of milliseconds of a core) is the expensive part, so at most
//! [`CHECKS`] run at once, in two lanes: one for browsers that signed in to the account before (one check per
//! account at a time), the other for everyone else (one check per client address at a time). Each lane's
//! waiting room is bounded ([`WAITING`] for strangers, [`WAITING_KNOWN`] for known browsers): beyond it an
//! attempt is told to try again in a moment. A flood from many addresses therefore queues behind itself, never
//! in front of the owner's browser, and one account's many browsers cannot fill the known lane.

use std::sync::Arc;

use dashmap::DashMap;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::http::throttle::{SIGN_IN_ACCOUNT, SIGN_IN_ADDRESS, SIGN_IN_KNOWN_BROWSER, Throttle};
use crate::secrets::password;
use crate::secrets::tokens::random_token;
use crate::store::StoreError;

pub const SESSION_COOKIE: &str = "sb_session";
pub const LOGIN_COOKIE: &str = "sb_login";
pub const DEVICE_COOKIE: &str = "sb_device";

/// How long a browser stays known to an account after it signed in.
pub const DEVICE_TTL_SECS: u64 = 180 * 86_400;
/// Password checks running at once: one lane for known browsers, the rest for everyone else.
pub const CHECKS: usize = 4;
/// Password checks of unknown browsers that may wait for a turn; more are told to try again in a moment.
pub const WAITING: usize = 32;
/// Password checks of known browsers that may wait for a turn.
pub const WAITING_KNOWN: usize = 8;

/// Why a sign-in attempt is not checked now.
#[derive(Debug)]
pub enum NotNow {
    /// Over a limit: wait this many seconds.
    Wait(u64),
    /// Too many checks are waiting (or this address has one waiting already): try again in a moment.
    Busy,
    Store(StoreError),
}

/// Sign-in attempts: their counts (shared through the database), the device cookies that tell an owner's
/// browser, and the lanes password checks wait in (see the module's doc).
pub struct LoginThrottle {
    counters: Arc<Throttle>,
    device_key: Hmac<Sha256>,
    /// Checks of browsers that signed in to the account before, one per account at a time.
    known: Lane,
    /// Every other check, one per client address at a time.
    others: Lane,
}

/// Password checks that run a few at a time, each of one party (an account, an address) at most one at a time,
/// with a bounded waiting room.
struct Lane {
    running: Arc<Semaphore>,
    waiting_room: Arc<Semaphore>,
    /// Parties with a check running or waiting.
    members: Arc<DashMap<String, ()>>,
}

/// A turn in a [`Lane`]: the party leaves it when this drops (the check ended, or the request was dropped).
struct Turn {
    _running: OwnedSemaphorePermit,
    _member: Member,
}

struct Member(Arc<DashMap<String, ()>>, String);

impl Drop for Member {
    fn drop(&mut self) {
        self.0.remove(&self.1);
    }
}

impl Lane {
    fn new(running: usize, waiting: usize) -> Self {
        Self {
            running: Arc::new(Semaphore::new(running)),
            waiting_room: Arc::new(Semaphore::new(waiting)),
            members: Arc::new(DashMap::new()),
        }
    }

    /// A turn for `party`, or `Busy` when it has one running or waiting already, or the waiting room is full.
    /// Every count is a guard: a request dropped while it waits gives all of it back.
    async fn turn(&self, party: &str) -> Result<Turn, NotNow> {
        if self.members.insert(party.to_owned(), ()).is_some() {
            return Err(NotNow::Busy);
        }
        let member = Member(self.members.clone(), party.to_owned());
        let waiting = self.waiting_room.clone().try_acquire_owned().map_err(|_| NotNow::Busy)?;
        let running = self.running.clone().acquire_owned().await.map_err(|_| NotNow::Busy)?;
        drop(waiting);
        Ok(Turn { _running: running, _member: member })
    }
}

impl LoginThrottle {
    /// `app_secret` only derives the key device cookies are signed with (rotating it forgets known browsers).
    pub fn new(app_secret: &SecretString, counters: Arc<Throttle>) -> Arc<Self> {
        let mut derive = Hmac::<Sha256>::new_from_slice(app_secret.expose_secret().as_bytes()).expect("any key length");
        derive.update(b"switchboard/device-cookie/v1");
        let device_key = Hmac::<Sha256>::new_from_slice(&derive.finalize().into_bytes()).expect("any key length");
        Arc::new(Self {
            counters,
            device_key,
            known: Lane::new(1, WAITING_KNOWN),
            others: Lane::new(CHECKS - 1, WAITING),
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
    /// any), and if it may go on, checks `password` against `stored` in its lane: whether it matches.
    pub async fn check(
        &self,
        account: &str,
        address: &str,
        device: Option<&str>,
        password: SecretString,
        stored: String,
    ) -> Result<bool, NotNow> {
        let counted = |r: Result<Result<(), u64>, StoreError>| match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(wait)) => Err(NotNow::Wait(wait)),
            Err(e) => Err(NotNow::Store(e)),
        };
        let _turn = if let Some(nonce) = self.known_device(account, device) {
            counted(self.counters.hit(SIGN_IN_KNOWN_BROWSER, &format!("{account}\0{nonce}")).await)?;
            self.known.turn(account).await?
        } else {
            counted(self.counters.hit(SIGN_IN_ADDRESS, address).await)?;
            counted(self.counters.hit(SIGN_IN_ACCOUNT, account).await)?;
            self.others.turn(address).await?
        };
        Ok(password::check(password, stored).await.unwrap_or(false))
    }
}

/// Portal requests per signed-in session: a person clicks a page or two a second; a script that pulls the
/// conversation view in a loop is slowed to this pace (kept in this process's memory: behind several nodes, a
/// session's pace is per node).
pub struct SessionPace {
    limiter: governor::DefaultKeyedRateLimiter<String>,
}

/// Requests a session may make each second, and in a burst.
pub const SESSION_PER_SECOND: u32 = 5;
pub const SESSION_BURST: u32 = 20;

impl SessionPace {
    pub fn new() -> Arc<Self> {
        let n = |n: u32| std::num::NonZeroU32::new(n).unwrap_or(std::num::NonZeroU32::MIN);
        let quota = governor::Quota::per_second(n(SESSION_PER_SECOND)).allow_burst(n(SESSION_BURST));
        Arc::new(Self { limiter: governor::RateLimiter::keyed(quota) })
    }

    /// One request of the session whose id hashes to `session_hash`: `Err(seconds)` to wait when it is too fast.
    pub fn request(&self, session_hash: &[u8]) -> Result<(), u64> {
        if self.limiter.len() > 100_000 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&hex::encode(session_hash)).map_err(|not_until| {
            let now = governor::clock::Clock::now(&governor::clock::DefaultClock::default());
            not_until.wait_time_from(now).as_secs().max(1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_lane_takes_one_turn_per_party_a_bounded_wait_and_gives_all_back_when_a_waiter_is_dropped() {
        let lane = Lane::new(1, 2);
        let first = lane.turn("a").await.unwrap();
        assert!(matches!(lane.turn("a").await, Err(NotNow::Busy)), "one turn per party");
        // Two wait; a third is told to come back.
        let waiting: Vec<_> = ["b", "c"].map(|p| (p, Box::pin(lane.turn(p)))).into_iter().collect();
        let mut waiting: Vec<_> = waiting
            .into_iter()
            .map(|(_, mut w)| {
                assert!(futures_util::FutureExt::now_or_never(&mut w).is_none(), "waits for the running one");
                w
            })
            .collect();
        assert!(matches!(lane.turn("d").await, Err(NotNow::Busy)), "the waiting room is full");
        // A waiter whose request is dropped (a timeout, a closed socket) gives its place back.
        drop(waiting.pop());
        let mut d = Box::pin(lane.turn("d"));
        assert!(futures_util::FutureExt::now_or_never(&mut d).is_none(), "d waits now");
        drop((first, waiting, d));
        assert_eq!(lane.waiting_room.available_permits(), 2);
        assert_eq!(lane.running.available_permits(), 1);
        assert!(lane.members.is_empty(), "nobody is left a member");
        assert!(lane.turn("c").await.is_ok());
    }
}
