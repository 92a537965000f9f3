//! Time: the one way to wait before trying again (`backoff`), the send pace (`limiter`), and the one way to run
//! a job every period (`timer`).

pub mod backoff;
pub mod limiter;
pub mod timer;
