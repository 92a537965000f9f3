//! What the run checks at the end: invariants over everything that happened, not examples.
//!
//! - Every acknowledged event is answered (0 lost). The only events that may go unanswered are those of a Page
//!   disconnected while they waited (their inbox row is failed with that reason), or acknowledged while their
//!   Page was disconnected (no client owned it then, so nothing was stored).
//! - Nothing is answered twice, except by a Send API call a paused process had begun: a second copy that Meta
//!   accepted within a second of a SIGCONT, at most `engine.max_in_flight_per_page` (4) per Page per resume.
//! - No Send API call for a Page later than [`DISCONNECT_GRACE`] after its disconnect was stored, until it was
//!   connected again.
//! - No per-Page rate violation at the stand-in (Send API or Conversations API).
//! - An event acknowledged [`RULES_GRACE`] after a client's rules changed is answered with those rules or newer.
//! - After each fault, every Page with something to answer answers again within the fault's own outage plus
//!   the lease, a claim tick, the settling delay of a new tenant ([`SETTLE_FIRST_READ`]) and a margin.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::faults::{Fault, Kind};
use crate::load::Event;
use crate::world::{LEASE_TTL, PAGES, World};

/// How long after a disconnect is stored a call already on its way may still reach Meta.
const DISCONNECT_GRACE: Duration = Duration::from_secs(3);
/// How long a rules change may take to reach the Page's tenant, wherever it runs.
const RULES_GRACE: Duration = Duration::from_secs(5);
/// A new tenant reads no conversation in its first 1.3 s (a tenant just before it may have used Meta's
/// second), and the batch with a reply of unknown outcome waits that long.
const SETTLE_FIRST_READ: Duration = Duration::from_millis(1_300);
/// Scheduling on a loaded two-core machine.
const MARGIN: Duration = Duration::from_secs(1);
/// Send API calls a paused process may have begun, per Page (`engine.max_in_flight_per_page`).
const BEGUN_PER_PAGE: usize = 4;

#[derive(Default)]
pub struct Verdict {
    pub events: usize,
    pub acknowledged: usize,
    pub answered: usize,
    pub failed_by_disconnect: usize,
    pub unstored_while_disconnected: usize,
    pub lost: Vec<usize>,
    pub doubled: Vec<usize>,
    pub doubled_by_pause: usize,
    pub pause_bound_broken: Vec<String>,
    pub after_disconnect: Vec<String>,
    pub stale_rules: Vec<usize>,
    pub rate_violations: u64,
    pub conversation_violations: u64,
    /// Per kind: (faults, could not be done, worst time without an answer, its bound).
    pub by_kind: BTreeMap<Kind, (usize, usize, Duration, Duration)>,
    pub slow_recoveries: Vec<String>,
    pub pending_left: i64,
}

impl Verdict {
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut say = |broken: bool, what: String| {
            if broken {
                out.push(what);
            }
        };
        say(
            !self.lost.is_empty(),
            format!("{} acknowledged event(s) never answered: {:?}", self.lost.len(), first(&self.lost)),
        );
        say(
            !self.doubled.is_empty(),
            format!("{} event(s) answered twice: {:?}", self.doubled.len(), first(&self.doubled)),
        );
        say(
            !self.pause_bound_broken.is_empty(),
            format!("a paused process sent more than it had begun: {:?}", self.pause_bound_broken),
        );
        say(
            !self.after_disconnect.is_empty(),
            format!("Send API calls after a disconnect: {:?}", self.after_disconnect),
        );
        say(
            !self.stale_rules.is_empty(),
            format!(
                "{} event(s) answered with rules older than those in force: {:?}",
                self.stale_rules.len(),
                first(&self.stale_rules)
            ),
        );
        say(
            self.rate_violations > 0,
            format!("{} per-Page Send API rate violation(s) at the stand-in", self.rate_violations),
        );
        say(
            self.conversation_violations > 0,
            format!("{} Conversations API rate violation(s)", self.conversation_violations),
        );
        say(!self.slow_recoveries.is_empty(), format!("Pages answering again too late: {:?}", self.slow_recoveries));
        say(self.pending_left > 0, format!("{} inbox row(s) still pending at the end", self.pending_left));
        let undone: usize = self.by_kind.values().map(|(_, failed, _, _)| failed).sum();
        say(undone > 0, format!("{undone} fault(s) could not be done (see above)"));
        out
    }

    pub fn print(&self) {
        println!(
            "{:<24} {:>6} {:>8} {:>30} {:>8}",
            "fault", "count", "not done", "worst time without an answer", "bound"
        );
        for (kind, (n, failed, worst, bound)) in &self.by_kind {
            println!(
                "{:<24} {:>6} {:>8} {:>30} {:>8}",
                kind.name(),
                n,
                failed,
                format!("{:.2} s", worst.as_secs_f64()),
                format!("{:.1} s", bound.as_secs_f64())
            );
        }
        println!(
            "events: {} delivered, {} acknowledged, {} answered, {} failed by a disconnect, {} not stored (their Page \
             was disconnected), {} lost, {} doubled (+{} by a paused process's begun calls)",
            self.events,
            self.acknowledged,
            self.answered,
            self.failed_by_disconnect,
            self.unstored_while_disconnected,
            self.lost.len(),
            self.doubled.len(),
            self.doubled_by_pause
        );
        println!(
            "rate violations: {} Send API, {} Conversations API; calls after a disconnect: {}; stale rules answers: {}; \
             pending at the end: {}",
            self.rate_violations,
            self.conversation_violations,
            self.after_disconnect.len(),
            self.stale_rules.len(),
            self.pending_left
        );
    }
}

