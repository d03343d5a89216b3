//! The gRPC API of `snakepit serve` (`proto/snakepit/v1/service.proto`):
//! the pools, sessions, FFI and variables of a running [`Snakepit`], for
//! clients in any language.
//!
//! The server is a service of the runtime (`Server` under `Runtime` in the
//! supervision tree): [`Snakepit::serve`] (or [`SnakepitBuilder::serve`])
//! binds the address at once — a busy port or a bad certificate is an error
//! there — and hands the serving future to the runtime. At shutdown the
//! runtime tells it first, and it drains in two steps:
//!
//! 1. it refuses new calls (UNAVAILABLE, kind `shutting_down`), reports
//!    NOT_SERVING, ends variable watches, and lets the calls and streams in
//!    flight finish while the pools still answer, until the grace period's
//!    deadline;
//! 2. then it closes its listener and connections (HTTP/2 GOAWAY), giving
//!    them [`CLOSE_GRACE`] at most (a health watch never ends by itself).
//!
//! Only then do the pools go down.
//!
//! - `server.rs` (this file): [`ServeConfig`], [`ListenAddr`], binding TCP or
//!   a Unix socket, TLS (mTLS with a client CA), assembling and running the
//!   server with health and reflection;
//! - `server/auth.rs`: the gate (bearer token, refusals during shutdown);
//! - `server/service.rs`: the RPCs; `server/ffi.rs`: the FFI operations;
//! - `server/sessions.rs`: the server's session table;
//! - `server/health.rs`: `grpc.health.v1.Health` driven by the pools;
//! - `server/status.rs`: errors as statuses with `google.rpc.ErrorInfo`;
//! - `server/observe.rs`: per-call metrics; `server/deadline.rs`:
//!   `grpc-timeout` as the call's timeout; `server/convert.rs`: the
//!   runtime's types as messages.
//!
//! [`Snakepit`]: crate::Snakepit
//! [`Snakepit::serve`]: crate::Snakepit::serve
//! [`SnakepitBuilder::serve`]: crate::SnakepitBuilder::serve

pub(crate) mod auth;
pub(crate) mod convert;
mod deadline;
mod ffi;
mod health;
mod observe;
mod service;
mod sessions;
mod status;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;

use snakepit_actors::ShutdownSignal;
use snakepit_proto::v1::snakepit_server::SnakepitServer;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

pub use auth::Token;

use crate::config::ServerSection;
use crate::telemetry::{ServerStarted, ServerStopped};
use crate::{Error, Snakepit};

/// Where `snakepit serve` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

/// How long connections get to close once the calls are over.
pub const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Room in a gRPC message beyond the pools' largest frame (the request's
/// own fields around its arguments), so that a payload the workers could not
/// take is refused as `payload_too_large` rather than by the transport.
const MESSAGE_SLACK: usize = 64 * 1024;

/// Where the server listens: `HOST:PORT` (an IP address, or `localhost`) or
/// `unix:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket; created with mode 0600.
    Unix(PathBuf),
}

impl ListenAddr {
    /// Whether only this machine can reach it: a loopback address or a Unix
    /// socket.
    pub fn is_local(&self) -> bool {
        match self {
            ListenAddr::Tcp(addr) => addr.ip().is_loopback(),
            ListenAddr::Unix(_) => true,
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl FromStr for ListenAddr {
    type Err = ServeError;

    fn from_str(s: &str) -> Result<Self, ServeError> {
        let bad = || ServeError::BadListen {
            given: s.to_string(),
        };
        if let Some(path) = s.strip_prefix("unix:") {
            return match path {
                "" => Err(bad()),
                path => Ok(ListenAddr::Unix(PathBuf::from(path))),
            };
        }
        if let Some(port) = s.strip_prefix("localhost:") {
            let port = port.parse().map_err(|_| bad())?;
            return Ok(ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], port))));
        }
        s.parse().map(ListenAddr::Tcp).map_err(|_| bad())
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The listen address is neither `HOST:PORT` nor `unix:PATH`.
    #[error("bad listen address `{given}`: expected IP:PORT, localhost:PORT or unix:PATH")]
    BadListen {
        /// What was given.
        given: String,
    },
    /// A non-loopback TCP address without a token, and not `insecure`.
    #[error(
        "refusing to listen on {addr} without a token: anyone who reaches it could run code in the \
         workers. Give a token file (--token-file), listen on a loopback address or a Unix socket, \
         or pass --insecure if the network is trusted"
    )]
    NoToken {
        /// The address refused.
        addr: String,
    },
    /// The token is empty.
    #[error("the token is empty")]
    EmptyToken,
    /// The token file holds nothing but whitespace.
    #[error("the token file {} is empty", .path.display())]
    EmptyTokenFile {
        /// The file.
        path: PathBuf,
    },
    /// The token file could not be read.
    #[error("cannot read the token file {}: {source}", .path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A certificate without its key, or the other way round.
    #[error("TLS needs both a certificate and its key (--tls-cert and --tls-key)")]
    TlsIncomplete,
    /// A client CA without TLS.
    #[error("a client CA (--client-ca) needs TLS (--tls-cert and --tls-key)")]
    ClientCaWithoutTls,
    /// A certificate, key or CA file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The certificate, key or CA did not make a TLS configuration.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `[remote]`'s heartbeat and liveness timeout do not make a link.
    #[error(
        "[remote]: liveness_timeout_ms ({liveness_timeout_ms}) must be at least twice \
         heartbeat_ms ({heartbeat_ms}), which must not be 0"
    )]
    Liveness {
        /// `heartbeat_ms`.
        heartbeat_ms: u64,
        /// `liveness_timeout_ms`.
        liveness_timeout_ms: u64,
    },
    /// This runtime serves already.
    #[error("the runtime already serves on {0}")]
    AlreadyServing(ListenAddr),
    /// The runtime refused the server (it is shutting down).
    #[error(transparent)]
    Runtime(#[from] Error),
}

