//! Raw settings → typed `Settings`, one section at a time. Each check names its key (and environment
//! variable) and never quotes a secret.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::raw::{
    RawAi, RawCluster, RawDatabase, RawEngine, RawInbox, RawMeta, RawOAuth, RawServer, RawSettings, RawVault,
    StringOrList,
};
use super::{
    AiSettings, ClusterMode, ClusterSettings, ConfigError, DatabaseSettings, EngineConfig, InboxMode, InboxSettings,
    LogSettings, MetaSettings, OAuthSettings, RelayLimits, ServerSettings, Settings, VaultSettings, key_label,
};

pub(super) fn invalid(key: &str, problem: impl Into<String>) -> ConfigError {
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

impl RawSettings {
    pub(super) fn validate(self) -> Result<Settings, ConfigError> {
        let database = database(&self.database)?;
        let meta = meta(&self.meta)?;
        let server = server(&self.server)?;
        let engine = engine(&self.engine, &self.meta)?;
        let oauth = oauth(&self.oauth)?;
        if !(300..=30 * 86_400).contains(&self.portal.session_ttl_secs) {
            return Err(invalid("portal.session_ttl_secs", "must be between 300 and 2592000 seconds"));
        }
        let inbox = inbox(&self.inbox, database.max_connections)?;
        let cluster = cluster(&self.cluster, &database, &server, &inbox)?;
        let ai = ai(&self.ai)?;
        Ok(Settings {
            server,
            database,
            vault: vault(&self.vault),
            meta,
            engine,
            oauth,
            session_ttl: Duration::from_secs(self.portal.session_ttl_secs),
            inbox,
            cluster,
            ai,
            log: LogSettings { filter: self.log.filter, format: self.log.format },
        })
    }
}

/// `[ai]`: nothing when `base_url` is empty; otherwise a model is named and every bound is sane.
fn ai(raw: &RawAi) -> Result<Option<AiSettings>, ConfigError> {
    if raw.base_url.trim().is_empty() {
        return Ok(None);
    }
    let parsed = Url::parse(raw.base_url.trim())
        .map_err(|e| invalid("ai.base_url", format!("{:?} is not a URL: {e}", raw.base_url)))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() || parsed.query().is_some() {
        return Err(invalid(
            "ai.base_url",
            "must be an http(s) URL with a host and no query, like https://api.openai.com/v1",
        ));
    }
    if raw.model.trim().is_empty() {
        return Err(invalid("ai.model", "must be set when ai.base_url is (SWITCHBOARD__AI__MODEL)"));
    }
    if !(1..=300).contains(&raw.timeout_secs) {
        return Err(invalid("ai.timeout_secs", "must be between 1 and 300 seconds"));
    }
    if !(1..=64).contains(&raw.max_concurrent_per_page) {
        return Err(invalid("ai.max_concurrent_per_page", "must be between 1 and 64"));
    }
    if raw.history_turns > 50 {
        return Err(invalid("ai.history_turns", "must be at most 50"));
    }
    if !(16..=16_384).contains(&raw.max_answer_tokens) {
        return Err(invalid("ai.max_answer_tokens", "must be between 16 and 16384"));
    }
    let completion_tokens_name = match raw.token_parameter.as_str() {
        "max_completion_tokens" => true,
        "max_tokens" => false,
        other => {
            return Err(invalid(
                "ai.token_parameter",
                format!("{other:?} is neither \"max_completion_tokens\" nor \"max_tokens\""),
            ));
        }
    };
    if !(256..=1024 * 1024).contains(&raw.max_knowledge_bytes) {
        return Err(invalid("ai.max_knowledge_bytes", "must be between 256 and 1048576"));
    }
    let key = raw.api_key.expose_secret().trim().to_owned();
    Ok(Some(AiSettings {
        base_url: Url::parse(parsed.as_str().trim_end_matches('/')).unwrap_or(parsed),
        model: raw.model.trim().to_owned(),
        api_key: (!key.is_empty()).then(|| SecretString::from(key)),
        timeout: Duration::from_secs(raw.timeout_secs),
        max_concurrent_per_page: raw.max_concurrent_per_page,
        history_turns: raw.history_turns,
        max_answer_tokens: raw.max_answer_tokens,
        completion_tokens_name,
        default_monthly_tokens: raw.default_monthly_tokens,
        max_knowledge_bytes: raw.max_knowledge_bytes,
    }))
}

/// Each timeout, in seconds, must lie within a day.
fn seconds_within_a_day(checks: &[(&str, u64)]) -> Result<(), ConfigError> {
    match checks.iter().find(|(_, secs)| !(1..=86_400).contains(secs)) {
        Some((key, _)) => Err(invalid(key, "must be between 1 and 86400 seconds")),
        None => Ok(()),
    }
}

fn socket_address(key: &str, raw: &str, example: &str) -> Result<SocketAddr, ConfigError> {
    raw.trim()
        .parse::<SocketAddr>()
        .map_err(|_| invalid(key, format!("{raw:?} is not a host:port address like {example}")))
}

fn server(raw: &RawServer) -> Result<ServerSettings, ConfigError> {
    let bind = socket_address("server.bind", &raw.bind, "127.0.0.1:8080")?;
    let metrics_bind = socket_address("server.metrics_bind", &raw.metrics_bind, "127.0.0.1:9898")?;
    if metrics_bind == bind && bind.port() != 0 {
        return Err(invalid("server.metrics_bind", "must differ from server.bind: /metrics is never public"));
    }
    let public_url = parse_base_url("server.public_url", &raw.public_url)?;
    if raw.shutdown_grace_secs > 3600 {
        return Err(invalid("server.shutdown_grace_secs", "must be at most 3600 seconds"));
    }
    if !(1024..=100 * 1024 * 1024).contains(&raw.max_body_bytes) {
        return Err(invalid("server.max_body_bytes", "must be between 1024 and 104857600"));
    }
    if raw.max_body_memory_bytes < 4 * raw.max_body_bytes {
        return Err(invalid(
            "server.max_body_memory_bytes",
            "must be at least 4 × server.max_body_bytes (room for several bodies of the largest size from several \
             addresses)",
        ));
    }
    seconds_within_a_day(&[
        ("server.first_byte_timeout_secs", raw.first_byte_timeout_secs),
        ("server.header_read_timeout_secs", raw.header_read_timeout_secs),
        ("server.keep_alive_timeout_secs", raw.keep_alive_timeout_secs),
        ("server.request_timeout_secs", raw.request_timeout_secs),
        ("server.max_connection_age_secs", raw.max_connection_age_secs),
    ])?;
    if raw.max_connections == 0 {
        return Err(invalid("server.max_connections", "must be at least 1"));
    }
    let trusted_proxies = networks("server.trusted_proxies", &raw.trusted_proxies)?;
    let webhook_sender_ranges = networks("server.webhook_sender_ranges", &raw.webhook_sender_ranges)?;
    Ok(ServerSettings {
        bind,
        metrics_bind,
        public_url,
        shutdown_grace: Duration::from_secs(raw.shutdown_grace_secs),
        max_body_bytes: raw.max_body_bytes,
        max_body_memory_bytes: raw.max_body_memory_bytes,
        first_byte_timeout: Duration::from_secs(raw.first_byte_timeout_secs),
        header_read_timeout: Duration::from_secs(raw.header_read_timeout_secs),
        keep_alive_timeout: Duration::from_secs(raw.keep_alive_timeout_secs),
        request_timeout: Duration::from_secs(raw.request_timeout_secs),
        max_connection_age: Duration::from_secs(raw.max_connection_age_secs),
        max_connections: raw.max_connections,
        max_connections_per_address: raw.max_connections_per_address,
        trusted_proxies,
        webhook_sender_ranges,
    })
}

/// IP addresses or CIDRs, from a list or one comma-separated string.
fn networks(key: &'static str, raw: &StringOrList) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    raw.items()
        .into_iter()
        .map(|item| {
            item.parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| invalid(key, format!("{item:?} is not an IP address or a CIDR like 10.0.0.0/8")))
        })
        .collect()
}

