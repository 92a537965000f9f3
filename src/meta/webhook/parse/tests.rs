use proptest::prelude::*;

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/webhooks/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn events(body: &[u8]) -> Vec<InboundEvent> {
    let parsed = parse(body).unwrap();
    assert!(parsed.unhandled.is_empty(), "{:?}", parsed.unhandled);
    parsed.events
}

fn one_unhandled(body: &str) -> Unhandled {
    let parsed = parse(body.as_bytes()).unwrap();
    assert_eq!(parsed.unhandled.len(), 1, "{parsed:?}");
    parsed.unhandled.into_iter().next().unwrap()
}

#[test]
fn messenger_text_becomes_one_message_event() {
    let events = events(&fixture("messenger_text.json"));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.account_id.as_str(), "104711112233445");
    assert_eq!(
        (e.channel, e.sender.as_str(), e.timestamp),
        (Channel::Messenger, "7001234567890123", 1_767_225_600_001)
    );
    assert!(
        matches!(&e.kind, EventKind::Message { mid, text: Some(t), is_echo: false, .. } if mid == "m_text_0001" && t == "Hi! Are you open on Sunday?")
    );
    assert!(e.wants_reply());
}

#[test]
fn unicode_is_unescaped() {
    let events = events(&fixture("messenger_unicode.json"));
    let EventKind::Message { text: Some(text), .. } = &events[0].kind else { panic!() };
    assert_eq!(text, "Café table äöå 😀 50% off? <b>see https://example.com/sofa</b>");
}

#[test]
fn batches_keep_every_entry_and_item_in_order() {
    let events = events(&fixture("messenger_batch_two_pages.json"));
    let routed: Vec<(&str, &str)> = events.iter().map(|e| (e.account_id.as_str(), e.sender.as_str())).collect();
    assert_eq!(
        routed,
        [
            ("104711112233445", "7001234567890123"),
            ("104711112233445", "7009876543210987"),
            ("209822223344556", "7009876543210987")
        ]
    );
}

#[test]
fn echoes_reads_reactions_standby_and_postbacks_are_classified() {
    let echo = &events(&fixture("messenger_echo.json"))[0];
    assert!(echo.is_own() && !echo.wants_reply());
    let kinds: Vec<&str> = events(&fixture("messenger_read_delivery.json")).iter().map(|e| e.kind_label()).collect();
    assert_eq!(kinds, ["read", "delivery"]);
    assert_eq!(events(&fixture("messenger_reaction.json"))[0].kind_label(), "reaction");
    let standby = &events(&fixture("messenger_standby.json"))[0];
    assert!(standby.standby && !standby.wants_reply());
    let postback = &events(&fixture("messenger_postback.json"))[0];
    assert!(matches!(&postback.kind, EventKind::Postback { payload: Some(p), .. } if p == "STORE_HOURS"));
    let qr = &events(&fixture("messenger_quick_reply.json"))[0];
    assert!(matches!(&qr.kind, EventKind::Message { quick_reply: Some(p), .. } if p == "CONFIRM_DELIVERY_42"));
    let att = &events(&fixture("messenger_attachment.json"))[0];
    assert!(matches!(&att.kind, EventKind::Message { attachments, text: None, .. } if attachments == &["image"]));
}

#[test]
fn instagram_events_route_by_the_instagram_account() {
    let text = &events(&fixture("instagram_text.json"))[0];
    assert_eq!((text.channel, text.account_id.as_str()), (Channel::Instagram, "17841405822304914"));
    assert!(text.wants_reply());
    let echo = &events(&fixture("instagram_echo.json"))[0];
    assert!(echo.is_own());
    assert_eq!(events(&fixture("instagram_seen.json"))[0].kind_label(), "read");
    let wrapped = format!("[{}]", String::from_utf8(fixture("instagram_text.json")).unwrap());
    assert_eq!(events(wrapped.as_bytes()).len(), 1, "a one-element array is accepted");
}

#[test]
fn only_a_body_that_is_not_json_is_an_error() {
    assert_eq!(parse(b"{not json").unwrap_err(), ParseError::NotJson);
    assert_eq!(parse(b"").unwrap_err(), ParseError::NotJson);
    assert_eq!(parse(b"\xff\xfe").unwrap_err(), ParseError::NotJson);
    for json in [r#"{"entry":[]}"#, "42", r#""page""#, "null", r#"{"object":"page","entry":{"id":"1"}}"#] {
        assert!(parse(json.as_bytes()).is_ok(), "{json}");
    }
}