impl From<ServeError> for Error {
    fn from(err: ServeError) -> Self {
        match err {
            ServeError::Runtime(err) => err,
            other => Error::Config(other.to_string()),
        }
    }
}

/// How to serve: where, with which token, with TLS or not.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    listen: ListenAddr,
    token: Option<Token>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    insecure: bool,
}

impl Default for ServeConfig {
    /// `127.0.0.1:50051`, no token, no TLS.
    fn default() -> Self {
        Self::new(
            DEFAULT_LISTEN
                .parse()
                .expect("the default listen address parses"),
        )
    }
}

impl ServeConfig {
    /// Serves on `listen`, without a token or TLS.
    pub fn new(listen: ListenAddr) -> Self {
        Self {
            listen,
            token: None,
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            insecure: false,
        }
    }

    /// The `[server]` section of a configuration file.
    pub fn from_section(section: &ServerSection) -> Result<Self, ServeError> {
        let listen = section
            .listen
            .as_deref()
            .unwrap_or(DEFAULT_LISTEN)
            .parse()?;
        let mut config = Self::new(listen).insecure(section.insecure);
        if let Some(path) = &section.token_file {
            config = config.token(Token::from_file(path)?);
        }
        config.tls_cert = section.tls_cert.clone();
        config.tls_key = section.tls_key.clone();
        config.client_ca = section.client_ca.clone();
        Ok(config)
    }

    /// Listens on `listen` instead.
    pub fn listen(mut self, listen: ListenAddr) -> Self {
        self.listen = listen;
        self
    }

    /// Where it listens.
    pub fn listen_addr(&self) -> &ListenAddr {
        &self.listen
    }

    /// Every call but health checks and reflection must carry
    /// `authorization: Bearer <token>`.
    pub fn token(mut self, token: Token) -> Self {
        self.token = Some(token);
        self
    }

    /// TLS with this certificate chain and private key (PEM files).
    pub fn tls(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls_cert = Some(cert.into());
        self.tls_key = Some(key.into());
        self
    }

    /// Clients must present a certificate signed by this CA (PEM file): mTLS.
    pub fn client_ca(mut self, ca: impl Into<PathBuf>) -> Self {
        self.client_ca = Some(ca.into());
        self
    }

    /// Allows a non-loopback TCP address without a token.
    pub fn insecure(mut self, yes: bool) -> Self {
        self.insecure = yes;
        self
    }

    /// Checks the settings that need no file or socket: TLS has both its
    /// files, a client CA has TLS, and an address other machines can reach
    /// has a token (unless [`insecure`](Self::insecure)).
    pub fn validate(&self) -> Result<(), ServeError> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ServeError::TlsIncomplete);
        }
        if self.client_ca.is_some() && self.tls_cert.is_none() {
            return Err(ServeError::ClientCaWithoutTls);
        }
        if self.token.is_none() && !self.insecure && !self.listen.is_local() {
            return Err(ServeError::NoToken {
                addr: self.listen.to_string(),
            });
        }
        Ok(())
    }

    /// The token calls must carry, when there is one.
    pub(crate) fn token_owned(&self) -> Option<Token> {
        self.token.clone()
    }

    pub(crate) fn tls_config(&self) -> Result<Option<ServerTlsConfig>, ServeError> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| ServeError::TlsFile {
                path: path.to_path_buf(),
                source,
            })
        };
        let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
        if let Some(ca) = &self.client_ca {
            tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        Ok(Some(tls))
    }
}

