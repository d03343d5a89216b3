//! `snakepit call` and `snakepit shell` as a user runs them: the built binary
//! against real Python workers. `call` prints one line of tagged JSON (exit
//! 0) or an error on stderr (exit 1); `shell` answers JSON lines, remembers
//! refs by id, streams, and survives bad lines until EOF.

mod common;

use std::io::Write;
use std::process::{Child, ChildStdin, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::rss_bytes;
use serde_json::{Value as Json, json};

/// Every command of these tests must end within this long.
const LIMIT: Duration = Duration::from_secs(25);

/// A one-worker configuration for the shell, its helpers in `HELPERS_DIR`
/// (the `call` tests run without `--config`, which is one worker too).
const CONFIG: &str = r#"
[[pools]]
name = "default"
size = 1
adapter = "snakepit_bridge.showcase.ShowcaseAdapter"

[pools.ffi]
helper_dirs = ["HELPERS_DIR"]
"#;

/// `text_ops.py` in the shell's helper directory.
const HELPER: &str = "def shout(text, *, times=1):\n    return (text.upper() + '!') * times\n";

/// `snakepit args` from the package root, killed if it outlives `LIMIT`.
fn snakepit(args: &[&str]) -> Output {
    common::run_snakepit(args, LIMIT)
}

/// Stdout of a `snakepit call` that must succeed, trimmed.
fn call_ok(args: &[&str]) -> String {
    let mut full = vec!["call"];
    full.extend_from_slice(args);
    let out = snakepit(&full);
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "snakepit {full:?}: {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn call_prints_a_float_result_as_json() {
    assert_eq!(call_ok(&["math", "sqrt", "16"]), "4.0");
}

#[test]
fn call_passes_keyword_arguments() {
    let out = call_ok(&[
        "builtins",
        "round",
        "3.14159",
        "--kwargs",
        r#"{"ndigits": 2}"#,
    ]);
    assert_eq!(out, "3.14");
}

#[test]
fn call_takes_text_that_is_not_json_as_a_string() {
    assert_eq!(
        call_ok(&["os.path", "basename", "/tmp/x.txt"]),
        r#""x.txt""#
    );
}

#[test]
fn call_prints_an_object_it_cannot_send_as_a_ref() {
    let out = call_ok(&["pathlib", "Path", "/tmp/x.txt"]);
    let json: Json = serde_json::from_str(&out).expect("one line of JSON");
    assert_eq!(json["__type__"], "ref", "{out}");
    assert_eq!(json["python_type"], "pathlib.PosixPath", "{out}");
    assert!(
        json["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{out}"
    );
}

#[test]
fn a_failing_call_names_the_python_exception_and_exits_1() {
    let out = snakepit(&["call", "no_such_module_for_snakepit", "f"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    assert!(stderr.contains("error: "), "{stderr}");
    assert!(stderr.contains("ModuleNotFoundError"), "{stderr}");
}

// ----------------------------------------------------------------- shell

/// A running `snakepit shell`, fed one line at a time; every line in and out
/// is kept for failure messages.
struct Shell {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    deadline: Instant,
    transcript: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Shell {
    /// `snakepit shell --config FILE` with `CONFIG` and its helper.
    fn start() -> Self {
        Self::start_with(&[], LIMIT)
    }

    /// As [`Shell::start`], with more arguments and a time limit of its own.
    fn start_with(extra: &[&str], limit: Duration) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let helpers = dir.path().join("helpers");
        std::fs::create_dir(&helpers).expect("the helper directory");
        std::fs::write(helpers.join("text_ops.py"), HELPER).expect("write the helper");
        let config = dir.path().join("snakepit.toml");
        let helpers = helpers.to_str().expect("a UTF-8 temporary path");
        std::fs::write(&config, CONFIG.replace("HELPERS_DIR", helpers)).expect("write the config");
        let mut child = common::snakepit_command()
            .arg("shell")
            .arg("--config")
            .arg(&config)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run snakepit shell");
        let stdin = child.stdin.take();
        let lines = common::line_channel(child.stdout.take().expect("piped stdout"));
        Self {
            child,
            stdin,
            lines,
            deadline: Instant::now() + limit,
            transcript: Vec::new(),
            _dir: dir,
        }
    }

    /// Sends one line of text.
    fn send_raw(&mut self, text: &str) {
        self.transcript.push(format!("> {text}"));
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{text}").expect("write to the shell");
        stdin.flush().expect("flush the shell's stdin");
    }

    /// The next output line, parsed.
    fn read(&mut self) -> Json {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let line = match self.lines.recv_timeout(left) {
            Ok(line) => line,
            Err(e) => panic!("no answer ({e:?}); so far:\n{}", self.transcript()),
        };
        self.transcript.push(format!("< {line}"));
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{}", self.transcript()))
    }

    /// Sends a request and reads its (one-line) answer.
    fn ask(&mut self, request: Json) -> Json {
        self.send_raw(&request.to_string());
        self.read()
    }

    /// `ok` of the answer to `request`, which must not fail.
    fn ok(&mut self, request: Json) -> Json {
        let answer = self.ask(request);
        match answer.get("ok") {
            Some(ok) => ok.clone(),
            None => panic!("expected ok, got {answer}\n{}", self.transcript()),
        }
    }

    /// `error` of the answer to `request`, which must fail.
    fn error(&mut self, request: Json) -> Json {
        let answer = self.ask(request);
        match answer.get("error") {
            Some(error) => error.clone(),
            None => panic!("expected an error, got {answer}\n{}", self.transcript()),
        }
    }

    fn transcript(&self) -> String {
        self.transcript.join("\n")
    }

    /// Closes stdin; the shell must then exit 0 with nothing more to say.
    /// Prints the transcript (shown with `--nocapture`).
    fn finish(mut self) {
        drop(self.stdin.take());
        while self.child.try_wait().expect("wait for the shell").is_none() {
            assert!(
                Instant::now() < self.deadline,
                "the shell did not exit after EOF\n{}",
                self.transcript()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = self.child.wait().expect("the shell's status");
        assert!(status.success(), "{status:?}\n{}", self.transcript());
        let rest: Vec<String> = self.lines.try_iter().collect();
        assert!(rest.is_empty(), "unexpected output after EOF: {rest:?}");
        println!("{}", self.transcript());
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The id of a ref in `answer`, checking its tag.
fn ref_id(value: &Json, tag: &str) -> String {
    assert_eq!(value["__type__"], tag, "{value}");
    value["id"].as_str().expect("a ref id").to_string()
}

#[test]
fn shell_keeps_refs_by_id_until_they_are_released() {
    let mut shell = Shell::start();
    let path = shell.ok(json!({"id": 1, "op": "call", "module": "pathlib", "function": "Path", "args": ["/tmp/x.txt"]}));
    assert_eq!(path["python_type"], "pathlib.PosixPath");
    let path = ref_id(&path, "ref");
    let name = shell.ask(json!({"id": 2, "op": "attr", "ref": path, "name": "name"}));
    assert_eq!(name, json!({"id": 2, "ok": "x.txt"}));
    assert_eq!(
        shell.ok(json!({"id": 3, "op": "release_ref", "ref": path})),
        Json::Null
    );
    let error = shell.error(json!({"id": 4, "op": "attr", "ref": path, "name": "name"}));
    assert_eq!(error["kind"], "ref_not_found", "{error}");
    shell.finish();
}

#[test]
fn a_script_names_a_result_ref_by_its_request_id() {
    let mut shell = Shell::start();
    shell.ok(json!({"id": "p", "op": "call", "module": "pathlib", "function": "PurePosixPath", "args": ["/srv/a.csv"]}));
    let suffix = shell.ok(json!({"id": 2, "op": "attr", "ref": "$p", "name": "suffix"}));
    assert_eq!(suffix, json!(".csv"));
    let text = shell.ok(json!({"id": 3, "op": "call", "module": "builtins", "function": "str", "args": [{"__ref__": "$p"}]}));
    assert_eq!(text, json!("/srv/a.csv"));
    // Not a ref: no alias.
    let error = shell.error(json!({"id": 4, "op": "attr", "ref": "$2", "name": "x"}));
    assert_eq!(error["kind"], "ref_not_found", "{error}");
    shell.finish();
}

#[test]
fn shell_calls_methods_reads_module_attributes_and_passes_refs_as_arguments() {
    let mut shell = Shell::start();
    let path = shell.ok(json!({"op": "call_class", "module": "pathlib", "class": "PurePosixPath", "args": ["/tmp/x.txt"]}));
    let path = ref_id(&path, "ref");
    let md_ref =
        shell.ok(json!({"op": "method", "ref": path, "name": "with_suffix", "args": [".md"]}));
    let md = ref_id(&md_ref, "ref");
    assert_eq!(
        shell.ok(json!({"op": "method", "ref": md, "name": "as_posix"})),
        "/tmp/x.md"
    );
    // A ref given as the tagged object it was shown as works as well as its id.
    assert_eq!(
        shell.ok(json!({"op": "attr", "ref": md_ref, "name": "suffix"})),
        ".md"
    );
    assert_eq!(
        shell.ok(json!({"op": "call", "module": "builtins", "function": "str", "args": [{"__ref__": path}]})),
        "/tmp/x.txt"
    );
    assert_eq!(
        shell.ok(json!({"op": "repr", "ref": path})),
        "PurePosixPath('/tmp/x.txt')"
    );
    let ns = shell.ok(json!({"op": "call_class", "module": "types", "class": "SimpleNamespace", "kwargs": {"a": 1}}));
    let ns = ref_id(&ns, "ref");
    assert_eq!(
        shell.ok(json!({"op": "set_attr", "ref": ns, "name": "b", "value": [{"__ref__": path}]})),
        Json::Null
    );
    let b = shell.ok(json!({"op": "attr", "ref": ns, "name": "b"}));
    assert_eq!(
        b[0]["id"],
        path.as_str(),
        "the same object, the same ref: {b}"
    );
    assert_eq!(shell.ok(json!({"op": "attr", "ref": ns, "name": "a"})), 1);
    assert_eq!(
        shell.ok(json!({"op": "helper", "name": "text_ops.shout", "args": ["hi"], "kwargs": {"times": 2}})),
        "HI!HI!"
    );
    let list = shell.ok(
        json!({"op": "call_class", "module": "collections", "class": "deque", "args": [[1, 2, 3]]}),
    );
    let list = ref_id(&list, "ref");
    assert_eq!(shell.ok(json!({"op": "len", "ref": list})), 3);
    assert_eq!(
        shell.ok(json!({"op": "get", "module": "math", "attr": "pi"})),
        std::f64::consts::PI
    );
    let error =
        shell.error(json!({"op": "call", "module": "math", "function": "sqrt", "args": [-1]}));
    assert_eq!(error["kind"], "python_exception", "{error}");
    assert_eq!(error["python_type"], "ValueError", "{error}");
    assert!(error["traceback"].as_str().is_some(), "{error}");
    assert_eq!(shell.ok(json!({"op": "release_session"})), Json::Null);
    // The session's refs are gone; the next line runs in a new session.
    let error = shell.error(json!({"op": "attr", "ref": md, "name": "name"}));
    assert!(
        error["kind"] == "session_mismatch" || error["kind"] == "ref_not_found",
        "{error}"
    );
    shell.finish();
}

#[test]
fn shell_streams_items_and_steps_through_stream_refs() {
    let mut shell = Shell::start();
    shell.send_raw(&json!({"id": "s", "op": "stream", "module": "builtins", "function": "range", "args": [100], "limit": 3}).to_string());
    for i in 0..3 {
        assert_eq!(shell.read(), json!({"id": "s", "item": i}));
    }
    assert_eq!(shell.read(), json!({"id": "s", "ok": {"count": 3}}));

    let count =
        shell.ok(json!({"op": "call", "module": "itertools", "function": "count", "args": [10]}));
    let count = ref_id(&count, "stream_ref");
    assert_eq!(shell.ok(json!({"op": "next", "ref": count})), 10);
    assert_eq!(
        shell.ask(json!({"id": 5, "op": "next", "ref": count, "n": 3})),
        json!({"id": 5, "ok": [11, 12, 13]})
    );

    let short =
        shell.ok(json!({"op": "call", "module": "builtins", "function": "iter", "args": [["a"]]}));
    let short = ref_id(&short, "stream_ref");
    assert_eq!(shell.ok(json!({"op": "next", "ref": short})), "a");
    assert_eq!(
        shell.ask(json!({"id": 6, "op": "next", "ref": short})),
        json!({"id": 6, "ok": null, "done": true})
    );
    shell.finish();
}

#[test]
fn shell_round_trips_bytes_and_answers_bad_lines_without_stopping() {
    let mut shell = Shell::start();
    let bytes = json!({"__type__": "bytes", "base64": "AAEC"});
    assert_eq!(
        shell.ok(json!({"op": "call", "module": "builtins", "function": "bytes", "args": [bytes]})),
        bytes
    );
    assert_eq!(
        shell.ok(json!({"op": "call", "module": "builtins", "function": "len", "args": [bytes]})),
        3
    );

    shell.send_raw("this is not json");
    let answer = shell.read();
    assert_eq!(answer["id"], Json::Null, "{answer}");
    assert_eq!(answer["error"]["kind"], "bad_request", "{answer}");
    for request in [
        json!({"id": 7, "op": "frobnicate"}),
        json!({"id": 8, "op": "call", "module": "math"}),
        json!({"id": 9, "module": "math", "function": "sqrt"}),
        json!({"id": 10, "op": "attr", "ref": "no/such", "name": "x"}),
        json!({"id": 11, "op": "call", "module": "math", "function": "sqrt", "args": [{"__type__": "nope"}]}),
    ] {
        let id = request["id"].clone();
        let answer = shell.ask(request);
        assert_eq!(answer["id"], id, "{answer}");
        let expected = if id == 10 {
            "ref_not_found"
        } else {
            "bad_request"
        };
        assert_eq!(answer["error"]["kind"], expected, "{answer}");
    }
    assert_eq!(
        shell.ask(
            json!({"id": 12, "op": "call", "module": "math", "function": "sqrt", "args": [16]})
        ),
        json!({"id": 12, "ok": 4.0})
    );
    shell.finish();
}

/// The pid of the shell's worker, asked through the FFI.
fn worker_pid(shell: &mut Shell) -> i64 {
    let pid = shell.ok(json!({"op": "call", "module": "os", "function": "getpid"}));
    pid.as_i64().unwrap_or_else(|| panic!("a pid, got {pid}"))
}

/// Runs `code` with `exec` in the worker; the answer's error, which it must raise.
fn exec_error(shell: &mut Shell, code: &str) -> Json {
    shell.error(json!({"op": "call", "module": "builtins", "function": "exec", "args": [code]}))
}

#[test]
fn shell_answers_hostile_requests_with_typed_errors_and_keeps_its_worker() {
    let mut shell = Shell::start();
    let pid = worker_pid(&mut shell);

    // 50 levels of lists: refused on the host before sending, naming the limit.
    let mut deep = json!(1);
    for _ in 0..50 {
        deep = json!([deep]);
    }
    let err =
        shell.error(json!({"op": "call", "module": "builtins", "function": "len", "args": [deep]}));
    assert_eq!(err["kind"], "bad_arguments", "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("LIMIT_VALUE_WIRE_DEPTH"),
        "{err}"
    );

    // An exception whose message holds a lone surrogate reaches the caller.
    let err = exec_error(
        &mut shell,
        "raise ValueError('bad name ' + b'\\xff'.decode('utf-8', 'surrogateescape'))",
    );
    assert_eq!(err["kind"], "python_exception", "{err}");
    assert_eq!(err["python_type"], "ValueError", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("bad name"),
        "{err}"
    );

    // A result holding one is a typed encoding error.
    let err = shell.error(json!({"op": "call", "module": "os", "function": "fsdecode",
        "args": [{"__type__": "bytes", "base64": "/w=="}]}));
    assert_eq!(err["kind"], "encoding", "{err}");

    // BaseExceptions are that request's error, not the worker's end.
    let err = shell.error(json!({"op": "call", "module": "sys", "function": "exit", "args": [3]}));
    assert_eq!(err["python_type"], "SystemExit", "{err}");
    let err = exec_error(&mut shell, "raise KeyboardInterrupt");
    assert_eq!(err["python_type"], "KeyboardInterrupt", "{err}");

    // Invalid UTF-8 on stdout and stderr, then printing still works.
    for fd in [1, 2] {
        let wrote = shell.ok(json!({"op": "call", "module": "os", "function": "write",
            "args": [fd, {"__type__": "bytes", "base64": "//4K"}]}));
        assert_eq!(wrote, 3);
    }
    let printed = shell.ok(json!({"op": "call", "module": "builtins", "function": "exec",
        "args": ["import sys\nfor _ in range(3):\n    print('still printing')\n    print('still', file=sys.stderr)"]}));
    assert_eq!(printed, Json::Null);

    assert_eq!(worker_pid(&mut shell), pid, "the worker never changed");
    shell.finish();
}

#[test]
fn thousands_of_sessions_opened_and_released_keep_the_shell_flat() {
    let mut shell = Shell::start_with(&[], Duration::from_secs(180));
    // Each round opens a session (a call that makes a ref) and releases it.
    let rounds = |shell: &mut Shell, n: usize| {
        for i in 0..n {
            shell.send_raw(
                &json!({"id": i, "op": "call", "module": "builtins", "function": "object"})
                    .to_string(),
            );
            shell.send_raw(r#"{"op": "release_session"}"#);
        }
        for _ in 0..n {
            let made = shell.read();
            assert_eq!(made["ok"]["__type__"], "ref", "{made}");
            let released = shell.read();
            assert_eq!(released["ok"], Json::Null, "{released}");
        }
        shell.transcript.clear();
    };
    rounds(&mut shell, 500);
    let before = rss_bytes(shell.child.id());
    rounds(&mut shell, 4_000);
    let after = rss_bytes(shell.child.id());
    let grown = after.saturating_sub(before);
    println!("RSS {before} -> {after} bytes over 4,000 sessions (+{grown})");
    assert!(
        grown < 4 << 20,
        "4,000 sessions grew the shell by {grown} bytes"
    );
    shell.finish();
}

#[test]
fn a_line_past_max_line_bytes_is_a_bad_request_and_the_shell_goes_on() {
    let mut shell = Shell::start_with(&["--max-line-bytes", "1048576"], LIMIT);
    let huge = format!(
        r#"{{"id": 1, "op": "call", "module": "builtins", "function": "len", "args": ["{}"]}}"#,
        "x".repeat(3 << 20)
    );
    {
        let stdin = shell.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{huge}").expect("write the long line");
    }
    let answer = shell.read();
    assert_eq!(answer["error"]["kind"], "bad_request", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-line-bytes"),
        "{answer}"
    );
    let len =
        shell.ok(json!({"op": "call", "module": "builtins", "function": "len", "args": ["abc"]}));
    assert_eq!(len, 3);
    shell.finish();
}
