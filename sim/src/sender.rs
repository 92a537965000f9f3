//! The webhook sender: posts signed bodies to a webhook URL as Meta would (at a fixed rate or as fast as
//! possible, bounded in count and concurrency) and reports how many were acknowledged with 200 and the
//! latency percentiles.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::webhook::signature;

/// How to send.
#[derive(Debug, Clone)]
pub struct SendPlan {
    pub target: String,
    pub app_secret: String,
    /// Bodies to send (the sender stops after this many).
    pub count: usize,
    /// Requests per second; `None` sends as fast as `concurrency` allows.
    pub rate: Option<f64>,
    /// Requests in flight at most.
    pub concurrency: usize,
    pub timeout: Duration,
}

/// What happened.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SendReport {
    pub sent: u64,
    pub acknowledged: u64,
    /// Non-200 answers by status.
    pub by_status: BTreeMap<u16, u64>,
    /// Requests that got no answer (connection error, timeout).
    pub transport_errors: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl SendReport {
    pub fn throughput(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A small table for people.
    pub fn table(&self) -> String {
        let statuses: Vec<String> = self.by_status.iter().map(|(s, n)| format!("{s}×{n}")).collect();
        format!(
            "sent          {}\nacknowledged  {} (200)\nother status  {}\nno answer     {}\nelapsed       {:.2?}\nthroughput    {:.0} req/s\nlatency p50   {:.2?}\nlatency p90   {:.2?}\nlatency p99   {:.2?}\nlatency max   {:.2?}\n",
            self.sent,
            self.acknowledged,
            if statuses.is_empty() { "-".to_owned() } else { statuses.join(" ") },
            self.transport_errors,
            self.elapsed,
            self.throughput(),
            self.p50,
            self.p90,
            self.p99,
            self.max,
        )
    }
}

/// Sends `plan.count` bodies taken from `bodies` and waits for every answer.
pub async fn run(plan: &SendPlan, mut bodies: impl FnMut() -> Vec<u8>) -> SendReport {
    let client = reqwest::Client::builder()
        .timeout(plan.timeout)
        .pool_max_idle_per_host(plan.concurrency.max(1))
        .build()
        .expect("a plain HTTP client builds");
    let permits = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Option<u16>, Duration)>();
    let interval = plan.rate.filter(|r| *r > 0.0).map(|r| Duration::from_secs_f64(1.0 / r));
    let started = Instant::now();
    for i in 0..plan.count {
        if let Some(every) = interval {
            let due = started + every.mul_f64(i as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = permits.clone().acquire_owned().await.expect("the semaphore is never closed");
        let body = bodies();
        let sig = signature(&plan.app_secret, &body);
        let request = client
            .post(&plan.target)
            .header("content-type", "application/json")
            .header("x-hub-signature-256", sig)
            .body(body);
        let tx = tx.clone();
        tokio::spawn(async move {
            let t0 = Instant::now();
            let status = match request.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let _ = resp.bytes().await;
                    Some(status)
                }
                Err(_) => None,
            };
            let _ = tx.send((status, t0.elapsed()));
            drop(permit);
        });
    }
    drop(tx);
    let mut report = SendReport { sent: plan.count as u64, ..SendReport::default() };
    let mut latencies = Vec::with_capacity(plan.count);
    while let Some((status, latency)) = rx.recv().await {
        latencies.push(latency);
        match status {
            Some(200) => report.acknowledged += 1,
            Some(other) => *report.by_status.entry(other).or_default() += 1,
            None => report.transport_errors += 1,
        }
    }
    report.elapsed = started.elapsed();
    latencies.sort_unstable();
    let pick = |q: f64| {
        latencies.get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or_default()
    };
    report.p50 = pick(0.50);
    report.p90 = pick(0.90);
    report.p99 = pick(0.99);
    report.max = latencies.last().copied().unwrap_or_default();
    report
}
