//! `scalelab fit FILE.csv`: read measured (N, X) pairs from a CSV, fit the Universal Scalability
//! Law to them ([`crate::usl::fit`]) and print the coefficients, the peak and what limits
//! scaling, as text or (`--json`) as the [`UslFit`] itself.

use std::fmt;
use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::results::UslFit;
use crate::usl::{self, compact};

/// The largest CSV `fit` reads: far more than any sweep writes (a line is ~20 bytes).
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Measurements `fit` takes at most.
pub const MAX_MEASUREMENTS: usize = 100_000;
/// The largest concurrency N: units (workers, nodes, connections) a lab could have.
pub const MAX_N: f64 = 1_000_000.0;
/// A field quoted in an error is cut to this many characters.
const QUOTE_CHARS: usize = 40;

/// Arguments of `scalelab fit`.
#[derive(Debug, clap::Args)]
pub struct FitArgs {
    /// CSV file of measurements: a header line (optional), then one `concurrency,throughput`
    /// pair (N, X) per line. Blank lines and lines starting with `#` are skipped.
    pub file: PathBuf,
    /// Print the fit as JSON (σ, κ, λ, peak, R², point count) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `scalelab fit`: reads, fits and prints; every failure names the file and, for bad
/// input, the line.
pub fn run(args: &FitArgs) -> anyhow::Result<ExitCode> {
    let path = args.file.display();
    let size = fs::metadata(&args.file).with_context(|| format!("reading {path}"))?.len();
    if size > MAX_FILE_BYTES {
        anyhow::bail!("{path}: {size} bytes; fit reads at most {MAX_FILE_BYTES} bytes ({MAX_MEASUREMENTS} measurements)");
    }
    let text = fs::read_to_string(&args.file).with_context(|| format!("reading {path}"))?;
    let points = parse_csv(&text).with_context(|| format!("in {path}"))?;
    let fit = usl::fit(&points).with_context(|| format!("fitting the USL to {path}"))?;
    let out = if args.json { render_json(&fit)? } else { render_text(&fit, &points) };
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// A column of the input CSV, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// The first column, N.
    Concurrency,
    /// The second column, X.
    Throughput,
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Column::Concurrency => "concurrency",
            Column::Throughput => "throughput",
        })
    }
}

/// A line of the input CSV that is not a (concurrency, throughput) pair; `line` counts from 1
/// and includes blank and comment lines, as an editor does.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CsvError {
    /// More data lines than [`MAX_MEASUREMENTS`].
    #[error("line {line}: more than {MAX_MEASUREMENTS} measurements")]
    TooMany {
        /// The first line past the bound.
        line: usize,
    },
    /// Not exactly two comma-separated fields.
    #[error("line {line}: expected 2 columns (concurrency, throughput), found {found}")]
    ColumnCount {
        /// The line, from 1.
        line: usize,
        /// How many fields it has.
        found: usize,
    },
    /// A field that does not parse as a number.
    #[error("line {line}: {column} {value:?} is not a number")]
    NotANumber {
        /// The line, from 1.
        line: usize,
        /// Which field.
        column: Column,
        /// The field as written.
        value: String,
    },
    /// `inf` or `NaN`.
    #[error("line {line}: {column} {value:?} is not a finite number")]
    NotFinite {
        /// The line, from 1.
        line: usize,
        /// Which field.
        column: Column,
        /// The field as written.
        value: String,
    },
    /// N outside 1 to [`MAX_N`]: the USL counts units from one (X(1) = λ is the throughput of
    /// one), and a bound keeps a typo from passing as a measurement.
    #[error("line {line}: concurrency {} is out of range: expected 1 to {MAX_N} (N counts units: workers, nodes, connections)", compact(*.value))]
    ConcurrencyOutOfRange {
        /// The line, from 1.
        line: usize,
        /// The value found.
        value: f64,
    },
    /// X < 0.
    #[error("line {line}: throughput {} is negative", compact(*.value))]
    NegativeThroughput {
        /// The line, from 1.
        line: usize,
        /// The value found.
        value: f64,
    },
}