fn first(ids: &[usize]) -> &[usize] {
    &ids[..ids.len().min(20)]
}

/// Checks what happened.
pub async fn judge(world: &World, events: &[Event], faults: &[Fault]) -> Verdict {
    let mut v = Verdict { events: events.len(), ..Verdict::default() };
    let replies = world.replies();
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&world.db_url).await.expect("the run's database");
    let rows: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT customer_id, status, reason FROM webhook_inbox WHERE customer_id LIKE '7%'")
            .fetch_all(&mut db)
            .await
            .expect("the inbox");
    let rows: HashMap<usize, (String, Option<String>)> = rows
        .into_iter()
        .filter_map(|(customer, status, reason)| Some((customer.strip_prefix('7')?.parse().ok()?, (status, reason))))
        .collect();
    v.pending_left = rows.values().filter(|(status, _)| status == "pending").count() as i64;
    let reconnects: Vec<&Fault> = faults.iter().filter(|f| f.kind == Kind::Reconnect).collect();
    let disconnected_around = |page: usize, at: i64| {
        reconnects
            .iter()
            .any(|f| f.target == PAGES[page].0 && f.began_us - 1_000_000 <= at && at <= f.ended_us + 2_000_000)
    };

    for (i, e) in events.iter().enumerate() {
        let Some(acked) = e.acked_us else { continue };
        v.acknowledged += 1;
        let mut sent: Vec<&meta_sim::SentMessage> = replies.get(&i).map(|r| r.iter().collect()).unwrap_or_default();
        sent.sort_by_key(|m| m.at_us);
        match (sent.len(), rows.get(&i)) {
            (0, Some((status, Some(reason)))) if status == "failed" && reason.contains("disconnected") => {
                if disconnected_around(e.page, acked) {
                    v.failed_by_disconnect += 1
                } else {
                    v.lost.push(i)
                }
            }
            (0, None) if disconnected_around(e.page, acked) => v.unstored_while_disconnected += 1,
            (0, _) => v.lost.push(i),
            (_, _) => v.answered += 1,
        }
        for extra in sent.iter().skip(1) {
            if world.resumed.iter().any(|(t, _)| *t <= extra.at_us && extra.at_us <= t + 1_000_000) {
                v.doubled_by_pause += 1;
            } else {
                v.doubled.push(i);
            }
        }
        if let Some(reply) = sent.first().and_then(|m| m.text.as_deref()) {
            let version =
                reply.strip_prefix('v').and_then(|r| r.split(':').next()).and_then(|n| n.parse().ok()).unwrap_or(0);
            let client = PAGES[e.page].1;
            let required = faults
                .iter()
                .filter(|f| f.kind == Kind::Rules && f.target == client && f.failed.is_none())
                .filter(|f| f.ended_us + RULES_GRACE.as_micros() as i64 <= acked)
                .filter_map(|f| f.rules_version)
                .max()
                .unwrap_or(0);
            if version < required {
                v.stale_rules.push(i);
            }
        }
    }
    // A paused process's begun calls: at most BEGUN_PER_PAGE per Page per resume.
    for (t, _) in &world.resumed {
        let mut per_page: HashMap<&str, usize> = HashMap::new();
        for sent in replies.values().filter(|r| r.len() > 1) {
            for m in sent.iter().filter(|m| *t <= m.at_us && m.at_us <= t + 1_000_000) {
                *per_page.entry(m.page_id.as_str()).or_default() += 1;
            }
        }
        for (page, n) in per_page.into_iter().filter(|(_, n)| *n > BEGUN_PER_PAGE) {
            v.pause_bound_broken.push(format!("{n} copies to page {page} within 1 s of the resume at {t}"));
        }
    }
    let all_sent = world.meta.sim().messages();
    for f in &reconnects {
        let (Some(from), Some(until)) = (f.disconnected_us, f.reconnecting_us) else { continue };
        let from = from + DISCONNECT_GRACE.as_micros() as i64;
        for m in all_sent.iter().filter(|m| m.page_id == f.target && from < m.at_us && m.at_us < until) {
            v.after_disconnect.push(format!("page {} at {} (disconnect stored at {from})", m.page_id, m.at_us));
        }
    }
    let state = world.meta.sim().summary();
    v.rate_violations = state["counters"]["violations_total"].as_u64().unwrap_or(0);
    v.conversation_violations = state["counters"]["conversation_violations"].as_u64().unwrap_or(0);
    recoveries(&mut v, events, faults, &replies);
    v
}

