//! One connection's clock: which phase it is in and since when, so the server can close a connection that
//! overstays its phase.
//!
//! A connection is *fresh* until its first byte, *idle* between requests, reading a request's *head* from
//! that request's first byte until its headers are complete, and *busy* while a request is handled (its body
//! read and its answer made; `server.request_timeout_secs` bounds that). The socket wrapper moves a fresh or
//! idle connection to head on the first byte it reads; the service moves it to busy and back to idle.
//! hyper's own header timeout starts whenever the connection waits for a request, idle time included, so it
//! is off and this clock keeps the time instead.
//!
//! Clients open connections ahead of use (HTTP client pools, browsers' preconnects) and keep them idle, so a
//! fresh or idle connection may normally wait as long as the keep-alive timeout. When the server is *pressed*
//! (more than half its slots taken), silent connections are what a flood is made of, and they get only the
//! first-byte timeout: a fresh one from its start, an idle one from its last request.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// How long each phase may last.
#[derive(Debug, Clone, Copy)]
pub struct PhaseLimits {
    pub first_byte: Duration,
    pub header_read: Duration,
    pub keep_alive: Duration,
    pub request: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Fresh,
    Idle,
    Head,
    Busy,
}

const FRESH: u8 = 0;
const IDLE: u8 = 1;
const HEAD: u8 = 2;
const BUSY: u8 = 3;

/// The phase of one connection and when it began. Touched only by the connection's own task (its socket,
/// its service and its watchdog are polled together), so relaxed atomics suffice.
pub struct Clock {
    origin: Instant,
    phase: AtomicU8,
    since_ms: AtomicU64,
}

impl Clock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { origin: Instant::now(), phase: AtomicU8::new(FRESH), since_ms: AtomicU64::new(0) })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn enter(&self, phase: u8) {
        self.since_ms.store(self.now_ms(), Ordering::Relaxed);
        self.phase.store(phase, Ordering::Relaxed);
    }

    /// Bytes arrived: a fresh or idle connection starts reading a request head.
    fn bytes_read(&self) {
        let phase = self.phase.load(Ordering::Relaxed);
        if phase == FRESH || phase == IDLE {
            self.enter(HEAD);
        }
    }

    /// The connection's current phase, and when that phase must end (for a busy connection: when to look
    /// again, since the request timeout ends the request itself). `pressed`: the server is short of slots.
    pub fn due(&self, limits: &PhaseLimits, pressed: bool) -> (Phase, Instant) {
        let phase = self.phase.load(Ordering::Relaxed);
        let since = self.origin + Duration::from_millis(self.since_ms.load(Ordering::Relaxed));
        let silent = if pressed { limits.first_byte.min(limits.keep_alive) } else { limits.keep_alive };
        match phase {
            FRESH => (Phase::Fresh, since + silent),
            IDLE => (Phase::Idle, since + silent),
            HEAD => (Phase::Head, since + limits.header_read),
            _ => (Phase::Busy, Instant::now() + limits.request),
        }
    }

    /// A request's headers were read: busy until the returned guard drops (its answer is made, or the
    /// connection dropped it).
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.enter(BUSY);
        Busy(self.clone())
    }
}

/// Holds a connection busy.
pub struct Busy(Arc<Clock>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.enter(IDLE);
    }
}

/// A socket that tells its connection's [`Clock`] when bytes arrive.
pub struct Watched<S> {
    inner: S,
    clock: Arc<Clock>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, clock: Arc<Clock>) -> Self {
        Self { inner, clock }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.bytes_read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PhaseLimits = PhaseLimits {
        first_byte: Duration::from_secs(5),
        header_read: Duration::from_secs(10),
        keep_alive: Duration::from_secs(60),
        request: Duration::from_secs(30),
    };

    #[tokio::test(start_paused = true)]
    async fn each_phase_has_its_own_deadline_counted_from_its_start() {
        let clock = Clock::new();
        let start = Instant::now();
        assert_eq!(clock.due(&LIMITS, true), (Phase::Fresh, start + LIMITS.first_byte));
        tokio::time::advance(Duration::from_secs(2)).await;
        clock.bytes_read();
        assert_eq!(clock.due(&LIMITS, true), (Phase::Head, start + Duration::from_secs(2) + LIMITS.header_read));
        tokio::time::advance(Duration::from_secs(1)).await;
        clock.bytes_read();
        assert_eq!(clock.due(&LIMITS, true).1, start + Duration::from_secs(12), "more header bytes do not extend it");
        let busy = clock.busy();
        assert_eq!(clock.due(&LIMITS, true).0, Phase::Busy);
        tokio::time::advance(Duration::from_secs(4)).await;
        drop(busy);
        assert_eq!(clock.due(&LIMITS, false), (Phase::Idle, start + Duration::from_secs(7) + LIMITS.keep_alive));
        clock.bytes_read();
        assert_eq!(clock.due(&LIMITS, false).0, Phase::Head, "the next request's first byte");
    }

    #[tokio::test(start_paused = true)]
    async fn silent_connections_wait_as_long_as_idle_ones_unless_the_server_is_pressed() {
        let clock = Clock::new();
        let start = Instant::now();
        assert_eq!(clock.due(&LIMITS, false), (Phase::Fresh, start + LIMITS.keep_alive), "opened ahead of use");
        assert_eq!(clock.due(&LIMITS, true), (Phase::Fresh, start + LIMITS.first_byte));
        drop(clock.busy());
        assert_eq!(clock.due(&LIMITS, true), (Phase::Idle, start + LIMITS.first_byte));
    }
}
