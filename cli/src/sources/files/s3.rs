//! Files in an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, Google Cloud
//! Storage's XML API): the objects under a prefix listed with ListObjectsV2 and read
//! with GetObject, each request signed with AWS Signature Version 4. A blocking client
//! over ureq; with `--s3-endpoint` the bucket is addressed by path (what MinIO and the
//! others take), without it AWS's virtual-hosted address of the region is used.

use chrono::{DateTime, Utc};
use ring::hmac;

use super::{Listed, Place};
use crate::shared::retry::ReadError;
use crate::sources::error::SourceError;
use crate::sources::lines::hex;

/// Credentials and region, from the usual AWS environment variables.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
    pub region: String,
}

/// `s3://bucket/prefix` as (bucket, prefix).
pub fn parse_url(url: &str) -> Result<(String, String), SourceError> {
    let rest = url.strip_prefix("s3://").ok_or_else(|| SourceError::NotAnS3Url(url.to_string()))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(SourceError::NoBucket(url.to_string()));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Percent-encodes as SigV4 asks: all but letters, digits and `-_.~` (and `/` when
/// `keep_slash`, for paths).
fn encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes()).as_ref().to_vec()
}

/// The query string in SigV4's canonical form (sorted, encoded): also the one sent.
pub fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = query.iter().map(|(k, v)| (encode(k, false), encode(v, false))).collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// The `Authorization` header of a request with an empty body: `path` as sent
/// (encoded), `headers` with lowercase names, among them `host`, `x-amz-date` and
/// `x-amz-content-sha256`.
pub fn authorization(
    credentials: &Credentials,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    amz_date: &str,
) -> String {
    let mut headers: Vec<(String, String)> =
        headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string())).collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let request = format!("{method}\n{path}\n{query}\n{canonical_headers}\n{signed}\n{EMPTY_SHA256}");
    let day = &amz_date[..8];
    let scope = format!("{day}/{}/s3/aws4_request", credentials.region);
    let digest = hex(ring::digest::digest(&ring::digest::SHA256, request.as_bytes()).as_ref());
    let to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{digest}");
    let mut key = hmac_sha256(format!("AWS4{}", credentials.secret_key).as_bytes(), day);
    for part in [credentials.region.as_str(), "s3", "aws4_request"] {
        key = hmac_sha256(&key, part);
    }
    let signature = hex(&hmac_sha256(&key, &to_sign));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
        credentials.access_key
    )
}

