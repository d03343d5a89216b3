//! Generated wrappers (`snakepit gen rust`), compiled into this test crate and
//! called against real workers: typed results, class wrappers with methods
//! and properties, keyword-only options, and a wrong type refused at compile
//! time (by rustc itself, on the generated code). Also the drift check of
//! the checked-in files, the command line, and the `build.rs` helper with
//! its cache and its check mode.
//!
//! The files under `tests/codegen/` are what `snakepit gen rust` writes;
//! `SNAKEPIT_BLESS=1 cargo test --test codegen` writes them again.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use futures::TryStreamExt as _;
use snakepit::codegen::{Builder, CodegenError, Drift, Header};
use snakepit::{Error, Snakepit, Value};

#[allow(dead_code)]
#[rustfmt::skip]
#[path = "codegen/datetime.rs"]
mod datetime;
#[allow(dead_code)]
#[rustfmt::skip]
#[path = "codegen/json.rs"]
mod json;
#[allow(dead_code)]
#[rustfmt::skip]
#[path = "codegen/math.rs"]
mod math;
#[allow(dead_code)]
#[rustfmt::skip]
#[path = "codegen/numpy.rs"]
mod numpy;
#[allow(dead_code)]
#[rustfmt::skip]
#[path = "codegen/pathlib.rs"]
mod pathlib;

/// Every `snakepit gen` command must end within this long.
const LIMIT: Duration = Duration::from_secs(60);

/// The checked-in files, by module.
const GENERATED: &[&str] = &["math", "pathlib", "json", "datetime", "numpy"];

fn generated_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/codegen")
}

async fn runtime() -> Snakepit {
    common::start(common::showcase("default", 1)).await.sp
}

// ------------------------------------------------- calls on real workers

/// The Python exception type behind `err`, when Python raised.
fn raised(err: &Error) -> Option<&str> {
    err.python_exception().map(|e| e.python_type.as_str())
}

