//! The demo's source: a generated Amplitude export (a folder of gzipped JSON-lines files,
//! one an hour, named as the Export API names them), with what must arrive from it.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

use super::error::DemoError;

/// What the export holds, as the destination must end up with it.
pub struct Expected {
    pub lines: usize,
    pub files: usize,
    /// The uuid of every event that must arrive (Amplitude's own uuids).
    pub uuids: HashSet<String>,
    /// Devices first seen without a user, then with one: each gets one `$create_alias`.
    pub aliases: usize,
    /// Amplitude's `session_start` markers, which are not carried over.
    pub session_markers: usize,
    /// Lines that are not events: reported and counted as rejected.
    pub malformed: usize,
}

const NAMES: [&str; 7] = [
    "[Amplitude] Page Viewed",
    "[Amplitude] Element Clicked",
    "opened app",
    "purchase",
    "signed up — 登録",
    "session_start",
    "session_end",
];
const PLANS: [&str; 2] = ["free", "pro"];
pub const USERS: usize = 40;
const HOURS: usize = 48;

/// What Amplitude's SDKs write in the device fields of an export line, for one user's
/// devices: the browser SDK (the browser in `os_name`), the iOS and the Android SDK.
fn device_fields(user: usize, device: usize) -> Value {
    match (user + device) % 3 {
        0 => json!({
            "platform": "Web", "os_name": "Chrome", "os_version": "122", "device_family": "Mac",
            "device_type": "Mac", "device_model": "Mac OS", "device_manufacturer": null, "device_brand": null,
            "device_carrier": null, "library": "amplitude-ts/2.4.1", "version_name": null,
        }),
        1 => json!({
            "platform": "iOS", "os_name": "ios", "os_version": "17.2.1", "device_family": "Apple iPhone",
            "device_type": "Apple iPhone 13", "device_model": "iPhone14,5", "device_manufacturer": "Apple",
            "device_brand": "Apple", "device_carrier": "Vodafone", "library": "amplitude-swift/1.4.0",
            "version_name": "3.2.0",
        }),
        _ => json!({
            "platform": "Android", "os_name": "android", "os_version": "14", "device_family": "Samsung Phone",
            "device_type": "Samsung Galaxy S23", "device_model": "SM-S911B", "device_manufacturer": "samsung",
            "device_brand": "samsung", "device_carrier": "T-Mobile", "library": "amplitude-android-kotlin/1.12.0",
            "version_name": "3.2.0",
        }),
    }
}

/// The Export API's fields that the generated events leave empty, as real exports do.
fn unset_fields(line: &mut Value) {
    for field in [
        "adid",
        "idfa",
        "dma",
        "paying",
        "sample_rate",
        "amplitude_attribution_ids",
        "amplitude_event_type",
        "start_version",
    ] {
        line[field] = Value::Null;
    }
    for field in ["groups", "group_properties", "data"] {
        line[field] = json!({});
    }
}

/// A small deterministic generator (xorshift): the same export on every run.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % sides as u64) as usize
    }
}

fn uuid(n: usize) -> String {
    format!("0190a000-{:04x}-7000-8000-{:012x}", n >> 16 & 0xffff, n)
}

/// Writes `events` lines over two days into `dir` and says what they must become.
pub fn write(dir: &Path, events: usize) -> Result<Expected, DemoError> {
    let project = dir.join("421337");
    fs::create_dir_all(&project).map_err(|source| DemoError::Export { path: project.clone(), source })?;
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    let mut expected =
        Expected { lines: 0, files: 0, uuids: HashSet::new(), aliases: 0, session_markers: 0, malformed: 0 };
    // Each user has one or two devices; each device is seen anonymously until its user logs in on it.
    let mut logged_in: HashSet<String> = HashSet::new();
    let per_hour = events.div_ceil(HOURS).max(1);
    for hour in 0..HOURS {
        let mut lines = Vec::new();
        for i in 0..per_hour {
            let n = hour * per_hour + i;
            if n >= events {
                break;
            }
            if n % 997 == 500 {
                lines.push(format!("{{\"event_type\": \"cut off at line {n}"));
                expected.malformed += 1;
                continue;
            }
            let user = dice.roll(USERS);
            let device_n = dice.roll(2);
            let device = format!("device-{user}-{device_n}");
            let name = NAMES[dice.roll(NAMES.len())];
            let anonymous = !logged_in.contains(&device) && dice.roll(3) > 0;
            let time = format!(
                "2024-03-{:02} {:02}:{:02}:{:02}.{:06}",
                1 + hour / 24,
                hour % 24,
                i * 3600 / per_hour / 60,
                i * 3600 / per_hour % 60,
                n % 1_000_000
            );
            // One event in twelve outside any session, as Amplitude writes it.
            let session = if n % 12 == 5 { -1 } else { 1_709_251_200_000i64 + (n / 20) as i64 * 60_000 };
            let mut line = json!({
                "uuid": uuid(n), "$insert_id": format!("insert-{n}"), "event_type": name, "device_id": &device,
                "user_id": null, "event_time": &time, "client_event_time": &time, "server_received_time": &time,
                "server_upload_time": &time, "client_upload_time": &time, "processed_time": &time,
                "session_id": session, "event_id": n, "amplitude_id": 900_000_000 + user, "app": 421337, "$schema": 12,
                "event_properties": {"n": n, "[Amplitude] Page URL": format!("https://shop.example.com/item/{}", n % 50)},
                "user_properties": {
                    "plan": PLANS[user % 2], "initial_referrer": "https://www.google.com/",
                    "initial_utm_source": "EMPTY", "initial_utm_medium": "EMPTY",
                },
                "country": "Portugal", "region": "Porto", "city": "Porto", "location_lat": 41.15, "location_lng": -8.61,
                "ip_address": "203.0.113.7", "language": "English", "is_attribution_event": false,
            });
            unset_fields(&mut line);
            for (key, value) in device_fields(user, device_n).as_object().into_iter().flatten() {
                line[key] = value.clone();
            }
            if !anonymous {
                line["user_id"] = json!(format!("user-{user}@example.com"));
            }
            if name == "session_start" {
                // Dropped by the import, so they link no device either.
                expected.session_markers += 1;
            } else {
                expected.uuids.insert(uuid(n));
                if !anonymous && logged_in.insert(device) {
                    expected.aliases += 1;
                }
            }
            lines.push(line.to_string());
        }
        if lines.is_empty() {
            continue;
        }
        expected.lines += lines.len();
        expected.files += 1;
        let path = project.join(format!("421337_2024-03-{:02}_{}#0.json.gz", 1 + hour / 24, hour % 24));
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(lines.join("\n").as_bytes()).map_err(DemoError::Gzip)?;
        let gzipped = gzip.finish().map_err(DemoError::Gzip)?;
        fs::write(&path, gzipped).map_err(|source| DemoError::Export { path: path.clone(), source })?;
    }
    Ok(expected)
}
