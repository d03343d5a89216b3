//! `snakepit demo`: the tour. Starts the default pool, makes plain calls,
//! concurrent calls across workers, a streaming call with a progress bar (on
//! stderr, drawn only on a terminal), a
//! Python exception as a typed error, a worker killed with SIGKILL mid-call
//! (the call is retried, the pool heals), a session keeping state in its
//! worker while Python calls a Rust host tool, and prints a summary table.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use snakepit::{
    Call, Error, Event, Ffi, HostArgs, HostCallContext, HostTool, ObjectRef, Snakepit, Value,
};
use tokio::sync::broadcast::error::RecvError;

use crate::RuntimeOpts;

const DEFAULT_METRICS: &str = "127.0.0.1:9568";

/// Counts every call the demo makes, to compare with the metrics endpoint.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    outcomes: BTreeMap<String, u64>,
}

impl Tally {
    async fn call(
        &mut self,
        sp: &Snakepit,
        tool: &str,
        args: serde_json::Value,
    ) -> Result<Value, Error> {
        let t = Instant::now();
        let r = sp.execute(tool, args).await;
        self.note(t.elapsed(), &r);
        r
    }

    fn note<T>(&mut self, took: Duration, r: &Result<T, Error>) {
        self.latencies.push(took);
        let outcome = match r {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        *self.outcomes.entry(outcome.to_string()).or_default() += 1;
    }
}

pub async fn run(mut opts: RuntimeOpts, linger: u64) -> anyhow::Result<ExitCode> {
    let metrics_addr: SocketAddr = opts.metrics_addr.unwrap_or(DEFAULT_METRICS.parse()?);
    opts.metrics_addr = Some(metrics_addr);
    println!("snakepit demo\n");
    let started = Instant::now();
    let sp = super::start(super::builder(&opts)?).await?;
    let pool = sp.default_pool().clone();
    let status = pool.status().await?;
    let first = status.workers.first();
    println!(
        "1. Started pool `{}`: {} workers of `{}` ready in {:.2} s (Python {}, GIL {}).",
        status.name,
        status.workers_up,
        pool.config().adapter,
        started.elapsed().as_secs_f64(),
        first
            .and_then(|w| w.python_version.clone())
            .unwrap_or_default(),
        if first.and_then(|w| w.gil_enabled).unwrap_or(true) {
            "on"
        } else {
            "off"
        },
    );
    println!("   Prometheus metrics: http://{metrics_addr}/metrics\n");

    let outcome = super::run_until_signal(&sp, async {
        let mut tally = Tally::default();
        tour(&sp, &mut tally).await?;
        summary(&sp, &tally).await?;
        if linger > 0 {
            println!(
                "\nLingering {linger} s; metrics at http://{metrics_addr}/metrics (Ctrl-C to stop)."
            );
            tokio::time::sleep(Duration::from_secs(linger)).await;
        }
        Ok(())
    })
    .await?;
    Ok(match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(signal) => signal.exit_code(),
    })
}

