//! Files of JSON lines, whatever their source: a file's bytes decoded (gzip, zstd or
//! plain, told by their first bytes, not by the name), a byte-order mark left out, and
//! what identifies a file's content wherever it lies (a SHA-256 of its bytes).

use std::io::Read;

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

/// The text of a file of lines, decompressed; why not when it is cut short or damaged.
/// Bytes that are not UTF-8 are replaced (the line they are in is then rejected or
/// kept as it reads), a leading byte-order mark is dropped.
pub fn text(bytes: &[u8]) -> Result<String, String> {
    let mut raw = Vec::new();
    match compression(bytes) {
        Compression::Gzip => {
            flate2::read::MultiGzDecoder::new(bytes)
                .read_to_end(&mut raw)
                .map_err(|e| format!("it is not a whole gzip file ({e})"))?;
        }
        Compression::Zstd => {
            let mut decoder = ruzstd::decoding::StreamingDecoder::new(bytes)
                .map_err(|e| format!("it is not a whole zstd file ({e})"))?;
            decoder.read_to_end(&mut raw).map_err(|e| format!("it is not a whole zstd file ({e})"))?;
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

/// What identifies a file's content: the SHA-256 of its bytes as stored (hex). The same
/// file copied, moved, renamed or uploaded elsewhere keeps it; any change of a byte
/// does not.
pub fn fingerprint(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
        }
        let cut = gzip(LINES.as_bytes());
        assert!(text(&cut[..cut.len() - 6]).unwrap_err().contains("not a whole gzip"));
    }

    #[test]
    fn a_fingerprint_follows_the_bytes_not_the_name() {
        assert_eq!(fingerprint(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_ne!(fingerprint(b"abc"), fingerprint(b"abd"));
    }
}