fn database(raw: &RawDatabase) -> Result<DatabaseSettings, ConfigError> {
    let url = raw.url.expose_secret().trim();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://") || url.starts_with("sqlite:")) {
        return Err(invalid("database.url", "must start with postgres://, postgresql:// or sqlite:"));
    }
    // sqlx logs a connect parameter it does not know, value and all: refuse one here, naming only the key.
    if !url.starts_with("sqlite:")
        && let Ok(parsed) = Url::parse(url)
        && let Some((key, _)) = parsed.query_pairs().find(|(k, _)| !POSTGRES_PARAMETERS.contains(&k.as_ref()))
    {
        return Err(invalid(
            "database.url",
            format!("connect parameter {key:?} is not one PostgreSQL takes here ({})", POSTGRES_PARAMETERS.join(", ")),
        ));
    }
    if !(1..=1000).contains(&raw.max_connections) {
        return Err(invalid("database.max_connections", "must be between 1 and 1000"));
    }
    Ok(DatabaseSettings { url: SecretString::from(url.to_owned()), max_connections: raw.max_connections })
}

fn vault(raw: &RawVault) -> VaultSettings {
    VaultSettings {
        keys: non_empty(raw.keys.expose_secret()).map(SecretString::from),
        key_file: non_empty(&raw.key_file).map(PathBuf::from),
    }
}

