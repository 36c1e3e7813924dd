//! Amplitude's Export API: `GET /api/2/export?start=YYYYMMDDTHH&end=YYYYMMDDTHH` (both
//! hours included) with basic auth (API key and secret key), answering a zip of
//! gzipped JSON lines; 404 when the range holds no data; a range over its limits (365
//! days, 4 GB) is refused, so ranges go a day at a time, and a day refused as too large
//! is asked for again in halves. Each range is a unit: a rerun resumes at the range
//! being read.

use chrono::{DateTime, Duration, Utc};

use super::files::{zip_listing, zip_read};
use super::{Archive, Bytes, Entry};
use crate::shared::retry::ReadError;
use crate::sources::error::Unreadable;

pub const US: &str = "https://amplitude.com";
pub const EU: &str = "https://analytics.eu.amplitude.com";

pub struct ExportApi {
    base: String,
    key: String,
    secret: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    agent: ureq::Agent,
    /// The unit last fetched and its zip, whose entries are read one at a time.
    fetched: Option<(String, Vec<u8>)>,
}

/// `YYYYMMDDTHH`, the hour Amplitude's range names.
fn hour(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H").to_string()
}

fn parse_hour(text: &str) -> Option<DateTime<Utc>> {
    chrono::NaiveDateTime::parse_from_str(&format!("{text}:00:00"), "%Y%m%dT%H:%M:%S").ok().map(|t| t.and_utc())
}

impl ExportApi {
    pub fn new(base: &str, key: &str, secret: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> ExportApi {
        ExportApi {
            base: base.trim_end_matches('/').to_string(),
            key: key.into(),
            secret: secret.into(),
            from,
            to,
            agent: ureq::AgentBuilder::new().timeout(std::time::Duration::from_secs(1800)).build(),
            fetched: None,
        }
    }

    /// The zip of hours `[start, end]`, `None` when Amplitude has nothing for them.
    fn fetch(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Option<Vec<u8>>, ReadError> {
        use base64::Engine;
        let url = format!("{}/api/2/export?start={}&end={}", self.base, hour(start), hour(end));
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.key, self.secret));
        match self.agent.get(&url).set("Authorization", &format!("Basic {auth}")).call() {
            Ok(response) => {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut response.into_reader(), &mut bytes).map_err(|e| {
                    ReadError::Transient {
                        message: format!("reading Amplitude's export of {}: {e}", hour(start)),
                        retry_after_seconds: None,
                    }
                })?;
                Ok(Some(bytes))
            }
            Err(ureq::Error::Status(404, _)) => Ok(None),
            Err(ureq::Error::Status(400, response)) if end > start => {
                // Over Amplitude's size limit: the two halves instead.
                let said = response.into_string().unwrap_or_default();
                let middle = start + Duration::hours((end - start).num_hours() / 2);
                let first = self.fetch(start, middle)?;
                let second = self.fetch(middle + Duration::hours(1), end)?;
                match (first, second) {
                    (None, None) if said.is_empty() => Ok(None),
                    (a, b) => Ok(Some(join(a.unwrap_or_default(), b.unwrap_or_default()))),
                }
            }
            Err(ureq::Error::Status(status @ (401 | 403), _)) => Err(ReadError::Fatal(format!(
                "Amplitude refused the keys (HTTP {status}); check --api-key and --secret-key (and --eu for a project \
                 in Amplitude's EU region)"
            ))),
            Err(ureq::Error::Status(status, response)) => {
                let retry_after = response.header("retry-after").and_then(|h| h.trim().parse().ok());
                let said: String = response.into_string().unwrap_or_default().chars().take(200).collect();
                if status == 429 || status >= 500 {
                    Err(ReadError::Transient {
                        message: format!("Amplitude's Export API answered HTTP {status} {said}"),
                        retry_after_seconds: retry_after,
                    })
                } else {
                    Err(ReadError::Fatal(format!("Amplitude's Export API refused {url} (HTTP {status} {said})")))
                }
            }
            Err(ureq::Error::Transport(transport)) => Err(ReadError::Transient {
                message: format!("Amplitude's Export API did not answer ({transport})"),
                retry_after_seconds: None,
            }),
        }
    }
}

/// The `.json.gz` / `.json` files of a zip, by name.
fn zip_files(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let Ok(mut archive) = zip::ZipArchive::new(std::io::Cursor::new(bytes)) else { return Vec::new() };
    let mut files = Vec::new();
    for i in 0..archive.len() {
        let Ok(mut file) = archive.by_index(i) else { continue };
        let name = file.name().to_string();
        let mut data = Vec::new();
        if file.is_file() && std::io::Read::read_to_end(&mut file, &mut data).is_ok() {
            files.push((name, data));
        }
    }
    files
}

/// Two zips as one (the halves of a range): their files, named apart.
fn join(first: Vec<u8>, second: Vec<u8>) -> Vec<u8> {
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (half, bytes) in [("a", first), ("b", second)] {
        for (name, data) in zip_files(&bytes) {
            if out.start_file(format!("{half}/{name}"), options).is_ok() {
                let _ = std::io::Write::write_all(&mut out, &data);
            }
        }
    }
    out.finish().map(|c| c.into_inner()).unwrap_or_default()
}

impl Archive for ExportApi {
    /// A day each (the first hour of each, as Amplitude names hours), in order.
    fn units(&self) -> Vec<String> {
        let mut units = Vec::new();
        let mut at = self.from;
        while at < self.to {
            units.push(hour(at));
            at += Duration::days(1);
        }
        units
    }

    fn entries(&mut self, unit: &str) -> Result<Vec<Entry>, ReadError> {
        let start = parse_hour(unit).ok_or_else(|| ReadError::Fatal(format!("not an hour: {unit}")))?;
        let end = (start + Duration::days(1)).min(self.to) - Duration::hours(1);
        let bytes = self.fetch(start, end.max(start))?.unwrap_or_default();
        let mut entries = Vec::new();
        if !bytes.is_empty() {
            let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&bytes)).map_err(|e| {
                ReadError::Fatal(format!(
                    "Amplitude's export of {unit} is not a zip ({e}); run again to fetch it again"
                ))
            })?;
            entries = zip_listing(&mut archive).into_iter().map(|(name, content)| Entry { name, content }).collect();
        }
        self.fetched = Some((unit.to_string(), bytes));
        Ok(entries)
    }

    fn read(&mut self, unit: &str, entry: &Entry) -> Result<Bytes, ReadError> {
        if self.fetched.as_ref().is_none_or(|(fetched, _)| fetched != unit) {
            self.entries(unit)?;
        }
        let bytes = self.fetched.as_ref().map(|(_, b)| b.as_slice()).unwrap_or_default();
        let archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(Unreadable::from);
        Ok(archive.and_then(|mut archive| zip_read(&mut archive, &entry.name)))
    }

    fn describe(&self) -> String {
        format!("Amplitude's Export API at {}", self.base)
    }
}
