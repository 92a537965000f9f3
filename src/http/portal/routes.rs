//! The portal's route table: each route extracts what its handler needs and answers with its page (or the
//! `PageError`'s).

use std::sync::Arc;

use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::access::{Signed, session};
use serde::de::DeserializeOwned;

use super::{
    Button, Notice, PortalState, RawForm, account, admin, ai, bot, connect, conversations, health, home, people, read,
    settings,
};
use crate::http::ApiError;
use crate::http::error::respond;
use crate::http::server::ClientAddr;

/// What the routes extract: the portal's state, the signed-in session (if any), a form body, and a POST of a
/// form by whoever is signed in; each route reads the form or query string into its page's typed fields.
#[derive(Clone)]
struct Parts {
    with: BoxedFilter<(PortalState,)>,
    signed: BoxedFilter<(Option<Signed>, PortalState)>,
    form: BoxedFilter<(RawForm,)>,
    post: BoxedFilter<(Option<Signed>, PortalState, RawForm)>,
    /// `post` with room for a large form (the bot editor).
    big_post: BoxedFilter<(Option<Signed>, PortalState, RawForm)>,
}

impl Parts {
    /// A POST of the form `T` by whoever is signed in.
    fn post<T: DeserializeOwned + Send + 'static>(&self) -> BoxedFilter<(Option<Signed>, PortalState, T)> {
        typed(self.post.clone())
    }

    /// A POST of the form `T` with room for a large body.
    fn big_post<T: DeserializeOwned + Send + 'static>(&self) -> BoxedFilter<(Option<Signed>, PortalState, T)> {
        typed(self.big_post.clone())
    }

    /// The form `T`, from anyone (signing in).
    fn form<T: DeserializeOwned + Send + 'static>(&self) -> BoxedFilter<(T,)> {
        self.form.clone().and_then(|raw: RawForm| async move { read::<T>(raw) }).boxed()
    }
}

/// A GET's query string as `T`.
fn query<T: DeserializeOwned + Send + 'static>() -> BoxedFilter<(T,)> {
    warp::query::<RawForm>().and_then(|raw: RawForm| async move { read::<T>(raw) }).boxed()
}

fn typed<T: DeserializeOwned + Send + 'static>(
    raw: BoxedFilter<(Option<Signed>, PortalState, RawForm)>,
) -> BoxedFilter<(Option<Signed>, PortalState, T)> {
    raw.and_then(|signed: Option<Signed>, s: PortalState, raw: RawForm| async move {
        read::<T>(raw).map(|form| (signed, s, form))
    })
    .untuple_one()
    .boxed()
}

pub fn routes(
    state: PortalState,
    bodies: Arc<crate::http::BodyBudget>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let with = warp::any().map(move || state.clone()).boxed();
    // A signed-in session's requests are paced (a script pulling pages in a loop is slowed, with 429).
    let signed = warp::header::optional::<String>("cookie")
        .and(with.clone())
        .and_then(|cookies: Option<String>, s: PortalState| async move {
            let signed = session(cookies.as_deref(), &s).await;
            if let Some(g) = &signed
                && let Err(wait) = s.pace.request(&crate::secrets::tokens::hash(&g.id))
            {
                return Err(warp::reject::custom(ApiError::TooMany("Too many requests from this session.", wait)));
            }
            Ok((signed, s))
        })
        .untuple_one()
        .boxed();
    let form = crate::http::body::form(16 * 1024, bodies.clone()).boxed();
    let post = warp::post().and(signed.clone()).and(form.clone()).boxed();
    // A bot's rules come in one form: room for a few hundred rules, on that route only.
    let big_post = warp::post().and(signed.clone()).and(crate::http::body::form(256 * 1024, bodies)).boxed();
    let parts = Parts { with, signed, form, post, big_post };
    account_routes(&parts).or(page_routes(&parts)).unify().or(admin_routes(&parts)).unify()
}

