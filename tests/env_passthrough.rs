//! `env_passthrough`: a worker inherits only the listed variables of the
//! host's environment (exact names and `*` prefixes), and still starts and
//! serves; without it, the whole environment passes as before.
//!
//! Its own binary, because it sets variables in the test process's
//! environment before any runtime starts.

mod common;

use snakepit::{Ffi, Snakepit, Value};

async fn getenv(sp: &Snakepit, name: &str) -> Option<String> {
    let v = sp
        .call("os", "getenv", [name], ())
        .await
        .expect("os.getenv");
    if v == Value::Null {
        None
    } else {
        Some(v.extract().expect("a str"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_see_only_the_passed_through_environment() {
    // SAFETY: set before any runtime, worker or other thread of this test
    // binary reads the environment (the binary holds this one test).
    unsafe {
        std::env::set_var("KEEP_ME", "kept");
        std::env::set_var("LC_SNAKEPIT_TEST", "prefixed");
        std::env::set_var("SECRET_TOKEN", "hunter2");
    }
    let filtered = common::showcase("filtered", 1).with_env_passthrough(["KEEP_ME", "LC_*"]);
    let mut explicit = common::showcase("explicit", 1).with_env_passthrough(["KEEP_ME"]);
    explicit
        .env
        .insert("SECRET_TOKEN".into(), "given on purpose".into());
    let open = common::showcase("open", 1);

    let sp = start(filtered).await;
    assert_eq!(getenv(&sp, "KEEP_ME").await.as_deref(), Some("kept"));
    assert_eq!(
        getenv(&sp, "LC_SNAKEPIT_TEST").await.as_deref(),
        Some("prefixed")
    );
    assert_eq!(getenv(&sp, "SECRET_TOKEN").await, None);
    // What snakepit sets itself is there, and PATH always passes.
    assert_eq!(
        getenv(&sp, "SNAKEPIT_RUN_ID").await.as_deref(),
        Some(sp.run_id())
    );
    assert!(getenv(&sp, "SNAKEPIT_WORKER_ID").await.is_some());
    assert_eq!(getenv(&sp, "PATH").await, std::env::var("PATH").ok());
    // And it serves tools.
    assert_eq!(common::add(sp.default_pool(), 2, 3).await, 5);
    sp.shutdown().await;

    // The pool's own `env` is set whatever the passthrough says.
    let sp = start(explicit).await;
    assert_eq!(
        getenv(&sp, "SECRET_TOKEN").await.as_deref(),
        Some("given on purpose")
    );
    assert_eq!(getenv(&sp, "LC_SNAKEPIT_TEST").await, None);
    sp.shutdown().await;

    // Unset: the whole environment, as before.
    let sp = start(open).await;
    assert_eq!(
        getenv(&sp, "SECRET_TOKEN").await.as_deref(),
        Some("hunter2")
    );
    sp.shutdown().await;
}

async fn start(pool: snakepit::PoolConfig) -> Snakepit {
    Snakepit::builder()
        .pool(pool)
        .start()
        .await
        .expect("the pool starts")
}

#[test]
fn env_passthrough_entries_must_be_names_or_prefixes() {
    for bad in ["", "*", "A*B", "A=B", "**"] {
        let cfg = common::showcase("bad", 1).with_env_passthrough([bad]);
        let err = cfg.validate().expect_err(bad);
        assert!(
            matches!(err, snakepit::Error::Config(_)),
            "{bad:?}: {err:?}"
        );
    }
    let toml = "[[pools]]\nname = \"p\"\nenv_passthrough = [\"HOME\", \"LC_*\"]\n";
    let config = snakepit::config::Config::parse(toml).expect("parses");
    assert_eq!(
        config.pools[0].env_passthrough,
        Some(vec!["HOME".to_string(), "LC_*".to_string()])
    );
}
