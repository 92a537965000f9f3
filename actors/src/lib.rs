//! Switchboard's per-tenant engine.
//!
//! One supervised ractor actor per connected Page holds that tenant's decrypted token, runs its bot on
//! each event in order, and sends the replies through the Graph API at the tenant's own pace (GCRA),
//! pausing when Meta throttles and stopping when Meta rejects the token.
//!
//! - `engine`: the facade the root crate uses (`router`: dispatch, connect, disconnect, figures, shutdown),
//!   which account belongs to which tenant (`registry`), which Pages this engine runs (`tenure`), starting and
//!   restarting tenants (`supervisor`), and what the parts share (`context`);
//! - `tenant`: one Page's actor, by concern: answering (`respond`), sending (`send`), what the inbox is told
//!   (`marks`), settling replies of unknown outcome (`settle`), people taking over (`takeover`);
//! - `bot`: what answers an event (the `Responder` trait, the client's keyword `rules`, `split`ting replies);
//! - `ports`: the traits the root crate implements (storage, the Graph API, status), and Meta's error classes;
//! - `domain`: events, Page ids, inbox ids, tokens; `timing`: backoff, the send limiter, periodic jobs;
//! - `telemetry`: metrics and each Page's figures.
//!
//! This crate must never depend on an HTTP server or a SQL driver: storage, the Graph API, status
//! updates and relay bots reach it through the traits in `ports`, which the root crate implements.

pub mod bot;
pub mod domain;
mod engine;
pub mod ports;
mod settings;
pub mod telemetry;
mod tenant;
pub mod timing;

pub use bot::{Answered, AskForPerson, BotAnswer, BotError, KeywordRule, Responder, Rules, RulesResponder};
pub use domain::event::{Channel, EventKind, InboundEvent};
pub use domain::ids::{InboxId, ReplyId};
pub use domain::page::{PageId, PageIdError};
pub use domain::token::AccessToken;
pub use engine::router::{Dispatched, EngineDeps, Route, Router, TenantPresence};
pub use engine::tenure::{EveryPage, Tenure};
pub use ports::{
    DeliveredMessage, EventSink, FailureClass, GraphApi, GraphFailure, LoadError, NoInbox, Outcome, OutgoingMessage,
    Progress, RecordedReply, SendOk, SinkError, StatusSink, TenantProfile, TenantSource, ToRecord, Usage,
};
pub use settings::EngineSettings;
pub use timing::backoff::Backoff;
