//! The library's one error type.

/// Everything that can go wrong in eden-consistency.
///
/// Messages are one sentence that names the file, region or table at fault and never
/// contain a password or a full connection string. The binary maps every variant to
/// exit code 2.
///
/// A service can ask an error where it happened ([`Error::region`], [`Error::table`]),
/// whether a region's connection was refused or lost ([`Error::is_connection`]), and the
/// server's SQLSTATE ([`Error::code`]); a failed statement keeps the driver's error as its
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The command line or an API call was given something unusable.
    #[error("{0}")]
    Usage(String),
    /// The config file could not be read, parsed or validated.
    #[error("{file}: {message}")]
    Config {
        /// The config file (as given by the user).
        file: String,
        /// What is wrong and, where possible, how to fix it.
        message: String,
    },
    /// A region could not be reached, refused the login, lacks the database, or its
    /// connection was lost.
    #[error("region {region} ({addr}): {message}")]
    Connection {
        /// The region's name.
        region: String,
        /// `host:port` (never user or password).
        addr: String,
        /// What went wrong.
        message: String,
    },
    /// A statement failed in a region, known only by its text (see [`Error::Postgres`]
    /// for failures that keep the driver's error).
    #[error("region {region}: {context}: {message}")]
    Query {
        /// The region's name.
        region: String,
        /// What was being done, e.g. `reading public.vault_secrets`.
        context: String,
        /// The server's message.
        message: String,
    },
    /// A statement failed in a region; the driver's error is kept as the source.
    #[error("region {region}: {context}: {}", pg_message(source))]
    Postgres {
        /// The region's name.
        region: String,
        /// What was being done, e.g. `reading public.vault_secrets`.
        context: String,
        /// The table being worked on, when known (schema-qualified).
        table: Option<String>,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A table cannot be handled as asked (no key, unknown column, ...).
    #[error("table {table}: {message}")]
    Table {
        /// Schema-qualified table name.
        table: String,
        /// What is wrong.
        message: String,
    },
    /// A local file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A fault inside the library (a worker thread died, a value could not be encoded):
    /// not the caller's doing.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The region this error is about, if any.
    pub fn region(&self) -> Option<&str> {
        match self {
            Error::Connection { region, .. }
            | Error::Query { region, .. }
            | Error::Postgres { region, .. } => Some(region),
            _ => None,
        }
    }

    /// The table this error is about (schema-qualified), if known.
    pub fn table(&self) -> Option<&str> {
        match self {
            Error::Table { table, .. } => Some(table),
            Error::Postgres { table, .. } => table.as_deref(),
            _ => None,
        }
    }

    /// True when a region could not be connected to, or its connection was lost.
    pub fn is_connection(&self) -> bool {
        match self {
            Error::Connection { .. } => true,
            Error::Postgres { source, .. } => connection_broken(source),
            _ => false,
        }
    }

    /// True when the error is in the config file.
    pub fn is_config(&self) -> bool {
        matches!(self, Error::Config { .. })
    }

    /// The server's SQLSTATE (e.g. `40001` for a serialization failure), when a statement
    /// failed on the server.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Postgres { source, .. } => source.code().map(|c| c.code()),
            _ => None,
        }
    }

    /// The driver's error, when a statement failed.
    pub fn postgres(&self) -> Option<&tokio_postgres::Error> {
        match self {
            Error::Postgres { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Names the table a failed statement was about (no change to other errors, nor to
    /// the message).
    pub fn with_table(mut self, name: impl std::fmt::Display) -> Error {
        if let Error::Postgres { table, .. } = &mut self {
            if table.is_none() {
                *table = Some(name.to_string());
            }
        }
        self
    }

    /// The error of a statement that failed in `region` while doing `context`. Given the
    /// driver's error by value, the error keeps it (SQLSTATE, connection state); given a
    /// reference, only its text.
    pub fn query(region: &str, context: impl Into<String>, err: impl QueryFailure) -> Error {
        err.into_error(region.to_string(), context.into())
    }
}

/// A driver error that [`Error::query`] can wrap: `tokio_postgres::Error` (kept as the
/// source) or a reference to one (its text only).
pub trait QueryFailure {
    /// The library error for a statement that failed in `region` while doing `context`.
    fn into_error(self, region: String, context: String) -> Error;
}

impl QueryFailure for tokio_postgres::Error {
    fn into_error(self, region: String, context: String) -> Error {
        Error::Postgres {
            region,
            context,
            table: None,
            source: self,
        }
    }
}

impl QueryFailure for &tokio_postgres::Error {
    fn into_error(self, region: String, context: String) -> Error {
        Error::Query {
            region,
            context,
            message: pg_message(self),
        }
    }
}

/// True when the driver's error means the session is gone (closed, or an I/O failure).
fn connection_broken(err: &tokio_postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    if err.as_db_error().is_some() {
        // The server answered: the session is alive, unless it says it is shutting down
        // or terminated us (class 57P: operator intervention).
        return err.code().is_some_and(|c| c.code().starts_with("57P"));
    }
    let mut src = std::error::Error::source(err);
    while let Some(s) = src {
        if s.is::<std::io::Error>() {
            return true;
        }
        src = s.source();
    }
    false
}

/// The useful one-line text of a tokio-postgres error: the server's message when there is
/// one, otherwise the client-side description.
pub(crate) fn pg_message(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        let mut m = db.message().to_string();
        if let Some(d) = db.detail() {
            m.push_str(" (");
            m.push_str(d);
            m.push(')');
        }
        m
    } else {
        let mut m = err.to_string();
        let mut src = std::error::Error::source(err);
        while let Some(s) = src {
            let t = s.to_string();
            if !m.contains(&t) {
                m.push_str(": ");
                m.push_str(&t);
            }
            src = s.source();
        }
        m
    }
}

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
