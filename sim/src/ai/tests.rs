//! The chat completions stand-in over real HTTP on 127.0.0.1, as an OpenAI client meets it: answers,
//! usage, the key, every fault switch, and the control API that sets them.

use std::time::Instant;

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::answer::HANDOVER_REPLY;
use super::*;
use crate::{AiFaultSwitch, SimConfig, SimHandle};

const KNOWLEDGE: &str = "You answer for Woodstock Outlet.\n<knowledge>\n## Hours\n- We open at 9am Monday to Saturday.\n- Delivery is free over $50.\n</knowledge>";

struct Ai {
    handle: SimHandle,
    http: reqwest::Client,
}

/// A reply: status, headers, JSON body.
type Answer = (u16, HeaderMap, Value);

impl Ai {
    async fn start() -> Self {
        let handle = crate::spawn(SimConfig::default()).await.unwrap();
        Self { handle, http: reqwest::Client::new() }
    }

    async fn chat_raw(&self, body: reqwest::Body, key: Option<&str>) -> Answer {
        let mut call = self.http.post(format!("{}/v1/chat/completions", self.handle.url())).body(body);
        if let Some(key) = key {
            call = call.bearer_auth(key);
        }
        let resp = call.header("content-type", "application/json").send().await.unwrap();
        (resp.status().as_u16(), resp.headers().clone(), resp.json().await.unwrap())
    }

    async fn chat(&self, body: &Value, key: Option<&str>) -> Answer {
        self.chat_raw(body.to_string().into(), key).await
    }

    async fn ask(&self, question: &str) -> Answer {
        self.chat(&question_body(question), None).await
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut call = self.http.request(method, format!("{}/_sim/ai/{path}", self.handle.url()));
        if let Some(body) = body {
            call = call.json(&body);
        }
        let resp = call.send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    async fn fault(&self, switch: Value) {
        let (status, body) = self.control(reqwest::Method::POST, "fault", Some(switch)).await;
        assert_eq!(status, 200, "{body}");
    }
}

fn question_body(question: &str) -> Value {
    json!({ "model": "gpt-sim", "messages": [
        { "role": "system", "content": KNOWLEDGE },
        { "role": "user", "content": question },
    ] })
}

fn content(body: &Value) -> Option<&str> {
    body["choices"][0]["message"]["content"].as_str()
}

#[tokio::test]
async fn the_best_knowledge_line_is_answered_in_openais_shape() {
    let ai = Ai::start().await;
    let (status, _, body) = ai.ask("Is delivery free?").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content(&body), Some("Delivery is free over $50."));
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-sim");
    assert_eq!(body["choices"][0]["index"], 0);
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(body["created"].as_i64().unwrap() > 1_700_000_000);
    assert_eq!(body["id"], "chatcmpl-sim-1");
    assert_eq!(ai.ask("Is delivery free?").await.2["id"], "chatcmpl-sim-2", "ids count completions");
}

