//! Connection parameters with libpq's habits: URLs and `key=value` conninfo, the `PG*`
//! environment variables, `~/.pgpass` / `PGPASSFILE`.

/// `sslmode`, as libpq spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it, without verifying the certificate.
    #[default]
    Prefer,
    /// TLS required, certificate not verified (like libpq without a root certificate).
    Require,
    /// TLS required, the chain verified against `sslrootcert`.
    VerifyCa,
    /// TLS required, chain and host name verified.
    VerifyFull,
}

/// Everything needed to connect to one region. `Debug` never shows the password.
#[derive(Clone, Default)]
pub struct ConnParams {
    /// Host name or address (or a Unix socket directory when it starts with `/`).
    pub host: Option<String>,
    /// Port.
    pub port: Option<u16>,
    /// User name.
    pub user: Option<String>,
    /// Password (from the conninfo; `PGPASSWORD` and `.pgpass` are consulted at connect time).
    pub password: Option<String>,
    /// Database name given by the conninfo (overrides `--db`).
    pub dbname: Option<String>,
    /// `sslmode`.
    pub sslmode: Option<SslMode>,
    /// `sslrootcert`: PEM file of trusted roots.
    pub sslrootcert: Option<String>,
    /// `connect_timeout` in seconds.
    pub connect_timeout: Option<u64>,
    /// `application_name`.
    pub application_name: Option<String>,
}

impl std::fmt::Debug for ConnParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnParams")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .finish()
    }
}

impl ConnParams {
    /// `host:port` for messages (never user or password). Defaults as libpq: the `PGHOST` /
    /// `PGPORT` environment, else `localhost:5432`.
    pub fn addr(&self) -> String {
        let host = self
            .host
            .clone()
            .or_else(|| std::env::var("PGHOST").ok())
            .unwrap_or_else(|| "localhost".into());
        let port = self
            .port
            .or_else(|| std::env::var("PGPORT").ok().and_then(|p| p.parse().ok()))
            .unwrap_or(5432);
        format!("{host}:{port}")
    }
}
