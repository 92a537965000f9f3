//! The chat completions stand-in's memory: the fault switch the control API sets, the completion counter,
//! and the requests it received, for tests to assert on. The API key itself is configuration
//! (`SimConfig::ai_key`); this module only checks it. The answering rule lives in `crate::ai`, not here.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::*;

/// How many received requests are kept: enough for any test, while a long `switchboard demo` run cannot
/// grow the stand-in without bound. Past it the oldest is dropped; the call count keeps growing.
const MAX_AI_REQUESTS: usize = 1000;

/// How long the `slow` fault holds a call when the switch names no `slow_ms`.
pub const DEFAULT_SLOW_MS: u64 = 3_000;

/// How the stand-in answers `POST /v1/chat/completions` while a fault switch is on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AiFault {
    /// Answer normally.
    #[default]
    None,
    /// 429 with `Retry-After: 1` and code `rate_limit_exceeded`.
    RateLimited,
    /// 429 with code `insufficient_quota` (billing: not worth retrying).
    Quota,
    /// 500 with an error body.
    ServerError,
    /// Hold the call for `slow_ms`, then answer normally.
    Slow,
    /// 200 with `content: null` and `finish_reason: "content_filter"`.
    Empty,
    /// A normal answer without the `usage` field, as some gateways send.
    NoUsage,
    /// 400 `unsupported_parameter` when the body has `max_tokens`, as OpenAI's newer models do.
    StrictTokens,
}

/// A fault switch: the mode, how long `slow` holds a call, and for how many more calls it stays on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AiFaultSwitch {
    pub mode: AiFault,
    /// Milliseconds the `slow` mode waits before answering.
    #[serde(default = "default_slow_ms")]
    pub slow_ms: u64,
    /// `Some(n)`: only the next `n` calls, then back to `none`. `None`: until changed.
    #[serde(default)]
    pub times: Option<u32>,
}

fn default_slow_ms() -> u64 {
    DEFAULT_SLOW_MS
}

impl Default for AiFaultSwitch {
    fn default() -> Self {
        Self { mode: AiFault::None, slow_ms: DEFAULT_SLOW_MS, times: None }
    }
}

/// What `POST /v1/chat/completions` received, for `GET /_sim/ai/requests`. `requests[i]` and
/// `authorization[i]` belong to the same call; both hold at most the last 1000 calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AiRequests {
    /// Every call received since the last clear, failed ones included.
    pub calls: u64,
    /// Each call's body as JSON (`null` when it was not JSON), oldest first.
    pub requests: Vec<Value>,
    /// Each call's `Authorization` header, or `None` when it had none.
    pub authorization: Vec<Option<String>>,
}

/// One received call.
#[derive(Debug, Clone)]
struct ReceivedCall {
    body: Value,
    authorization: Option<String>,
}

/// The stand-in's chat completions traffic and switch. Invariant: `switch.times` is never `Some(0)`; a
/// switch that runs out becomes the default (`none`).
#[derive(Debug, Default)]
pub(super) struct AiDesk {
    switch: AiFaultSwitch,
    calls: u64,
    received: VecDeque<ReceivedCall>,
    /// Completions answered over the stand-in's life: the `n` of `chatcmpl-sim-<n>`, never reused.
    completions: u64,
}

impl AiDesk {
    fn set_switch(&mut self, switch: AiFaultSwitch) -> AiFaultSwitch {
        self.switch = if switch.times == Some(0) { AiFaultSwitch::default() } else { switch };
        self.switch
    }

    /// The switch that applies to this call; one of its `times` is used up.
    fn take_switch(&mut self) -> AiFaultSwitch {
        let now = self.switch;
        match self.switch.times {
            Some(left) if left <= 1 => self.switch = AiFaultSwitch::default(),
            Some(left) => self.switch.times = Some(left - 1),
            None => {}
        }
        now
    }

    fn record(&mut self, body: Value, authorization: Option<String>) {
        self.calls += 1;
        if self.received.len() >= MAX_AI_REQUESTS {
            self.received.pop_front();
        }
        self.received.push_back(ReceivedCall { body, authorization });
    }

