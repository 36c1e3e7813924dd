//! Amplitude export lines as the Export API documents them (every field of its response
//! schema, nulls included), with the values Amplitude's web, iOS and Android SDKs put in
//! them, and the files they come in (`<project>_<YYYY-MM-DD>_<H>#<n>.json.gz`, zipped).

use std::io::Write;

use serde_json::{json, Value};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Platform {
    /// The browser SDK: the browser in `os_name`/`os_version`, the computer in `device_*`.
    Web,
    Ios,
    Android,
    /// An Android tablet.
    AndroidTablet,
}

/// One exported event: `n` makes its ids, `time` is `YYYY-MM-DD HH:MM:SS.ffffff` (UTC).
pub fn line(platform: Platform, n: u64, user: Option<&str>, device: &str, event: &str, time: &str) -> Value {
    let mut line = json!({
        "server_received_time": time, "app": 421337, "device_carrier": null, "$schema": 12, "city": "Porto",
        "user_id": user, "uuid": format!("0190a000-0000-7000-8000-{n:012x}"), "event_time": time,
        "platform": "Web", "os_version": null, "amplitude_id": 900_000_000u64 + n, "processed_time": time,
        "user_creation_time": "2024-02-01 09:00:00.000000", "version_name": null, "ip_address": "203.0.113.7",
        "paying": null, "dma": null, "group_properties": {}, "client_upload_time": time,
    });
    // Two halves: one `json!` of every field is past the macro's recursion limit.
    let rest = json!({
        "$insert_id": format!("insert-{n}"), "event_type": event, "library": "amplitude-ts/2.4.1",
        "amplitude_attribution_ids": null, "device_type": null, "device_manufacturer": null, "start_version": null,
        "location_lng": -8.61, "server_upload_time": time, "event_id": n, "location_lat": 41.15, "os_name": null,
        "amplitude_event_type": null, "device_brand": null, "groups": {}, "event_properties": {}, "data": {},
        "device_id": device, "language": "English", "device_model": null, "country": "Portugal", "region": "Porto",
        "is_attribution_event": false, "adid": null, "session_id": 1_709_280_000_000u64, "device_family": null,
        "sample_rate": null, "idfa": null, "client_event_time": time,
        "user_properties": {
            "plan": "pro", "initial_referrer": "EMPTY", "initial_referring_domain": "EMPTY",
            "initial_utm_source": "EMPTY", "initial_utm_medium": "newsletter", "initial_gclid": "EMPTY"
        },
    });
    for (key, value) in rest.as_object().unwrap() {
        line[key] = value.clone();
    }
    let fields: Value = match platform {
        Platform::Web => json!({
            "platform": "Web", "os_name": "Chrome", "os_version": "122", "device_type": "Mac",
            "device_family": "Mac", "device_model": "Mac OS", "library": "amplitude-ts/2.4.1",
            "event_properties": {
                "[Amplitude] Page URL": "https://shop.example.com/item/7?ref=mail",
                "[Amplitude] Page Location": "https://shop.example.com/item/7?ref=mail",
                "[Amplitude] Page Domain": "shop.example.com", "[Amplitude] Page Path": "/item/7",
                "[Amplitude] Page Title": "Item 7 — Shop", "[Amplitude] Page Counter": 2,
                "[Amplitude] Viewport Height": 900, "[Amplitude] Viewport Width": 1440,
                "referrer": "https://www.google.com/", "referring_domain": "www.google.com"
            },
        }),
        Platform::Ios => json!({
            "platform": "iOS", "os_name": "ios", "os_version": "17.2.1", "device_type": "Apple iPhone 13",
            "device_family": "Apple iPhone", "device_model": "iPhone14,5", "device_manufacturer": "Apple",
            "device_brand": "Apple", "device_carrier": "Vodafone", "library": "amplitude-swift/1.4.0",
            "version_name": "3.2.0", "start_version": "3.0.0", "event_properties": {"screen": "Home"},
        }),
        Platform::Android | Platform::AndroidTablet => {
            let tablet = platform == Platform::AndroidTablet;
            json!({
                "platform": "Android", "os_name": "android", "os_version": "14",
                "device_type": if tablet { "Samsung Galaxy Tab S8" } else { "Samsung Galaxy S23" },
                "device_family": if tablet { "Samsung Tablet" } else { "Samsung Phone" },
                "device_model": if tablet { "SM-X700" } else { "SM-S911B" }, "device_manufacturer": "samsung",
                "device_brand": "samsung", "device_carrier": "T-Mobile", "library": "amplitude-android-kotlin/1.12.0",
                "version_name": "3.2.0", "adid": "38400000-8cf0-11bd-b23e-10b96e40000d",
                "event_properties": {"screen": "Home"},
            })
        }
    };
    for (key, value) in fields.as_object().unwrap() {
        line[key] = value.clone();
    }
    line
}

pub fn text(lines: &[Value]) -> Vec<String> {
    lines.iter().map(Value::to_string).collect()
}

pub fn gzip(lines: &[String]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(lines.join("\n").as_bytes()).unwrap();
    encoder.finish().unwrap()
}

pub fn zip(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (name, data) in files {
        out.start_file(name.clone(), options).unwrap();
        out.write_all(data).unwrap();
    }
    out.finish().unwrap().into_inner()
}

/// The name Amplitude gives an hour's file in its export: `421337/421337_2024-03-01_9#0.json.gz`.
pub fn file_name(day: &str, hour: u32, part: u32) -> String {
    format!("421337/421337_{day}_{hour}#{part}.json.gz")
}
