//! The `rules` responder: per-client keyword rules, a postback (and quick-reply) payload → reply map, and
//! a fallback for any other text message. Pure and synchronous; configured per client as JSON.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{BotAnswer, BotError, Responder};
use crate::domain::event::{EventKind, InboundEvent};

/// A client's rules, as stored (JSON) and set with `switchboard client set-responder SLUG rules`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Checked in order; the first rule with a keyword found in the message (case-insensitive) answers.
    #[serde(default)]
    pub keywords: Vec<KeywordRule>,
    /// Postback and quick-reply payloads → reply.
    #[serde(default)]
    pub postbacks: BTreeMap<String, String>,
    /// The answer to a text message no rule matched; `None` uses the deployment's default fallback.
    #[serde(default)]
    pub fallback: Option<String>,
    /// When a customer asks for a person (whichever responder answers the client's pages).
    #[serde(default)]
    pub person: AskForPerson,
}

/// A customer asking for a person: words or phrases in a message, or postback and quick-reply payloads. Such
/// a customer gets `reply`, the conversation goes to the Page Inbox (or the Instagram Inbox) through the
/// Handover Protocol, and the bot stays silent there until control comes back or the client's pause ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskForPerson {
    #[serde(default = "person_words")]
    pub keywords: Vec<String>,
    #[serde(default = "person_payloads")]
    pub payloads: Vec<String>,
    #[serde(default = "person_reply")]
    pub reply: String,
}

fn person_words() -> Vec<String> {
    ["talk to a person", "speak to a person", "talk to someone", "real person", "talk to a human", "representative"]
        .map(String::from)
        .to_vec()
}

fn person_payloads() -> Vec<String> {
    vec!["TALK_TO_A_PERSON".to_owned(), "HUMAN_AGENT".to_owned()]
}

fn person_reply() -> String {
    "Thanks! Someone from our team will answer you here shortly.".to_owned()
}

impl Default for AskForPerson {
    fn default() -> Self {
        Self { keywords: person_words(), payloads: person_payloads(), reply: person_reply() }
    }
}

impl AskForPerson {
    /// Whether `event` asks for a person.
    pub fn matches(&self, event: &InboundEvent) -> bool {
        let payload = match &event.kind {
            EventKind::Postback { payload, .. } => payload.as_deref(),
            EventKind::Message { quick_reply, .. } => quick_reply.as_deref(),
            _ => None,
        };
        if payload.is_some_and(|p| self.payloads.iter().any(|mine| mine == p)) {
            return true;
        }
        match &event.kind {
            EventKind::Message { text: Some(text), .. } => self.asked_in(&text.to_lowercase()),
            _ => false,
        }
    }

    /// Whether a message's text, lowercased, asks for a person.
    fn asked_in(&self, lower: &str) -> bool {
        self.keywords.iter().map(|k| k.trim().to_lowercase()).any(|k| !k.is_empty() && lower.contains(&k))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeywordRule {
    #[serde(rename = "match")]
    pub keywords: Vec<String>,
    pub reply: String,
}

impl Rules {
    /// Rejects rules that could never answer sensibly.
    pub fn validate(&self) -> Result<(), String> {
        for (i, rule) in self.keywords.iter().enumerate() {
            if rule.keywords.iter().all(|k| k.trim().is_empty()) {
                return Err(format!("keyword rule #{} has no keyword", i + 1));
            }
            if rule.reply.trim().is_empty() {
                return Err(format!("keyword rule #{} has an empty reply", i + 1));
            }
        }
        if let Some((payload, _)) = self.postbacks.iter().find(|(_, reply)| reply.trim().is_empty()) {
            return Err(format!("postback {payload:?} has an empty reply"));
        }
        if self.person.reply.trim().is_empty() {
            return Err("the answer to a customer who asks for a person is empty".to_owned());
        }
        if self.person.keywords.iter().chain(&self.person.payloads).any(|k| k.trim().is_empty()) {
            return Err("a word or payload that asks for a person is empty".to_owned());
        }
        Ok(())
    }
}

/// Answers from a client's `Rules`, falling back to the deployment's default text.
pub struct RulesResponder {
    rules: Rules,
    keywords_lower: Vec<(Vec<String>, String)>,
    default_fallback: String,
}

/// Which part of a client's rules answered a text message, for "Try it".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered {
    /// The keyword rule at this index (from 0).
    Rule(usize),
    /// The customer asked for a person.
    Person,
    /// No rule matched: the client's fallback, or the deployment's.
    Fallback,
}

impl RulesResponder {
    /// How the rules answer `text`, and with what ("Try it" in the portal).
    pub fn try_text(&self, text: &str) -> (Answered, String) {
        let lower = text.to_lowercase();
        if self.rules.person.asked_in(&lower) {
            return (Answered::Person, self.rules.person.reply.clone());
        }
        self.by_keywords(&lower)
    }

    /// The first keyword rule found in a message's lowercased text, or the fallback.
    fn by_keywords(&self, lower: &str) -> (Answered, String) {
        match self.keywords_lower.iter().position(|(keys, _)| keys.iter().any(|k| lower.contains(k.as_str()))) {
            Some(at) => (Answered::Rule(at), self.keywords_lower[at].1.clone()),
            None => (Answered::Fallback, self.rules.fallback.clone().unwrap_or_else(|| self.default_fallback.clone())),
        }
    }

    pub fn new(rules: Rules, default_fallback: String) -> Self {
        let keywords_lower = rules
            .keywords
            .iter()
            .map(|r| {
                (
                    r.keywords.iter().map(|k| k.trim().to_lowercase()).filter(|k| !k.is_empty()).collect(),
                    r.reply.clone(),
                )
            })
            .collect();
        Self { rules, keywords_lower, default_fallback }
    }

