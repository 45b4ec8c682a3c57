//! The library's one error type.

/// Everything that can go wrong in eden-consistency.
///
/// Messages are one sentence that names the file, region or table at fault and never
/// contain a password or a full connection string. The binary maps every variant to
/// exit code 2.
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
    /// A region could not be reached, refused the login, or lacks the database.
    #[error("region {region} ({addr}): {message}")]
    Connection {
        /// The region's name.
        region: String,
        /// `host:port` (never user or password).
        addr: String,
        /// What went wrong.
        message: String,
    },
    /// A statement failed in a region.
    #[error("region {region}: {context}: {message}")]
    Query {
        /// The region's name.
        region: String,
        /// What was being done, e.g. `reading public.vault_secrets`.
        context: String,
        /// The server's message.
        message: String,
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
}

impl Error {
    /// The region this error is about, if any.
    pub fn region(&self) -> Option<&str> {
        match self {
            Error::Connection { region, .. } | Error::Query { region, .. } => Some(region),
            _ => None,
        }
    }

    /// True when a region could not be connected to.
    pub fn is_connection(&self) -> bool {
        matches!(self, Error::Connection { .. })
    }

    /// True when the error is in the config file.
    pub fn is_config(&self) -> bool {
        matches!(self, Error::Config { .. })
    }

    /// Builds an [`Error::Query`] from a tokio-postgres error, keeping only the server's
    /// message (and detail/hint), never connection parameters.
    pub fn query(region: &str, context: impl Into<String>, err: &tokio_postgres::Error) -> Error {
        Error::Query {
            region: region.to_string(),
            context: context.into(),
            message: pg_message(err),
        }
    }
}

/// The useful one-line text of a tokio-postgres error: the server's message when there is
/// one, otherwise the client-side description.
pub fn pg_message(err: &tokio_postgres::Error) -> String {
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
