//! Serving the routes on a listener we bound, with the limits warp and hyper leave to us. Every limit here
//! keeps one client (or a flood of connections) from holding what every tenant's webhooks need:
//!
//! - **Connection slots.** At most `max_connections` are open. A slot is taken *before* each accept, so at
//!   the cap new connections wait in the kernel's listen backlog and are served as slots free up, instead of
//!   being accepted and reset.
//! - **Per address.** One address (an IPv6 /64) holds at most `max_connections_per_address` of them; more are
//!   closed at once, so a flood from one address leaves the other slots to everyone else. Behind trusted
//!   proxies the cap counts requests in flight per forwarded client address instead.
//! - **Phases** (see `connection`): a request's headers within `header_read_timeout` of its first byte, at
//!   most `keep_alive_timeout` silent (before the first request or between requests), and a whole request
//!   within `request_timeout` (408). When more than half the slots are taken the server is *pressed*, and a
//!   silent connection gets only `first_byte_timeout`: a flood of silent connections is culled within it. The
//!   server stays pressed until fewer than an eighth of the slots are taken (a low watermark), so a few
//!   addresses that reconnect as fast as they are culled cannot keep half the slots for good; clients that open
//!   connections ahead of use are left alone the rest of the time. A connection that overstays is closed,
//!   freeing its slot.
//! - **Age.** A connection older than `max_connection_age` finishes its request and closes, so no client
//!   keeps a slot for good by sending a request just often enough.
//! - **Memory.** Headers are read into a buffer of at most [`READ_BUFFER`] bytes per connection; bodies are
//!   bounded by the routes (`http::body`).
//! - **HTTP/1.1 only.** Meta delivers webhooks over HTTP/1.1 and browsers reach the portal through the
//!   TLS-terminating proxy, so HTTP/2 (its streams, pings and settings, and their floods) is not spoken at all.
//!
//! Shutdown stops accepting, lets requests in flight finish for at most `shutdown_grace`, then closes the rest.

mod address;
mod connection;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;
use warp::Reply as _;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

pub use self::address::{AddressKey, AddressSlot, ClientAddr, PerAddress, TrustedProxies};
use self::connection::{Clock, Phase, PhaseLimits, Watched};

/// The most a connection buffers while reading a request head (hyper's minimum is 8 KiB). Headers of real
/// requests here are well under 4 KiB; a longer head is refused with 431.
pub const READ_BUFFER: usize = 16 * 1024;

/// Connection and request limits.
#[derive(Debug, Clone)]
pub struct Limits {
    pub first_byte_timeout: Duration,
    pub header_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connection_age: Duration,
    pub max_connections: usize,
    /// 0: no per-address cap.
    pub max_connections_per_address: u32,
    pub trusted_proxies: TrustedProxies,
    pub shutdown_grace: Duration,
}

impl Limits {
    fn phases(&self) -> PhaseLimits {
        PhaseLimits {
            first_byte: self.first_byte_timeout,
            header_read: self.header_read_timeout,
            keep_alive: self.keep_alive_timeout,
            request: self.request_timeout,
        }
    }
}

pub const CONNECTIONS_REFUSED: &str = "switchboard_connections_refused_total";
pub const CONNECTIONS_CLOSED: &str = "switchboard_connections_closed_total";
pub const REQUESTS_REFUSED: &str = "switchboard_requests_refused_total";
pub const OPEN_CONNECTIONS: &str = "switchboard_open_connections";

struct Shared {
    http: http1::Builder,
    slots: Arc<Semaphore>,
    /// Bumped when the server becomes pressed, to wake every connection's watchdog.
    pressure: tokio::sync::watch::Sender<u64>,
    /// Pressed now: set above half the slots, cleared below an eighth (see [`Shared::pressed`]).
    pressed: std::sync::atomic::AtomicBool,
    routes: BoxedFilter<(Response,)>,
    limits: Limits,
    phases: PhaseLimits,
    /// Requests in flight per forwarded client address (connections from trusted proxies).
    proxied: PerAddress,
    /// Shutdown began: finish what is in flight, take nothing new.
    draining: CancellationToken,
    /// The grace period is over: close everything now.
    closing: CancellationToken,
}