    /// The reply to `event`, if any.
    pub fn reply(&self, event: &InboundEvent) -> Option<String> {
        match &event.kind {
            EventKind::Postback { payload, title, .. } => {
                let key = payload.as_deref().or(title.as_deref())?;
                self.rules.postbacks.get(key).cloned()
            }
            EventKind::Message { quick_reply: Some(payload), .. } if self.rules.postbacks.contains_key(payload) => {
                self.rules.postbacks.get(payload).cloned()
            }
            EventKind::Message { text: Some(text), .. } => Some(self.by_keywords(&text.to_lowercase()).1),
            _ => None,
        }
    }
}

#[async_trait]
impl Responder for RulesResponder {
    async fn respond(&self, event: &InboundEvent) -> Result<BotAnswer, BotError> {
        Ok(BotAnswer::replies(self.reply(event).into_iter().collect()))
    }
}

/// A client's bot with a customer's asking for a person answered before it (the same answer whichever bot the
/// client runs).
pub(crate) struct PersonFirst {
    pub ask: std::sync::Arc<AskForPerson>,
    pub bot: std::sync::Arc<dyn Responder>,
}

#[async_trait]
impl Responder for PersonFirst {
    async fn respond(&self, event: &InboundEvent) -> Result<BotAnswer, BotError> {
        if self.ask.matches(event) {
            return Ok(BotAnswer::replies(vec![self.ask.reply.clone()]));
        }
        self.bot.respond(event).await
    }

    fn parallel(&self) -> usize {
        self.bot.parallel()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::Channel;
    use crate::domain::page::PageId;

    fn message(text: &str, quick_reply: Option<&str>) -> InboundEvent {
        InboundEvent {
            inbox_id: None,
            recovered: false,
            received: None,
            account_id: PageId::parse("1").unwrap(),
            channel: Channel::Messenger,
            sender: "7".into(),
            recipient: "1".into(),
            timestamp: 1,
            standby: false,
            kind: EventKind::Message {
                mid: "m".into(),
                text: Some(text.into()),
                quick_reply: quick_reply.map(Into::into),
                is_echo: false,
                app_id: None,
                attachments: vec![],
            },
        }
    }

    fn rules() -> Rules {
        serde_json::from_str(
            r#"{"keywords":[{"match":["hours","open"],"reply":"9 to 9, every day."},{"match":["sofa"],"reply":"Sofas are 20% off."}],
                "postbacks":{"STORE_HOURS":"9 to 9.","CONFIRM_DELIVERY_42":"Delivery confirmed."}}"#,
        )
        .unwrap()
    }

    #[test]
    fn keywords_match_case_insensitively_in_order() {
        let r = RulesResponder::new(rules(), "default".into());
        assert_eq!(r.reply(&message("Are you OPEN on Sunday?", None)).as_deref(), Some("9 to 9, every day."));
        assert_eq!(r.reply(&message("grey sofa?", None)).as_deref(), Some("Sofas are 20% off."));
    }

    #[test]
    fn unmatched_text_gets_the_client_fallback_or_the_default() {
        assert_eq!(
            RulesResponder::new(rules(), "default".into()).reply(&message("hello", None)).as_deref(),
            Some("default")
        );
        let with_own = Rules { fallback: Some("We'll call you".into()), ..rules() };
        assert_eq!(
            RulesResponder::new(with_own, "default".into()).reply(&message("hello", None)).as_deref(),
            Some("We'll call you")
        );
        let empty = RulesResponder::new(Rules::default(), "default".into());
        assert_eq!(empty.reply(&message("anything", None)).as_deref(), Some("default"));
    }

    #[test]
    fn postbacks_and_quick_replies_use_the_payload_map() {
        let r = RulesResponder::new(rules(), "default".into());
        assert_eq!(
            r.reply(&message("Yes please", Some("CONFIRM_DELIVERY_42"))).as_deref(),
            Some("Delivery confirmed.")
        );
        let mut pb = message("", None);
        pb.kind =
            EventKind::Postback { mid: None, title: Some("Store hours".into()), payload: Some("STORE_HOURS".into()) };
        assert_eq!(r.reply(&pb).as_deref(), Some("9 to 9."));
        pb.kind = EventKind::Postback { mid: None, title: None, payload: Some("UNKNOWN".into()) };
        assert_eq!(r.reply(&pb), None);
    }

    #[test]
    fn invalid_rules_are_rejected() {
        assert!(serde_json::from_str::<Rules>(r#"{"keyword":[]}"#).is_err(), "unknown fields are refused");
        let bad =
            Rules { keywords: vec![KeywordRule { keywords: vec![" ".into()], reply: "x".into() }], ..Rules::default() };
        assert!(bad.validate().is_err());
        assert!(rules().validate().is_ok());
    }

    #[test]
    fn asking_for_a_person_is_told_by_phrase_or_payload_and_configurable() {
        let ask = AskForPerson::default();
        assert!(ask.matches(&message("Can I TALK TO A PERSON?", None)));
        assert!(ask.matches(&message("menu", Some("HUMAN_AGENT"))));
        assert!(!ask.matches(&message("Do you sell personal safes?", None)));
        let mine: Rules = serde_json::from_str(r#"{"person":{"keywords":["agente"],"reply":"Un momento"}}"#).unwrap();
        assert!(mine.person.matches(&message("hablar con un agente", None)));
        assert_eq!(mine.person.payloads, AskForPerson::default().payloads, "unset parts keep their defaults");
        let empty: Rules = serde_json::from_str(r#"{"person":{"reply":" "}}"#).unwrap();
        assert!(empty.validate().unwrap_err().contains("asks for a person"));
    }
}