    fn requests(&self) -> AiRequests {
        AiRequests {
            calls: self.calls,
            requests: self.received.iter().map(|c| c.body.clone()).collect(),
            authorization: self.received.iter().map(|c| c.authorization.clone()).collect(),
        }
    }

    fn clear_requests(&mut self) {
        self.calls = 0;
        self.received.clear();
    }

    /// Forgets traffic and switches the fault off; the completion counter keeps counting, so ids stay unique.
    pub(super) fn reset(&mut self) {
        self.switch = AiFaultSwitch::default();
        self.clear_requests();
    }

    /// The part of `GET /_sim/state` about the chat completions stand-in.
    pub(super) fn summary(&self, key_required: bool) -> Value {
        json!({ "fault": self.switch, "calls": self.calls, "completions": self.completions, "key_required": key_required })
    }
}

impl Sim {
    /// Sets the chat completions fault switch (`times: Some(0)` switches it off); returns it as now set.
    pub fn set_ai_fault(&self, switch: AiFaultSwitch) -> AiFaultSwitch {
        self.lock().ai.set_switch(switch)
    }

    /// The chat completions fault switch as it stands (with the calls it has left).
    pub fn ai_fault(&self) -> AiFaultSwitch {
        self.lock().ai.switch
    }

    /// Requires `Authorization: Bearer <key>` on chat completion calls; `None` (or an empty key) accepts any.
    pub fn set_ai_key(&self, key: Option<String>) {
        self.lock().config.ai_key = key;
    }

    /// Whether a call presenting the bearer token `token` may be answered.
    pub(crate) fn ai_key_accepts(&self, token: Option<&str>) -> bool {
        match self.lock().config.ai_key.as_deref().filter(|k| !k.is_empty()) {
            None => true,
            Some(key) => token == Some(key),
        }
    }

    /// Records a call to `POST /v1/chat/completions` as it arrived, before any check.
    pub(crate) fn record_ai_call(&self, body: Value, authorization: Option<String>) {
        self.lock().ai.record(body, authorization);
    }

    /// The fault switch that applies to the call being answered, using up one of its `times`.
    pub(crate) fn take_ai_fault(&self) -> AiFaultSwitch {
        self.lock().ai.take_switch()
    }

    /// The number of the completion being answered, from 1: the `n` of its `chatcmpl-sim-<n>` id.
    pub(crate) fn next_completion(&self) -> u64 {
        let mut state = self.lock();
        state.ai.completions += 1;
        state.ai.completions
    }

    /// What `POST /v1/chat/completions` received since the last clear.
    pub fn ai_requests(&self) -> AiRequests {
        self.lock().ai.requests()
    }

    /// Forgets the received chat completion calls and their count.
    pub fn clear_ai_requests(&self) {
        self.lock().ai.clear_requests();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn switch(mode: AiFault, times: Option<u32>) -> AiFaultSwitch {
        AiFaultSwitch { mode, times, ..AiFaultSwitch::default() }
    }

    #[test]
    fn a_counted_switch_runs_out_and_returns_to_none() {
        let mut desk = AiDesk::default();
        desk.set_switch(switch(AiFault::Quota, Some(2)));
        let modes: Vec<AiFault> = (0..3).map(|_| desk.take_switch().mode).collect();
        assert_eq!(modes, [AiFault::Quota, AiFault::Quota, AiFault::None]);
        assert_eq!(desk.switch, AiFaultSwitch::default());
    }

    #[test]
    fn zero_times_switches_the_fault_off() {
        let mut desk = AiDesk::default();
        assert_eq!(desk.set_switch(switch(AiFault::ServerError, Some(0))).mode, AiFault::None);
    }

    #[test]
    fn only_the_last_thousand_requests_are_kept_but_all_are_counted() {
        let mut desk = AiDesk::default();
        for i in 0..MAX_AI_REQUESTS + 5 {
            desk.record(json!({ "i": i }), None);
        }
        let seen = desk.requests();
        assert_eq!(seen.calls, MAX_AI_REQUESTS as u64 + 5);
        assert_eq!((seen.requests.len(), seen.authorization.len()), (MAX_AI_REQUESTS, MAX_AI_REQUESTS));
        assert_eq!(seen.requests[0], json!({ "i": 5 }), "the oldest are dropped first");
    }
}
