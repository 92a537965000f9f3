//! Per-tenant numbers for the operator view, read from the very counters `/metrics` exposes (the rendered
//! Prometheus text), so the portal and Grafana never disagree.

use std::collections::HashMap;

use switchboard_actors::metrics::{EVENTS, QUEUE_DEPTH, REPLIES_SENT, SEND_ERRORS, THROTTLED_PAUSES};

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TenantFigures {
    pub events: u64,
    pub replies: u64,
    pub errors: u64,
    pub throttled: u64,
    pub queue_depth: u64,
}

/// Sums each metric per `page` label (across kinds and codes).
pub fn parse(rendered: &str) -> HashMap<String, TenantFigures> {
    let mut out: HashMap<String, TenantFigures> = HashMap::new();
    for line in rendered.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Some((name, labels)) = series.split_once('{') else { continue };
        let Some(page) = labels.split(',').find_map(|l| l.strip_prefix("page=\"")).and_then(|p| p.split('"').next())
        else {
            continue;
        };
        let value = value.parse::<f64>().unwrap_or(0.0).max(0.0) as u64;
        let figures = out.entry(page.to_owned()).or_default();
        match name {
            n if n == EVENTS => figures.events += value,
            n if n == REPLIES_SENT => figures.replies += value,
            n if n == SEND_ERRORS => figures.errors += value,
            n if n == THROTTLED_PAUSES => figures.throttled += value,
            n if n == QUEUE_DEPTH => figures.queue_depth += value,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_summed_per_page() {
        let text = "# TYPE switchboard_webhook_events_total counter\n\
            switchboard_webhook_events_total{client=\"a\",page=\"1\",kind=\"message\"} 3\n\
            switchboard_webhook_events_total{client=\"a\",page=\"1\",kind=\"echo\"} 2\n\
            switchboard_send_errors_total{client=\"a\",page=\"1\",code=\"613\"} 1\n\
            switchboard_replies_sent_total{client=\"b\",page=\"2\"} 7\n\
            switchboard_send_queue_depth{client=\"b\",page=\"2\"} 4\n";
        let f = parse(text);
        assert_eq!(f["1"], TenantFigures { events: 5, errors: 1, ..TenantFigures::default() });
        assert_eq!(f["2"], TenantFigures { replies: 7, queue_depth: 4, ..TenantFigures::default() });
    }
}
