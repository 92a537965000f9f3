//! `/healthz` (the process is up), `/readyz` (the database answers and the engine runs) and `/metrics`
//! (Prometheus text).

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use switchboard_actors::Router;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::store::Store;

pub fn routes(
    store: Arc<dyn Store>,
    router: Router,
    metrics: PrometheusHandle,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
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
    let metrics = warp::path!("metrics").and(warp::get()).map(move || {
        warp::reply::with_header(metrics.render(), "content-type", "text/plain; version=0.0.4").into_response()
    });
    healthz.or(readyz).unify().or(metrics).unify()
}
