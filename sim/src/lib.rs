//! meta-sim: a stand-in for the parts of Meta's platform Switchboard talks to, for local runs, tests and
//! load. It serves the Graph API (OAuth token exchange, debug_token, permissions, Pages, Page
//! subscriptions, the Send API for Messenger and Instagram, with Meta's error codes, usage headers and
//! per-Page rate limits), the Login dialog, and a `/_sim` control API for faults and inspection. It also
//! generates and signs webhook events exactly as Meta does and sends them. Beside Meta, it stands in for an
//! OpenAI-compatible chat completions API (`ai`), answering from the client's knowledge. It is a
//! development tool: it never runs in the `switchboard` binary's request path. Shapes follow
//! `shared/meta-platform.md` and `shared/ai-chat-completions.md`.

pub mod ai;
pub mod config;
mod control;
mod dialog;
pub mod graph_error;
mod ids;
pub mod login;
mod reply;
mod routes;
pub mod sender;
mod server;
pub mod state;
pub mod webhook;

pub use ai::HANDOVER_MARKER;
pub use config::{SimConfig, SimPage, SimUser};
pub use server::{SimHandle, serve, spawn};
pub use state::{AiFault, AiFaultSwitch, AiRequests, Channel, Faults, RecipientState, SentMessage, Sim};