/// Parses the measurements: (N, X) per data line, in file order.
///
/// The first line that is not blank or a comment is the header, unless both its fields are
/// numbers (then there is no header and it is data). Fields are trimmed of whitespace and of
/// surrounding double quotes. How many points are enough is for [`usl::fit`] to say.
pub fn parse_csv(text: &str) -> Result<Vec<(f64, f64)>, CsvError> {
    let mut points = Vec::new();
    let mut header_pending = true;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = trimmed.split(',').map(|f| f.trim().trim_matches('"').trim()).collect();
        let [n, x] = fields[..] else {
            return Err(CsvError::ColumnCount { line, found: fields.len() });
        };
        let is_header = header_pending && n.parse::<f64>().is_err() && x.parse::<f64>().is_err();
        header_pending = false;
        if is_header {
            continue;
        }
        let n = number(line, Column::Concurrency, n)?;
        let x = number(line, Column::Throughput, x)?;
        if !(1.0..=MAX_N).contains(&n) {
            return Err(CsvError::ConcurrencyOutOfRange { line, value: n });
        }
        if x < 0.0 {
            return Err(CsvError::NegativeThroughput { line, value: x });
        }
        if points.len() == MAX_MEASUREMENTS {
            return Err(CsvError::TooMany { line });
        }
        points.push((n, x));
    }
    Ok(points)
}

/// One field as a finite number.
fn number(line: usize, column: Column, field: &str) -> Result<f64, CsvError> {
    let value =
        field.parse::<f64>().map_err(|_| CsvError::NotANumber { line, column, value: quote(field) })?;
    if !value.is_finite() {
        return Err(CsvError::NotFinite { line, column, value: quote(field) });
    }
    Ok(value)
}

/// `field` as an error quotes it: whole when short, else its start and its length.
fn quote(field: &str) -> String {
    if field.chars().count() <= QUOTE_CHARS {
        return field.to_string();
    }
    let start: String = field.chars().take(QUOTE_CHARS).collect();
    format!("{start}… ({} bytes)", field.len())
}

/// The fit as a person reads it: coefficients, peak, R², and one line on what limits scaling
/// and where the peak lies against the measured N (`points`, the data it was fitted to).
pub fn render_text(fit: &UslFit, points: &[(f64, f64)]) -> String {
    let min_n = points.iter().map(|&(n, _)| n).fold(f64::INFINITY, f64::min);
    let max_n = points.iter().map(|&(n, _)| n).fold(f64::NEG_INFINITY, f64::max);
    let peak_n = match fit.peak_n {
        Some(n) => significant(n),
        None => "none (κ = 0)".to_string(),
    };
    let peak_rps = match (fit.peak_n, fit.peak_rps) {
        (Some(_), Some(x)) => significant(x),
        (None, Some(x)) => format!("none; levels off towards λ/σ = {}", significant(x)),
        (_, None) => "none".to_string(),
    };
    let rows = [
        ("σ  contention", significant(fit.sigma)),
        ("κ  coherency", significant(fit.kappa)),
        ("λ  throughput of one unit", significant(fit.lambda)),
        ("N* = √((1−σ)/κ), the peak", peak_n),
        ("X(N*)", peak_rps),
        ("R²", format!("{:.4}", fit.r_squared)),
    ];
    let mut out =
        format!("USL fit of {} measurements, N from {} to {}:\n", fit.points, compact(min_n), compact(max_n));
    for (name, value) in rows {
        out.push_str(&format!("  {name:<28}{value}\n"));
    }
    let regime = usl::regime(fit).to_string();
    let mut chars = regime.chars();
    let regime: String = chars.next().into_iter().flat_map(char::to_uppercase).chain(chars).collect();
    let position = usl::peak_position(fit, min_n, max_n);
    out.push_str(&format!("{regime}; {position}."));
    out
}

/// The fit as JSON: the [`UslFit`] fields, pretty-printed.
pub fn render_json(fit: &UslFit) -> serde_json::Result<String> {
    serde_json::to_string_pretty(fit)
}

