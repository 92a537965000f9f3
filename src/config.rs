//! Configuration: `config/default.toml` (built in) → an optional file → the environment, deserialized into
//! raw settings and then validated into typed `Settings`, with secrets in secret types.
//!
//! Every problem is reported as one `ConfigError` line naming the key (and its environment variable);
//! the binary exits with code 2 on it. Nothing here reads the environment except `Settings::load`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

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

fn invalid(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key_label(key), problem: problem.into() }
}

/// The connect parameters a PostgreSQL URL may carry (what sqlx reads).
const POSTGRES_PARAMETERS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// Keys whose values are secrets: an error about one never quotes its value.
const SECRET_KEYS: &[&str] = &["database.url", "vault.keys", "meta.app_secret", "meta.verify_token"];

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    server: RawServer,
    database: RawDatabase,
    vault: RawVault,
    meta: RawMeta,
    engine: RawEngine,
    oauth: RawOAuth,
    portal: RawPortal,
    inbox: RawInbox,
    log: RawLog,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInbox {
    mode: String,
    receipts: String,
    retention_days: u64,
    commit_timeout_ms: u64,
    commit_writers: u32,
    sweep_interval_secs: u64,
    stale_after_secs: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPortal {
    session_ttl_secs: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOAuth {
    scopes: Vec<String>,
    required_scopes: Vec<String>,
    config_id: String,
    state_ttl_secs: u64,
    token_check_interval_secs: u64,
    reconcile_interval_secs: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    bind: String,
    metrics_bind: String,
    public_url: String,
    shutdown_grace_secs: u64,
    max_body_bytes: u64,
    max_body_memory_bytes: u64,
    first_byte_timeout_secs: u64,
    header_read_timeout_secs: u64,
    keep_alive_timeout_secs: u64,
    request_timeout_secs: u64,
    max_connection_age_secs: u64,
    max_connections: usize,
    max_connections_per_address: u32,
    trusted_proxies: StringOrList,
}

/// A list given as a TOML array, or as one comma-separated string (the form an environment variable takes).
#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    List(Vec<String>),
}

impl StringOrList {
    fn items(&self) -> Vec<&str> {
        match self {
            StringOrList::One(s) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).collect(),
            StringOrList::List(list) => list.iter().map(|s| s.trim()).collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: SecretString,
    max_connections: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVault {
    keys: SecretString,
    key_file: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeta {
    app_id: String,
    app_secret: SecretString,
    verify_token: SecretString,
    graph_url: String,
    oauth_dialog_url: String,
    api_version: String,
    appsecret_proof: String,
    graph_timeout_secs: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    send_rate_per_page: u32,
    fallback_reply: String,
    idle_timeout_secs: u64,
    quarantine_secs: u64,
    send_queue_capacity: usize,
    max_pending_per_page: usize,
    max_in_flight_per_page: usize,
    max_send_attempts: u32,
    retry_base_ms: u64,
    throttle_fallback_secs: u64,
    relay_timeout_secs: u64,
    relay_allow_private: bool,
    relay_max_answer_bytes: usize,
    relay_max_replies: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    filter: String,
    format: String,
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
    pub log: LogSettings,
}

/// The durable webhook inbox.
#[derive(Debug, Clone)]
pub struct InboxSettings {
    /// Commit webhook events before acknowledging them.
    pub durable: bool,
    /// In durable mode, commit read and delivery receipts too (otherwise they are acknowledged from memory).
    pub durable_receipts: bool,
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

/// The engine's settings, plus what the root crate adds around it.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub engine: switchboard_actors::EngineSettings,
    pub send_rate_per_page: u32,
    pub fallback_reply: String,
    pub relay_timeout: Duration,
    pub relay: crate::engine::relay::RelayLimits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

impl RawSettings {
    fn validate(self) -> Result<Settings, ConfigError> {
        let bind = self.server.bind.trim().parse::<SocketAddr>().map_err(|_| {
            invalid("server.bind", format!("{:?} is not a host:port address like 127.0.0.1:8080", self.server.bind))
        })?;
        let metrics_bind = self.server.metrics_bind.trim().parse::<SocketAddr>().map_err(|_| {
            invalid(
                "server.metrics_bind",
                format!("{:?} is not a host:port address like 127.0.0.1:9898", self.server.metrics_bind),
            )
        })?;
        if metrics_bind == bind && bind.port() != 0 {
            return Err(invalid("server.metrics_bind", "must differ from server.bind: /metrics is never public"));
        }
        let public_url = parse_base_url("server.public_url", &self.server.public_url)?;
        if self.server.shutdown_grace_secs > 3600 {
            return Err(invalid("server.shutdown_grace_secs", "must be at most 3600 seconds"));
        }

        let db_url = self.database.url.expose_secret().trim();
        if !(db_url.starts_with("postgres://") || db_url.starts_with("postgresql://") || db_url.starts_with("sqlite:"))
        {
            return Err(invalid("database.url", "must start with postgres://, postgresql:// or sqlite:"));
        }
        // sqlx logs a connect parameter it does not know, value and all: refuse one here, naming only the key.
        if !db_url.starts_with("sqlite:")
            && let Ok(parsed) = Url::parse(db_url)
            && let Some((key, _)) = parsed.query_pairs().find(|(k, _)| !POSTGRES_PARAMETERS.contains(&k.as_ref()))
        {
            return Err(invalid(
                "database.url",
                format!(
                    "connect parameter {key:?} is not one PostgreSQL takes here ({})",
                    POSTGRES_PARAMETERS.join(", ")
                ),
            ));
        }
        if !(1..=1000).contains(&self.database.max_connections) {
            return Err(invalid("database.max_connections", "must be between 1 and 1000"));
        }

        let app_id = non_empty(&self.meta.app_id);
        if app_id.as_ref().is_some_and(|id| !id.bytes().all(|b| b.is_ascii_digit())) {
            return Err(invalid("meta.app_id", "must contain only digits (App Dashboard → Settings → Basic)"));
        }
        let app_secrets: Vec<SecretString> = self
            .meta
            .app_secret
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| SecretString::from(s.to_owned()))
            .collect();
        if app_secrets.iter().any(|s| s.expose_secret().len() < 16) {
            return Err(invalid("meta.app_secret", "each app secret must be at least 16 characters"));
        }
        let verify_token = non_empty(self.meta.verify_token.expose_secret()).map(SecretString::from);
        let api_version = self.meta.api_version.trim().to_owned();
        if !is_api_version(&api_version) {
            return Err(invalid("meta.api_version", format!("{api_version:?} is not a Graph API version like v25.0")));
        }

        let proof = match self.meta.appsecret_proof.as_str() {
            "classic" => crate::meta::graph::ProofMode::Classic,
            "timestamped" => crate::meta::graph::ProofMode::Timestamped,
            other => {
                return Err(invalid("meta.appsecret_proof", format!("{other:?} is not one of classic, timestamped")));
            }
        };
        let server = &self.server;
        if !(1024..=100 * 1024 * 1024).contains(&server.max_body_bytes) {
            return Err(invalid("server.max_body_bytes", "must be between 1024 and 104857600"));
        }
        if server.max_body_memory_bytes < 4 * server.max_body_bytes {
            return Err(invalid(
                "server.max_body_memory_bytes",
                "must be at least 4 × server.max_body_bytes (each address may hold a quarter of it, and that \
                 must fit one body of the largest size)",
            ));
        }
        for (key, secs) in [
            ("server.first_byte_timeout_secs", server.first_byte_timeout_secs),
            ("server.header_read_timeout_secs", server.header_read_timeout_secs),
            ("server.keep_alive_timeout_secs", server.keep_alive_timeout_secs),
            ("server.request_timeout_secs", server.request_timeout_secs),
            ("server.max_connection_age_secs", server.max_connection_age_secs),
            ("meta.graph_timeout_secs", self.meta.graph_timeout_secs),
            ("engine.relay_timeout_secs", self.engine.relay_timeout_secs),
            ("engine.idle_timeout_secs", self.engine.idle_timeout_secs),
            ("engine.quarantine_secs", self.engine.quarantine_secs),
        ] {
            if !(1..=86_400).contains(&secs) {
                return Err(invalid(key, "must be between 1 and 86400 seconds"));
            }
        }
        if server.max_connections == 0 {
            return Err(invalid("server.max_connections", "must be at least 1"));
        }
        let trusted_proxies = server
            .trusted_proxies
            .items()
            .into_iter()
            .map(|raw| {
                raw.parse::<ipnet::IpNet>()
                    .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        invalid(
                            "server.trusted_proxies",
                            format!("{raw:?} is not an IP address or a CIDR like 10.0.0.0/8"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let e = &self.engine;
        if !(1..=1000).contains(&e.send_rate_per_page) {
            return Err(invalid("engine.send_rate_per_page", "must be between 1 and 1000 calls per second"));
        }
        if e.fallback_reply.trim().is_empty() {
            return Err(invalid("engine.fallback_reply", "must not be empty"));
        }
        if e.send_queue_capacity == 0
            || e.max_pending_per_page == 0
            || e.max_in_flight_per_page == 0
            || e.max_send_attempts == 0
        {
            return Err(invalid(
                "engine",
                "send_queue_capacity, max_pending_per_page, max_in_flight_per_page and max_send_attempts must be at \
                 least 1",
            ));
        }
        let engine = EngineConfig {
            engine: switchboard_actors::EngineSettings {
                idle_timeout: Duration::from_secs(e.idle_timeout_secs),
                quarantine: Duration::from_secs(e.quarantine_secs),
                send_drain: Duration::from_secs(self.meta.graph_timeout_secs),
                send_queue_capacity: e.send_queue_capacity,
                pending_capacity: e.max_pending_per_page,
                max_in_flight: e.max_in_flight_per_page,
                max_send_attempts: e.max_send_attempts,
                retry_base: Duration::from_millis(e.retry_base_ms.max(1)),
                throttle_fallback: Duration::from_secs(e.throttle_fallback_secs.max(1)),
                ..switchboard_actors::EngineSettings::default()
            },
            send_rate_per_page: e.send_rate_per_page,
            fallback_reply: e.fallback_reply.clone(),
            relay_timeout: Duration::from_secs(e.relay_timeout_secs),
            relay: crate::engine::relay::RelayLimits {
                allow_private: e.relay_allow_private,
                max_answer_bytes: e.relay_max_answer_bytes,
                max_replies: e.relay_max_replies,
            },
        };
        if !(1024..=16 * 1024 * 1024).contains(&e.relay_max_answer_bytes) || !(1..=100).contains(&e.relay_max_replies) {
            return Err(invalid(
                "engine",
                "relay_max_answer_bytes must be between 1024 and 16777216, and relay_max_replies between 1 and 100",
            ));
        }

        let o = &self.oauth;
        let scope_ok = |s: &String| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        if o.scopes.is_empty() || !o.scopes.iter().all(scope_ok) {
            return Err(invalid("oauth.scopes", "must be a non-empty list of permission names like pages_messaging"));
        }
        if let Some(missing) = o.required_scopes.iter().find(|r| !o.scopes.contains(r)) {
            return Err(invalid("oauth.required_scopes", format!("{missing:?} is required but not in oauth.scopes")));
        }
        if !(60..=3600).contains(&o.state_ttl_secs) {
            return Err(invalid("oauth.state_ttl_secs", "must be between 60 and 3600 seconds"));
        }
        if o.token_check_interval_secs < 60 || o.reconcile_interval_secs == 0 {
            return Err(invalid(
                "oauth",
                "token_check_interval_secs must be at least 60 and reconcile_interval_secs at least 1",
            ));
        }
        let oauth = OAuthSettings {
            scopes: o.scopes.clone(),
            required_scopes: o.required_scopes.clone(),
            config_id: non_empty(&o.config_id),
            state_ttl: Duration::from_secs(o.state_ttl_secs),
            token_check_interval: Duration::from_secs(o.token_check_interval_secs),
            reconcile_interval: Duration::from_secs(o.reconcile_interval_secs),
        };

        if !(300..=30 * 86_400).contains(&self.portal.session_ttl_secs) {
            return Err(invalid("portal.session_ttl_secs", "must be between 300 and 2592000 seconds"));
        }

        let durable_or_memory = |key: &str, value: &str| match value {
            "durable" => Ok(true),
            "memory" => Ok(false),
            other => Err(invalid(key, format!("{other:?} is not one of durable, memory"))),
        };
        if !(7..=3650).contains(&self.inbox.retention_days) {
            return Err(invalid(
                "inbox.retention_days",
                "must be between 7 and 3650 (dedup keys are kept at least 7 days)",
            ));
        }
        let inbox = InboxSettings {
            durable: durable_or_memory("inbox.mode", &self.inbox.mode)?,
            durable_receipts: durable_or_memory("inbox.receipts", &self.inbox.receipts)?,
            retention: Duration::from_secs(self.inbox.retention_days * 86_400),
            commit_timeout: Duration::from_millis(self.inbox.commit_timeout_ms),
            commit_writers: self.inbox.commit_writers as usize,
            sweep_interval: Duration::from_secs(self.inbox.sweep_interval_secs),
            stale_after: Duration::from_secs(self.inbox.stale_after_secs),
        };
        if !(100..=15_000).contains(&self.inbox.commit_timeout_ms) {
            return Err(invalid("inbox.commit_timeout_ms", "must be between 100 and 15000 (Meta waits about 5 s)"));
        }
        if !(1..=16).contains(&self.inbox.commit_writers) || self.inbox.commit_writers >= self.database.max_connections
        {
            return Err(invalid(
                "inbox.commit_writers",
                format!(
                    "must be between 1 and 16, and below database.max_connections ({}): the writers hold a \
                     connection each",
                    self.database.max_connections
                ),
            ));
        }
        if self.inbox.sweep_interval_secs == 0 || self.inbox.stale_after_secs < self.inbox.sweep_interval_secs {
            return Err(invalid("inbox.sweep_interval_secs", "must be above 0 and at most inbox.stale_after_secs"));
        }

        let format = match self.log.format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => return Err(invalid("log.format", format!("{other:?} is not one of text, json"))),
        };

        Ok(Settings {
            server: ServerSettings {
                bind,
                metrics_bind,
                public_url,
                shutdown_grace: Duration::from_secs(self.server.shutdown_grace_secs),
                max_body_bytes: self.server.max_body_bytes,
                max_body_memory_bytes: self.server.max_body_memory_bytes,
                first_byte_timeout: Duration::from_secs(self.server.first_byte_timeout_secs),
                header_read_timeout: Duration::from_secs(self.server.header_read_timeout_secs),
                keep_alive_timeout: Duration::from_secs(self.server.keep_alive_timeout_secs),
                request_timeout: Duration::from_secs(self.server.request_timeout_secs),
                max_connection_age: Duration::from_secs(self.server.max_connection_age_secs),
                max_connections: self.server.max_connections,
                max_connections_per_address: self.server.max_connections_per_address,
                trusted_proxies,
            },
            database: DatabaseSettings {
                url: SecretString::from(db_url.to_owned()),
                max_connections: self.database.max_connections,
            },
            vault: VaultSettings {
                keys: non_empty(self.vault.keys.expose_secret()).map(SecretString::from),
                key_file: non_empty(&self.vault.key_file).map(PathBuf::from),
            },
            meta: MetaSettings {
                app_id,
                app_secrets,
                verify_token,
                graph_url: parse_base_url("meta.graph_url", &self.meta.graph_url)?,
                oauth_dialog_url: parse_base_url("meta.oauth_dialog_url", &self.meta.oauth_dialog_url)?,
                api_version,
                proof,
                graph_timeout: Duration::from_secs(self.meta.graph_timeout_secs),
            },
            engine,
            oauth,
            session_ttl: Duration::from_secs(self.portal.session_ttl_secs),
            inbox,
            log: LogSettings { filter: self.log.filter, format },
        })
    }
}

fn non_empty(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// An absolute http(s) URL with no query or fragment; a trailing slash is removed so paths can be appended.
fn parse_base_url(key: &str, raw: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw.trim()).map_err(|e| invalid(key, format!("{raw:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(key, format!("{raw:?} must be an http:// or https:// URL")));
    }
    if url.query().is_some() || url.fragment().is_some() || url.cannot_be_a_base() {
        return Err(invalid(key, format!("{raw:?} must not have a query or fragment")));
    }
    let trimmed = url.as_str().trim_end_matches('/').to_owned();
    Url::parse(&trimmed).map_err(|e| invalid(key, e.to_string()))
}

fn is_api_version(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else { return false };
    let Some((major, minor)) = rest.split_once('.') else { return false };
    !major.is_empty() && !minor.is_empty() && major.bytes().chain(minor.bytes()).all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
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
        for (section, key) in [("meta", "app_secret"), ("meta", "verify_token"), ("vault", "keys"), ("database", "url")]
        {
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
    fn every_alias_names_a_key_in_the_defaults() {
        let figment = Figment::new().merge(Toml::string(DEFAULT_TOML));
        for (env, key) in ENV_ALIASES {
            assert!(figment.find_value(key).is_ok(), "{env} maps to unknown key {key}");
        }
    }
}