#[test]
fn times_and_ids_are_read_in_every_form_meta_sends() {
    let body = r#"{"object":"page","entry":[{"id":104711112233445,"time":"1767225600123","messaging":[
        {"sender":{"id":7001234567890123},"recipient":{"id":"104711112233445"},"timestamp":1767225600001.0,
         "message":{"mid":"m_1","text":"hi","is_echo":"false"}},
        {"sender":{"id":"7001234567890123"},"recipient":{"id":104711112233445},"timestamp":"1527459824",
         "postback":{"title":"Start","payload":"GET_STARTED","mid":null}},
        {"sender":{"id":"7001234567890123"},"recipient":{"id":"104711112233445"},
         "delivery":{"watermark":1767225600000}}]}]}"#;
    let events = events(body.as_bytes());
    assert_eq!(events.len(), 3);
    assert_eq!((events[0].account_id.as_str(), events[0].sender.as_str()), ("104711112233445", "7001234567890123"));
    assert_eq!(events[0].timestamp, 1_767_225_600_001);
    assert!(events[0].wants_reply(), "\"false\" is false");
    assert_eq!(events[1].timestamp, 1_527_459_824_000, "a time in seconds is read as seconds");
    assert!(matches!(&events[1].kind, EventKind::Postback { mid: None, payload: Some(p), .. } if p == "GET_STARTED"));
    assert_eq!(events[2].timestamp, 1_767_225_600_123, "no timestamp: the entry's time");
}

#[test]
fn one_odd_event_costs_only_itself() {
    let body = r#"{"object":"page","entry":[
        {"id":"104711112233445","messaging":[
            {"sender":{"id":"7001"},"timestamp":1767225600001,"message":{"mid":"m_ok","text":"hi"}},
            {"sender":{"id":"7001"},"timestamp":1767225600002,"message":{"text":"no mid"}},
            {"sender":{"id":"7001"},"timestamp":1767225600003,"message":{"mid":"m_bad","text":{"not":"text"}}},
            {"sender":{"id":"7001"},"timestamp":1767225600004,"request_thread_control":{"requested_owner_app_id":"1"}},
            {"sender":{"id":"7001"},"timestamp":1767225600005,"brand_new_thing":{}}]},
        {"id":"not-a-page","messaging":[]},
        {"id":"209822223344556","messaging":"not a list"},
        {"id":"209822223344556","changes":[{"field":"feed","value":{"item":"post"}}],
         "messaging":[{"sender":{"id":"7002"},"timestamp":1767225600006,"message":{"mid":"m_ok2","text":"yo"}}]}]}"#;
    let parsed = parse(body.as_bytes()).unwrap();
    let mids: Vec<_> = parsed
        .events
        .iter()
        .map(|e| match &e.kind {
            EventKind::Message { mid, .. } => mid.as_str(),
            _ => "?",
        })
        .collect();
    assert_eq!(mids, ["m_ok", "m_ok2"]);
    let got: Vec<(&str, &str, &str)> =
        parsed.unhandled.iter().map(|u| (u.reason.label(), u.kind, u.detail.as_str())).collect();
    assert_eq!(
        got,
        [
            ("malformed_event", "message", "entry 0, messaging item 1: message.mid is missing"),
            ("malformed_event", "message", "entry 0, messaging item 2: field message.text has the wrong type"),
            (
                "unknown_event",
                "request_thread_control",
                "entry 0, messaging item 3: event kind \"request_thread_control\" is not handled"
            ),
            ("unknown_event", "other", "entry 0, messaging item 4: event kind \"other\" is not handled"),
            ("bad_entry_id", "entry", "entry 1: id is missing or not a Page or Instagram account id"),
            ("malformed_entry", "entry", "entry 2: field messaging has the wrong type"),
            ("change", "feed", "entry 3, change 0: changes field \"feed\" is not handled"),
        ]
    );
    assert!(parsed.unhandled[1].raw.contains("m_bad"), "the raw item is kept");
    assert!(parsed.unhandled.iter().all(|u| !u.detail.contains("no mid")), "a detail never quotes a value");
    assert_eq!(parsed.unhandled[4].account.as_deref(), Some("not-a-page"));
    let nul = one_unhandled(r#"{"object":"page","entry":[{"id":"12\u0000\n34","messaging":[]}]}"#);
    assert_eq!(nul.account.as_deref(), Some("1234"), "no control character is kept or logged");
}

