//! Configuration: `config/default.toml` (built in) → an optional file → the environment, deserialized into
//! raw settings and then validated into typed `Settings`, with secrets in secret types.
//!
//! Every problem is reported as one `ConfigError` line naming the key (and its environment variable);
//! the binary exits with code 2 on it. Nothing here reads the environment except `Settings::load`.

mod raw;
mod validate;
pub use validate::{HUMAN_PAUSE_SECS, SEND_RATE, client_human_pause, client_send_rate};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use self::raw::RawSettings;
use self::validate::invalid;

/// The documented defaults, compiled in so the binary works from any directory.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Environment variables with fixed names that operators and scripts rely on, and the key each sets.
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    ("SWITCHBOARD_BIND", "server.bind"),
    ("SWITCHBOARD_PUBLIC_URL", "server.public_url"),
    ("SWITCHBOARD_TRUSTED_PROXIES", "server.trusted_proxies"),
    ("SWITCHBOARD_METRICS_BIND", "server.metrics_bind"),
    ("SWITCHBOARD_ENCRYPTION_KEYS", "vault.keys"),
    ("SWITCHBOARD_KEY_FILE", "vault.key_file"),
    ("META_APP_ID", "meta.app_id"),
    ("META_APP_SECRET", "meta.app_secret"),
    ("META_VERIFY_TOKEN", "meta.verify_token"),
    ("META_GRAPH_URL", "meta.graph_url"),
    ("META_OAUTH_DIALOG_URL", "meta.oauth_dialog_url"),
    ("META_API_VERSION", "meta.api_version"),
    ("SWITCHBOARD_LOG", "log.filter"),
    ("SWITCHBOARD_CLUSTER_MODE", "cluster.mode"),
    ("SWITCHBOARD_AI_API_KEY", "ai.api_key"),
];

/// A configuration problem, printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config error: {key}: {problem}")]
    Invalid { key: String, problem: String },
    #[error("config error: config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("config error: `{command}` needs {} (set them in the environment or the config file)", .missing.join(", "))]
    Missing { command: &'static str, missing: Vec<String> },
}

/// `server.bind (SWITCHBOARD_BIND)`: a key as a reader can find it in either place.
pub fn key_label(key: &str) -> String {
    match ENV_ALIASES.iter().find(|(_, k)| *k == key) {
        Some((env, _)) => format!("{key} ({env})"),
        None => key.to_owned(),
    }
}

/// Keys whose values are secrets: an error about one never quotes its value.
const SECRET_KEYS: &[&str] = &["database.url", "vault.keys", "meta.app_secret", "meta.verify_token", "ai.api_key"];

/// A figment error as one line, without the value when the key is a secret (figment quotes values that have
/// the wrong type).
fn extraction_error(err: &figment::Error) -> ConfigError {
    let key = err.path.join(".");
    let key = if key.is_empty() { "configuration".to_owned() } else { key };
    if SECRET_KEYS.contains(&key.as_str()) {
        let problem = match &err.kind {
            figment::error::Kind::InvalidType(_, expected) => format!("has the wrong type (expected {expected})"),
            figment::error::Kind::MissingField(field) => format!("is missing {field}"),
            _ => "is not valid (its value is a secret and is not shown)".to_owned(),
        };
        return invalid(&key, problem);
    }
    invalid(&key, err.kind.to_string())
}

/// Validated settings. Secrets are `SecretString`s: their Debug prints `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub vault: VaultSettings,
    pub meta: MetaSettings,
    pub engine: EngineConfig,
    pub oauth: OAuthSettings,
    /// How long a portal sign-in lasts.
    pub session_ttl: Duration,
    pub inbox: InboxSettings,
    pub cluster: ClusterSettings,
    /// AI answers; `None` when `ai.base_url` is empty (the `ai` responder is then refused).
    pub ai: Option<AiSettings>,
    pub log: LogSettings,
}

/// The model server AI answers use (`[ai]`).
#[derive(Debug, Clone)]
pub struct AiSettings {
    /// Where `chat/completions` is, without a trailing slash.
    pub base_url: Url,
    pub model: String,
    /// Sent as `Authorization: Bearer`; `None` when empty (a self-hosted server without keys).
    pub api_key: Option<SecretString>,
    pub timeout: Duration,
    pub max_concurrent_per_page: usize,
    pub history_turns: usize,
    pub max_answer_tokens: u32,
    /// `max_completion_tokens` (true) or `max_tokens` (false) first.
    pub completion_tokens_name: bool,
    pub default_monthly_tokens: u64,
    pub max_knowledge_bytes: usize,
}