fn meta(raw: &RawMeta) -> Result<MetaSettings, ConfigError> {
    let app_id = non_empty(&raw.app_id);
    if app_id.as_ref().is_some_and(|id| !id.bytes().all(|b| b.is_ascii_digit())) {
        return Err(invalid("meta.app_id", "must contain only digits (App Dashboard → Settings → Basic)"));
    }
    let app_secrets: Vec<SecretString> = raw
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
    let api_version = raw.api_version.trim().to_owned();
    if !is_api_version(&api_version) {
        return Err(invalid("meta.api_version", format!("{api_version:?} is not a Graph API version like v25.0")));
    }
    seconds_within_a_day(&[("meta.graph_timeout_secs", raw.graph_timeout_secs)])?;
    Ok(MetaSettings {
        app_id,
        app_secrets,
        verify_token: non_empty(raw.verify_token.expose_secret()).map(SecretString::from),
        graph_url: parse_base_url("meta.graph_url", &raw.graph_url)?,
        oauth_dialog_url: parse_base_url("meta.oauth_dialog_url", &raw.oauth_dialog_url)?,
        api_version,
        proof: raw.appsecret_proof,
        graph_timeout: Duration::from_secs(raw.graph_timeout_secs),
    })
}

/// How long a person's answer may silence the bot in a conversation, in seconds (also a client's own choice).
pub const HUMAN_PAUSE_SECS: std::ops::RangeInclusive<u64> = 60..=604_800;

/// Calls per second a Page may make to the Send API (the deployment's and a client's own choice).
pub const SEND_RATE: std::ops::RangeInclusive<u32> = 1..=1000;

/// A client's own pause after a person answers, as typed (`30m`, `2h`, `1d`), or `default` (`None`): the
/// deployment's `engine.human_pause_secs`. The error says what is accepted.
pub fn client_human_pause(raw: &str) -> Result<Option<u32>, String> {
    match raw.trim() {
        "default" => Ok(None),
        p => humantime::parse_duration(p)
            .ok()
            .map(|d| d.as_secs())
            .filter(|s| HUMAN_PAUSE_SECS.contains(s))
            .and_then(|s| u32::try_from(s).ok())
            .map(Some)
            .ok_or_else(|| format!("pause {p:?} must be from 1m to 7d (like 30m or 2h), or default")),
    }
}

/// A client's own send rate per Page, as typed, or `default` (`None`): the deployment's
/// `engine.send_rate_per_page`.
pub fn client_send_rate(raw: &str) -> Result<Option<u32>, String> {
    match raw.trim() {
        "default" => Ok(None),
        n => n
            .parse::<u32>()
            .ok()
            .filter(|r| SEND_RATE.contains(r))
            .map(Some)
            .ok_or_else(|| format!("rate {n:?} must be 1 to 1000 calls per second, or default")),
    }
}

fn engine(e: &RawEngine, meta: &RawMeta) -> Result<EngineConfig, ConfigError> {
    seconds_within_a_day(&[
        ("engine.relay_timeout_secs", e.relay_timeout_secs),
        ("engine.idle_timeout_secs", e.idle_timeout_secs),
        ("engine.quarantine_secs", e.quarantine_secs),
    ])?;
    if !SEND_RATE.contains(&e.send_rate_per_page) {
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
            "send_queue_capacity, max_pending_per_page, max_in_flight_per_page and max_send_attempts must be at least 1",
        ));
    }
    if !(HUMAN_PAUSE_SECS).contains(&e.human_pause_secs) {
        return Err(invalid("engine.human_pause_secs", "must be between 60 and 604800 seconds (a week)"));
    }
    if !(1024..=16 * 1024 * 1024).contains(&e.relay_max_answer_bytes) || !(1..=100).contains(&e.relay_max_replies) {
        return Err(invalid(
            "engine",
            "relay_max_answer_bytes must be between 1024 and 16777216, and relay_max_replies between 1 and 100",
        ));
    }
    Ok(EngineConfig {
        engine: switchboard_actors::EngineSettings {
            idle_timeout: Duration::from_secs(e.idle_timeout_secs),
            quarantine: Duration::from_secs(e.quarantine_secs),
            human_pause: Duration::from_secs(e.human_pause_secs),
            own_app_id: meta.app_id.trim().to_owned(),
            send_drain: Duration::from_secs(meta.graph_timeout_secs),
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
        relay: RelayLimits {
            allow_private: e.relay_allow_private,
            max_answer_bytes: e.relay_max_answer_bytes,
            max_replies: e.relay_max_replies,
        },
    })
}

