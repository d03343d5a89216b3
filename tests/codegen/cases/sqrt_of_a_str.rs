// Does not compile: `math.sqrt` takes a float, its stub says so.
#[allow(dead_code)]
#[path = "../math.rs"]
mod math;

pub async fn root(sp: &snakepit::Snakepit) -> Result<f64, snakepit::Error> {
    math::sqrt(sp, "sixteen").await
}
