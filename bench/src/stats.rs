//! Latency percentiles over recorded samples and the number formats of the report.

/// A latency sample in nanoseconds, saturating at `u32::MAX` (4.29 s).
pub fn ns(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_nanos()).unwrap_or(u32::MAX)
}

/// The `q` quantile (0..=1) of sorted nanosecond samples, in microseconds (nearest rank).
pub fn quantile_us(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1]) / 1000.0
}

/// `12345.6` → `"12 346"` (thin grouping keeps wide req/s readable in a table).
pub fn grouped(v: f64) -> String {
    let s = format!("{:.0}", v);
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

/// Microseconds with one decimal under 100, none above.
pub fn us(v: f64) -> String {
    if v.is_nan() {
        "—".into()
    } else if v.abs() < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// A difference in microseconds with its sign: `+12.3`, `-4.0`.
pub fn signed_us(v: f64) -> String {
    if v.is_nan() {
        "—".into()
    } else if v < 0.0 {
        format!("-{}", us(-v))
    } else {
        format!("+{}", us(v))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_formats() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(quantile_us(&v, 0.5), 50.0);
        assert_eq!(quantile_us(&v, 0.99), 99.0);
        assert_eq!(quantile_us(&v, 1.0), 100.0);
        assert!(quantile_us(&[], 0.5).is_nan());
        assert_eq!(grouped(1234567.4), "1 234 567");
        assert_eq!(grouped(999.0), "999");
        assert_eq!(us(12.34), "12.3");
        assert_eq!(us(1234.4), "1234");
        assert_eq!(signed_us(-23.71), "-23.7");
        assert_eq!(signed_us(5.0), "+5.0");
    }
}
