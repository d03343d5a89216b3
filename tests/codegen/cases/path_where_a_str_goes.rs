// Does not compile: `Path.with_suffix` takes a str, and its result is a
// `Path` wrapper, not a `String`.
#[allow(dead_code)]
#[path = "../pathlib.rs"]
mod pathlib;

pub async fn renamed(path: &pathlib::Path) -> Result<String, snakepit::Error> {
    path.with_suffix(".md").await
}