async fn tour(sp: &Snakepit, tally: &mut Tally) -> anyhow::Result<()> {
    println!("2. Calls (ints stay ints, bytes stay bytes, arrays keep dtype and shape):");
    for (tool, args) in [
        ("echo", json!({"message": "hello from Rust"})),
        ("add", json!({"a": 2, "b": 3})),
        ("add", json!({"a": 0.5, "b": 0.25})),
        ("random_bytes", json!({"n": 8})),
        ("matrix", json!({"rows": 2, "cols": 3})),
    ] {
        let v = tally.call(sp, tool, args.clone()).await?;
        println!("   {tool}({args}) -> {} [{}]", short(&v), v.type_name());
    }

    println!(
        "\n3. Concurrent calls across workers: 4 x sleep(200 ms) on {} workers:",
        sp.default_pool().config().size
    );
    let t = Instant::now();
    let calls = (0..4).map(|_| async {
        let t = Instant::now();
        let r = sp.execute("sleep", json!({"ms": 200})).await;
        (t.elapsed(), r)
    });
    for (took, r) in futures::future::join_all(calls).await {
        tally.note(took, &r);
        r?;
    }
    println!(
        "   all 4 done in {:.0} ms (one worker alone would need 800 ms)",
        t.elapsed().as_secs_f64() * 1e3
    );

    println!("\n4. A streaming tool, chunk by chunk:");
    std::io::stdout().flush().ok();
    let t = Instant::now();
    let mut stream = sp
        .execute_stream("progress", json!({"steps": 20, "delay_ms": 40}))
        .await?;
    let bar = progress_bar(100);
    let mut chunks = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        chunks += 1;
        let pct = chunk
            .value
            .get("percent")
            .and_then(|v| f64::try_from(v.clone()).ok())
            .unwrap_or(0.0);
        bar.set_position(pct.round() as u64);
        bar.set_message(format!("chunk {}", chunk.seq));
    }
    bar.finish_and_clear();
    println!(
        "   {chunks} chunks in {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    tally.note(t.elapsed(), &Ok::<(), Error>(()));

    println!("\n5. A Python exception arrives as a typed error:");
    match tally
        .call(sp, "fail", json!({"message": "the model is not loaded"}))
        .await
    {
        Err(Error::Python(exc)) => {
            println!(
                "   Error::Python {{ python_type: {:?}, message: {:?} }}",
                exc.python_type, exc.message
            );
            if let Some(line) = exc.traceback.lines().rev().nth(1) {
                println!("   traceback ends: {}", line.trim());
            }
        }
        other => anyhow::bail!("expected a Python exception, got {other:?}"),
    }
    match tally.call(sp, "no_such_tool", json!({})).await {
        Err(e @ Error::UnknownTool { .. }) => println!("   {e}"),
        other => anyhow::bail!("expected UnknownTool, got {other:?}"),
    }
    match tally.call(sp, "add", json!({"a": "two", "b": 3})).await {
        Err(e @ Error::BadArguments { .. }) => println!("   {e}"),
        other => anyhow::bail!("expected BadArguments, got {other:?}"),
    }

    println!("\n6. 1000 quick calls, 16 at a time:");
    let t = Instant::now();
    let results: Vec<_> = futures::stream::iter(0..1000)
        .map(|i| async move {
            let t = Instant::now();
            let r = sp.execute("add", json!({"a": i, "b": 1})).await;
            (t.elapsed(), r)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for (took, r) in results {
        tally.note(took, &r);
        r?;
    }
    println!("   done in {:.0} ms", t.elapsed().as_secs_f64() * 1e3);

    kill_one(sp, tally).await?;
    sessions(sp, tally).await?;
    ffi(sp, tally).await
}

/// A session keeping state in its worker, and Python calling a Rust function.
async fn sessions(sp: &Snakepit, tally: &mut Tally) -> anyhow::Result<()> {
    println!("\n8. A session keeps state in its worker; Python calls back into Rust:");
    sp.register_host_tool(
        HostTool::new(
            "lookup_price",
            |_ctx: HostCallContext, args: HostArgs| async move {
                let item = args.require("item")?.clone();
                let price = match &item {
                    Value::Str(s) if s == "coffee" => 3.5,
                    _ => 1.0,
                };
                Ok(Value::map([("item", item), ("price", Value::Float(price))]))
            },
        )
        .description("Price of an item, from the Rust service")
        .param("item", "str", true),
    )?;
    let session = sp.new_session().await?;
    let mut total = Value::Null;
    for n in [1, 2, 3] {
        let t = Instant::now();
        let r = session.execute("tally", json!({ "n": n })).await;
        tally.note(t.elapsed(), &r);
        total = r?;
    }
    println!(
        "   session {}: tally(1), tally(2), tally(3) -> {} (state kept in its worker)",
        session.id(),
        short(&total)
    );
    let t = Instant::now();
    let r = session
        .execute(
            "ask_host",
            json!({"name": "lookup_price", "kwargs": {"item": "coffee"}}),
        )
        .await;
    tally.note(t.elapsed(), &r);
    println!(
        "   Python asked the host tool `lookup_price`: {} ({:.1} ms round trip)",
        short(&r?),
        t.elapsed().as_secs_f64() * 1e3
    );
    session.release().await?;
    println!("   released the session: its worker dropped the tally");
    Ok(())
}

/// The universal FFI: Python functions without a tool, objects kept as refs.
#[allow(clippy::approx_constant)] // 3.14159 is a number to round, not pi
async fn ffi(sp: &Snakepit, tally: &mut Tally) -> anyhow::Result<()> {
    println!("\n9. Any Python function, no tool needed (the universal FFI):");
    let session = sp.new_session().await?;
    let t = Instant::now();
    let root = session.call("math", "sqrt", [16], ()).await;
    tally.note(t.elapsed(), &root);
    let rounded = session
        .call("builtins", "round", [3.14159], [("ndigits", 2)])
        .await?;
    println!(
        "   math.sqrt(16) -> {}, round(3.14159, ndigits=2) -> {}",
        short(&root?),
        short(&rounded)
    );
    let path: ObjectRef = session
        .call("pathlib", "Path", ["/tmp/report.csv"], ())
        .await?
        .extract()?;
    let name = session.attr(&path, "name").await?;
    println!(
        "   pathlib.Path('/tmp/report.csv') stays in Python as ref {} ({}); .name -> {}",
        path.id,
        path.type_name,
        short(&name)
    );
    let big = session.call("builtins", "pow", [2, 100], ()).await?;
    println!("   2 ** 100 -> {} (exact)", short(&big));
    session.release_ref(&path).await?;
    match session.attr(&path, "name").await {
        Err(err @ Error::RefNotFound { .. }) => println!("   after release_ref: {err}"),
        other => anyhow::bail!("a released ref must be gone, got {other:?}"),
    }
    session.release().await?;
    Ok(())
}

/// Kills the worker running an idempotent call: the call is retried on
/// another worker and the pool is back at full strength moments later.
async fn kill_one(sp: &Snakepit, tally: &mut Tally) -> anyhow::Result<()> {
    println!("\n7. kill -9 of the worker running an idempotent call:");
    let pool = sp.default_pool().clone();
    let t = Instant::now();
    let p = pool.clone();
    let call = tokio::spawn(async move {
        p.execute(Call::new("sleep").kwarg("ms", 300).idempotent(true))
            .await
    });
    let victim = loop {
        let status = pool.status().await?;
        if let Some(w) = status.workers.iter().find(|w| w.in_flight > 0) {
            break w.clone();
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(5),
            "the call never started"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let pid = victim.pid.unwrap_or_default();
    let size = pool.config().size;
    let mut events = sp.subscribe();
    let healed = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(Event::WorkerReady(r)) if r.workers_up == size => return Some(Instant::now()),
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return None,
            }
        }
    });
    // SAFETY: kill has no memory-safety preconditions.
    anyhow::ensure!(
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } == 0,
        "could not kill worker {pid}"
    );
    let killed = Instant::now();
    println!("   killed {} (pid {pid}) while it ran `sleep`", victim.id);
    let result = call.await?;
    tally.note(t.elapsed(), &result);
    println!(
        "   the call was retried on another worker and returned {} after {:.0} ms",
        short(&result?),
        t.elapsed().as_secs_f64() * 1e3
    );
    let healed = tokio::time::timeout(Duration::from_secs(10), healed)
        .await
        .map_err(|_| anyhow::anyhow!("the pool did not heal within 10 s"))??
        .ok_or_else(|| anyhow::anyhow!("telemetry closed"))?;
    println!(
        "   a new worker was started: {size} of {size} up again {:.0} ms after the kill",
        healed.duration_since(killed).as_secs_f64() * 1e3
    );
    Ok(())
}

