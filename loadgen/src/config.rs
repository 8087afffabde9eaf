//! What a run is asked to do: the validated [`LoadConfig`] (built from the command line or by
//! hand), the target [`BaseUrl`], and the errors that name the setting at fault.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::arrivals::Arrivals;
use crate::mix::Mix;
use crate::stages::{StageTarget, Stages};

/// The highest rate `--rate` (and a rate stage) may ask for, req/s.
pub const MAX_RATE: f64 = 10_000_000.0;
/// The most connections `--connections` (and a connection stage) may ask for.
pub const MAX_CONNECTIONS: u32 = 100_000;
/// Connections when `--connections` is not given.
pub const DEFAULT_CONNECTIONS: u32 = 16;

/// Why a run could not start. Messages name the flag or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `--url` is not a usable `http://host[:port][/prefix]` URL.
    #[error("--url `{url}`: {reason}")]
    BadUrl { url: String, reason: String },
    /// The URL's host did not resolve.
    #[error("--url: cannot resolve `{host}`")]
    Resolve { host: String, source: std::io::Error },
    /// A path (from `--path` or `--mix`) is not a valid HTTP request target.
    #[error("path `{0}` is not a valid request target")]
    BadPath(String),
    /// A setting is out of range.
    #[error("{flag}: {reason}")]
    Invalid { flag: &'static str, reason: String },
    /// A connection task panicked (a bug; the report would be incomplete).
    #[error("a load connection failed: {0}")]
    Worker(String),
}

/// The target server: parsed from `--url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// The URL as given, for the report.
    pub url: String,
    /// The host name or address, without brackets.
    pub host: String,
    /// The TCP port (80 when the URL has none).
    pub port: u16,
    /// `host:port` as it appears in the URL: the `Host` header.
    pub authority: String,
    /// A path prefix put before every request path (`/api` in `http://h/api`); empty for none.
    pub prefix: String,
}

impl BaseUrl {
    /// The request target of `path` (which starts with `/`) under this URL's prefix.
    pub fn target(&self, path: &str) -> String {
        format!("{}{}", self.prefix, path)
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl FromStr for BaseUrl {
    type Err = LoadError;

    fn from_str(url: &str) -> Result<BaseUrl, LoadError> {
        parse_url(url).map_err(|reason| LoadError::BadUrl { url: url.to_string(), reason })
    }
}

/// Parses `--url`; the error is the reason alone (clap already names the flag and value).
pub fn parse_url(url: &str) -> Result<BaseUrl, String> {
    let bad = |reason: &str| reason.to_string();
    let uri: http::Uri = url.parse().map_err(|e: http::uri::InvalidUri| e.to_string())?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(bad("https is not supported; use http://")),
        Some(_) => return Err(bad("the scheme must be http://")),
        None => return Err(bad("expected http://host[:port], e.g. http://127.0.0.1:8080")),
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("user info is not supported"));
    }
    if uri.query().is_some() {
        return Err(bad("put queries in --path or --mix, not in --url"));
    }
    let after_host = authority.as_str().rsplit_once(']').map_or(authority.as_str(), |(_, rest)| rest);
    if after_host.contains(':') && authority.port_u16().is_none() {
        return Err(bad("the port must be a number"));
    }
    Ok(BaseUrl {
        url: url.to_string(),
        host: authority.host().trim_start_matches('[').trim_end_matches(']').to_string(),
        port: authority.port_u16().unwrap_or(80),
        authority: authority.as_str().to_string(),
        prefix: uri.path().trim_end_matches('/').to_string(),
    })
}

/// Everything a run needs. Build it from [`crate::LoadArgs`] with
/// [`LoadConfig::from_args`], or by hand (then call [`LoadConfig::validate`]).
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The server.
    pub url: BaseUrl,
    /// The paths and their weights.
    pub mix: Mix,
    /// Concurrent kept-alive connections (>= 1).
    pub connections: u32,
    /// Stop handing out requests after this long. At least one of `duration` and `requests`
    /// must be set, so that every run is bounded.
    pub duration: Option<Duration>,
    /// Stop after this many requests in total.
    pub requests: Option<u64>,
    /// Open loop at this many requests per second; `None` for a closed loop.
    pub rate: Option<f64>,
    /// Open loop: how arrivals are spaced (evenly, or as a Poisson process).
    pub arrivals: Arrivals,
    /// A staged load (`--stages`): ramped rates in open loop (then `rate` is `None`), or
    /// ramped connections in closed loop (then `connections` is the largest target). The
    /// run lasts as long as the stages (`duration` is their sum).
    pub stages: Option<Stages>,
    /// Per-request limit, from the send to the end of the response body.
    pub timeout: Duration,
    /// Tokio runtime threads (used by [`crate::run`] and [`crate::run_load_blocking`]).
    pub threads: usize,
}

