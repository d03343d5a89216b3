//! `--server ADDR [--token-file F] [--tls-ca F]` of `snakepit exec` and
//! `snakepit call`: the same command run against the pools of a `snakepit
//! serve` through [`RemoteClient`] instead of a runtime of its own. What it
//! prints (the tagged JSON on stdout, the error on stderr) and its exit codes
//! are those of the local mode.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use futures::StreamExt as _;
use snakepit::Value;
use snakepit::remote::{
    ClientIdentity, PoolState, RemoteClient, RemoteError, RemoteOptions, SessionOptions,
};

use crate::RuntimeOpts;

/// The options that point a command at a serving host.
#[derive(Args, Debug, Default)]
pub struct ServerOpts {
    /// Run against this `snakepit serve` (`HOST:PORT`, `http(s)://HOST:PORT`
    /// or `unix:/path.sock`) instead of starting a local runtime.
    #[arg(long, value_name = "ADDR")]
    server: Option<String>,
    /// File holding the server's bearer token.
    #[arg(long, value_name = "FILE", requires = "server")]
    token_file: Option<PathBuf>,
    /// PEM of the CA that signed the server's certificate (turns TLS on).
    #[arg(long, value_name = "FILE", requires = "server")]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for a server that requires mTLS.
    #[arg(long, value_name = "FILE", requires_all = ["server", "tls_key"])]
    tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["server", "tls_cert"])]
    tls_key: Option<PathBuf>,
}

impl ServerOpts {
    /// Whether `--server` was given.
    pub fn is_remote(&self) -> bool {
        self.server.is_some()
    }

    /// Connects to `--server`, after refusing the options of a local
    /// runtime (`runtime`) next to it.
    pub async fn connect(&self, runtime: &RuntimeOpts) -> anyhow::Result<RemoteClient> {
        let server = self.server.as_deref().context("no --server given")?;
        refuse_local_options(runtime)?;
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
        };
        let token = match &self.token_file {
            Some(path) => {
                let token = String::from_utf8(read(path, "the token file")?)
                    .context("the token file is not UTF-8")?;
                let token = token.trim().to_string();
                anyhow::ensure!(
                    !token.is_empty(),
                    "the token file {} is empty",
                    path.display()
                );
                Some(token)
            }
            None => None,
        };
        let identity = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(ClientIdentity {
                cert_pem: read(cert, "the client certificate")?,
                key_pem: read(key, "the client key")?,
            }),
            _ => None,
        };
        let options = RemoteOptions {
            token,
            ca_pem: self
                .tls_ca
                .as_ref()
                .map(|path| read(path, "the CA certificate"))
                .transpose()?,
            identity,
            ..RemoteOptions::default()
        };
        Ok(RemoteClient::connect(server, options).await?)
    }
}

/// Refuses local-runtime options next to `--server`.
fn refuse_local_options(runtime: &RuntimeOpts) -> anyhow::Result<()> {
    let local = [
        ("--config", runtime.config.is_some()),
        ("--metrics-addr", runtime.metrics_addr.is_some()),
    ];
    for (flag, given) in local {
        if given {
            return Err(super::UsageError(format!(
                "{flag} configures a local runtime; with --server the command runs on the server's pools"
            ))
            .into());
        }
    }
    Ok(())
}

/// `snakepit exec TOOL --server ADDR`: the result (or one line per item of a
/// streaming tool) on stdout; exit 1 when the call fails.
pub async fn exec(
    client: RemoteClient,
    tool: &str,
    pool: Option<&str>,
    session: Option<&str>,
    args: Value,
) -> anyhow::Result<ExitCode> {
    let call = snakepit::call(tool, args)?;
    let client = match pool {
        Some(pool) => client.on_pool(pool),
        None => client,
    };
    let run = async {
        let pools = client.pool_status(pool).await?;
        let streaming = default_pool(&pools, pool).is_some_and(|p| {
            p.tools
                .iter()
                .any(|t| t.name == tool && t.supports_streaming)
        });
        // A session of the call's own unless one is named (kept then).
        let id = match session {
            Some(id) => id.to_string(),
            None => {
                client
                    .create_session(SessionOptions {
                        pool: pool.map(str::to_string),
                        ..SessionOptions::default()
                    })
                    .await?
                    .id
            }
        };
        let call = call.session(id.clone());
        let result = async {
            if streaming {
                let mut stream = client.execute_stream(call).await?;
                while let Some(item) = stream.next().await {
                    println!("{}", item?.to_json_tagged());
                }
            } else {
                println!("{}", client.execute(call).await?.to_json_tagged());
            }
            Ok::<_, RemoteError>(())
        }
        .await;
        if session.is_none()
            && let Err(err) = client.release_session(&id).await
        {
            eprintln!("warning: releasing session {id}: {err}");
        }
        result
    };
    Ok(match until_signal(run).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(err)) => {
            report(&err);
            ExitCode::from(super::EXIT_FAILED)
        }
        Err(signal) => signal.exit_code(),
    })
}

/// `snakepit call MODULE FUNCTION --server ADDR`: in a session of the call's
/// own on the server, released when it returns (as the local mode releases
/// its auto-session).
pub async fn call(
    client: RemoteClient,
    module: &str,
    function: &str,
    args: Vec<Value>,
    kwargs: Value,
) -> anyhow::Result<ExitCode> {
    let run = client.call(module, function, args, kwargs);
    Ok(match until_signal(run).await {
        Ok(Ok(value)) => {
            println!("{}", value.to_json_tagged());
            ExitCode::SUCCESS
        }
        Ok(Err(err)) => {
            report(&err);
            ExitCode::from(super::EXIT_FAILED)
        }
        Err(signal) => signal.exit_code(),
    })
}

/// The pool a call without `--pool` runs on: the server's `default`, else
/// its first (as a local runtime picks).
fn default_pool<'a>(pools: &'a [PoolState], pool: Option<&str>) -> Option<&'a PoolState> {
    let name = pool.unwrap_or("default");
    pools
        .iter()
        .find(|p| p.name == name)
        .or_else(|| pool.is_none().then(|| pools.first()).flatten())
}

/// Runs `work` unless SIGINT or SIGTERM comes first (dropping it cancels the
/// call on the server).
async fn until_signal<T>(work: impl Future<Output = T>) -> Result<T, super::Signal> {
    tokio::select! {
        r = work => Ok(r),
        signal = super::shutdown_signal() => Err(signal),
    }
}

/// The error on stderr, as the local mode prints it.
fn report(err: &RemoteError) {
    super::print_failure(err, err.traceback());
}