#[tokio::test]
async fn math_wrappers_give_typed_results() -> Result<(), Error> {
    let sp = runtime().await;
    let root: f64 = math::sqrt(&sp, 16.0).await?;
    assert_eq!(root, 4.0_f64);
    let gcd: i64 = math::gcd(&sp, [12, 18, 27]).await?;
    assert_eq!(gcd, 3);
    // floor's stub returns a type variable: the result stays a value.
    assert_eq!(math::floor(&sp, 2.7).await?, Value::Int(2));
    let err = math::sqrt(&sp, -1.0).await.unwrap_err();
    assert_eq!(raised(&err), Some("ValueError"), "{err}");
    sp.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_path_wrapper_has_methods_and_properties() -> Result<(), Error> {
    let sp = runtime().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("x.txt");
    std::fs::write(&file, "hello").expect("write x.txt");

    let tmp = pathlib::Path::new(&sp, ["/tmp/x.txt"], pathlib::PathOptions::new()).await?;
    assert_eq!(tmp.name().await?, "x.txt");
    // The wrapper holds a ref to the Python object.
    let object = tmp.object_ref().expect("a Path is kept by Python");
    assert!(object.type_name.ends_with("Path"), "{object:?}");
    assert_eq!(tmp.suffix().await?, ".txt");
    assert_eq!(tmp.parent().await?.name().await?, "tmp");
    assert_eq!(tmp.with_suffix(".md").await?.name().await?, "x.md");
    assert_eq!(tmp.parts().await?, vec!["/", "tmp", "x.txt"]);

    let path = file.to_str().expect("a UTF-8 path");
    let real = pathlib::Path::new(&sp, [path], pathlib::PathOptions::new()).await?;
    assert!(real.exists().await?);
    assert!(real.is_file().await?);
    assert_eq!(
        real.read_text(pathlib::PathReadTextOptions::new()).await?,
        "hello"
    );
    let gone = real.with_name("missing.txt").await?;
    assert!(!gone.exists().await?);
    // A wrapper passes where Python expects the object.
    assert!(real.samefile(&real).await?);
    // A method returning an iterator gives a stream of its items.
    std::fs::write(dir.path().join("y.txt"), "").expect("write y.txt");
    std::fs::write(dir.path().join("z.md"), "").expect("write z.md");
    let folder = real.parent().await?;
    let texts: Vec<Value> = folder.glob("*.txt").await?.try_collect().await?;
    assert_eq!(texts.len(), 2, "{texts:?}");
    let all = folder.iterdir().await?.try_collect::<Vec<Value>>().await?;
    assert_eq!(all.len(), 3, "{all:?}");
    sp.shutdown().await;
    Ok(())
}

/// Wrappers made in a session keep their objects there: released with the
/// session, a later call is a typed error, not a hang or a wrong answer.
#[tokio::test]
async fn a_wrapper_lives_as_long_as_its_session() -> Result<(), Error> {
    let sp = runtime().await;
    let session = sp.new_session().await?;
    let path = pathlib::Path::new(&session, ["/tmp/x.txt"], pathlib::PathOptions::new()).await?;
    let object = path.object_ref().expect("a ref");
    assert_eq!(object.session_id, session.id());
    assert_eq!(path.stem().await?, "x");
    session.release().await?;
    let err = path.stem().await.unwrap_err();
    assert!(
        matches!(err, Error::RefNotFound { .. } | Error::SessionNotFound(_)),
        "{err:?}"
    );
    sp.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn keyword_only_options_reach_python() -> Result<(), Error> {
    let sp = runtime().await;
    let data = Value::from(
        vec![("b", 1), ("a", 2)]
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
    );
    let plain = json::dumps(&sp, data.clone(), json::DumpsOptions::new()).await?;
    assert_eq!(plain, r#"{"a": 2, "b": 1}"#);
    let options = json::DumpsOptions::new().indent(2).sort_keys(true);
    let pretty = json::dumps(&sp, data, options).await?;
    assert_eq!(pretty, "{\n  \"a\": 2,\n  \"b\": 1\n}");
    let parsed = json::loads(&sp, "[1, 2.5, null]", json::LoadsOptions::new()).await?;
    assert_eq!(
        parsed,
        Value::List(vec![Value::Int(1), Value::Float(2.5), Value::Null])
    );
    // An option Python does not know is Python's TypeError, typed.
    let bad = json::DumpsOptions::new().kwarg("no_such_option", true);
    let err = json::dumps(&sp, 1, bad).await.unwrap_err();
    assert_eq!(raised(&err), Some("TypeError"), "{err}");
    sp.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn datetime_objects_cross_as_values_and_keep_their_methods() -> Result<(), Error> {
    let sp = runtime().await;
    let day = datetime::Date::new(&sp, 2024, 2, 29).await?;
    assert_eq!(day.isoformat().await?, "2024-02-29");
    assert_eq!(day.year().await?, 2024);
    assert_eq!(day.weekday().await?, 3);
    let next_year = day
        .replace(datetime::DateReplaceOptions::new().year(2028))
        .await?;
    assert_eq!(next_year.isoformat().await?, "2028-02-29");
    let parsed = datetime::Date::fromisoformat(&sp, "2001-12-31").await?;
    assert_eq!(parsed.toordinal().await?, 730_850);
    let span = datetime::Timedelta::new(
        &sp,
        datetime::TimedeltaOptions::new().hours(1.5).minutes(30.0),
    )
    .await?;
    assert_eq!(span.total_seconds().await?, 7200.0);
    assert_eq!(span.seconds().await?, 7200);
    // A date Python cannot build is its ValueError.
    let err = datetime::Date::new(&sp, 2023, 2, 29).await.unwrap_err();
    assert_eq!(raised(&err), Some("ValueError"), "{err}");
    sp.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn numpy_wrappers_take_options() -> Result<(), Error> {
    let sp = runtime().await;
    let mean = numpy::mean(&sp, vec![1.0, 2.0, 3.0, 6.0], numpy::MeanOptions::new()).await?;
    assert_eq!(mean.extract::<f64>()?, 3.0);
    let rows = vec![vec![1.0, 2.0], vec![3.0, 4.0]];
    let by_column = numpy::mean(&sp, rows.clone(), numpy::MeanOptions::new().axis(0)).await?;
    let by_column = by_column.extract::<snakepit::NdArray>()?;
    assert_eq!(by_column.shape, vec![2]);
    let std = numpy::std(
        &sp,
        vec![2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0],
        numpy::StdOptions::new(),
    )
    .await?;
    assert_eq!(std.extract::<f64>()?, 2.0);
    let sample = numpy::std(&sp, vec![1.0, 3.0], numpy::StdOptions::new().ddof(1.0)).await?;
    assert!((sample.extract::<f64>()? - 2.0_f64.sqrt()).abs() < 1e-12);
    let array = numpy::array(&sp, rows, numpy::ArrayOptions::new().dtype("float32")).await?;
    let array = array.extract::<snakepit::NdArray>()?;
    assert_eq!(
        (array.dtype.as_str(), array.shape.as_slice()),
        ("float32", &[2, 2][..])
    );
    sp.shutdown().await;
    Ok(())
}

// ------------------------------------------------------ compile-time types

/// `rustc` checking `file` as a library crate against this test's own build
/// of `snakepit` (the newest in the deps directory): the same compiler, the
/// same dependencies, no second build.
fn rustc_check(file: &Path) -> std::process::Output {
    let exe = std::env::current_exe().expect("the test binary");
    let deps = exe.parent().expect("the deps directory");
    let rlib = std::fs::read_dir(deps)
        .expect("read the deps directory")
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("libsnakepit-") && name.ends_with(".rlib")
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .expect("libsnakepit in the deps directory")
        .path();
    let out = tempfile::tempdir().expect("a temp dir");
    // The rustc of the toolchain running this test (beside its cargo), so
    // that the rlib's metadata is one it reads.
    let rustc = std::env::var_os("RUSTC")
        .map(PathBuf::from)
        .or_else(|| {
            let cargo = PathBuf::from(std::env::var_os("CARGO")?);
            let rustc = cargo.with_file_name("rustc");
            rustc.exists().then_some(rustc)
        })
        .unwrap_or_else(|| "rustc".into());
    Command::new(rustc)
        .args(["--edition=2024", "--crate-type=lib", "--emit=metadata"])
        .arg("--crate-name=codegen_case")
        .arg("--out-dir")
        .arg(out.path())
        .arg("-L")
        .arg(format!("dependency={}", deps.display()))
        .arg("--extern")
        .arg(format!("snakepit={}", rlib.display()))
        .arg(file)
        .output()
        .expect("run rustc")
}

#[test]
fn a_wrong_type_is_refused_at_compile_time() {
    let cases = generated_dir().join("cases");
    // The same call with the right type compiles: the harness itself works.
    let pass = rustc_check(&cases.join("sqrt_of_a_float.rs"));
    assert!(
        pass.status.success(),
        "the passing case does not compile:\n{}",
        String::from_utf8_lossy(&pass.stderr)
    );
    for case in ["sqrt_of_a_str", "path_where_a_str_goes"] {
        let out = rustc_check(&cases.join(format!("{case}.rs")));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{case} compiled");
        let expected = std::fs::read_to_string(cases.join(format!("{case}.stderr")))
            .expect("the expected errors");
        for line in expected.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                stderr.contains(line.trim()),
                "{case}: no {line:?} in:\n{stderr}"
            );
        }
    }
}

// ------------------------------------------------------------------- drift

/// `snakepit gen rust ARGS`, its status, stdout and stderr.
fn gen_rust(args: &[&str]) -> (bool, String, String) {
    let mut full = vec!["gen", "rust"];
    full.extend_from_slice(args);
    let out = common::run_snakepit(&full, LIMIT);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `--report json` a run printed on stderr, after its other lines.
fn json_report(stderr: &str) -> serde_json::Value {
    let json: Vec<&str> = stderr.lines().skip_while(|l| !l.starts_with('{')).collect();
    serde_json::from_str(&json.join("\n"))
        .unwrap_or_else(|e| panic!("a JSON report on stderr ({e}): {stderr}"))
}

/// The arguments of the command a generated file's header records.
fn recorded_command(source: &str) -> Vec<String> {
    let line = source
        .lines()
        .find_map(|l| {
            l.trim_start_matches("//")
                .trim()
                .strip_prefix("snakepit gen rust ")
        })
        .expect("the header names its command");
    line.split_whitespace().map(str::to_string).collect()
}

#[test]
fn the_checked_in_wrappers_are_what_the_generator_writes() {
    let bless = std::env::var_os("SNAKEPIT_BLESS").is_some();
    for module in GENERATED {
        let path = generated_dir().join(format!("{module}.rs"));
        let checked_in = std::fs::read_to_string(&path).expect("a generated file");
        let header = Header::parse(&checked_in).expect("a header");
        assert_eq!(&header.module, module);
        let args = recorded_command(&checked_in);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, stdout, stderr) = gen_rust(&args);
        assert!(ok, "snakepit gen rust {args:?}: {stderr}");
        if bless {
            std::fs::write(&path, &stdout).expect("write the generated file");
        } else {
            assert!(
                stdout == checked_in,
                "{} is not what `snakepit gen rust {}` writes now; \
                 run SNAKEPIT_BLESS=1 cargo test --test codegen",
                path.display(),
                args.join(" ")
            );
        }
    }
}

// ------------------------------------------------------------ command line

#[test]
fn gen_rust_writes_the_file_and_reports_its_coverage() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let out = dir.path().join("math.rs");
    let out_arg = out.to_str().expect("a UTF-8 path");
    let (ok, stdout, stderr) = gen_rust(&[
        "math",
        "--functions",
        "sqrt,floor,gcd",
        "--out",
        out_arg,
        "--report",
    ]);
    assert!(ok, "{stderr}");
    let source = std::fs::read_to_string(&out).expect("the written file");
    assert!(
        source.contains("pub async fn sqrt(py: &impl _rt::Ffi, x: f64) -> Result<f64, _rt::Error>"),
        "{source}"
    );
    assert_eq!(
        source,
        std::fs::read_to_string(generated_dir().join("math.rs")).unwrap()
    );
    assert!(
        stdout.contains("generated: 3 functions, 0 classes"),
        "{stdout}"
    );
    assert!(stdout.contains("math.sqrt"), "{stdout}");
    assert!(stderr.contains("wrote"), "{stderr}");

    let (ok, stdout, stderr) = gen_rust(&[
        "pathlib",
        "--classes",
        "Path",
        "--max-class-methods",
        "3",
        "--report",
        "json",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("pub struct Path {"),
        "the code goes to stdout"
    );
    let report = json_report(&stderr);
    let skipped = report["skipped"].as_array().expect("skipped");
    assert!(
        skipped.iter().any(|s| s["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("too many methods")),
        "{report:#}"
    );
    let methods = report["generated"]
        .as_array()
        .expect("generated")
        .iter()
        .filter(|i| i["kind"] == "method")
        .count();
    assert!(methods <= 3, "{methods} methods kept: {report:#}");
}

/// A whole library in public mode, with a method cap: submodules nest, the
/// guardrail is reported, and the description (deeper than the wire carries
/// values) crosses as one JSON text.
#[test]
fn gen_rust_describes_a_whole_library_within_its_guardrails() {
    let (ok, stdout, stderr) = gen_rust(&[
        "numpy",
        "--mode",
        "public",
        "--max-class-methods",
        "40",
        "--report",
        "json",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("\npub mod linalg {"),
        "numpy.linalg is a nested module"
    );
    assert!(stdout.contains("pub async fn mean("));
    let report = json_report(&stderr);
    let generated = report["generated"].as_array().expect("generated");
    assert!(generated.len() > 1000, "{} items", generated.len());
    assert!(
        generated.iter().any(|i| i["python"] == "numpy.linalg.norm"),
        "numpy.linalg.norm is generated"
    );
    let capped = report["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .filter(|s| {
            s["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("too many methods")
        })
        .count();
    assert!(capped > 0, "the method cap left nothing out: {report:#}");
}

/// `--plan` weighs a generation before it is written: the size and the
/// coverage, and no code.
#[test]
fn gen_rust_plan_previews_without_writing() {
    let (ok, stdout, stderr) = gen_rust(&["pathlib", "--classes", "Path", "--plan"]);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("snakepit: would write "), "{stdout}");
    assert!(
        stdout.contains("generated: 0 functions, 1 classes"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("pub struct Path"),
        "no code in a plan: {stdout}"
    );
    let (ok, _, stderr) = gen_rust(&["math", "--plan", "--out", "math.rs"]);
    assert!(!ok);
    assert!(stderr.contains("--out"), "{stderr}");
}

#[test]
fn gen_rust_refuses_what_it_cannot_find() {
    let (ok, _, stderr) = gen_rust(&["no_such_module_xyz"]);
    assert!(!ok);
    assert!(stderr.contains("no_such_module_xyz"), "{stderr}");
    let (ok, _, stderr) = gen_rust(&["math", "--functions", "sqrt,no_such_function"]);
    assert!(!ok);
    assert!(stderr.contains("no_such_function"), "{stderr}");
    let (ok, _, stderr) = gen_rust(&["math", "--mode", "sideways"]);
    assert!(!ok);
    assert!(stderr.contains("sideways"), "{stderr}");
}

// ------------------------------------------------------------- build.rs

/// The builder's list as the docs give it, a whole library among names,
/// generates code that rustc accepts: the index file, mounting all three,
/// checked as a crate.
#[test]
fn the_build_helper_list_generates_code_that_compiles() {
    let python = common::pythons::default_env().python;
    let dir = tempfile::tempdir().expect("a temp dir");
    let generated = Builder::new()
        .python(&python)
        .modules(["numpy", "math:sqrt,floor", "pathlib:Path"])
        .out_dir(dir.path())
        .cargo_directives(false)
        .check(false)
        .generate()
        .expect("generate");
    let numpy = std::fs::read_to_string(dir.path().join("numpy.rs")).expect("numpy.rs");
    assert!(
        numpy.contains("pub async fn mean("),
        "numpy.mean is generated"
    );
    assert!(
        numpy.contains("pub struct Ndarray {"),
        "numpy.ndarray is generated"
    );
    let checked = rustc_check(&generated.index);
    assert!(
        checked.status.success(),
        "the generated wrappers do not compile:\n{}",
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[test]
fn the_build_helper_generates_caches_by_version_and_checks_for_drift() {
    let python = common::pythons::default_env().python;
    let dir = tempfile::tempdir().expect("a temp dir");
    let builder = Builder::new()
        .python(&python)
        .modules(["math:sqrt,floor", "pathlib:Path", "json"])
        .out_dir(dir.path())
        .cargo_directives(false);

    let first = builder.clone().check(false).generate().expect("generate");
    assert!(first.modules.iter().all(|m| !m.cached), "{first:?}");
    let index = std::fs::read_to_string(&first.index).expect("the index file");
    assert!(index.contains("pub mod math {"), "{index}");
    assert!(index.contains("pub mod pathlib {"), "{index}");
    let math_rs = dir.path().join("math.rs");
    let math = std::fs::read_to_string(&math_rs).expect("math.rs");
    assert!(
        math.contains("pub async fn sqrt(py: &impl _rt::Ffi, x: f64) -> Result<f64, _rt::Error>")
    );
    assert!(math.contains("pub async fn floor("));
    assert!(!math.contains("pub async fn gcd("));
    let pathlib = std::fs::read_to_string(dir.path().join("pathlib.rs")).expect("pathlib.rs");
    assert!(pathlib.contains("pub struct Path {"));
    let json = std::fs::read_to_string(dir.path().join("json.rs")).expect("json.rs");
    assert!(
        json.contains("pub async fn dumps("),
        "json by mode root: {json}"
    );

    // Unchanged versions: nothing is introspected again.
    let second = builder
        .clone()
        .check(false)
        .generate()
        .expect("generate again");
    assert!(second.modules.iter().all(|m| m.cached), "{second:?}");
    builder
        .clone()
        .check(true)
        .generate()
        .expect("a clean check");

    // The recorded version differs from the installed one: the check fails.
    let header = Header::parse(&math).expect("a header");
    let stale = math.replace(
        &format!("\"version\":\"{}\"", header.version),
        "\"version\":\"0.0.1\"",
    );
    assert_ne!(stale, math);
    std::fs::write(&math_rs, &stale).unwrap();
    match builder.clone().check(true).generate() {
        Err(CodegenError::Drift(drift)) => assert_eq!(
            drift,
            vec![Drift::Version {
                module: "math".into(),
                recorded: "0.0.1".into(),
                installed: header.version.clone(),
            }]
        ),
        other => panic!("expected a version drift, got {other:?}"),
    }
    // Out of check mode the stale file is generated again.
    let third = builder.clone().check(false).generate().expect("generate");
    assert!(!third.modules[0].cached && third.modules[1].cached);
    assert_eq!(std::fs::read_to_string(&math_rs).unwrap(), math);

    // So is another interpreter (its stubs and signatures differ).
    let other_python = math.replace(
        &format!("\"python\":\"{}\"", header.python),
        "\"python\":\"2.7.18\"",
    );
    assert_ne!(other_python, math);
    std::fs::write(&math_rs, &other_python).unwrap();
    let err = builder.clone().check(true).generate().unwrap_err();
    assert!(
        matches!(&err, CodegenError::Drift(d) if matches!(&d[..], [Drift::Python { recorded, .. }] if recorded == "2.7.18")),
        "{err}"
    );

    // A hand edit is drift too.
    std::fs::write(&math_rs, format!("{math}// edited\n")).unwrap();
    let err = builder.clone().check(true).generate().unwrap_err();
    assert!(
        matches!(&err, CodegenError::Drift(d) if matches!(d[..], [Drift::Content { .. }])),
        "{err}"
    );
    assert!(err.to_string().contains("math"), "{err}");
}

/// A crate of its own whose `build.rs` runs the builder (through the light
/// `snakepit-codegen`), built by cargo: the wrappers land in `OUT_DIR` and
/// the crate compiles against them; built again in check mode it passes,
/// and after a hand edit of a generated file it fails, naming the module.
#[test]
fn a_build_script_generates_into_out_dir_and_its_check_fails_the_build_on_drift() {
    let python = common::pythons::default_env().python;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("a temp dir");
    let krate = dir.path().join("probe");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    std::fs::write(
        krate.join("Cargo.toml"),
        format!(
            "[package]\nname = \"codegen-probe\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
             [workspace]\n\n[build-dependencies]\nsnakepit-codegen = {{ path = {:?} }}\n",
            root.join("codegen")
        ),
    )
    .unwrap();
    std::fs::write(
        krate.join("build.rs"),
        "fn main() {\n    let built = snakepit_codegen::Builder::new()\n        .modules([\"math:sqrt,floor\", \"pathlib:Path\"])\n        .generate();\n    if let Err(err) = built {\n        eprintln!(\"{err}\");\n        std::process::exit(1);\n    }\n}\n",
    )
    .unwrap();
    // The generated code needs the runtime to compile; the probe only
    // checks that cargo ran the script and that the files are there.
    std::fs::write(
        krate.join("src/lib.rs"),
        "pub const INDEX: &str = include_str!(concat!(env!(\"OUT_DIR\"), \"/snakepit_wrappers.rs\"));\n\
         pub const MATH: &str = include_str!(concat!(env!(\"OUT_DIR\"), \"/math.rs\"));\n",
    )
    .unwrap();
    // The workspace's lock: the same versions, nothing to download.
    std::fs::copy(root.join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    let target = dir.path().join("target");
    let cargo = |check: bool| {
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.args(["build", "--offline", "--quiet"])
            .current_dir(&krate)
            .env("CARGO_TARGET_DIR", &target)
            .env("SNAKEPIT_CODEGEN_PYTHON", &python)
            .env_remove("SNAKEPIT_CODEGEN_CHECK");
        if check {
            cmd.env("SNAKEPIT_CODEGEN_CHECK", "1");
        }
        cmd.output().expect("run cargo")
    };
    let built = cargo(false);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let out_dir = std::fs::read_dir(target.join("debug/build"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("out"))
        .find(|out| out.join("snakepit_wrappers.rs").exists())
        .expect("the build script's OUT_DIR");
    let math = std::fs::read_to_string(out_dir.join("math.rs")).unwrap();
    assert!(
        math.contains("pub async fn sqrt(py: &impl _rt::Ffi, x: f64) -> Result<f64, _rt::Error>")
    );
    let index = std::fs::read_to_string(out_dir.join("snakepit_wrappers.rs")).unwrap();
    assert!(index.contains("pub mod pathlib {"), "{index}");

    let checked = cargo(true);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    std::fs::write(out_dir.join("math.rs"), format!("{math}// edited\n")).unwrap();
    // Nothing cargo watches changed: touch the script so that it runs again.
    std::fs::write(
        krate.join("build.rs"),
        std::fs::read_to_string(krate.join("build.rs")).unwrap() + "\n",
    )
    .unwrap();
    let drifted = cargo(true);
    let stderr = String::from_utf8_lossy(&drifted.stderr);
    assert!(
        !drifted.status.success(),
        "the check passed after a hand edit"
    );
    assert!(stderr.contains("no longer match"), "{stderr}");
    assert!(stderr.contains("math:"), "{stderr}");
}