/// `x` to five significant digits, in plain notation for the magnitudes a fit has and in
/// scientific notation beyond them.
fn significant(x: f64) -> String {
    const DIGITS: i32 = 5;
    if x == 0.0 || !x.is_finite() {
        return x.to_string();
    }
    let magnitude = x.abs().log10().floor() as i32;
    if (-5..9).contains(&magnitude) {
        let decimals = (DIGITS - 1 - magnitude).max(0) as usize;
        format!("{x:.decimals$}")
    } else {
        format!("{x:.prec$e}", prec = (DIGITS - 1) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPEC SDM91 (the R `usl` package's `specsdm91`), written the way a person would: a
    /// header, a comment, a blank line, ragged spaces, a trailing newline.
    const SPECSDM91_CSV: &str = "\
# Sun SPARCcenter 2000, SPEC SDM91 (Gunther 2007)
load, throughput
1,   64.9
18,  995.9

36,  1652.4
72,  1853.2
  108 , 1828.9
144, 1775.0
216, 1702.2
";

    fn specsdm91() -> Vec<(f64, f64)> {
        parse_csv(SPECSDM91_CSV).unwrap()
    }

    #[test]
    fn parses_a_lenient_csv() {
        let points = specsdm91();
        assert_eq!(points.len(), 7);
        assert_eq!(points[0], (1.0, 64.9));
        assert_eq!(points[4], (108.0, 1828.9));
        assert_eq!(points[6], (216.0, 1702.2));
    }

    #[test]
    fn accepts_crlf_quotes_and_no_trailing_newline() {
        let points = parse_csv("\"N\",\"X\"\r\n\"1\",\"10\"\r\n2,19.5").unwrap();
        assert_eq!(points, vec![(1.0, 10.0), (2.0, 19.5)]);
    }

    #[test]
    fn a_numeric_first_line_is_data_not_a_header() {
        assert_eq!(parse_csv("1,10\n2,20\n").unwrap(), vec![(1.0, 10.0), (2.0, 20.0)]);
    }

    #[test]
    fn a_header_with_one_numeric_field_is_not_taken_for_a_header() {
        let err = parse_csv("4,abc\n5,50\n").unwrap_err();
        assert_eq!(err.to_string(), "line 1: throughput \"abc\" is not a number");
    }

    #[test]
    fn a_word_where_a_number_belongs_names_line_and_column() {
        let err = parse_csv("n,x\n1,10\n2,20\n3,abc\n").unwrap_err();
        assert_eq!(err, CsvError::NotANumber { line: 4, column: Column::Throughput, value: "abc".into() });
        assert_eq!(err.to_string(), "line 4: throughput \"abc\" is not a number");
        let err = parse_csv("n,x\n\n# c\nfour,10\n").unwrap_err();
        assert_eq!(err.to_string(), "line 4: concurrency \"four\" is not a number");
    }

    #[test]
    fn negative_and_zero_values_are_refused() {
        let err = parse_csv("n,x\n1,10\n2,-3\n").unwrap_err();
        assert_eq!(err, CsvError::NegativeThroughput { line: 3, value: -3.0 });
        assert_eq!(err.to_string(), "line 3: throughput -3 is negative");
        let err = parse_csv("n,x\n0,10\n").unwrap_err();
        assert!(
            err.to_string().starts_with("line 2: concurrency 0 is out of range: expected 1 to 1000000"),
            "{err}"
        );
        let err = parse_csv("n,x\n-1,10\n").unwrap_err();
        assert_eq!(err, CsvError::ConcurrencyOutOfRange { line: 2, value: -1.0 });
        // Half a unit and a quadrillion are not concurrencies.
        for n in ["0.5", "1e15"] {
            let err = parse_csv(&format!("n,x\n{n},10\n")).unwrap_err();
            assert!(matches!(err, CsvError::ConcurrencyOutOfRange { line: 2, .. }), "{n}: {err}");
        }
        assert_eq!(parse_csv("1.5,10\n1000000,20\n").unwrap(), [(1.5, 10.0), (1e6, 20.0)]);
    }

    #[test]
    fn errors_quote_long_fields_in_part_and_tiny_numbers_in_scientific_notation() {
        let huge = "9".repeat(10 * 1024 * 1024) + "x";
        let err = parse_csv(&format!("n,x\n1,{huge}\n")).unwrap_err().to_string();
        assert!(err.len() < 200, "the error echoes {} bytes", err.len());
        assert!(
            err.contains("\"9999999999") && err.contains("… (10485761 bytes)"),
            "{}",
            &err[..err.len().min(200)]
        );
        let err = parse_csv("n,x\n1,-1e-300\n").unwrap_err().to_string();
        assert_eq!(err, "line 2: throughput -1e-300 is negative");
        let err = parse_csv("n,x\n1e-300,1\n").unwrap_err().to_string();
        assert!(err.starts_with("line 2: concurrency 1e-300 is out of range"), "{err}");
        assert_eq!(compact(216.0), "216");
        assert_eq!(compact(0.5), "0.5");
    }

    #[test]
    fn too_many_measurements_are_refused() {
        let csv: String = (0..=MAX_MEASUREMENTS).map(|i| format!("{},{}\n", 1 + i % 100, i)).collect();
        assert_eq!(parse_csv(&csv).unwrap_err(), CsvError::TooMany { line: MAX_MEASUREMENTS + 1 });
    }

    #[test]
    fn infinities_and_nan_are_refused() {
        let err = parse_csv("n,x\n1,NaN\n").unwrap_err();
        assert_eq!(err.to_string(), "line 2: throughput \"NaN\" is not a finite number");
        let err = parse_csv("n,x\ninf,1\n").unwrap_err();
        assert!(matches!(err, CsvError::NotFinite { line: 2, column: Column::Concurrency, .. }));
    }

    #[test]
    fn wrong_column_counts_are_refused() {
        let err = parse_csv("n,x\n1,10\n2,20,30\n").unwrap_err();
        assert_eq!(err.to_string(), "line 3: expected 2 columns (concurrency, throughput), found 3");
        assert_eq!(parse_csv("n,x\n5\n").unwrap_err(), CsvError::ColumnCount { line: 2, found: 1 });
        assert_eq!(parse_csv("n;x\n").unwrap_err(), CsvError::ColumnCount { line: 1, found: 1 });
    }

    #[test]
    fn header_only_parses_to_nothing() {
        assert_eq!(parse_csv("n,x\n\n# nothing yet\n").unwrap(), vec![]);
        assert_eq!(parse_csv("").unwrap(), vec![]);
    }

    #[test]
    fn text_shows_coefficients_peak_and_regime() {
        let points = specsdm91();
        let fit = usl::fit(&points).unwrap();
        let text = render_text(&fit, &points);
        assert!(text.starts_with("USL fit of 7 measurements, N from 1 to 216:\n"), "{text}");
        for expected in [
            "σ  contention               0.027728\n",
            "κ  coherency                0.00010437\n",
            "λ  throughput of one unit   89.995\n",
            "N* = √((1−σ)/κ), the peak   96.520\n",
            "X(N*)                       1883.9\n",
            "R²                          0.9896\n",
            "Contention-bound (σ ≥ κ)",
            "N* = 96.52 is within the measured N (1 to 216)",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert_eq!(text.lines().count(), 8, "{text}");
    }

    #[test]
    fn text_without_a_peak_says_so() {
        let points: Vec<(f64, f64)> = (1..=6).map(|n| (f64::from(n), 100.0 * f64::from(n))).collect();
        let fit = usl::fit(&points).unwrap();
        let text = render_text(&fit, &points);
        assert!(text.contains("N* = √((1−σ)/κ), the peak   none (κ = 0)\n"), "{text}");
        assert!(text.contains("X(N*)                       none\n"), "{text}");
        assert!(text.contains("Linear: "), "{text}");
        assert!(text.contains("grows without limit"), "{text}");
    }

    #[test]
    fn json_round_trips_the_fit() {
        let fit = usl::fit(&specsdm91()).unwrap();
        let json = render_json(&fit).unwrap();
        assert!(json.contains("\"sigma\""), "{json}");
        // serde_json parses floats to within one ULP unless its `float_roundtrip` feature is on.
        let back: UslFit = serde_json::from_str(&json).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-14 * b.abs();
        assert!(
            close(back.sigma, fit.sigma) && close(back.kappa, fit.kappa) && close(back.lambda, fit.lambda)
        );
        assert!(close(back.peak_n.unwrap(), fit.peak_n.unwrap()));
        assert!(close(back.peak_rps.unwrap(), fit.peak_rps.unwrap()));
        assert!(close(back.r_squared, fit.r_squared));
        assert_eq!(back.points, fit.points);
    }

    #[test]
    fn significant_keeps_five_digits() {
        assert_eq!(significant(0.0277284756), "0.027728");
        assert_eq!(significant(1.0436548e-4), "0.00010437");
        assert_eq!(significant(89.9952330), "89.995");
        assert_eq!(significant(12342.85), "12343");
        assert_eq!(significant(3.2e-7), "3.2000e-7");
        assert_eq!(significant(0.0), "0");
    }

    #[test]
    fn run_reads_fits_and_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("specsdm91.csv");
        fs::write(&file, SPECSDM91_CSV).unwrap();
        for json in [false, true] {
            assert_eq!(run(&FitArgs { file: file.clone(), json }).unwrap(), ExitCode::SUCCESS);
        }
    }

    #[test]
    fn run_errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.csv");
        let err = run(&FitArgs { file: missing.clone(), json: false }).unwrap_err();
        assert!(format!("{err:#}").starts_with(&format!("reading {}: ", missing.display())), "{err:#}");

        let short = dir.path().join("short.csv");
        fs::write(&short, "n,x\n1,10\n2,19\n4,35\n8,60\n").unwrap();
        let err = format!("{:#}", run(&FitArgs { file: short.clone(), json: false }).unwrap_err());
        assert!(err.contains(&short.display().to_string()), "{err}");
        assert!(err.contains("at least 6 measurements"), "{err}");
        assert!(err.contains("found 4"), "{err}");

        let bad = dir.path().join("bad.csv");
        fs::write(&bad, "n,x\n1,10\n2,19\n4,abc\n").unwrap();
        let err = format!("{:#}", run(&FitArgs { file: bad.clone(), json: false }).unwrap_err());
        assert_eq!(err, format!("in {}: line 4: throughput \"abc\" is not a number", bad.display()));
    }
}
