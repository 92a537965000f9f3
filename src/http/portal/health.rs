//! A Page's health over time: its last 24 hours and its last 30 days, with its status in plain words.

use maud::html;
use warp::http::StatusCode;
use warp::reply::Response;

use super::PortalState;
use super::access::{Page, Signed, signed_in};
use super::charts::{DAY_SECS, SLOT_SECS, SLOTS, Timeline, charts};
use super::chrome::{page_name, status_words};
use crate::http::html;
use crate::store::Integration;

/// `GET /portal/pages/{page}/health`: the Page's last 24 hours and last 30 days, with its status in words.
pub(super) async fn health(page: &str, signed: Option<Signed>, s: &PortalState) -> Page {
    let g = signed_in(signed)?.ready()?;
    let i = g.owned_page(page, s).await?;
    let now = crate::clock::now().timestamp();
    let minutes = s.store.history(Some(i.page_id.as_str()), 60, now - DAY_SECS, SLOT_SECS).await?;
    let hours = s.store.history(Some(i.page_id.as_str()), 3600, now - 30 * DAY_SECS, 6 * 3600).await?;
    let day = Timeline::new(&minutes.iter().collect::<Vec<_>>(), now, SLOT_SECS, SLOTS, "15 min", "24 h");
    let month = Timeline::new(&hours.iter().collect::<Vec<_>>(), now, 6 * 3600, 120, "6 h", "30 days");
    Ok(health_page(&i, &day, &month, s.stuck_after_secs()))
}

/// A Page's figures over time: its last 24 hours and its last 30 days, with its status in words.
fn health_page(i: &Integration, day: &Timeline, month: &Timeline, stuck_after: i64) -> Response {
    let name = page_name(i);
    let (label, class, words) = status_words(i);
    html::page(
        StatusCode::OK,
        &name,
        html! {
            p { a href="/portal" { "← Back" } }
            h1 { (name) " " small { "(" (i.page_id) ")" } }
            p { span class={"badge banner " (class)} data-status=(i.status) { (label) } " " (words) }
            h2 { "The last 24 hours" }
            (charts("day", day, stuck_after))
            h2 { "The last 30 days" }
            (charts("month", month, stuck_after))
        },
    )
}
