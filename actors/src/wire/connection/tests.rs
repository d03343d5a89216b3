//! The connection against a scripted worker over an in-memory stream: no
//! process, no pool.

use std::sync::Mutex as StdMutex;

use bytes::BytesMut;
use snakepit_proto::v1::host_call_result::Outcome;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, oneshot};

use super::*;

/// What the connection reported.
#[derive(Debug)]
enum Ev {
    Done(u64),
    Hello,
    StartupFailed,
    Pong(u64),
    Closed(Closed),
}

struct Recorder(mpsc::UnboundedSender<Ev>);

impl ConnectionEvents for Recorder {
    fn done(&self, id: u64) {
        let _ = self.0.send(Ev::Done(id));
    }
    fn hello(&self, _: v1::Hello) {
        let _ = self.0.send(Ev::Hello);
    }
    fn startup_failed(&self, _: v1::Error) {
        let _ = self.0.send(Ev::StartupFailed);
    }
    fn pong(&self, seq: u64) {
        let _ = self.0.send(Ev::Pong(seq));
    }
    fn closed(&self, why: Closed) {
        let _ = self.0.send(Ev::Closed(why));
    }
}

/// Host calls that wait until the test answers them (`held`), or answer at
/// once with `answer`.
#[derive(Default)]
struct Calls {
    held: StdMutex<Vec<HostCallReply>>,
    answer: Option<v1::Value>,
}

struct SharedCalls(Arc<Calls>);

impl HostCalls for SharedCalls {
    fn start(
        &self,
        _: &Arc<str>,
        _: v1::HostCall,
        reply: HostCallReply,
        _: mpsc::UnboundedSender<Frame>,
    ) {
        match &self.0.answer {
            Some(value) => {
                let result = v1::HostCallResult {
                    outcome: Some(Outcome::Value(value.clone())),
                };
                tokio::spawn(reply.send(result));
            }
            None => self.0.held.lock().unwrap().push(reply),
        }
    }
}

const LIMIT: usize = 4096;

struct Harness {
    conn: Connection<()>,
    events: mpsc::UnboundedReceiver<Ev>,
    worker: DuplexStream,
    buf: BytesMut,
    calls: Arc<Calls>,
}

fn start(max_host_calls: usize, calls: Calls) -> Harness {
    let (host, worker) = tokio::io::duplex(64 * 1024);
    let (read, write) = tokio::io::split(host);
    let (tx, events) = mpsc::unbounded_channel();
    let calls = Arc::new(calls);
    let conn = Connection::start(
        read,
        write,
        Limits {
            max_frame_bytes: LIMIT,
            busy_poll: Duration::ZERO,
            max_host_calls,
        },
        Listeners {
            events: Recorder(tx),
            host_calls: Arc::new(SharedCalls(calls.clone())),
            pool_name: Arc::from("p"),
            worker_id: Arc::from("p-0.0"),
            telemetry: Telemetry::default(),
        },
        None,
    );
    Harness {
        conn,
        events,
        worker,
        buf: BytesMut::new(),
        calls,
    }
}

fn pending(tx: oneshot::Sender<Result<Value, Error>>) -> Pending<()> {
    Pending {
        tool: Arc::from("t"),
        sink: Sink::Unary(tx),
        retry: None,
        delivered: false,
        span: tracing::Span::none(),
        done_first: true,
    }
}

impl Harness {
    /// The worker sends `frame`.
    async fn send(&mut self, frame: Frame) {
        let mut buf = BytesMut::new();
        framing::encode(&frame, &mut buf, LIMIT).unwrap();
        self.worker.write_all(&buf).await.unwrap();
    }

    /// The next frame the worker reads.
    async fn recv(&mut self) -> Frame {
        loop {
            if let Some(frame) = framing::decode(&mut self.buf, LIMIT).unwrap() {
                return frame;
            }
            let n = self.worker.read_buf(&mut self.buf).await.unwrap();
            assert!(n > 0, "the connection closed");
        }
    }

    async fn event(&mut self) -> Ev {
        self.events.recv().await.expect("an event")
    }

    /// Registers a unary request `id`; its answer comes on the receiver.
    fn unary(&self, id: u64) -> oneshot::Receiver<Result<Value, Error>> {
        let (tx, rx) = oneshot::channel();
        assert!(self.conn.register(id, pending(tx)).is_ok());
        rx
    }
}

fn int(i: i64) -> v1::Value {
    Value::from(i).into()
}

fn host_call_error(frame: Frame) -> v1::Error {
    match frame.kind {
        Some(Kind::HostCallResult(v1::HostCallResult {
            outcome: Some(Outcome::Error(e)),
        })) => e,
        other => panic!("not a host call error: {other:?}"),
    }
}

#[tokio::test]
async fn an_answer_reaches_its_caller_and_the_request_is_done() {
    let mut h = start(4, Calls::default());
    let rx = h.unary(7);
    h.conn.send(frames::execute(7, v1::Execute::default()));
    assert_eq!(h.recv().await.id, 7);
    h.send(frames::result(7, int(3))).await;
    assert_eq!(rx.await.unwrap().unwrap(), Value::from(3));
    assert!(matches!(h.event().await, Ev::Done(7)));
}

