//! The one way the stand-in answers with JSON, shared by the Graph routes and the `/_sim` control API.

use serde_json::Value;
use warp::Reply as _;
use warp::http::StatusCode;
use warp::reply::Response;

/// `value` as JSON with `status`.
pub(crate) fn json_reply(value: &Value, status: StatusCode) -> Response {
    warp::reply::with_status(warp::reply::json(value), status).into_response()
}
