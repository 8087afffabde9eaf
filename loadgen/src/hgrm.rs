//! `.hgrm`: a latency histogram in HdrHistogram's percentile-distribution text, the format
//! `Histogram.outputPercentileDistribution` writes and wrk2's `--latency`, HdrHistogram's
//! plotter and `HistogramLogProcessor`'s percentile output share:
//!
//! ```text
//!        Value     Percentile TotalCount 1/(1-Percentile)
//!
//!        0.079 0.000000000000          1           1.00
//!        ...
//!        3.185 1.000000000000      71538
//! #[Mean    =        0.166, StdDeviation   =        0.129]
//! #[Max     =        3.185, Total count    =        71538]
//! #[Buckets =           22, SubBuckets     =         2048]
//! ```
//!
//! Values are in milliseconds (the histogram records microseconds; the unit scaling ratio is
//! 1000) with as many decimals as the histogram's significant digits, at percentile ticks that
//! halve the distance to 100% with [`TICKS_PER_HALF_DISTANCE`] ticks each time. [`write`]
//! produces it and [`parse`] reads it back (the tests use it to check the file against the
//! run's JSON).

use std::fmt::Write;

use hdrhistogram::Histogram;

/// Percentile ticks per half distance to 100%: HdrHistogram's default.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;
/// Recorded values (µs) per output unit (ms).
pub const US_PER_MS: f64 = 1000.0;

/// The percentile distribution of `h` (microseconds) as `.hgrm` text, values in ms.
pub fn write(h: &Histogram<u64>) -> String {
    let decimals = usize::from(h.sigfig());
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / US_PER_MS;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ =
                    writeln!(out, "{value:>12.decimals$} {q:>2.12} {total:>10} {:>14.2}", 1.0 / (1.0 - q));
            } else {
                let _ = writeln!(out, "{value:>12.decimals$} {q:>2.12} {total:>10}");
            }
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (h.mean() / US_PER_MS, h.stdev() / US_PER_MS, h.max() as f64 / US_PER_MS)
    };
    let _ = writeln!(out, "#[Mean    = {mean:>12.decimals$}, StdDeviation   = {stdev:>12.decimals$}]");
    let _ = writeln!(out, "#[Max     = {max:>12.decimals$}, Total count    = {:>12}]", h.len());
    let _ = writeln!(out, "#[Buckets = {:>12}, SubBuckets     = {:>12}]", h.buckets(), sub_buckets(h));
    out
}

/// The distribution of several of the load tool's histograms together (a sweep point's
/// rounds), as [`write`] writes one.
pub fn write_merged<'a>(parts: impl IntoIterator<Item = &'a Histogram<u64>>) -> String {
    let mut all = Histogram::new_with_bounds(1, crate::report::MAX_LATENCY_US, 3)
        .expect("static histogram bounds are valid");
    for h in parts {
        all.add(h).expect("the load tool's histograms share their bounds");
    }
    write(&all)
}

/// The histogram's sub-bucket count (not exposed by the crate): its counts array holds
/// (buckets + 1) × sub_buckets / 2 entries.
fn sub_buckets<T: hdrhistogram::Counter>(h: &Histogram<T>) -> usize {
    2 * h.distinct_values() / (usize::from(h.buckets()) + 1)
}

/// One line of the distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    /// The value reached, in the file's unit (ms).
    pub value: f64,
    /// The percentile level iterated to, 0 to 1.
    pub percentile: f64,
    /// Values recorded up to this one.
    pub total_count: u64,
}

/// A parsed `.hgrm` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Distribution {
    pub lines: Vec<Line>,
    pub mean: f64,
    pub stdev: f64,
    pub max: f64,
    pub total_count: u64,
    pub buckets: u64,
    pub sub_buckets: u64,
}

impl Distribution {
    /// The value at percentile `q` (0 to 1) as the file resolves it: the value of the first
    /// line whose running count reaches q of the total. The true percentile lies between that
    /// line's value and the one before.
    pub fn value_at(&self, q: f64) -> Option<f64> {
        let want = (q * self.total_count as f64).ceil().max(1.0) as u64;
        self.lines.iter().find(|l| l.total_count >= want).map(|l| l.value)
    }

    /// The line just before the one [`Distribution::value_at`] picks, if any.
    pub fn value_before(&self, q: f64) -> Option<f64> {
        let want = (q * self.total_count as f64).ceil().max(1.0) as u64;
        let i = self.lines.iter().position(|l| l.total_count >= want)?;
        i.checked_sub(1).map(|j| self.lines[j].value)
    }
}

