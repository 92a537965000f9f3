//! Request bodies, read within a memory budget that no few clients can hold.
//!
//! Every route that reads a body states its largest size (`Content-Length` is required; more is 413, none is
//! 411). What a body holds of the shared budget (`server.max_body_memory_bytes`) is taken **as its bytes
//! arrive**, never as promised: a request that announces 3 MiB and sends nothing holds nothing.
//!
//! - **Pace.** A body must keep arriving: in every second of reading it, at least [`MIN_RATE`] bytes (or the
//!   rest of it, if less) must come, or it is cut with 408. A trickle cannot hold a connection and its bytes for
//!   long, and the whole request stays within `server.request_timeout_secs`.
//! - **Shares.** One client address (an IPv4 address, an IPv6 /64) may hold at most a sixteenth of the budget
//!   (at least one body of the largest size), so a handful of addresses cannot hold all of it.
//! - **Meta's lane.** A quarter of the budget is kept for senders that proved themselves: an address that
//!   delivered a correctly signed webhook within the last [`PROVEN_FOR`] (or one in
//!   `server.webhook_sender_ranges`, Meta's published ranges if the operator lists them). Nobody else can take
//!   that room, and such an address may hold up to that quarter, so Meta's delivery hosts, which send many bodies
//!   at once, are never the ones starved by unsigned floods. The signature is the proof: only Meta holds the app
//!   secret.
//! - A request that finds no room waits up to [`WAIT`] for it, then gets 503 (Meta delivers again).
//!
//! So the bodies that requests, authenticated or not, can pin at once never exceed the budget.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use ipnet::IpNet;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use warp::{Filter, Rejection};

use super::error::ApiError;
use crate::http::server::{AddressKey, ClientAddr};

/// How long a request waits for room in the budget before it is refused.
pub const WAIT: Duration = Duration::from_secs(1);
/// The window a body's pace is measured over.
pub const WINDOW: Duration = Duration::from_secs(1);
/// The fewest bytes a body must deliver in each [`WINDOW`] (or the rest of it, if less). Meta sends from data
/// centres, far faster; a portal form is a few hundred bytes and arrives at once.
pub const MIN_RATE: u64 = 64 * 1024;
/// How long a correctly signed webhook proves its sender's address.
pub const PROVEN_FOR: Duration = Duration::from_secs(3600);
/// The most proven addresses remembered (the oldest are forgotten first).
const PROVEN_CAP: usize = 4096;

/// The bytes every request body in flight may hold together, and each address's share of them.
pub struct BodyBudget {
    /// Room anyone may take.
    general: Arc<Semaphore>,
    /// Room only proven senders may take.
    proven_lane: Arc<Semaphore>,
    held: DashMap<Option<AddressKey>, u64>,
    /// What one address may hold: an unproven one, a proven one.
    share: u64,
    proven_share: u64,
    /// Addresses that delivered a correctly signed webhook, and when they last did.
    proven: DashMap<AddressKey, Instant>,
    /// Addresses proven by configuration (Meta's published ranges).
    ranges: Vec<IpNet>,
}

fn permits(bytes: u64) -> usize {
    usize::try_from(bytes).unwrap_or(Semaphore::MAX_PERMITS).min(Semaphore::MAX_PERMITS)
}

impl BodyBudget {
    /// A budget of `bytes` for bodies of at most `max_body` bytes; addresses in `ranges` count as proven.
    pub fn new(bytes: u64, max_body: u64, ranges: Vec<IpNet>) -> Arc<Self> {
        let lane = bytes / 4;
        Arc::new(Self {
            general: Arc::new(Semaphore::new(permits(bytes - lane))),
            proven_lane: Arc::new(Semaphore::new(permits(lane))),
            held: DashMap::new(),
            share: (bytes / 16).max(max_body).min(bytes - lane),
            proven_share: lane.max(max_body),
            proven: DashMap::new(),
            ranges,
        })
    }