/// One process, or a cluster of nodes on one PostgreSQL database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterMode {
    Single,
    Postgres,
}

/// Running as a cluster (`[cluster]`).
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub mode: ClusterMode,
    pub lease_ttl: Duration,
    pub node_name: String,
}

/// Whether events are committed to the database before Meta gets its 200 (`durable`), or only held in
/// memory (`memory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InboxMode {
    Durable,
    Memory,
}

/// The durable webhook inbox.
#[derive(Debug, Clone)]
pub struct InboxSettings {
    /// Commit webhook events before acknowledging them (`inbox.mode`).
    pub mode: InboxMode,
    /// In durable mode, whether read and delivery receipts are committed too (otherwise they are acknowledged
    /// from memory) (`inbox.receipts`).
    pub receipts: InboxMode,
    /// How long finished inbox rows (and so their dedup keys) are kept.
    pub retention: Duration,
    /// How long a webhook waits for its commit before answering 503.
    pub commit_timeout: Duration,
    /// How many inbox group commits may run at once, each on its own database connection.
    pub commit_writers: usize,
    /// How often pending rows the engine does not hold are handed over again.
    pub sweep_interval: Duration,
    /// How long the engine may hold an event before the sweeper assumes it was lost.
    pub stale_after: Duration,
    /// A Page whose oldest pending event waited this long while none of its events finished is stuck.
    pub stuck_after: Duration,
}

/// Facebook Login and token health.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    pub scopes: Vec<String>,
    pub required_scopes: Vec<String>,
    pub config_id: Option<String>,
    pub state_ttl: Duration,
    pub token_check_interval: Duration,
    pub reconcile_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub bind: SocketAddr,
    /// Where `/metrics` is served (never on the public listener).
    pub metrics_bind: SocketAddr,
    /// Without a trailing slash.
    pub public_url: Url,
    pub shutdown_grace: Duration,
    pub max_body_bytes: u64,
    /// What all request bodies being read may hold at once.
    pub max_body_memory_bytes: u64,
    pub first_byte_timeout: Duration,
    pub header_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connection_age: Duration,
    pub max_connections: usize,
    /// 0: no cap.
    pub max_connections_per_address: u32,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Addresses whose webhook bodies count as Meta's before they proved it with a signature.
    pub webhook_sender_ranges: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// May carry a password, hence secret.
    pub url: SecretString,
    pub max_connections: u32,
}

#[derive(Debug, Clone)]
pub struct VaultSettings {
    pub keys: Option<SecretString>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct MetaSettings {
    pub app_id: Option<String>,
    /// The first signs; all verify (for rotating the app secret).
    pub app_secrets: Vec<SecretString>,
    pub verify_token: Option<SecretString>,
    pub graph_url: Url,
    pub oauth_dialog_url: Url,
    pub api_version: String,
    pub proof: crate::meta::graph::ProofMode,
    pub graph_timeout: Duration,
}

/// What a relay call may reach and read.
#[derive(Debug, Clone, Copy)]
pub struct RelayLimits {
    /// Allow http:// and addresses that are not public (loopback, private, link-local, …).
    pub allow_private: bool,
    /// The most bytes of an answer read.
    pub max_answer_bytes: usize,
    /// The most replies one answer may hold.
    pub max_replies: usize,
}

/// The engine's settings, plus what the root crate adds around it.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub engine: switchboard_actors::EngineSettings,
    pub send_rate_per_page: u32,
    pub fallback_reply: String,
    pub relay_timeout: Duration,
    pub relay: RelayLimits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub filter: String,
    pub format: LogFormat,
}

impl Settings {
    /// Loads the layers: built-in defaults, then `file` (which must exist when given), then the process
    /// environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new().merge(Toml::string(DEFAULT_TOML));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::MissingFile(path.to_owned()));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("SWITCHBOARD__").split("__"));
        // Aliases are merged as strings, so META_APP_ID=1234 stays the string "1234".
        for (env, key) in ENV_ALIASES {
            if let Ok(value) = std::env::var(env) {
                figment = figment.merge(Serialized::default(key, value));
            }
        }
        let raw: RawSettings = figment.extract().map_err(|err| extraction_error(&err))?;
        raw.validate()
    }

    /// The built-in defaults overlaid with `overlay` (TOML), ignoring the environment: for tests and for
    /// tools that embed Switchboard with settings of their own.
    pub fn from_toml(overlay: &str) -> Result<Self, ConfigError> {
        let raw: RawSettings = Figment::new()
            .merge(Toml::string(DEFAULT_TOML))
            .merge(Toml::string(overlay))
            .extract()
            .map_err(|err| extraction_error(&err))?;
        raw.validate()
    }

    /// Fails closed: `serve` must not start without what it needs to verify Meta's requests.
    pub fn require_for_serve(&self) -> Result<(), ConfigError> {
        let mut missing = Vec::new();
        if self.meta.app_id.is_none() {
            missing.push(key_label("meta.app_id"));
        }
        if self.meta.app_secrets.is_empty() {
            missing.push(key_label("meta.app_secret"));
        }
        if self.meta.verify_token.is_none() {
            missing.push(key_label("meta.verify_token"));
        }
        if missing.is_empty() { Ok(()) } else { Err(ConfigError::Missing { command: "serve", missing }) }
    }
}