/// Reads `.hgrm` text; the error names the line at fault.
pub fn parse(text: &str) -> Result<Distribution, String> {
    let mut lines = Vec::new();
    let mut footer: Vec<(String, f64)> = Vec::new();
    let mut header = false;
    for (n, raw) in text.lines().enumerate() {
        let at = |why: &str| format!("line {}: {why}: `{raw}`", n + 1);
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(inner) = line.strip_prefix("#[").and_then(|l| l.strip_suffix(']')) {
            for pair in inner.split(',') {
                let (k, v) = pair.split_once('=').ok_or_else(|| at("expected KEY = VALUE"))?;
                let v: f64 = v.trim().parse().map_err(|_| at("not a number"))?;
                footer.push((k.trim().to_string(), v));
            }
            continue;
        }
        if line.starts_with("Value") {
            header = true;
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        if !(3..=4).contains(&cols.len()) {
            return Err(at("expected Value Percentile TotalCount [1/(1-Percentile)]"));
        }
        lines.push(Line {
            value: cols[0].parse().map_err(|_| at("bad Value"))?,
            percentile: cols[1].parse().map_err(|_| at("bad Percentile"))?,
            total_count: cols[2].parse().map_err(|_| at("bad TotalCount"))?,
        });
    }
    if !header {
        return Err("no `Value Percentile TotalCount 1/(1-Percentile)` header".into());
    }
    let get = |key: &str| {
        footer
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("no `{key}` in the footer"))
    };
    Ok(Distribution {
        lines,
        mean: get("Mean")?,
        stdev: get("StdDeviation")?,
        max: get("Max")?,
        total_count: get("Total count")? as u64,
        buckets: get("Buckets")? as u64,
        sub_buckets: get("SubBuckets")? as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1..=10000 µs, one each, in a histogram like the run's (1 µs to 60 s, 3 digits).
    fn uniform() -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, crate::report::MAX_LATENCY_US, 3).unwrap();
        for us in 1..=10_000 {
            h.record(us).unwrap();
        }
        h
    }

    #[test]
    fn writes_hdrhistograms_layout() {
        let text = write(&uniform());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "       Value     Percentile TotalCount 1/(1-Percentile)");
        assert_eq!(lines[1], "");
        assert_eq!(lines[2], "       0.001 0.000000000000          1           1.00");
        assert_eq!(lines[3], "       1.000 0.100000000000       1000           1.11");
        // 5 ticks per half distance: 0.5 and 0.55 follow 0.4, then 0.75 after 0.7.
        assert!(text.contains("       5.003 0.500000000000       5003           2.00\n"), "{text}");
        assert!(text.contains(" 0.550000000000 "), "{text}");
        assert!(text.contains(" 0.775000000000 "), "{text}");
        let last = lines[lines.len() - 4];
        assert_eq!(last, "      10.007 1.000000000000      10000", "the 100% line has no 1/(1-p)");
        let footer = &lines[lines.len() - 3..];
        assert_eq!(footer[0], "#[Mean    =        5.001, StdDeviation   =        2.887]");
        assert_eq!(footer[1], "#[Max     =       10.007, Total count    =        10000]");
        assert_eq!(footer[2], "#[Buckets =           16, SubBuckets     =         2048]");
    }

    #[test]
    fn parses_back_what_it_wrote() {
        let h = uniform();
        let d = parse(&write(&h)).unwrap();
        assert_eq!((d.total_count, d.buckets, d.sub_buckets), (10_000, 16, 2048));
        assert!((d.max - 10.007).abs() < 1e-9 && (d.mean - 5.001).abs() < 1e-9);
        assert!(d.lines.windows(2).all(|w| w[0].value <= w[1].value && w[0].percentile < w[1].percentile));
        assert_eq!(d.lines.last().unwrap().total_count, 10_000);
        // The file brackets every percentile of the histogram between two adjacent lines.
        for q in [0.5, 0.9, 0.99, 0.999] {
            let exact = h.value_at_quantile(q) as f64 / US_PER_MS;
            let (at, before) = (d.value_at(q).unwrap(), d.value_before(q).unwrap());
            assert!(before <= exact && exact <= at, "q {q}: {before} <= {exact} <= {at}");
        }
        assert_eq!(d.value_at(0.5), Some(5.003), "0.5 is a tick: exact");
    }

    #[test]
    fn merged_histograms_add_their_counts() {
        let d = parse(&write_merged([&uniform(), &uniform()])).unwrap();
        assert_eq!(d.total_count, 20_000);
        assert_eq!(d.value_at(0.5), Some(5.003));
    }

    #[test]
    fn an_empty_histogram_has_a_header_and_a_footer() {
        let h: Histogram<u64> = Histogram::new_with_bounds(1, crate::report::MAX_LATENCY_US, 3).unwrap();
        let d = parse(&write(&h)).unwrap();
        assert!(d.lines.is_empty());
        assert_eq!((d.total_count, d.max), (0, 0.0));
    }

    #[test]
    fn bad_files_name_the_line() {
        assert!(parse("1 2 3\n").unwrap_err().contains("header"));
        let err = parse("Value Percentile TotalCount\nx 0.5 3\n").unwrap_err();
        assert!(err.starts_with("line 2: bad Value"), "{err}");
        let err = parse("Value\n#[Mean = 1.0]\n").unwrap_err();
        assert!(err.contains("no `StdDeviation`"), "{err}");
    }
}
