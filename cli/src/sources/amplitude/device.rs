//! The device an event came from, under the names and values PostHog's SDKs use.
//!
//! Amplitude's SDKs fill the same fields differently. The browser SDK (platform `Web`)
//! puts the browser in `os_name`/`os_version` ("Chrome", "122") and the computer in
//! `device_family`/`device_type`/`device_model` ("Mac", "Mac", "Mac OS"); the iOS and
//! Android SDKs put the OS there ("ios", "17.2.1") and a model name in `device_type`
//! ("Apple iPhone 13"). PostHog wants `$browser`/`$browser_version` for the first,
//! `$os`/`$os_version` for the second, and `$device_type` as Desktop, Mobile or Tablet.

use serde_json::{Map, Value};

use super::fields::present;

pub const DESKTOP: &str = "Desktop";
pub const MOBILE: &str = "Mobile";
pub const TABLET: &str = "Tablet";

fn field(line: &Map<String, Value>, name: &str) -> Option<String> {
    match present(line.get(name))? {
        Value::String(s) => Some(s.trim().to_string()),
        other => Some(other.to_string()),
    }
}

pub fn is_web(line: &Map<String, Value>) -> bool {
    field(line, "platform").is_some_and(|p| p.eq_ignore_ascii_case("web"))
}

/// The words of every device field, lowercase, to recognise a device by.
fn words(line: &Map<String, Value>) -> Vec<String> {
    ["device_family", "device_type", "device_model", "device_manufacturer", "device_brand"]
        .iter()
        .filter_map(|f| field(line, f))
        .flat_map(|text| {
            text.to_lowercase().split(|c: char| !c.is_ascii_alphanumeric()).map(str::to_string).collect::<Vec<_>>()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Makers whose phones and tablets run Android (when no field names the OS).
const ANDROID_MAKERS: [&str; 12] =
    ["samsung", "google", "xiaomi", "huawei", "oneplus", "oppo", "vivo", "motorola", "lge", "sony", "nokia", "realme"];

/// The OS of a browser's device, as posthog-js names it.
fn os_of_device(words: &[String]) -> Option<&'static str> {
    let has = |w: &str| words.iter().any(|x| x == w);
    let pair = |a: &str, b: &str| words.windows(2).any(|p| p[0] == a && p[1] == b);
    if pair("windows", "phone") {
        Some("Windows Phone")
    } else if has("windows") {
        Some("Windows")
    } else if has("iphone") || has("ipad") || has("ipod") || has("ios") {
        Some("iOS")
    } else if has("mac") || has("macos") || has("macintosh") {
        Some("Mac OS X")
    } else if pair("chrome", "os") || has("chromeos") || has("chromebook") {
        Some("Chrome OS")
    } else if has("android") || ANDROID_MAKERS.iter().any(|m| has(m)) {
        Some("Android")
    } else if has("linux") || has("ubuntu") || has("fedora") || has("debian") {
        Some("Linux")
    } else {
        None
    }
}

/// iOS and Android as PostHog's SDKs write them (Amplitude's write "ios", "android").
fn app_os(name: &str) -> String {
    match name.to_lowercase().as_str() {
        "ios" | "ipados" => "iOS".into(),
        "android" => "Android".into(),
        "macos" | "mac os" | "mac os x" => "Mac OS X".into(),
        _ => name.to_string(),
    }
}

/// Desktop, Mobile or Tablet; none when nothing says.
fn form_factor(words: &[String], os: Option<&str>, browser: Option<&str>) -> Option<&'static str> {
    let has = |w: &str| words.iter().any(|x| x == w);
    let phone = has("iphone") || has("ipod") || has("phone") || browser.is_some_and(|b| b.contains("Mobile"));
    if has("ipad") || has("tablet") || has("tab") {
        Some(TABLET)
    } else if phone || matches!(os, Some("iOS" | "Android" | "Windows Phone")) {
        Some(MOBILE)
    } else if matches!(os, Some("Mac OS X" | "Windows" | "Linux" | "Chrome OS")) {
        Some(DESKTOP)
    } else {
        None
    }
}

/// Browser names as posthog-js reports them, where Amplitude's differ.
fn browser_name(name: &str) -> String {
    match name {
        "Edge" => "Microsoft Edge".into(),
        "Chrome Mobile" | "Chrome WebView" => "Chrome".into(),
        "Firefox Mobile" | "Mobile Firefox" => "Firefox".into(),
        "Samsung Browser" => "Samsung Internet".into(),
        other => other.into(),
    }
}

/// A browser version as posthog-js sends it: a number of its major and minor parts.
fn browser_version(version: &str) -> Value {
    let short: Vec<&str> = version.split('.').take(2).collect();
    match short.join(".").parse::<f64>() {
        Ok(n) if n.fract() == 0.0 && n.abs() < 1e15 => Value::from(n as i64),
        Ok(n) => Value::from(n),
        Err(_) => Value::String(version.into()),
    }
}

/// The device properties of an exported event.
pub fn properties(line: &Map<String, Value>) -> Vec<(&'static str, Value)> {
    let words = words(line);
    let mut out = Vec::new();
    if is_web(line) {
        let browser = field(line, "os_name").map(|b| browser_name(&b));
        let os = os_of_device(&words).map(str::to_string).or_else(|| field(line, "device_family"));
        if let Some(kind) = form_factor(&words, os.as_deref(), browser.as_deref()) {
            out.push(("$device_type", Value::from(kind)));
        }
        if let Some(browser) = browser {
            out.push(("$browser", Value::String(browser)));
        }
        if let Some(version) = field(line, "os_version") {
            out.push(("$browser_version", browser_version(&version)));
        }
        if let Some(os) = os {
            out.push(("$os", Value::String(os)));
        }
    } else {
        let os = field(line, "os_name").or_else(|| field(line, "platform")).map(|o| app_os(&o));
        if let Some(kind) = form_factor(&words, os.as_deref(), None) {
            out.push(("$device_type", Value::from(kind)));
        }
        if let Some(os) = os {
            out.push(("$os", Value::String(os)));
        }
        if let Some(version) = field(line, "os_version") {
            out.push(("$os_version", Value::String(version)));
        }
        if let Some(model) = field(line, "device_model") {
            out.push(("$device_model", Value::String(model)));
        }
        if let Some(maker) = field(line, "device_manufacturer").or_else(|| field(line, "device_brand")) {
            out.push(("$device_manufacturer", Value::String(maker)));
        }
        if let Some(carrier) = field(line, "device_carrier") {
            out.push(("$network_carrier", Value::String(carrier)));
        }
    }
    // Amplitude's own words for the device (e.g. "Apple iPhone 13"), kept apart.
    for (from, to) in [("device_type", "$amplitude_device_type"), ("device_family", "$amplitude_device_family")] {
        if let Some(text) = field(line, from) {
            out.push((to, Value::String(text)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props(line: Value) -> Map<String, Value> {
        properties(line.as_object().unwrap()).into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    #[test]
    fn a_browser_is_a_browser_and_its_computer_gives_the_os() {
        let cases = [
            (
                json!({"os_name": "Chrome", "os_version": "122", "device_family": "Mac", "device_type": "Mac", "device_model": "Mac OS"}),
                "Chrome",
                json!(122),
                "Mac OS X",
                Some(DESKTOP),
            ),
            (
                json!({"os_name": "Edge", "os_version": "121.0.2277.128", "device_family": "Windows", "device_model": "Windows"}),
                "Microsoft Edge",
                json!(121),
                "Windows",
                Some(DESKTOP),
            ),
            (
                json!({"os_name": "Mobile Safari", "os_version": "17.2", "device_family": "Apple iPhone", "device_type": "Apple iPhone", "device_model": "iPhone"}),
                "Mobile Safari",
                json!(17.2),
                "iOS",
                Some(MOBILE),
            ),
            (
                json!({"os_name": "Safari", "os_version": "17", "device_family": "Apple iPad", "device_model": "iPad"}),
                "Safari",
                json!(17),
                "iOS",
                Some(TABLET),
            ),
            (
                json!({"os_name": "Chrome Mobile", "os_version": "122", "device_family": "Android", "device_model": "K"}),
                "Chrome",
                json!(122),
                "Android",
                Some(MOBILE),
            ),
            (
                json!({"os_name": "Firefox", "os_version": "123", "device_family": "Linux", "device_model": "Ubuntu"}),
                "Firefox",
                json!(123),
                "Linux",
                Some(DESKTOP),
            ),
            (
                json!({"os_name": "Chrome", "os_version": "120", "device_family": "Chromebook", "device_model": "Chromium OS"}),
                "Chrome",
                json!(120),
                "Chrome OS",
                Some(DESKTOP),
            ),
        ];
        for (mut line, browser, version, os, kind) in cases {
            line["platform"] = json!("Web");
            let p = props(line.clone());
            assert_eq!(
                (p["$browser"].as_str(), &p["$browser_version"], p["$os"].as_str()),
                (Some(browser), &version, Some(os)),
                "{line}"
            );
            assert_eq!(p.get("$device_type").and_then(Value::as_str), kind, "{line}");
            assert!(p.get("$os_version").is_none() && p.get("$device_model").is_none(), "{line}");
        }
    }

    #[test]
    fn an_app_keeps_its_os_and_gets_a_form_factor_never_a_model_name() {
        let cases = [
            (
                json!({"platform": "iOS", "os_name": "ios", "os_version": "17.2.1", "device_type": "Apple iPhone 13", "device_model": "iPhone14,5", "device_manufacturer": "Apple"}),
                "iOS",
                MOBILE,
            ),
            (
                json!({"platform": "iOS", "os_name": "ipados", "os_version": "17.1", "device_type": "Apple iPad Pro", "device_model": "iPad13,8"}),
                "iOS",
                TABLET,
            ),
            (
                json!({"platform": "Android", "os_name": "android", "os_version": "14", "device_type": "Samsung Galaxy S23", "device_brand": "samsung"}),
                "Android",
                MOBILE,
            ),
            (
                json!({"platform": "Android", "os_name": "android", "os_version": "13", "device_type": "Samsung Galaxy Tab S8", "device_family": "Samsung Tablet"}),
                "Android",
                TABLET,
            ),
        ];
        for (line, os, kind) in cases {
            let p = props(line.clone());
            assert_eq!((p["$os"].as_str(), p["$device_type"].as_str()), (Some(os), Some(kind)), "{line}");
            assert_eq!(p["$os_version"], line["os_version"]);
            assert_eq!(p["$amplitude_device_type"], line["device_type"]);
            assert!(p.get("$browser").is_none());
        }
        // A server-side line says nothing of a device: no device type is made up.
        let p = props(json!({"platform": "Node.js", "os_name": null, "device_type": null}));
        assert!(p.get("$device_type").is_none() && p.get("$os").is_some_and(|o| o == "Node.js"), "{p:?}");
    }
}