async fn summary(sp: &Snakepit, tally: &Tally) -> anyhow::Result<()> {
    let mut lat = tally.latencies.clone();
    lat.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("\nSummary");
    println!("  {:<28} {:>4}", "calls", lat.len());
    for (outcome, n) in &tally.outcomes {
        println!("  {:<28} {:>4}", format!("  outcome={outcome}"), n);
    }
    println!(
        "  {:<22} {:>8.0} us",
        "latency p50",
        us(super::percentile(&lat, 50.0))
    );
    println!(
        "  {:<22} {:>8.0} us",
        "latency p99",
        us(super::percentile(&lat, 99.0))
    );
    println!(
        "  {:<22} {:>8.0} us",
        "latency max",
        us(lat.last().copied().unwrap_or_default())
    );
    println!(
        "\n  {:<12} {:>8} {:>10} {:>9}",
        "worker", "pid", "completed", "ready"
    );
    for pool in sp.pools() {
        for w in pool.status().await?.workers {
            println!(
                "  {:<12} {:>8} {:>10} {:>9}",
                w.id,
                w.pid.unwrap_or_default(),
                w.completed,
                w.ready
            );
        }
    }
    Ok(())
}

/// A progress bar on stderr, drawn only when stderr is a terminal and
/// `NO_COLOR` is unset ([`super::stderr_is_styled`]); otherwise hidden, so
/// no redrawn frames reach a log.
fn progress_bar(len: u64) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    if !super::stderr_is_styled() {
        return ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template("   [{bar:20}] {pos:>3}%  {msg}")
        .expect("a valid progress template")
        .progress_chars("#>-");
    ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr()).with_style(style)
}

fn short(v: &Value) -> String {
    if let Value::NdArray(a) = v {
        return format!(
            "ndarray(dtype={}, shape={:?}, {} bytes)",
            a.dtype,
            a.shape,
            a.data.len()
        );
    }
    let s = v.to_json_tagged().to_string();
    if s.len() > 90 {
        format!("{}...", &s[..87])
    } else {
        s
    }
}
