//! `cxdb serve` limit flags (SPEC §8): query memory, time, result rows and
//! concurrency (enforced by the query layer for every protocol), and the
//! ingest rate per token.

use std::time::Duration;

use clap::Args;
use cxdb_query::QueryLimits;

#[derive(Debug, Clone, Args)]
pub(crate) struct LimitArgs {
    /// Memory all running queries share (sorts, joins, aggregations): bytes,
    /// or with a unit (512MiB, 4GiB, 2GB); 0 = unlimited. Default: half of
    /// the machine's memory (of its cgroup limit, if lower).
    #[arg(long, env = "CXDB_QUERY_MEMORY", value_parser = parse_bytes)]
    pub(crate) query_memory: Option<u64>,

    /// Wall-clock limit of one query, from when it gets its slot to its last
    /// row: seconds, or with a unit (500ms, 30s, 5m, 1h); 0 = none.
    #[arg(long, env = "CXDB_QUERY_TIMEOUT", default_value = "300s", value_parser = parse_duration)]
    pub(crate) query_timeout: Duration,

    /// Rows one query may return; 0 = unlimited.
    #[arg(long, env = "CXDB_MAX_RESULT_ROWS", default_value_t = 10_000_000)]
    pub(crate) max_result_rows: u64,

    /// Queries running at once; more wait up to 10 s for a slot, then fail.
    /// 0 = unlimited. Default: twice the number of cores, at least 8.
    #[arg(long, env = "CXDB_MAX_CONCURRENT_QUERIES")]
    pub(crate) max_concurrent_queries: Option<usize>,

    /// Events per second each token may write (a burst of one second's
    /// worth). Default: unlimited.
    #[arg(long, env = "CXDB_MAX_EVENTS_PER_SECOND")]
    pub(crate) max_events_per_second: Option<u32>,
}

impl LimitArgs {
    pub(crate) fn query_limits(&self) -> anyhow::Result<QueryLimits> {
        let defaults = QueryLimits::default();
        let memory = match self.query_memory {
            None => defaults.memory,
            Some(0) => None,
            Some(bytes) => Some(usize::try_from(bytes).map_err(|_| {
                anyhow::anyhow!("--query-memory {bytes} is more than this machine can address")
            })?),
        };
        Ok(QueryLimits {
            memory,
            timeout: Some(self.query_timeout).filter(|t| !t.is_zero()),
            max_result_rows: Some(self.max_result_rows).filter(|n| *n > 0),
            max_concurrent: match self.max_concurrent_queries {
                None => defaults.max_concurrent,
                Some(n) => Some(n).filter(|n| *n > 0),
            },
            queue_timeout: defaults.queue_timeout,
        })
    }
}

/// `4294967296`, `4GiB`, `512 MiB`, `1.5G`, `2GB`: K/M/G/T and KiB… are
/// powers of 1024, KB/MB/GB/TB powers of 1000.
pub(crate) fn parse_bytes(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text)?;
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?}: use B, KiB, MiB, GiB, TiB (or KB, MB, GB, TB)"
            ));
        }
    };
    let too_big = || format!("{text:?} is too large");
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(factor).ok_or_else(too_big);
    }
    let bytes = parse_fraction(number, text)? * factor as f64;
    if bytes >= u64::MAX as f64 {
        return Err(too_big());
    }
    Ok(bytes.round() as u64)
}

/// `300` (seconds), `30s`, `500ms`, `5m`, `1h`, `1.5s`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(text)?;
    let seconds_per_unit = match unit.to_ascii_lowercase().as_str() {
        "" | "s" | "sec" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?}: use ms, s, m or h (a plain number is seconds)"
            ));
        }
    };
    Duration::try_from_secs_f64(parse_fraction(number, text)? * seconds_per_unit)
        .map_err(|e| format!("{text:?}: {e}"))
}

/// The leading number and the unit after it.
fn split_number(text: &str) -> Result<(&str, &str), String> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(end);
    if number.is_empty() {
        return Err(format!("{text:?} does not start with a number"));
    }
    Ok((number, unit.trim()))
}

fn parse_fraction(number: &str, text: &str) -> Result<f64, String> {
    number
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| format!("{text:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_and_without_units() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("4GiB"), Ok(4 << 30));
        assert_eq!(parse_bytes("4 gib"), Ok(4 << 30));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("1.5G"), Ok(3 << 29));
        assert_eq!(parse_bytes("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_bytes("64k"), Ok(65_536));
        assert_eq!(parse_bytes("0"), Ok(0));
        assert!(parse_bytes("4 parsecs").is_err());
        assert!(parse_bytes("GiB").is_err());
        assert!(parse_bytes("1.2.3MiB").is_err());
        assert!(parse_bytes("99999999TiB").is_err());
    }

    #[test]
    fn durations_with_and_without_units() {
        assert_eq!(parse_duration("300"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn zero_means_unlimited_and_absent_means_the_default() {
        let args = LimitArgs {
            query_memory: Some(0),
            query_timeout: Duration::ZERO,
            max_result_rows: 0,
            max_concurrent_queries: Some(0),
            max_events_per_second: None,
        };
        let limits = args.query_limits().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(limits.memory, None);
        assert_eq!(limits.timeout, None);
        assert_eq!(limits.max_result_rows, None);
        assert_eq!(limits.max_concurrent, None);
        let args = LimitArgs {
            query_memory: None,
            query_timeout: Duration::from_secs(300),
            max_result_rows: 5,
            max_concurrent_queries: None,
            max_events_per_second: Some(10),
        };
        let limits = args.query_limits().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(limits.memory, QueryLimits::default().memory);
        assert_eq!(limits.max_concurrent, QueryLimits::default().max_concurrent);
        assert_eq!(limits.max_result_rows, Some(5));
        assert_eq!(limits.timeout, Some(Duration::from_secs(300)));
    }
}
