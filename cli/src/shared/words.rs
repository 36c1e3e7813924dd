//! Numbers as the output writes them.

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1 day`, `2 days`.
pub fn n_days(n: usize) -> String {
    format!("{n} {}", if n == 1 { "day" } else { "days" })
}
