//! `numpy.ones(8388608)` (64 MiB of float64) made in Python, brought to Rust
//! and passed back to `numpy.sum`, through the universal FFI, with
//! `max_frame_bytes` at its default: the array crosses in shared memory, not
//! in a frame.
//!
//! `cargo run --release --example numpy_ffi`

use std::time::Instant;

use snakepit::{Ffi, Snakepit, Value};

#[tokio::main]
async fn main() -> Result<(), snakepit::Error> {
    let snakepit = Snakepit::builder().start().await?;
    let t = Instant::now();
    let ones = snakepit
        .call("numpy", "ones", (Value::from(8_388_608),), ())
        .await?;
    let made = t.elapsed();
    let Value::NdArray(array) = &ones else {
        panic!("numpy.ones returned {ones:?}");
    };
    println!(
        "numpy.ones(8388608): {} {:?}, {} bytes in Rust after {made:.2?}",
        array.dtype,
        array.shape,
        array.data.len()
    );
    let t = Instant::now();
    let sum = snakepit.call("numpy", "sum", (ones,), ()).await?;
    println!("numpy.sum(...) = {sum:?} after {:.2?}", t.elapsed());
    assert_eq!(sum, Value::Float(8_388_608.0));
    snakepit.shutdown().await;
    Ok(())
}
