//! Property-based fuzzing of what strangers can send: webhook bodies (after a valid signature, only Meta can
//! send them, but a bug there must not take the process down) and `signed_request` (anyone can POST one).
//! Bounded: PROPTEST_CASES (default 256 here) cases per property, so CI time stays fixed.

use proptest::prelude::*;
use secrecy::SecretString;
use switchboard::meta::signed_request;
use switchboard::meta::webhook::parse;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// JSON-ish bytes: mostly well-formed fragments of Meta's shapes, spliced and mutated.
fn webhookish() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::collection::vec(
        prop_oneof![
            Just(r#"{"object":"page","entry":["#.to_owned()),
            Just(r#"{"object":"instagram","entry":["#.to_owned()),
            Just(r#"{"id":"104711112233445","time":1,"messaging":["#.to_owned()),
            Just(
                r#"{"sender":{"id":"7001"},"recipient":{"id":"1047"},"timestamp":1,"message":{"mid":"m","text":"hi"}}"#
                    .to_owned()
            ),
            Just(r#"{"postback":{"payload":"X"}}"#.to_owned()),
            Just(r#"{"read":{"watermark":1}}"#.to_owned()),
            Just("]}".to_owned()),
            Just("]".to_owned()),
            Just(",".to_owned()),
            "[ -~]{0,12}",
            "\\PC{0,4}",
        ],
        0..12,
    );
    (pieces, prop::collection::vec(any::<u8>(), 0..4)).prop_map(|(p, noise)| {
        let mut bytes = p.concat().into_bytes();
        bytes.extend(noise);
        bytes
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_webhook_parser_never_panics(body in webhookish()) {
        let _ = parse(&body);
    }

    #[test]
    fn the_webhook_parser_never_panics_on_raw_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&body);
    }

    #[test]
    fn every_generated_event_is_parsed_and_routed_to_its_page(seed in 1u64..10_000, batch in 1usize..4) {
        let mut generator = meta_sim::webhook::Generator::new(meta_sim::webhook::GenConfig {
            pages: vec![meta_sim::webhook::GenPage { id: "104711112233445".into(), instagram: Some("17841405822304914".into()) }],
            users: 5,
            kinds: vec![
                meta_sim::webhook::Kind::Text, meta_sim::webhook::Kind::Postback, meta_sim::webhook::Kind::Echo,
                meta_sim::webhook::Kind::Read, meta_sim::webhook::Kind::Reaction, meta_sim::webhook::Kind::Instagram,
            ],
            batch,
            duplicate_rate: 0.0,
            seed,
            ..meta_sim::webhook::GenConfig::default()
        });
        let body = generator.next_body();
        let events = parse(&body).unwrap().events;
        prop_assert_eq!(events.len(), batch);
        for e in events {
            prop_assert!(["104711112233445", "17841405822304914"].contains(&e.account_id.as_str()));
        }
    }

    #[test]
    fn signed_request_verification_never_panics(input in "\\PC{0,200}") {
        let _ = signed_request::verify(&input, &[SecretString::from("fixture-app-secret-do-not-use".to_owned())], 1_767_225_600);
    }

    #[test]
    fn signed_requests_round_trip_and_any_change_is_refused(user in "[0-9]{1,20}", flip in 0usize..80) {
        let secret = "fixture-app-secret-do-not-use";
        let secrets = [SecretString::from(secret.to_owned())];
        let signed = signed_request::sign(&serde_json::json!({"algorithm": "HMAC-SHA256", "user_id": user, "issued_at": 1_767_225_600}), secret);
        prop_assert_eq!(signed_request::verify(&signed, &secrets, 1_767_225_600).unwrap().user_id, user);
        let mut bytes = signed.into_bytes();
        let i = flip % bytes.len();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(bytes).unwrap();
        if let Ok(ok) = signed_request::verify(&changed, &secrets, 1_767_225_600) {
            // Only a change that decodes to the same bytes (base64 padding bits) may still verify.
            prop_assert!(ok.user_id.chars().all(|c| c.is_ascii_digit()));
        }
    }
}
