//! The one clock. Timestamps are truncated to microseconds, the precision PostgreSQL keeps, so a value
//! read back from either backend compares equal to the value written.

use chrono::{DateTime, SubsecRound, Utc};

pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