#[tokio::test]
async fn an_answer_for_a_request_of_no_one_here_closes_the_connection() {
    let mut h = start(4, Calls::default());
    let _rx = h.unary(1);
    h.send(frames::result(2, int(3))).await;
    match h.event().await {
        Ev::Closed(Closed::Protocol(why)) => assert!(why.contains("request 2"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_forgotten_request_is_still_this_workers_to_answer() {
    let mut h = start(4, Calls::default());
    let rx = h.unary(5);
    assert!(h.conn.forget(5).is_some());
    drop(rx);
    h.send(frames::result(5, int(1))).await;
    assert!(matches!(h.event().await, Ev::Done(5)));
    // Its second answer is no longer its own.
    h.send(frames::result(5, int(1))).await;
    assert!(matches!(h.event().await, Ev::Closed(Closed::Protocol(_))));
}

#[tokio::test]
async fn hello_is_said_once() {
    let mut h = start(4, Calls::default());
    h.send(frames::hello(v1::Hello::default())).await;
    assert!(matches!(h.event().await, Ev::Hello));
    h.send(frames::pong(3, 0, 0)).await;
    assert!(matches!(h.event().await, Ev::Pong(3)));
    h.send(frames::hello(v1::Hello::default())).await;
    match h.event().await {
        Ev::Closed(Closed::Protocol(why)) => assert!(why.contains("second Hello"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_startup_error_counts_only_before_hello() {
    let mut h = start(4, Calls::default());
    h.send(frames::error(0, v1::Error::default())).await;
    assert!(matches!(h.event().await, Ev::StartupFailed));
    let mut h = start(4, Calls::default());
    h.send(frames::hello(v1::Hello::default())).await;
    assert!(matches!(h.event().await, Ev::Hello));
    h.send(frames::error(0, v1::Error::default())).await;
    assert!(matches!(h.event().await, Ev::Closed(Closed::Protocol(_))));
}

#[tokio::test]
async fn a_worker_sending_a_host_frame_is_refused() {
    let mut h = start(4, Calls::default());
    h.send(frames::execute(9, v1::Execute::default())).await;
    match h.event().await {
        Ev::Closed(Closed::Protocol(why)) => assert!(why.contains("host-only"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_end_of_the_stream_is_reported_and_the_table_drains() {
    let mut h = start(4, Calls::default());
    let _rx = h.unary(1);
    h.worker.shutdown().await.unwrap();
    assert!(matches!(h.event().await, Ev::Closed(Closed::Eof)));
    let left: Vec<u64> = h.conn.close().into_iter().map(|(id, _)| id).collect();
    assert_eq!(left, vec![1]);
    let (tx, _rx) = oneshot::channel();
    assert!(h.conn.register(2, pending(tx)).is_err());
}

#[tokio::test]
async fn host_calls_past_the_bound_are_refused_busy() {
    let mut h = start(1, Calls::default());
    let call = |tool: &str| v1::HostCall {
        tool: tool.into(),
        ..Default::default()
    };
    h.send(frames::host_call(1, call("slow"))).await;
    h.send(frames::host_call(2, call("more"))).await;
    let refused = h.recv().await;
    assert_eq!(refused.id, 2);
    let e = host_call_error(refused);
    assert_eq!(e.kind, v1::ErrorKind::Busy as i32);
    assert_eq!(e.details.get("tool").map(String::as_str), Some("more"));
    // The held call answers, which frees its permit for the next one.
    let reply = h.calls.held.lock().unwrap().pop().expect("held call");
    reply
        .send(v1::HostCallResult {
            outcome: Some(Outcome::Value(int(1))),
        })
        .await;
    assert_eq!(h.recv().await.id, 1);
    h.send(frames::host_call(3, call("again"))).await;
    let admitted = async {
        while h.calls.held.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), admitted)
        .await
        .expect("the freed permit admits the next call");
}

#[tokio::test]
async fn a_host_call_answer_too_large_to_send_becomes_an_error() {
    let big: v1::Value = Value::from(vec![0u8; 2 * LIMIT]).into();
    let mut h = start(
        4,
        Calls {
            answer: Some(big),
            ..Default::default()
        },
    );
    h.send(frames::host_call(4, v1::HostCall::default())).await;
    let answer = h.recv().await;
    assert_eq!(answer.id, 4);
    let e = host_call_error(answer);
    assert_eq!(e.kind, v1::ErrorKind::PayloadTooLarge as i32);
}

fn run_frame(id: u64, seq: u64, run: Vec<v1::Value>, is_final: bool) -> Frame {
    let mut frame = frames::chunk(id, seq, None, is_final);
    if let Some(Kind::Chunk(c)) = frame.kind.as_mut() {
        c.run = run;
    }
    frame
}

#[tokio::test]
async fn a_run_of_items_reaches_the_stream_one_chunk_each() {
    let mut h = start(4, Calls::default());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut p = pending(oneshot::channel().0);
    p.sink = Sink::Stream(tx);
    assert!(h.conn.register(9, p).is_ok());
    h.send(run_frame(9, 0, vec![int(10), int(11), int(12)], false))
        .await;
    h.send(frames::chunk(9, 3, Some(int(13)), false)).await;
    h.send(run_frame(9, 4, vec![int(14)], false)).await;
    h.send(frames::chunk(9, 5, None, true)).await;
    let mut got = Vec::new();
    while let Some(item) = rx.recv().await {
        let c = item.unwrap();
        assert!(c.metadata.is_empty());
        got.push((c.seq, c.value));
    }
    let want: Vec<_> = (0..5).map(|i| (i, Value::from(10 + i as i64))).collect();
    assert_eq!(got, want);
    assert!(matches!(h.event().await, Ev::Done(9)));
}

#[tokio::test]
async fn a_run_that_claims_to_be_final_breaks_the_protocol() {
    let mut h = start(4, Calls::default());
    let (tx, _rx) = mpsc::unbounded_channel();
    let mut p = pending(oneshot::channel().0);
    p.sink = Sink::Stream(tx);
    assert!(h.conn.register(4, p).is_ok());
    h.send(run_frame(4, 0, vec![int(1)], true)).await;
    match h.event().await {
        Ev::Closed(Closed::Protocol(why)) => assert!(why.contains("run"), "{why}"),
        other => panic!("{other:?}"),
    }
}
