//! The portal's route table: each route extracts what its handler needs and answers with its page (or the
//! `PageError`'s).

use std::sync::Arc;

use warp::reply::Response;
use warp::{Filter, Rejection};

use super::access::{Signed, session};
use super::{Form, PortalState, account, admin, pages};
use crate::http::error::respond;
use crate::http::server::ClientAddr;

pub fn routes(
    state: PortalState,
    bodies: Arc<crate::http::BodyBudget>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let with = warp::any().map(move || state.clone());
    let cookies = warp::header::optional::<String>("cookie");
    let signed = cookies
        .and(with.clone())
        .then(|cookies: Option<String>, s: PortalState| async move { (session(cookies.as_deref(), &s).await, s) })
        .untuple_one();
    let form = crate::http::body::form(16 * 1024, bodies);
    let post = warp::post().and(signed.clone()).and(form.clone());

    let login_page = warp::path!("portal" / "login")
        .and(warp::get())
        .and(with.clone())
        .map(|s: PortalState| account::login_page(&s));
    let login = warp::path!("portal" / "login")
        .and(warp::post())
        .and(cookies)
        .and(warp::ext::optional::<ClientAddr>())
        .and(form)
        .and(with.clone())
        .then(|cookies: Option<String>, client: Option<ClientAddr>, form: Form, s: PortalState| async move {
            account::login(cookies.as_deref(), client, form, s).await
        });
    let logout = warp::path!("portal" / "logout").and(post.clone()).then(
        |signed: Option<Signed>, s: PortalState, form: Form| async move {
            respond(account::logout(signed, &form, &s).await)
        },
    );
    let password_page = warp::path!("portal" / "password")
        .and(warp::get())
        .and(signed.clone())
        .map(|signed: Option<Signed>, _s: PortalState| respond(account::password_page(signed)));
    let password = warp::path!("portal" / "password").and(post.clone()).then(
        |signed: Option<Signed>, s: PortalState, form: Form| async move {
            respond(account::change_password(signed, &form, &s).await)
        },
    );
    let home = warp::path!("portal").and(warp::get()).and(warp::query::<Form>()).and(signed.clone()).then(
        |q: Form, signed: Option<Signed>, s: PortalState| async move { respond(pages::home(signed, &q, &s).await) },
    );
    let connect = warp::path!("portal" / "connect").and(post.clone()).and(cookies).then(
        |signed: Option<Signed>, s: PortalState, form: Form, cookies: Option<String>| async move {
            respond(pages::connect(signed, &form, cookies.as_deref(), &s).await)
        },
    );
    let confirm = warp::path!("portal" / "pages" / String / "disconnect").and(warp::get()).and(signed.clone()).then(
        |page: String, signed: Option<Signed>, s: PortalState| async move {
            respond(pages::confirm_disconnect(&page, signed, &s).await)
        },
    );
    let disconnect = warp::path!("portal" / "pages" / String / "disconnect").and(post.clone()).then(
        |page: String, signed: Option<Signed>, s: PortalState, form: Form| async move {
            respond(pages::disconnect(&page, signed, &form, &s).await)
        },
    );
    let add_client = warp::path!("portal" / "clients").and(post.clone()).then(
        |signed: Option<Signed>, s: PortalState, form: Form| async move {
            respond(admin::add_client(signed, &form, &s).await)
        },
    );
    let link = warp::path!("portal" / "clients" / String / "link").and(post.clone()).then(
        |slug: String, signed: Option<Signed>, s: PortalState, form: Form| async move {
            respond(admin::onboard_link(&slug, signed, &form, &s).await)
        },
    );
    let invite =
        warp::path!("portal" / "users").and(post).then(
            |signed: Option<Signed>, s: PortalState, form: Form| async move {
                respond(admin::invite(signed, &form, &s).await)
            },
        );

    login_page
        .or(login)
        .unify()
        .or(logout)
        .unify()
        .or(password_page)
        .unify()
        .or(password)
        .unify()
        .or(home)
        .unify()
        .or(connect)
        .unify()
        .or(confirm)
        .unify()
        .or(disconnect)
        .unify()
        .or(add_client)
        .unify()
        .or(link)
        .unify()
        .or(invite)
        .unify()
}