/// Signing in and out, choosing a password.
fn account_routes(p: &Parts) -> BoxedFilter<(Response,)> {
    let login_page = warp::path!("portal" / "login")
        .and(warp::get())
        .and(p.with.clone())
        .map(|s: PortalState| account::login_page(&s));
    let login = warp::path!("portal" / "login")
        .and(warp::post())
        .and(warp::header::optional::<String>("cookie"))
        .and(warp::ext::optional::<ClientAddr>())
        .and(p.form::<account::SignIn>())
        .and(p.with.clone())
        .then(
            |cookies: Option<String>, client: Option<ClientAddr>, form: account::SignIn, s: PortalState| async move {
                account::login(cookies.as_deref(), client, form, s).await
            },
        );
    let logout = warp::path!("portal" / "logout").and(p.post::<Button>()).then(
        |signed: Option<Signed>, s: PortalState, form: Button| async move {
            respond(account::logout(signed, &form, &s).await)
        },
    );
    let password_page = warp::path!("portal" / "password")
        .and(warp::get())
        .and(p.signed.clone())
        .map(|signed: Option<Signed>, _s: PortalState| respond(account::password_page(signed)));
    let password = warp::path!("portal" / "password").and(p.post::<account::NewPassword>()).then(
        |signed: Option<Signed>, s: PortalState, form: account::NewPassword| async move {
            respond(account::change_password(signed, form, &s).await)
        },
    );
    login_page.or(login).unify().or(logout).unify().or(password_page).unify().or(password).unify().boxed()
}

/// The home page, connecting and disconnecting Pages.
fn page_routes(p: &Parts) -> BoxedFilter<(Response,)> {
    let home = warp::path!("portal").and(warp::get()).and(query::<home::HomeQuery>()).and(p.signed.clone()).then(
        |q: home::HomeQuery, signed: Option<Signed>, s: PortalState| async move {
            respond(home::home(signed, &q, &s).await)
        },
    );
    let connect = warp::path!("portal" / "connect")
        .and(p.post::<Button>())
        .and(warp::header::optional::<String>("cookie"))
        .then(|signed: Option<Signed>, s: PortalState, form: Button, cookies: Option<String>| async move {
            respond(connect::connect(signed, &form, cookies.as_deref(), &s).await)
        });
    let confirm = warp::path!("portal" / "pages" / String / "disconnect").and(warp::get()).and(p.signed.clone()).then(
        |page: String, signed: Option<Signed>, s: PortalState| async move {
            respond(connect::confirm_disconnect(&page, signed, &s).await)
        },
    );
    let disconnect = warp::path!("portal" / "pages" / String / "disconnect").and(p.post::<Button>()).then(
        |page: String, signed: Option<Signed>, s: PortalState, form: Button| async move {
            respond(connect::disconnect(&page, signed, &form, &s).await)
        },
    );
    let people = warp::path!("portal" / "pages" / String / "people")
        .and(warp::get())
        .and(query::<Notice>())
        .and(p.signed.clone())
        .then(|page: String, q: Notice, signed: Option<Signed>, s: PortalState| async move {
            respond(people::people(&page, &q, signed, &s).await)
        });
    let hand_back = warp::path!("portal" / "pages" / String / "people" / String / "release")
        .and(p.post::<people::HandBack>())
        .then(
            |page: String, person: String, signed: Option<Signed>, s: PortalState, form: people::HandBack| async move {
                respond(people::hand_back(&page, &person, signed, &form, &s).await)
            },
        );
    let conversations = warp::path!("portal" / "pages" / String / "conversations")
        .and(warp::get())
        .and(query::<conversations::Paging>())
        .and(p.signed.clone())
        .then(|page: String, q: conversations::Paging, signed: Option<Signed>, s: PortalState| async move {
            respond(conversations::list(&page, &q, signed, &s).await)
        });
    let health = warp::path!("portal" / "pages" / String / "health").and(warp::get()).and(p.signed.clone()).then(
        |page: String, signed: Option<Signed>, s: PortalState| async move {
            respond(health::health(&page, signed, &s).await)
        },
    );
    let conversation = warp::path!("portal" / "pages" / String / "conversations" / String)
        .and(warp::get())
        .and(query::<conversations::Paging>())
        .and(p.signed.clone())
        .then(|page: String, customer: String, q: conversations::Paging, signed: Option<Signed>, s: PortalState| async move {
            respond(conversations::one(&page, &customer, &q, signed, &s).await)
        });
    let bot_page = warp::path!("portal" / "bot").and(warp::get()).and(query::<Notice>()).and(p.signed.clone()).then(
        |q: Notice, signed: Option<Signed>, s: PortalState| async move { respond(bot::page(signed, &q, &s).await) },
    );
    let bot_post = warp::path!("portal" / "bot").and(p.big_post::<bot::RulesForm>()).then(
        |signed: Option<Signed>, s: PortalState, form: bot::RulesForm| async move {
            respond(bot::post(signed, &form, &s).await)
        },
    );
    let ai_try = warp::path!("portal" / "bot" / "ai").and(p.post::<ai::TryForm>()).then(
        |signed: Option<Signed>, s: PortalState, form: ai::TryForm| async move {
            respond(ai::try_it(signed, &form, &s).await)
        },
    );
    let ai_links = warp::path!("portal" / "bot" / "ai" / "links").and(p.post::<ai::LinksForm>()).then(
        |signed: Option<Signed>, s: PortalState, form: ai::LinksForm| async move {
            respond(ai::set_links(signed, &form, &s).await)
        },
    );
    home.or(connect)
        .unify()
        .or(ai_try)
        .unify()
        .or(ai_links)
        .unify()
        .or(confirm)
        .unify()
        .or(disconnect)
        .unify()
        .or(people)
        .unify()
        .or(hand_back)
        .unify()
        .or(conversations)
        .unify()
        .or(health)
        .unify()
        .or(conversation)
        .unify()
        .or(bot_page)
        .unify()
        .or(bot_post)
        .unify()
        .boxed()
}

