//! Connecting to every region concurrently, with fixed session settings and TLS.
//!
//! Every session is opened with its settings fixed in the startup packet (no extra round
//! trip): the one list of settings of [`crate::pg::session`] (`TimeZone=UTC`,
//! `DateStyle=ISO`, `IntervalStyle=postgres`, `extra_float_digits=3`, `bytea_output=hex`,
//! `standard_conforming_strings=on`), `statement_timeout`, `lock_timeout` and
//! `application_name=eden-reconcile` (unless `application_name` / `PGAPPNAME` says
//! otherwise), so that values read in different regions compare as values.
//!
//! TLS goes through rustls, with libpq's `sslmode` meanings: `disable`; `prefer` and
//! `require` encrypt without verifying the certificate unless a root certificate is known
//! (`sslrootcert`, `PGSSLROOTCERT` or `~/.postgresql/root.crt`), in which case the chain is
//! verified as for `verify-ca`; `verify-ca` verifies the chain; `verify-full` the chain and
//! the host name. `sslrootcert=system` trusts the built-in web roots.
//!
//! ```no_run
//! # async fn f() -> eden_consistency::Result<()> {
//! use eden_consistency::Config;
//! use eden_consistency::{connect_all, ConnectOptions};
//!
//! let mut cfg = Config::default();
//! cfg.apply_region_flag("us-east-1=postgres://postgres@127.0.0.1:5432/eden_vault")?;
//! let regions = connect_all(&cfg, Some("eden_vault"), &ConnectOptions::default()).await?;
//! let one: i32 = regions[0].client.query_one("SELECT 1", &[]).await.map_err(|e| {
//!     eden_consistency::Error::query(&regions[0].name, "probing", e)
//! })?.get(0);
//! assert_eq!(one, 1);
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::Client;

use crate::error::{Error, Result, pg_message};
use crate::pg::conninfo::{ConnParams, ResolvedParams, SslMode};

/// How sessions are opened.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Time allowed to connect to one region (TCP, TLS and login), unless the region's
    /// `connect_timeout` or `PGCONNECT_TIMEOUT` says otherwise. Default 10 s.
    pub timeout: Duration,
    /// `statement_timeout` of every session; `None` (the default) for no limit.
    pub statement_timeout: Option<Duration>,
    /// `lock_timeout` of every session (default 10 s): writes never wait forever on a lock
    /// held by the application.
    pub lock_timeout: Duration,
    /// `application_name` when neither the conninfo nor `PGAPPNAME` gives one.
    pub application_name: String,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            timeout: Duration::from_secs(10),
            statement_timeout: None,
            lock_timeout: Duration::from_secs(10),
            application_name: "eden-reconcile".to_string(),
        }
    }
}

/// One connected region.
pub struct Region {
    /// The region's name.
    pub name: String,
    /// Its place in the tie-break order (config order, then `--region` flags).
    pub index: usize,
    /// `host:port`, for messages.
    pub addr: String,
    /// The database connected to.
    pub dbname: String,
    /// The session.
    pub client: Client,
    params: Arc<ResolvedParams>,
    opts: ConnectOptions,
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("name", &self.name)
            .field("index", &self.index)
            .field("addr", &self.addr)
            .field("dbname", &self.dbname)
            .finish_non_exhaustive()
    }
}

impl Region {
    /// Opens another session to the same region and database, with the same settings
    /// (for work in parallel, or after the first session broke).
    pub async fn open_another(&self) -> Result<Client> {
        open(&self.name, &self.params, &self.opts).await
    }

    /// The user name the sessions log in as.
    pub fn user(&self) -> &str {
        &self.params.user
    }
}

/// Connects to one region (`name`, at position `index` in tie-break order): its connection
/// parameters `conn` completed from the environment (see [`crate::pg::conninfo`]), its
/// database the conninfo's `dbname`, else `db` (when not empty), else `PGDATABASE`, else the
/// user name.
pub(crate) async fn connect_one(
    name: &str,
    conn: &ConnParams,
    index: usize,
    db: &str,
    opts: &ConnectOptions,
) -> Result<Region> {
    let params = conn
        .resolve(Some(db).filter(|d| !d.is_empty()))
        .map_err(|message| Error::Connection {
            region: name.to_string(),
            addr: conn.addr(),
            message,
        })?;
    let client = open(name, &params, opts).await?;
    tracing::debug!(region = %name, addr = %params.addr(), db = %params.dbname, "connected");
    Ok(Region {
        name: name.to_string(),
        index,
        addr: params.addr(),
        dbname: params.dbname.clone(),
        client,
        params: Arc::new(params),
        opts: opts.clone(),
    })
}