    /// `client` delivered a correctly signed webhook: its bodies may use Meta's lane for [`PROVEN_FOR`].
    pub fn prove(&self, client: AddressKey) {
        let now = Instant::now();
        // Most deliveries come from addresses proven a moment ago: a read, not a write.
        if self.proven.get(&client).is_some_and(|at| now.duration_since(*at) < Duration::from_secs(60)) {
            return;
        }
        if self.proven.len() >= PROVEN_CAP {
            self.proven.retain(|_, at| now.duration_since(*at) < PROVEN_FOR);
            if self.proven.len() >= PROVEN_CAP
                && let Some(oldest) = self.proven.iter().min_by_key(|e| *e.value()).map(|e| *e.key())
            {
                self.proven.remove(&oldest);
            }
        }
        self.proven.insert(client, now);
    }

    fn is_proven(&self, client: Option<&ClientAddr>) -> bool {
        let Some(client) = client else { return false };
        self.ranges.iter().any(|net| net.contains(&client.0))
            || self.proven.get(&client.key()).is_some_and(|at| at.elapsed() < PROVEN_FOR)
    }

    /// Room for `n` more bytes of a body from `client` (added to `permit`), or why there is none.
    async fn take(&self, permit: &mut BodyPermit, n: u64) -> Result<(), ApiError> {
        if n == 0 {
            return Ok(());
        }
        let share = if permit.proven { self.proven_share } else { self.share };
        {
            let mut held = self.held.entry(permit.client).or_insert(0);
            if *held + n > share {
                return Err(ApiError::Busy("too many request bodies are being sent from this address"));
            }
            *held += n;
        }
        permit.len += n;
        let count = u32::try_from(n).unwrap_or(u32::MAX);
        if permit.proven
            && let Ok(room) = self.proven_lane.clone().try_acquire_many_owned(count)
        {
            merge(&mut permit.lane, room);
            return Ok(());
        }
        match tokio::time::timeout(WAIT, self.general.clone().acquire_many_owned(count)).await {
            Ok(Ok(room)) => {
                merge(&mut permit.general, room);
                Ok(())
            }
            _ => Err(ApiError::Busy("the server is receiving too many request bodies right now")),
        }
    }
}

fn merge(into: &mut Option<OwnedSemaphorePermit>, more: OwnedSemaphorePermit) {
    match into {
        Some(permit) => permit.merge(more),
        None => *into = Some(more),
    }
}

/// What a body holds of the budget, given back when dropped.
struct BodyPermit {
    budget: Arc<BodyBudget>,
    client: Option<AddressKey>,
    proven: bool,
    len: u64,
    general: Option<OwnedSemaphorePermit>,
    lane: Option<OwnedSemaphorePermit>,
}

impl Drop for BodyPermit {
    fn drop(&mut self) {
        let len = self.len;
        if len > 0 {
            self.budget.held.remove_if_mut(&self.client, |_, held| {
                *held = held.saturating_sub(len);
                *held == 0
            });
        }
    }
}

/// A request body and its room in the budget (held until the body is dropped).
pub struct Body {
    pub bytes: Bytes,
    _permit: BodyPermit,
}

impl std::ops::Deref for Body {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// The body of a request of at most `max` bytes, read within the budget and at its pace.
pub fn limited(max: u64, budget: Arc<BodyBudget>) -> impl Filter<Extract = (Body,), Error = Rejection> + Clone {
    warp::body::content_length_limit(max)
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::ext::optional::<ClientAddr>())
        .and(warp::body::stream())
        .and_then(move |len: Option<u64>, client: Option<ClientAddr>, stream| {
            let budget = budget.clone();
            async move {
                let mut permit = BodyPermit {
                    client: client.as_ref().map(|c| c.key()),
                    proven: budget.is_proven(client.as_ref()),
                    budget,
                    len: 0,
                    general: None,
                    lane: None,
                };
                let bytes = read(stream, len.unwrap_or(0), &mut permit).await.map_err(warp::reject::custom)?;
                Ok::<_, Rejection>(Body { bytes, _permit: permit })
            }
        })
}

