//! `snakepit doctor`: what Python we found, what is installed, and whether a
//! worker starts. Fails with a clear message when Python is missing or too old.

use std::process::ExitCode;

use snakepit::python_env::{self, PythonEnvConfig};

use crate::RuntimeOpts;

pub async fn run(opts: RuntimeOpts) -> anyhow::Result<ExitCode> {
    let env_config = PythonEnvConfig::default();
    println!("snakepit {}", env!("CARGO_PKG_VERSION"));
    let base = match python_env::probe(&env_config.base_python) {
        Ok(info) => info,
        Err(err) => {
            println!("  base python   : MISSING");
            eprintln!("error: {err}");
            return Ok(ExitCode::FAILURE);
        }
    };
    println!(
        "  base python   : {} ({} {})",
        base.executable, base.implementation, base.version
    );
    let env = tokio::task::spawn_blocking(move || python_env::ensure(&env_config)).await??;
    let info = python_env::probe(&env.python)?;
    println!(
        "  venv          : {}{}",
        env.venv.display(),
        if env.installed {
            " (just installed)"
        } else {
            ""
        }
    );
    println!(
        "  worker python : {} (Python {})",
        info.executable, info.version
    );
    println!(
        "  GIL           : {}{}",
        if info.gil_enabled { "on" } else { "off" },
        if info.free_threaded_build {
            " (free-threaded build)"
        } else {
            ""
        }
    );
    for (name, version) in python_env::packages(&env.python) {
        println!("  {name:<14}: {version}");
    }
    let started = std::time::Instant::now();
    let snakepit = match super::builder(&opts)?.start().await {
        Ok(s) => s,
        Err(err) => {
            println!("  worker start  : FAILED");
            eprintln!("error: {err}");
            return Ok(ExitCode::FAILURE);
        }
    };
    for pool in snakepit.pools() {
        let status = pool.status().await?;
        println!(
            "  pool {:<9}: {} of {} workers up in {:.2} s, adapter {}",
            status.name,
            status.workers_up,
            status.size,
            started.elapsed().as_secs_f64(),
            pool.config().adapter
        );
        if let Some(w) = status.workers.first() {
            println!(
                "  worker        : pid {}, Python {}, GIL {}, capacity {}",
                w.pid.unwrap_or_default(),
                w.python_version.clone().unwrap_or_default(),
                if w.gil_enabled.unwrap_or(true) {
                    "on"
                } else {
                    "off"
                },
                w.capacity
            );
        }
        let tools: Vec<String> = status
            .tools
            .iter()
            .map(|t| {
                format!(
                    "{}{}",
                    t.name,
                    if t.supports_streaming {
                        " (stream)"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        println!("  tools         : {}", tools.join(", "));
    }
    snakepit.shutdown().await;
    println!("ok");
    Ok(ExitCode::SUCCESS)
}
