//! Reading the stand-in's accepted replies back to the events the tests sent: every event comes from a customer
//! of its own, `7` followed by the event's number, so each reply names its event. Shared by the integration
//! suite and the chaos run (each includes this file).

#![allow(dead_code)]

use std::collections::HashMap;

/// The replies in `messages`, per event number.
pub fn by_event(messages: Vec<meta_sim::SentMessage>) -> HashMap<usize, Vec<meta_sim::SentMessage>> {
    let mut by_event: HashMap<usize, Vec<meta_sim::SentMessage>> = HashMap::new();
    for m in messages {
        if let Some(i) = m.recipient_id.strip_prefix('7').and_then(|n| n.parse().ok()) {
            by_event.entry(i).or_default().push(m);
        }
    }
    by_event
}