fn oauth(o: &RawOAuth) -> Result<OAuthSettings, ConfigError> {
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
    Ok(OAuthSettings {
        scopes: o.scopes.clone(),
        required_scopes: o.required_scopes.clone(),
        config_id: non_empty(&o.config_id),
        state_ttl: Duration::from_secs(o.state_ttl_secs),
        token_check_interval: Duration::from_secs(o.token_check_interval_secs),
        reconcile_interval: Duration::from_secs(o.reconcile_interval_secs),
    })
}

fn inbox(raw: &RawInbox, database_connections: u32) -> Result<InboxSettings, ConfigError> {
    if !(7..=3650).contains(&raw.retention_days) {
        return Err(invalid(
            "inbox.retention_days",
            "must be between 7 and 3650 (dedup keys are kept at least 7 days)",
        ));
    }
    if !(100..=15_000).contains(&raw.commit_timeout_ms) {
        return Err(invalid("inbox.commit_timeout_ms", "must be between 100 and 15000 (Meta waits about 5 s)"));
    }
    if !(1..=16).contains(&raw.commit_writers) || raw.commit_writers >= database_connections {
        return Err(invalid(
            "inbox.commit_writers",
            format!(
                "must be between 1 and 16, and below database.max_connections ({database_connections}): the writers \
                 hold a connection each"
            ),
        ));
    }
    if raw.sweep_interval_secs == 0 || raw.stale_after_secs < raw.sweep_interval_secs {
        return Err(invalid("inbox.sweep_interval_secs", "must be above 0 and at most inbox.stale_after_secs"));
    }
    if !(1..=86_400).contains(&raw.stuck_after_secs) {
        return Err(invalid("inbox.stuck_after_secs", "must be between 1 and 86400 (a day)"));
    }
    Ok(InboxSettings {
        mode: raw.mode,
        receipts: raw.receipts,
        retention: Duration::from_secs(raw.retention_days * 86_400),
        commit_timeout: Duration::from_millis(raw.commit_timeout_ms),
        commit_writers: raw.commit_writers as usize,
        sweep_interval: Duration::from_secs(raw.sweep_interval_secs),
        stale_after: Duration::from_secs(raw.stale_after_secs),
        stuck_after: Duration::from_secs(raw.stuck_after_secs),
    })
}

fn cluster(
    raw: &RawCluster,
    database: &DatabaseSettings,
    server: &ServerSettings,
    inbox: &InboxSettings,
) -> Result<ClusterSettings, ConfigError> {
    if raw.mode == ClusterMode::Postgres {
        if database.url.expose_secret().starts_with("sqlite:") {
            return Err(invalid("cluster.mode", "\"postgres\" needs a PostgreSQL database (database.url is SQLite)"));
        }
        if inbox.mode != InboxMode::Durable {
            return Err(invalid(
                "cluster.mode",
                "\"postgres\" needs inbox.mode = \"durable\" (events move between nodes)",
            ));
        }
    }
    if !(1..=300).contains(&raw.lease_ttl_secs) {
        return Err(invalid("cluster.lease_ttl_secs", "must be between 1 and 300 seconds"));
    }
    let node_name = match non_empty(&raw.node_name) {
        Some(name) if name.chars().count() > 100 || name.chars().any(char::is_control) => {
            return Err(invalid("cluster.node_name", "must be at most 100 characters, without control characters"));
        }
        Some(name) => name,
        // Port 0 (tests, demos) names no node apart: the process id does.
        None if server.bind.port() == 0 => format!("{}:pid{}", host_name(), std::process::id()),
        None => format!("{}:{}", host_name(), server.bind.port()),
    };
    Ok(ClusterSettings { mode: raw.mode, lease_ttl: Duration::from_secs(raw.lease_ttl_secs), node_name })
}

/// This machine's name (what `hostname` prints), or `localhost`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .and_then(|h| non_empty(&h))
        .or_else(|| std::env::var("HOSTNAME").ok().and_then(|h| non_empty(&h)))
        .unwrap_or_else(|| "localhost".to_owned())
}

pub(super) fn non_empty(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// An absolute http(s) URL with no query or fragment; a trailing slash is removed so paths can be appended.
pub(super) fn parse_base_url(key: &str, raw: &str) -> Result<Url, ConfigError> {
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

pub(super) fn is_api_version(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else { return false };
    let Some((major, minor)) = rest.split_once('.') else { return false };
    !major.is_empty() && !minor.is_empty() && major.bytes().chain(minor.bytes()).all(|b| b.is_ascii_digit())
}
