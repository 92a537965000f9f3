//! The settings as deserialized from the layers, before validation: plain values, every section and key
//! required (the built-in defaults hold them all), unknown keys refused.

use secrecy::SecretString;
use serde::Deserialize;

use super::{ClusterMode, InboxMode, LogFormat};
use crate::meta::graph::ProofMode;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSettings {
    pub(super) server: RawServer,
    pub(super) database: RawDatabase,
    pub(super) vault: RawVault,
    pub(super) meta: RawMeta,
    pub(super) engine: RawEngine,
    pub(super) oauth: RawOAuth,
    pub(super) portal: RawPortal,
    pub(super) inbox: RawInbox,
    pub(super) cluster: RawCluster,
    pub(super) ai: RawAi,
    pub(super) log: RawLog,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAi {
    pub(super) base_url: String,
    pub(super) model: String,
    pub(super) api_key: SecretString,
    pub(super) timeout_secs: u64,
    pub(super) max_concurrent_per_page: usize,
    pub(super) history_turns: usize,
    pub(super) max_answer_tokens: u32,
    pub(super) token_parameter: String,
    pub(super) default_monthly_tokens: u64,
    pub(super) max_knowledge_bytes: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub(super) mode: ClusterMode,
    pub(super) lease_ttl_secs: u64,
    pub(super) node_name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInbox {
    pub(super) mode: InboxMode,
    pub(super) receipts: InboxMode,
    pub(super) retention_days: u64,
    pub(super) commit_timeout_ms: u64,
    pub(super) commit_writers: u32,
    pub(super) sweep_interval_secs: u64,
    pub(super) stale_after_secs: u64,
    pub(super) stuck_after_secs: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPortal {
    pub(super) session_ttl_secs: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOAuth {
    pub(super) scopes: Vec<String>,
    pub(super) required_scopes: Vec<String>,
    pub(super) config_id: String,
    pub(super) state_ttl_secs: u64,
    pub(super) token_check_interval_secs: u64,
    pub(super) reconcile_interval_secs: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) bind: String,
    pub(super) metrics_bind: String,
    pub(super) public_url: String,
    pub(super) shutdown_grace_secs: u64,
    pub(super) max_body_bytes: u64,
    pub(super) max_body_memory_bytes: u64,
    pub(super) first_byte_timeout_secs: u64,
    pub(super) header_read_timeout_secs: u64,
    pub(super) keep_alive_timeout_secs: u64,
    pub(super) request_timeout_secs: u64,
    pub(super) max_connection_age_secs: u64,
    pub(super) max_connections: usize,
    pub(super) max_connections_per_address: u32,
    pub(super) trusted_proxies: StringOrList,
    pub(super) webhook_sender_ranges: StringOrList,
}

/// A list given as a TOML array, or as one comma-separated string (the form an environment variable takes).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum StringOrList {
    One(String),
    List(Vec<String>),
}

impl StringOrList {
    pub(super) fn items(&self) -> Vec<&str> {
        match self {
            StringOrList::One(s) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).collect(),
            StringOrList::List(list) => list.iter().map(|s| s.trim()).collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    pub(super) url: SecretString,
    pub(super) max_connections: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVault {
    pub(super) keys: SecretString,
    pub(super) key_file: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMeta {
    pub(super) app_id: String,
    pub(super) app_secret: SecretString,
    pub(super) verify_token: SecretString,
    pub(super) graph_url: String,
    pub(super) oauth_dialog_url: String,
    pub(super) api_version: String,
    pub(super) appsecret_proof: ProofMode,
    pub(super) graph_timeout_secs: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEngine {
    pub(super) send_rate_per_page: u32,
    pub(super) fallback_reply: String,
    pub(super) idle_timeout_secs: u64,
    pub(super) quarantine_secs: u64,
    pub(super) human_pause_secs: u64,
    pub(super) send_queue_capacity: usize,
    pub(super) max_pending_per_page: usize,
    pub(super) max_in_flight_per_page: usize,
    pub(super) max_send_attempts: u32,
    pub(super) retry_base_ms: u64,
    pub(super) throttle_fallback_secs: u64,
    pub(super) relay_timeout_secs: u64,
    pub(super) relay_allow_private: bool,
    pub(super) relay_max_answer_bytes: usize,
    pub(super) relay_max_replies: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) filter: String,
    pub(super) format: LogFormat,
}
