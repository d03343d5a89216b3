// Compiles: `math.sqrt` takes a float.
#[allow(dead_code)]
#[path = "../math.rs"]
mod math;

pub async fn root(sp: &snakepit::Snakepit) -> Result<f64, snakepit::Error> {
    math::sqrt(sp, 16.0).await
}
