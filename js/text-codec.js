// UTF-8 for wasm-bindgen's glue, which expects `TextEncoder`/`TextDecoder`: the plugin
// sandbox has neither. esbuild injects these in place of the globals, and they use
// the real ones whenever the host has them.
//
// TRICKY: the host injects a time check into every JS loop, so a loop per byte is
// ~30x slower there. These lean on built-ins (`escape`/`unescape` and the URI codecs
// do UTF-8 natively) and loop per chunk where they can.

const CHUNK = 8192;
const NON_ASCII = /[\x80-\xff]/;

function encodeByHand(text) {
  const bytes = [];
  for (let i = 0; i < text.length; i++) {
    let c = text.codePointAt(i);
    if (c > 0xffff) i++;
    else if (c >= 0xd800 && c < 0xe000) c = 0xfffd; // a lone surrogate
    if (c < 0x80) bytes.push(c);
    else if (c < 0x800) bytes.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) bytes.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else bytes.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return Uint8Array.from(bytes);
}

class Utf8Encoder {
  encodeInto(text, view) {
    const bytes = this.encode(text);
    view.set(bytes);
    return { read: text.length, written: bytes.length };
  }

  encode(text = '') {
    let binary;
    try {
      binary = unescape(encodeURIComponent(text));
    } catch {
      return encodeByHand(text); // lone surrogates, which encodeURIComponent refuses
    }
    const bytes = new Uint8Array(binary.length);
    let i = 0;
    // for-of, which the host leaves unguarded: no clock check per byte.
    for (const char of binary) bytes[i++] = char.charCodeAt(0);
    return bytes;
  }
}

class Utf8Decoder {
  // wasm-bindgen only decodes what Rust wrote: valid UTF-8.
  decode(bytes) {
    if (!bytes) return '';
    let text = '';
    for (let start = 0; start < bytes.length; ) {
      let end = Math.min(start + CHUNK, bytes.length);
      // Never cut a character: back off over its continuation bytes (at most 3).
      while (end < bytes.length && end > start && (bytes[end] & 0xc0) === 0x80) end--;
      const binary = String.fromCharCode.apply(null, bytes.subarray(start, end));
      // ASCII (all the core writes for events) is its own text.
      text += NON_ASCII.test(binary) ? decodeURIComponent(escape(binary)) : binary;
      start = end;
    }
    return text;
  }
}

const HostEncoder = typeof globalThis.TextEncoder === 'function' ? globalThis.TextEncoder : undefined;
const HostDecoder = typeof globalThis.TextDecoder === 'function' ? globalThis.TextDecoder : undefined;

export const TextEncoder = HostEncoder || Utf8Encoder;
export const TextDecoder = HostDecoder || Utf8Decoder;
