use super::*;

fn ring(spec: &str) -> KeyRing {
    KeyRing::parse(&SecretString::from(spec.to_owned())).expect("valid ring")
}

fn entry(id: &str) -> String {
    generate_key_entry(&KeyId::parse(id).unwrap()).expose_secret().to_owned()
}

fn page(id: &str) -> PageId {
    PageId::parse(id).unwrap()
}

const TOKEN: &str = "EAAGm0PX4ZCpsBAPlaintextToken";

#[test]
fn seal_then_open_round_trips() {
    let ring = ring(&entry("k1"));
    let sealed = ring.seal(&page("104711112233445"), &AccessToken::new(TOKEN.into())).unwrap();
    assert_eq!(sealed.key_id().as_str(), "k1");
    let opened = ring.open(&page("104711112233445"), &sealed).unwrap();
    assert_eq!(opened.expose(), TOKEN);
}

#[test]
fn every_seal_uses_a_fresh_nonce() {
    let ring = ring(&entry("k1"));
    let a = ring.seal(&page("1"), &AccessToken::new(TOKEN.into())).unwrap();
    let b = ring.seal(&page("1"), &AccessToken::new(TOKEN.into())).unwrap();
    assert_ne!(a.nonce(), b.nonce());
    assert_ne!(a.to_stored(), b.to_stored());
}

#[test]
fn ciphertext_moved_to_another_page_fails() {
    let ring = ring(&entry("k1"));
    let sealed = ring.seal(&page("104711112233445"), &AccessToken::new(TOKEN.into())).unwrap();
    let err = ring.open(&page("209822223344556"), &sealed).unwrap_err();
    assert!(matches!(err, VaultError::Decrypt { .. }), "{err}");
}

#[test]
fn tampered_ciphertext_fails() {
    let ring = ring(&entry("k1"));
    let sealed = ring.seal(&page("1"), &AccessToken::new(TOKEN.into())).unwrap();
    let mut stored = sealed.to_stored();
    for i in [0, NONCE_LEN, stored.len() - 1] {
        stored[i] ^= 0x01;
        let tampered = SealedToken::from_stored("k1", &stored).unwrap();
        assert!(matches!(ring.open(&page("1"), &tampered), Err(VaultError::Decrypt { .. })), "byte {i}");
        stored[i] ^= 0x01;
    }
    assert!(SealedToken::from_stored("k1", &stored[..NONCE_LEN + 15]).is_err());
}

#[test]
fn wrong_key_fails_even_under_the_same_id() {
    let sealed = ring(&entry("k1")).seal(&page("1"), &AccessToken::new(TOKEN.into())).unwrap();
    let other = ring(&entry("k1"));
    assert!(matches!(other.open(&page("1"), &sealed), Err(VaultError::Decrypt { .. })));
}

#[test]
fn relabelled_key_id_fails() {
    let k1 = entry("k1");
    let k2 = entry("k2");
    let ring = ring(&format!("{k1},{k2}"));
    let sealed = ring.seal(&page("1"), &AccessToken::new(TOKEN.into())).unwrap();
    let relabelled = SealedToken::from_stored("k2", &sealed.to_stored()).unwrap();
    assert!(matches!(ring.open(&page("1"), &relabelled), Err(VaultError::Decrypt { .. })));
}

#[test]
fn unknown_key_id_fails() {
    let sealed = ring(&entry("old")).seal(&page("1"), &AccessToken::new(TOKEN.into())).unwrap();
    let err = ring(&entry("new")).open(&page("1"), &sealed).unwrap_err();
    assert!(matches!(err, VaultError::UnknownKeyId(ref id) if id == "old"), "{err}");
}

#[test]
fn older_keys_open_and_the_first_key_seals() {
    let old = entry("old");
    let sealed = ring(&old).seal(&page("1"), &AccessToken::new(TOKEN.into())).unwrap();
    let rotated = ring(&format!("{},{old}", entry("new")));
    assert_eq!(rotated.current_key_id().as_str(), "new");
    assert_eq!(rotated.open(&page("1"), &sealed).unwrap().expose(), TOKEN);
}

#[test]
fn check_known_names_the_missing_ids() {
    let ring = ring(&entry("k2"));
    assert!(ring.check_known(&["k2"]).is_ok());
    let err = ring.check_known(&["k2", "k1", "k0"]).unwrap_err();
    assert!(err.to_string().contains("k1, k0"), "{err}");
}

#[test]
fn key_file_format_allows_comments_and_newlines() {
    let spec = format!("# current\n{}\n\n# previous\n{}\n", entry("a"), entry("b"));
    let ring = ring(&spec);
    assert_eq!(ring.current_key_id().as_str(), "a");
    assert!(ring.contains("b"));
}

#[test]
fn malformed_rings_are_rejected_without_echoing_key_material() {
    let cases = [
        ("", "no encryption key"),
        ("k1", "expected id:base64"),
        ("k1:not base64!!", "not valid base64"),
        ("k1:AAAA", "must be 32 bytes"),
        ("bad id:AAAA", "key id may contain"),
    ];
    for (spec, expected) in cases {
        let err = KeyRing::parse(&SecretString::from(spec.to_owned())).unwrap_err().to_string();
        assert!(err.contains(expected), "{spec:?}: {err}");
    }
    let k = entry("dup");
    let err = KeyRing::parse(&SecretString::from(format!("{k},{k}"))).unwrap_err().to_string();
    assert!(err.contains("appears twice"), "{err}");
    let material = k.split_once(':').unwrap().1;
    assert!(!err.contains(material));
}

#[test]
fn debug_output_shows_ids_only() {
    let k = entry("k1");
    let ring = ring(&k);
    let sealed = ring.seal(&page("1"), &AccessToken::new(TOKEN.into())).unwrap();
    let printed = format!("{ring:?} {sealed:?}");
    assert!(printed.contains("k1"));
    assert!(!printed.contains(k.split_once(':').unwrap().1));
}

#[test]
fn generated_key_file_is_private_and_reloads_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("demo.keys");
    let first = KeySource::GenerateIfMissing(path.clone()).load().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let sealed = first.seal(&page("1"), &AccessToken::new(TOKEN.into())).unwrap();
    let second = KeySource::GenerateIfMissing(path.clone()).load().unwrap();
    assert_eq!(second.open(&page("1"), &sealed).unwrap().expose(), TOKEN);
    assert!(matches!(KeySource::File(dir.path().join("absent")).load(), Err(VaultError::KeyFile { .. })));
}
