//! Which Pages this engine runs, and under which epoch: the one answer every part of the engine asks before it
//! routes an event to a tenant, starts a tenant, or lets a tenant's task go on.
//!
//! The engine never decides this itself. One process that is the whole service runs every Page
//! ([`EveryPage`]); a cluster node runs the Pages it claimed, and its claim loop is the only thing that changes
//! that (the root crate's `Owned`). Whether the engine's directory knows a Page yet, whether its tenant is
//! running, idle or restarting, are separate questions: none of them can make a Page this node runs "elsewhere".

use crate::domain::page::PageId;

/// The source of truth for "this engine runs this Page's tenant".
pub trait Tenure: Send + Sync + 'static {
    /// The epoch under which this engine runs `page`'s tenant now, or `None` if it does not (another node
    /// does, or nobody yet). An epoch only grows: a tenant started under an older one may not send any more.
    fn epoch(&self, page: &PageId) -> Option<i64>;
}

/// One process runs every Page, always under epoch 0 (`cluster.mode = "single"`).
pub struct EveryPage;

impl Tenure for EveryPage {
    fn epoch(&self, _: &PageId) -> Option<i64> {
        Some(0)
    }
}
