//! Bounded memory of recently seen event keys (message mids), so a redelivered event is answered once.
//! Oldest keys are forgotten first; the durable inbox keeps longer-lived keys.

use std::collections::{HashSet, VecDeque};

pub struct Dedup {
    seen: HashSet<String>,
    order: VecDeque<String>,
    capacity: usize,
}

impl Dedup {
    pub fn new(capacity: usize) -> Self {
        Self { seen: HashSet::new(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    /// Records `key`; false if it was already there (a duplicate).
    pub fn first_time(&mut self, key: String) -> bool {
        if self.seen.contains(&key) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.seen.insert(key.clone());
        self.order.push_back(key);
        true
    }

    /// Whether `key` is remembered.
    pub fn contains(&self, key: &str) -> bool {
        self.seen.contains(key)
    }

    /// Forgets `key`, so the event is taken again when it comes back (it was given up, not handled).
    pub fn forget(&mut self, key: &str) {
        self.seen.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_caught_and_memory_is_bounded() {
        let mut d = Dedup::new(2);
        assert!(d.first_time("a".into()));
        assert!(!d.first_time("a".into()));
        assert!(d.first_time("b".into()));
        assert!(d.first_time("c".into()));
        assert_eq!(d.seen.len(), 2);
        assert!(d.first_time("a".into()), "the oldest key was forgotten");
        d.forget("a");
        assert!(d.first_time("a".into()), "a key given up is taken again");
    }
}