#[tokio::test]
async fn usage_is_a_quarter_of_the_characters_rounded_up() {
    let ai = Ai::start().await;
    let question = "Is delivery free?";
    let (_, _, body) = ai.ask(question).await;
    let prompt = (KNOWLEDGE.chars().count() + question.chars().count()).div_ceil(4) as u64;
    let completion = "Delivery is free over $50.".len().div_ceil(4) as u64;
    assert_eq!(
        body["usage"],
        json!({ "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion })
    );
    let tiny = json!({ "model": "m", "messages": [{ "role": "user", "content": "" }] });
    let (_, _, body) = ai.chat(&tiny, None).await;
    let handover = HANDOVER_REPLY.chars().count().div_ceil(4) as u64;
    assert_eq!(body["usage"]["prompt_tokens"], 1, "an empty prompt still counts one token");
    assert_eq!(body["usage"]["total_tokens"], 1 + handover);
}

#[tokio::test]
async fn a_question_the_knowledge_does_not_cover_is_handed_over() {
    let ai = Ai::start().await;
    let (status, _, body) = ai.ask("Do you sell gift cards?").await;
    assert_eq!(status, 200);
    assert_eq!(content(&body), Some(HANDOVER_REPLY));
    assert!(content(&body).unwrap().ends_with(HANDOVER_MARKER));
}

#[tokio::test]
async fn bad_bodies_get_a_400_with_openais_error_envelope() {
    let ai = Ai::start().await;
    let cases = [
        ("{not json".to_owned(), "invalid_json"),
        (json!({ "messages": [{ "role": "user", "content": "hi" }] }).to_string(), "missing_required_parameter"),
        (json!({ "model": "m", "messages": [] }).to_string(), "empty_array"),
        (json!({ "model": "m", "messages": [{ "content": "no role" }] }).to_string(), "invalid_type"),
    ];
    for (body, code) in cases {
        let (status, _, answer) = ai.chat_raw(body.clone().into(), None).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (400, Some(code)), "{body}");
        assert_eq!(answer["error"]["type"], "invalid_request_error");
    }
    let resp = ai.http.get(format!("{}/v1/chat/completions", ai.handle.url())).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn with_a_key_set_only_its_bearer_is_answered() {
    let ai = Ai::start().await;
    let (status, set) = ai.control(reqwest::Method::POST, "key", Some(json!({ "key": "sk-sim-right" }))).await;
    assert_eq!((status, set), (200, json!({ "key_required": true })));

    for key in [None, Some("sk-sim-wrong")] {
        let (status, _, body) = ai.chat(&question_body("delivery?"), key).await;
        assert_eq!(status, 401);
        assert_eq!(
            body,
            json!({ "error": { "message": "Incorrect API key provided", "type": "invalid_request_error",
                "param": null, "code": "invalid_api_key" } })
        );
    }
    assert_eq!(ai.chat(&question_body("delivery?"), Some("sk-sim-right")).await.0, 200);

    ai.control(reqwest::Method::POST, "key", Some(json!({ "key": null }))).await;
    assert_eq!(ai.ask("delivery?").await.0, 200, "no key: any call is answered");
}

#[tokio::test]
async fn the_configured_key_applies_from_the_start() {
    let handle =
        crate::spawn(SimConfig { ai_key: Some("sk-from-config".into()), ..SimConfig::default() }).await.unwrap();
    let ai = Ai { handle, http: reqwest::Client::new() };
    assert_eq!(ai.ask("delivery?").await.0, 401);
    assert_eq!(ai.chat(&question_body("delivery?"), Some("sk-from-config")).await.0, 200);
}

#[tokio::test]
async fn rate_limited_quota_and_server_error_answer_like_openai() {
    let ai = Ai::start().await;
    ai.fault(json!({ "mode": "rate_limited" })).await;
    let (status, headers, body) = ai.ask("delivery?").await;
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("rate_limit_exceeded")));
    assert_eq!(headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));

    ai.fault(json!({ "mode": "quota" })).await;
    let (status, headers, body) = ai.ask("delivery?").await;
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("insufficient_quota")));
    assert!(headers.get("retry-after").is_none(), "quota is not worth a retry");

    ai.fault(json!({ "mode": "server_error" })).await;
    let (status, _, body) = ai.ask("delivery?").await;
    assert_eq!((status, body["error"]["type"].as_str()), (500, Some("server_error")));
    assert!(body["error"]["message"].is_string());

    ai.fault(json!({ "mode": "none" })).await;
    assert_eq!(ai.ask("delivery?").await.0, 200);
}

#[tokio::test]
async fn slow_holds_the_call_then_answers() {
    let ai = Ai::start().await;
    ai.fault(json!({ "mode": "slow", "slow_ms": 300 })).await;
    let started = Instant::now();
    let (status, _, body) = ai.ask("Is delivery free?").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!((status, content(&body)), (200, Some("Delivery is free over $50.")));
}

