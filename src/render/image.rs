//! The image the rendered files run (`scalelab compose --image`): a container image reference,
//! checked against the grammar of Docker's distribution `reference` package before anything is
//! written, so a typo fails here with its reason instead of at a cluster's first pull.

use std::fmt;
use std::str::FromStr;

/// The default: the image `docker build -t scalelab:latest .` and `scripts/docker-image.sh` make.
pub const DEFAULT_IMAGE: &str = "scalelab:latest";

/// Longest repository name (host and path, without tag or digest), as Docker's reference
/// package allows.
const MAX_NAME: usize = 255;
/// Longest tag.
const MAX_TAG: usize = 128;

/// A valid image reference: `[host[:port]/]path[:tag][@algorithm:hex]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image(String);

impl Image {
    /// The reference as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Image {
    fn default() -> Self {
        Image(DEFAULT_IMAGE.to_string())
    }
}

impl fmt::Display for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Image {
    type Err = String;

    /// Clap shows the error after "invalid value '…' for '--image <IMAGE>'".
    fn from_str(s: &str) -> Result<Image, String> {
        problem(s).map_or_else(|| Ok(Image(s.to_string())), |why| {
            Err(format!("{why} (expected an image reference such as scalelab:latest or registry.example:5000/team/scalelab:1.2)"))
        })
    }
}

/// Why `s` is not an image reference, or `None` when it is one.
fn problem(s: &str) -> Option<String> {
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    // A tag follows the last ':' that comes after the last '/' (a ':' before it is a port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if name.is_empty() {
        return Some("the name is empty".into());
    }
    if name.len() > MAX_NAME {
        return Some(format!("the name is {} characters long, at most {MAX_NAME} are allowed", name.len()));
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // Docker's rule: the first of several parts is a registry host when it has a '.' or a
    // ':' or is `localhost`.
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let host = parts.remove(0);
        if !valid_host(host) {
            return Some(format!("{host:?} is not a registry host[:port]"));
        }
    }
    if let Some(bad) = parts.iter().find(|p| !valid_path_component(p)) {
        return Some(format!(
            "{bad:?} is not a path component: lowercase letters and digits, separated by '.', '_', '__' or dashes"
        ));
    }
    if let Some(tag) = tag {
        let mut chars = tag.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !first_ok || tag.len() > MAX_TAG || !chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Some(format!(
                "the tag {tag:?} is not 1 to {MAX_TAG} of letters, digits, '_', '.', '-' (not starting with '.' or '-')"
            ));
        }
    }
    if let Some(digest) = digest {
        let ok = digest.split_once(':').is_some_and(|(alg, hex)| {
            alg.starts_with(|c: char| c.is_ascii_alphabetic())
                && alg.chars().all(|c| c.is_ascii_alphanumeric() || "-_+.".contains(c))
                && hex.len() >= 32
                && hex.chars().all(|c| c.is_ascii_hexdigit())
        });
        if !ok {
            return Some(format!(
                "the digest {digest:?} is not ALGORITHM:HEX (e.g. sha256: and 64 hex digits)"
            ));
        }
    }
    None
}

/// `host[:port]`: DNS labels of letters, digits and inner dashes, joined by dots.
fn valid_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    name.split('.').all(label_ok) && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
}

/// `[a-z0-9]+` runs joined by one separator each: `.`, `_`, `__` or one or more `-`.
fn valid_path_component(part: &str) -> bool {
    let bytes = part.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &part[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-')) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_docker_accepts() {
        for ok in [
            "scalelab:latest",
            "scalelab",
            "team/scalelab:1.2.3",
            "registry.example:5000/team/scale-lab_x:v1",
            "localhost/scalelab:dev",
            "localhost:5000/a__b/c---d",
            "ghcr.io/o/scalelab@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "scalelab:1.0@sha256:0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(ok.parse::<Image>().map(|i| i.to_string()), Ok(ok.to_string()), "{ok}");
        }
    }

    #[test]
    fn refuses_with_the_reason() {
        for (bad, why) in [
            ("", "the name is empty"),
            (":latest", "the name is empty"),
            ("Scalelab:latest", "\"Scalelab\" is not a path component"),
            ("scale lab", "\"scale lab\" is not a path component"),
            ("team//scalelab", "\"\" is not a path component"),
            ("scalelab:", "the tag \"\""),
            ("scalelab:-x", "the tag \"-x\""),
            ("registry.example:99999/scalelab", "not a registry host"),
            ("scalelab@sha256:xyz", "the digest \"sha256:xyz\""),
            ("scalelab:a\nb", "the tag"),
        ] {
            let err = bad.parse::<Image>().unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(err.contains("expected an image reference"), "{err}");
        }
        let long = format!("{}:x", "a".repeat(MAX_NAME + 1));
        assert!(long.parse::<Image>().unwrap_err().contains("at most 255"));
        let long_tag = format!("scalelab:{}", "t".repeat(MAX_TAG + 1));
        assert!(long_tag.parse::<Image>().unwrap_err().contains("the tag"));
    }
}