#[test]
fn unknown_objects_and_bodies_without_entries_are_kept_not_refused() {
    let user = one_unhandled(r#"{"object":"user","entry":[{"id":"1","changes":[{"field":"name"}]}]}"#);
    assert_eq!((user.object, user.kind, user.reason), ("user", "user", Reason::UnknownObject));
    assert_eq!(user.account.as_deref(), Some("1"));
    let odd = one_unhandled(r#"{"object":"something_new","entry":[{"id":"1"}]}"#);
    assert_eq!((odd.object, odd.reason), ("other", Reason::UnknownObject));
    let flat = one_unhandled(r#"{"field":"messaging_postbacks","value":{}}"#);
    assert_eq!((flat.kind, flat.reason), ("body", Reason::NoEntries));
    assert!(parse(br#"{"object":"page","entry":[]}"#).unwrap().unhandled.is_empty(), "an empty batch is fine");
}

#[test]
fn deleted_messages_are_not_answered_and_instagram_messages_in_changes_are_read() {
    let deleted = r#"{"object":"instagram","entry":[{"id":"17841405822304914","time":1767226000000,"messaging":[
        {"sender":{"id":"1234567890123456"},"recipient":{"id":"17841405822304914"},"timestamp":1767226000000,
         "message":{"mid":"aWdfZAG1","is_deleted":true}}]}]}"#;
    let e = &events(deleted.as_bytes())[0];
    assert!(matches!(&e.kind, EventKind::Other { name } if name == "message_deleted"));
    assert!(!e.wants_reply());
    let change = r#"{"object":"instagram","entry":[{"id":"17841405822304914","time":1767226000,"changes":[
        {"field":"messages","value":{"sender":{"id":"1234567890123456"},"recipient":{"id":"17841405822304914"},
         "timestamp":"1767226000","message":{"mid":"aWdfZAG2","text":"in stock?"}}}]}]}"#;
    let e = &events(change.as_bytes())[0];
    assert!(e.wants_reply() && e.channel == Channel::Instagram && e.timestamp == 1_767_226_000_000);
}

/// Every body of the corpus recorded by other projects and Meta's documentation (tests/fixtures/webhooks/corpus;
/// SOURCES.md says where each comes from) parses, and each of its parts is an event or is kept with a reason:
/// EXPECTED.txt holds, per file, how many events it gives and which parts are kept (reason/kind).
#[test]
fn every_body_of_the_recorded_corpus_is_read_part_by_part() {
    let dir = format!("{}/tests/fixtures/webhooks/corpus", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 40, "the corpus is there");
    let mut summary = String::new();
    for file in files {
        let body = std::fs::read(&file).unwrap();
        let parsed = parse(&body).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let kept: Vec<String> = parsed.unhandled.iter().map(|u| format!("{}/{}", u.reason.label(), u.kind)).collect();
        for u in &parsed.unhandled {
            assert!(!u.raw.is_empty() && !u.detail.is_empty(), "{}: {u:?}", file.display());
        }
        summary.push_str(&format!(
            "{} events={} kept=[{}]\n",
            file.file_name().unwrap().to_string_lossy(),
            parsed.events.len(),
            kept.join(" ")
        ));
    }
    let expected = std::fs::read_to_string(format!("{dir}/EXPECTED.txt")).unwrap();
    assert_eq!(summary, expected);
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Any JSON value, a few levels deep.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| serde_json::json!(f)),
        "[a-z_]{0,10}".prop_map(serde_json::Value::String),
        "[0-9]{1,17}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            Just("id".to_owned()),
            Just("time".to_owned()),
            Just("messaging".to_owned()),
            Just("standby".to_owned()),
            Just("changes".to_owned()),
            Just("sender".to_owned()),
            Just("timestamp".to_owned()),
            Just("message".to_owned()),
            Just("mid".to_owned()),
            Just("text".to_owned()),
            Just("postback".to_owned()),
            Just("payload".to_owned()),
            Just("attachments".to_owned()),
            Just("is_echo".to_owned()),
            "[a-z_]{1,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(key, inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A body Meta's generator makes, with values turned into the other forms Meta sends (ids and times as
