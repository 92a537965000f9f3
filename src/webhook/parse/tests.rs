use super::*;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/webhooks/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn messenger_text_becomes_one_message_event() {
    let events = parse(&fixture("messenger_text.json")).unwrap();
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
    let events = parse(&fixture("messenger_unicode.json")).unwrap();
    let EventKind::Message { text: Some(text), .. } = &events[0].kind else { panic!() };
    assert_eq!(text, "Café table äöå 😀 50% off? <b>see https://example.com/sofa</b>");
}

#[test]
fn batches_keep_every_entry_and_item_in_order() {
    let events = parse(&fixture("messenger_batch_two_pages.json")).unwrap();
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
    let echo = &parse(&fixture("messenger_echo.json")).unwrap()[0];
    assert!(echo.is_own() && !echo.wants_reply());
    let kinds: Vec<&str> =
        parse(&fixture("messenger_read_delivery.json")).unwrap().iter().map(|e| e.kind_label()).collect();
    assert_eq!(kinds, ["read", "delivery"]);
    assert_eq!(parse(&fixture("messenger_reaction.json")).unwrap()[0].kind_label(), "reaction");
    let standby = &parse(&fixture("messenger_standby.json")).unwrap()[0];
    assert!(standby.standby && !standby.wants_reply());
    let postback = &parse(&fixture("messenger_postback.json")).unwrap()[0];
    assert!(matches!(&postback.kind, EventKind::Postback { payload: Some(p), .. } if p == "STORE_HOURS"));
    let qr = &parse(&fixture("messenger_quick_reply.json")).unwrap()[0];
    assert!(matches!(&qr.kind, EventKind::Message { quick_reply: Some(p), .. } if p == "CONFIRM_DELIVERY_42"));
    let att = &parse(&fixture("messenger_attachment.json")).unwrap()[0];
    assert!(matches!(&att.kind, EventKind::Message { attachments, text: None, .. } if attachments == &["image"]));
}

#[test]
fn instagram_events_route_by_the_instagram_account() {
    let text = &parse(&fixture("instagram_text.json")).unwrap()[0];
    assert_eq!((text.channel, text.account_id.as_str()), (Channel::Instagram, "17841405822304914"));
    assert!(text.wants_reply());
    let echo = &parse(&fixture("instagram_echo.json")).unwrap()[0];
    assert!(echo.is_own());
    assert_eq!(parse(&fixture("instagram_seen.json")).unwrap()[0].kind_label(), "read");
    let wrapped = format!("[{}]", String::from_utf8(fixture("instagram_text.json")).unwrap());
    assert_eq!(parse(wrapped.as_bytes()).unwrap().len(), 1, "a one-element array is accepted");
}

#[test]
fn malformed_bodies_are_rejected_with_the_reason() {
    assert!(matches!(parse(b"{not json"), Err(ParseError::Json(_))));
    assert!(matches!(parse(br#"{"entry":[]}"#), Err(ParseError::Json(_))));
    assert_eq!(parse(br#"{"object":"user","entry":[]}"#), Err(ParseError::UnknownObject("user".into())));
    assert_eq!(
        parse(br#"{"object":"page","entry":[{"id":"12x","messaging":[]}]}"#),
        Err(ParseError::BadEntryId("12x".into()))
    );
    assert!(matches!(
        parse(br#"{"object":"page","entry":[{"id":"1","messaging":[{"message":{}}]}]}"#),
        Err(ParseError::Json(_))
    ));
}