/// The text of each `<tag>` in `xml`, entities decoded.
fn tags<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    out
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let Some(end) = after.find(';') else { break };
        let entity = &after[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// One page of ListObjectsV2: the objects, and the token of the next page.
pub fn parse_listing(xml: &str) -> (Vec<Listed>, Option<String>) {
    let files = tags(xml, "Contents")
        .into_iter()
        .filter_map(|object| {
            let key = unescape(tags(object, "Key").first()?);
            let size = tags(object, "Size").first().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
            let etag = tags(object, "ETag").first().map(|e| unescape(e)).unwrap_or_default();
            Some(Listed { name: key, size, version: format!("etag {etag}") })
        })
        .collect();
    let truncated = tags(xml, "IsTruncated").first().is_some_and(|t| t.trim() == "true");
    let token = tags(xml, "NextContinuationToken").first().map(|t| unescape(t)).filter(|_| truncated);
    (files, token)
}

pub struct S3 {
    endpoint: Option<String>,
    bucket: String,
    prefix: String,
    credentials: Credentials,
    agent: ureq::Agent,
}

impl S3 {
    pub fn new(url: &str, endpoint: Option<&str>, credentials: Credentials) -> Result<S3, SourceError> {
        let (bucket, prefix) = parse_url(url)?;
        let endpoint = endpoint.map(|e| e.trim().trim_end_matches('/').to_string());
        if let Some(e) = &endpoint {
            if !e.starts_with("http://") && !e.starts_with("https://") {
                return Err(SourceError::NotAnEndpoint(e.clone()));
            }
        }
        let agent = ureq::AgentBuilder::new().timeout(std::time::Duration::from_secs(300)).build();
        Ok(S3 { endpoint, bucket, prefix, credentials, agent })
    }

    /// The base URL, the host as signed, and the path before the key.
    fn address(&self) -> (String, String, String) {
        match &self.endpoint {
            Some(endpoint) => {
                let host = endpoint.split_once("://").map_or(endpoint.as_str(), |(_, h)| h);
                let host = host.split('/').next().unwrap_or(host);
                (endpoint.clone(), host.to_string(), format!("/{}", encode(&self.bucket, false)))
            }
            None => {
                let host = format!("{}.s3.{}.amazonaws.com", self.bucket, self.credentials.region);
                (format!("https://{host}"), host, String::new())
            }
        }
    }

    /// A signed GET of `path` (encoded) with `query`; the body.
    fn get(&self, path: &str, query: &[(&str, &str)], now: DateTime<Utc>) -> Result<Vec<u8>, ReadError> {
        let (base, host, _) = self.address();
        let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
        let mut headers = vec![
            ("host".to_string(), host),
            ("x-amz-content-sha256".to_string(), EMPTY_SHA256.to_string()),
            ("x-amz-date".to_string(), amz_date.clone()),
        ];
        if let Some(token) = &self.credentials.session_token {
            headers.push(("x-amz-security-token".to_string(), token.clone()));
        }
        let query = canonical_query(query);
        let auth = authorization(&self.credentials, "GET", path, &query, &headers, &amz_date);
        let url = if query.is_empty() { format!("{base}{path}") } else { format!("{base}{path}?{query}") };
        let mut request = self.agent.get(&url).set("Authorization", &auth);
        for (name, value) in headers.iter().filter(|(n, _)| n != "host") {
            request = request.set(name, value);
        }
        let what = format!("s3://{}{}", self.bucket, if path.is_empty() { "/" } else { path });
        match request.call() {
            Ok(response) => {
                let mut body = Vec::new();
                std::io::Read::read_to_end(&mut response.into_reader(), &mut body)
                    .map_err(|e| ReadError::Transient { message: format!("{what}: {e}"), retry_after_seconds: None })?;
                Ok(body)
            }
            Err(ureq::Error::Status(status, response)) => {
                let said = response.into_string().unwrap_or_default();
                let code = tags(&said, "Code").first().map(|c| c.to_string()).unwrap_or_default();
                let message = format!("{what}: HTTP {status} {code}");
                if status == 429 || status >= 500 || code == "SlowDown" {
                    Err(ReadError::Transient { message, retry_after_seconds: None })
                } else {
                    let hint = match status {
                        403 => ": check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION",
                        404 => ": check the bucket and --s3-endpoint",
                        _ => "",
                    };
                    Err(ReadError::Fatal(format!("{message}{hint}")))
                }
            }
            Err(error) => Err(ReadError::Transient { message: format!("{what}: {error}"), retry_after_seconds: None }),
        }
    }
}

impl Place for S3 {
    fn list(&mut self) -> Result<Vec<Listed>, ReadError> {
        let (_, _, bucket_path) = self.address();
        let path = format!("{bucket_path}/");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("list-type", "2"), ("prefix", self.prefix.as_str())];
            if let Some(token) = &token {
                query.push(("continuation-token", token.as_str()));
            }
            let body = self.get(&path, &query, Utc::now())?;
            let (files, next) = parse_listing(&String::from_utf8_lossy(&body));
            // Folder markers some tools write hold nothing.
            out.extend(files.into_iter().filter(|f| !f.name.ends_with('/')));
            match next {
                Some(next) => token = Some(next),
                None => return Ok(out),
            }
        }
    }

    fn read(&mut self, file: &Listed) -> Result<Vec<u8>, ReadError> {
        let (_, _, bucket_path) = self.address();
        self.get(&format!("{bucket_path}/{}", encode(&file.name, true)), &[], Utc::now())
    }

    fn describe(&self) -> String {
        let at = self.endpoint.as_deref().map_or(String::new(), |e| format!(" at {e}"));
        format!("the files at s3://{}/{}{at}", self.bucket, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example credentials of AWS's Signature Version 4 documentation for S3.
    fn example() -> Credentials {
        Credentials {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
            region: "us-east-1".into(),
        }
    }

    fn headers(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut all = vec![
            ("host".to_string(), "examplebucket.s3.amazonaws.com".to_string()),
            ("x-amz-content-sha256".to_string(), EMPTY_SHA256.to_string()),
            ("x-amz-date".to_string(), "20130524T000000Z".to_string()),
        ];
        all.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        all
    }

    #[test]
    fn signatures_match_the_examples_of_aws_documentation() {
        // "Example: GET Object" (with a Range header).
        let get =
            authorization(&example(), "GET", "/test.txt", "", &headers(&[("Range", "bytes=0-9")]), "20130524T000000Z");
        assert!(get.ends_with("Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"), "{get}");
        assert!(get.contains("SignedHeaders=host;range;x-amz-content-sha256;x-amz-date"), "{get}");
        // "Example: GET Bucket (List Objects)".
        let query = canonical_query(&[("prefix", "J"), ("max-keys", "2")]);
        assert_eq!(query, "max-keys=2&prefix=J");
        let list = authorization(&example(), "GET", "/", &query, &headers(&[]), "20130524T000000Z");
        assert!(list.ends_with("Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"), "{list}");
    }

    #[test]
    fn a_listing_page_gives_keys_sizes_and_the_next_token() {
        let xml = "<?xml version=\"1.0\"?><ListBucketResult><IsTruncated>true</IsTruncated>\
            <Contents><Key>exports/a&amp;b.jsonl.gz</Key><Size>120</Size><ETag>&quot;abc&quot;</ETag></Contents>\
            <Contents><Key>exports/c.jsonl</Key><Size>7</Size><ETag>\"d\"</ETag></Contents>\
            <NextContinuationToken>tok/1=</NextContinuationToken></ListBucketResult>";
        let (files, token) = parse_listing(xml);
        assert_eq!(
            files.iter().map(|f| (f.name.as_str(), f.size)).collect::<Vec<_>>(),
            [("exports/a&b.jsonl.gz", 120), ("exports/c.jsonl", 7)]
        );
        assert_eq!(files[0].version, "etag \"abc\"");
        assert_eq!(token.as_deref(), Some("tok/1="));
        assert_eq!(parse_listing(&xml.replace("<IsTruncated>true", "<IsTruncated>false")).1, None);
        assert_eq!(parse_url("s3://b/p/q").unwrap(), ("b".to_string(), "p/q".to_string()));
        assert!(parse_url("b/p").is_err());
    }
}
