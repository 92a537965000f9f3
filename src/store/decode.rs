//! What reading rows back shares across kinds of record: a column that does not parse is `Corrupt` here, at
//! the boundary, rather than a bad value inside; rows convert all at once; and an outbox row (read by the inbox
//! and by both backends' batched writers) becomes the engine's `RecordedReply`.

use chrono::{DateTime, Utc};

use super::{RecordedReply, ReplyId, StoreError};

pub(crate) fn corrupt<T, E: std::fmt::Display>(column: &str, parsed: Result<T, E>) -> Result<T, StoreError> {
    parsed.map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

pub(crate) fn collect<R, T>(rows: Vec<R>) -> Result<Vec<T>, StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

/// An outbox row as read back: id, text, sent, never attempted, recorded at.
pub(crate) type ReplyRow = (i64, String, bool, bool, DateTime<Utc>);

/// The engine's view of an outbox row: unknown when neither sent nor known never to have been attempted.
pub(crate) fn recorded_reply((id, text, sent, unattempted, recorded_at): ReplyRow) -> RecordedReply {
    RecordedReply {
        id: ReplyId(id),
        text,
        sent,
        unknown: !sent && !unattempted,
        recorded_unix: recorded_at.timestamp(),
    }
}
