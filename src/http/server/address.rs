//! Who a request comes from, and how many connections or requests each address holds.
//!
//! The TCP peer is the client unless it is one of `server.trusted_proxies`: then the client is the
//! rightmost `X-Forwarded-For` entry that is not itself a trusted proxy (entries to its left can be forged by
//! anyone). Addresses are counted by [`AddressKey`]: an IPv4 address, or an IPv6 /64, since one host or
//! customer is handed a whole /64 and could otherwise rotate through it.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use dashmap::DashMap;
use ipnet::IpNet;

/// The client a request comes from: the peer, or what a trusted proxy forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// The key this client is counted (and throttled) under.
    pub fn key(self) -> AddressKey {
        AddressKey::of(self.0)
    }
}

/// The unit addresses are counted in: an IPv4 address, or the /64 of an IPv6 address (an IPv4-mapped IPv6
/// address counts as its IPv4 address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressKey(IpAddr);

impl AddressKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Self(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

impl std::fmt::Display for AddressKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets.into())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer`: `peer` itself unless it is trusted; then the rightmost forwarded address
    /// that is not a trusted proxy. `forwarded_for` is every `X-Forwarded-For` line in order (some proxies add
    /// a line of their own rather than append to the client's): they are read as one list, from its end. An
    /// entry that is not an address ends the walk at the hop that added it.
    pub fn client<'a>(&self, peer: IpAddr, forwarded_for: impl DoubleEndedIterator<Item = &'a [u8]>) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        for line in forwarded_for.rev() {
            let Ok(line) = std::str::from_utf8(line) else { return client };
            for entry in line.rsplit(',') {
                match parse_forwarded(entry.trim()) {
                    Some(ip) if self.contains(ip) => client = ip,
                    Some(ip) => return ip,
                    None => return client,
                }
            }
        }
        client
    }
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1` or `[2001:db8::1]:80`.
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    entry.parse::<IpAddr>().ok().or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip())).map(canonical)
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// How many of something (open connections, requests in flight) each address holds, capped per address.
/// An address whose count drops to zero is forgotten, so the map holds only addresses with something open.
#[derive(Clone, Default)]
pub struct PerAddress {
    held: Arc<DashMap<AddressKey, u32>>,
}

impl PerAddress {
    /// Takes one for `key` if it holds fewer than `max`; the slot gives it back when dropped.
    pub fn try_take(&self, key: AddressKey, max: u32) -> Option<AddressSlot> {
        if max == 0 {
            return None;
        }
        let mut held = self.held.entry(key).or_insert(0);
        if *held >= max {
            return None;
        }
        *held += 1;
        Some(AddressSlot { held: self.held.clone(), key })
    }

    /// What `key` holds now.
    pub fn held(&self, key: AddressKey) -> u32 {
        self.held.get(&key).map_or(0, |h| *h)
    }
}

/// One connection or request counted against its address.
pub struct AddressSlot {
    held: Arc<DashMap<AddressKey, u32>>,
    key: AddressKey,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        self.held.remove_if_mut(&self.key, |_, held| {
            *held = held.saturating_sub(1);
            *held == 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_addresses_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(AddressKey::of(ip("2001:db8:1:2:aaaa::1")), AddressKey::of(ip("2001:db8:1:2:ffff::9")));
        assert_ne!(AddressKey::of(ip("2001:db8:1:2::1")), AddressKey::of(ip("2001:db8:1:3::1")));
        assert_eq!(AddressKey::of(ip("::ffff:10.0.0.1")), AddressKey::of(ip("10.0.0.1")));
        assert_ne!(AddressKey::of(ip("10.0.0.1")), AddressKey::of(ip("10.0.0.2")));
        assert_eq!(AddressKey::of(ip("2001:db8:1:2::1")).to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies_and_read_from_the_right() {
        let trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]);
        let lines = |l: &'static [&'static str]| l.iter().map(|s| s.as_bytes());
        const XFF: [&str; 1] = ["6.6.6.6, 203.0.113.7, 10.1.1.1"];
        let xff = &XFF;
        assert_eq!(trusted.client(ip("198.51.100.1"), lines(xff)), ip("198.51.100.1"), "an untrusted peer");
        assert_eq!(trusted.client(ip("10.0.0.2"), lines(xff)), ip("203.0.113.7"), "the rightmost untrusted entry");
        assert_eq!(trusted.client(ip("::1"), lines(&["[2001:db8::5]:443"])), ip("2001:db8::5"));
        assert_eq!(trusted.client(ip("10.0.0.2"), lines(&[])), ip("10.0.0.2"), "no header: the proxy itself");
        assert_eq!(trusted.client(ip("10.0.0.2"), lines(&["garbage, 10.2.2.2"])), ip("10.2.2.2"));
        assert_eq!(trusted.client(ip("::ffff:10.0.0.2"), lines(&["192.0.2.1"])), ip("192.0.2.1"));
        assert_eq!(TrustedProxies::default().client(ip("10.0.0.2"), lines(xff)), ip("10.0.0.2"), "none trusted");
        // A client's own line first, the proxy's line after it: the proxy's is the one believed.
        assert_eq!(trusted.client(ip("10.0.0.2"), lines(&["1.2.3.4", "203.0.113.9"])), ip("203.0.113.9"));
    }

    #[test]
    fn an_address_holds_at_most_its_cap_and_is_forgotten_when_it_holds_nothing() {
        let per = PerAddress::default();
        let key = AddressKey::of(ip("192.0.2.1"));
        let a = per.try_take(key, 2).unwrap();
        let b = per.try_take(key, 2).unwrap();
        assert!(per.try_take(key, 2).is_none());
        assert!(per.try_take(AddressKey::of(ip("192.0.2.2")), 2).is_some(), "another address is not affected");
        drop(a);
        assert_eq!(per.held(key), 1);
        drop(b);
        assert_eq!(per.held(key), 0);
        assert!(per.held.is_empty(), "nothing is kept for addresses that hold nothing");
    }
}
