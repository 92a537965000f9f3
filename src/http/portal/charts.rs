//! Small charts of a Page's (or a client's) figures over time, rendered on the server as inline SVG: the portal
//! runs no script, and its Content-Security-Policy allows none. Each chart tells its story without colour:
//! counts are bars (failed sends hatched), times are lines with markers, the point where a Page counts as stuck
//! is a dashed line, and every chart has a caption in words (its total or its worst, and its latest value).

use maud::{Markup, PreEscaped, html};

use crate::store::HistorySlot;

/// The portal's day charts span 24 hours in 15-minute slots.
pub const DAY_SECS: i64 = 86_400;
pub const SLOT_SECS: i64 = 900;
pub const SLOTS: usize = 96;

/// The figures of one stretch of time, slot by slot (oldest first).
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub events: Vec<i64>,
    pub answers: Vec<i64>,
    pub failures: Vec<i64>,
    pub reply_p95_ms: Vec<Option<i64>>,
    pub oldest_pending_s: Vec<i64>,
    /// What one slot spans, in words ("15 min", "6 h").
    pub slot: &'static str,
    /// What the whole spans, in words ("24 h", "30 days").
    pub span: &'static str,
}

impl Timeline {
    /// `count` slots of `slot_secs` ending with the one holding `now` (unix seconds), filled from `rows`
    /// (those of several Pages add up: counts summed, times at their worst).
    pub fn new(
        rows: &[&HistorySlot],
        now: i64,
        slot_secs: i64,
        count: usize,
        slot: &'static str,
        span: &'static str,
    ) -> Self {
        let first = (now / slot_secs - count as i64 + 1) * slot_secs;
        let mut t = Timeline {
            events: vec![0; count],
            answers: vec![0; count],
            failures: vec![0; count],
            reply_p95_ms: vec![None; count],
            oldest_pending_s: vec![0; count],
            slot,
            span,
        };
        for row in rows {
            let Ok(i) = usize::try_from((row.at - first) / slot_secs) else { continue };
            if i >= count || row.at < first {
                continue;
            }
            t.events[i] += row.events;
            t.answers[i] += row.answers;
            t.failures[i] += row.failures;
            t.reply_p95_ms[i] = t.reply_p95_ms[i].max(row.reply_p95_ms);
            t.oldest_pending_s[i] = t.oldest_pending_s[i].max(row.oldest_pending_s);
        }
        t
    }
}

const W: f64 = 240.0;
const H: f64 = 56.0;
/// Room at the top for the largest value's label.
const TOP: f64 = 10.0;

/// The five charts of a timeline. `stuck_after_s`: the age at which a Page counts as stuck (a dashed line).
pub fn charts(id: &str, t: &Timeline, stuck_after_s: i64) -> Markup {
    let total = |v: &[i64]| v.iter().sum::<i64>();
    let p95 = t.reply_p95_ms.iter().flatten().copied().max();
    let oldest = t.oldest_pending_s.iter().copied().max().unwrap_or(0);
    html! {
        div class="charts" {
            (bars(&format!("{id}-events"), "Events in", &t.events, false,
                &format!("{} in {} (most {} in {})", total(&t.events), t.span, t.events.iter().max().unwrap_or(&0), t.slot)))
            (bars(&format!("{id}-answers"), "Answers sent", &t.answers, false,
                &format!("{} in {}", total(&t.answers), t.span)))
            (bars(&format!("{id}-failures"), "Failed sends", &t.failures, true,
                &if total(&t.failures) == 0 { "none".to_owned() } else { format!("{} in {}", total(&t.failures), t.span) }))
            (line(&format!("{id}-latency"), "Webhook → reply, 95th percentile",
                &t.reply_p95_ms.iter().map(|v| v.map(|ms| ms as f64 / 1000.0)).collect::<Vec<_>>(), None, "square",
                &match p95 { Some(ms) => format!("worst {} · latest {}", seconds(ms as f64 / 1000.0), latest(&t.reply_p95_ms)), None => "no answers timed".to_owned() }))
            (line(&format!("{id}-oldest"), "Oldest waiting event",
                &t.oldest_pending_s.iter().map(|s| Some(*s as f64).filter(|s| *s > 0.0)).collect::<Vec<_>>(), Some(stuck_after_s as f64), "triangle",
                &if oldest == 0 { "nothing waited".to_owned() } else { format!("worst {}", seconds(oldest as f64)) }))
        }
    }
}

fn latest(v: &[Option<i64>]) -> String {
    v.iter().rev().flatten().next().map_or_else(|| "–".to_owned(), |ms| seconds(*ms as f64 / 1000.0))
}

/// A duration for people.
fn seconds(s: f64) -> String {
    match s {
        s if s < 1.0 => format!("{:.0} ms", s * 1000.0),
        s if s < 120.0 => format!("{s:.1} s"),
        s if s < 7200.0 => format!("{:.0} min", s / 60.0),
        s => format!("{:.1} h", s / 3600.0),
    }
}

/// A chart's frame: the SVG with its title (read by screen readers) and a caption in words.
fn frame(id: &str, title: &str, caption: &str, body: Markup) -> Markup {
    html! {
        figure class="chart" id=(id) {
            svg viewBox={"0 0 " (W) " " (H)} role="img" aria-labelledby={(id) "-t"} xmlns="http://www.w3.org/2000/svg" {
                title id={(id) "-t"} { (title) ": " (caption) }
                (body)
                line x1="0" y1=(H - 0.5) x2=(W) y2=(H - 0.5) stroke="#606770" stroke-width="1" {}
            }
            figcaption { strong { (title) } br; (caption) }
        }
    }
}