/// What the regions actually connected to: the database's name when every region uses the
/// same one, else `region=database` for each region.
pub fn describe_databases(regions: &[Region]) -> String {
    let first = regions.first().map(|r| r.dbname.as_str()).unwrap_or("");
    if regions.iter().all(|r| r.dbname == first) {
        first.to_string()
    } else {
        regions
            .iter()
            .map(|r| format!("{}={}", r.name, r.dbname))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Connects to every region, `(name, conn)` in tie-break order, concurrently, each within
/// its timeout. On failure the error is that of the first failing region in that order
/// (whatever failed first in time), and the other sessions are closed.
pub(crate) async fn connect_many<'a>(
    regions: impl IntoIterator<Item = (&'a str, &'a ConnParams)>,
    db: Option<&str>,
    opts: &ConnectOptions,
) -> Result<Vec<Region>> {
    let results = futures_util::future::join_all(
        regions
            .into_iter()
            .enumerate()
            .map(|(i, (name, conn))| connect_one(name, conn, i, db.unwrap_or(""), opts)),
    )
    .await;
    results.into_iter().collect()
}

/// The effective time allowed to connect, libpq-style: `connect_timeout` 0 waits forever,
/// values below 2 s count as 2 s.
fn effective_timeout(params: &ResolvedParams, opts: &ConnectOptions) -> Option<Duration> {
    match params.connect_timeout {
        Some(0) => None,
        Some(s) => Some(Duration::from_secs(s.max(2))),
        None if opts.timeout.is_zero() => None,
        None => Some(opts.timeout),
    }
}

fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Opens one session.
async fn open(region: &str, params: &ResolvedParams, opts: &ConnectOptions) -> Result<Client> {
    let addr = params.addr();
    let fail = |message: String| Error::Connection {
        region: region.to_string(),
        addr: addr.clone(),
        message,
    };

    let mut pg = tokio_postgres::Config::new();
    pg.host(&params.host)
        .port(params.port)
        .user(&params.user)
        .dbname(&params.dbname);
    if let Some(a) = &params.hostaddr {
        let ip = a
            .parse()
            .map_err(|_| fail("invalid hostaddr: it must be a numeric IP address".to_string()))?;
        pg.hostaddr(ip);
    }
    if let Some(pw) = &params.password {
        pg.password(pw.as_bytes());
    }
    pg.application_name(
        params
            .application_name
            .as_deref()
            .unwrap_or(&opts.application_name),
    );
    pg.options(crate::pg::session::startup_options(
        opts.statement_timeout,
        opts.lock_timeout,
    ));
    let (mode, tls) = tls_connector(params).map_err(&fail)?;
    pg.ssl_mode(mode);

    let timeout = effective_timeout(params, opts);
    let connecting = pg.connect(tls);
    let result = match timeout {
        Some(t) => match tokio::time::timeout(t, connecting).await {
            Ok(r) => r,
            Err(_) => return Err(fail(format!("timed out after {}", fmt_duration(t)))),
        },
        None => connecting.await,
    };
    let (client, connection) = result.map_err(|e| fail(describe(&e, params)))?;
    let name = region.to_string();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(region = %name, "connection lost: {}", pg_message(&e));
        }
    });
    Ok(client)
}

