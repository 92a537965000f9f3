//! Cookies, one way for the whole front door: HttpOnly, SameSite=Lax, and Secure with the `__Host-` prefix on
//! https.

/// `name`, `__Host-` prefixed when cookies are Secure (https): such a cookie can only be set by this host,
/// over https, for the whole site, so a sibling subdomain cannot plant or overwrite it.
pub fn cookie_name(name: &'static str, secure: bool) -> String {
    if secure { format!("__Host-{name}") } else { name.to_owned() }
}

/// `Set-Cookie` for `name=value` (`name` already prefixed, see `cookie_name`); `max_age` 0 deletes it.
pub fn cookie(name: &str, value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?.split(';').find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_http_only_lax_and_secure_and_host_prefixed_on_https() {
        assert_eq!(cookie("sb_session", "v", 60, false), "sb_session=v; Path=/; HttpOnly; SameSite=Lax; Max-Age=60");
        assert!(cookie("sb_session", "v", 60, true).ends_with("; Secure"));
        assert_eq!(cookie_name("sb_session", true), "__Host-sb_session");
        assert_eq!(cookie_name("sb_session", false), "sb_session");
        assert_eq!(cookie_value(Some("a=1; sb_oauth=xyz; b=2"), "sb_oauth"), Some("xyz"));
        assert_eq!(cookie_value(Some("xsb_oauth=1"), "sb_oauth"), None);
    }
}
