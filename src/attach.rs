//! The host's end of the node agents' links: `snakepit.v1.Agents/Attach`
//! (`proto/snakepit/v1/agent.proto`) on the `[remote] listen` address, with
//! the same token gate and TLS as the API server.
//!
//! Each `Attach` stream must open with `Register`; the runtime's agent
//! registry admits the agent (or the call fails: `FAILED_PRECONDITION` for
//! a pool the host does not run remotely, `UNAUTHENTICATED` for a wrong
//! token, counted in `snakepit_grpc_unauthenticated_total`) and runs the
//! link until it ends. HTTP/2 keepalive runs under the link's own
//! heartbeat, so a dead peer is found either way.
//!
//! The listener lives as long as the runtime's pools: at shutdown the
//! pools stop their remote workers through the links (in-flight calls
//! finish, the workers exit), and only then are the links and the listener
//! closed. So unlike the API server it is not a service the runtime stops
//! first; [`Snakepit::shutdown`](crate::Snakepit::shutdown) ends it last.

use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use snakepit_actors::remote::{Agents, LinkConfig};
use snakepit_proto::v1::agents_server::{self, AgentsServer};
use snakepit_proto::v1::{self, agent_message};
use tokio::sync::{oneshot, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Server;
use tonic::{Request, Response, Status, Streaming};

use crate::Snakepit;
use crate::config::{RemoteSection, ServerSection};
use crate::server::{ListenAddr, Listener, ServeConfig, ServeError, auth};

/// How long a new link may take to say `Register`.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest message on a link: a relayed chunk is 256 KiB at most.
const MAX_MESSAGE: usize = 4 << 20;

/// Where agents attach and how links are kept.
#[derive(Debug, Clone)]
pub struct AttachConfig {
    serve: ServeConfig,
    link: LinkConfig,
}

impl AttachConfig {
    /// Agents attach on `listen`, without a token or TLS, with the default
    /// heartbeat (1 s) and liveness timeout (3 s).
    pub fn new(listen: ListenAddr) -> Self {
        Self {
            serve: ServeConfig::new(listen),
            link: LinkConfig::default(),
        }
    }

    /// The `[remote]` section of a configuration file; `None` when it sets
    /// no address.
    pub fn from_section(section: &RemoteSection) -> Result<Option<Self>, ServeError> {
        let Some(listen) = &section.listen else {
            return Ok(None);
        };
        if section.heartbeat.is_zero() || section.liveness_timeout < 2 * section.heartbeat {
            return Err(ServeError::Liveness {
                heartbeat_ms: section.heartbeat.as_millis() as u64,
                liveness_timeout_ms: section.liveness_timeout.as_millis() as u64,
            });
        }
        let serve = ServeConfig::from_section(&ServerSection {
            listen: Some(listen.clone()),
            token_file: section.token_file.clone(),
            tls_cert: section.tls_cert.clone(),
            tls_key: section.tls_key.clone(),
            client_ca: section.client_ca.clone(),
            insecure: section.insecure,
        })?;
        Ok(Some(Self {
            serve,
            link: LinkConfig {
                heartbeat: section.heartbeat,
                liveness_timeout: section.liveness_timeout,
                ..LinkConfig::default()
            },
        }))
    }

    /// Checks what needs no file or socket (see [`ServeConfig::validate`]):
    /// an address other machines can reach needs a token.
    pub fn validate(&self) -> Result<(), ServeError> {
        self.serve.validate()
    }

    /// Agents must present this token.
    pub fn token(mut self, token: auth::Token) -> Self {
        self.serve = self.serve.token(token);
        self
    }

    /// TLS with this certificate chain and private key (PEM files).
    pub fn tls(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.serve = self.serve.tls(cert, key);
        self
    }

    /// Agents must present a certificate signed by this CA (PEM file): mTLS.
    pub fn client_ca(mut self, ca: impl Into<PathBuf>) -> Self {
        self.serve = self.serve.client_ca(ca);
        self
    }

    /// The link's heartbeat and liveness timeout.
    pub fn liveness(mut self, heartbeat: Duration, timeout: Duration) -> Self {
        self.link.heartbeat = heartbeat;
        self.link.liveness_timeout = timeout;
        self
    }
}

/// The running listener; dropping it stops it.
pub(crate) struct AttachServer {
    pub addr: ListenAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl AttachServer {
    /// Ends every link and the listener.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}

/// Binds the address and serves `Attach` for `snakepit`'s agent registry.
pub(crate) async fn start(
    snakepit: &Snakepit,
    config: AttachConfig,
) -> Result<AttachServer, ServeError> {
    let AttachConfig { serve, mut link } = config;
    serve.validate()?;
    link.run_id = snakepit.run_id().to_string();
    link.max_frame_bytes = snakepit
        .pools()
        .map(|p| p.config().max_frame_bytes as u64)
        .max()
        .unwrap_or(link.max_frame_bytes);
    let mut server = Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(link.heartbeat))
        // A backstop behind the link's own liveness timeout, which names
        // the silence for what it is (`timeout`, not a failed stream).
        .http2_keepalive_timeout(Some(link.liveness_timeout + link.heartbeat));
    if let Some(tls) = serve.tls_config()? {
        server = server
            .tls_config(tls)
            .map_err(|e| ServeError::Tls(format!("{e:?}")))?;
    }
    let (listener, addr) = Listener::bind(serve.listen_addr()).await?;
    let telemetry = snakepit.runtime().telemetry().clone();
    let (stop, stopped) = watch::channel(false);
    let service = AttachService {
        agents: snakepit.runtime().agents().clone(),
        link,
        stopped: stopped.clone(),
    };
    let router = server
        .layer(auth::GateLayer::new(serve.token_owned(), None, telemetry))
        .add_service(
            AgentsServer::new(service)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        );
    let mut until = stopped;
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = until.wait_for(|stop| *stop).await;
        };
        let served = match listener {
            Listener::Tcp(incoming) => {
                router
                    .serve_with_incoming_shutdown(incoming, shutdown)
                    .await
            }
            Listener::Unix(incoming, _file) => {
                router
                    .serve_with_incoming_shutdown(incoming, shutdown)
                    .await
            }
        };
        if let Err(err) = served {
            tracing::error!(error = %err, "The agents' listener failed.");
        }
    });
    tracing::info!(%addr, "Listening for node agents.");
    Ok(AttachServer { addr, stop, task })
}

struct AttachService {
    agents: Agents,
    link: LinkConfig,
    stopped: watch::Receiver<bool>,
}

type Outbound = Pin<Box<dyn Stream<Item = Result<v1::HostMessage, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl agents_server::Agents for AttachService {
    type AttachStream = Outbound;

    async fn attach(
        &self,
        request: Request<Streaming<v1::AgentMessage>>,
    ) -> Result<Response<Outbound>, Status> {
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(REGISTER_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no Register within 10 s"))??;
        let Some(v1::AgentMessage {
            kind: Some(agent_message::Kind::Register(register)),
        }) = first
        else {
            return Err(Status::invalid_argument(
                "the first message of a link must be Register",
            ));
        };
        let mut admission = self
            .agents
            .admit(register, self.link.clone())
            .map_err(|refused| Status::failed_precondition(refused.0))?;
        let outbound = admission.outbound();
        let mut stopped = self.stopped.clone();
        let (ended, ended_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let stop = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            admission.run(inbound, stop).await;
            let _ = ended.send(());
        });
        // The stream ends with the link, whoever still holds a sender.
        let stream = UnboundedReceiverStream::new(outbound)
            .map(Ok)
            .take_until(ended_rx);
        Ok(Response::new(Box::pin(stream)))
    }
}
