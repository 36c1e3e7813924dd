//! Files of JSON lines, whatever their source (Mixpanel's exports, files of PostHog
//! events): a file's bytes decoded (gzip, zstd or plain, told by their first bytes, not
//! by the name), a UTF-8 byte order mark dropped, its lines by byte offset (`\r\n` taken
//! as `\n`), and a fingerprint of a file's content, so a file is known by what it holds
//! rather than by its path.

use std::io::Read;

use uuid::Uuid;

use crate::sources::error::Undecodable;

/// Namespace of content fingerprints (never change it: state files hold them).
const FINGERPRINT: Uuid = Uuid::from_u128(0x6c69_6e65_732d_6669_6e67_6572_7072_696e);

/// How a file's bytes are compressed, from their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    Plain,
}

pub fn compression(bytes: &[u8]) -> Compression {
    match bytes {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        _ => Compression::Plain,
    }
}

/// The text of a file of lines, decompressed (gzip of several members too); why not when
/// it is cut short or damaged. Bytes that are not UTF-8 are replaced, not refused (a bad
/// line is rejected by its parser with its number), a leading byte order mark is dropped.
pub fn text(bytes: &[u8]) -> Result<String, Undecodable> {
    let mut raw = Vec::new();
    match compression(bytes) {
        Compression::Gzip => {
            flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut raw).map_err(Undecodable::Gzip)?;
        }
        Compression::Zstd => {
            let mut decoder = ruzstd::decoding::StreamingDecoder::new(bytes).map_err(Undecodable::ZstdFrame)?;
            decoder.read_to_end(&mut raw).map_err(Undecodable::Zstd)?;
        }
        Compression::Plain => raw.extend_from_slice(bytes),
    }
    let text = match String::from_utf8(raw) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// The next line of `text` from byte `offset` on: the line without its end (`\n` or
/// `\r\n`), and the offset after it; `None` at the end.
pub fn next_line(text: &str, offset: usize) -> Option<(&str, usize)> {
    if offset >= text.len() {
        return None;
    }
    let rest = &text[offset..];
    let (line, next) = match rest.find('\n') {
        Some(end) => (&rest[..end], offset + end + 1),
        None => (rest, text.len()),
    };
    Some((line.strip_suffix('\r').unwrap_or(line), next))
}

/// Every line of a file's bytes, as `text` decodes them and `next_line` cuts them.
pub fn lines_of(bytes: &[u8]) -> Result<Vec<String>, Undecodable> {
    let text = text(bytes)?;
    let (mut lines, mut at) = (Vec::new(), 0);
    while let Some((line, next)) = next_line(&text, at) {
        lines.push(line.to_string());
        at = next;
    }
    Ok(lines)
}

/// What identifies a file's content: a SHA-1 based (uuid v5) digest of its bytes as
/// stored, and their length. The same file moved, copied, renamed or uploaded elsewhere
/// keeps it; any change of a byte alters it.
pub fn fingerprint(bytes: &[u8]) -> String {
    format!("{}:{}", Uuid::new_v5(&FINGERPRINT, bytes).simple(), bytes.len())
}

/// Bytes as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const LINES: &str = "\u{feff}{\"a\":1}\r\n{\"b\":\"é\"}\n\nlast";

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn all_lines(text: &str) -> Vec<String> {
        let (mut out, mut at) = (Vec::new(), 0);
        while let Some((line, next)) = next_line(text, at) {
            out.push(line.to_string());
            at = next;
        }
        out
    }

    #[test]
    fn plain_gzip_and_zstd_files_read_the_same_without_their_byte_order_mark() {
        let zstd = ruzstd::encoding::compress_to_vec(LINES.as_bytes(), ruzstd::encoding::CompressionLevel::Fastest);
        for (bytes, kind) in [
            (LINES.as_bytes().to_vec(), Compression::Plain),
            (gzip(LINES.as_bytes()), Compression::Gzip),
            (zstd, Compression::Zstd),
        ] {
            assert_eq!(compression(&bytes), kind);
            let text = text(&bytes).unwrap();
            assert_eq!(all_lines(&text), ["{\"a\":1}", "{\"b\":\"é\"}", "", "last"], "{kind:?}");
            assert_eq!(lines_of(&bytes).unwrap(), all_lines(&text), "{kind:?}");
        }
        let cut = gzip(LINES.as_bytes());
        assert!(text(&cut[..cut.len() - 6]).unwrap_err().to_string().contains("not a whole gzip"));
    }

    #[test]
    fn plain_gzip_bom_and_crlf_give_the_same_lines() {
        let plain = b"\xef\xbb\xbf{\"a\":1}\r\n{\"a\":2}\n".to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(lines_of(&plain).unwrap(), ["{\"a\":1}", "{\"a\":2}"]);
        assert_eq!(lines_of(&gz).unwrap(), lines_of(&plain).unwrap());
        assert!(lines_of(&gz[..gz.len() - 6]).unwrap_err().to_string().contains("not a whole gzip"));
        assert_eq!(fingerprint(&plain), fingerprint(&plain.clone()));
        assert_ne!(fingerprint(&plain), fingerprint(&gz));
        assert!(fingerprint(b"").ends_with(":0"));
    }

    #[test]
    fn a_fingerprint_follows_the_bytes_not_the_name() {
        // Pinned: state files (mixpanel_files, files_read) hold fingerprints.
        assert_eq!(fingerprint(b"abc"), FINGERPRINT_OF_ABC);
        assert_ne!(fingerprint(b"abc"), fingerprint(b"abd"));
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
    }

    const FINGERPRINT_OF_ABC: &str = "cf9fdbb171b55b90a7f0c211a5a10a30:3";
}
