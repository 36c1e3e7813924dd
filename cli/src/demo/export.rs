//! The demo's source: a generated Amplitude export (a folder of gzipped JSON-lines files,
//! one an hour, named as the Export API names them), with what must arrive from it.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::Path;

use serde_json::json;

/// What the export holds, as the destination must end up with it.
pub struct Expected {
    pub lines: usize,
    pub files: usize,
    /// The uuid of every event that must arrive (Amplitude's own uuids).
    pub uuids: HashSet<String>,
    /// Devices first seen without a user, then with one: each gets one `$create_alias`.
    pub aliases: usize,
    /// Amplitude's session markers, which are not carried over.
    pub session_markers: usize,
    /// Lines that are not events: reported and counted as rejected.
    pub malformed: usize,
}

const NAMES: [&str; 6] = [
    "[Amplitude] Page Viewed",
    "[Amplitude] Element Clicked",
    "opened app",
    "purchase",
    "signed up — 登録",
    "session_start",
];
const PLANS: [&str; 2] = ["free", "pro"];
pub const USERS: usize = 40;
const HOURS: usize = 48;

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
pub fn write(dir: &Path, events: usize) -> Result<Expected, String> {
    let project = dir.join("421337");
    fs::create_dir_all(&project).map_err(|e| format!("{}: {e}", project.display()))?;
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
            let device = format!("device-{user}-{}", dice.roll(2));
            let name = NAMES[dice.roll(NAMES.len())];
            let anonymous = !logged_in.contains(&device) && dice.roll(3) > 0;
            let mut line = json!({
                "uuid": uuid(n), "$insert_id": format!("insert-{n}"), "event_type": name, "device_id": &device,
                "event_time": format!("2024-03-{:02} {:02}:{:02}:{:02}.{:06}", 1 + hour / 24, hour % 24, i * 3600 / per_hour / 60, i * 3600 / per_hour % 60, n % 1_000_000),
                "session_id": 1_709_251_200_000u64 + (n / 20) as u64,
                "event_properties": {"n": n, "[Amplitude] Page URL": format!("https://shop.example.com/item/{}", n % 50)},
                "user_properties": {"plan": PLANS[user % 2], "initial_referrer": "https://www.google.com/"},
                "country": "Portugal", "city": "Porto", "os_name": "Firefox", "platform": "Web",
                "library": "amplitude-ts/2.3.0",
            });
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
        gzip.write_all(lines.join("\n").as_bytes()).map_err(|e| e.to_string())?;
        fs::write(&path, gzip.finish().map_err(|e| e.to_string())?).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(expected)
}
