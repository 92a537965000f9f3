//! Request bodies, read within a memory budget.
//!
//! Every route that reads a body states its largest size (`Content-Length` is required; more is 413, none is
//! 411) and takes that many bytes from one budget shared by all requests (`server.max_body_memory_bytes`)
//! before it reads anything; the body is read into one buffer of exactly that size. A client address may hold
//! at most a quarter of the budget at once, and a body must arrive at [`MIN_RATE`] bytes a second at least
//! (after [`GRACE`]), or the request gets 408: so holding the budget takes several addresses each sending
//! megabytes a second, not a few connections trickling bytes. A request that finds no room waits up to
//! [`WAIT`], then gets 503 (Meta retries). So the bodies that requests, authenticated or not, can pin at once
//! never exceed the budget.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use warp::{Filter, Rejection};

use super::error::ApiError;
use crate::http::server::{AddressKey, ClientAddr};

/// How long a request waits for room in the budget before it is refused.
pub const WAIT: Duration = Duration::from_secs(1);
/// The time any body may take, on top of what its size takes at [`MIN_RATE`].
pub const GRACE: Duration = Duration::from_secs(5);
/// The slowest a body may arrive, in bytes a second (Meta sends from data centres, far faster; a portal form is
/// a few hundred bytes).
pub const MIN_RATE: u64 = 256 * 1024;

/// The bytes every request body in flight may hold together, and each address's share of them.
pub struct BodyBudget {
    total: Arc<Semaphore>,
    held: Arc<DashMap<Option<AddressKey>, u64>>,
    share: u64,
}

impl BodyBudget {
    /// A budget of `bytes`; each address may hold a quarter of it.
    pub fn new(bytes: u64) -> Arc<Self> {
        let permits = usize::try_from(bytes).unwrap_or(Semaphore::MAX_PERMITS).min(Semaphore::MAX_PERMITS);
        Arc::new(Self { total: Arc::new(Semaphore::new(permits)), held: Arc::new(DashMap::new()), share: bytes / 4 })
    }

    /// Room for a body of `len` bytes from `client`, or why there is none.
    pub async fn take(&self, client: Option<AddressKey>, len: u64) -> Result<BodyPermit, ApiError> {
        {
            let mut held = self.held.entry(client).or_insert(0);
            if *held + len > self.share {
                let nothing_held = *held == 0;
                drop(held);
                if nothing_held {
                    self.held.remove_if(&client, |_, h| *h == 0);
                }
                return Err(ApiError::Busy("too many request bodies are being sent from this address"));
            }
            *held += len;
        }
        let mut permit = BodyPermit { held: self.held.clone(), client, len, total: None };
        let n = u32::try_from(len).unwrap_or(u32::MAX);
        match tokio::time::timeout(WAIT, self.total.clone().acquire_many_owned(n)).await {
            Ok(Ok(total)) => {
                permit.total = Some(total);
                Ok(permit)
            }
            _ => Err(ApiError::Busy("the server is receiving too many request bodies right now")),
        }
    }
}

/// A body's room in the budget, given back when dropped.
pub struct BodyPermit {
    held: Arc<DashMap<Option<AddressKey>, u64>>,
    client: Option<AddressKey>,
    len: u64,
    total: Option<OwnedSemaphorePermit>,
}

impl Drop for BodyPermit {
    fn drop(&mut self) {
        let len = self.len;
        self.held.remove_if_mut(&self.client, |_, held| {
            *held = held.saturating_sub(len);
            *held == 0
        });
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

/// The body of a request of at most `max` bytes, read once the budget has room for it, within its deadline.
pub fn limited(max: u64, budget: Arc<BodyBudget>) -> impl Filter<Extract = (Body,), Error = Rejection> + Clone {
    warp::body::content_length_limit(max)
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::ext::optional::<ClientAddr>())
        .and_then(move |len: Option<u64>, client: Option<ClientAddr>| {
            let budget = budget.clone();
            async move {
                let len = len.unwrap_or(0);
                budget.take(client.map(ClientAddr::key), len).await.map(|p| (p, len)).map_err(warp::reject::custom)
            }
        })
        .untuple_one()
        .and(warp::body::stream())
        .and_then(|permit: BodyPermit, len: u64, stream| async move {
            let deadline = tokio::time::Instant::now() + GRACE + Duration::from_secs(len / MIN_RATE);
            let bytes = read(stream, len, deadline).await.map_err(warp::reject::custom)?;
            Ok::<_, Rejection>(Body { bytes, _permit: permit })
        })
}

/// Reads a body of `len` bytes (its `Content-Length`) into one buffer, by `deadline`.
async fn read(
    stream: impl futures_util::Stream<Item = Result<impl bytes::Buf, warp::Error>>,
    len: u64,
    deadline: tokio::time::Instant,
) -> Result<Bytes, ApiError> {
    use futures_util::StreamExt as _;
    let mut body = bytes::BytesMut::with_capacity(usize::try_from(len).unwrap_or(0));
    let mut stream = std::pin::pin!(stream);
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => return Err(ApiError::SlowBody),
            Ok(None) => return Ok(body.freeze()),
            Ok(Some(Err(_))) => return Err(ApiError::BodyCutOff),
            Ok(Some(Ok(mut chunk))) => {
                while chunk.has_remaining() {
                    let piece = chunk.chunk();
                    body.extend_from_slice(piece);
                    let n = piece.len();
                    chunk.advance(n);
                }
            }
        }
    }
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

    fn key(ip: &str) -> Option<AddressKey> {
        Some(AddressKey::of(ip.parse().unwrap()))
    }

    #[tokio::test(start_paused = true)]
    async fn one_address_holds_at_most_a_quarter_and_the_budget_is_given_back() {
        let budget = BodyBudget::new(400);
        let a = budget.take(key("192.0.2.1"), 60).await.unwrap();
        let b = budget.take(key("192.0.2.1"), 40).await.unwrap();
        assert!(budget.take(key("192.0.2.1"), 1).await.is_err(), "the address holds its share");
        let mut others = Vec::new();
        for ip in ["192.0.2.2", "192.0.2.3", "192.0.2.4"] {
            others.push(budget.take(key(ip), 100).await.unwrap());
        }
        assert!(budget.take(key("192.0.2.5"), 1).await.is_err(), "the whole budget is held: refused after the wait");
        drop(a);
        assert!(budget.take(key("192.0.2.5"), 60).await.is_ok(), "what was given back is room again");
        drop((b, others));
        assert_eq!(budget.total.available_permits(), 400);
        assert!(budget.held.is_empty(), "nothing is kept for addresses that hold nothing");
    }
}
