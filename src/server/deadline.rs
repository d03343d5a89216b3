//! A client's deadline as the call's timeout. gRPC sends the time left as the
//! `grpc-timeout` header: at most eight digits and a unit, `H`, `M`, `S`,
//! `m` (ms), `u` (µs) or `n` (ns). The RPC handlers (`service.rs`) turn it
//! into `Call::timeout` for Execute, ExecuteStream (the whole stream) and
//! the FFI operations; a header that does not parse counts as absent.
//!
//! The call's timeout is the deadline less a small margin (5%, at most
//! 20 ms): the server's `DEADLINE_EXCEEDED`, with its details, then reaches
//! the client before the client's own timer gives up, and the worker is told
//! to cancel either way.

use std::time::Duration;

use tonic::metadata::MetadataMap;

/// The header gRPC carries the deadline in.
const HEADER: &str = "grpc-timeout";

/// Most of the deadline kept back for the answer's trip.
const MARGIN_MAX: Duration = Duration::from_millis(20);

/// The timeout of a call whose request carries `metadata`; `None` when the
/// client set no deadline.
pub(crate) fn call_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let left = parse(metadata.get(HEADER)?.to_str().ok()?)?;
    Some(left - (left / 20).min(MARGIN_MAX))
}

/// A `grpc-timeout` value.
fn parse(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_parses() {
        assert_eq!(parse("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse("4S"), Some(Duration::from_secs(4)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(parse("5n"), Some(Duration::from_nanos(5)));
    }

    #[test]
    fn malformed_values_are_no_deadline() {
        for bad in [
            "",
            "S",
            "5",
            "5x",
            "-5S",
            "+5S",
            "123456789S",
            "1.5S",
            "5 S",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_timeout_keeps_a_margin_for_the_answer() {
        let mut metadata = MetadataMap::new();
        assert_eq!(call_timeout(&metadata), None);
        metadata.insert(HEADER, "200m".parse().unwrap());
        assert_eq!(call_timeout(&metadata), Some(Duration::from_millis(190)));
        metadata.insert(HEADER, "10S".parse().unwrap());
        assert_eq!(call_timeout(&metadata), Some(Duration::from_millis(9_980)));
        metadata.insert(HEADER, "junk".parse().unwrap());
        assert_eq!(call_timeout(&metadata), None);
    }
}
