//! Switchboard's per-tenant engine.
//!
//! One supervised ractor actor per connected Page holds that tenant's decrypted token, runs its bot on
//! each event in order, and sends the replies through the Graph API at the tenant's own pace (GCRA),
//! pausing when Meta throttles and stopping when Meta rejects the token.
//!
//! - `router`: the facade the root crate uses (dispatch, connect, disconnect, figures, shutdown);
//! - `registry`: which account id belongs to which tenant, and each tenant's running actor or waiting events;
//! - `tenure`: which pages this engine runs, under which epoch (asked of the root crate, never kept here);
//! - `supervisor`: starts tenants on demand and restarts (or quarantines) failed ones;
//! - `tenant` (`respond`, `send`, `marks`): one Page's state, its bot, its sending, its inbox marks;
//! - `context`: what the parts share, and the narrow slice a tenant gets;
//! - `ports`: the traits the root crate implements, and Meta's error classes;
//! - `backoff` and `timer`: the one way to wait before trying again, and the one way to run a job every period.
//!
//! This crate must never depend on an HTTP server or a SQL driver: storage, the Graph API, status
//! updates and relay bots reach it through the traits in `ports`, which the root crate implements.

pub mod backoff;
mod context;
mod dedup;
pub mod event;
mod ids;
pub mod limiter;
mod mailbox;
pub mod metrics;
mod page;
pub mod ports;
mod registry;
mod router;
pub mod rules;
mod settings;
pub mod split;
pub mod stats;
mod supervisor;
mod tenant;
mod tenure;
pub mod timer;
mod token;

pub use backoff::Backoff;
pub use event::{Channel, EventKind, InboundEvent};
pub use ids::{InboxId, ReplyId};
pub use page::{PageId, PageIdError};
pub use ports::{
    BotError, DeliveredMessage, EventSink, FailureClass, GraphApi, GraphFailure, LoadError, NoInbox, OutgoingMessage,
    Progress, RecordedReply, Responder, SendOk, SinkError, StatusSink, TenantProfile, TenantSource, ToRecord, Usage,
};
pub use router::{Dispatched, EngineDeps, Route, Router, TenantPresence};
pub use rules::{Answered, AskForPerson, KeywordRule, Rules, RulesResponder};
pub use settings::EngineSettings;
pub use tenure::{EveryPage, Tenure};
pub use token::AccessToken;
