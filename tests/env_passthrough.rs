//! `env_passthrough`: a worker inherits only the listed variables of the
//! host's environment (exact names and `*` prefixes), and still starts and
//! serves; without it, the whole environment passes as before.
//!
//! Its own binary, because it sets variables in the test process's
//! environment before any runtime starts.

mod common;

use snakepit::{Ffi, Snakepit};

async fn getenv(sp: &Snakepit, name: &str) -> Option<String> {
    sp.call("os", "getenv", [name], ())
        .await
        .expect("os.getenv")
        .extract()
        .expect("a str or None")
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

    let sp = common::start(filtered).await.sp;
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
    let sp = common::start(explicit).await.sp;
    assert_eq!(
        getenv(&sp, "SECRET_TOKEN").await.as_deref(),
        Some("given on purpose")
    );
    assert_eq!(getenv(&sp, "LC_SNAKEPIT_TEST").await, None);
    sp.shutdown().await;

    // Unset: the whole environment, as before.
    let sp = common::start(open).await.sp;
    assert_eq!(
        getenv(&sp, "SECRET_TOKEN").await.as_deref(),
        Some("hunter2")
    );
    sp.shutdown().await;
}
