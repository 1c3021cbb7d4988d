//! The one error type of the store, and the mapping from driver errors.
//!
//! Messages never carry SQL parameter values: a database error is reduced to
//! the server's primary message (PostgreSQL keeps the offending values in a
//! separate `DETAIL` field, which is dropped), and conflicts are rephrased by
//! the repository that knows what was being created.

/// What went wrong in a store operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The addressed row does not exist (or belongs to another tenant).
    #[error("not found")]
    NotFound,
    /// A unique name or id is taken; the message names the thing that exists.
    #[error("{0}")]
    Conflict(String),
    /// The input was refused before or by the database (bad name, missing
    /// reference, inconsistent fields).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The database failed or returned something unexpected.
    #[error("database error: {0}")]
    Database(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict("a record with the same unique value already exists".into())
            }
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                StoreError::Invalid("a referenced record does not exist".into())
            }
            sqlx::Error::Database(db) => StoreError::Database(db.message().to_owned()),
            sqlx::Error::RowNotFound => StoreError::NotFound,
            other => StoreError::Database(other.to_string()),
        }
    }
}

impl StoreError {
    /// Maps a driver error, turning a unique violation into `Conflict(msg)`
    /// and a foreign-key violation into `Invalid(missing)`.
    pub(crate) fn on_insert(err: sqlx::Error, conflict: impl FnOnce() -> String, missing: &str) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(conflict()),
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::Invalid(missing.to_owned()),
            _ => StoreError::from(err),
        }
    }

    /// A stored value that the code cannot read back (a corrupted or newer row).
    pub(crate) fn corrupt(column: &str) -> Self {
        StoreError::Database(format!("column `{column}` holds a value this version cannot read"))
    }
}