#[cfg(test)]
mod tests {
    use super::validate::{is_api_version, parse_base_url};
    use super::*;

    #[test]
    fn defaults_parse_and_validate() {
        let raw: RawSettings = Figment::new().merge(Toml::string(DEFAULT_TOML)).extract().unwrap();
        let settings = raw.validate().unwrap();
        assert_eq!(settings.server.bind.port(), 8080);
        assert_eq!(settings.meta.api_version, "v25.0");
        assert_eq!(settings.meta.graph_url.as_str(), "https://graph.facebook.com/");
        assert!(settings.meta.app_secrets.is_empty());
        assert!(settings.require_for_serve().is_err());
    }

    #[test]
    fn api_versions_are_checked() {
        assert!(is_api_version("v25.0"));
        assert!(!is_api_version("25.0"));
        assert!(!is_api_version("v25"));
        assert!(!is_api_version("v2x.0"));
    }

    #[test]
    fn base_urls_reject_queries_and_other_schemes() {
        assert!(parse_base_url("k", "http://127.0.0.1:9000/").is_ok());
        assert!(parse_base_url("k", "ftp://x").is_err());
        assert!(parse_base_url("k", "https://x/?a=1").is_err());
        assert!(parse_base_url("k", "not a url").is_err());
    }

    #[test]
    fn an_error_about_a_secret_never_quotes_its_value() {
        let secrets = [
            ("meta", "app_secret"),
            ("meta", "verify_token"),
            ("vault", "keys"),
            ("database", "url"),
            ("ai", "api_key"),
        ];
        for (section, key) in secrets {
            for value in ["987654321987654321", "[\"s3cr3t-v4lue-9876\"]", "{ a = \"s3cr3t-v4lue-9876\" }", "true"] {
                let err = Settings::from_toml(&format!("[{section}]\n{key} = {value}\n")).unwrap_err().to_string();
                assert!(err.contains(&format!("{section}.{key}")), "{err}");
                for leaked in ["987654321987654321", "s3cr3t-v4lue-9876", "true"] {
                    assert!(!err.contains(leaked), "{section}.{key} = {value}: {err}");
                }
            }
        }
        let err = Settings::from_toml("[server]\nbind = 12345\n").unwrap_err().to_string();
        assert!(err.contains("12345"), "a value that is no secret may be quoted: {err}");
    }

    #[test]
    fn ai_answers_are_off_without_a_base_url_and_need_a_model_with_one() {
        assert!(Settings::from_toml("").unwrap().ai.is_none());
        let err = Settings::from_toml("[ai]\nbase_url = \"https://api.openai.com/v1\"\n").unwrap_err().to_string();
        assert!(err.contains("ai.model"), "{err}");
        let err = Settings::from_toml("[ai]\nbase_url = \"ftp://x\"\nmodel = \"m\"\n").unwrap_err().to_string();
        assert!(err.contains("ai.base_url"), "{err}");
        let ai =
            Settings::from_toml("[ai]\nbase_url = \"http://127.0.0.1:9/v1/\"\nmodel = \"m\"\napi_key = \"sk-x\"\n")
                .unwrap()
                .ai
                .unwrap();
        assert_eq!(ai.base_url.as_str(), "http://127.0.0.1:9/v1");
        assert!(!format!("{ai:?}").contains("sk-x"), "the key is redacted in Debug");
    }

    #[test]
    fn every_alias_names_a_key_in_the_defaults() {
        let figment = Figment::new().merge(Toml::string(DEFAULT_TOML));
        for (env, key) in ENV_ALIASES {
            assert!(figment.find_value(key).is_ok(), "{env} maps to unknown key {key}");
        }
    }
}
