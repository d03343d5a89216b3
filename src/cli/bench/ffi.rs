//! The universal FFI section of `snakepit bench`: an FFI call against a plain
//! tool call doing the same work, and a generator streamed through the FFI.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use snakepit::{Call, Snakepit};

use super::{Rate, round2};

/// The universal FFI against a plain tool call, and its streaming.
#[derive(Serialize)]
pub(super) struct FfiReport {
    pub(super) calls: usize,
    pub(super) tool_p50_us: f64,
    pub(super) tool_p99_us: f64,
    pub(super) ffi_p50_us: f64,
    pub(super) ffi_p99_us: f64,
    pub(super) api_p50_us: f64,
    pub(super) api_p99_us: f64,
    /// FFI p50 / tool p50.
    pub(super) overhead: f64,
    /// `Snakepit::call` p50 / tool p50.
    pub(super) api_overhead: f64,
    pub(super) stream: Rate,
    pub(super) next_per_item: Rate,
}

/// Latency of `add(a=1, b=2)` (the showcase tool), of `operator.add(1, 2)`
/// through the FFI tool on the same pool, and through `Snakepit::call` (its
/// session), in interleaved rounds so that drift of the machine hits all
/// three alike; then items/s of a generator streamed through the FFI, and of
/// a stream ref drained one `next()` at a time.
pub(super) async fn ffi_report(
    sp: &Snakepit,
    calls: usize,
    items: u64,
) -> anyhow::Result<FfiReport> {
    use snakepit::Ffi as _;
    let pool = sp.default_pool().clone();
    let tool = || Call::new("add").kwarg("a", 1).kwarg("b", 2);
    let ffi = || {
        Call::new(snakepit::ffi::ops::CALL)
            .arg("operator")
            .arg("add")
            .arg(1)
            .arg(2)
    };
    let (mut t_tool, mut t_ffi, mut t_api) = (Vec::new(), Vec::new(), Vec::new());
    const ROUND: usize = 500;
    for round in 0..(calls / ROUND).max(1) + 1 {
        let warm = round == 0;
        for _ in 0..ROUND {
            let t = Instant::now();
            pool.execute(tool()).await?;
            if !warm {
                t_tool.push(t.elapsed());
            }
        }
        for _ in 0..ROUND {
            let t = Instant::now();
            let v = pool.execute(ffi()).await?;
            if !warm {
                t_ffi.push(t.elapsed());
            }
            anyhow::ensure!(v == snakepit::Value::Int(3), "operator.add(1, 2) gave {v}");
        }
        for _ in 0..ROUND {
            let t = Instant::now();
            sp.call("operator", "add", (1, 2), ()).await?;
            if !warm {
                t_api.push(t.elapsed());
            }
        }
    }
    for samples in [&mut t_tool, &mut t_ffi, &mut t_api] {
        samples.sort();
    }
    let us = |s: &[Duration], p: f64| crate::cli::percentile(s, p).as_secs_f64() * 1e6;

    let t = Instant::now();
    let mut stream = sp.stream("builtins", "range", [items as i64], ()).await?;
    let mut count = 0u64;
    while let Some(item) = stream.next().await {
        item?;
        count += 1;
    }
    anyhow::ensure!(
        count == items,
        "the FFI stream ended after {count} of {items}"
    );
    let streamed = Rate::new(count, t.elapsed());

    let few = (items / 20).max(1);
    let iter: snakepit::StreamRefValue = sp
        .call(
            "builtins",
            "iter",
            [snakepit::Value::from(vec![0i64; few as usize])],
            (),
        )
        .await?
        .extract()?;
    let iter = sp.stream_ref(&iter).await?;
    let t = Instant::now();
    let mut count = 0u64;
    while iter.next().await?.is_some() {
        count += 1;
    }
    let next_per_item = Rate::new(count, t.elapsed());
    sp.release_session().await?;

    let (tool_p50, ffi_p50, api_p50) = (us(&t_tool, 50.0), us(&t_ffi, 50.0), us(&t_api, 50.0));
    Ok(FfiReport {
        calls: t_tool.len(),
        tool_p50_us: tool_p50,
        tool_p99_us: us(&t_tool, 99.0),
        ffi_p50_us: ffi_p50,
        ffi_p99_us: us(&t_ffi, 99.0),
        api_p50_us: api_p50,
        api_p99_us: us(&t_api, 99.0),
        overhead: round2(ffi_p50 / tool_p50),
        api_overhead: round2(api_p50 / tool_p50),
        stream: streamed,
        next_per_item,
    })
}

impl FfiReport {
    /// The section's table.
    pub(super) fn print(&self, workers: usize) {
        println!(
            "\nUniversal FFI, 1 worker of {}, {} calls of each kind, interleaved\n",
            workers, self.calls
        );
        println!("{:<48} {:>14} {:>14}", "", "latency p50", "latency p99");
        for (name, p50, p99) in [
            (
                "plain tool call `add(a=1, b=2)`",
                self.tool_p50_us,
                self.tool_p99_us,
            ),
            (
                "FFI `operator.add(1, 2)` (pool)",
                self.ffi_p50_us,
                self.ffi_p99_us,
            ),
            (
                "FFI `operator.add(1, 2)` (Snakepit::call)",
                self.api_p50_us,
                self.api_p99_us,
            ),
        ] {
            println!("{name:<48} {p50:>11.1} us {p99:>11.1} us");
        }
        println!(
            "\nFFI vs plain tool call: {:.2}x the latency (API path {:.2}x)",
            self.overhead, self.api_overhead
        );
        println!(
            "\n{:<48} {:>9.0} /s",
            format!("FFI stream of `range({})`, pushed", self.stream.count),
            self.stream.per_s
        );
        println!(
            "{:<48} {:>9.0} /s",
            "FFI stream ref, next() per item (reference style)", self.next_per_item.per_s
        );
    }
}
