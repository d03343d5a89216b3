//! Who may use the gRPC API: the bearer token (missing or wrong is
//! UNAUTHENTICATED and counted; health and reflection need none), TLS with a
//! self-signed certificate generated here, mTLS (a client without a
//! certificate signed by the CA is refused), and the `snakepit serve` binary
//! as a user runs it: ready line, token file, SIGTERM, and its refusal to
//! listen on an open address without a token.

mod common;
mod grpc;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{showcase, wait_event};
use grpc::{api, execute, kind, loopback, serve, value, with_token};
use snakepit::server::Token;
use snakepit::telemetry::GrpcUnauthenticated;
use snakepit::{Event, ListenAddr, Value};
use snakepit_proto::v1;
use snakepit_proto::v1::snakepit_client::SnakepitClient;
use tokio::sync::broadcast;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::health_check_response::ServingStatus;

const WAIT: Duration = Duration::from_secs(5);

fn add() -> v1::ExecuteRequest {
    execute("add", [("a", 2.into()), ("b", 3.into())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_need_the_token_and_refusals_are_counted() {
    let config = loopback().token(Token::new("s3cret").unwrap());
    let mut s = serve(vec![showcase("secure", 1)], config).await;
    let ch = grpc::channel(&s.addr).await;
    let mut c = api(ch.clone());

    let missing = refused(&mut c, add(), &mut s.events).await;
    assert_eq!((missing.method, missing.reason), ("Execute", "missing"));
    assert!(missing.peer.is_some(), "the log names the client");

    let invalid = refused(&mut c, with_token(add(), "guess"), &mut s.events).await;
    assert_eq!(invalid.reason, "invalid");
    wait_event(
        &mut s.events,
        WAIT,
        |e| matches!(e, Event::GrpcRequestFinished(f) if f.code == "UNAUTHENTICATED"),
    )
    .await;

    let sum = c
        .execute(with_token(add(), "s3cret"))
        .await
        .expect("the token");
    assert_eq!(value(sum.into_inner().value), Value::Int(5));

    // Health and reflection answer without a token.
    assert_eq!(
        grpc::health(ch.clone(), "").await.unwrap(),
        ServingStatus::Serving
    );
    let services = grpc::reflected_services(ch).await;
    assert!(services.iter().any(|s| s == "snakepit.v1.Snakepit"));
    s.sp.shutdown().await;
}

/// `request` refused as UNAUTHENTICATED (kind `unauthenticated`), and the
/// event that logged and counted the refusal.
async fn refused(
    c: &mut SnakepitClient<Channel>,
    request: impl tonic::IntoRequest<v1::ExecuteRequest>,
    events: &mut broadcast::Receiver<Event>,
) -> GrpcUnauthenticated {
    let status = c.execute(request).await.expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(kind(&status), "unauthenticated");
    let Event::GrpcUnauthenticated(refusal) =
        wait_event(events, WAIT, |e| matches!(e, Event::GrpcUnauthenticated(_))).await
    else {
        unreachable!()
    };
    refusal
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, cert_pem) = grpc::self_signed(dir.path(), "server");
    let s = serve(vec![showcase("tls", 1)], loopback().tls(&cert, &key)).await;

    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&cert_pem))
        .domain_name("localhost");
    let ch = Endpoint::from_shared(grpc::url(&s.addr, "https"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("a TLS connection");
    let sum = api(ch).execute(add()).await.expect("add over TLS");
    assert_eq!(value(sum.into_inner().value), Value::Int(5));

    // Plaintext to a TLS port gets nowhere.
    let plain = Endpoint::from_shared(grpc::url(&s.addr, "http"))
        .unwrap()
        .connect_timeout(WAIT)
        .timeout(WAIT)
        .connect()
        .await;
    if let Ok(ch) = plain {
        let refused = api(ch).execute(add()).await.expect_err("no plaintext");
        assert_ne!(refused.code(), Code::Ok);
    }
    s.sp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_refuses_clients_without_a_certificate_of_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, cert_pem) = grpc::self_signed(dir.path(), "server");
    let (ca_path, client_cert_pem, client_key_pem) = grpc::client_ca(dir.path());
    let config = loopback().tls(&cert, &key).client_ca(&ca_path);
    let s = serve(vec![showcase("mtls", 1)], config).await;

    let tls = || {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&cert_pem))
            .domain_name("localhost")
    };
    let endpoint = |tls: ClientTlsConfig| {
        Endpoint::from_shared(grpc::url(&s.addr, "https"))
            .unwrap()
            .connect_timeout(WAIT)
            .timeout(WAIT)
            .tls_config(tls)
            .unwrap()
    };
    // Without a client certificate the handshake fails, at connect or at
    // the first call.
    if let Ok(ch) = endpoint(tls()).connect().await {
        let refused = api(ch).execute(add()).await.expect_err("no certificate");
        assert_ne!(refused.code(), Code::Ok);
    }
    let identity = Identity::from_pem(&client_cert_pem, &client_key_pem);
    let ch = endpoint(tls().identity(identity))
        .connect()
        .await
        .expect("a client with the CA's certificate");
    let sum = api(ch).execute(add()).await.expect("add over mTLS");
    assert_eq!(value(sum.into_inner().value), Value::Int(5));
    s.sp.shutdown().await;
}

/// `snakepit serve ARGS` from the package root (where the managed venv is).
fn snakepit_serve(args: &[&str]) -> Child {
    common::snakepit_command()
        .arg("serve")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run snakepit serve")
}

/// Waits for the ready line; the address it names and the lines before it.
fn ready_line(child: &mut Child, within: Duration) -> (ListenAddr, Vec<String>) {
    let stderr = common::line_channel(child.stderr.take().expect("stderr is piped"));
    let (addr, seen) = common::wait_serving(child, &stderr, within);
    (addr.parse().expect("an address"), seen)
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let until = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait for snakepit") {
            return status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("snakepit serve still running after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serve_binary_serves_with_a_token_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "from-the-file\n").unwrap();
    set_mode(&token_file, 0o644);
    let mut child = snakepit_serve(&[
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    let (addr, before) = ready_line(&mut child, Duration::from_secs(30));
    assert!(
        before
            .iter()
            .any(|l| l.contains("readable by group or others")),
        "a warning about the token file's mode: {before:#?}"
    );
    let ch = grpc::channel(&addr).await;
    let mut c = api(ch.clone());
    let sum = c.execute(with_token(add(), "from-the-file")).await.unwrap();
    assert_eq!(value(sum.into_inner().value), Value::Int(5));
    let bare = c.execute(add()).await.unwrap_err();
    assert_eq!(kind(&bare), "unauthenticated");
    assert_eq!(grpc::health(ch, "").await.unwrap(), ServingStatus::Serving);

    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert_eq!(status.code(), Some(143), "{status:?}");
}

#[test]
fn the_serve_binary_refuses_an_open_address_without_a_token() {
    let mut child = snakepit_serve(&["--listen", "0.0.0.0:0"]);
    let status = wait_exit(&mut child, Duration::from_secs(15));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("--token-file"), "{stderr}");
    assert!(stderr.contains("--insecure"), "{stderr}");
    assert!(!stderr.contains("serving on"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, " \n").unwrap();
    let mut child = snakepit_serve(&["--token-file", empty.to_str().unwrap()]);
    let status = wait_exit(&mut child, Duration::from_secs(15));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("is empty"), "{stderr}");
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