/// After each fault, how long each Page with something to answer went without an answer.
fn recoveries(
    v: &mut Verdict,
    events: &[Event],
    faults: &[Fault],
    replies: &HashMap<usize, Vec<meta_sim::SentMessage>>,
) {
    // Per Page: (acknowledged at, first answered at) of each event, and every answer's time.
    let mut answers: HashMap<usize, Vec<i64>> = HashMap::new();
    let mut work: HashMap<usize, Vec<(i64, i64)>> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        let Some(acked) = e.acked_us else { continue };
        let first = replies.get(&i).and_then(|r| r.iter().map(|m| m.at_us).min()).unwrap_or(i64::MAX);
        work.entry(e.page).or_default().push((acked, first));
        if first != i64::MAX {
            answers.entry(e.page).or_default().push(first);
        }
    }
    for f in faults {
        let entry = v.by_kind.entry(f.kind).or_insert((0, 0, Duration::ZERO, Duration::ZERO));
        entry.0 += 1;
        if f.failed.is_some() {
            entry.1 += 1;
        }
        let bound =
            Duration::from_micros(f.outage_us.max(0) as u64) + LEASE_TTL + LEASE_TTL / 4 + SETTLE_FIRST_READ + MARGIN;
        entry.3 = entry.3.max(bound);
        if matches!(f.kind, Kind::Rules | Kind::Rate) {
            continue;
        }
        for (page, (id, _)) in PAGES.iter().enumerate() {
            // A reconnected Page is measured from when it was connected again; every other from the fault's start.
            let from = if f.kind == Kind::Reconnect && f.target == *id { f.ended_us } else { f.began_us };
            let waiting = work
                .get(&page)
                .is_some_and(|w| w.iter().any(|(acked, first)| *first >= from && *acked <= from + 20_000_000));
            if !waiting {
                continue;
            }
            let next = answers.get(&page).and_then(|a| a.iter().filter(|at| **at >= from).min().copied());
            let gap = next.map_or(Duration::MAX, |at| Duration::from_micros((at - from) as u64));
            // From its first event after `from` if that came later (nothing to answer before it).
            let first_work =
                work[&page].iter().filter(|(_, first)| *first >= from).map(|(acked, _)| *acked).min().unwrap_or(from);
            let gap = gap.saturating_sub(Duration::from_micros((first_work - from).max(0) as u64));
            entry.2 = entry.2.max(gap);
            if gap > bound {
                v.slow_recoveries.push(format!(
                    "{} on {}: page {id} answered again after {}",
                    f.kind.name(),
                    f.target,
                    if gap == Duration::MAX { "never".to_owned() } else { format!("{:.2} s", gap.as_secs_f64()) }
                ));
            }
        }
    }
}