#[tokio::test]
async fn empty_withholds_the_content_and_no_usage_drops_usage() {
    let ai = Ai::start().await;
    ai.fault(json!({ "mode": "empty" })).await;
    let (status, _, body) = ai.ask("Is delivery free?").await;
    assert_eq!(status, 200);
    assert_eq!(body["choices"][0]["message"]["content"], Value::Null);
    assert_eq!(body["choices"][0]["finish_reason"], "content_filter");

    ai.fault(json!({ "mode": "no_usage" })).await;
    let (status, _, body) = ai.ask("Is delivery free?").await;
    assert_eq!((status, content(&body)), (200, Some("Delivery is free over $50.")));
    assert!(body.get("usage").is_none(), "{body}");
}

#[tokio::test]
async fn strict_tokens_rejects_max_tokens_only() {
    let ai = Ai::start().await;
    ai.fault(json!({ "mode": "strict_tokens" })).await;
    let mut legacy = question_body("Is delivery free?");
    legacy["max_tokens"] = json!(200);
    let (status, _, body) = ai.chat(&legacy, None).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({ "error": {
            "message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
            "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter" } })
    );
    let mut current = question_body("Is delivery free?");
    current["max_completion_tokens"] = json!(200);
    let (status, _, body) = ai.chat(&current, None).await;
    assert_eq!((status, content(&body)), (200, Some("Delivery is free over $50.")));
}

#[tokio::test]
async fn a_counted_fault_expires_after_its_calls() {
    let ai = Ai::start().await;
    ai.fault(json!({ "mode": "server_error", "times": 2 })).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(ai.ask("delivery?").await.0);
    }
    assert_eq!(statuses, [500, 500, 200]);
    assert_eq!(ai.handle.sim().ai_fault(), AiFaultSwitch::default(), "back to none");
}

#[tokio::test]
async fn an_unknown_mode_is_refused_by_name() {
    let ai = Ai::start().await;
    let (status, body) = ai.control(reqwest::Method::POST, "fault", Some(json!({ "mode": "on_fire" }))).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("on_fire"), "{body}");
}

#[tokio::test]
async fn every_call_is_recorded_with_its_authorization_until_cleared() {
    let ai = Ai::start().await;
    ai.control(reqwest::Method::POST, "key", Some(json!({ "key": "sk-sim" }))).await;
    ai.chat(&question_body("first"), None).await;
    ai.chat_raw("garbage".into(), Some("sk-sim")).await;
    ai.chat(&question_body("third"), Some("sk-sim")).await;

    let (status, seen) = ai.control(reqwest::Method::GET, "requests", None).await;
    assert_eq!(status, 200);
    assert_eq!(seen["calls"], 3, "failed calls count too");
    assert_eq!(seen["requests"], json!([question_body("first"), null, question_body("third")]));
    assert_eq!(seen["authorization"], json!([null, "Bearer sk-sim", "Bearer sk-sim"]));

    let (status, _) = ai.control(reqwest::Method::DELETE, "requests", None).await;
    assert_eq!(status, 200);
    let (_, seen) = ai.control(reqwest::Method::GET, "requests", None).await;
    assert_eq!(seen, json!({ "calls": 0, "requests": [], "authorization": [] }));
}

#[tokio::test]
async fn reset_switches_the_fault_off() {
    let ai = Ai::start().await;
    ai.fault(json!({ "mode": "quota" })).await;
    let resp = ai.http.post(format!("{}/_sim/reset", ai.handle.url())).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(ai.ask("delivery?").await.0, 200);
}

#[test]
fn bearer_tokens_are_read_in_any_case_of_the_scheme() {
    assert_eq!(bearer("Bearer sk-1"), Some("sk-1"));
    assert_eq!(bearer("bearer sk-1"), Some("sk-1"));
    assert_eq!(bearer("Basic c2s="), None);
    assert_eq!(bearer("sk-1"), None);
}
