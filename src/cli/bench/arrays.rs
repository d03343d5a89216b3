//! The arrays section of `snakepit bench`: float64 ndarrays of 1, 16 and 64
//! MiB from Python to Rust, from Rust to Python (from the heap, and from a
//! buffer already in the pool's shared memory) and there and back, against
//! pickling the same array there and back through a `multiprocessing.Pipe`
//! in the same run. Each figure is the median of several calls after two
//! warm-up calls; every result is checked after the timed calls.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use snakepit::{Call, NdArray, PoolConfig, PoolHandle, Snakepit, Value, shm};

use super::{TempDir, peer_report, round2, verdict};

/// Sizes measured, in MiB, and calls timed at each.
const SIZES: [(usize, usize); 3] = [(1, 200), (16, 20), (64, 10)];
const MIB: usize = 1 << 20;

/// Goals (issue: 64 MiB at >= 4 GB/s each way, i.e. <= 17 ms; the round
/// trip >= 5x faster than the pipe at 64 MiB and >= 2x at 1 MiB).
const GOAL_ONE_WAY_64_MS: f64 = 17.0;
const GOAL_ROUND_TRIP_VS_PIPE_64: f64 = 5.0;
const GOAL_ROUND_TRIP_VS_PIPE_1: f64 = 2.0;

const MODULE: &str = "snakepit_bench_arrays";
const ADAPTER_PY: &str = r#""""The adapter `snakepit bench` measures arrays with."""

import numpy as np

from snakepit_bridge import BaseAdapter, tool

# Arrays built once per size: the calls measure moving them, not making them.
_made = {}


class ArraysBench(BaseAdapter):
    @tool
    def make(self, n: int):
        """n float64 ones (the same array each time)."""
        a = _made.get(n)
        if a is None:
            a = _made[n] = np.ones(n)
        return a

    @tool
    def nbytes(self, x) -> int:
        """The array's size in bytes."""
        return int(x.nbytes)

    @tool
    def echo(self, x):
        """The array as it came."""
        return x
"#;

const PIPE_PY: &str = r#""""The peer of the arrays section: pickling the array there and back."""

import json
import multiprocessing as mp
import sys
import time

import numpy as np


def _echo(conn):
    while True:
        a = conn.recv()
        if a is None:
            break
        conn.send(a)


