//! How the report writes numbers: req/s with thousands separators, latencies and fit
//! parameters to three significant digits. One place, so the table, the captions and the
//! chart labels agree.

/// Requests per second: `12,345` from 100 up, `12.3` below, `0` for zero.
pub fn rps(x: f64) -> String {
    if !x.is_finite() {
        return "-".to_string();
    }
    if x.abs() >= 100.0 {
        thousands(x.round() as i64)
    } else if x == 0.0 {
        "0".to_string()
    } else {
        format!("{x:.1}")
    }
}

/// An axis tick for req/s: `0`, `500`, `12k`, `1.5k`, `2.5M`.
pub fn rps_tick(x: f64) -> String {
    let a = x.abs();
    if a >= 1e6 {
        format!("{}M", trim(x / 1e6, 2))
    } else if a >= 1e3 {
        format!("{}k", trim(x / 1e3, 2))
    } else {
        trim(x, 1)
    }
}

/// Milliseconds to three significant digits: `0.412`, `3.20`, `41.7`, `1,250`.
pub fn ms(x: f64) -> String {
    if !x.is_finite() {
        "-".to_string()
    } else if x.abs() >= 1000.0 {
        thousands(x.round() as i64)
    } else {
        sig3(x)
    }
}

/// Three significant digits, switching to scientific notation outside [0.001, 10⁶):
/// `0.0312`, `4.10e-5`, `1.00`.
pub fn sig3(x: f64) -> String {
    if !x.is_finite() {
        return "-".to_string();
    }
    if x == 0.0 {
        return "0".to_string();
    }
    let a = x.abs();
    if !(1e-3..1e6).contains(&a) {
        return format!("{x:.2e}");
    }
    let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
    format!("{x:.decimals$}")
}

/// A scale N: `4`, `1.5`, `2.25`.
pub fn n(x: f64) -> String {
    trim(x, 2)
}

/// A share of a whole as a percentage, one decimal below 20%: `70%`, `12.5%`, `6.2%`, `0%`.
pub fn percent(share: f64) -> String {
    let p = share * 100.0;
    if p >= 19.95 {
        format!("{p:.0}%")
    } else {
        format!("{}%", trim(p, 1))
    }
}

/// An axis tick: three significant digits without trailing zeros: `20`, `0.5`, `1.25`.
pub fn tick(x: f64) -> String {
    let s = sig3(x);
    if s.contains('.') && !s.contains('e') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// `x` with at most `decimals` decimals and no trailing zeros: `2`, `2.5`, `0.25`.
fn trim(x: f64, decimals: usize) -> String {
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// An integer with `,` between groups of three digits.
fn thousands(v: i64) -> String {
    let digits = v.unsigned_abs().to_string();
    let groups: Vec<String> =
        digits.as_bytes().rchunks(3).rev().map(|g| g.iter().map(|&b| b as char).collect()).collect();
    let sign = if v < 0 { "-" } else { "" };
    format!("{sign}{}", groups.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rps_groups_thousands_and_keeps_a_decimal_when_small() {
        assert_eq!(rps(1234567.4), "1,234,567");
        assert_eq!(rps(999.6), "1,000");
        assert_eq!(rps(42.25), "42.2");
        assert_eq!(rps(0.0), "0");
        assert_eq!(rps(-1234.0), "-1,234");
        assert_eq!(rps(100.0), "100");
        assert_eq!(rps(f64::NAN), "-");
    }

    #[test]
    fn ticks_are_short() {
        assert_eq!(rps_tick(0.0), "0");
        assert_eq!(rps_tick(500.0), "500");
        assert_eq!(rps_tick(12_000.0), "12k");
        assert_eq!(rps_tick(1_500.0), "1.5k");
        assert_eq!(rps_tick(2_500_000.0), "2.5M");
    }

    #[test]
    fn three_significant_digits() {
        assert_eq!(sig3(0.0312), "0.0312");
        assert_eq!(sig3(3.2), "3.20");
        assert_eq!(sig3(41.73), "41.7");
        assert_eq!(sig3(123.4), "123");
        assert_eq!(sig3(0.000041), "4.10e-5");
        assert_eq!(ms(1250.2), "1,250");
        assert_eq!(tick(20.0), "20");
        assert_eq!(tick(0.5), "0.5");
        assert_eq!(tick(1.25), "1.25");
    }

    #[test]
    fn percentages_and_scales() {
        assert_eq!(percent(0.7), "70%");
        assert_eq!(percent(0.062), "6.2%");
        assert_eq!(percent(0.125), "12.5%");
        assert_eq!(percent(0.13), "13%");
        assert_eq!(percent(0.0), "0%");
        assert_eq!(n(4.0), "4");
        assert_eq!(n(1.5), "1.5");
    }
}