/// Binds `config`'s address and runs the server as a service of
/// `snakepit`'s runtime; returns the address bound (the port chosen when
/// it was 0).
pub(crate) async fn start(
    snakepit: &Snakepit,
    config: ServeConfig,
) -> Result<ListenAddr, ServeError> {
    config.validate()?;
    let mut server = Server::builder()
        .tcp_nodelay(true)
        .trace_fn(crate::otel::grpc_span);
    if let Some(tls) = config.tls_config()? {
        server = server
            .tls_config(tls)
            .map_err(|e| ServeError::Tls(format!("{e:?}")))?;
    }
    let telemetry = snakepit.runtime().telemetry().clone();
    let (listener, addr) = Listener::bind(&config.listen).await?;
    let parts = Parts {
        snakepit: snakepit.clone(),
        // Subscribed before the pools' state is read, so no change goes
        // unseen; to state events only, so calls cost the server no wakeups.
        health_events: telemetry.subscribe_lifecycle(),
        session_events: telemetry.subscribe_lifecycle(),
        started: ServerStarted {
            addr: addr.to_string(),
            tls: config.tls_cert.is_some(),
            client_certs: config.client_ca.is_some(),
            token: config.token.is_some(),
        },
        token: config.token,
        max_message: snakepit
            .pools()
            .map(|p| p.config().max_frame_bytes)
            .max()
            .unwrap_or(snakepit_proto::framing::DEFAULT_MAX_FRAME_BYTES)
            + MESSAGE_SLACK,
    };
    snakepit
        .runtime()
        .spawn_service("server", move |signal| {
            Box::pin(serve(parts, server, listener, signal))
        })
        .await?;
    Ok(addr)
}

/// What the serving future is made of.
struct Parts {
    snakepit: Snakepit,
    token: Option<Token>,
    health_events: tokio::sync::broadcast::Receiver<crate::Event>,
    session_events: tokio::sync::broadcast::Receiver<crate::Event>,
    started: ServerStarted,
    max_message: usize,
}

/// A bound listener.
pub(crate) enum Listener {
    Tcp(TcpIncoming),
    Unix(UnixListenerStream, SocketFile),
}

impl Listener {
    pub(crate) async fn bind(addr: &ListenAddr) -> Result<(Self, ListenAddr), ServeError> {
        let failed = |source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        };
        match addr {
            ListenAddr::Tcp(at) => {
                let listener = tokio::net::TcpListener::bind(at).await.map_err(failed)?;
                let bound = listener.local_addr().map_err(failed)?;
                let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                Ok((Listener::Tcp(incoming), ListenAddr::Tcp(bound)))
            }
            ListenAddr::Unix(path) => {
                clear_stale_socket(path).map_err(failed)?;
                let listener = tokio::net::UnixListener::bind(path).map_err(failed)?;
                let file = SocketFile(path.clone());
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(failed)?;
                let incoming = UnixListenerStream::new(listener);
                Ok((Listener::Unix(incoming, file), addr.clone()))
            }
        }
    }
}

/// Removes the socket a dead earlier server left at `path`; a live one, or
/// anything that is not a socket, stays (and the bind fails).
fn clear_stale_socket(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket",
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "another server listens on this socket",
        )),
        Err(_) => std::fs::remove_file(path),
    }
}

/// A Unix socket's file, removed when the server is done with it.
pub(crate) struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Aborts background tasks when the server's future ends or is dropped.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

type Served = Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>;

