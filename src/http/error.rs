//! The one place HTTP status codes are decided: every handler rejects with an `ApiError` (or warp rejects
//! on its own), and `recover` turns that into a status and a plain-text message that names the problem.

use std::convert::Infallible;

use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Rejection, Reply};

use super::html;
use crate::meta::signed_request::SignedRequestError;
use crate::meta::webhook::{ParseError, SignatureError};
use crate::onboarding::{CallbackError, LinkError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("webhook verification failed: wrong hub.mode or hub.verify_token")]
    VerificationFailed,
    #[error("{0}")]
    Signature(#[from] SignatureError),
    #[error("{0}")]
    Parse(#[from] ParseError),
    #[error("{0}")]
    OnboardLink(LinkError),
    #[error("no business with the handle {0:?} is set up on Switchboard; ask for a new link")]
    UnknownClient(String),
    #[error("{0}")]
    Callback(#[from] CallbackError),
    #[error("{0}")]
    SignedRequest(#[from] SignedRequestError),
    #[error("{0}")]
    NotFound(String),
    #[error("the service is temporarily unavailable; please try again shortly")]
    Unavailable,
    /// Too much is in flight (request bodies): try again shortly.
    #[error("{0}; please try again shortly")]
    Busy(&'static str),
    #[error("the request body arrived too slowly")]
    SlowBody,
    #[error("the request body was cut off")]
    BodyCutOff,
}

impl warp::reject::Reject for ApiError {}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::VerificationFailed | ApiError::Signature(_) => StatusCode::FORBIDDEN,
            ApiError::Parse(_) | ApiError::UnknownClient(_) | ApiError::SignedRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::OnboardLink(_) => StatusCode::FORBIDDEN,
            ApiError::Callback(CallbackError::Store(_)) | ApiError::Unavailable | ApiError::Busy(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Callback(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::SlowBody => StatusCode::REQUEST_TIMEOUT,
            ApiError::BodyCutOff => StatusCode::BAD_REQUEST,
        }
    }

    /// Errors a person meets in a browser get a page; Meta and machines get plain text.
    fn for_people(&self) -> bool {
        matches!(
            self,
            ApiError::OnboardLink(_) | ApiError::UnknownClient(_) | ApiError::Callback(_) | ApiError::NotFound(_)
        )
    }
}

/// Maps rejections to answers.
pub async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    if let Some(e) = rejection.find::<ApiError>().filter(|e| e.for_people()) {
        return Ok(html::error(e.status(), &e.to_string()));
    }
    let (status, message) = if let Some(e) = rejection.find::<ApiError>() {
        (e.status(), e.to_string())
    } else if rejection.is_not_found() {
        (StatusCode::NOT_FOUND, "not found".to_owned())
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        // Checked before MethodNotAllowed: a POST to a route that also has a GET collects both.
        (StatusCode::PAYLOAD_TOO_LARGE, "request body too large".to_owned())
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        (StatusCode::LENGTH_REQUIRED, "a Content-Length header is required".to_owned())
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (StatusCode::METHOD_NOT_ALLOWED, "method not allowed".to_owned())
    } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        (StatusCode::BAD_REQUEST, format!("invalid query string: {e}"))
    } else {
        tracing::error!(?rejection, "unhandled rejection");
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error".to_owned())
    };
    Ok(warp::reply::with_status(format!("{message}\n"), status).into_response())
}
