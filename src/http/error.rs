//! The one place HTTP status codes are decided. Routes for Meta and machines reject with an `ApiError` (or
//! warp rejects on its own), and `recover` turns that into a status and a message that names the problem;
//! portal handlers return a `PageError`, which becomes an HTML page (or, for a person who must sign in or
//! choose a password first, a redirect).

use std::convert::Infallible;

use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Rejection, Reply};

use super::html;
use crate::meta::signed_request::SignedRequestError;
use crate::meta::webhook::{ParseError, SignatureError};
use crate::onboarding::{CallbackError, LinkError};
use crate::store::StoreError;

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
    /// Over a throttle: try again after this many seconds.
    #[error("{0} Please wait {1} seconds and try again.")]
    TooMany(&'static str, u64),
    /// "Connect with Facebook" was continued without the page that names the client, in this browser.
    #[error(
        "This sign-in was not continued from the page that names the business it connects to, in this browser. \
             Open the link you were sent again, check the business it names, and continue from there."
    )]
    StartNotShown,
    #[error("the request body was cut off")]
    BodyCutOff,
    /// A form or query string that cannot be read as its page's fields.
    #[error("the form cannot be read: {0}")]
    BadForm(String),
}

impl warp::reject::Reject for ApiError {}

/// What stops a portal request, in words for the person at the browser.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// Not signed in: to the sign-in page.
    #[error("sign in first")]
    SignInFirst,
    /// Signed in with a one-time password: to the password page.
    #[error("choose a password first")]
    ChooseAPasswordFirst,
    #[error("{0}")]
    BadRequest(String),
    #[error("The e-mail or the password is not right.")]
    BadCredentials,
    #[error("The sign-in form expired. Please try again.")]
    SignInFormExpired,
    #[error("This form has expired. Go back, reload the page and try again.")]
    FormExpired,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("Too many sign-in attempts. Please wait {0} seconds and try again.")]
    TooManyAttempts(u64),
    #[error("{0}")]
    Internal(String),
    #[error("The service is temporarily unavailable; please try again shortly.")]
    Unavailable,
}

impl PageError {
    pub fn status(&self) -> StatusCode {
        match self {
            PageError::SignInFirst | PageError::ChooseAPasswordFirst => StatusCode::SEE_OTHER,
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::BadCredentials => StatusCode::UNAUTHORIZED,
            PageError::SignInFormExpired | PageError::FormExpired | PageError::Forbidden(_) => StatusCode::FORBIDDEN,
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::Conflict(_) => StatusCode::CONFLICT,
            PageError::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
            PageError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            PageError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The answer: a redirect, or an error page with the status.
    pub fn page(&self) -> Response {
        match self {
            PageError::SignInFirst => see_other("/portal/login"),
            PageError::ChooseAPasswordFirst => see_other("/portal/password"),
            other => html::error(other.status(), &other.to_string()),
        }
    }
}

impl From<StoreError> for PageError {
    /// Storage failed: the cause is logged, the person is told to try again.
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "portal storage error");
        PageError::Unavailable
    }
}

/// The page, or the error's page.
pub fn respond(result: Result<Response, PageError>) -> Response {
    result.unwrap_or_else(|e| e.page())
}

/// A 303 to `location` (after a form POST, or to the page a person must see first).
pub fn see_other(location: &str) -> Response {
    match location.parse::<warp::http::Uri>() {
        Ok(uri) => warp::redirect::see_other(uri).into_response(),
        Err(_) => html::error(StatusCode::INTERNAL_SERVER_ERROR, "could not build the redirect"),
    }
}

/// A 302 to `location` (to Facebook's dialog, and back from it).
pub fn found(location: &str) -> Response {
    match location.parse::<warp::http::Uri>() {
        Ok(uri) => warp::redirect::found(uri).into_response(),
        Err(_) => html::error(StatusCode::INTERNAL_SERVER_ERROR, "could not build the redirect"),
    }
}

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
            ApiError::BodyCutOff | ApiError::BadForm(_) => StatusCode::BAD_REQUEST,
            ApiError::TooMany(..) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::StartNotShown => StatusCode::FORBIDDEN,
        }
    }

    /// Errors a person meets in a browser get a page; Meta and machines get plain text.
    fn for_people(&self) -> bool {
        matches!(
            self,
            ApiError::OnboardLink(_)
                | ApiError::UnknownClient(_)
                | ApiError::Callback(_)
                | ApiError::NotFound(_)
                | ApiError::TooMany(..)
                | ApiError::StartNotShown
        )
    }
}

/// Maps rejections to answers.
pub async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    if let Some(e) = rejection.find::<ApiError>().filter(|e| e.for_people()) {
        let mut page = html::error(e.status(), &e.to_string());
        if let ApiError::TooMany(_, wait) = e
            && let Ok(value) = warp::http::HeaderValue::from_str(&wait.to_string())
        {
            page.headers_mut().insert("retry-after", value);
        }
        return Ok(page);
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