/// Serves `routes` on `listener` until `shutdown` resolves, then drains for at most `shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    routes: BoxedFilter<(Response,)>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let shared = Arc::new(Shared::new(routes, limits, slots.clone()));
    let per_address = PerAddress::default();
    let connections = TaskTracker::new();
    let mut pressed = false;
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => permit.expect("the slot semaphore is never closed"),
        };
        shared.note_pressure(&mut pressed);
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    // Out of file descriptors and the like: back off briefly instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let proxied = shared.limits.trusted_proxies.contains(peer.ip());
        let Ok(address) = shared.address_slot(&per_address, peer, proxied) else { continue };
        let _ = stream.set_nodelay(true);
        connections.spawn(connection(stream, peer, proxied, shared.clone(), permit, address));
    }
    drop(listener);
    shared.drain(&connections).await;
}

/// The per-address cap is reached: the connection is refused.
struct AtCap;

impl Shared {
    fn new(routes: BoxedFilter<(Response,)>, limits: Limits, slots: Arc<Semaphore>) -> Self {
        let mut http = http1::Builder::new();
        // hyper's header timeout would also count the idle time between requests: the connection clock keeps
        // the time instead.
        http.keep_alive(true).header_read_timeout(None).max_buf_size(READ_BUFFER);
        Self {
            http,
            slots,
            pressure: tokio::sync::watch::Sender::new(0),
            pressed: std::sync::atomic::AtomicBool::new(false),
            routes,
            phases: limits.phases(),
            limits,
            proxied: PerAddress::default(),
            draining: CancellationToken::new(),
            closing: CancellationToken::new(),
        }
    }

    /// Tells open connections when more than half the slots become taken (silent ones then get the
    /// first-byte timeout); `pressed` remembers whether they were at the last accept.
    fn note_pressure(&self, pressed: &mut bool) {
        match (*pressed, self.pressed()) {
            (false, true) => {
                *pressed = true;
                tracing::warn!(
                    open = self.limits.max_connections - self.slots.available_permits(),
                    "more than half the connection slots are taken; silent connections get the first-byte timeout until \
                     fewer than an eighth are"
                );
                self.pressure.send_modify(|n| *n += 1);
            }
            (true, false) => *pressed = false,
            _ => {}
        }
    }

    /// The peer's share of the per-address cap (none when there is no cap, or the peer is a trusted proxy
    /// whose clients are capped per request instead); `Err` when the address is at its cap.
    fn address_slot(
        &self,
        per_address: &PerAddress,
        peer: SocketAddr,
        proxied: bool,
    ) -> Result<Option<AddressSlot>, AtCap> {
        let max = self.limits.max_connections_per_address;
        if max == 0 || proxied {
            return Ok(None);
        }
        match per_address.try_take(AddressKey::of(peer.ip()), max) {
            Some(slot) => Ok(Some(slot)),
            None => {
                metrics::counter!(CONNECTIONS_REFUSED, "reason" => "per_address").increment(1);
                tracing::debug!(address = %AddressKey::of(peer.ip()), "connection refused: address at its cap");
                Err(AtCap)
            }
        }
    }

    /// Lets open connections finish for at most the grace period, then closes the rest.
    async fn drain(&self, connections: &TaskTracker) {
        self.draining.cancel();
        connections.close();
        if tokio::time::timeout(self.limits.shutdown_grace, connections.wait()).await.is_err() {
            tracing::warn!(grace = ?self.limits.shutdown_grace, open = connections.len(),
                "connections still open after the grace period; closing them");
            self.closing.cancel();
            connections.wait().await;
        }
        tracing::info!("all connections closed");
    }

    /// Whether silent connections get only the first-byte timeout: from when more than half the slots are
    /// taken until fewer than an eighth are (culling stops at a low watermark, not just below the high one).
    fn pressed(&self) -> bool {
        use std::sync::atomic::Ordering;
        let max = self.limits.max_connections;
        let taken = max - self.slots.available_permits().min(max);
        if taken * 2 > max {
            self.pressed.store(true, Ordering::Relaxed);
            true
        } else if taken * 8 < max {
            self.pressed.store(false, Ordering::Relaxed);
            false
        } else {
            self.pressed.load(Ordering::Relaxed)
        }
    }
}