impl LoadConfig {
    /// A closed-loop run of `requests` requests to `path` on `url` over `connections`.
    pub fn new(url: &str, path: &str, connections: u32, requests: u64) -> Result<LoadConfig, LoadError> {
        let cfg = LoadConfig {
            url: url.parse()?,
            mix: Mix::single(path)
                .map_err(|e| LoadError::Invalid { flag: "--path", reason: e.to_string() })?,
            connections,
            duration: None,
            requests: Some(requests),
            rate: None,
            arrivals: Arrivals::Uniform,
            stages: None,
            timeout: Duration::from_secs(10),
            threads: crate::default_threads(),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The run the command line asks for: `--duration` defaults to 10 s unless `--requests`
    /// is given.
    pub fn from_args(args: &crate::LoadArgs) -> Result<LoadConfig, LoadError> {
        let mix = match &args.mix {
            Some(m) => m.clone(),
            None => Mix::single(&args.path)
                .map_err(|e| LoadError::Invalid { flag: "--path", reason: e.to_string() })?,
        };
        let stages = args.stages.as_ref().map(|list| Stages { of: args.stages_of, stages: list.0.clone() });
        let duration = match (&args.stages, args.duration, args.requests) {
            (Some(list), _, _) => Some(list.duration()),
            (None, None, None) => Some(crate::DEFAULT_DURATION),
            (None, d, _) => d,
        };
        let connections = match (&stages, args.connections) {
            (Some(s), Some(_)) if s.of == StageTarget::Connections => {
                return Err(LoadError::Invalid {
                    flag: "--connections",
                    reason: "not with --stages-of connections: the stages set the connections".into(),
                });
            }
            (Some(s), None) if s.of == StageTarget::Connections => {
                s.stages.iter().map(|s| s.target).fold(0.0, f64::max).round().min(f64::from(MAX_CONNECTIONS))
                    as u32
            }
            (_, c) => c.unwrap_or(DEFAULT_CONNECTIONS),
        };
        let cfg = LoadConfig {
            url: args.url.clone(),
            mix,
            connections,
            duration,
            requests: args.requests,
            rate: args.rate,
            arrivals: args.arrivals,
            stages,
            timeout: args.timeout,
            threads: args.threads,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the ranges that the types do not.
    pub fn validate(&self) -> Result<(), LoadError> {
        let invalid = |flag, reason: &str| Err(LoadError::Invalid { flag, reason: reason.to_string() });
        if self.connections == 0 || self.connections > MAX_CONNECTIONS {
            return invalid("--connections", &format!("must be from 1 to {MAX_CONNECTIONS}"));
        }
        if self.duration.is_none() && self.requests.is_none() {
            return invalid("--duration", "a run needs --duration or --requests");
        }
        if self.duration == Some(Duration::ZERO) {
            return invalid("--duration", "must be longer than 0");
        }
        if self.requests == Some(0) {
            return invalid("--requests", "must be at least 1");
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE) {
                return invalid(
                    "--rate",
                    &format!("must be a number of requests per second above 0, at most {MAX_RATE}"),
                );
            }
        }
        if self.rate.is_none() && self.arrivals != Arrivals::Uniform {
            return invalid("--arrivals", "spaces open-loop requests: it needs --rate");
        }
        if let Some(stages) = &self.stages {
            self.validate_stages(stages)?;
        }
        if self.timeout.is_zero() {
            return invalid("--timeout", "must be longer than 0");
        }
        if self.threads == 0 {
            return invalid("--threads", "must be at least 1");
        }
        for path in self.mix.paths() {
            let target = self.url.target(path);
            if target.parse::<http::Uri>().is_err() {
                return Err(LoadError::BadPath(target));
            }
        }
        Ok(())
    }

    /// The bounds of a staged load: its targets, and the flags it replaces.
    fn validate_stages(&self, stages: &Stages) -> Result<(), LoadError> {
        let invalid = |flag, reason: String| Err(LoadError::Invalid { flag, reason });
        let (max, unit) = match stages.of {
            StageTarget::Rate => (MAX_RATE, "req/s (the bound of --rate)"),
            StageTarget::Connections => {
                (f64::from(MAX_CONNECTIONS), "connections (the bound of --connections)")
            }
        };
        for (i, s) in stages.stages.iter().enumerate() {
            if !(s.target.is_finite() && s.target >= 0.0 && s.target <= max) {
                return invalid(
                    "--stages",
                    format!("stage {}: target {} is above {max} {unit}", i + 1, s.target),
                );
            }
            if stages.of == StageTarget::Connections && s.target.fract() != 0.0 {
                return invalid(
                    "--stages",
                    format!("stage {}: {} is not a whole number of connections", i + 1, s.target),
                );
            }
        }
        if self.rate.is_some() {
            return invalid("--rate", "not with --stages: the stages set the rate (--stages-of rate)".into());
        }
        if stages.stages.iter().all(|s| s.target == 0.0) {
            return invalid("--stages", "every target is 0: nothing would be sent".into());
        }
        let staged = crate::stages::total_duration(&stages.stages);
        if staged.is_zero() || staged > crate::stages::MAX_STAGED_DURATION || self.duration != Some(staged) {
            return invalid(
                "--stages",
                format!(
                    "the stages must last more than 0 s and at most {}, and the run as long as they do",
                    humantime::format_duration(crate::stages::MAX_STAGED_DURATION)
                ),
            );
        }
        Ok(())
    }
}

/// Parses `--rate`: requests per second, above 0.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= MAX_RATE => Ok(r),
        _ => Err(format!("`{s}` is not a rate in requests per second above 0 and at most {MAX_RATE}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u: BaseUrl = "http://127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.authority.as_str(), u.prefix.as_str()),
            ("127.0.0.1", 8080, "127.0.0.1:8080", "")
        );
        assert_eq!(u.target("/op1"), "/op1");

        let u: BaseUrl = "http://localhost/api/".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port, u.prefix.as_str()), ("localhost", 80, "/api"));
        assert_eq!(u.target("/op1"), "/api/op1");

        let u: BaseUrl = "http://[::1]:9000".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9000));

        for bad in
            ["127.0.0.1:8080", "https://127.0.0.1", "ftp://x", "http://h/?q=1", "http://", "http://h:x"]
        {
            let err = bad.parse::<BaseUrl>().unwrap_err().to_string();
            assert!(err.starts_with("--url"), "{bad}: {err}");
        }
    }

    #[test]
    fn validation_names_the_flag() {
        let ok = LoadConfig::new("http://127.0.0.1:1", "op1", 4, 10).unwrap();
        type Breakage = fn(&mut LoadConfig);
        let cases: [(Breakage, &str); 10] = [
            (|c| c.connections = 0, "--connections"),
            (|c| c.connections = MAX_CONNECTIONS + 1, "--connections"),
            (|c| c.requests = None, "--duration"),
            (|c| c.rate = Some(0.0), "--rate"),
            (|c| c.rate = Some(MAX_RATE * 2.0), "--rate"),
            (|c| c.stages = Some(staged(StageTarget::Rate, "10s:20000000")), "--stages"),
            (|c| c.stages = Some(staged(StageTarget::Connections, "10s:2.5")), "--stages"),
            (|c| c.stages = Some(Stages { of: StageTarget::Rate, stages: vec![huge_stage()] }), "--stages"),
            (|c| c.timeout = Duration::ZERO, "--timeout"),
            (|c| c.threads = 0, "--threads"),
        ];
        for (break_it, flag) in cases {
            let mut c = ok.clone();
            break_it(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.starts_with(flag), "{err}");
        }
    }

    /// A stage built by hand, longer than any `Duration`: refused, not a panic.
    fn huge_stage() -> crate::stages::Stage {
        crate::stages::Stage { duration_s: u64::MAX as f64 * 2.0, target: 1.0 }
    }

    fn staged(of: StageTarget, stages: &str) -> Stages {
        Stages { of, stages: stages.parse::<crate::stages::StageList>().unwrap().0 }
    }

    #[test]
    fn stages_set_the_duration_and_replace_rate() {
        let mut c = LoadConfig::new("http://127.0.0.1:1", "op1", 4, 10).unwrap();
        c.stages = Some(staged(StageTarget::Rate, "10s:50,20s:100"));
        c.duration = Some(Duration::from_secs(30));
        c.validate().unwrap();
        c.rate = Some(10.0);
        assert!(c.validate().unwrap_err().to_string().starts_with("--rate: not with --stages"));
        c.rate = None;
        c.duration = Some(Duration::from_secs(10));
        assert!(c.validate().unwrap_err().to_string().starts_with("--stages"));
    }

    #[test]
    fn rates() {
        assert!(parse_rate("20000000").unwrap_err().contains("at most"));
        assert_eq!(parse_rate("200"), Ok(200.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        assert!(parse_rate("0").is_err() && parse_rate("-1").is_err() && parse_rate("x").is_err());
    }
}
