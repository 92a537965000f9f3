//! Logging: `tracing` to stderr, as text or JSON. `RUST_LOG`, when set, overrides the configured filter.
//! Secrets never reach this layer: they are held in types whose Debug and Display print a placeholder.
//! Metrics: `catalog` lists every one Switchboard exports.

pub mod catalog;

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. Safe to call more than once (later calls are ignored).
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// A gate that opens at most once per period: for a log line that an outage would otherwise repeat at the
/// rate requests arrive.
pub struct Sometimes {
    period: std::time::Duration,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Sometimes {
    pub const fn every(period: std::time::Duration) -> Self {
        Self { period, last: std::sync::Mutex::new(None) }
    }

    /// True if the gate has not opened within the period (and it opens now).
    pub fn ready(&self) -> bool {
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < self.period) {
            return false;
        }
        *last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Sometimes;

    #[test]
    fn sometimes_opens_once_per_period() {
        let gate = Sometimes::every(Duration::from_secs(60));
        assert!(gate.ready());
        assert!(!gate.ready(), "closed within the period");
        let gate = Sometimes::every(Duration::from_millis(1));
        assert!(gate.ready());
        std::thread::sleep(Duration::from_millis(5));
        assert!(gate.ready(), "open again after it");
    }
}
