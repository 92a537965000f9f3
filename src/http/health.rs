//! `/healthz` (the process is up) and `/readyz` (the database answers), plus the one place that turns
//! rejections into status codes.

use std::convert::Infallible;
use std::sync::Arc;

use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::store::Store;

pub fn routes(store: Arc<dyn Store>) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::with_status("ok\n", StatusCode::OK).into_response());
    let readyz = warp::path!("readyz").and(warp::get()).and_then(move || {
        let store = store.clone();
        async move {
            let reply = match store.ping().await {
                Ok(()) => warp::reply::with_status("ready\n", StatusCode::OK).into_response(),
                Err(err) => {
                    tracing::warn!(error = %err, "readiness check failed");
                    warp::reply::with_status("database unreachable\n", StatusCode::SERVICE_UNAVAILABLE).into_response()
                }
            };
            Ok::<_, Rejection>(reply)
        }
    });
    healthz.or(readyz).unify()
}

/// Maps warp's rejections to plain-text answers that name the problem.
pub async fn recover(rejection: Rejection) -> Result<warp::reply::Response, Infallible> {
    let (status, message) = if rejection.is_not_found() {
        (StatusCode::NOT_FOUND, "not found")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        (StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
    } else {
        tracing::error!(?rejection, "unhandled rejection");
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    };
    Ok(warp::reply::with_status(format!("{message}\n"), status).into_response())
}
