//! Meta's usage headers (meta-platform.md §7.3): `X-Business-Use-Case-Usage` (per business object, with
//! `estimated_time_to_regain_access` in minutes), `X-App-Usage` and the legacy `X-Page-Usage` (percentages).
//! A missing header is not zero usage: it means Meta said nothing.

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::Value;
use switchboard_actors::Usage;

/// The highest usage any header reports, and the longest regain time, if Meta sent usage headers.
pub fn parse_usage(headers: &HeaderMap) -> Option<Usage> {
    let mut usage: Option<Usage> = None;
    let mut merge = |pct: u32, regain_minutes: u64| {
        let u = usage.get_or_insert_with(Usage::default);
        u.max_pct = u.max_pct.max(pct);
        if regain_minutes > 0 {
            let regain = Duration::from_secs(regain_minutes * 60);
            u.regain = Some(u.regain.map_or(regain, |r| r.max(regain)));
        }
    };
    if let Some(Value::Object(objects)) = json_header(headers, "x-business-use-case-usage") {
        for entries in objects.values() {
            for entry in entries.as_array().into_iter().flatten() {
                merge(max_pct(entry), entry["estimated_time_to_regain_access"].as_u64().unwrap_or(0));
            }
        }
    }
    for name in ["x-app-usage", "x-page-usage"] {
        if let Some(entry) = json_header(headers, name) {
            merge(max_pct(&entry), 0);
        }
    }
    usage
}

fn json_header(headers: &HeaderMap, name: &str) -> Option<Value> {
    serde_json::from_slice(headers.get(name)?.as_bytes()).ok()
}

fn max_pct(entry: &Value) -> u32 {
    ["call_count", "total_cputime", "total_time"]
        .iter()
        .filter_map(|k| entry[*k].as_f64())
        .fold(0.0_f64, f64::max)
        .clamp(0.0, 1000.0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn business_use_case_usage_gives_the_highest_percent_and_regain_time() {
        let h = headers(&[(
            "x-business-use-case-usage",
            concat!(
                r#"{"104711112233445":[{"type":"pages","call_count":83,"total_cputime":12,"total_time":20,"estimated_time_to_regain_access":0}],"#,
                r#""17841400000000001":[{"type":"instagram","call_count":100,"total_cputime":35,"total_time":41,"estimated_time_to_regain_access":19}]}"#
            ),
        )]);
        assert_eq!(parse_usage(&h), Some(Usage { max_pct: 100, regain: Some(Duration::from_secs(19 * 60)) }));
    }

    #[test]
    fn app_usage_counts_and_absent_headers_say_nothing() {
        let h = headers(&[("x-app-usage", r#"{"call_count":28,"total_time":25,"total_cputime":96}"#)]);
        assert_eq!(parse_usage(&h), Some(Usage { max_pct: 96, regain: None }));
        assert_eq!(parse_usage(&HeaderMap::new()), None);
        assert_eq!(parse_usage(&headers(&[("x-app-usage", "not json")])), None);
    }
}
