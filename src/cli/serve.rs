//! `snakepit serve`: the pools of `--config` (or the embedded default) as the
//! gRPC service `snakepit.v1.Snakepit`, until SIGINT or SIGTERM; then a
//! graceful shutdown (calls in flight finish, new ones are refused) and exit
//! 130 or 143.
//!
//! The flags override the file's `[server]` section. The settings are
//! checked before any worker starts: a non-loopback address without a token
//! (and without `--insecure`), half a TLS configuration, or an unreadable or
//! empty token file is an error and a non-zero exit. Once clients can
//! connect, one line goes to stderr: `snakepit: serving on ADDR`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use snakepit::ServeConfig;

use crate::RuntimeOpts;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where to listen: HOST:PORT or unix:PATH [default: the config's
    /// `[server] listen`, else 127.0.0.1:50051].
    #[arg(long)]
    listen: Option<String>,
    /// File holding the bearer token every call must carry
    /// (`authorization: Bearer <token>`); health checks and reflection need none.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// TLS certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mTLS.
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Listen on a non-loopback address without a token.
    #[arg(long)]
    insecure: bool,
}

/// Serves until SIGINT or SIGTERM, then exits `128 + N` for signal N after
/// the graceful shutdown.
pub async fn run(args: ServeArgs, runtime: RuntimeOpts) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&runtime)?;
    // The flags over the file's section, before any file is read.
    let mut section = config.server.clone();
    if let Some(listen) = args.listen {
        section.listen = Some(listen);
    }
    if let Some(path) = args.token_file {
        section.token_file = Some(path);
    }
    if args.tls_cert.is_some() {
        section.tls_cert = args.tls_cert;
        section.tls_key = args.tls_key;
    }
    if args.client_ca.is_some() {
        section.client_ca = args.client_ca;
    }
    section.insecure |= args.insecure;
    let serve = ServeConfig::from_section(&section).map_err(super::StartError::new)?;
    serve.validate().map_err(super::StartError::new)?;
    let mut builder = snakepit::Snakepit::builder().config(config).serve(serve);
    if let Some(addr) = runtime.metrics_addr {
        builder = builder.metrics_addr(addr);
    }
    let snakepit = super::start(builder).await?;
    if let Some(addr) = snakepit.server_addr() {
        eprintln!("snakepit: serving on {addr}");
    }
    if let Some(addr) = snakepit.attach_addr().await {
        eprintln!("snakepit: node agents attach on {addr}");
    }
    let signal = super::shutdown_signal().await;
    eprintln!("snakepit: signal received, shutting down gracefully");
    snakepit.shutdown().await;
    Ok(signal.exit_code())
}