/// Counts as bars (hatched when they are failures), scaled to the largest.
fn bars(id: &str, title: &str, values: &[i64], hatched: bool, caption: &str) -> Markup {
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let width = W / values.len().max(1) as f64;
    let fill = if hatched { format!("url(#{id}-hatch)") } else { "#1c1e21".to_owned() };
    html! {
        (frame(id, title, caption, html! {
            @if hatched {
                defs { pattern id={(id) "-hatch"} width="4" height="4" patternUnits="userSpaceOnUse" patternTransform="rotate(45)" {
                    rect width="4" height="4" fill="#ffffff" {}
                    line x1="0" y1="0" x2="0" y2="4" stroke="#1c1e21" stroke-width="2" {}
                } }
            }
            text x="0" y="8" font-size="8" fill="#606770" { "max " (max as i64) }
            @for (i, v) in values.iter().enumerate().filter(|(_, v)| **v > 0) {
                @let h = (*v as f64 / max) * (H - TOP);
                rect x=(format!("{:.2}", i as f64 * width)) y=(format!("{:.2}", H - h)) width=(format!("{:.2}", (width - 0.5).max(0.5)))
                    height=(format!("{:.2}", h)) fill=(fill) stroke="#1c1e21" stroke-width="0.3" {}
            }
        }))
    }
}

/// Times as a line with a marker on each point, gaps where there was nothing; `threshold` as a dashed line.
fn line(id: &str, title: &str, values: &[Option<f64>], threshold: Option<f64>, marker: &str, caption: &str) -> Markup {
    let max = values.iter().flatten().copied().fold(threshold.unwrap_or(0.0), f64::max).max(0.001);
    let step = W / values.len().max(1) as f64;
    let y = |v: f64| H - (v / max) * (H - TOP);
    let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => segments.last_mut().expect("never empty").push((i as f64 * step + step / 2.0, y(*v))),
            None if segments.last().is_some_and(|s| !s.is_empty()) => segments.push(Vec::new()),
            None => {}
        }
    }
    html! {
        (frame(id, title, caption, html! {
            text x="0" y="8" font-size="8" fill="#606770" { "max " (seconds(max)) }
            @if let Some(limit) = threshold {
                line x1="0" y1=(format!("{:.2}", y(limit))) x2=(W) y2=(format!("{:.2}", y(limit))) stroke="#c0392b" stroke-width="1" stroke-dasharray="4 3" {}
                text x=(W) y=(format!("{:.2}", y(limit) - 2.0)) font-size="8" text-anchor="end" fill="#c0392b" { "stuck at " (seconds(limit)) }
            }
            @for segment in segments.iter().filter(|s| !s.is_empty()) {
                polyline fill="none" stroke="#1c1e21" stroke-width="1.5"
                    points=(segment.iter().map(|(x, y)| format!("{x:.2},{y:.2}")).collect::<Vec<_>>().join(" ")) {}
                @for (x, y) in segment.iter().step_by((segment.len() / 24).max(1)) {
                    (PreEscaped(mark(marker, *x, *y)))
                }
            }
        }))
    }
}

/// A point's marker: a square or a triangle (shapes, not colours, tell the lines apart).
fn mark(shape: &str, x: f64, y: f64) -> String {
    match shape {
        "triangle" => format!(
            "<polygon points=\"{:.2},{:.2} {:.2},{:.2} {:.2},{:.2}\" fill=\"#1c1e21\"></polygon>",
            x,
            y - 2.5,
            x - 2.5,
            y + 2.0,
            x + 2.5,
            y + 2.0
        ),
        _ => {
            format!("<rect x=\"{:.2}\" y=\"{:.2}\" width=\"4\" height=\"4\" fill=\"#1c1e21\"></rect>", x - 2.0, y - 2.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(at: i64, events: i64, p95: Option<i64>) -> HistorySlot {
        HistorySlot {
            page_id: "1".into(),
            at,
            events,
            answers: events,
            failures: 0,
            reply_p95_ms: p95,
            oldest_pending_s: 0,
        }
    }

    #[test]
    fn a_timeline_places_each_slot_and_adds_pages_up() {
        let now = 10 * 900 + 5;
        let (a, b, old) = (slot(9 * 900, 3, Some(200)), slot(9 * 900, 2, Some(900)), slot(0, 99, None));
        let t = Timeline::new(&[&a, &b, &old], now, 900, 4, "15 min", "1 h");
        assert_eq!(t.events, [0, 0, 5, 0], "the slot before the current one; older rows fall outside");
        assert_eq!(t.reply_p95_ms[2], Some(900), "the worst of the two Pages");
    }

    #[test]
    fn charts_say_in_words_what_they_show() {
        let now = 96 * 900;
        let rows = [slot(95 * 900, 7, Some(1_500))];
        let t = Timeline::new(&rows.iter().collect::<Vec<_>>(), now, 900, 96, "15 min", "24 h");
        let html = charts("p1", &t, 60).into_string();
        assert!(html.contains("7 in 24 h (most 7 in 15 min)"), "{html}");
        assert!(html.contains("worst 1.5 s"), "{html}");
        assert!(html.contains("stuck at 60.0 s") && html.contains("stroke-dasharray"), "the stuck line is dashed");
        assert!(html.contains("role=\"img\"") && html.contains("<title"), "named for screen readers");
        assert!(!html.contains("style="), "nothing inline that the Content-Security-Policy refuses");
    }
}
