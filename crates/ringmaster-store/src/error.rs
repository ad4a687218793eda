//! The one error type every store operation returns.

/// Why a store operation failed. A failed operation changes nothing.
///
/// Expected races are not errors: a lost compare-and-set, a duplicate input and a busy user
/// are [`CommitOutcome`](crate::CommitOutcome)s.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The input broke a rule (size limit, format, ownership); retrying it will fail again.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The field or value that was rejected.
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// The record the operation needs does not exist.
    #[error("{kind} `{id}` not found")]
    NotFound {
        /// The kind of record (`user`, `device`, `effect`).
        kind: &'static str,
        /// Its identifier.
        id: String,
    },
    /// A record with this identifier already exists.
    #[error("{kind} `{id}` already exists")]
    AlreadyExists {
        /// The kind of record (`user`, `device`).
        kind: &'static str,
        /// Its identifier.
        id: String,
    },
    /// The phone number already routes to a user; numbers are unique across all tenants.
    #[error("number {number} already belongs to a user")]
    NumberTaken {
        /// The number that is taken.
        number: String,
    },
    /// A stored row could not be decoded (written by something else, or a bug).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database failed (I/O, lock timeout, connection loss); the operation may be retried.
    #[error("database error: {0}")]
    Backend(#[from] sqlx::Error),
    /// Applying the schema migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Shorthand for [`StoreError::Invalid`].
    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            what,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`StoreError::NotFound`].
    pub(crate) fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound {
            kind,
            id: id.into(),
        }
    }

    /// Shorthand for [`StoreError::AlreadyExists`].
    pub(crate) fn already_exists(kind: &'static str, id: impl Into<String>) -> Self {
        Self::AlreadyExists {
            kind,
            id: id.into(),
        }
    }
}