if __name__ == "__main__":
    sizes = json.loads(sys.argv[1])
    parent, child = mp.Pipe()
    p = mp.Process(target=_echo, args=(child,))
    p.start()
    out = {}
    for mib, n in sizes:
        a = np.ones(mib * 131072)
        for _ in range(2):
            parent.send(a)
            parent.recv()
        times = []
        for _ in range(n):
            t = time.perf_counter()
            parent.send(a)
            b = parent.recv()
            times.append(time.perf_counter() - t)
        assert b.shape == a.shape and b[-1] == 1.0
        times.sort()
        out[str(mib)] = times[len(times) // 2] * 1000.0
    parent.send(None)
    p.join()
    print(json.dumps(out))
"#;

/// One size's figures, in milliseconds per call (median).
#[derive(Debug, Clone, Serialize)]
pub(super) struct ArrayRow {
    pub mib: usize,
    pub python_to_rust_ms: f64,
    pub rust_to_python_ms: f64,
    /// Rust → Python of bytes already in the pool's shared memory.
    pub rust_to_python_shared_ms: f64,
    pub round_trip_ms: f64,
    /// Pickled there and back through a `multiprocessing.Pipe`.
    pub pipe_round_trip_ms: Option<f64>,
}

impl ArrayRow {
    fn gbps(&self, ms: f64) -> f64 {
        (self.mib * MIB) as f64 / (ms / 1000.0) / 1e9
    }

    fn vs_pipe(&self) -> Option<f64> {
        self.pipe_round_trip_ms
            .map(|p| round2(p / self.round_trip_ms))
    }
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct ArraysReport {
    pub shared_threshold_bytes: u64,
    pub rows: Vec<ArrayRow>,
    pub goals: ArrayGoals,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct ArrayGoals {
    pub one_way_64_ms_max: f64,
    pub round_trip_vs_pipe_64_min: f64,
    pub round_trip_vs_pipe_1_min: f64,
    pub one_way_64_met: Option<bool>,
    pub round_trip_64_met: Option<bool>,
    pub round_trip_1_met: Option<bool>,
}

#[derive(Deserialize)]
struct PipeTimes(std::collections::HashMap<String, f64>);

pub(super) async fn run(python: &Path, peers: bool, json: bool) -> anyhow::Result<ArraysReport> {
    let dir = TempDir::new()?;
    std::fs::write(dir.0.join(format!("{MODULE}.py")), ADAPTER_PY)?;
    std::fs::write(dir.0.join("pipe.py"), PIPE_PY)?;
    let mut pool = PoolConfig::named("arrays");
    pool.size = 1;
    pool.adapter = format!("{MODULE}.ArraysBench");
    pool.python_path = vec![dir.0.clone()];
    let threshold = pool.shared_threshold_bytes;
    let sp = Snakepit::builder()
        .python(python)
        .pool(pool)
        .start()
        .await?;
    if !json {
        eprintln!("measuring arrays (1, 16, 64 MiB, both ways)...");
    }
    let measured = {
        let sp = sp.clone();
        tokio::spawn(async move { measure(&sp).await }).await?
    };
    sp.shutdown().await;
    let mut rows = measured?;
    if peers {
        if !json {
            eprintln!("measuring multiprocessing.Pipe with the same arrays...");
        }
        let sizes: Vec<(usize, usize)> = SIZES.iter().map(|&(mib, n)| (mib, n.min(20))).collect();
        let out = tokio::process::Command::new(python)
            .arg(dir.0.join("pipe.py"))
            .arg(serde_json::to_string(&sizes)?)
            .output()
            .await?;
        let PipeTimes(times) = peer_report(out)?;
        for row in &mut rows {
            row.pipe_round_trip_ms = times.get(&row.mib.to_string()).map(|t| round2(*t));
        }
    }
    let at = |mib: usize| rows.iter().find(|r| r.mib == mib);
    let goals = ArrayGoals {
        one_way_64_ms_max: GOAL_ONE_WAY_64_MS,
        round_trip_vs_pipe_64_min: GOAL_ROUND_TRIP_VS_PIPE_64,
        round_trip_vs_pipe_1_min: GOAL_ROUND_TRIP_VS_PIPE_1,
        one_way_64_met: at(64).map(|r| {
            r.python_to_rust_ms <= GOAL_ONE_WAY_64_MS && r.rust_to_python_ms <= GOAL_ONE_WAY_64_MS
        }),
        round_trip_64_met: at(64)
            .and_then(ArrayRow::vs_pipe)
            .map(|x| x >= GOAL_ROUND_TRIP_VS_PIPE_64),
        round_trip_1_met: at(1)
            .and_then(ArrayRow::vs_pipe)
            .map(|x| x >= GOAL_ROUND_TRIP_VS_PIPE_1),
    };
    Ok(ArraysReport {
        shared_threshold_bytes: threshold,
        rows,
        goals,
    })
}

fn ones(bytes: Bytes, n: usize) -> Value {
    Value::NdArray(NdArray {
        dtype: "float64".into(),
        shape: vec![n as u64],
        data: bytes,
    })
}

fn all_ones(v: &Value, n: usize) -> bool {
    matches!(v, Value::NdArray(a) if a.dtype == "float64"
        && a.shape == [n as u64]
        && a.data.chunks_exact(8).all(|x| f64::from_le_bytes(x.try_into().unwrap()) == 1.0))
}

/// The median of `reps` timed runs of `f`, after two untimed ones; the
/// last result is returned for checking.
async fn median_ms<F, Fut>(reps: usize, f: F) -> anyhow::Result<(f64, Value)>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Value, snakepit::Error>>,
{
    f().await?;
    f().await?;
    let mut times = Vec::with_capacity(reps);
    let mut last = Value::Null;
    for _ in 0..reps {
        let t = Instant::now();
        last = f().await?;
        times.push(t.elapsed());
    }
    times.sort();
    let median: Duration = times[times.len() / 2];
    Ok((round2(median.as_secs_f64() * 1000.0), last))
}

async fn measure(sp: &Snakepit) -> anyhow::Result<Vec<ArrayRow>> {
    let pool: &PoolHandle = sp.default_pool();
    let mut rows = Vec::new();
    for (mib, reps) in SIZES {
        let n = mib * MIB / 8;
        let heap = Bytes::from(
            std::iter::repeat_n(1.0f64.to_le_bytes(), n)
                .flatten()
                .collect::<Vec<u8>>(),
        );
        let mut buf = shm::buffer(pool, mib * MIB)?;
        buf.copy_from_slice(&heap);
        let shared = buf.freeze();

        let (py_to_rust, got) =
            median_ms(reps, || pool.execute(Call::new("make").arg(n as i64))).await?;
        anyhow::ensure!(all_ones(&got, n), "make({n}) did not return {n} ones");
        drop(got);
        let (rust_to_py, got) = median_ms(reps, || {
            pool.execute(Call::new("nbytes").arg(ones(heap.clone(), n)))
        })
        .await?;
        anyhow::ensure!(
            got == Value::from((mib * MIB) as i64),
            "nbytes said {got:?}"
        );
        let (rust_to_py_shared, got) = median_ms(reps, || {
            pool.execute(Call::new("nbytes").arg(ones(shared.clone(), n)))
        })
        .await?;
        anyhow::ensure!(
            got == Value::from((mib * MIB) as i64),
            "nbytes said {got:?}"
        );
        let (round_trip, got) = median_ms(reps, || {
            pool.execute(Call::new("echo").arg(ones(heap.clone(), n)))
        })
        .await?;
        anyhow::ensure!(all_ones(&got, n), "echo changed the array");
        rows.push(ArrayRow {
            mib,
            python_to_rust_ms: py_to_rust,
            rust_to_python_ms: rust_to_py,
            rust_to_python_shared_ms: rust_to_py_shared,
            round_trip_ms: round_trip,
            pipe_round_trip_ms: None,
        });
    }
    Ok(rows)
}

impl ArraysReport {
    pub(super) fn print(&self) {
        println!(
            "\nfloat64 ndarrays (shared memory from {} KiB), ms per call (median), GB/s\n",
            self.shared_threshold_bytes / 1024
        );
        println!(
            "{:<8} {:>16} {:>16} {:>16} {:>16} {:>16} {:>9}",
            "size",
            "Python->Rust",
            "Rust->Python",
            "(from shm buf)",
            "round trip",
            "Pipe round trip",
            "vs Pipe"
        );
        for r in &self.rows {
            let cell = |ms: f64| format!("{ms:.2} ({:.1})", r.gbps(ms));
            println!(
                "{:<8} {:>16} {:>16} {:>16} {:>16} {:>16} {:>9}",
                format!("{} MiB", r.mib),
                cell(r.python_to_rust_ms),
                cell(r.rust_to_python_ms),
                cell(r.rust_to_python_shared_ms),
                cell(r.round_trip_ms),
                r.pipe_round_trip_ms
                    .map_or("-".to_string(), |p| format!("{p:.2} ({:.1})", r.gbps(p))),
                r.vs_pipe().map_or("-".to_string(), |x| format!("{x:.1}x")),
            );
        }
        let g = &self.goals;
        println!(
            "\narrays goals: 64 MiB each way <= {} ms: {}; round trip vs Pipe >= {}x at 64 MiB: {}, >= {}x at 1 MiB: {}",
            g.one_way_64_ms_max,
            verdict(g.one_way_64_met),
            g.round_trip_vs_pipe_64_min,
            verdict(g.round_trip_64_met),
            g.round_trip_vs_pipe_1_min,
            verdict(g.round_trip_1_met),
        );
    }
}
