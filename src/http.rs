//! The HTTP front door: every route the server answers, assembled in one place.

mod health;

use std::sync::Arc;

use warp::Filter;

use crate::store::Store;

/// All routes, with rejections mapped to status codes in one place.
pub fn routes(store: Arc<dyn Store>) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    health::routes(store).recover(health::recover).map(warp::Reply::into_response).boxed()
}
