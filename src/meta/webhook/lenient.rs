//! Lenient readers for the values Meta sends in more than one form. Meta's reference says every property of a
//! webhook notification "is a string", its own examples show numbers, and libraries' recorded payloads carry
//! floats (`1492414608999.0`) and numeric ids (`meta-platform.md` §2.1): each reader takes all of them.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

/// An id (`entry.id`, `sender.id`, …): a string, or an integer (a float would have lost digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id(pub String);

impl<'de> de::Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an id as a string or an integer")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Ok(Id(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Id, E> {
                Ok(Id(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Below this a time is taken to be in seconds (it would be early 1973 in milliseconds, and the year 5138 in
/// seconds): Messenger's times are milliseconds, but the generic `changes` webhooks and some references send
/// seconds.
const SECONDS_BELOW: i64 = 100_000_000_000;

/// A time (`entry.time`, `timestamp`) in milliseconds since the epoch, read from an integer, a float or a
/// numeric string, in milliseconds or seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time(pub i64);

impl Time {
    fn from_number(n: f64) -> Option<Self> {
        if !n.is_finite() || n.abs() > 9.0e15 {
            return None;
        }
        Some(Self::normalized(n as i64))
    }

    fn normalized(raw: i64) -> Self {
        if raw.unsigned_abs() < SECONDS_BELOW.unsigned_abs() { Self(raw.saturating_mul(1000)) } else { Self(raw) }
    }
}

impl<'de> de::Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Time;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a time as a number or a numeric string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Time, E> {
                Ok(Time::normalized(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Time, E> {
                i64::try_from(v).map(Time::normalized).map_err(|_| E::custom("time out of range"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Time, E> {
                Time::from_number(v).ok_or_else(|| E::custom("time out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Time, E> {
                let v = v.trim();
                match v.parse::<i64>() {
                    Ok(n) => Ok(Time::normalized(n)),
                    Err(_) => v.parse::<f64>().ok().and_then(Time::from_number).ok_or_else(|| E::custom("not a time")),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A flag: `true`/`false`, `"true"`/`"false"`, or 1/0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flag(pub bool);

impl<'de> de::Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Flag, E> {
                Ok(Flag(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Flag, E> {
                Ok(Flag(v != 0))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Flag, E> {
                Ok(Flag(v != 0))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Flag, E> {
                match v.trim() {
                    "true" | "1" => Ok(Flag(true)),
                    "false" | "0" | "" => Ok(Flag(false)),
                    _ => Err(E::custom("not a boolean")),
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<Flag, E> {
                Ok(Flag(false))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(json: &str) -> Result<i64, serde_json::Error> {
        serde_json::from_str::<Time>(json).map(|t| t.0)
    }

    #[test]
    fn times_are_read_from_every_form_meta_sends() {
        assert_eq!(time("1767225600123").unwrap(), 1_767_225_600_123);
        assert_eq!(time("1492414608999.0").unwrap(), 1_492_414_608_999);
        assert_eq!(time(r#""1767225600123""#).unwrap(), 1_767_225_600_123);
        assert_eq!(time(r#""1527459824""#).unwrap(), 1_527_459_824_000, "seconds become milliseconds");
        assert_eq!(time("1520383571").unwrap(), 1_520_383_571_000);
        assert_eq!(time(r#"" 1492414608999.0 ""#).unwrap(), 1_492_414_608_999);
        assert!(time(r#""soon""#).is_err());
        assert!(time("true").is_err());
        assert!(time("1e300").is_err());
        assert_eq!(time("-9223372036854775808").unwrap(), i64::MIN, "no overflow at the edge");
    }

    #[test]
    fn ids_are_strings_or_integers_but_never_floats() {
        assert_eq!(serde_json::from_str::<Id>(r#""104711112233445""#).unwrap().0, "104711112233445");
        assert_eq!(serde_json::from_str::<Id>("104711112233445").unwrap().0, "104711112233445");
        assert!(serde_json::from_str::<Id>("1.04711112233445e14").is_err());
    }

    #[test]
    fn flags_accept_booleans_strings_and_numbers() {
        for (json, want) in [("true", true), ("false", false), (r#""true""#, true), ("1", true), ("0", false)] {
            assert_eq!(serde_json::from_str::<Flag>(json).unwrap().0, want, "{json}");
        }
        assert!(serde_json::from_str::<Flag>(r#""yes please""#).is_err());
    }
}