/// A human message for a failed connection attempt (never the password).
fn describe(err: &tokio_postgres::Error, params: &ResolvedParams) -> String {
    if let Some(db) = err.as_db_error() {
        let mut m = db.message().to_string();
        if db.code() == &tokio_postgres::error::SqlState::INVALID_PASSWORD {
            if let Some(src) = params.password_source {
                let from = match src {
                    crate::pg::conninfo::PasswordSource::Explicit => {
                        "the config or connection string"
                    }
                    crate::pg::conninfo::PasswordSource::Environment => "PGPASSWORD",
                    crate::pg::conninfo::PasswordSource::PassFile => "the password file",
                };
                m.push_str(&format!(" (password taken from {from})"));
            }
        }
        return m;
    }
    // Walk the source chain for the underlying cause.
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = src {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return describe_tls(tls, params);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                    return describe_tls(tls, params);
                }
            }
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                std::io::ErrorKind::TimedOut => return "timed out".into(),
                std::io::ErrorKind::ConnectionReset => {
                    return "the server closed the connection (reset)".into();
                }
                std::io::ErrorKind::HostUnreachable | std::io::ErrorKind::NetworkUnreachable => {
                    return "no route to the host".into();
                }
                std::io::ErrorKind::NotFound if params.host.starts_with('/') => {
                    return format!("no server socket in \"{}\"", params.host);
                }
                _ => {}
            }
            let text = io.to_string();
            if text.contains("failed to lookup address")
                || text.contains("Name or service not known")
            {
                return format!("cannot resolve host name \"{}\"", params.host);
            }
        }
        src = e.source();
    }
    let text = pg_message(err);
    if text.contains("password missing") {
        return "the server asks for a password and none was given; set it in the connection string, PGPASSWORD or ~/.pgpass".into();
    }
    if text.contains("server does not support TLS") {
        return format!(
            "the server does not accept TLS, which sslmode={} requires; turn ssl on in the server or use sslmode=prefer",
            params.sslmode
        );
    }
    if text.contains("failed to lookup address") {
        return format!("cannot resolve host name \"{}\"", params.host);
    }
    text
}

fn describe_tls(e: &rustls::Error, params: &ResolvedParams) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer)
        | rustls::Error::InvalidCertificate(C::BadSignature) => {
            format!(
                "TLS: the server's certificate is not signed by a trusted root{}",
                match &params.sslrootcert {
                    Some(r) => format!(" (sslrootcert \"{r}\")"),
                    None => String::new(),
                }
            )
        }
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => format!(
            "TLS: the server's certificate is not valid for host name \"{}\" (sslmode=verify-full); connect with a name the certificate lists, or use sslmode=verify-ca",
            params.host
        ),
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "TLS: the server's certificate has expired".into()
        }
        rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "TLS: the server's certificate is not valid yet".into()
        }
        other => format!("TLS handshake failed: {other}"),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The roots to trust, if any are known.
fn load_roots(params: &ResolvedParams) -> std::result::Result<Option<RootCertStore>, String> {
    let Some(path) = &params.sslrootcert else {
        return Ok(None);
    };
    if path == "system" {
        return Ok(Some(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }));
    }
    let data = std::fs::read(path).map_err(|e| {
        format!(
            "cannot read the root certificate file \"{path}\" (sslrootcert): {}",
            match e.kind() {
                std::io::ErrorKind::NotFound => "no such file".to_string(),
                std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                _ => e.to_string(),
            }
        )
    })?;
    let mut store = RootCertStore::empty();
    let mut reader = std::io::Cursor::new(data);
    let mut n = 0;
    for cert in rustls_pemfile::certs(&mut reader) {
        let cert = cert
            .map_err(|e| format!("the root certificate file \"{path}\" is not valid PEM: {e}"))?;
        store.add(cert).map_err(|e| {
            format!("the root certificate file \"{path}\" holds an unusable certificate: {e}")
        })?;
        n += 1;
    }
    if n == 0 {
        return Err(format!(
            "the root certificate file \"{path}\" holds no PEM certificate"
        ));
    }
    Ok(Some(store))
}

/// The TLS connector for `params`, and the mode tokio-postgres negotiates with.
fn tls_connector(
    params: &ResolvedParams,
) -> std::result::Result<
    (
        tokio_postgres::config::SslMode,
        tokio_postgres_rustls::MakeRustlsConnect,
    ),
    String,
