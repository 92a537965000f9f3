//! Random identifiers: tokens, codes, message ids. Unpredictable, so a test cannot pass by guessing one.

/// `prefix` followed by `len` random alphanumeric characters.
pub fn random_token(prefix: &str, len: usize) -> String {
    use rand::Rng as _;
    use rand::distr::Alphanumeric;
    let mut out = String::with_capacity(prefix.len() + len);
    out.push_str(prefix);
    out.extend(rand::rng().sample_iter(&Alphanumeric).take(len).map(char::from));
    out
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Milliseconds since the Unix epoch.
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

pub fn unix_now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}
