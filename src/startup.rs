//! Start-up: from validated settings to a running server.
//!
//! `open_store` connects, migrates and (for commands that handle tokens) loads the key ring and proves it
//! can open every stored token's key id, failing with one clear line otherwise. `Application` binds the
//! listener (port 0 in tests) and serves until a shutdown future resolves, bounded by a grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use secrecy::ExposeSecret as _;
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::http;
use crate::store::{self, Store};
use crate::vault::{KeyRing, KeySource, VaultError};

/// Connects to the configured database and applies pending migrations.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let url = settings.database.url.expose_secret();
    let store = store::connect(url, settings.database.max_connections)
        .await
        .with_context(|| format!("cannot open the database at {}", redact_url(url)))?;
    store.migrate().await.context("cannot apply database migrations")?;
    Ok(store)
}

/// Loads the key ring and checks that it holds every key id found in stored tokens.
pub async fn open_vault(settings: &Settings, store: &dyn Store) -> anyhow::Result<KeyRing> {
    let keys = key_source(settings)?.load()?;
    let stored = store.token_key_ids().await.context("cannot read stored key ids")?;
    keys.check_known(&stored)?;
    Ok(keys)
}

/// Where the key ring comes from. Only the SQLite demo default may generate one; PostgreSQL fails closed.
pub fn key_source(settings: &Settings) -> Result<KeySource, VaultError> {
    if let Some(keys) = &settings.vault.keys {
        return Ok(KeySource::Inline(keys.clone()));
    }
    if let Some(path) = &settings.vault.key_file {
        return Ok(KeySource::File(path.clone()));
    }
    let url = settings.database.url.expose_secret();
    if url.starts_with("sqlite:") {
        if store::sqlite::is_in_memory(url) {
            return Ok(KeySource::Ephemeral);
        }
        if let Some(db) = store::sqlite::database_path(url) {
            let mut name = db.into_os_string();
            name.push(".keys");
            return Ok(KeySource::GenerateIfMissing(name.into()));
        }
    }
    Err(VaultError::NoKey)
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`, for error messages.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => raw.to_owned(),
    }
}

/// The running server: a bound listener and what its routes need.
pub struct Application {
    listener: TcpListener,
    store: Arc<dyn Store>,
    grace: Duration,
}

impl Application {
    /// Opens storage and the vault, then binds `settings.server.bind`.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        settings.require_for_serve()?;
        let store = open_store(settings).await?;
        let keys = open_vault(settings, store.as_ref()).await?;
        tracing::info!(current_key = %keys.current_key_id(), "key ring loaded");
        let listener = TcpListener::bind(settings.server.bind)
            .await
            .with_context(|| format!("cannot listen on {}", settings.server.bind))?;
        Ok(Self { listener, store, grace: settings.server.shutdown_grace })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish for at most the grace period.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let addr = self.local_addr();
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            let _ = stopping_tx.send(());
        };
        let routes = http::routes(self.store.clone());
        let server = warp::serve(routes).incoming(self.listener).graceful(signal).run();
        tracing::info!(%addr, "switchboard listening");
        let grace = self.grace;
        tokio::select! {
            () = server => {}
            () = async move {
                if stopping_rx.await.is_ok() {
                    tokio::time::sleep(grace).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => {
                tracing::warn!(?grace, "connections still open after the shutdown grace period; closing them");
            }
        }
        self.store.close().await;
        tracing::info!("switchboard stopped");
        Ok(())
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received");
}