/// What operators do: clients, onboarding links, invitations.
fn admin_routes(p: &Parts) -> BoxedFilter<(Response,)> {
    let add_client = warp::path!("portal" / "clients").and(p.post::<admin::NewClient>()).then(
        |signed: Option<Signed>, s: PortalState, form: admin::NewClient| async move {
            respond(admin::add_client(signed, &form, &s).await)
        },
    );
    let link = warp::path!("portal" / "clients" / String / "link").and(p.post::<Button>()).then(
        |slug: String, signed: Option<Signed>, s: PortalState, form: Button| async move {
            respond(admin::onboard_link(&slug, signed, &form, &s).await)
        },
    );
    let invite = warp::path!("portal" / "users").and(p.post::<admin::Invitation>()).then(
        |signed: Option<Signed>, s: PortalState, form: admin::Invitation| async move {
            respond(admin::invite(signed, &form, &s).await)
        },
    );
    let settings_page = warp::path!("portal" / "clients" / String / "settings")
        .and(warp::get())
        .and(query::<Notice>())
        .and(p.signed.clone())
        .then(|slug: String, q: Notice, signed: Option<Signed>, s: PortalState| async move {
            respond(settings::page(&slug, &q, signed, &s).await)
        });
    let settings_post = warp::path!("portal" / "clients" / String / "settings")
        .and(p.post::<settings::SettingsForm>())
        .then(|slug: String, signed: Option<Signed>, s: PortalState, form: settings::SettingsForm| async move {
            respond(settings::post(&slug, form, signed, &s).await)
        });
    add_client.or(link).unify().or(invite).unify().or(settings_page).unify().or(settings_post).unify().boxed()
}
