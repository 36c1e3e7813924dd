//! The destination host setting: what a user types, checked and made into a base URL.
//!
//! Hand-written instead of the `url` crate: that crate brings IDNA tables that would
//! more than double the size of the module every plugin-server thread compiles, and
//! we accept only a narrow shape (scheme, host, port, optional path) anyway.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// `https://host[:port][/path]`, no trailing slash.
    pub base_url: String,
}

impl Destination {
    /// Where batches are posted. `compression=gzip-js` is how older capture builds learn
    /// that a body is gzip; newer ones also sniff the gzip magic bytes.
    pub fn batch_url(&self, gzip: bool) -> String {
        if gzip {
            format!("{}/batch/?compression=gzip-js", self.base_url)
        } else {
            format!("{}/batch/", self.base_url)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostProblem(pub String);

impl fmt::Display for HostProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn problem(text: &str) -> HostProblem {
    HostProblem(text.to_string())
}

/// Capture's endpoints, as a user may copy them from PostHog's docs with the host
/// (`https://us.i.posthog.com/batch/`): the host is what comes before.
const CAPTURE_PATHS: [&str; 5] = ["/i/v0/e", "/batch", "/capture", "/track", "/e"];

/// Accepts `posthog.example.com`, `https://posthog.example.com/`, `http://localhost:8000`,
/// `https://example.com/posthog`, and any of these followed by a capture endpoint
/// (`/batch/`, `/e/`, ...), which is where events go anyway. Plain http only when
/// written explicitly.
pub fn parse(input: &str) -> Result<Destination, HostProblem> {
    let text = input.trim();
    if text.is_empty() {
        return Err(problem("it is empty"));
    }
    if text.chars().any(char::is_whitespace) {
        return Err(problem("it contains spaces"));
    }
    let (scheme, rest) = match text.find("://") {
        Some(at) => {
            let scheme = text[..at].to_ascii_lowercase();
            if scheme != "http" && scheme != "https" {
                return Err(problem("only http:// and https:// addresses can receive events"));
            }
            (scheme, &text[at + 3..])
        }
        None => ("https".to_string(), text),
    };
    if rest.contains(['?', '#']) {
        return Err(problem("it has a query or fragment (? or #); give only the address of the PostHog instance"));
    }
    let (authority, mut path) = match rest.find('/') {
        Some(at) => (&rest[..at], rest[at..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if let Some(endpoint) = CAPTURE_PATHS.iter().find(|p| path.to_ascii_lowercase().ends_with(*p)) {
        path = &path[..path.len() - endpoint.len()];
    }
    if authority.contains('@') {
        return Err(problem("it contains a user name or password (@); give only the address"));
    }
    if path.contains("//") {
        return Err(problem("its path has an empty segment (//)"));
    }
    let (host, port) = split_port(authority)?;
    check_host(host)?;
    let port = match port {
        Some(port) => format!(":{}", check_port(port)?),
        None => String::new(),
    };
    Ok(Destination { base_url: format!("{scheme}://{}{port}{path}", host.to_ascii_lowercase()) })
}

/// The host to write for a redirect's `Location` (a URL, or a path on the same host):
/// its scheme, host and port, and its path before capture's endpoint.
pub fn of_location(location: &str) -> Option<String> {
    let location = location.split(['?', '#']).next().unwrap_or_default();
    parse(location).ok().map(|d| d.base_url)
}

fn split_port(authority: &str) -> Result<(&str, Option<&str>), HostProblem> {
    if authority.starts_with('[') {
        let Some(end) = authority.find(']') else {
            return Err(problem("it opens an IPv6 address with [ but never closes it"));
        };
        let after = &authority[end + 1..];
        return match after.strip_prefix(':') {
            Some(port) => Ok((&authority[..=end], Some(port))),
            None if after.is_empty() => Ok((authority, None)),
            None => Err(problem("it has text after the IPv6 address")),
        };
    }
    Ok(match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

fn check_port(port: &str) -> Result<u16, HostProblem> {
    match port.parse::<u16>() {
        Ok(n) if n > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(problem("its port is not a number from 1 to 65535")),
    }
}

fn check_host(host: &str) -> Result<(), HostProblem> {
    if host.is_empty() {
        return Err(problem("it has no host name"));
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match inner.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(problem("it is not a valid IPv6 address")),
        };
    }
    if host.len() > 253 {
        return Err(problem("its host name is longer than 253 characters"));
    }
    // Labels of letters, digits, '-' and '_' (Docker service names use '_'); this also
    // covers IPv4 addresses.
    for label in host.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(problem("it is not a host name (expected something like posthog.example.com)"));
        }
    }
    Ok(())
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn accepted_hosts_become_base_urls() {
        let cases = [
            ("posthog.example.com", "https://posthog.example.com"),
            ("https://posthog.example.com/", "https://posthog.example.com"),
            ("HTTPS://PostHog.Example.com", "https://posthog.example.com"),
            ("http://localhost:8000", "http://localhost:8000"),
            ("  eu.posthog.com  ", "https://eu.posthog.com"),
            ("127.0.0.1:8010", "https://127.0.0.1:8010"),
            ("http://[::1]:8000/", "http://[::1]:8000"),
            ("https://example.com/posthog/", "https://example.com/posthog"),
            ("posthog_web:8000", "https://posthog_web:8000"),
            // Capture's endpoint copied with the host: the host is what comes before.
            ("http://127.0.0.1:8000/batch", "http://127.0.0.1:8000"),
            ("https://us.i.posthog.com/batch/", "https://us.i.posthog.com"),
            ("https://example.com/posthog/e/", "https://example.com/posthog"),
            ("https://example.com/posthog/I/V0/E", "https://example.com/posthog"),
            ("https://example.com/batches", "https://example.com/batches"),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input).map(|d| d.base_url), Ok(expected.to_string()), "{input}");
        }
    }

    #[test]
    fn rejected_hosts_say_why() {
        let cases = [
            ("", "empty"),
            ("   ", "empty"),
            ("posthog example.com", "spaces"),
            ("ftp://posthog.example.com", "only http:// and https://"),
            ("https://", "no host name"),
            ("https:///batch", "no host name"),
            ("not a host!", "spaces"),
            ("not-a-host!", "not a host name"),
            ("-bad.example.com", "not a host name"),
            ("posthog..example.com", "not a host name"),
            ("posthog.example.com:0", "port"),
            ("posthog.example.com:99999", "port"),
            ("posthog.example.com:+80", "port"),
            ("posthog.example.com:", "port"),
            ("https://user:pw@posthog.example.com", "user name"),
            ("https://posthog.example.com/?x=1", "query"),
            ("https://posthog.example.com//x", "empty segment"),
            ("http://[::1", "never closes"),
            ("http://[zz]:80", "IPv6"),
            ("http://[::1]x", "after the IPv6"),
        ];
        for (input, needle) in cases {
            let err = parse(input).expect_err(input).0;
            assert!(err.contains(needle), "{input:?}: {err:?} lacks {needle:?}");
        }
    }

    #[test]
    fn a_redirect_names_the_host_to_write() {
        assert_eq!(
            of_location("https://posthog.example.com/batch/?compression=gzip-js").as_deref(),
            Some("https://posthog.example.com")
        );
        assert_eq!(
            of_location("https://127.0.0.1:8443/ingest/batch/").as_deref(),
            Some("https://127.0.0.1:8443/ingest")
        );
        assert_eq!(of_location("/login?next=/batch/"), None);
        assert_eq!(of_location(""), None);
    }

    #[test]
    fn batch_url_announces_gzip_for_older_capture() {
        let d = parse("posthog.example.com").unwrap();
        assert_eq!(d.batch_url(false), "https://posthog.example.com/batch/");
        assert_eq!(d.batch_url(true), "https://posthog.example.com/batch/?compression=gzip-js");
    }
}