> {
    use tokio_postgres::config::SslMode as Pg;
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let roots = if params.sslmode == SslMode::Disable {
        None
    } else {
        load_roots(params)?
    };
    let config = match (params.sslmode, roots) {
        (SslMode::Disable, _) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(LibpqVerifier {
                roots: None,
                provider,
            }))
            .with_no_client_auth(),
        (SslMode::VerifyFull, Some(roots)) => {
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        (SslMode::VerifyCa | SslMode::Prefer | SslMode::Require, Some(roots)) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(LibpqVerifier {
                roots: Some(Arc::new(roots)),
                provider,
            }))
            .with_no_client_auth(),
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(format!(
                "sslmode={} needs a root certificate to verify the server: set sslrootcert (or PGSSLROOTCERT) to the CA's PEM file, or put it in ~/.postgresql/root.crt",
                params.sslmode
            ));
        }
        (SslMode::Prefer | SslMode::Require, None) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(LibpqVerifier {
                roots: None,
                provider,
            }))
            .with_no_client_auth(),
    };
    let mode = match params.sslmode {
        SslMode::Disable => Pg::Disable,
        SslMode::Prefer => Pg::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Pg::Require,
    };
    Ok((mode, tokio_postgres_rustls::MakeRustlsConnect::new(config)))
}

/// The certificate checks of libpq's modes below `verify-full`: with `roots`, the chain is
/// verified against them but not the host name (`verify-ca`, and `prefer`/`require` when a
/// root certificate is configured); without, any certificate is accepted (`require` with no
/// root certificate). The handshake's signatures are checked either way, so the channel is
/// encrypted to whoever holds the certificate's key.
#[derive(Debug)]
struct LibpqVerifier {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for LibpqVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// True when the session has a transaction block open. Asked without provoking an error or
/// a warning on the server: outside a block every statement is a transaction of its own, so
/// its start is the statement's start.
pub(crate) async fn in_transaction(
    client: &tokio_postgres::Client,
) -> std::result::Result<bool, tokio_postgres::Error> {
    let probe = client
        .simple_query(
            "SELECT pg_catalog.transaction_timestamp() <> pg_catalog.statement_timestamp()",
        )
        .await?;
    Ok(probe.iter().any(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0) == Some("t"),
        _ => false,
    }))
}

/// Ends the session's transaction block with `statement` (`COMMIT` or `ROLLBACK`) when one
/// is open; nothing otherwise (a `COMMIT` with no transaction logs a WARNING on the server).
/// Errors are ignored: this is cleanup.
pub(crate) async fn end_transaction(client: &tokio_postgres::Client, statement: &str) {
    if in_transaction(client).await.unwrap_or(true) {
        let _ = client.batch_execute(statement).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(extra: &str) -> ResolvedParams {
        crate::pg::conninfo::ConnParams::parse(&format!("host=h user=u dbname=d {extra}"))
            .unwrap()
            .resolve_with(None, &crate::pg::conninfo::MapEnv::new())
            .unwrap()
    }

    #[test]
    fn timeouts() {
        let o = ConnectOptions::default();
        assert_eq!(
            effective_timeout(&params(""), &o),
            Some(Duration::from_secs(10))
        );
        assert_eq!(effective_timeout(&params("connect_timeout=0"), &o), None);
        assert_eq!(
            effective_timeout(&params("connect_timeout=1"), &o),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            effective_timeout(&params("connect_timeout=5"), &o),
            Some(Duration::from_secs(5))
        );
        assert_eq!(fmt_duration(Duration::from_secs(10)), "10s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn tls_setup_errors() {
        let e = tls_connector(&params("sslmode=verify-full")).err().unwrap();
        assert!(e.contains("needs a root certificate"), "{e}");
        let e = tls_connector(&params("sslmode=require sslrootcert=/nonexistent/root.pem"))
            .err()
            .unwrap();
        assert_eq!(
            e,
            "cannot read the root certificate file \"/nonexistent/root.pem\" (sslrootcert): no such file"
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.pem");
        std::fs::write(&f, "not a cert").unwrap();
        let e = tls_connector(&params(&format!(
            "sslmode=verify-ca sslrootcert={}",
            f.display()
        )))
        .err()
        .unwrap();
        assert!(e.contains("holds no PEM certificate"), "{e}");
        assert!(tls_connector(&params("sslmode=verify-full sslrootcert=system")).is_ok());
        assert!(tls_connector(&params("sslmode=disable sslrootcert=/nonexistent")).is_ok());
    }
}