/// Serves one connection until it ends, overstays a phase, ages out, or the server closes.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    proxied: bool,
    shared: Arc<Shared>,
    _slot: OwnedSemaphorePermit,
    _address: Option<AddressSlot>,
) {
    let _open = OpenConnection::counted();
    let clock = Clock::new();
    let service = {
        let (shared, clock) = (shared.clone(), clock.clone());
        hyper::service::service_fn(move |request| handle(request, peer, proxied, &shared, &clock))
    };
    let conn = shared.http.serve_connection(TokioIo::new(Watched::new(stream, clock.clone())), service);
    tokio::pin!(conn);
    let too_old = Instant::now() + shared.limits.max_connection_age;
    let mut pressure = shared.pressure.subscribe();
    let closing = shared.closing.cancelled();
    let draining = shared.draining.cancelled();
    tokio::pin!(closing, draining);
    // The watchdog is not told when a request starts or ends (that would cost every request a wake-up): it
    // looks at the clock at the current phase's deadline, and at least once per header timeout, so a request
    // head that started meanwhile is cut off exactly at its own deadline.
    let check_every = shared.limits.header_read_timeout;
    // Once a graceful close began (age, shutdown): when to stop waiting for it.
    let mut closing_by: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let (_, due) = clock.due(&shared.phases, shared.pressed());
        let wake = closing_by.map_or(due.min(too_old), |by| by.min(due)).min(now + check_every);
        tokio::select! {
            _ = conn.as_mut() => return,
            () = &mut closing => return,
            // The server became pressed: a silent connection's deadline is earlier now.
            Ok(()) = pressure.changed() => continue,
            () = &mut draining, if closing_by.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing_by = Some(Instant::now() + shared.limits.request_timeout);
            }
            () = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if closing_by.is_some_and(|by| now >= by) {
                    return closed("drain_timeout");
                }
                // Looked at again now: the phase or the pressure may have changed while this slept.
                let (phase, due) = clock.due(&shared.phases, shared.pressed());
                match phase {
                    Phase::Fresh if now >= due => return closed("first_byte_timeout"),
                    Phase::Head if now >= due => return closed("header_timeout"),
                    Phase::Idle if now >= due => return closed("idle_timeout"),
                    _ => {}
                }
                if closing_by.is_none() && now >= too_old {
                    metrics::counter!(CONNECTIONS_CLOSED, "reason" => "max_age").increment(1);
                    conn.as_mut().graceful_shutdown();
                    closing_by = Some(now + shared.limits.request_timeout);
                }
            }
        }
    }
}

fn closed(reason: &'static str) {
    metrics::counter!(CONNECTIONS_CLOSED, "reason" => reason).increment(1);
}

/// Answers one request: marks the connection busy, finds the client address, applies the per-client cap for
/// proxied requests, and runs the routes within the request timeout.
fn handle(
    mut request: hyper::Request<hyper::body::Incoming>,
    peer: SocketAddr,
    proxied: bool,
    shared: &Arc<Shared>,
    clock: &Arc<Clock>,
) -> impl Future<Output = Result<Response, Infallible>> + use<> {
    let busy = clock.busy();
    let shared = shared.clone();
    let client = if proxied {
        let forwarded = request.headers().get_all("x-forwarded-for").iter().map(|v| v.as_bytes());
        shared.limits.trusted_proxies.client(peer.ip(), forwarded)
    } else {
        peer.ip()
    };
    let max = shared.limits.max_connections_per_address;
    let slot = (proxied && max > 0).then(|| shared.proxied.try_take(AddressKey::of(client), max));
    request.extensions_mut().insert(ClientAddr(client));
    async move {
        let _busy = busy;
        if matches!(slot, Some(None)) {
            metrics::counter!(REQUESTS_REFUSED, "reason" => "per_address").increment(1);
            let mut refused =
                warp::reply::with_status("too many requests from this address\n", StatusCode::TOO_MANY_REQUESTS)
                    .into_response();
            refused.headers_mut().insert("retry-after", warp::http::HeaderValue::from_static("1"));
            return Ok(refused);
        }
        let _slot = slot;
        let answer =
            tokio::time::timeout(shared.limits.request_timeout, warp::service(shared.routes.clone()).oneshot(request))
                .await;
        Ok(match answer {
            Ok(Ok(response)) => response,
            Ok(Err(never)) => match never {},
            Err(_) => warp::reply::with_status("request timed out\n", StatusCode::REQUEST_TIMEOUT).into_response(),
        })
    }
}

/// Counts a connection in the open-connections gauge while it lives.
struct OpenConnection;

impl OpenConnection {
    fn counted() -> Self {
        metrics::gauge!(OPEN_CONNECTIONS).increment(1.0);
        Self
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!(OPEN_CONNECTIONS).decrement(1.0);
    }
}