/// numbers or strings, times as floats).
fn reshaped(body: &[u8], seed: u64) -> Vec<u8> {
    fn walk(v: &mut serde_json::Value, seed: &mut u64) {
        *seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let pick = (*seed >> 33) % 3;
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    match (k.as_str(), &*v) {
                        ("id", serde_json::Value::String(s)) if pick == 0 && s.len() < 19 => {
                            *v = serde_json::json!(s.parse::<u64>().unwrap());
                        }
                        ("timestamp" | "time", serde_json::Value::Number(n)) if pick == 1 => {
                            *v = serde_json::json!(n.to_string());
                        }
                        ("timestamp" | "time", serde_json::Value::Number(n)) if pick == 2 => {
                            *v = serde_json::json!(n.as_f64().unwrap());
                        }
                        _ => walk(v, seed),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|i| walk(i, seed)),
            _ => {}
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(body).unwrap();
    let mut seed = seed;
    walk(&mut value, &mut seed);
    serde_json::to_vec(&value).unwrap()
}

fn generated(seed: u64, batch: usize) -> Vec<u8> {
    use meta_sim::webhook::{GenConfig, GenPage, Generator, Kind};
    let mut generator = Generator::new(GenConfig {
        pages: vec![GenPage { id: "104711112233445".into(), instagram: Some("17841405822304914".into()) }],
        users: 5,
        kinds: vec![
            Kind::Text,
            Kind::Postback,
            Kind::Echo,
            Kind::PersonEcho,
            Kind::Read,
            Kind::Reaction,
            Kind::Instagram,
        ],
        batch,
        duplicate_rate: 0.0,
        seed,
        ..GenConfig::default()
    });
    generator.next_body()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_json_body_with_an_entry_list_is_read_without_error_or_panic(
        object in prop_oneof![Just(serde_json::json!("page")), Just(serde_json::json!("instagram")), json()],
        entries in prop::collection::vec(json(), 0..4),
    ) {
        let body = serde_json::json!({ "object": object, "entry": entries });
        let parsed = parse(body.to_string().as_bytes());
        prop_assert!(parsed.is_ok());
    }

    #[test]
    fn any_bytes_are_read_or_refused_as_not_json_without_a_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&body);
    }

    /// What the old parser accepted is parsed to the same events, except that items of no known kind (which it
    /// handed to tenants as "unknown") are now kept as unhandled.
    #[test]
    fn every_event_the_old_parser_accepted_is_parsed_the_same(seed in 1u64..100_000, batch in 1usize..6) {
        let body = generated(seed, batch);
        let old = legacy::parse(&body).unwrap();
        let new = parse(&body).unwrap();
        let known: Vec<_> = old.into_iter().filter(|e| !matches!(&e.kind, EventKind::Other { name } if name == "unknown")).collect();
        prop_assert_eq!(&new.events, &known);
        prop_assert!(new.unhandled.is_empty());
    }

    /// The one-pass reading of a body whose every part is understood gives what reading it part by part does.
    #[test]
    fn the_one_pass_reading_agrees_with_the_part_by_part_one(seed in 1u64..100_000, batch in 1usize..6, shape in any::<u64>()) {
        let body = reshaped(&generated(seed, batch), shape);
        let whole = whole(&body);
        prop_assert!(whole.is_some());
        let parts = part_by_part(&body).unwrap();
        prop_assert_eq!(whole.unwrap(), parts.events);
        prop_assert!(parts.unhandled.is_empty());
    }

    #[test]
    fn ids_and_times_in_other_forms_give_the_same_events(seed in 1u64..100_000, batch in 1usize..6, shape in any::<u64>()) {
        let body = generated(seed, batch);
        let plain = parse(&body).unwrap().events;
        let reshaped = parse(&reshaped(&body, shape)).unwrap();
        prop_assert_eq!(reshaped.events, plain);
        prop_assert!(reshaped.unhandled.is_empty());
    }
}

#[test]
fn a_thread_taken_names_the_app_that_took_it() {
    let take = |control: &str| {
        let body = format!(
            r#"{{"object":"page","entry":[{{"id":"1","time":5,"messaging":[{{"sender":{{"id":"7"}},
            "recipient":{{"id":"1"}},"timestamp":5,"take_thread_control":{control}}}]}}]}}"#
        );
        events(body.as_bytes()).remove(0).kind
    };
    let by = |app: Option<&str>| EventKind::ThreadControl { to_app: app.map(str::to_owned) };
    assert_eq!(
        take(r#"{"previous_owner_app_id":"263902037430900","new_owner_app_id":1234567890}"#),
        by(Some("1234567890"))
    );
    assert_eq!(
        take(r#"{"previous_owner_app_id":"1234567890","new_owner_app_id":"263902037430900"}"#),
        by(Some("263902037430900"))
    );
    assert_eq!(take(r#"{"metadata":"taken"}"#), by(None), "taken by an app Meta does not name");
}