/// The server's life: serve until shutdown is requested, then drain (see
/// the module's documentation).
async fn serve(
    parts: Parts,
    server: Server,
    listener: Listener,
    signal: ShutdownSignal,
) -> Result<(), String> {
    let Parts {
        snakepit,
        token,
        health_events,
        session_events,
        started,
        max_message,
    } = parts;
    let telemetry = snakepit.runtime().telemetry().clone();
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health = health::Health::start(reporter.clone(), &snakepit, signal.clone()).await;
    let table = Arc::new(sessions::SessionTable::new(snakepit.clone()));
    let _background = AbortOnDrop(vec![
        tokio::spawn(health.run(snakepit.clone(), health_events)),
        tokio::spawn(sessions::forget_ended(table.clone(), session_events)),
    ]);
    let in_flight = observe::InFlight::new();
    let api = service::Api::new(snakepit.clone(), table, signal.clone(), in_flight.clone());
    let api = SnakepitServer::new(api)
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(snakepit_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| format!("reflection: {e}"))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| format!("reflection: {e}"))?;
    let router = server
        .layer(auth::GateLayer::new(
            token,
            Some(signal.clone()),
            telemetry.clone(),
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(api);

    // Step 2 of the drain: tonic closes the listener and the connections.
    let (close, closing) = tokio::sync::oneshot::channel::<()>();
    let closing = async move {
        let _ = closing.await;
    };
    let addr = started.addr.clone();
    started.emit(&telemetry);
    let (mut served, _socket): (Served, _) = match listener {
        Listener::Tcp(incoming) => (
            Box::pin(router.serve_with_incoming_shutdown(incoming, closing)),
            None,
        ),
        Listener::Unix(incoming, file) => (
            Box::pin(router.serve_with_incoming_shutdown(incoming, closing)),
            Some(file),
        ),
    };
    // Step 1: the gate refuses new calls as soon as shutdown is requested;
    // those in flight finish.
    let pools: Vec<String> = snakepit.pools().map(|p| p.name().to_string()).collect();
    let drain = async {
        let deadline = tokio::time::Instant::from_std(signal.requested().await);
        health::Health::stop(&reporter, &pools).await;
        let drained = tokio::time::timeout_at(deadline, in_flight.idle())
            .await
            .is_ok();
        (drained, deadline)
    };
    let (drained, deadline) = tokio::select! {
        served = &mut served => {
            served.map_err(|e| format!("the gRPC server failed: {e}"))?;
            return Err("the gRPC server stopped accepting connections".into());
        }
        drain = drain => drain,
    };
    let _ = close.send(());
    let close_by = deadline.min(tokio::time::Instant::now() + CLOSE_GRACE);
    if let Ok(Err(err)) = tokio::time::timeout_at(close_by, served).await {
        tracing::warn!(error = %err, "The gRPC server failed while closing.");
    }
    ServerStopped { addr, drained }.emit(&telemetry);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_parse_and_print_back() {
        for text in [
            "127.0.0.1:50051",
            "[::1]:7",
            "0.0.0.0:1",
            "unix:/tmp/s.sock",
        ] {
            let addr: ListenAddr = text.parse().unwrap();
            assert_eq!(addr.to_string(), text);
        }
        let local: ListenAddr = "localhost:9".parse().unwrap();
        assert_eq!(local.to_string(), "127.0.0.1:9");
        for bad in ["", "unix:", "example.com:80", "127.0.0.1", "localhost:x"] {
            assert!(bad.parse::<ListenAddr>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_loopback_and_unix_sockets_are_local() {
        for (text, local) in [
            ("127.0.0.1:1", true),
            ("[::1]:1", true),
            ("unix:/x", true),
            ("0.0.0.0:1", false),
            ("[::]:1", false),
            ("192.168.1.2:1", false),
        ] {
            let addr: ListenAddr = text.parse().unwrap();
            assert_eq!(addr.is_local(), local, "{text}");
        }
    }

    #[test]
    fn an_open_address_needs_a_token_or_insecure() {
        let open = ServeConfig::new("0.0.0.0:1".parse().unwrap());
        assert!(matches!(open.validate(), Err(ServeError::NoToken { .. })));
        assert!(open.clone().insecure(true).validate().is_ok());
        let with_token = open.token(Token::new("t").unwrap());
        assert!(with_token.validate().is_ok());
        assert!(ServeConfig::default().validate().is_ok());
    }

    #[test]
    fn tls_needs_both_files_and_a_client_ca_needs_tls() {
        let half = ServeConfig {
            tls_cert: Some("c.pem".into()),
            ..ServeConfig::default()
        };
        assert!(matches!(half.validate(), Err(ServeError::TlsIncomplete)));
        let ca_alone = ServeConfig::default().client_ca("ca.pem");
        assert!(matches!(
            ca_alone.validate(),
            Err(ServeError::ClientCaWithoutTls)
        ));
        let missing = ServeConfig::default().tls("/nonexistent/c.pem", "/nonexistent/k.pem");
        assert!(matches!(
            missing.tls_config(),
            Err(ServeError::TlsFile { .. })
        ));
    }

    #[test]
    fn a_stale_socket_is_cleared_and_other_files_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        clear_stale_socket(&path).unwrap();
        assert!(!path.exists());
        std::fs::write(&path, "x").unwrap();
        assert!(clear_stale_socket(&path).is_err());
        assert!(path.exists());
    }
}
