//! `/healthz` (the process is up), `/readyz` (the database answers and the engine runs), the portal's
//! stylesheet, and `/metrics` (Prometheus text), which is served on its own listener (`server.metrics_bind`,
//! loopback by default), never on the public one.

use metrics_exporter_prometheus::PrometheusHandle;
use switchboard_actors::Router;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::store::Store;

pub fn routes(store: Store, router: Router) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::with_status("ok\n", StatusCode::OK).into_response());
    let readyz = warp::path!("readyz").and(warp::get()).then(move || {
        let store = store.clone();
        let router = router.clone();
        async move {
            let (status, text) = match store.ping().await {
                Err(err) => {
                    tracing::warn!(error = %err, "readiness check failed");
                    (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n")
                }
                Ok(()) if !router.is_running() => (StatusCode::SERVICE_UNAVAILABLE, "engine not running\n"),
                Ok(()) => (StatusCode::OK, "ready\n"),
            };
            warp::reply::with_status(text, status).into_response()
        }
    });
    let stylesheet = warp::path!("assets" / "switchboard.css").and(warp::get()).map(|| {
        let css = warp::reply::with_header(super::html::STYLESHEET, "content-type", "text/css; charset=utf-8");
        warp::reply::with_header(css, "cache-control", "public, max-age=3600").into_response()
    });
    healthz.or(readyz).unify().or(stylesheet).unify()
}

/// `GET /metrics` alone, for the metrics listener.
pub fn metrics_routes(metrics: PrometheusHandle) -> warp::filters::BoxedFilter<(Response,)> {
    warp::path!("metrics")
        .and(warp::get())
        .map(move || {
            warp::reply::with_header(metrics.render(), "content-type", "text/plain; version=0.0.4").into_response()
        })
        .recover(|_| async {
            Ok::<_, std::convert::Infallible>(
                warp::reply::with_status("not found\n", StatusCode::NOT_FOUND).into_response(),
            )
        })
        .unify()
        .boxed()
}
