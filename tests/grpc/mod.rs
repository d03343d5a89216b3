//! Helpers for the gRPC server's tests: a runtime serving on a loopback port
//! (or a Unix socket), tonic clients of it (plain, with a token, over TLS),
//! and readers of the statuses and values it answers with.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use snakepit::{Event, ListenAddr, PoolConfig, ServeConfig, Snakepit, Telemetry, Value};
use snakepit_proto::v1;
use snakepit_proto::v1::snakepit_client::SnakepitClient;
use tokio::sync::broadcast;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic_types::{ErrorInfo, StatusExt};

/// A runtime that serves, and a telemetry receiver subscribed before its
/// first worker started.
pub struct Served {
    pub sp: Snakepit,
    pub events: broadcast::Receiver<Event>,
    pub addr: ListenAddr,
}

/// Serving on an ephemeral loopback port.
pub fn loopback() -> ServeConfig {
    ServeConfig::new("127.0.0.1:0".parse().expect("a listen address"))
}

/// Starts `pools` and serves them as `config` says.
pub async fn serve(pools: Vec<PoolConfig>, config: ServeConfig) -> Served {
    let telemetry = Telemetry::new();
    let events = telemetry.subscribe();
    let mut builder = Snakepit::builder().telemetry(telemetry).serve(config);
    for pool in pools {
        builder = builder.pool(pool);
    }
    let sp = builder
        .start()
        .await
        .expect("the runtime starts and serves");
    let addr = sp.server_addr().cloned().expect("it serves");
    Served { sp, events, addr }
}

/// `http://HOST:PORT` of a TCP address.
pub fn url(addr: &ListenAddr, scheme: &str) -> String {
    match addr {
        ListenAddr::Tcp(at) => format!("{scheme}://{at}"),
        ListenAddr::Unix(_) => panic!("{addr} is not a TCP address"),
    }
}

/// A plaintext channel to `addr`: a TCP address or a Unix socket.
pub async fn channel(addr: &ListenAddr) -> Channel {
    let connected = match addr {
        ListenAddr::Tcp(_) => {
            Endpoint::from_shared(url(addr, "http"))
                .expect("an endpoint")
                .connect_timeout(Duration::from_secs(5))
                .connect()
                .await
        }
        ListenAddr::Unix(path) => {
            let socket = path.clone();
            Endpoint::from_static("http://localhost")
                .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                    let socket = socket.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(socket).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                    }
                }))
                .await
        }
    };
    connected.expect("the server accepts")
}

/// An API client over `channel`.
pub fn api(channel: Channel) -> SnakepitClient<Channel> {
    SnakepitClient::new(channel).max_decoding_message_size(128 * 1024 * 1024)
}

/// An API client of `addr`.
pub async fn client(addr: &ListenAddr) -> SnakepitClient<Channel> {
    api(channel(addr).await)
}

/// A request carrying `authorization: Bearer <token>`.
pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {token}").parse().expect("ascii");
    request.metadata_mut().insert("authorization", value);
    request
}

/// A request with a deadline.
pub fn with_deadline<T>(message: T, deadline: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(deadline);
    request
}

/// The ErrorInfo of a status, checked against the server's conventions.
pub fn info(status: &tonic::Status) -> ErrorInfo {
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "snakepit");
    assert_eq!(
        info.reason,
        info.metadata["kind"].to_ascii_uppercase(),
        "{info:?}"
    );
    info
}

/// The `kind` of a failed call.
pub fn kind(status: &tonic::Status) -> String {
    info(status).metadata["kind"].clone()
}

/// Keyword arguments.
pub fn kwargs<const N: usize>(pairs: [(&str, Value); N]) -> HashMap<String, v1::Value> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into()))
        .collect()
}

/// An ExecuteRequest of `tool` with keyword arguments.
pub fn execute<const N: usize>(tool: &str, pairs: [(&str, Value); N]) -> v1::ExecuteRequest {
    v1::ExecuteRequest {
        tool: tool.to_string(),
        kwargs: kwargs(pairs),
        ..Default::default()
    }
}

/// An optional wire value as a `Value`.
pub fn value(v: Option<v1::Value>) -> Value {
    v.map(Value::from).unwrap_or(Value::Null)
}

/// A self-signed certificate for `localhost`, as (certificate, key) PEM
/// files in `dir`.
pub fn self_signed(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("a certificate");
    let cert_pem = certified.cert.pem();
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key, cert_pem)
}

/// A CA (its certificate written to `dir/ca.pem`) and a client certificate
/// it signed, for mTLS: (the CA file, the client's certificate PEM, its key
/// PEM).
pub fn client_ca(dir: &Path) -> (std::path::PathBuf, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client_cert = CertificateParams::new(vec!["client".to_string()])
        .unwrap()
        .signed_by(&client_key, &ca)
        .unwrap();
    (ca_path, client_cert.pem(), client_key.serialize_pem())
}

/// The health status of `service` as the server reports it.
pub async fn health(
    channel: Channel,
    service: &str,
) -> Result<tonic_health::pb::health_check_response::ServingStatus, tonic::Status> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await?
        .into_inner();
    Ok(answer.status())
}

/// The services the server lists through reflection (v1).
pub async fn reflected_services(channel: Channel) -> Vec<String> {
    use futures::StreamExt as _;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner();
    match answers.next().await {
        Some(Ok(answer)) => match answer.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("not a service list: {other:?}"),
        },
        other => panic!("no reflection answer: {other:?}"),
    }
}
