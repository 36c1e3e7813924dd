//! Generic helpers for sources that read files of JSON lines: the lines of a file,
//! plain or gzip (a UTF-8 byte order mark and CR before LF dropped), and a fingerprint
//! of a file's content, so a file is known by what it holds rather than by its path.

use std::io::Read;

use uuid::Uuid;

/// Namespace of content fingerprints (never change it: state files hold them).
const FINGERPRINT: Uuid = Uuid::from_u128(0x6c69_6e65_732d_6669_6e67_6572_7072_696e);

/// The lines of a file's bytes: gunzipped when gzipped (several members too), a BOM
/// at the start dropped, `\r\n` taken as `\n`. Not UTF-8 text is replaced, not refused:
/// a bad line is rejected by its parser with its number.
pub fn lines_of(bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut text = String::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut raw = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut raw)
            .map_err(|e| format!("it is not a whole gzip file ({e})"))?;
        text = String::from_utf8_lossy(&raw).into_owned();
    } else {
        text.push_str(&String::from_utf8_lossy(bytes));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    Ok(text.lines().map(str::to_string).collect())
}

/// What identifies a file's content: a SHA-1 based (uuid v5) digest of its bytes and
/// their length. The same file moved, copied or renamed keeps it; any change alters it.
pub fn fingerprint(bytes: &[u8]) -> String {
    format!("{}:{}", Uuid::new_v5(&FINGERPRINT, bytes).simple(), bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn plain_gzip_bom_and_crlf_give_the_same_lines() {
        let plain = b"\xef\xbb\xbf{\"a\":1}\r\n{\"a\":2}\n".to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(lines_of(&plain).unwrap(), ["{\"a\":1}", "{\"a\":2}"]);
        assert_eq!(lines_of(&gz).unwrap(), lines_of(&plain).unwrap());
        assert!(lines_of(&gz[..gz.len() - 6]).unwrap_err().contains("not a whole gzip"));
        assert_eq!(fingerprint(&plain), fingerprint(&plain.clone()));
        assert_ne!(fingerprint(&plain), fingerprint(&gz));
        assert!(fingerprint(b"").ends_with(":0"));
    }
}
