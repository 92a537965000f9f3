//! Serving the routes on a listener we bound, with the limits warp does not set: a header-read timeout
//! (slow headers), a whole-request timeout (slow bodies, slow handlers: 408), a cap on open connections
//! (idle connection floods), and a graceful shutdown that waits for in-flight requests only so long.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;
use warp::Reply as _;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

/// Connection and request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
}

/// The address a request came from (the TCP peer), for handlers that need it (sign-in throttling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub std::net::SocketAddr);

pub const CONNECTIONS_REFUSED: &str = "switchboard_connections_refused_total";
pub const OPEN_CONNECTIONS: &str = "switchboard_open_connections";

/// Serves `routes` on `listener` until `shutdown` resolves, then drains for at most `shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    routes: BoxedFilter<(Response,)>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(err) => {
                // Out of file descriptors and the like: back off briefly instead of spinning.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics::counter!(CONNECTIONS_REFUSED).increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let routes = routes.clone();
        let timeout = limits.request_timeout;
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            let routes = routes.clone();
            request.extensions_mut().insert(PeerAddr(peer));
            async move {
                let answer = tokio::time::timeout(timeout, warp::service(routes).oneshot(request)).await;
                Ok::<_, Infallible>(match answer {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => {
                        warp::reply::with_status("request timed out\n", StatusCode::REQUEST_TIMEOUT).into_response()
                    }
                })
            }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        metrics::gauge!(OPEN_CONNECTIONS).increment(1.0);
        tokio::spawn(async move {
            let _ = connection.await;
            metrics::gauge!(OPEN_CONNECTIONS).decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(grace = ?limits.shutdown_grace, "connections still open after the grace period; closing them");
        }
    }
}