/// Reads a body of `len` bytes (its `Content-Length`), taking room for its bytes as they arrive, and cutting
/// it off when a [`WINDOW`] passes with fewer than [`MIN_RATE`] bytes (or the rest of it) come.
async fn read(
    stream: impl futures_util::Stream<Item = Result<impl bytes::Buf, warp::Error>>,
    len: u64,
    permit: &mut BodyPermit,
) -> Result<Bytes, ApiError> {
    use futures_util::StreamExt as _;
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut received = 0u64;
    let mut stream = std::pin::pin!(stream);
    let (mut window_end, mut window_start_at) = (Instant::now() + WINDOW, 0u64);
    loop {
        match tokio::time::timeout_at(window_end, stream.next()).await {
            Err(_) => {
                let due = MIN_RATE.min(len.saturating_sub(window_start_at));
                if received - window_start_at < due {
                    return Err(ApiError::SlowBody);
                }
                (window_end, window_start_at) = (window_end + WINDOW, received);
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(ApiError::BodyCutOff),
            Ok(Some(Ok(mut chunk))) => {
                let n = chunk.remaining() as u64;
                let budget = permit.budget.clone();
                budget.take(permit, n).await?;
                received += n;
                chunks.push(chunk.copy_to_bytes(chunk.remaining()));
            }
        }
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => {
            let mut whole = bytes::BytesMut::with_capacity(usize::try_from(received).unwrap_or(0));
            for chunk in chunks {
                whole.extend_from_slice(&chunk);
            }
            whole.freeze()
        }
    })
}

/// A URL-encoded form of at most `max` bytes, read within the budget (a field given twice keeps its last value).
pub fn form(
    max: u64,
    budget: Arc<BodyBudget>,
) -> impl Filter<Extract = (std::collections::HashMap<String, String>,), Error = Rejection> + Clone {
    limited(max, budget).map(|body: Body| url::form_urlencoded::parse(&body).into_owned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(ip: &str) -> ClientAddr {
        ClientAddr(ip.parse().unwrap())
    }

    fn permit(budget: &Arc<BodyBudget>, ip: &str) -> BodyPermit {
        let c = client(ip);
        BodyPermit {
            budget: budget.clone(),
            client: Some(c.key()),
            proven: budget.is_proven(Some(&c)),
            len: 0,
            general: None,
            lane: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_holds_at_most_its_share_as_bytes_arrive_and_gives_it_back() {
        let budget = BodyBudget::new(1600, 50, Vec::new());
        assert_eq!((budget.share, budget.proven_share), (100, 400));
        let mut a = permit(&budget, "192.0.2.1");
        budget.take(&mut a, 60).await.unwrap();
        budget.take(&mut a, 40).await.unwrap();
        assert!(budget.take(&mut a, 1).await.is_err(), "the address holds its share");
        let mut b = permit(&budget, "192.0.2.1");
        assert!(budget.take(&mut b, 1).await.is_err(), "another body from it too");
        drop((a, b));
        assert_eq!(budget.general.available_permits(), 1200);
        assert!(budget.held.is_empty(), "nothing is kept for addresses that hold nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn unproven_addresses_cannot_take_the_room_kept_for_proven_senders() {
        let budget = BodyBudget::new(1600, 50, vec!["198.51.100.0/24".parse().unwrap()]);
        let mut flood = Vec::new();
        for i in 1..=12 {
            let mut p = permit(&budget, &format!("192.0.2.{i}"));
            budget.take(&mut p, 100).await.unwrap();
            flood.push(p);
        }
        let mut more = permit(&budget, "192.0.2.13");
        assert!(budget.take(&mut more, 1).await.is_err(), "the general room is full: refused after the wait");
        // A sender that proved itself with a signed webhook, and one in a configured range, still get room.
        budget.prove(client("203.0.113.9").key());
        for ip in ["203.0.113.9", "198.51.100.7"] {
            let mut meta = permit(&budget, ip);
            assert!(meta.proven);
            budget.take(&mut meta, 200).await.unwrap();
        }
    }
}
